/* Normalisation ops: batch norm, layer norm and row-wise L2 normalisation.
 *
 * Batch norm views x as [N, C, S] (S = L or H*W; 1 for [N, C]); channel c has M = N*S values.
 *   training: mu = mean(x), var = mean((x - mu)^2) (biased), istd = 1 / sqrt(var + eps)
 *             running_mean = (1 - mom) running_mean + mom mu
 *             running_var  = (1 - mom) running_var + mom var M / (M - 1)   (unbiased, as torch)
 *   eval:     mu, var are the running statistics
 *   y = gamma (x - mu) istd + beta
 *   backward, training: dx = gamma istd (dy - mean(dy) - xhat mean(dy xhat)), xhat = (x - mu) istd
 *   backward, eval:     dx = gamma istd dy
 *   dgamma = sum(dy xhat), dbeta = sum(dy)
 * Layer norm: the training-mode formulas with statistics over the last dimension of each row.
 * L2 normalisation (torch.nn.functional.normalize): n = ||x||, y = x / max(n, eps);
 *   dx = (dy - y (y . dy)) / n when n >= eps, dx = dy / eps when the norm is clamped.
 * Per-channel and per-row sums accumulate in double (batch norm's backward adds float partial
 * sums of at most BN_RUN values in double). Batch norm is parallel over channels (blocks of
 * BN_CB channels for [N, C]), the row ops over rows; every sum runs in a fixed order, so the
 * results are the same for any thread count. */
#include <math.h>
#include <string.h>

#include "core/graph_internal.h"
#include "ops/norm_internal.h"
#include "dml/ops.h"

#define PAR_MIN 32768
#define COL_BLOCK 16 /* columns per task in the column sums of layer norm */
#define BN_RUN 256   /* values per float partial sum in batch norm's backward */
#define BN_CB 64     /* channels per task in batch norm over [N, C] */

/* ------------------------------------------------------------------------------------------ */
/* batch norm */

typedef struct {
  int64_t n, c, s;
  int training;
  int gamma_at, beta_at; /* index of gamma / beta among the node's inputs, -1 when absent */
  float *mean, *istd;    /* [C]: the statistics the forward normalised with */
} bn_saved;

/* Channel ch's batch statistics (mu, biased var over m values): stores mean / istd, updates the
 * running statistics (if any) and returns the affine map y = (x - mean) scale + shift. */
static inline void bn_finish_channel(int64_t ch, double mu, double var, int64_t m, float eps,
                                     float momentum, const float *gamma, const float *beta,
                                     float *mean, float *istd, float *running_mean,
                                     float *running_var, float *scale, float *shift) {
  const float is = (float)(1.0 / sqrt(var + (double)eps));
  mean[ch] = (float)mu;
  istd[ch] = is;
  if (running_mean) {
    running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mu);
    running_var[ch] = (float)((1.0 - momentum) * running_var[ch] +
                              momentum * var * (double)m / (double)(m - 1));
  }
  *scale = gamma ? gamma[ch] * is : is;
  *shift = beta ? beta[ch] : 0.0f;
}

/* Training forward for S > 1. x, y [N, C, S]; gamma, beta [C] or NULL; mean, istd [C] out;
 * running_mean, running_var [C] or NULL, updated in place. One task per channel: its N planes
 * of S values are summed, then (still in cache) the squared deviations, then normalised. */
static void bn_train_forward_planes(float *y, const float *x, const float *gamma,
                                    const float *beta, float *mean, float *istd,
                                    float *running_mean, float *running_var, int64_t n,
                                    int64_t c, int64_t s, float eps, float momentum) {
  const int64_t m = n * s;
#pragma omp parallel for schedule(static) if (n * c * s > PAR_MIN)
  for (int64_t ch = 0; ch < c; ch++) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + (i * c + ch) * s;
#pragma omp simd reduction(+ : sum)
      for (int64_t k = 0; k < s; k++) sum += p[k];
    }
    const double mu = sum / (double)m;
    /* each pass walks the planes in the opposite order of the previous one, so it starts on
     * the planes still in cache */
    double sq = 0.0;
    for (int64_t i = n - 1; i >= 0; i--) {
      const float *p = x + (i * c + ch) * s;
#pragma omp simd reduction(+ : sq)
      for (int64_t k = 0; k < s; k++) {
        double d = (double)p[k] - mu;
        sq += d * d;
      }
    }
    float sc, sh;
    bn_finish_channel(ch, mu, sq / (double)m, m, eps, momentum, gamma, beta, mean, istd,
                      running_mean, running_var, &sc, &sh);
    const float muf = mean[ch];
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + (i * c + ch) * s;
      float *q = y + (i * c + ch) * s;
