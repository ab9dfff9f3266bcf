/* .npy data set reader: float32 examples [n, ...] and int32/int64 labels [n] (dml/npy.h does
 * the file format; this file checks what a training set needs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/npy.h"
#include "data/data_internal.h"

static const char *dtype_name(dml_npy_dtype t) {
  return t == DML_NPY_F32 ? "float32" : t == DML_NPY_I32 ? "int32" : "int64";
}

static dml_status check_x(const char *path, const dml_npy *a) {
  if (a->dtype != DML_NPY_F32)
    return dml__error(DML_ERR_UNSUPPORTED,
                      "%s: examples must be float32, the array is %s (save x.astype(numpy.float32))",
                      path, dtype_name(a->dtype));
  if (a->ndim < 2)
    return dml__error(DML_ERR_SHAPE,
                      "%s: array of rank %d; examples need shape [n, ...] of rank >= 2 "
                      "(reshape a vector to [n, 1])",
                      path, a->ndim);
  if (a->shape[0] < 1 || a->numel == 0)
    return dml__error(DML_ERR_FORMAT, "%s: no examples (shape [%lld, ...] with %lld values)",
                      path, (long long)a->shape[0], (long long)a->numel);
  return DML_OK;
}

static dml_status check_labels(const char *path, const dml_npy *a, const char *x_path,
                               int64_t n) {
  if (a->dtype == DML_NPY_F32)
    return dml__error(DML_ERR_UNSUPPORTED,
                      "%s: labels must be int32 or int64, the array is float32 (save "
                      "y.astype(numpy.int64))",
                      path);
  if (a->ndim != 1)
    return dml__error(DML_ERR_SHAPE, "%s: labels must have shape [n], the array has rank %d",
                      path, a->ndim);
  if (a->shape[0] != n)
    return dml__error(DML_ERR_SHAPE, "%s has %lld examples but %s has %lld labels", x_path,
                      (long long)n, path, (long long)a->shape[0]);
  return DML_OK;
}

dml_status dml_data_read_npy(const char *x_path, const char *labels_path, int64_t limit,
                             dml_dataset *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_npy: out is NULL");
  memset(out, 0, sizeof *out);
  if (!x_path) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_npy: x_path is NULL");
  dml_npy xa, la;
  memset(&xa, 0, sizeof xa);
  memset(&la, 0, sizeof la);
  dml_status st = dml_npy_read(x_path, &xa);
  if (st == DML_OK) st = check_x(x_path, &xa);
  if (st == DML_OK && labels_path) {
    st = dml_npy_read(labels_path, &la);
    if (st == DML_OK) st = check_labels(labels_path, &la, x_path, xa.shape[0]);
  }
  if (st != DML_OK) {
    dml_npy_free(&xa);
    dml_npy_free(&la);
    return st;
  }
  const int64_t n = (limit > 0 && limit < xa.shape[0]) ? limit : xa.shape[0];
  const int64_t d = xa.numel / xa.shape[0];
  const float *x = xa.data;
  for (int64_t i = 0; i < n * d && st == DML_OK; i++)
    if (!isfinite(x[i]))
      st = dml__error(DML_ERR_NOT_FINITE, "%s: row %lld, value %lld is %s", x_path,
                      (long long)(i / d), (long long)(i % d), isnan(x[i]) ? "NaN" : "infinite");
  out->labels = malloc((size_t)n * sizeof(int32_t));
  if (st == DML_OK && !out->labels) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
  int64_t maxl = 0;
  for (int64_t i = 0; i < n && st == DML_OK; i++) {
    int64_t v = !labels_path ? 0
                : la.dtype == DML_NPY_I32 ? ((const int32_t *)la.data)[i]
                                          : ((const int64_t *)la.data)[i];
    if (v < 0 || v >= INT32_MAX)
      st = dml__error(DML_ERR_FORMAT, "%s: row %lld: label %lld; labels must be in [0, 2^31 - 1)",
                      labels_path, (long long)i, (long long)v);
    else out->labels[i] = (int32_t)v;
    if (v > maxl) maxl = v;
  }
  if (st == DML_OK) {
    if (n == xa.shape[0]) {
      out->x = xa.data; /* dml_npy_read allocates with dml_alloc_aligned */
      xa.data = NULL;
    } else {
      out->x = dml_alloc_aligned(n * d * (int64_t)sizeof(float));
      if (out->x) memcpy(out->x, x, (size_t)(n * d) * sizeof(float));
      else st = dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", x_path);
    }
  }
  if (st == DML_OK) {
    out->n = n;
    out->ndim = xa.ndim - 1;
    for (int i = 1; i < xa.ndim; i++) out->shape[i - 1] = xa.shape[i];
    out->example_numel = d;
    out->num_classes = (int32_t)(maxl + 1);
  }
  dml_npy_free(&xa);
  dml_npy_free(&la);
  if (st != DML_OK) dml_dataset_free(out);
  return st;
}
