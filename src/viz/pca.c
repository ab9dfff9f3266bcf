/* Two-component PCA. The covariance of the centred points is accumulated in double by dsyrk
 * over blocks of rows; its two leading eigenvectors come from subspace iteration with a block
 * of up to 16 vectors and Rayleigh-Ritz projection (Golub and Van Loan, Matrix Computations,
 * 4th ed., section 8.2.4), the small projected problem solved by cyclic Jacobi rotations
 * (ibid. 8.5). The start block is drawn from a fixed seed, so the result is a pure function
 * of the input. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/status_internal.h"
#include "dml/rng.h"
#include "dml/viz.h"

#define ROWS 512          /* rows per block for the mean and the covariance */
#define MAX_BLOCK 16      /* subspace size */
#define MAX_ITER 500      /* subspace iterations */
#define RESID_TOL 1e-8    /* ||C v - theta v|| <= RESID_TOL * theta_1 */
#define START_SEED 0x5ca1ab1eULL
#define MAX_D 16384

/* Eigen-decomposition of the symmetric b x b matrix a (destroyed): values in descending
 * order, vectors as the columns of v (row-major b x b). */
static void jacobi_eig(double *a, int b, double *values, double *v) {
  for (int i = 0; i < b * b; i++) v[i] = 0.0;
  for (int i = 0; i < b; i++) v[i * b + i] = 1.0;
  for (int sweep = 0; sweep < 100; sweep++) {
    double off = 0.0, diag = 0.0;
    for (int p = 0; p < b; p++) {
      diag += a[p * b + p] * a[p * b + p];
      for (int q = p + 1; q < b; q++) off += a[p * b + q] * a[p * b + q];
    }
    if (off <= 1e-32 * diag || off == 0.0) break;
    for (int p = 0; p < b; p++)
      for (int q = p + 1; q < b; q++) {
        const double apq = a[p * b + q];
        if (apq == 0.0) continue;
        /* the rotation that zeroes a_pq (Golub and Van Loan, algorithm 8.5.1) */
        const double theta = (a[q * b + q] - a[p * b + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
        const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
        for (int k = 0; k < b; k++) { /* columns: A J */
          const double akp = a[k * b + p], akq = a[k * b + q];
          a[k * b + p] = c * akp - s * akq;
          a[k * b + q] = s * akp + c * akq;
        }
        for (int k = 0; k < b; k++) { /* rows: J^T (A J) */
          const double apk = a[p * b + k], aqk = a[q * b + k];
          a[p * b + k] = c * apk - s * aqk;
          a[q * b + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < b; k++) {
          const double vkp = v[k * b + p], vkq = v[k * b + q];
          v[k * b + p] = c * vkp - s * vkq;
          v[k * b + q] = s * vkp + c * vkq;
        }
      }
  }
  /* selection sort by value, descending, moving the vectors along */
  for (int i = 0; i < b; i++) values[i] = a[i * b + i];
  for (int i = 0; i < b; i++) {
    int best = i;
    for (int j = i + 1; j < b; j++)
      if (values[j] > values[best]) best = j;
    if (best == i) continue;
    const double tv = values[i];
    values[i] = values[best];
    values[best] = tv;
    for (int k = 0; k < b; k++) {
      const double tk = v[k * b + i];
      v[k * b + i] = v[k * b + best];
      v[k * b + best] = tk;
    }
  }
}

/* Orthonormalises the columns of q [d, b] (row-major) by modified Gram-Schmidt, twice. A
 * column that vanishes (a rank-deficient block) is replaced by a fresh random direction. */
static void orthonormalise(double *q, int64_t d, int b, uint64_t *draws) {
  for (int j = 0; j < b; j++) {
    for (int attempt = 0; attempt < 8; attempt++) {
      double before = 0.0;
      for (int64_t i = 0; i < d; i++) before += q[i * b + j] * q[i * b + j];
      for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < j; k++) {
          double dot = 0.0;
          for (int64_t i = 0; i < d; i++) dot += q[i * b + k] * q[i * b + j];
          for (int64_t i = 0; i < d; i++) q[i * b + j] -= dot * q[i * b + k];
        }
      double nrm = 0.0;
      for (int64_t i = 0; i < d; i++) nrm += q[i * b + j] * q[i * b + j];
      if (nrm > 1e-20 * before && nrm > 0.0) {
        const double inv = 1.0 / sqrt(nrm);
        for (int64_t i = 0; i < d; i++) q[i * b + j] *= inv;
        break;
      }
      for (int64_t i = 0; i < d; i++) q[i * b + j] = dml_rng_normal(START_SEED, 1, (*draws)++);
    }
  }
}

/* Two leading eigenpairs of the symmetric positive semi-definite c [d, d]. */
static dml_status top_two(const double *c, int64_t d, double *vec /* [d, 2] */,
                          double *val /* [2] */) {
  const int b = d < MAX_BLOCK ? (int)d : MAX_BLOCK;
  double *q = malloc(sizeof(double) * (size_t)d * (size_t)b);
  double *z = malloc(sizeof(double) * (size_t)d * (size_t)b);
  double *tmp = malloc(sizeof(double) * (size_t)d * (size_t)b);
  if (!q || !z || !tmp) {
    free(q);
    free(z);
    free(tmp);
    return dml__error(DML_ERR_NO_MEMORY, "dml_pca_2d: out of memory for the eigenvectors");
  }
  double t[MAX_BLOCK * MAX_BLOCK], w[MAX_BLOCK * MAX_BLOCK], theta[MAX_BLOCK];
  uint64_t draws = 0;
  for (int64_t i = 0; i < d * b; i++) q[i] = dml_rng_normal(START_SEED, 0, (uint64_t)i);
  orthonormalise(q, d, b, &draws);
  for (int iter = 0; iter < MAX_ITER; iter++) {
    /* z = C q; t = q^T z (the projected matrix); rotate both by its eigenvectors */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d, b, (int)d, 1.0, c, (int)d, q,
                b, 0.0, z, b);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, b, b, (int)d, 1.0, q, b, z, b, 0.0, t,
                b);
    for (int i = 0; i < b; i++)
      for (int j = i + 1; j < b; j++) {
        const double sym = 0.5 * (t[i * b + j] + t[j * b + i]);
        t[i * b + j] = t[j * b + i] = sym;
      }
    jacobi_eig(t, b, theta, w);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d, b, b, 1.0, q, b, w, b, 0.0,
                tmp, b);
    memcpy(q, tmp, sizeof(double) * (size_t)d * (size_t)b);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d, b, b, 1.0, z, b, w, b, 0.0,
                tmp, b);
    memcpy(z, tmp, sizeof(double) * (size_t)d * (size_t)b);
    int done = 1;
    for (int k = 0; k < 2 && k < b; k++) {
      double r = 0.0;
      for (int64_t i = 0; i < d; i++) {
        const double e = z[i * b + k] - theta[k] * q[i * b + k];
        r += e * e;
      }
      if (sqrt(r) > RESID_TOL * fabs(theta[0])) done = 0;
    }
    if (done || iter == MAX_ITER - 1) break;
    memcpy(q, z, sizeof(double) * (size_t)d * (size_t)b);
    orthonormalise(q, d, b, &draws);
  }
  for (int k = 0; k < 2; k++) {
    val[k] = k < b ? fmax(theta[k], 0.0) : 0.0;
    for (int64_t i = 0; i < d; i++) vec[i * 2 + k] = k < b ? q[i * b + k] : 0.0;
  }
  free(q);
  free(z);
  free(tmp);
  return DML_OK;
}

