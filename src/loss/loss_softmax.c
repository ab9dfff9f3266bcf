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
 * Every exponent is shifted by its group's maximum and evaluated in double by exp_d (below),
 * which vectorises. Kernels run over rows in parallel; each row's loss goes to its own slot
 * and the slots are added in row order, so the result does not depend on the thread count.
 * The nonzero reduction needs the count of terms > 0 before the gradient's scale is known: the
 * kernels write unscaled gradients, which are then scaled in place (dm is zero on entry). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loss/loss_internal.h"

#define PAR_MIN 16384

/* e^x in double for x <= 0, written so that gcc and clang vectorise it inside a simd loop:
 * x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its degree-10 Taylor
 * polynomial (relative error < 3e-13, far below float32's 6e-8), 2^n put into the exponent
 * bits. Inputs below -708 (-inf, the -BIG of masked entries) give exactly 0: their
 * intermediate values are garbage or NaN, and the result's bits are cleared with a mask (a ?:
 * here stops gcc 12 vectorising the loop). */
static inline double exp_d(double x) {
  const double shift = 6755399441055744.0; /* 1.5 * 2^52: adding it rounds to an integer */
  double kd = x * 1.4426950408889634 + shift;
  uint64_t ki;
  memcpy(&ki, &kd, sizeof ki);
  kd -= shift;
  const double r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
  double p = 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  /* the low 12 bits of ki hold n (mod 4096); for x in [-708, 0], n + 1023 lies in [1, 1023] */
  const uint64_t bits = (ki + 1023u) << 52;
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  double v = p * scale;
  uint64_t vb;
  memcpy(&vb, &v, sizeof vb);
  vb &= (uint64_t)0 - (uint64_t)(x >= -708.0);
  memcpy(&v, &vb, sizeof v);
  return v;
}

/* Masked entries of a row hold -BIG: finite (so masks multiply without NaN), below every real
 * exponent, and exp_d(-BIG - shift) == 0. The row loops select with 0/1 doubles rather than
 * ?: on the uint8 relations, which gcc does not vectorise. */
#define BIG 1e300

/* c [r] = rel as doubles (0 none, 1 positive, 2 negative); the masks are then polynomials:
 * positive = c (2 - c), negative = c (c - 1) / 2, kept = positive + negative. */
static inline void rel_codes(double *c, const uint8_t *ri, int64_t r) {
#pragma omp simd
  for (int64_t j = 0; j < r; j++) c[j] = ri[j];
}

static inline double is_pos(double c) { return c * (2.0 - c); }
static inline double is_neg(double c) { return 0.5 * c * (c - 1.0); }
static inline double relu_d(double t) { return 0.5 * (t + fabs(t)); }

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

/* ---- multi-similarity ---- */

static const dml__opt_def ms_opts[] = {
    {"alpha", 2.0, 1e-6, 1e6, "scale of the positive terms"},
    {"beta", 50.0, 1e-6, 1e6, "scale of the negative terms"},
    {"base", 0.5, -1e6, 1e6, "similarity offset lambda (a distance offset on distances)"},
};

/* buf: 2 r doubles (codes, exponents). */
static double ms_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  double *cd = buf, *x = buf + r;
  const double al = c->t->opt[0], be = c->t->opt[1], base = c->t->opt[2], sg = c->sgn;
  rel_codes(cd, a->rel + i * r, r);
  /* x_p = -alpha (u - base'), x_n = beta (u - base') with u - base' = sgn (m - base) */
  double mp = 0.0, mn = 0.0; /* maxima including the "1 +" term (exponent 0) */
  double cnt = 0.0;
#pragma omp simd reduction(max : mp, mn) reduction(+ : cnt)
  for (int64_t j = 0; j < r; j++) {
    const double v = sg * ((double)mi[j] - base);
    const double p = is_pos(cd[j]), n = is_neg(cd[j]);
    const double xv = p * (-al * v) + n * (be * v) + (p + n - 1.0) * BIG;
    x[j] = xv;
    const double tp = p * xv + (p - 1.0) * BIG, tn = n * xv + (n - 1.0) * BIG;
    mp = tp > mp ? tp : mp;
    mn = tn > mn ? tn : mn;
    cnt += p + n;
  }
  *nz = 0;
  if (cnt == 0.0) return 0.0;
  double sp = 0.0, sn = 0.0;
