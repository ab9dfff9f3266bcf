/* Exact t-SNE optimisation (van der Maaten and Hinton, JMLR 2008), step for step as
 * scikit-learn 1.2's TSNE(method="exact"): Student-t similarities with one degree of freedom,
 * KL(P || Q) gradient 4 sum_j (p_ij - q_ij) w_ij (y_i - y_j) with w_ij = 1 / (1 + |y_i - y_j|^2),
 * two phases of gradient descent (_gradient_descent in sklearn/manifold/_t_sne.py): 250 steps
 * with P exaggerated and momentum 0.5, then momentum 0.8; gains +0.2 / x0.8 (min 0.01), both
 * reset at the phase change; every 50 steps the error is checked and a phase stops when it has
 * not improved for 250 (first phase) or 300 steps, or when the gradient norm is below 1e-7.
 *
 * The pair sums take one pass per step over the upper triangle of P in tiles of TB x TB
 * points: with q_ij = w_ij / Z, grad_i = 4 (alpha sum_j p_ij w_ij (y_i - y_j)
 * - (1/Z) sum_j w_ij^2 (y_i - y_j)), so a tile yields, for its rows and for its columns, the
 * partial sums of w, p w (y_i - y_j) and w^2 (y_i - y_j). Each tile writes its own slots and
 * the slots are added in a fixed order, so the map does not depend on the thread count. */
#include <float.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/status_internal.h"
#include "dml/rng.h"
#include "viz/tsne_internal.h"

#define TB 256                /* tile side, points */
#define EXPLORATION_ITERS 250 /* sklearn's _EXPLORATION_N_ITER */
#define CHECK_EVERY 50        /* sklearn's _N_ITER_CHECK */
#define NO_PROGRESS_ITERS 300 /* n_iter_without_progress */
#define MIN_GRAD_NORM 1e-7
#define MIN_GAIN 0.01
#define INIT_STD 1e-4

/* x * y + z, fused where the target has FMA (without it fmaf is a libm call per element). */
#if defined(__FMA__)
#define FMAF(x, y, z) fmaf(x, y, z)
#else
#define FMAF(x, y, z) ((x) * (y) + (z))
#endif

dml_tsne_config dml_tsne_config_default(void) {
  dml_tsne_config c;
  c.perplexity = 30.0;
  c.iterations = 1000;
  c.learning_rate = 0.0;
  c.early_exaggeration = 12.0;
  c.init = DML_TSNE_INIT_PCA;
  c.seed = 0;
  return c;
}

typedef struct pairs {
  int64_t n;
  int nb, ntiles;
  const float *P; /* [n, n] symmetric */
  float *yx, *yy; /* the map, as float, one array per axis */
  float *part;    /* [nb][nb][5][TB]: sums of row block a against column block b */
  double *tile_kl; /* [ntiles] */
  int *ta, *tb;    /* tile t covers row block ta[t], column block tb[t] >= ta[t] */
  double *rows;    /* [n][5] */
} pairs;

static float *slot(const pairs *w, int a, int b) {
  return w->part + ((size_t)a * (size_t)w->nb + (size_t)b) * 5 * TB;
}

/* One row i against the columns js..nj-1 of a tile: returns the row's five sums in sum[] and
 * adds the columns' (with the differences' sign flipped) into col[5][TB]. xj, yj, p point at
 * the tile's first column. */
#ifdef __AVX512F__
/* 16 columns at a time; 1 / (1 + d^2) from the 14-bit reciprocal estimate and one Newton step
 * (relative error below 1e-7; the division would take most of the step), ragged ends by
 * masks. The row sums are reduced lane-wise in a fixed order. */