dml_status dml_pca_2d(const float *emb, int64_t n, int64_t d, float *out, double *explained) {
  if (n < 0 || d < 1 || d > MAX_D || (n > 0 && (!emb || !out)))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_pca_2d: n = %lld, d = %lld (need n >= 0, 1 <= d <= %d, emb and out)",
                      (long long)n, (long long)d, MAX_D);
  if (explained) explained[0] = explained[1] = 0.0;
  if (n == 0) return DML_OK;
  DML_TRY(dml__check_finite_rows(emb, n, d, "dml_pca_2d", "embedding"));

  const int64_t nblk = (n + ROWS - 1) / ROWS;
  double *mean = calloc((size_t)d, sizeof *mean);
  double *cov = calloc((size_t)(d * d), sizeof *cov);
  double *xb = malloc(sizeof(double) * ROWS * (size_t)d);
  double *vec = malloc(sizeof(double) * (size_t)d * 2);
  if (!mean || !cov || !xb || !vec) {
    free(mean);
    free(cov);
    free(xb);
    free(vec);
    return dml__error(DML_ERR_NO_MEMORY,
                      "dml_pca_2d: out of memory for a %lld x %lld covariance matrix",
                      (long long)d, (long long)d);
  }
  /* mean: each coordinate summed over the rows in order (chunks of coordinates in parallel) */
  const int64_t nchunk = (d + 63) / 64;
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t ch = 0; ch < nchunk; ch++) {
    const int64_t t0 = ch * 64, t1 = t0 + 64 < d ? t0 + 64 : d;
    for (int64_t i = 0; i < n; i++)
      for (int64_t t = t0; t < t1; t++) mean[t] += emb[i * d + t];
  }
  for (int64_t t = 0; t < d; t++) mean[t] /= (double)n;

  /* covariance (upper triangle) += X_b^T X_b for each centred block X_b */
  for (int64_t bk = 0; bk < nblk; bk++) {
    const int64_t r0 = bk * ROWS, r1 = r0 + ROWS < n ? r0 + ROWS : n;
    for (int64_t i = r0; i < r1; i++)
      for (int64_t t = 0; t < d; t++) xb[(i - r0) * d + t] = (double)emb[i * d + t] - mean[t];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)(r1 - r0), 1.0, xb, (int)d,
                1.0, cov, (int)d);
  }
  const double denom = n > 1 ? (double)(n - 1) : 1.0;
  double trace = 0.0;
  for (int64_t i = 0; i < d; i++) {
    for (int64_t j = i; j < d; j++) cov[j * d + i] = cov[i * d + j] = cov[i * d + j] / denom;
    trace += cov[i * d + i];
  }

  dml_status st = DML_OK;
  double val[2] = {0.0, 0.0};
  if (trace > 0.0) {
    st = top_two(cov, d, vec, val);
  } else {
    for (int64_t i = 0; i < 2 * d; i++) vec[i] = 0.0;
  }
  if (st == DML_OK) {
    /* sign: the largest-magnitude component (the first of equals) is positive */
    for (int k = 0; k < 2; k++) {
      int64_t arg = 0;
      for (int64_t i = 1; i < d; i++)
        if (fabs(vec[i * 2 + k]) > fabs(vec[arg * 2 + k])) arg = i;
      if (vec[arg * 2 + k] < 0)
        for (int64_t i = 0; i < d; i++) vec[i * 2 + k] = -vec[i * 2 + k];
    }
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) {
      double a = 0.0, b2 = 0.0;
      for (int64_t t = 0; t < d; t++) {
        const double x = (double)emb[i * d + t] - mean[t];
        a += x * vec[t * 2];
        b2 += x * vec[t * 2 + 1];
      }
      out[i * 2] = (float)a;
      out[i * 2 + 1] = (float)b2;
    }
    if (explained && trace > 0.0) {
      explained[0] = val[0] / trace;
      explained[1] = val[1] / trace;
    }
  }
  free(mean);
  free(cov);
  free(xb);
  free(vec);
  return st;
}
