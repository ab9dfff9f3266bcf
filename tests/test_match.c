/* Matching with rejection (dml/match.h) on a hand-worked one-dimensional example: the
 * threshold sweep for a target precision and for the best F1 (ties between queries at equal
 * distance included), a target no threshold reaches, the open-set AUROC with a tie counted
 * 1/2, majority voting and its tie rule, and the same figures from evaluate_matching. */
#include <math.h>

#include "test.h"

/* Gallery: items at 0, 10, 20 with labels 0, 1, 2 (ids 100, 101, 102). Queries and their
 * nearest item's distance: 1 (label 0, correct, 1), 12 (1, correct, 2), 16 (2, correct, 4),
 * 14 (1, correct, 4), 5.5 (2, wrong: nearest is 10, 4.5), 30 (7, unknown, 10), -3 (0,
 * correct, 3), 11 (9, unknown, 1). Six known queries, two unknown. Sorted by distance:
 *   1: correct + unknown (tie) | 2 | 3 | 4, 4 | 4.5 wrong | 10 unknown. */
static dml_gallery *line_gallery(void) {
  float x[3] = {0, 10, 20};
  int64_t ids[3] = {100, 101, 102};
  int32_t lab[3] = {0, 1, 2};
  dml_labels L = {3, lab, NULL};
  dml_gallery *g = NULL;
  if (dml_gallery_create(&g, 1, DML_DIST_EUCLIDEAN, NULL) != DML_OK) return NULL;
  if (dml_gallery_add(g, x, 3, ids, &L) != DML_OK) {
    dml_gallery_free(g);
    return NULL;
  }
  return g;
}

static const float Q[8] = {1, 12, 16, 14, 5.5f, 30, -3, 11};
static const int32_t QY[8] = {0, 1, 2, 1, 2, 7, 0, 9};

TEST(calibration_for_a_target_precision) {
  dml_gallery *g = line_gallery();
  ASSERT_TRUE(g != NULL);
  dml_labels L = {8, QY, NULL};
  dml_match_config cfg = {DML_MATCH_NEAREST, 1, NAN};
  dml_match_report r;
  int met;
  ASSERT_OK(dml_gallery_calibrate(g, Q, &L, 8, &cfg, DML_CALIBRATE_PRECISION, 0.8, &r, &met));
  ASSERT_EQ_INT(met, 1);
  ASSERT_NEAR(r.threshold, 4.0, 1e-6);
  ASSERT_EQ_INT(r.queries, 8);
  ASSERT_EQ_INT(r.known, 6);
  ASSERT_EQ_INT(r.accepted, 6);
  ASSERT_EQ_INT(r.correct, 5);
  ASSERT_NEAR(r.precision, 5.0 / 6.0, 1e-12);
  ASSERT_NEAR(r.recall, 5.0 / 6.0, 1e-12);
  ASSERT_NEAR(r.f1, 10.0 / 12.0, 1e-12);
  ASSERT_NEAR(r.unknown_rejected, 0.5, 1e-12);
  /* Positives (known) at distances {1,2,3,4,4,4.5}, negatives at {1, 10}: 6 + 0.5 of 12. */
  ASSERT_NEAR(r.auroc, 6.5 / 12.0, 1e-12);
  /* No threshold reaches 0.9: everything is rejected. */
  ASSERT_OK(dml_gallery_calibrate(g, Q, &L, 8, &cfg, DML_CALIBRATE_PRECISION, 0.9, &r, &met));
  ASSERT_EQ_INT(met, 0);
  ASSERT_EQ_INT(r.accepted, 0);
  ASSERT_TRUE(isinf(r.threshold) && r.threshold < 0);
  dml_match m[8];
  cfg.threshold = r.threshold;
  ASSERT_OK(dml_gallery_match(g, Q, 8, &cfg, m));
  for (int i = 0; i < 8; i++) ASSERT_EQ_INT(m[i].label, -1);
  ASSERT_ERROR(dml_gallery_calibrate(g, Q, &L, 8, &cfg, DML_CALIBRATE_PRECISION, 1.5, &r, &met),
               DML_ERR_INVALID_ARGUMENT);
  dml_gallery_free(g);
}

