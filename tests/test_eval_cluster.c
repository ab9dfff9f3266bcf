/* k-means, NMI and AMI beyond the scikit-learn fixtures: every point ends at its nearest
 * centroid, centroids are the means of their points, inertia agrees with a plain loop,
 * results are identical for any thread count, duplicate points and more clusters than
 * distinct points do not break it, and bad input is an error. */
#include <stdlib.h>

#include "test.h"

static void blobs(float *x, int32_t *y, int64_t n, int64_t d, int64_t k, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) {
    y[i] = (int32_t)(i % k);
    for (int64_t t = 0; t < d; t++)
      x[i * d + t] = 4.0f * (float)((y[i] * 7 + t * 3) % 5) + dml_rng_normal(seed, 0, (uint64_t)(i * d + t));
  }
}

TEST(kmeans_fixed_point_and_plain_inertia) {
  enum { N = 600, D = 6, K = 7 };
  float *x = malloc(sizeof(float) * N * D), c[K * D];
  int32_t *y = malloc(sizeof(int32_t) * N), *a = malloc(sizeof(int32_t) * N);
  blobs(x, y, N, D, K, 3);
  double inertia;
  ASSERT_OK(dml_kmeans(x, N, D, K, 300, 11, a, c, &inertia));
  double plain = 0;
  int64_t count[K] = {0};
  for (int64_t i = 0; i < N; i++) {
    ASSERT_TRUE(a[i] >= 0 && a[i] < K);
    count[a[i]]++;
    double best = INFINITY, mine = 0;
    for (int64_t j = 0; j < K; j++) {
      double s = 0;
      for (int64_t t = 0; t < D; t++) s += ((double)x[i * D + t] - c[j * D + t]) * ((double)x[i * D + t] - c[j * D + t]);
      if (s < best) best = s;
      if (j == a[i]) mine = s;
    }
    ASSERT_TRUE(mine <= best + 1e-3 * (1 + best)); /* nearest, up to float rounding */
    plain += mine;
  }
  ASSERT_NEAR(inertia, plain, 1e-9 * plain);
  /* converged: each centroid is the mean of its points */
  for (int64_t j = 0; j < K; j++) {
    ASSERT_TRUE(count[j] > 0);
    for (int64_t t = 0; t < D; t++) {
      double s = 0;
      for (int64_t i = 0; i < N; i++)
        if (a[i] == j) s += x[i * D + t];
      ASSERT_NEAR(c[j * D + t], s / (double)count[j], 1e-5 * (1 + fabs(s / (double)count[j])));
    }
  }
  free(x);
  free(y);
  free(a);
}

TEST(kmeans_and_clustering_report_independent_of_threads) {
  enum { N = 3000, D = 16, K = 10 };
  float *x = malloc(sizeof(float) * N * D);
  int32_t *y = malloc(sizeof(int32_t) * N), *a1 = malloc(sizeof(int32_t) * N), *a2 = malloc(sizeof(int32_t) * N);
  dml_rng_fill_normal(x, N * D, 0.0f, 1.0f, 5, 0); /* no structure: many iterations */
  for (int i = 0; i < N; i++) y[i] = i % K;
  static float c1[K * D], c2[K * D];
  double in1, in2;
  dml_clustering_report r1, r2;
  const int threads = dml_get_num_threads();
  dml_set_num_threads(1);
  ASSERT_OK(dml_kmeans(x, N, D, K, 50, 2, a1, c1, &in1));
  ASSERT_OK(dml_eval_clustering(x, y, N, D, 2, &r1));
  dml_set_num_threads(3);
  ASSERT_OK(dml_kmeans(x, N, D, K, 50, 2, a2, c2, &in2));
  ASSERT_OK(dml_eval_clustering(x, y, N, D, 2, &r2));
  dml_set_num_threads(threads);
  ASSERT_TRUE(memcmp(a1, a2, sizeof(int32_t) * N) == 0);
  ASSERT_TRUE(memcmp(c1, c2, sizeof c1) == 0);
  ASSERT_TRUE(in1 == in2);
  ASSERT_TRUE(memcmp(&r1, &r2, sizeof r1) == 0);
  ASSERT_EQ_INT(r1.clusters, K);
  ASSERT_TRUE(r1.nmi >= 0 && r1.nmi < 0.1); /* random labels */
  /* another seed gives another start */
  ASSERT_OK(dml_kmeans(x, N, D, K, 0, 3, a2, NULL, NULL));
  ASSERT_OK(dml_kmeans(x, N, D, K, 0, 2, a1, NULL, NULL));
  ASSERT_TRUE(memcmp(a1, a2, sizeof(int32_t) * N) != 0);
  free(x);
  free(y);
  free(a1);
  free(a2);
}

