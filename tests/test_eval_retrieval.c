/* Retrieval report (dml_eval_retrieval_report) against a plain loop of the definitions on
 * random integer-valued data (exact float products, so ties rank the same), single- and
 * multi-label, query set against reference set and self-retrieval; sizes that cross the query
 * chunk and block boundaries; thread-count independence; empty inputs and bad input. */
#include <stdlib.h>

#include "test.h"

typedef struct {
  double key;
  int64_t idx;
} hit;

static int hit_cmp(const void *a, const void *b) {
  const hit *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

static void fill_ints(float *x, int64_t n, uint64_t seed, int range) {
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)((int)dml_rng_below(seed, 0, (uint64_t)i, (uint64_t)(2 * range + 1)) - range);
}

/* Jaccard similarity of item a of la and item b of lb (label lists may repeat labels). */
static double jac(const dml_labels *la, int64_t a, const dml_labels *lb, int64_t b) {
  const int64_t a0 = la->offsets ? la->offsets[a] : a, a1 = la->offsets ? la->offsets[a + 1] : a + 1;
  const int64_t b0 = lb->offsets ? lb->offsets[b] : b, b1 = lb->offsets ? lb->offsets[b + 1] : b + 1;
  int inter = 0, ua = 0, ub = 0;
  for (int64_t i = a0; i < a1; i++) {
    int dup = 0;
    for (int64_t j = a0; j < i; j++) dup |= la->values[j] == la->values[i];
    if (dup) continue;
    ua++;
    for (int64_t j = b0; j < b1; j++)
      if (lb->values[j] == la->values[i]) {
        inter++;
        break;
      }
  }
  for (int64_t i = b0; i < b1; i++) {
    int dup = 0;
    for (int64_t j = b0; j < i; j++) dup |= lb->values[j] == lb->values[i];
    ub += !dup;
  }
  return inter ? (double)inter / (ua + ub - inter) : 0.0;
}

/* The report by a full sort of every ranking, in double. */
static void plain_report(const float *q, const dml_labels *ql, int64_t nq, const float *r,
                         const dml_labels *rl, int64_t nr, int64_t d, dml_distance dist,
                         int64_t k, dml_retrieval_report *out) {
  const int self = r == NULL;
  if (self) {
    r = q;
    rl = ql;
    nr = nq;
  }
  memset(out, 0, sizeof *out);
  out->k = k;
  hit *h = malloc((size_t)nr * sizeof *h);
  double *g = malloc((size_t)nr * sizeof *g), *sorted = malloc((size_t)nr * sizeof *sorted);
  for (int64_t i = 0; i < nq; i++) {
    int64_t m = 0, R = 0;
    for (int64_t j = 0; j < nr; j++) {
      g[j] = 0;
      if (self && j == i) continue;
      double dot = 0, sq = 0;
      for (int64_t t = 0; t < d; t++) {
        dot += (double)q[i * d + t] * r[j * d + t];
        sq += ((double)q[i * d + t] - r[j * d + t]) * ((double)q[i * d + t] - r[j * d + t]);
      }
      h[m++] = (hit){dist == DML_DIST_DOT ? -dot : sq, j};
      g[j] = jac(ql, i, rl, j);
      if (g[j] > 0) sorted[R++] = -g[j];
    }
    if (!R) {
      out->skipped++;
      continue;
    }
    qsort(h, (size_t)m, sizeof *h, hit_cmp);
    qsort(sorted, (size_t)R, sizeof *sorted, (int (*)(const void *, const void *))hit_cmp);
    double hits = 0, ap = 0, apr = 0, dcg = 0, idcg = 0, hk = 0, hr = 0;
    int64_t first = 0;
    for (int64_t p = 0; p < m; p++) {
      const double gg = g[h[p].idx];
      if (p < k) dcg += gg / log2(p + 2.0);
      if (gg <= 0) continue;
      hits++;
      if (!first) first = p + 1;
      ap += hits / (p + 1);
      if (p < R) apr += hits / (p + 1), hr++;
      if (p < k) hk++;
    }
    for (int64_t p = 0; p < k && p < R; p++) idcg += -sorted[p] / log2(p + 2.0);
    out->queries++;
    out->precision_at_1 += first == 1;
    out->precision_at_k += hk / k;
    out->r_precision += hr / R;
    out->map_at_r += apr / R;
    out->map += ap / R;
    out->recall_at_k += first <= k;
    out->mrr += 1.0 / first;
    out->ndcg_at_k += dcg / idcg;
  }
  if (out->queries) {
    const double n = (double)out->queries;
    out->precision_at_1 /= n, out->precision_at_k /= n, out->r_precision /= n;
    out->map_at_r /= n, out->map /= n, out->recall_at_k /= n, out->mrr /= n, out->ndcg_at_k /= n;
  }
  free(h);
  free(g);
  free(sorted);
}

