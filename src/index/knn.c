/* Exact k-nearest-neighbour search (include/dml/index.h).
 *
 * Queries are taken QB at a time, the gallery GB rows at a time: one sgemm gives the block of
 * products q.g, which becomes a block of ranking keys (smaller = closer):
 *   squared / plain Euclidean  key = ||g||^2 - 2 q.g   (||q||^2 is the same for every g)
 *   dot                        key = -q.g
 *   cosine                     key = -q.g / ||g||      (1/||q|| is the same for every g)
 * Each query keeps its k best (key, id) pairs in a max-heap whose root is the worst kept; a
 * candidate enters when its key is below the root's, or equal with a lower id, so ties go to
 * the lower gallery index. Keys are screened 16 at a time against the root (a vectorised
 * compare) and only a chunk that holds a contender is walked one by one: after the first
 * blocks nearly every chunk is skipped.
 *
 * Query blocks are spread over the threads (each with its own product buffer, calling sgemm
 * single-threaded inside the parallel region); the blocks do not depend on the thread count,
 * so neither do the results. Memory: QB x GB floats per thread, plus one norm per row. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/status_internal.h"
#include "dml/index.h"
#include "dml/tensor.h"

#define QB 64   /* queries per block */
#define GB 2048 /* gallery rows per block */
#define CHUNK 16

/* a is worse than b: larger key, or the same key and a larger id */
static inline int worse(float ka, int64_t ia, float kb, int64_t ib) {
  return ka > kb || (ka == kb && ia > ib);
}

typedef struct {
  float *key; /* [k] heap: key[0] is the worst kept */
  int64_t *id;
  int64_t size, k;
} heap;

/* Puts (key, id) at the root's place and sifts it down among the first h->size entries. */
static void sift_down(heap *h, float key, int64_t id) {
  int64_t c = 0;
  for (;;) {
    const int64_t l = 2 * c + 1, r = l + 1;
    int64_t w = c;
    float wk = key;
    int64_t wi = id;
    if (l < h->size && worse(h->key[l], h->id[l], wk, wi)) w = l, wk = h->key[l], wi = h->id[l];
    if (r < h->size && worse(h->key[r], h->id[r], wk, wi)) w = r;
    if (w == c) break;
    h->key[c] = h->key[w];
    h->id[c] = h->id[w];
    c = w;
  }
  h->key[c] = key;
  h->id[c] = id;
}

static void heap_offer(heap *h, float key, int64_t id) {
  if (h->size < h->k) { /* sift up */
    int64_t c = h->size++;
    while (c > 0) {
      const int64_t p = (c - 1) / 2;
      if (!worse(key, id, h->key[p], h->id[p])) break;
      h->key[c] = h->key[p];
      h->id[c] = h->id[p];
      c = p;
    }
    h->key[c] = key;
    h->id[c] = id;
    return;
  }
  if (worse(h->key[0], h->id[0], key, id)) sift_down(h, key, id); /* replaces the worst */
}

/* The heap's contents in ascending (key, id) order, in place (heap sort): the worst goes to
 * the end, the last element is sifted down from the root of the shrunk heap. */
static void heap_sort(heap *h) {
  const int64_t n = h->size;
  for (int64_t end = n - 1; end > 0; end--) {
    const float k0 = h->key[0];
    const int64_t i0 = h->id[0];
    h->size = end;
    sift_down(h, h->key[end], h->id[end]);
    h->key[end] = k0;
    h->id[end] = i0;
  }
  h->size = n;
}

/* Largest squared norm the Euclidean keys take: ||g||^2 - 2 q.g and ||q||^2 + key stay finite
 * in float below it. */
#define MAX_SQUARED_NORM (FLT_MAX / 8)

/* norm[i] = ||x_i||^2 (squared) or 1 / ||x_i|| (0 for a zero row, at most FLT_MAX for a row
 * of subnormal values, so that 0 times it is 0); returns the largest squared norm. */
