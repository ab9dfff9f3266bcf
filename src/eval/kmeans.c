/* Lloyd's k-means with k-means++ initialisation (Arthur and Vassilvitskii, SODA 2007).
 *
 * Seeding draws from dml's counter-based generator (stream 0: the first centre, stream 1: the
 * later draws, stream 2: the fallback when every point sits on a centre) and accumulates the
 * D(x)^2 weights in index order, so it is a pure function of the seed. Assignment takes PB
 * points at a time: one sgemm gives x.c for the block, the nearest centre minimises
 * ||c||^2 - 2 x.c (ties to the lower centre index). Centroid sums are accumulated in double,
 * point by point in index order for each coordinate; parallel work is split over fixed blocks
 * of points or coordinates, so the result does not depend on the thread count. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/status_internal.h"
#include "dml/eval.h"
#include "dml/rng.h"
#include "dml/tensor.h"
#include "eval/eval_internal.h"

#define PB 256     /* points per assignment block */
#define DCHUNK 16  /* coordinates per task in the centroid update */

static double sqdist(const float *a, const float *b, int64_t d) {
  double s = 0.0;
  for (int64_t t = 0; t < d; t++) {
    const double u = (double)a[t] - (double)b[t];
    s += u * u;
  }
  return s;
}

/* mind[i] = min(mind[i], ||x_i - c||^2) (or = when first). */
static void update_min(const float *x, int64_t n, int64_t d, const float *c, double *mind,
                       int first) {
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t i = 0; i < n; i++) {
    const double v = sqdist(x + i * d, c, d);
    if (first || v < mind[i]) mind[i] = v;
  }
}

static void seed_plus_plus(const float *x, int64_t n, int64_t d, int64_t k, uint64_t seed,
                           float *cent, double *mind) {
  int64_t pick = (int64_t)dml_rng_below(seed, 0, 0, (uint64_t)n);
  memcpy(cent, x + pick * d, (size_t)d * sizeof *cent);
  update_min(x, n, d, cent, mind, 1);
  for (int64_t c = 1; c < k; c++) {
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) total += mind[i];
    if (total > 0.0) {
      const double u = (double)(dml_rng_u64(seed, 1, (uint64_t)c) >> 11) * 0x1p-53 * total;
      double cum = 0.0;
      pick = -1;
      for (int64_t i = 0; i < n; i++) {
        if (mind[i] <= 0.0) continue;
        cum += mind[i];
        pick = i;
        if (cum > u) break;
      }
    } else {
      pick = (int64_t)dml_rng_below(seed, 2, (uint64_t)c, (uint64_t)n);
    }
    memcpy(cent + c * d, x + pick * d, (size_t)d * sizeof *cent);
    update_min(x, n, d, cent + c * d, mind, 0);
  }
}

/* Nearest centre of every point; dist[i] = its squared distance (float, from the product);
 * returns how many assignments changed. */
static int64_t assign_points(const float *x, const float *xnorm, int64_t n, int64_t d,
                             const float *cent, int64_t k, int32_t *asg, float *dist,
                             int *failed) {
  float *cnorm = malloc((size_t)k * sizeof *cnorm);
  if (!cnorm) {
    *failed = 1;
    return 0;
  }
  for (int64_t c = 0; c < k; c++) {
    double s = 0.0;
    for (int64_t t = 0; t < d; t++) s += (double)cent[c * d + t] * cent[c * d + t];
    cnorm[c] = (float)s;
  }
  const int64_t blocks = (n + PB - 1) / PB;
  int64_t changed = 0;
  int bad = 0;
#pragma omp parallel reduction(+ : changed) reduction(| : bad)
  {
    float *prod = dml_alloc_aligned((int64_t)PB * k * (int64_t)sizeof(float));
    if (!prod) bad = 1;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
      if (!prod) continue;
      const int64_t i0 = b * PB, nb = n - i0 < PB ? n - i0 : PB;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)k, (int)d, 1.0f,
                  x + i0 * d, (int)d, cent, (int)d, 0.0f, prod, (int)k);
      for (int64_t i = 0; i < nb; i++) {
        const float *p = prod + i * k;
        int32_t best = 0;
        float bk = cnorm[0] - 2.0f * p[0];
        for (int64_t c = 1; c < k; c++) {
          const float key = cnorm[c] - 2.0f * p[c];
          if (key < bk) {
            bk = key;
            best = (int32_t)c;
          }
        }
        const float dv = xnorm[i0 + i] + bk;
        dist[i0 + i] = dv > 0.0f ? dv : 0.0f;
        if (asg[i0 + i] != best) {
          asg[i0 + i] = best;
          changed++;
        }
      }
    }
    dml_free_aligned(prod);
  }
  free(cnorm);
  if (bad) *failed = 1;
  return changed;
}

/* Centroids as the means of their points; an empty cluster takes the point farthest from its
 * centre among clusters of two or more points (that point moves to it). */
