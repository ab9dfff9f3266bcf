/* The softmax / log-sum-exp family of pair losses: multi-similarity, circle, SupCon, NT-Xent and
 * N-pair-mc. Each kernel reads m [b, r] (similarities s, or distances d) and rel [b, r] and
 * writes dloss/dm; u = s for similarities and u = -d for distances ("larger = closer").
 * P_i / N_i are the columns j with rel[i, j] == POS / NEG (after mining); LSE is log-sum-exp.
 *
 * multi_similarity (Wang et al. 2019), per anchor, with base' = base for similarities and -base
 * for distances (pytorch-metric-learning's margin convention):
 *   L_i = (1/alpha) log(1 + sum_P e^{-alpha (u_ip - base')})
 *       + (1/beta) log(1 + sum_N e^{beta (u_in - base')})
 *   default miner multi_similarity; reduction mean over all b anchors (empty anchors give 0).
 * circle (Sun et al. 2020), similarities only, per anchor with a positive and a negative:
 *   L_i = softplus(LSE_N[g a_n (s_n - m)] + LSE_P[-g a_p (s_p - (1 - m))]),
 *   a_p = [1 + m - s_p]+, a_n = [s_n + m]+ held constant in the gradient (so the gradient is
 *   not the derivative of the value where the weights move); reduction nonzero over anchors.
 * supcon (Khosla et al. 2020), z = u / T, K_i = P_i u N_i (every column but self unless mined):
 *   L_i = LSE_{a in K_i} z_ia - (1/|P_i|) sum_P z_ip; anchors without a positive give 0;
 *   reduction nonzero over anchors. Unlike pytorch-metric-learning, a batch without any
 *   negative still gives the formula's value (pml returns 0 there).
 * ntxent (NT-Xent / InfoNCE), z = u / T, per positive pair (i, p):
 *   l_ip = -log(e^{z_ip} / (e^{z_ip} + sum_N e^{z_in})) = softplus(LSE_N z_in - z_ip),
 *   0 when N_i is empty; reduction mean over positive pairs.
 * npair (Sohn 2016, N-pair-mc): for each label, the first batch row with it is the anchor a_k
 *   and its positive p_k is the second batch row with it (no reference set: p_k is a batch
 *   column) or the first reference column with it; labels without a pair are dropped. With
 *   S_kl = u[a_k, p_l]:
 *     L = red_k (LSE_l S_kl - S_kk) + l2_reg/4 (mean_k ||z_ak||^2 + mean_k ||z_pk||^2)
 *   The squared norms are the diagonal m[i, i] of a similarity matrix with batch columns
 *   (dot: ||z||^2; cosine or normalize=1: ||z^||^2 = 1); with a reference set, or on a distance,
 *   m holds no norms and the penalty is left out. Memory columns are not used as positives,
 *   and npair takes no miner (it builds its own pairs).
 *
 * Every exponent is shifted by its group's maximum; the row kernels of multi_similarity,
 * circle, supcon and ntxent take it in float by exp_f, with sums in double (accuracy: see
 * "the row kernels' exponentials"), npair in double by exp_d; both vectorise. Kernels run
 * over rows in parallel; each row's loss goes to its own slot and the slots are added in row
 * order, so the result does not depend on the thread count.
 * The nonzero reduction needs the count of terms > 0 before the gradient's scale is known: the
 * kernels write unscaled gradients, which are then scaled in place (dm is zero on entry). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loss/loss_internal.h"
#include "loss/loss_math.h"

#define PAR_MIN 16384

/* log(1 + e^z) and 1 / (1 + e^-z) without overflow. */
static inline double softplus_d(double z) {
  return z > 0.0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

static inline double sigmoid_d(double z) {
  if (z >= 0.0) return 1.0 / (1.0 + exp(-z));
  const double e = exp(z);
  return e / (1.0 + e);
}

/* ---- the row driver ---- */

typedef struct kctx {
  const dml__loss_term *t;
  const dml__loss_args *a;
  double sgn;           /* u = sgn * m: +1 for similarities, -1 for distances */
  int64_t n_pairs;      /* npair: pairs (a_k, p_k) */
  const int32_t *anc, *pos;
} kctx;

/* Row (or pair) i: returns its summed loss, *nz = number of its terms > 0; when scale != 0,
 * adds scale * d(row loss)/dm to dm. buf: scratch of the driver's buf_len doubles. */
typedef double (*row_fn)(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz);

/* Runs fn over n_rows rows, reduces by a->red over n_terms terms (mean) or the terms > 0
 * (nonzero) and writes the reduced loss to *loss. Row i writes dm row i (npair: row anc[i]). */
static dml_status run_rows(const kctx *c, row_fn fn, int64_t n_rows, int64_t buf_len,
                           int64_t n_terms, double *loss) {
  *loss = 0.0;
  if (n_rows <= 0) return DML_OK;
  const dml__loss_args *a = c->a;
  double *row_loss = malloc((size_t)n_rows * sizeof(double));
  int64_t *row_nz = malloc((size_t)n_rows * sizeof(int64_t));
  if (!row_loss || !row_nz) {
    free(row_loss);
    free(row_nz);
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", c->t->def->name);
  }
  /* nonzero: gradients are written unscaled and scaled once the count is known */
  const int defer = a->red == DML__RED_NONZERO;
  const double s = defer ? 1.0 : dml__reduce_scale(a->red, n_terms, 0);
  const int64_t work = n_rows * (buf_len > 0 ? buf_len : 1);
  int fail = 0;
#pragma omp parallel if (work > PAR_MIN)
  {
    double *buf = malloc((size_t)(buf_len > 0 ? buf_len : 1) * sizeof(double));
    if (!buf) {
#pragma omp atomic write
      fail = 1;
    }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n_rows; i++) {
      row_loss[i] = 0.0;
      row_nz[i] = 0;
      if (buf) row_loss[i] = fn(c, i, buf, s, &row_nz[i]);
    }
    free(buf);
  }
  double total = 0.0;
  int64_t nz = 0;
  for (int64_t i = 0; i < n_rows; i++) {
    total += row_loss[i];
    nz += row_nz[i];
  }
  free(row_loss);
  free(row_nz);
  if (fail) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", c->t->def->name);
  const double scale = dml__reduce_scale(a->red, n_terms, nz);
  if (defer) {
    const float f = (float)scale;
    const int64_t r = a->r;
#pragma omp parallel for schedule(static) if (n_rows * r > PAR_MIN)
    for (int64_t i = 0; i < n_rows; i++) {
      float *di = a->dm + (c->anc ? (int64_t)c->anc[i] : i) * r;
#pragma omp simd
      for (int64_t j = 0; j < r; j++) di[j] *= f;
    }
  }
  *loss = total * scale;
  return DML_OK;
}

