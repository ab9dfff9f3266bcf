/* The layer catalogue (name, accepted options, constructor) and the helpers constructors share:
 * option parsing with full-string and range checks, parameter declaration, layer allocation. */
#include "nn/layer.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const opts_none[] = {NULL};
static const char *const opts_linear[] = {"out", "bias", "init", NULL};
static const char *const opts_conv1d[] = {"out",    "k",    "stride", "pad", "dilation",
                                          "groups", "bias", "init",   NULL};
static const char *const opts_conv2d[] = {"out",      "k",      "kh",   "kw",   "stride", "pad",
                                          "dilation", "groups", "bias", "init", NULL};
static const char *const opts_batchnorm[] = {"eps", "momentum", "affine", NULL};
static const char *const opts_layernorm[] = {"eps", "affine", NULL};
static const char *const opts_leaky[] = {"slope", NULL};
static const char *const opts_softplus[] = {"beta", "threshold", NULL};
static const char *const opts_maxpool[] = {"k", "stride", "pad", NULL};
static const char *const opts_avgpool[] = {"k", "stride", "pad", "count_include_pad", NULL};
static const char *const opts_dropout[] = {"p", NULL};
static const char *const opts_reshape[] = {"shape", NULL};
static const char *const opts_l2norm[] = {"eps", NULL};

static const dml__layer_type layer_types[] = {
    {"linear", opts_linear, dml__layer_linear_create},
    {"conv1d", opts_conv1d, dml__layer_conv_create},
    {"conv2d", opts_conv2d, dml__layer_conv_create},
    {"batchnorm", opts_batchnorm, dml__layer_batchnorm_create},
    {"batchnorm1d", opts_batchnorm, dml__layer_batchnorm_create},
    {"batchnorm2d", opts_batchnorm, dml__layer_batchnorm_create},
    {"layernorm", opts_layernorm, dml__layer_layernorm_create},
    {"relu", opts_none, dml__layer_activation_create},
    {"leakyrelu", opts_leaky, dml__layer_activation_create},
    {"gelu", opts_none, dml__layer_activation_create},
    {"sigmoid", opts_none, dml__layer_activation_create},
    {"tanh", opts_none, dml__layer_activation_create},
    {"softplus", opts_softplus, dml__layer_activation_create},
    {"maxpool1d", opts_maxpool, dml__layer_pool_create},
    {"maxpool2d", opts_maxpool, dml__layer_pool_create},
    {"avgpool1d", opts_avgpool, dml__layer_pool_create},
    {"avgpool2d", opts_avgpool, dml__layer_pool_create},
    {"globalavgpool", opts_none, dml__layer_global_pool_create},
    {"globalmaxpool", opts_none, dml__layer_global_pool_create},
    {"dropout", opts_dropout, dml__layer_dropout_create},
    {"flatten", opts_none, dml__layer_flatten_create},
    {"reshape", opts_reshape, dml__layer_reshape_create},
    {"l2norm", opts_l2norm, dml__layer_l2norm_create},
};

const dml__layer_type *dml__layer_type_find(const char *name) {
  for (size_t i = 0; i < sizeof layer_types / sizeof layer_types[0]; i++)
    if (strcmp(layer_types[i].name, name) == 0) return &layer_types[i];
  return NULL;
}

const char *dml__layer_type_names(void) {
  return "input, linear, conv1d, conv2d, batchnorm, batchnorm1d, batchnorm2d, layernorm, relu, "
         "leakyrelu, gelu, sigmoid, tanh, softplus, maxpool1d, maxpool2d, avgpool1d, "
         "avgpool2d, globalavgpool, globalmaxpool, dropout, flatten, reshape, l2norm";
}

dml_status dml__layer_error(const dml__layer_ctx *c, dml_status st, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return dml__error(st, "%s: %s: %s", c->where, c->kind, msg);
}

