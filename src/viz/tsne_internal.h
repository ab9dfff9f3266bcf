/* Internal parts of exact t-SNE, exposed for tests: the perplexity search, the joint
 * probabilities and an optimisation run that records its error at each check. */
#ifndef DML_VIZ_TSNE_INTERNAL_H
#define DML_VIZ_TSNE_INTERNAL_H

#include <stdint.h>

#include "dml/viz.h"

#define DML__TSNE_MAX_N 10000

/* Binary search of the Gaussian precision beta_i of row i so that the conditional
 * distribution p_{j|i} = exp(-beta_i D_ij) / sum_{k != i} exp(-beta_i D_ik) has entropy
 * log(perplexity) within 1e-5 nats (at most 100 steps), exactly as scikit-learn 1.2's
 * sklearn.manifold._utils._binary_search_perplexity: beta starts at 1, doubles or halves until
 * the target is bracketed, then bisects. sqd: row i of the squared distances [n] (float, as
 * scikit-learn casts them). Returns beta_i; *sum gets the normaliser at that beta (1e-8 when
 * every exp underflows), so that p_{j|i} = exp(-sqd[j] * beta) / *sum. */
double dml__tsne_search_row(const float *sqd, int64_t n, int64_t i, double log_perplexity,
                            double *sum);

/* Conditional probabilities cond [n, n] (row i: p_{j|i}, zero diagonal) for the squared
 * distances sqd [n, n]. */
void dml__tsne_conditional(const float *sqd, int64_t n, double perplexity, double *cond);

/* Squared Euclidean distances of the rows of x [n, d], computed in double and rounded to
 * float, zero diagonal (scikit-learn's pairwise_distances(squared=True) on float32 input).
 * out [n, n]. */
dml_status dml__tsne_sqdist(const float *x, int64_t n, int64_t d, float *out);

/* Joint probabilities P [n, n] from the points x [n, d]: p_ij = (p_{j|i} + p_{i|j}) / (2n)
 * as scikit-learn's _joint_probabilities normalises it (by the sum of both matrices), floored
 * at DBL_EPSILON off the diagonal; zero diagonal. Memory: P itself plus 256 rows of n doubles. */
dml_status dml__tsne_joint(const float *x, int64_t n, int64_t d, double perplexity, float *P);

/* Errors seen at the checks of the optimisation (every 50 steps and the last step of each
 * phase): the KL divergence with the P in use (exaggerated in the first phase) at the map
 * before that step's update. */
typedef struct dml__tsne_trace {
  int cap, count;
  int *iteration;       /* [cap] */
  double *error;        /* [cap] */
  double *exaggeration; /* [cap] */
} dml__tsne_trace;

/* dml_tsne_2d with a trace (may be NULL). */
dml_status dml__tsne_run(const float *emb, int64_t n, int64_t d, const dml_tsne_config *cfg,
                         float *out, double *kl, dml__tsne_trace *trace);

#endif
