/* The hinge family of pair losses: contrastive, margin (Wu et al. 2017), lifted structure
 * (Song et al. 2016) and its generalised form (Hermans et al. 2017); the triplet margin loss is
 * in loss_hinge_triplet.c. Every loss reads the matrix m [b, r] and the relation rel [b, r]
 * built by the core (loss_internal.h) and accumulates dloss/dm.
 *
 * Distances and similarities. Each formula is written for distances d. For similarities
 * (distance=cosine|dot, larger = closer) every hinge flips, as pytorch-metric-learning's
 * distance.margin(x, y) does: with v = sigma m (sigma = +1 for distances, -1 for similarities)
 * a formula keeps its distance form in v and its thresholds on the metric are multiplied by
 * sigma, while margins that are gaps between two values (triplet margin, the margin loss's
 * alpha) are not. E.g. contrastive: pos [d - m_pos]+ becomes [m_pos - s]+ and neg
 * [m_neg - d]+ becomes [s - m_neg]+. The defaults are the distance defaults; with cosine set
 * the thresholds yourself (contrastive pos_margin=1 neg_margin=0.5, say).
 *
 * contrastive (Hadsell et al. 2006; METHODS.md 2): over the pairs rel marks,
 *   pos (i, j): [d_ij - m_pos]+^p     neg (i, k): [m_neg - d_ik]+^p
 *   p = power: 1, or 2 for the Hadsell form (values between are accepted)
 *   L = red(pos terms) + red(neg terms): each side reduced on its own (nonzero: mean over its
 *   terms > 0; mean: over all its pairs; sum). Ordered pairs: (i, j) and (j, i) both count.
 *
 * margin (Wu et al. 2017, "Sampling matters in deep embedding learning"): the paper's pairwise
 *   form, on the pairs rel marks (pytorch-metric-learning applies it to triplets instead; dml
 *   follows the paper):
 *   pos (i, j): [alpha + d_ij - beta_i]+     neg (i, k): [alpha - d_ik + beta_i]+
 *   beta learnable (parameter "beta": [1], or [num_classes] with per_class=1, where beta_i is
 *   the beta of anchor i's class; labels must then be in [0, num_classes)). Regularisation
 *   nu sum_t beta_t over the terms the reduction counts (nonzero: the active terms; mean, sum:
 *   every term), reduced with the same divisor as the hinges:
 *   L = (sum_t [.]+ + nu sum_t beta_t) / divisor.      (one reduction over pos and neg terms)
 *   Similarities: pos [alpha + beta_i - s_ij]+, neg [alpha + s_ik - beta_i]+.
 *
 * lifted (Song et al. 2016, "Deep metric learning via lifted structured feature embedding"):
 *   for a positive pair (i, j): J_ij = LSE({m - d_ik : k in N_i} U {m - d_jl : l in N_j}) + d_ij
 *   L = 1/(2|P|) sum_{unordered positive pairs} [J_ij]+^2.
 *   dml sums over ordered pairs (i, j) of rel with term [J_ij]+^2 / 2; over the batch every
 *   unordered pair appears twice with the same J, so the mean is exactly the paper's formula.
 *   N_j is row j's negatives when column j is a batch row; when it is not (a reference set,
 *   cross-batch memory), only N_i is available and J_ij = LSE_{k in N_i}(m - d_ik) + d_ij.
 *   LSE of the union = logaddexp(L_i, L_j) with L_i the LSE of row i: O(b r) in all.
 *   Default reduction: mean (the paper's 1/(2|P|)).
 *
 * generalized_lifted (Hermans et al. 2017, "In defense of the triplet loss"; the margins as
 *   pytorch-metric-learning's GeneralizedLiftedStructureLoss):
 *   per anchor a with at least one positive and one negative:
 *   [LSE_{p in P_a}(d_ap - m_pos) + LSE_{n in N_a}(m_neg - d_an)]+, reduced over anchors
 *   (default mean).
 *
 * A loss with no valid term is 0 with a zero gradient. Row loops run in parallel; per-row
 * partial sums (double) are added in row order, so results do not depend on the thread count. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "loss/loss_internal.h"
#include "loss/loss_math.h"

#define PAR_MIN 4096
#define BIG 1e6

extern const dml__loss_def dml__loss_triplet; /* loss_hinge_triplet.c */

