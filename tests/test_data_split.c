/* Train/test splits: disjoint and covering, increasing rows, listed and seeded unseen classes,
 * stratified counts per class, determinism per seed, different seeds differ, and errors. */
#include <stdint.h>
#include <stdlib.h>

#include "test.h"

/* Six classes 0..5 with 1, 3, 5, 7, 9, 11 rows, interleaved; a few rows labelled -1. */
#define N_ROWS 40
static void make_labels(int32_t *labels) {
  int left[6] = {1, 3, 5, 7, 9, 11}, i = 0;
  while (i < 36)
    for (int c = 5; c >= 0 && i < 36; c--)
      if (left[c] > 0) {
        labels[i++] = c;
        left[c]--;
      }
  for (; i < N_ROWS; i++) labels[i] = -1;
}

static int64_t count_label(const int32_t *labels, int64_t n, int32_t c) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) k += labels[i] == c;
  return k;
}

/* Both parts increasing, disjoint, and covering 0..n-1. */
static int partition_ok(const int64_t *a, int64_t na, const int64_t *b, int64_t nb, int64_t n) {
  if (na + nb != n) return 0;
  unsigned char seen[N_ROWS] = {0};
  for (int64_t i = 0; i < na; i++) {
    if (a[i] < 0 || a[i] >= n || seen[a[i]] || (i && a[i] <= a[i - 1])) return 0;
    seen[a[i]] = 1;
  }
  for (int64_t i = 0; i < nb; i++) {
    if (b[i] < 0 || b[i] >= n || seen[b[i]] || (i && b[i] <= b[i - 1])) return 0;
    seen[b[i]] = 1;
  }
  return 1;
}

TEST(split_by_listed_classes) {
  int32_t labels[N_ROWS];
  make_labels(labels);
  int64_t *tr, *te, ntr, nte;
  const int32_t test_classes[2] = {3, 1};
  ASSERT_OK(dml_split_by_class(labels, N_ROWS, test_classes, 2, &tr, &ntr, &te, &nte));
  ASSERT_TRUE(partition_ok(tr, ntr, te, nte, N_ROWS));
  ASSERT_EQ_INT(nte, 3 + 7);
  for (int64_t i = 0; i < nte; i++) ASSERT_TRUE(labels[te[i]] == 1 || labels[te[i]] == 3);
  for (int64_t i = 0; i < ntr; i++) ASSERT_TRUE(labels[tr[i]] != 1 && labels[tr[i]] != 3);
  free(tr);
  free(te);
  /* nothing listed: everything trains */
  ASSERT_OK(dml_split_by_class(labels, N_ROWS, NULL, 0, &tr, &ntr, &te, &nte));
  ASSERT_EQ_INT(ntr, N_ROWS);
  ASSERT_EQ_INT(nte, 0);
  free(tr);
  free(te);
  const int32_t missing[2] = {2, 9};
  ASSERT_ERROR(dml_split_by_class(labels, N_ROWS, missing, 2, &tr, &ntr, &te, &nte),
               DML_ERR_NOT_FOUND);
  ASSERT_TRUE(strstr(dml_last_error(), "test class 9 has no rows") != NULL);
  ASSERT_TRUE(tr == NULL && te == NULL && ntr == 0 && nte == 0);
}

