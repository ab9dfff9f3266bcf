/* NumPy .npy files: how embeddings, labels and neighbour lists move between dml and Python
 * (numpy.save / numpy.load). Little-endian, C-order arrays of float32, int32 or int64, format
 * versions 1.0, 2.0 and 3.0; anything else is an error that says how to convert the array. */
#ifndef DML_NPY_H
#define DML_NPY_H

#include <stdint.h>

#include "dml/status.h"
#include "dml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dml_npy_dtype {
  DML_NPY_F32, /* '<f4' */
  DML_NPY_I32, /* '<i4' */
  DML_NPY_I64  /* '<i8' */
} dml_npy_dtype;

typedef struct dml_npy {
  dml_npy_dtype dtype;
  int ndim;                    /* 0 .. DML_MAX_DIMS */
  int64_t shape[DML_MAX_DIMS];
  int64_t numel;               /* product of shape (1 for a 0-d array) */
  void *data;                  /* numel elements, 64-byte aligned; free with dml_npy_free */
} dml_npy;

/* Reads the array at path into *out. Errors name the file and the problem: missing or
 * unreadable (DML_ERR_IO); not a .npy file, a malformed header, a truncated or over-long body
 * (DML_ERR_FORMAT); a dtype other than the three above, big-endian or Fortran order
 * (DML_ERR_UNSUPPORTED, with the numpy call that converts it). */
dml_status dml_npy_read(const char *path, dml_npy *out);

/* Writes data (numel of shape elements of dtype, C order) to path as format version 1.0 (2.0
 * when the header needs it), atomically: a temporary file renamed over path. */
dml_status dml_npy_write(const char *path, dml_npy_dtype dtype, int ndim, const int64_t *shape,
                         const void *data);

/* Releases out->data and clears *out; NULL is a no-op. */
void dml_npy_free(dml_npy *a);

/* Bytes per element of a dtype. */
int64_t dml_npy_itemsize(dml_npy_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
