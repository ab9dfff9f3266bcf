/* Matrix products on OpenBLAS sgemm: matmul and linear (torch.nn.Linear layout).
 *   matmul: y[M,N] = op(a) op(b)       linear: y[N,O] = x[N,I] W[O,I]^T + b[O]
 * Backward: da = dy op(b)^T (transposed back as needed), db = op(a)^T dy; dW = dy^T x,
 * dx = dy W, db = column sums of dy. */
#include <cblas.h>
#include <string.h>

#include "core/graph_internal.h"
#include "dml/ops.h"

/* C[M,N] (+)= A·B with row-major operands and optional transposes (beta 0 or 1). */
static void sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, const float *b,
                  float beta, float *c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f) memset(c, 0, (size_t)(m * n) * sizeof(float));
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (blasint)m, (blasint)n, (blasint)k, 1.0f, a, (blasint)(ta ? m : k), b,
              (blasint)(tb ? k : n), beta, c, (blasint)n);
}

static void matmul_backward(dml_graph *g, dml_node *n) {
  (void)g;
  dml_node *a = n->inputs[0], *b = n->inputs[1];
  int ta = (int)n->attr.i[0], tb = (int)n->attr.i[1];
  int64_t m = n->value.shape[0], nn = n->value.shape[1];
  int64_t k = ta ? a->value.shape[0] : a->value.shape[1];
  const float *dy = n->grad;
  if (a->requires_grad) {
    /* op(a) = dy · op(b)^T  [m,k]; if ta, da = (dy op(b)^T)^T = op(b) dy^T [k,m] */
    if (!ta)
      sgemm(0, !tb, m, k, nn, dy, b->value.data, 1.0f, a->grad);
    else
      sgemm(tb, 1, k, m, nn, b->value.data, dy, 1.0f, a->grad);
  }
  if (b->requires_grad) {
    /* op(b) grad = op(a)^T dy [k,n]; if tb, db = dy^T op(a) [n,k] */
    if (!tb)
      sgemm(!ta, 0, k, nn, m, a->value.data, dy, 1.0f, b->grad);
    else
      sgemm(1, ta, nn, k, m, dy, a->value.data, 1.0f, b->grad);
  }
}

dml_status dml_op_matmul(dml_graph *g, dml_node *a, dml_node *b, int trans_a, int trans_b,
                         dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_matmul: out is NULL");
  DML_TRY(dml__check_node("matmul", a, "a"));
  DML_TRY(dml__check_node("matmul", b, "b"));
  DML_TRY(dml__check_rank("matmul", a, 2, 2));
  DML_TRY(dml__check_rank("matmul", b, 2, 2));
  int64_t m = trans_a ? a->value.shape[1] : a->value.shape[0];
  int64_t k = trans_a ? a->value.shape[0] : a->value.shape[1];
  int64_t k2 = trans_b ? b->value.shape[1] : b->value.shape[0];
  int64_t n = trans_b ? b->value.shape[0] : b->value.shape[1];
  if (k != k2) {
    char sa[64], sb[64];
    dml_tensor_shape_str(&a->value, sa, sizeof sa);
    dml_tensor_shape_str(&b->value, sb, sizeof sb);
    return dml__error(DML_ERR_SHAPE, "matmul: inner dimensions differ: a %s%s, b %s%s", sa,
                      trans_a ? "^T" : "", sb, trans_b ? "^T" : "");
  }
  dml_node *ins[2] = {a, b};
  int64_t shape[2] = {m, n};
  dml_node *y;
  DML_TRY(dml__node_new(g, "matmul", 2, shape, ins, 2, &y));
  sgemm(trans_a, trans_b, m, n, k, a->value.data, b->value.data, 0.0f, y->value.data);
  y->attr.i[0] = trans_a ? 1 : 0;
  y->attr.i[1] = trans_b ? 1 : 0;
  y->backward = matmul_backward;
  *out = y;
  return DML_OK;
}

static void linear_backward(dml_graph *g, dml_node *n) {
  (void)g;
  dml_node *x = n->inputs[0], *w = n->inputs[1];
  dml_node *b = n->n_inputs > 2 ? n->inputs[2] : NULL;
  int64_t batch = n->value.shape[0], o = n->value.shape[1], i = x->value.shape[1];
  const float *dy = n->grad;
  if (x->requires_grad)
    sgemm(0, 0, batch, i, o, dy, w->value.data, dml__grad_fresh(n, 0) ? 0.0f : 1.0f, x->grad);
  if (w->requires_grad)
    sgemm(1, 0, o, i, batch, dy, x->value.data, dml__grad_fresh(n, 1) ? 0.0f : 1.0f, w->grad);
  if (b && b->requires_grad) {
    float *db = b->grad;
    const float keep = dml__grad_fresh(n, 2) ? 0.0f : 1.0f;
#pragma omp parallel for schedule(static) if (o * batch > 32768)
    for (int64_t c = 0; c < o; c++) {
      float s = 0.0f;
      for (int64_t r = 0; r < batch; r++) s += dy[r * o + c];
      db[c] = keep != 0.0f ? db[c] + s : s;
    }
  }
}

dml_status dml_op_linear(dml_graph *g, dml_node *x, dml_node *w, dml_node *b, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_linear: out is NULL");
  DML_TRY(dml__check_node("linear", x, "x"));
  DML_TRY(dml__check_node("linear", w, "weight"));
  DML_TRY(dml__check_rank("linear", x, 2, 2));
  DML_TRY(dml__check_rank("linear", w, 2, 2));
  int64_t batch = x->value.shape[0], in = x->value.shape[1], o = w->value.shape[0];
  if (w->value.shape[1] != in)
    return dml__error(DML_ERR_SHAPE,
                      "linear: input has %lld features but the weight expects %lld "
                      "(weight shape [%lld, %lld])",
                      (long long)in, (long long)w->value.shape[1], (long long)o,
                      (long long)w->value.shape[1]);
  if (b && (b->value.ndim != 1 || b->value.shape[0] != o))
    return dml__error(DML_ERR_SHAPE, "linear: bias must have shape [%lld]", (long long)o);
  dml_node *ins[3] = {x, w, b};
  int64_t shape[2] = {batch, o};
  dml_node *y;
  DML_TRY(dml__node_new(g, "linear", 2, shape, ins, b ? 3 : 2, &y));
  float *yd = y->value.data;
  if (b) {
    const float *bd = b->value.data;
#pragma omp parallel for schedule(static) if (batch * o > 32768)
    for (int64_t r = 0; r < batch; r++) memcpy(yd + r * o, bd, (size_t)o * sizeof(float));
  }
  sgemm(0, 1, batch, o, in, x->value.data, w->value.data, b ? 1.0f : 0.0f, yd);
  y->backward = linear_backward;
  y->backward_overwrites = 1; /* fresh gradients are stored (GEMM beta 0), others accumulated */
  *out = y;
  return DML_OK;
}
