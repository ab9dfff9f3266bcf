/* The proxy and classifier losses: every one compares the batch with the rows of a learnable
 * matrix W (parameter slot 0, [proxy_rows, dim]), never with other embeddings. The core builds
 * m [b, r] (r = proxy_rows) between the batch rows and the rows of W under the term's distance
 * (both sides L2-normalised when normalize= or cosine); row j of W belongs to anchor i's class
 * when j / rows_per_class == y_i (the kernels take that from the labels: rel is NULL here);
 * labels are class indices in [0, num_classes), checked by the core. Kernels return the reduced loss, add dloss/dm into dm
 * (the core takes it on to the embeddings and to W) and dloss/dbias into slot 1's gradient.
 *
 * Notation: u = -sigma m is the "closeness" (u = s for similarities, u = -d for distances:
 * sigma = +1 for distances, -1 for similarities), C = num_classes, y = y_i.
 *
 * proxy_nca (Movshovitz-Attias et al. 2017, "No fuss distance metric learning using proxies";
 *   METHODS.md 2), default squared Euclidean distance on normalised embeddings and proxies:
 *     z_c = scale u_ic (= -scale d^2(z_i, p_c)),
 *     L_i = -log( e^{z_y} / sum_{c != y} e^{z_c} ) = LSE_{c != y} z_c - z_y.
 *   This is the paper's form: the denominator excludes the true class, so L_i can be negative
 *   (it is not a cross-entropy). It needs num_classes >= 2.
 *
 * proxy_anchor (Kim et al. 2020, "Proxy anchor loss for deep metric learning"), cosine:
 *     L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} e^{-alpha (s(x, p) - delta)})
 *       + 1/C    sum_{p}       log(1 + sum_{x in X_p-} e^{ alpha (s(x, p) + delta)}),
 *   P+ the proxies with at least one positive in the batch, X_p+ / X_p- the batch rows of / not
 *   of p's class. Each side is reduced on its own: mean gives the formula (|P+| pos terms, C
 *   neg terms), nonzero divides by the number of terms > 0, sum adds them. With a distance
 *   (distance=euclidean|squared_euclidean) the exponents are alpha (d - delta) and
 *   -alpha (d + delta) (pytorch-metric-learning's flip: delta is a threshold multiplied by
 *   sigma). log(1 + sum e^x) is LSE({0} U {x}) with a max shift. The kernel runs over proxies
 *   (columns of m): m is transposed into scratch so each proxy reads one contiguous row.
 *
 * Softmax heads, CE_i = LSE_c z_c - z_y, reduced over the batch (mean by default):
 *   normalized_softmax (Zhai & Wu 2018, "Classification is a strong baseline for deep metric
 *     learning"): z_c = u_ic / temperature (cosine: s_ic / T).
 *   cosface (Wang et al. 2018, "CosFace"): z_c = scale cos_ic, and for the target
 *     z_y = scale (cos_iy - margin).
 *   arcface (Deng et al. 2019, "ArcFace"): target z_y = scale cos(theta_y + margin), with
 *     theta_y = acos(clamp(cos_iy, -1 + 1e-7, 1 - 1e-7)) (strictly inside, so the derivative
 *     cos m + sin m cos / sqrt(1 - cos^2) stays finite; outside the clamp the derivative is 0, as
 *     torch's clamp gives); when theta_y > pi - margin (cos_iy < -cos margin) the target is
 *     scale (cos_iy - margin sin margin) on the raw cosine (METHODS.md's fallback, as the
 *     authors' code: monotone in theta where theta + m would pass pi).
 *   subcenter_arcface (Deng et al. 2020, "Sub-center ArcFace"): `centers` = K sub-centres per
 *     class (W has C K rows, rows_per_class = K); cos_ic = max_k cos(z_i, w_{cK+k}) (gradient to
 *     the arg max only; ties go to the first), then ArcFace.
 *   cross_entropy: a linear classifier head, logits z_c = u_ic + b_c (default distance=dot,
 *     normalize=0: z = W z_i + b), CE with label smoothing eps as torch's F.cross_entropy:
 *     L_i = LSE z - (1 - eps) z_y - eps/C sum_c z_c. Bias b is parameter slot 1 ("bias", [C]).
 *   cosface, arcface and subcenter_arcface need distance=cosine.
 *   Gradient: dL_i/dz_c = p_c - [c == y] (proxy_nca: softmax over c != y, -1 at y;
 *   cross_entropy: p_c - (1 - eps)[c == y] - eps/C), times dz/dm.
 *   reduction=nonzero counts the rows whose L_i > 0 (proxy_nca rows below 0 then drop out).
 *
 * Parameters (names "<term>.proxies" for proxy_nca / proxy_anchor, "<term>.weight" for the
 * heads, "<term>.bias" for cross_entropy), stored [rows, dim] (one row per proxy / class /
 * sub-centre: pytorch-metric-learning's [dim, C] transposed). Initialised from the config's
 * seed, stream (term index * 16 + slot), deterministic for any thread count:
 *   proxy_nca: N(0, 1) (torch.randn);  proxy_anchor: Kaiming normal, mode fan_out
 *   (std = sqrt(2 / C), torch.nn.init.kaiming_normal_(mode="fan_out"));  normalized_softmax,
 *   cosface, arcface, subcenter_arcface: N(0, 1) (torch.nn.init.normal_; the scale is
 *   irrelevant under normalisation);  cross_entropy: torch.nn.Linear's, weight
 *   U(-1/sqrt(D), 1/sqrt(D)) (kaiming_uniform, a = sqrt(5)) and bias U(-1/sqrt(D), 1/sqrt(D)).
 *
 * Row loops (and proxy_anchor's proxy loop) run in parallel; per-row partial sums (double) are
 * added in row order, so results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dml/init.h"
#include "dml/rng.h"
#include "loss/loss_internal.h"
#include "loss/loss_math.h"

#define PAR_MIN 2048
#define BIG 1e6
#define ARC_EPS 1e-7
#define PI 3.14159265358979323846

static double sigma_of(const dml__loss_args *a) { return a->sim ? -1.0 : 1.0; }

static uint64_t stream_of(const dml__loss_term *t, int slot) {
  return (uint64_t)t->index * 16u + (uint64_t)slot;
}

static dml_status need_config(const dml__loss_term *t, int64_t min_classes) {
  if (t->num_classes < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s needs num_classes in the loss config (dml_loss_config.num_classes, "
                      "got %lld)",
                      t->def->name, (long long)t->num_classes);
  if (t->num_classes < min_classes)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s needs num_classes >= %lld in the loss config (got %lld)", t->def->name,
                      (long long)min_classes, (long long)t->num_classes);
  if (t->dim < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s needs dim (the embedding width) in the loss config (got %lld)",
                      t->def->name, (long long)t->dim);
  return DML_OK;
}

/* Slot 0: [rows_per_class * num_classes, dim] named `name`. */
static dml_status add_matrix(dml__loss_term *t, const char *name, int64_t rows_per_class) {
  t->rows_per_class = rows_per_class;
  t->proxy_rows = rows_per_class * t->num_classes;
  const int64_t shape[2] = {t->proxy_rows, t->dim};
  return dml__loss_add_param(t, name, 2, shape, 1);
}