static double row_norms(const float *x, int64_t n, int64_t d, int inverse, float *norm) {
  double top = 0.0;
#pragma omp parallel for schedule(static) reduction(max : top) if (n * d > 65536)
  for (int64_t i = 0; i < n; i++) {
    const float *p = x + i * d;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t t = 0; t < d; t++) s += (double)p[t] * p[t];
    top = s > top ? s : top;
    if (!inverse) {
      norm[i] = (float)s;
    } else {
      const double inv = s > 0.0 ? 1.0 / sqrt(s) : 0.0;
      norm[i] = inv < FLT_MAX ? (float)inv : FLT_MAX;
    }
  }
  return top;
}

/* Offers the keys of one query against one gallery block: s [ng] holds the products q.g of
 * gallery rows g0 .. g0 + ng - 1 and becomes their keys. */
static void offer_block(heap *h, float *s, int64_t ng, int64_t g0, dml_distance dist,
                        const float *gnorm) {
  const int l2 = dist == DML_DIST_EUCLIDEAN || dist == DML_DIST_SQUARED_EUCLIDEAN;
  const int cosine = dist == DML_DIST_COSINE;
  const float *gn = gnorm ? gnorm + g0 : NULL;
  /* ids arrive in increasing order, so a key equal to the worst kept never enters (its id is
   * larger): the screen is a strict compare */
  int64_t j0 = 0;
  for (; j0 + CHUNK <= ng; j0 += CHUNK) {
    float *c = s + j0;
    const float worst = h->size < h->k ? INFINITY : h->key[0];
    int hit = 0;
    if (l2) {
#pragma omp simd reduction(| : hit)
      for (int t = 0; t < CHUNK; t++) {
        c[t] = gn[j0 + t] - 2.0f * c[t];
        hit |= c[t] < worst;
      }
    } else if (cosine) {
#pragma omp simd reduction(| : hit)
      for (int t = 0; t < CHUNK; t++) {
        c[t] = -c[t] * gn[j0 + t];
        hit |= c[t] < worst;
      }
    } else {
#pragma omp simd reduction(| : hit)
      for (int t = 0; t < CHUNK; t++) {
        c[t] = -c[t];
        hit |= c[t] < worst;
      }
    }
    if (!hit) continue;
    for (int t = 0; t < CHUNK; t++) heap_offer(h, c[t], g0 + j0 + t);
  }
  for (; j0 < ng; j0++) {
    const float key = l2 ? gn[j0] - 2.0f * s[j0] : cosine ? -s[j0] * gn[j0] : -s[j0];
    heap_offer(h, key, g0 + j0);
  }
}

