/* Classification report: accuracy, per-class one-vs-rest precision, recall (sensitivity),
 * F1, specificity and support, macro and weighted F1 and the confusion matrix, with
 * scikit-learn's conventions for zero_division=0. */
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/eval.h"

void dml_classification_report_free(dml_classification_report *r) {
  if (!r) return;
  free(r->precision);
  free(r->recall);
  free(r->f1);
  free(r->specificity);
  free(r->support);
  free(r->confusion);
  memset(r, 0, sizeof *r);
}

static double ratio(int64_t num, int64_t den) { return den > 0 ? (double)num / (double)den : 0.0; }

dml_status dml_classification_report_compute(const int32_t *truth, const int32_t *pred,
                                             int64_t n, int32_t num_classes,
                                             dml_classification_report *out) {
  static const char *fn = "dml_classification_report_compute";
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  memset(out, 0, sizeof *out);
  if (n < 0 || num_classes < 1 || ((!truth || !pred) && n > 0))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: need truth and pred of n >= 0 items and num_classes >= 1 (got n "
                      "%lld, num_classes %d)",
                      fn, (long long)n, num_classes);
  if (num_classes > 65536)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: %d classes is too many for a dense confusion matrix (at most 65536)",
                      fn, num_classes);
  for (int64_t i = 0; i < n; i++) {
    if (truth[i] < 0 || truth[i] >= num_classes)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: truth[%lld] is %d, outside 0..%d", fn,
                        (long long)i, truth[i], num_classes - 1);
    if (pred[i] < 0 || pred[i] >= num_classes)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: pred[%lld] is %d, outside 0..%d", fn,
                        (long long)i, pred[i], num_classes - 1);
  }
  const size_t c = (size_t)num_classes;
  out->num_classes = num_classes;
  out->n = n;
  out->precision = calloc(c, sizeof(double));
  out->recall = calloc(c, sizeof(double));
  out->f1 = calloc(c, sizeof(double));
  out->specificity = calloc(c, sizeof(double));
  out->support = calloc(c, sizeof(int64_t));
  out->confusion = calloc(c * c, sizeof(int64_t));
  int64_t *predicted = calloc(c, sizeof(int64_t));
  if (!out->precision || !out->recall || !out->f1 || !out->specificity || !out->support ||
      !out->confusion || !predicted) {
    free(predicted);
    dml_classification_report_free(out);
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %d classes", fn, num_classes);
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i++) {
    out->confusion[(int64_t)truth[i] * num_classes + pred[i]]++;
    out->support[truth[i]]++;
    predicted[pred[i]]++;
    correct += truth[i] == pred[i];
  }
  out->accuracy = ratio(correct, n);
  double macro = 0.0, weighted = 0.0;
  int32_t present = 0;
  for (int32_t k = 0; k < num_classes; k++) {
    const int64_t tp = out->confusion[(int64_t)k * num_classes + k];
    const int64_t fp = predicted[k] - tp, fn_ = out->support[k] - tp;
    const int64_t tn = n - tp - fp - fn_;
    const double p = ratio(tp, tp + fp), r = ratio(tp, tp + fn_);
    out->precision[k] = p;
    out->recall[k] = r;
    /* sklearn 1.2: 2 P R / (P + R), 0 when P + R = 0 */
    out->f1[k] = p + r > 0.0 ? 2.0 * p * r / (p + r) : 0.0;
    out->specificity[k] = ratio(tn, tn + fp);
    /* as f1_score without `labels`: the classes seen in truth or pred */
    if (out->support[k] > 0 || predicted[k] > 0) {
      macro += out->f1[k];
      present++;
    }
    weighted += out->f1[k] * (double)out->support[k];
  }
  out->macro_f1 = present ? macro / present : 0.0;
  out->weighted_f1 = n > 0 ? weighted / (double)n : 0.0;
  free(predicted);
  return DML_OK;
}