static dml_status need_cosine(const dml__loss_term *t) {
  if (t->distance != DML_DIST_COSINE)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s puts its margin on cosines: it needs distance=cosine", t->def->name);
  return DML_OK;
}

static dml_status alloc_buf(const char *what, int64_t n, size_t size, void **out) {
  *out = malloc((size_t)(n > 0 ? n : 1) * size);
  if (!*out)
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory (%lld elements)", what,
                      (long long)n);
  return DML_OK;
}

/* ---- softmax heads: proxy_nca, normalized_softmax, cosface, arcface, subcenter_arcface,
 * cross_entropy ---- */

typedef enum { HEAD_PLAIN, HEAD_COSFACE, HEAD_ARCFACE } head_kind;

typedef struct {
  head_kind kind;
  double scale;    /* z = scale u (plain), scale * cos (cosface, arcface) */
  double margin;   /* cosface / arcface margin */
  int exclude_target; /* proxy_nca: the LSE runs over c != y */
  double smoothing;   /* cross_entropy's label smoothing */
  const float *bias;  /* [C] or NULL */
  float *dbias;       /* [C] or NULL */
} head;

typedef struct {
  double loss, lse, dzy; /* L_i, the LSE of its logits, dz_y/dm at the target column */
} head_row;

/* Target logit of ArcFace for cosine c; *deriv = dz/dc. */
static double arcface_target(double c, double scale, double margin, double *deriv) {
  const double cm = cos(margin), sm = sin(margin);
  const double lo = -1.0 + ARC_EPS, hi = 1.0 - ARC_EPS;
  const double cc = c < lo ? lo : (c > hi ? hi : c);
  if (cc < -cm) { /* theta > pi - margin: the raw cosine, so an opposite vector still learns */
    *deriv = scale;
    return scale * (c - margin * sm);
  }
  const int inside = c >= lo && c <= hi;
  const double sn = sqrt(1.0 - cc * cc);
  *deriv = inside ? scale * (cm + sm * cc / sn) : 0.0;
  return scale * (cc * cm - sn * sm);
}