static kctx make_ctx(const dml__loss_term *t, const dml__loss_args *a) {
  kctx c = {t, a, a->sim ? 1.0 : -1.0, 0, NULL, NULL};
  return c;
}

/* ---- the row kernels' exponentials ----
 *
 * The row kernels take e^y in float, 8 lanes wide, of shifted exponents y = x - max <= 0 that
 * are accurate to about 1e-7 |y|: such an error changes e^y by |y| e^y 1e-7 <= 4e-8 of the
 * row's largest weight (1). Computing x itself in float would not do (beta = 50, gamma = 80:
 * its rounding alone is ~1e-5 of e^y), so y is either taken in double and rounded once
 * (circle) or formed from differences of two floats of m, which are exact or rounded once,
 * times the scale (multi_similarity, supcon, ntxent). Sums stay in double. */

/* FMAF, exp_f, log1p_f, pos_f, neg_f: loss_math.h. */

/* ---- multi-similarity ---- */

static const dml__opt_def ms_opts[] = {
    {"alpha", 2.0, 1e-6, 1e6, "scale of the positive terms"},
    {"beta", 50.0, 1e-6, 1e6, "scale of the negative terms"},
    {"base", 0.5, -1e6, 1e6, "similarity offset lambda (a distance offset on distances)"},
};

