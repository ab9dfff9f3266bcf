/* Shape ops: reshape, flatten, concat and slice. Reshape and flatten are views of their input's
 * data (no op writes into its inputs, so sharing is safe); concat and slice copy. Gradients
 * route back unchanged:
 *   reshape / flatten: dx += dy (same element order)
 *   concat along axis: dx_k += dy[..., off_k : off_k + size_k, ...]
 *   slice along axis:  dx[..., start : start + length, ...] += dy
 * With x viewed as [outer, size(axis), inner], every op moves contiguous runs of
 * size(axis)-slices * inner floats per outer index. Axes may be negative (counted from the
 * end), as in torch. */
#include <string.h>

#include "core/graph_internal.h"
#include "dml/ops.h"

#define PAR_MIN 32768

static void shape_str(int ndim, const int64_t *shape, char *buf, int size) {
  dml_tensor t = dml_tensor_view(NULL, ndim, shape);
  dml_tensor_shape_str(&t, buf, size);
}

/* Product of the dimensions [from, to) of t. */
static int64_t dims_product(const dml_tensor *t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= t->shape[i];
  return p;
}

/* ---- reshape / flatten ---- */

static void copy_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const int64_t len = dml__numel(n);
  const float *dy = n->grad;
  float *dx = n->inputs[0]->grad;
  if (dml__grad_fresh(n, 0)) {
    if (n->inputs[0]->consumers == 1) {
      /* x feeds only this node, so no other gradient will ever land in x's buffer: let x
       * share ours (same elements, same order) instead of copying */
      n->inputs[0]->grad = n->grad;
    } else if (len > 0) {
      memcpy(dx, dy, (size_t)len * sizeof(float));
    }
    return;
  }
#pragma omp parallel for schedule(static) if (len > PAR_MIN)
  for (int64_t i = 0; i < len; i++) dx[i] += dy[i];
}

static dml_status reshaped_view(dml_graph *g, const char *op, dml_node *x, int ndim,
                                const int64_t *shape, dml_node **out) {
  dml_node *y;
  DML_TRY(dml__node_new_view(g, op, ndim, shape, &x, 1, x->value.data, &y));
  y->backward = copy_backward;
  y->backward_overwrites = 1;
  *out = y;
  return DML_OK;
}

dml_status dml_op_reshape(dml_graph *g, dml_node *x, int ndim, const int64_t *shape,
                          dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_reshape: out is NULL");
  DML_TRY(dml__check_node("reshape", x, "x"));
  if (ndim < 0 || ndim > DML_MAX_DIMS)
    return dml__error(DML_ERR_SHAPE, "reshape: target rank %d is outside 0..%d", ndim,
                      DML_MAX_DIMS);
  if (ndim > 0 && !shape)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "reshape: shape is NULL");
  char sx[96], st[96];
  dml_tensor_shape_str(&x->value, sx, sizeof sx);
  shape_str(ndim, shape, st, sizeof st);
  int64_t resolved[DML_MAX_DIMS];
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < ndim; i++) {
    resolved[i] = shape[i];
    if (shape[i] == -1) {
      if (infer >= 0)
        return dml__error(DML_ERR_SHAPE, "reshape: target %s has more than one -1", st);
      infer = i;
    } else if (shape[i] < 0) {
      return dml__error(DML_ERR_SHAPE, "reshape: target %s has a negative dimension", st);
    } else {
      if (shape[i] > 0 && known > DML__MAX_NUMEL / shape[i])
        return dml__error(DML_ERR_SHAPE, "reshape: target %s is too large", st);
      known *= shape[i];
    }
  }
  const int64_t numel = dml__numel(x);
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      return dml__error(DML_ERR_SHAPE,
                        "reshape: cannot infer the -1 in %s from x %s (%lld elements)", st, sx,
                        (long long)numel);
    resolved[infer] = numel / known;
    known = numel;
  }
  if (known != numel)
    return dml__error(DML_ERR_SHAPE, "reshape: x %s has %lld elements, target %s has %lld", sx,
                      (long long)numel, st, (long long)known);
  return reshaped_view(g, "reshape", x, ndim, resolved, out);
}

dml_status dml_op_flatten(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_flatten: out is NULL");
  DML_TRY(dml__check_node("flatten", x, "x"));
  DML_TRY(dml__check_rank("flatten", x, 2, DML_MAX_DIMS));
  int64_t shape[2] = {x->value.shape[0], dims_product(&x->value, 1, x->value.ndim)};
  return reshaped_view(g, "flatten", x, 2, shape, out);
}

/* ---- concat ---- */

/* Moves the slab [outer, width * inner] between a tensor and its place at column `offset` in a
 * tensor of `total` slices along the axis: to_whole copies part -> whole (forward),
 * otherwise whole -> part is accumulated (backward). */
static void slab_copy(float *whole, float *part, int64_t outer, int64_t total, int64_t offset,
                      int64_t width, int64_t inner, int to_whole) {
  const int64_t run = width * inner;
#pragma omp parallel for schedule(static) if (outer * run > PAR_MIN)
  for (int64_t o = 0; o < outer; o++) {
    float *w = whole + (o * total + offset) * inner;
    float *p = part + o * run;
    if (to_whole) {
      memcpy(w, p, (size_t)run * sizeof(float));
    } else {
      for (int64_t k = 0; k < run; k++) p[k] += w[k];
    }
  }
}

