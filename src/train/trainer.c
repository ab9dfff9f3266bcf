/* The training loop: batches from the background loader, one step per batch (forward, loss over
 * the gathered batch, backward, gradient reduction, optimiser), validation after every epoch,
 * best-weights bookkeeping, early stopping, checkpoints that resume bit for bit, the JSON-lines
 * log and the progress display (train_progress.c). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "core/status_internal.h"
#include "dml/checkpoint.h"
#include "dml/eval.h"
#include "dml/loss.h"
#include "dml/train.h"
#include "nn/safetensors_internal.h"
#include "train/train_internal.h"

struct dml_trainer {
  dml_model *m;
  const dml_dataset *train;
  dml_train_options o;
  dml_loss *loss;
  dml_param_store *loss_params; /* NULL when the loss has none */
  dml_optim *opt_net, *opt_loss;
  dml_loader *loader;
  dml_graph *g;
  int64_t d, in_numel, max_batch;
  float *emb, *grad;      /* gathered batch: comm size * max_batch rows */
  int32_t *labels;        /* gathered labels */
  float *best_net, *best_loss; /* weights of the best epoch */
  int64_t net_block, loss_block;
  /* position and history */
  int64_t epoch;          /* epochs completed */
  int64_t batch;          /* batches of the current epoch completed */
  int64_t step;           /* steps completed */
  dml_epoch_record *records;
  int records_cap;
  float *step_loss;
  int64_t steps_cap;
  double epoch_loss_sum;  /* of the current epoch's completed batches */
  double epoch_seconds;   /* training time of the current epoch so far */
  int bad_epochs;
  dml_train_history hist;
  volatile sig_atomic_t stop_requested;
  FILE *log;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

dml_train_options dml_train_options_default(void) {
  dml_train_options o;
  memset(&o, 0, sizeof o);
  o.loss_spec = "triplet margin=0.2 miner=semihard";
  o.loader.batching = DML_BATCHING_PK;
  o.loader.p = 6;
  o.loader.k = 32;
  o.loader.batch_size = 192;
  o.loader.prefetch = 2;
  o.optim = dml_optim_config_default(DML_OPTIM_ADAM);
  o.loss_lr_scale = 1.0f;
  o.schedule.kind = DML_SCHEDULE_CONSTANT;
  o.schedule.gamma = 0.1f;
  o.epochs = 3;
  o.seed = 1;
  o.distance = DML_DIST_COSINE;
  o.val_metric = "map_at_r";
  o.progress = DML_PROGRESS_LINES;
  return o;
}

/* buf = a + b, or an error when it does not fit. */
static dml_status join_path(char *buf, size_t cap, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la + lb + 1 > cap)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "path too long: %s%s", a, b);
  memcpy(buf, a, la);
  memcpy(buf + la, b, lb + 1);
  return DML_OK;
}

static int64_t block_len(dml_param_store *ps) {
  int64_t b = 0;
  for (int i = 0; i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    if (p->offset + p->numel > b) b = p->offset + p->numel;
  }
  return b;
}

void dml_trainer_free(dml_trainer *t) {
  if (!t) return;
  dml_loader_free(t->loader);
  dml_optim_free(t->opt_net);
  dml_optim_free(t->opt_loss);
  dml_loss_free(t->loss);
  dml_graph_free(t->g);
  free(t->emb);
  free(t->grad);
  free(t->labels);
  free(t->best_net);
  free(t->best_loss);
  free(t->records);
  free(t->step_loss);
  if (t->log) fclose(t->log);
  free(t);
}

static dml_status check_options(const dml_model *m, const dml_dataset *train,
                                const dml_train_options *o) {
  if (!o->loss_spec || !*o->loss_spec)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "training: no loss spec given");
  if (o->epochs < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "training: epochs = %d (need >= 0)", o->epochs);
  if (!(o->optim.lr > 0) || !isfinite(o->optim.lr))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "training: learning rate %g (need > 0)",
                      (double)o->optim.lr);
  if (o->patience < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "training: patience %d (need >= 0)", o->patience);
  if (o->val_metric && strcmp(o->val_metric, "map_at_r") && strcmp(o->val_metric, "p_at_1") &&
      strcmp(o->val_metric, "r_precision"))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "training: validation metric '%s' is not one of map_at_r, p_at_1, "
                      "r_precision",
                      o->val_metric);
  if (train->n < 2)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "training: the training set has %lld examples",
                      (long long)train->n);
  int64_t in_numel = dml_model_input_numel(m);
  if (train->example_numel != in_numel)
    return dml__error(DML_ERR_SHAPE,
                      "training: an example has %lld values, the model's input takes %lld "
                      "(check the model's input line against the data)",
                      (long long)train->example_numel, (long long)in_numel);
  if (o->val && o->val->example_numel != in_numel)
    return dml__error(DML_ERR_SHAPE,
                      "training: a validation example has %lld values, the model takes %lld",
                      (long long)o->val->example_numel, (long long)in_numel);
  if (o->comm && (o->comm->size < 1 || o->comm->rank < 0 || o->comm->rank >= o->comm->size ||
                  (o->comm->size > 1 && (!o->comm->all_gather || !o->comm->all_reduce_sum))))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "training: the communicator needs 0 <= rank < size and both collectives");
  return DML_OK;
}

