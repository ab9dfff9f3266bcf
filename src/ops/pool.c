/* Pooling ops: windowed max / average (1d, 2d) and global mean / max, as torch.nn.functional
 * (max_pool2d, avg_pool2d, ... without ceil_mode or dilation):
 *   Ho = floor((H + 2 ph - KH) / sh) + 1, and likewise Wo; stride 0 means stride = kernel
 *   max: y = max over the window clipped to the input, so padding never wins; the first maximum
 *        in row-major order wins ties and a NaN wins over numbers (as torch). dx[argmax] += dy.
 *   avg: y = (sum over the clipped window) / divisor; divisor = number of window positions
 *        inside the padded input (KH*KW here) with count_include_pad, else the number of input
 *        elements in the window. dx[window] += dy / divisor.
 *   global: y[n,c] = mean or max over every position after dim 1 (max: first maximum).
 * A 1d pool is a 2d pool with H = KH = 1. Planes (n, c) are independent, so every loop is an
 * OpenMP loop over planes and backward needs no atomics. */
#include <math.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/graph_internal.h"
#include "dml/ops.h"

#define PAR_MIN 16384

typedef struct pool_geom {
  int64_t planes, h, w, kh, kw, sh, sw, ph, pw, ho, wo;
  int include_pad;
} pool_geom;

typedef struct pool_saved {
  pool_geom q;
  int32_t *argmax; /* max pooling: index ih*W + iw inside the plane, per output */
} pool_saved;

/* Validates x and p and fills the geometry; dims is 1 or 2. */
static dml_status pool_setup(const char *op, int dims, dml_node *x, const dml_pool_params *p,
                             pool_geom *q) {
  DML_TRY(dml__check_node(op, x, "x"));
  if (!p) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: params is NULL", op);
  char sx[96];
  dml_tensor_shape_str(&x->value, sx, sizeof sx);
  if (x->value.ndim != dims + 2)
    return dml__error(DML_ERR_SHAPE, "%s: x must have rank %d (%s), got shape %s", op, dims + 2,
                      dims == 2 ? "[N, C, H, W]" : "[N, C, L]", sx);
  int64_t k[2], s[2], pd[2];
  for (int d = 0; d < dims; d++) {
    k[d] = p->kernel[d];
    s[d] = p->stride[d] == 0 ? p->kernel[d] : p->stride[d];
    pd[d] = p->padding[d];
    if (k[d] < 1 || s[d] < 1 || pd[d] < 0)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: kernel (%d) must be >= 1, stride (%d) >= 0 and padding (%d) >= 0", op,
                        p->kernel[d], p->stride[d], p->padding[d]);
    if (2 * pd[d] > k[d])
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: padding (%d) must be at most half the kernel size (%d)", op,
                        p->padding[d], p->kernel[d]);
  }
  memset(q, 0, sizeof *q);
  const int64_t *xs = x->value.shape;
  q->planes = xs[0] * xs[1];
  q->h = dims == 2 ? xs[2] : 1;
  q->w = xs[dims + 1];
  q->kh = dims == 2 ? k[0] : 1;
  q->kw = k[dims - 1];
  q->sh = dims == 2 ? s[0] : 1;
  q->sw = s[dims - 1];
  q->ph = dims == 2 ? pd[0] : 0;
  q->pw = pd[dims - 1];
  q->include_pad = p->count_include_pad ? 1 : 0;
  if (q->h + 2 * q->ph < q->kh || q->w + 2 * q->pw < q->kw) {
    if (dims == 2)
      return dml__error(DML_ERR_SHAPE,
                        "%s: kernel %lldx%lld is larger than the padded input %lldx%lld (x %s)", op,
                        (long long)q->kh, (long long)q->kw, (long long)(q->h + 2 * q->ph),
                        (long long)(q->w + 2 * q->pw), sx);
    return dml__error(DML_ERR_SHAPE, "%s: kernel %lld is larger than the padded input %lld (x %s)",
                      op, (long long)q->kw, (long long)(q->w + 2 * q->pw), sx);
  }
  q->ho = (q->h + 2 * q->ph - q->kh) / q->sh + 1;
  q->wo = (q->w + 2 * q->pw - q->kw) / q->sw + 1;
  return DML_OK;
}

static void out_shape(int dims, const dml_node *x, const pool_geom *q, int64_t *shape) {
  shape[0] = x->value.shape[0];
  shape[1] = x->value.shape[1];
  if (dims == 2) {
    shape[2] = q->ho;
    shape[3] = q->wo;
  } else {
    shape[2] = q->wo;
  }
}

/* Window of output (oh, ow) clipped to the input: rows [*h0, *h1), columns [*w0, *w1); returns
 * the window's size clipped to the padded input (torch's pool_size). */
