/* Retrieval metrics: a query set ranked against a reference set (or against itself, each query
 * left out of its own ranking), single- or multi-label, with P@1, P@K, R-Precision, MAP@R,
 * mAP, Recall@K, MRR and nDCG@K, overall and per class.
 *
 * Queries are taken in chunks (CHUNK, in order) and each chunk in blocks of QB queries spread
 * over the threads. A block's products q.r come from one sgemm into a QB x nr buffer, so
 * memory is QB x nr floats per thread, never nq x nr. Each query's row becomes ranking keys
 * (smaller = closer, as in dml_knn_search):
 *   Euclidean (plain or squared)  key = ||r||^2 - 2 q.r   (||q||^2 is the same for every r)
 *   dot                           key = -q.r
 *   cosine                        key = -q.r / ||r||      (1/||q|| is the same for every r)
 * and the row is fully ordered by a stable LSD radix sort of (key, index) — stable on rows
 * listed in index order, so equal keys rank the lower reference index first. The metrics of
 * every query go to a per-chunk table that is summed in query order afterwards, so results do
 * not depend on the thread count. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/status_internal.h"
#include "dml/eval.h"
#include "dml/tensor.h"
#include "eval/eval_internal.h"

#define CHUNK 2048            /* queries whose metrics are held before summing */
#define BLOCK_FLOATS (1 << 22) /* products per thread buffer: QB * nr at most this */
#define MAX_QB 64
#define MAX_SQUARED_NORM (FLT_MAX / 8)

int dml_distance_is_similarity(dml_distance d) {
  return d == DML_DIST_COSINE || d == DML_DIST_DOT;
}

/* The metrics of one query, in the order of dml_retrieval_report's doubles. */
enum { M_P1, M_PK, M_RP, M_MAPR, M_MAP, M_RK, M_MRR, M_NDCG, M_COUNT };
typedef struct {
  double m[M_COUNT];
  int evaluated;
} query_result;

/* Per-thread scratch for ranking one query. */
typedef struct {
  float *prod;     /* [QB, nr] products */
  uint64_t *a, *b; /* [nr] (key << 32 | index) and radix scratch */
  double *gain;    /* [nr] graded relevance of every reference item */
  double *top;     /* [nr] relevant gains, for the ideal DCG */
  uint8_t *rel;    /* [nr] 1 for relevant reference items */
  int32_t *mark;   /* [n_distinct] 1 for the query's labels */
} scratch;

typedef struct {
  const dml__eval_sets *sets;
  int64_t ref0;       /* set index of reference item 0 */
  int64_t nr, k;
  int self;           /* exclude reference index == query index */
  dml_distance dist;
  const float *rnorm; /* squared norms (Euclidean) or inverse norms (cosine) */
  const double *disc; /* [k] 1 / log2(rank + 1) */
} context;

/* Order-preserving map of a float to an unsigned integer (-0 taken as +0). */
static inline uint32_t float_key(float f) {
  if (f == 0.0f) f = 0.0f;
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Stable LSD radix sort of v[0..n) on bits 32..63, in three digits (11, 11, 10 bits). */
static void radix_sort_high(uint64_t *v, uint64_t *tmp, int64_t n) {
  static const int shift[3] = {32, 43, 54};
  uint32_t count[3][2048];
  memset(count, 0, sizeof count);
  for (int64_t i = 0; i < n; i++) {
    const uint64_t x = v[i];
    count[0][(x >> 32) & 2047]++;
    count[1][(x >> 43) & 2047]++;
    count[2][(x >> 54) & 1023]++;
  }
  uint64_t *src = v, *dst = tmp;
  for (int p = 0; p < 3; p++) {
    uint32_t *c = count[p];
    int one_bucket = 0;
    for (int b = 0; b < 2048; b++)
      if (c[b] == (uint32_t)n) one_bucket = 1;
    if (one_bucket) continue; /* this digit is the same everywhere: order unchanged */
    uint32_t sum = 0;
    for (int b = 0; b < 2048; b++) {
      const uint32_t t = c[b];
      c[b] = sum;
      sum += t;
    }
    const int s = shift[p];
    for (int64_t i = 0; i < n; i++) dst[c[(src[i] >> s) & 2047]++] = src[i];
    uint64_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != v) memcpy(v, src, (size_t)n * sizeof *v);
}

/* Moves the k largest of v[0..n) to the front (any order). */
static void select_largest(double *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    const double pivot = v[lo + (hi - lo) / 2];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] > pivot) i++;
      while (pivot > v[j]) j--;
      if (i <= j) {
        const double t = v[i];
        v[i] = v[j];
        v[j] = t;
        i++;
        j--;
      }
    }
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else break;
  }
}