#pragma omp simd
      for (int64_t k = 0; k < s; k++) q[k] = (p[k] - muf) * sc + sh;
    }
  }
}

/* Training forward for S == 1, x, y [N, C]: one task per block of BN_CB channels, walked row
 * by row so the inner loops run over contiguous channels. Same arguments as above. */
static void bn_train_forward_rows(float *y, const float *x, const float *gamma,
                                  const float *beta, float *mean, float *istd,
                                  float *running_mean, float *running_var, int64_t n, int64_t c,
                                  float eps, float momentum) {
  const int64_t blocks = (c + BN_CB - 1) / BN_CB;
#pragma omp parallel for schedule(static) if (n * c > PAR_MIN)
  for (int64_t bk = 0; bk < blocks; bk++) {
    const int64_t c0 = bk * BN_CB, cw = c - c0 < BN_CB ? c - c0 : BN_CB;
    double mu[BN_CB] = {0}, sq[BN_CB] = {0};
    float muf[BN_CB], sc[BN_CB], sh[BN_CB];
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * c + c0;
      for (int64_t j = 0; j < cw; j++) mu[j] += p[j];
    }
    for (int64_t j = 0; j < cw; j++) mu[j] /= (double)n;
    for (int64_t i = n - 1; i >= 0; i--) {
      const float *p = x + i * c + c0;
      for (int64_t j = 0; j < cw; j++) {
        double d = (double)p[j] - mu[j];
        sq[j] += d * d;
      }
    }
    for (int64_t j = 0; j < cw; j++) {
      bn_finish_channel(c0 + j, mu[j], sq[j] / (double)n, n, eps, momentum, gamma, beta, mean,
                        istd, running_mean, running_var, &sc[j], &sh[j]);
      muf[j] = mean[c0 + j];
    }
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * c + c0;
      float *q = y + i * c + c0;
      for (int64_t j = 0; j < cw; j++) q[j] = (p[j] - muf[j]) * sc[j] + sh[j];
    }
  }
}

/* Evaluation forward: y = (x - mean) scale + shift per channel, then max(0, y) when relu.
 * x, y [N, C, S] (may be the same buffer); mean, scale, shift [C]. Elementwise: parallel over
 * planes (rows when S == 1). */
static void bn_eval_forward(float *y, const float *x, const float *mean, const float *scale,
                            const float *shift, int64_t n, int64_t c, int64_t s, int relu) {
  if (s == 1) {
#pragma omp parallel for schedule(static) if (n * c > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * c;
      float *q = y + i * c;
      for (int64_t j = 0; j < c; j++) {
        float v = (p[j] - mean[j]) * scale[j] + shift[j];
        q[j] = relu && !(v > 0.0f) ? 0.0f : v;
      }
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n * c * s > PAR_MIN)
  for (int64_t pc = 0; pc < n * c; pc++) {
    const int64_t ch = pc % c;
    const float mu = mean[ch], sc = scale[ch], sh = shift[ch];
    const float *p = x + pc * s;
    float *q = y + pc * s;
    if (relu) {
#pragma omp simd
      for (int64_t k = 0; k < s; k++) {
        float v = (p[k] - mu) * sc + sh;
        q[k] = v > 0.0f ? v : 0.0f;
      }
    } else {
#pragma omp simd
      for (int64_t k = 0; k < s; k++) q[k] = (p[k] - mu) * sc + sh;
    }
  }
}

/* Evaluation coefficients from the running variance: istd = 1 / sqrt(var + eps) (double),
 * scale = gamma istd (istd without gamma), shift = beta (0 without beta). istd may be NULL. */
