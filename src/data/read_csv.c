/* CSV reader: numeric feature columns and one label column (integers, or strings that become
 * class names) into a data set of [d]-shaped examples. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "data/data_internal.h"

typedef struct {
  const char *path;
  char **names; /* header names (trimmed copies), or NULL */
  int nf;       /* fields per line */
  int label;    /* label column index */
} csv_layout;

/* Writes "'name'" or "3" (no header) for column j into buf. */
static const char *column_name(const csv_layout *L, int j, char *buf, size_t n) {
  if (L->names) snprintf(buf, n, "'%s'", L->names[j]);
  else snprintf(buf, n, "%d", j);
  return buf;
}

/* "a, b, c" of the header names, cut short for very wide files. */
static void list_names(const csv_layout *L, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (int j = 0; j < L->nf && used + 8 < n; j++) {
    int w = snprintf(buf + used, n - used, "%s'%s'", j ? ", " : "", L->names[j]);
    if (w < 0 || (size_t)w >= n - used) {
      snprintf(buf + (n > 5 ? n - 5 : 0), 5, "...");
      return;
    }
    used += (size_t)w;
  }
}

static int field_is_number(const char *s) {
  float v;
  return dml__parse_float(s, &v);
}

/* Decides the header and the label column from the first record. */
static dml_status resolve_layout(dml__csv *c, const dml_csv_options *opt, csv_layout *L,
                                 int *has_header) {
  L->nf = c->nfields;
  if (L->nf < 2)
    return dml__error(DML_ERR_FORMAT,
                      "%s:%lld: 1 field; a CSV data set needs feature columns and a label "
                      "column (is the delimiter '%c' right?)",
                      c->path, (long long)c->line, c->delim);
  const char *lc = opt->label_column;
  int64_t lc_index = 0;
  int lc_is_index = lc && dml__parse_int(lc, &lc_index);
  int header = opt->header;
  if (header == -1) {
    if (lc && !lc_is_index) {
      header = 1;
    } else {
      int label = L->nf - 1;
      if (lc_is_index) label = (int)(lc_index < 0 ? L->nf + lc_index : lc_index);
      header = 0;
      for (int j = 0; j < L->nf; j++)
        if (j != label && !field_is_number(dml__csv_field(c, j))) header = 1;
    }
  }
  *has_header = header;
  if (header) {
    L->names = calloc((size_t)L->nf, sizeof(char *));
    if (!L->names) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", c->path);
    for (int j = 0; j < L->nf; j++)
      if (!(L->names[j] = dml__strdup(dml__trim(dml__csv_field(c, j)))))
        return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", c->path);
  }
  L->label = -1;
  if (!lc) {
    L->label = L->nf - 1;
  } else {
    if (L->names)
      for (int j = 0; j < L->nf && L->label < 0; j++)
        if (strcmp(L->names[j], lc) == 0) L->label = j;
    if (L->label < 0 && lc_is_index) {
      if (lc_index < -(int64_t)L->nf || lc_index >= L->nf)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: label column %lld is outside the %d columns (0..%d, or -1 for "
                          "the last)",
                          c->path, (long long)lc_index, L->nf, L->nf - 1);
      L->label = (int)(lc_index < 0 ? L->nf + lc_index : lc_index);
    }
    if (L->label < 0) {
      if (!L->names)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: label column '%s' is a name but the file has no header line "
                          "(give a 0-based column index instead)",
                          c->path, lc);
      char names[1024];
      list_names(L, names, sizeof names);
      return dml__error(DML_ERR_NOT_FOUND, "%s: no column named '%s'; the header has %s",
                        c->path, lc, names);
    }
  }
  return DML_OK;
}

typedef struct {
  float *x;       /* aligned, cap rows */
  int64_t n, cap; /* rows */
  dml__strlist label_text;
  int64_t *label_int; /* cap rows, valid while all_int */
  int all_int;
  int64_t bad_int_line, bad_int_value; /* first integer label out of [0, 2^31) */
} csv_rows;

static dml_status grow(csv_rows *R, int64_t d, const char *path) {
  if (R->n < R->cap) return DML_OK;
  int64_t cap = R->cap ? R->cap * 2 : 256;
  float *x = dml_alloc_aligned(cap * d * (int64_t)sizeof(float));
  int64_t *li = realloc(R->label_int, (size_t)cap * sizeof(int64_t));
  if (li) R->label_int = li;
  if (!x || !li) {
    dml_free_aligned(x);
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory at row %lld", path,
                      (long long)R->n);
  }
  if (R->n) memcpy(x, R->x, (size_t)(R->n * d) * sizeof(float));
  dml_free_aligned(R->x);
  R->x = x;
  R->cap = cap;
  return DML_OK;
}

