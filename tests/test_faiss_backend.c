/* The FAISS backend (src/index/faiss_backend.h), built only with DML_HAVE_FAISS: recall@10 of
 * HNSW32, IVF64,Flat and IVF64,PQ16 against exact search (dml_knn_search) on clustered data;
 * training required or not; serialise -> deserialise gives identical results; truncated and
 * bit-flipped blobs are errors; bad factory strings, unknown parameters and bad arguments are
 * errors with a message. */
#include <stdlib.h>

#include "index/faiss_backend.h"
#include "test.h"

enum { D = 32, N = 10000, NQ = 200, K = 10, CLUSTERS = 500, LATENT = 4 };

/* Clustered data shaped like learned embeddings: CLUSTERS centres ~ N(0, 2^2) per coordinate;
 * each point its centre, plus a LATENT-dimensional variation along the cluster's own random
 * directions, plus N(0, 0.05^2) noise. Neighbours then differ by more than isotropic noise in
 * 32 dimensions would let them (where every point is about as far as every other), which is
 * what a product quantiser needs to rank them. `stream` keeps gallery and queries apart. */
static float *clustered(int64_t n, uint64_t stream) {
  float *x = malloc(sizeof(float) * (size_t)(n * D));
  for (int64_t i = 0; i < n; i++) {
    const uint64_t c = dml_rng_below(7, stream, (uint64_t)i, CLUSTERS);
    float z[LATENT];
    for (int l = 0; l < LATENT; l++) z[l] = dml_rng_normal(7, stream + 1, (uint64_t)(i * LATENT + l));
    for (int t = 0; t < D; t++) {
      float v = 2.0f * dml_rng_normal(7, 1000, c * D + (uint64_t)t);
      for (int l = 0; l < LATENT; l++)
        v += 0.5f * z[l] * dml_rng_normal(7, 2000 + c, (uint64_t)(t * LATENT + l));
      x[i * D + t] = v + 0.05f * dml_rng_normal(7, stream + 2, (uint64_t)(i * D + t));
    }
  }
  return x;
}

static float *gallery_data(void) {
  static float *g;
  if (!g) g = clustered(N, 1);
  return g;
}

static float *query_data(void) {
  static float *q;
  if (!q) q = clustered(NQ, 5);
  return q;
}

/* Exact top-K ids of the queries under `dist`, computed once per distance. */
static const int64_t *exact_ids(dml_distance dist) {
  static int64_t *l2, *dot;
  int64_t **slot = dist == DML_DIST_DOT ? &dot : &l2;
  if (!*slot) {
    *slot = malloc(sizeof(int64_t) * NQ * K);
    float *dv = malloc(sizeof(float) * NQ * K);
    if (dml_knn_search(gallery_data(), N, query_data(), NQ, D, dist, K, *slot, dv) != DML_OK) {
      fprintf(stderr, "  exact search failed: %s\n", dml_last_error());
      abort();
    }
    free(dv);
  }
  return *slot;
}

static double recall_at_k(const int64_t *approx, const int64_t *exact) {
  int64_t hits = 0;
  for (int64_t i = 0; i < NQ; i++)
    for (int64_t a = 0; a < K; a++)
      for (int64_t b = 0; b < K; b++)
        if (approx[i * K + a] == exact[i * K + b]) {
          hits++;
          break;
        }
  return (double)hits / (NQ * K);
}

/* Builds `factory` over the gallery (training on it when needed), sets one search parameter
 * and returns recall@K; NaN on any failure (after printing why). */
static double build_and_recall(const char *factory, const char *param, double value,
                               dml__faiss **keep) {
  dml__faiss *f = NULL;
  double r = NAN;
  int64_t *ids = malloc(sizeof(int64_t) * NQ * K);
  float *dv = malloc(sizeof(float) * NQ * K);
  if (dml__faiss_create(factory, D, 0, &f) != DML_OK) goto out;
  if (!dml__faiss_is_trained(f) && dml__faiss_train(f, gallery_data(), N) != DML_OK) goto out;
  if (dml__faiss_add(f, gallery_data(), N) != DML_OK) goto out;
  if (param && dml__faiss_set_param(f, param, value) != DML_OK) goto out;
  if (dml__faiss_search(f, query_data(), NQ, K, dv, ids) != DML_OK) goto out;
  r = recall_at_k(ids, exact_ids(DML_DIST_SQUARED_EUCLIDEAN));
  printf("  %-12s %s=%g: recall@%d = %.4f\n", factory, param ? param : "-", value, K, r);
out:
  if (isnan(r)) fprintf(stderr, "  %s: %s\n", factory, dml_last_error());
  if (keep && !isnan(r)) *keep = f;
  else dml__faiss_free(f);
  free(ids);
  free(dv);
  return r;
}