dml_status dml_trainer_new(dml_model *m, const dml_dataset *train, const dml_train_options *o,
                           dml_trainer **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_trainer_new: out is NULL");
  *out = NULL;
  if (!m || !train || !o)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_trainer_new: NULL model, data or options");
  DML_TRY(check_options(m, train, o));
  dml_trainer *t = calloc(1, sizeof *t);
  if (!t) return dml__error(DML_ERR_NO_MEMORY, "out of memory making a trainer");
  t->m = m;
  t->train = train;
  t->o = *o;
  if (!t->o.val_metric) t->o.val_metric = "map_at_r";
  if (!t->o.progress_stream) t->o.progress_stream = stderr;
  t->o.loader.seed = o->seed;
  t->d = dml_model_output_numel(m);
  t->in_numel = dml_model_input_numel(m);
  t->hist.best_val_metric = NAN;
  dml_status st;
  dml_loss_config lc = {.dim = t->d, .num_classes = o->num_classes, .seed = o->seed};
  if ((st = dml_loss_new(o->loss_spec, &lc, &t->loss)) != DML_OK) goto fail;
  t->loss_params = dml_loss_params(t->loss);
  if ((st = dml_optim_new(dml_model_params(m), &o->optim, &t->opt_net)) != DML_OK) goto fail;
  if (t->loss_params) {
    dml_optim_config lo = o->optim;
    lo.lr = o->optim.lr * (o->loss_lr_scale > 0 ? o->loss_lr_scale : 1.0f);
    if ((st = dml_optim_new(t->loss_params, &lo, &t->opt_loss)) != DML_OK) goto fail;
  }
  if ((st = dml_loader_new(train, &t->o.loader, &t->loader)) != DML_OK) goto fail;
  if ((st = dml_graph_new(&t->g)) != DML_OK) goto fail;
  t->max_batch = dml_loader_max_batch_size(t->loader);
  int64_t ranks = o->comm ? o->comm->size : 1;
  t->emb = malloc((size_t)(ranks * t->max_batch * t->d) * sizeof(float));
  t->grad = malloc((size_t)(ranks * t->max_batch * t->d) * sizeof(float));
  t->labels = malloc((size_t)(ranks * t->max_batch) * sizeof(int32_t));
  t->net_block = block_len(dml_model_params(m));
  t->loss_block = t->loss_params ? block_len(t->loss_params) : 0;
  if (!t->emb || !t->grad || !t->labels) {
    st = dml__error(DML_ERR_NO_MEMORY, "out of memory for the training batch buffers");
    goto fail;
  }
  if (t->o.schedule.total_steps <= 0)
    t->o.schedule.total_steps = (int64_t)o->epochs * dml_loader_num_batches(t->loader);
  t->o.schedule.base_lr = o->optim.lr;
  *out = t;
  return DML_OK;
fail:
  dml_trainer_free(t);
  return st;
}

void dml_trainer_request_stop(dml_trainer *t) {
  if (t) t->stop_requested = 1;
}

const dml_train_history *dml_trainer_history(const dml_trainer *t) { return t ? &t->hist : NULL; }

dml_loss *dml_trainer_loss(dml_trainer *t) { return t ? t->loss : NULL; }

static dml_status push_step_loss(dml_trainer *t, float v) {
  if (t->step >= t->steps_cap) {
    int64_t cap = t->steps_cap ? 2 * t->steps_cap : 1024;
    while (cap <= t->step) cap *= 2;
    float *p = realloc(t->step_loss, (size_t)cap * sizeof(float));
    if (!p) return dml__error(DML_ERR_NO_MEMORY, "out of memory for the loss history");
    t->step_loss = p;
    t->steps_cap = cap;
  }
  t->step_loss[t->step] = v;
  return DML_OK;
}

