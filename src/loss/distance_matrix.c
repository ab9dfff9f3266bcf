/* The matrix every loss starts from, and its backward.
 * Forward: m [b, r] between rows a_i (the batch) and columns c_j (the batch again, a reference
 * set, the memory or proxies), optionally both L2-normalised (x / max(||x||, 1e-12)):
 *   dot / cosine         m_ij = a_i . c_j     (one sgemm; ssyrk + mirror for the batch itself)
 *   squared Euclidean    m_ij = ||a_i||^2 + ||c_j||^2 - 2 a_i . c_j, clamped at 0
 *   Euclidean            m_ij = sqrt(squared)
 * The expansion cancels badly for close pairs, so a pair whose squared distance is below 1% of
 * ||a||^2 + ||c||^2 is recomputed as sum_k (a_k - c_k)^2 in double: duplicates come out exactly 0.
 * Backward, for G = A C^T and an upstream dm:
 *   dot / cosine: dG = dm.   squared: e = dm.   Euclidean: e = dm / (2 m), 0 where m = 0 (the
 *   subgradient of the norm at 0), then dG = -2 e and dA_i += 2 a_i sum_j e_ij,
 *   dC_j += 2 c_j sum_i e_ij;   dA = dG C, dC = dG^T A (two sgemm). When the columns are the
 *   batch itself, both ends of a pair are rows of A, so the block is symmetrised (e + e^T) and
 *   one sgemm gives the whole gradient.
 * Against a few columns (r <= NARROW_COLS: proxies, class weights) the three products are short
 * dot-product and axpy loops of dml's own instead of sgemm calls: at 1024 x 16 x 128 OpenBLAS
 * spends more time packing, zeroing and handing out work than multiplying.
 * Through the normalisation: dx = (dx^ - x^ (x^ . dx^)) / ||x||; a zero row has no direction,
 * so it gets no gradient (a constant), rather than the 1e12 that x / max(||x||, eps) implies. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "dml/threads.h"
#include "loss/loss_internal.h"
#include "loss/loss_math.h"

#define NORM_EPS 1e-12

/* OpenBLAS splits even a product of a few MFLOP over every thread, where handing the work out
 * costs more than it saves (a 256 x 16 x 128 proxy product runs faster on one thread): such
 * products run on the calling thread. Returns the thread count to restore, 0 for none. */
#define SMALL_GEMM_FLOPS (4.0 * 1024 * 1024)
static int small_gemm_begin(int64_t m, int64_t n, int64_t k) {
  if (2.0 * (double)m * (double)n * (double)k >= SMALL_GEMM_FLOPS) return 0;
  const int prev = openblas_get_num_threads();
  if (prev <= 1) return 0;
  openblas_set_num_threads(1);
  return prev;
}
static void small_gemm_end(int prev) {
  if (prev) dml_set_num_threads(prev);
}

/* Products against at most this many columns run in narrow_*() below. */
#define NARROW_COLS 64
#define NARROW_PAR 262144 /* multiply-adds below which a narrow product stays on one thread */

/* m [b, r] = A C^T for r <= NARROW_COLS, with ct [d, rp] = C^T zero-padded to rp columns (a
 * multiple of 16). Blocks of 8 rows x 16 columns are accumulated in registers (acc, 8 x 16
 * floats) over k: one load of a row of ct feeds eight multiply-adds and no sum is reduced
 * across a vector. Rows past the last full block take plain dot products. Row blocks run in
 * parallel; every entry is the same sum in the same order whatever the thread count. */
static void narrow_product(const float *A, int64_t b, const float *ct, int64_t r, int64_t rp,
                           int64_t d, float *m) {
  enum { IT = 8, RT = 16 };
  const int64_t full = b / IT * IT;
#pragma omp parallel for schedule(static) if (b * r * d > NARROW_PAR)
  for (int64_t i0 = 0; i0 < full; i0 += IT) {
    for (int64_t j0 = 0; j0 < rp; j0 += RT) {
      float acc[IT][RT] = {{0}};
      for (int64_t k = 0; k < d; k++) {
        const float *ck = ct + k * rp + j0;
        for (int ii = 0; ii < IT; ii++) {
          const float av = A[(i0 + ii) * d + k];
#pragma omp simd
          for (int t = 0; t < RT; t++) acc[ii][t] = FMAF(av, ck[t], acc[ii][t]);
        }
      }
      const int64_t nj = r - j0 < RT ? r - j0 : RT;
      for (int ii = 0; ii < IT; ii++)
        for (int64_t t = 0; t < nj; t++) m[(i0 + ii) * r + j0 + t] = acc[ii][t];
    }
  }
  for (int64_t i = full; i < b; i++)
    for (int64_t j = 0; j < r; j++) {
      float s = 0.0f;
      for (int64_t k = 0; k < d; k++) s = FMAF(A[i * d + k], ct[k * rp + j], s);
      m[i * r + j] = s;
    }
}

