/* Softmax, log-softmax and cross-entropy over the last dimension (rows of length D).
 * Every row is shifted by its maximum before exponentiating, so large logits do not overflow.
 *   softmax:      y = exp(x - max) / sum exp(x - max)      dx = y (dy - sum(dy y))
 *   log_softmax:  y = x - max - log sum exp(x - max)       dx = dy - exp(y) sum(dy)
 *   cross_entropy (torch.nn.functional.cross_entropy with label_smoothing eps, mean over N):
 *     loss_i = (1 - eps) (-logp[i, y_i]) + eps mean_c(-logp[i, c])
 *     dlogits[i, c] = dL / N (p[i, c] - (1 - eps) [c == y_i] - eps / C)
 * Row sums accumulate in double; the mean over rows adds per-row losses in row order, so the
 * result does not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "core/graph_internal.h"
#include "dml/ops.h"

#define PAR_MIN 16384

/* x, y [R, D]: y = log_softmax(x) row-wise when log_out, else softmax(x). */
static void softmax_rows(float *y, const float *x, int64_t rows, int64_t d, int log_out) {
#pragma omp parallel for schedule(static) if (rows * d > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *p = x + r * d;
    float *q = y + r * d;
    float mx = -INFINITY;
    for (int64_t k = 0; k < d; k++) mx = p[k] > mx ? p[k] : mx;
    double sum = 0.0;
    if (log_out) {
      for (int64_t k = 0; k < d; k++) sum += expf(p[k] - mx);
      const float lse = (float)log(sum);
      for (int64_t k = 0; k < d; k++) q[k] = p[k] - mx - lse;
    } else {
      for (int64_t k = 0; k < d; k++) {
        q[k] = expf(p[k] - mx);
        sum += q[k];
      }
      const float inv = (float)(1.0 / sum);
      for (int64_t k = 0; k < d; k++) q[k] *= inv;
    }
  }
}

/* dx [R, D] += softmax / log-softmax backward from dy and the saved output y. */
static void softmax_rows_backward(float *dx, const float *dy, const float *y, int64_t rows,
                                  int64_t d, int log_out) {
#pragma omp parallel for schedule(static) if (rows * d > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *yr = y + r * d, *dr = dy + r * d;
    float *q = dx + r * d;
    double acc = 0.0;
    if (log_out) {
      for (int64_t k = 0; k < d; k++) acc += dr[k];
      const float s = (float)acc;
      for (int64_t k = 0; k < d; k++) q[k] += dr[k] - expf(yr[k]) * s;
    } else {
      for (int64_t k = 0; k < d; k++) acc += (double)dr[k] * yr[k];
      const float s = (float)acc;
      for (int64_t k = 0; k < d; k++) q[k] += yr[k] * (dr[k] - s);
    }
  }
}

static void softmax_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const int64_t d = n->value.shape[n->value.ndim - 1];
  const int64_t rows = d > 0 ? dml__numel(n) / d : 0;
  softmax_rows_backward(n->inputs[0]->grad, n->grad, n->value.data, rows, d, (int)n->attr.i[0]);
}

static dml_status softmax_op(dml_graph *g, const char *op, dml_node *x, int log_out,
                             dml_node **out) {
  DML_TRY(dml__check_node(op, x, "x"));
  DML_TRY(dml__check_rank(op, x, 1, DML_MAX_DIMS));
  dml_node *y;
  DML_TRY(dml__node_new(g, op, x->value.ndim, x->value.shape, &x, 1, &y));
  const int64_t d = x->value.shape[x->value.ndim - 1];
  const int64_t rows = d > 0 ? dml__numel(x) / d : 0;
  softmax_rows(y->value.data, x->value.data, rows, d, log_out);
  y->attr.i[0] = log_out;
  y->backward = softmax_backward;
  *out = y;
  return DML_OK;
}

dml_status dml_op_softmax(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_softmax: out is NULL");
  return softmax_op(g, "softmax", x, 0, out);
}

dml_status dml_op_log_softmax(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_log_softmax: out is NULL");
  return softmax_op(g, "log_softmax", x, 1, out);
}

/* ---- cross-entropy ---- */

