/* float32 n-d tensors, row-major (C order).
 * A dml_tensor is a small caller-owned struct. dml_tensor_init allocates `data` (64-byte aligned,
 * zeroed) and dml_tensor_free releases it; a tensor made by dml_tensor_view borrows its data and
 * dml_tensor_free leaves that data alone. */
#ifndef DML_TENSOR_H
#define DML_TENSOR_H

#include <stdint.h>

#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DML_MAX_DIMS 6

typedef struct dml_tensor {
  float *data;
  int ndim;
  int64_t shape[DML_MAX_DIMS];
  int owns_data; /* 1 when dml_tensor_free must release data */
} dml_tensor;

/* Number of elements (product of the shape; 1 for ndim == 0). */
int64_t dml_tensor_numel(const dml_tensor *t);

/* Allocates a zeroed tensor of the given shape. Fails on ndim outside [0, DML_MAX_DIMS],
 * negative sizes or overflow. */
dml_status dml_tensor_init(dml_tensor *t, int ndim, const int64_t *shape);

/* A tensor that borrows `data` (not copied, not freed). */
dml_tensor dml_tensor_view(float *data, int ndim, const int64_t *shape);

/* Releases owned data and zeroes the struct. NULL is a no-op. */
void dml_tensor_free(dml_tensor *t);

/* 1 when both tensors have the same ndim and shape. */
int dml_tensor_same_shape(const dml_tensor *a, const dml_tensor *b);

/* Writes "[2, 3, 4]" into buf (always terminated). */
void dml_tensor_shape_str(const dml_tensor *t, char *buf, int buf_size);

/* DML_ERR_NOT_FINITE (with the flat index in the message) if any element is NaN or Inf.
 * `what` names the tensor in the message. */
dml_status dml_tensor_check_finite(const dml_tensor *t, const char *what);

/* 64-byte aligned allocation for float buffers; free with dml_free_aligned. NULL on failure. */
void *dml_alloc_aligned(int64_t bytes);
void dml_free_aligned(void *p);

#ifdef __cplusplus
}
#endif
#endif