static dml_status push_record(dml_trainer *t, const dml_epoch_record *r) {
  if (t->hist.num_epochs >= t->records_cap) {
    int cap = t->records_cap ? 2 * t->records_cap : 16;
    dml_epoch_record *p = realloc(t->records, (size_t)cap * sizeof *p);
    if (!p) return dml__error(DML_ERR_NO_MEMORY, "out of memory for the epoch history");
    t->records = p;
    t->records_cap = cap;
  }
  t->records[t->hist.num_epochs++] = *r;
  return DML_OK;
}

static void sync_history(dml_trainer *t) {
  t->hist.epochs = t->records;
  t->hist.step_loss = t->step_loss;
  t->hist.num_steps = t->step;
}

static dml_status reduce_grads(dml_trainer *t) {
  const dml_comm *c = t->o.comm;
  if (!c || c->size <= 1) return DML_OK;
  /* Model gradients are partial sums over each process's rows: sum them. The loss's own
   * parameters see the whole gathered batch on every process already, so theirs are equal
   * everywhere and need no reduction. */
  return c->all_reduce_sum(c->ctx, dml_params_grads(dml_model_params(t->m)), t->net_block);
}

/* One training step on batch b; *loss_out receives the loss over the gathered batch. */
static dml_status train_step(dml_trainer *t, const dml_batch *b, float *loss_out) {
  int in_ndim;
  int64_t shape[DML_MAX_DIMS + 1];
  dml_model_input_shape(t->m, &in_ndim, shape + 1);
  shape[0] = b->size;
  dml_graph_reset(t->g);
  dml_graph_set_training(t->g, 1);
  dml_graph_set_seed(t->g, t->o.seed, (uint64_t)t->step);
  dml_node *x, *z;
  DML_TRY(dml_graph_input(t->g, b->x, in_ndim + 1, shape, 0, &x));
  DML_TRY(dml_model_forward(t->m, t->g, x, &z));
  const dml_tensor *zv = dml_node_value(z);
  int64_t rows = b->size, d = t->d;
  const dml_comm *c = t->o.comm;
  int ranks = c ? c->size : 1, rank = c ? c->rank : 0;
  if (ranks > 1) {
    /* every process must step with the same batch size for the gather */
    DML_TRY(c->all_gather(c->ctx, zv->data, rows * d * (int64_t)sizeof(float), t->emb));
    DML_TRY(c->all_gather(c->ctx, b->labels, rows * (int64_t)sizeof(int32_t), t->labels));
  } else {
    memcpy(t->emb, zv->data, (size_t)(rows * d) * sizeof(float));
    memcpy(t->labels, b->labels, (size_t)rows * sizeof(int32_t));
  }
  dml_params_zero_grad(dml_model_params(t->m));
  if (t->loss_params) dml_params_zero_grad(t->loss_params);
  dml_loss_set_step(t->loss, (uint64_t)t->step);
  float lv = 0;
  DML_TRY(dml_loss_compute(t->loss, t->emb, t->labels, rows * ranks, d, NULL, &lv, t->grad));
  if (!isfinite(lv))
    return dml__error(DML_ERR_NOT_FINITE,
                      "training diverged at step %lld (epoch %lld): the loss is %g; lower the "
                      "learning rate or clip gradients (optimizer.clip_grad_norm)",
                      (long long)t->step + 1, (long long)t->epoch + 1, (double)lv);
  DML_TRY(dml_graph_backward(t->g, z, t->grad + (int64_t)rank * rows * d));
  DML_TRY(reduce_grads(t));
  if (t->o.clip_grad_norm > 0) {
    DML_TRY(dml_clip_grad_norm(dml_model_params(t->m), t->o.clip_grad_norm, NULL));
    if (t->loss_params) DML_TRY(dml_clip_grad_norm(t->loss_params, t->o.clip_grad_norm, NULL));
  }
  float lr = dml_schedule_lr(&t->o.schedule, t->step);
  dml_optim_set_lr(t->opt_net, lr);
  dml_status st = dml_optim_step(t->opt_net);
  if (st == DML_OK && t->opt_loss) {
    dml_optim_set_lr(t->opt_loss, lr * (t->o.loss_lr_scale > 0 ? t->o.loss_lr_scale : 1.0f));
    st = dml_optim_step(t->opt_loss);
  }
  if (st == DML_ERR_NOT_FINITE)
    return dml__error(DML_ERR_NOT_FINITE,
                      "training diverged at step %lld (epoch %lld): a gradient is NaN or "
                      "infinite; lower the learning rate or clip gradients",
                      (long long)t->step + 1, (long long)t->epoch + 1);
  DML_TRY(st);
  *loss_out = lv;
  return DML_OK;
}

