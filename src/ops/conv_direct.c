/* Direct convolution kernels for AVX-512 (the fast path; im2col.c is the portable one).
 * Three families, chosen per pass by the geometry (the first that applies):
 *
 * 1. Small reductions (Cg*KH*KW <= 32, unit stride, Wo == W; e.g. a first layer on 1 channel):
 *    bound by writing y / reading dy, so vectors run over 16 output positions of a plane,
 *    with per-tap lane masks for the border; no copies, no transposes (forward and dW).
 * 2. Winograd F(2x2, 3x3) (3x3, unit stride and dilation, one group, >= 16 channels in and out):
 *    2.25x fewer multiplies for forward, dx and dW; the 16 products per tile become 16 GEMMs
 *    on the microkernel below.
 * 3. General direct convolution (any stride, padding, dilation, groups; >= 8 channels on the
 *    vectorised side). One register-blocked microkernel serves all passes:
 *      acc[i][v] = sum_t A[t][16v .. 16v+15] * B[u[t] + vo[i]]     i < MR, v < NV
 *    A is a packed operand whose rows are vectors over output channels (input channels for dx),
 *    B is a zero-padded copy of an image, broadcast one scalar at a time. Offsets u (per step t)
 *    and vo (per row i) carry the geometry, so stride, padding, dilation and groups cost nothing
 *    in the inner loop and no im2col matrix is built:
 *      forward  t = tap (c,kh,kw), i = output position: A = W packed [Kg][Opad], B = padded x;
 *               rows [P][Opad] are transposed (16x16 blocks) into y[n,o,:] with the bias.
 *      dW       t = output position, i = tap: A = dy transposed [P][Opad], B = padded x.
 *      dx       unit stride: a convolution of dy (padded by (K-1)*d - p) with the flipped,
 *               channel-transposed filter: t = (o,kh,kw), i = input position.
 *    With 2 FMA pipes of 4-cycle latency, >= 16 accumulators keep the pipes busy; NV = 4
 *    (64 channels) needs one broadcast per 4 FMAs. Measured at 95-100% of peak with L1 data.
 *
 * All passes split images over OpenMP threads (static schedule), each thread with its own block
 * of the caller's workspace; weight gradients are summed per thread and reduced in a fixed order
 * (deterministic for a given thread count). The next image's input is prefetched into L2.
 * Masked stores are slow on AMD Zen when they overlap recent loads, so copies write whole
 * vectors where they can. */
#include "ops/conv_internal.h"

#if defined(__AVX512F__)

#include <immintrin.h>
#include <omp.h>
#include <string.h>

/* Register tiles are arrays indexed by loop counters; GCC only keeps them in registers when the
 * loops are fully unrolled before its scalar replacement pass, hence the explicit request. */
#define UNROLL _Pragma("GCC unroll 16")

typedef void (*tile_fn)(int64_t T, const float *A, int64_t lda, const float *B, const int32_t *u,
                        const int32_t *vo, float *C, int64_t ldc, int rows, int add);

/* BCAST(i) names the broadcast scalar of row i; bt = B + u[t]. */
#define TILE_BODY(MR, NV, BCAST)                                                             \
  __m512 acc[MR][NV];                                                                        \
  UNROLL for (int i = 0; i < MR; i++) {                                                      \
    UNROLL for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();                     \
  }                                                                                          \
  for (int64_t t = 0; t < T; t++) {                                                          \
    const float *at = A + t * lda;                                                           \
    const float *bt = B + u[t];                                                              \
    __m512 av[NV];                                                                           \
    UNROLL for (int v = 0; v < NV; v++) av[v] = _mm512_loadu_ps(at + 16 * v);                \
    UNROLL for (int i = 0; i < MR; i++) {                                                    \
      __m512 bv = _mm512_set1_ps(BCAST(i));                                                  \
      UNROLL for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(av[v], bv, acc[i][v]); \
    }                                                                                        \
  }                                                                                          \
  UNROLL for (int i = 0; i < MR; i++) {                                                      \
    if (i >= rows) break;                                                                    \
    float *ci = C + i * ldc;                                                                 \
    UNROLL for (int v = 0; v < NV; v++) {                                                    \
      __m512 r = acc[i][v];                                                                  \
      if (add) r = _mm512_add_ps(r, _mm512_loadu_ps(ci + 16 * v));                           \
      _mm512_storeu_ps(ci + 16 * v, r);                                                      \
    }                                                                                        \
  }

/* Rows at arbitrary offsets vo[i]. */
#define TAB_BCAST(i) bt[o[i]]
#define DEF_TAB(MR, NV)                                                                   \
  static void tab_##MR##_##NV(int64_t T, const float *A, int64_t lda, const float *B,     \
                              const int32_t *u, const int32_t *vo, float *C, int64_t ldc, \
                              int rows, int add) {                                        \
    int32_t o[MR];                                                                        \
    UNROLL for (int i = 0; i < MR; i++) o[i] = vo[i];                                     \
    TILE_BODY(MR, NV, TAB_BCAST)                                                          \
  }
/* Rows at consecutive offsets vo[0] + i (unit-stride positions in one row). */
#define LIN_BCAST(i) bt[i]
#define DEF_LIN(MR, NV)                                                                   \
  static void lin_##MR##_##NV(int64_t T, const float *A, int64_t lda, const float *B,     \
                              const int32_t *u, const int32_t *vo, float *C, int64_t ldc, \
                              int rows, int add) {                                        \
    B += vo[0];                                                                           \
    TILE_BODY(MR, NV, LIN_BCAST)                                                          \
  }

/* clang-format off */
DEF_TAB(1, 1) DEF_TAB(2, 1) DEF_TAB(3, 1) DEF_TAB(4, 1) DEF_TAB(5, 1) DEF_TAB(6, 1)
DEF_TAB(7, 1) DEF_TAB(8, 1) DEF_TAB(9, 1) DEF_TAB(10, 1) DEF_TAB(11, 1) DEF_TAB(12, 1)
DEF_TAB(13, 1) DEF_TAB(14, 1) DEF_TAB(15, 1) DEF_TAB(16, 1)
DEF_TAB(1, 2) DEF_TAB(2, 2) DEF_TAB(3, 2) DEF_TAB(4, 2) DEF_TAB(5, 2) DEF_TAB(6, 2)
DEF_TAB(7, 2) DEF_TAB(8, 2) DEF_TAB(9, 2) DEF_TAB(10, 2) DEF_TAB(11, 2) DEF_TAB(12, 2)
DEF_TAB(13, 2) DEF_TAB(14, 2)
DEF_TAB(1, 3) DEF_TAB(2, 3) DEF_TAB(3, 3) DEF_TAB(4, 3) DEF_TAB(5, 3) DEF_TAB(6, 3)
DEF_TAB(7, 3) DEF_TAB(8, 3)
DEF_TAB(1, 4) DEF_TAB(2, 4) DEF_TAB(3, 4) DEF_TAB(4, 4) DEF_TAB(5, 4) DEF_TAB(6, 4)
DEF_TAB(7, 4)
DEF_LIN(16, 1) DEF_LIN(14, 2) DEF_LIN(8, 3) DEF_LIN(7, 4)
/* clang-format on */

/* Steps per block so that a block of A (steps x taps x NV vectors) stays within ~24 KiB of L1:
 * tiles then re-read A from L1, and partial sums go through C between blocks. */
static int64_t block_steps(int nv, int taps) {
  int64_t t = (24 * 1024) / (taps * nv * 64);
  return t < 1 ? 1 : t;
}

/* Rows per tile for NV vectors: MR*NV accumulators + NV operands + 1 broadcast <= 32 zmm. */
static const int mr_max[5] = {0, 16, 14, 8, 7};
static const tile_fn tab_fns[5][17] = {
    {0},
    {0, tab_1_1, tab_2_1, tab_3_1, tab_4_1, tab_5_1, tab_6_1, tab_7_1, tab_8_1, tab_9_1, tab_10_1,
     tab_11_1, tab_12_1, tab_13_1, tab_14_1, tab_15_1, tab_16_1},
    {0, tab_1_2, tab_2_2, tab_3_2, tab_4_2, tab_5_2, tab_6_2, tab_7_2, tab_8_2, tab_9_2, tab_10_2,
     tab_11_2, tab_12_2, tab_13_2, tab_14_2},
    {0, tab_1_3, tab_2_3, tab_3_3, tab_4_3, tab_5_3, tab_6_3, tab_7_3, tab_8_3},
    {0, tab_1_4, tab_2_4, tab_3_4, tab_4_4, tab_5_4, tab_6_4, tab_7_4},
};
static const tile_fn lin_fns[5] = {0, lin_16_1, lin_14_2, lin_8_3, lin_7_4};

/* Tiles over `np` rows whose offsets are poff[0..np): consecutive rows of one image row with
 * unit stride go to the linear kernel, the rest (row ends, strided rows) to the table kernel.
 * `wrow` is the length of an image row in rows (for the test "same row"), unit = unit stride. */