static double sign_of(const dml__loss_args *a) { return a->sim ? -1.0 : 1.0; }

/* LSE of x[k] = off + sg * m[k] over the k with rel[k] == want (max-shifted, double); -inf
 * when there is none. */
static double row_lse(const float *m, const uint8_t *rel, int64_t r, uint8_t want, double off,
                      double sg) {
  /* branch-free so that both passes vectorise, in float (16 lanes; exp_f): w_k = [rel_k ==
   * want] as 0 / 1 (pos_f, neg_f); a masked-out lane is -FLT_MAX in the max and 0 in the sum.
   * The exponents are sigma m_k - max, differences of floats of m (the offset, a margin, cancels
   * and is added back in double), so e^(x - max) is good to ~1e-7; the sum is in double. */
  const float wp = want == DML__REL_POS, wn = 1.0f - wp, fs = (float)sg;
  float mx = -FLT_MAX, cnt = 0.0f;
#pragma omp simd reduction(max : mx) reduction(+ : cnt)
  for (int64_t k = 0; k < r; k++) {
    const float c = (float)rel[k];
    const float w = wp * pos_f(c) + wn * neg_f(c);
    const float v = fs * m[k] * w + (w - 1.0f) * FLT_MAX;
    mx = v > mx ? v : mx;
    cnt += w;
  }
  if (cnt == 0.0f) return -INFINITY;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < r; k++) {
    const float c = (float)rel[k];
    const float w = wp * pos_f(c) + wn * neg_f(c);
    s += (double)(w * exp_f((fs * m[k] - mx) * w));
  }
  return off + (double)mx + log(s);
}

static double logaddexp(double x, double y) {
  if (x == -INFINITY) return y;
  if (y == -INFINITY) return x;
  const double mx = x > y ? x : y;
  return mx + log1p(exp(-fabs(x - y)));
}

static dml_status alloc_rows(const char *what, int64_t n, size_t size, void **out) {
  *out = calloc((size_t)(n > 0 ? n : 1), size);
  if (!*out) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory (%lld rows)", what,
                               (long long)n);
  return DML_OK;
}

/* ---- contrastive ---- */

enum { CON_POS_MARGIN, CON_NEG_MARGIN, CON_POWER };

static const dml__opt_def contrastive_opts[] = {
    {"pos_margin", 0.0, -BIG, BIG,
     "positive pairs are penalised beyond this distance (below this similarity)"},
    {"neg_margin", 1.0, -BIG, BIG,
     "negative pairs are penalised within this distance (above this similarity)"},
    {"power", 1.0, 1.0, 2.0, "exponent of both hinges: 1, or 2 for Hadsell et al.'s squared form"},
};

typedef struct {
  int64_t n[2], nz[2];
  double sum[2];
} con_row;

/* x > 0: the hinge value x^p and its derivative p x^(p-1). */
static double hinge_pow(double x, double p, double *deriv) {
  if (p == 1.0) {
    *deriv = 1.0;
    return x;
  }
  if (p == 2.0) {
    *deriv = 2.0 * x;
    return x * x;
  }
  *deriv = p * pow(x, p - 1.0);
  return pow(x, p);
}

/* For a float v and a double t: v > t iff v > down(t), the largest float <= t, and v < t iff
 * v < up(t), the smallest float >= t; so a hinge's activity is one float compare. */
static float float_down(double t) {
  float f = (float)t;
  if ((double)f > t) f = nextafterf(f, -INFINITY);
  return f;
}

static float float_up(double t) {
  float f = (float)t;
  if ((double)f < t) f = nextafterf(f, INFINITY);
  return f;
}

/* Row i of contrastive for power 1 or 2 (pw), branch-free so that it vectorises: all-ones /
 * zero 32-bit masks from the relation and from one float compare per hinge (active positive:
 * v > thr_pos, active negative: v < thr_neg, exactly as x > 0 in double), the hinge values in
 * double. */