const char *dml__layer_opt_str(const dml__layer_ctx *c, const char *key) {
  for (int i = 0; i < c->n_opts; i++)
    if (strcmp(c->opts[i].key, key) == 0) return c->opts[i].value;
  return NULL;
}

/* Whole-string base-10 integer; 0 on success. */
static int parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno == ERANGE || *end != '\0' || end == s) return -1;
  *out = (int64_t)v;
  return 0;
}

dml_status dml__layer_opt_int(const dml__layer_ctx *c, const char *key, int64_t dflt, int64_t lo,
                              int64_t hi, int required, int64_t *out) {
  const char *s = dml__layer_opt_str(c, key);
  if (!s) {
    if (required) return dml__layer_error(c, DML_ERR_FORMAT, "missing required option %s=N", key);
    *out = dflt;
    return DML_OK;
  }
  int64_t v;
  if (parse_i64(s, &v) != 0)
    return dml__layer_error(c, DML_ERR_FORMAT, "%s='%s' is not an integer", key, s);
  if (v < lo || v > hi)
    return dml__layer_error(c, DML_ERR_FORMAT, "%s=%lld is out of range (expected %lld to %lld)",
                            key, (long long)v, (long long)lo, (long long)hi);
  *out = v;
  return DML_OK;
}

dml_status dml__layer_opt_int2(const dml__layer_ctx *c, const char *key, int64_t dflt, int64_t lo,
                               int64_t hi, int64_t out[2]) {
  const char *s = dml__layer_opt_str(c, key);
  if (!s) {
    out[0] = out[1] = dflt;
    return DML_OK;
  }
  char buf[64];
  if (strlen(s) >= sizeof buf)
    return dml__layer_error(c, DML_ERR_FORMAT, "%s='%s' is too long", key, s);
  strcpy(buf, s);
  char *comma = strchr(buf, ',');
  int n = 1;
  if (comma) {
    *comma = '\0';
    n = 2;
  }
  int64_t v[2];
  if (parse_i64(buf, &v[0]) != 0 || (n == 2 && parse_i64(comma + 1, &v[1]) != 0))
    return dml__layer_error(c, DML_ERR_FORMAT,
                            "%s='%s' is not an integer or a pair of integers (\"2\" or \"2,3\")",
                            key, s);
  if (n == 1) v[1] = v[0];
  for (int i = 0; i < 2; i++)
    if (v[i] < lo || v[i] > hi)
      return dml__layer_error(c, DML_ERR_FORMAT, "%s=%s is out of range (each value %lld to %lld)",
                              key, s, (long long)lo, (long long)hi);
  out[0] = v[0];
  out[1] = v[1];
  return DML_OK;
}

dml_status dml__layer_opt_float(const dml__layer_ctx *c, const char *key, double dflt, double lo,
                                double hi, int open_lo, int open_hi, float *out) {
  const char *s = dml__layer_opt_str(c, key);
  if (!s) {
    *out = (float)dflt;
    return DML_OK;
  }
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
    return dml__layer_error(c, DML_ERR_FORMAT, "%s='%s' is not a finite number", key, s);
  int bad = open_lo ? !(v > lo) : !(v >= lo);
  bad = bad || (open_hi ? !(v < hi) : !(v <= hi));
  if (bad) {
    char range[128];
    if (isinf(hi))
      snprintf(range, sizeof range, "%s %s %g", key, open_lo ? ">" : ">=", lo);
    else if (isinf(lo))
      snprintf(range, sizeof range, "%s %s %g", key, open_hi ? "<" : "<=", hi);
    else
      snprintf(range, sizeof range, "%g %s %s %s %g", lo, open_lo ? "<" : "<=", key,
               open_hi ? "<" : "<=", hi);
    return dml__layer_error(c, DML_ERR_FORMAT, "%s=%s is out of range (expected %s)", key, s,
                            range);
  }
  *out = (float)v;
  return DML_OK;
}

