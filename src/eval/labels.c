/* Label sets for evaluation: validation of dml_labels and their canonical form (sorted, no
 * repeats, dense ids) used to test relevance and compute Jaccard similarities. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "eval/eval_internal.h"

dml_status dml__eval_labels_check(const dml_labels *labels, int64_t n, int allow_negative,
                                  const char *fn, const char *what) {
  if (!labels)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %s labels are NULL", fn, what);
  if (labels->n != n)
    return dml__error(DML_ERR_SHAPE, "%s: %s labels have %lld items, the embeddings %lld rows",
                      fn, what, (long long)labels->n, (long long)n);
  int64_t total = n;
  if (labels->offsets) {
    const int64_t *o = labels->offsets;
    if (o[0] != 0)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %s label offsets must start at 0 (got %lld)",
                        fn, what, (long long)o[0]);
    for (int64_t i = 0; i < n; i++)
      if (o[i + 1] < o[i])
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: %s label offsets decrease at item %lld (%lld then %lld); "
                          "offsets[i] .. offsets[i+1] must be non-decreasing",
                          fn, what, (long long)i, (long long)o[i], (long long)o[i + 1]);
    total = o[n];
  }
  if (total > 0 && !labels->values)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %s label values are NULL", fn, what);
  if (!allow_negative)
    for (int64_t t = 0; t < total; t++)
      if (labels->values[t] < 0)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: %s label value %lld is negative (%d); labels must be >= 0", fn,
                          what, (long long)t, labels->values[t]);
  return DML_OK;
}

static int cmp_i32(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int64_t count_of(const dml_labels *l) { return l->offsets ? l->offsets[l->n] : l->n; }

static int64_t item_begin(const dml_labels *l, int64_t i) { return l->offsets ? l->offsets[i] : i; }

static int32_t dense_id(const int32_t *distinct, int32_t nd, int32_t v) {
  int32_t lo = 0, hi = nd;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (distinct[mid] < v) lo = mid + 1; else hi = mid;
  }
  return lo;
}

dml_status dml__eval_sets_build(const dml_labels *a, const dml_labels *b, dml__eval_sets *out) {
  memset(out, 0, sizeof *out);
  const dml_labels *parts[2] = {a, b};
  const int np = b ? 2 : 1;
  int64_t n = 0, total = 0;
  for (int p = 0; p < np; p++) {
    n += parts[p]->n;
    total += count_of(parts[p]);
  }
  out->n = n;
  out->start = malloc((size_t)(n + 1) * sizeof *out->start);
  out->ids = malloc((size_t)(total > 0 ? total : 1) * sizeof *out->ids);
  int32_t *all = malloc((size_t)(total > 0 ? total : 1) * sizeof *all);
  if (!out->start || !out->ids || !all) {
    free(all);
    dml__eval_sets_free(out);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory for %lld labels", (long long)total);
  }
  int64_t t = 0;
  for (int p = 0; p < np; p++) {
    const int64_t c = count_of(parts[p]);
    if (c) memcpy(all + t, parts[p]->values, (size_t)c * sizeof *all);
    t += c;
  }
  qsort(all, (size_t)total, sizeof *all, cmp_i32);
  int32_t nd = 0;
  for (int64_t i = 0; i < total; i++)
    if (i == 0 || all[i] != all[i - 1]) all[nd++] = all[i];
  out->distinct = all;
  out->n_distinct = nd;
  /* each item's dense ids, sorted without repeats */
  int64_t w = 0, item = 0;
  out->single = 1;
  for (int p = 0; p < np; p++) {
    const dml_labels *l = parts[p];
    for (int64_t i = 0; i < l->n; i++, item++) {
      out->start[item] = w;
      const int64_t s = item_begin(l, i), e = item_begin(l, i + 1);
      const int64_t w0 = w;
      for (int64_t u = s; u < e; u++) out->ids[w++] = dense_id(all, nd, l->values[u]);
      if (w - w0 > 1) {
        qsort(out->ids + w0, (size_t)(w - w0), sizeof *out->ids, cmp_i32);
        int64_t k = w0 + 1;
        for (int64_t u = w0 + 1; u < w; u++)
          if (out->ids[u] != out->ids[k - 1]) out->ids[k++] = out->ids[u];
        w = k;
      }
      if (w - w0 != 1) out->single = 0;
    }
  }
  out->start[n] = w;
  return DML_OK;
}

void dml__eval_sets_free(dml__eval_sets *s) {
  if (!s) return;
  free(s->start);
  free(s->ids);
  free(s->distinct);
  memset(s, 0, sizeof *s);
}