static dml_status head_forward(dml__loss_term *t, const dml__loss_args *a, const head *h,
                               double *loss) {
  const int64_t b = a->b, r = a->r, C = t->num_classes, K = t->rows_per_class;
  const double sg = sigma_of(a), eps = h->smoothing;
  /* z [b, C] logits, then probabilities, then dL/dz (for the bias); col [b, C] the column of m
   * behind each logit */
  const int64_t zb = (b * C * (int64_t)sizeof(double) + 63) / 64 * 64;
  const int64_t rb = (b * (int64_t)sizeof(head_row) + 63) / 64 * 64;
  char *scratch = dml__loss_scratch(t, zb + rb + (K > 1 ? b * C * (int64_t)sizeof(int32_t) : 0));
  if (!scratch) return DML_ERR_NO_MEMORY;
  double *z = (double *)scratch;
  head_row *rows = (head_row *)(scratch + zb);
  int32_t *col = K > 1 ? (int32_t *)(scratch + zb + rb) : NULL;
  /* every logit but the target's is a * (the column of m behind it) (+ bias): a = -sigma scale
   * for plain heads (z = scale u), scale for cosface / arcface (z = scale cos) */
  const double a_lin = h->kind == HEAD_PLAIN ? -sg * h->scale : h->scale;
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    const float *mi = a->m + i * r;
    double *zi = z + i * C;
    const int64_t y = a->labels[i];
    head_row hr = {0.0, 0.0, 0.0};
    double vy;
    if (K > 1) { /* sub-centres: the closest of each class's K rows */
      for (int64_t c = 0; c < C; c++) {
        int64_t best = c * K;
        for (int64_t k = 1; k < K; k++)
          if (mi[c * K + k] > mi[best]) best = c * K + k;
        col[i * C + c] = (int32_t)best;
        zi[c] = a_lin * mi[best];
      }
      vy = mi[col[i * C + y]];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) zi[c] = a_lin * mi[c];
      vy = mi[y];
    }
    if (h->bias)
#pragma omp simd
      for (int64_t c = 0; c < C; c++) zi[c] += (double)h->bias[c];
    /* the target logit */
    if (h->kind == HEAD_PLAIN) {
      hr.dzy = a_lin;
    } else if (h->kind == HEAD_COSFACE) {
      zi[y] = h->scale * (vy - h->margin);
      hr.dzy = h->scale;
    } else {
      zi[y] = arcface_target(vy, h->scale, h->margin, &hr.dzy);
    }
    const double zy = zi[y];
    double zsum = 0.0;
    if (eps != 0.0)
