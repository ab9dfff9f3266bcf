/* The softmax family (multi_similarity, circle, supcon, ntxent, npair): PyTorch reference
 * fixtures with finite differences, edge cases (one class, no valid pair, a class of one,
 * duplicates, a zero vector, B = 1, labels that are not 0..C-1, huge logits), the same result
 * for any thread count, and the errors of the family's options. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss_check.h"
#include "test.h"

TEST(softmax_fixtures) { ASSERT_EQ_INT(loss_check_file("fixtures/losses_softmax.json"), 0); }

/* Every loss of the family, with the default spec and variants that change the code path. */
static const char *const specs[] = {
    "multi_similarity",
    "multi_similarity miner=all",
    "multi_similarity miner=all distance=euclidean reduction=nonzero",
    "circle",
    "circle distance=dot normalize=0 reduction=mean",
    "supcon",
    "supcon distance=squared_euclidean reduction=mean",
    "ntxent",
    "ntxent distance=dot normalize=0 reduction=nonzero",
    "npair",
    "npair distance=cosine reduction=nonzero",
};
#define N_SPECS ((int)(sizeof specs / sizeof specs[0]))

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return *s >> 33;
}

static void fill(float *x, int64_t n, uint64_t seed, float scale) {
  for (int64_t k = 0; k < n; k++)
    x[k] = scale * ((float)(lcg(&seed) % 20001) / 10000.0f - 1.0f);
}

static int all_zero(const float *g, int64_t n) {
  for (int64_t k = 0; k < n; k++)
    if (g[k] != 0.0f) return 0;
  return 1;
}

/* Runs every spec on (emb, labels); requires finiteness, and when zero_for[s] an exact zero
 * loss and gradient. */
static int run_all(const char *what, const float *emb, const int32_t *labels, int64_t b,
                   int64_t d, const int *zero_for) {
  float grad[512];
  int ok = 1;
  for (int s = 0; s < N_SPECS; s++) {
    float loss = NAN;
    dml_status st = loss_check_finite(specs[s], NULL, emb, labels, b, d, &loss, grad);
    if (st != DML_OK) {
      fprintf(stderr, "  %s: '%s' failed: %s\n", what, specs[s], dml_last_error());
      ok = 0;
      continue;
    }
    if (zero_for && zero_for[s] && (loss != 0.0f || !all_zero(grad, b * d))) {
      fprintf(stderr, "  %s: '%s' gives loss %g (want exactly 0 and a zero gradient)\n", what,
              specs[s], loss);
      ok = 0;
    }
  }
  return ok;
}

TEST(softmax_one_class) {
  float emb[6 * 4];
  fill(emb, 24, 1, 1.0f);
  const int32_t labels[6] = {3, 3, 3, 3, 3, 3};
  /* no negative: the miner keeps nothing, circle needs a negative, NT-Xent terms are -log 1;
   * multi_similarity miner=all (its positive terms), supcon and npair (one pair: CE 0 plus
   * the norm penalty) are not zero */
  const int zero[N_SPECS] = {1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0};
  ASSERT_TRUE(run_all("one class", emb, labels, 6, 4, zero));
}

