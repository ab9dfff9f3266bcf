/* Optimisers (SGD with momentum/Nesterov, Adam, AdamW), learning-rate schedules and gradient
 * clipping, with torch.optim's update rules. An optimiser borrows the parameter store (which
 * must outlive it) and owns its state (momentum / moment buffers, one contiguous block each).
 * Parameter groups: every dml_param has a `group` (0 by default); a group can scale the
 * learning rate (learnable proxies commonly take 100x) and override weight decay. */
#ifndef DML_OPTIM_H
#define DML_OPTIM_H

#include <stdint.h>

#include "dml/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dml_optim_kind { DML_OPTIM_SGD, DML_OPTIM_ADAM, DML_OPTIM_ADAMW } dml_optim_kind;

typedef struct dml_optim_config {
  dml_optim_kind kind;
  float lr;
  float momentum;     /* SGD */
  float dampening;    /* SGD */
  int nesterov;       /* SGD */
  float weight_decay; /* SGD/Adam: L2 added to the gradient; AdamW: decoupled decay */
  float beta1, beta2, eps; /* Adam/AdamW */
} dml_optim_config;

/* torch.optim defaults: SGD lr 0.01, no momentum; Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8;
 * AdamW as Adam with weight_decay 0.01. */
dml_optim_config dml_optim_config_default(dml_optim_kind kind);

typedef struct dml_optim dml_optim;

dml_status dml_optim_new(dml_param_store *params, const dml_optim_config *cfg, dml_optim **out);
void dml_optim_free(dml_optim *o); /* NULL is a no-op */

/* Group g's learning rate is lr * lr_scale; weight_decay < 0 keeps the global value.
 * Groups 0..63. */
dml_status dml_optim_set_group(dml_optim *o, int group, float lr_scale, float weight_decay);

/* The base learning rate (schedules set it every step). */
void dml_optim_set_lr(dml_optim *o, float lr);
float dml_optim_get_lr(const dml_optim *o);

/* One update of every trainable parameter from its gradient. Returns DML_ERR_NOT_FINITE,
 * leaving the parameters unchanged, when a gradient holds NaN or Inf. */
dml_status dml_optim_step(dml_optim *o);

/* Steps taken so far (Adam's bias correction uses it). */
int64_t dml_optim_step_count(const dml_optim *o);

/* State for checkpoints: n_buffers blocks, each dml_params_numel(params) floats, laid out like
 * the store's value block; the step count is restored with dml_optim_set_step_count. */
int dml_optim_state_buffers(const dml_optim *o);
float *dml_optim_state_buffer(dml_optim *o, int index);
void dml_optim_set_step_count(dml_optim *o, int64_t steps);

/* ---- schedules ---- */
typedef enum dml_schedule_kind {
  DML_SCHEDULE_CONSTANT,
  DML_SCHEDULE_STEP,        /* lr * gamma^floor(step / step_size) */
  DML_SCHEDULE_COSINE,      /* linear warm-up, then cosine from lr to min_lr at total_steps */
  DML_SCHEDULE_EXPONENTIAL  /* lr * gamma^step */
} dml_schedule_kind;

typedef struct dml_schedule {
  dml_schedule_kind kind;
  float base_lr;
  int64_t warmup_steps; /* all kinds: linear ramp from base_lr/warmup_steps over the first steps */
  int64_t total_steps;  /* cosine */
  int64_t step_size;    /* step */
  float gamma;          /* step, exponential */
  float min_lr;         /* cosine */
} dml_schedule;

/* Learning rate for step (0-based). */
float dml_schedule_lr(const dml_schedule *s, int64_t step);

/* Scales all trainable gradients so their global L2 norm is at most max_norm (as
 * torch.nn.utils.clip_grad_norm_). total_norm (may be NULL) receives the norm before clipping. */
dml_status dml_clip_grad_norm(dml_param_store *params, float max_norm, float *total_norm);

#ifdef __cplusplus
}
#endif
#endif
