/* Train/test splits of a label array: open-set by listed or seeded-random classes, and
 * closed-set stratified by class. Pure functions of (labels, arguments, seed). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/rng.h"
#include "data/data_internal.h"

/* Streams of the seeded choices (distinct from the loader's and the sampler's purposes). */
#define STREAM_CLASSES 0x53504c4954434c53ull    /* "SPLITCLS" */
#define STREAM_STRATIFIED 0x53504c4954535452ull /* "SPLITSTR" */

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static dml_status check_args(const int32_t *labels, int64_t n, int64_t **train_rows,
                             int64_t *n_train, int64_t **test_rows, int64_t *n_test,
                             const char *fn) {
  if (!train_rows || !n_train || !test_rows || !n_test)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: an output pointer is NULL", fn);
  *train_rows = *test_rows = NULL;
  *n_train = *n_test = 0;
  if (n < 0 || (n > 0 && !labels))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: labels NULL or n = %lld < 0", fn,
                      (long long)n);
  return DML_OK;
}

/* Rows with is_test[i] to test, the others to train, both in increasing order. */
static dml_status emit(const unsigned char *is_test, int64_t n, int64_t **train_rows,
                       int64_t *n_train, int64_t **test_rows, int64_t *n_test) {
  int64_t nt = 0;
  for (int64_t i = 0; i < n; i++) nt += is_test[i];
  int64_t *tr = malloc((size_t)(n - nt > 0 ? n - nt : 1) * sizeof(int64_t));
  int64_t *te = malloc((size_t)(nt > 0 ? nt : 1) * sizeof(int64_t));
  if (!tr || !te) {
    free(tr);
    free(te);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory splitting %lld rows", (long long)n);
  }
  int64_t a = 0, b = 0;
  for (int64_t i = 0; i < n; i++) {
    if (is_test[i]) te[b++] = i;
    else tr[a++] = i;
  }
  *train_rows = tr;
  *n_train = a;
  *test_rows = te;
  *n_test = b;
  return DML_OK;
}

/* Sorted distinct values of labels[0..n), optionally only those >= 0 (malloc'ed). */
static dml_status distinct(const int32_t *labels, int64_t n, int nonneg_only, int32_t **out,
                           int64_t *count) {
  int32_t *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
  if (!v) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++)
    if (!nonneg_only || labels[i] >= 0) v[m++] = labels[i];
  qsort(v, (size_t)m, sizeof *v, cmp_i32);
  int64_t u = 0;
  for (int64_t i = 0; i < m; i++)
    if (u == 0 || v[i] != v[u - 1]) v[u++] = v[i];
  *out = v;
  *count = u;
  return DML_OK;
}

static dml_status split_classes(const int32_t *labels, int64_t n, const int32_t *test_classes,
                                int num, int64_t **train_rows, int64_t *n_train,
                                int64_t **test_rows, int64_t *n_test, const char *fn) {
  int32_t *sorted = malloc((size_t)(num > 0 ? num : 1) * sizeof(int32_t));
  int64_t *hits = calloc((size_t)(num > 0 ? num : 1), sizeof(int64_t));
  unsigned char *is_test = calloc((size_t)(n > 0 ? n : 1), 1);
  dml_status st = DML_OK;
  if (!sorted || !hits || !is_test) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
  if (st == DML_OK) {
    if (num > 0) memcpy(sorted, test_classes, (size_t)num * sizeof(int32_t));
    qsort(sorted, (size_t)num, sizeof *sorted, cmp_i32);
    for (int64_t i = 0; i < n; i++) {
      const int32_t *hit = num > 0 ? bsearch(&labels[i], sorted, (size_t)num, sizeof *sorted,
                                             cmp_i32)
                                   : NULL;
      if (hit) {
        is_test[i] = 1;
        hits[hit - sorted]++;
      }
    }
    for (int j = 0; j < num && st == DML_OK; j++)
      if (!hits[j] && (j == 0 || sorted[j] != sorted[j - 1]))
        st = dml__error(DML_ERR_NOT_FOUND, "%s: test class %d has no rows in the %lld labels", fn,
                        sorted[j], (long long)n);
  }
  if (st == DML_OK) st = emit(is_test, n, train_rows, n_train, test_rows, n_test);
  free(sorted);
  free(hits);
  free(is_test);
  return st;
}