static void run_tiles(int64_t T, const float *A, int64_t lda, int nvt, const float *B,
                      const int32_t *u, const int32_t *poff, int64_t np, int64_t wrow, int unit,
                      float *C, int64_t ldc, int add) {
  for (int ob = 0; ob < nvt; ob += 4) {
    int nv = nvt - ob < 4 ? nvt - ob : 4, mr = mr_max[nv];
    int64_t tc = block_steps(nv, 1);
    for (int64_t t0 = 0; t0 < T; t0 += tc) {
      int64_t tn = T - t0 < tc ? T - t0 : tc;
      int acc = add || t0 > 0;
      for (int64_t p0 = 0; p0 < np; p0 += mr) {
        int rows = np - p0 < mr ? (int)(np - p0) : mr;
        const float *a = A + t0 * lda + ob * 16;
        float *c = C + p0 * ldc + ob * 16;
        if (rows == mr && unit && p0 / wrow == (p0 + mr - 1) / wrow)
          lin_fns[nv](tn, a, lda, B, u + t0, poff + p0, c, ldc, rows, acc);
        else
          tab_fns[nv][rows](tn, a, lda, B, u + t0, poff + p0, c, ldc, rows, acc);
      }
    }
  }
}

/* In-register transpose of a 16x16 block: r[i] lane j -> r[j] lane i. */
static inline void tr16(__m512 r[16]) {
  __m512 t[16], s[16];
  UNROLL for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  /* s[4j+m] holds column m, m+4, m+8, m+12 of rows 4j..4j+3 in its four 128-bit lanes */
  for (int j = 0; j < 4; j++) {
    __m512 a = t[4 * j], b = t[4 * j + 1], c = t[4 * j + 2], d = t[4 * j + 3];
    s[4 * j + 0] = _mm512_shuffle_ps(a, c, _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * j + 1] = _mm512_shuffle_ps(a, c, _MM_SHUFFLE(3, 2, 3, 2));
    s[4 * j + 2] = _mm512_shuffle_ps(b, d, _MM_SHUFFLE(1, 0, 1, 0));
    s[4 * j + 3] = _mm512_shuffle_ps(b, d, _MM_SHUFFLE(3, 2, 3, 2));
  }
  /* a 4x4 transpose of 128-bit lanes for each m */
  for (int m = 0; m < 4; m++) {
    __m512 v0 = _mm512_shuffle_f32x4(s[m], s[4 + m], _MM_SHUFFLE(1, 0, 1, 0));
    __m512 v1 = _mm512_shuffle_f32x4(s[m], s[4 + m], _MM_SHUFFLE(3, 2, 3, 2));
    __m512 v2 = _mm512_shuffle_f32x4(s[8 + m], s[12 + m], _MM_SHUFFLE(1, 0, 1, 0));
    __m512 v3 = _mm512_shuffle_f32x4(s[8 + m], s[12 + m], _MM_SHUFFLE(3, 2, 3, 2));
    r[m] = _mm512_shuffle_f32x4(v0, v2, _MM_SHUFFLE(2, 0, 2, 0));
    r[m + 4] = _mm512_shuffle_f32x4(v0, v2, _MM_SHUFFLE(3, 1, 3, 1));
    r[m + 8] = _mm512_shuffle_f32x4(v1, v3, _MM_SHUFFLE(2, 0, 2, 0));
    r[m + 12] = _mm512_shuffle_f32x4(v1, v3, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

static inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* Rows [P][ld] (first nc of ld columns used) -> planes dst[c*P + p] (= or +=), plus bias[c]. */
static void rows_to_planes(const float *src, int64_t ld, int64_t np, int64_t nc, float *dst,
                           const float *bias, int add) {
  for (int64_t c0 = 0; c0 < nc; c0 += 16) {
    int64_t ncb = nc - c0 < 16 ? nc - c0 : 16;
    for (int64_t p0 = 0; p0 < np; p0 += 16) {
      int64_t npb = np - p0 < 16 ? np - p0 : 16;
      __mmask16 pm = lanes(npb);
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = i < npb ? _mm512_loadu_ps(src + (p0 + i) * ld + c0) : _mm512_setzero_ps();
      tr16(r);
      for (int64_t j = 0; j < ncb; j++) {
        float *d = dst + (c0 + j) * np + p0;
        __m512 v = r[j];
        if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[c0 + j]));
        if (npb == 16) {
          if (add) v = _mm512_add_ps(v, _mm512_loadu_ps(d));
          _mm512_storeu_ps(d, v);
        } else {
          if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(pm, d));
          _mm512_mask_storeu_ps(d, pm, v);
        }
      }
    }
  }
}

/* Planes src[c*P + p] (c < nc) -> rows dst[p*ld + c] for c < ld (zero for c >= nc); the
 * per-channel sums over p are added to colsum[0..nc) when colsum is not NULL. */
static void planes_to_rows(const float *src, int64_t np, int64_t nc, float *dst, int64_t ld,
                           float *colsum) {
  for (int64_t c0 = 0; c0 < ld; c0 += 16) {
    int64_t ncb = nc - c0 < 16 ? (nc - c0 > 0 ? nc - c0 : 0) : 16;
    __m512 sum = _mm512_setzero_ps();
    for (int64_t p0 = 0; p0 < np; p0 += 16) {
      int64_t npb = np - p0 < 16 ? np - p0 : 16;
      __mmask16 pm = lanes(npb);
      __m512 r[16];
      for (int i = 0; i < 16; i++)
        r[i] = i < ncb ? _mm512_maskz_loadu_ps(pm, src + (c0 + i) * np + p0) : _mm512_setzero_ps();
      tr16(r);
      for (int64_t j = 0; j < npb; j++) {
        _mm512_storeu_ps(dst + (p0 + j) * ld + c0, r[j]);
        sum = _mm512_add_ps(sum, r[j]);
      }
    }
    if (colsum && ncb > 0) {
      __mmask16 cm = lanes(ncb);
      _mm512_mask_storeu_ps(colsum + c0, cm,
                            _mm512_add_ps(sum, _mm512_maskz_loadu_ps(cm, colsum + c0)));
    }
  }
}

/* dst[c][r][col] = src[c][r - oh][col - ow] inside src[hs][ws], else 0, for dst[nc][hd][wd].
 * Masked stores are slow on AMD Zen when they overlap recent accesses, so each dst row is written
 * with whole (unmasked) vectors built by masked loads; the last vector of a row spills into the
 * next row, which is written after it, so dst needs 16 floats of slack at its end. A row starts
 * with ow zeros, which a lane permutation inserts (0 <= ow < 16); other offsets (cropping, wide
 * padding) take the plain masked copy. */
static void pad_copy(const float *src, int64_t nc, int64_t hs, int64_t ws, float *dst, int64_t hd,
                     int64_t wd, int64_t oh, int64_t ow) {
  const __m512 zero = _mm512_setzero_ps();
  if (ow < 0 || ow >= 16) {
    for (int64_t c = 0; c < nc; c++)
      for (int64_t r = 0; r < hd; r++) {
        float *d = dst + (c * hd + r) * wd;
        int64_t sr = r - oh;
        for (int64_t j = 0; j < wd; j += 16) {
          int64_t s0 = j - ow; /* source column of lane 0 */
          __mmask16 m = 0;
          for (int l = 0; l < 16 && j + l < wd; l++)
            if (sr >= 0 && sr < hs && s0 + l >= 0 && s0 + l < ws) m |= (__mmask16)(1u << l);
          for (int l = 0; l < 16 && j + l < wd; l++)
            d[j + l] = (m >> l) & 1 ? src[(c * hs + sr) * ws + s0 + l] : 0.0f;
        }
      }
    return;
  }
  /* first vector: lane l takes source column l - ow */
  __m512i shift =
      _mm512_sub_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                       _mm512_set1_epi32((int)ow));
  __mmask16 keep = (__mmask16)(0xFFFFu << ow);
  int64_t first = ws < 16 - ow ? ws : 16 - ow;
  for (int64_t c = 0; c < nc; c++)
    for (int64_t r = 0; r < hd; r++) {
      float *d = dst + (c * hd + r) * wd;
      int64_t sr = r - oh;
      if (sr < 0 || sr >= hs) {
        for (int64_t j = 0; j < wd; j += 16) _mm512_storeu_ps(d + j, zero);
        continue;
      }
      const float *s = src + (c * hs + sr) * ws;
      __m512 v = _mm512_maskz_loadu_ps(lanes(first > 0 ? first : 0), s);
      _mm512_storeu_ps(d, _mm512_maskz_permutexvar_ps(keep, shift, v));
      for (int64_t j = 16; j < wd; j += 16) {
        int64_t cnt = ws - (j - ow);
        _mm512_storeu_ps(d + j, cnt > 0 ? _mm512_maskz_loadu_ps(lanes(cnt), s + (j - ow)) : zero);
      }
    }
}