static void pair_row(float xi, float yi, const float *p, const float *xj, const float *yj,
                     int64_t js, int64_t nj, float *col, float sum[5]) {
  const __m512 one = _mm512_set1_ps(1.0f), vxi = _mm512_set1_ps(xi), vyi = _mm512_set1_ps(yi);
  __m512 z = _mm512_setzero_ps(), ax = z, ay = z, bx = z, by = z;
  for (int64_t j = js - js % 16; j < nj; j += 16) {
    __mmask16 m = nj - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nj - j)) - 1u);
    if (j < js) m &= (__mmask16)(0xffffu << (js - j));
    const __m512 dx = _mm512_sub_ps(vxi, _mm512_maskz_loadu_ps(m, xj + j));
    const __m512 dy = _mm512_sub_ps(vyi, _mm512_maskz_loadu_ps(m, yj + j));
    const __m512 den = _mm512_add_ps(one, _mm512_fmadd_ps(dx, dx, _mm512_mul_ps(dy, dy)));
    const __m512 r = _mm512_rcp14_ps(den);
    const __m512 q = _mm512_maskz_mov_ps(m, _mm512_fmadd_ps(r, _mm512_fnmadd_ps(den, r, one), r));
    const __m512 pq = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j), q), qq = _mm512_mul_ps(q, q);
    z = _mm512_add_ps(z, q);
    ax = _mm512_fmadd_ps(pq, dx, ax);
    ay = _mm512_fmadd_ps(pq, dy, ay);
    bx = _mm512_fmadd_ps(qq, dx, bx);
    by = _mm512_fmadd_ps(qq, dy, by);
    float *c = col + j;
    _mm512_mask_storeu_ps(c, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), q));
    _mm512_mask_storeu_ps(c + TB, m, _mm512_fnmadd_ps(pq, dx, _mm512_maskz_loadu_ps(m, c + TB)));
    _mm512_mask_storeu_ps(c + 2 * TB, m,
                          _mm512_fnmadd_ps(pq, dy, _mm512_maskz_loadu_ps(m, c + 2 * TB)));
    _mm512_mask_storeu_ps(c + 3 * TB, m,
                          _mm512_fnmadd_ps(qq, dx, _mm512_maskz_loadu_ps(m, c + 3 * TB)));
    _mm512_mask_storeu_ps(c + 4 * TB, m,
                          _mm512_fnmadd_ps(qq, dy, _mm512_maskz_loadu_ps(m, c + 4 * TB)));
  }
  sum[0] = _mm512_reduce_add_ps(z);
  sum[1] = _mm512_reduce_add_ps(ax);
  sum[2] = _mm512_reduce_add_ps(ay);
  sum[3] = _mm512_reduce_add_ps(bx);
  sum[4] = _mm512_reduce_add_ps(by);
}
#else
/* Portable: the compiler vectorises the loop; a + b c is written FMAF(b, c, a) since ISO C
 * mode does not contract. */
static void pair_row(float xi, float yi, const float *p, const float *xj, const float *yj,
                     int64_t js, int64_t nj, float *col, float sum[5]) {
  float *cz = col, *cax = col + TB, *cay = col + 2 * TB, *cbx = col + 3 * TB, *cby = col + 4 * TB;
  float z = 0.0f, ax = 0.0f, ay = 0.0f, bx = 0.0f, by = 0.0f;
#pragma omp simd reduction(+ : z, ax, ay, bx, by)
  for (int64_t j = js; j < nj; j++) {
    const float dx = xi - xj[j], dy = yi - yj[j];
    const float q = 1.0f / (1.0f + FMAF(dx, dx, dy * dy));
    const float pq = p[j] * q, qq = q * q;
    z += q;
    ax = FMAF(pq, dx, ax);
    ay = FMAF(pq, dy, ay);
    bx = FMAF(qq, dx, bx);
    by = FMAF(qq, dy, by);
    cz[j] += q;
    cax[j] = FMAF(-pq, dx, cax[j]);
    cay[j] = FMAF(-pq, dy, cay[j]);
    cbx[j] = FMAF(-qq, dx, cbx[j]);
    cby[j] = FMAF(-qq, dy, cby[j]);
  }
  sum[0] = z;
  sum[1] = ax;
  sum[2] = ay;
  sum[3] = bx;
  sum[4] = by;
}
#endif

