/* kNN classification against a plain loop (majority with the nearer-neighbour tie rule and
 * distance-weighted votes), the classification report's conventions, ROC AUC against the
 * O(n^2) pair count, and bad input. */
#include <stdlib.h>

#include "test.h"

typedef struct {
  double v;
  int64_t id;
} nb;

static int nb_cmp(const void *a, const void *b) {
  const nb *x = a, *y = b;
  if (x->v != y->v) return x->v < y->v ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

static void fill_ints(float *x, int64_t n, uint64_t seed, int range) {
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)((int)dml_rng_below(seed, 0, (uint64_t)i, (uint64_t)(2 * range + 1)) - range);
}

/* Plain kNN vote for query q; returns the class, fills share[c]. */
static int32_t plain_vote(const float *ref, const int32_t *y, int64_t nr, const float *q,
                          int64_t d, dml_distance dist, int64_t k, dml_vote vote, int32_t nc,
                          double *share) {
  nb *h = malloc((size_t)nr * sizeof *h);
  for (int64_t j = 0; j < nr; j++) {
    double dot = 0, sq = 0;
    for (int64_t t = 0; t < d; t++) {
      dot += (double)q[t] * ref[j * d + t];
      sq += ((double)q[t] - ref[j * d + t]) * ((double)q[t] - ref[j * d + t]);
    }
    h[j] = (nb){dist == DML_DIST_DOT ? -dot : sq, j};
  }
  qsort(h, (size_t)nr, sizeof *h, nb_cmp);
  if (k > nr) k = nr;
  double total = 0;
  int64_t first[64];
  for (int32_t c = 0; c < nc; c++) share[c] = 0, first[c] = k;
  for (int64_t j = 0; j < k; j++) {
    double w = 1;
    if (vote == DML_VOTE_DISTANCE)
      w = dist == DML_DIST_DOT ? exp(-h[j].v + h[0].v) : 1.0 / (sqrt(h[j].v) + 1e-12);
    share[y[h[j].id]] += w;
    total += w;
    if (first[y[h[j].id]] == k) first[y[h[j].id]] = j;
  }
  int32_t best = 0;
  for (int32_t c = 1; c < nc; c++)
    if (share[c] > share[best] || (share[c] == share[best] && first[c] < first[best])) best = c;
  for (int32_t c = 0; c < nc; c++) share[c] /= total;
  free(h);
  return best;
}

TEST(knn_classify_matches_plain_loop) {
  enum { NR = 500, NQ = 120, D = 4, C = 6 };
  float *r = malloc(sizeof(float) * NR * D), *q = malloc(sizeof(float) * NQ * D);
  int32_t y[NR], pred[NQ];
  float *scores = malloc(sizeof(float) * NQ * C);
  fill_ints(r, NR * D, 1, 3);
  fill_ints(q, NQ * D, 2, 3);
  for (int i = 0; i < NR; i++) y[i] = (int32_t)dml_rng_below(3, 0, (uint64_t)i, C - 1); /* class 5 unused */
  double share[C];
  const dml_distance dists[2] = {DML_DIST_EUCLIDEAN, DML_DIST_DOT};
  const int64_t ks[3] = {1, 4, 15};
  for (int m = 0; m < 2; m++)
    for (int v = 0; v < 2; v++)
      for (int kk = 0; kk < 3; kk++) {
        const dml_vote vote = v ? DML_VOTE_DISTANCE : DML_VOTE_MAJORITY;
        ASSERT_OK(dml_knn_classify(r, y, NR, q, NQ, D, dists[m], ks[kk], vote, C, pred, scores));
        for (int64_t i = 0; i < NQ; i++) {
          const int32_t want = plain_vote(r, y, NR, q + i * D, D, dists[m], ks[kk], vote, C, share);
          ASSERT_EQ_INT(pred[i], want);
          double sum = 0;
          for (int32_t c = 0; c < C; c++) {
            ASSERT_NEAR(scores[i * C + c], share[c], 1e-6);
            sum += scores[i * C + c];
          }
          ASSERT_NEAR(sum, 1.0, 1e-5);
        }
      }
  /* k beyond the reference set: every reference item votes */
  ASSERT_OK(dml_knn_classify(r, y, 7, q, NQ, D, DML_DIST_EUCLIDEAN, 50, DML_VOTE_MAJORITY, C, pred, NULL));
  for (int64_t i = 0; i < NQ; i++)
    ASSERT_EQ_INT(pred[i], plain_vote(r, y, 7, q + i * D, D, DML_DIST_EUCLIDEAN, 7, DML_VOTE_MAJORITY, C, share));
  free(r);
  free(q);
  free(scores);
}