static int64_t round16(int64_t v) { return (v + 15) / 16 * 16; }

/* Asks for n floats at p in L2 ahead of use (the next image of a thread's static chunk), so the
 * streaming reads of inputs and gradients overlap the current image's arithmetic. */
static void prefetch_l2(const float *p, int64_t n) {
  const char *c = (const char *)p;
  for (int64_t i = 0; i < n * 4; i += 64) _mm_prefetch(c + i, _MM_HINT_T1);
}

/* Offsets of output positions inside a padded image of row length wp. */
static void position_offsets(const dml__conv_geom *q, int64_t wp, int32_t *poff) {
  for (int64_t oh = 0; oh < q->ho; oh++)
    for (int64_t ow = 0; ow < q->wo; ow++)
      poff[oh * q->wo + ow] = (int32_t)(oh * q->sh * wp + ow * q->sw);
}

/* Offsets of taps (c,kh,kw) of one group inside a padded image. */
static void tap_offsets(const dml__conv_geom *q, int64_t hp, int64_t wp, int32_t *toff) {
  for (int64_t c = 0; c < q->cg; c++)
    for (int64_t kh = 0; kh < q->kh; kh++)
      for (int64_t kw = 0; kw < q->kw; kw++)
        toff[(c * q->kh + kh) * q->kw + kw] = (int32_t)(c * hp * wp + kh * q->dh * wp + kw * q->dw);
}

/* The direct path indexes with int32 offsets and wants at least 8 useful lanes in 16. */
static int supported(int64_t image_floats, int64_t lanes_used) {
  return !dml__conv_force_gemm && lanes_used >= 8 && image_floats < ((int64_t)1 << 30);
}

/* Workspace layout of a pass, in floats: shared tables first, then nt per-thread blocks. */
typedef struct {
  int64_t packed;  /* packed weights (forward, dx) */
  int64_t u, vo;   /* int32 offset tables */
  int64_t threads; /* first per-thread block */
  int64_t stride;  /* per-thread block size */
  int64_t total;
} ws_layout;

static ws_layout layout(int64_t packed, int64_t u_n, int64_t vo_n, int64_t per_thread, int nt) {
  ws_layout l;
  l.packed = 0;
  l.u = round16(packed);
  l.vo = l.u + round16(u_n);
  l.threads = l.vo + round16(vo_n);
  l.stride = round16(per_thread);
  l.total = l.threads + nt * l.stride;
  return l;
}

/* ---- Winograd F(2x2, 3x3) for 3x3 kernels with unit stride and dilation ----
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016.) Each 2x2 output
 * tile comes from a 4x4 input tile d: Y = A^T [(G g G^T) .* (B^T d B)] A, so the 36 products of
 * the direct method become 16; the 16 element-wise products, summed over input channels, are 16
 * independent GEMMs M_xi[tile][o] = sum_c V_xi[tile][c] U_xi[c][o] run on the microkernel above
 * (vectors over o, broadcasts of V). Transforms are vectorised over channels, so the input is
 * first transposed to a padded channel-last copy. Used where both channel counts fill vectors. */
#define WINO_MIN_CHANNELS 16

typedef struct {
  int64_t cin, cinp, coutp; /* channels in / out, padded to 16 */
  int64_t th, tw, ho, wo;   /* tiles per column / row, output size */
  int64_t rows, cols;       /* padded channel-last input: [rows][cols][cinp] */
  int64_t blk;              /* tiles per block (rows of the GEMM tile) */
} wino_plan;

static wino_plan wino_make(int64_t cin, int64_t cout, int64_t ho, int64_t wo) {
  wino_plan w;
  w.cin = cin;
  w.cinp = round16(cin);
  w.coutp = round16(cout);
  w.ho = ho;
  w.wo = wo;
  w.th = (ho + 1) / 2;
  w.tw = (wo + 1) / 2;
  w.rows = 2 * w.th + 2;
  w.cols = 2 * w.tw + 2;
  int nv = (int)(w.coutp / 16);
  w.blk = mr_max[nv < 4 ? nv : 4];
  return w;
}

/* Per-thread floats: channel-last input, V and M of one tile block, output rows [ho*wo][coutp]. */
static int64_t wino_thread_floats(const wino_plan *w) {
  return w->rows * w->cols * w->cinp + 16 * w->blk * (w->cinp + w->coutp) +
         w->ho * w->wo * w->coutp;
}

/* U[xi][c][o] = (G g G^T)[xi] of the 3x3 filter g = filt(o, c); zero for padded o. */
static void wino_weights(const wino_plan *w, int64_t cout, const float *src, int64_t so, int64_t sc,
                         int flip, float *u) {
#pragma omp parallel for schedule(static) if (w->cin * cout > 1024)
  for (int64_t c = 0; c < w->cin; c++)
    for (int64_t o = 0; o < w->coutp; o++) {
      float g[3][3], t[4][3], r[4][4];
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
          g[i][j] =
              o < cout ? src[o * so + c * sc + (flip ? (2 - i) * 3 + (2 - j) : i * 3 + j)] : 0.0f;
      for (int j = 0; j < 3; j++) { /* t = G g */
        t[0][j] = g[0][j];
        t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; i++) { /* r = t G^T */
        r[i][0] = t[i][0];
        r[i][1] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
        r[i][2] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
        r[i][3] = t[i][2];
      }
      for (int xi = 0; xi < 16; xi++) u[(xi * w->cin + c) * w->coutp + o] = r[xi / 4][xi % 4];
    }
}

/* Planes src[c][hs][ws] -> channel-last dst[(r*cols + q)*cinp + c] at r = sr + oh, q = sc + ow
 * (oh, ow >= 0). Only the source region is written: the zero border and the zero channel padding
 * come from clearing dst once per pass. */
static void planes_to_nhwc(const float *src, int64_t nc, int64_t hs, int64_t ws, float *dst,
                           int64_t cols, int64_t cinp, int64_t oh, int64_t ow) {
  for (int64_t sr = 0; sr < hs; sr++)
    for (int64_t c0 = 0; c0 < nc; c0 += 16) {
      int64_t ncb = nc - c0 < 16 ? nc - c0 : 16;
      for (int64_t q0 = 0; q0 < ws; q0 += 16) {
        int64_t nq = ws - q0 < 16 ? ws - q0 : 16;
        __mmask16 m = lanes(nq);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
          r[i] = i < ncb ? _mm512_maskz_loadu_ps(m, src + ((c0 + i) * hs + sr) * ws + q0)
                         : _mm512_setzero_ps();
        tr16(r);
        float *d = dst + ((sr + oh) * cols + q0 + ow) * cinp + c0;
        for (int64_t j = 0; j < nq; j++) _mm512_storeu_ps(d + j * cinp, r[j]);
      }
    }
}

/* V = B^T d B for tiles t0..t0+nb-1 of the channel-last input xt: v[xi][i][c] with xi planes
 * xs floats apart, 16 channels at a time. */
static void wino_input(const wino_plan *w, const float *xt, int64_t t0, int64_t nb, float *vb,
                       int64_t xs) {
  int64_t cinp = w->cinp;
  for (int64_t i = 0; i < nb; i++) {
    int64_t ty = (t0 + i) / w->tw, tx = (t0 + i) % w->tw;
    const float *base = xt + (2 * ty * w->cols + 2 * tx) * cinp;
    for (int64_t c = 0; c < cinp; c += 16) {
      __m512 d[4][4], t[4][4];
      for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) d[a][b] = _mm512_loadu_ps(base + (a * w->cols + b) * cinp + c);
      for (int b = 0; b < 4; b++) {
        t[0][b] = _mm512_sub_ps(d[0][b], d[2][b]);
        t[1][b] = _mm512_add_ps(d[1][b], d[2][b]);
        t[2][b] = _mm512_sub_ps(d[2][b], d[1][b]);
        t[3][b] = _mm512_sub_ps(d[1][b], d[3][b]);
      }
      float *v = vb + i * cinp + c;
      for (int a = 0; a < 4; a++) {
        _mm512_storeu_ps(v + (a * 4 + 0) * xs, _mm512_sub_ps(t[a][0], t[a][2]));
        _mm512_storeu_ps(v + (a * 4 + 1) * xs, _mm512_add_ps(t[a][1], t[a][2]));
        _mm512_storeu_ps(v + (a * 4 + 2) * xs, _mm512_sub_ps(t[a][2], t[a][1]));
        _mm512_storeu_ps(v + (a * 4 + 3) * xs, _mm512_sub_ps(t[a][1], t[a][3]));
      }
    }
  }
}

/* One image: channel-last padded input xt -> output rows out[(oh*wo + ow)*coutp + o].
 * Scratch vb [16][blk][cinp], mb [16][blk][coutp]; u0 = identity offsets (t), vo = i*cinp. */
