/* The multi-similarity miner (Wang, Han, Huang, Dong, Scott 2019, "Multi-similarity loss with
 * general pair weighting", the pair-mining step), epsilon = 0.1 as pytorch-metric-learning:
 * with similarities s, per anchor i with at least one positive and one negative,
 *   keep negative n if s_in > min_p s_ip - epsilon,   positive p if s_ip < max_n s_in + epsilon;
 * with distances d the inequalities flip:
 *   keep negative n if d_in < max_p d_ip + epsilon,   positive p if d_ip > min_n d_in - epsilon.
 * In key space (key = d or -s, smaller = closer) both read key_n < max_p key_p + epsilon and
 * key_p > min_n key_n - epsilon. Anchors without a positive or a negative keep nothing.
 * A pair miner: trip is the band (-inf, +inf) over the kept pairs. */
#include <math.h>
#include <string.h>

#include "mine/mine_internal.h"

/* The thresholds are compared in float, exactly as in double: for a float k and a double t,
 * k < t iff k < up(t), the smallest float >= t, and k > t iff k > down(t), the largest float
 * <= t. The row loops use float selects on the relation code (0, 1, 2 as a float), which gcc
 * vectorises; ?: on the uint8 itself it leaves scalar. */
static float float_up(double t) {
  float f = (float)t;
  if ((double)f < t) f = nextafterf(f, INFINITY);
  return f;
}

static float float_down(double t) {
  float f = (float)t;
  if ((double)f > t) f = nextafterf(f, -INFINITY);
  return f;
}

static dml_status mine_ms(const dml__miner *mn, dml__mine_args *a) {
  const int64_t b = a->b, r = a->r;
  const double eps = mn->opt[0];
  const float sg = a->sim ? -1.0f : 1.0f; /* key = sg m, exact in float */
#pragma omp parallel for schedule(static) if (b * r > DML__MINE_PAR)
  for (int64_t i = 0; i < b; i++) {
    const float *row = a->m + i * r;
    uint8_t *ri = a->rel + i * r;
    /* m is finite (the core checks it), so the infinities mean "no such pair" */
    float max_p = -INFINITY, min_n = INFINITY;
#pragma omp simd reduction(max : max_p) reduction(min : min_n)
    for (int64_t j = 0; j < r; j++) {
      const float c = ri[j], k = sg * row[j];
      const float kp = c == (float)DML__REL_POS ? k : -INFINITY;
      const float kn = c == (float)DML__REL_NEG ? k : INFINITY;
      max_p = kp > max_p ? kp : max_p;
      min_n = kn < min_n ? kn : min_n;
    }
    if (max_p == -INFINITY || min_n == INFINITY) {
      memset(ri, DML__REL_NONE, (size_t)r);
      continue;
    }
    /* keep a negative if k < max_p + eps, a positive if k > min_n - eps (in double) */
    const float tn = float_up((double)max_p + eps), tp = float_down((double)min_n - eps);
#pragma omp simd
    for (int64_t j = 0; j < r; j++) {
      const float c = ri[j], k = sg * row[j];
      const int keep = (c == (float)DML__REL_POS && k > tp) || (c == (float)DML__REL_NEG && k < tn);
      ri[j] = (uint8_t)(keep ? c : 0.0f);
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
