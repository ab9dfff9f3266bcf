/* Distance-weighted sampling (Wu, Manmatha, Smola, Krahenbuhl 2017, "Sampling matters in deep
 * embedding learning"), with pytorch-metric-learning's DistanceWeightedMiner semantics
 * (cutoff = 0.5, nonzero_loss_cutoff = 1.4). On the unit sphere in R^D pairwise distances have
 * density q(d) = d^(D-2) (1 - d^2/4)^((D-3)/2); each negative n of anchor a is weighted by
 *   w_an = 1 / q(max(d_an, cutoff))   if max(d_an, cutoff) < nonzero_loss_cutoff, else 0,
 * computed in log space (log w = (2 - D) log d - (D - 3)/2 log(1 - d^2/4), shifted by its
 * per-anchor maximum before exp: d^(D-2) underflows float and double alike for D = 128), and
 * normalised per anchor; a weight that is not finite (d >= 2) is 0, and an anchor whose
 * weights are all 0 draws uniformly from its negatives. For every positive pair (a, p) one
 * negative is drawn by inverting the cumulative weights (in column order) at
 *   u = dml_rng_uniform(seed, step, a r + p):  the first n with sum_{n' <= n} w_an' > u sum w_a,
 * so the draws are a pure function of (seed, step, a, p) whatever the thread count.
 * Needs Euclidean distances between L2-normalised embeddings.
 * Output: the explicit list in tbuf (anchors at [0, b r), positives at [b r, 2 b r), negatives
 * at [2 b r, 3 b r)) sorted by anchor then positive; rel keeps the pairs of the triplets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dml/rng.h"
#include "mine/mine_internal.h"

static dml_status mine_dws(const dml__miner *mn, dml__mine_args *a) {
  if (a->distance != DML_DIST_EUCLIDEAN)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "miner distance_weighted: needs Euclidean distances between "
                      "L2-normalised embeddings (distance=euclidean normalize=1): the weights "
                      "are the inverse density of distances on the unit sphere");
  const int64_t b = a->b, r = a->r, br = b * r;
  const double cutoff = mn->opt[0], nonzero = mn->opt[1], dim = (double)a->dim;
  dml__triplets *t = a->trip;
  int32_t *ta = a->tbuf, *tp = a->tbuf + br, *tn = a->tbuf + 2 * br;
  t->explicit_list = 1;
  t->n = 0;
  t->a = ta;
  t->p = tp;
  t->neg = tn;
  t->lo = -INFINITY;
  t->hi = INFINITY;
  if (br == 0) return DML_OK;
  int64_t *off = malloc((size_t)(b + 1) * sizeof(int64_t));
  if (!off) return dml__error(DML_ERR_NO_MEMORY, "miner distance_weighted: out of memory");
  /* where each anchor's triplets go: one per positive when it has a negative */
  off[0] = 0;
#pragma omp parallel for schedule(static) if (br > DML__MINE_PAR)
  for (int64_t i = 0; i < b; i++) {
    const uint8_t *ri = a->rel + i * r;
    int64_t np = 0, nn = 0;
    for (int64_t j = 0; j < r; j++) {
      np += ri[j] == DML__REL_POS;
      nn += ri[j] == DML__REL_NEG;
    }
    off[i + 1] = nn > 0 ? np : 0;
  }
  for (int64_t i = 0; i < b; i++) off[i + 1] += off[i];
  int failed = 0;
#pragma omp parallel if (br > DML__MINE_PAR)
  {
    double *cum = malloc((size_t)r * sizeof(double));
    int32_t *negs = malloc((size_t)r * sizeof(int32_t));
    if (!cum || !negs) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < b; i++) {
      if (!cum || !negs) continue;
      const float *row = a->m + i * r;
      uint8_t *ri = a->rel + i * r;
      if (off[i + 1] == off[i]) { /* no positive or no negative */
        memset(ri, DML__REL_NONE, (size_t)r);
        continue;
      }
      /* log-weights of the negatives (-inf: weight 0), which leave rel until drawn */
      int64_t nn = 0;
      double mx = -INFINITY;
      for (int64_t j = 0; j < r; j++) {
        if (ri[j] != DML__REL_NEG) continue;
        ri[j] = DML__REL_NONE;
        double d = row[j];
        d = d > cutoff ? d : cutoff;
        double lw = -INFINITY;
        const double s = 1.0 - 0.25 * d * d;
        if (d < nonzero && s > 0.0) {
          lw = (2.0 - dim) * log(d) - 0.5 * (dim - 3.0) * log(s);
          if (!isfinite(lw)) lw = -INFINITY;
        }
        if (isnan(row[j])) lw = -INFINITY;
        mx = lw > mx ? lw : mx;
        negs[nn] = (int32_t)j;
        cum[nn++] = lw;
      }
      double acc = 0.0;
      for (int64_t k = 0; k < nn; k++) {
        acc += mx == -INFINITY ? 1.0 : (cum[k] == -INFINITY ? 0.0 : exp(cum[k] - mx));
        cum[k] = acc;
      }
      int64_t o = off[i];
      for (int64_t j = 0; j < r; j++) {
        if (ri[j] != DML__REL_POS) continue;
        const double target =
            (double)dml_rng_uniform(mn->seed, mn->step, (uint64_t)(i * r + j)) * acc;
        int64_t lo = 0, hi = nn - 1; /* cum[nn - 1] = acc > target */
        while (lo < hi) {
          const int64_t mid = lo + (hi - lo) / 2;
          if (cum[mid] > target)
            hi = mid;
          else
            lo = mid + 1;
        }
        ta[o] = (int32_t)i;
        tp[o] = (int32_t)j;
        tn[o] = negs[lo];
        o++;
      }
      for (int64_t k = off[i]; k < o; k++) ri[tn[k]] = DML__REL_NEG;
    }
    free(cum);
    free(negs);
  }
  t->n = off[b];
  free(off);
  if (failed) {
    t->n = 0;
    return dml__error(DML_ERR_NO_MEMORY, "miner distance_weighted: out of memory");
  }
  return DML_OK;
}

static const dml__opt_def dws_opts[] = {
    {"cutoff", 0.5, 0.0, 2.0, "distances are clipped below at this value before weighting"},
    {"nonzero_loss_cutoff", 1.4, 0.0, 4.0, "negatives at or beyond this distance get weight 0"},
};

const dml__miner_def dml__miner_distance_weighted = {
    .name = "distance_weighted",
    .summary = "per positive pair one negative drawn with probability 1/q(d) (Wu et al. 2017)",
    .triplets = 1,
    .opts = dws_opts,
    .n_opts = 2,
    .mine = mine_dws,
};
