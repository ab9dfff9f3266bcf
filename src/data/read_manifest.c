/* Manifest reader: a CSV naming an image and its set of label names per row (the ChestX-ray14
 * Data_Entry_2017.csv layout) into a multi-label data set (CSR label sets, class names). */
#define _POSIX_C_SOURCE 200809L /* stat */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status_internal.h"
#include "data/data_internal.h"

typedef struct {
  dml__strlist names;  /* label names seen so far (duplicates until sorted) */
  int64_t names_unique; /* names.n after the last de-duplication */
  dml__strlist paths;  /* kept rows: image paths */
  int64_t *lines, cap_lines;
  dml__strlist pieces; /* kept rows: their label names, row after row */
  int64_t *piece_end;  /* kept rows: end of each row's names in pieces */
} manifest;

static dml_status find_column(const dml__csv *c, const char *name, int dflt, const char *what,
                              int *col) {
  if (!name) {
    if (dflt >= c->nfields)
      return dml__error(DML_ERR_FORMAT,
                        "%s:%lld: the header has %d field%s; the %s column is the field %d "
                        "by default",
                        c->path, (long long)c->line, c->nfields, c->nfields == 1 ? "" : "s",
                        what, dflt + 1);
    *col = dflt;
    return DML_OK;
  }
  for (int j = 0; j < c->nfields; j++)
    if (strcmp(dml__csv_field(c, j), name) == 0) {
      *col = j;
      return DML_OK;
    }
  char list[1024];
  size_t used = 0;
  list[0] = '\0';
  for (int j = 0; j < c->nfields && used + 8 < sizeof list; j++) {
    int w = snprintf(list + used, sizeof list - used, "%s'%s'", j ? ", " : "",
                     dml__csv_field(c, j));
    if (w < 0 || (size_t)w >= sizeof list - used) break;
    used += (size_t)w;
  }
  return dml__error(DML_ERR_NOT_FOUND, "%s: no %s column named '%s'; the header has %s", c->path,
                    what, name, list);
}

/* Splits s at sep into trimmed names, dropping empty ones and none; pushes them on `to` (and on
 * m->names). */
static dml_status split_labels(manifest *m, char *s, const char *sep, const char *none,
                               dml__strlist *to) {
  size_t seplen = strlen(sep);
  for (;;) {
    char *end = strstr(s, sep);
    if (end) *end = '\0';
    char *name = dml__trim(s);
    if (name[0] && strcmp(name, none) != 0) {
      DML_TRY(dml__strlist_push(&m->names, name));
      if (to) DML_TRY(dml__strlist_push(to, name));
    }
    if (!end) break;
    s = end + seplen;
  }
  /* keep the name list near its distinct size on large files */
  if (m->names.n > 2 * m->names_unique + 4096) {
    dml__strlist_sort_unique(&m->names);
    m->names_unique = m->names.n;
  }
  return DML_OK;
}

static dml_status add_row(manifest *m, dml__csv *c, int pcol, int lcol, const char *root,
                          const char *sep, const char *none) {
  char *p = dml__path_join(root, dml__trim(dml__csv_field(c, pcol)));
  if (!p) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  struct stat sb;
  int missing = stat(p, &sb) != 0;
  if (missing || !S_ISREG(sb.st_mode)) {
    const char *why = !missing ? "not a file" : errno == ENOENT ? "no such file" : strerror(errno);
    dml_status st = dml__error(DML_ERR_IO, "%s:%lld: %s: %s", c->path, (long long)c->line, p,
                               why);
    free(p);
    return st;
  }
  dml_status st = dml__strlist_push(&m->paths, p);
  free(p);
  DML_TRY(st);
  if (m->paths.n > m->cap_lines) {
    int64_t cap = m->cap_lines ? m->cap_lines * 2 : 256;
    int64_t *l = realloc(m->lines, (size_t)cap * sizeof *l);
    int64_t *e = l ? realloc(m->piece_end, (size_t)cap * sizeof *e) : NULL;
    if (l) m->lines = l;
    if (e) m->piece_end = e;
    if (!l || !e) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
    m->cap_lines = cap;
  }
  m->lines[m->paths.n - 1] = c->line;
  DML_TRY(split_labels(m, dml__csv_field(c, lcol), sep, none, &m->pieces));
  m->piece_end[m->paths.n - 1] = m->pieces.n;
  return DML_OK;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* Label sets of the kept rows as CSR over the sorted names. */
static dml_status build_sets(manifest *m, dml_dataset *out) {
  const int64_t n = m->paths.n;
  out->labels = malloc((size_t)n * sizeof(int32_t));
  out->label_offsets = malloc((size_t)(n + 1) * sizeof(int64_t));
  out->label_values = malloc((size_t)(m->pieces.n > 0 ? m->pieces.n : 1) * sizeof(int32_t));
  if (!out->labels || !out->label_offsets || !out->label_values)
    return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  int64_t v = 0, a = 0;
  out->label_offsets[0] = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t b = m->piece_end[i];
    int32_t *set = out->label_values + v;
    int64_t k = 0;
    for (int64_t j = a; j < b; j++)
      set[k++] = (int32_t)dml__strlist_find(&m->names, m->pieces.items[j]);
    qsort(set, (size_t)k, sizeof *set, cmp_i32);
    int64_t u = 0;
    for (int64_t j = 0; j < k; j++)
      if (u == 0 || set[j] != set[u - 1]) set[u++] = set[j];
    v += u;
    out->label_offsets[i + 1] = v;
    out->labels[i] = u > 0 ? set[0] : -1;
    a = b;
  }
  return DML_OK;
}

