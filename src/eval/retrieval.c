/* Self-retrieval metrics (P@1, R-Precision, MAP@R) by blocked GEMM and per-query partial
 * selection of the R nearest items: memory O(block * n), never the full n x n matrix. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/eval.h"
#include "dml/tensor.h"

int dml_distance_is_similarity(dml_distance d) {
  return d == DML_DIST_COSINE || d == DML_DIST_DOT;
}

typedef struct {
  float key; /* smaller = closer */
  int64_t idx;
} ranked;

static int closer(const ranked *a, const ranked *b) {
  return a->key < b->key || (a->key == b->key && a->idx < b->idx);
}

/* Moves the k closest items to the front (unordered), quickselect on (key, idx). */
static void select_k(ranked *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    ranked pivot = v[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (closer(&v[i], &pivot)) i++;
      while (closer(&pivot, &v[j])) j--;
      if (i <= j) {
        ranked t = v[i];
        v[i] = v[j];
        v[j] = t;
        i++;
        j--;
      }
    }
    if (k - 1 <= j)
      hi = j;
    else if (k - 1 >= i)
      lo = i;
    else
      break;
  }
}

static int cmp_ranked(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (closer(x, y)) return -1;
  if (closer(y, x)) return 1;
  return 0;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

dml_status dml_eval_retrieval(const float *emb, const int32_t *labels, int64_t n, int64_t d,
                              dml_distance dist, dml_retrieval_metrics *out) {
  if (!emb || !labels || !out || n < 0 || d <= 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_eval_retrieval: bad arguments");
  memset(out, 0, sizeof *out);
  for (int64_t i = 0; i < n * d; i++)
    if (!isfinite(emb[i]))
      return dml__error(DML_ERR_NOT_FINITE, "embedding %lld has a non-finite value",
                        (long long)(i / d));
  /* class sizes by sorting a copy of the labels */
  int32_t *sorted = malloc((size_t)(n > 0 ? n : 1) * sizeof *sorted);
  float *norms = malloc((size_t)(n > 0 ? n : 1) * sizeof *norms);
  const int64_t block = 256;
  float *sim = dml_alloc_aligned(block * (n > 0 ? n : 1) * (int64_t)sizeof(float));
  if (!sorted || !norms || !sim) {
    free(sorted);
    free(norms);
    dml_free_aligned(sim);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory evaluating %lld embeddings",
                      (long long)n);
  }
  memcpy(sorted, labels, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_i32);
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t k = 0; k < d; k++) s += (double)emb[i * d + k] * emb[i * d + k];
    norms[i] = (float)s;
  }
  double p1 = 0, rp = 0, mapr = 0;
  int64_t queries = 0;
  int failed = 0;
  for (int64_t q0 = 0; q0 < n; q0 += block) {
    int64_t bq = n - q0 < block ? n - q0 : block;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bq, (int)n, (int)d, 1.0f,
                emb + q0 * d, (int)d, emb, (int)d, 0.0f, sim, (int)n);
#pragma omp parallel reduction(+ : p1, rp, mapr, queries) reduction(| : failed)
    {
      ranked *v = malloc((size_t)n * sizeof *v);
      if (!v) failed = 1;
#pragma omp for schedule(dynamic, 8)
      for (int64_t qi = 0; qi < bq; qi++) {
        if (!v) continue;
        int64_t q = q0 + qi;
        const float *row = sim + qi * n;
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++) {
          if (j == q) continue;
          float key;
          if (dist == DML_DIST_DOT)
            key = -row[j];
          else if (dist == DML_DIST_COSINE)
            key = -row[j] / (sqrtf(norms[q] * norms[j]) + 1e-12f);
          else /* Euclidean ranks like squared Euclidean */
            key = norms[q] + norms[j] - 2.0f * row[j];
          v[m].key = key;
          v[m].idx = j;
          m++;
        }
        /* R = class size - 1: binary search the sorted labels */
        int32_t y = labels[q];
        int64_t lo = 0, hi = n;
        while (lo < hi) {
          int64_t mid = (lo + hi) / 2;
          if (sorted[mid] < y) lo = mid + 1; else hi = mid;
        }
        int64_t first = lo;
        hi = n;
        while (lo < hi) {
          int64_t mid = (lo + hi) / 2;
          if (sorted[mid] <= y) lo = mid + 1; else hi = mid;
        }
        int64_t r = lo - first - 1;
        if (r <= 0) continue;
        select_k(v, m, r);
        qsort(v, (size_t)r, sizeof *v, cmp_ranked);
        int64_t hits = 0;
        double ap = 0;
        for (int64_t k = 0; k < r; k++)
          if (labels[v[k].idx] == y) {
            hits++;
            ap += (double)hits / (double)(k + 1);
          }
        p1 += labels[v[0].idx] == y;
        rp += (double)hits / (double)r;
        mapr += ap / (double)r;
        queries++;
      }
      free(v);
    }
  }
  free(sorted);
  free(norms);
  dml_free_aligned(sim);
  if (failed) return dml__error(DML_ERR_NO_MEMORY, "out of memory ranking neighbours");
  out->queries = queries;
  if (queries) {
    out->precision_at_1 = p1 / (double)queries;
    out->r_precision = rp / (double)queries;
    out->map_at_r = mapr / (double)queries;
  }
  return DML_OK;
}