typedef struct {
  int64_t n, c;
  float smoothing;
  int32_t *labels; /* [N], copied */
  float *logp;     /* [N, C] log-softmax of the logits */
} ce_saved;

/* logp [N, C], labels [N]; row_loss [N] out. */
static void ce_row_losses(double *row_loss, const float *logp, const int32_t *labels, int64_t n,
                          int64_t c, float eps) {
#pragma omp parallel for schedule(static) if (n * c > PAR_MIN)
  for (int64_t i = 0; i < n; i++) {
    const float *lp = logp + i * c;
    double nll = -(double)lp[labels[i]];
    double smooth = 0.0;
    if (eps != 0.0f) {
      for (int64_t k = 0; k < c; k++) smooth -= lp[k];
      smooth /= (double)c;
    }
    row_loss[i] = (1.0 - (double)eps) * nll + (double)eps * smooth;
  }
}

/* dlogits [N, C] += scale (exp(logp) - (1 - eps) onehot - eps / C), scale = dL / N. */
static void ce_backward_kernel(float *dx, const float *logp, const int32_t *labels, int64_t n,
                               int64_t c, float eps, float scale) {
  const float off = eps / (float)c, on = 1.0f - eps;
#pragma omp parallel for schedule(static) if (n * c > PAR_MIN)
  for (int64_t i = 0; i < n; i++) {
    const float *lp = logp + i * c;
    float *q = dx + i * c;
    for (int64_t k = 0; k < c; k++) q[k] += scale * (expf(lp[k]) - off);
    q[labels[i]] -= scale * on;
  }
}

static void cross_entropy_backward(dml_graph *g, dml_node *node) {
  (void)g;
  const ce_saved *sv = node->saved;
  const float scale = node->grad[0] / (float)sv->n;
  ce_backward_kernel(node->inputs[0]->grad, sv->logp, sv->labels, sv->n, sv->c, sv->smoothing,
                     scale);
}

dml_status dml_op_cross_entropy(dml_graph *g, dml_node *logits, const int32_t *labels,
                                float label_smoothing, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_cross_entropy: out is NULL");
  static const char *op = "cross_entropy";
  DML_TRY(dml__check_node(op, logits, "logits"));
  DML_TRY(dml__check_rank(op, logits, 2, 2));
  if (!labels) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: labels is NULL", op);
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: label_smoothing must be in [0, 1] (got %g)",
                      op, (double)label_smoothing);
  const int64_t n = logits->value.shape[0], c = logits->value.shape[1];
  if (n == 0 || c == 0) {
    char s[96];
    dml_tensor_shape_str(&logits->value, s, sizeof s);
    return dml__error(DML_ERR_SHAPE, "%s: logits %s have no %s", op, s,
                      n == 0 ? "rows" : "classes");
  }
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= c)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: label of row %lld is %d, outside [0, %lld) (%lld classes)", op,
                        (long long)i, (int)labels[i], (long long)c, (long long)c);
  const int64_t scalar_shape[1] = {1};
  dml_node *y;
  DML_TRY(dml__node_new(g, op, 0, scalar_shape, &logits, 1, &y));
  ce_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  int32_t *lab = dml__graph_alloc(g, n * (int64_t)sizeof(int32_t));
  float *logp = dml__graph_alloc(g, n * c * (int64_t)sizeof(float));
  double *row_loss = dml__graph_alloc(g, n * (int64_t)sizeof(double));
  if (!sv || !lab || !logp || !row_loss)
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld x %lld logits", op,
                      (long long)n, (long long)c);
  memcpy(lab, labels, (size_t)n * sizeof(int32_t));
  softmax_rows(logp, logits->value.data, n, c, 1);
  ce_row_losses(row_loss, logp, lab, n, c, label_smoothing);
  double total = 0.0;
  for (int64_t i = 0; i < n; i++) total += row_loss[i];
  y->value.data[0] = (float)(total / (double)n);
  sv->n = n;
  sv->c = c;
  sv->smoothing = label_smoothing;
  sv->labels = lab;
  sv->logp = logp;
  y->saved = sv;
  y->backward = cross_entropy_backward;
  *out = y;
  return DML_OK;
}