static inline int64_t window(const pool_geom *q, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1,
                             int64_t *w0, int64_t *w1) {
  int64_t hs = oh * q->sh - q->ph, ws = ow * q->sw - q->pw;
  int64_t he = hs + q->kh, we = ws + q->kw;
  if (he > q->h + q->ph) he = q->h + q->ph;
  if (we > q->w + q->pw) we = q->w + q->pw;
  int64_t size = (he - hs) * (we - ws);
  *h0 = hs < 0 ? 0 : hs;
  *w0 = ws < 0 ? 0 : ws;
  *h1 = he > q->h ? q->h : he;
  *w1 = we > q->w ? q->w : we;
  return size;
}

/* ---- max pooling ---- */

#if defined(__AVX512F__)
/* One output row of a 2x2 / stride 2 max pool, 16 outputs per vector: the even and odd columns
 * of the two input rows are separated with permutations, then the four candidates are compared
 * in window order with the same rule as the scalar code (greater, or NaN). am NULL: values
 * only (inference). */
static void maxpool2_row(const float *r0, int64_t w, int64_t wo, int64_t base, float *y,
                         int32_t *am) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i step = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const float *r1 = r0 + w;
  for (int64_t o0 = 0; o0 < wo; o0 += 16) {
    int64_t n = wo - o0 < 16 ? wo - o0 : 16, lo_n = 2 * n < 16 ? 2 * n : 16, hi_n = 2 * n - lo_n;
    __mmask16 mlo = (__mmask16)(lo_n >= 16 ? 0xFFFF : (1u << lo_n) - 1u);
    __mmask16 mhi = (__mmask16)(hi_n >= 16 ? 0xFFFF : (1u << hi_n) - 1u);
    __mmask16 mo = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1u);
    const float *a = r0 + 2 * o0, *b = r1 + 2 * o0;
    __m512 alo = _mm512_maskz_loadu_ps(mlo, a), ahi = _mm512_maskz_loadu_ps(mhi, a + 16);
    __m512 blo = _mm512_maskz_loadu_ps(mlo, b), bhi = _mm512_maskz_loadu_ps(mhi, b + 16);
    __m512 c[4] = {_mm512_permutex2var_ps(alo, even, ahi), _mm512_permutex2var_ps(alo, odd, ahi),
                   _mm512_permutex2var_ps(blo, even, bhi), _mm512_permutex2var_ps(blo, odd, bhi)};
    __m512i idx0 = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(base + 2 * o0)), step);
    __m512i off[4] = {_mm512_setzero_si512(), _mm512_set1_epi32(1), _mm512_set1_epi32((int32_t)w),
                      _mm512_set1_epi32((int32_t)w + 1)};
    __m512 m = c[0];
    __m512i idx = idx0;
    for (int k = 1; k < 4; k++) {
      __mmask16 win =
          _mm512_cmp_ps_mask(c[k], m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(c[k], c[k], _CMP_UNORD_Q);
      m = _mm512_mask_mov_ps(m, win, c[k]);
      if (am) idx = _mm512_mask_mov_epi32(idx, win, _mm512_add_epi32(idx0, off[k]));
    }
    _mm512_mask_storeu_ps(y + o0, mo, m);
    if (am) _mm512_mask_storeu_epi32(am + o0, mo, idx); /* NULL: inference, no backward */
  }
}
#endif


/* y[P][Ho*Wo] = window max of x[P][H*W], argmax[P][Ho*Wo] = its index in the plane (argmax
 * NULL: values only, for inference). */
static void maxpool_forward(const pool_geom *q, const float *x, float *y, int32_t *argmax) {
  int64_t hw = q->h * q->w, ohw = q->ho * q->wo;
  /* 2x2 windows with stride 2 and no padding: every window is whole */
  int k2 = q->kh == 2 && q->kw == 2 && q->sh == 2 && q->sw == 2 && q->ph == 0 && q->pw == 0;
#pragma omp parallel for schedule(static) if (q->planes * ohw > PAR_MIN)
  for (int64_t pl = 0; pl < q->planes; pl++) {
    const float *xp = x + pl * hw;
    float *yp = y + pl * ohw;
    int32_t *ap = argmax ? argmax + pl * ohw : NULL;
    for (int64_t oh = 0; oh < q->ho; oh++) {
#if defined(__AVX512F__)
      if (k2) {
        maxpool2_row(xp + 2 * oh * q->w, q->w, q->wo, 2 * oh * q->w, yp + oh * q->wo,
                     ap ? ap + oh * q->wo : NULL);
        continue;
      }
#endif
      if (k2) {
        const float *r0 = xp + 2 * oh * q->w, *r1 = r0 + q->w;
        for (int64_t ow = 0; ow < q->wo; ow++) {
          int64_t i = 2 * ow;
          float m = r0[i];
          int64_t best = 2 * oh * q->w + i;
          float v = r0[i + 1];
          if (v > m || isnan(v)) m = v, best = 2 * oh * q->w + i + 1;
          v = r1[i];
          if (v > m || isnan(v)) m = v, best = (2 * oh + 1) * q->w + i;
          v = r1[i + 1];
          if (v > m || isnan(v)) m = v, best = (2 * oh + 1) * q->w + i + 1;
          yp[oh * q->wo + ow] = m;
          if (ap) ap[oh * q->wo + ow] = (int32_t)best;
        }
        continue;
      }
      for (int64_t ow = 0; ow < q->wo; ow++) {
        int64_t h0, h1, w0, w1;
        window(q, oh, ow, &h0, &h1, &w0, &w1);
        float m = -INFINITY;
        int64_t best = h0 * q->w + w0;
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) {
            float v = xp[ih * q->w + iw];
            if (v > m || isnan(v)) {
              m = v;
              best = ih * q->w + iw;
            }
          }
        yp[oh * q->wo + ow] = m;
        if (ap) ap[oh * q->wo + ow] = (int32_t)best;
      }
    }
  }
}