static int cmp_desc(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

/* Row of keys for query q: a[] gets (key << 32 | relevant << 31 | index) for every ranked
 * reference item (all but q itself in self-retrieval), in index order. */
static int64_t fill_keys(const context *cx, const float *row, int64_t q, const uint8_t *rel,
                         uint64_t *a) {
  const int64_t nr = cx->nr;
  const float *rn = cx->rnorm;
  switch (cx->dist) {
    case DML_DIST_DOT:
      for (int64_t j = 0; j < nr; j++)
        a[j] = ((uint64_t)float_key(-row[j]) << 32) | ((uint64_t)rel[j] << 31) | (uint64_t)j;
      break;
    case DML_DIST_COSINE:
      for (int64_t j = 0; j < nr; j++)
        a[j] = ((uint64_t)float_key(-row[j] * rn[j]) << 32) | ((uint64_t)rel[j] << 31) |
               (uint64_t)j;
      break;
    default:
      for (int64_t j = 0; j < nr; j++)
        a[j] = ((uint64_t)float_key(rn[j] - 2.0f * row[j]) << 32) | ((uint64_t)rel[j] << 31) |
               (uint64_t)j;
      break;
  }
  if (!cx->self) return nr;
  memmove(a + q, a + q + 1, (size_t)(nr - q - 1) * sizeof *a);
  return nr - 1;
}

/* Ranks the reference set for query q (set index q, products row[nr]) and fills *res. */
static void rank_query(const context *cx, scratch *sc, int64_t q, const float *row,
                       query_result *res) {
  const dml__eval_sets *st = cx->sets;
  const int64_t nr = cx->nr, k = cx->k;
  memset(res, 0, sizeof *res);
  /* relevance, and graded relevance = Jaccard similarity of the label sets */
  const int32_t *qid = st->ids + st->start[q];
  const int64_t nql = st->start[q + 1] - st->start[q];
  int64_t r = 0;
  int graded = 0;
  if (st->single) {
    const int32_t y = qid[0];
    const int32_t *rid = st->ids + cx->ref0; /* one label per item: start[i] == i */
    for (int64_t j = 0; j < nr; j++) {
      sc->rel[j] = rid[j] == y;
      r += sc->rel[j];
    }
    if (cx->self) r--; /* the query itself */
  } else {
    for (int64_t t = 0; t < nql; t++) sc->mark[qid[t]] = 1;
    for (int64_t j = 0; j < nr; j++) {
      const int64_t s = st->start[cx->ref0 + j], e = st->start[cx->ref0 + j + 1];
      int64_t inter = 0;
      for (int64_t u = s; u < e; u++) inter += sc->mark[st->ids[u]];
      double g = 0.0;
      if (inter && !(cx->self && j == q)) {
        g = (double)inter / (double)(nql + (e - s) - inter);
        if (g != 1.0) graded = 1;
        sc->top[r++] = g;
      }
      sc->gain[j] = g;
      sc->rel[j] = g > 0.0;
    }
    for (int64_t t = 0; t < nql; t++) sc->mark[qid[t]] = 0;
  }
  if (r == 0) return;
  res->evaluated = 1;
  /* ideal DCG: the best min(k, r) gains in decreasing order */
  const int64_t kr = k < r ? k : r;
  double idcg = 0.0;
  if (graded) {
    if (r > kr) select_largest(sc->top, r, kr);
    qsort(sc->top, (size_t)kr, sizeof *sc->top, cmp_desc);
    for (int64_t t = 0; t < kr; t++) idcg += sc->top[t] * cx->disc[t];
  } else {
    for (int64_t t = 0; t < kr; t++) idcg += cx->disc[t];
  }
  const int64_t m = fill_keys(cx, row, q, sc->rel, sc->a);
  radix_sort_high(sc->a, sc->b, m);
  int64_t hits = 0, hits_k = 0, hits_r = 0, first = 0;
  double ap = 0.0, ap_r = 0.0, dcg = 0.0;
  for (int64_t p = 0; p < m; p++) {
    const uint64_t v = sc->a[p];
    if (!(v & 0x80000000u)) continue;
    const int64_t rank = p + 1;
    hits++;
    const double prec = (double)hits / (double)rank;
    ap += prec;
    if (!first) first = rank;
    if (rank <= r) {
      hits_r++;
      ap_r += prec;
    }
    if (rank <= k) {
      hits_k++;
      dcg += (graded ? sc->gain[(int64_t)(v & 0x7fffffffu)] : 1.0) * cx->disc[p];
    }
    if (hits == r) break;
  }
  res->m[M_P1] = first == 1;
  res->m[M_PK] = (double)hits_k / (double)k;
  res->m[M_RP] = (double)hits_r / (double)r;
  res->m[M_MAPR] = ap_r / (double)r;
  res->m[M_MAP] = ap / (double)r;
  res->m[M_RK] = first <= k;
  res->m[M_MRR] = 1.0 / (double)first;
  res->m[M_NDCG] = dcg / idcg;
}

static void report_add(dml_retrieval_report *rep, const query_result *res) {
  if (!res->evaluated) {
    rep->skipped++;
    return;
  }
  rep->queries++;
  rep->precision_at_1 += res->m[M_P1];
  rep->precision_at_k += res->m[M_PK];
  rep->r_precision += res->m[M_RP];
  rep->map_at_r += res->m[M_MAPR];
  rep->map += res->m[M_MAP];
  rep->recall_at_k += res->m[M_RK];
  rep->mrr += res->m[M_MRR];
  rep->ndcg_at_k += res->m[M_NDCG];
}

static void report_average(dml_retrieval_report *rep) {
  if (!rep->queries) return;
  const double q = (double)rep->queries;
  rep->precision_at_1 /= q;
  rep->precision_at_k /= q;
  rep->r_precision /= q;
  rep->map_at_r /= q;
  rep->map /= q;
  rep->recall_at_k /= q;
  rep->mrr /= q;
  rep->ndcg_at_k /= q;
}

/* Squared norms (Euclidean) or inverse norms (cosine; 0 for a zero row) of x [n, d]; returns
 * the largest squared norm. */
static double row_norms(const float *x, int64_t n, int64_t d, int inverse, float *out) {
  double top = 0.0;
#pragma omp parallel for schedule(static) reduction(max : top) if (n * d > 65536)
  for (int64_t i = 0; i < n; i++) {
    double s = 0.0;
    for (int64_t t = 0; t < d; t++) s += (double)x[i * d + t] * x[i * d + t];
    top = s > top ? s : top;
    if (inverse) {
      const double inv = s > 0.0 ? 1.0 / sqrt(s) : 0.0;
      out[i] = inv < FLT_MAX ? (float)inv : FLT_MAX;
    } else {
      out[i] = (float)s;
    }
  }
  return top;
}

static const char *FN = "dml_eval_retrieval_report";

/* The report with a switch for dml_eval_retrieval's labels, which may be negative. */
static dml_status retrieval_report(const float *queries, const dml_labels *qlabels, int64_t nq,
                                   const float *reference, const dml_labels *rlabels,
                                   int64_t nr, int64_t d, dml_distance dist, int64_t k,
                                   dml_retrieval_report *overall,
                                   dml_retrieval_report *per_class, int32_t num_classes,
                                   int allow_negative) {
  if (!overall) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: overall is NULL", FN);
  memset(overall, 0, sizeof *overall);
  if (nq < 0 || d < 1 || k < 1 || (reference && nr < 0))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: need nq >= 0, nr >= 0, d >= 1 and k >= 1 (got nq %lld, nr %lld, "
                      "d %lld, k %lld)",
                      FN, (long long)nq, (long long)nr, (long long)d, (long long)k);
  if (dist != DML_DIST_EUCLIDEAN && dist != DML_DIST_SQUARED_EUCLIDEAN &&
      dist != DML_DIST_COSINE && dist != DML_DIST_DOT)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: unknown distance %d", FN, (int)dist);
  if (per_class && num_classes < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: num_classes is negative (%d)", FN,
                      num_classes);
  if (!queries && nq > 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: queries are NULL", FN);
  const int self = reference == NULL;
  if (self) {
    reference = queries;
    nr = nq;
    rlabels = NULL;
  }
  if (d > INT32_MAX || nr > INT32_MAX || nq > ((int64_t)1 << 56) / d ||
      nr > ((int64_t)1 << 56) / d || k > ((int64_t)1 << 40))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: sizes too large (nq %lld, nr %lld, d %lld)",
                      FN, (long long)nq, (long long)nr, (long long)d);
  DML_TRY(dml__eval_labels_check(qlabels, nq, allow_negative, FN, "query"));
  if (!self) DML_TRY(dml__eval_labels_check(rlabels, nr, allow_negative, FN, "reference"));
  overall->k = k;
  if (per_class) {
    memset(per_class, 0, (size_t)num_classes * sizeof *per_class);
    for (int32_t c = 0; c < num_classes; c++) per_class[c].k = k;
  }
  if (nq == 0) return DML_OK;
  DML_TRY(dml__check_finite_rows(queries, nq, d, FN, "query"));
  if (!self) DML_TRY(dml__check_finite_rows(reference, nr, d, FN, "reference"));

  dml__eval_sets sets;
  DML_TRY(dml__eval_sets_build(qlabels, rlabels, &sets));
  const int l2 = dist == DML_DIST_EUCLIDEAN || dist == DML_DIST_SQUARED_EUCLIDEAN;
  const int64_t kd = k < nr ? k : (nr > 0 ? nr : 1); /* discounts needed */
  float *rnorm = malloc((size_t)(nr > 0 ? nr : 1) * sizeof *rnorm);
  double *disc = malloc((size_t)kd * sizeof *disc);
  query_result *res = malloc((size_t)(nq < CHUNK ? nq : CHUNK) * sizeof *res);
  dml_status status = DML_OK;
  if (!rnorm || !disc || !res) {
    status = dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", FN);
    goto done;
  }
  for (int64_t t = 0; t < kd; t++) disc[t] = 1.0 / log2((double)t + 2.0);
  if (nr > 0 && (l2 || dist == DML_DIST_COSINE)) {
    const double top = row_norms(reference, nr, d, !l2, rnorm);
    if (l2 && top > MAX_SQUARED_NORM) {
      status = dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: a reference row's squared norm (%g) is beyond what float32 "
                          "Euclidean distances can hold; scale the embeddings down",
                          FN, top);
      goto done;
    }
  }
  if (l2 && nr > 0) {
    float *qn = malloc((size_t)nq * sizeof *qn);
    if (!qn) {
      status = dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", FN);
      goto done;
    }
    const double top = row_norms(queries, nq, d, 0, qn);
    free(qn);
    if (top > MAX_SQUARED_NORM) {
      status = dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: a query row's squared norm (%g) is beyond what float32 Euclidean "
                          "distances can hold; scale the embeddings down",
                          FN, top);
      goto done;
    }
  }
  const context cx = {&sets, self ? 0 : nq, nr, k, self, dist, rnorm, disc};
  int64_t qb = nr > 0 ? BLOCK_FLOATS / nr : MAX_QB;
  qb = qb < 1 ? 1 : qb > MAX_QB ? MAX_QB : qb;
  const int64_t nrb = nr > 0 ? nr : 1;
  for (int64_t c0 = 0; c0 < nq && status == DML_OK; c0 += CHUNK) {
    const int64_t nc = nq - c0 < CHUNK ? nq - c0 : CHUNK;
    const int64_t blocks = (nc + qb - 1) / qb;
    int failed = 0;
#pragma omp parallel
    {
      scratch sc;
      sc.prod = dml_alloc_aligned(qb * nrb * (int64_t)sizeof(float));
      sc.a = malloc((size_t)nrb * sizeof *sc.a);
      sc.b = malloc((size_t)nrb * sizeof *sc.b);
      sc.gain = malloc((size_t)nrb * sizeof *sc.gain);
      sc.top = malloc((size_t)nrb * sizeof *sc.top);
      sc.rel = malloc((size_t)nrb);
      sc.mark = calloc((size_t)(sets.n_distinct > 0 ? sets.n_distinct : 1), sizeof *sc.mark);
      const int ok = sc.prod && sc.a && sc.b && sc.gain && sc.top && sc.rel && sc.mark;
      if (!ok) {
#pragma omp atomic write
        failed = 1;
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < blocks; b++) {
        if (!ok) continue;
        const int64_t q0 = c0 + b * qb, nb = c0 + nc - q0 < qb ? c0 + nc - q0 : qb;
        if (nr > 0)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)nr, (int)d, 1.0f,
                      queries + q0 * d, (int)d, reference, (int)d, 0.0f, sc.prod, (int)nr);
        for (int64_t i = 0; i < nb; i++)
          rank_query(&cx, &sc, q0 + i, sc.prod + i * nr, &res[q0 + i - c0]);
      }
      dml_free_aligned(sc.prod);
      free(sc.a);
      free(sc.b);
      free(sc.gain);
      free(sc.top);
      free(sc.rel);
      free(sc.mark);
    }
    if (failed) {
      status = dml__error(DML_ERR_NO_MEMORY, "%s: out of memory ranking %lld reference items",
                          FN, (long long)nr);
      break;
    }
    for (int64_t i = 0; i < nc; i++) {
      const int64_t q = c0 + i;
      report_add(overall, &res[i]);
      if (!per_class) continue;
      for (int64_t u = sets.start[q]; u < sets.start[q + 1]; u++) {
        const int32_t c = sets.distinct[sets.ids[u]];
        if (c >= 0 && c < num_classes) report_add(&per_class[c], &res[i]);
      }
    }
  }
  if (status == DML_OK) {
    report_average(overall);
    if (per_class)
      for (int32_t c = 0; c < num_classes; c++) report_average(&per_class[c]);
  }