static void bn_eval_coefficients(const float *gamma, const float *beta, const float *running_var,
                                 float eps, int64_t c, float *istd, float *scale, float *shift) {
  for (int64_t ch = 0; ch < c; ch++) {
    float is = (float)(1.0 / sqrt((double)running_var[ch] + (double)eps));
    if (istd) istd[ch] = is;
    scale[ch] = gamma ? gamma[ch] * is : is;
    shift[ch] = beta ? beta[ch] : 0.0f;
  }
}

/* Backward coefficients of channel ch: dx = k1 dy + k2 (x - mean) + k3, from the channel's
 * sum(dy) and sum(dy (x - mean)) over m values (k2 = k3 = 0 in evaluation mode). Also
 * accumulates dgamma / dbeta (either may be NULL). */
static inline void bn_channel_grad(int64_t ch, double sum_dy, double sum_dy_xmu, int64_t m,
                                   int training, const float *gamma, const float *istd,
                                   float *dgamma, float *dbeta, float *k1, float *k2,
                                   float *k3) {
  const double is = istd[ch], gm = gamma ? gamma[ch] : 1.0;
  if (dgamma) dgamma[ch] += (float)(sum_dy_xmu * is);
  if (dbeta) dbeta[ch] += (float)sum_dy;
  *k1 = (float)(gm * is);
  *k2 = training ? (float)(-gm * is * is * is * sum_dy_xmu / (double)m) : 0.0f;
  *k3 = training ? (float)(-gm * is * sum_dy / (double)m) : 0.0f;
}

/* Backward for S > 1. dy, x, dx [N, C, S]; gamma [C] or NULL; mean, istd [C]; dx, dgamma,
 * dbeta may each be NULL; accumulates into them. One task per channel. */
static void bn_backward_planes(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *gamma, const float *mean,
                               const float *istd, int64_t n, int64_t c, int64_t s,
                               int training, int dx_fresh) {
  const int need_sums = (dx && training) || dgamma || dbeta;
#pragma omp parallel for schedule(static) if (n * c * s > PAR_MIN)
  for (int64_t ch = 0; ch < c; ch++) {
    const float mu = mean[ch];
    double sum_dy = 0.0, sum_dy_xmu = 0.0;
    if (need_sums) {
      /* float partial sums over runs of at most BN_RUN values (a few per vector lane), added
       * in double: a third faster than converting every element, as accurate in practice */
      for (int64_t i = 0; i < n; i++) {
        const float *p = x + (i * c + ch) * s, *d = dy + (i * c + ch) * s;
        for (int64_t k0 = 0; k0 < s; k0 += BN_RUN) {
          const int64_t k1 = k0 + BN_RUN < s ? k0 + BN_RUN : s;
          float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
          for (int64_t k = k0; k < k1; k++) {
            a += d[k];
            b += d[k] * (p[k] - mu);
          }
          sum_dy += a;
          sum_dy_xmu += b;
        }
      }
    }
    float k1, k2, k3;
    bn_channel_grad(ch, sum_dy, sum_dy_xmu, n * s, training, gamma, istd, dgamma, dbeta, &k1,
                    &k2, &k3);
    if (!dx) continue;
    for (int64_t i = n - 1; i >= 0; i--) { /* reverse: start on the planes still in cache */
      const float *p = x + (i * c + ch) * s, *d = dy + (i * c + ch) * s;
      float *q = dx + (i * c + ch) * s;
      if (dx_fresh) {
#pragma omp simd
        for (int64_t k = 0; k < s; k++) q[k] = k1 * d[k] + k2 * (p[k] - mu) + k3;
      } else {
#pragma omp simd
        for (int64_t k = 0; k < s; k++) q[k] += k1 * d[k] + k2 * (p[k] - mu) + k3;
      }
    }
  }
}