dml_status dml__layer_opt_bool(const dml__layer_ctx *c, const char *key, int dflt, int *out) {
  const char *s = dml__layer_opt_str(c, key);
  if (!s) {
    *out = dflt;
    return DML_OK;
  }
  if (strcmp(s, "0") == 0 || strcmp(s, "1") == 0) {
    *out = s[0] == '1';
    return DML_OK;
  }
  return dml__layer_error(c, DML_ERR_FORMAT, "%s='%s' must be 0 or 1", key, s);
}

dml_status dml__layer_opt_init(const dml__layer_ctx *c, int *out) {
  const char *s = dml__layer_opt_str(c, "init");
  *out = -1;
  if (!s) return DML_OK;
  static const struct {
    const char *name;
    dml_init_kind kind;
  } kinds[] = {{"kaiming_uniform", DML_INIT_KAIMING_UNIFORM},
               {"kaiming_normal", DML_INIT_KAIMING_NORMAL},
               {"xavier_uniform", DML_INIT_XAVIER_UNIFORM},
               {"xavier_normal", DML_INIT_XAVIER_NORMAL}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(s, kinds[i].name) == 0) {
      *out = (int)kinds[i].kind;
      return DML_OK;
    }
  return dml__layer_error(c, DML_ERR_FORMAT,
                          "unknown init '%s' (valid: kaiming_uniform, kaiming_normal, "
                          "xavier_uniform, xavier_normal)",
                          s);
}

dml_status dml__layer_alloc(const dml__layer_ctx *c, const dml__layer_vtable *vt, size_t size,
                            dml__layer **out) {
  dml__layer *l = calloc(1, size);
  if (!l) return dml__layer_error(c, DML_ERR_NO_MEMORY, "out of memory for the layer");
  l->vt = vt;
  l->store = c->store;
  l->index = c->index;
  l->in_ndim = l->out_ndim = c->in_ndim;
  for (int i = 0; i < c->in_ndim; i++) l->in_shape[i] = l->out_shape[i] = c->in_shape[i];
  *out = l;
  return DML_OK;
}

dml_status dml__layer_add_param(dml__layer *l, const dml__layer_ctx *c, const char *name, int ndim,
                                const int64_t *shape, int trainable, int64_t fan_in,
                                int64_t fan_out) {
  DML_ASSERT(l->n_params < DML__LAYER_MAX_PARAMS);
  if (dml__shape_numel(ndim, shape) < 0)
    return dml__layer_error(c, DML_ERR_FORMAT, "parameter '%s' would have more than 2^40 values",
                            name);
  char full[DML_PARAM_NAME_MAX];
  snprintf(full, sizeof full, "%d.%s", l->index, name);
  int idx;
  dml_status st = dml_params_add(l->store, full, ndim, shape, trainable, &idx);
  if (st != DML_OK) return st;
  dml_param *p = dml_params_get(l->store, idx);
  p->fan_in = fan_in;
  p->fan_out = fan_out;
  l->params[l->n_params++] = idx;
  return DML_OK;
}

dml_param *dml__layer_param(const dml__layer *l, int k) {
  DML_ASSERT(k >= 0 && k < l->n_params);
  return dml_params_get(l->store, l->params[k]);
}

dml_status dml__layer_param_node(const dml__layer *l, dml_graph *g, int k, dml_node **out) {
  return dml_graph_param(g, dml__layer_param(l, k), out);
}

void dml__shape_str(int ndim, const int64_t *shape, char *buf, int size) {
  dml_tensor t = dml_tensor_view(NULL, ndim, shape);
  dml_tensor_shape_str(&t, buf, size);
}

int64_t dml__shape_numel(int ndim, const int64_t *shape) {
  const int64_t limit = (int64_t)1 << 40;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || (shape[i] > 0 && n > limit / shape[i])) return -1;
    n *= shape[i];
  }
  return n;
}

void dml__layer_free(dml__layer *l) {
  if (!l) return;
  if (l->vt && l->vt->free) l->vt->free(l);
  free(l->desc);
  free(l);
}