/* serialise -> deserialise: same description, count, training and bit-identical results.
 * Returns 0 on success (after printing what differed otherwise); frees f. */
static int roundtrip_identical(dml__faiss *f) {
  dml__faiss *g = NULL;
  uint8_t *blob = NULL;
  size_t len = 0;
  int ok = 0;
  int64_t *ids1 = malloc(sizeof(int64_t) * NQ * K), *ids2 = malloc(sizeof(int64_t) * NQ * K);
  float *dv1 = malloc(sizeof(float) * NQ * K), *dv2 = malloc(sizeof(float) * NQ * K);
  if (dml__faiss_search(f, query_data(), NQ, K, dv1, ids1) != DML_OK ||
      dml__faiss_serialize(f, &blob, &len) != DML_OK ||
      dml__faiss_deserialize(blob, len, &g) != DML_OK) {
    fprintf(stderr, "  roundtrip of %s: %s\n", dml__faiss_description(f), dml_last_error());
    goto out;
  }
  /* the search parameter travels inside FAISS's own serialisation */
  if (dml__faiss_search(g, query_data(), NQ, K, dv2, ids2) != DML_OK) {
    fprintf(stderr, "  search after roundtrip: %s\n", dml_last_error());
    goto out;
  }
  ok = strcmp(dml__faiss_description(f), dml__faiss_description(g)) == 0 &&
       dml__faiss_ntotal(g) == dml__faiss_ntotal(f) && dml__faiss_is_trained(g) &&
       dml__faiss_min_train(g) == dml__faiss_min_train(f) &&
       memcmp(ids1, ids2, sizeof(int64_t) * NQ * K) == 0 &&
       memcmp(dv1, dv2, sizeof(float) * NQ * K) == 0;
  if (!ok) fprintf(stderr, "  %s differs after serialise/deserialise\n", dml__faiss_description(f));
  else printf("  %s: %zu bytes serialised, identical results after reading back\n",
              dml__faiss_description(f), len);
out:
  dml__faiss_free(f);
  dml__faiss_free(g);
  free(blob);
  free(ids1);
  free(ids2);
  free(dv1);
  free(dv2);
  return ok ? 0 : 1;
}

TEST(hnsw_needs_no_training_recalls_and_roundtrips) {
  dml__faiss *f = NULL;
  ASSERT_OK(dml__faiss_create("HNSW32", D, 0, &f));
  ASSERT_EQ_INT(dml__faiss_is_trained(f), 1);
  ASSERT_EQ_INT(dml__faiss_min_train(f), 0);
  ASSERT_TRUE(strcmp(dml__faiss_description(f), "HNSW32 (L2)") == 0);
  dml__faiss_free(f);
  f = NULL;
  const double r = build_and_recall("HNSW32", "efSearch", 64, &f);
  ASSERT_TRUE(r >= 0.95);
  ASSERT_EQ_INT(roundtrip_identical(f), 0);
}

TEST(ivf_flat_trains_recalls_and_roundtrips) {
  dml__faiss *f = NULL;
  ASSERT_OK(dml__faiss_create("IVF64,Flat", D, 0, &f));
  ASSERT_EQ_INT(dml__faiss_is_trained(f), 0);
  ASSERT_EQ_INT(dml__faiss_min_train(f), 64);
  ASSERT_ERROR(dml__faiss_add(f, gallery_data(), 10), DML_ERR_STATE);
  ASSERT_ERROR(dml__faiss_search(f, query_data(), 1, K, (float[K]){0}, (int64_t[K]){0}),
               DML_ERR_STATE);
  ASSERT_ERROR(dml__faiss_train(f, gallery_data(), 63), DML_ERR_INVALID_ARGUMENT);
  ASSERT_EQ_INT(dml__faiss_is_trained(f), 0);
  dml__faiss_free(f);
  f = NULL;
  const double r = build_and_recall("IVF64,Flat", "nprobe", 16, &f);
  ASSERT_TRUE(r >= 0.95);
  ASSERT_EQ_INT(roundtrip_identical(f), 0);
}