static con_row con_row_fast(const float *mi, const uint8_t *ri, int64_t r, float sg, int pw,
                            const double thr[2], float t0f, float t1f) {
  int32_t np = 0, nn = 0, zp = 0, zn = 0;
  double sp = 0.0, sn = 0.0;
  if (pw == 1) {
#pragma omp simd reduction(+ : np, nn, zp, zn, sp, sn)
    for (int64_t j = 0; j < r; j++) {
      const int32_t c = ri[j];
      const float v = sg * mi[j];
      const int32_t ip = -(int32_t)(c == DML__REL_POS), in = -(int32_t)(c == DML__REL_NEG);
      const int32_t ap = ip & -(int32_t)(v > t0f), an = in & -(int32_t)(v < t1f);
      np -= ip;
      nn -= in;
      zp -= ap;
      zn -= an;
      const double vd = v;
      sp += (double)(float)(ap & 1) * (vd - thr[0]);
      sn += (double)(float)(an & 1) * (thr[1] - vd);
    }
  } else {
#pragma omp simd reduction(+ : np, nn, zp, zn, sp, sn)
    for (int64_t j = 0; j < r; j++) {
      const int32_t c = ri[j];
      const float v = sg * mi[j];
      const int32_t ip = -(int32_t)(c == DML__REL_POS), in = -(int32_t)(c == DML__REL_NEG);
      const int32_t ap = ip & -(int32_t)(v > t0f), an = in & -(int32_t)(v < t1f);
      np -= ip;
      nn -= in;
      zp -= ap;
      zn -= an;
      const double vd = v;
      const double xp = (double)(float)(ap & 1) * (vd - thr[0]);
      const double xn = (double)(float)(an & 1) * (thr[1] - vd);
      sp += xp * xp;
      sn += xn * xn;
    }
  }
  con_row acc = {{np, nn}, {zp, zn}, {sp, sn}};
  return acc;
}

static dml_status contrastive_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const int64_t b = a->b, r = a->r;
  const double sg = sign_of(a), p = t->opt[CON_POWER];
  const double thr[2] = {sg * t->opt[CON_POS_MARGIN], sg * t->opt[CON_NEG_MARGIN]};
  /* power 1 and 2 (the two forms in use) run branch-free; other powers take pow per term */
  const int pw = p == 1.0 ? 1 : p == 2.0 ? 2 : 0;
  const float sgf = (float)sg, t0f = float_down(thr[0]), t1f = float_up(thr[1]);
  con_row *rows;
  DML_TRY(alloc_rows("contrastive", b, sizeof(con_row), (void **)&rows));
  /* side 0: positives, x = v - sigma m_pos; side 1: negatives, x = sigma m_neg - v */
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    const float *mi = a->m + i * r;
    const uint8_t *ri = a->rel + i * r;
    if (pw) {
      rows[i] = con_row_fast(mi, ri, r, sgf, pw, thr, t0f, t1f);
      continue;
    }
    con_row acc = {{0, 0}, {0, 0}, {0.0, 0.0}};
    for (int64_t j = 0; j < r; j++) {
      if (ri[j] == DML__REL_NONE) continue;
      const int s = ri[j] == DML__REL_NEG;
      const double v = sg * (double)mi[j];
      const double x = s ? thr[1] - v : v - thr[0];
      acc.n[s]++;
      if (x > 0.0) {
        double dd;
        acc.sum[s] += hinge_pow(x, p, &dd);
        acc.nz[s]++;
      }
    }
    rows[i] = acc;
  }
  con_row tot = {{0, 0}, {0, 0}, {0.0, 0.0}};
  for (int64_t i = 0; i < b; i++)
    for (int s = 0; s < 2; s++) {
      tot.n[s] += rows[i].n[s];
      tot.nz[s] += rows[i].nz[s];
      tot.sum[s] += rows[i].sum[s];
    }
  free(rows);
  const double scale[2] = {dml__reduce_scale(a->red, tot.n[0], tot.nz[0]),
                           dml__reduce_scale(a->red, tot.n[1], tot.nz[1])};
  *loss = scale[0] * tot.sum[0] + scale[1] * tot.sum[1];
  if (scale[0] == 0.0 && scale[1] == 0.0) return DML_OK;
  /* dv = +scale_pos x' on positives, -scale_neg x' on negatives; dm = sigma dv */
  const double g0 = sg * scale[0], g1 = sg * scale[1];
  const float g0f = (float)g0, g1f = (float)g1;
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    const float *mi = a->m + i * r;
    const uint8_t *ri = a->rel + i * r;
    float *di = a->dm + i * r;
    if (pw == 1) {
#pragma omp simd
      for (int64_t j = 0; j < r; j++) {
        const int32_t c = ri[j];
        const float v = sgf * mi[j];
        const int32_t ap = -(int32_t)(c == DML__REL_POS) & -(int32_t)(v > t0f);
        const int32_t an = -(int32_t)(c == DML__REL_NEG) & -(int32_t)(v < t1f);
        di[j] += (float)(ap & 1) * g0f - (float)(an & 1) * g1f;
      }
      continue;
    }
    if (pw == 2) {
#pragma omp simd
      for (int64_t j = 0; j < r; j++) {
        const int32_t c = ri[j];
        const float v = sgf * mi[j];
        const int32_t ap = -(int32_t)(c == DML__REL_POS) & -(int32_t)(v > t0f);
        const int32_t an = -(int32_t)(c == DML__REL_NEG) & -(int32_t)(v < t1f);
        const double vd = v;
        di[j] += (float)(2.0 * ((double)(float)(ap & 1) * g0 * (vd - thr[0]) -
                                (double)(float)(an & 1) * g1 * (thr[1] - vd)));
      }
      continue;
    }
    for (int64_t j = 0; j < r; j++) {
      if (ri[j] == DML__REL_NONE) continue;
      const int s = ri[j] == DML__REL_NEG;
      const double v = sg * (double)mi[j];
      const double x = s ? thr[1] - v : v - thr[0];
      if (!(x > 0.0)) continue;
      double dd;
      hinge_pow(x, p, &dd);
      di[j] += (float)((s ? -g1 : g0) * dd);
    }
  }
  return DML_OK;
}

