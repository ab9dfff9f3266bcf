/* Layers without parameters: activations, pooling (windowed and global), dropout, flatten,
 * reshape and L2 normalisation. Pooling output size (torch, ceil_mode off):
 * L_out = floor((L + 2 pad - k) / stride) + 1, with pad <= k / 2. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dml/ops.h"
#include "ops/activation_internal.h"
#include "nn/layer.h"

#define MAX_WINDOW ((int64_t)1 << 16)

static dml_status rank_error(const dml__layer_ctx *c, const char *expected) {
  char s[96];
  dml__shape_str(c->in_ndim, c->in_shape, s, sizeof s);
  return dml__layer_error(c, DML_ERR_SHAPE, "expects %s, but the incoming example shape is %s",
                          expected, s);
}

/* ---- activations ---- */

typedef enum { ACT_RELU, ACT_LEAKY, ACT_GELU, ACT_SIGMOID, ACT_TANH, ACT_SOFTPLUS } act_kind;

typedef struct {
  dml__layer base;
  act_kind kind;
  float a, b; /* leaky slope; softplus beta, threshold */
} act_layer;

static dml_status act_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  act_layer *L = (act_layer *)l;
  switch (L->kind) {
    case ACT_RELU:
      /* in a sequential model nothing else reads the previous layer's output */
      return dml__op_relu_inplace(g, x, y);
    case ACT_LEAKY:
      return dml_op_leaky_relu(g, x, L->a, y);
    case ACT_GELU:
      return dml_op_gelu(g, x, y);
    case ACT_SIGMOID:
      return dml_op_sigmoid(g, x, y);
    case ACT_TANH:
      return dml_op_tanh(g, x, y);
    default:
      return dml_op_softplus(g, x, L->a, L->b, y);
  }
}

static const dml__layer_vtable act_vt = {act_forward, NULL, NULL};

dml_status dml__layer_activation_create(const dml__layer_ctx *c, dml__layer **out) {
  static const struct {
    const char *name;
    act_kind kind;
  } names[] = {{"relu", ACT_RELU},       {"leakyrelu", ACT_LEAKY}, {"gelu", ACT_GELU},
               {"sigmoid", ACT_SIGMOID}, {"tanh", ACT_TANH},       {"softplus", ACT_SOFTPLUS}};
  act_kind kind = ACT_RELU;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(c->kind, names[i].name) == 0) kind = names[i].kind;
  float a = 0.0f, b = 0.0f;
  if (kind == ACT_LEAKY)
    DML_TRY(dml__layer_opt_float(c, "slope", 0.01, -INFINITY, INFINITY, 0, 0, &a));
  if (kind == ACT_SOFTPLUS) {
    DML_TRY(dml__layer_opt_float(c, "beta", 1.0, 0.0, INFINITY, 1, 0, &a));
    DML_TRY(dml__layer_opt_float(c, "threshold", 20.0, -INFINITY, INFINITY, 0, 0, &b));
  }
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &act_vt, sizeof(act_layer), &l));
  act_layer *L = (act_layer *)l;
  L->kind = kind;
  L->a = a;
  L->b = b;
  *out = l;
  return DML_OK;
}

/* ---- max / average pooling over x[N,C,L] or x[N,C,H,W] ---- */

typedef struct {
  dml__layer base;
  int dims, is_max;
  dml_pool_params p;
} pool_layer;

static dml_status pool_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  pool_layer *L = (pool_layer *)l;
  if (L->dims == 1)
    return L->is_max ? dml_op_maxpool1d(g, x, &L->p, y) : dml_op_avgpool1d(g, x, &L->p, y);
  return L->is_max ? dml_op_maxpool2d(g, x, &L->p, y) : dml_op_avgpool2d(g, x, &L->p, y);
}

static const dml__layer_vtable pool_vt = {pool_forward, NULL, NULL};