static void wino_image(const wino_plan *w, const float *xt, const float *U, const int32_t *u0,
                       const int32_t *vo, float *vb, float *mb, float *out) {
  int64_t ntile = w->th * w->tw, cinp = w->cinp, coutp = w->coutp;
  int nvt = (int)(coutp / 16);
  for (int64_t t0 = 0; t0 < ntile; t0 += w->blk) {
    int64_t nb = ntile - t0 < w->blk ? ntile - t0 : w->blk;
    wino_input(w, xt, t0, nb, vb, w->blk * w->cinp);
    /* 16 GEMMs: mb[xi][i][o] = sum_c vb[xi][i][c] U[xi][c][o] */
    for (int xi = 0; xi < 16; xi++)
      for (int ob = 0; ob < nvt; ob += 4) {
        int nv = nvt - ob < 4 ? nvt - ob : 4;
        tab_fns[nv][nb](w->cin, U + xi * w->cin * coutp + ob * 16, coutp, vb + xi * w->blk * cinp,
                        u0, vo, mb + xi * w->blk * coutp + ob * 16, coutp, (int)nb, 0);
      }
    /* output transform Y = A^T M A into the rows of the tile's 2x2 outputs */
    for (int64_t i = 0; i < nb; i++) {
      int64_t ty = (t0 + i) / w->tw, tx = (t0 + i) % w->tw;
      int64_t oh = 2 * ty, ow = 2 * tx;
      for (int64_t o = 0; o < coutp; o += 16) {
        __m512 m[4][4], s0[4], s1[4];
        for (int xi = 0; xi < 16; xi++)
          m[xi / 4][xi % 4] = _mm512_loadu_ps(mb + (xi * w->blk + i) * coutp + o);
        for (int b = 0; b < 4; b++) {
          s0[b] = _mm512_add_ps(_mm512_add_ps(m[0][b], m[1][b]), m[2][b]);
          s1[b] = _mm512_sub_ps(_mm512_sub_ps(m[1][b], m[2][b]), m[3][b]);
        }
        __m512 y00 = _mm512_add_ps(_mm512_add_ps(s0[0], s0[1]), s0[2]);
        __m512 y01 = _mm512_sub_ps(_mm512_sub_ps(s0[1], s0[2]), s0[3]);
        __m512 y10 = _mm512_add_ps(_mm512_add_ps(s1[0], s1[1]), s1[2]);
        __m512 y11 = _mm512_sub_ps(_mm512_sub_ps(s1[1], s1[2]), s1[3]);
        float *r0 = out + (oh * w->wo + ow) * coutp + o;
        _mm512_storeu_ps(r0, y00);
        if (ow + 1 < w->wo) _mm512_storeu_ps(r0 + coutp, y01);
        if (oh + 1 < w->ho) {
          float *r1 = r0 + w->wo * coutp;
          _mm512_storeu_ps(r1, y10);
          if (ow + 1 < w->wo) _mm512_storeu_ps(r1 + coutp, y11);
        }
      }
    }
  }
}

/* Shared part of a Winograd workspace: U [16][cin][coutp], identity offsets [cin], vo [blk]. */
static int64_t wino_shared_floats(const wino_plan *w) {
  return round16(16 * w->cin * w->coutp) + round16(w->cin) + round16(w->blk);
}

static void wino_tables(const wino_plan *w, float *ws, float **U, int32_t **u0, int32_t **vo) {
  *U = ws;
  *u0 = (int32_t *)(ws + round16(16 * w->cin * w->coutp));
  *vo = *u0 + round16(w->cin);
  for (int64_t c = 0; c < w->cin; c++) (*u0)[c] = (int32_t)c;
  for (int64_t i = 0; i < w->blk; i++) (*vo)[i] = (int32_t)(i * w->cinp);
}

static int wino_forward_ok(const dml__conv_geom *q) {
  return q->kh == 3 && q->kw == 3 && q->sh == 1 && q->sw == 1 && q->dh == 1 && q->dw == 1 &&
         q->groups == 1 && q->c >= WINO_MIN_CHANNELS && q->o >= WINO_MIN_CHANNELS &&
         q->c * (q->h + 2 * q->ph) * (q->w + 2 * q->pw) < ((int64_t)1 << 30) &&
         !dml__conv_force_gemm && !dml__conv_force_direct;
}

/* ---- small reductions (Cg*KH*KW <= 32, e.g. a first layer on one channel) ----
 * Here the work is bound by writing y (and reading dy), so the layout is kept: vectors run over
 * 16 consecutive output positions p of one plane, which with unit stride and Wo == W read input
 * positions p + shift(kh,kw); lanes whose input falls outside the image are masked out (one mask
 * per tap and vector, shared by all channels). No padded copy, no transposes.
 *   forward  y[o][p] = b[o] + sum_{c,kh,kw} w[o][c][kh][kw] x[c][p + shift]  (8 o x 3 vectors)
 *   dW       vector partial sums over p of dy[o][p] x[c][p + shift], reduced at the end. */
#define SMALLK_MAX 32

static int smallk_ok(const dml__conv_geom *q) {
  return q->sh == 1 && q->sw == 1 && q->wo == q->w && q->cg * q->kh * q->kw <= SMALLK_MAX &&
         q->c * q->h * q->w < ((int64_t)1 << 30) && !dml__conv_force_gemm &&
         !dml__conv_force_direct;
}

/* Input offset (elements, may be negative) and mask row of each step t = (c, kh, kw). */
typedef struct {
  int64_t nvec, khw, kg;
  int32_t *xoff;  /* [kg] */
  int32_t *mrow;  /* [kg]: index of the step's mask row in mtab */
  uint16_t *mtab; /* [khw][nvec] */
  __mmask16 tail; /* lanes of the last vector of a plane */
} smallk_plan;

static int64_t smallk_shared_floats(const dml__conv_geom *q) {
  int64_t np = q->ho * q->wo, nvec = (np + 15) / 16, kg = q->cg * q->kh * q->kw;
  return 2 * round16(kg) + round16((q->kh * q->kw * nvec + 1) / 2);
}

static smallk_plan smallk_tables(const dml__conv_geom *q, float *ws) {
  smallk_plan s;
  int64_t np = q->ho * q->wo;
  s.nvec = (np + 15) / 16;
  s.khw = q->kh * q->kw;
  s.kg = q->cg * s.khw;
  s.xoff = (int32_t *)ws;
  s.mrow = s.xoff + round16(s.kg);
  s.mtab = (uint16_t *)(s.mrow + round16(s.kg));
  s.tail = lanes(np - 16 * (s.nvec - 1));
  for (int64_t k = 0; k < s.khw; k++) {
    int64_t dr = (k / q->kw) * q->dh - q->ph, dc = (k % q->kw) * q->dw - q->pw;
    for (int64_t v = 0; v < s.nvec; v++) {
      uint16_t m = 0;
      for (int l = 0; l < 16; l++) {
        int64_t p = 16 * v + l, ih = p / q->wo + dr, iw = p % q->wo + dc;
        if (p < np && ih >= 0 && ih < q->h && iw >= 0 && iw < q->w) m |= (uint16_t)(1u << l);
      }
      s.mtab[k * s.nvec + v] = m;
    }
  }
  for (int64_t t = 0; t < s.kg; t++) {
    int64_t c = t / s.khw, k = t % s.khw;
    s.xoff[t] = (int32_t)(c * q->h * q->w + ((k / q->kw) * q->dh - q->ph) * q->w +
                          (k % q->kw) * q->dw - q->pw);
    s.mrow[t] = (int32_t)(k * s.nvec);
  }
  return s;
}

/* Masked load at x + off. For the first rows of channel 0, x + off lies before the image, but
 * only in lanes the mask excludes, which a masked load never touches. (Plain pointer arithmetic
 * keeps the compiler's alias analysis intact; an integer round trip made it spill accumulators.) */
static inline __m512 load_at(const float *x, int64_t off, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, x + off);
}

typedef void (*skf_fn)(const smallk_plan *s, const float *w8, const float *x, int64_t v0, float *y,
                       int64_t np, int rows, const float *bias);