static double pick_metric(const dml_retrieval_metrics *r, const char *name) {
  if (!strcmp(name, "p_at_1")) return r->precision_at_1;
  if (!strcmp(name, "r_precision")) return r->r_precision;
  return r->map_at_r;
}

dml_status dml__train_validate(dml_model *m, dml_graph *g, const dml_dataset *val,
                               const int64_t *rows, int64_t n_rows, dml_distance dist,
                               dml_retrieval_metrics *out) {
  int64_t d = dml_model_output_numel(m);
  float *emb = malloc((size_t)(val->n * d) * sizeof(float));
  float *sub = rows ? malloc((size_t)(n_rows * d) * sizeof(float)) : NULL;
  int32_t *lab = rows ? malloc((size_t)n_rows * sizeof(int32_t)) : NULL;
  if (!emb || (rows && (!sub || !lab))) {
    free(emb);
    free(sub);
    free(lab);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory embedding the validation set");
  }
  /* small chunks: validation runs beside the training tape, keep its own memory small */
  dml_status st = dml_model_predict(m, g, val->x, val->n, 64, emb);
  if (st == DML_OK && rows) {
    for (int64_t i = 0; i < n_rows && st == DML_OK; i++) {
      if (rows[i] < 0 || rows[i] >= val->n) {
        st = dml__error(DML_ERR_INVALID_ARGUMENT, "validation row %lld is outside the %lld rows",
                        (long long)rows[i], (long long)val->n);
        break;
      }
      memcpy(sub + i * d, emb + rows[i] * d, (size_t)d * sizeof(float));
      lab[i] = val->labels[rows[i]];
    }
    if (st == DML_OK) st = dml_eval_retrieval(sub, lab, n_rows, d, dist, out);
  } else if (st == DML_OK) {
    st = dml_eval_retrieval(emb, val->labels, val->n, d, dist, out);
  }
  free(emb);
  free(sub);
  free(lab);
  return st;
}

static void copy_weights(dml_trainer *t, int to_best) {
  float *net = dml_params_values(dml_model_params(t->m));
  if (to_best) memcpy(t->best_net, net, (size_t)t->net_block * sizeof(float));
  else memcpy(net, t->best_net, (size_t)t->net_block * sizeof(float));
  if (t->loss_params) {
    float *lp = dml_params_values(t->loss_params);
    if (to_best) memcpy(t->best_loss, lp, (size_t)t->loss_block * sizeof(float));
    else memcpy(lp, t->best_loss, (size_t)t->loss_block * sizeof(float));
  }
}

dml_status dml_trainer_restore_best(dml_trainer *t) {
  if (!t) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_trainer_restore_best: NULL trainer");
  if (!t->best_net)
    return dml__error(DML_ERR_STATE,
                      "no best epoch to restore: training ran without validation");
  copy_weights(t, 0);
  return DML_OK;
}

/* ---- checkpoints ---- */

static cJSON *state_json(const dml_trainer *t) {
  cJSON *s = cJSON_CreateObject();
  if (!s) return NULL;
  cJSON_AddNumberToObject(s, "epoch", (double)t->epoch);
  cJSON_AddNumberToObject(s, "batch", (double)t->batch);
  cJSON_AddNumberToObject(s, "step", (double)t->step);
  cJSON_AddNumberToObject(s, "seed", (double)t->o.seed);
  cJSON_AddStringToObject(s, "loss", dml_loss_spec(t->loss));
  cJSON_AddNumberToObject(s, "epoch_loss_sum", t->epoch_loss_sum);
  cJSON_AddNumberToObject(s, "epoch_seconds", t->epoch_seconds);
  cJSON_AddNumberToObject(s, "bad_epochs", t->bad_epochs);
  cJSON_AddNumberToObject(s, "best_epoch", t->hist.best_epoch);
  if (isfinite(t->hist.best_val_metric))
    cJSON_AddNumberToObject(s, "best_val_metric", t->hist.best_val_metric);
  cJSON_AddNumberToObject(s, "images", (double)t->hist.images);
  cJSON_AddNumberToObject(s, "train_seconds", t->hist.train_seconds);
  cJSON *eps = cJSON_AddArrayToObject(s, "epochs");
  for (int i = 0; eps && i < t->hist.num_epochs; i++) {
    const dml_epoch_record *r = &t->records[i];
    cJSON *e = cJSON_CreateObject();
    if (!e) break;
    cJSON_AddNumberToObject(e, "epoch", r->epoch);
    cJSON_AddNumberToObject(e, "loss", r->loss);
    if (isfinite(r->val_metric)) cJSON_AddNumberToObject(e, "val_metric", r->val_metric);
    cJSON_AddNumberToObject(e, "seconds", r->seconds);
    cJSON_AddNumberToObject(e, "images_per_s", r->images_per_s);
    cJSON_AddNumberToObject(e, "lr", r->lr);
    cJSON_AddItemToArray(eps, e);
  }
  cJSON *sl = cJSON_AddArrayToObject(s, "step_loss");
  for (int64_t i = 0; sl && i < t->step; i++)
    cJSON_AddItemToArray(sl, cJSON_CreateNumber((double)t->step_loss[i]));
  return s;
}

