/* Layers with parameters: linear, conv1d, conv2d, batchnorm, layernorm.
 * Output sizes (torch): L_out = floor((L + 2 pad - dilation (k - 1) - 1) / stride) + 1.
 * Initialisation (torch defaults): weight kaiming_uniform(a = sqrt(5)), i.e. U(-b, b) with
 * b = sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(fan_in); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in));
 * norm weight 1, bias 0, running mean 0, running var 1. Each parameter draws from its own RNG
 * stream (its index in the store), so appending layers never changes earlier weights. */
#include <math.h>
#include <stdio.h>

#include "dml/ops.h"
#include "ops/norm_internal.h"
#include "nn/layer.h"

#define MAX_FEATURES ((int64_t)1 << 24)
#define MAX_WINDOW ((int64_t)1 << 16)

static dml_status fill(dml__layer *l, int k, dml_init_kind kind, float scale, uint64_t seed) {
  dml_param *p = dml__layer_param(l, k);
  return dml_init_fill(p->value, p->numel, kind, p->fan_in, p->fan_out, scale, seed,
                       (uint64_t)l->params[k]);
}

/* Weight (k = 0) and optional bias (k = 1) as torch's Linear / ConvNd reset_parameters, or
 * the chosen initialiser for the weight (ReLU gain for Kaiming, gain 1 for Xavier). */
static dml_status init_weight_bias(dml__layer *l, int init_kind, int has_bias, uint64_t seed) {
  dml_param *w = dml__layer_param(l, 0);
  if (init_kind < 0)
    DML_TRY(fill(l, 0, DML_INIT_KAIMING_UNIFORM, sqrtf(5.0f), seed));
  else
    DML_TRY(fill(l, 0, (dml_init_kind)init_kind, 0.0f, seed));
  if (has_bias) DML_TRY(fill(l, 1, DML_INIT_UNIFORM, (float)(1.0 / sqrt((double)w->fan_in)), seed));
  return DML_OK;
}

static dml_status rank_error(const dml__layer_ctx *c, const char *expected) {
  char s[96];
  dml__shape_str(c->in_ndim, c->in_shape, s, sizeof s);
  return dml__layer_error(c, DML_ERR_SHAPE, "expects %s, but the incoming example shape is %s",
                          expected, s);
}

/* ---- linear: y[N,out] = x[N,in] W[out,in]^T + b[out] ---- */

typedef struct {
  dml__layer base;
  int bias, init;
} linear_layer;

static dml_status linear_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  linear_layer *L = (linear_layer *)l;
  dml_node *w, *b = NULL;
  DML_TRY(dml__layer_param_node(l, g, 0, &w));
  if (L->bias) DML_TRY(dml__layer_param_node(l, g, 1, &b));
  return dml_op_linear(g, x, w, b, y);
}

static dml_status linear_init(dml__layer *l, uint64_t seed) {
  linear_layer *L = (linear_layer *)l;
  return init_weight_bias(l, L->init, L->bias, seed);
}

static const dml__layer_vtable linear_vt = {linear_forward, linear_init, NULL};

dml_status dml__layer_linear_create(const dml__layer_ctx *c, dml__layer **out) {
  if (c->in_ndim != 1)
    return rank_error(c, "a flat example [features] (add a flatten layer before it)");
  int64_t n_out;
  int bias, init;
  DML_TRY(dml__layer_opt_int(c, "out", 0, 1, MAX_FEATURES, 1, &n_out));
  DML_TRY(dml__layer_opt_bool(c, "bias", 1, &bias));
  DML_TRY(dml__layer_opt_init(c, &init));
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &linear_vt, sizeof(linear_layer), &l));
  linear_layer *L = (linear_layer *)l;
  L->bias = bias;
  L->init = init;
  int64_t n_in = c->in_shape[0];
  int64_t wshape[2] = {n_out, n_in};
  dml_status st = dml__layer_add_param(l, c, "weight", 2, wshape, 1, n_in, n_out);
  if (st == DML_OK && bias) st = dml__layer_add_param(l, c, "bias", 1, &n_out, 1, n_in, n_out);
  if (st != DML_OK) {
    dml__layer_free(l);
    return st;
  }
  l->out_ndim = 1;
  l->out_shape[0] = n_out;
  *out = l;
  return DML_OK;
}

