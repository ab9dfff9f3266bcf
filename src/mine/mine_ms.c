/* The multi-similarity miner (Wang, Han, Huang, Dong, Scott 2019, "Multi-similarity loss with
 * general pair weighting", the pair-mining step), epsilon = 0.1 as pytorch-metric-learning:
 * with similarities s, per anchor i with at least one positive and one negative,
 *   keep negative n if s_in > min_p s_ip - epsilon,   positive p if s_ip < max_n s_in + epsilon;
 * with distances d the inequalities flip:
 *   keep negative n if d_in < max_p d_ip + epsilon,   positive p if d_ip > min_n d_in - epsilon.
 * In key space (key = d or -s, smaller = closer) both read key_n < max_p key_p + epsilon and
 * key_p > min_n key_n - epsilon. Anchors without a positive or a negative keep nothing.
 * A pair miner: trip is the band (-inf, +inf) over the kept pairs. */
#include <string.h>

#include "mine/mine_internal.h"

static dml_status mine_ms(const dml__miner *mn, dml__mine_args *a) {
  const int64_t b = a->b, r = a->r;
  const double eps = mn->opt[0];
#pragma omp parallel for schedule(static) if (b * r > DML__MINE_PAR)
  for (int64_t i = 0; i < b; i++) {
    const float *row = a->m + i * r;
    uint8_t *ri = a->rel + i * r;
    int64_t np = 0, nn = 0;
    double max_p = 0.0, min_n = 0.0;
    for (int64_t j = 0; j < r; j++) {
      if (ri[j] == DML__REL_NONE) continue;
      const double k = dml__mine_key(row, j, a->sim);
      if (ri[j] == DML__REL_POS) {
        if (np++ == 0 || k > max_p) max_p = k;
      } else {
        if (nn++ == 0 || k < min_n) min_n = k;
      }
    }
    if (np == 0 || nn == 0) {
      memset(ri, DML__REL_NONE, (size_t)r);
      continue;
    }
    const double tn = max_p + eps, tp = min_n - eps;
    for (int64_t j = 0; j < r; j++) {
      if (ri[j] == DML__REL_NONE) continue;
      const double k = dml__mine_key(row, j, a->sim);
      if (ri[j] == DML__REL_POS ? !(k > tp) : !(k < tn)) ri[j] = DML__REL_NONE;
    }
  }
  dml__mine_band_all(a);
  return DML_OK;
}

static const dml__opt_def ms_opts[] = {
    {"epsilon", 0.1, 0.0, 1e6, "slack around the hardest pair of the opposite kind"},
};

const dml__miner_def dml__miner_multi_similarity = {
    .name = "multi_similarity",
    .summary = "pairs within epsilon of the hardest pair of the other kind (Wang et al. 2019)",
    .opts = ms_opts,
    .n_opts = 1,
    .mine = mine_ms,
};