/* The loss's parameters and their optimiser state, beside the model checkpoint. */
static dml_status save_loss_state(const dml_trainer *t, const char *prefix) {
  if (!t->loss_params) return DML_OK;
  char path[4200];
  DML_TRY(join_path(path, sizeof path, prefix, ".loss.safetensors"));
  int n = dml_params_count(t->loss_params);
  int nb = dml_optim_state_buffers(t->opt_loss);
  dml__st_tensor *ts = calloc((size_t)(n * (1 + nb)), sizeof *ts);
  char *names = calloc((size_t)(n * nb + 1), DML_PARAM_NAME_MAX + 32);
  if (!ts || !names) {
    free(ts);
    free(names);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory saving the loss's state");
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    dml_param *p = dml_params_get(t->loss_params, i);
    ts[k++] = (dml__st_tensor){p->name, p->ndim, p->shape, p->value};
  }
  for (int b = 0; b < nb; b++) {
    const float *buf = dml_optim_state_buffer(t->opt_loss, b);
    for (int i = 0; i < n; i++) {
      dml_param *p = dml_params_get(t->loss_params, i);
      char *nm = names + (size_t)(b * n + i) * (DML_PARAM_NAME_MAX + 32);
      snprintf(nm, DML_PARAM_NAME_MAX + 32, "optim.%d.%s", b, p->name);
      ts[k++] = (dml__st_tensor){nm, p->ndim, p->shape, buf + p->offset};
    }
  }
  char steps[32];
  snprintf(steps, sizeof steps, "%lld", (long long)dml_optim_step_count(t->opt_loss));
  const char *meta[] = {"optim.step", steps, NULL};
  dml_status st = dml__st_write(path, ts, k, meta);
  free(ts);
  free(names);
  return st;
}

static dml_status load_loss_state(dml_trainer *t, const char *prefix) {
  if (!t->loss_params) return DML_OK;
  char path[4200];
  DML_TRY(join_path(path, sizeof path, prefix, ".loss.safetensors"));
  dml__st_file f;
  memset(&f, 0, sizeof f);
  DML_TRY(dml__st_open(path, &f));
  int n = dml_params_count(t->loss_params);
  int nb = dml_optim_state_buffers(t->opt_loss);
  dml_status st = DML_OK;
  for (int b = -1; b < nb && st == DML_OK; b++) {
    float *buf = b < 0 ? NULL : dml_optim_state_buffer(t->opt_loss, b);
    for (int i = 0; i < n && st == DML_OK; i++) {
      dml_param *p = dml_params_get(t->loss_params, i);
      char nm[DML_PARAM_NAME_MAX + 32];
      if (b < 0) snprintf(nm, sizeof nm, "%s", p->name);
      else snprintf(nm, sizeof nm, "optim.%d.%s", b, p->name);
      const dml__st_entry *e = dml__st_find(&f, nm);
      if (!e) st = dml__error(DML_ERR_NOT_FOUND, "%s: missing tensor '%s'", path, nm);
      if (st == DML_OK) st = dml__st_check_entry(&f, e, nm, p->ndim, p->shape);
      if (st == DML_OK) st = dml__st_read_f32(&f, e, b < 0 ? p->value : buf + p->offset);
    }
  }
  if (st == DML_OK) {
    const char *s = dml__st_meta(&f, "optim.step");
    dml_optim_set_step_count(t->opt_loss, s ? strtoll(s, NULL, 10) : 0);
  }
  dml__st_close(&f);
  return st;
}