TEST(calibration_for_the_best_f1_and_the_same_figures_from_evaluation) {
  dml_gallery *g = line_gallery();
  ASSERT_TRUE(g != NULL);
  dml_labels L = {8, QY, NULL};
  dml_match_config cfg = {DML_MATCH_NEAREST, 1, NAN};
  dml_match_report r, e;
  ASSERT_OK(dml_gallery_calibrate(g, Q, &L, 8, &cfg, DML_CALIBRATE_BEST_F1, 0, &r, NULL));
  ASSERT_NEAR(r.threshold, 4.0, 1e-6);
  ASSERT_NEAR(r.f1, 10.0 / 12.0, 1e-12);
  cfg.threshold = r.threshold;
  ASSERT_OK(dml_gallery_evaluate_matching(g, Q, &L, 8, &cfg, &e));
  ASSERT_EQ_INT(e.accepted, r.accepted);
  ASSERT_EQ_INT(e.correct, r.correct);
  ASSERT_NEAR(e.precision, r.precision, 1e-12);
  ASSERT_NEAR(e.f1, r.f1, 1e-12);
  ASSERT_NEAR(e.auroc, r.auroc, 1e-12);
  ASSERT_NEAR(e.unknown_rejected, 0.5, 1e-12);
  dml_match m[8];
  ASSERT_OK(dml_gallery_match(g, Q, 8, &cfg, m));
  const int32_t expect[8] = {0, 1, 2, 1, -1, -1, 0, 1};
  for (int i = 0; i < 8; i++) ASSERT_EQ_INT(m[i].label, expect[i]);
  ASSERT_EQ_INT(m[4].raw_label, 1);
  ASSERT_EQ_INT(m[4].item, 101);
  ASSERT_NEAR(m[4].score, 4.5, 1e-6);
  dml_gallery_free(g);
}

TEST(majority_vote_and_multi_label_items) {
  /* Items at 0 (label 0), 1 (label 1), 2 (label 1), 3 (labels 3 and 5). */
  float x[4] = {0, 1, 2, 3};
  int32_t val[5] = {0, 1, 1, 5, 3};
  int64_t off[5] = {0, 1, 2, 3, 5};
  dml_labels L = {4, val, off};
  dml_gallery *g;
  ASSERT_OK(dml_gallery_create(&g, 1, DML_DIST_EUCLIDEAN, NULL));
  ASSERT_OK(dml_gallery_add(g, x, 4, NULL, &L));
  float q[3] = {0.4f, 3.2f, 1.4f};
  dml_match m[3];
  dml_match_config nearest = {DML_MATCH_NEAREST, 1, NAN};
  ASSERT_OK(dml_gallery_match(g, q, 3, &nearest, m));
  ASSERT_EQ_INT(m[0].label, 0);
  ASSERT_EQ_INT(m[1].label, 3); /* the smaller of the item's labels 5 and 3 */
  dml_match_config major = {DML_MATCH_MAJORITY, 3, NAN};
  ASSERT_OK(dml_gallery_match(g, q, 3, &major, m));
  ASSERT_EQ_INT(m[0].label, 1); /* 0: one vote; 1: two votes */
  ASSERT_EQ_INT(m[0].item, 1);
  ASSERT_NEAR(m[0].score, 0.6, 1e-6);
  /* 1.4: neighbours 1 (1), 2 (1), 0 (0): label 1. 3.2: 3 ({3,5}), 2 (1), 1 (1): label 1 wins
   * with two votes. */
  ASSERT_EQ_INT(m[2].label, 1);
  ASSERT_EQ_INT(m[1].label, 1);
  /* k = 2 at 3.2: labels 3, 5, 1 one vote each; 3 and 5 share the nearest voter: 3. */
  major.k = 2;
  ASSERT_OK(dml_gallery_match(g, q + 1, 1, &major, m));
  ASSERT_EQ_INT(m[0].label, 3);
  major.k = 0;
  ASSERT_ERROR(dml_gallery_match(g, q, 1, &major, m), DML_ERR_INVALID_ARGUMENT);
  dml_gallery_free(g);
}