/* Register blocks of the two backward products: BB outputs (rows of dA, rows of dC) by KT
 * columns, a fixed-size local array that the compiler keeps in vector registers across the
 * whole reduction (16 zmm with AVX-512, 8 ymm otherwise), so each load of an operand row feeds
 * BB multiply-adds. Every output element is one task's sum, in a fixed order: the result does
 * not depend on the thread count. Ragged column ends take a plain loop. */
#ifdef __AVX512F__
#define KT 64
#define BB 4
#else
#define KT 32
#define BB 2
#endif

static const float zero_weights[NARROW_COLS];

/* dA [b, d] = alpha G C for G [b, r] (row stride r), r <= NARROW_COLS: row i of dA is a sum of
 * the rows of C weighted by row i of G. */
static void narrow_rows_grad(const float *G, int64_t b, int64_t r, const float *C, int64_t d,
                             float alpha, float *dA) {
  const int64_t blocks = (b + BB - 1) / BB, tiles = (d + KT - 1) / KT;
#pragma omp parallel for schedule(static) if (b * r * d > NARROW_PAR)
  for (int64_t p = 0; p < blocks * tiles; p++) {
    const int64_t i0 = p / tiles * BB, k0 = p % tiles * KT;
    const int64_t ni = b - i0 < BB ? b - i0 : BB;
    if (k0 + KT > d) {
      for (int64_t i = i0; i < i0 + ni; i++)
        for (int64_t k = k0; k < d; k++) {
          float s = 0.0f;
          for (int64_t j = 0; j < r; j++) s = FMAF(G[i * r + j], C[j * d + k], s);
          dA[i * d + k] = alpha * s;
        }
      continue;
    }
    const float *g[BB]; /* rows past b read zero weights and are not stored */
    for (int ii = 0; ii < BB; ii++) g[ii] = ii < ni ? G + (i0 + ii) * r : zero_weights;
    float acc[BB][KT] = {{0}};
    for (int64_t j = 0; j < r; j++) {
      const float *c = C + j * d + k0;
      for (int ii = 0; ii < BB; ii++) {
        const float gv = g[ii][j];
#pragma omp simd
        for (int t = 0; t < KT; t++) acc[ii][t] = FMAF(gv, c[t], acc[ii][t]);
      }
    }
    for (int64_t ii = 0; ii < ni; ii++) {
      float *o = dA + (i0 + ii) * d + k0;
#pragma omp simd
      for (int t = 0; t < KT; t++) o[t] = alpha * acc[ii][t];
    }
  }
}

/* dC [n, d] = alpha G[:, :n]^T A for G [b, r] (row stride r), n <= NARROW_COLS: row j of dC
 * is a sum of the rows of A weighted by column j of G, over i in order. */
static void narrow_cols_grad(const float *G, int64_t b, int64_t r, int64_t n, const float *A,
                             int64_t d, float alpha, float *dC) {
  const int64_t blocks = (n + BB - 1) / BB, tiles = (d + KT - 1) / KT;
#pragma omp parallel for schedule(static) if (b * n * d > NARROW_PAR)
  for (int64_t p = 0; p < blocks * tiles; p++) {
    const int64_t j0 = p / tiles * BB, k0 = p % tiles * KT;
    const int64_t nj = n - j0 < BB ? n - j0 : BB;
    if (k0 + KT > d) {
      for (int64_t j = j0; j < j0 + nj; j++)
        for (int64_t k = k0; k < d; k++) {
          float s = 0.0f;
          for (int64_t i = 0; i < b; i++) s = FMAF(G[i * r + j], A[i * d + k], s);
          dC[j * d + k] = alpha * s;
        }
      continue;
    }
    int64_t jc[BB]; /* columns past n repeat column j0 and are not stored */
    for (int jj = 0; jj < BB; jj++) jc[jj] = jj < nj ? j0 + jj : j0;
    float acc[BB][KT] = {{0}};
    for (int64_t i = 0; i < b; i++) {
      const float *a = A + i * d + k0, *gi = G + i * r;
      for (int jj = 0; jj < BB; jj++) {
        const float gv = gi[jc[jj]];
#pragma omp simd
        for (int t = 0; t < KT; t++) acc[jj][t] = FMAF(gv, a[t], acc[jj][t]);
      }
    }
    for (int64_t jj = 0; jj < nj; jj++) {
      float *o = dC + (j0 + jj) * d + k0;
#pragma omp simd
      for (int t = 0; t < KT; t++) o[t] = alpha * acc[jj][t];
    }
  }
}