TEST(ivf_pq_trains_recalls_and_roundtrips) {
  dml__faiss *f = NULL;
  ASSERT_OK(dml__faiss_create("IVF64,PQ16", D, 0, &f));
  ASSERT_EQ_INT(dml__faiss_is_trained(f), 0);
  ASSERT_EQ_INT(dml__faiss_min_train(f), 256); /* 2^8 centroids per sub-quantizer */
  dml__faiss_free(f);
  f = NULL;
  const double r = build_and_recall("IVF64,PQ16", "nprobe", 16, &f);
  ASSERT_TRUE(r >= 0.95);
  ASSERT_EQ_INT(roundtrip_identical(f), 0);
}

TEST(min_train_of_other_kinds) {
  static const struct {
    const char *factory;
    int64_t want;
  } cases[] = {{"Flat", 0}, {"PQ8", 256}, {"PQ8x4", 16}, {"IVF32,PQ8x4", 32},
               {"HNSW16_PQ8", 256}, {"SQ8", 1}, {"PCA16,IVF8,Flat", 8}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dml__faiss *f = NULL;
    ASSERT_OK(dml__faiss_create(cases[i].factory, D, 0, &f));
    const int64_t got = dml__faiss_min_train(f);
    dml__faiss_free(f);
    if (got != cases[i].want) fprintf(stderr, "  %s\n", cases[i].factory);
    ASSERT_EQ_INT(got, cases[i].want);
  }
}

TEST(inner_product_on_normalised_vectors) {
  /* HNSW under inner product against exact DML_DIST_DOT, on unit-length copies */
  float *g = malloc(sizeof(float) * N * D), *q = malloc(sizeof(float) * NQ * D);
  memcpy(g, gallery_data(), sizeof(float) * N * D);
  memcpy(q, query_data(), sizeof(float) * NQ * D);
  for (int64_t i = 0; i < N + NQ; i++) {
    float *row = i < N ? g + i * D : q + (i - N) * D;
    double s = 0;
    for (int t = 0; t < D; t++) s += (double)row[t] * row[t];
    for (int t = 0; t < D; t++) row[t] = (float)(row[t] / sqrt(s));
  }
  int64_t *ex = malloc(sizeof(int64_t) * NQ * K), *ids = malloc(sizeof(int64_t) * NQ * K);
  float *dv = malloc(sizeof(float) * NQ * K), *ev = malloc(sizeof(float) * NQ * K);
  dml__faiss *f = NULL;
  ASSERT_OK(dml_knn_search(g, N, q, NQ, D, DML_DIST_DOT, K, ex, ev));
  ASSERT_OK(dml__faiss_create("HNSW32", D, 1, &f));
  ASSERT_TRUE(strcmp(dml__faiss_description(f), "HNSW32 (inner product)") == 0);
  ASSERT_OK(dml__faiss_add(f, g, N));
  ASSERT_OK(dml__faiss_set_param(f, "efSearch", 64));
  ASSERT_OK(dml__faiss_search(f, q, NQ, K, dv, ids));
  int64_t hits = 0;
  for (int64_t i = 0; i < NQ; i++)
    for (int64_t a = 0; a < K; a++)
      for (int64_t b = 0; b < K; b++)
        if (ids[i * K + a] == ex[i * K + b]) {
          hits++;
          break;
        }
  const double r = (double)hits / (NQ * K);
  printf("  HNSW32 (inner product) efSearch=64: recall@%d = %.4f\n", K, r);
  ASSERT_TRUE(r >= 0.95);
  /* similarities, largest first, match the exact ones where the ids agree */
  ASSERT_EQ_INT(ids[0], ex[0]);
  ASSERT_NEAR(dv[0], ev[0], 1e-4);
  ASSERT_TRUE(dv[0] >= dv[K - 1]);
  dml__faiss_free(f);
  free(g);
  free(q);
  free(ex);
  free(ids);
  free(dv);
  free(ev);
}

