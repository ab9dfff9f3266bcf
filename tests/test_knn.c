/* Exact k-nearest-neighbour search (dml_knn_search) against a plain loop: integer-valued data
 * (every product exact in float, so the ranking, ties included, must match index for index),
 * random data under cosine, gallery and query sizes that cross the block boundaries, k larger
 * than the gallery, an empty gallery, zero vectors, thread-count independence, bad input. */
#include <stdlib.h>

#include "test.h"

typedef struct {
  double v;
  int64_t id;
} plain_hit;

static int closer_first(const void *a, const void *b) {
  const plain_hit *x = a, *y = b;
  if (x->v != y->v) return x->v < y->v ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

/* Plain loop in double: distance (or minus similarity) of query q to every row, sorted. */
static void plain_rank(const float *g, int64_t n, const float *q, int64_t d, dml_distance dist,
                       plain_hit *out) {
  double qq = 0;
  for (int64_t t = 0; t < d; t++) qq += (double)q[t] * q[t];
  for (int64_t j = 0; j < n; j++) {
    double dot = 0, gg = 0, sq = 0;
    for (int64_t t = 0; t < d; t++) {
      const double a = q[t], b = g[j * d + t];
      dot += a * b;
      gg += b * b;
      sq += (a - b) * (a - b);
    }
    double v;
    if (dist == DML_DIST_SQUARED_EUCLIDEAN) v = sq;
    else if (dist == DML_DIST_EUCLIDEAN) v = sqrt(sq);
    else if (dist == DML_DIST_DOT) v = -dot;
    else v = (qq > 0 && gg > 0) ? -dot / sqrt(qq * gg) : 0.0;
    out[j] = (plain_hit){v, j};
  }
  qsort(out, (size_t)n, sizeof *out, closer_first);
}

static void fill_ints(float *x, int64_t n, unsigned seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (float)((int)((seed >> 16) % 7) - 3);
  }
}

static void fill_uniform(float *x, int64_t n, unsigned seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
}

TEST(knn_matches_plain_loop_index_for_index) {
  /* 3000 rows cross a gallery block (2048), 150 queries cross query blocks (64); coordinates
   * in -3..3 make many exact ties, which must go to the lower index */
  enum { N = 3000, NQ = 150, D = 12, K = 25 };
  float *g = malloc(sizeof(float) * N * D), *q = malloc(sizeof(float) * NQ * D);
  int64_t *ids = malloc(sizeof(int64_t) * NQ * K);
  float *dv = malloc(sizeof(float) * NQ * K);
  plain_hit *ref = malloc(sizeof(plain_hit) * N);
  fill_ints(g, N * D, 1);
  fill_ints(q, NQ * D, 2);
  memcpy(g + 7 * D, g + 3 * D, sizeof(float) * D); /* a duplicate row */
  const dml_distance dists[3] = {DML_DIST_SQUARED_EUCLIDEAN, DML_DIST_EUCLIDEAN, DML_DIST_DOT};
  for (int m = 0; m < 3; m++) {
    ASSERT_OK(dml_knn_search(g, N, q, NQ, D, dists[m], K, ids, dv));
    for (int64_t i = 0; i < NQ; i++) {
      plain_rank(g, N, q + i * D, D, dists[m], ref);
      for (int64_t j = 0; j < K; j++) {
        ASSERT_EQ_INT(ids[i * K + j], ref[j].id);
        const double want = dists[m] == DML_DIST_DOT ? -ref[j].v : ref[j].v;
        ASSERT_NEAR(dv[i * K + j], want, 1e-5 * (1.0 + fabs(want)));
      }
    }
  }
  free(g);
  free(q);
  free(ids);
  free(dv);
  free(ref);
}

TEST(knn_cosine_on_random_data) {
  enum { N = 2500, NQ = 70, D = 16, K = 10 };
  float *g = malloc(sizeof(float) * N * D), *q = malloc(sizeof(float) * NQ * D);
  int64_t ids[NQ * K];
  float dv[NQ * K];
  plain_hit *ref = malloc(sizeof(plain_hit) * N);
  fill_uniform(g, N * D, 3);
  fill_uniform(q, NQ * D, 4);
  for (int t = 0; t < D; t++) g[5 * D + t] = 0.0f; /* a zero row: cosine 0 with everything */
  ASSERT_OK(dml_knn_search(g, N, q, NQ, D, DML_DIST_COSINE, K, ids, dv));
  for (int64_t i = 0; i < NQ; i++) {
    plain_rank(g, N, q + i * D, D, DML_DIST_COSINE, ref);
    for (int64_t j = 0; j < K; j++) {
      /* rounding may swap near-ties: each hit's similarity is right, the list is sorted, and
       * the j-th similarity is the true j-th best */
      const int64_t id = ids[i * K + j];
      ASSERT_TRUE(id >= 0 && id < N);
      plain_hit one;
      plain_rank(g + id * D, 1, q + i * D, D, DML_DIST_COSINE, &one);
      ASSERT_NEAR(dv[i * K + j], -one.v, 1e-5);
      ASSERT_NEAR(dv[i * K + j], -ref[j].v, 1e-5);
      if (j > 0) ASSERT_TRUE(dv[i * K + j] <= dv[i * K + j - 1] + 1e-6f);
    }
  }
  /* a zero query has cosine 0 with every row: the first k rows, in order */
  float zq[D] = {0};
  ASSERT_OK(dml_knn_search(g, N, zq, 1, D, DML_DIST_COSINE, K, ids, dv));
  for (int j = 0; j < K; j++) {
    ASSERT_EQ_INT(ids[j], j);
    ASSERT_NEAR(dv[j], 0.0, 0.0);
  }
  free(g);
  free(q);
  free(ref);
}

