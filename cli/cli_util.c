/* Helpers shared by the embedding-file subcommands (see cli_util.h). */
#include "cli/cli_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "nn/safetensors_internal.h"

int cli_fail(const char *cmd, const char *what) {
  fprintf(stderr, "dml %s: %s: %s\n", cmd, what, dml_last_error());
  return 1;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "dml %s: option %s needs a value\n", cmd, argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

int cli_int(const char *cmd, const char *opt, const char *v, int64_t lo, int64_t hi,
            int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi) {
    fprintf(stderr, "dml %s: %s expects an integer between %lld and %lld, got '%s'\n", cmd,
            opt, (long long)lo, (long long)hi, v ? v : "");
    return 0;
  }
  *out = x;
  return 1;
}

int cli_double(const char *cmd, const char *opt, const char *v, double *out) {
  char *end = NULL;
  double x = v ? strtod(v, &end) : 0;
  if (!v || !*v || *end || x != x) {
    fprintf(stderr, "dml %s: %s expects a number, got '%s'\n", cmd, opt, v ? v : "");
    return 0;
  }
  *out = x;
  return 1;
}

static const struct {
  const char *name;
  dml_distance d;
} distances[] = {{"euclidean", DML_DIST_EUCLIDEAN},
                 {"sqeuclidean", DML_DIST_SQUARED_EUCLIDEAN},
                 {"cosine", DML_DIST_COSINE},
                 {"dot", DML_DIST_DOT}};

int cli_parse_distance(const char *s, dml_distance *out) {
  for (size_t i = 0; i < sizeof distances / sizeof distances[0]; i++)
    if (s && !strcmp(s, distances[i].name)) {
      *out = distances[i].d;
      return 1;
    }
  fprintf(stderr, "dml: unknown distance '%s' (euclidean, sqeuclidean, cosine or dot)\n",
          s ? s : "");
  return 0;
}

const char *cli_distance_name(dml_distance d) {
  for (size_t i = 0; i < sizeof distances / sizeof distances[0]; i++)
    if (distances[i].d == d) return distances[i].name;
  return "?";
}

int cli_read_matrix(const char *cmd, const char *path, cli_matrix *out) {
  memset(out, 0, sizeof *out);
  if (dml_npy_read(path, &out->npy) != DML_OK) return cli_fail(cmd, "embeddings");
  if (out->npy.dtype != DML_NPY_F32 || out->npy.ndim != 2) {
    fprintf(stderr,
            "dml %s: %s: embeddings must be a 2-D float32 array [items, dimensions]; this one is "
            "%d-D %s (in Python: np.save(path, np.asarray(x, dtype=np.float32).reshape(len(x), "
            "-1)))\n",
            cmd, path, out->npy.ndim,
            out->npy.dtype == DML_NPY_F32 ? "float32" : out->npy.dtype == DML_NPY_I32 ? "int32"
                                                                                      : "int64");
    dml_npy_free(&out->npy);
    return 1;
  }
  out->n = out->npy.shape[0];
  out->d = out->npy.shape[1];
  out->x = out->npy.data;
  if (out->d < 1) {
    fprintf(stderr, "dml %s: %s: embeddings have no dimensions\n", cmd, path);
    dml_npy_free(&out->npy);
    return 1;
  }
  return 0;
}

static int64_t npy_int(const dml_npy *a, int64_t i) {
  if (a->dtype == DML_NPY_I32) return ((const int32_t *)a->data)[i];
  if (a->dtype == DML_NPY_I64) return ((const int64_t *)a->data)[i];
  float f = ((const float *)a->data)[i];
  return f == 0.0f ? 0 : f == 1.0f ? 1 : -1;
}