TEST(kmeans_duplicates_and_separated_blobs) {
  float same[8 * 2];
  for (int i = 0; i < 16; i++) same[i] = 1.5f;
  int32_t a[8];
  double inertia = -1;
  ASSERT_OK(dml_kmeans(same, 8, 2, 3, 10, 1, a, NULL, &inertia)); /* only one distinct point */
  ASSERT_NEAR(inertia, 0.0, 0.0);
  for (int i = 0; i < 8; i++) ASSERT_TRUE(a[i] >= 0 && a[i] < 3);
  ASSERT_OK(dml_kmeans(same, 3, 2, 3, 10, 1, a, NULL, &inertia)); /* k == n */
  float pts[4] = {0, 1, 10, 11};
  ASSERT_OK(dml_kmeans(pts, 4, 1, 2, 10, 4, a, NULL, &inertia));
  ASSERT_TRUE(a[0] == a[1] && a[2] == a[3] && a[0] != a[2]);
  ASSERT_NEAR(inertia, 1.0, 1e-12);
  ASSERT_OK(dml_kmeans(pts, 4, 1, 1, 10, 4, a, NULL, &inertia));
  ASSERT_NEAR(inertia, 101.0, 1e-9);
}

TEST(nmi_ami_special_cases) {
  int32_t a[4] = {3, 3, 3, 3}, b[4] = {0, 1, 0, 1};
  double n1, n2, ami;
  ASSERT_OK(dml_nmi(a, a, 4, &n1, &n2));
  ASSERT_NEAR(n1, 1.0, 0.0);
  ASSERT_NEAR(n2, 1.0, 0.0);
  ASSERT_OK(dml_ami(a, b, 4, &ami));
  ASSERT_NEAR(ami, 0.0, 1e-15);
  ASSERT_OK(dml_nmi(a, b, 4, NULL, &n2));
  ASSERT_NEAR(n2, 0.0, 0.0);
  ASSERT_OK(dml_nmi(b, b, 4, &n1, NULL));
  ASSERT_NEAR(n1, 1.0, 1e-15);
  ASSERT_OK(dml_nmi(NULL, NULL, 0, &n1, &n2)); /* as sklearn: empty labellings match */
  ASSERT_NEAR(n1, 1.0, 0.0);
  ASSERT_OK(dml_ami(NULL, NULL, 0, &ami));
  ASSERT_NEAR(ami, 1.0, 0.0);
}

TEST(clustering_bad_input) {
  float x[6] = {0, 1, 2, 3, NAN, 5};
  int32_t y[3] = {0, 1, 2}, a[3];
  dml_clustering_report r;
  double v;
  ASSERT_ERROR(dml_kmeans(x, 2, 2, 3, 10, 1, a, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_kmeans(x, 2, 2, 0, 10, 1, a, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_kmeans(x, 2, 2, 1, -1, 1, a, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_kmeans(NULL, 2, 2, 1, 10, 1, a, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_kmeans(x, 3, 2, 2, 10, 1, a, NULL, NULL), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "row 2") != NULL);
  ASSERT_ERROR(dml_eval_clustering(x, y, 3, 2, 1, &r), DML_ERR_NOT_FINITE);
  ASSERT_ERROR(dml_eval_clustering(x, y, 0, 2, 1, &r), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_clustering(x, NULL, 2, 2, 1, &r), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_eval_clustering(x, y, 2, 2, 1, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_nmi(NULL, y, 3, &v, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_ami(y, y, -1, &v), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_ami(y, y, 3, NULL), DML_ERR_INVALID_ARGUMENT);
}