/* buf: r floats (the weights e^y). */
static double ms_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  const uint8_t *ri = a->rel + i * r;
  float *w = (float *)buf;
  const double al = c->t->opt[0], be = c->t->opt[1], bs = c->sgn * c->t->opt[2];
  const float sg = (float)c->sgn;
  /* with u = sgn m (exact in float): x_p = -alpha (u - bs) is largest at the smallest positive
   * u, x_n = beta (u - bs) at the largest negative u (bs = base') */
  float lo_p = FLT_MAX, hi_n = -FLT_MAX;
  int32_t np = 0, nn = 0;
#pragma omp simd reduction(min : lo_p) reduction(max : hi_n) reduction(+ : np, nn)
  for (int64_t j = 0; j < r; j++) {
    const float cj = ri[j], u = sg * mi[j];
    const float p = pos_f(cj), n = neg_f(cj);
    const float up = p * u + (1.0f - p) * FLT_MAX, un = n * u - (1.0f - n) * FLT_MAX;
    lo_p = up < lo_p ? up : lo_p;
    hi_n = un > hi_n ? un : hi_n;
    np += (int32_t)p;
    nn += (int32_t)n;
  }
  *nz = 0;
  if (np == 0 && nn == 0) return 0.0;
  /* maxima including the "1 +" term (exponent 0) */
  const double mp = np > 0 ? fmax(0.0, -al * ((double)lo_p - bs)) : 0.0;
  const double mn = nn > 0 ? fmax(0.0, be * ((double)hi_n - bs)) : 0.0;
  /* y = x - max per group, in float: with d_p = u - lo_p >= 0 and d_n = u - hi_n <= 0 (exact,
   * or rounded once: relative 6e-8), y_p = -alpha d_p + C_p and y_n = beta d_n + C_n, where
   * C_p = x at lo_p - mp <= 0 and C_n = x at hi_n - mn <= 0 are taken in double; both parts of
   * y have its sign, so every rounding is relative to |y| (see exp_f). Off the pairs y = 0 and
   * the weight is masked below. */
  const float lp = np > 0 ? lo_p : 0.0f, hn = nn > 0 ? hi_n : 0.0f;
  const float cp = (float)(-al * ((double)lp - bs) - mp), cn = (float)(be * ((double)hn - bs) - mn);
  const float alf = (float)al, bef = (float)be;
  double sp = 0.0, sn = 0.0;
#pragma omp simd reduction(+ : sp, sn)
  for (int64_t j = 0; j < r; j++) {
    const float cj = ri[j];
    const float p = pos_f(cj), n = neg_f(cj);
    const float u = sg * mi[j];
    const float yp = -alf * (u - lp) + cp, yn = bef * (u - hn) + cn;
    const float e = exp_f(p * yp + n * yn);
    w[j] = e;
    sp += (double)(p * e);
    sn += (double)(n * e);
  }
  sp += exp(-mp);
  sn += exp(-mn);
  const double loss = (mp + log(sp)) / al + (mn + log(sn)) / be;
  *nz = loss > 0.0;
  if (scale != 0.0) {
    /* dL/du_p = -w_p / sp, dL/du_n = w_n / sn; dm = sgn du */
    const float gp = (float)(-c->sgn * scale / sp), gn = (float)(c->sgn * scale / sn);
    float *di = a->dm + i * r;
#pragma omp simd
    for (int64_t j = 0; j < r; j++) {
      const float cj = ri[j];
      di[j] += w[j] * (pos_f(cj) * gp + neg_f(cj) * gn);
    }
  }
  return loss;
}

static dml_status ms_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  kctx c = make_ctx(t, a);
  return run_rows(&c, ms_row, a->b, a->r, a->b, loss);
}

/* ---- circle ---- */

static const dml__opt_def circle_opts[] = {
    {"m", 0.4, 0.0, 10.0, "relaxation margin: optima 1 - m and m, weights [1 + m - s]+, [s + m]+"},
    {"gamma", 80.0, 1e-6, 1e6, "scale factor"},
};