static const dml__loss_def contrastive_def = {
    .name = "contrastive",
    .summary = "contrastive loss: [d - pos_margin]+^p on positive pairs, [neg_margin - d]+^p on "
               "negative pairs, each side reduced on its own (Hadsell et al. 2006)",
    .kind = DML__KIND_PAIR,
    .uses_triplets = 0,
    .opts = contrastive_opts,
    .n_opts = (int)(sizeof contrastive_opts / sizeof contrastive_opts[0]),
    .distance = DML_DIST_EUCLIDEAN,
    .normalize = 1,
    .reduction = DML__RED_NONZERO,
    .miner = "",
    .forward = contrastive_forward,
};

/* ---- margin (Wu et al. 2017) ---- */

enum { MAR_ALPHA, MAR_BETA, MAR_PER_CLASS, MAR_NU };

static const dml__opt_def margin_opts[] = {
    {"alpha", 0.2, 0.0, BIG, "half-width of the band around beta that pairs are pushed out of"},
    {"beta", 1.2, -BIG, BIG, "initial value of the learnable boundary beta"},
    {"per_class", 0.0, 0.0, 1.0, "1: one beta per class (the anchor's), needs num_classes"},
    {"nu", 0.0, 0.0, BIG, "weight of the regularisation nu * beta"},
};

static dml_status margin_declare(dml__loss_term *t) {
  int64_t n = 1;
  if (t->opt[MAR_PER_CLASS] != 0.0) {
    if (t->num_classes < 1)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "margin: per_class=1 needs num_classes in the loss config (got %lld)",
                        (long long)t->num_classes);
    n = t->num_classes;
  }
  return dml__loss_add_param(t, "beta", 1, &n, 1);
}

static dml_status margin_initialise(dml__loss_term *t) {
  dml_param *p = dml__loss_param(t, 0);
  for (int64_t k = 0; k < p->numel; k++) p->value[k] = (float)t->opt[MAR_BETA];
  return DML_OK;
}

typedef struct {
  int64_t n, nz;
  double sum, beta_all, beta_nz;
} mar_row;