/* dx[P][H*W] += dy routed to the argmax positions. */
static void maxpool_backward_kernel(const pool_geom *q, const float *dy, const int32_t *argmax,
                                    float *dx) {
  int64_t hw = q->h * q->w, ohw = q->ho * q->wo;
#pragma omp parallel for schedule(static) if (q->planes * ohw > PAR_MIN)
  for (int64_t pl = 0; pl < q->planes; pl++) {
    float *dp = dx + pl * hw;
    const float *gp = dy + pl * ohw;
    const int32_t *ap = argmax + pl * ohw;
    for (int64_t i = 0; i < ohw; i++) dp[ap[i]] += gp[i];
  }
}

static void maxpool_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const pool_saved *sv = n->saved;
  maxpool_backward_kernel(&sv->q, n->grad, sv->argmax, n->inputs[0]->grad);
}

/* ---- average pooling ---- */

static void avgpool_forward(const pool_geom *q, const float *x, float *y) {
  int64_t hw = q->h * q->w, ohw = q->ho * q->wo;
#pragma omp parallel for schedule(static) if (q->planes * ohw > PAR_MIN)
  for (int64_t pl = 0; pl < q->planes; pl++) {
    const float *xp = x + pl * hw;
    float *yp = y + pl * ohw;
    for (int64_t oh = 0; oh < q->ho; oh++)
      for (int64_t ow = 0; ow < q->wo; ow++) {
        int64_t h0, h1, w0, w1;
        int64_t size = window(q, oh, ow, &h0, &h1, &w0, &w1);
        int64_t cnt = (h1 - h0) * (w1 - w0);
        if (cnt <= 0) {
          yp[oh * q->wo + ow] = 0.0f;
          continue;
        }
        float s = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) s += xp[ih * q->w + iw];
        yp[oh * q->wo + ow] = s / (float)(q->include_pad ? size : cnt);
      }
  }
}

static void avgpool_backward_kernel(const pool_geom *q, const float *dy, float *dx) {
  int64_t hw = q->h * q->w, ohw = q->ho * q->wo;
#pragma omp parallel for schedule(static) if (q->planes * ohw > PAR_MIN)
  for (int64_t pl = 0; pl < q->planes; pl++) {
    float *dp = dx + pl * hw;
    const float *gp = dy + pl * ohw;
    for (int64_t oh = 0; oh < q->ho; oh++)
      for (int64_t ow = 0; ow < q->wo; ow++) {
        int64_t h0, h1, w0, w1;
        int64_t size = window(q, oh, ow, &h0, &h1, &w0, &w1);
        int64_t cnt = (h1 - h0) * (w1 - w0);
        if (cnt <= 0) continue;
        float v = gp[oh * q->wo + ow] / (float)(q->include_pad ? size : cnt);
        for (int64_t ih = h0; ih < h1; ih++)
          for (int64_t iw = w0; iw < w1; iw++) dp[ih * q->w + iw] += v;
      }
  }
}

static void avgpool_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const pool_saved *sv = n->saved;
  avgpool_backward_kernel(&sv->q, n->grad, n->inputs[0]->grad);
}

static dml_status pool_record(dml_graph *g, const char *op, int dims, int is_max, dml_node *x,
                              const dml_pool_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: out is NULL", op);
  pool_geom q;
  DML_TRY(pool_setup(op, dims, x, p, &q));
  int64_t shape[4];
  out_shape(dims, x, &q, shape);
  dml_node *y;
  DML_TRY(dml__node_new(g, op, dims + 2, shape, &x, 1, &y));
  int64_t ny = dml__numel(y);
  pool_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  /* the argmax only serves backward */
  int keep_argmax = is_max && y->requires_grad;
  int32_t *argmax = keep_argmax ? dml__graph_alloc(g, ny * (int64_t)sizeof(int32_t)) : NULL;
  if (!sv || (keep_argmax && !argmax))
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for saved state", op);
  sv->q = q;
  sv->argmax = argmax;
  if (is_max)
    maxpool_forward(&q, x->value.data, y->value.data, argmax);
  else
    avgpool_forward(&q, x->value.data, y->value.data);
  y->saved = sv;
  y->backward = is_max ? maxpool_backward : avgpool_backward;
  *out = y;
  return DML_OK;
}