/* The exponents are squares: with q = min(s, 1 + m) - 1 and t = max(s, -m),
 *   x_p = -g a_p (s - 1 + m) = g (q^2 - m^2),   x_n = g a_n (s - m) = g (t^2 - m^2),
 *   a_p = m - q,   a_n = t + m.
 * q and t are monotone in s (so are circle_q and circle_t below, rounding included), so a
 * group's largest q^2 (t^2) is at its smallest or largest s, which a float pass finds exactly;
 * the shifted exponents g q^2 - max g q^2 are then <= 0 and taken in double (q = s - 1 is exact
 * there), their e^y in float. min and max are written without ?:, which leaves the loop
 * scalar. */
static inline double circle_q(double s, double top) {
  return 0.5 * (s + top - fabs(s - top)) - 1.0;
}

static inline double circle_t(double s, double mg) { return 0.5 * (s - mg + fabs(s + mg)); }

/* buf: r floats (weight times detached factor). */
static double circle_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  const uint8_t *ri = a->rel + i * r;
  float *w = (float *)buf;
  const double mg = c->t->opt[0], gam = c->t->opt[1], top = 1.0 + mg;
  const float mgf = (float)mg;
  float plo = FLT_MAX, phi = -FLT_MAX, nlo = FLT_MAX, nhi = -FLT_MAX;
  int32_t np = 0, nn = 0;
#pragma omp simd reduction(min : plo, nlo) reduction(max : phi, nhi) reduction(+ : np, nn)
  for (int64_t j = 0; j < r; j++) {
    const float cj = ri[j], s = mi[j];
    const float p = pos_f(cj), n = neg_f(cj);
    const float sp_lo = p * s + (1.0f - p) * FLT_MAX, sp_hi = p * s - (1.0f - p) * FLT_MAX;
    const float sn_lo = n * s + (1.0f - n) * FLT_MAX, sn_hi = n * s - (1.0f - n) * FLT_MAX;
    plo = sp_lo < plo ? sp_lo : plo;
    phi = sp_hi > phi ? sp_hi : phi;
    nlo = sn_lo < nlo ? sn_lo : nlo;
    nhi = sn_hi > nhi ? sn_hi : nhi;
    np += (int32_t)p;
    nn += (int32_t)n;
  }
  *nz = 0;
  if (np == 0 || nn == 0) return 0.0;
  const double q_lo = circle_q(plo, top), q_hi = circle_q(phi, top);
  const double t_lo = circle_t(nlo, mg), t_hi = circle_t(nhi, mg);
  const double q2 = fmax(q_lo * q_lo, q_hi * q_hi), t2 = fmax(t_lo * t_lo, t_hi * t_hi);
  const double cq = gam * q2, ct = gam * t2;
  double sp = 0.0, sn = 0.0;
#pragma omp simd reduction(+ : sp, sn)
  for (int64_t j = 0; j < r; j++) {
    const float cj = ri[j];
    const float pf = pos_f(cj), nf = neg_f(cj);
    const double p = pf, n = nf, s = mi[j];
    const double q = circle_q(s, top), t = circle_t(s, mg);
    const double y = p * (gam * (q * q) - cq) + n * (gam * (t * t) - ct);
    const float e = exp_f((float)y);
    /* the detached factor: -a_p on positives, a_n on negatives */
    const float f = nf * ((float)t + mgf) - pf * (mgf - (float)q);
    w[j] = e * f;
    sp += p * (double)e;
    sn += n * (double)e;
  }
  const double z = (cq - gam * (mg * mg)) + log(sp) + (ct - gam * (mg * mg)) + log(sn);
  const double loss = softplus_d(z);
  *nz = loss > 0.0;
  if (scale != 0.0) {
    /* dz/ds_p = softmax_p (-gamma a_p), dz/ds_n = softmax_n gamma a_n (weights constant) */
    const double sg = sigmoid_d(z) * scale * gam;
    const float gp = (float)(sg / sp), gn = (float)(sg / sn);
    float *di = a->dm + i * r;
#pragma omp simd
    for (int64_t j = 0; j < r; j++) {
      const float cj = ri[j];
      di[j] += w[j] * (pos_f(cj) * gp + neg_f(cj) * gn);
    }
  }
  return loss;
}