static dml_status save_checkpoint(dml_trainer *t, const char *name) {
  if (!t->o.checkpoint_dir || (t->o.comm && t->o.comm->rank != 0)) return DML_OK;
  char prefix[4200], dir[4200];
  DML_TRY(join_path(dir, sizeof dir, t->o.checkpoint_dir, "/"));
  DML_TRY(join_path(prefix, sizeof prefix, dir, name));
  cJSON *meta = t->o.metadata_json ? cJSON_Parse(t->o.metadata_json) : cJSON_CreateObject();
  if (!meta || !cJSON_IsObject(meta)) {
    cJSON_Delete(meta);
    return dml__error(DML_ERR_INVALID_ARGUMENT, "training: the checkpoint metadata is not a JSON object");
  }
  cJSON *s = state_json(t);
  if (!s || !cJSON_AddItemToObject(meta, "train_state", s)) {
    cJSON_Delete(s);
    cJSON_Delete(meta);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory writing a checkpoint");
  }
  char *text = cJSON_PrintUnformatted(meta);
  cJSON_Delete(meta);
  if (!text) return dml__error(DML_ERR_NO_MEMORY, "out of memory writing a checkpoint");
  dml_status st = save_loss_state(t, prefix);
  if (st == DML_OK) st = dml_checkpoint_save(prefix, t->m, t->opt_net, text);
  free(text);
  return st;
}

static double num(const cJSON *o, const char *key, double def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : def;
}

dml_status dml_trainer_resume(dml_trainer *t, const char *prefix) {
  if (!t || !prefix)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_trainer_resume: NULL argument");
  dml_model *saved = NULL;
  char *meta_text = NULL;
  DML_TRY(dml_checkpoint_load(prefix, &saved, &meta_text));
  dml_status st = DML_OK;
  if (strcmp(dml_model_text(saved), dml_model_text(t->m)))
    st = dml__error(DML_ERR_INVALID_ARGUMENT,
                    "%s: the checkpoint holds another model than the one being trained",
                    prefix);
  dml_model_free(saved);
  cJSON *meta = st == DML_OK ? cJSON_Parse(meta_text ? meta_text : "") : NULL;
  free(meta_text);
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(meta, "train_state");
  if (st == DML_OK && !cJSON_IsObject(s))
    st = dml__error(DML_ERR_FORMAT,
                    "%s: no training state in this checkpoint (it was not written by dml "
                    "train); start a new run from its weights instead",
                    prefix);
  if (st == DML_OK) {
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(s, "loss");
    if (!cJSON_IsString(ls) || strcmp(ls->valuestring, dml_loss_spec(t->loss)))
      st = dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: the checkpoint was trained with the loss \"%s\", this run uses \"%s\"",
                      prefix, cJSON_IsString(ls) ? ls->valuestring : "?", dml_loss_spec(t->loss));
    else if ((uint64_t)num(s, "seed", -1) != t->o.seed)
      st = dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: the checkpoint was trained with seed %.0f, this run has seed %llu",
                      prefix, num(s, "seed", -1), (unsigned long long)t->o.seed);
  }
  char wpath[4200];
  if (st == DML_OK) st = join_path(wpath, sizeof wpath, prefix, ".safetensors");
  if (st == DML_OK) st = dml_safetensors_read(wpath, dml_model_params(t->m), "optim.");
  if (st == DML_OK) st = dml_checkpoint_load_optim(prefix, t->opt_net);
  if (st == DML_OK) st = load_loss_state(t, prefix);
  if (st == DML_OK) {
    t->epoch = (int64_t)num(s, "epoch", 0);
    t->batch = (int64_t)num(s, "batch", 0);
    t->step = 0;
    t->epoch_loss_sum = num(s, "epoch_loss_sum", 0);
    t->epoch_seconds = num(s, "epoch_seconds", 0);
    t->bad_epochs = (int)num(s, "bad_epochs", 0);
    t->hist.best_epoch = (int)num(s, "best_epoch", 0);
    t->hist.best_val_metric = num(s, "best_val_metric", NAN);
    t->hist.images = (int64_t)num(s, "images", 0);
    t->hist.train_seconds = num(s, "train_seconds", 0);
    t->hist.num_epochs = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "epochs")) {
      dml_epoch_record r = {(int)num(e, "epoch", 0), num(e, "loss", NAN),
                            num(e, "val_metric", NAN), num(e, "seconds", 0),
                            num(e, "images_per_s", 0), num(e, "lr", 0)};
      if ((st = push_record(t, &r)) != DML_OK) break;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "step_loss")) {
      if (st != DML_OK || (st = push_step_loss(t, (float)e->valuedouble)) != DML_OK) break;
      t->step++;
    }
    if (st == DML_OK && t->step != (int64_t)num(s, "step", -1))
      st = dml__error(DML_ERR_FORMAT, "%s: the training state's step count does not match its "
                      "loss history", prefix);
    int64_t nb = dml_loader_num_batches(t->loader);
    if (st == DML_OK && (t->batch < 0 || t->batch > nb || t->epoch < 0))
      st = dml__error(DML_ERR_FORMAT,
                      "%s: position epoch %lld batch %lld does not fit this data (%lld batches "
                      "per epoch): resume with the same data and sampler",
                      prefix, (long long)t->epoch, (long long)t->batch, (long long)nb);
  }
  if (st == DML_OK && t->o.val && t->hist.best_epoch > 0) {
    /* the best weights so far: from <dir>/best when present, else the resumed ones */
    if (!t->best_net) t->best_net = malloc((size_t)t->net_block * sizeof(float));
    if (t->loss_params && !t->best_loss)
      t->best_loss = malloc((size_t)t->loss_block * sizeof(float));
    if (!t->best_net || (t->loss_params && !t->best_loss))
      st = dml__error(DML_ERR_NO_MEMORY, "out of memory keeping the best weights");
    else {
      copy_weights(t, 1);
      char best[4200];
      struct stat sb;
      if (t->o.checkpoint_dir &&
          join_path(best, sizeof best, t->o.checkpoint_dir, "/best.safetensors") == DML_OK &&
          stat(best, &sb) == 0) {
        /* read best into the model, copy aside, then put the resumed weights back */
        float *cur = malloc((size_t)t->net_block * sizeof(float));
        if (!cur) st = dml__error(DML_ERR_NO_MEMORY, "out of memory keeping the best weights");
        else {
          float *net = dml_params_values(dml_model_params(t->m));
          memcpy(cur, net, (size_t)t->net_block * sizeof(float));
          st = dml_safetensors_read(best, dml_model_params(t->m), "optim.");
          if (st == DML_OK) memcpy(t->best_net, net, (size_t)t->net_block * sizeof(float));
          memcpy(net, cur, (size_t)t->net_block * sizeof(float));
          free(cur);
        }
      }
    }
  }
  cJSON_Delete(meta);
  sync_history(t);
  return st;
}