TEST(reset_keeps_training) {
  dml__faiss *f = NULL;
  int64_t ids1[K], ids2[K];
  float dv1[K], dv2[K];
  ASSERT_OK(dml__faiss_create("IVF64,Flat", D, 0, &f));
  ASSERT_OK(dml__faiss_train(f, gallery_data(), N));
  ASSERT_OK(dml__faiss_add(f, gallery_data(), N));
  ASSERT_OK(dml__faiss_search(f, query_data(), 1, K, dv1, ids1));
  ASSERT_ERROR(dml__faiss_train(f, gallery_data(), N), DML_ERR_STATE);
  ASSERT_OK(dml__faiss_reset(f));
  ASSERT_EQ_INT(dml__faiss_ntotal(f), 0);
  ASSERT_EQ_INT(dml__faiss_is_trained(f), 1);
  /* an empty index answers with id -1 */
  ASSERT_OK(dml__faiss_search(f, query_data(), 1, K, dv2, ids2));
  ASSERT_EQ_INT(ids2[0], -1);
  ASSERT_OK(dml__faiss_add(f, gallery_data(), N));
  ASSERT_EQ_INT(dml__faiss_ntotal(f), N);
  ASSERT_OK(dml__faiss_search(f, query_data(), 1, K, dv2, ids2));
  ASSERT_TRUE(memcmp(ids1, ids2, sizeof ids1) == 0);
  dml__faiss_free(f);
}

TEST(k_beyond_ntotal_pads_with_minus_one) {
  dml__faiss *f = NULL;
  int64_t ids[K];
  float dv[K];
  ASSERT_OK(dml__faiss_create("HNSW32", D, 0, &f));
  ASSERT_OK(dml__faiss_add(f, gallery_data(), 3));
  ASSERT_OK(dml__faiss_search(f, gallery_data(), 1, K, dv, ids));
  ASSERT_EQ_INT(ids[0], 0);
  ASSERT_NEAR(dv[0], 0.0, 1e-4);
  for (int j = 3; j < K; j++) ASSERT_EQ_INT(ids[j], -1);
  dml__faiss_free(f);
}

/* A small blob (an IVF index with a few vectors) to corrupt. */
static void small_blob(uint8_t **blob, size_t *len) {
  dml__faiss *f = NULL;
  *blob = NULL;
  if (dml__faiss_create("IVF4,Flat", D, 0, &f) == DML_OK &&
      dml__faiss_train(f, gallery_data(), 200) == DML_OK &&
      dml__faiss_add(f, gallery_data(), 50) == DML_OK)
    dml__faiss_serialize(f, blob, len);
  dml__faiss_free(f);
}

TEST(truncated_blobs_are_errors) {
  uint8_t *blob;
  size_t len;
  small_blob(&blob, &len);
  ASSERT_TRUE(blob != NULL);
  dml__faiss *g = NULL;
  ASSERT_OK(dml__faiss_deserialize(blob, len, &g));
  ASSERT_EQ_INT(dml__faiss_ntotal(g), 50);
  dml__faiss_free(g);
  for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 97)) {
    g = (dml__faiss *)blob; /* must be overwritten with NULL */
    ASSERT_ERROR(dml__faiss_deserialize(blob, cut, &g), DML_ERR_FORMAT);
    ASSERT_TRUE(g == NULL);
  }
  ASSERT_ERROR(dml__faiss_deserialize(blob, len - 1, &g), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "truncated") != NULL);
  /* trailing bytes */
  uint8_t *longer = malloc(len + 1);
  memcpy(longer, blob, len);
  longer[len] = 0;
  ASSERT_ERROR(dml__faiss_deserialize(longer, len + 1, &g), DML_ERR_FORMAT);
  free(longer);
  ASSERT_ERROR(dml__faiss_deserialize(NULL, 0, &g), DML_ERR_FORMAT);
  free(blob);
}