static dml_status circle_declare(dml__loss_term *t) {
  if (!dml_distance_is_similarity(t->distance))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "circle: its optima and weights are defined on similarities; use "
                      "distance=cosine (the default) or distance=dot");
  return DML_OK;
}

static dml_status circle_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  kctx c = make_ctx(t, a);
  return run_rows(&c, circle_row, a->b, a->r, a->b, loss);
}

/* ---- SupCon ---- */

static const dml__opt_def supcon_opts[] = {
    {"temperature", 0.1, 1e-4, 1e4, "softmax temperature tau (logits u / tau)"},
};

/* buf: r floats (the weights e^y, 0 off K_i). */
static double supcon_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  const uint8_t *ri = a->rel + i * r;
  float *w = (float *)buf;
  const float sg = (float)c->sgn;
  /* z = u / T with u = sgn m (exact in float): the largest z is at the largest kept u */
  float hi = -FLT_MAX;
  int32_t np = 0;
#pragma omp simd reduction(max : hi) reduction(+ : np)
  for (int64_t j = 0; j < r; j++) {
    const float cj = ri[j], u = sg * mi[j];
    const float p = pos_f(cj), k = p + neg_f(cj);
    const float uk = k * u - (1.0f - k) * FLT_MAX;
    hi = uk > hi ? uk : hi;
    np += (int32_t)p;
  }
  *nz = 0;
  if (np == 0) return 0.0;
  /* y = (u - hi) / T: u - hi is exact or rounded once in float (relative 6e-8) */
  const float kt = (float)(1.0 / c->t->opt[0]);
  double s = 0.0, sdp = 0.0; /* sum of e^y over K, sum of u - hi over P */
#pragma omp simd reduction(+ : s, sdp)
  for (int64_t j = 0; j < r; j++) {
    const float cj = ri[j];
    const float p = pos_f(cj), k = p + neg_f(cj);
    const float d = sg * mi[j] - hi;
    const float e = k * exp_f(kt * d);
    w[j] = e;
    s += (double)e;
    sdp += (double)(p * d);
  }
  const double inv_np = 1.0 / (double)np;
  /* LSE_K z - mean_P z = log s - mean_P (z_p - max z) */
  const double loss = log(s) - (double)kt * sdp * inv_np;
  *nz = loss > 0.0;
  if (scale != 0.0) {
    /* dL/dz_a = softmax_a - [a in P] / |P|, dm = (sgn / T) dz */
    const double g = scale * c->sgn * (double)kt;
    const float gs = (float)(g / s), gq = (float)(g * inv_np);
    float *di = a->dm + i * r;
#pragma omp simd
    for (int64_t j = 0; j < r; j++) di[j] += w[j] * gs - pos_f(ri[j]) * gq;
  }
  return loss;
}

static dml_status supcon_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  kctx c = make_ctx(t, a);
  return run_rows(&c, supcon_row, a->b, a->r, a->b, loss);
}

/* ---- NT-Xent ---- */

static const dml__opt_def ntxent_opts[] = {
    {"temperature", 0.07, 1e-4, 1e4, "softmax temperature tau (logits u / tau)"},
};

/* buf: r floats (the negatives' weights e^y, 0 elsewhere). */
static double ntxent_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  const uint8_t *ri = a->rel + i * r;
  float *w = (float *)buf;
  const float sg = (float)c->sgn;
  /* z = u / T with u = sgn m (exact in float): the largest negative z is at the largest u */
  float hi = -FLT_MAX;
  int32_t np = 0, nn = 0;
#pragma omp simd reduction(max : hi) reduction(+ : np, nn)
  for (int64_t j = 0; j < r; j++) {
    const float cj = ri[j], u = sg * mi[j];
    const float p = pos_f(cj), n = neg_f(cj);
    const float un = n * u - (1.0f - n) * FLT_MAX;
    hi = un > hi ? un : hi;
    np += (int32_t)p;
    nn += (int32_t)n;
  }
  *nz = 0;
  /* without negatives every term is -log 1 = 0 */
  if (np == 0 || nn == 0) return 0.0;
  const float kt = (float)(1.0 / c->t->opt[0]);
  double sn = 0.0;
