/* Class-balanced samplers (P x K, N-pair): batch shape and labels, coverage of every example
 * per epoch with no more repeats than class sizes force, determinism and resuming per
 * (seed, epoch), unequal class sizes, labels that are not 0..C-1, classes smaller than k,
 * random configurations, and errors with their messages. */
#include <stdint.h>
#include <stdlib.h>

#include "dml/sampler.h"
#include "test.h"

/* In helpers that return int: print and report failure to the caller's ASSERT_TRUE. */
#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf(stderr, "  %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                             \
      fprintf(stderr, "\n");                                    \
      return 0;                                                 \
    }                                                           \
  } while (0)

/* The classes of a label array, found independently of the sampler: sorted distinct labels
 * and their sizes. */
typedef struct {
  int64_t count;
  int32_t *label;
  int64_t *size;
} classes;

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static classes classes_of(const int32_t *labels, int64_t n) {
  classes cl = {0, malloc((size_t)n * sizeof(int32_t)), calloc((size_t)n, sizeof(int64_t))};
  int32_t *sorted = malloc((size_t)n * sizeof *sorted);
  memcpy(sorted, labels, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_i32);
  for (int64_t i = 0; i < n; i++) {
    if (i == 0 || sorted[i] != sorted[i - 1]) cl.label[cl.count++] = sorted[i];
    cl.size[cl.count - 1]++;
  }
  free(sorted);
  return cl;
}

static int64_t class_index(const classes *cl, int32_t label) {
  const int32_t *f = bsearch(&label, cl->label, (size_t)cl->count, sizeof *f, cmp_i32);
  return f ? f - cl->label : -1;
}

static void classes_free(classes *cl) {
  free(cl->label);
  free(cl->size);
}

/* The fewest batches any P x K schedule visiting every example needs: a class appears at most
 * once per batch with k examples, so it needs ceil(s/k) batches, and the p places of all
 * batches must hold every class's ceil(s/k) chunks. Classes below min_size are not sampled. */
static int64_t min_batches(const classes *cl, int64_t p, int64_t k, int64_t min_size,
                           int64_t *n_used) {
  int64_t chunks = 0, max_chunks = 0;
  *n_used = 0;
  for (int64_t c = 0; c < cl->count; c++) {
    if (cl->size[c] < min_size) continue;
    int64_t m = (cl->size[c] + k - 1) / k;
    chunks += m;
    max_chunks = m > max_chunks ? m : max_chunks;
    *n_used += cl->size[c];
  }
  int64_t b = (chunks + p - 1) / p;
  return b > max_chunks ? b : max_chunks;
}

/* Checks every batch of the prepared epoch: p distinct classes of k examples with the right
 * labels (k distinct examples when the class has k or more; otherwise each example of the
 * class floor(k/s) or ceil(k/s) times), every sampled example at least once, unsampled ones
 * (classes below min_size) never, and the fewest batches (hence repeats) possible. Adds the
 * visits of each example to count[n] when count is not NULL. */