#pragma omp simd reduction(+ : zsum)
      for (int64_t c = 0; c < C; c++) zsum += zi[c];
    if (h->exclude_target) zi[y] = -INFINITY; /* exp_d gives exactly 0 */
    double mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t c = 0; c < C; c++) mx = zi[c] > mx ? zi[c] : mx;
    /* zi becomes the softmax probabilities, which are all the backward needs */
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; c++) {
      zi[c] = exp_d(zi[c] - mx);
      s += zi[c];
    }
    const double inv = 1.0 / s;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) zi[c] *= inv;
    hr.lse = mx + log(s);
    hr.loss = hr.lse - (1.0 - eps) * zy - (eps != 0.0 ? eps / (double)C * zsum : 0.0);
    rows[i] = hr;
  }
  /* rows that count: all of them, or (nonzero) those with L_i > 0, added in row order */
  const int only_pos = a->red == DML__RED_NONZERO;
  double total = 0.0;
  int64_t nz = 0;
  for (int64_t i = 0; i < b; i++) {
    nz += rows[i].loss > 0.0;
    if (!only_pos || rows[i].loss > 0.0) total += rows[i].loss;
  }
  const double scale = dml__reduce_scale(a->red, b, nz);
  *loss = scale * total;
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
  for (int64_t i = 0; i < b; i++) {
    double *zi = z + i * C;
    float *di = a->dm + i * r;
    const int64_t y = a->labels[i];
    if (scale == 0.0 || (only_pos && !(rows[i].loss > 0.0))) {
      memset(zi, 0, (size_t)C * sizeof(double)); /* dL/dz = 0: no bias gradient either */
      continue;
    }
    /* dL/dz_c = p_c - eps / C, and at the target -1 (proxy_nca) or p_y - (1 - eps) - eps / C */
    const double epsc = eps / (double)C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) zi[c] = scale * (zi[c] - epsc);
    zi[y] = h->exclude_target ? -scale : zi[y] - scale * (1.0 - eps);
    if (K > 1) {
      for (int64_t c = 0; c < C; c++) {
        const double dzdm = c == y ? rows[i].dzy : a_lin;
        di[col[i * C + c]] += (float)(zi[c] * dzdm);
      }
    } else {
      const float dy = di[y];
#pragma omp simd
      for (int64_t c = 0; c < C; c++) di[c] += (float)(zi[c] * a_lin);
      di[y] = dy + (float)(zi[y] * rows[i].dzy);
    }
  }
  if (h->dbias && C <= 256) {
    /* a few classes: one pass over the rows in order (the same sums as below) */
    double s[256] = {0};
    for (int64_t i = 0; i < b; i++)
#pragma omp simd
      for (int64_t c = 0; c < C; c++) s[c] += z[i * C + c];
    for (int64_t c = 0; c < C; c++) h->dbias[c] += (float)s[c];
  } else if (h->dbias) {
#pragma omp parallel for schedule(static) if (b * C > PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
      double s = 0.0;
      for (int64_t i = 0; i < b; i++) s += z[i * C + c];
      h->dbias[c] += (float)s;
    }
  }
  return DML_OK;
}

/* ---- proxy_nca ---- */

enum { NCA_SCALE };

static const dml__opt_def nca_opts[] = {
    {"scale", 1.0, 0.0, BIG, "softmax scale: logits are -scale * d^2(embedding, proxy)"},
};

static dml_status nca_declare(dml__loss_term *t) {
  DML_TRY(need_config(t, 2));
  return add_matrix(t, "proxies", 1);
}

static dml_status nca_initialise(dml__loss_term *t) {
  dml_param *p = dml__loss_param(t, 0);
  dml_rng_fill_normal(p->value, p->numel, 0.0f, 1.0f, t->seed, stream_of(t, 0));
  return DML_OK;
}

static dml_status nca_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const head h = {.kind = HEAD_PLAIN, .scale = t->opt[NCA_SCALE], .exclude_target = 1};
  return head_forward(t, a, &h, loss);
}

static const dml__loss_def proxy_nca_def = {
    .name = "proxy_nca",
    .summary = "ProxyNCA: -log(e^{-scale d2(z, p_y)} / sum_{c != y} e^{-scale d2(z, p_c)}), one "
               "learnable proxy per class (Movshovitz-Attias et al. 2017)",
    .kind = DML__KIND_PROXY,
    .opts = nca_opts,
    .n_opts = (int)(sizeof nca_opts / sizeof nca_opts[0]),
    .distance = DML_DIST_SQUARED_EUCLIDEAN,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .declare = nca_declare,
    .initialise = nca_initialise,
    .forward = nca_forward,
};

/* ---- proxy_anchor ---- */

enum { PA_ALPHA, PA_DELTA };

static const dml__opt_def pa_opts[] = {
    {"alpha", 32.0, 0.0, BIG, "scale of the exponents (the paper's alpha)"},
    {"delta", 0.1, -BIG, BIG,
     "margin: positives are pulled above s = delta, negatives below s = -delta"},
};

static dml_status pa_declare(dml__loss_term *t) {
  DML_TRY(need_config(t, 1));
  return add_matrix(t, "proxies", 1);
}