/* Backward for S == 1, x, dy, dx [N, C]: blocks of BN_CB channels walked row by row. */
static void bn_backward_rows(float *dx, float *dgamma, float *dbeta, const float *dy,
                             const float *x, const float *gamma, const float *mean,
                             const float *istd, int64_t n, int64_t c, int training,
                             int dx_fresh) {
  const int need_sums = (dx && training) || dgamma || dbeta;
  const int64_t blocks = (c + BN_CB - 1) / BN_CB;
#pragma omp parallel for schedule(static) if (n * c > PAR_MIN)
  for (int64_t bk = 0; bk < blocks; bk++) {
    const int64_t c0 = bk * BN_CB, cw = c - c0 < BN_CB ? c - c0 : BN_CB;
    const float *mu = mean + c0;
    double sdy[BN_CB] = {0}, sdx[BN_CB] = {0};
    float k1[BN_CB], k2[BN_CB], k3[BN_CB];
    if (need_sums) {
      for (int64_t i = 0; i < n; i++) {
        const float *p = x + i * c + c0, *d = dy + i * c + c0;
        for (int64_t j = 0; j < cw; j++) {
          sdy[j] += d[j];
          sdx[j] += (double)d[j] * (double)(p[j] - mu[j]);
        }
      }
    }
    for (int64_t j = 0; j < cw; j++)
      bn_channel_grad(c0 + j, sdy[j], sdx[j], n, training, gamma, istd, dgamma, dbeta, &k1[j],
                      &k2[j], &k3[j]);
    if (!dx) continue;
    for (int64_t i = n - 1; i >= 0; i--) {
      const float *p = x + i * c + c0, *d = dy + i * c + c0;
      float *q = dx + i * c + c0;
      for (int64_t j = 0; j < cw; j++)
        q[j] = (dx_fresh ? 0.0f : q[j]) + k1[j] * d[j] + k2[j] * (p[j] - mu[j]) + k3[j];
    }
  }
}

static void batchnorm_backward(dml_graph *g, dml_node *node) {
  (void)g;
  const bn_saved *sv = node->saved;
  dml_node *x = node->inputs[0];
  dml_node *gamma = sv->gamma_at >= 0 ? node->inputs[sv->gamma_at] : NULL;
  dml_node *beta = sv->beta_at >= 0 ? node->inputs[sv->beta_at] : NULL;
  float *dx = x->requires_grad ? x->grad : NULL;
  float *dgamma = gamma && gamma->requires_grad ? gamma->grad : NULL;
  float *dbeta = beta && beta->requires_grad ? beta->grad : NULL;
  const float *gd = gamma ? gamma->value.data : NULL;
  /* fresh (uninitialised) gradient buffers: gamma/beta are zeroed (C floats), dx is stored */
  if (dgamma && dml__grad_fresh(node, sv->gamma_at)) memset(dgamma, 0, (size_t)sv->c * sizeof(float));
  if (dbeta && dml__grad_fresh(node, sv->beta_at)) memset(dbeta, 0, (size_t)sv->c * sizeof(float));
  const int dx_fresh = dml__grad_fresh(node, 0);
  if (sv->s == 1)
    bn_backward_rows(dx, dgamma, dbeta, node->grad, x->value.data, gd, sv->mean, sv->istd,
                     sv->n, sv->c, sv->training, dx_fresh);
  else
    bn_backward_planes(dx, dgamma, dbeta, node->grad, x->value.data, gd, sv->mean, sv->istd,
                       sv->n, sv->c, sv->s, sv->training, dx_fresh);
}

/* Input list {x, gamma?, beta?} of an affine normalisation and where gamma and beta sit in it
 * (-1 when absent); returns the count. */
static int affine_inputs(dml_node *x, dml_node *gamma, dml_node *beta, dml_node *ins[3],
                         int *gamma_at, int *beta_at) {
  int n = 0;
  ins[n++] = x;
  *gamma_at = gamma ? n : -1;
  if (gamma) ins[n++] = gamma;
  *beta_at = beta ? n : -1;
  if (beta) ins[n++] = beta;
  return n;
}

