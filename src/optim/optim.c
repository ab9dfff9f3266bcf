/* Optimisers: SGD (momentum, dampening, Nesterov), Adam and AdamW with torch.optim's update
 * rules, parameter groups, and the state block layout used by checkpoints.
 * With g the gradient, p the parameter, lr and wd the group's learning rate and weight decay:
 *   SGD:   d = g + wd p;  b = d on the first step, else b = momentum b + (1 - dampening) d;
 *          u = d + momentum b (Nesterov) or b (momentum) or d (no momentum);  p -= lr u
 *   Adam:  g' = g + wd p;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
 *          p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   AdamW: p *= 1 - lr wd, then Adam's update with g' = g
 * (torch/optim/sgd.py, adam.py and adamw.py, single-tensor paths; t counts steps from 1.)
 * Each state buffer is one block laid out like the store's value block. A step runs one
 * vectorisable loop per contiguous run of trainable parameters; the runs are split across
 * threads in one OpenMP region. */
#include "dml/optim.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#endif

#include "core/status_internal.h"
#include "optim/optim_internal.h"

#define GROUPS 64
/* Adam works through a run in blocks small enough for its sqrt scratch to stay in L1. */
#define ADAM_BLOCK 512

struct dml_optim {
  dml_param_store *params;
  dml_optim_config cfg; /* cfg.lr is the base learning rate */
  float lr_scale[GROUPS];
  float weight_decay[GROUPS]; /* < 0: cfg.weight_decay */
  int64_t steps;
  int n_buffers;
  float *buffers[2]; /* SGD: momentum; Adam/AdamW: exp_avg, exp_avg_sq */
  int64_t block;     /* floats in each buffer */
  /* The store layout the state belongs to: re-finalizing the store moves its blocks. */
  const float *layout_values;
  int layout_count;
  dml__param_run *runs;
};

/* ---- helpers shared with clip.c ---- */

int dml__param_runs(dml_param_store *s, int split_groups, dml__param_run *runs, int64_t *total) {
  int n = 0;
  int64_t covered = 0;
  int count = dml_params_count(s);
  for (int i = 0; i < count; i++) {
    const dml_param *p = dml_params_get(s, i);
    if (!p->trainable || p->numel == 0) continue;
    int group = split_groups ? p->group : 0;
    if (n > 0 && runs[n - 1].end == p->offset && runs[n - 1].group == group) {
      runs[n - 1].end = p->offset + p->numel;
    } else {
      runs[n].begin = p->offset;
      runs[n].end = p->offset + p->numel;
      runs[n].group = group;
      n++;
    }
    covered += p->numel;
  }
  if (total) *total = covered;
  return n;
}

void dml__thread_slice(int64_t n, int64_t *lo, int64_t *hi) {
  int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  int64_t chunk = (n + nt - 1) / nt;
  chunk = (chunk + 15) / 16 * 16;
  int64_t a = t * chunk;
  if (a > n) a = n;
  int64_t b = a + chunk;
  if (b > n) b = n;
  *lo = a;
  *hi = b;
}

/* 1 when x holds NaN or Inf (x - x is NaN exactly then); a branch-free loop that vectorises. */
static int any_nonfinite(const float *restrict x, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) bad |= (x[i] - x[i]) != 0.0f;
  return bad;
}

int dml__first_nonfinite_grad(dml_param_store *s, const dml__param_run *runs, int n_runs,
                              int64_t total, int64_t *element) {
  const float *grads = dml_params_grads(s);
  int bad = 0;
#pragma omp parallel reduction(| : bad) if (total > DML__OPTIM_PAR_MIN)
  for (int r = 0; r < n_runs; r++) {
    int64_t lo, hi;
    dml__thread_slice(runs[r].end - runs[r].begin, &lo, &hi);
    bad |= any_nonfinite(grads + runs[r].begin + lo, hi - lo);
  }
  if (!bad) return -1;
  /* Rare path: find the culprit serially to name it. */
  int count = dml_params_count(s);
  for (int i = 0; i < count; i++) {
    const dml_param *p = dml_params_get(s, i);
    if (!p->trainable) continue;
    for (int64_t j = 0; j < p->numel; j++)
      if (!isfinite(p->grad[j])) {
        if (element) *element = j;
        return i;
      }
  }
  return -1;
}

/* ---- kernels: one contiguous range each, n elements ---- */

/* keep_b, take_d: the momentum recurrence b = keep_b b + take_d d (0, 1 on the first step);
 * use_d, use_b: the update u = use_d d + use_b b (Nesterov: 1, momentum; plain momentum: 0, 1). */
typedef struct sgd_coef {
  float lr, wd, keep_b, take_d, use_d, use_b;
} sgd_coef;