static dml_status pa_initialise(dml__loss_term *t) {
  dml_param *p = dml__loss_param(t, 0);
  /* kaiming_normal_(mode="fan_out"): torch's fan_out of a [C, D] matrix is C */
  return dml_init_fill(p->value, p->numel, DML_INIT_KAIMING_NORMAL, t->proxy_rows, t->dim, 0.0f,
                       t->seed, stream_of(t, 0));
}

typedef struct {
  double lse[2]; /* log(1 + sum e^x) of the positive / negative side */
  int has[2];    /* the side has at least one row */
} pa_col;

/* LSE({0} U {x_k}) over the rows of side `neg` (0: rows of proxy p's class, 1: the others) */
static double pa_side_lse(const float *mp, const int32_t *labels, int64_t b, int64_t p, int neg,
                          double k1, double k0, int *has) {
  double mx = 0.0;
  *has = 0;
  for (int64_t i = 0; i < b; i++) {
    if ((labels[i] != p) != neg) continue;
    const double x = k1 * (double)mp[i] + k0;
    if (x > mx) mx = x;
    *has = 1;
  }
  if (!*has) return 0.0;
  double s = exp_d(-mx);
  for (int64_t i = 0; i < b; i++)
    if ((labels[i] != p) == neg) s += exp_d(k1 * (double)mp[i] + k0 - mx);
  return mx + log(s);
}

static dml_status pa_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const int64_t b = a->b, C = a->r;
  const double sg = sigma_of(a), alpha = t->opt[PA_ALPHA], delta = t->opt[PA_DELTA];
  /* exponent x = k1[side] m + k0[side]: positives alpha sigma (m - delta), negatives
   * -alpha sigma (m + delta) */
  const double k1[2] = {alpha * sg, -alpha * sg};
  const double k0[2] = {-alpha * sg * delta, -alpha * sg * delta};
  float *mt, *dmt;
  pa_col *cols;
  DML_TRY(alloc_buf("proxy_anchor", 2 * b * C, sizeof(float), (void **)&mt));
  dml_status st = alloc_buf("proxy_anchor", C, sizeof(pa_col), (void **)&cols);
  if (st != DML_OK) {
    free(mt);
    return st;
  }
  dmt = mt + b * C;
#pragma omp parallel for schedule(static) if (b * C > PAR_MIN)
  for (int64_t p = 0; p < C; p++)
    for (int64_t i = 0; i < b; i++) mt[p * b + i] = a->m[i * C + p];
#pragma omp parallel for schedule(static) if (b * C > PAR_MIN)
  for (int64_t p = 0; p < C; p++) {
    pa_col pc;
    for (int s = 0; s < 2; s++)
      pc.lse[s] = pa_side_lse(mt + p * b, a->labels, b, p, s, k1[s], k0[s], &pc.has[s]);
    cols[p] = pc;
  }
  double sum[2] = {0.0, 0.0};
  int64_t n[2] = {0, C}, nz[2] = {0, 0};
  for (int64_t p = 0; p < C; p++)
    for (int s = 0; s < 2; s++) {
      if (!cols[p].has[s]) continue;
      sum[s] += cols[p].lse[s];
      if (s == 0) n[0]++;
      nz[s] += cols[p].lse[s] > 0.0;
    }
  const double scale[2] = {dml__reduce_scale(a->red, n[0], nz[0]),
                           dml__reduce_scale(a->red, n[1], nz[1])};
  *loss = scale[0] * sum[0] + scale[1] * sum[1];
  const int only_pos = a->red == DML__RED_NONZERO;
#pragma omp parallel for schedule(static) if (b * C > PAR_MIN)
  for (int64_t p = 0; p < C; p++) {
    const float *mp = mt + p * b;
    float *dp = dmt + p * b;
    for (int64_t i = 0; i < b; i++) dp[i] = 0.0f;
    for (int s = 0; s < 2; s++) {
      const pa_col *pc = &cols[p];
      if (!pc->has[s] || scale[s] == 0.0 || (only_pos && !(pc->lse[s] > 0.0))) continue;
      const double w = scale[s] * k1[s];
      for (int64_t i = 0; i < b; i++)
        if ((a->labels[i] != p) == s)
          dp[i] = (float)(w * exp_d(k1[s] * (double)mp[i] + k0[s] - pc->lse[s]));
    }
  }