#define ASSERT_REPORT_NEAR(a, b)                                  \
  do {                                                            \
    ASSERT_EQ_INT((a).queries, (b).queries);                      \
    ASSERT_EQ_INT((a).skipped, (b).skipped);                      \
    ASSERT_EQ_INT((a).k, (b).k);                                  \
    ASSERT_NEAR((a).precision_at_1, (b).precision_at_1, 1e-12);   \
    ASSERT_NEAR((a).precision_at_k, (b).precision_at_k, 1e-12);   \
    ASSERT_NEAR((a).r_precision, (b).r_precision, 1e-12);         \
    ASSERT_NEAR((a).map_at_r, (b).map_at_r, 1e-12);               \
    ASSERT_NEAR((a).map, (b).map, 1e-12);                         \
    ASSERT_NEAR((a).recall_at_k, (b).recall_at_k, 1e-12);         \
    ASSERT_NEAR((a).mrr, (b).mrr, 1e-12);                         \
    ASSERT_NEAR((a).ndcg_at_k, (b).ndcg_at_k, 1e-12);             \
  } while (0)

TEST(single_label_matches_plain_loop) {
  enum { NQ = 70, NR = 400, D = 5 };
  float *q = malloc(sizeof(float) * NQ * D), *r = malloc(sizeof(float) * NR * D);
  int32_t yq[NQ], yr[NR];
  fill_ints(q, NQ * D, 1, 3);
  fill_ints(r, NR * D, 2, 3);
  for (int i = 0; i < NQ; i++) yq[i] = (int32_t)dml_rng_below(3, 0, (uint64_t)i, 9);
  for (int i = 0; i < NR; i++) yr[i] = (int32_t)dml_rng_below(4, 0, (uint64_t)i, 8); /* no 8 */
  const dml_labels lq = {NQ, yq, NULL}, lr = {NR, yr, NULL};
  const dml_distance dists[3] = {DML_DIST_EUCLIDEAN, DML_DIST_SQUARED_EUCLIDEAN, DML_DIST_DOT};
  for (int m = 0; m < 3; m++)
    for (int64_t k = 1; k <= 16; k *= 4) {
      dml_retrieval_report got, want;
      ASSERT_OK(dml_eval_retrieval_report(q, &lq, NQ, r, &lr, NR, D, dists[m], k, &got, NULL, 0));
      plain_report(q, &lq, NQ, r, &lr, NR, D, dists[m], k, &want);
      ASSERT_TRUE(want.skipped > 0);
      ASSERT_REPORT_NEAR(got, want);
      ASSERT_OK(dml_eval_retrieval_report(r, &lr, NR, NULL, NULL, 0, D, dists[m], k, &got, NULL, 0));
      plain_report(r, &lr, NR, NULL, NULL, 0, D, dists[m], k, &want);
      ASSERT_REPORT_NEAR(got, want);
    }
  free(q);
  free(r);
}

TEST(multi_label_matches_plain_loop) {
  enum { NQ = 50, NR = 300, D = 4, L = 7 };
  float *q = malloc(sizeof(float) * NQ * D), *r = malloc(sizeof(float) * NR * D);
  int32_t vq[NQ * 3], vr[NR * 3];
  int64_t oq[NQ + 1], orr[NR + 1];
  fill_ints(q, NQ * D, 5, 2);
  fill_ints(r, NR * D, 6, 2);
  oq[0] = orr[0] = 0;
  for (int i = 0; i < NQ; i++) { /* 0..3 labels, repeats allowed */
    const int c = (int)dml_rng_below(7, 0, (uint64_t)i, 4);
    for (int t = 0; t < c; t++) vq[oq[i] + t] = (int32_t)dml_rng_below(7, 1, (uint64_t)(i * 3 + t), L);
    oq[i + 1] = oq[i] + c;
  }
  for (int i = 0; i < NR; i++) {
    const int c = (int)dml_rng_below(8, 0, (uint64_t)i, 4);
    for (int t = 0; t < c; t++) vr[orr[i] + t] = (int32_t)dml_rng_below(8, 1, (uint64_t)(i * 3 + t), L);
    orr[i + 1] = orr[i] + c;
  }
  const dml_labels lq = {NQ, vq, oq}, lr = {NR, vr, orr};
  dml_retrieval_report got, want, per[L + 1];
  for (int m = 0; m < 2; m++) {
    const dml_distance dist = m ? DML_DIST_DOT : DML_DIST_EUCLIDEAN;
    ASSERT_OK(dml_eval_retrieval_report(q, &lq, NQ, r, &lr, NR, D, dist, 5, &got, per, L + 1));
    plain_report(q, &lq, NQ, r, &lr, NR, D, dist, 5, &want);
    ASSERT_TRUE(want.skipped > 0);
    ASSERT_REPORT_NEAR(got, want);
    ASSERT_EQ_INT(per[L].queries, 0); /* no item has label L */
    ASSERT_NEAR(per[L].map, 0.0, 0.0);
    ASSERT_OK(dml_eval_retrieval_report(r, &lr, NR, NULL, NULL, 0, D, dist, 3, &got, NULL, 0));
    plain_report(r, &lr, NR, NULL, NULL, 0, D, dist, 3, &want);
    ASSERT_REPORT_NEAR(got, want);
  }
  free(q);
  free(r);
}