static dml_status margin_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const int64_t b = a->b, r = a->r;
  const double sg = sign_of(a), alpha = t->opt[MAR_ALPHA], nu = t->opt[MAR_NU];
  dml_param *bp = dml__loss_param(t, 0);
  const int per_class = t->opt[MAR_PER_CLASS] != 0.0;
  if (per_class) {
    for (int64_t i = 0; i < b; i++)
      if (a->labels[i] < 0 || a->labels[i] >= bp->numel)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "margin: per_class=1 needs labels in [0, num_classes = %lld), row "
                          "%lld has label %d",
                          (long long)bp->numel, (long long)i, (int)a->labels[i]);
  }
  mar_row *rows;
  double *dbeta; /* [b] dloss/dbeta_i of each row, before the scale */
  DML_TRY(alloc_rows("margin", b, sizeof(mar_row), (void **)&rows));
  dml_status st = alloc_rows("margin", b, sizeof(double), (void **)&dbeta);
  if (st != DML_OK) {
    free(rows);
    return st;
  }
  /* pos: x = alpha + v - sigma beta; neg: x = alpha + sigma beta - v */
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    const float *mi = a->m + i * r;
    const uint8_t *ri = a->rel + i * r;
    const double beta = bp->value[per_class ? a->labels[i] : 0], sb = sg * beta;
    mar_row acc = {0, 0, 0.0, 0.0, 0.0};
    for (int64_t j = 0; j < r; j++) {
      if (ri[j] == DML__REL_NONE) continue;
      const double v = sg * (double)mi[j];
      const double x = ri[j] == DML__REL_POS ? alpha + v - sb : alpha + sb - v;
      acc.n++;
      acc.beta_all += beta;
      if (x > 0.0) {
        acc.nz++;
        acc.sum += x;
        acc.beta_nz += beta;
      }
    }
    rows[i] = acc;
  }
  mar_row tot = {0, 0, 0.0, 0.0, 0.0};
  for (int64_t i = 0; i < b; i++) {
    tot.n += rows[i].n;
    tot.nz += rows[i].nz;
    tot.sum += rows[i].sum;
    tot.beta_all += rows[i].beta_all;
    tot.beta_nz += rows[i].beta_nz;
  }
  const int only_active = a->red == DML__RED_NONZERO;
  const double scale = dml__reduce_scale(a->red, tot.n, tot.nz);
  *loss = scale * (tot.sum + nu * (only_active ? tot.beta_nz : tot.beta_all));
  if (scale != 0.0) {
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
    for (int64_t i = 0; i < b; i++) {
      const float *mi = a->m + i * r;
      const uint8_t *ri = a->rel + i * r;
      float *di = a->dm + i * r;
      const double sb = sg * bp->value[per_class ? a->labels[i] : 0];
      double db = 0.0;
      for (int64_t j = 0; j < r; j++) {
        if (ri[j] == DML__REL_NONE) continue;
        const int pos = ri[j] == DML__REL_POS;
        const double v = sg * (double)mi[j];
        const double x = pos ? alpha + v - sb : alpha + sb - v;
        const int active = x > 0.0;
        if (active) {
          di[j] += (float)(pos ? sg * scale : -sg * scale);
          db += pos ? -sg : sg;
        }
        if (active || !only_active) db += nu; /* the regulariser's terms */
      }
      dbeta[i] = scale * db;
    }
    if (bp->trainable)
      for (int64_t i = 0; i < b; i++) bp->grad[per_class ? a->labels[i] : 0] += (float)dbeta[i];
  }
  free(rows);
  free(dbeta);
  return DML_OK;
}

static const dml__loss_def margin_def = {
    .name = "margin",
    .summary = "margin loss (Wu et al. 2017): [alpha + d - beta]+ on positive pairs, "
               "[alpha - d + beta]+ on negative pairs, beta learnable (global or per class)",
    .kind = DML__KIND_PAIR,
    .uses_triplets = 0,
    .opts = margin_opts,
    .n_opts = (int)(sizeof margin_opts / sizeof margin_opts[0]),
    .distance = DML_DIST_EUCLIDEAN,
    .normalize = 1,
    .reduction = DML__RED_NONZERO,
    .miner = "",
    .declare = margin_declare,
    .initialise = margin_initialise,
    .forward = margin_forward,
};

/* ---- lifted structure (Song et al. 2016) ---- */

enum { LIF_MARGIN };

static const dml__opt_def lifted_opts[] = {
    {"margin", 1.0, -BIG, BIG, "negatives closer than this distance (more similar) are penalised"},
};

typedef struct {
  int64_t n, nz;
  double sum;
} red_row;

/* Row i's J for its positive column j: U = logaddexp(L_i, L_j) (L_j only for a batch column),
 * J = U + v_ij; returns J (or -inf when neither side has a negative) and U. */
static double lifted_j(const dml__loss_args *a, const double *lse, int64_t i, int64_t j,
                       double sg, double *u) {
  const double lj = j < a->self_cols ? lse[j] : -INFINITY;
  *u = logaddexp(lse[i], lj);
  if (*u == -INFINITY) return -INFINITY;
  return *u + sg * (double)a->m[i * a->r + j];
}