dml_status dml_data_read_manifest(const char *csv_path, const char *image_root,
                                  const dml_manifest_options *opt, int64_t limit,
                                  dml_dataset *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_manifest: out is NULL");
  memset(out, 0, sizeof *out);
  dml_manifest_options o;
  memset(&o, 0, sizeof o);
  if (opt) o = *opt;
  const char *sep = o.separator ? o.separator : "|";
  const char *none = o.none_label ? o.none_label : "No Finding";
  if (!sep[0])
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_manifest: empty label separator");
  dml_image_options img;
  DML_TRY(dml__image_options(&o.image, &img));
  if (!csv_path) return dml__error(DML_ERR_INVALID_ARGUMENT, "manifest path is NULL");
  char *root = NULL;
  if (image_root) {
    root = dml__strdup(image_root);
  } else {
    root = dml__strdup(csv_path);
    if (root) {
      char *slash = strrchr(root, '/');
      if (slash) slash[slash == root ? 1 : 0] = '\0';
      else root[0] = '\0';
    }
  }
  if (!root) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  manifest m;
  memset(&m, 0, sizeof m);
  dml__csv c;
  int more = 0, pcol = 0, lcol = 1;
  dml_status st = dml__csv_open(&c, csv_path, ',');
  if (st != DML_OK) {
    free(root);
    return st;
  }
  st = dml__csv_next(&c, &more);
  if (st == DML_OK && !more) st = dml__error(DML_ERR_FORMAT, "%s: the file is empty", csv_path);
  if (st == DML_OK)
    for (int j = 0; j < c.nfields; j++) dml__trim(dml__csv_field(&c, j));
  if (st == DML_OK) st = find_column(&c, o.path_column, 0, "image path", &pcol);
  if (st == DML_OK) st = find_column(&c, o.labels_column, 1, "labels", &lcol);
  while (st == DML_OK) {
    st = dml__csv_next(&c, &more);
    if (st != DML_OK || !more) break;
    int need = (pcol > lcol ? pcol : lcol) + 1;
    if (c.nfields < need) {
      st = dml__error(DML_ERR_FORMAT, "%s:%lld: %d field%s, the %s column is field %d",
                      csv_path, (long long)c.line, c.nfields, c.nfields == 1 ? "" : "s",
                      pcol > lcol ? "image path" : "labels", need);
      break;
    }
    if (limit <= 0 || m.paths.n < limit)
      st = add_row(&m, &c, pcol, lcol, root, sep, none);
    else
      st = split_labels(&m, dml__csv_field(&c, lcol), sep, none, NULL);
  }
  if (st == DML_OK && m.paths.n == 0)
    st = dml__error(DML_ERR_FORMAT, "%s: no rows after the header line", csv_path);
  if (st == DML_OK && m.names.n > INT32_MAX)
    st = dml__error(DML_ERR_FORMAT, "%s: too many label names", csv_path);
  if (st == DML_OK) {
    dml__strlist_sort_unique(&m.names);
    out->n = m.paths.n;
    st = build_sets(&m, out);
  }
  if (st == DML_OK) {
    out->paths = m.paths.items;
    out->class_names = m.names.items;
    out->num_classes = (int32_t)m.names.n;
    memset(&m.paths, 0, sizeof m.paths);
    memset(&m.names, 0, sizeof m.names);
    st = dml__images_read(out->paths, out->n, &img, csv_path, m.lines, out);
  }
  dml__csv_close(&c);
  dml__strlist_free(&m.names);
  dml__strlist_free(&m.paths);
  dml__strlist_free(&m.pieces);
  free(m.lines);
  free(m.piece_end);
  free(root);
  if (st != DML_OK) dml_dataset_free(out);
  return st;
}