TEST(chunk_and_block_boundaries_and_thread_count) {
  /* 2100 queries cross the 2048-query chunk; 70000 references make blocks of 59 queries */
  enum { N1 = 2100, D1 = 3, NQ2 = 130, NR2 = 70000, D2 = 2 };
  float *x = malloc(sizeof(float) * N1 * D1);
  int32_t *y = malloc(sizeof(int32_t) * N1);
  fill_ints(x, N1 * D1, 9, 4);
  for (int i = 0; i < N1; i++) y[i] = (int32_t)dml_rng_below(10, 0, (uint64_t)i, 20);
  const dml_labels l = {N1, y, NULL};
  const int threads = dml_get_num_threads();
  dml_retrieval_report a, b, want, pa[20], pb[20];
  dml_set_num_threads(1);
  ASSERT_OK(dml_eval_retrieval_report(x, &l, N1, NULL, NULL, 0, D1, DML_DIST_COSINE, 10, &a, pa, 20));
  dml_set_num_threads(3);
  ASSERT_OK(dml_eval_retrieval_report(x, &l, N1, NULL, NULL, 0, D1, DML_DIST_COSINE, 10, &b, pb, 20));
  dml_set_num_threads(threads);
  ASSERT_TRUE(memcmp(&a, &b, sizeof a) == 0);
  ASSERT_TRUE(memcmp(pa, pb, sizeof pa) == 0);
  ASSERT_OK(dml_eval_retrieval_report(x, &l, N1, NULL, NULL, 0, D1, DML_DIST_DOT, 10, &a, NULL, 0));
  plain_report(x, &l, N1, NULL, NULL, 0, D1, DML_DIST_DOT, 10, &want);
  ASSERT_REPORT_NEAR(a, want);
  free(x);
  free(y);
  float *q = malloc(sizeof(float) * NQ2 * D2), *r = malloc(sizeof(float) * NR2 * D2);
  int32_t *yq = malloc(sizeof(int32_t) * NQ2), *yr = malloc(sizeof(int32_t) * NR2);
  fill_ints(q, NQ2 * D2, 11, 30);
  fill_ints(r, NR2 * D2, 12, 30);
  for (int i = 0; i < NQ2; i++) yq[i] = i % 5;
  for (int i = 0; i < NR2; i++) yr[i] = (int32_t)dml_rng_below(13, 0, (uint64_t)i, 5);
  const dml_labels lq = {NQ2, yq, NULL}, lr = {NR2, yr, NULL};
  ASSERT_OK(dml_eval_retrieval_report(q, &lq, NQ2, r, &lr, NR2, D2, DML_DIST_SQUARED_EUCLIDEAN, 20,
                                      &a, NULL, 0));
  plain_report(q, &lq, NQ2, r, &lr, NR2, D2, DML_DIST_SQUARED_EUCLIDEAN, 20, &want);
  ASSERT_REPORT_NEAR(a, want);
  free(q);
  free(r);
  free(yq);
  free(yr);
}

