/* The input side of t-SNE: squared distances by dgemm, the per-point perplexity search and
 * the symmetric joint probabilities (van der Maaten and Hinton, JMLR 2008, section 2; the
 * search and its constants are scikit-learn 1.2's sklearn/manifold/_utils.pyx). */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "viz/tsne_internal.h"

#define SEARCH_STEPS 100
#define ENTROPY_TOL 1e-5
#define EMPTY_SUM 1e-8 /* scikit-learn's EPSILON_DBL: the normaliser when every exp underflows */
#define ROW_BLOCK 256

/* exp(x) for x <= 0 to about 1 ulp, in a form compilers vectorise (libm's exp is a call per
 * element and dominates the search otherwise): x = k ln2 + r with |r| <= ln2 / 2,
 * exp(r) by its Taylor series to r^13 (truncation below 5e-18), and 2^k applied as two
 * factors 2^(k/2) so that results down to the subnormal range round once, as libm's do.
 * x below -746 (where exp underflows to 0) gives 0. */
static inline double exp_nonpos(double x) {
  const double shifter = 0x1.8p52; /* adding it rounds to an integer in the low bits */
  x = x < -746.0 ? -746.0 : x;
  const double t = x * 1.4426950408889634 + shifter;
  const double k = t - shifter;
  const double r = (x - k * 0x1.62e42fefa39efp-1) - k * 0x1.abc9e3b39803fp-56;
  double p = 1.0 / 6227020800.0; /* 1/13! */
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t tb;
  memcpy(&tb, &t, sizeof tb);
  const int32_t ki = (int32_t)(uint32_t)tb; /* k, -1077 <= k <= 0 */
  const int32_t k1 = ki / 2, k2 = ki - k1;
  const uint64_t b1 = (uint64_t)(k1 + 1023) << 52, b2 = (uint64_t)(k2 + 1023) << 52;
  double s1, s2;
  memcpy(&s1, &b1, sizeof s1);
  memcpy(&s2, &b2, sizeof s2);
  return p * s1 * s2;
}

/* Normaliser and entropy terms of row i at precision beta: returns S = sum_j exp(-beta D_ij)
 * and sets *wd = sum_j D_ij exp(-beta D_ij) (j != i). */
static double row_sum(const float *sqd, int64_t n, int64_t i, double beta, double *wd) {
  double s = 0.0, t = 0.0;
#pragma omp simd reduction(+ : s, t)
  for (int64_t j = 0; j < n; j++) {
    const double dj = (double)sqd[j];
    const double e = j == i ? 0.0 : exp_nonpos(-dj * beta);
    s += e;
    t += dj * e;
  }
  *wd = t;
  return s;
}

/* Row i of the conditional probabilities at the searched beta and normaliser s. */
static double exp_row(const float *sqd, int64_t n, int64_t i, double beta, double s, double *out) {
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; j++) {
    const double p = j == i ? 0.0 : exp_nonpos(-(double)sqd[j] * beta) / s;
    out[j] = p;
    total += p;
  }
  return total;
}

double dml__tsne_search_row(const float *sqd, int64_t n, int64_t i, double log_perplexity,
                            double *sum) {
  double beta = 1.0, lo = -INFINITY, hi = INFINITY, s = EMPTY_SUM;
  for (int step = 0; step < SEARCH_STEPS; step++) {
    double wd;
    s = row_sum(sqd, n, i, beta, &wd);
    if (s == 0.0) s = EMPTY_SUM;
    const double entropy = log(s) + beta * (wd / s);
    const double diff = entropy - log_perplexity;
    if (fabs(diff) <= ENTROPY_TOL) break;
    /* the last step's P is the one returned, as in scikit-learn (beta moves on regardless) */
    if (step == SEARCH_STEPS - 1) break;
    if (diff > 0.0) {
      lo = beta;
      beta = hi == INFINITY ? beta * 2.0 : (beta + hi) / 2.0;
    } else {
      hi = beta;
      beta = lo == -INFINITY ? beta / 2.0 : (beta + lo) / 2.0;
    }
  }
  *sum = s;
  return beta;
}

void dml__tsne_conditional(const float *sqd, int64_t n, double perplexity, double *cond) {
  const double target = log(perplexity);
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t i = 0; i < n; i++) {
    double s;
    const double beta = dml__tsne_search_row(sqd + i * n, n, i, target, &s);
    exp_row(sqd + i * n, n, i, beta, s, cond + i * n);
  }
}