dml_status dml__layer_pool_create(const dml__layer_ctx *c, dml__layer **out) {
  int dims = c->kind[7] == '1' ? 1 : 2; /* "maxpool1d" / "avgpool2d" */
  int is_max = c->kind[0] == 'm';
  if (c->in_ndim != dims + 1)
    return rank_error(c, dims == 1 ? "an example of shape [channels, length]"
                                   : "an example of shape [channels, height, width]");
  int64_t k[2], stride[2], pad[2];
  int include_pad = 1;
  if (dims == 1) {
    DML_TRY(dml__layer_opt_int(c, "k", 0, 1, MAX_WINDOW, 1, &k[0]));
    DML_TRY(dml__layer_opt_int(c, "stride", k[0], 1, MAX_WINDOW, 0, &stride[0]));
    DML_TRY(dml__layer_opt_int(c, "pad", 0, 0, MAX_WINDOW, 0, &pad[0]));
    k[1] = stride[1] = 1;
    pad[1] = 0;
  } else {
    if (!dml__layer_opt_str(c, "k"))
      return dml__layer_error(c, DML_ERR_FORMAT, "missing required option k=K (or k=KH,KW)");
    DML_TRY(dml__layer_opt_int2(c, "k", 0, 1, MAX_WINDOW, k));
    if (dml__layer_opt_str(c, "stride")) {
      DML_TRY(dml__layer_opt_int2(c, "stride", 1, 1, MAX_WINDOW, stride));
    } else {
      stride[0] = k[0];
      stride[1] = k[1];
    }
    DML_TRY(dml__layer_opt_int2(c, "pad", 0, 0, MAX_WINDOW, pad));
  }
  if (!is_max) DML_TRY(dml__layer_opt_bool(c, "count_include_pad", 1, &include_pad));
  int64_t osz[2] = {1, 1};
  for (int d = 0; d < dims; d++) {
    if (pad[d] > k[d] / 2)
      return dml__layer_error(c, DML_ERR_FORMAT,
                              "pad=%lld must be at most half the window (k=%lld)",
                              (long long)pad[d], (long long)k[d]);
    int64_t padded = c->in_shape[1 + d] + 2 * pad[d];
    if (padded < k[d]) {
      char s[96];
      dml__shape_str(c->in_ndim, c->in_shape, s, sizeof s);
      return dml__layer_error(c, DML_ERR_SHAPE,
                              "window %lld is larger than the padded input (%lld) of the "
                              "incoming example shape %s",
                              (long long)k[d], (long long)padded, s);
    }
    osz[d] = (padded - k[d]) / stride[d] + 1;
  }
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &pool_vt, sizeof(pool_layer), &l));
  pool_layer *L = (pool_layer *)l;
  L->dims = dims;
  L->is_max = is_max;
  memset(&L->p, 0, sizeof L->p);
  for (int d = 0; d < 2; d++) {
    L->p.kernel[d] = (int)k[d];
    L->p.stride[d] = (int)stride[d];
    L->p.padding[d] = (int)pad[d];
  }
  L->p.count_include_pad = include_pad;
  for (int d = 0; d < dims; d++) l->out_shape[1 + d] = osz[d];
  *out = l;
  return DML_OK;
}

/* ---- global pooling: x[N,C,...] -> y[N,C] ---- */

typedef struct {
  dml__layer base;
  int is_max;
} gpool_layer;

static dml_status gpool_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  return ((gpool_layer *)l)->is_max ? dml_op_global_maxpool(g, x, y)
                                    : dml_op_global_avgpool(g, x, y);
}

static const dml__layer_vtable gpool_vt = {gpool_forward, NULL, NULL};

dml_status dml__layer_global_pool_create(const dml__layer_ctx *c, dml__layer **out) {
  if (c->in_ndim < 2) return rank_error(c, "an example of shape [channels, positions...]");
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &gpool_vt, sizeof(gpool_layer), &l));
  ((gpool_layer *)l)->is_max = strcmp(c->kind, "globalmaxpool") == 0;
  l->out_ndim = 1;
  *out = l;
  return DML_OK;
}

/* ---- dropout ---- */

typedef struct {
  dml__layer base;
  float p;
} dropout_layer;

static dml_status dropout_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  return dml_op_dropout(g, x, ((dropout_layer *)l)->p, y);
}

static const dml__layer_vtable dropout_vt = {dropout_forward, NULL, NULL};

dml_status dml__layer_dropout_create(const dml__layer_ctx *c, dml__layer **out) {
  float p;
  DML_TRY(dml__layer_opt_float(c, "p", 0.5, 0.0, 1.0, 0, 1, &p));
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &dropout_vt, sizeof(dropout_layer), &l));
  ((dropout_layer *)l)->p = p;
  *out = l;
  return DML_OK;
}