TEST(knn_small_and_empty_galleries) {
  enum { D = 3, K = 6 };
  const float g[4 * D] = {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3};
  const float q[D] = {0, 0, 0};
  int64_t ids[K];
  float dv[K];
  ASSERT_OK(dml_knn_search(g, 4, q, 1, D, DML_DIST_EUCLIDEAN, K, ids, dv));
  const int64_t want[K] = {0, 1, 2, 3, -1, -1};
  const float wd[4] = {0, 1, 2, 3};
  for (int j = 0; j < K; j++) ASSERT_EQ_INT(ids[j], want[j]);
  for (int j = 0; j < 4; j++) ASSERT_NEAR(dv[j], wd[j], 1e-6);
  ASSERT_TRUE(isinf(dv[4]) && dv[4] > 0);
  ASSERT_OK(dml_knn_search(g, 4, q, 1, D, DML_DIST_DOT, K, ids, dv));
  ASSERT_TRUE(isinf(dv[5]) && dv[5] < 0);
  ASSERT_OK(dml_knn_search(g, 4, q, 1, D, DML_DIST_EUCLIDEAN, K, ids, NULL)); /* no dists */
  ASSERT_EQ_INT(ids[3], 3);
  ASSERT_OK(dml_knn_search(NULL, 0, q, 1, D, DML_DIST_EUCLIDEAN, K, ids, dv));
  for (int j = 0; j < K; j++) ASSERT_EQ_INT(ids[j], -1);
  ASSERT_OK(dml_knn_search(g, 4, NULL, 0, D, DML_DIST_EUCLIDEAN, K, NULL, NULL));
}

TEST(knn_independent_of_thread_count) {
  enum { N = 4100, NQ = 130, D = 24, K = 7 };
  float *g = malloc(sizeof(float) * N * D), *q = malloc(sizeof(float) * NQ * D);
  int64_t a[NQ * K], b[NQ * K];
  float da[NQ * K], db[NQ * K];
  fill_uniform(g, N * D, 5);
  fill_uniform(q, NQ * D, 6);
  const int before = dml_get_num_threads();
  dml_set_num_threads(1);
  ASSERT_OK(dml_knn_search(g, N, q, NQ, D, DML_DIST_SQUARED_EUCLIDEAN, K, a, da));
  dml_set_num_threads(2);
  ASSERT_OK(dml_knn_search(g, N, q, NQ, D, DML_DIST_SQUARED_EUCLIDEAN, K, b, db));
  dml_set_num_threads(before);
  ASSERT_TRUE(memcmp(a, b, sizeof a) == 0);
  ASSERT_TRUE(memcmp(da, db, sizeof da) == 0);
  free(g);
  free(q);
}

TEST(knn_rejects_bad_input) {
  float g[6] = {0, 1, 2, 3, 4, 5}, q[2] = {0, 0};
  int64_t ids[2];
  ASSERT_ERROR(dml_knn_search(g, 3, q, 1, 2, DML_DIST_EUCLIDEAN, 0, ids, NULL),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_search(g, 3, q, 1, 0, DML_DIST_EUCLIDEAN, 1, ids, NULL),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_search(NULL, 3, q, 1, 2, DML_DIST_EUCLIDEAN, 1, ids, NULL),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_search(g, 3, q, 1, 2, DML_DIST_EUCLIDEAN, 1, NULL, NULL),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_search(g, 3, q, 1, 2, (dml_distance)9, 1, ids, NULL),
               DML_ERR_INVALID_ARGUMENT);
  q[1] = NAN;
  ASSERT_ERROR(dml_knn_search(g, 3, q, 1, 2, DML_DIST_EUCLIDEAN, 1, ids, NULL),
               DML_ERR_NOT_FINITE);
  q[1] = 0;
  g[4] = INFINITY;
  ASSERT_ERROR(dml_knn_search(g, 3, q, 1, 2, DML_DIST_EUCLIDEAN, 1, ids, NULL),
               DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "gallery row 2") != NULL);
}

TEST(knn_extreme_magnitudes) {
  /* values whose float keys would overflow (||g||^2 > FLT_MAX / 8) are refused under
   * Euclidean distances; subnormal rows under cosine rank as cosine 0, never as NaN */
  enum { N = 19 };
  float g[N], q[1];
  int64_t ids[2] = {777, 778};
  float dv[2];
  for (int i = 0; i < N; i++) g[i] = 2e19f;
  q[0] = 2e19f;
  ASSERT_ERROR(dml_knn_search(g, N, q, 1, 1, DML_DIST_SQUARED_EUCLIDEAN, 2, ids, dv),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml_knn_search(g, N, q, 1, 1, DML_DIST_DOT, 2, ids, dv)); /* dot has no norms */
  ASSERT_EQ_INT(ids[0], 0);
  ASSERT_EQ_INT(ids[1], 1);
  for (int i = 0; i < N; i++) g[i] = 1e-42f;
  q[0] = 0.0f;
  ASSERT_OK(dml_knn_search(g, N, q, 1, 1, DML_DIST_COSINE, 2, ids, dv));
  ASSERT_EQ_INT(ids[0], 0);
  ASSERT_EQ_INT(ids[1], 1);
  ASSERT_NEAR(dv[0], 0.0, 0.0);
  q[0] = 1e-42f;
  ASSERT_OK(dml_knn_search(g, N, q, 1, 1, DML_DIST_COSINE, 2, ids, dv));
  ASSERT_EQ_INT(ids[0], 0);
  ASSERT_EQ_INT(ids[1], 1);
  ASSERT_TRUE(dv[0] == dv[0] && dv[1] == dv[1]); /* not NaN */
}