#pragma omp simd reduction(+ : sp, sn)
  for (int64_t j = 0; j < r; j++) {
    const double p = is_pos(cd[j]), n = is_neg(cd[j]);
    const double w = exp_d(x[j] - (p * mp + (1.0 - p) * mn));
    x[j] = w;
    sp += p * w;
    sn += n * w;
  }
  sp += exp_d(-mp);
  sn += exp_d(-mn);
  const double loss = (mp + log(sp)) / al + (mn + log(sn)) / be;
  *nz = loss > 0.0;
  if (scale != 0.0) {
    /* dL/du_p = -w_p / sp, dL/du_n = w_n / sn; dm = sgn du */
    const double gp = -sg * scale / sp, gn = sg * scale / sn;
    float *di = a->dm + i * r;
#pragma omp simd
    for (int64_t j = 0; j < r; j++)
      di[j] += (float)(x[j] * (is_pos(cd[j]) * gp + is_neg(cd[j]) * gn));
  }
  return loss;
}

static dml_status ms_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  kctx c = make_ctx(t, a);
  return run_rows(&c, ms_row, a->b, 2 * a->r, a->b, loss);
}

/* ---- circle ---- */

static const dml__opt_def circle_opts[] = {
    {"m", 0.4, 0.0, 10.0, "relaxation margin: optima 1 - m and m, weights [1 + m - s]+, [s + m]+"},
    {"gamma", 80.0, 1e-6, 1e6, "scale factor"},
};

static double circle_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  double *cd = buf, *x = buf + r;
  const double mg = c->t->opt[0], gam = c->t->opt[1];
  rel_codes(cd, a->rel + i * r, r);
  double mp = -BIG, mn = -BIG, np = 0.0, nn = 0.0;
#pragma omp simd reduction(max : mp, mn) reduction(+ : np, nn)
  for (int64_t j = 0; j < r; j++) {
    const double s = mi[j];
    const double p = is_pos(cd[j]), n = is_neg(cd[j]);
    const double ap = relu_d(1.0 + mg - s), an = relu_d(s + mg);
    const double xv = p * (-gam * ap * (s - (1.0 - mg))) + n * (gam * an * (s - mg)) +
                      (p + n - 1.0) * BIG;
    x[j] = xv;
    const double tp = p * xv + (p - 1.0) * BIG, tn = n * xv + (n - 1.0) * BIG;
    mp = tp > mp ? tp : mp;
    mn = tn > mn ? tn : mn;
    np += p;
    nn += n;
  }
  *nz = 0;
  if (np == 0.0 || nn == 0.0) return 0.0;
  /* x becomes the unnormalised softmax weight times the detached factor -a_p or a_n */
  double sp = 0.0, sn = 0.0;
#pragma omp simd reduction(+ : sp, sn)
  for (int64_t j = 0; j < r; j++) {
    const double s = mi[j];
    const double p = is_pos(cd[j]), n = is_neg(cd[j]);
    const double w = exp_d(x[j] - (p * mp + (1.0 - p) * mn));
    x[j] = w * (n * relu_d(s + mg) - p * relu_d(1.0 + mg - s));
    sp += p * w;
    sn += n * w;
  }
  const double z = mp + log(sp) + mn + log(sn);
  const double loss = softplus_d(z);
  *nz = loss > 0.0;
  if (scale != 0.0) {
    /* dz/ds_p = softmax_p (-gamma a_p), dz/ds_n = softmax_n gamma a_n (weights constant) */
    const double sg = sigmoid_d(z) * scale * gam;
    const double gp = sg / sp, gn = sg / sn;
    float *di = a->dm + i * r;
#pragma omp simd
    for (int64_t j = 0; j < r; j++)
      di[j] += (float)(x[j] * (is_pos(cd[j]) * gp + is_neg(cd[j]) * gn));
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
  return run_rows(&c, circle_row, a->b, 2 * a->r, a->b, loss);
}

/* ---- SupCon ---- */

static const dml__opt_def supcon_opts[] = {
    {"temperature", 0.1, 1e-4, 1e4, "softmax temperature tau (logits u / tau)"},
};

static double supcon_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  double *cd = buf, *x = buf + r;
  const double k = c->sgn / c->t->opt[0];
  rel_codes(cd, a->rel + i * r, r);
  double mx = -BIG, szp = 0.0, np = 0.0;
