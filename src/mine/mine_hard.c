/* One triplet per anchor:
 *   batch_hard (Hermans, Beyer, Leibe 2017, "In defense of the triplet loss"): the hardest
 *     positive (largest distance / smallest similarity) and the hardest negative (smallest
 *     distance / largest similarity) of each anchor;
 *   easy_hard (Xuan, Stylianou, Liu, Pless 2020, "Improved embeddings with easy positive
 *     triplet mining"): the easiest positive (closest) and the hardest negative (closest);
 *     hard_positive=1 takes the hardest positive instead, which is batch_hard.
 * An anchor with no positive or no negative gives no triplet. Ties go to the lowest column.
 * Output: the explicit list in tbuf (anchors at [0, b r), positives at [b r, 2 b r), negatives
 * at [2 b r, 3 b r)), sorted by anchor; rel keeps only the pairs of the triplets. */
#include <math.h>

#include "mine/mine_internal.h"

static dml_status mine_pick(dml__mine_args *a, int hard_positive) {
  const int64_t b = a->b, r = a->r, br = b * r;
  dml__triplets *t = a->trip;
  t->explicit_list = 1;
  t->n = 0;
  t->lo = -INFINITY;
  t->hi = INFINITY;
  int32_t *ta = a->tbuf, *tp = a->tbuf + br, *tn = a->tbuf + 2 * br;
  t->a = ta;
  t->p = tp;
  t->neg = tn;
  if (br == 0) return DML_OK;
#pragma omp parallel for schedule(static) if (br > DML__MINE_PAR)
  for (int64_t i = 0; i < b; i++) {
    /* the chosen columns go to position i (-1: none), compacted below */
    const float *row = a->m + i * r;
    uint8_t *ri = a->rel + i * r;
    int64_t bp = -1, bn = -1;
    double kp = 0.0, kn = 0.0;
    for (int64_t j = 0; j < r; j++) {
      if (ri[j] == DML__REL_POS) {
        const double k = dml__mine_key(row, j, a->sim);
        if (bp < 0 || (hard_positive ? k > kp : k < kp)) {
          bp = j;
          kp = k;
        }
      } else if (ri[j] == DML__REL_NEG) {
        const double k = dml__mine_key(row, j, a->sim);
        if (bn < 0 || k < kn) {
          bn = j;
          kn = k;
        }
      }
    }
    const int keep = bp >= 0 && bn >= 0;
    for (int64_t j = 0; j < r; j++)
      ri[j] = !keep ? DML__REL_NONE
              : j == bp ? DML__REL_POS
              : j == bn ? DML__REL_NEG
                        : DML__REL_NONE;
    tp[i] = keep ? (int32_t)bp : -1;
    tn[i] = keep ? (int32_t)bn : -1;
  }
  /* in order: position n <= i, so entry i is read before anything overwrites it */
  int64_t n = 0;
  for (int64_t i = 0; i < b; i++) {
    const int32_t p = tp[i], q = tn[i];
    if (p < 0) continue;
    ta[n] = (int32_t)i;
    tp[n] = p;
    tn[n] = q;
    n++;
  }
  t->n = n;
  return DML_OK;
}

static dml_status mine_batch_hard(const dml__miner *mn, dml__mine_args *a) {
  (void)mn;
  return mine_pick(a, 1);
}

static dml_status mine_easy_hard(const dml__miner *mn, dml__mine_args *a) {
  return mine_pick(a, mn->opt[0] != 0.0);
}

const dml__miner_def dml__miner_batch_hard = {
    .name = "batch_hard",
    .summary = "per anchor the hardest positive and the hardest negative (Hermans et al. 2017)",
    .triplets = 1,
    .mine = mine_batch_hard,
};

static const dml__opt_def easy_hard_opts[] = {
    {"hard_positive", 0, 0, 1, "1: the hardest positive instead of the easiest (batch_hard)"},
};

const dml__miner_def dml__miner_easy_hard = {
    .name = "easy_hard",
    .summary =
        "per anchor the easiest (closest) positive and the hardest negative (Xuan et al. 2020)",
    .triplets = 1,
    .opts = easy_hard_opts,
    .n_opts = 1,
    .mine = mine_easy_hard,
};