static void sgd_plain(float *restrict p, const float *restrict g, int64_t n, float lr, float wd) {
  for (int64_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
}

static void sgd_momentum(float *restrict p, const float *restrict g, float *restrict b, int64_t n,
                         const sgd_coef *c) {
  const float lr = c->lr, wd = c->wd, keep_b = c->keep_b, take_d = c->take_d;
  const float use_d = c->use_d, use_b = c->use_b;
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    float bi = keep_b * b[i] + take_d * d;
    b[i] = bi;
    p[i] -= lr * (use_d * d + use_b * bi);
  }
}

typedef struct adam_coef {
  float l2;        /* Adam's weight decay added to the gradient (0 for AdamW) */
  float decay;     /* AdamW's factor 1 - lr wd (1 for Adam) */
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size; /* lr / (1 - beta1^t) */
  float bc2_sqrt;  /* sqrt(1 - beta2^t) */
  float eps;
} adam_coef;

/* In-place square root of n floats. sqrtf may set errno, which keeps compilers from
 * vectorising it without -fno-math-errno; the SIMD instructions give the same correctly
 * rounded results. */
static void sqrt_inplace(float *restrict x, int64_t n) {
  int64_t i = 0;
#if defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#elif defined(__SSE2__)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
  for (; i < n; i++) x[i] = sqrtf(x[i]);
}

static void adam_block(float *restrict p, const float *restrict g, float *restrict m,
                       float *restrict v, int64_t n, const adam_coef *c) {
  float den[ADAM_BLOCK];
  const float l2 = c->l2, b1 = c->beta1, c1 = c->one_minus_beta1, b2 = c->beta2,
              c2 = c->one_minus_beta2;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] + l2 * p[i];
    m[i] = b1 * m[i] + c1 * gi;
    float vi = b2 * v[i] + c2 * gi * gi;
    v[i] = vi;
    den[i] = vi;
  }
  sqrt_inplace(den, n);
  const float decay = c->decay, ss = c->step_size, bc2 = c->bc2_sqrt, eps = c->eps;
  for (int64_t i = 0; i < n; i++) p[i] = p[i] * decay - ss * (m[i] / (den[i] / bc2 + eps));
}

static void adam_range(float *p, const float *g, float *m, float *v, int64_t n,
                       const adam_coef *c) {
  for (int64_t s = 0; s < n; s += ADAM_BLOCK) {
    int64_t k = n - s < ADAM_BLOCK ? n - s : ADAM_BLOCK;
    adam_block(p + s, g + s, m + s, v + s, k, c);
  }
}

/* ---- public API ---- */

dml_optim_config dml_optim_config_default(dml_optim_kind kind) {
  dml_optim_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.beta1 = 0.9f;
  c.beta2 = 0.999f;
  c.eps = 1e-8f;
  switch (kind) {
    case DML_OPTIM_SGD:
      c.lr = 0.01f;
      break;
    case DML_OPTIM_ADAM:
      c.lr = 1e-3f;
      break;
    case DML_OPTIM_ADAMW:
      c.lr = 1e-3f;
      c.weight_decay = 0.01f;
      break;
  }
  return c;
}

static int finite_nonneg(float x) { return isfinite(x) && x >= 0.0f; }

static dml_status check_config(const dml_optim_config *c) {
  if (c->kind != DML_OPTIM_SGD && c->kind != DML_OPTIM_ADAM && c->kind != DML_OPTIM_ADAMW)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "optimiser kind %d is not one of DML_OPTIM_SGD, DML_OPTIM_ADAM, "
                      "DML_OPTIM_ADAMW", (int)c->kind);
  if (!finite_nonneg(c->lr))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "learning rate %g must be finite and >= 0",
                      (double)c->lr);
  if (!finite_nonneg(c->weight_decay))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "weight_decay %g must be finite and >= 0",
                      (double)c->weight_decay);
  if (c->kind == DML_OPTIM_SGD) {
    if (!finite_nonneg(c->momentum))
      return dml__error(DML_ERR_INVALID_ARGUMENT, "momentum %g must be finite and >= 0",
                        (double)c->momentum);
    if (!isfinite(c->dampening))
      return dml__error(DML_ERR_INVALID_ARGUMENT, "dampening %g must be finite",
                        (double)c->dampening);
    if (c->nesterov && (c->momentum <= 0.0f || c->dampening != 0.0f))
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "Nesterov momentum needs momentum > 0 and dampening 0 (got momentum %g, "
                        "dampening %g)", (double)c->momentum, (double)c->dampening);
  } else {
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f))
      return dml__error(DML_ERR_INVALID_ARGUMENT, "betas (%g, %g) must each lie in [0, 1)",
                        (double)c->beta1, (double)c->beta2);
    if (!finite_nonneg(c->eps))
      return dml__error(DML_ERR_INVALID_ARGUMENT, "eps %g must be finite and >= 0",
                        (double)c->eps);
  }
  return DML_OK;
}