dml_status dml_op_maxpool2d(dml_graph *g, dml_node *x, const dml_pool_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_maxpool2d: out is NULL");
  return pool_record(g, "maxpool2d", 2, 1, x, p, out);
}
dml_status dml_op_avgpool2d(dml_graph *g, dml_node *x, const dml_pool_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_avgpool2d: out is NULL");
  return pool_record(g, "avgpool2d", 2, 0, x, p, out);
}
dml_status dml_op_maxpool1d(dml_graph *g, dml_node *x, const dml_pool_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_maxpool1d: out is NULL");
  return pool_record(g, "maxpool1d", 1, 1, x, p, out);
}
dml_status dml_op_avgpool1d(dml_graph *g, dml_node *x, const dml_pool_params *p, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_avgpool1d: out is NULL");
  return pool_record(g, "avgpool1d", 1, 0, x, p, out);
}

/* ---- global pooling: x[N,C,...] -> y[N,C] ---- */

typedef struct gpool_saved {
  int64_t planes, size;
  int64_t *argmax; /* global max: index of the maximum inside each plane */
} gpool_saved;

static void gavg_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const gpool_saved *sv = n->saved;
  const float *dy = n->grad;
  float *dx = n->inputs[0]->grad;
  int64_t size = sv->size;
#pragma omp parallel for schedule(static) if (sv->planes * size > PAR_MIN)
  for (int64_t pl = 0; pl < sv->planes; pl++) {
    float v = dy[pl] / (float)size;
    float *d = dx + pl * size;
    for (int64_t i = 0; i < size; i++) d[i] += v;
  }
}

static void gmax_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const gpool_saved *sv = n->saved;
  const float *dy = n->grad;
  float *dx = n->inputs[0]->grad;
  for (int64_t pl = 0; pl < sv->planes; pl++) dx[pl * sv->size + sv->argmax[pl]] += dy[pl];
}

static dml_status global_pool(dml_graph *g, const char *op, int is_max, dml_node *x,
                              dml_node **out) {
  DML_TRY(dml__check_node(op, x, "x"));
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: out is NULL", op);
  char sx[96];
  dml_tensor_shape_str(&x->value, sx, sizeof sx);
  if (x->value.ndim < 3)
    return dml__error(DML_ERR_SHAPE,
                      "%s: x must be [N, C, ...] with at least one position "
                      "dimension, got shape %s",
                      op, sx);
  int64_t size = 1;
  for (int d = 2; d < x->value.ndim; d++) size *= x->value.shape[d];
  if (size == 0) return dml__error(DML_ERR_SHAPE, "%s: x %s has no positions to pool over", op, sx);
  int64_t shape[2] = {x->value.shape[0], x->value.shape[1]};
  dml_node *y;
  DML_TRY(dml__node_new(g, op, 2, shape, &x, 1, &y));
  int64_t planes = shape[0] * shape[1];
  gpool_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  int64_t *argmax = is_max ? dml__graph_alloc(g, (planes > 0 ? planes : 1) * 8) : NULL;
  if (!sv || (is_max && !argmax))
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for saved state", op);
  sv->planes = planes;
  sv->size = size;
  sv->argmax = argmax;
  const float *xd = x->value.data;
  float *yd = y->value.data;
#pragma omp parallel for schedule(static) if (planes * size > PAR_MIN)
  for (int64_t pl = 0; pl < planes; pl++) {
    const float *r = xd + pl * size;
    if (is_max) {
      float m = r[0];
      int64_t best = 0;
      for (int64_t i = 1; i < size; i++)
        if (r[i] > m || isnan(r[i])) m = r[i], best = i;
      yd[pl] = m;
      argmax[pl] = best;
    } else {
      double s = 0.0;
      for (int64_t i = 0; i < size; i++) s += r[i];
      yd[pl] = (float)(s / (double)size);
    }
  }
  y->saved = sv;
  y->backward = is_max ? gmax_backward : gavg_backward;
  *out = y;
  return DML_OK;
}

dml_status dml_op_global_avgpool(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_global_avgpool: out is NULL");
  return global_pool(g, "global_avgpool", 0, x, out);
}
dml_status dml_op_global_maxpool(dml_graph *g, dml_node *x, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_global_maxpool: out is NULL");
  return global_pool(g, "global_maxpool", 1, x, out);
}
