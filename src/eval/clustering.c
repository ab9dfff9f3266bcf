/* Clustering quality of an embedding: k-means with k = the number of classes, then NMI and
 * AMI of the clusters against the classes. */
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/eval.h"

#define KMEANS_MAX_ITER 300 /* scikit-learn's KMeans default */

static int cmp_i32(const void *x, const void *y) {
  const int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
  return (a > b) - (a < b);
}

dml_status dml_eval_clustering(const float *emb, const int32_t *labels, int64_t n, int64_t d,
                               uint64_t seed, dml_clustering_report *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_eval_clustering: out is NULL");
  memset(out, 0, sizeof *out);
  if (!emb || !labels || n < 1 || d < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_eval_clustering: need embeddings and labels of n >= 1 items, d >= 1 "
                      "(got n %lld, d %lld)",
                      (long long)n, (long long)d);
  int32_t *sorted = malloc((size_t)n * sizeof *sorted);
  int32_t *assign = malloc((size_t)n * sizeof *assign);
  dml_status status = DML_OK;
  if (!sorted || !assign) {
    status = dml__error(DML_ERR_NO_MEMORY, "dml_eval_clustering: out of memory");
    goto done;
  }
  memcpy(sorted, labels, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_i32);
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) k += i == 0 || sorted[i] != sorted[i - 1];
  out->clusters = k;
  status = dml_kmeans(emb, n, d, k, KMEANS_MAX_ITER, seed, assign, NULL, &out->inertia);
  if (status == DML_OK) status = dml_nmi(labels, assign, n, &out->nmi_arithmetic, &out->nmi);
  if (status == DML_OK) status = dml_ami(labels, assign, n, &out->ami);
done:
  free(sorted);
  free(assign);
  return status;
}