/* Floats in the store's value block: the last parameter's offset plus its size padded to 16
 * floats, as dml_params_finalize lays it out (at least offset + numel for every parameter). */
static int64_t store_block(dml_param_store *s) {
  int64_t block = 0;
  int count = dml_params_count(s);
  for (int i = 0; i < count; i++) {
    const dml_param *p = dml_params_get(s, i);
    int64_t end = p->offset + (p->numel + 15) / 16 * 16;
    if (end > block) block = end;
  }
  return block;
}

dml_status dml_optim_new(dml_param_store *params, const dml_optim_config *cfg, dml_optim **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_optim_new: out is NULL");
  *out = NULL;
  if (!params || !cfg)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_optim_new: %s is NULL",
                      params ? "cfg" : "params");
  DML_TRY(check_config(cfg));
  int count = dml_params_count(params);
  for (int i = 0; i < count; i++)
    if (!dml_params_get(params, i)->value)
      return dml__error(DML_ERR_STATE,
                        "parameter store is not finalized (parameter '%s' has no storage): call "
                        "dml_params_finalize before dml_optim_new",
                        dml_params_get(params, i)->name);
  dml_optim *o = calloc(1, sizeof *o);
  if (!o) return dml__error(DML_ERR_NO_MEMORY, "could not allocate an optimiser");
  o->params = params;
  o->cfg = *cfg;
  for (int g = 0; g < GROUPS; g++) {
    o->lr_scale[g] = 1.0f;
    o->weight_decay[g] = -1.0f;
  }
  o->layout_values = dml_params_values(params);
  o->layout_count = count;
  o->block = store_block(params);
  o->runs = malloc((size_t)(count > 0 ? count : 1) * sizeof *o->runs);
  if (cfg->kind == DML_OPTIM_SGD)
    o->n_buffers = cfg->momentum != 0.0f ? 1 : 0;
  else
    o->n_buffers = 2;
  int ok = o->runs != NULL;
  for (int b = 0; ok && b < o->n_buffers; b++) {
    int64_t bytes = (o->block > 0 ? o->block : 16) * (int64_t)sizeof(float);
    o->buffers[b] = dml_alloc_aligned(bytes);
    if (o->buffers[b])
      memset(o->buffers[b], 0, (size_t)bytes);
    else
      ok = 0;
  }
  if (!ok) {
    int n_buffers = o->n_buffers;
    int64_t block = o->block;
    dml_optim_free(o);
    return dml__error(DML_ERR_NO_MEMORY, "could not allocate optimiser state (%d x %lld floats)",
                      n_buffers, (long long)block);
  }
  *out = o;
  return DML_OK;
}

void dml_optim_free(dml_optim *o) {
  if (!o) return;
  for (int b = 0; b < 2; b++) dml_free_aligned(o->buffers[b]);
  free(o->runs);
  free(o);
}

dml_status dml_optim_set_group(dml_optim *o, int group, float lr_scale, float weight_decay) {
  if (!o) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_optim_set_group: optimiser is NULL");
  if (group < 0 || group >= GROUPS)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter group %d is outside 0..%d", group,
                      GROUPS - 1);
  if (!finite_nonneg(lr_scale))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "group %d: learning-rate scale %g must be finite and >= 0", group,
                      (double)lr_scale);
  if (isnan(weight_decay) || isinf(weight_decay))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "group %d: weight_decay %g must be finite (< 0 keeps the global value)",
                      group, (double)weight_decay);
  o->lr_scale[group] = lr_scale;
  o->weight_decay[group] = weight_decay < 0.0f ? -1.0f : weight_decay;
  return DML_OK;
}

void dml_optim_set_lr(dml_optim *o, float lr) {
  if (o) o->cfg.lr = lr;
}

float dml_optim_get_lr(const dml_optim *o) { return o ? o->cfg.lr : 0.0f; }

int64_t dml_optim_step_count(const dml_optim *o) { return o ? o->steps : 0; }

int dml_optim_state_buffers(const dml_optim *o) { return o ? o->n_buffers : 0; }

int64_t dml_optim_state_numel(const dml_optim *o) { return o ? o->block : 0; }

dml_param_store *dml_optim_params(dml_optim *o) { return o ? o->params : NULL; }

float *dml_optim_state_buffer(dml_optim *o, int index) {
  if (!o || index < 0 || index >= o->n_buffers) return NULL;
  return o->buffers[index];
}

