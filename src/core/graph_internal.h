/* What an op implementation needs from the autograd tape.
 * An op validates its inputs, calls dml__node_new to get an output node (value allocated in the
 * arena, uninitialised), computes the forward, stores anything backward needs in node->saved /
 * node->attr, and sets node->backward. Backward reads node->grad (dL/d output) and accumulates
 * (+=) into dml__node_grad(g, input) for every input with requires_grad.
 *
 * Fresh gradients: an op whose backward writes every element of an input's gradient may set
 * node->backward_overwrites in its forward. The tape then hands it, for each input whose
 * gradient buffer does not exist yet, an uninitialised buffer and sets bit k of
 * node->fresh_inputs; the op must store (=) into such a buffer instead of accumulating. This
 * saves a zero-fill and a read of every activation gradient. Such an op handles its inputs in
 * index order (an input passed twice is fresh only at its first position). */
#ifndef DML_CORE_GRAPH_INTERNAL_H
#define DML_CORE_GRAPH_INTERNAL_H

#include "core/arena.h"
#include "core/status_internal.h"
#include "dml/graph.h"

typedef void (*dml__backward_fn)(dml_graph *g, dml_node *n);

/* Largest element count of a node (2^56): byte counts stay far from int64 overflow. */
#define DML__MAX_NUMEL ((int64_t)1 << 56)

struct dml_node {
  dml_tensor value;
  float *grad;            /* NULL until a gradient reaches the node */
  int requires_grad;
  dml_param *param;       /* for parameter leaves */
  const char *op;
  dml__backward_fn backward;
  dml_node **inputs;      /* arena array of n_inputs pointers */
  int n_inputs;
  void *saved;            /* op-specific state for backward (arena) */
  int backward_overwrites; /* the op's backward can store into fresh input gradients */
  int consumers;          /* nodes recorded with this one as an input */
  uint32_t fresh_inputs;  /* during backward: bit k = inputs[k]->grad is uninitialised */
  int grad_in_place;      /* backward may write its single input's gradient over its own
                           * (elementwise ops whose input has no other consumer) */
  union {
    float f[16];
    int64_t i[16];
  } attr;                 /* small op attributes (kernel sizes, slopes, ...) */
  int64_t aux[16];        /* more integer attributes where attr holds floats */
};

struct dml_graph {
  dml__arena arena;
  dml_node **tape;
  int64_t tape_len, tape_cap;
  int training;
  int inference; /* no backward will run: nodes never require gradients (dml__graph_set_inference) */
  uint64_t seed, step;
  uint64_t random_ops; /* random ops recorded this step (dropout stream index) */
  int backward_done;
};

/* New node with an arena-allocated, uninitialised value of the given shape, appended to the
 * tape. requires_grad = any input requires it. inputs may be NULL when n_inputs == 0. */
dml_status dml__node_new(dml_graph *g, const char *op, int ndim, const int64_t *shape,
                         dml_node *const *inputs, int n_inputs, dml_node **out);

/* Same, but the value borrows `data` (numel floats owned by an input node or the arena) instead
 * of allocating: for ops whose result is a view of their input (reshape, flatten). data NULL
 * allocates as dml__node_new does. */
dml_status dml__node_new_view(dml_graph *g, const char *op, int ndim, const int64_t *shape,
                              dml_node *const *inputs, int n_inputs, float *data,
                              dml_node **out);

/* Gradient buffer of n (allocated zeroed on first use; a parameter's own grad). NULL when the
 * arena is exhausted (backward then reports out of memory). */
float *dml__node_grad(dml_graph *g, dml_node *n);

/* 1 when the op must store (=) rather than accumulate into inputs[k]'s gradient. */
static inline int dml__grad_fresh(const dml_node *n, int k) {
  return k < 32 && ((n->fresh_inputs >> k) & 1u);
}

/* Inference: until reset, recorded nodes never require gradients (ops skip what only
 * backward needs) and dml_graph_backward is refused; ops may fuse and work in place. Used by
 * dml_model_predict. dml_graph_reset clears it. */
void dml__graph_set_inference(dml_graph *g, int on);

/* Scratch or saved-state memory from the arena, valid until reset. NULL when out of memory. */
void *dml__graph_alloc(dml_graph *g, int64_t bytes);
void *dml__graph_calloc(dml_graph *g, int64_t bytes);

/* Next stream id for a random op (dropout): a function of (step, op order). */
uint64_t dml__graph_random_stream(dml_graph *g);

/* Validation helpers that set a message naming the op. */
dml_status dml__check_node(const char *op, const dml_node *n, const char *what);
dml_status dml__check_rank(const char *op, const dml_node *n, int min_rank, int max_rank);

static inline int64_t dml__numel(const dml_node *n) { return dml_tensor_numel(&n->value); }

#endif
