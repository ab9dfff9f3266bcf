/* Portable convolution: im2col / col2im and OpenBLAS sgemm; handles every geometry (stride,
 * padding, dilation, groups) and is the reference the direct kernels are tested against.
 *   col[(c*KH + kh)*KW + kw][oh*Wo + ow] = x[c][oh*sh - ph + kh*dh][ow*sw - pw + kw*dw] (0 outside)
 *   forward   Y_g[Og, P] = W_g[Og, Kg] col_g[Kg, P]                  (Kg = Cg*KH*KW, P = Ho*Wo)
 *   backward  dW_g += dY_g col_g^T,  dcol_g = W_g^T dY_g, dx += col2im(dcol_g)
 * Images are processed in chunks whose columns sit side by side ([Kg, chunk*P]) so that one
 * sgemm per chunk and group is large enough for OpenBLAS's own threads; im2col, col2im and the
 * copies between layouts are OpenMP loops over (image, channel). The workspace is the caller's. */
#include <cblas.h>
#include <string.h>

#include "ops/conv_internal.h"

/* Column budget of one chunk, in floats (16 MiB). */
#define CHUNK_FLOATS (4 << 20)

int dml__conv_force_gemm = 0;
int dml__conv_force_direct = 0;

/* C[m,n] = A B (+ beta C), row-major with leading dimensions. */
static void sgemm_ld(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f)
      for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (blasint)m, (blasint)n, (blasint)k, 1.0f, a, (blasint)lda, b, (blasint)ldb, beta, c,
              (blasint)ldc);
}

/* Output columns ow in [lo, hi) read input column ow*s - p + off inside [0, w). */
static void valid_range(int64_t wo, int64_t w, int64_t s, int64_t p, int64_t off, int64_t *lo,
                        int64_t *hi) {
  int64_t a = p - off; /* need ow*s >= a */
  int64_t l = a <= 0 ? 0 : (a + s - 1) / s;
  int64_t b = w - 1 + p - off; /* need ow*s <= b */
  int64_t h = b < 0 ? 0 : b / s + 1;
  if (l > wo) l = wo;
  if (h > wo) h = wo;
  if (h < l) h = l;
  *lo = l;
  *hi = h;
}

/* Rows of channel c (one image) into col rows (c*KH + kh)*KW + kw, row stride ldc. */
static void im2col_channel(const float *xc, const dml__conv_geom *q, float *col, int64_t ldc) {
  for (int64_t kh = 0; kh < q->kh; kh++)
    for (int64_t kw = 0; kw < q->kw; kw++) {
      float *row = col + (kh * q->kw + kw) * ldc;
      int64_t lo, hi;
      valid_range(q->wo, q->w, q->sw, q->pw, kw * q->dw, &lo, &hi);
      for (int64_t oh = 0; oh < q->ho; oh++) {
        float *r = row + oh * q->wo;
        int64_t ih = oh * q->sh - q->ph + kh * q->dh;
        if (ih < 0 || ih >= q->h) {
          memset(r, 0, (size_t)q->wo * sizeof(float));
          continue;
        }
        int64_t base = ih * q->w - q->pw + kw * q->dw; /* input index of ow = 0 */
        for (int64_t ow = 0; ow < lo; ow++) r[ow] = 0.0f;
        if (q->sw == 1)
          memcpy(r + lo, xc + base + lo, (size_t)(hi - lo) * sizeof(float));
        else
          for (int64_t ow = lo; ow < hi; ow++) r[ow] = xc[base + ow * q->sw];
        for (int64_t ow = hi; ow < q->wo; ow++) r[ow] = 0.0f;
      }
    }
}

/* dx channel c (one image) += col2im of its KH*KW col rows. */
static void col2im_channel(const float *col, int64_t ldc, const dml__conv_geom *q, float *dxc) {
  for (int64_t kh = 0; kh < q->kh; kh++)
    for (int64_t kw = 0; kw < q->kw; kw++) {
      const float *row = col + (kh * q->kw + kw) * ldc;
      int64_t lo, hi;
      valid_range(q->wo, q->w, q->sw, q->pw, kw * q->dw, &lo, &hi);
      for (int64_t oh = 0; oh < q->ho; oh++) {
        int64_t ih = oh * q->sh - q->ph + kh * q->dh;
        if (ih < 0 || ih >= q->h) continue;
        const float *r = row + oh * q->wo;
        int64_t base = ih * q->w - q->pw + kw * q->dw;
        for (int64_t ow = lo; ow < hi; ow++) dxc[base + ow * q->sw] += r[ow];
      }
    }
}