static dml_status lifted_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const int64_t b = a->b, r = a->r, nself = a->self_cols;
  const double sg = sign_of(a), mg = sg * t->opt[LIF_MARGIN];
  /* lse [b] L_i = LSE_{k in N_i} (sigma margin - v_ik), colw [b] (column part of A_i below);
   * jv, uv [b, r]: J_ij and U_ij of each positive pair with J_ij > 0, 0 and +inf elsewhere,
   * so that the gradient passes are branch-free and J, U are taken once per pair */
  double *lse;
  red_row *rows;
  float *jv = NULL, *uv = NULL;
  DML_TRY(alloc_rows("lifted", 2 * b, sizeof(double), (void **)&lse));
  double *colw = lse + b;
  dml_status st = alloc_rows("lifted", b, sizeof(red_row), (void **)&rows);
  if (st == DML_OK) {
    jv = dml__loss_scratch(t, 2 * b * r * (int64_t)sizeof(float));
    if (!jv) st = DML_ERR_NO_MEMORY;
    uv = jv ? jv + b * r : NULL;
  }
  if (st != DML_OK) {
    free(lse);
    free(rows);
    return st;
  }
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++)
    lse[i] = row_lse(a->m + i * r, a->rel + i * r, r, DML__REL_NEG, mg, -sg);
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    const uint8_t *ri = a->rel + i * r;
    float *ji = jv + i * r, *ui = uv + i * r;
    red_row acc = {0, 0, 0.0};
    for (int64_t j = 0; j < r; j++) {
      ji[j] = 0.0f;
      ui[j] = INFINITY;
      if (ri[j] != DML__REL_POS) continue;
      double u;
      const double J = lifted_j(a, lse, i, j, sg, &u);
      acc.n++;
      if (J > 0.0) {
        acc.nz++;
        acc.sum += 0.5 * J * J;
        ji[j] = (float)J;
        ui[j] = (float)u;
      }
    }
    rows[i] = acc;
  }
  red_row tot = {0, 0, 0.0};
  for (int64_t i = 0; i < b; i++) {
    tot.n += rows[i].n;
    tot.nz += rows[i].nz;
    tot.sum += rows[i].sum;
  }
  free(rows);
  const double scale = dml__reduce_scale(a->red, tot.n, tot.nz);
  *loss = scale * tot.sum;
  if (scale != 0.0 && tot.nz > 0) {
    /* c_ij = scale [J_ij]+ = dL/dJ_ij. dv_ij += c_ij; row i's negatives get
     * -w_ik A_i with w_ik = exp(sigma margin - v_ik - L_i) and
     * A_i = sum over the pairs whose union holds N_i of c exp(L_i - U): the pairs (i, j) of row
     * i, and the pairs (k, i) of other rows whose column i is batch row i (colw[i], summed
     * over k in order by the thread that owns column i). */
    enum { CB = 256 };
#pragma omp parallel for schedule(static) if (b * nself > PAR_MIN)
    for (int64_t j0 = 0; j0 < nself; j0 += CB) {
      const int64_t j1 = j0 + CB < nself ? j0 + CB : nself;
      for (int64_t j = j0; j < j1; j++) colw[j] = 0.0;
      for (int64_t k = 0; k < b; k++) {
        const float *jk = jv + k * r, *uk = uv + k * r;
#pragma omp simd
        for (int64_t j = j0; j < j1; j++)
          colw[j] += (double)jk[j] * exp_d(lse[j] - (double)uk[j]);
      }
    }
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
    for (int64_t i = 0; i < b; i++) {
      const float *mi = a->m + i * r, *ji = jv + i * r, *ui = uv + i * r;
      const uint8_t *ri = a->rel + i * r;
      float *di = a->dm + i * r;
      const double li = lse[i];
      double ai = 0.0;
#pragma omp simd reduction(+ : ai)
      for (int64_t j = 0; j < r; j++) {
        di[j] += (float)(sg * scale * (double)ji[j]);
        ai += (double)ji[j] * exp_d(li - (double)ui[j]);
      }
      if (i < nself) ai += colw[i];
      ai *= scale;
      if (ai == 0.0 || li == -INFINITY) continue;
      /* exponents <= 0 (L_i is their LSE), in float as in row_lse; other columns are
       * multiplied by 0 */
      const float base = (float)(mg - li), f = (float)(sg * ai), fs = (float)sg;
#pragma omp simd
      for (int64_t k = 0; k < r; k++) {
        const float w = neg_f((float)ri[k]);
        di[k] -= f * w * exp_f((base - fs * mi[k]) * w);
      }
    }
  }
  free(lse);
  return DML_OK;
}