/* ---- conv1d / conv2d: y[N,O,...] = conv(x[N,C,...], W[O,C/groups,k...]) + b[O] ---- */

typedef struct {
  dml__layer base;
  int dims; /* 1 or 2 */
  int bias, init;
  dml_conv_params p;
} conv_layer;

static dml_status conv_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  conv_layer *L = (conv_layer *)l;
  dml_node *w, *b = NULL;
  DML_TRY(dml__layer_param_node(l, g, 0, &w));
  if (L->bias) DML_TRY(dml__layer_param_node(l, g, 1, &b));
  if (L->dims == 1) return dml_op_conv1d(g, x, w, b, &L->p, y);
  return dml_op_conv2d(g, x, w, b, &L->p, y);
}

static dml_status conv_init(dml__layer *l, uint64_t seed) {
  conv_layer *L = (conv_layer *)l;
  return init_weight_bias(l, L->init, L->bias, seed);
}

static const dml__layer_vtable conv_vt = {conv_forward, conv_init, NULL};

/* Output size of one spatial dimension, or a shape error naming the sizes. */
static dml_status conv_out_size(const dml__layer_ctx *c, const char *dim, int64_t in, int64_t k,
                                int64_t stride, int64_t pad, int64_t dilation, int64_t *out) {
  int64_t eff = dilation * (k - 1) + 1, padded = in + 2 * pad;
  if (padded < eff) {
    char s[96];
    dml__shape_str(c->in_ndim, c->in_shape, s, sizeof s);
    return dml__layer_error(c, DML_ERR_SHAPE,
                            "the %s window (%lld with dilation) is larger than the padded %s "
                            "(%lld) of the incoming example shape %s",
                            dim, (long long)eff, dim, (long long)padded, s);
  }
  *out = (padded - eff) / stride + 1;
  return DML_OK;
}