/* Rows i0..i1 against columns j0..j1 of another block: row sums into rp, column sums into cp;
 * each [5][TB]. */
static void tile_off(const pairs *w, int64_t i0, int64_t i1, int64_t j0, int64_t j1, float *rp,
                     float *cp) {
  memset(cp, 0, sizeof(float) * 5 * TB);
  for (int64_t i = i0; i < i1; i++) {
    float s[5];
    pair_row(w->yx[i], w->yy[i], w->P + i * w->n + j0, w->yx + j0, w->yy + j0, 0, j1 - j0, cp,
             s);
    for (int c = 0; c < 5; c++) rp[c * TB + (i - i0)] = s[c];
  }
}

/* The pairs i < j within rows i0..i1: each row's sums over the later rows, plus the column
 * sums it received from the earlier ones. */
static void tile_diag(const pairs *w, int64_t i0, int64_t i1, float *rp) {
  float col[5 * TB];
  memset(col, 0, sizeof col);
  for (int64_t i = i0; i < i1; i++) {
    float s[5];
    pair_row(w->yx[i], w->yy[i], w->P + i * w->n + i0, w->yx + i0, w->yy + i0, i - i0 + 1,
             i1 - i0, col, s);
    for (int c = 0; c < 5; c++) rp[c * TB + (i - i0)] = s[c];
  }
  for (int c = 0; c < 5; c++)
    for (int64_t r = 0; r < i1 - i0; r++) rp[c * TB + r] += col[c * TB + r];
}

/* The gradient for exaggeration alpha at the map in w->yx, w->yy into grad [n, 2] (double);
 * returns Z = sum_{i != j} w_ij. */
static double gradient(pairs *w, double alpha, double *grad) {
  const int64_t n = w->n;
#pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < w->ntiles; t++) {
    const int a = w->ta[t], b = w->tb[t];
    const int64_t i0 = (int64_t)a * TB, i1 = i0 + TB < n ? i0 + TB : n;
    const int64_t j0 = (int64_t)b * TB, j1 = j0 + TB < n ? j0 + TB : n;
    if (a == b)
      tile_diag(w, i0, i1, slot(w, a, a));
    else
      tile_off(w, i0, i1, j0, j1, slot(w, a, b), slot(w, b, a));
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const int a = (int)(i / TB);
    const int64_t r = i % TB;
    double s[5] = {0, 0, 0, 0, 0};
    for (int b = 0; b < w->nb; b++) {
      const float *sl = slot(w, a, b);
      for (int c = 0; c < 5; c++) s[c] += (double)sl[c * TB + r];
    }
    for (int c = 0; c < 5; c++) w->rows[i * 5 + c] = s[c];
  }
  double z = 0.0;
  for (int64_t i = 0; i < n; i++) z += w->rows[i * 5];
  const double inv = z > 0.0 ? 1.0 / z : 0.0;
  for (int64_t i = 0; i < n; i++) {
    const double *s = w->rows + i * 5;
    grad[2 * i] = 4.0 * (alpha * s[1] - s[3] * inv);
    grad[2 * i + 1] = 4.0 * (alpha * s[2] - s[4] * inv);
  }
  return z;
}

/* log(u) for u >= 1 in float, to a few ulp, in a form compilers vectorise: u = 2^e m with
 * m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its
 * series to s^9 (truncation below 4e-10). */
static inline float log_ge1(float u) {
  uint32_t b;
  memcpy(&b, &u, sizeof b);
  int32_t e = (int32_t)(b >> 23) - 127;
  b = (b & 0x7fffffu) | 0x3f800000u;
  float m;
  memcpy(&m, &b, sizeof m);
  const int big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e += big;
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  /* s^2 / 3 + s^4 / 5 + s^6 / 7 + s^8 / 9 */
  const float series =
      s2 * FMAF(s2, FMAF(s2, FMAF(s2, 1.0f / 9.0f, 1.0f / 7.0f), 1.0f / 5.0f), 1.0f / 3.0f);
  return FMAF((float)e, 0.693147182f, FMAF(2.0f * s, series, 2.0f * s));
}

