/* Reverse-mode automatic differentiation on a tape.
 * A dml_graph records the ops of one forward pass as nodes; dml_graph_backward walks them in
 * reverse and accumulates gradients. Node values, gradients and saved state live in the graph's
 * arena and stay valid until the next dml_graph_reset, which drops the whole tape at once while
 * keeping the memory: a training step of unchanged shape then performs no heap allocation.
 * Parameter nodes (dml_graph_param) use the parameter's own storage; their gradients are
 * accumulated (+=) into dml_param.grad, so zero them between steps (dml_params_zero_grad). */
#ifndef DML_GRAPH_H
#define DML_GRAPH_H

#include <stdint.h>

#include "dml/params.h"
#include "dml/status.h"
#include "dml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_graph dml_graph;
typedef struct dml_node dml_node;

dml_status dml_graph_new(dml_graph **out);
void dml_graph_free(dml_graph *g); /* NULL is a no-op */

/* Drops every node (their pointers become invalid); the arena memory is kept. */
void dml_graph_reset(dml_graph *g);

/* Training mode (default 1): dropout drops, batch norm uses batch statistics and updates its
 * running statistics. Evaluation mode (0): dropout is the identity, batch norm uses running
 * statistics. */
void dml_graph_set_training(dml_graph *g, int training);
int dml_graph_training(const dml_graph *g);

/* Seed and step for random ops (dropout): the mask of the k-th random op of a step is a pure
 * function of (seed, step, k). */
void dml_graph_set_seed(dml_graph *g, uint64_t seed, uint64_t step);

/* A leaf holding a copy of `data` (row-major, shape given). With requires_grad, the gradient
 * reaching it is readable with dml_node_grad after backward. NaN or Inf in data is refused
 * with DML_ERR_NOT_FINITE (the message gives the flat index). */
dml_status dml_graph_input(dml_graph *g, const float *data, int ndim, const int64_t *shape,
                           int requires_grad, dml_node **out);

/* A leaf that is a parameter: its value is the parameter's storage (not copied), its gradient
 * accumulates into param->grad. Non-trainable parameters (buffers) get no gradient. */
dml_status dml_graph_param(dml_graph *g, dml_param *param, dml_node **out);

/* Backpropagates from `root`. With seed_grad NULL, root must hold one element and is seeded
 * with 1; otherwise seed_grad (numel(root) floats) is the upstream gradient: it is not modified
 * and is used in place, so keep it valid until dml_graph_reset if you read dml_node_grad(root).
 * Call at most once per forward pass. */
dml_status dml_graph_backward(dml_graph *g, dml_node *root, const float *seed_grad);

/* The node's value (valid until reset). */
const dml_tensor *dml_node_value(const dml_node *n);
/* The gradient that reached the node (numel floats), or NULL if none did. */
const float *dml_node_grad(const dml_node *n);
/* The op that made the node ("input", "param", "conv2d", ...). */
const char *dml_node_op(const dml_node *n);

/* Memory statistics: bytes used by the current step, largest step so far, and how many heap
 * allocations the arena has made since creation. */
typedef struct dml_graph_stats {
  int64_t step_bytes;
  int64_t peak_step_bytes;
  int64_t arena_heap_allocations;
  int64_t nodes;
} dml_graph_stats;
void dml_graph_get_stats(const dml_graph *g, dml_graph_stats *out);

#ifdef __cplusplus
}
#endif
#endif