#pragma omp simd reduction(max : mx) reduction(+ : np, szp)
  for (int64_t j = 0; j < r; j++) {
    const double v = k * (double)mi[j];
    const double p = is_pos(cd[j]), kept = p + is_neg(cd[j]);
    const double xv = kept * v + (kept - 1.0) * BIG;
    x[j] = xv;
    mx = xv > mx ? xv : mx;
    np += p;
    szp += p * v;
  }
  *nz = 0;
  if (np == 0.0) return 0.0;
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < r; j++) {
    const double w = exp_d(x[j] - mx);
    x[j] = w;
    s += w;
  }
  const double inv_np = 1.0 / np;
  const double loss = mx + log(s) - szp * inv_np;
  *nz = loss > 0.0;
  if (scale != 0.0) {
    /* dL/dz_a = softmax_a - [a in P] / |P| */
    const double g = scale * k, inv_s = 1.0 / s;
    float *di = a->dm + i * r;
#pragma omp simd
    for (int64_t j = 0; j < r; j++)
      di[j] += (float)(g * (x[j] * inv_s - is_pos(cd[j]) * inv_np));
  }
  return loss;
}

static dml_status supcon_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  kctx c = make_ctx(t, a);
  return run_rows(&c, supcon_row, a->b, 2 * a->r, a->b, loss);
}

/* ---- NT-Xent ---- */

static const dml__opt_def ntxent_opts[] = {
    {"temperature", 0.07, 1e-4, 1e4, "softmax temperature tau (logits u / tau)"},
};

static double ntxent_row(const kctx *c, int64_t i, double *buf, double scale, int64_t *nz) {
  const dml__loss_args *a = c->a;
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  const uint8_t *ri = a->rel + i * r;
  double *cd = buf, *x = buf + r;
  const double k = c->sgn / c->t->opt[0];
  rel_codes(cd, ri, r);
  double mx = -BIG, np = 0.0, nn = 0.0;
#pragma omp simd reduction(max : mx) reduction(+ : np, nn)
  for (int64_t j = 0; j < r; j++) {
    const double v = k * (double)mi[j];
    const double n = is_neg(cd[j]);
    const double xn = n * v + (n - 1.0) * BIG;
    x[j] = v;
    mx = xn > mx ? xn : mx;
    np += is_pos(cd[j]);
    nn += n;
  }
  *nz = 0;
  if (np == 0.0 || nn == 0.0) return 0.0; /* without negatives every term is -log 1 = 0 */
  double sn = 0.0;
#pragma omp simd reduction(+ : sn)
  for (int64_t j = 0; j < r; j++) {
    const double n = is_neg(cd[j]);
    const double w = n * exp_d(n * (x[j] - mx) + (n - 1.0) * BIG);
    x[j] = w + (1.0 - n) * x[j]; /* negatives: their weight; the others keep z */
    sn += w;
  }
  const double lse_n = mx + log(sn);
  double loss = 0.0, sig_sum = 0.0;
  int64_t cnt = 0;
  float *di = a->dm + i * r;
  const double g = scale * k;
  for (int64_t j = 0; j < r; j++) {
    if (ri[j] != DML__REL_POS) continue;
    /* l = softplus(t), dl/dz_p = -sigmoid(t), t = LSE_N - z_p */
    const double tt = lse_n - x[j];
    const double e = exp(-fabs(tt));
    const double l = (tt > 0.0 ? tt : 0.0) + log1p(e);
    const double sig = tt >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    loss += l;
    cnt += l > 0.0;
    sig_sum += sig;
    if (scale != 0.0) di[j] += (float)(-g * sig);
  }
  *nz = cnt;
  if (scale != 0.0) {
    /* dl_p/dz_n = sigmoid(t_p) softmax_N(z)_n, summed over the positives */
    const double gn = g * sig_sum / sn;
#pragma omp simd
    for (int64_t j = 0; j < r; j++) di[j] += (float)(gn * is_neg(cd[j]) * x[j]);
  }
  return loss;
}

static dml_status ntxent_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  kctx c = make_ctx(t, a);
  int64_t n_pos = 0;
  const int64_t n = a->b * a->r;
#pragma omp simd reduction(+ : n_pos)
  for (int64_t k = 0; k < n; k++) n_pos += a->rel[k] == DML__REL_POS;
  return run_rows(&c, ntxent_row, a->b, 2 * a->r, n_pos, loss);
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
