/* ROC AUC by the Mann-Whitney statistic: the probability that a positive scores above a
 * negative, ties counted 1/2. Scores are sorted once (O(n log n)); each group of equal scores
 * adds (positives in it) x (negatives below it + half the negatives in it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/eval.h"

typedef struct {
  float s;
  uint8_t pos;
} scored;

static int cmp_scored(const void *a, const void *b) {
  const float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
  return (x > y) - (x < y);
}

/* AUC of v[0..n) (sorted in place); NaN when there is no positive or no negative. */
static double auc_sorted(scored *v, int64_t n) {
  qsort(v, (size_t)n, sizeof *v, cmp_scored);
  double u = 0.0, neg_below = 0.0, pos = 0.0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    double p = 0.0, q = 0.0;
    for (; j < n && v[j].s == v[i].s; j++) {
      if (v[j].pos) p += 1.0; else q += 1.0;
    }
    u += p * (neg_below + 0.5 * q);
    neg_below += q;
    pos += p;
    i = j;
  }
  if (pos == 0.0 || neg_below == 0.0) return NAN;
  return u / (pos * neg_below);
}

static dml_status check_scores(const char *fn, const float *s, int64_t count) {
  for (int64_t i = 0; i < count; i++)
    if (isnan(s[i]))
      return dml__error(DML_ERR_NOT_FINITE, "%s: score %lld is NaN", fn, (long long)i);
  return DML_OK;
}

dml_status dml_roc_auc(const float *scores, const uint8_t *positive, int64_t n, double *auc) {
  static const char *fn = "dml_roc_auc";
  if (!scores || !positive || !auc || n < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: NULL scores, positive or auc, or n < 0",
                      fn);
  DML_TRY(check_scores(fn, scores, n));
  scored *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  if (!v) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld scores", fn, (long long)n);
  for (int64_t i = 0; i < n; i++) v[i] = (scored){scores[i], (uint8_t)(positive[i] != 0)};
  const double a = auc_sorted(v, n);
  free(v);
  if (isnan(a))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: AUC needs at least one positive and one negative among %lld items",
                      fn, (long long)n);
  *auc = a;
  return DML_OK;
}

dml_status dml_multilabel_auc(const float *scores, const uint8_t *targets, int64_t n,
                              int32_t num_labels, double *per_label, double *mean,
                              int32_t *labels_used) {
  static const char *fn = "dml_multilabel_auc";
  if (!scores || !targets || n < 0 || num_labels < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: need scores and targets of n >= 0 rows and num_labels >= 1", fn);
  DML_TRY(check_scores(fn, scores, n * num_labels));
  for (int64_t i = 0; i < n * num_labels; i++)
    if (targets[i] > 1)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: target (row %lld, label %lld) is %d; targets must be 0 or 1", fn,
                        (long long)(i / num_labels), (long long)(i % num_labels), targets[i]);
  scored *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  if (!v) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", fn);
  double sum = 0.0;
  int32_t used = 0;
  for (int32_t l = 0; l < num_labels; l++) {
    for (int64_t i = 0; i < n; i++)
      v[i] = (scored){scores[i * num_labels + l], targets[i * num_labels + l]};
    const double a = auc_sorted(v, n);
    if (per_label) per_label[l] = a;
    if (!isnan(a)) {
      sum += a;
      used++;
    }
  }
  free(v);
  if (mean) *mean = used ? sum / used : NAN;
  if (labels_used) *labels_used = used;
  return DML_OK;
}
