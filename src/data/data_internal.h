/* Shared by the data readers: strings and string lists, the CSV record reader, image decoding
 * into CHW floats, and the loader's fault injection for tests. */
#ifndef DML_DATA_INTERNAL_H
#define DML_DATA_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "dml/data.h"

/* ---- strings (strlist.c) ---- */

/* malloc'ed copy of s (NULL when out of memory). */
char *dml__strdup(const char *s);
/* malloc'ed "a/b" (just b when a is NULL or empty). */
char *dml__path_join(const char *a, const char *b);
/* Frees s[0..n) and s. */
void dml__strings_free(char **s, int64_t n);
/* qsort comparator for char * elements, byte-wise (strcmp). */
int dml__cmp_strp(const void *a, const void *b);
/* Trims ASCII blanks (space, tab) at both ends in place; returns the new start. */
char *dml__trim(char *s);

/* A growable array of malloc'ed strings. */
typedef struct dml__strlist {
  char **items;
  int64_t n, cap;
} dml__strlist;

/* Appends a copy of s. DML_ERR_NO_MEMORY with a message on failure. */
dml_status dml__strlist_push(dml__strlist *l, const char *s);
/* Sorts byte-wise and removes duplicates. */
void dml__strlist_sort_unique(dml__strlist *l);
/* Index of s in a sorted, unique list, or -1. */
int64_t dml__strlist_find(const dml__strlist *l, const char *s);
void dml__strlist_free(dml__strlist *l);

/* ---- CSV records (csv.c) ---- */

/* Streams RFC 4180 records from a file: fields separated by `delim`, optionally quoted ("" is a
 * quote inside quotes; delimiters and line breaks inside quotes are data), LF or CRLF line ends,
 * a leading UTF-8 byte-order mark skipped, blank lines skipped. */
typedef struct dml__csv {
  FILE *f;
  const char *path;
  char delim;
  char *buf;          /* the current record's fields, each NUL-terminated */
  size_t len, cap;
  size_t *starts;     /* offset of each field in buf */
  int nfields, cap_fields;
  int64_t line;       /* 1-based line on which the current record starts */
  int64_t next_line;  /* line of the next unread character */
  char *in;           /* read buffer: in[in_pos .. in_len) not yet parsed */
  size_t in_len, in_pos;
  int eof;
} dml__csv;

/* Opens path (error naming it when missing or unreadable). */
dml_status dml__csv_open(dml__csv *c, const char *path, char delim);
/* Reads the next record: *more = 1 with the fields in c, or *more = 0 at the end of the file.
 * Errors: a quoted field left open at the end of the file, text after a closing quote, a read
 * error, a record above 2^31 fields or bytes. */
dml_status dml__csv_next(dml__csv *c, int *more);
static inline char *dml__csv_field(const dml__csv *c, int i) { return c->buf + c->starts[i]; }
void dml__csv_close(dml__csv *c);

/* Parses a whole field as a float (blanks around it allowed): 1 = a number, 0 = not one. */
int dml__parse_float(const char *s, float *out);
/* Parses a whole field as an integer in int64 range (blanks around it allowed). */
int dml__parse_int(const char *s, int64_t *out);

/* ---- images (image.c) ---- */

/* Whether name ends in .png, .jpg, .jpeg or .bmp (any case). */
int dml__is_image_name(const char *name);

/* Decodes paths[0..n) into out->x as CHW floats in [0,1] and sets ndim, shape, example_numel
 * (n and labels are the caller's). With no resize target every image must have the first one's
 * size. Runs in parallel (OpenMP); the error reported is the one of the lowest index. When
 * where_file is not NULL, messages start with "where_file:where_lines[i]: ". */
dml_status dml__images_read(char *const *paths, int64_t n, const dml_image_options *opt,
                            const char *where_file, const int64_t *where_lines,
                            dml_dataset *out);

/* Validates image options and fills in the defaults. */
dml_status dml__image_options(const dml_image_options *opt, dml_image_options *resolved);

/* ---- loader (loader.c) ---- */

/* Tests only: preparing batch `index` (of any epoch) fails with DML_ERR_INTERNAL and the
 * message "injected failure at batch <index>"; -1 turns it off. Call before start_epoch. */
void dml__loader_inject_error(dml_loader *l, int64_t index);

#endif
