/* Retrieval metrics: a hand-worked example with ties, and random data against a plain-loop
 * implementation of the definitions (full sort of every ranking). */
#include <stdlib.h>

#include "test.h"

TEST(hand_worked_example_with_ties) {
  float x[5] = {0, 1, 2, 3, 4};
  int32_t y[5] = {0, 1, 0, 1, 0};
  dml_retrieval_metrics m;
  ASSERT_OK(dml_eval_retrieval(x, y, 5, 1, DML_DIST_EUCLIDEAN, &m));
  ASSERT_EQ_INT(m.queries, 5);
  ASSERT_NEAR(m.precision_at_1, 0.0, 1e-12);
  ASSERT_NEAR(m.r_precision, 0.2, 1e-12);
  ASSERT_NEAR(m.map_at_r, 0.1, 1e-12);
}

typedef struct {
  double key;
  int idx;
} item;

static int cmp_item(const void *a, const void *b) {
  const item *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return x->idx - y->idx;
}

TEST(random_embeddings_match_plain_loops) {
  enum { N = 300, D = 8, C = 7 };
  static float e[N * D];
  static int32_t y[N];
  for (int i = 0; i < N * D; i++) e[i] = dml_rng_normal(42, 1, (uint64_t)i);
  for (int i = 0; i < N; i++) y[i] = (int32_t)dml_rng_below(42, 2, (uint64_t)i, C) * 3 - 5;
  y[0] = 100; /* a singleton class: skipped */
  for (int dist = 0; dist < 2; dist++) {
    dml_distance dd = dist ? DML_DIST_COSINE : DML_DIST_EUCLIDEAN;
    double p1 = 0, rp = 0, mapr = 0;
    int queries = 0;
    static item v[N];
    for (int q = 0; q < N; q++) {
      int m = 0, r = 0;
      for (int j = 0; j < N; j++) {
        if (j == q) continue;
        double dot = 0, nq = 0, nj = 0, d2 = 0;
        for (int k = 0; k < D; k++) {
          dot += (double)e[q * D + k] * e[j * D + k];
          nq += (double)e[q * D + k] * e[q * D + k];
          nj += (double)e[j * D + k] * e[j * D + k];
          d2 += ((double)e[q * D + k] - e[j * D + k]) * ((double)e[q * D + k] - e[j * D + k]);
        }
        v[m].key = dist ? -dot / sqrt(nq * nj) : d2;
        v[m].idx = j;
        m++;
        r += y[j] == y[q];
      }
      if (!r) continue;
      qsort(v, (size_t)m, sizeof v[0], cmp_item);
      int hits = 0;
      double ap = 0;
      for (int k = 0; k < r; k++)
        if (y[v[k].idx] == y[q]) ap += (double)++hits / (k + 1);
      p1 += y[v[0].idx] == y[q];
      rp += (double)hits / r;
      mapr += ap / r;
      queries++;
    }
    dml_retrieval_metrics m;
    ASSERT_OK(dml_eval_retrieval(e, y, N, D, dd, &m));
    ASSERT_EQ_INT(m.queries, queries);
    ASSERT_NEAR(m.precision_at_1, p1 / queries, 1e-9);
    ASSERT_NEAR(m.r_precision, rp / queries, 1e-9);
    ASSERT_NEAR(m.map_at_r, mapr / queries, 1e-9);
  }
}

TEST(non_finite_embedding_is_an_error) {
  float x[4] = {0, 1, NAN, 3};
  int32_t y[4] = {0, 0, 1, 1};
  dml_retrieval_metrics m;
  ASSERT_ERROR(dml_eval_retrieval(x, y, 4, 1, DML_DIST_EUCLIDEAN, &m), DML_ERR_NOT_FINITE);
}