done:
  free(rnorm);
  free(disc);
  free(res);
  dml__eval_sets_free(&sets);
  return status;
}

dml_status dml_eval_retrieval_report(const float *queries, const dml_labels *qlabels, int64_t nq,
                                     const float *reference, const dml_labels *rlabels,
                                     int64_t nr, int64_t d, dml_distance dist, int64_t k,
                                     dml_retrieval_report *overall,
                                     dml_retrieval_report *per_class, int32_t num_classes) {
  return retrieval_report(queries, qlabels, nq, reference, rlabels, nr, d, dist, k, overall,
                          per_class, num_classes, 0);
}

dml_status dml_eval_retrieval(const float *emb, const int32_t *labels, int64_t n, int64_t d,
                              dml_distance dist, dml_retrieval_metrics *out) {
  if (!emb || !labels || !out || n < 0 || d <= 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_eval_retrieval: need emb, labels and out, n >= 0 and d >= 1");
  memset(out, 0, sizeof *out);
  const dml_labels l = {n, labels, NULL};
  dml_retrieval_report rep;
  DML_TRY(retrieval_report(emb, &l, n, NULL, NULL, 0, d, dist, 1, &rep, NULL, 0, 1));
  out->precision_at_1 = rep.precision_at_1;
  out->r_precision = rep.r_precision;
  out->map_at_r = rep.map_at_r;
  out->queries = rep.queries;
  return DML_OK;
}
