/* Triplet miners that keep a band of the triplet gap, gap = d_an - d_ap for distances and
 * s_ap - s_an for similarities (gap > 0: the negative is farther than the positive), as the
 * types of pytorch-metric-learning's TripletMarginMiner (Schroff et al. 2015 for semi-hard):
 *   semihard          0 < gap <= margin        band (0, margin]
 *   hard_triplets     gap <= margin, gap <= 0  band (-inf, min(margin, 0)]
 *   margin_triplets   gap <= margin            band (-inf, margin]
 * The triplets stay implicit (the band over rel); rel is reduced to the pairs that occur in at
 * least one triplet of the band, and trip->n counts the triplets. Per anchor the smaller of its
 * positive and negative sets is sorted by key (merge sort); for a member of the other set the
 * gap is monotone along that order (k_n - k_p rises with k_n, falls with k_p), so its partners
 * form one contiguous run, found by two binary searches, and a difference array over the runs
 * marks the sorted members that occur. O((P + N) log min(P, N)) per anchor (P x K batches: few
 * positives), scratch 3 min(P, N) + 1 <= 3 r int32 per anchor in tbuf. */
#include <math.h>
#include <string.h>

#include "mine/mine_internal.h"

/* Stable ascending sort of the columns idx[0..n) by key (bottom-up merge sort, tmp [n]). */
static void sort_by_key(int32_t *idx, int32_t *tmp, int64_t n, const float *row, int sim) {
  int32_t *src = idx, *dst = tmp;
  for (int64_t w = 1; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int64_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        dst[k++] = dml__mine_key(row, src[j], sim) < dml__mine_key(row, src[i], sim) ? src[j++]
                                                                                   : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    int32_t *s = src;
    src = dst;
    dst = s;
  }
  if (src != idx) memcpy(idx, src, (size_t)n * sizeof(int32_t));
}

/* Branch-free binary searches (the comparisons are unpredictable): how many leading entries of
 * a list satisfy a predicate that is true, then false along it. */

/* x: negatives sorted by key, k: a positive's key. The gap k_x - k rises along x: the first
 * position where it exceeds t. */
static int64_t first_gap_above(const int32_t *x, int64_t n, const float *row, int sim, double k,
                               double t) {
  if (n == 0) return 0;
  const int32_t *base = x;
  while (n > 1) {
    const int64_t half = n / 2;
    base += !(dml__mine_key(row, base[half], sim) - k > t) ? half : 0;
    n -= half;
  }
  return (base - x) + !(dml__mine_key(row, base[0], sim) - k > t);
}

/* x: positives sorted by key, k: a negative's key. The gap k - k_x falls along x: how many
 * leading positions have it above t. */
static int64_t count_gap_above(const int32_t *x, int64_t n, const float *row, int sim, double k,
                               double t) {
  if (n == 0) return 0;
  const int32_t *base = x;
  while (n > 1) {
    const int64_t half = n / 2;
    base += k - dml__mine_key(row, base[half], sim) > t ? half : 0;
    n -= half;
  }
  return (base - x) + (k - dml__mine_key(row, base[0], sim) > t);
}