/* out [n, d] = rows of x normalised; norms [n] = ||x_i||. */
static void normalise_rows(float *out, float *norms, const float *x, int64_t n, int64_t d) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; i++) {
    const float *p = x + i * d;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < d; k++) s += (double)p[k] * p[k];
    const double nrm = sqrt(s);
    norms[i] = (float)nrm;
    const float inv = (float)(1.0 / (nrm > NORM_EPS ? nrm : NORM_EPS));
    float *q = out + i * d;
#pragma omp simd
    for (int64_t k = 0; k < d; k++) q[k] = p[k] * inv;
  }
}

/* m [n, n]: the strict lower triangle becomes the transpose of the upper one (tiles of 32). */
static void mirror_upper(float *m, int64_t n) {
  enum { T = 32 };
  const int64_t nt = (n + T - 1) / T;
#pragma omp parallel for schedule(dynamic, 4) if (n * n > 65536)
  for (int64_t p = 0; p < nt * nt; p++) {
    const int64_t ti = p / nt, tj = p % nt;
    if (tj > ti) continue; /* tiles on or below the diagonal are written */
    const int64_t i1 = (ti + 1) * T < n ? (ti + 1) * T : n;
    const int64_t j1 = (tj + 1) * T < n ? (tj + 1) * T : n;
    for (int64_t i = ti * T; i < i1; i++)
      for (int64_t j = tj * T; j < j1 && j < i; j++) m[i * n + j] = m[j * n + i];
  }
}

static void squared_norms(double *out, const float *x, int64_t n, int64_t d) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; i++) {
    const float *p = x + i * d;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < d; k++) s += (double)p[k] * p[k];
    out[i] = s;
  }
}