/* sum_{i != j} p_ij log q_ij with q_ij = max(w_ij / Z, DBL_EPSILON) (scikit-learn's floor). */
static double sum_p_log_q(pairs *w, double z) {
  const int64_t n = w->n;
  const float log_z = (float)log(z), log_eps = (float)log(DBL_EPSILON);
#pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < w->ntiles; t++) {
    const int a = w->ta[t], b = w->tb[t];
    const int64_t i0 = (int64_t)a * TB, i1 = i0 + TB < n ? i0 + TB : n;
    const int64_t j0 = (int64_t)b * TB, j1 = j0 + TB < n ? j0 + TB : n;
    double acc = 0.0;
    for (int64_t i = i0; i < i1; i++) {
      const float xi = w->yx[i], yi = w->yy[i];
      const float *p = w->P + i * n;
      /* pairs i < j only: the sum is symmetric */
      const int64_t js = a == b ? i + 1 : j0;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t j = js; j < j1; j++) {
        const float dx = xi - w->yx[j], dy = yi - w->yy[j];
        float lq = -log_ge1(1.0f + FMAF(dx, dx, dy * dy)) - log_z;
        lq = lq < log_eps ? log_eps : lq;
        s = FMAF(p[j], lq, s);
      }
      acc += (double)s;
    }
    w->tile_kl[t] = 2.0 * acc;
  }
  double total = 0.0;
  for (int t = 0; t < w->ntiles; t++) total += w->tile_kl[t];
  return total;
}

/* KL(alpha P || Q) = alpha (sum p log p + log(alpha) sum p) - alpha sum p log q, the p_ij
 * being at least DBL_EPSILON already. */
static double kl_divergence(pairs *w, double z, double alpha, double sum_p, double sum_plogp) {
  return alpha * (sum_plogp + log(alpha) * sum_p) - alpha * sum_p_log_q(w, z);
}

static void to_float(pairs *w, const double *y) {
  for (int64_t i = 0; i < w->n; i++) {
    w->yx[i] = (float)y[2 * i];
    w->yy[i] = (float)y[2 * i + 1];
  }
}

typedef struct phase {
  int it0, end;
  double momentum;
  int no_progress;
  double alpha;
} phase;

/* One call of scikit-learn's _gradient_descent; returns the last step run. */
static int descend(pairs *w, double *y, double *grad, double *update, double *gains,
                   const phase *ph, double lr, double sum_p, double sum_plogp,
                   dml__tsne_trace *trace) {
  const int64_t m = 2 * w->n;
  for (int64_t k = 0; k < m; k++) {
    update[k] = 0.0;
    gains[k] = 1.0;
  }
  double best_error = DBL_MAX, error = DBL_MAX;
  int best_iter = ph->it0, i = ph->it0;
  for (i = ph->it0; i < ph->end; i++) {
    const int check = (i + 1) % CHECK_EVERY == 0;
    to_float(w, y);
    const double z = gradient(w, ph->alpha, grad);
    if (check || i == ph->end - 1) {
      error = kl_divergence(w, z, ph->alpha, sum_p, sum_plogp);
      if (trace && trace->count < trace->cap) {
        trace->iteration[trace->count] = i;
        trace->error[trace->count] = error;
        trace->exaggeration[trace->count] = ph->alpha;
        trace->count++;
      }
    }
    double norm2 = 0.0;
    for (int64_t k = 0; k < m; k++) {
      if (update[k] * grad[k] < 0.0)
        gains[k] += 0.2;
      else
        gains[k] *= 0.8;
      if (gains[k] < MIN_GAIN) gains[k] = MIN_GAIN;
      grad[k] *= gains[k];
      update[k] = ph->momentum * update[k] - lr * grad[k];
      y[k] += update[k];
      norm2 += grad[k] * grad[k];
    }
    if (check) {
      if (error < best_error) {
        best_error = error;
        best_iter = i;
      } else if (i - best_iter > ph->no_progress) {
        break;
      }
      if (sqrt(norm2) <= MIN_GRAD_NORM) break;
    }
  }
  return i < ph->end ? i : ph->end - 1;
}