#pragma omp simd reduction(+ : sn)
  for (int64_t j = 0; j < r; j++) {
    const float e = neg_f(ri[j]) * exp_f(kt * (sg * mi[j] - hi));
    w[j] = e;
    sn += (double)e;
  }
  /* t_p = LSE_N z - z_p = (hi - u_p) / T + log sn */
  const double lsn = log(sn);
  double loss = 0.0, sig_sum = 0.0;
  int64_t cnt = 0;
  float *di = a->dm + i * r;
  const double g = scale * c->sgn * (double)kt;
  if ((int64_t)np * 32 >= r) {
    /* many positives: every column at once, branch-free, in float (t to ~1e-7 of |LSE| +
     * |z_p - max|, which moves sigmoid(t) by < 4e-7 and softplus(t) by 1e-7 relative) */
    const float lf = (float)lsn, gf = (float)g;
    int32_t cnt32 = 0;
#pragma omp simd reduction(+ : loss, sig_sum, cnt32)
    for (int64_t j = 0; j < r; j++) {
      const float p = pos_f(ri[j]);
      const float tt = kt * (hi - sg * mi[j]) + lf;
      const float at = fabsf(tt);
      const float e = exp_f(-at);
      /* one division for e / (2 + e) and sigmoid(t) = (t >= 0 ? 1 : e) / (1 + e) */
      const float inv = 1.0f / ((1.0f + e) * (2.0f + e));
      const float l = 0.5f * (tt + at) + log1p_f(e * (1.0f + e) * inv);
      const float h = 0.5f * (1.0f + copysignf(1.0f, tt)); /* t >= 0 (?: would not vectorise) */
      const float sig = (e + (1.0f - e) * h) * (2.0f + e) * inv;
      loss += (double)(p * l);
      sig_sum += (double)(p * sig);
      /* double's log1p(exp(t)) is 0 below t = -745.13: such a term is not counted */
      cnt32 += (int32_t)p & -(int32_t)(tt > -745.13f);
      di[j] += p * (-gf * sig);
    }
    cnt = cnt32;
  } else {
    int64_t seen = 0;
    for (int64_t j = 0; j < r && seen < np; j++) {
      if (ri[j] != DML__REL_POS) continue;
      seen++;
      /* l = softplus(t), dl/dz_p = -sigmoid(t) */
      const double tt = (double)kt * ((double)hi - (double)(sg * mi[j])) + lsn;
      const double e = exp(-fabs(tt));
      const double l = (tt > 0.0 ? tt : 0.0) + log1p(e);
      const double sig = tt >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      loss += l;
      cnt += l > 0.0;
      sig_sum += sig;
      di[j] += (float)(-g * sig);
    }
  }
  *nz = cnt;
  if (scale != 0.0) {
    /* dl_p/dz_n = sigmoid(t_p) softmax_N(z)_n, summed over the positives */
    const float gn = (float)(g * sig_sum / sn);
#pragma omp simd
    for (int64_t j = 0; j < r; j++) di[j] += gn * w[j];
  }
  return loss;
}

static dml_status ntxent_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  kctx c = make_ctx(t, a);
  const int64_t b = a->b, r = a->r;
  int64_t n_pos = 0;
  /* per row in 32 bits (vectorises), then in 64 */
#pragma omp parallel for schedule(static) reduction(+ : n_pos) if (b * r > 8 * PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    const uint8_t *ri = a->rel + i * r;
    uint32_t np = 0;
#pragma omp simd reduction(+ : np)
    for (int64_t j = 0; j < r; j++) np += ri[j] == DML__REL_POS;
    n_pos += np;
  }
  return run_rows(&c, ntxent_row, b, r, n_pos, loss);
}

/* ---- N-pair-mc ---- */

static const dml__opt_def npair_opts[] = {
    {"l2_reg", 0.002, 0.0, 1e6,
     "weight lambda of the norm penalty lambda/4 (mean ||z||^2 + mean ||z+||^2)"},
};

typedef struct {
  int32_t label, idx;
} lab_idx;