#pragma omp parallel for schedule(static) if (b * C > PAR_MIN)
  for (int64_t i = 0; i < b; i++)
    for (int64_t p = 0; p < C; p++) a->dm[i * C + p] += dmt[p * b + i];
  free(mt);
  free(cols);
  return DML_OK;
}

static const dml__loss_def proxy_anchor_def = {
    .name = "proxy_anchor",
    .summary = "Proxy-Anchor: each proxy pulls its class's embeddings above delta and pushes "
               "the others below -delta, log-sum-exp weighted (Kim et al. 2020)",
    .kind = DML__KIND_PROXY,
    .opts = pa_opts,
    .n_opts = (int)(sizeof pa_opts / sizeof pa_opts[0]),
    .distance = DML_DIST_COSINE,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .declare = pa_declare,
    .initialise = pa_initialise,
    .forward = pa_forward,
};

/* ---- the classifier heads ---- */

static dml_status weight_initialise(dml__loss_term *t) {
  dml_param *p = dml__loss_param(t, 0);
  dml_rng_fill_normal(p->value, p->numel, 0.0f, 1.0f, t->seed, stream_of(t, 0));
  return DML_OK;
}

/* normalized_softmax */

enum { NS_TEMPERATURE };

static const dml__opt_def ns_opts[] = {
    {"temperature", 0.05, 1e-6, BIG, "softmax temperature T: logits are cos / T"},
};

static dml_status ns_declare(dml__loss_term *t) {
  DML_TRY(need_config(t, 1));
  return add_matrix(t, "weight", 1);
}

static dml_status ns_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const head h = {.kind = HEAD_PLAIN, .scale = 1.0 / t->opt[NS_TEMPERATURE]};
  return head_forward(t, a, &h, loss);
}

static const dml__loss_def normalized_softmax_def = {
    .name = "normalized_softmax",
    .summary = "normalised softmax: cross-entropy on cos(z, w_c) / temperature over learnable "
               "class vectors (Zhai & Wu 2018)",
    .kind = DML__KIND_PROXY,
    .opts = ns_opts,
    .n_opts = (int)(sizeof ns_opts / sizeof ns_opts[0]),
    .distance = DML_DIST_COSINE,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .declare = ns_declare,
    .initialise = weight_initialise,
    .forward = ns_forward,
};

/* cosface */

enum { CF_SCALE, CF_MARGIN };

static const dml__opt_def cf_opts[] = {
    {"scale", 64.0, 0.0, BIG, "logit scale s"},
    {"margin", 0.35, 0.0, 2.0, "cosine margin m subtracted from the target class's cosine"},
};

static dml_status cf_declare(dml__loss_term *t) {
  DML_TRY(need_config(t, 1));
  DML_TRY(need_cosine(t));
  return add_matrix(t, "weight", 1);
}

static dml_status cf_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const head h = {.kind = HEAD_COSFACE, .scale = t->opt[CF_SCALE], .margin = t->opt[CF_MARGIN]};
  return head_forward(t, a, &h, loss);
}

static const dml__loss_def cosface_def = {
    .name = "cosface",
    .summary = "CosFace: cross-entropy on s cos, the target's cosine lowered by margin "
               "(Wang et al. 2018)",
    .kind = DML__KIND_PROXY,
    .opts = cf_opts,
    .n_opts = (int)(sizeof cf_opts / sizeof cf_opts[0]),
    .distance = DML_DIST_COSINE,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .declare = cf_declare,
    .initialise = weight_initialise,
    .forward = cf_forward,
};

/* arcface, subcenter_arcface */

enum { AF_SCALE, AF_MARGIN, AF_CENTERS };

static const dml__opt_def af_opts[] = {
    {"scale", 64.0, 0.0, BIG, "logit scale s"},
    {"margin", 0.5, 0.0, PI, "angular margin m (radians) added to the target class's angle"},
};

static const dml__opt_def scaf_opts[] = {
    {"scale", 64.0, 0.0, BIG, "logit scale s"},
    {"margin", 0.5, 0.0, PI, "angular margin m (radians) added to the target class's angle"},
    {"centers", 3.0, 1.0, 1024.0, "sub-centres per class (a whole number)"},
};

static dml_status af_declare(dml__loss_term *t) {
  DML_TRY(need_config(t, 1));
  DML_TRY(need_cosine(t));
  return add_matrix(t, "weight", 1);
}