static dml_status check_channel_vector(const char *op, const dml_node *v, const char *what,
                                       int64_t c, const dml_node *x) {
  if (!v) return DML_OK;
  if (v->value.ndim == 1 && v->value.shape[0] == c) return DML_OK;
  char sv[96], sx[96];
  dml_tensor_shape_str(&v->value, sv, sizeof sv);
  dml_tensor_shape_str(&x->value, sx, sizeof sx);
  return dml__error(DML_ERR_SHAPE, "%s: %s has shape %s, expected [%lld] to match x %s", op, what,
                    sv, (long long)c, sx);
}

dml_status dml_op_batchnorm(dml_graph *g, dml_node *x, dml_node *gamma, dml_node *beta,
                            float *running_mean, float *running_var, float momentum, float eps,
                            dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_batchnorm: out is NULL");
  static const char *op = "batchnorm";
  DML_TRY(dml__check_node(op, x, "x"));
  DML_TRY(dml__check_rank(op, x, 2, 4));
  if (!g || !out) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: graph or output is NULL", op);
  const int64_t n = x->value.shape[0], c = x->value.shape[1];
  const int64_t s = n * c > 0 ? dml__numel(x) / (n * c) : 0;
  DML_TRY(check_channel_vector(op, gamma, "gamma", c, x));
  DML_TRY(check_channel_vector(op, beta, "beta", c, x));
  if (!(eps >= 0.0f) || isinf(eps))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op,
                      (double)eps);
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: momentum must be in [0, 1] (got %g)", op,
                      (double)momentum);
  if ((running_mean == NULL) != (running_var == NULL))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: give both running_mean and running_var, or neither", op);
  const int training = dml_graph_training(g);
  if (!training && !running_mean)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: evaluation mode normalises with the running statistics, but "
                      "running_mean / running_var are NULL",
                      op);
  if (training && n * s <= 1) {
    char sx[96];
    dml_tensor_shape_str(&x->value, sx, sizeof sx);
    return dml__error(DML_ERR_SHAPE,
                      "%s: training mode needs more than one value per channel, x is %s", op, sx);
  }
  dml_node *ins[3];
  int gamma_at, beta_at;
  const int n_in = affine_inputs(x, gamma, beta, ins, &gamma_at, &beta_at);
  dml_node *y;
  DML_TRY(dml__node_new(g, op, x->value.ndim, x->value.shape, ins, n_in, &y));
  bn_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  float *stats = dml__graph_alloc(g, 2 * c * (int64_t)sizeof(float));
  if (!sv || !stats)
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld channel statistics", op,
                      (long long)c);
  sv->n = n;
  sv->c = c;
  sv->s = s;
  sv->training = training;
  sv->gamma_at = gamma_at;
  sv->beta_at = beta_at;
  sv->mean = stats;
  sv->istd = stats + c;
  const float *gd = gamma ? gamma->value.data : NULL, *bd = beta ? beta->value.data : NULL;
  if (training && s == 1) {
    bn_train_forward_rows(y->value.data, x->value.data, gd, bd, sv->mean, sv->istd,
                          running_mean, running_var, n, c, eps, momentum);
  } else if (training) {
    bn_train_forward_planes(y->value.data, x->value.data, gd, bd, sv->mean, sv->istd,
                            running_mean, running_var, n, c, s, eps, momentum);
  } else {
    float *scale = dml__graph_alloc(g, 2 * c * (int64_t)sizeof(float));
    if (!scale)
      return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld channel statistics",
                        op, (long long)c);
    float *shift = scale + c;
    memcpy(sv->mean, running_mean, (size_t)c * sizeof(float));
    bn_eval_coefficients(gd, bd, running_var, eps, c, sv->istd, scale, shift);
    bn_eval_forward(y->value.data, x->value.data, sv->mean, scale, shift, n, c, s, 0);
  }
  y->saved = sv;
  y->backward = batchnorm_backward;
  y->backward_overwrites = 1;
  /* each channel's task sums its dy before writing its dx, element for element, so dx may
   * overwrite dy: x's gradient takes this node's buffer when nothing else consumes x */
  y->grad_in_place = 1;
  *out = y;
  return DML_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* layer norm */

typedef struct {
  int64_t rows, d;
  int gamma_at, beta_at;
  float *mean, *rstd; /* [rows] */
} ln_saved;