static dml_status check_config(const dml_tsne_config *c, int64_t n) {
  if (!(c->perplexity > 0.0) || !(c->perplexity < (double)n))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_tsne_2d: perplexity %g must be above 0 and below the number of "
                      "points (%lld); a third of the points or fewer is usual",
                      c->perplexity, (long long)n);
  if (c->iterations < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_tsne_2d: iterations = %d, need >= 1",
                      c->iterations);
  if (!(c->learning_rate >= 0.0) || !isfinite(c->learning_rate))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_tsne_2d: learning_rate = %g, need > 0 (or 0 for auto)",
                      c->learning_rate);
  if (!(c->early_exaggeration >= 1.0) || !isfinite(c->early_exaggeration))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_tsne_2d: early_exaggeration = %g, need >= 1", c->early_exaggeration);
  if (c->init != DML_TSNE_INIT_PCA && c->init != DML_TSNE_INIT_RANDOM)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_tsne_2d: unknown init %d", (int)c->init);
  return DML_OK;
}

/* The starting map: PCA scaled so that its first axis has standard deviation 1e-4 (sklearn's
 * init="pca", see scikit-learn issue #18018), or 1e-4 N(0, 1) draws from the seed. A PCA
 * whose first axis has no spread falls back to the draws. */
static dml_status init_map(const float *emb, int64_t n, int64_t d, const dml_tsne_config *c,
                           float *tmp, double *y) {
  if (c->init == DML_TSNE_INIT_PCA) {
    DML_TRY(dml_pca_2d(emb, n, d, tmp, NULL));
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < n; i++) mean += tmp[2 * i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (tmp[2 * i] - mean) * (tmp[2 * i] - mean);
    const double sd = sqrt(var / (double)n);
    if (sd > 0.0 && isfinite(sd)) {
      for (int64_t k = 0; k < 2 * n; k++) y[k] = (double)tmp[k] / sd * INIT_STD;
      return DML_OK;
    }
  }
  for (int64_t k = 0; k < 2 * n; k++) y[k] = INIT_STD * dml_rng_normal(c->seed, 0, (uint64_t)k);
  return DML_OK;
}