/* y rows o0..o0+rows-1 (pointer y at row o0), vectors v0..v0+VB-1; w8[t][8] packed weights. */
#define DEF_SKF(VB)                                                                           \
  static void skf_##VB(const smallk_plan *s, const float *w8, const float *x, int64_t v0,     \
                       float *y, int64_t np, int rows, const float *bias) {                   \
    __m512 acc[8][VB];                                                                        \
    UNROLL for (int i = 0; i < 8; i++) {                                                      \
      UNROLL for (int j = 0; j < VB; j++) acc[i][j] = _mm512_setzero_ps();                    \
    }                                                                                         \
    const int64_t kg = s->kg, nvec = s->nvec;                                                 \
    for (int64_t t = 0; t < kg; t++) {                                                        \
      const uint16_t *mr = s->mtab + s->mrow[t] + v0;                                         \
      int64_t off = s->xoff[t] + 16 * v0;                                                     \
      __m512 xv[VB];                                                                          \
      UNROLL for (int j = 0; j < VB; j++) xv[j] = load_at(x, off + 16 * j, mr[j]);            \
      UNROLL for (int i = 0; i < 8; i++) {                                                    \
        __m512 b = _mm512_set1_ps(w8[t * 8 + i]);                                             \
        UNROLL for (int j = 0; j < VB; j++) acc[i][j] = _mm512_fmadd_ps(b, xv[j], acc[i][j]); \
      }                                                                                       \
    }                                                                                         \
    UNROLL for (int i = 0; i < 8; i++) {                                                      \
      if (i < rows) {                                                                         \
        __m512 bv = _mm512_set1_ps(bias ? bias[i] : 0.0f);                                    \
        UNROLL for (int j = 0; j < VB; j++) {                                                 \
          float *d = y + i * np + 16 * (v0 + j);                                              \
          __m512 r = _mm512_add_ps(acc[i][j], bv);                                            \
          if (v0 + j == nvec - 1)                                                             \
            _mm512_mask_storeu_ps(d, s->tail, r);                                             \
          else                                                                                \
            _mm512_storeu_ps(d, r);                                                           \
        }                                                                                     \
      }                                                                                       \
    }                                                                                         \
  }
/* clang-format off */
DEF_SKF(1) DEF_SKF(2) DEF_SKF(3)
    /* clang-format on */
    static const skf_fn skf_fns[4] = {0, skf_1, skf_2, skf_3};

typedef void (*skw_fn)(const smallk_plan *s, const float *dy, int64_t np, int rows, const float *x,
                       int64_t t0, float *vacc);
/* vacc[i][j][16] += sum over vectors of dy[o0+i][p] x[p + shift(t0+j)], i < 8, j < TB. */
#define DEF_SKW(TB)                                                                              \
  static void skw_##TB(const smallk_plan *s, const float *dy, int64_t np, int rows,              \
                       const float *x, int64_t t0, float *vacc) {                                \
    __m512 acc[8][TB];                                                                           \
    UNROLL for (int i = 0; i < 8; i++) {                                                         \
      UNROLL for (int j = 0; j < TB; j++) acc[i][j] = _mm512_loadu_ps(vacc + (i * TB + j) * 16); \
    }                                                                                            \
    const int64_t nvec = s->nvec;                                                                \
    const __mmask16 tail = s->tail;                                                              \
    int64_t xo[TB];                                                                              \
    const uint16_t *mr[TB];                                                                      \
    UNROLL for (int j = 0; j < TB; j++) {                                                        \
      xo[j] = s->xoff[t0 + j];                                                                   \
      mr[j] = s->mtab + s->mrow[t0 + j];                                                         \
    }                                                                                            \
    for (int64_t v = 0; v < nvec; v++) {                                                         \
      __mmask16 vm = v == nvec - 1 ? tail : (__mmask16)0xFFFF;                                   \
      __m512 xv[TB];                                                                             \
      UNROLL for (int j = 0; j < TB; j++) xv[j] = load_at(x, xo[j] + 16 * v, mr[j][v]);          \
      UNROLL for (int i = 0; i < 8; i++) {                                                       \
        if (i < rows) {                                                                          \
          __m512 d = _mm512_maskz_loadu_ps(vm, dy + i * np + 16 * v);                            \
          UNROLL for (int j = 0; j < TB; j++) acc[i][j] = _mm512_fmadd_ps(d, xv[j], acc[i][j]);  \
        }                                                                                        \
      }                                                                                          \
    }                                                                                            \
    UNROLL for (int i = 0; i < 8; i++) {                                                         \
      UNROLL for (int j = 0; j < TB; j++) _mm512_storeu_ps(vacc + (i * TB + j) * 16, acc[i][j]); \
    }                                                                                            \
  }
/* clang-format off */
DEF_SKW(1) DEF_SKW(2) DEF_SKW(3)
    /* clang-format on */
    static const skw_fn skw_fns[4] = {0, skw_1, skw_2, skw_3};

static int64_t smallk_forward_size(const dml__conv_geom *q, int nt) {
  (void)nt;
  return smallk_shared_floats(q) + q->groups * q->cg * q->kh * q->kw * round16(q->og);
}

static void forward_smallk(const dml__conv_geom *q, int nt, float *ws, const float *x,
                           const float *w, const float *b, float *y) {
  smallk_plan s = smallk_tables(q, ws);
  int64_t np = q->ho * q->wo, o8 = (q->og + 7) / 8 * 8, og16 = round16(q->og);
  float *w8 = ws + smallk_shared_floats(q); /* [grp][o-block of 8][t][8] */
#pragma omp parallel for schedule(static) num_threads(nt) if (q->groups * s.kg * og16 > 32768)
  for (int64_t r = 0; r < q->groups * s.kg; r++) {
    int64_t grp = r / s.kg, t = r % s.kg;
    for (int64_t o = 0; o < o8; o++)
      w8[((grp * o8 + o / 8 * 8) * s.kg + t * 8) + o % 8] =
          o < q->og ? w[(grp * q->og + o) * s.kg + t] : 0.0f;
  }
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t n = 0; n < q->n; n++)
    for (int64_t grp = 0; grp < q->groups; grp++) {
      const float *xg = x + (n * q->c + grp * q->cg) * q->h * q->w;
      for (int64_t o0 = 0; o0 < q->og; o0 += 8) {
        int rows = q->og - o0 < 8 ? (int)(q->og - o0) : 8;
        float *yo = y + (n * q->o + grp * q->og + o0) * np;
        const float *bo = b ? b + grp * q->og + o0 : NULL;
        const float *wb = w8 + (grp * o8 + o0) * s.kg;
        for (int64_t v0 = 0; v0 < s.nvec; v0 += 3) {
          int vb = s.nvec - v0 < 3 ? (int)(s.nvec - v0) : 3;
          skf_fns[vb](&s, wb, xg, v0, yo, np, rows, bo);
        }
      }
    }
}

/* per thread: vector accumulators [G][o8][kg][16] and db vectors [O][16] */
static int64_t smallk_backward_w_size(const dml__conv_geom *q, int nt) {
  int64_t o8 = (q->og + 7) / 8 * 8, kg = q->cg * q->kh * q->kw;
  return smallk_shared_floats(q) + nt * round16(q->groups * o8 * kg * 16 + q->o * 16);
}

static void backward_w_smallk(const dml__conv_geom *q, int nt, float *ws, const float *x,
                              const float *dy, float *dw, float *db) {
  smallk_plan s = smallk_tables(q, ws);
  int64_t np = q->ho * q->wo, o8 = (q->og + 7) / 8 * 8, kg = s.kg;
  int64_t vn = q->groups * o8 * kg * 16, stride = round16(vn + q->o * 16);
  float *acc0 = ws + smallk_shared_floats(q);
  memset(acc0, 0, (size_t)(nt * stride) * sizeof(float));
#pragma omp parallel num_threads(nt)
  {
    float *vacc = acc0 + omp_get_thread_num() * stride, *dbv = vacc + vn;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < q->n; n++) {
      if (n + 1 < q->n) {
        prefetch_l2(dy + (n + 1) * q->o * np, q->o * np);
        prefetch_l2(x + (n + 1) * q->c * q->h * q->w, q->c * q->h * q->w);
      }
      /* one sequential pass over the image's dy (db, or just a read) brings it into L2 before
       * the tiles read it eight planes at a time */
      for (int64_t o = 0; o < q->o; o++) {
        const float *r = dy + (n * q->o + o) * np;
        __m512 a = _mm512_loadu_ps(dbv + o * 16);
        for (int64_t v = 0; v < s.nvec; v++)
          a = _mm512_add_ps(a,
                            _mm512_maskz_loadu_ps(v == s.nvec - 1 ? s.tail : 0xFFFF, r + 16 * v));
        _mm512_storeu_ps(dbv + o * 16, a);
      }
      for (int64_t grp = 0; grp < q->groups; grp++) {
        const float *xg = x + (n * q->c + grp * q->cg) * q->h * q->w;
        for (int64_t o0 = 0; o0 < q->og; o0 += 8) {
          int rows = q->og - o0 < 8 ? (int)(q->og - o0) : 8;
          const float *dyo = dy + (n * q->o + grp * q->og + o0) * np;
          for (int64_t t0 = 0; t0 < kg; t0 += 3) {
            int tb = kg - t0 < 3 ? (int)(kg - t0) : 3;
            skw_fns[tb](&s, dyo, np, rows, xg, t0, vacc + ((grp * o8 + o0) * kg + 8 * t0) * 16);
          }
        }
      }
    }
  }
  /* fixed-order reduction over threads and lanes; the block of tap t0 is [8][tb][16] */
  for (int64_t grp = 0; grp < q->groups; grp++)
    for (int64_t o = 0; o < q->og; o++)
      for (int64_t t = 0; t < kg; t++) {
        int64_t t0 = t / 3 * 3, tb = kg - t0 < 3 ? kg - t0 : 3;
        int64_t at = ((grp * o8 + o / 8 * 8) * kg + 8 * t0 + (o % 8) * tb + (t - t0)) * 16;
        float sum = 0.0f;
        for (int th = 0; th < nt; th++)
          sum += _mm512_reduce_add_ps(_mm512_loadu_ps(acc0 + th * stride + at));
        dw[(grp * q->og + o) * kg + t] += sum;
      }
  if (db)
    for (int64_t o = 0; o < q->o; o++) {
      float sum = 0.0f;
      for (int th = 0; th < nt; th++)
        sum += _mm512_reduce_add_ps(_mm512_loadu_ps(acc0 + th * stride + vn + o * 16));
      db[o] += sum;
    }
}

