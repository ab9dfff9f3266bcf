/* Inverted dropout. In training mode element i is kept when u_i >= p, where
 * u_i = dml_rng_uniform(seed, stream, i) with the graph's seed and a stream drawn from the
 * graph per call (dml__graph_random_stream: a function of the step and the op's order), so the
 * mask does not depend on the thread count.
 *   y = x m / (1 - p),  dx = dy m / (1 - p),  m in {0, 1}
 * The mask is saved (one byte per element) for backward. Every call takes a stream, also in
 * evaluation mode and with p = 0, so the masks of later dropout ops do not depend on the mode
 * or the rate of earlier ones. In evaluation mode and for p = 0 the op is the identity and
 * returns x itself. */

#include "core/graph_internal.h"
#include "dml/ops.h"
#include "dml/rng.h"

#define PAR_MIN 16384

typedef struct {
  unsigned char *mask; /* [numel]: 1 = kept */
  float scale;         /* 1 / (1 - p) */
} dropout_saved;

/* x, y, mask [len] */
static void dropout_forward(float *y, unsigned char *mask, const float *x, int64_t len, float p,
                            float scale, uint64_t seed, uint64_t stream) {
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) {
    unsigned char keep = dml_rng_uniform(seed, stream, (uint64_t)i) >= p;
    mask[i] = keep;
    y[i] = keep ? x[i] * scale : 0.0f;
  }
}

/* dx, dy, mask [len]; dx += dy m scale */
static void dropout_backward_kernel(float *dx, const float *dy, const unsigned char *mask,
                                    int64_t len, float scale) {
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) dx[i] += mask[i] ? dy[i] * scale : 0.0f;
}

static void dropout_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const dropout_saved *sv = n->saved;
  dropout_backward_kernel(n->inputs[0]->grad, n->grad, sv->mask, dml__numel(n), sv->scale);
}

dml_status dml_op_dropout(dml_graph *g, dml_node *x, float p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_dropout: out is NULL");
  DML_TRY(dml__check_node("dropout", x, "x"));
  if (!g || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dropout: graph or output is NULL");
  if (!(p >= 0.0f && p < 1.0f))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dropout: probability p must be in [0, 1) (got %g)", (double)p);
  if (g->backward_done)
    return dml__error(DML_ERR_STATE,
                      "dropout: the graph was already differentiated; call dml_graph_reset first");
  const uint64_t stream = dml__graph_random_stream(g);
  if (!dml_graph_training(g) || p == 0.0f) {
    *out = x;
    return DML_OK;
  }
  dml_node *y;
  DML_TRY(dml__node_new(g, "dropout", x->value.ndim, x->value.shape, &x, 1, &y));
  const int64_t len = dml__numel(y);
  dropout_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  unsigned char *mask = dml__graph_alloc(g, len);
  if (!sv || !mask)
    return dml__error(DML_ERR_NO_MEMORY, "dropout: out of memory for a %lld-element mask",
                      (long long)len);
  sv->mask = mask;
  sv->scale = 1.0f / (1.0f - p);
  dropout_forward(y->value.data, mask, x->value.data, len, p, sv->scale, g->seed, stream);
  y->saved = sv;
  y->backward = dropout_backward;
  *out = y;
  return DML_OK;
}