dml_status dml_split_by_class(const int32_t *labels, int64_t n, const int32_t *test_classes,
                              int num_test_classes, int64_t **train_rows, int64_t *n_train,
                              int64_t **test_rows, int64_t *n_test) {
  static const char fn[] = "dml_split_by_class";
  DML_TRY(check_args(labels, n, train_rows, n_train, test_rows, n_test, fn));
  if (num_test_classes < 0 || (num_test_classes > 0 && !test_classes))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: test_classes NULL or count %d < 0", fn,
                      num_test_classes);
  return split_classes(labels, n, test_classes, num_test_classes, train_rows, n_train,
                       test_rows, n_test, fn);
}

dml_status dml_split_random_classes(const int32_t *labels, int64_t n, int num_test_classes,
                                    uint64_t seed, int32_t *test_classes_out,
                                    int64_t **train_rows, int64_t *n_train,
                                    int64_t **test_rows, int64_t *n_test) {
  static const char fn[] = "dml_split_random_classes";
  DML_TRY(check_args(labels, n, train_rows, n_train, test_rows, n_test, fn));
  if (!test_classes_out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: test_classes_out is NULL", fn);
  int32_t *classes;
  int64_t c;
  DML_TRY(distinct(labels, n, 1, &classes, &c));
  if (num_test_classes < 1 || num_test_classes >= c) {
    free(classes);
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: %d test classes asked, the labels have %lld classes (give 1 to %lld "
                      "so that training keeps a class)",
                      fn, num_test_classes, (long long)c, (long long)(c - 1));
  }
  int64_t *order = malloc((size_t)c * sizeof(int64_t));
  if (!order) {
    free(classes);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  }
  for (int64_t i = 0; i < c; i++) order[i] = i;
  dml_rng_shuffle_i64(order, c, seed, STREAM_CLASSES);
  for (int j = 0; j < num_test_classes; j++) test_classes_out[j] = classes[order[j]];
  qsort(test_classes_out, (size_t)num_test_classes, sizeof(int32_t), cmp_i32);
  free(order);
  free(classes);
  return split_classes(labels, n, test_classes_out, num_test_classes, train_rows, n_train,
                       test_rows, n_test, fn);
}

dml_status dml_split_stratified(const int32_t *labels, int64_t n, double test_fraction,
                                uint64_t seed, int64_t **train_rows, int64_t *n_train,
                                int64_t **test_rows, int64_t *n_test) {
  static const char fn[] = "dml_split_stratified";
  DML_TRY(check_args(labels, n, train_rows, n_train, test_rows, n_test, fn));
  if (!(test_fraction >= 0 && test_fraction <= 1))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: test_fraction %g is outside [0, 1]", fn,
                      test_fraction);
  int64_t *rows = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
  unsigned char *is_test = calloc((size_t)(n > 0 ? n : 1), 1);
  if (!rows || !is_test) {
    free(rows);
    free(is_test);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  }
  /* rows grouped by class (counting sort over the sorted distinct labels) */
  int32_t *classes = NULL;
  int64_t c = 0;
  dml_status st = distinct(labels, n, 0, &classes, &c);
  int64_t *start = st == DML_OK ? calloc((size_t)(c + 1), sizeof(int64_t)) : NULL;
  if (st == DML_OK && !start) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
  if (st == DML_OK) {
    for (int64_t i = 0; i < n; i++) {
      const int32_t *p = bsearch(&labels[i], classes, (size_t)c, sizeof *classes, cmp_i32);
      start[p - classes + 1]++;
    }
    for (int64_t k = 0; k < c; k++) start[k + 1] += start[k];
    int64_t *fill = malloc((size_t)(c > 0 ? c : 1) * sizeof(int64_t));
    if (!fill) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
    if (st == DML_OK) {
      memcpy(fill, start, (size_t)c * sizeof(int64_t));
      for (int64_t i = 0; i < n; i++) {
        const int32_t *p = bsearch(&labels[i], classes, (size_t)c, sizeof *classes, cmp_i32);
        rows[fill[p - classes]++] = i; /* ascending within a class */
      }
      for (int64_t k = 0; k < c; k++) {
        int64_t cnt = start[k + 1] - start[k];
        int64_t t = (int64_t)floor(test_fraction * (double)cnt + 0.5);
        if (cnt >= 2 && t > cnt - 1) t = cnt - 1;
        /* the class's own stream: its choice does not depend on the other classes */
        dml_rng_shuffle_i64(rows + start[k], cnt, seed,
                            STREAM_STRATIFIED ^ ((uint64_t)(uint32_t)classes[k] << 8));
        for (int64_t j = 0; j < t; j++) is_test[rows[start[k] + j]] = 1;
      }
    }
    free(fill);
  }
  if (st == DML_OK) st = emit(is_test, n, train_rows, n_train, test_rows, n_test);
  free(start);
  free(classes);
  free(rows);
  free(is_test);
  return st;
}