/* ---- the loop ---- */

static void log_line(dml_trainer *t, const char *fmt, ...) DML__PRINTF(2, 3);

static void log_line(dml_trainer *t, const char *fmt, ...) {
  if (!t->log) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(t->log, fmt, ap);
  va_end(ap);
  fputc('\n', t->log);
}

static dml_status end_epoch(dml_trainer *t, int64_t nb, int *stop) {
  dml_epoch_record r;
  r.epoch = (int)t->epoch + 1;
  r.loss = nb > 0 ? t->epoch_loss_sum / (double)nb : NAN;
  r.seconds = t->epoch_seconds;
  r.images_per_s = t->epoch_seconds > 0
                       ? (double)(nb * t->max_batch) / t->epoch_seconds
                       : 0;
  r.lr = dml_schedule_lr(&t->o.schedule, t->step > 0 ? t->step - 1 : 0);
  r.val_metric = NAN;
  int improved = 0;
  if (t->o.val) {
    dml_retrieval_metrics vm;
    DML_TRY(dml__train_validate(t->m, t->g, t->o.val, t->o.val_rows, t->o.val_num_rows,
                                t->o.distance, &vm));
    r.val_metric = pick_metric(&vm, t->o.val_metric);
    if (!isfinite(t->hist.best_val_metric) || r.val_metric > t->hist.best_val_metric) {
      improved = 1;
      t->hist.best_val_metric = r.val_metric;
      t->hist.best_epoch = r.epoch;
      t->bad_epochs = 0;
      if (!t->best_net) t->best_net = malloc((size_t)t->net_block * sizeof(float));
      if (t->loss_params && !t->best_loss)
        t->best_loss = malloc((size_t)t->loss_block * sizeof(float));
      if (!t->best_net || (t->loss_params && !t->best_loss))
        return dml__error(DML_ERR_NO_MEMORY, "out of memory keeping the best weights");
      copy_weights(t, 1);
    } else {
      t->bad_epochs++;
    }
  }
  DML_TRY(push_record(t, &r));
  t->epoch++;
  t->batch = 0;
  t->epoch_loss_sum = 0;
  t->epoch_seconds = 0;
  sync_history(t);
  if (t->log) {
    log_line(t,
             "{\"event\": \"epoch\", \"epoch\": %d, \"loss\": %.9g, \"val_%s\": %s%.9g%s, "
             "\"seconds\": %.4f, \"images_per_s\": %.1f, \"lr\": %.9g, \"best_epoch\": %d}",
             r.epoch, r.loss, t->o.val_metric, isfinite(r.val_metric) ? "" : "\"",
             isfinite(r.val_metric) ? r.val_metric : 0.0, isfinite(r.val_metric) ? "" : "\"",
             r.seconds, r.images_per_s, r.lr, t->hist.best_epoch);
    fflush(t->log);
  }
  dml__progress_epoch(&t->o, &t->hist, &r, improved);
  if (improved) DML_TRY(save_checkpoint(t, "best"));
  DML_TRY(save_checkpoint(t, "last"));
  if (t->o.val && t->o.patience > 0 && t->bad_epochs >= t->o.patience) {
    t->hist.stopped_early = 1;
    *stop = 1;
  }
  return DML_OK;
}