static void concat_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const int axis = (int)n->attr.i[0];
  const int64_t outer = dims_product(&n->value, 0, axis);
  const int64_t inner = dims_product(&n->value, axis + 1, n->value.ndim);
  const int64_t total = n->value.shape[axis];
  int64_t offset = 0;
  for (int k = 0; k < n->n_inputs; k++) {
    dml_node *x = n->inputs[k];
    const int64_t width = x->value.shape[axis];
    if (x->requires_grad) slab_copy(n->grad, x->grad, outer, total, offset, width, inner, 0);
    offset += width;
  }
}

dml_status dml_op_concat(dml_graph *g, dml_node *const *xs, int n, int axis, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_concat: out is NULL");
  if (!xs || n < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "concat: needs at least one input (got %d)",
                      xs ? n : 0);
  for (int k = 0; k < n; k++)
    if (!xs[k]) return dml__error(DML_ERR_INVALID_ARGUMENT, "concat: input %d is NULL", k);
  const dml_tensor *first = &xs[0]->value;
  const int nd = first->ndim;
  if (nd < 1) return dml__error(DML_ERR_SHAPE, "concat: inputs must have rank >= 1");
  if (axis < -nd || axis >= nd)
    return dml__error(DML_ERR_SHAPE, "concat: axis %d is out of range for rank %d", axis, nd);
  if (axis < 0) axis += nd;
  int64_t shape[DML_MAX_DIMS];
  memcpy(shape, first->shape, sizeof shape);
  shape[axis] = 0;
  for (int k = 0; k < n; k++) {
    const dml_tensor *t = &xs[k]->value;
    int agree = t->ndim == nd;
    for (int i = 0; agree && i < nd; i++)
      if (i != axis && t->shape[i] != first->shape[i]) agree = 0;
    if (!agree) {
      char s0[96], sk[96];
      dml_tensor_shape_str(first, s0, sizeof s0);
      dml_tensor_shape_str(t, sk, sizeof sk);
      return dml__error(DML_ERR_SHAPE,
                        "concat: input 0 %s and input %d %s differ outside axis %d", s0, k, sk,
                        axis);
    }
    shape[axis] += t->shape[axis];
  }
  dml_node *y;
  DML_TRY(dml__node_new(g, "concat", nd, shape, xs, n, &y));
  const int64_t outer = dims_product(&y->value, 0, axis);
  const int64_t inner = dims_product(&y->value, axis + 1, nd);
  int64_t offset = 0;
  for (int k = 0; k < n; k++) {
    const int64_t width = xs[k]->value.shape[axis];
    slab_copy(y->value.data, xs[k]->value.data, outer, shape[axis], offset, width, inner, 1);
    offset += width;
  }
  y->attr.i[0] = axis;
  y->backward = concat_backward;
  *out = y;
  return DML_OK;
}

/* ---- slice ---- */

static void slice_backward(dml_graph *g, dml_node *n) {
  (void)g;
  dml_node *x = n->inputs[0];
  const int axis = (int)n->attr.i[0];
  const int64_t start = n->attr.i[1];
  const int64_t outer = dims_product(&x->value, 0, axis);
  const int64_t inner = dims_product(&x->value, axis + 1, x->value.ndim);
  const int64_t total = x->value.shape[axis], width = n->value.shape[axis];
  const int64_t run = width * inner;
  const float *dy = n->grad;
  float *dx = x->grad;
#pragma omp parallel for schedule(static) if (outer * run > PAR_MIN)
  for (int64_t o = 0; o < outer; o++) {
    float *d = dx + (o * total + start) * inner;
    const float *s = dy + o * run;
    for (int64_t k = 0; k < run; k++) d[k] += s[k];
  }
}

dml_status dml_op_slice(dml_graph *g, dml_node *x, int axis, int64_t start, int64_t length,
                        dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_slice: out is NULL");
  DML_TRY(dml__check_node("slice", x, "x"));
  DML_TRY(dml__check_rank("slice", x, 1, DML_MAX_DIMS));
  const int nd = x->value.ndim;
  char sx[96];
  dml_tensor_shape_str(&x->value, sx, sizeof sx);
  if (axis < -nd || axis >= nd)
    return dml__error(DML_ERR_SHAPE, "slice: axis %d is out of range for x %s", axis, sx);
  if (axis < 0) axis += nd;
  const int64_t size = x->value.shape[axis];
  if (start < 0) start += size;
  if (start < 0 || length < 0 || start > size || length > size - start)
    return dml__error(DML_ERR_SHAPE,
                      "slice: [%lld, %lld + %lld) is outside dimension %d (size %lld) of x %s",
                      (long long)start, (long long)start, (long long)length, axis,
                      (long long)size, sx);
  int64_t shape[DML_MAX_DIMS];
  memcpy(shape, x->value.shape, sizeof shape);
  shape[axis] = length;
  dml_node *y;
  DML_TRY(dml__node_new(g, "slice", nd, shape, &x, 1, &y));
  const int64_t outer = dims_product(&x->value, 0, axis);
  const int64_t inner = dims_product(&x->value, axis + 1, nd);
  const int64_t run = length * inner;
  const float *xd = x->value.data;
  float *yd = y->value.data;
#pragma omp parallel for schedule(static) if (outer * run > PAR_MIN)
  for (int64_t o = 0; o < outer; o++)
    if (run > 0) memcpy(yd + o * run, xd + (o * size + start) * inner, (size_t)run * sizeof(float));
  y->attr.i[0] = axis;
  y->attr.i[1] = start;
  y->backward = slice_backward;
  *out = y;
  return DML_OK;
}