/* ---- forward: per thread [padded x | rows [P][Opad]] ---- */
static ws_layout forward_layout(const dml__conv_geom *q, int nt) {
  int64_t hp = q->h + 2 * q->ph, wp = q->w + 2 * q->pw, np = q->ho * q->wo;
  int64_t kg = q->cg * q->kh * q->kw, opad = round16(q->og);
  return layout(q->groups * kg * opad, kg, np, round16(q->c * hp * wp + 16) + np * opad, nt);
}

int64_t dml__conv_direct_forward_size(const dml__conv_geom *q, int nt) {
  if (smallk_ok(q)) return smallk_forward_size(q, nt);
  if (!supported(q->c * (q->h + 2 * q->ph) * (q->w + 2 * q->pw), q->og)) return -1;
  if (wino_forward_ok(q)) {
    wino_plan w = wino_make(q->c, q->o, q->ho, q->wo);
    return wino_shared_floats(&w) + nt * round16(wino_thread_floats(&w));
  }
  return forward_layout(q, nt).total;
}

/* Winograd forward (groups == 1). */
static void forward_wino(const dml__conv_geom *q, int nt, float *ws, const float *x,
                         const float *wt, const float *b, float *y) {
  wino_plan w = wino_make(q->c, q->o, q->ho, q->wo);
  float *U;
  int32_t *u0, *vo;
  wino_tables(&w, ws, &U, &u0, &vo);
  wino_weights(&w, q->o, wt, q->c * 9, 9, 0, U);
  float *threads = ws + wino_shared_floats(&w);
  int64_t stride = round16(wino_thread_floats(&w)), np = q->ho * q->wo;
#pragma omp parallel num_threads(nt)
  {
    float *xt = threads + omp_get_thread_num() * stride;
    float *vb = xt + w.rows * w.cols * w.cinp, *mb = vb + 16 * w.blk * w.cinp;
    float *out = mb + 16 * w.blk * w.coutp;
    memset(xt, 0, (size_t)(w.rows * w.cols * w.cinp) * sizeof(float));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < q->n; n++) {
      if (n + 1 < q->n) prefetch_l2(x + (n + 1) * q->c * q->h * q->w, q->c * q->h * q->w);
      planes_to_nhwc(x + n * q->c * q->h * q->w, q->c, q->h, q->w, xt, w.cols, w.cinp, q->ph,
                     q->pw);
      wino_image(&w, xt, U, u0, vo, vb, mb, out);
      rows_to_planes(out, w.coutp, np, q->o, y + n * q->o * np, b, 0);
    }
  }
}

void dml__conv_direct_forward(const dml__conv_geom *q, int nt, float *ws, const float *x,
                              const float *w, const float *b, float *y) {
  if (smallk_ok(q)) {
    forward_smallk(q, nt, ws, x, w, b, y);
    return;
  }
  if (wino_forward_ok(q)) {
    forward_wino(q, nt, ws, x, w, b, y);
    return;
  }
  int64_t hp = q->h + 2 * q->ph, wp = q->w + 2 * q->pw, np = q->ho * q->wo;
  int64_t kg = q->cg * q->kh * q->kw, opad = round16(q->og), xsz = round16(q->c * hp * wp + 16);
  int nvt = (int)(opad / 16);
  ws_layout l = forward_layout(q, nt);
  float *wf = ws + l.packed;
  int32_t *toff = (int32_t *)(ws + l.u), *poff = (int32_t *)(ws + l.vo);
  tap_offsets(q, hp, wp, toff);
  position_offsets(q, wp, poff);
  /* wf[grp][k][o] = w[grp*Og + o][k], zero for o >= Og */
#pragma omp parallel for schedule(static) num_threads(nt) if (q->groups * kg * opad > 32768)
  for (int64_t r = 0; r < q->groups * kg; r++) {
    int64_t grp = r / kg, k = r % kg;
    float *d = wf + r * opad;
    for (int64_t o = 0; o < opad; o++) d[o] = o < q->og ? w[(grp * q->og + o) * kg + k] : 0.0f;
  }
#pragma omp parallel num_threads(nt)
  {
    float *xp = ws + l.threads + omp_get_thread_num() * l.stride;
    float *rows = xp + xsz;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < q->n; n++) {
      if (n + 1 < q->n) prefetch_l2(x + (n + 1) * q->c * q->h * q->w, q->c * q->h * q->w);
      pad_copy(x + n * q->c * q->h * q->w, q->c, q->h, q->w, xp, hp, wp, q->ph, q->pw);
      for (int64_t grp = 0; grp < q->groups; grp++) {
        run_tiles(kg, wf + grp * kg * opad, opad, nvt, xp + grp * q->cg * hp * wp, toff, poff, np,
                  q->wo, q->sw == 1, rows, opad, 0);
        rows_to_planes(rows, opad, np, q->og, y + (n * q->o + grp * q->og) * np,
                       b ? b + grp * q->og : NULL, 0);
      }
    }
  }
}

/* ---- dW by Winograd: for a 2x2 tile z of dy and its 4x4 input tile d, the F(2x2, 3x3)
 * identity sum_ab z[a][b] Y[a][b] = sum_xi (A z A^T)_xi (G g G^T)_xi (B^T d B)_xi gives
 *   dW[o][c] = G^T [ sum_{n, tiles} (A z_o A^T) .* (B^T d_c B) ] G,
 * 16 GEMMs Mw_xi[c][o] += sum_tiles V_xi[tile][c] Z_xi[tile][o] reducing over blocks of up to
 * WINO_DW_TILES tiles (vectors over o, broadcasts of V), then one small transform at the end.
 * Per thread: padded channel-last x, dy as channel-last [2 th][2 tw][Opad] (zero beyond dy),
 * V and Z of one tile block, accumulators Mw [16][C][Opad] and db sums [O]. The 16 planes of
 * V and Z are 16 floats more than a power of two apart, so they do not share L1 sets. ---- */
#define WINO_DW_TILES 64

static int64_t wino_dw_thread_floats(const wino_plan *w) {
  return round16(w->rows * w->cols * w->cinp) + round16(4 * w->th * w->tw * w->coutp) +
         16 * (WINO_DW_TILES * (w->cinp + w->coutp) + 32) + 16 * w->cin * w->coutp + w->coutp;
}

static int64_t wino_dw_shared_floats(const wino_plan *w) {
  return round16(WINO_DW_TILES) + round16(w->cin);
}

