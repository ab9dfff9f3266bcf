/* Class-balanced batch samplers (P x K and N-pair), one epoch's plan at a time.
 *
 * P x K batches (Schroff et al., FaceNet, CVPR 2015; Hermans et al., "In Defense of the Triplet
 * Loss", 2017): p distinct classes, k examples each. Unlike pytorch-metric-learning's
 * MPerClassSampler, which draws k examples per class per batch and so skips examples of large
 * classes (its issue #684), every example is visited at least once per epoch:
 *
 *   1. Each class c (s_c examples) is shuffled with a stream derived from (epoch, c) and cut
 *      into m_c = ceil(s_c / k) chunks: chunk j is the k positions j*k .. j*k + k - 1 of the
 *      shuffled class, taken cyclically (mod s_c). A last chunk that runs past the end thus
 *      wraps to the class's first examples, which are distinct from the chunk's own when
 *      s_c >= k; a class with s_c < k has one chunk holding each of its examples
 *      floor(k / s_c) or ceil(k / s_c) times.
 *   2. The epoch has B = max(ceil(M / p), max_c m_c) batches, M = sum_c m_c: the fewest
 *      possible, since a class contributes at most one chunk to a batch. Batch t (R = B - t
 *      batches left) takes first every class with exactly R chunks left (it must appear in
 *      every remaining batch), then draws further classes without replacement with
 *      probability proportional to their chunks left (a Fenwick tree over the counts), so
 *      large classes are spread over the epoch. This keeps sum_c left_c <= R * p and
 *      max_c left_c <= R, so every chunk is placed within the B batches.
 *   3. When fewer than p classes still have chunks (only in the last batches), the free places
 *      take re-drawn chunks: classes not yet in the batch, drawn with probability proportional
 *      to their size, each giving k cyclically consecutive examples from a random position of
 *      its shuffled order.
 *   4. The p classes of a batch are put in random order, and the batches themselves in random
 *      order, so the re-drawn batches are not all at the end of the epoch.
 *
 * Repeats per epoch are therefore B * p * k - n, the minimum any P x K schedule that visits
 * every example needs. Everything is a pure function of (seed, epoch): counter-based streams
 * (dml_rng_*) keyed by the epoch, so any epoch can be prepared directly.
 *
 * N-pair batches (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
 * Objective", NeurIPS 2016) are the same plan with k = 2 over the classes with at least two
 * examples: each chunk is an (anchor, positive) pair of different examples.
 *
 * Memory: O(n + C + B * p) int64 (C classes), allocated once at construction. */
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/rng.h"
#include "dml/sampler.h"

/* Purposes of the random streams of one epoch. */
enum { STREAM_SHUFFLE = 1, STREAM_DRAW, STREAM_REDRAW, STREAM_SLOTS, STREAM_ORDER };

struct dml_sampler {
  int64_t p, k;
  int64_t num_classes; /* C: classes that are sampled */
  int64_t num_batches; /* B */
  int64_t n_used;      /* examples in the sampled classes */
  int64_t max_chunks;  /* max_c m_c */
  uint64_t seed;
  int64_t epoch;        /* prepared epoch, -1 before the first dml_sampler_epoch */
  int64_t *class_start; /* [C + 1] class c owns members[class_start[c] .. class_start[c + 1]) */
  int64_t *members;     /* [n_used] example indices by class, ascending within a class */
  int64_t *perm;        /* [n_used] this epoch's shuffle of members, class by class */
  int64_t *plan_class;  /* [B * p] class of each place, batches in generation order */
  int64_t *plan_start;  /* [B * p] first position of the chunk within the shuffled class */
  int64_t *order;       /* [B] batch i of the epoch is generated batch order[i] */
  /* scratch of dml_sampler_epoch */
  int64_t *left;          /* [C] chunks not yet placed */
  int64_t *tree_left;     /* [C + 1] Fenwick tree over left */
  int64_t *tree_size;     /* [C + 1] Fenwick tree over class sizes */
  int64_t *next, *prev;   /* [C] classes in lists by chunks left */
  int64_t *head;          /* [max_chunks + 1] first class of each list, -1 if empty */
  int64_t *pick, *pick_start; /* [p] the classes of the batch being built */
};