TEST(split_random_classes_is_seeded) {
  int32_t labels[N_ROWS];
  make_labels(labels);
  int64_t *tr, *te, ntr, nte;
  int32_t chosen[2], again[2];
  ASSERT_OK(dml_split_random_classes(labels, N_ROWS, 2, 7, chosen, &tr, &ntr, &te, &nte));
  ASSERT_TRUE(partition_ok(tr, ntr, te, nte, N_ROWS));
  ASSERT_TRUE(chosen[0] < chosen[1] && chosen[0] >= 0 && chosen[1] <= 5);
  ASSERT_EQ_INT(nte, count_label(labels, N_ROWS, chosen[0]) +
                         count_label(labels, N_ROWS, chosen[1]));
  for (int64_t i = 0; i < nte; i++)
    ASSERT_TRUE(labels[te[i]] == chosen[0] || labels[te[i]] == chosen[1]);
  for (int64_t i = 0; i < ntr; i++) ASSERT_TRUE(labels[tr[i]] != chosen[0] && labels[tr[i]] != chosen[1]);
  free(tr);
  free(te);
  ASSERT_OK(dml_split_random_classes(labels, N_ROWS, 2, 7, again, &tr, &ntr, &te, &nte));
  ASSERT_TRUE(again[0] == chosen[0] && again[1] == chosen[1]);
  free(tr);
  free(te);
  /* other seeds choose other classes (15 pairs: some of 12 seeds must differ) */
  int differ = 0;
  for (uint64_t seed = 100; seed < 112; seed++) {
    ASSERT_OK(dml_split_random_classes(labels, N_ROWS, 2, seed, again, &tr, &ntr, &te, &nte));
    differ += again[0] != chosen[0] || again[1] != chosen[1];
    for (int j = 0; j < 2; j++) ASSERT_TRUE(again[j] >= 0); /* -1 is never a test class */
    free(tr);
    free(te);
  }
  ASSERT_TRUE(differ > 0);
  int32_t six[6];
  ASSERT_ERROR(dml_split_random_classes(labels, N_ROWS, 6, 1, six, &tr, &ntr, &te, &nte),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "the labels have 6 classes") != NULL);
  ASSERT_ERROR(dml_split_random_classes(labels, N_ROWS, 0, 1, six, &tr, &ntr, &te, &nte),
               DML_ERR_INVALID_ARGUMENT);
}

TEST(split_stratified_counts_and_seeds) {
  int32_t labels[N_ROWS];
  make_labels(labels);
  int64_t *tr, *te, ntr, nte;
  const double fractions[4] = {0.0, 0.3, 0.5, 1.0};
  for (int f = 0; f < 4; f++) {
    ASSERT_OK(dml_split_stratified(labels, N_ROWS, fractions[f], 3, &tr, &ntr, &te, &nte));
    ASSERT_TRUE(partition_ok(tr, ntr, te, nte, N_ROWS));
    for (int32_t c = -1; c <= 5; c++) {
      int64_t cnt = count_label(labels, N_ROWS, c);
      int64_t want = (int64_t)floor(fractions[f] * (double)cnt + 0.5);
      if (cnt >= 2 && want > cnt - 1) want = cnt - 1;
      int64_t got = 0;
      for (int64_t i = 0; i < nte; i++) got += labels[te[i]] == c;
      ASSERT_EQ_INT(got, want);
    }
    free(tr);
    free(te);
  }
  /* determinism, and other seeds pick other rows */
  int64_t *te2, *tr2, ntr2, nte2;
  ASSERT_OK(dml_split_stratified(labels, N_ROWS, 0.3, 11, &tr, &ntr, &te, &nte));
  ASSERT_OK(dml_split_stratified(labels, N_ROWS, 0.3, 11, &tr2, &ntr2, &te2, &nte2));
  ASSERT_EQ_INT(nte, nte2);
  ASSERT_TRUE(memcmp(te, te2, (size_t)nte * sizeof(int64_t)) == 0);
  free(tr2);
  free(te2);
  ASSERT_OK(dml_split_stratified(labels, N_ROWS, 0.3, 12, &tr2, &ntr2, &te2, &nte2));
  ASSERT_EQ_INT(nte, nte2);
  ASSERT_TRUE(memcmp(te, te2, (size_t)nte * sizeof(int64_t)) != 0);
  free(tr2);
  free(te2);
  free(tr);
  free(te);
  ASSERT_ERROR(dml_split_stratified(labels, N_ROWS, 1.5, 1, &tr, &ntr, &te, &nte),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_split_stratified(labels, N_ROWS, NAN, 1, &tr, &ntr, &te, &nte),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_split_stratified(NULL, 3, 0.5, 1, &tr, &ntr, &te, &nte),
               DML_ERR_INVALID_ARGUMENT);
  /* no rows: two empty parts */
  ASSERT_OK(dml_split_stratified(labels, 0, 0.5, 1, &tr, &ntr, &te, &nte));
  ASSERT_EQ_INT(ntr + nte, 0);
  free(tr);
  free(te);
}