dml_status dml__distance_matrix(const float *emb, int64_t b, const float *cols, int64_t r,
                                int64_t d, dml_distance dist, int normalize, float *m,
                                float *emb_n, float *cols_n) {
  const int self = cols == NULL;
  if (self) r = b;
  if (dist == DML_DIST_COSINE) normalize = 1;
  float *own_a = NULL, *own_c = NULL, *nrm = NULL;
  double *na = NULL, *nc = NULL;
  const float *A = emb, *C = self ? emb : cols;
  if (normalize) {
    if (!emb_n) emb_n = own_a = dml_alloc_aligned(b * d * (int64_t)sizeof(float));
    if (!self && !cols_n) cols_n = own_c = dml_alloc_aligned(r * d * (int64_t)sizeof(float));
    nrm = dml_alloc_aligned((b > r ? b : r) * (int64_t)sizeof(float));
    if (!emb_n || (!self && !cols_n) || !nrm) goto oom;
    normalise_rows(emb_n, nrm, emb, b, d);
    A = emb_n;
    if (self) {
      C = emb_n;
      if (cols_n) memcpy(cols_n, emb_n, (size_t)(b * d) * sizeof(float));
    } else {
      normalise_rows(cols_n, nrm, cols, r, d);
      C = cols_n;
    }
  }
  const int narrow = !self && r <= NARROW_COLS;
  const int gemm_prev = narrow ? 0 : small_gemm_begin(b, r, d);
  if (narrow) {
    const int64_t rp = (r + 15) / 16 * 16;
    float *ct = dml_alloc_aligned(d * rp * (int64_t)sizeof(float));
    if (!ct) goto oom;
    for (int64_t k = 0; k < d; k++)
      for (int64_t j = 0; j < rp; j++) ct[k * rp + j] = j < r ? C[j * d + k] : 0.0f;
    narrow_product(A, b, ct, r, rp, d, m);
    dml_free_aligned(ct);
  } else if (self) {
    /* A A^T is symmetric: ssyrk computes the upper triangle (half the work), then mirror */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)b, (int)d, 1.0f, A, (int)d, 0.0f,
                m, (int)b);
    mirror_upper(m, b);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)r, (int)d, 1.0f, A,
                (int)d, C, (int)d, 0.0f, m, (int)r);
  }
  small_gemm_end(gemm_prev);
  if (dist == DML_DIST_EUCLIDEAN || dist == DML_DIST_SQUARED_EUCLIDEAN) {
    na = malloc((size_t)b * sizeof(double));
    nc = self ? na : malloc((size_t)r * sizeof(double));
    if (!na || !nc) goto oom;
    squared_norms(na, A, b, d);
    if (!self) squared_norms(nc, C, r, d);
    const int root = dist == DML_DIST_EUCLIDEAN;
#pragma omp parallel for schedule(static) if (b * r > 16384)
    for (int64_t i = 0; i < b; i++) {
      float *row = m + i * r;
      const double ni = na[i];
      /* vectorised expansion; the few close pairs are redone directly below */
      /* the sum in double, rounded once; the compare and the count in float, which gcc 12
       * vectorises (a double or int count next to double compares, or omp simd here, leaves
       * the loop scalar); the count only says whether the scan below is needed */
      float close = 0.0f;
      for (int64_t j = 0; j < r; j++) {
        const double nn = ni + nc[j];
        const float s2 = (float)(nn - 2.0 * (double)row[j]), lim = (float)(0.01 * nn);
        close += s2 < lim ? 1.0f : 0.0f;
        row[j] = s2 > 0.0f ? s2 : 0.0f;
      }
      if (self) { /* a row is at distance 0 from itself */
        close -= row[i] < (float)(0.01 * (ni + nc[i])) ? 1.0f : 0.0f;
        row[i] = 0.0f;
      }
      if (close > 0)
        for (int64_t j = 0; j < r; j++) {
          if (!(row[j] < (float)(0.01 * (ni + nc[j]))) || (self && j == i)) continue;
          const float *p = A + i * d, *q = C + j * d;
          double e = 0.0;
          for (int64_t k = 0; k < d; k++) {
            const double t = (double)p[k] - q[k];
            e += t * t;
          }
          row[j] = (float)e;
        }
      if (root) {
#pragma omp simd
        for (int64_t j = 0; j < r; j++) row[j] = sqrtf(row[j]);
      }
    }
  }
  dml_free_aligned(own_a);
  dml_free_aligned(own_c);
  dml_free_aligned(nrm);
  free(na);
  if (nc != na) free(nc);
  return DML_OK;
oom:
  dml_free_aligned(own_a);
  dml_free_aligned(own_c);
  dml_free_aligned(nrm);
  free(na);
  if (nc != na) free(nc);
  return dml__error(DML_ERR_NO_MEMORY, "out of memory for a %lld x %lld distance matrix",
                    (long long)b, (long long)r);
}

/* In place: the leading n x n block of g [., ld] becomes g + g^T. Tiles of T x T: the
 * transposed tile is gathered into a local buffer so both tiles are read and written row by
 * row. */
static void symmetrise(float *g, int64_t n, int64_t ld) {
  enum { T = 32 };
  const int64_t nt = (n + T - 1) / T;
#pragma omp parallel for schedule(dynamic, 4) if (n * n > 65536)
  for (int64_t p = 0; p < nt * nt; p++) {
    const int64_t ti = p / nt, tj = p % nt;
    if (tj < ti) continue;
    const int64_t i0 = ti * T, j0 = tj * T;
    const int64_t ni = n - i0 < T ? n - i0 : T, nj = n - j0 < T ? n - j0 : T;
    float t[T][T]; /* t[i][j] = g[j0 + j][i0 + i] */
    for (int64_t j = 0; j < nj; j++) {
      const float *src = g + (j0 + j) * ld + i0;
      for (int64_t i = 0; i < ni; i++) t[i][j] = src[i];
    }
    for (int64_t i = 0; i < ni; i++) {
      float *row = g + (i0 + i) * ld + j0;
#pragma omp simd
      for (int64_t j = 0; j < nj; j++) t[i][j] = row[j] = row[j] + t[i][j];
    }
    if (ti == tj) continue; /* the diagonal tile is its own transpose: done */
    for (int64_t j = 0; j < nj; j++) {
      float *dst = g + (j0 + j) * ld + i0;
      for (int64_t i = 0; i < ni; i++) dst[i] = t[i][j];
    }
  }
}