dml_status dml_trainer_run(dml_trainer *t) {
  if (!t) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_trainer_run: NULL trainer");
  if (t->o.log_path && !t->log) {
    t->log = fopen(t->o.log_path, t->step > 0 ? "a" : "w");
    if (!t->log)
      return dml__error(DML_ERR_IO, "cannot write the training log '%s'", t->o.log_path);
  }
  if (!t->g && dml_graph_new(&t->g) != DML_OK) return DML_ERR_NO_MEMORY;
  int64_t nb = dml_loader_num_batches(t->loader);
  double t_run = now_s();
  int stop = 0;
  int64_t first_step = t->step;
  dml_status st = DML_OK;
  dml__progress_start(&t->o, t->epoch, t->batch, nb);
  while (!stop && t->epoch < t->o.epochs && st == DML_OK) {
    if (t->batch >= nb) {
      st = end_epoch(t, nb, &stop);
      continue;
    }
    if ((st = dml_loader_start_epoch(t->loader, t->epoch, t->batch)) != DML_OK) break;
    while (t->batch < nb) {
      if (t->stop_requested || (t->o.max_steps > 0 && t->step - first_step >= t->o.max_steps)) {
        t->hist.interrupted = 1;
        stop = 1;
        break;
      }
      dml_batch b;
      double t0 = now_s();
      if ((st = dml_loader_next(t->loader, &b)) != DML_OK) break;
      if (b.size == 0) {
        st = dml__error(DML_ERR_INTERNAL, "the loader ended epoch %lld after %lld of %lld batches",
                        (long long)t->epoch + 1, (long long)t->batch, (long long)nb);
        break;
      }
      float lv = 0;
      if ((st = train_step(t, &b, &lv)) != DML_OK) break;
      double dt = now_s() - t0;
      if ((st = push_step_loss(t, lv)) != DML_OK) break;
      t->step++;
      t->batch++;
      t->epoch_loss_sum += lv;
      t->epoch_seconds += dt;
      t->hist.train_seconds += dt;
      t->hist.images += b.size;
      sync_history(t);
      if (t->log)
        log_line(t,
                 "{\"event\": \"step\", \"epoch\": %lld, \"batch\": %lld, \"step\": %lld, "
                 "\"loss\": %.9g, \"lr\": %.9g, \"seconds\": %.5f}",
                 (long long)t->epoch + 1, (long long)t->batch, (long long)t->step, (double)lv,
                 (double)dml_schedule_lr(&t->o.schedule, t->step - 1), dt);
      if (t->log) fflush(t->log); /* followable with tail -f */
      dml__progress_step(&t->o, t->epoch, t->batch, nb, t->epoch_loss_sum / (double)t->batch,
                         (double)t->batch * (double)t->max_batch / t->epoch_seconds,
                         now_s() - t_run, t->step - first_step);
    }
    if (st != DML_OK || stop) break;
    st = end_epoch(t, nb, &stop);
  }
  if (st == DML_OK && t->hist.interrupted) {
    dml__progress_interrupted(&t->o, t->epoch, t->batch);
    st = save_checkpoint(t, "last");
  }
  if (t->log) fflush(t->log);
  sync_history(t);
  /* the step's tape is the largest allocation of a run: give it back for what follows
   * (evaluation); a later call makes a new one */
  dml_graph_free(t->g);
  t->g = NULL;
  return st;
}
