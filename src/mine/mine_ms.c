/* The multi-similarity miner (Wang, Han, Huang, Dong, Scott 2019, "Multi-similarity loss with
 * general pair weighting", the pair-mining step), epsilon = 0.1 as pytorch-metric-learning:
 * with similarities s, per anchor i with at least one positive and one negative,
 *   keep negative n if s_in > min_p s_ip - epsilon,   positive p if s_ip < max_n s_in + epsilon;
 * with distances d the inequalities flip:
 *   keep negative n if d_in < max_p d_ip + epsilon,   positive p if d_ip > min_n d_in - epsilon.
 * In key space (key = d or -s, smaller = closer) both read key_n < max_p key_p + epsilon and
 * key_p > min_n key_n - epsilon. Anchors without a positive or a negative keep nothing.
 * A pair miner: trip is the band (-inf, +inf) over the kept pairs. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "mine/mine_internal.h"

/* The thresholds are compared in float, exactly as in double: for a float k and a double t,
 * k < t iff k < up(t), the smallest float >= t, and k > t iff k > down(t), the largest float
 * <= t. The row loops mask by multiplying with 0/1 floats made from the relation code, which
 * gcc 12 vectorises; ?: on the uint8 (and sometimes on floats next to a reduction) it leaves
 * scalar. */
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
    /* with c = rel as a float, positive = c (2 - c) and negative = c (c - 1) / 2 are exactly
     * 0 or 1; a masked-out lane enters the max / min as -+FLT_MAX */
    float max_p = -FLT_MAX, min_n = FLT_MAX;
    int32_t np = 0, nn = 0;
#pragma omp simd reduction(max : max_p) reduction(min : min_n) reduction(+ : np, nn)
    for (int64_t j = 0; j < r; j++) {
      const float c = ri[j], k = sg * row[j];
      const float p = c * (2.0f - c), n = 0.5f * c * (c - 1.0f);
      const float kp = p * k - (1.0f - p) * FLT_MAX, kn = n * k + (1.0f - n) * FLT_MAX;
      max_p = kp > max_p ? kp : max_p;
      min_n = kn < min_n ? kn : min_n;
      np += (int32_t)p;
      nn += (int32_t)n;
    }
    if (np == 0 || nn == 0) {
      memset(ri, DML__REL_NONE, (size_t)r);
      continue;
    }
    /* keep a negative if k < max_p + eps, a positive if k > min_n - eps (in double) */
    const float tn = float_up((double)max_p + eps), tp = float_down((double)min_n - eps);
#pragma omp simd
    for (int64_t j = 0; j < r; j++) {
      /* all-ones / zero 32-bit masks */
      const int32_t c = ri[j];
      const float k = sg * row[j];
      const int32_t kp = -(int32_t)(k > tp), kn = -(int32_t)(k < tn);
      const int32_t ip = -(int32_t)(c == DML__REL_POS), in = -(int32_t)(c == DML__REL_NEG);
      ri[j] = (uint8_t)(c & ((ip & kp) | (in & kn)));
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