static dml_status add_row(dml__csv *c, const csv_layout *L, int has_header, csv_rows *R) {
  char col[512];
  if (c->nfields != L->nf)
    return dml__error(DML_ERR_FORMAT, "%s:%lld: %d field%s, the %s has %d", c->path,
                      (long long)c->line, c->nfields, c->nfields == 1 ? "" : "s",
                      has_header ? "header" : "first line", L->nf);
  const int64_t d = L->nf - 1;
  DML_TRY(grow(R, d, c->path));
  float *row = R->x + R->n * d;
  for (int j = 0, k = 0; j < L->nf; j++) {
    if (j == L->label) continue;
    const char *s = dml__csv_field(c, j);
    float v;
    if (!dml__parse_float(s, &v))
      return dml__error(DML_ERR_FORMAT, "%s:%lld: column %s: '%.64s' is not a number", c->path,
                        (long long)c->line, column_name(L, j, col, sizeof col), s);
    if (!isfinite(v))
      return dml__error(DML_ERR_NOT_FINITE,
                        "%s:%lld: column %s: '%.64s' is not finite (NaN, infinity or beyond "
                        "float range)",
                        c->path, (long long)c->line, column_name(L, j, col, sizeof col), s);
    row[k++] = v;
  }
  char *text = dml__trim(dml__csv_field(c, L->label));
  int64_t v;
  if (R->all_int && dml__parse_int(text, &v)) {
    R->label_int[R->n] = v;
    if ((v < 0 || v > INT32_MAX) && !R->bad_int_line) {
      R->bad_int_line = c->line;
      R->bad_int_value = v;
    }
  } else {
    R->all_int = 0;
  }
  DML_TRY(dml__strlist_push(&R->label_text, text));
  R->n++;
  return DML_OK;
}

static dml_status finish(const char *path, const csv_layout *L, csv_rows *R, dml_dataset *out) {
  if (R->n == 0) return dml__error(DML_ERR_FORMAT, "%s: no data rows (only a header line)", path);
  const int64_t n = R->n;
  out->labels = malloc((size_t)n * sizeof(int32_t));
  if (!out->labels) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", path);
  if (R->all_int) {
    if (R->bad_int_line)
      return dml__error(DML_ERR_FORMAT,
                        "%s:%lld: label %lld; integer labels must be in [0, 2^31) (column %d)",
                        path, (long long)R->bad_int_line, (long long)R->bad_int_value,
                        L->label);
    int64_t maxl = 0;
    for (int64_t i = 0; i < n; i++) {
      out->labels[i] = (int32_t)R->label_int[i];
      if (R->label_int[i] > maxl) maxl = R->label_int[i];
    }
    if (maxl >= INT32_MAX)
      return dml__error(DML_ERR_FORMAT, "%s: label %lld is too large", path, (long long)maxl);
    out->num_classes = (int32_t)(maxl + 1);
  } else {
    dml__strlist names = {0};
    for (int64_t i = 0; i < n; i++) {
      dml_status st = dml__strlist_push(&names, R->label_text.items[i]);
      if (st != DML_OK) {
        dml__strlist_free(&names);
        return st;
      }
    }
    dml__strlist_sort_unique(&names);
    if (names.n > INT32_MAX) {
      dml__strlist_free(&names);
      return dml__error(DML_ERR_FORMAT, "%s: more than 2^31 distinct labels", path);
    }
    for (int64_t i = 0; i < n; i++)
      out->labels[i] = (int32_t)dml__strlist_find(&names, R->label_text.items[i]);
    out->num_classes = (int32_t)names.n;
    out->class_names = names.items; /* the list's array becomes the data set's */
  }
  out->x = R->x;
  R->x = NULL;
  out->n = n;
  out->ndim = 1;
  out->shape[0] = L->nf - 1;
  out->example_numel = L->nf - 1;
  return DML_OK;
}

dml_status dml_data_read_csv(const char *path, const dml_csv_options *opt, int64_t limit,
                             dml_dataset *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_csv: out is NULL");
  memset(out, 0, sizeof *out);
  dml_csv_options o = {0, -1, NULL};
  if (opt) o = *opt;
  if (o.header < -1 || o.header > 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_data_read_csv: header must be -1 (auto), 0 or 1, not %d", o.header);
  char delim = o.delimiter ? o.delimiter : ',';
  if (delim == '"' || delim == '\n' || delim == '\r')
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_csv: delimiter cannot be a quote "
                      "or a line break");
  dml__csv c;
  DML_TRY(dml__csv_open(&c, path, delim));
  csv_layout L = {path, NULL, 0, 0};
  csv_rows R = {0};
  R.all_int = 1;
  int more = 0, has_header = 0;
  dml_status st = dml__csv_next(&c, &more);
  if (st == DML_OK && !more) st = dml__error(DML_ERR_FORMAT, "%s: the file is empty", path);
  if (st == DML_OK) st = resolve_layout(&c, &o, &L, &has_header);
  if (st == DML_OK && !has_header) st = add_row(&c, &L, has_header, &R);
  while (st == DML_OK && (limit <= 0 || R.n < limit)) {
    st = dml__csv_next(&c, &more);
    if (st != DML_OK || !more) break;
    st = add_row(&c, &L, has_header, &R);
  }
  if (st == DML_OK) st = finish(path, &L, &R, out);
  dml__csv_close(&c);
  dml__strings_free(L.names, L.names ? L.nf : 0);
  dml_free_aligned(R.x);
  free(R.label_int);
  dml__strlist_free(&R.label_text);
  if (st != DML_OK) dml_dataset_free(out);
  return st;
}
