/* Layers behind a small vtable, and what a layer constructor gets from the model-text parser.
 * A layer type (one line of model text: "conv2d out=32 k=3 pad=1") is a name, the option keys it
 * accepts and a constructor. The constructor reads its options, checks them against the
 * incoming example shape (without the batch dimension), computes its output shape and declares
 * its parameters in the model's store as "<index>.weight", "<index>.bias",
 * "<index>.running_mean", "<index>.running_var" (torch.nn.Sequential state_dict names).
 * The model owns the layers and frees them with dml__layer_free; a layer borrows the store. */
#ifndef DML_NN_LAYER_H
#define DML_NN_LAYER_H

#include <stdint.h>

#include "core/status_internal.h"
#include "dml/graph.h"
#include "dml/init.h"
#include "dml/params.h"

#define DML__LAYER_MAX_PARAMS 4

typedef struct dml__layer dml__layer;

typedef struct dml__layer_vtable {
  /* y[N, out_shape...] from x[N, in_shape...]; records ops on g. */
  dml_status (*forward)(dml__layer *l, dml_graph *g, dml_node *x, dml_node **y);
  /* Fills the layer's parameters from the seed (NULL: the layer has none). */
  dml_status (*init)(dml__layer *l, uint64_t seed);
  /* Releases what the layer allocated beyond its struct (NULL: nothing). */
  void (*free)(dml__layer *l);
} dml__layer_vtable;

/* Common head of every layer struct (layer-specific structs embed it first). */
struct dml__layer {
  const dml__layer_vtable *vt;
  dml_param_store *store; /* borrowed from the model */
  int index;              /* position after the input line, from 0 */
  int line;               /* line of the model text */
  char *desc;             /* the line as parsed ("conv2d out=32 k=3 pad=1") */
  int in_ndim, out_ndim;  /* example shapes, without the batch dimension */
  int64_t in_shape[DML_MAX_DIMS], out_shape[DML_MAX_DIMS];
  int n_params;
  int params[DML__LAYER_MAX_PARAMS]; /* store indices (weight, bias, running stats) */
  int next_is_relu;       /* the following layer is a ReLU (batch norm fuses it in inference) */
};

/* One "key=value" option of a line. */
typedef struct dml__layer_opt {
  const char *key;
  const char *value;
} dml__layer_opt;

/* What a constructor gets. `where` is "source:line" for messages. */
typedef struct dml__layer_ctx {
  const char *where;
  const char *kind; /* the layer name as written ("batchnorm2d") */
  const dml__layer_opt *opts;
  int n_opts;
  int index;
  int in_ndim;
  const int64_t *in_shape;
  dml_param_store *store;
} dml__layer_ctx;

typedef dml_status (*dml__layer_create_fn)(const dml__layer_ctx *c, dml__layer **out);

typedef struct dml__layer_type {
  const char *name;
  const char *const *opts; /* accepted option keys, NULL-terminated */
  dml__layer_create_fn create;
} dml__layer_type;

/* The layer catalogue (layer.c). NULL when the name is unknown. */
const dml__layer_type *dml__layer_type_find(const char *name);
/* "input, linear, conv1d, ..." for messages. */
const char *dml__layer_type_names(void);

/* Constructors (layers_param.c, layers_fn.c). */
dml_status dml__layer_linear_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_conv_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_batchnorm_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_layernorm_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_activation_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_pool_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_global_pool_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_dropout_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_flatten_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_reshape_create(const dml__layer_ctx *c, dml__layer **out);
dml_status dml__layer_l2norm_create(const dml__layer_ctx *c, dml__layer **out);

/* ---- helpers for constructors (layer.c) ---- */

/* Error "<where>: <kind>: <message>" with status st. */
dml_status dml__layer_error(const dml__layer_ctx *c, dml_status st, const char *fmt, ...)
    DML__PRINTF(3, 4);

/* The option's text, or NULL when the line does not give it. */
const char *dml__layer_opt_str(const dml__layer_ctx *c, const char *key);

/* Integer option in [lo, hi]; dflt when absent (unless required). */
dml_status dml__layer_opt_int(const dml__layer_ctx *c, const char *key, int64_t dflt, int64_t lo,
                              int64_t hi, int required, int64_t *out);
/* One or two comma-separated integers in [lo, hi] ("2" or "2,3"); one value fills both. */
dml_status dml__layer_opt_int2(const dml__layer_ctx *c, const char *key, int64_t dflt, int64_t lo,
                               int64_t hi, int64_t out[2]);
/* Finite number; lo/hi bounds are exclusive where open_lo/open_hi are set. */
dml_status dml__layer_opt_float(const dml__layer_ctx *c, const char *key, double dflt, double lo,
                                double hi, int open_lo, int open_hi, float *out);
/* 0 or 1. */
dml_status dml__layer_opt_bool(const dml__layer_ctx *c, const char *key, int dflt, int *out);
/* init=kaiming_uniform|kaiming_normal|xavier_uniform|xavier_normal; -1 when absent (torch's
 * default initialisation). */
dml_status dml__layer_opt_init(const dml__layer_ctx *c, int *out);

/* Allocates a zeroed layer struct of `size` bytes with the common fields set from c and the
 * output shape equal to the input shape. */
dml_status dml__layer_alloc(const dml__layer_ctx *c, const dml__layer_vtable *vt, size_t size,
                            dml__layer **out);

/* Declares parameter "<index>.<name>" and records it in the layer. */
dml_status dml__layer_add_param(dml__layer *l, const dml__layer_ctx *c, const char *name, int ndim,
                                const int64_t *shape, int trainable, int64_t fan_in,
                                int64_t fan_out);
dml_param *dml__layer_param(const dml__layer *l, int k);
/* Graph leaf for the layer's k-th parameter. */
dml_status dml__layer_param_node(const dml__layer *l, dml_graph *g, int k, dml_node **out);

/* "[32, 28, 28]" of an example shape. */
void dml__shape_str(int ndim, const int64_t *shape, char *buf, int size);

/* Product of the sizes, or -1 past 2^40 elements. */
int64_t dml__shape_numel(int ndim, const int64_t *shape);

void dml__layer_free(dml__layer *l); /* NULL is a no-op */

#endif