/* splitmix64's finaliser: spreads (epoch, purpose, item) over the 64-bit stream space. */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

static uint64_t stream_of(int64_t epoch, int purpose, uint64_t item) {
  return mix64(mix64((uint64_t)epoch * 8u + (uint64_t)purpose) + item);
}

static int64_t class_size(const dml_sampler *s, int64_t c) {
  return s->class_start[c + 1] - s->class_start[c];
}

/* Fenwick tree t[1..C] over weights w[0..C). */
static void tree_build(int64_t *t, int64_t nc, const int64_t *w) {
  t[0] = 0;
  for (int64_t i = 1; i <= nc; i++) t[i] = w[i - 1];
  for (int64_t i = 1; i <= nc; i++) {
    int64_t j = i + (i & -i);
    if (j <= nc) t[j] += t[i];
  }
}

static void tree_add(int64_t *t, int64_t nc, int64_t c, int64_t v) {
  for (int64_t i = c + 1; i <= nc; i += i & -i) t[i] += v;
}

/* The class c whose weight interval [w_0 + .. + w_{c-1}, w_0 + .. + w_c) contains u. */
static int64_t tree_find(const int64_t *t, int64_t nc, int64_t u) {
  int64_t top = 1;
  while (top * 2 <= nc) top *= 2;
  int64_t pos = 0;
  for (int64_t step = top; step > 0; step >>= 1) {
    if (pos + step <= nc && t[pos + step] <= u) {
      pos += step;
      u -= t[pos];
    }
  }
  return pos;
}

static void list_insert(dml_sampler *s, int64_t c, int64_t r) {
  s->prev[c] = -1;
  s->next[c] = s->head[r];
  if (s->head[r] >= 0) s->prev[s->head[r]] = c;
  s->head[r] = c;
}

static void list_remove(dml_sampler *s, int64_t c, int64_t r) {
  if (s->prev[c] >= 0)
    s->next[s->prev[c]] = s->next[c];
  else
    s->head[r] = s->next[c];
  if (s->next[c] >= 0) s->prev[s->next[c]] = s->prev[c];
}

typedef struct {
  int32_t label;
  int64_t index;
} labelled;