dml_status dml__tsne_run(const float *emb, int64_t n, int64_t d, const dml_tsne_config *cfg,
                         float *out, double *kl, dml__tsne_trace *trace) {
  const dml_tsne_config c = cfg ? *cfg : dml_tsne_config_default();
  if (n > DML__TSNE_MAX_N)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_tsne_2d: %lld points; exact t-SNE needs O(n^2) time and %.1f GB "
                      "here and is limited to %d points: subsample the points first",
                      (long long)n, 4e-9 * (double)n * (double)n, DML__TSNE_MAX_N);
  if (n < 2 || d < 1 || !emb || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_tsne_2d: n = %lld, d = %lld (need n >= 2, d >= 1, emb and out)",
                      (long long)n, (long long)d);
  DML_TRY(check_config(&c, n));
  DML_TRY(dml__check_finite_rows(emb, n, d, "dml_tsne_2d", "embedding"));

  pairs w;
  memset(&w, 0, sizeof w);
  w.n = n;
  w.nb = (int)((n + TB - 1) / TB);
  w.ntiles = w.nb * (w.nb + 1) / 2;
  float *P = malloc(sizeof(float) * (size_t)n * (size_t)n);
  w.yx = malloc(sizeof(float) * (size_t)n);
  w.yy = malloc(sizeof(float) * (size_t)n);
  w.part = malloc(sizeof(float) * (size_t)w.nb * (size_t)w.nb * 5 * TB);
  w.tile_kl = malloc(sizeof(double) * (size_t)w.ntiles);
  w.ta = malloc(sizeof(int) * (size_t)w.ntiles);
  w.tb = malloc(sizeof(int) * (size_t)w.ntiles);
  w.rows = malloc(sizeof(double) * 5 * (size_t)n);
  double *y = malloc(sizeof(double) * 2 * (size_t)n);
  double *grad = malloc(sizeof(double) * 2 * (size_t)n);
  double *update = malloc(sizeof(double) * 2 * (size_t)n);
  double *gains = malloc(sizeof(double) * 2 * (size_t)n);
  dml_status st = DML_OK;
  if (!P || !w.yx || !w.yy || !w.part || !w.tile_kl || !w.ta || !w.tb || !w.rows || !y ||
      !grad || !update || !gains) {
    st = dml__error(DML_ERR_NO_MEMORY,
                    "dml_tsne_2d: out of memory for %lld points (%.2f GB of affinities)",
                    (long long)n, 4e-9 * (double)n * (double)n);
    goto done;
  }
  w.P = P;
  for (int a = 0, t = 0; a < w.nb; a++)
    for (int b = a; b < w.nb; b++, t++) {
      w.ta[t] = a;
      w.tb[t] = b;
    }
  st = dml__tsne_joint(emb, n, d, c.perplexity, P);
  if (st != DML_OK) goto done;
  /* constants of the error: sum p and sum p log p over i != j, row by row in order */
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    double sp = 0.0, spl = 0.0;
    for (int64_t j = 0; j < n; j++) {
      if (j == i) continue;
      const double p = P[i * n + j];
      sp += p;
      spl += p * log(p);
    }
    w.rows[i * 5] = sp;
    w.rows[i * 5 + 1] = spl;
  }
  double sum_p = 0.0, sum_plogp = 0.0;
  for (int64_t i = 0; i < n; i++) {
    sum_p += w.rows[i * 5];
    sum_plogp += w.rows[i * 5 + 1];
  }
  /* the float copy of the map doubles as scratch for the PCA start */
  float *tmp = out;
  st = init_map(emb, n, d, &c, tmp, y);
  if (st != DML_OK) goto done;

  const double lr = c.learning_rate > 0.0
                        ? c.learning_rate
                        : fmax((double)n / c.early_exaggeration / 4.0, 50.0);
  const int explore = c.iterations < EXPLORATION_ITERS ? c.iterations : EXPLORATION_ITERS;
  phase ph1 = {0, explore, 0.5, EXPLORATION_ITERS, c.early_exaggeration};
  const int last = descend(&w, y, grad, update, gains, &ph1, lr, sum_p, sum_plogp, trace);
  phase ph2 = {last + 1, c.iterations, 0.8, NO_PROGRESS_ITERS, 1.0};
  if (ph2.it0 < ph2.end) descend(&w, y, grad, update, gains, &ph2, lr, sum_p, sum_plogp, trace);

  to_float(&w, y);
  if (kl) *kl = kl_divergence(&w, gradient(&w, 1.0, grad), 1.0, sum_p, sum_plogp);
  for (int64_t k = 0; k < 2 * n; k++) out[k] = (float)y[k];
  for (int64_t k = 0; k < 2 * n; k++)
    if (!isfinite(out[k])) {
      st = dml__error(DML_ERR_NOT_FINITE,
                      "dml_tsne_2d: the map diverged (point %lld); lower the learning rate",
                      (long long)(k / 2));
      break;
    }
done:
  free(P);
  free(w.yx);
  free(w.yy);
  free(w.part);
  free(w.tile_kl);
  free(w.ta);
  free(w.tb);
  free(w.rows);
  free(y);
  free(grad);
  free(update);
  free(gains);
  return st;
}

dml_status dml_tsne_2d(const float *emb, int64_t n, int64_t d, const dml_tsne_config *cfg,
                       float *out, double *kl) {
  return dml__tsne_run(emb, n, d, cfg, out, kl, NULL);
}