/* Centred copy of x in double and its squared row norms. */
static dml_status centred(const float *x, int64_t n, int64_t d, double **xc, double **sq) {
  *xc = malloc(sizeof(double) * (size_t)(n * d));
  *sq = malloc(sizeof(double) * (size_t)n);
  double *mean = calloc((size_t)d, sizeof(double));
  if (!*xc || !*sq || !mean) {
    free(*xc);
    free(*sq);
    free(mean);
    *xc = *sq = NULL;
    return dml__error(DML_ERR_NO_MEMORY, "t-SNE: out of memory for %lld x %lld points",
                      (long long)n, (long long)d);
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < d; t++) mean[t] += x[i * d + t];
  for (int64_t t = 0; t < d; t++) mean[t] /= (double)n;
  double *c = *xc, *s = *sq;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    double a = 0.0;
    for (int64_t t = 0; t < d; t++) {
      c[i * d + t] = (double)x[i * d + t] - mean[t];
      a += c[i * d + t] * c[i * d + t];
    }
    s[i] = a;
  }
  free(mean);
  return DML_OK;
}

/* Rows r0 .. r1-1 of the squared distances into out (row stride n), through g (a block of
 * (r1 - r0) x n doubles): ||a||^2 + ||b||^2 - 2 a.b, clamped at 0, zero diagonal. */
static void sqdist_rows(const double *xc, const double *sq, int64_t n, int64_t d, int64_t r0,
                        int64_t r1, double *g, float *out) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)n, (int)d, 1.0,
              xc + r0 * d, (int)d, xc, (int)d, 0.0, g, (int)n);
#pragma omp parallel for schedule(static)
  for (int64_t i = r0; i < r1; i++)
    for (int64_t j = 0; j < n; j++) {
      const double v = sq[i] + sq[j] - 2.0 * g[(i - r0) * n + j];
      out[i * n + j] = i == j ? 0.0f : (float)(v > 0.0 ? v : 0.0);
    }
}

dml_status dml__tsne_sqdist(const float *x, int64_t n, int64_t d, float *out) {
  double *xc, *sq;
  DML_TRY(centred(x, n, d, &xc, &sq));
  double *g = malloc(sizeof(double) * ROW_BLOCK * (size_t)n);
  if (!g) {
    free(xc);
    free(sq);
    return dml__error(DML_ERR_NO_MEMORY, "t-SNE: out of memory for distances");
  }
  for (int64_t r0 = 0; r0 < n; r0 += ROW_BLOCK)
    sqdist_rows(xc, sq, n, d, r0, r0 + ROW_BLOCK < n ? r0 + ROW_BLOCK : n, g, out);
  free(g);
  free(xc);
  free(sq);
  return DML_OK;
}

dml_status dml__tsne_joint(const float *x, int64_t n, int64_t d, double perplexity, float *P) {
  double *xc, *sq;
  DML_TRY(centred(x, n, d, &xc, &sq));
  double *g = malloc(sizeof(double) * ROW_BLOCK * (size_t)n);
  double *rowsum = malloc(sizeof(double) * (size_t)n);
  if (!g || !rowsum) {
    free(xc);
    free(sq);
    free(g);
    free(rowsum);
    return dml__error(DML_ERR_NO_MEMORY, "t-SNE: out of memory for affinities");
  }
  const double target = log(perplexity);
  /* each block of rows: distances into P's rows, then each row's search overwrites its
   * distances by its conditional probabilities (row sum kept in double) */
  for (int64_t r0 = 0; r0 < n; r0 += ROW_BLOCK) {
    const int64_t r1 = r0 + ROW_BLOCK < n ? r0 + ROW_BLOCK : n;
    sqdist_rows(xc, sq, n, d, r0, r1, g, P);
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = r0; i < r1; i++) {
      float *row = P + i * n;
      double s;
      const double beta = dml__tsne_search_row(row, n, i, target, &s);
      double total = 0.0;
#pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < n; j++) {
        const double p = j == i ? 0.0 : exp_nonpos(-(double)row[j] * beta) / s;
        total += p;
        row[j] = (float)p; /* over the distance it came from */
      }
      rowsum[i] = total;
    }
  }
  /* P = max((C + C^T) / sum(C + C^T), eps), as scikit-learn's _joint_probabilities */
  double total = 0.0;
  for (int64_t i = 0; i < n; i++) total += rowsum[i];
  const double norm = fmax(2.0 * total, DBL_EPSILON);
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; i++) {
    P[i * n + i] = 0.0f;
    for (int64_t j = i + 1; j < n; j++) {
      const double v = fmax(((double)P[i * n + j] + (double)P[j * n + i]) / norm, DBL_EPSILON);
      P[i * n + j] = P[j * n + i] = (float)v;
    }
  }
  free(g);
  free(rowsum);
  free(xc);
  free(sq);
  return DML_OK;
}