static int cmp_lab_idx(const void *pa, const void *pb) {
  const lab_idx *x = pa, *y = pb;
  if (x->label != y->label) return x->label < y->label ? -1 : 1;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

/* CE of pair k over the N logits S_kl = sgn m[a_k, p_l]. */
static double npair_row(const kctx *c, int64_t k, double *x, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t n = c->n_pairs, r = a->r;
  const float *mi = a->m + (int64_t)c->anc[k] * r;
  double mx = -INFINITY;
  for (int64_t l = 0; l < n; l++) {
    const double v = c->sgn * (double)mi[c->pos[l]];
    x[l] = v;
    mx = v > mx ? v : mx;
  }
  const double diag = x[k];
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t l = 0; l < n; l++) {
    const double w = exp_d(x[l] - mx);
    x[l] = w;
    s += w;
  }
  const double loss = mx + log(s) - diag;
  *nz = loss > 0.0;
  if (scale != 0.0) {
    float *di = a->dm + (int64_t)c->anc[k] * r;
    const double g = c->sgn * scale, inv_s = 1.0 / s;
    for (int64_t l = 0; l < n; l++)
      di[c->pos[l]] += (float)(g * (x[l] * inv_s - (l == k ? 1.0 : 0.0)));
  }
  return loss;
}

static dml_status npair_declare(dml__loss_term *t) {
  if (t->miner && strcmp(t->miner->def->name, "all"))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "npair builds its own pairs (the first two examples of each label); it "
                      "takes no miner (miner=%s given)",
                      t->miner->def->name);
  return DML_OK;
}

static dml_status npair_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  *loss = 0.0;
  const int64_t b = a->b, r = a->r;
  const int ref = a->self_cols == 0;
  lab_idx *rows = malloc((size_t)b * sizeof *rows);
  lab_idx *cols = ref ? malloc((size_t)r * sizeof *cols) : NULL;
  int32_t *anc = malloc((size_t)b * sizeof *anc), *pos = malloc((size_t)b * sizeof *pos);
  if (!rows || (ref && !cols) || !anc || !pos) {
    free(rows);
    free(cols);
    free(anc);
    free(pos);
    return dml__error(DML_ERR_NO_MEMORY, "npair: out of memory");
  }
  for (int64_t i = 0; i < b; i++) rows[i] = (lab_idx){a->labels[i], (int32_t)i};
  qsort(rows, (size_t)b, sizeof *rows, cmp_lab_idx);
  if (ref) {
    for (int64_t j = 0; j < r; j++) cols[j] = (lab_idx){a->col_labels[j], (int32_t)j};
    qsort(cols, (size_t)r, sizeof *cols, cmp_lab_idx);
  }
  /* pairs in label order (the loss does not depend on their order) */
  int64_t n = 0, cj = 0;
  for (int64_t g = 0; g < b;) {
    int64_t e = g + 1;
    while (e < b && rows[e].label == rows[g].label) e++;
    if (!ref) {
      if (e - g >= 2) {
        anc[n] = rows[g].idx;
        pos[n++] = rows[g + 1].idx;
      }
    } else {
      while (cj < r && cols[cj].label < rows[g].label) cj++;
      if (cj < r && cols[cj].label == rows[g].label) {
        anc[n] = rows[g].idx;
        pos[n++] = cols[cj].idx;
      }
    }
    g = e;
  }
  dml_status st = DML_OK;
  if (n > 0) {
    kctx c = make_ctx(t, a);
    c.n_pairs = n;
    c.anc = anc;
    c.pos = pos;
    st = run_rows(&c, npair_row, n, n, n, loss);
    const double lam = t->opt[0];
    if (st == DML_OK && a->sim && !ref && lam > 0.0) {
      /* m[i, i] is the squared norm of the compared vector i (self columns exist) */
      double sq = 0.0;
      for (int64_t k = 0; k < n; k++)
        sq += (double)a->m[(int64_t)anc[k] * r + anc[k]] +
              (double)a->m[(int64_t)pos[k] * r + pos[k]];
      const double w = 0.25 * lam / (double)n;
      *loss += w * sq;
      for (int64_t k = 0; k < n; k++) {
        a->dm[(int64_t)anc[k] * r + anc[k]] += (float)w;
        a->dm[(int64_t)pos[k] * r + pos[k]] += (float)w;
      }
    }
  }
  free(rows);
  free(cols);
  free(anc);
  free(pos);
  return st;
}