static int cmp_labelled(const void *a, const void *b) {
  const labelled *x = a, *y = b;
  if (x->label != y->label) return x->label < y->label ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

void dml_sampler_free(dml_sampler *s) {
  if (!s) return;
  free(s->class_start);
  free(s->members);
  free(s->perm);
  free(s->plan_class);
  free(s->plan_start);
  free(s->order);
  free(s->left);
  free(s->tree_left);
  free(s->tree_size);
  free(s->next);
  free(s->prev);
  free(s->head);
  free(s->pick);
  free(s->pick_start);
  free(s);
}

static void *alloc_i64(int64_t count, int *failed) {
  void *p = malloc((size_t)(count > 0 ? count : 1) * sizeof(int64_t));
  if (!p) *failed = 1;
  return p;
}

/* Groups labels into classes, keeps those with at least `min_size` examples, checks that p
 * fit, and allocates everything. `who` names the public function for messages. */
static dml_status build(const char *who, const int32_t *labels, int64_t n, int64_t p, int64_t k,
                        int64_t min_size, uint64_t seed, dml_sampler **out) {
  labelled *lab = malloc((size_t)n * sizeof *lab);
  if (!lab)
    return dml__error(DML_ERR_NO_MEMORY, "%s: cannot allocate %lld bytes to group %lld labels",
                      who, (long long)((size_t)n * sizeof *lab), (long long)n);
  for (int64_t i = 0; i < n; i++) {
    lab[i].label = labels[i];
    lab[i].index = i;
  }
  qsort(lab, (size_t)n, sizeof *lab, cmp_labelled);

  int64_t distinct = 0, kept = 0, n_used = 0, total_chunks = 0, max_chunks = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j < n && lab[j].label == lab[i].label) j++;
    distinct++;
    if (j - i >= min_size) {
      int64_t m = (j - i + k - 1) / k;
      kept++;
      n_used += j - i;
      total_chunks += m;
      if (m > max_chunks) max_chunks = m;
    }
    i = j;
  }
  if (kept < p) {
    free(lab);
    if (min_size > 1)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: n_pairs = %lld needs %lld classes with at least 2 examples, but "
                        "the labels have only %lld such classes (%lld more classes have a "
                        "single example and cannot form a pair); use n_pairs <= %lld",
                        who, (long long)p, (long long)p, (long long)kept,
                        (long long)(distinct - kept), (long long)kept);
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: p = %lld classes per batch, but the %lld labels hold only %lld "
                      "distinct classes; use p <= %lld",
                      who, (long long)p, (long long)n, (long long)kept, (long long)kept);
  }
  int64_t batches = (total_chunks + p - 1) / p;
  if (batches < max_chunks) batches = max_chunks;
  if (batches > INT64_MAX / 16 / p / k) {
    free(lab);
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %lld batches of %lld examples overflow",
                      who, (long long)batches, (long long)(p * k));
  }

  dml_sampler *s = calloc(1, sizeof *s);
  if (!s) {
    free(lab);
    return dml__error(DML_ERR_NO_MEMORY, "%s: cannot allocate the sampler", who);
  }
  s->p = p;
  s->k = k;
  s->num_classes = kept;
  s->num_batches = batches;
  s->n_used = n_used;
  s->max_chunks = max_chunks;
  s->seed = seed;
  s->epoch = -1;
  int failed = 0;
  int64_t nc = kept, slots = batches * p;
  s->class_start = alloc_i64(nc + 1, &failed);
  s->members = alloc_i64(n_used, &failed);
  s->perm = alloc_i64(n_used, &failed);
  s->plan_class = alloc_i64(slots, &failed);
  s->plan_start = alloc_i64(slots, &failed);
  s->order = alloc_i64(batches, &failed);
  s->left = alloc_i64(nc, &failed);
  s->tree_left = alloc_i64(nc + 1, &failed);
  s->tree_size = alloc_i64(nc + 1, &failed);
  s->next = alloc_i64(nc, &failed);
  s->prev = alloc_i64(nc, &failed);
  s->head = alloc_i64(max_chunks + 1, &failed);
  s->pick = alloc_i64(p, &failed);
  s->pick_start = alloc_i64(p, &failed);
  if (failed) {
    free(lab);
    dml_sampler_free(s);
    return dml__error(DML_ERR_NO_MEMORY,
                      "%s: cannot allocate the plan of %lld batches for %lld examples", who,
                      (long long)batches, (long long)n);
  }
  int64_t c = 0, o = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    while (j < n && lab[j].label == lab[i].label) j++;
    if (j - i >= min_size) {
      s->class_start[c++] = o;
      for (int64_t t = i; t < j; t++) s->members[o++] = lab[t].index;
    }
    i = j;
  }
  s->class_start[c] = o;
  DML_ASSERT(c == nc && o == n_used);
  free(lab);
  *out = s;
  return DML_OK;
}

