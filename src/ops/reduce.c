/* Reductions to one element (a rank-0 result, as torch): sum, mean and mean squared error.
 *   sum:  y = sum x               dx += dy
 *   mean: y = sum x / n           dx += dy / n
 *   mse:  y = sum (a - b)^2 / n   da += 2 dy (a - b) / n,  db -= 2 dy (a - b) / n
 * Sums accumulate in double over fixed blocks of BLOCK elements whose partial sums are added
 * in block order, so the result is the same for any thread count. */
#include "core/graph_internal.h"
#include "dml/ops.h"

#define BLOCK 16384
#define PAR_MIN 32768

/* sum of a[i] (b == NULL) or of (a[i] - b[i])^2 over [0, n); partial [ceil(n / BLOCK)] scratch */
static double blocked_sum(const float *a, const float *b, int64_t n, double *partial) {
  const int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
  for (int64_t bk = 0; bk < blocks; bk++) {
    const int64_t lo = bk * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
    double s = 0.0;
    if (b) {
#pragma omp simd reduction(+ : s)
      for (int64_t i = lo; i < hi; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
      }
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t i = lo; i < hi; i++) s += a[i];
    }
    partial[bk] = s;
  }
  double total = 0.0;
  for (int64_t bk = 0; bk < blocks; bk++) total += partial[bk];
  return total;
}

enum { RED_SUM, RED_MEAN, RED_MSE };

static void reduce_backward(dml_graph *g, dml_node *node) {
  (void)g;
  const int kind = (int)node->attr.i[0];
  dml_node *a = node->inputs[0];
  const int64_t n = dml__numel(a);
  const float dy = node->grad[0];
  if (kind != RED_MSE) {
    const float v = kind == RED_MEAN ? dy / (float)n : dy;
    float *da = a->grad;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) da[i] += v;
    return;
  }
  dml_node *b = node->inputs[1];
  const float k = 2.0f * dy / (float)n;
  const float *ad = a->value.data, *bd = b->value.data;
  float *da = a->requires_grad ? a->grad : NULL, *db = b->requires_grad ? b->grad : NULL;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
  for (int64_t i = 0; i < n; i++) {
    const float d = k * (ad[i] - bd[i]);
    if (da) da[i] += d;
    if (db) db[i] -= d;
  }
}

static dml_status reduce_op(dml_graph *g, const char *op, int kind, dml_node *a, dml_node *b,
                            dml_node **out) {
  const int64_t n = dml__numel(a);
  if (kind != RED_SUM && n == 0) {
    char s[96];
    dml_tensor_shape_str(&a->value, s, sizeof s);
    return dml__error(DML_ERR_SHAPE, "%s: the mean over an empty input %s is undefined", op, s);
  }
  dml_node *ins[2] = {a, b};
  dml_node *y;
  DML_TRY(dml__node_new(g, op, 0, NULL, ins, b ? 2 : 1, &y));
  double *partial = dml__graph_alloc(g, ((n + BLOCK - 1) / BLOCK) * (int64_t)sizeof(double));
  if (!partial) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", op);
  double s = blocked_sum(a->value.data, b ? b->value.data : NULL, n, partial);
  y->value.data[0] = (float)(kind == RED_SUM ? s : s / (double)n);
  y->attr.i[0] = kind;
  y->backward = reduce_backward;
  *out = y;
  return DML_OK;
}

dml_status dml_op_sum(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_sum: out is NULL");
  DML_TRY(dml__check_node("sum", x, "x"));
  return reduce_op(g, "sum", RED_SUM, x, NULL, out);
}

dml_status dml_op_mean(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_mean: out is NULL");
  DML_TRY(dml__check_node("mean", x, "x"));
  return reduce_op(g, "mean", RED_MEAN, x, NULL, out);
}

dml_status dml_op_mse(dml_graph *g, dml_node *a, dml_node *b, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_mse: out is NULL");
  DML_TRY(dml__check_node("mse", a, "a"));
  DML_TRY(dml__check_node("mse", b, "b"));
  if (!dml_tensor_same_shape(&a->value, &b->value)) {
    char sa[96], sb[96];
    dml_tensor_shape_str(&a->value, sa, sizeof sa);
    dml_tensor_shape_str(&b->value, sb, sizeof sb);
    return dml__error(DML_ERR_SHAPE, "mse: a %s and b %s must have the same shape", sa, sb);
  }
  return reduce_op(g, "mse", RED_MSE, a, b, out);
}
