/* Convolution ops on the tape: conv2d and conv1d (a conv2d with H = KH = 1), as
 * torch.nn.functional.conv2d / conv1d:
 *   Ho = floor((H + 2 ph - dh (KH - 1) - 1) / sh) + 1, and likewise Wo
 *   y[n,o,oh,ow] = b[o] + sum_{c < Cg, kh, kw} w[o,c,kh,kw] x[n, g(o) Cg + c, oh sh - ph + kh dh,
 *                                                           ow sw - pw + kw dw]   (0 outside)
 *   db[o] = sum_{n,oh,ow} dy[n,o,oh,ow]; dW and dx in conv_direct.c / im2col.c.
 * Each pass runs on the AVX-512 direct kernels when they support the geometry, otherwise on
 * im2col + sgemm. The workspace of the forward and of every backward pass that will run is
 * taken from the arena here, at forward time, so backward never allocates. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "dml/ops.h"
#include "ops/conv_internal.h"

typedef struct conv_saved {
  dml__conv_geom q;
  int nt;
  float *ws;
  int dw_direct, dx_direct; /* which backward passes run on the direct kernels */
} conv_saved;

dml_conv_params dml_conv_params_default(void) {
  dml_conv_params p;
  p.stride[0] = p.stride[1] = 1;
  p.padding[0] = p.padding[1] = 0;
  p.dilation[0] = p.dilation[1] = 1;
  p.groups = 1;
  return p;
}

/* Validates the inputs and fills the geometry; dims is 1 or 2. */
static dml_status conv_setup(const char *op, int dims, dml_node *x, dml_node *w, dml_node *b,
                             const dml_conv_params *p, dml__conv_geom *q) {
  DML_TRY(dml__check_node(op, x, "x"));
  DML_TRY(dml__check_node(op, w, "weight"));
  dml_conv_params dflt = dml_conv_params_default();
  if (!p) p = &dflt;
  char sx[96], sw[96];
  dml_tensor_shape_str(&x->value, sx, sizeof sx);
  dml_tensor_shape_str(&w->value, sw, sizeof sw);
  if (x->value.ndim != dims + 2)
    return dml__error(DML_ERR_SHAPE, "%s: x must have rank %d (%s), got shape %s", op, dims + 2,
                      dims == 2 ? "[N, C, H, W]" : "[N, C, L]", sx);
  if (w->value.ndim != dims + 2)
    return dml__error(DML_ERR_SHAPE, "%s: weight must have rank %d (%s), got shape %s", op,
                      dims + 2, dims == 2 ? "[O, C/groups, KH, KW]" : "[O, C/groups, K]", sw);
  for (int d = 0; d < dims; d++) {
    if (p->stride[d] < 1 || p->dilation[d] < 1 || p->padding[d] < 0)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: stride (%d) and dilation (%d) must be >= 1 and padding (%d) >= 0", op,
                        p->stride[d], p->dilation[d], p->padding[d]);
  }
  if (p->groups < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: groups must be >= 1 (got %d)", op, p->groups);
  memset(q, 0, sizeof *q);
  const int64_t *xs = x->value.shape, *ws = w->value.shape;
  q->n = xs[0];
  q->c = xs[1];
  q->h = dims == 2 ? xs[2] : 1;
  q->w = xs[dims + 1];
  q->o = ws[0];
  q->kh = dims == 2 ? ws[2] : 1;
  q->kw = ws[dims + 1];
  q->groups = p->groups;
  q->sh = dims == 2 ? p->stride[0] : 1;
  q->sw = p->stride[dims - 1];
  q->ph = dims == 2 ? p->padding[0] : 0;
  q->pw = p->padding[dims - 1];
  q->dh = dims == 2 ? p->dilation[0] : 1;
  q->dw = p->dilation[dims - 1];
  if (q->c % q->groups != 0 || q->o % q->groups != 0)
    return dml__error(DML_ERR_SHAPE,
                      "%s: input channels (%lld, x %s) and output channels (%lld, weight %s) "
                      "must both be divisible by groups (%lld)",
                      op, (long long)q->c, sx, (long long)q->o, sw, (long long)q->groups);
  q->cg = q->c / q->groups;
  q->og = q->o / q->groups;
  if (ws[1] != q->cg)
    return dml__error(DML_ERR_SHAPE,
                      "%s: weight %s expects %lld input channels per group, but x %s has %lld "
                      "channels in %lld group(s) (%lld per group)",
                      op, sw, (long long)ws[1], sx, (long long)q->c, (long long)q->groups,
                      (long long)q->cg);
  if (q->o < 1 || q->kh < 1 || q->kw < 1)
    return dml__error(DML_ERR_SHAPE, "%s: weight %s has an empty dimension", op, sw);
  if (b) {
    if (b->value.ndim != 1 || b->value.shape[0] != q->o) {
      char sb[96];
      dml_tensor_shape_str(&b->value, sb, sizeof sb);
      return dml__error(DML_ERR_SHAPE, "%s: bias must have shape [%lld] (weight %s), got %s", op,
                        (long long)q->o, sw, sb);
    }
  }
  int64_t eh = q->dh * (q->kh - 1) + 1, ew = q->dw * (q->kw - 1) + 1;
  int64_t hp = q->h + 2 * q->ph, wp = q->w + 2 * q->pw;
  if (eh > hp || ew > wp) {
    if (dims == 2)
      return dml__error(DML_ERR_SHAPE,
                        "%s: kernel %lldx%lld (dilated: %lldx%lld) is larger than the padded "
                        "input %lldx%lld (x %s, padding %lld,%lld)",
                        op, (long long)q->kh, (long long)q->kw, (long long)eh, (long long)ew,
                        (long long)hp, (long long)wp, sx, (long long)q->ph, (long long)q->pw);
    return dml__error(DML_ERR_SHAPE,
                      "%s: kernel %lld (dilated: %lld) is larger than the padded input %lld "
                      "(x %s, padding %lld)",
                      op, (long long)q->kw, (long long)ew, (long long)wp, sx, (long long)q->pw);
  }
  q->ho = (hp - eh) / q->sh + 1;
  q->wo = (wp - ew) / q->sw + 1;
  return DML_OK;
}

