/* Elementwise arithmetic: add, sub, mul (same shape or scalar b), scale, and bias along dim 1.
 *   y = a + b   da += dy, db += dy (summed when b is a broadcast scalar)
 *   y = a * b   da += dy b, db += dy a
 *   y[n,c,...] = x[n,c,...] + bias[c]   dbias[c] += sum over n and positions of dy */
#include <string.h>

#include "core/graph_internal.h"
#include "dml/ops.h"

#define PAR_MIN 32768

enum { EW_ADD, EW_SUB, EW_MUL };

static dml_status check_binary(const char *op, dml_node *a, dml_node *b) {
  DML_TRY(dml__check_node(op, a, "a"));
  DML_TRY(dml__check_node(op, b, "b"));
  if (dml_tensor_same_shape(&a->value, &b->value) || dml__numel(b) == 1) return DML_OK;
  char sa[96], sb[96];
  dml_tensor_shape_str(&a->value, sa, sizeof sa);
  dml_tensor_shape_str(&b->value, sb, sizeof sb);
  return dml__error(DML_ERR_SHAPE, "%s: shapes %s and %s differ (b may also be a scalar)", op, sa,
                    sb);
}

static void binary_backward(dml_graph *g, dml_node *n) {
  (void)g;
  dml_node *a = n->inputs[0], *b = n->inputs[1];
  int kind = (int)n->attr.i[0];
  int64_t len = dml__numel(n);
  int scalar_b = dml__numel(b) == 1 && len != 1;
  const float *dy = n->grad, *ad = a->value.data, *bd = b->value.data;
  if (a->requires_grad) {
    float *da = a->grad;
    if (kind == EW_MUL) {
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
      for (int64_t i = 0; i < len; i++) da[i] += dy[i] * bd[scalar_b ? 0 : i];
    } else {
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
      for (int64_t i = 0; i < len; i++) da[i] += dy[i];
    }
  }
  if (b->requires_grad) {
    float *db = b->grad;
    float sign = kind == EW_SUB ? -1.0f : 1.0f;
    if (scalar_b) {
      double s = 0;
      for (int64_t i = 0; i < len; i++) s += kind == EW_MUL ? (double)dy[i] * ad[i] : dy[i];
      db[0] += sign * (float)s;
    } else if (kind == EW_MUL) {
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
      for (int64_t i = 0; i < len; i++) db[i] += dy[i] * ad[i];
    } else {
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
      for (int64_t i = 0; i < len; i++) db[i] += sign * dy[i];
    }
  }
}

static dml_status binary(dml_graph *g, const char *op, int kind, dml_node *a, dml_node *b,
                         dml_node **out) {
  DML_TRY(check_binary(op, a, b));
  dml_node *ins[2] = {a, b};
  dml_node *y;
  DML_TRY(dml__node_new(g, op, a->value.ndim, a->value.shape, ins, 2, &y));
  int64_t len = dml__numel(y);
  int scalar_b = dml__numel(b) == 1;
  const float *ad = a->value.data, *bd = b->value.data;
  float *yd = y->value.data;
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) {
    float bv = bd[scalar_b ? 0 : i];
    yd[i] = kind == EW_ADD ? ad[i] + bv : kind == EW_SUB ? ad[i] - bv : ad[i] * bv;
  }
  y->attr.i[0] = kind;
  y->backward = binary_backward;
  *out = y;
  return DML_OK;
}

dml_status dml_op_add(dml_graph *g, dml_node *a, dml_node *b, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_add: out is NULL");
  return binary(g, "add", EW_ADD, a, b, out);
}
dml_status dml_op_sub(dml_graph *g, dml_node *a, dml_node *b, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_sub: out is NULL");
  return binary(g, "sub", EW_SUB, a, b, out);
}
dml_status dml_op_mul(dml_graph *g, dml_node *a, dml_node *b, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_mul: out is NULL");
  return binary(g, "mul", EW_MUL, a, b, out);
}

static void scale_backward(dml_graph *g, dml_node *n) {
  (void)g;
  dml_node *x = n->inputs[0];
  float s = n->attr.f[0];
  int64_t len = dml__numel(n);
  const float *dy = n->grad;
  float *dx = x->grad;
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) dx[i] += s * dy[i];
}

dml_status dml_op_scale(dml_graph *g, dml_node *x, float s, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_scale: out is NULL");
  DML_TRY(dml__check_node("scale", x, "x"));
  dml_node *y;
  DML_TRY(dml__node_new(g, "scale", x->value.ndim, x->value.shape, &x, 1, &y));
  int64_t len = dml__numel(y);
  const float *xd = x->value.data;
  float *yd = y->value.data;
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) yd[i] = s * xd[i];
  y->attr.f[0] = s;
  y->backward = scale_backward;
  *out = y;
  return DML_OK;
}

/* x viewed as [outer = N, C, inner = prod(dims after 1)] */
static void bias_backward(dml_graph *g, dml_node *n) {
  (void)g;
  dml_node *x = n->inputs[0], *b = n->inputs[1];
  int64_t outer = n->value.shape[0], c = n->value.shape[1];
  int64_t inner = dml__numel(n) / (outer * c > 0 ? outer * c : 1);
  const float *dy = n->grad;
  if (x->requires_grad) {
    int64_t len = dml__numel(n);
    float *dx = x->grad;
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
    for (int64_t i = 0; i < len; i++) dx[i] += dy[i];
  }
  if (b->requires_grad) {
    float *db = b->grad;
#pragma omp parallel for schedule(static) if (outer * c * inner > PAR_MIN)
    for (int64_t ch = 0; ch < c; ch++) {
      double s = 0;
      for (int64_t o = 0; o < outer; o++) {
        const float *p = dy + (o * c + ch) * inner;
        for (int64_t k = 0; k < inner; k++) s += p[k];
      }
      db[ch] += (float)s;
    }
  }
}

dml_status dml_op_add_bias(dml_graph *g, dml_node *x, dml_node *bias, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_add_bias: out is NULL");
  DML_TRY(dml__check_node("add_bias", x, "x"));
  DML_TRY(dml__check_node("add_bias", bias, "bias"));
  DML_TRY(dml__check_rank("add_bias", x, 2, DML_MAX_DIMS));
  int64_t outer = x->value.shape[0], c = x->value.shape[1];
  if (bias->value.ndim != 1 || bias->value.shape[0] != c)
    return dml__error(DML_ERR_SHAPE, "add_bias: bias must have shape [%lld] (dimension 1 of x)",
                      (long long)c);
  dml_node *ins[2] = {x, bias};
  dml_node *y;
  DML_TRY(dml__node_new(g, "add_bias", x->value.ndim, x->value.shape, ins, 2, &y));
  int64_t inner = outer * c > 0 ? dml__numel(x) / (outer * c) : 0;
  const float *xd = x->value.data, *bd = bias->value.data;
  float *yd = y->value.data;
#pragma omp parallel for schedule(static) if (outer * c * inner > PAR_MIN)
  for (int64_t oc = 0; oc < outer * c; oc++) {
    float bv = bd[oc % c];
    for (int64_t k = 0; k < inner; k++) yd[oc * inner + k] = xd[oc * inner + k] + bv;
  }
  y->backward = bias_backward;
  *out = y;
  return DML_OK;
}