static dml_status scaf_declare(dml__loss_term *t) {
  DML_TRY(need_config(t, 1));
  DML_TRY(need_cosine(t));
  const double k = t->opt[AF_CENTERS];
  if (k != floor(k))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "subcenter_arcface: centers=%g must be a whole number", k);
  if (t->num_classes > INT32_MAX / (int64_t)k)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "subcenter_arcface: %lld classes x %g centers is too many rows",
                      (long long)t->num_classes, k);
  return add_matrix(t, "weight", (int64_t)k);
}

static dml_status af_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const head h = {.kind = HEAD_ARCFACE, .scale = t->opt[AF_SCALE], .margin = t->opt[AF_MARGIN]};
  return head_forward(t, a, &h, loss);
}

static const dml__loss_def arcface_def = {
    .name = "arcface",
    .summary = "ArcFace: cross-entropy on s cos, the target's angle widened by margin "
               "(Deng et al. 2019)",
    .kind = DML__KIND_PROXY,
    .opts = af_opts,
    .n_opts = (int)(sizeof af_opts / sizeof af_opts[0]),
    .distance = DML_DIST_COSINE,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .declare = af_declare,
    .initialise = weight_initialise,
    .forward = af_forward,
};

static const dml__loss_def subcenter_arcface_def = {
    .name = "subcenter_arcface",
    .summary = "Sub-center ArcFace: ArcFace on the best of `centers` sub-centres per class "
               "(Deng et al. 2020)",
    .kind = DML__KIND_PROXY,
    .opts = scaf_opts,
    .n_opts = (int)(sizeof scaf_opts / sizeof scaf_opts[0]),
    .distance = DML_DIST_COSINE,
    .normalize = 1,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .declare = scaf_declare,
    .initialise = weight_initialise,
    .forward = af_forward,
};

/* cross_entropy */

enum { CE_SMOOTHING };

static const dml__opt_def ce_opts[] = {
    {"label_smoothing", 0.0, 0.0, 1.0,
     "eps: the target is (1 - eps) one-hot + eps / num_classes (torch's F.cross_entropy)"},
};

static dml_status ce_declare(dml__loss_term *t) {
  DML_TRY(need_config(t, 1));
  DML_TRY(add_matrix(t, "weight", 1));
  const int64_t shape[1] = {t->num_classes};
  return dml__loss_add_param(t, "bias", 1, shape, 1);
}

static dml_status ce_initialise(dml__loss_term *t) {
  dml_param *w = dml__loss_param(t, 0), *bias = dml__loss_param(t, 1);
  /* torch.nn.Linear: kaiming_uniform_(a = sqrt(5)) gives bound 1/sqrt(fan_in) */
  DML_TRY(dml_init_fill(w->value, w->numel, DML_INIT_KAIMING_UNIFORM, t->dim, t->num_classes,
                        (float)sqrt(5.0), t->seed, stream_of(t, 0)));
  return dml_init_fill(bias->value, bias->numel, DML_INIT_UNIFORM, t->dim, t->num_classes,
                       (float)(1.0 / sqrt((double)t->dim)), t->seed, stream_of(t, 1));
}

static dml_status ce_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  dml_param *bias = dml__loss_param(t, 1);
  const head h = {.kind = HEAD_PLAIN,
                  .scale = 1.0,
                  .smoothing = t->opt[CE_SMOOTHING],
                  .bias = bias->value,
                  .dbias = bias->grad};
  return head_forward(t, a, &h, loss);
}

static const dml__loss_def cross_entropy_def = {
    .name = "cross_entropy",
    .summary = "cross-entropy of a linear classifier head (logits W z + b) on the embedding, "
               "as torch's F.cross_entropy",
    .kind = DML__KIND_PROXY,
    .opts = ce_opts,
    .n_opts = (int)(sizeof ce_opts / sizeof ce_opts[0]),
    .distance = DML_DIST_DOT,
    .normalize = 0,
    .reduction = DML__RED_MEAN,
    .miner = "",
    .declare = ce_declare,
    .initialise = ce_initialise,
    .forward = ce_forward,
};

const dml__loss_def *const dml__losses_proxy[] = {
    &proxy_nca_def, &proxy_anchor_def,      &normalized_softmax_def, &cosface_def,
    &arcface_def,   &subcenter_arcface_def, &cross_entropy_def,      NULL};