static void update_centroids(const float *x, int64_t n, int64_t d, int64_t k, int32_t *asg,
                             float *dist, float *cent, double *sums, int64_t *counts) {
  memset(counts, 0, (size_t)k * sizeof *counts);
  for (int64_t i = 0; i < n; i++) counts[asg[i]]++;
  memset(sums, 0, (size_t)(k * d) * sizeof *sums);
  const int64_t chunks = (d + DCHUNK - 1) / DCHUNK;
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t ch = 0; ch < chunks; ch++) {
    const int64_t t0 = ch * DCHUNK, t1 = t0 + DCHUNK < d ? t0 + DCHUNK : d;
    for (int64_t i = 0; i < n; i++) {
      double *s = sums + (int64_t)asg[i] * d;
      const float *p = x + i * d;
      for (int64_t t = t0; t < t1; t++) s[t] += p[t];
    }
  }
  for (int64_t c = 0; c < k; c++) {
    if (counts[c] > 0) continue;
    int64_t far = -1;
    for (int64_t i = 0; i < n; i++)
      if (counts[asg[i]] > 1 && (far < 0 || dist[i] > dist[far])) far = i;
    if (far < 0) continue; /* cannot happen with n >= k */
    const int32_t old = asg[far];
    for (int64_t t = 0; t < d; t++) {
      sums[old * d + t] -= x[far * d + t];
      sums[c * d + t] = x[far * d + t];
    }
    counts[old]--;
    counts[c] = 1;
    asg[far] = (int32_t)c;
    dist[far] = -1.0f;
  }
  for (int64_t c = 0; c < k; c++)
    for (int64_t t = 0; t < d; t++) cent[c * d + t] = (float)(sums[c * d + t] / (double)counts[c]);
}

dml_status dml_kmeans(const float *x, int64_t n, int64_t d, int64_t k, int max_iter,
                      uint64_t seed, int32_t *assign, float *centroids, double *inertia) {
  static const char *fn = "dml_kmeans";
  if (!x) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: x is NULL", fn);
  if (k < 1 || n < k || d < 1 || max_iter < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: need n >= k >= 1, d >= 1 and max_iter >= 0 (got n %lld, k %lld, "
                      "d %lld, max_iter %d)",
                      fn, (long long)n, (long long)k, (long long)d, max_iter);
  if (d > INT32_MAX || k > INT32_MAX || n > ((int64_t)1 << 56) / d || k > ((int64_t)1 << 24))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: sizes too large", fn);
  DML_TRY(dml__check_finite_rows(x, n, d, fn, "x"));
  float *cent = malloc((size_t)(k * d) * sizeof *cent);
  float *xnorm = malloc((size_t)n * sizeof *xnorm);
  float *dist = malloc((size_t)n * sizeof *dist);
  int32_t *asg = malloc((size_t)n * sizeof *asg);
  double *mind = malloc((size_t)n * sizeof *mind);
  double *sums = malloc((size_t)(k * d) * sizeof *sums);
  int64_t *counts = malloc((size_t)k * sizeof *counts);
  dml_status status = DML_OK;
  if (!cent || !xnorm || !dist || !asg || !mind || !sums || !counts) {
    status = dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld points", fn, (long long)n);
    goto done;
  }
  double top = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double s = 0.0;
    for (int64_t t = 0; t < d; t++) s += (double)x[i * d + t] * x[i * d + t];
    xnorm[i] = (float)s;
    top = s > top ? s : top;
  }
  if (top > FLT_MAX / 8) {
    status = dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: a point's squared norm (%g) is beyond float32 range; scale the "
                        "data down",
                        fn, top);
    goto done;
  }
  seed_plus_plus(x, n, d, k, seed, cent, mind);
  for (int64_t i = 0; i < n; i++) asg[i] = -1;
  int failed = 0, updated = 0;
  for (int it = 0; it < max_iter; it++) {
    const int64_t changed = assign_points(x, xnorm, n, d, cent, k, asg, dist, &failed);
    updated = 0;
    if (failed || (it > 0 && changed == 0)) break;
    update_centroids(x, n, d, k, asg, dist, cent, sums, counts);
    updated = 1;
  }
  if (!failed && (updated || max_iter == 0))
    assign_points(x, xnorm, n, d, cent, k, asg, dist, &failed);
  if (failed) {
    status = dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", fn);
    goto done;
  }
  if (inertia) {
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) mind[i] = sqdist(x + i * d, cent + (int64_t)asg[i] * d, d);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += mind[i];
    *inertia = s;
  }
  if (assign) memcpy(assign, asg, (size_t)n * sizeof *assign);
  if (centroids) memcpy(centroids, cent, (size_t)(k * d) * sizeof *centroids);
done:
  free(cent);
  free(xnorm);
  free(dist);
  free(asg);
  free(mind);
  free(sums);
  free(counts);
  return status;
}