static void bias_grad(const dml__conv_geom *q, const float *dy, float *db) {
  int64_t np = q->ho * q->wo;
#pragma omp parallel for schedule(static) if (q->n * q->o * np > 32768)
  for (int64_t o = 0; o < q->o; o++) {
    float s = 0.0f;
    for (int64_t n = 0; n < q->n; n++) {
      const float *r = dy + (n * q->o + o) * np;
      float t = 0.0f;
      for (int64_t i = 0; i < np; i++) t += r[i];
      s += t;
    }
    db[o] += s;
  }
}

static void conv_backward(dml_graph *g, dml_node *node) {
  (void)g;
  const conv_saved *sv = node->saved;
  const dml__conv_geom *q = &sv->q;
  dml_node *x = node->inputs[0], *w = node->inputs[1];
  dml_node *b = node->n_inputs > 2 ? node->inputs[2] : NULL;
  const float *dy = node->grad;
  float *dx = x->requires_grad ? x->grad : NULL;
  float *dw = w->requires_grad ? w->grad : NULL;
  float *db = b && b->requires_grad ? b->grad : NULL;
  if (dw && sv->dw_direct) {
    dml__conv_direct_backward_w(q, sv->nt, sv->ws, x->value.data, dy, dw, db);
    dw = NULL;
    db = NULL;
  }
  if (dx && sv->dx_direct) {
    dml__conv_direct_backward_x(q, sv->nt, sv->ws, w->value.data, dy, dx);
    dx = NULL;
  }
  if (dx || dw) dml__conv_gemm_backward(q, sv->ws, x->value.data, w->value.data, dy, dx, dw);
  if (db) bias_grad(q, dy, db);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static dml_status conv_record(dml_graph *g, const char *op, int dims, dml_node *x, dml_node *w,
                              dml_node *b, const dml_conv_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: out is NULL", op);
  dml__conv_geom q;
  DML_TRY(conv_setup(op, dims, x, w, b, p, &q));
  dml_node *ins[3] = {x, w, b};
  int64_t shape[4] = {q.n, q.o, q.ho, q.wo};
  if (dims == 1) shape[2] = q.wo;
  dml_node *y;
  DML_TRY(dml__node_new(g, op, dims + 2, shape, ins, b ? 3 : 2, &y));

  /* Plan the passes and size one workspace for all of them (they run one after another). */
  int nt = omp_get_max_threads();
  int64_t fwd = dml__conv_direct_forward_size(&q, nt);
  int fwd_direct = fwd >= 0, dw_direct = 0, dx_direct = 0;
  int64_t need = fwd_direct ? fwd : dml__conv_gemm_size(&q);
  if (y->requires_grad && w->requires_grad) {
    int64_t s = dml__conv_direct_backward_w_size(&q, nt);
    dw_direct = s >= 0;
    need = max64(need, dw_direct ? s : dml__conv_gemm_size(&q));
  }
  if (y->requires_grad && x->requires_grad) {
    int64_t s = dml__conv_direct_backward_x_size(&q, nt);
    dx_direct = s >= 0;
    need = max64(need, dx_direct ? s : dml__conv_gemm_size(&q));
  }
  float *ws = dml__graph_alloc(g, max64(need, 1) * (int64_t)sizeof(float));
  conv_saved *sv = y->requires_grad ? dml__graph_alloc(g, (int64_t)sizeof *sv) : NULL;
  if (!ws || (y->requires_grad && !sv))
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for a %lld-float workspace", op,
                      (long long)need);

  const float *bd = b ? b->value.data : NULL;
  if (fwd_direct) {
    dml__conv_direct_forward(&q, nt, ws, x->value.data, w->value.data, bd, y->value.data);
  } else {
    dml__conv_gemm_forward(&q, ws, x->value.data, w->value.data, y->value.data);
    if (bd) {
      int64_t np = q.ho * q.wo;
      float *yd = y->value.data;
#pragma omp parallel for collapse(2) schedule(static) if (q.n * q.o * np > 32768)
      for (int64_t n = 0; n < q.n; n++)
        for (int64_t o = 0; o < q.o; o++) {
          float *r = yd + (n * q.o + o) * np;
          for (int64_t i = 0; i < np; i++) r[i] += bd[o];
        }
    }
  }
  if (sv) {
    sv->q = q;
    sv->nt = nt;
    sv->ws = ws;
    sv->dw_direct = dw_direct;
    sv->dx_direct = dx_direct;
    y->saved = sv;
    y->backward = conv_backward;
  }
  *out = y;
  return DML_OK;
}

dml_status dml_op_conv2d(dml_graph *g, dml_node *x, dml_node *w, dml_node *b,
                         const dml_conv_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_conv2d: out is NULL");
  return conv_record(g, "conv2d", 2, x, w, b, p, out);
}

dml_status dml_op_conv1d(dml_graph *g, dml_node *x, dml_node *w, dml_node *b,
                         const dml_conv_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_conv1d: out is NULL");
  return conv_record(g, "conv1d", 1, x, w, b, p, out);
}