TEST(softmax_no_positive_pair) {
  float emb[5 * 4];
  fill(emb, 20, 2, 1.0f);
  const int32_t labels[5] = {0, 1, 2, 3, 4};
  /* only multi_similarity miner=all has terms (its negatives) */
  const int zero[N_SPECS] = {1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  ASSERT_TRUE(run_all("no positive pair", emb, labels, 5, 4, zero));
}

TEST(softmax_single_example_class) {
  float emb[7 * 5];
  fill(emb, 35, 3, 1.0f);
  const int32_t labels[7] = {0, 0, 1, 1, 1, 2, 0};
  ASSERT_TRUE(run_all("class of one", emb, labels, 7, 5, NULL));
}

TEST(softmax_duplicates_and_zero_vector) {
  float emb[6 * 4];
  fill(emb, 24, 4, 1.0f);
  memcpy(emb + 4, emb, 4 * sizeof(float));      /* row 1 == row 0 (same class) */
  memcpy(emb + 3 * 4, emb, 4 * sizeof(float));  /* row 3 == row 0 (other class) */
  memset(emb + 5 * 4, 0, 4 * sizeof(float));    /* row 5 is zero */
  const int32_t labels[6] = {0, 0, 1, 1, 2, 2};
  ASSERT_TRUE(run_all("duplicates / zero vector", emb, labels, 6, 4, NULL));
  float zeros[4 * 3] = {0};
  const int32_t l2[4] = {0, 0, 1, 1};
  ASSERT_TRUE(run_all("all-zero batch", zeros, l2, 4, 3, NULL));
}

TEST(softmax_batch_of_one) {
  const float emb[3] = {0.3f, -0.2f, 0.9f};
  const int32_t labels[1] = {5};
  const int zero[N_SPECS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  ASSERT_TRUE(run_all("B = 1", emb, labels, 1, 3, zero));
}

TEST(softmax_labels_not_0_to_c) {
  float emb[9 * 4];
  fill(emb, 36, 5, 1.0f);
  const int32_t labels[9] = {7, 42, -3, 42, 7, -3, 100000, 42, 7};
  ASSERT_TRUE(run_all("labels 7, 42, -3", emb, labels, 9, 4, NULL));
}

TEST(softmax_huge_logits_stay_finite) {
  /* raw dot products of 1e3-sized vectors (logits ~1e6) and tiny temperatures */
  float emb[8 * 4];
  fill(emb, 32, 6, 1000.0f);
  const int32_t labels[8] = {0, 0, 1, 1, 2, 2, 3, 3};
  const char *const big[] = {
      "npair", "npair l2_reg=0", "supcon temperature=0.0001", "ntxent temperature=0.0001",
      "supcon distance=dot normalize=0", "ntxent distance=dot normalize=0",
      "multi_similarity miner=all distance=dot normalize=0 beta=1000",
      "circle gamma=100000", "circle distance=dot normalize=0",
  };
  for (size_t k = 0; k < sizeof big / sizeof big[0]; k++) {
    float loss = NAN, grad[32];
    ASSERT_OK(loss_check_finite(big[k], NULL, emb, labels, 8, 4, &loss, grad));
  }
}

TEST(softmax_cross_batch_memory) {
  /* memory columns are extra references (gradient to the batch side only) */
  float emb[8 * 4], grad[8 * 4];
  const int32_t labels[8] = {0, 1, 2, 3, 0, 1, 2, 3};
  for (int s = 0; s < N_SPECS; s++) {
    char spec[160];
    snprintf(spec, sizeof spec, "%s memory=12", specs[s]);
    dml_loss *l = NULL;
    ASSERT_OK(dml_loss_new(spec, NULL, &l));
    for (int step = 0; step < 3; step++) {
      fill(emb, 32, 100 + (uint64_t)step, 1.0f);
      float loss = NAN;
      ASSERT_OK(dml_loss_compute(l, emb, labels, 8, 4, NULL, &loss, grad));
      int finite = isfinite(loss);
      for (int k = 0; k < 32; k++) finite &= isfinite(grad[k]);
      if (!finite) {
        fprintf(stderr, "  '%s' step %d: non-finite loss %g or gradient\n", spec, step, loss);
        dml_loss_free(l);
        ASSERT_TRUE(0);
      }
    }
    ASSERT_EQ_INT(dml_loss_memory_size(l), 12);
    dml_loss_free(l);
  }
}

/* Batches large enough for the parallel path: one thread and two give identical bits. */
TEST(softmax_same_result_for_any_thread_count) {
  enum { B = 160, D = 8 };
  float *emb = malloc(B * D * sizeof(float));
  float *g1 = malloc(B * D * sizeof(float)), *g2 = malloc(B * D * sizeof(float));
  ASSERT_TRUE(emb && g1 && g2);
  fill(emb, B * D, 7, 1.0f);
  int32_t labels[B];
  for (int i = 0; i < B; i++) labels[i] = (i * 7) % 13;
  const int saved = dml_get_num_threads();
  int ok = 1;
  for (int s = 0; s < N_SPECS && ok; s++) {
    float l1 = NAN, l2 = NAN;
    dml_set_num_threads(1);
    ok &= loss_check_finite(specs[s], NULL, emb, labels, B, D, &l1, g1) == DML_OK;
    dml_set_num_threads(2);
    ok &= loss_check_finite(specs[s], NULL, emb, labels, B, D, &l2, g2) == DML_OK;
    if (ok && (memcmp(&l1, &l2, sizeof l1) || memcmp(g1, g2, B * D * sizeof(float)))) {
      fprintf(stderr, "  '%s' differs between 1 and 2 threads (%.9g vs %.9g)\n", specs[s], l1,
              l2);
      ok = 0;
    }
  }
  dml_set_num_threads(saved);
  free(emb);
  free(g1);
  free(g2);
  ASSERT_TRUE(ok);
}

TEST(softmax_option_errors) {
  const char *const bad[] = {
      "multi_similarity gamma=2", "circle temperature=0.1", "supcon margin=1",
      "ntxent l2_reg=1",          "npair temperature=1",    "multi_similarity alpha=0",
      "circle gamma=-1",          "supcon temperature=0",   "ntxent temperature=-0.5",
      "npair l2_reg=-1",          "circle m=nan",
      /* circle is defined on similarities; npair builds its own pairs */
      "circle distance=euclidean", "circle distance=squared_euclidean",
      "npair miner=multi_similarity",
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    dml_loss *l = NULL;
    ASSERT_ERROR(dml_loss_new(bad[k], NULL, &l), DML_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(l == NULL);
  }
  /* the unknown-option message lists the loss's own options */
  dml_loss *l = NULL;
  ASSERT_ERROR(dml_loss_new("supcon tau=0.1", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "temperature") != NULL);
  ASSERT_ERROR(dml_loss_new("circle margin=0.1", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "gamma") != NULL);
  /* the canonical spec spells every option out, the default miner included */
  ASSERT_OK(dml_loss_new("multi_similarity", NULL, &l));
  const char *spec = dml_loss_spec(l);
  ASSERT_TRUE(strstr(spec, "alpha=2") && strstr(spec, "beta=50") && strstr(spec, "base=0.5"));
  ASSERT_TRUE(strstr(spec, "miner=multi_similarity") && strstr(spec, "miner.epsilon=0.1"));
  dml_loss_free(l);
  ASSERT_OK(dml_loss_new("npair", NULL, &l));
  ASSERT_TRUE(strstr(dml_loss_spec(l), "distance=dot normalize=0") != NULL);
  dml_loss_free(l);
}