dml_status dml__layer_conv_create(const dml__layer_ctx *c, dml__layer **out) {
  int dims = c->kind[4] == '1' ? 1 : 2;
  if (c->in_ndim != dims + 1)
    return rank_error(c, dims == 1 ? "an example of shape [channels, length]"
                                   : "an example of shape [channels, height, width]");
  int64_t n_out, groups, k[2], stride[2], pad[2], dil[2];
  int bias, init;
  DML_TRY(dml__layer_opt_int(c, "out", 0, 1, MAX_FEATURES, 1, &n_out));
  if (dims == 1) {
    DML_TRY(dml__layer_opt_int(c, "k", 0, 1, MAX_WINDOW, 1, &k[0]));
    DML_TRY(dml__layer_opt_int(c, "stride", 1, 1, MAX_WINDOW, 0, &stride[0]));
    DML_TRY(dml__layer_opt_int(c, "pad", 0, 0, MAX_WINDOW, 0, &pad[0]));
    DML_TRY(dml__layer_opt_int(c, "dilation", 1, 1, MAX_WINDOW, 0, &dil[0]));
    k[1] = stride[1] = dil[1] = 1;
    pad[1] = 0;
  } else {
    int has_k = dml__layer_opt_str(c, "k") != NULL;
    int has_kh = dml__layer_opt_str(c, "kh") != NULL, has_kw = dml__layer_opt_str(c, "kw") != NULL;
    if (has_k && (has_kh || has_kw))
      return dml__layer_error(c, DML_ERR_FORMAT, "give either k= or kh= and kw=, not both");
    if (has_k) {
      DML_TRY(dml__layer_opt_int2(c, "k", 0, 1, MAX_WINDOW, k));
    } else if (has_kh && has_kw) {
      DML_TRY(dml__layer_opt_int(c, "kh", 0, 1, MAX_WINDOW, 1, &k[0]));
      DML_TRY(dml__layer_opt_int(c, "kw", 0, 1, MAX_WINDOW, 1, &k[1]));
    } else {
      return dml__layer_error(c, DML_ERR_FORMAT,
                              "missing the kernel size: give k=K (or k=KH,KW), or kh= and kw=");
    }
    DML_TRY(dml__layer_opt_int2(c, "stride", 1, 1, MAX_WINDOW, stride));
    DML_TRY(dml__layer_opt_int2(c, "pad", 0, 0, MAX_WINDOW, pad));
    DML_TRY(dml__layer_opt_int2(c, "dilation", 1, 1, MAX_WINDOW, dil));
  }
  DML_TRY(dml__layer_opt_int(c, "groups", 1, 1, MAX_FEATURES, 0, &groups));
  DML_TRY(dml__layer_opt_bool(c, "bias", 1, &bias));
  DML_TRY(dml__layer_opt_init(c, &init));
  int64_t ch = c->in_shape[0];
  if (ch % groups != 0 || n_out % groups != 0)
    return dml__layer_error(c, DML_ERR_SHAPE,
                            "groups=%lld must divide both the input channels (%lld) and out "
                            "(%lld)",
                            (long long)groups, (long long)ch, (long long)n_out);
  int64_t osz[2] = {1, 1};
  static const char *const dim_names[2][2] = {{"length", ""}, {"height", "width"}};
  for (int d = 0; d < dims; d++)
    DML_TRY(conv_out_size(c, dim_names[dims - 1][d], c->in_shape[1 + d], k[d], stride[d], pad[d],
                          dil[d], &osz[d]));

  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &conv_vt, sizeof(conv_layer), &l));
  conv_layer *L = (conv_layer *)l;
  L->dims = dims;
  L->bias = bias;
  L->init = init;
  L->p = dml_conv_params_default();
  for (int d = 0; d < 2; d++) {
    L->p.stride[d] = (int)stride[d];
    L->p.padding[d] = (int)pad[d];
    L->p.dilation[d] = (int)dil[d];
  }
  L->p.groups = (int)groups;
  int64_t kprod = k[0] * (dims == 2 ? k[1] : 1);
  int64_t wshape[4] = {n_out, ch / groups, k[0], k[1]};
  int64_t fan_in = ch / groups * kprod, fan_out = n_out * kprod;
  dml_status st = dml__layer_add_param(l, c, "weight", 2 + dims, wshape, 1, fan_in, fan_out);
  if (st == DML_OK && bias) st = dml__layer_add_param(l, c, "bias", 1, &n_out, 1, fan_in, fan_out);
  if (st != DML_OK) {
    dml__layer_free(l);
    return st;
  }
  l->out_ndim = 1 + dims;
  l->out_shape[0] = n_out;
  for (int d = 0; d < dims; d++) l->out_shape[1 + d] = osz[d];
  if (dml__shape_numel(l->out_ndim, l->out_shape) < 0) {
    dml__layer_free(l);
    return dml__layer_error(c, DML_ERR_SHAPE, "the output would have more than 2^40 values");
  }
  *out = l;
  return DML_OK;
}

/* ---- batchnorm over x[N,C], x[N,C,L] or x[N,C,H,W] ---- */

typedef struct {
  dml__layer base;
  int affine;
  float eps, momentum;
} bn_layer;

static dml_status bn_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  bn_layer *L = (bn_layer *)l;
  dml_node *gamma = NULL, *beta = NULL;
  int k = 0;
  if (L->affine) {
    DML_TRY(dml__layer_param_node(l, g, 0, &gamma));
    DML_TRY(dml__layer_param_node(l, g, 1, &beta));
    k = 2;
  }
  float *mean = dml__layer_param(l, k)->value, *var = dml__layer_param(l, k + 1)->value;
  if (l->next_is_relu) /* inference only; otherwise the plain op */
    return dml__op_batchnorm_relu_inference(g, x, gamma, beta, mean, var, L->momentum, L->eps,
                                            y);
  return dml_op_batchnorm(g, x, gamma, beta, mean, var, L->momentum, L->eps, y);
}