static int check_epoch(const dml_sampler *s, const int32_t *labels, int64_t n, int64_t p,
                       int64_t k, int64_t min_size, int64_t *count) {
  classes cl = classes_of(labels, n);
  int64_t n_used, want_b = min_batches(&cl, p, k, min_size, &n_used);
  int64_t nb = dml_sampler_num_batches(s);
  CHECK(nb == want_b, "%lld batches, the minimum is %lld", (long long)nb, (long long)want_b);
  CHECK(dml_sampler_batch_size(s) == p * k, "batch size %lld",
        (long long)dml_sampler_batch_size(s));
  int64_t *seen = calloc((size_t)n, sizeof *seen), *idx = malloc((size_t)(p * k) * sizeof *idx);
  int64_t *cls = malloc((size_t)p * sizeof *cls);
  for (int64_t b = 0; b < nb; b++) {
    dml_status st = dml_sampler_batch(s, b, idx);
    CHECK(st == DML_OK, "batch %lld: %s", (long long)b, dml_last_error());
    for (int64_t j = 0; j < p; j++) {
      const int64_t *g = idx + j * k;
      for (int64_t t = 0; t < k; t++) {
        CHECK(g[t] >= 0 && g[t] < n, "batch %lld: index %lld", (long long)b, (long long)g[t]);
        CHECK(labels[g[t]] == labels[g[0]], "batch %lld group %lld mixes labels %d and %d",
              (long long)b, (long long)j, labels[g[t]], labels[g[0]]);
        seen[g[t]]++;
      }
      int64_t c = class_index(&cl, labels[g[0]]), sz = cl.size[c];
      CHECK(sz >= min_size, "label %d has %lld examples and should not be sampled", labels[g[0]],
            (long long)sz);
      for (int64_t q = 0; q < j; q++)
        CHECK(cls[q] != c, "batch %lld has label %d twice", (long long)b, labels[g[0]]);
      cls[j] = c;
      for (int64_t t = 0; t < k; t++) {
        int64_t mult = 0;
        for (int64_t u = 0; u < k; u++) mult += g[u] == g[t];
        if (sz >= k)
          CHECK(mult == 1, "batch %lld: example %lld twice in a group of a class of %lld",
                (long long)b, (long long)g[t], (long long)sz);
        else
          CHECK(mult == k / sz || mult == k / sz + (k % sz != 0),
                "batch %lld: example %lld %lld times in a group (class of %lld, k = %lld)",
                (long long)b, (long long)g[t], (long long)mult, (long long)sz, (long long)k);
      }
    }
  }
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t sz = cl.size[class_index(&cl, labels[i])];
    if (sz >= min_size)
      CHECK(seen[i] >= 1, "example %lld (label %d, class of %lld) not visited", (long long)i,
            labels[i], (long long)sz);
    else
      CHECK(seen[i] == 0, "example %lld of a class of %lld visited", (long long)i, (long long)sz);
    total += seen[i];
    if (count) count[i] += seen[i];
  }
  /* repeats: what the class sizes force, no more */
  CHECK(total - n_used <= want_b * p * k - n_used, "%lld repeats, bound %lld",
        (long long)(total - n_used), (long long)(want_b * p * k - n_used));
  free(seen);
  free(idx);
  free(cls);
  classes_free(&cl);
  return 1;
}

/* All batch indices of the prepared epoch, concatenated (caller frees). */
static int64_t *dump(const dml_sampler *s) {
  int64_t nb = dml_sampler_num_batches(s), bs = dml_sampler_batch_size(s);
  int64_t *all = malloc((size_t)(nb * bs) * sizeof *all);
  for (int64_t b = 0; b < nb; b++)
    if (dml_sampler_batch(s, b, all + b * bs) != DML_OK) all[b * bs] = -1;
  return all;
}

