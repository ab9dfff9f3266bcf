/* Parameter store: every parameter (and buffer, such as batch-norm running statistics) of a
 * model lives in one contiguous block of values, with a parallel block of gradients, so an
 * optimiser step or a checkpoint is one loop. dml_param entries are named views into the blocks.
 * The store owns the blocks; dml_param pointers and their value/grad pointers stay valid until
 * the next dml_params_add after dml_params_finalize (which re-lays out the blocks) or
 * dml_params_free. */
#ifndef DML_PARAMS_H
#define DML_PARAMS_H

#include <stdint.h>

#include "dml/status.h"
#include "dml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DML_PARAM_NAME_MAX 96

typedef struct dml_param {
  char name[DML_PARAM_NAME_MAX]; /* unique, e.g. "layers.0.weight" */
  int ndim;
  int64_t shape[DML_MAX_DIMS];
  int64_t numel;
  int64_t offset;  /* element offset in the store's blocks */
  float *value;    /* view into the value block */
  float *grad;     /* view into the gradient block */
  int trainable;   /* 0 for buffers: saved in checkpoints, never optimised */
  int group;       /* optimiser parameter group (0 by default) */
  int64_t fan_in, fan_out; /* for initialisers; set by the layer that owns the parameter */
} dml_param;

typedef struct dml_param_store dml_param_store;

dml_status dml_params_new(dml_param_store **out);
void dml_params_free(dml_param_store *s); /* NULL is a no-op */

/* Declares a parameter; its storage exists (zeroed) once dml_params_finalize has run. Adding
 * after finalize is allowed and moves the blocks: call finalize again before use. Fails on a
 * duplicate name. `index` (may be NULL) receives the parameter's position. */
dml_status dml_params_add(dml_param_store *s, const char *name, int ndim, const int64_t *shape,
                          int trainable, int *index);

/* Lays out (or re-lays out, preserving values) the contiguous blocks. */
dml_status dml_params_finalize(dml_param_store *s);

int dml_params_count(const dml_param_store *s);
dml_param *dml_params_get(dml_param_store *s, int index);
dml_param *dml_params_find(dml_param_store *s, const char *name); /* NULL if absent */

/* Total elements over all parameters (trainable or not), and the blocks themselves. */
int64_t dml_params_numel(const dml_param_store *s);
int64_t dml_params_trainable_numel(const dml_param_store *s);
float *dml_params_values(dml_param_store *s);
float *dml_params_grads(dml_param_store *s);

void dml_params_zero_grad(dml_param_store *s);

/* Copies all values from src, which must have the same names and shapes in the same order. */
dml_status dml_params_copy(dml_param_store *dst, const dml_param_store *src);

#ifdef __cplusplus
}
#endif
#endif