static dml_status bn_init(dml__layer *l, uint64_t seed) {
  bn_layer *L = (bn_layer *)l;
  int k = 0;
  if (L->affine) {
    DML_TRY(fill(l, 0, DML_INIT_ONES, 0.0f, seed));
    DML_TRY(fill(l, 1, DML_INIT_ZEROS, 0.0f, seed));
    k = 2;
  }
  DML_TRY(fill(l, k, DML_INIT_ZEROS, 0.0f, seed));
  return fill(l, k + 1, DML_INIT_ONES, 0.0f, seed);
}

static const dml__layer_vtable bn_vt = {bn_forward, bn_init, NULL};

dml_status dml__layer_batchnorm_create(const dml__layer_ctx *c, dml__layer **out) {
  if (c->in_ndim < 1 || c->in_ndim > 3)
    return rank_error(c, "an example of shape [C], [C, L] or [C, H, W]");
  float eps, momentum;
  int affine;
  DML_TRY(dml__layer_opt_float(c, "eps", 1e-5, 0.0, INFINITY, 1, 0, &eps));
  DML_TRY(dml__layer_opt_float(c, "momentum", 0.1, 0.0, 1.0, 0, 0, &momentum));
  DML_TRY(dml__layer_opt_bool(c, "affine", 1, &affine));
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &bn_vt, sizeof(bn_layer), &l));
  bn_layer *L = (bn_layer *)l;
  L->affine = affine;
  L->eps = eps;
  L->momentum = momentum;
  int64_t ch = c->in_shape[0];
  dml_status st = DML_OK;
  if (affine) {
    st = dml__layer_add_param(l, c, "weight", 1, &ch, 1, ch, ch);
    if (st == DML_OK) st = dml__layer_add_param(l, c, "bias", 1, &ch, 1, ch, ch);
  }
  if (st == DML_OK) st = dml__layer_add_param(l, c, "running_mean", 1, &ch, 0, ch, ch);
  if (st == DML_OK) st = dml__layer_add_param(l, c, "running_var", 1, &ch, 0, ch, ch);
  if (st != DML_OK) {
    dml__layer_free(l);
    return st;
  }
  *out = l;
  return DML_OK;
}

/* ---- layernorm over the last dimension D of x[N, ..., D] ---- */

typedef struct {
  dml__layer base;
  int affine;
  float eps;
} ln_layer;

static dml_status ln_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  ln_layer *L = (ln_layer *)l;
  dml_node *gamma = NULL, *beta = NULL;
  if (L->affine) {
    DML_TRY(dml__layer_param_node(l, g, 0, &gamma));
    DML_TRY(dml__layer_param_node(l, g, 1, &beta));
  }
  return dml_op_layernorm(g, x, gamma, beta, L->eps, y);
}

static dml_status ln_init(dml__layer *l, uint64_t seed) {
  ln_layer *L = (ln_layer *)l;
  if (!L->affine) return DML_OK;
  DML_TRY(fill(l, 0, DML_INIT_ONES, 0.0f, seed));
  return fill(l, 1, DML_INIT_ZEROS, 0.0f, seed);
}

static const dml__layer_vtable ln_vt = {ln_forward, ln_init, NULL};

dml_status dml__layer_layernorm_create(const dml__layer_ctx *c, dml__layer **out) {
  float eps;
  int affine;
  DML_TRY(dml__layer_opt_float(c, "eps", 1e-5, 0.0, INFINITY, 1, 0, &eps));
  DML_TRY(dml__layer_opt_bool(c, "affine", 1, &affine));
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &ln_vt, sizeof(ln_layer), &l));
  ln_layer *L = (ln_layer *)l;
  L->affine = affine;
  L->eps = eps;
  int64_t d = c->in_shape[c->in_ndim - 1];
  if (affine) {
    dml_status st = dml__layer_add_param(l, c, "weight", 1, &d, 1, d, d);
    if (st == DML_OK) st = dml__layer_add_param(l, c, "bias", 1, &d, 1, d, d);
    if (st != DML_OK) {
      dml__layer_free(l);
      return st;
    }
  }
  *out = l;
  return DML_OK;
}