dml_status dml__distance_backward(float *dm, const float *m, int64_t b, int64_t r, int64_t d,
                                  dml_distance dist, const float *A, const float *C,
                                  int64_t c_rows, int self, float *dA, float *dC) {
  const int euclid = dist == DML_DIST_EUCLIDEAN || dist == DML_DIST_SQUARED_EUCLIDEAN;
  /* e = dloss / d(squared distance) for distances, dloss / dG for similarities */
  if (dist == DML_DIST_EUCLIDEAN) {
#pragma omp parallel for schedule(static) if (b * r > 16384)
    for (int64_t i = 0; i < b; i++) {
      float *g = dm + i * r;
      const float *mi = m + i * r;
#pragma omp simd
      for (int64_t j = 0; j < r; j++) g[j] = mi[j] > 0.0f ? g[j] / (2.0f * mi[j]) : 0.0f;
    }
  }
  /* With self columns, C's first c_rows rows are A: both sides of those pairs go to dA at once
   * through the symmetrised block, and dC is not needed. */
  if (self && c_rows > 0) symmetrise(dm, c_rows, r);
  const int need_dc = !self && c_rows > 0 && dC;
  double *rows = NULL, *colsum = NULL;
  if (euclid) {
    rows = malloc((size_t)b * sizeof(double));
    colsum = need_dc ? calloc((size_t)c_rows, sizeof(double)) : NULL;
    if (!rows || (need_dc && !colsum)) {
      free(rows);
      free(colsum);
      return dml__error(DML_ERR_NO_MEMORY, "out of memory in the distance backward");
    }
#pragma omp parallel for schedule(static) if (b * r > 16384)
    for (int64_t i = 0; i < b; i++) {
      const float *g = dm + i * r;
      double s = 0.0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < r; j++) s += g[j];
      rows[i] = s;
    }
    if (need_dc) {
      /* column sums in row order, each thread owning a range of columns */
#pragma omp parallel for schedule(static) if (b * c_rows > 65536)
      for (int64_t j0 = 0; j0 < c_rows; j0 += 256) {
        const int64_t j1 = j0 + 256 < c_rows ? j0 + 256 : c_rows;
        for (int64_t i = 0; i < b; i++)
          for (int64_t j = j0; j < j1; j++) colsum[j] += dm[i * r + j];
      }
    }
  }
  /* squared distance = |a|^2 + |c|^2 - 2 a.c: the product part carries a factor -2 */
  const float alpha = euclid ? -2.0f : 1.0f;
  const int narrow = !self && r <= NARROW_COLS;
  const int gemm_prev = narrow ? 0 : small_gemm_begin(b, r, d);
  if (narrow)
    narrow_rows_grad(dm, b, r, C, d, alpha, dA);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)d, (int)r, alpha, dm,
                (int)r, C, (int)d, 0.0f, dA, (int)d);
  if (euclid)
#pragma omp parallel for schedule(static) if (b * d > 32768)
    for (int64_t i = 0; i < b; i++) {
      const float w = (float)(2.0 * rows[i]);
#pragma omp simd
      for (int64_t k = 0; k < d; k++) dA[i * d + k] += w * A[i * d + k];
    }
  if (need_dc) {
    if (narrow)
      narrow_cols_grad(dm, b, r, c_rows, A, d, alpha, dC);
    else
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c_rows, (int)d, (int)b, alpha,
                  dm, (int)r, A, (int)d, 0.0f, dC, (int)d);
    if (euclid)
      for (int64_t j = 0; j < c_rows; j++) {
        const float w = (float)(2.0 * colsum[j]);
        for (int64_t k = 0; k < d; k++) dC[j * d + k] += w * C[j * d + k];
      }
  }
  small_gemm_end(gemm_prev);
  free(rows);
  free(colsum);
  return DML_OK;
}

void dml__normalise_backward(float *dx, const float *xn, const float *raw, int64_t n,
                             int64_t d) {
#pragma omp parallel for schedule(static) if (n * d > 32768)
  for (int64_t i = 0; i < n; i++) {
    const float *p = raw + i * d, *u = xn + i * d;
    float *g = dx + i * d;
    double s = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : s, dot)
    for (int64_t k = 0; k < d; k++) {
      s += (double)p[k] * p[k];
      dot += (double)u[k] * g[k];
    }
    const double nrm = sqrt(s);
    if (nrm <= NORM_EPS) {
      for (int64_t k = 0; k < d; k++) g[k] = 0.0f;
      continue;
    }
    const float inv = (float)(1.0 / nrm), fdot = (float)dot;
#pragma omp simd
    for (int64_t k = 0; k < d; k++) g[k] = (g[k] - u[k] * fdot) * inv;
  }
}