TEST(bit_flipped_blobs_are_errors) {
  uint8_t *blob;
  size_t len;
  small_blob(&blob, &len);
  ASSERT_TRUE(blob != NULL);
  for (size_t pos = 0; pos < len; pos += (pos < 128 ? 1 : 61)) {
    for (int bit = 0; bit < 8; bit += 3) {
      blob[pos] ^= (uint8_t)(1u << bit);
      dml__faiss *g = NULL;
      dml_clear_error();
      const dml_status s = dml__faiss_deserialize(blob, len, &g);
      blob[pos] ^= (uint8_t)(1u << bit);
      if (s == DML_OK || g != NULL || dml_last_error()[0] == '\0')
        fprintf(stderr, "  flip of bit %d at byte %zu of %zu: %s\n", bit, pos, len,
                dml_status_str(s));
      ASSERT_TRUE(s == DML_ERR_FORMAT || s == DML_ERR_UNSUPPORTED);
      ASSERT_TRUE(g == NULL);
      ASSERT_TRUE(dml_last_error()[0] != '\0');
    }
  }
  blob[0] = 'X';
  dml__faiss *g = NULL;
  ASSERT_ERROR(dml__faiss_deserialize(blob, len, &g), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "magic") != NULL);
  free(blob);
}

TEST(bad_factory_string_reports_faiss_message) {
  dml__faiss *f = (dml__faiss *)&f;
  ASSERT_ERROR(dml__faiss_create("IVF64,Bogus99", D, 0, &f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(f == NULL);
  /* dml's words and FAISS's own */
  ASSERT_TRUE(strstr(dml_last_error(), "IVF64,Bogus99") != NULL);
  printf("  message: %s\n", dml_last_error());
  ASSERT_ERROR(dml__faiss_create("", D, 0, &f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_create(NULL, D, 0, &f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_create("Flat", 0, 0, &f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_create("Flat", (int64_t)1 << 40, 0, &f), DML_ERR_INVALID_ARGUMENT);
  /* PQ16 needs a dimension divisible by 16 */
  ASSERT_ERROR(dml__faiss_create("PQ16", 30, 0, &f), DML_ERR_INVALID_ARGUMENT);
}

TEST(set_param_errors) {
  dml__faiss *f = NULL;
  ASSERT_OK(dml__faiss_create("IVF64,Flat", D, 0, &f));
  ASSERT_OK(dml__faiss_set_param(f, "nprobe", 8));
  ASSERT_ERROR(dml__faiss_set_param(f, "noSuchParam", 1), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "noSuchParam") != NULL);
  ASSERT_ERROR(dml__faiss_set_param(f, "efSearch", 16), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_set_param(f, "nprobe", NAN), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_set_param(f, "nprobe", 1e300), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_set_param(f, "", 1), DML_ERR_INVALID_ARGUMENT);
  dml__faiss_free(f);
  ASSERT_OK(dml__faiss_create("HNSW32", D, 0, &f));
  ASSERT_OK(dml__faiss_set_param(f, "efSearch", 16));
  ASSERT_ERROR(dml__faiss_set_param(f, "nprobe", 4), DML_ERR_INVALID_ARGUMENT);
  dml__faiss_free(f);
}

TEST(bad_arguments) {
  dml__faiss *f = NULL;
  int64_t ids[K];
  float dv[K];
  float x[2 * D];
  memcpy(x, gallery_data(), sizeof x);
  ASSERT_OK(dml__faiss_create("HNSW32", D, 0, &f));
  ASSERT_OK(dml__faiss_add(f, x, 0));
  ASSERT_ERROR(dml__faiss_add(f, x, -1), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_add(f, NULL, 2), DML_ERR_INVALID_ARGUMENT);
  x[D + 3] = NAN;
  ASSERT_ERROR(dml__faiss_add(f, x, 2), DML_ERR_NOT_FINITE);
  ASSERT_EQ_INT(dml__faiss_ntotal(f), 0);
  ASSERT_ERROR(dml__faiss_search(f, x, 1, 0, dv, ids), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml__faiss_search(f, x, 2, K, dv, ids), DML_ERR_NOT_FINITE);
  ASSERT_ERROR(dml__faiss_search(f, x, 1, K, NULL, ids), DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml__faiss_search(f, x, 0, K, dv, ids));
  ASSERT_ERROR(dml__faiss_serialize(f, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  dml__faiss_free(f);
  dml__faiss_free(NULL);
  ASSERT_EQ_INT(dml__faiss_ntotal(NULL), 0);
  ASSERT_EQ_INT(dml__faiss_is_trained(NULL), 0);
  ASSERT_TRUE(strcmp(dml__faiss_description(NULL), "") == 0);
}