TEST(knn_classify_cosine_and_ties) {
  /* two references at the same place with different classes: the lower index wins k=2 ties */
  float r[6] = {1, 0, 1, 0, -1, 0}, q[2] = {2, 0};
  int32_t y[3] = {1, 0, 0}, pred;
  float s[2];
  ASSERT_OK(dml_knn_classify(r, y, 3, q, 1, 2, DML_DIST_COSINE, 2, DML_VOTE_MAJORITY, 2, &pred, s));
  ASSERT_EQ_INT(pred, 1);
  ASSERT_NEAR(s[0], 0.5, 1e-7);
  ASSERT_OK(dml_knn_classify(r, y, 3, q, 1, 2, DML_DIST_COSINE, 3, DML_VOTE_DISTANCE, 2, &pred, s));
  ASSERT_EQ_INT(pred, 1); /* weights 2, 2, 0 */
  ASSERT_NEAR(s[1], 0.5, 1e-7);
  float far[2] = {-1, 0};
  ASSERT_OK(dml_knn_classify(r + 4, y + 2, 1, far + 0, 1, 2, DML_DIST_COSINE, 1, DML_VOTE_DISTANCE, 2, &pred, s));
  ASSERT_EQ_INT(pred, 0);
  ASSERT_OK(dml_knn_classify(r, y, 1, q, 0, 2, DML_DIST_COSINE, 1, DML_VOTE_DISTANCE, 2, NULL, NULL));
}

