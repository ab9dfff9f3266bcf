/* The autograd tape: node creation, arena-backed gradients and the reverse sweep. */
#include <stdlib.h>
#include <string.h>

#include "core/graph_internal.h"

dml_status dml_graph_new(dml_graph **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_graph_new: out is NULL");
  dml_graph *g = calloc(1, sizeof *g);
  if (!g) return dml__error(DML_ERR_NO_MEMORY, "could not allocate a graph");
  dml__arena_init(&g->arena, 16 << 20);
  if (!g->arena.head) {
    free(g);
    return dml__error(DML_ERR_NO_MEMORY, "could not allocate the graph arena");
  }
  g->training = 1;
  *out = g;
  return DML_OK;
}

void dml_graph_free(dml_graph *g) {
  if (!g) return;
  dml__arena_free(&g->arena);
  free(g->tape);
  free(g);
}

void dml_graph_reset(dml_graph *g) {
  if (!g) return;
  dml__arena_reset(&g->arena);
  g->tape_len = 0;
  g->random_ops = 0;
  g->backward_done = 0;
  g->inference = 0;
}

void dml_graph_set_training(dml_graph *g, int training) {
  if (g) g->training = training ? 1 : 0;
}
int dml_graph_training(const dml_graph *g) { return g ? g->training : 0; }

void dml__graph_set_inference(dml_graph *g, int on) {
  if (g) g->inference = on ? 1 : 0;
}

void dml_graph_set_seed(dml_graph *g, uint64_t seed, uint64_t step) {
  if (!g) return;
  g->seed = seed;
  g->step = step;
}

uint64_t dml__graph_random_stream(dml_graph *g) {
  return (g->step << 20) ^ (g->random_ops++) ^ 0x5eedull << 44;
}

void *dml__graph_alloc(dml_graph *g, int64_t bytes) { return dml__arena_alloc(&g->arena, bytes); }
void *dml__graph_calloc(dml_graph *g, int64_t bytes) {
  return dml__arena_calloc(&g->arena, bytes);
}

static dml_status tape_push(dml_graph *g, dml_node *n) {
  if (g->tape_len == g->tape_cap) {
    int64_t cap = g->tape_cap ? g->tape_cap * 2 : 256;
    dml_node **t = realloc(g->tape, (size_t)cap * sizeof *t);
    if (!t) return dml__error(DML_ERR_NO_MEMORY, "could not grow the autograd tape");
    g->tape = t;
    g->tape_cap = cap;
  }
  g->tape[g->tape_len++] = n;
  return DML_OK;
}

dml_status dml__node_new(dml_graph *g, const char *op, int ndim, const int64_t *shape,
                         dml_node *const *inputs, int n_inputs, dml_node **out) {
  return dml__node_new_view(g, op, ndim, shape, inputs, n_inputs, NULL, out);
}

dml_status dml__node_new_view(dml_graph *g, const char *op, int ndim, const int64_t *shape,
                              dml_node *const *inputs, int n_inputs, float *data,
                              dml_node **out) {
  if (!g || !out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: graph or output is NULL", op);
  if (ndim < 0 || ndim > DML_MAX_DIMS)
    return dml__error(DML_ERR_SHAPE, "%s: result rank %d exceeds %d", op, ndim, DML_MAX_DIMS);
  if (g->backward_done)
    return dml__error(DML_ERR_STATE,
                      "%s: the graph was already differentiated; call dml_graph_reset first", op);
  if (ndim > 0 && !shape) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: shape is NULL", op);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return dml__error(DML_ERR_SHAPE, "%s: negative result dimension", op);
    if (shape[i] > 0 && n > DML__MAX_NUMEL / shape[i])
      return dml__error(DML_ERR_SHAPE, "%s: result of more than 2^56 elements", op);
    n *= shape[i];
  }
  dml_node *node = dml__arena_calloc(&g->arena, (int64_t)sizeof *node);
  if (!data) data = dml__arena_alloc(&g->arena, n * (int64_t)sizeof(float));
  dml_node **ins = n_inputs > 0 ? dml__arena_alloc(&g->arena, n_inputs * (int64_t)sizeof *ins)
                                : NULL;
  if (!node || !data || (n_inputs > 0 && !ins))
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for a %lld-element result", op,
                      (long long)n);
  node->value = dml_tensor_view(data, ndim, shape);
  node->op = op;
  node->n_inputs = n_inputs;
  node->inputs = ins;
  for (int i = 0; i < n_inputs; i++) {
    ins[i] = inputs[i];
    inputs[i]->consumers++;
    if (inputs[i]->requires_grad && !g->inference) node->requires_grad = 1;
  }
  DML_TRY(tape_push(g, node));
  *out = node;
  return DML_OK;
}

float *dml__node_grad(dml_graph *g, dml_node *n) {
  if (!n->grad) {
    if (n->param) {
      n->grad = n->param->grad;
    } else {
      int64_t len = dml__numel(n);
      float *gr = dml__arena_alloc(&g->arena, len * (int64_t)sizeof(float));
      if (gr) {
#pragma omp parallel for schedule(static) if (len > 65536)
        for (int64_t i = 0; i < len; i++) gr[i] = 0.0f;
      }
      n->grad = gr;
    }
  }
  return n->grad;
}

dml_status dml__check_node(const char *op, const dml_node *n, const char *what) {
  if (!n) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %s is NULL", op, what);
  return DML_OK;
}

