/* Internal safetensors reader/writer and the atomic file writer, shared by safetensors.c and
 * checkpoint.c. A dml__st_file keeps the file open and its parsed header; entry names and
 * dtypes point into the header and live until dml__st_close. */
#ifndef DML_NN_SAFETENSORS_INTERNAL_H
#define DML_NN_SAFETENSORS_INTERNAL_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "dml/params.h"

typedef struct dml__st_entry {
  const char *name;
  const char *dtype;
  int ndim;
  int64_t shape[DML_MAX_DIMS];
  int64_t begin, end; /* byte offsets in the data section */
} dml__st_entry;

typedef struct dml__st_file {
  FILE *f;
  char *path;
  int64_t data_start, data_size;
  dml__st_entry *entries;
  int n;
  cJSON *header;
  const cJSON *meta; /* "__metadata__" object or NULL */
} dml__st_file;

/* Opens and validates a file: header length, JSON, dtypes, offsets in range, sizes matching
 * the shapes, no overlaps. On failure nothing is left open. */
dml_status dml__st_open(const char *path, dml__st_file *out);
void dml__st_close(dml__st_file *f);
const dml__st_entry *dml__st_find(const dml__st_file *f, const char *name);
/* Metadata value for key, or NULL. */
const char *dml__st_meta(const dml__st_file *f, const char *key);
/* Checks that e is F32 with the shape of p, naming both shapes otherwise. */
dml_status dml__st_check_entry(const dml__st_file *f, const dml__st_entry *e, const char *name,
                               int ndim, const int64_t *shape);
/* Reads an F32 tensor into dst (numel floats). */
dml_status dml__st_read_f32(dml__st_file *f, const dml__st_entry *e, float *dst);

typedef struct dml__st_tensor {
  const char *name;
  int ndim;
  const int64_t *shape;
  const float *data;
} dml__st_tensor;

/* Writes n F32 tensors (in this order) with optional metadata pairs, atomically. */
dml_status dml__st_write(const char *path, const dml__st_tensor *t, int n, const char *const *meta);

/* Writes path through fn on a unique temporary file "<path>.tmp.XXXXXX" (mkstemp) that is
 * flushed, fsync'ed, closed and renamed over path; on any failure the temporary file is removed and path is left
 * as it was. */
typedef dml_status (*dml__write_fn)(FILE *f, const char *path, void *ctx);
dml_status dml__write_atomic(const char *path, dml__write_fn fn, void *ctx);

#endif