TEST(identical_embeddings_rank_by_index) {
  /* every distance ties: the ranking is the reference order */
  float x[6] = {0};
  int32_t y[6] = {0, 1, 1, 0, 1, 0};
  const dml_labels l = {6, y, NULL};
  dml_retrieval_report rep;
  ASSERT_OK(dml_eval_retrieval_report(x, &l, 6, NULL, NULL, 0, 1, DML_DIST_EUCLIDEAN, 2, &rep, NULL, 0));
  /* query 0 ranks 1,2,3,4,5 (relevant 3, 5): P@1 0, first at 3, AP = (1/3 + 2/5) / 2 */
  dml_retrieval_report want;
  plain_report(x, &l, 6, NULL, NULL, 0, 1, DML_DIST_EUCLIDEAN, 2, &want);
  ASSERT_REPORT_NEAR(rep, want);
  /* by hand: APs 11/30, 1/2, 1/2, 7/10, 7/12, 3/4 sum to 3.4 */
  ASSERT_NEAR(rep.map, 3.4 / 6, 1e-12);
  /* zero vectors have cosine 0 with everything: the same ranking */
  ASSERT_OK(dml_eval_retrieval_report(x, &l, 6, NULL, NULL, 0, 1, DML_DIST_COSINE, 2, &rep, NULL, 0));
  ASSERT_REPORT_NEAR(rep, want);
}

TEST(empty_inputs) {
  float x[4] = {1, 2, 3, 4};
  int32_t y[4] = {0, 0, 1, 1};
  dml_retrieval_report rep, per[2];
  const dml_labels l0 = {0, y, NULL}, l1 = {1, y, NULL}, l4 = {4, y, NULL};
  ASSERT_OK(dml_eval_retrieval_report(x, &l0, 0, NULL, NULL, 0, 1, DML_DIST_COSINE, 3, &rep, per, 2));
  ASSERT_EQ_INT(rep.queries, 0);
  ASSERT_EQ_INT(rep.k, 3);
  ASSERT_EQ_INT(per[1].queries, 0);
  ASSERT_OK(dml_eval_retrieval_report(x, &l1, 1, NULL, NULL, 0, 1, DML_DIST_COSINE, 3, &rep, NULL, 0));
  ASSERT_EQ_INT(rep.skipped, 1);
  ASSERT_OK(dml_eval_retrieval_report(x, &l4, 4, x, &l0, 0, 1, DML_DIST_EUCLIDEAN, 3, &rep, per, 2));
  ASSERT_EQ_INT(rep.queries, 0);
  ASSERT_EQ_INT(rep.skipped, 4);
  ASSERT_EQ_INT(per[0].skipped, 2);
  dml_retrieval_metrics m;
  ASSERT_OK(dml_eval_retrieval(x, y, 0, 1, DML_DIST_EUCLIDEAN, &m));
  ASSERT_EQ_INT(m.queries, 0);
}

TEST(bad_input_is_an_error) {
  float x[6] = {0, 1, 2, 3, 4, 5}, bad[6] = {0, 1, 2, 3, INFINITY, 5};
  int32_t y[3] = {0, 1, 0}, neg[3] = {0, -1, 0}, v[4] = {0, 1, 1, 2};
  int64_t off_bad[4] = {0, 2, 1, 4}, off_start[4] = {1, 2, 3, 4};
  const dml_labels l = {3, y, NULL}, l2 = {2, y, NULL}, ln = {3, neg, NULL};
  const dml_labels lob = {3, v, off_bad}, los = {3, v, off_start}, lnull = {3, NULL, NULL};
  dml_retrieval_report rep, per[2];
  const dml_distance e = DML_DIST_EUCLIDEAN;
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l, 3, NULL, NULL, 0, 2, e, 1, NULL, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(NULL, &l, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, NULL, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l, 3, NULL, NULL, 0, 2, e, 0, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l, 3, NULL, NULL, 0, 0, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l, 3, NULL, NULL, 0, 2, (dml_distance)9, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l, 3, NULL, NULL, 0, 2, e, 1, &rep, per, -1), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l2, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &ln, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "negative") != NULL);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &lob, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "offsets decrease at item 1") != NULL);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &los, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &lnull, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l, 3, x, NULL, 3, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_retrieval_report(x, &l, 3, bad, &l, 3, 2, e, 1, &rep, NULL, 0), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "reference row 2") != NULL);
  ASSERT_ERROR(dml_eval_retrieval_report(bad, &l, 3, NULL, NULL, 0, 2, e, 1, &rep, NULL, 0), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "query row 2") != NULL);
  float huge[2] = {3e38f, 3e38f};
  const dml_labels lh = {1, y, NULL};
  ASSERT_ERROR(dml_eval_retrieval_report(x, &lh, 1, huge, &lh, 1, 2, e, 1, &rep, NULL, 0), DML_ERR_INVALID_ARGUMENT);
  dml_retrieval_metrics m;
  ASSERT_ERROR(dml_eval_retrieval(x, NULL, 3, 2, e, &m), DML_ERR_INVALID_ARGUMENT);
}