/* x, y [R, D]; gamma, beta [D] or NULL; mean, rstd [R] out. */
static void ln_forward(float *y, const float *x, const float *gamma, const float *beta,
                       float *mean, float *rstd, int64_t rows, int64_t d, float eps) {
#pragma omp parallel for schedule(static) if (rows * d > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *p = x + r * d;
    float *q = y + r * d;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < d; k++) sum += p[k];
    const double mu = sum / (double)d;
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t k = 0; k < d; k++) {
      double t = (double)p[k] - mu;
      sq += t * t;
    }
    const float muf = (float)mu, rs = (float)(1.0 / sqrt(sq / (double)d + (double)eps));
    mean[r] = muf;
    rstd[r] = rs;
    for (int64_t k = 0; k < d; k++) {
      float v = (p[k] - muf) * rs;
      if (gamma) v *= gamma[k];
      if (beta) v += beta[k];
      q[k] = v;
    }
  }
}

/* dx [R, D] (may be NULL) += rstd (gdy - mean(gdy) - xhat mean(gdy xhat)), gdy = gamma dy. */
static void ln_backward_dx(float *dx, const float *dy, const float *x, const float *gamma,
                           const float *mean, const float *rstd, int64_t rows, int64_t d) {
#pragma omp parallel for schedule(static) if (rows * d > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *p = x + r * d, *dr = dy + r * d;
    const float mu = mean[r], rs = rstd[r];
    double a = 0.0, b = 0.0;
    for (int64_t k = 0; k < d; k++) {
      double gdy = gamma ? (double)dr[k] * gamma[k] : (double)dr[k];
      a += gdy;
      b += gdy * ((double)(p[k] - mu) * rs);
    }
    const float am = (float)(a / (double)d), bm = (float)(b / (double)d);
    float *q = dx + r * d;
    for (int64_t k = 0; k < d; k++) {
      float gdy = gamma ? dr[k] * gamma[k] : dr[k];
      float xh = (p[k] - mu) * rs;
      q[k] += rs * (gdy - am - xh * bm);
    }
  }
}

/* dgamma[D] += sum over rows of dy xhat; dbeta[D] += sum over rows of dy (either may be NULL).
 * Parallel over column blocks so every column is summed in row order by one thread. */