static dml_status mine_band(dml__mine_args *a, double lo, double hi) {
  const int64_t b = a->b, r = a->r;
  int64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (b * r > DML__MINE_PAR)
  for (int64_t i = 0; i < b; i++) {
    const float *row = a->m + i * r;
    uint8_t *ri = a->rel + i * r;
    int64_t np = 0, nn = 0;
    for (int64_t j = 0; j < r; j++) {
      np += ri[j] == DML__REL_POS;
      nn += ri[j] == DML__REL_NEG;
    }
    if (np == 0 || nn == 0) {
      memset(ri, DML__REL_NONE, (size_t)r);
      continue;
    }
    /* sort the smaller side (s of them: 3 s + 1 <= 3 r scratch), probe with the other */
    const int sort_neg = nn <= np;
    const uint8_t sorted_rel = sort_neg ? DML__REL_NEG : DML__REL_POS;
    const uint8_t probe_rel = sort_neg ? DML__REL_POS : DML__REL_NEG;
    const int64_t ns = sort_neg ? nn : np;
    int32_t *xs = a->tbuf + 3 * i * r, *tmp = xs + ns, *cover = xs + 2 * ns;
    for (int64_t j = 0, k = 0; j < r; j++)
      if (ri[j] == sorted_rel) xs[k++] = (int32_t)j;
    sort_by_key(xs, tmp, ns, row, a->sim);
    memset(cover, 0, (size_t)(ns + 1) * sizeof(int32_t));
    const double k_first = dml__mine_key(row, xs[0], a->sim);
    const double k_last = dml__mine_key(row, xs[ns - 1], a->sim);
    int64_t count = 0;
    for (int64_t j = 0; j < r; j++) {
      if (ri[j] != probe_rel) continue;
      const double k = dml__mine_key(row, j, a->sim);
      /* the extreme gaps first: most probes of a narrow band have no partner at all (the same
       * comparisons the binary searches would end with) */
      if (sort_neg ? (k_last - k <= lo || k_first - k > hi)
                   : (k - k_first <= lo || k - k_last > hi)) {
        ri[j] = DML__REL_NONE;
        continue;
      }
      int64_t s, e; /* the run xs[s..e) of partners with lo < gap <= hi */
      if (sort_neg) {
        s = lo == -INFINITY ? 0 : first_gap_above(xs, ns, row, a->sim, k, lo);
        e = hi == INFINITY ? ns : first_gap_above(xs, ns, row, a->sim, k, hi);
      } else {
        s = hi == INFINITY ? 0 : count_gap_above(xs, ns, row, a->sim, k, hi);
        e = lo == -INFINITY ? ns : count_gap_above(xs, ns, row, a->sim, k, lo);
      }
      if (e > s) {
        cover[s]++;
        cover[e]--;
        count += e - s;
      } else {
        ri[j] = DML__REL_NONE;
      }
    }
    int64_t run = 0;
    for (int64_t k = 0; k < ns; k++) {
      run += cover[k];
      if (run == 0) ri[xs[k]] = DML__REL_NONE;
    }
    total += count;
  }
  dml__triplets *t = a->trip;
  t->explicit_list = 0;
  t->n = total;
  t->a = t->p = t->neg = NULL;
  t->lo = lo;
  t->hi = hi;
  return DML_OK;
}

static dml_status mine_semihard(const dml__miner *mn, dml__mine_args *a) {
  return mine_band(a, 0.0, mn->opt[0]);
}

static dml_status mine_hard_triplets(const dml__miner *mn, dml__mine_args *a) {
  return mine_band(a, -INFINITY, mn->opt[0] < 0.0 ? mn->opt[0] : 0.0);
}

static dml_status mine_margin_triplets(const dml__miner *mn, dml__mine_args *a) {
  return mine_band(a, -INFINITY, mn->opt[0]);
}

static const dml__opt_def semihard_opts[] = {
    {"margin", 0.2, 0.0, 1e6, "keep triplets whose gap d_an - d_ap is in (0, margin]"},
};
static const dml__opt_def hard_opts[] = {
    {"margin", 0.2, -1e6, 1e6, "keep triplets whose gap d_an - d_ap is <= min(margin, 0)"},
};
static const dml__opt_def margin_opts[] = {
    {"margin", 0.2, -1e6, 1e6, "keep triplets whose gap d_an - d_ap is <= margin"},
};

const dml__miner_def dml__miner_semihard = {
    .name = "semihard",
    .summary = "triplets with 0 < d_an - d_ap <= margin (semi-hard negatives, Schroff et al. 2015)",
    .triplets = 1,
    .opts = semihard_opts,
    .n_opts = 1,
    .mine = mine_semihard,
};

const dml__miner_def dml__miner_hard_triplets = {
    .name = "hard_triplets",
    .summary = "triplets whose negative is no farther than the positive (gap <= 0)",
    .triplets = 1,
    .opts = hard_opts,
    .n_opts = 1,
    .mine = mine_hard_triplets,
};

const dml__miner_def dml__miner_margin_triplets = {
    .name = "margin_triplets",
    .summary = "triplets that violate the margin (d_an - d_ap <= margin)",
    .triplets = 1,
    .opts = margin_opts,
    .n_opts = 1,
    .mine = mine_margin_triplets,
};