static void backward_w_wino(const dml__conv_geom *q, int nt, float *ws, const float *x,
                            const float *dy, float *dw, float *db) {
  wino_plan w = wino_make(q->c, q->o, q->ho, q->wo);
  int64_t ntile = w.th * w.tw, cinp = w.cinp, coutp = w.coutp, np = q->ho * q->wo;
  int64_t nxt = round16(w.rows * w.cols * cinp), ndy = round16(4 * ntile * coutp);
  int64_t tb = WINO_DW_TILES, vs = tb * cinp + 16, zs = tb * coutp + 16; /* plane strides */
  int64_t mw_at = nxt + ndy + 16 * (vs + zs);
  int64_t mw_n = 16 * q->c * coutp;
  int nvt = (int)(coutp / 16);
  int32_t *ut = (int32_t *)ws, *iota = ut + round16(tb);
  for (int64_t t = 0; t < tb; t++) ut[t] = (int32_t)(t * cinp);
  for (int64_t c = 0; c < q->c; c++) iota[c] = (int32_t)c;
  float *threads = ws + wino_dw_shared_floats(&w);
  int64_t stride = round16(wino_dw_thread_floats(&w));
  for (int t = 0; t < nt; t++) memset(threads + t * stride, 0, (size_t)stride * sizeof(float));
#pragma omp parallel num_threads(nt)
  {
    float *xt = threads + omp_get_thread_num() * stride, *dyt = xt + nxt;
    float *vb = dyt + ndy, *zb = vb + 16 * vs, *mw = xt + mw_at, *bsum = mw + mw_n;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < q->n; n++) {
      const float *xn = x + n * q->c * q->h * q->w, *dyn = dy + n * q->o * np;
      if (n + 1 < q->n) {
        prefetch_l2(xn + q->c * q->h * q->w, q->c * q->h * q->w);
        prefetch_l2(dyn + q->o * np, q->o * np);
      }
      planes_to_nhwc(xn, q->c, q->h, q->w, xt, w.cols, cinp, q->ph, q->pw);
      planes_to_nhwc(dyn, q->o, q->ho, q->wo, dyt, 2 * w.tw, coutp, 0, 0);
      for (int64_t t0 = 0; t0 < ntile; t0 += tb) {
        int64_t nb = ntile - t0 < tb ? ntile - t0 : tb;
        wino_input(&w, xt, t0, nb, vb, vs);
        /* Z = A z A^T, A = [1 0; 1 1; 1 -1; 0 -1] */
        for (int64_t i = 0; i < nb; i++) {
          int64_t t = t0 + i;
          const float *z = dyt + (2 * (t / w.tw) * 2 * w.tw + 2 * (t % w.tw)) * coutp;
          for (int64_t o = 0; o < coutp; o += 16) {
            __m512 z00 = _mm512_loadu_ps(z + o), z01 = _mm512_loadu_ps(z + coutp + o);
            __m512 z10 = _mm512_loadu_ps(z + 2 * w.tw * coutp + o);
            __m512 z11 = _mm512_loadu_ps(z + (2 * w.tw + 1) * coutp + o);
            __m512 zero = _mm512_setzero_ps();
            __m512 r[4][2] = {{z00, z01},
                              {_mm512_add_ps(z00, z10), _mm512_add_ps(z01, z11)},
                              {_mm512_sub_ps(z00, z10), _mm512_sub_ps(z01, z11)},
                              {_mm512_sub_ps(zero, z10), _mm512_sub_ps(zero, z11)}};
            float *zt = zb + i * coutp + o;
            for (int a = 0; a < 4; a++) {
              __m512 s0 = r[a][0], s1 = r[a][1];
              _mm512_storeu_ps(zt + (a * 4 + 0) * zs, s0);
              _mm512_storeu_ps(zt + (a * 4 + 1) * zs, _mm512_add_ps(s0, s1));
              _mm512_storeu_ps(zt + (a * 4 + 2) * zs, _mm512_sub_ps(s0, s1));
              _mm512_storeu_ps(zt + (a * 4 + 3) * zs, _mm512_sub_ps(zero, s1));
            }
          }
        }
        /* Mw_xi[c][o] += sum_t V_xi[t][c] Z_xi[t][o] */
        for (int xi = 0; xi < 16; xi++)
          for (int ob = 0; ob < nvt; ob += 4) {
            int nv = nvt - ob < 4 ? nvt - ob : 4, mr = mr_max[nv];
            for (int64_t c0 = 0; c0 < q->c; c0 += mr) {
              int rows = q->c - c0 < mr ? (int)(q->c - c0) : mr;
              tab_fns[nv][rows](nb, zb + xi * zs + ob * 16, coutp, vb + xi * vs, ut, iota + c0,
                                mw + (xi * q->c + c0) * coutp + ob * 16, coutp, rows, 1);
            }
          }
      }
      if (db)
        for (int64_t o = 0; o < q->o; o++) {
          const float *r = dyn + o * np;
          __m512 a = _mm512_setzero_ps();
          for (int64_t p = 0; p < np; p += 16)
            a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(lanes(np - p), r + p));
          bsum[o] += _mm512_reduce_add_ps(a);
        }
    }
  }
  /* sum the threads' Mw in a fixed order, then dW[o][c] += G^T Mw[o][c] G */
#pragma omp parallel for schedule(static) num_threads(nt) if (q->o * q->c > 256)
  for (int64_t oc = 0; oc < q->o * q->c; oc++) {
    int64_t o = oc / q->c, c = oc % q->c;
    float m[4][4], t[3][4];
    for (int xi = 0; xi < 16; xi++) {
      float sum = 0.0f;
      for (int th = 0; th < nt; th++)
        sum += threads[th * stride + mw_at + (xi * q->c + c) * coutp + o];
      m[xi / 4][xi % 4] = sum;
    }
    for (int b = 0; b < 4; b++) { /* t = G^T m, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1] */
      t[0][b] = m[0][b] + 0.5f * (m[1][b] + m[2][b]);
      t[1][b] = 0.5f * (m[1][b] - m[2][b]);
      t[2][b] = 0.5f * (m[1][b] + m[2][b]) + m[3][b];
    }
    float *d = dw + (o * q->c + c) * 9;
    for (int a = 0; a < 3; a++) {
      d[a * 3 + 0] += t[a][0] + 0.5f * (t[a][1] + t[a][2]);
      d[a * 3 + 1] += 0.5f * (t[a][1] - t[a][2]);
      d[a * 3 + 2] += 0.5f * (t[a][1] + t[a][2]) + t[a][3];
    }
  }
  if (db)
    for (int64_t o = 0; o < q->o; o++) {
      float sum = 0.0f;
      for (int th = 0; th < nt; th++) sum += threads[th * stride + mw_at + mw_n + o];
      db[o] += sum;
    }
}

/* ---- dW: per thread [padded x | dy^T [P][Opad] | accumulators [G][Kg][Opad] | db sums [O]] ----
 */
static ws_layout backward_w_layout(const dml__conv_geom *q, int nt, int64_t *acc_at) {
  int64_t hp = q->h + 2 * q->ph, wp = q->w + 2 * q->pw, np = q->ho * q->wo;
  int64_t kg = q->cg * q->kh * q->kw, opad = round16(q->og);
  *acc_at = round16(q->c * hp * wp + 16) + np * opad;
  return layout(0, np, kg, *acc_at + q->groups * kg * opad + q->o, nt);
}

int64_t dml__conv_direct_backward_w_size(const dml__conv_geom *q, int nt) {
  int64_t acc_at;
  if (smallk_ok(q)) return smallk_backward_w_size(q, nt);
  if (wino_forward_ok(q)) {
    wino_plan w = wino_make(q->c, q->o, q->ho, q->wo);
    return wino_dw_shared_floats(&w) + nt * round16(wino_dw_thread_floats(&w));
  }
  if (!supported(q->c * (q->h + 2 * q->ph) * (q->w + 2 * q->pw), q->og)) return -1;
  return backward_w_layout(q, nt, &acc_at).total;
}

void dml__conv_direct_backward_w(const dml__conv_geom *q, int nt, float *ws, const float *x,
                                 const float *dy, float *dw, float *db) {
  if (smallk_ok(q)) {
    backward_w_smallk(q, nt, ws, x, dy, dw, db);
    return;
  }
  if (wino_forward_ok(q)) {
    backward_w_wino(q, nt, ws, x, dy, dw, db);
    return;
  }
  int64_t hp = q->h + 2 * q->ph, wp = q->w + 2 * q->pw, np = q->ho * q->wo;
  int64_t kg = q->cg * q->kh * q->kw, opad = round16(q->og), xsz = round16(q->c * hp * wp + 16);
  int64_t acc_n = q->groups * kg * opad, acc_at;
  int nvt = (int)(opad / 16);
  ws_layout l = backward_w_layout(q, nt, &acc_at);
  int32_t *poff = (int32_t *)(ws + l.u), *toff = (int32_t *)(ws + l.vo);
  position_offsets(q, wp, poff);
  tap_offsets(q, hp, wp, toff);
  for (int t = 0; t < nt; t++)
    memset(ws + l.threads + t * l.stride + acc_at, 0, (size_t)(acc_n + q->o) * sizeof(float));
#pragma omp parallel num_threads(nt)
  {
    float *xp = ws + l.threads + omp_get_thread_num() * l.stride;
    float *dyt = xp + xsz, *acc = xp + acc_at, *bsum = acc + acc_n;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < q->n; n++) {
      if (n + 1 < q->n) {
        prefetch_l2(x + (n + 1) * q->c * q->h * q->w, q->c * q->h * q->w);
        prefetch_l2(dy + (n + 1) * q->o * np, q->o * np);
      }
      pad_copy(x + n * q->c * q->h * q->w, q->c, q->h, q->w, xp, hp, wp, q->ph, q->pw);
      for (int64_t grp = 0; grp < q->groups; grp++) {
        planes_to_rows(dy + (n * q->o + grp * q->og) * np, np, q->og, dyt, opad,
                       db ? bsum + grp * q->og : NULL);
        const float *xg = xp + grp * q->cg * hp * wp;
        for (int ob = 0; ob < nvt; ob += 4) {
          int nv = nvt - ob < 4 ? nvt - ob : 4, mr = mr_max[nv];
          for (int64_t k0 = 0; k0 < kg; k0 += mr) {
            int rows = kg - k0 < mr ? (int)(kg - k0) : mr;
            tab_fns[nv][rows](np, dyt + ob * 16, opad, xg, poff, toff + k0,
                              acc + (grp * kg + k0) * opad + ob * 16, opad, rows, 1);
          }
        }
      }
    }
  }
  /* fixed-order reduction over the per-thread accumulators */
  const float *acc0 = ws + l.threads + acc_at;