static void ln_backward_params(float *dgamma, float *dbeta, const float *dy, const float *x,
                               const float *mean, const float *rstd, int64_t rows, int64_t d) {
  const int64_t blocks = (d + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (rows * d > PAR_MIN)
  for (int64_t bk = 0; bk < blocks; bk++) {
    const int64_t c0 = bk * COL_BLOCK, cw = d - c0 < COL_BLOCK ? d - c0 : COL_BLOCK;
    double sg[COL_BLOCK] = {0}, sb[COL_BLOCK] = {0};
    for (int64_t r = 0; r < rows; r++) {
      const float *p = x + r * d + c0, *dr = dy + r * d + c0;
      const float mu = mean[r], rs = rstd[r];
      for (int64_t j = 0; j < cw; j++) {
        sg[j] += (double)dr[j] * (double)((p[j] - mu) * rs);
        sb[j] += dr[j];
      }
    }
    for (int64_t j = 0; j < cw; j++) {
      if (dgamma) dgamma[c0 + j] += (float)sg[j];
      if (dbeta) dbeta[c0 + j] += (float)sb[j];
    }
  }
}

static void layernorm_backward(dml_graph *g, dml_node *node) {
  (void)g;
  const ln_saved *sv = node->saved;
  dml_node *x = node->inputs[0];
  dml_node *gamma = sv->gamma_at >= 0 ? node->inputs[sv->gamma_at] : NULL;
  dml_node *beta = sv->beta_at >= 0 ? node->inputs[sv->beta_at] : NULL;
  float *dgamma = gamma && gamma->requires_grad ? gamma->grad : NULL;
  float *dbeta = beta && beta->requires_grad ? beta->grad : NULL;
  if (x->requires_grad)
    ln_backward_dx(x->grad, node->grad, x->value.data, gamma ? gamma->value.data : NULL,
                   sv->mean, sv->rstd, sv->rows, sv->d);
  if (dgamma || dbeta)
    ln_backward_params(dgamma, dbeta, node->grad, x->value.data, sv->mean, sv->rstd, sv->rows,
                       sv->d);
}

static dml_status check_last_dim_vector(const char *op, const dml_node *v, const char *what,
                                        const dml_node *x) {
  if (!v) return DML_OK;
  int64_t d = x->value.shape[x->value.ndim - 1];
  if (v->value.ndim == 1 && v->value.shape[0] == d) return DML_OK;
  char sv[96], sx[96];
  dml_tensor_shape_str(&v->value, sv, sizeof sv);
  dml_tensor_shape_str(&x->value, sx, sizeof sx);
  return dml__error(DML_ERR_SHAPE, "%s: %s has shape %s, expected [%lld] (last dimension of x %s)",
                    op, what, sv, (long long)d, sx);
}

dml_status dml_op_layernorm(dml_graph *g, dml_node *x, dml_node *gamma, dml_node *beta,
                            float eps, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_layernorm: out is NULL");
  static const char *op = "layernorm";
  DML_TRY(dml__check_node(op, x, "x"));
  DML_TRY(dml__check_rank(op, x, 1, DML_MAX_DIMS));
  DML_TRY(check_last_dim_vector(op, gamma, "gamma", x));
  DML_TRY(check_last_dim_vector(op, beta, "beta", x));
  const int64_t d = x->value.shape[x->value.ndim - 1];
  if (d == 0)
    return dml__error(DML_ERR_SHAPE, "layernorm: the last dimension of x is empty");
  if (!(eps >= 0.0f) || isinf(eps))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op,
                      (double)eps);
  const int64_t rows = dml__numel(x) / d;
  dml_node *ins[3];
  int gamma_at, beta_at;
  const int n_in = affine_inputs(x, gamma, beta, ins, &gamma_at, &beta_at);
  dml_node *y;
  DML_TRY(dml__node_new(g, op, x->value.ndim, x->value.shape, ins, n_in, &y));
  ln_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  float *stats = dml__graph_alloc(g, 2 * rows * (int64_t)sizeof(float));
  if (!sv || !stats)
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld row statistics", op,
                      (long long)rows);
  sv->rows = rows;
  sv->d = d;
  sv->gamma_at = gamma_at;
  sv->beta_at = beta_at;
  sv->mean = stats;
  sv->rstd = stats + rows;
  ln_forward(y->value.data, x->value.data, gamma ? gamma->value.data : NULL,
             beta ? beta->value.data : NULL, sv->mean, sv->rstd, rows, d, eps);
  y->saved = sv;
  y->backward = layernorm_backward;
  *out = y;
  return DML_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* L2 normalisation */

/* x, y [R, D]; denom [R] out: max(||x_r||, eps); clamped [R] out: 1 where ||x_r|| < eps. */
static void l2n_forward(float *y, const float *x, float *denom, unsigned char *clamped,
                        int64_t rows, int64_t d, float eps) {
#pragma omp parallel for schedule(static) if (rows * d > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *p = x + r * d;
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t k = 0; k < d; k++) sq += (double)p[k] * p[k];
    const float nrm = (float)sqrt(sq);
    const int cl = nrm < eps;
    const float den = cl ? eps : nrm;
    denom[r] = den;
    clamped[r] = (unsigned char)cl;
    float *q = y + r * d;
    for (int64_t k = 0; k < d; k++) q[k] = p[k] / den;
  }
}

/* dx [R, D] += (dy - y (y . dy)) / denom, or dy / denom where the norm was clamped. */
static void l2n_backward_kernel(float *dx, const float *dy, const float *y, const float *denom,
                                const unsigned char *clamped, int64_t rows, int64_t d) {
#pragma omp parallel for schedule(static) if (rows * d > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *yr = y + r * d, *dr = dy + r * d;
    float *q = dx + r * d;
    const float inv = 1.0f / denom[r];
    if (clamped[r]) {
      for (int64_t k = 0; k < d; k++) q[k] += dr[k] * inv;
      continue;
    }
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (int64_t k = 0; k < d; k++) dot += (double)yr[k] * dr[k];
    const float dt = (float)dot;
    for (int64_t k = 0; k < d; k++) q[k] += (dr[k] - yr[k] * dt) * inv;
  }
}

