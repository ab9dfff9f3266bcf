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

/* One update of every trainable parameter from its gradient (buffers, trainable == 0, are
 * skipped and their gradients ignored). Returns DML_ERR_NOT_FINITE, leaving parameters, state
 * and step count unchanged, when a trainable gradient holds NaN or Inf; DML_ERR_STATE when the
 * store was re-finalized since dml_optim_new (make a new optimiser); DML_ERR_INVALID_ARGUMENT
 * when a trainable parameter's group is outside 0..63 or the learning rate is negative or not
 * finite. */
dml_status dml_optim_step(dml_optim *o);

/* Steps taken so far (Adam's bias correction uses it). */
int64_t dml_optim_step_count(const dml_optim *o);

/* State for checkpoints: n_buffers blocks (SGD: 0, or 1 momentum buffer when momentum != 0;
 * Adam/AdamW: 2, exp_avg then exp_avg_sq), each laid out like the store's value block, padding
 * included: parameter p's state is the p->numel floats at buffer + p->offset. A buffer is
 * therefore longer than dml_params_numel(params) (the store pads each parameter to 16 floats);
 * address it only through parameter offsets. Buffers start zeroed, belong to the optimiser and
 * stay valid until dml_optim_free. The step count is restored with dml_optim_set_step_count
 * (negative counts are ignored); with 0 steps SGD's next step starts its momentum afresh. */
int dml_optim_state_buffers(const dml_optim *o);
float *dml_optim_state_buffer(dml_optim *o, int index);
void dml_optim_set_step_count(dml_optim *o, int64_t steps);
/* Floats in each state buffer (the padded size of the store's value block when the optimiser
 * was made). */
int64_t dml_optim_state_numel(const dml_optim *o);
/* The parameter store the optimiser was made for (borrowed). */
dml_param_store *dml_optim_params(dml_optim *o);

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

/* Learning rate for step (0-based; negative counts as 0). With W = warmup_steps > 0, steps
 * 0..W-1 ramp as base_lr (step + 1) / W; after that the kind's formula runs on step - W (step
 * and exponential decay start after the warm-up; cosine goes from base_lr at step W to min_lr
 * at step total_steps and stays there). step_size <= 0 means no decay. NULL gives 0. */
float dml_schedule_lr(const dml_schedule *s, int64_t step);

/* Scales all trainable gradients so their global L2 norm is at most max_norm (as
 * torch.nn.utils.clip_grad_norm_: by max_norm / (norm + 1e-6) when that is below 1).
 * total_norm (may be NULL) receives the norm before clipping. max_norm must be >= 0. A NaN or
 * Inf gradient gives DML_ERR_NOT_FINITE with the gradients left unchanged (torch would fill
 * them with NaN). */
dml_status dml_clip_grad_norm(dml_param_store *params, float max_norm, float *total_norm);

#ifdef __cplusplus
}
#endif
#endif