dml_status dml__check_rank(const char *op, const dml_node *n, int min_rank, int max_rank) {
  if (n->value.ndim < min_rank || n->value.ndim > max_rank) {
    char s[96];
    dml_tensor_shape_str(&n->value, s, sizeof s);
    if (min_rank == max_rank)
      return dml__error(DML_ERR_SHAPE, "%s: expected a rank-%d input, got shape %s", op,
                        min_rank, s);
    return dml__error(DML_ERR_SHAPE, "%s: expected an input of rank %d to %d, got shape %s", op,
                      min_rank, max_rank, s);
  }
  return DML_OK;
}

dml_status dml_graph_input(dml_graph *g, const float *data, int ndim, const int64_t *shape,
                           int requires_grad, dml_node **out) {
  if (!data || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_graph_input: data or out is NULL");
  dml_node *n = NULL;
  DML_TRY(dml__node_new(g, "input", ndim, shape, NULL, 0, &n));
  memcpy(n->value.data, data, (size_t)dml__numel(n) * sizeof(float));
  /* NaN or Inf would silently poison every later value: refuse it at the door. */
  dml_status st = dml_tensor_check_finite(&n->value, "graph input");
  if (st != DML_OK) {
    g->tape_len--; /* drop the node just recorded */
    return st;
  }
  n->requires_grad = requires_grad ? 1 : 0;
  *out = n;
  return DML_OK;
}

dml_status dml_graph_param(dml_graph *g, dml_param *param, dml_node **out) {
  if (!g || !param || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_graph_param: NULL argument");
  if (!param->value)
    return dml__error(DML_ERR_STATE, "parameter '%s' has no storage: finalize its store first",
                      param->name);
  if (g->backward_done)
    return dml__error(DML_ERR_STATE, "the graph was already differentiated; reset it first");
  dml_node *n = dml__arena_calloc(&g->arena, (int64_t)sizeof *n);
  if (!n) return dml__error(DML_ERR_NO_MEMORY, "out of memory for a parameter node");
  n->value = dml_tensor_view(param->value, param->ndim, param->shape);
  n->op = "param";
  n->param = param;
  n->requires_grad = param->trainable;
  DML_TRY(tape_push(g, n));
  *out = n;
  return DML_OK;
}

dml_status dml_graph_backward(dml_graph *g, dml_node *root, const float *seed_grad) {
  if (!g || !root) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_graph_backward: NULL argument");
  if (g->backward_done)
    return dml__error(DML_ERR_STATE, "backward was already run on this graph; reset it and "
                                     "record the forward pass again");
  if (g->inference)
    return dml__error(DML_ERR_STATE, "this forward pass was recorded for inference only "
                                     "(dml_model_predict); record it again to differentiate");
  int64_t n = dml__numel(root);
  if (!seed_grad && n != 1)
    return dml__error(DML_ERR_SHAPE,
                      "backward from a %lld-element node needs an upstream gradient "
                      "(seed_grad); only a scalar loss is seeded with 1",
                      (long long)n);
  /* Find root on the tape before touching any state. */
  int64_t start = g->tape_len - 1;
  while (start >= 0 && g->tape[start] != root) start--;
  if (start < 0) return dml__error(DML_ERR_INVALID_ARGUMENT, "backward: node is not on this graph");
  g->backward_done = 1;
  if (!root->requires_grad) return DML_OK; /* nothing depends on a parameter */
  float *gr;
  if (!root->grad && !root->param && seed_grad) {
    /* The root's gradient is only read by the sweep (its consumers, if any, come after it on
     * the tape and are skipped), so it can be the caller's seed itself: no copy. */
    root->grad = (float *)seed_grad;
  } else {
    gr = dml__node_grad(g, root);
    if (!gr) return dml__error(DML_ERR_NO_MEMORY, "out of memory for gradients");
    if (seed_grad) {
#pragma omp parallel for schedule(static) if (n > 65536)
      for (int64_t i = 0; i < n; i++) gr[i] += seed_grad[i];
    } else {
      gr[0] += 1.0f;
    }
  }
  for (int64_t i = start; i >= 0; i--) {
    dml_node *node = g->tape[i];
    if (!node->requires_grad || !node->grad || !node->backward) continue;
    /* make sure every input that needs a gradient has its buffer before the op runs */
    node->fresh_inputs = 0;
    for (int k = 0; k < node->n_inputs; k++) {
      dml_node *in = node->inputs[k];
      if (!in->requires_grad) continue;
      if (!in->grad && !in->param && node->backward_overwrites && k < 32) {
        /* an in-place elementwise op hands its own gradient buffer down (never the caller's
         * seed, which is read-only) */
        if (node->grad_in_place && in->consumers == 1 && node->grad != seed_grad &&
            dml__numel(in) == dml__numel(node))
          in->grad = node->grad;
        else
          in->grad = dml__arena_alloc(&g->arena, dml__numel(in) * (int64_t)sizeof(float));
        if (in->grad) node->fresh_inputs |= 1u << k;
      }
      if (!dml__node_grad(g, in))
        return dml__error(DML_ERR_NO_MEMORY, "out of memory for gradients in %s", node->op);
    }
    node->backward(g, node);
  }
  return DML_OK;
}

const dml_tensor *dml_node_value(const dml_node *n) { return n ? &n->value : NULL; }
const float *dml_node_grad(const dml_node *n) { return n ? n->grad : NULL; }
const char *dml_node_op(const dml_node *n) { return n ? n->op : ""; }

void dml_graph_get_stats(const dml_graph *g, dml_graph_stats *out) {
  if (!g || !out) return;
  out->step_bytes = g->arena.used_in_step;
  out->peak_step_bytes = g->arena.peak_step_bytes;
  out->arena_heap_allocations = g->arena.heap_allocations;
  out->nodes = g->tape_len;
}