typedef struct {
  int64_t rows, d;
  float *denom;
  unsigned char *clamped;
} l2n_saved;

static void l2_normalize_backward(dml_graph *g, dml_node *node) {
  (void)g;
  const l2n_saved *sv = node->saved;
  dml_node *x = node->inputs[0];
  l2n_backward_kernel(x->grad, node->grad, node->value.data, sv->denom, sv->clamped, sv->rows,
                      sv->d);
}

dml_status dml_op_l2_normalize(dml_graph *g, dml_node *x, float eps, dml_node **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_op_l2_normalize: out is NULL");
  static const char *op = "l2_normalize";
  DML_TRY(dml__check_node(op, x, "x"));
  DML_TRY(dml__check_rank(op, x, 1, DML_MAX_DIMS));
  if (!(eps >= 0.0f) || isinf(eps))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op,
                      (double)eps);
  const int64_t d = x->value.shape[x->value.ndim - 1];
  const int64_t rows = d > 0 ? dml__numel(x) / d : 0;
  dml_node *y;
  DML_TRY(dml__node_new(g, op, x->value.ndim, x->value.shape, &x, 1, &y));
  l2n_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  float *denom = dml__graph_alloc(g, rows * (int64_t)sizeof(float));
  unsigned char *clamped = dml__graph_alloc(g, rows);
  if (!sv || !denom || !clamped)
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld row norms", op,
                      (long long)rows);
  sv->rows = rows;
  sv->d = d;
  sv->denom = denom;
  sv->clamped = clamped;
  l2n_forward(y->value.data, x->value.data, denom, clamped, rows, d, eps);
  y->saved = sv;
  y->backward = l2_normalize_backward;
  *out = y;
  return DML_OK;
}

dml_status dml__op_batchnorm_relu_inference(dml_graph *g, dml_node *x, dml_node *gamma,
                                            dml_node *beta, float *running_mean,
                                            float *running_var, float momentum, float eps,
                                            dml_node **out) {
  static const char *op = "batchnorm_relu";
  if (!g || !g->inference || g->training || !running_mean || !running_var || !x || !out ||
      x->value.ndim < 2 || x->value.ndim > 4 || !(eps >= 0.0f) || isinf(eps))
    return dml_op_batchnorm(g, x, gamma, beta, running_mean, running_var, momentum, eps, out);
  DML_TRY(dml__check_node(op, x, "x"));
  const int64_t n = x->value.shape[0], c = x->value.shape[1];
  const int64_t s = n * c > 0 ? dml__numel(x) / (n * c) : 0;
  DML_TRY(check_channel_vector(op, gamma, "gamma", c, x));
  DML_TRY(check_channel_vector(op, beta, "beta", c, x));
  const char *xop = x->op ? x->op : "";
  int in_place = x->consumers == 0 && !x->param &&
                 (!strcmp(xop, "conv2d") || !strcmp(xop, "conv1d") || !strcmp(xop, "linear"));
  dml_node *ins[3];
  int gamma_at, beta_at;
  const int n_in = affine_inputs(x, gamma, beta, ins, &gamma_at, &beta_at);
  dml_node *y;
  DML_TRY(dml__node_new_view(g, op, x->value.ndim, x->value.shape, ins, n_in,
                             in_place ? x->value.data : NULL, &y));
  float *coef = dml__graph_alloc(g, 2 * c * (int64_t)sizeof(float));
  if (!coef)
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld channel statistics", op,
                      (long long)c);
  /* the arithmetic of the unfused evaluation forward, so both give the same bits */
  const float *gd = gamma ? gamma->value.data : NULL, *bd = beta ? beta->value.data : NULL;
  bn_eval_coefficients(gd, bd, running_var, eps, c, NULL, coef, coef + c);
  bn_eval_forward(y->value.data, x->value.data, running_mean, coef, coef + c, n, c, s, 1);
  *out = y; /* no backward: inference nodes never require gradients */
  return DML_OK;
}