static int64_t chunk_images(const dml__conv_geom *q) {
  int64_t per = q->cg * q->kh * q->kw * q->ho * q->wo;
  int64_t c = per > 0 ? CHUNK_FLOATS / per : q->n;
  if (c < 1) c = 1;
  if (c > q->n) c = q->n;
  return c;
}

/* col[Kg, cnt*P] for images n0..n0+cnt-1, channels of group grp. */
static void im2col_chunk(const dml__conv_geom *q, const float *x, int64_t n0, int64_t cnt,
                         int64_t grp, float *col) {
  int64_t p = q->ho * q->wo, ld = cnt * p, khw = q->kh * q->kw;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < cnt; i++)
    for (int64_t c = 0; c < q->cg; c++)
      im2col_channel(x + (((n0 + i) * q->c) + grp * q->cg + c) * q->h * q->w, q,
                     col + c * khw * ld + i * p, ld);
}

int64_t dml__conv_gemm_size(const dml__conv_geom *q) {
  int64_t p = q->ho * q->wo, kg = q->cg * q->kh * q->kw, cn = chunk_images(q);
  /* col [Kg, cn*P] (im2col, then the column gradient), and for cn > 1 the chunk's Y or dY in
   * group-major layout [Og, cn*P] */
  int64_t col = (kg * cn * p + 15) / 16 * 16;
  return col + (cn > 1 ? q->og * cn * p : 0);
}

void dml__conv_gemm_forward(const dml__conv_geom *q, float *ws, const float *x, const float *w,
                            float *y) {
  int64_t p = q->ho * q->wo, kg = q->cg * q->kh * q->kw, cn = chunk_images(q);
  if (q->n == 0 || p == 0) return;
  float *col = ws, *yt = ws + (kg * cn * p + 15) / 16 * 16;
  for (int64_t n0 = 0; n0 < q->n; n0 += cn) {
    int64_t cnt = q->n - n0 < cn ? q->n - n0 : cn;
    for (int64_t grp = 0; grp < q->groups; grp++) {
      const float *wg = w + grp * q->og * kg;
      im2col_chunk(q, x, n0, cnt, grp, col);
      if (cnt == 1) {
        sgemm_ld(0, 0, q->og, p, kg, wg, kg, col, p, 0.0f, y + (n0 * q->o + grp * q->og) * p, p);
        continue;
      }
      sgemm_ld(0, 0, q->og, cnt * p, kg, wg, kg, col, cnt * p, 0.0f, yt, cnt * p);
#pragma omp parallel for collapse(2) schedule(static)
      for (int64_t i = 0; i < cnt; i++)
        for (int64_t o = 0; o < q->og; o++)
          memcpy(y + ((n0 + i) * q->o + grp * q->og + o) * p, yt + o * cnt * p + i * p,
                 (size_t)p * sizeof(float));
    }
  }
}

void dml__conv_gemm_backward(const dml__conv_geom *q, float *ws, const float *x, const float *w,
                             const float *dy, float *dx, float *dw) {
  int64_t p = q->ho * q->wo, kg = q->cg * q->kh * q->kw, cn = chunk_images(q);
  int64_t khw = q->kh * q->kw;
  if (q->n == 0 || p == 0 || (!dx && !dw)) return;
  float *col = ws, *dyt = ws + (kg * cn * p + 15) / 16 * 16;
  for (int64_t n0 = 0; n0 < q->n; n0 += cn) {
    int64_t cnt = q->n - n0 < cn ? q->n - n0 : cn, ld = cnt * p;
    for (int64_t grp = 0; grp < q->groups; grp++) {
      const float *dyg; /* dY_g [Og, cnt*P] */
      if (cnt == 1) {
        dyg = dy + (n0 * q->o + grp * q->og) * p;
      } else {
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t i = 0; i < cnt; i++)
          for (int64_t o = 0; o < q->og; o++)
            memcpy(dyt + o * ld + i * p, dy + ((n0 + i) * q->o + grp * q->og + o) * p,
                   (size_t)p * sizeof(float));
        dyg = dyt;
      }
      if (dw) {
        im2col_chunk(q, x, n0, cnt, grp, col);
        sgemm_ld(0, 1, q->og, kg, ld, dyg, ld, col, ld, 1.0f, dw + grp * q->og * kg, kg);
      }
      if (dx) {
        sgemm_ld(1, 0, kg, ld, q->og, w + grp * q->og * kg, kg, dyg, ld, 0.0f, col, ld);
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t i = 0; i < cnt; i++)
          for (int64_t c = 0; c < q->cg; c++)
            col2im_channel(col + c * khw * ld + i * p, ld, q,
                           dx + ((n0 + i) * q->c + grp * q->cg + c) * q->h * q->w);
      }
    }
  }
}