TEST(knn_classify_bad_input) {
  float r[4] = {0, 1, 2, 3}, q[2] = {0, 0}, bad[2] = {NAN, 0};
  int32_t y[2] = {0, 1}, yb[2] = {0, 2}, pred[1];
  const dml_distance e = DML_DIST_EUCLIDEAN;
  const dml_vote m = DML_VOTE_MAJORITY;
  ASSERT_ERROR(dml_knn_classify(r, yb, 2, q, 1, 2, e, 1, m, 2, pred, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "reference label 1") != NULL);
  ASSERT_ERROR(dml_knn_classify(r, y, 0, q, 1, 2, e, 1, m, 2, pred, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_classify(r, y, 2, q, 1, 2, e, 0, m, 2, pred, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_classify(r, y, 2, q, 1, 2, e, 1, m, 0, pred, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_classify(r, y, 2, q, 1, 2, e, 1, (dml_vote)7, 2, pred, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_classify(r, y, 2, q, 1, 2, e, 1, m, 2, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_classify(NULL, y, 2, q, 1, 2, e, 1, m, 2, pred, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_knn_classify(r, y, 2, bad, 1, 2, e, 1, m, 2, pred, NULL), DML_ERR_NOT_FINITE);
}

TEST(classification_report_conventions) {
  int32_t t[5] = {0, 0, 1, 1, 1}, p[5] = {0, 1, 1, 1, 1};
  dml_classification_report r;
  ASSERT_OK(dml_classification_report_compute(t, p, 5, 3, &r));
  ASSERT_NEAR(r.accuracy, 0.8, 1e-15);
  ASSERT_NEAR(r.precision[0], 1.0, 0);
  ASSERT_NEAR(r.recall[0], 0.5, 0);
  ASSERT_NEAR(r.specificity[0], 1.0, 0);
  ASSERT_NEAR(r.precision[1], 0.75, 0);
  ASSERT_NEAR(r.specificity[1], 0.5, 0);
  ASSERT_NEAR(r.f1[2], 0.0, 0); /* class 2: never seen, not in the macro average */
  ASSERT_NEAR(r.macro_f1, (2.0 / 3 + 6.0 / 7) / 2, 1e-15);
  ASSERT_NEAR(r.weighted_f1, (2 * 2.0 / 3 + 3 * 6.0 / 7) / 5, 1e-15);
  ASSERT_EQ_INT(r.confusion[0 * 3 + 1], 1);
  ASSERT_EQ_INT(r.support[1], 3);
  dml_classification_report_free(&r);
  dml_classification_report_free(&r); /* cleared: a second free is a no-op */
  dml_classification_report_free(NULL);
  ASSERT_OK(dml_classification_report_compute(NULL, NULL, 0, 2, &r));
  ASSERT_NEAR(r.accuracy, 0.0, 0);
  dml_classification_report_free(&r);
  int32_t bad[2] = {0, 3};
  ASSERT_ERROR(dml_classification_report_compute(t, bad, 2, 3, &r), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "pred[1] is 3") != NULL);
  ASSERT_ERROR(dml_classification_report_compute(bad, t, 2, 3, &r), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_classification_report_compute(t, p, 5, 0, &r), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_classification_report_compute(t, p, 5, 3, NULL), DML_ERR_INVALID_ARGUMENT);
}

TEST(roc_auc_matches_pair_count) {
  enum { N = 3000 };
  float *s = malloc(sizeof(float) * N);
  uint8_t *pos = malloc(N);
  for (int i = 0; i < N; i++) {
    pos[i] = dml_rng_uniform(1, 0, (uint64_t)i) < 0.3f;
    s[i] = (float)(int)(10 * dml_rng_uniform(1, 1, (uint64_t)i)) + (pos[i] ? 0.5f : 0.0f) * (i % 3 == 0);
  }
  double u = 0, np = 0, nn = 0;
  for (int i = 0; i < N; i++) {
    if (!pos[i]) {
      nn++;
      continue;
    }
    np++;
    for (int j = 0; j < N; j++)
      if (!pos[j]) u += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
  }
  double auc;
  ASSERT_OK(dml_roc_auc(s, pos, N, &auc));
  ASSERT_NEAR(auc, u / (np * nn), 1e-12);
  /* a big input stays quick (O(n log n)) */
  enum { BIG = 1000000 };
  float *bs = malloc(sizeof(float) * BIG);
  uint8_t *bp = malloc(BIG);
  for (int i = 0; i < BIG; i++) {
    bp[i] = (uint8_t)(i & 1);
    bs[i] = dml_rng_uniform(2, 0, (uint64_t)i) + 0.1f * bp[i];
  }
  ASSERT_OK(dml_roc_auc(bs, bp, BIG, &auc));
  ASSERT_TRUE(auc > 0.55 && auc < 0.65);
  free(bs);
  free(bp);
  free(s);
  free(pos);
}

TEST(auc_bad_input) {
  float s[3] = {0.1f, 0.2f, NAN}, ok[4] = {0.1f, 0.2f, 0.3f, 0.4f};
  uint8_t p[3] = {1, 0, 1}, allpos[3] = {1, 1, 1}, t[4] = {0, 1, 2, 0};
  double auc, per[2], mean;
  int32_t used;
  ASSERT_ERROR(dml_roc_auc(s, p, 3, &auc), DML_ERR_NOT_FINITE);
  ASSERT_ERROR(dml_roc_auc(ok, allpos, 3, &auc), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_roc_auc(ok, p, 0, &auc), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_roc_auc(NULL, p, 3, &auc), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_multilabel_auc(ok, t, 2, 2, per, &mean, &used), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_multilabel_auc(ok, p, 1, 0, per, &mean, &used), DML_ERR_INVALID_ARGUMENT);
  uint8_t one[4] = {1, 1, 1, 1}; /* no label has a negative */
  ASSERT_OK(dml_multilabel_auc(ok, one, 2, 2, per, &mean, &used));
  ASSERT_EQ_INT(used, 0);
  ASSERT_TRUE(isnan(mean) && isnan(per[0]) && isnan(per[1]));
}

TEST(leave_one_out_when_the_queries_are_the_reference_set) {
  float x[5] = {0, 0.1f, 5, 5.1f, 2.6f}, copy[5];
  int32_t y[5] = {0, 0, 1, 1, 0}, pred[5];
  memcpy(copy, x, sizeof x);
  /* Same array: each item's own row is left out, so 2.6 takes its nearest other item, 5. */
  ASSERT_OK(dml_knn_classify(x, y, 5, x, 5, 1, DML_DIST_EUCLIDEAN, 1, DML_VOTE_MAJORITY, 2,
                             pred, NULL));
  const int32_t loo[5] = {0, 0, 1, 1, 1};
  for (int i = 0; i < 5; i++) ASSERT_EQ_INT(pred[i], loo[i]);
  /* A copy is a separate query set: every item finds itself. */
  ASSERT_OK(dml_knn_classify(x, y, 5, copy, 5, 1, DML_DIST_EUCLIDEAN, 1, DML_VOTE_MAJORITY, 2,
                             pred, NULL));
  for (int i = 0; i < 5; i++) ASSERT_EQ_INT(pred[i], y[i]);
  /* Duplicates of a lower index come first; the query's own row is still the one left out. */
  float dup[4] = {1, 1, 1, 9};
  int32_t dy[4] = {0, 1, 1, 0};
  ASSERT_OK(dml_knn_classify(dup, dy, 4, dup, 4, 1, DML_DIST_EUCLIDEAN, 2, DML_VOTE_MAJORITY, 2,
                             pred, NULL));
  ASSERT_EQ_INT(pred[0], 1); /* neighbours 1, 2 */
  ASSERT_EQ_INT(pred[2], 0); /* neighbours 0, 1: a 1-1 tie goes to the nearer, item 0 */
  ASSERT_ERROR(dml_knn_classify(x, y, 1, x, 1, 1, DML_DIST_EUCLIDEAN, 1, DML_VOTE_MAJORITY, 2,
                                pred, NULL),
               DML_ERR_INVALID_ARGUMENT);
}

TEST(multi_label_knn_scores_leave_one_out) {
  /* Items at 0, 1, 2, 10, 11, 12 with labels {0}, {0,1}, {1}, {2}, {2,1}, {2,2}. */
  float x[6] = {0, 1, 2, 10, 11, 12};
  int64_t off5[7] = {0, 1, 3, 4, 5, 7, 9};
  int32_t val5[9] = {0, 0, 1, 1, 2, 2, 1, 2, 2}; /* item 5's repeated 2 counts once */
  dml_labels L = {6, val5, off5};
  float s[6 * 3];
  ASSERT_OK(dml_knn_label_scores(x, &L, 6, x, 6, 1, DML_DIST_EUCLIDEAN, 2, 3, s));
  /* item 0: neighbours 1 ({0,1}) and 2 ({1}) */
  ASSERT_NEAR(s[0], 0.5, 1e-6);
  ASSERT_NEAR(s[1], 1.0, 1e-6);
  ASSERT_NEAR(s[2], 0.0, 1e-6);
  /* item 3: neighbours 4 ({2,1}) and 5 ({2,2}) */
  ASSERT_NEAR(s[9], 0.0, 1e-6);
  ASSERT_NEAR(s[10], 0.5, 1e-6);
  ASSERT_NEAR(s[11], 1.0, 1e-6);
  /* label 2 ignored when num_labels = 2 */
  float s2[6 * 2];
  ASSERT_OK(dml_knn_label_scores(x, &L, 6, x, 6, 1, DML_DIST_EUCLIDEAN, 2, 2, s2));
  ASSERT_NEAR(s2[6], 0.0, 1e-6);
  ASSERT_NEAR(s2[7], 0.5, 1e-6);
  int32_t bad[9] = {0, 0, 1, 1, -2, 2, 1, 2, 2};
  dml_labels B = {6, bad, off5};
  ASSERT_ERROR(dml_knn_label_scores(x, &B, 6, x, 6, 1, DML_DIST_EUCLIDEAN, 2, 3, s),
               DML_ERR_INVALID_ARGUMENT);
}
