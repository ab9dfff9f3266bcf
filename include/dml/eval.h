/* Retrieval quality of an embedding. The caller owns every array; nothing is retained.
 * Definitions follow Musgrave et al., "A Metric Learning Reality Check" (ECCV 2020):
 * the query set is the reference set with each query excluded from its own ranking; R is the
 * number of other items of the query's class; queries with R = 0 are skipped. Ties in distance
 * rank the lower index first. */
#ifndef DML_EVAL_H
#define DML_EVAL_H

#include <stdint.h>

#include "dml/distance.h"
#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_retrieval_metrics {
  double precision_at_1; /* P@1 */
  double r_precision;    /* (relevant in top R) / R */
  double map_at_r;       /* (1/R) sum_{k<=R} P@k rel_k */
  int64_t queries;       /* queries evaluated (R > 0) */
} dml_retrieval_metrics;

/* emb: n x d row-major; labels: n. NaN/Inf in emb is an error. */
dml_status dml_eval_retrieval(const float *emb, const int32_t *labels, int64_t n, int64_t d,
                              dml_distance dist, dml_retrieval_metrics *out);

#ifdef __cplusplus
}
#endif
#endif