dml_status dml_sampler_new_pk(const int32_t *labels, int64_t n, int p, int k, uint64_t seed,
                              dml_sampler **out) {
  const char *who = "dml_sampler_new_pk";
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: out is NULL", who);
  *out = NULL;
  if (!labels) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: labels is NULL", who);
  if (n < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: n = %lld examples; a sampler needs at least one labelled example",
                      who, (long long)n);
  if (p < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: p = %d classes per batch; p must be at least 1 (2 or more for "
                      "losses that need negatives)",
                      who, p);
  if (k < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: k = %d examples per class; k must be at least 1 (2 or more for "
                      "losses that need positives)",
                      who, k);
  return build(who, labels, n, p, k, 1, seed, out);
}

dml_status dml_sampler_new_npair(const int32_t *labels, int64_t n, int n_pairs, uint64_t seed,
                                 dml_sampler **out) {
  const char *who = "dml_sampler_new_npair";
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: out is NULL", who);
  *out = NULL;
  if (!labels) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: labels is NULL", who);
  if (n < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: n = %lld examples; a sampler needs at least one labelled example",
                      who, (long long)n);
  if (n_pairs < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: n_pairs = %d; a batch needs at least 1 pair (2 or more for the "
                      "N-pair loss to have negatives)",
                      who, n_pairs);
  return build(who, labels, n, n_pairs, 2, 2, seed, out);
}

/* Random order of the p places of a batch (pick and pick_start move together). */
static void shuffle_places(dml_sampler *s, uint64_t stream, uint64_t *idx) {
  for (int64_t i = s->p - 1; i > 0; i--) {
    int64_t j = (int64_t)dml_rng_below(s->seed, stream, (*idx)++, (uint64_t)(i + 1));
    int64_t t = s->pick[i];
    s->pick[i] = s->pick[j];
    s->pick[j] = t;
    t = s->pick_start[i];
    s->pick_start[i] = s->pick_start[j];
    s->pick_start[j] = t;
  }
}

dml_status dml_sampler_epoch(dml_sampler *s, int64_t epoch) {
  if (!s) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_sampler_epoch: sampler is NULL");
  if (epoch < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_sampler_epoch: epoch = %lld; epochs are numbered from 0",
                      (long long)epoch);
  const int64_t nc = s->num_classes, p = s->p, k = s->k, nb = s->num_batches;

  /* 1. this epoch's order within each class */
  memcpy(s->perm, s->members, (size_t)s->n_used * sizeof *s->perm);
  for (int64_t c = 0; c < nc; c++)
    dml_rng_shuffle_i64(s->perm + s->class_start[c], class_size(s, c), s->seed,
                        stream_of(epoch, STREAM_SHUFFLE, (uint64_t)c));

  /* 2. chunks left per class: lists by count, Fenwick trees for the weighted draws */
  int64_t total_left = 0, total_size = s->n_used;
  for (int64_t r = 0; r <= s->max_chunks; r++) s->head[r] = -1;
  for (int64_t c = 0; c < nc; c++) {
    s->left[c] = (class_size(s, c) + k - 1) / k;
    total_left += s->left[c];
    list_insert(s, c, s->left[c]);
  }
  tree_build(s->tree_left, nc, s->left);
  for (int64_t c = 0; c < nc; c++) s->left[c] = class_size(s, c);
  tree_build(s->tree_size, nc, s->left);
  for (int64_t c = 0; c < nc; c++) s->left[c] = (class_size(s, c) + k - 1) / k;

  /* 3. batches */
  const uint64_t draw = stream_of(epoch, STREAM_DRAW, 0);
  const uint64_t redraw = stream_of(epoch, STREAM_REDRAW, 0);
  const uint64_t slots = stream_of(epoch, STREAM_SLOTS, 0);
  uint64_t draw_i = 0, redraw_i = 0, slots_i = 0;
  for (int64_t t = 0; t < nb; t++) {
    const int64_t remaining = nb - t;
    int64_t h = 0;
    /* classes that must appear in every remaining batch */
    if (remaining <= s->max_chunks) {
      for (int64_t c = s->head[remaining]; c >= 0; c = s->next[c]) {
        DML_ASSERT(h < p);
        s->pick[h++] = c;
      }
    }
    for (int64_t j = 0; j < h; j++) {
      tree_add(s->tree_left, nc, s->pick[j], -s->left[s->pick[j]]);
      total_left -= s->left[s->pick[j]];
    }
    while (h < p && total_left > 0) {
      int64_t u = (int64_t)dml_rng_below(s->seed, draw, draw_i++, (uint64_t)total_left);
      int64_t c = tree_find(s->tree_left, nc, u);
      DML_ASSERT(c < nc && s->left[c] > 0);
      s->pick[h++] = c;
      tree_add(s->tree_left, nc, c, -s->left[c]);
      total_left -= s->left[c];
    }
    for (int64_t j = 0; j < h; j++) {
      int64_t c = s->pick[j], m = (class_size(s, c) + k - 1) / k;
      s->pick_start[j] = (m - s->left[c]) * k;
      list_remove(s, c, s->left[c]);
      s->left[c]--;
      if (s->left[c] > 0) list_insert(s, c, s->left[c]);
      tree_add(s->tree_left, nc, c, s->left[c]);
      total_left += s->left[c];
    }
    if (h < p) {
      /* fewer than p classes have chunks left: re-drawn chunks of other classes */
      for (int64_t j = 0; j < h; j++) {
        tree_add(s->tree_size, nc, s->pick[j], -class_size(s, s->pick[j]));
        total_size -= class_size(s, s->pick[j]);
      }
      for (; h < p; h++) {
        DML_ASSERT(total_size > 0);
        int64_t u = (int64_t)dml_rng_below(s->seed, redraw, redraw_i++, (uint64_t)total_size);
        int64_t c = tree_find(s->tree_size, nc, u), sz = class_size(s, c);
        s->pick[h] = c;
        s->pick_start[h] = (int64_t)dml_rng_below(s->seed, redraw, redraw_i++, (uint64_t)sz);
        tree_add(s->tree_size, nc, c, -sz);
        total_size -= sz;
      }
      for (int64_t j = 0; j < p; j++) {
        tree_add(s->tree_size, nc, s->pick[j], class_size(s, s->pick[j]));
        total_size += class_size(s, s->pick[j]);
      }
    }
    shuffle_places(s, slots, &slots_i);
    memcpy(s->plan_class + t * p, s->pick, (size_t)p * sizeof *s->pick);
    memcpy(s->plan_start + t * p, s->pick_start, (size_t)p * sizeof *s->pick_start);
  }
  DML_ASSERT(total_left == 0);

  /* 4. batches in random order */
  for (int64_t t = 0; t < nb; t++) s->order[t] = t;
  dml_rng_shuffle_i64(s->order, nb, s->seed, stream_of(epoch, STREAM_ORDER, 0));
  s->epoch = epoch;
  return DML_OK;
}

int64_t dml_sampler_num_batches(const dml_sampler *s) { return s ? s->num_batches : 0; }

int64_t dml_sampler_batch_size(const dml_sampler *s) { return s ? s->p * s->k : 0; }

dml_status dml_sampler_batch(const dml_sampler *s, int64_t i, int64_t *indices) {
  if (!s || !indices)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_sampler_batch: %s is NULL",
                      !s ? "sampler" : "indices");
  if (s->epoch < 0)
    return dml__error(DML_ERR_STATE,
                      "dml_sampler_batch: no epoch is prepared; call dml_sampler_epoch first");
  if (i < 0 || i >= s->num_batches)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_sampler_batch: batch %lld is out of range; an epoch has %lld "
                      "batches (0 .. %lld)",
                      (long long)i, (long long)s->num_batches, (long long)(s->num_batches - 1));
  const int64_t g = s->order[i], p = s->p, k = s->k;
  for (int64_t j = 0; j < p; j++) {
    int64_t c = s->plan_class[g * p + j], pos = s->plan_start[g * p + j];
    const int64_t *cls = s->perm + s->class_start[c];
    int64_t sz = class_size(s, c);
    for (int64_t t = 0; t < k; t++) {
      indices[j * k + t] = cls[pos];
      if (++pos == sz) pos = 0;
    }
  }
  return DML_OK;
}