static int same(const int64_t *a, const int64_t *b, int64_t n) {
  return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* Labels of classes with the given sizes and label values, interleaved so that class members
 * are not contiguous. */
static int64_t make_labels(int32_t *labels, const int32_t *values, const int64_t *sizes,
                           int nc) {
  int64_t n = 0, left[16], more = 1;
  for (int c = 0; c < nc; c++) left[c] = sizes[c];
  while (more) {
    more = 0;
    for (int c = 0; c < nc; c++)
      if (left[c] > 0) {
        labels[n++] = values[c];
        left[c]--;
        more = 1;
      }
  }
  return n;
}

TEST(pk_exactly_once_when_sizes_allow) {
  /* 8 classes of 12, k = 4, p = 4: 24 chunks, 6 batches, 96 places for 96 examples */
  int32_t labels[96];
  for (int i = 0; i < 96; i++) labels[i] = (i * 5) % 8;
  dml_sampler *s;
  ASSERT_OK(dml_sampler_new_pk(labels, 96, 4, 4, 7, &s));
  ASSERT_EQ_INT(dml_sampler_num_batches(s), 6);
  ASSERT_EQ_INT(dml_sampler_batch_size(s), 16);
  for (int64_t e = 0; e < 3; e++) {
    int64_t count[96] = {0};
    ASSERT_OK(dml_sampler_epoch(s, e));
    ASSERT_TRUE(check_epoch(s, labels, 96, 4, 4, 1, count));
    for (int i = 0; i < 96; i++) ASSERT_EQ_INT(count[i], 1);
  }
  dml_sampler_free(s);
}

TEST(pk_unequal_sizes_and_odd_labels) {
  /* sizes 1, 3, 7, 20, 50 under labels that are not 0..C-1 */
  const int32_t values[5] = {1000, -5, 7, 42, -2147483647 - 1};
  const int64_t sizes[5] = {1, 3, 7, 20, 50};
  int32_t labels[81];
  int64_t n = make_labels(labels, values, sizes, 5);
  ASSERT_EQ_INT(n, 81);
  const int pk[][2] = {{2, 4}, {3, 4}, {5, 2}, {2, 1}, {4, 3}, {1, 5}, {5, 8}};
  for (size_t t = 0; t < sizeof pk / sizeof pk[0]; t++) {
    dml_sampler *s;
    ASSERT_OK(dml_sampler_new_pk(labels, n, pk[t][0], pk[t][1], 11, &s));
    for (int64_t e = 0; e < 4; e++) {
      ASSERT_OK(dml_sampler_epoch(s, e));
      if (!check_epoch(s, labels, n, pk[t][0], pk[t][1], 1, NULL)) {
        fprintf(stderr, "  p = %d, k = %d, epoch %lld\n", pk[t][0], pk[t][1], (long long)e);
        ASSERT_TRUE(0);
      }
    }
    dml_sampler_free(s);
  }
  /* p = 2, k = 4: chunks 1, 1, 2, 5, 13; the class of 50 needs 13 batches */
  dml_sampler *s;
  ASSERT_OK(dml_sampler_new_pk(labels, n, 2, 4, 11, &s));
  ASSERT_EQ_INT(dml_sampler_num_batches(s), 13);
  dml_sampler_free(s);
}

TEST(pk_class_smaller_than_k) {
  /* k = 5: a class of 2 gives one chunk with its examples 2 or 3 times each; a class of 1
   * repeats its example 5 times */
  const int32_t values[4] = {3, 9, -1, 4};
  const int64_t sizes[4] = {2, 1, 5, 12};
  int32_t labels[20];
  int64_t n = make_labels(labels, values, sizes, 4);
  dml_sampler *s;
  ASSERT_OK(dml_sampler_new_pk(labels, n, 3, 5, 1, &s));
  ASSERT_OK(dml_sampler_epoch(s, 0));
  ASSERT_TRUE(check_epoch(s, labels, n, 3, 5, 1, NULL));
  /* chunks 1, 1, 1, 3: ceil(6 / 3) = 2 batches < 3, so 3 batches */
  ASSERT_EQ_INT(dml_sampler_num_batches(s), 3);
  dml_sampler_free(s);
  /* p = 1, every batch one class */
  ASSERT_OK(dml_sampler_new_pk(labels, n, 1, 5, 1, &s));
  ASSERT_OK(dml_sampler_epoch(s, 2));
  ASSERT_TRUE(check_epoch(s, labels, n, 1, 5, 1, NULL));
  ASSERT_EQ_INT(dml_sampler_num_batches(s), 6);
  dml_sampler_free(s);
}

TEST(pk_deterministic_and_resumable) {
  const int32_t values[6] = {10, 20, 30, 40, 50, 60};
  const int64_t sizes[6] = {9, 14, 3, 30, 6, 11};
  int32_t labels[73];
  int64_t n = make_labels(labels, values, sizes, 6);
  dml_sampler *a, *b, *c;
  ASSERT_OK(dml_sampler_new_pk(labels, n, 3, 4, 2024, &a));
  ASSERT_OK(dml_sampler_new_pk(labels, n, 3, 4, 2024, &b));
  ASSERT_OK(dml_sampler_new_pk(labels, n, 3, 4, 2025, &c));
  int64_t len = dml_sampler_num_batches(a) * dml_sampler_batch_size(a);
  ASSERT_OK(dml_sampler_epoch(a, 0));
  int64_t *a0 = dump(a);
  ASSERT_OK(dml_sampler_epoch(a, 1));
  int64_t *a1 = dump(a);
  ASSERT_OK(dml_sampler_epoch(a, 2));
  ASSERT_OK(dml_sampler_epoch(a, 3));
  int64_t *a3 = dump(a);
  /* epoch 3 directly, without epochs 0..2 */
  ASSERT_OK(dml_sampler_epoch(b, 3));
  int64_t *b3 = dump(b);
  ASSERT_OK(dml_sampler_epoch(b, 0));
  int64_t *b0 = dump(b);
  ASSERT_OK(dml_sampler_epoch(c, 0));
  int64_t *c0 = dump(c);
  ASSERT_TRUE(same(a3, b3, len));
  ASSERT_TRUE(same(a0, b0, len));
  ASSERT_TRUE(!same(a0, a1, len));
  ASSERT_TRUE(!same(a0, a3, len));
  ASSERT_TRUE(!same(a0, c0, len));
  /* re-preparing an epoch gives it again */
  ASSERT_OK(dml_sampler_epoch(a, 1));
  int64_t *a1b = dump(a);
  ASSERT_TRUE(same(a1, a1b, len));
  free(a0);
  free(a1);
  free(a1b);
  free(a3);
  free(b3);
  free(b0);
  free(c0);
  dml_sampler_free(a);
  dml_sampler_free(b);
  dml_sampler_free(c);
}

TEST(pk_large_classes_spread_over_the_epoch) {
  /* 10 classes of 8, 16, .., 80 examples: over many epochs the batches holding the largest
   * class are centred in the epoch, not piled at its start or end */
  int32_t labels[440];
  int64_t n = 0;
  for (int c = 0; c < 10; c++)
    for (int i = 0; i < 8 * (c + 1); i++) labels[n++] = c;
  dml_sampler *s;
  ASSERT_OK(dml_sampler_new_pk(labels, n, 4, 4, 5, &s));
  int64_t nb = dml_sampler_num_batches(s);
  int64_t idx[16];
  double pos = 0, hits = 0;
  for (int64_t e = 0; e < 20; e++) {
    ASSERT_OK(dml_sampler_epoch(s, e));
    for (int64_t b = 0; b < nb; b++) {
      ASSERT_OK(dml_sampler_batch(s, b, idx));
      for (int j = 0; j < 4; j++)
        if (labels[idx[j * 4]] == 9) {
          pos += (double)b / (double)(nb - 1);
          hits++;
        }
    }
  }
  ASSERT_TRUE(hits >= 20 * 20); /* 20 chunks per epoch, more if re-drawn */
  ASSERT_TRUE(pos / hits > 0.4 && pos / hits < 0.6);
  dml_sampler_free(s);
}

TEST(pk_random_configurations) {
  int32_t labels[600];
  for (uint64_t trial = 0; trial < 60; trial++) {
    int nc = 1 + (int)dml_rng_below(99, 1, trial * 8, 25);
    int64_t n = 0;
    for (int c = 0; c < nc; c++) {
      /* skewed sizes: mostly small, some large */
      uint64_t r = dml_rng_below(99, 2, trial * 64 + (uint64_t)c, 100);
      int64_t sz = 1 + (int64_t)(r * r / 400);
      int32_t value = (int32_t)dml_rng_u64(99, 3, trial * 64 + (uint64_t)c);
      for (int64_t i = 0; i < sz; i++) labels[n++] = value;
    }
    for (int64_t i = n - 1; i > 0; i--) { /* interleave */
      int64_t j = (int64_t)dml_rng_below(99, 4, trial * 1024 + (uint64_t)i, (uint64_t)(i + 1));
      int32_t t = labels[i];
      labels[i] = labels[j];
      labels[j] = t;
    }
    classes cl = classes_of(labels, n);
    int p = 1 + (int)dml_rng_below(99, 5, trial, (uint64_t)cl.count);
    int k = 1 + (int)dml_rng_below(99, 6, trial, 6);
    classes_free(&cl);
    dml_sampler *s;
    ASSERT_OK(dml_sampler_new_pk(labels, n, p, k, trial, &s));
    for (int64_t e = 0; e < 3; e++) {
      ASSERT_OK(dml_sampler_epoch(s, e * 7));
      if (!check_epoch(s, labels, n, p, k, 1, NULL)) {
        fprintf(stderr, "  trial %llu: n = %lld, p = %d, k = %d\n", (unsigned long long)trial,
                (long long)n, p, k);
        ASSERT_TRUE(0);
      }
    }
    dml_sampler_free(s);
  }
}

TEST(pk_many_classes) {
  /* 60000 examples in 6000 classes of 1..19: one epoch, checked in full */
  int64_t n = 60000;
  int32_t *labels = malloc((size_t)n * sizeof *labels);
  for (int64_t i = 0; i < n; i++) labels[i] = (int32_t)((i * 7919) % 6000) * 3 - 9000;
  for (int64_t i = 0; i < n; i += 10) labels[i] = (int32_t)(i % 6000) * 3 - 9000;
  dml_sampler *s;
  ASSERT_OK(dml_sampler_new_pk(labels, n, 32, 4, 3, &s));
  ASSERT_OK(dml_sampler_epoch(s, 41));
  int ok = check_epoch(s, labels, n, 32, 4, 1, NULL);
  dml_sampler_free(s);
  free(labels);
  ASSERT_TRUE(ok);
}

TEST(npair_batches) {
  /* classes of 1 (never sampled), 2, 3, 9, 24 examples, labels not 0..C-1 */
  const int32_t values[6] = {-5, 7, 1000, 64, -77, 5};
  const int64_t sizes[6] = {1, 2, 3, 9, 24, 1};
  int32_t labels[40];
  int64_t n = make_labels(labels, values, sizes, 6);
  for (int np = 1; np <= 4; np++) {
    dml_sampler *s;
    ASSERT_OK(dml_sampler_new_npair(labels, n, np, 8, &s));
    ASSERT_EQ_INT(dml_sampler_batch_size(s), 2 * np);
    for (int64_t e = 0; e < 4; e++) {
      ASSERT_OK(dml_sampler_epoch(s, e));
      /* anchors and positives: groups of 2 distinct examples of one class, np classes */
      if (!check_epoch(s, labels, n, np, 2, 2, NULL)) {
        fprintf(stderr, "  n_pairs = %d, epoch %lld\n", np, (long long)e);
        ASSERT_TRUE(0);
      }
    }
    dml_sampler_free(s);
  }
  /* 2 pairs: chunks 1, 2, 5, 12, so 12 batches */
  dml_sampler *s, *t;
  ASSERT_OK(dml_sampler_new_npair(labels, n, 2, 8, &s));
  ASSERT_OK(dml_sampler_new_npair(labels, n, 2, 8, &t));
  ASSERT_EQ_INT(dml_sampler_num_batches(s), 12);
  ASSERT_OK(dml_sampler_epoch(s, 5));
  ASSERT_OK(dml_sampler_epoch(t, 5));
  int64_t *x = dump(s), *y = dump(t);
  ASSERT_TRUE(same(x, y, 12 * 4));
  ASSERT_OK(dml_sampler_epoch(t, 6));
  free(y);
  y = dump(t);
  ASSERT_TRUE(!same(x, y, 12 * 4));
  free(x);
  free(y);
  dml_sampler_free(s);
  dml_sampler_free(t);
  /* even classes: every example exactly once */
  int32_t even[24];
  for (int i = 0; i < 24; i++) even[i] = 100 + (i % 4);
  ASSERT_OK(dml_sampler_new_npair(even, 24, 3, 1, &s));
  ASSERT_EQ_INT(dml_sampler_num_batches(s), 4);
  ASSERT_OK(dml_sampler_epoch(s, 0));
  int64_t count[24] = {0};
  ASSERT_TRUE(check_epoch(s, even, 24, 3, 2, 2, count));
  for (int i = 0; i < 24; i++) ASSERT_EQ_INT(count[i], 1);
  dml_sampler_free(s);
}

TEST(errors_have_messages) {
  int32_t labels[8] = {4, 4, 9, 9, -1, 3, 3, 12}; /* 5 classes; 3 with two examples */
  dml_sampler *s = (dml_sampler *)&labels;
  ASSERT_ERROR(dml_sampler_new_pk(labels, 8, 6, 2, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "only 5 distinct classes") != NULL);
  ASSERT_TRUE(s == NULL);
  ASSERT_ERROR(dml_sampler_new_pk(labels, 8, 2, 0, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "k = 0") != NULL);
  ASSERT_ERROR(dml_sampler_new_pk(labels, 8, 0, 2, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "p = 0") != NULL);
  ASSERT_ERROR(dml_sampler_new_pk(labels, 0, 2, 2, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "n = 0") != NULL);
  ASSERT_ERROR(dml_sampler_new_pk(NULL, 8, 2, 2, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "labels is NULL") != NULL);
  ASSERT_ERROR(dml_sampler_new_pk(labels, 8, 2, 2, 0, NULL), DML_ERR_INVALID_ARGUMENT);

  ASSERT_ERROR(dml_sampler_new_npair(labels, 8, 4, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "only 3 such classes") != NULL);
  ASSERT_TRUE(strstr(dml_last_error(), "2 more classes have a single example") != NULL);
  ASSERT_ERROR(dml_sampler_new_npair(labels, 8, 0, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "n_pairs = 0") != NULL);
  ASSERT_ERROR(dml_sampler_new_npair(labels, -3, 2, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_sampler_new_npair(NULL, 8, 2, 0, &s), DML_ERR_INVALID_ARGUMENT);
  int32_t singles[3] = {1, 2, 3};
  ASSERT_ERROR(dml_sampler_new_npair(singles, 3, 1, 0, &s), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "only 0 such classes") != NULL);

  ASSERT_OK(dml_sampler_new_pk(labels, 8, 5, 2, 0, &s));
  int64_t idx[10];
  ASSERT_ERROR(dml_sampler_batch(s, 0, idx), DML_ERR_STATE);
  ASSERT_TRUE(strstr(dml_last_error(), "dml_sampler_epoch") != NULL);
  ASSERT_ERROR(dml_sampler_epoch(s, -1), DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml_sampler_epoch(s, 0));
  ASSERT_EQ_INT(dml_sampler_num_batches(s), 1);
  ASSERT_OK(dml_sampler_batch(s, 0, idx));
  ASSERT_ERROR(dml_sampler_batch(s, 1, idx), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "out of range") != NULL);
  ASSERT_ERROR(dml_sampler_batch(s, -1, idx), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_sampler_batch(s, 0, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_sampler_batch(NULL, 0, idx), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_sampler_epoch(NULL, 0), DML_ERR_INVALID_ARGUMENT);
  ASSERT_EQ_INT(dml_sampler_num_batches(NULL), 0);
  ASSERT_EQ_INT(dml_sampler_batch_size(NULL), 0);
  dml_sampler_free(s);
  dml_sampler_free(NULL);
}
