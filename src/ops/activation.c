/* Pointwise activations; each backward uses the saved input (or output where cheaper):
 *   relu' = [x > 0]   leaky' = x > 0 ? 1 : slope   gelu(x) = x Phi(x), gelu' = Phi + x phi
 *   sigmoid' = y (1 - y)   tanh' = 1 - y^2   softplus' = sigmoid(beta x) (1 above threshold) */
#include <math.h>
#include <string.h>

#include "core/graph_internal.h"
#include "ops/activation_internal.h"
#include "dml/ops.h"

#define PAR_MIN 16384

typedef enum { ACT_RELU, ACT_LEAKY, ACT_GELU, ACT_SIGMOID, ACT_TANH, ACT_SOFTPLUS } act_kind;

static inline float softplus_f(float x, float beta, float threshold) {
  float bx = beta * x;
  if (bx > threshold) return x;
  return log1pf(expf(bx)) / beta;
}

/* dx (op)= expression of element i: stored into a fresh gradient buffer, else accumulated.
 * One loop per kind and mode, so each vectorises. */
#define ACT_GRAD_LOOP(expr)                                            \
  do {                                                                 \
    if (fresh) {                                                       \
      _Pragma("omp parallel for simd schedule(static) if (len > PAR_MIN)") \
      for (int64_t i = 0; i < len; i++) dx[i] = (expr);                \
    } else {                                                           \
      _Pragma("omp parallel for simd schedule(static) if (len > PAR_MIN)") \
      for (int64_t i = 0; i < len; i++) dx[i] += (expr);               \
    }                                                                  \
  } while (0)

static inline float gelu_grad(float v) {
  float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
  float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
  return cdf + v * pdf;
}

static inline float softplus_grad(float v, float beta, float threshold) {
  float bx = beta * v;
  return bx > threshold ? 1.0f : 1.0f / (1.0f + expf(-bx));
}

static void act_backward(dml_graph *g, dml_node *n) {
  (void)g;
  dml_node *x = n->inputs[0];
  act_kind kind = (act_kind)n->attr.i[0];
  float p0 = n->attr.f[2], p1 = n->attr.f[3];
  int64_t len = dml__numel(n);
  const float *dy = n->grad, *xd = x->value.data, *yd = n->value.data;
  float *dx = x->grad;
  const int fresh = dml__grad_fresh(n, 0);
  switch (kind) {
    case ACT_RELU: ACT_GRAD_LOOP(xd[i] > 0.0f ? dy[i] : 0.0f); break;
    case ACT_LEAKY: ACT_GRAD_LOOP(xd[i] > 0.0f ? dy[i] : p0 * dy[i]); break;
    case ACT_GELU: ACT_GRAD_LOOP(dy[i] * gelu_grad(xd[i])); break;
    case ACT_SIGMOID: ACT_GRAD_LOOP(dy[i] * yd[i] * (1.0f - yd[i])); break;
    case ACT_TANH: ACT_GRAD_LOOP(dy[i] * (1.0f - yd[i] * yd[i])); break;
    case ACT_SOFTPLUS: ACT_GRAD_LOOP(dy[i] * softplus_grad(xd[i], p0, p1)); break;
  }
}

static dml_status activation(dml_graph *g, const char *op, act_kind kind, dml_node *x, float p0,
                             float p1, dml_node **out) {
  DML_TRY(dml__check_node(op, x, "x"));
  dml_node *y;
  DML_TRY(dml__node_new(g, op, x->value.ndim, x->value.shape, &x, 1, &y));
  int64_t len = dml__numel(y);
  const float *xd = x->value.data;
  float *yd = y->value.data;
  if (kind == ACT_RELU) {
#pragma omp parallel for simd schedule(static) if (len > PAR_MIN)
    for (int64_t i = 0; i < len; i++) yd[i] = xd[i] > 0.0f ? xd[i] : 0.0f;
  } else {
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) {
    float v = xd[i];
    switch (kind) {
      case ACT_RELU: yd[i] = v > 0.0f ? v : 0.0f; break;
      case ACT_LEAKY: yd[i] = v > 0.0f ? v : p0 * v; break;
      case ACT_GELU: yd[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
      case ACT_SIGMOID: yd[i] = v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v)); break;
      case ACT_TANH: yd[i] = tanhf(v); break;
      default: yd[i] = softplus_f(v, p0, p1); break;
    }
  }
  }
  y->attr.i[0] = kind;
  y->attr.f[2] = p0;
  y->attr.f[3] = p1;
  y->backward = act_backward;
  y->backward_overwrites = 1;
  *out = y;
  return DML_OK;
}

/* ReLU that overwrites its input's value, and in backward hands its gradient buffer down, when
 * that is safe: x was made by an op whose backward never reads its own output (convolution,
 * linear, batch norm) and nothing else has consumed x yet. The caller promises nothing will
 * (a sequential model's next layer). Otherwise an ordinary ReLU. Saves one activation and one
 * gradient of x's size per ReLU; relu' = [y > 0] = [x > 0], so backward is unchanged. */
dml_status dml__op_relu_inplace(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "relu: out is NULL");
  DML_TRY(dml__check_node("relu", x, "x"));
  const char *op = x->op ? x->op : "";
  if (!strcmp(op, "batchnorm_relu")) { /* the batch norm before already applied it */
    *out = x;
    return DML_OK;
  }
  int safe = x->consumers == 0 && !x->param &&
             (!strcmp(op, "conv2d") || !strcmp(op, "conv1d") || !strcmp(op, "linear") ||
              !strcmp(op, "batchnorm"));
  if (!safe) return dml_op_relu(g, x, out);
  dml_node *y;
  DML_TRY(dml__node_new_view(g, "relu", x->value.ndim, x->value.shape, &x, 1, x->value.data, &y));
  int64_t len = dml__numel(y);
  float *yd = y->value.data;
#pragma omp parallel for simd schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) yd[i] = yd[i] > 0.0f ? yd[i] : 0.0f;
  y->attr.i[0] = ACT_RELU;
  y->backward = act_backward;
  y->backward_overwrites = 1;
  y->grad_in_place = 1;
  *out = y;
  return DML_OK;
}

dml_status dml_op_relu(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_relu: out is NULL");
  return activation(g, "relu", ACT_RELU, x, 0, 0, out);
}
dml_status dml_op_leaky_relu(dml_graph *g, dml_node *x, float negative_slope, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_leaky_relu: out is NULL");
  return activation(g, "leaky_relu", ACT_LEAKY, x, negative_slope, 0, out);
}
dml_status dml_op_gelu(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_gelu: out is NULL");
  return activation(g, "gelu", ACT_GELU, x, 0, 0, out);
}
dml_status dml_op_sigmoid(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_sigmoid: out is NULL");
  return activation(g, "sigmoid", ACT_SIGMOID, x, 0, 0, out);
}
dml_status dml_op_tanh(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_tanh: out is NULL");
  return activation(g, "tanh", ACT_TANH, x, 0, 0, out);
}
dml_status dml_op_softplus(dml_graph *g, dml_node *x, float beta, float threshold,
                           dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_softplus: out is NULL");
  if (!(beta > 0))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "softplus: beta must be positive (got %g)",
                      (double)beta);
  return activation(g, "softplus", ACT_SOFTPLUS, x, beta, threshold, out);
}