int cli_read_labels(const char *cmd, const char *path, cli_labels *out) {
  memset(out, 0, sizeof *out);
  dml_npy a;
  if (dml_npy_read(path, &a) != DML_OK) return cli_fail(cmd, "labels");
  int rc = 1;
  /* [n, 1] is a column of single labels (as np.save(y.reshape(-1, 1)) writes), not multi-hot */
  int column = a.ndim == 2 && a.shape[1] == 1 && a.dtype != DML_NPY_F32;
  if ((a.ndim == 1 || column) && a.dtype != DML_NPY_F32) {
    out->values = malloc((size_t)(a.numel > 0 ? a.numel : 1) * sizeof *out->values);
    if (!out->values) goto oom;
    for (int64_t i = 0; i < a.numel; i++) {
      int64_t v = npy_int(&a, i);
      if (v < 0 || v >= INT32_MAX) {
        fprintf(stderr, "dml %s: %s: label %lld of item %lld is not in 0..2^31-2\n", cmd, path,
                (long long)v, (long long)i);
        goto done;
      }
      out->values[i] = (int32_t)v;
      if (v + 1 > out->num_classes) out->num_classes = (int32_t)(v + 1);
    }
    out->l = (dml_labels){a.numel, out->values, NULL};
  } else if (a.ndim == 2) {
    int64_t n = a.shape[0], c = a.shape[1];
    if (c > INT32_MAX) goto shape;
    out->offsets = malloc((size_t)(n + 1) * sizeof *out->offsets);
    int64_t total = 0;
    for (int64_t i = 0; i < a.numel; i++) {
      int64_t v = npy_int(&a, i);
      if (v != 0 && v != 1) {
        fprintf(stderr, "dml %s: %s: a 2-D label array is multi-hot and holds only 0 and 1; "
                        "row %lld column %lld holds something else\n",
                cmd, path, (long long)(i / c), (long long)(i % c));
        goto done;
      }
      total += v;
    }
    out->values = malloc((size_t)(total > 0 ? total : 1) * sizeof *out->values);
    if (!out->offsets || !out->values) goto oom;
    int64_t at = 0;
    out->offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
      for (int64_t j = 0; j < c; j++)
        if (npy_int(&a, i * c + j)) out->values[at++] = (int32_t)j;
      out->offsets[i + 1] = at;
    }
    out->num_classes = (int32_t)c;
    out->multi = 1;
    out->l = (dml_labels){n, out->values, out->offsets};
  } else {
    goto shape;
  }
  rc = 0;
  goto done;
shape:
  fprintf(stderr,
          "dml %s: %s: labels must be a 1-D integer array (one class per item) or a 2-D 0/1 "
          "array (multi-hot, one column per label); this one is %d-D %s (in Python: "
          "np.save(path, y.astype(np.int64)))\n",
          cmd, path, a.ndim, a.dtype == DML_NPY_F32 ? "float32" : "integer");
  goto done;
oom:
  fprintf(stderr, "dml %s: out of memory reading %s\n", cmd, path);
done:
  dml_npy_free(&a);
  if (rc) cli_labels_free(out);
  return rc;
}

void cli_labels_free(cli_labels *l) {
  free(l->values);
  free(l->offsets);
  memset(l, 0, sizeof *l);
}

int cli_read_ids(const char *cmd, const char *path, int64_t **out, int64_t *n) {
  dml_npy a;
  *out = NULL;
  if (dml_npy_read(path, &a) != DML_OK) return cli_fail(cmd, "ids");
  if (a.ndim != 1 || a.dtype == DML_NPY_F32) {
    fprintf(stderr, "dml %s: %s: ids must be a 1-D int64 or int32 array\n", cmd, path);
    dml_npy_free(&a);
    return 1;
  }
  *out = malloc((size_t)(a.numel > 0 ? a.numel : 1) * sizeof **out);
  if (!*out) {
    dml_npy_free(&a);
    fprintf(stderr, "dml %s: out of memory\n", cmd);
    return 1;
  }
  for (int64_t i = 0; i < a.numel; i++) (*out)[i] = npy_int(&a, i);
  *n = a.numel;
  dml_npy_free(&a);
  return 0;
}

static dml_status write_text_body(FILE *f, const char *path, void *ctx) {
  const char *text = ctx;
  size_t n = strlen(text);
  if (fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF)
    return dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  return DML_OK;
}

dml_status cli_write_text(const char *path, const char *text) {
  return dml__write_atomic(path, write_text_body, (void *)text);
}