/* ---- flatten and reshape (same data, new example shape) ---- */

static dml_status flatten_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  (void)l;
  return dml_op_flatten(g, x, y);
}

static const dml__layer_vtable flatten_vt = {flatten_forward, NULL, NULL};

dml_status dml__layer_flatten_create(const dml__layer_ctx *c, dml__layer **out) {
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &flatten_vt, sizeof(dml__layer), &l));
  l->out_ndim = 1;
  l->out_shape[0] = dml__shape_numel(c->in_ndim, c->in_shape);
  *out = l;
  return DML_OK;
}

static dml_status reshape_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  int64_t shape[DML_MAX_DIMS];
  shape[0] = dml_node_value(x)->shape[0];
  for (int i = 0; i < l->out_ndim; i++) shape[1 + i] = l->out_shape[i];
  return dml_op_reshape(g, x, l->out_ndim + 1, shape, y);
}

static const dml__layer_vtable reshape_vt = {reshape_forward, NULL, NULL};

dml_status dml__layer_reshape_create(const dml__layer_ctx *c, dml__layer **out) {
  const char *s = dml__layer_opt_str(c, "shape");
  if (!s) return dml__layer_error(c, DML_ERR_FORMAT, "missing required option shape=a,b,...");
  int64_t shape[DML_MAX_DIMS];
  int n = 0, infer = -1;
  const char *p = s;
  for (;;) {
    if (n == DML_MAX_DIMS - 1)
      return dml__layer_error(c, DML_ERR_FORMAT, "shape=%s has more than %d sizes", s,
                              DML_MAX_DIMS - 1);
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || (*end != ',' && *end != '\0') || v == 0 || v < -1 || v > ((int64_t)1 << 40))
      return dml__layer_error(c, DML_ERR_FORMAT,
                              "shape='%s' must be positive integers separated by commas (one "
                              "may be -1)",
                              s);
    if (v == -1) {
      if (infer >= 0)
        return dml__layer_error(c, DML_ERR_FORMAT, "shape=%s has more than one -1", s);
      infer = n;
    }
    shape[n++] = v;
    if (*end == '\0') break;
    p = end + 1;
  }
  int64_t in_numel = dml__shape_numel(c->in_ndim, c->in_shape), known = 1;
  int bad = 0;
  for (int i = 0; i < n && !bad; i++) {
    if (i == infer) continue;
    if (shape[i] > in_numel / known)
      bad = 1;
    else
      known *= shape[i];
  }
  if (!bad && infer >= 0) {
    if (in_numel % known == 0)
      shape[infer] = in_numel / known;
    else
      bad = 1;
  } else if (!bad) {
    bad = known != in_numel;
  }
  if (bad) {
    char in_s[96];
    dml__shape_str(c->in_ndim, c->in_shape, in_s, sizeof in_s);
    return dml__layer_error(c, DML_ERR_SHAPE,
                            "shape=%s does not hold the %lld values of the incoming example "
                            "shape %s",
                            s, (long long)in_numel, in_s);
  }
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &reshape_vt, sizeof(dml__layer), &l));
  l->out_ndim = n;
  for (int i = 0; i < n; i++) l->out_shape[i] = shape[i];
  *out = l;
  return DML_OK;
}

/* ---- l2norm: y = x / max(||x||_2, eps) over the last dimension ---- */

typedef struct {
  dml__layer base;
  float eps;
} l2norm_layer;

static dml_status l2norm_forward(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y) {
  return dml_op_l2_normalize(g, x, ((l2norm_layer *)l)->eps, y);
}

static const dml__layer_vtable l2norm_vt = {l2norm_forward, NULL, NULL};

dml_status dml__layer_l2norm_create(const dml__layer_ctx *c, dml__layer **out) {
  float eps;
  DML_TRY(dml__layer_opt_float(c, "eps", 1e-12, 0.0, INFINITY, 1, 0, &eps));
  dml__layer *l;
  DML_TRY(dml__layer_alloc(c, &l2norm_vt, sizeof(l2norm_layer), &l));
  ((l2norm_layer *)l)->eps = eps;
  *out = l;
  return DML_OK;
}
