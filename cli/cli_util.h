/* Shared by the subcommands that work on embedding files: option parsing, reading embeddings
 * and labels from .npy files, distance names, and error reporting. */
#ifndef DML_CLI_UTIL_H
#define DML_CLI_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "dml/dml.h"

/* Prints "dml <cmd>: <what>: <dml_last_error()>" and returns 1. */
int cli_fail(const char *cmd, const char *what);

/* Option parsing: options are "--name value" pairs or "--flag". cli_value returns the value
 * after argv[*i] and advances *i, or prints that it is missing and returns NULL. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

/* Parse numbers, printing an error naming the option on failure (return 0 then). */
int cli_int(const char *cmd, const char *opt, const char *v, int64_t lo, int64_t hi,
            int64_t *out);
int cli_double(const char *cmd, const char *opt, const char *v, double *out);

/* Distance names: euclidean, sqeuclidean, cosine, dot. */
int cli_parse_distance(const char *s, dml_distance *out);
const char *cli_distance_name(dml_distance d);

/* A float32 [n, d] matrix from a .npy file. Returns 0 on success, 1 after printing why not. */
typedef struct cli_matrix {
  dml_npy npy;
  const float *x;
  int64_t n, d;
} cli_matrix;
int cli_read_matrix(const char *cmd, const char *path, cli_matrix *out);

/* Labels from a .npy file: a 1-D int32/int64 array gives one label per item; a 2-D array of 0/1
 * (int32, int64 or float32) is multi-hot, item i having the labels of its non-zero columns. */
typedef struct cli_labels {
  dml_labels l;
  int32_t *values;
  int64_t *offsets; /* NULL for one label per item */
  int32_t num_classes; /* largest label + 1 */
  int multi;
} cli_labels;
int cli_read_labels(const char *cmd, const char *path, cli_labels *out);
void cli_labels_free(cli_labels *l);

/* An int64 vector (ids) from a .npy file (int32 or int64, 1-D). *out is malloc'ed. */
int cli_read_ids(const char *cmd, const char *path, int64_t **out, int64_t *n);

/* Writes text to path atomically (temporary file, then rename). */
dml_status cli_write_text(const char *path, const char *text);

#endif