/* ---- the family ---- */

#define N_OPTS(o) ((int)(sizeof o / sizeof o[0]))

static const dml__loss_def ms_def = {
    "multi_similarity",
    "Wang et al. 2019: (1/alpha) log(1+sum_P e^{-alpha(s-base)}) + (1/beta) log(1+sum_N "
    "e^{beta(s-base)}) on multi-similarity-mined pairs",
    DML__KIND_PAIR, 0, ms_opts, N_OPTS(ms_opts), DML_DIST_COSINE, 1, DML__RED_MEAN,
    "multi_similarity", NULL, NULL, ms_forward, NULL, NULL};

static const dml__loss_def circle_def = {
    "circle",
    "Sun et al. 2020: softplus(LSE_N g a_n (s_n - m) + LSE_P -g a_p (s_p - 1 + m)), weights "
    "a_p, a_n detached",
    DML__KIND_PAIR, 0, circle_opts, N_OPTS(circle_opts), DML_DIST_COSINE, 1, DML__RED_NONZERO,
    "", circle_declare, NULL, circle_forward, NULL, NULL};

static const dml__loss_def supcon_def = {
    "supcon",
    "Khosla et al. 2020: -mean_P log softmax(s/T) over all other columns, per anchor",
    DML__KIND_PAIR, 0, supcon_opts, N_OPTS(supcon_opts), DML_DIST_COSINE, 1, DML__RED_NONZERO,
    "", NULL, NULL, supcon_forward, NULL, NULL};

static const dml__loss_def ntxent_def = {
    "ntxent",
    "NT-Xent / InfoNCE: -log(e^{s_p/T} / (e^{s_p/T} + sum_N e^{s_n/T})) per positive pair",
    DML__KIND_PAIR, 0, ntxent_opts, N_OPTS(ntxent_opts), DML_DIST_COSINE, 1, DML__RED_MEAN,
    "", NULL, NULL, ntxent_forward, NULL, NULL};

static int cmp_i64(const void *pa, const void *pb) {
  const int64_t x = *(const int64_t *)pa, y = *(const int64_t *)pb;
  return (x > y) - (x < y);
}

/* The rows npair reads: the first two of each label (the first one with a reference set). */
static int64_t npair_select(const dml__loss_term *t, const int32_t *labels, int64_t b,
                            int has_ref, int64_t *rows) {
  (void)t;
  lab_idx *li = malloc((size_t)b * sizeof *li);
  if (!li) {
    for (int64_t i = 0; i < b; i++) rows[i] = i; /* no memory: keep every row */
    return b;
  }
  for (int64_t i = 0; i < b; i++) li[i] = (lab_idx){labels[i], (int32_t)i};
  qsort(li, (size_t)b, sizeof *li, cmp_lab_idx);
  const int64_t per_label = has_ref ? 1 : 2;
  int64_t n = 0;
  for (int64_t g = 0; g < b;) {
    int64_t e = g + 1;
    while (e < b && li[e].label == li[g].label) e++;
    for (int64_t k = g; k < e && k < g + per_label; k++) rows[n++] = li[k].idx;
    g = e;
  }
  free(li);
  /* increasing order keeps "first" meaning first in the batch */
  qsort(rows, (size_t)n, sizeof *rows, cmp_i64);
  return n;
}

static const dml__loss_def npair_def = {
    "npair",
    "Sohn 2016 N-pair-mc: CE over z_i . z_j+ for the first two examples of each label, plus "
    "l2_reg/4 (mean ||z||^2 + mean ||z+||^2)",
    DML__KIND_PAIR, 0, npair_opts, N_OPTS(npair_opts), DML_DIST_DOT, 0, DML__RED_MEAN,
    "", npair_declare, NULL, npair_forward, NULL, npair_select};

const dml__loss_def *const dml__losses_softmax[] = {&ms_def, &circle_def, &supcon_def,
                                                    &ntxent_def, &npair_def, NULL};