dml_status dml_knn_search(const float *gallery, int64_t n, const float *queries, int64_t nq,
                          int64_t d, dml_distance dist, int64_t k, int64_t *ids, float *dists) {
  if ((!gallery && n > 0) || (!queries && nq > 0) || (!ids && nq > 0))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_knn_search: NULL gallery, queries or ids");
  if (n < 0 || nq < 0 || d < 1 || k < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_knn_search: need n >= 0, nq >= 0, d >= 1 and k >= 1 (got n %lld, "
                      "nq %lld, d %lld, k %lld)",
                      (long long)n, (long long)nq, (long long)d, (long long)k);
  if (dist != DML_DIST_EUCLIDEAN && dist != DML_DIST_SQUARED_EUCLIDEAN &&
      dist != DML_DIST_COSINE && dist != DML_DIST_DOT)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_knn_search: unknown distance %d",
                      (int)dist);
  if (d > INT32_MAX || n > ((int64_t)1 << 56) / d || nq > ((int64_t)1 << 56) / d ||
      k > ((int64_t)1 << 40) || (nq > 0 && k > ((int64_t)1 << 56) / nq))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_knn_search: sizes too large");
  if (nq == 0) return DML_OK;
  DML_TRY(dml__check_finite_rows(gallery, n, d, "dml_knn_search", "gallery"));
  DML_TRY(dml__check_finite_rows(queries, nq, d, "dml_knn_search", "query"));
  if (n == 0) { /* nothing to find */
    for (int64_t j = 0; j < nq * k; j++) {
      ids[j] = -1;
      if (dists) dists[j] = dml_distance_is_similarity(dist) ? -INFINITY : INFINITY;
    }
    return DML_OK;
  }
  const int l2 = dist == DML_DIST_EUCLIDEAN || dist == DML_DIST_SQUARED_EUCLIDEAN;
  const int cosine = dist == DML_DIST_COSINE;
  const int64_t kk = k < n ? k : n; /* slots that can be filled */
  float *gnorm = NULL, *qnorm = NULL, *hkey = NULL;
  if (l2 || cosine) {
    gnorm = malloc((size_t)n * sizeof(float));
    qnorm = malloc((size_t)nq * sizeof(float));
  }
  hkey = malloc((size_t)(nq * kk) * sizeof(float));
  if (((l2 || cosine) && (!gnorm || !qnorm)) || !hkey) {
    free(gnorm);
    free(qnorm);
    free(hkey);
    return dml__error(DML_ERR_NO_MEMORY, "dml_knn_search: out of memory");
  }
  if (l2 || cosine) {
    const double gtop = row_norms(gallery, n, d, cosine, gnorm);
    const double qtop = row_norms(queries, nq, d, cosine, qnorm);
    if (l2 && (gtop > MAX_SQUARED_NORM || qtop > MAX_SQUARED_NORM)) {
      free(gnorm);
      free(qnorm);
      free(hkey);
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "dml_knn_search: a %s row's squared norm (%g) is beyond what float32 "
                        "Euclidean distances can hold (%g); scale the embeddings down",
                        gtop > MAX_SQUARED_NORM ? "gallery" : "query",
                        gtop > MAX_SQUARED_NORM ? gtop : qtop, (double)MAX_SQUARED_NORM);
    }
  }
  /* heap ids live in the output: row i of ids holds query i's heap (its first kk slots) */
  const int64_t blocks = (nq + QB - 1) / QB;
  int failed = 0;
#pragma omp parallel
  {
    float *s = dml_alloc_aligned((int64_t)QB * GB * (int64_t)sizeof(float));
    if (!s) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t qb = 0; qb < blocks; qb++) {
      if (!s) continue;
      const int64_t q0 = qb * QB, nb = nq - q0 < QB ? nq - q0 : QB;
      heap h[QB];
      for (int64_t i = 0; i < nb; i++)
        h[i] = (heap){hkey + (q0 + i) * kk, ids + (q0 + i) * k, 0, kk};
      for (int64_t g0 = 0; g0 < n; g0 += GB) {
        const int64_t ng = n - g0 < GB ? n - g0 : GB;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)ng, (int)d, 1.0f,
                    queries + q0 * d, (int)d, gallery + g0 * d, (int)d, 0.0f, s, (int)ng);
        for (int64_t i = 0; i < nb; i++) offer_block(&h[i], s + i * ng, ng, g0, dist, gnorm);
      }
      for (int64_t i = 0; i < nb; i++) {
        heap_sort(&h[i]);
        const int64_t q = q0 + i;
        for (int64_t j = 0; j < k; j++) {
          if (j >= h[i].size) {
            ids[q * k + j] = -1;
            if (dists) dists[q * k + j] = dml_distance_is_similarity(dist) ? -INFINITY : INFINITY;
            continue;
          }
          if (!dists) continue;
          const float key = h[i].key[j];
          float v;
          if (l2) {
            v = key + qnorm[q];
            v = v > 0.0f ? v : 0.0f;
            if (dist == DML_DIST_EUCLIDEAN) v = sqrtf(v);
          } else {
            v = cosine ? -key * qnorm[q] : -key;
          }
          dists[q * k + j] = v;
        }
      }
    }
    dml_free_aligned(s);
  }
  free(gnorm);
  free(qnorm);
  free(hkey);
  if (failed) return dml__error(DML_ERR_NO_MEMORY, "dml_knn_search: out of memory");
  return DML_OK;
}