#pragma omp parallel for schedule(static) num_threads(nt) if (q->o * kg > 4096)
  for (int64_t oc = 0; oc < q->o; oc++) {
    int64_t grp = oc / q->og, o = oc % q->og;
    for (int64_t k = 0; k < kg; k++) {
      float s = 0.0f;
      for (int t = 0; t < nt; t++) s += acc0[t * l.stride + (grp * kg + k) * opad + o];
      dw[oc * kg + k] += s;
    }
  }
  if (db)
    for (int64_t oc = 0; oc < q->o; oc++) {
      float s = 0.0f;
      for (int t = 0; t < nt; t++) s += acc0[t * l.stride + acc_n + oc];
      db[oc] += s;
    }
}

/* ---- dx (stride 1): dy padded so that
 *   dx[ih][iw] = sum_{o,kh',kw'} dyp[o][ih + kh'*dh][iw + kw'*dw] w[o][c][KH-1-kh'][KW-1-kw']
 * per thread [padded dy | rows [H*W][Cpad]] ---- */
static ws_layout backward_x_layout(const dml__conv_geom *q, int nt) {
  int64_t hq = q->h + (q->kh - 1) * q->dh, wq = q->w + (q->kw - 1) * q->dw;
  int64_t kt = q->og * q->kh * q->kw, cpad = round16(q->cg), np = q->h * q->w;
  return layout(q->groups * kt * cpad, kt, np, round16(q->o * hq * wq + 16) + np * cpad, nt);
}

/* dx by Winograd: dy padded by 2 - p, filter flipped with channels swapped; needs p <= 2. */
static int wino_backward_x_ok(const dml__conv_geom *q) {
  return wino_forward_ok(q) && q->ph <= 2 && q->pw <= 2;
}

int64_t dml__conv_direct_backward_x_size(const dml__conv_geom *q, int nt) {
  int64_t hq = q->h + (q->kh - 1) * q->dh, wq = q->w + (q->kw - 1) * q->dw;
  if (q->sh != 1 || q->sw != 1 || !supported(q->o * hq * wq, q->cg)) return -1;
  if (wino_backward_x_ok(q)) {
    wino_plan w = wino_make(q->o, q->c, q->h, q->w);
    return wino_shared_floats(&w) + nt * round16(wino_thread_floats(&w));
  }
  return backward_x_layout(q, nt).total;
}

static void backward_x_wino(const dml__conv_geom *q, int nt, float *ws, const float *wt,
                            const float *dy, float *dx) {
  wino_plan w = wino_make(q->o, q->c, q->h, q->w);
  float *U;
  int32_t *u0, *vo;
  wino_tables(&w, ws, &U, &u0, &vo);
  /* filter of (out = c, in = o) is w[o][c] flipped */
  wino_weights(&w, q->c, wt, 9, q->c * 9, 1, U);
  float *threads = ws + wino_shared_floats(&w);
  int64_t stride = round16(wino_thread_floats(&w)), np = q->h * q->w, nyo = q->ho * q->wo;
#pragma omp parallel num_threads(nt)
  {
    float *xt = threads + omp_get_thread_num() * stride;
    float *vb = xt + w.rows * w.cols * w.cinp, *mb = vb + 16 * w.blk * w.cinp;
    float *out = mb + 16 * w.blk * w.coutp;
    memset(xt, 0, (size_t)(w.rows * w.cols * w.cinp) * sizeof(float));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < q->n; n++) {
      if (n + 1 < q->n) prefetch_l2(dy + (n + 1) * q->o * nyo, q->o * nyo);
      planes_to_nhwc(dy + n * q->o * nyo, q->o, q->ho, q->wo, xt, w.cols, w.cinp, 2 - q->ph,
                     2 - q->pw);
      wino_image(&w, xt, U, u0, vo, vb, mb, out);
      rows_to_planes(out, w.coutp, np, q->c, dx + n * q->c * np, NULL, 1);
    }
  }
}

void dml__conv_direct_backward_x(const dml__conv_geom *q, int nt, float *ws, const float *w,
                                 const float *dy, float *dx) {
  if (wino_backward_x_ok(q)) {
    backward_x_wino(q, nt, ws, w, dy, dx);
    return;
  }
  int64_t hq = q->h + (q->kh - 1) * q->dh, wq = q->w + (q->kw - 1) * q->dw;
  int64_t oh = (q->kh - 1) * q->dh - q->ph, ow = (q->kw - 1) * q->dw - q->pw;
  int64_t np = q->h * q->w, khw = q->kh * q->kw, kt = q->og * khw, kg = q->cg * khw;
  int64_t cpad = round16(q->cg), dsz = round16(q->o * hq * wq + 16);
  int nvt = (int)(cpad / 16);
  ws_layout l = backward_x_layout(q, nt);
  float *wt = ws + l.packed;
  int32_t *u = (int32_t *)(ws + l.u), *poff = (int32_t *)(ws + l.vo);
  for (int64_t o = 0; o < q->og; o++)
    for (int64_t kh = 0; kh < q->kh; kh++)
      for (int64_t kw = 0; kw < q->kw; kw++)
        u[(o * q->kh + kh) * q->kw + kw] = (int32_t)(o * hq * wq + kh * q->dh * wq + kw * q->dw);
  for (int64_t ih = 0; ih < q->h; ih++)
    for (int64_t iw = 0; iw < q->w; iw++) poff[ih * q->w + iw] = (int32_t)(ih * wq + iw);
      /* wt[grp][(o*KH + kh')*KW + kw'][c] = w[grp*Og + o][c][KH-1-kh'][KW-1-kw'] */
#pragma omp parallel for schedule(static) num_threads(nt) if (q->groups * kt * cpad > 32768)
  for (int64_t r = 0; r < q->groups * kt; r++) {
    int64_t grp = r / kt, t = r % kt, o = t / khw, kk = t % khw;
    int64_t kh = q->kh - 1 - kk / q->kw, kw = q->kw - 1 - kk % q->kw;
    const float *src = w + (grp * q->og + o) * kg + kh * q->kw + kw;
    float *d = wt + r * cpad;
    for (int64_t c = 0; c < cpad; c++) d[c] = c < q->cg ? src[c * khw] : 0.0f;
  }
#pragma omp parallel num_threads(nt)
  {
    float *dyp = ws + l.threads + omp_get_thread_num() * l.stride;
    float *rows = dyp + dsz;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < q->n; n++) {
      if (n + 1 < q->n) prefetch_l2(dy + (n + 1) * q->o * q->ho * q->wo, q->o * q->ho * q->wo);
      pad_copy(dy + n * q->o * q->ho * q->wo, q->o, q->ho, q->wo, dyp, hq, wq, oh, ow);
      for (int64_t grp = 0; grp < q->groups; grp++) {
        run_tiles(kt, wt + grp * kt * cpad, cpad, nvt, dyp + grp * q->og * hq * wq, u, poff, np,
                  q->w, 1, rows, cpad, 0);
        rows_to_planes(rows, cpad, np, q->cg, dx + (n * q->c + grp * q->cg) * np, NULL, 1);
      }
    }
  }
}

#else /* no AVX-512: the portable path does everything */

int64_t dml__conv_direct_forward_size(const dml__conv_geom *q, int nt) {
  (void)q, (void)nt;
  return -1;
}
int64_t dml__conv_direct_backward_w_size(const dml__conv_geom *q, int nt) {
  (void)q, (void)nt;
  return -1;
}
int64_t dml__conv_direct_backward_x_size(const dml__conv_geom *q, int nt) {
  (void)q, (void)nt;
  return -1;
}
void dml__conv_direct_forward(const dml__conv_geom *q, int nt, float *ws, const float *x,
                              const float *w, const float *b, float *y) {
  (void)q, (void)nt, (void)ws, (void)x, (void)w, (void)b, (void)y;
}
void dml__conv_direct_backward_w(const dml__conv_geom *q, int nt, float *ws, const float *x,
                                 const float *dy, float *dw, float *db) {
  (void)q, (void)nt, (void)ws, (void)x, (void)dy, (void)dw, (void)db;
}
void dml__conv_direct_backward_x(const dml__conv_geom *q, int nt, float *ws, const float *w,
                                 const float *dy, float *dx) {
  (void)q, (void)nt, (void)ws, (void)w, (void)dy, (void)dx;
}

#endif
