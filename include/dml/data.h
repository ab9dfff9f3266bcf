/* Data sets in memory: examples as float32 rows with integer labels, and the readers that fill
 * them. A dml_dataset is a caller-owned struct: a reader fills it, dml_dataset_free releases
 * its arrays. */
#ifndef DML_DATA_H
#define DML_DATA_H

#include <stdint.h>

#include "dml/status.h"
#include "dml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_dataset {
  float *x;        /* n * example_numel floats, row-major */
  int32_t *labels; /* n labels */
  int64_t n;
  int ndim;                      /* rank of one example */
  int64_t shape[DML_MAX_DIMS];   /* shape of one example */
  int64_t example_numel;
} dml_dataset;

void dml_dataset_free(dml_dataset *ds); /* NULL is a no-op */

/* Reads an IDX image file (ubyte, rank >= 2, e.g. MNIST/Fashion-MNIST [n,28,28]) and its IDX
 * label file (ubyte, rank 1), gzip-compressed or raw. Pixels are scaled to [0,1]; examples get
 * shape [1, H, W] (one channel). `limit` > 0 keeps only the first `limit` examples.
 * Errors name the file and the problem (wrong magic, truncated, counts differ). */
dml_status dml_data_read_idx(const char *images_path, const char *labels_path, int64_t limit,
                             dml_dataset *out);

/* x = (x - mean) / std over every value. */
dml_status dml_dataset_normalize(dml_dataset *ds, float mean, float std);

/* Keeps the examples whose label is in [lo, hi] (order preserved). */
dml_status dml_dataset_filter_labels(dml_dataset *ds, int32_t lo, int32_t hi);

#ifdef __cplusplus
}
#endif
#endif
