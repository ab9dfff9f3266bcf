/* float32 tensors: allocation, views, shape helpers and finiteness checks. */
#include "dml/tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"

void *dml_alloc_aligned(int64_t bytes) {
  if (bytes < 0) return NULL;
  size_t n = (size_t)((bytes + 63) / 64 * 64);
  if (n == 0) n = 64;
  return aligned_alloc(64, n);
}

void dml_free_aligned(void *p) { free(p); }

int64_t dml_tensor_numel(const dml_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

dml_status dml_tensor_init(dml_tensor *t, int ndim, const int64_t *shape) {
  if (!t) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_tensor_init: tensor is NULL");
  memset(t, 0, sizeof *t);
  if (ndim < 0 || ndim > DML_MAX_DIMS)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "tensor rank %d is outside 0..%d", ndim,
                      DML_MAX_DIMS);
  if (ndim > 0 && !shape) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_tensor_init: shape is NULL");
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "tensor dimension %d is negative (%lld)", i,
                        (long long)shape[i]);
    if (shape[i] > 0 && n > INT64_MAX / 4 / shape[i])
      return dml__error(DML_ERR_INVALID_ARGUMENT, "tensor of this shape is too large");
    n *= shape[i];
    t->shape[i] = shape[i];
  }
  t->ndim = ndim;
  t->data = dml_alloc_aligned(n * (int64_t)sizeof(float));
  if (!t->data)
    return dml__error(DML_ERR_NO_MEMORY, "could not allocate %lld floats for a tensor",
                      (long long)n);
  memset(t->data, 0, (size_t)n * sizeof(float));
  t->owns_data = 1;
  return DML_OK;
}

dml_tensor dml_tensor_view(float *data, int ndim, const int64_t *shape) {
  dml_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.ndim = ndim < 0 ? 0 : (ndim > DML_MAX_DIMS ? DML_MAX_DIMS : ndim);
  for (int i = 0; i < t.ndim; i++) t.shape[i] = shape[i];
  return t;
}

void dml_tensor_free(dml_tensor *t) {
  if (!t) return;
  if (t->owns_data) dml_free_aligned(t->data);
  memset(t, 0, sizeof *t);
}

int dml_tensor_same_shape(const dml_tensor *a, const dml_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

void dml_tensor_shape_str(const dml_tensor *t, char *buf, int buf_size) {
  if (buf_size <= 0) return;
  int pos = snprintf(buf, (size_t)buf_size, "[");
  for (int i = 0; i < t->ndim && pos < buf_size; i++)
    pos += snprintf(buf + pos, (size_t)(buf_size - pos), i ? ", %lld" : "%lld",
                    (long long)t->shape[i]);
  if (pos < buf_size) snprintf(buf + pos, (size_t)(buf_size - pos), "]");
}

dml_status dml_tensor_check_finite(const dml_tensor *t, const char *what) {
  if (!t) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_tensor_check_finite: tensor is NULL");
  int64_t n = dml_tensor_numel(t);
  /* NaN and Inf are the floats whose exponent bits are all set: an integer test that the
   * compiler vectorises */
  uint32_t any = 0;
  const float *x = t->data;
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, x + i, sizeof u);
    any |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
  }
  int64_t bad = any ? 0 : -1;
  if (bad >= 0) {
    /* report the first offending element */
    for (int64_t i = 0; i < n; i++)
      if (!isfinite(t->data[i])) {
        bad = i;
        break;
      }
    return dml__error(DML_ERR_NOT_FINITE, "%s contains a non-finite value (%g) at flat index %lld",
                      what ? what : "tensor", (double)t->data[bad], (long long)bad);
  }
  return DML_OK;
}