void dml_optim_set_step_count(dml_optim *o, int64_t steps) {
  if (o && steps >= 0) o->steps = steps;
}

/* Checks that the store still has the layout the state was made for and that every trainable
 * parameter's group is valid. */
static dml_status check_store(const dml_optim *o) {
  dml_param_store *s = o->params;
  int count = dml_params_count(s);
  if (count != o->layout_count || dml_params_values(s) != o->layout_values)
    return dml__error(DML_ERR_STATE,
                      "the parameter store was changed (now %d parameters, %d when the optimiser "
                      "was made) or re-finalized since dml_optim_new; make a new optimiser",
                      count, o->layout_count);
  for (int i = 0; i < count; i++) {
    const dml_param *p = dml_params_get(s, i);
    if (p->trainable && (p->group < 0 || p->group >= GROUPS))
      return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter '%s' has group %d (must be 0..%d)",
                        p->name, p->group, GROUPS - 1);
  }
  return DML_OK;
}

dml_status dml_optim_step(dml_optim *o) {
  if (!o) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_optim_step: optimiser is NULL");
  DML_TRY(check_store(o));
  dml_param_store *s = o->params;
  const dml_optim_config *c = &o->cfg;
  if (!finite_nonneg(c->lr))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "learning rate %g must be finite and >= 0",
                      (double)c->lr);
  int64_t total;
  int n_runs = dml__param_runs(s, 1, o->runs, &total);
  int64_t at;
  int bad = dml__first_nonfinite_grad(s, o->runs, n_runs, total, &at);
  if (bad >= 0) {
    const dml_param *p = dml_params_get(s, bad);
    return dml__error(DML_ERR_NOT_FINITE,
                      "gradient of '%s' holds %g at element %lld; no parameter was updated "
                      "(lower the learning rate or clip gradients)",
                      p->name, (double)p->grad[at], (long long)at);
  }

  /* Per-group coefficients, formed in double as torch does in Python. */
  const int64_t t = o->steps + 1;
  sgd_coef sgd[GROUPS];
  adam_coef adam[GROUPS];
  for (int g = 0; g < GROUPS; g++) {
    double lr = (double)c->lr * o->lr_scale[g];
    double wd = o->weight_decay[g] >= 0.0f ? o->weight_decay[g] : c->weight_decay;
    if (c->kind == DML_OPTIM_SGD) {
      int first = o->steps == 0;
      sgd[g].lr = (float)lr;
      sgd[g].wd = (float)wd;
      sgd[g].keep_b = first ? 0.0f : c->momentum;
      sgd[g].take_d = first ? 1.0f : (float)(1.0 - (double)c->dampening);
      sgd[g].use_d = c->nesterov ? 1.0f : 0.0f;
      sgd[g].use_b = c->nesterov ? c->momentum : 1.0f;
    } else {
      double b1 = c->beta1, b2 = c->beta2;
      adam[g].l2 = c->kind == DML_OPTIM_ADAM ? (float)wd : 0.0f;
      adam[g].decay = c->kind == DML_OPTIM_ADAMW ? (float)(1.0 - lr * wd) : 1.0f;
      adam[g].beta1 = c->beta1;
      adam[g].one_minus_beta1 = (float)(1.0 - b1);
      adam[g].beta2 = c->beta2;
      adam[g].one_minus_beta2 = (float)(1.0 - b2);
      adam[g].step_size = (float)(lr / (1.0 - pow(b1, (double)t)));
      adam[g].bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)t));
      adam[g].eps = c->eps;
    }
  }

  float *values = dml_params_values(s), *grads = dml_params_grads(s);
  float *b0 = o->buffers[0], *b1 = o->buffers[1];
  const dml__param_run *runs = o->runs;
  const dml_optim_kind kind = c->kind;
  const int momentum = o->n_buffers > 0;
#pragma omp parallel if (total > DML__OPTIM_PAR_MIN)
  for (int r = 0; r < n_runs; r++) {
    int64_t lo, hi;
    dml__thread_slice(runs[r].end - runs[r].begin, &lo, &hi);
    int64_t at0 = runs[r].begin + lo, n = hi - lo;
    int g = runs[r].group;
    if (n <= 0) continue;
    if (kind == DML_OPTIM_SGD) {
      if (momentum)
        sgd_momentum(values + at0, grads + at0, b0 + at0, n, &sgd[g]);
      else
        sgd_plain(values + at0, grads + at0, n, sgd[g].lr, sgd[g].wd);
    } else {
      adam_range(values + at0, grads + at0, b0 + at0, b1 + at0, n, &adam[g]);
    }
  }
  o->steps = t;
  return DML_OK;
}