static const dml__loss_def lifted_def = {
    .name = "lifted",
    .summary = "lifted structure loss (Song et al. 2016): per positive pair "
               "[LSE(margin - d over both members' negatives) + d]+^2, mean / 2",
    .kind = DML__KIND_PAIR,
    .uses_triplets = 0,
    .opts = lifted_opts,
    .n_opts = (int)(sizeof lifted_opts / sizeof lifted_opts[0]),
    .distance = DML_DIST_EUCLIDEAN,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .forward = lifted_forward,
};

/* ---- generalised lifted structure (Hermans et al. 2017) ---- */

enum { GLI_POS_MARGIN, GLI_NEG_MARGIN };

static const dml__opt_def glifted_opts[] = {
    {"pos_margin", 0.0, -BIG, BIG, "offset of the positive distances inside their LSE"},
    {"neg_margin", 1.0, -BIG, BIG, "negatives closer than this distance (more similar) count"},
};

static dml_status glifted_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const int64_t b = a->b, r = a->r;
  const double sg = sign_of(a);
  const double pm = sg * t->opt[GLI_POS_MARGIN], nm = sg * t->opt[GLI_NEG_MARGIN];
  double *lp, *ln; /* [b] LSE_p (v_ap - sigma m_pos), LSE_n (sigma m_neg - v_an) */
  DML_TRY(alloc_rows("generalized_lifted", 2 * b, sizeof(double), (void **)&lp));
  ln = lp + b;
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    lp[i] = row_lse(a->m + i * r, a->rel + i * r, r, DML__REL_POS, -pm, sg);
    ln[i] = row_lse(a->m + i * r, a->rel + i * r, r, DML__REL_NEG, nm, -sg);
  }
  int64_t n = 0, nz = 0;
  double sum = 0.0;
  for (int64_t i = 0; i < b; i++) {
    if (lp[i] == -INFINITY || ln[i] == -INFINITY) continue;
    const double x = lp[i] + ln[i];
    n++;
    if (x > 0.0) {
      nz++;
      sum += x;
    }
  }
  const double scale = dml__reduce_scale(a->red, n, nz);
  *loss = scale * sum;
  if (scale != 0.0) {
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
    for (int64_t i = 0; i < b; i++) {
      if (lp[i] == -INFINITY || ln[i] == -INFINITY || !(lp[i] + ln[i] > 0.0)) continue;
      const float *mi = a->m + i * r;
      const uint8_t *ri = a->rel + i * r;
      float *di = a->dm + i * r;
      /* both exponents <= 0 (lp, ln are their LSEs), in float as in row_lse; other columns
       * are multiplied by 0 */
      const float f = (float)(sg * scale), fs = (float)sg;
      const float op = (float)(-pm - lp[i]), on = (float)(nm - ln[i]);
#pragma omp simd
      for (int64_t j = 0; j < r; j++) {
        const float c = (float)ri[j];
        const float wp = pos_f(c), wn = neg_f(c), v = fs * mi[j];
        di[j] += f * (wp * exp_f((v + op) * wp) - wn * exp_f((on - v) * wn));
      }
    }
  }
  free(lp);
  return DML_OK;
}

static const dml__loss_def glifted_def = {
    .name = "generalized_lifted",
    .summary = "generalised lifted structure loss (Hermans et al. 2017): per anchor "
               "[LSE_p(d_ap - pos_margin) + LSE_n(neg_margin - d_an)]+",
    .kind = DML__KIND_PAIR,
    .uses_triplets = 0,
    .opts = glifted_opts,
    .n_opts = (int)(sizeof glifted_opts / sizeof glifted_opts[0]),
    .distance = DML_DIST_EUCLIDEAN,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .forward = glifted_forward,
};

const dml__loss_def *const dml__losses_hinge[] = {&contrastive_def, &dml__loss_triplet,
                                                  &margin_def,      &lifted_def,
                                                  &glifted_def,     NULL};
