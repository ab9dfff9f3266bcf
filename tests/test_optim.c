/* Optimisers, schedules and gradient clipping against PyTorch (fixtures/optim.json, made by
 * tools/fixtures/optim.py): 5-step trajectories of SGD/Adam/AdamW with parameter groups and a
 * buffer, torch.optim.lr_scheduler sequences, clip_grad_norm_. Also: NaN/Inf refusal, argument
 * errors, state layout and checkpoint resume, the threaded path against a plain loop. */
#include <math.h>
#include <stdlib.h>

#include "fixture.h"
#include "test.h"

#define FIXTURE "fixtures/optim.json"
#define ATOL 1e-5
#define RTOL 1e-4

/* ---- fixture helpers ---- */

static float *json_floats(const cJSON *arr, int64_t *n) {
  int64_t len = cJSON_GetArraySize(arr);
  float *out = malloc((size_t)(len > 0 ? len : 1) * sizeof(float));
  int64_t i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, arr) out[i++] = (float)v->valuedouble;
  if (n) *n = len;
  return out;
}

static double num(const cJSON *obj, const char *key) {
  return fixture_attr_num(obj, key, NAN);
}

static const cJSON *get(const cJSON *obj, const char *key) {
  return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* A finalized store holding the case's params (values from "init"; groups and trainable set). */
static dml_param_store *store_from_case(const cJSON *params) {
  dml_param_store *s = NULL;
  if (dml_params_new(&s) != DML_OK) return NULL;
  const cJSON *p;
  cJSON_ArrayForEach(p, params) {
    int64_t shape[DML_MAX_DIMS];
    int nd = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, get(p, "shape")) shape[nd++] = (int64_t)d->valuedouble;
    const cJSON *tr = get(p, "trainable");
    if (dml_params_add(s, cJSON_GetStringValue(get(p, "name")), nd, shape,
                       tr ? cJSON_IsTrue(tr) : 1, NULL) != DML_OK) {
      dml_params_free(s);
      return NULL;
    }
  }
  if (dml_params_finalize(s) != DML_OK) {
    dml_params_free(s);
    return NULL;
  }
  int i = 0;
  cJSON_ArrayForEach(p, params) {
    dml_param *dp = dml_params_get(s, i++);
    dp->group = (int)fixture_attr_num(p, "group", 0);
    const cJSON *init = get(p, "init");
    if (init) {
      float *v = json_floats(init, NULL);
      memcpy(dp->value, v, (size_t)dp->numel * sizeof(float));
      free(v);
    }
  }
  return s;
}

static dml_optim_kind kind_of(const char *k) {
  if (!strcmp(k, "adam")) return DML_OPTIM_ADAM;
  if (!strcmp(k, "adamw")) return DML_OPTIM_ADAMW;
  return DML_OPTIM_SGD;
}

/* Runs one trajectory case; returns 1 when every value and state matches. */
static int check_trajectory(const cJSON *c) {
  const char *name = cJSON_GetStringValue(get(c, "name"));
  const cJSON *params = get(c, "params"), *cfgj = get(c, "config");
  dml_param_store *s = store_from_case(params);
  if (!s) {
    fprintf(stderr, "  %s: could not build the store: %s\n", name, dml_last_error());
    return 0;
  }
  dml_optim_config cfg = dml_optim_config_default(kind_of(cJSON_GetStringValue(get(c, "kind"))));
  cfg.lr = (float)num(cfgj, "lr");
  cfg.momentum = (float)num(cfgj, "momentum");
  cfg.dampening = (float)num(cfgj, "dampening");
  cfg.nesterov = (int)num(cfgj, "nesterov");
  cfg.weight_decay = (float)num(cfgj, "weight_decay");
  cfg.beta1 = (float)num(cfgj, "beta1");
  cfg.beta2 = (float)num(cfgj, "beta2");
  cfg.eps = (float)num(cfgj, "eps");
  dml_optim *o = NULL;
  int ok = dml_optim_new(s, &cfg, &o) == DML_OK;
  const cJSON *g;
  cJSON_ArrayForEach(g, get(c, "groups")) {
    ok = ok && dml_optim_set_group(o, (int)num(g, "group"), (float)num(g, "lr_scale"),
                                   (float)num(g, "weight_decay")) == DML_OK;
  }
  if (!ok) fprintf(stderr, "  %s: setup failed: %s\n", name, dml_last_error());
  int64_t n_steps;
  float *lrs = json_floats(get(c, "lrs"), &n_steps);
  for (int64_t t = 0; ok && t < n_steps; t++) {
    int i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, params) {
      dml_param *dp = dml_params_get(s, i++);
      float *gr = json_floats(cJSON_GetArrayItem(get(p, "grads"), (int)t), NULL);
      memcpy(dp->grad, gr, (size_t)dp->numel * sizeof(float));
      free(gr);
    }
    dml_optim_set_lr(o, lrs[t]);
    if (dml_optim_get_lr(o) != lrs[t] || dml_optim_step(o) != DML_OK) {
      fprintf(stderr, "  %s: step %lld failed: %s\n", name, (long long)t, dml_last_error());
      ok = 0;
    }
  }
  free(lrs);
  if (ok && dml_optim_step_count(o) != n_steps) {
    fprintf(stderr, "  %s: step count %lld, expected %lld\n", name,
            (long long)dml_optim_step_count(o), (long long)n_steps);
    ok = 0;
  }
  int i = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, params) {
    if (!ok) break;
    dml_param *dp = dml_params_get(s, i++);
    char what[160];
    snprintf(what, sizeof what, "%s %s value", name, dp->name);
    float *ref = json_floats(get(p, "final"), NULL);
    if (dp->trainable)
      ok &= fixture_compare(what, dp->value, ref, dp->numel, ATOL, RTOL);
    else /* a buffer keeps its value exactly */
      ok &= fixture_compare(what, dp->value, ref, dp->numel, 0.0, 0.0);
    free(ref);
    const cJSON *states = get(p, "state");
    if (cJSON_GetArraySize(states) != dml_optim_state_buffers(o)) {
      fprintf(stderr, "  %s: %d state buffers, expected %d\n", name, dml_optim_state_buffers(o),
              cJSON_GetArraySize(states));
      ok = 0;
      break;
    }
    for (int b = 0; b < dml_optim_state_buffers(o); b++) {
      snprintf(what, sizeof what, "%s %s state %d", name, dp->name, b);
      float *sref = json_floats(cJSON_GetArrayItem(states, b), NULL);
      ok &= fixture_compare(what, dml_optim_state_buffer(o, b) + dp->offset, sref, dp->numel,
                            ATOL, RTOL);
      free(sref);
    }
  }
  dml_optim_free(o);
  dml_params_free(s);
  return ok;
}

/* Runs every trajectory of the given kind ("sgd", "adam", "adamw"; NULL: any) with (groups set)
 * or without parameter groups. Returns the number of failing cases, -1 when none matched. */
static int run_trajectories(const char *kind, int groups) {
  cJSON *root = fixture_load(FIXTURE);
  if (!root) return -1;
  int failed = 0, seen = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, root) {
    const char *name = cJSON_GetStringValue(get(c, "name"));
    if (strcmp(cJSON_GetStringValue(get(c, "type")), "trajectory") != 0) continue;
    if (kind && strcmp(cJSON_GetStringValue(get(c, "kind")), kind) != 0) continue;
    if ((cJSON_GetArraySize(get(c, "groups")) > 0) != groups) continue;
    seen++;
    if (!check_trajectory(c)) {
      fprintf(stderr, "  trajectory %s differs from torch\n", name);
      failed++;
    }
  }
  cJSON_Delete(root);
  return seen ? failed : -1;
}

TEST(sgd_matches_torch) { ASSERT_EQ_INT(run_trajectories("sgd", 0), 0); }
TEST(adam_matches_torch) { ASSERT_EQ_INT(run_trajectories("adam", 0), 0); }
TEST(adamw_matches_torch) { ASSERT_EQ_INT(run_trajectories("adamw", 0), 0); }
TEST(groups_and_buffer_match_torch) { ASSERT_EQ_INT(run_trajectories(NULL, 1), 0); }

TEST(schedules_match_torch) {
  cJSON *root = fixture_load(FIXTURE);
  ASSERT_TRUE(root);
  int seen = 0, failed = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, root) {
    if (strcmp(cJSON_GetStringValue(get(c, "type")), "schedule") != 0) continue;
    const cJSON *sj = get(c, "schedule");
    const char *kind = cJSON_GetStringValue(get(sj, "kind"));
    dml_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = !strcmp(kind, "step")          ? DML_SCHEDULE_STEP
             : !strcmp(kind, "cosine")      ? DML_SCHEDULE_COSINE
             : !strcmp(kind, "exponential") ? DML_SCHEDULE_EXPONENTIAL
                                            : DML_SCHEDULE_CONSTANT;
    s.base_lr = (float)num(sj, "base_lr");
    s.warmup_steps = (int64_t)num(sj, "warmup_steps");
    s.total_steps = (int64_t)num(sj, "total_steps");
    s.step_size = (int64_t)num(sj, "step_size");
    s.gamma = (float)num(sj, "gamma");
    s.min_lr = (float)num(sj, "min_lr");
    int64_t n;
    float *ref = json_floats(get(c, "lrs"), &n);
    float *got = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) got[i] = dml_schedule_lr(&s, i);
    if (!fixture_compare(cJSON_GetStringValue(get(c, "name")), got, ref, n, 1e-7, 1e-5)) failed++;
    free(ref);
    free(got);
    seen++;
  }
  cJSON_Delete(root);
  ASSERT_EQ_INT(seen, 8);
  ASSERT_EQ_INT(failed, 0);
}

TEST(clip_grad_norm_matches_torch) {
  cJSON *root = fixture_load(FIXTURE);
  ASSERT_TRUE(root);
  int seen = 0, failed = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, root) {
    if (strcmp(cJSON_GetStringValue(get(c, "type")), "clip") != 0) continue;
    const char *name = cJSON_GetStringValue(get(c, "name"));
    const cJSON *params = get(c, "params");
    dml_param_store *s = store_from_case(params);
    ASSERT_TRUE(s);
    int i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, params) {
      dml_param *dp = dml_params_get(s, i++);
      float *gr = json_floats(get(p, "grad"), NULL);
      memcpy(dp->grad, gr, (size_t)dp->numel * sizeof(float));
      free(gr);
    }
    float total = -1.0f;
    dml_status st = dml_clip_grad_norm(s, (float)num(c, "max_norm"), &total);
    double ref_total = num(c, "total_norm");
    if (st != DML_OK || !(fabs(total - ref_total) <= ATOL + RTOL * fabs(ref_total))) {
      fprintf(stderr, "  %s: status %d, total norm %.9g, torch %.9g\n", name, (int)st,
              (double)total, ref_total);
      failed++;
    }
    i = 0;
    cJSON_ArrayForEach(p, params) {
      dml_param *dp = dml_params_get(s, i++);
      float *ref = json_floats(get(p, "clipped"), NULL);
      char what[128];
      snprintf(what, sizeof what, "%s %s grad", name, dp->name);
      if (!fixture_compare(what, dp->grad, ref, dp->numel, ATOL, RTOL)) failed++;
      free(ref);
    }
    dml_params_free(s);
    seen++;
  }
  cJSON_Delete(root);
  ASSERT_EQ_INT(seen, 4);
  ASSERT_EQ_INT(failed, 0);
}

/* ---- hand-made stores ---- */

/* "a" [5] group 0, "buf" [3] buffer, "c" [20] group 0, values and grads filled with a pattern. */
static dml_param_store *small_store(void) {
  dml_param_store *s = NULL;
  int64_t sa[1] = {5}, sb[1] = {3}, sc[2] = {4, 5};
  if (dml_params_new(&s) || dml_params_add(s, "a", 1, sa, 1, NULL) ||
      dml_params_add(s, "buf", 1, sb, 0, NULL) || dml_params_add(s, "c", 2, sc, 1, NULL) ||
      dml_params_finalize(s)) {
    dml_params_free(s);
    return NULL;
  }
  for (int i = 0; i < dml_params_count(s); i++) {
    dml_param *p = dml_params_get(s, i);
    for (int64_t j = 0; j < p->numel; j++) {
      p->value[j] = 0.1f * (float)(j + 1) * (i % 2 ? -1.0f : 1.0f);
      p->grad[j] = 0.05f * (float)((j * 7 + i) % 11) - 0.25f;
    }
  }
  return s;
}

TEST(config_defaults_are_torch_defaults) {
  dml_optim_config c = dml_optim_config_default(DML_OPTIM_SGD);
  ASSERT_EQ_INT(c.kind, DML_OPTIM_SGD);
  ASSERT_NEAR(c.lr, 0.01f, 0);
  ASSERT_NEAR(c.momentum, 0, 0);
  ASSERT_NEAR(c.dampening, 0, 0);
  ASSERT_EQ_INT(c.nesterov, 0);
  ASSERT_NEAR(c.weight_decay, 0, 0);
  c = dml_optim_config_default(DML_OPTIM_ADAM);
  ASSERT_NEAR(c.lr, 1e-3f, 0);
  ASSERT_NEAR(c.beta1, 0.9f, 0);
  ASSERT_NEAR(c.beta2, 0.999f, 0);
  ASSERT_NEAR(c.eps, 1e-8f, 0);
  ASSERT_NEAR(c.weight_decay, 0, 0);
  c = dml_optim_config_default(DML_OPTIM_ADAMW);
  ASSERT_EQ_INT(c.kind, DML_OPTIM_ADAMW);
  ASSERT_NEAR(c.lr, 1e-3f, 0);
  ASSERT_NEAR(c.weight_decay, 0.01f, 0);
}

TEST(bad_arguments_are_errors) {
  dml_param_store *s = small_store();
  ASSERT_TRUE(s);
  dml_optim *o = (dml_optim *)1;
  dml_optim_config c = dml_optim_config_default(DML_OPTIM_SGD);
  ASSERT_ERROR(dml_optim_new(NULL, &c, &o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(o == NULL);
  ASSERT_ERROR(dml_optim_new(s, NULL, &o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_optim_new(s, &c, NULL), DML_ERR_INVALID_ARGUMENT);
  c.nesterov = 1; /* without momentum */
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "Nesterov"));
  c.momentum = 0.9f;
  c.dampening = 0.1f; /* Nesterov with dampening */
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  c = dml_optim_config_default(DML_OPTIM_SGD);
  c.lr = -0.1f;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  c.lr = NAN;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  c = dml_optim_config_default(DML_OPTIM_SGD);
  c.momentum = -0.5f;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  c = dml_optim_config_default(DML_OPTIM_ADAM);
  c.beta2 = 1.0f;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "betas"));
  c = dml_optim_config_default(DML_OPTIM_ADAMW);
  c.weight_decay = -1.0f;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  c = dml_optim_config_default(DML_OPTIM_ADAM);
  c.eps = -1e-8f;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);
  c.kind = (dml_optim_kind)7;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_INVALID_ARGUMENT);

  c = dml_optim_config_default(DML_OPTIM_ADAM);
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_ERROR(dml_optim_set_group(o, -1, 1.0f, -1.0f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_optim_set_group(o, 64, 1.0f, -1.0f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "64"));
  ASSERT_ERROR(dml_optim_set_group(o, 1, -2.0f, -1.0f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_optim_set_group(o, 1, NAN, -1.0f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_optim_set_group(o, 1, 1.0f, NAN), DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml_optim_set_group(o, 63, 100.0f, 0.0f));
  ASSERT_ERROR(dml_optim_set_group(NULL, 0, 1.0f, -1.0f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_optim_step(NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(dml_optim_state_buffer(o, 2) == NULL);
  ASSERT_TRUE(dml_optim_state_buffer(o, -1) == NULL);
  ASSERT_TRUE(dml_optim_state_buffer(NULL, 0) == NULL);
  ASSERT_EQ_INT(dml_optim_state_buffers(NULL), 0);
  ASSERT_EQ_INT(dml_optim_step_count(NULL), 0);
  ASSERT_NEAR(dml_optim_get_lr(NULL), 0, 0);
  dml_optim_set_lr(NULL, 1.0f);
  dml_optim_set_step_count(NULL, 3);

  /* a parameter in a group outside 0..63 is named */
  dml_params_find(s, "c")->group = 99;
  ASSERT_ERROR(dml_optim_step(o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "'c'"));
  dml_params_find(s, "c")->group = 0;
  /* a non-finite learning rate set later is refused at the step */
  dml_optim_set_lr(o, INFINITY);
  ASSERT_ERROR(dml_optim_step(o), DML_ERR_INVALID_ARGUMENT);
  dml_optim_set_lr(o, 1e-3f);
  ASSERT_OK(dml_optim_step(o));
  ASSERT_EQ_INT(dml_optim_step_count(o), 1);
  dml_optim_free(o);
  dml_optim_free(NULL);
  dml_params_free(s);
}

TEST(store_must_be_finalized_and_unchanged) {
  dml_param_store *s = NULL;
  int64_t sh[1] = {4};
  ASSERT_OK(dml_params_new(&s));
  ASSERT_OK(dml_params_add(s, "w", 1, sh, 1, NULL));
  dml_optim_config c = dml_optim_config_default(DML_OPTIM_SGD);
  dml_optim *o = NULL;
  ASSERT_ERROR(dml_optim_new(s, &c, &o), DML_ERR_STATE);
  ASSERT_TRUE(strstr(dml_last_error(), "finalize"));
  ASSERT_ERROR(dml_clip_grad_norm(s, 1.0f, NULL), DML_ERR_STATE);
  ASSERT_OK(dml_params_finalize(s));
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_OK(dml_optim_step(o));
  ASSERT_OK(dml_params_add(s, "w2", 1, sh, 1, NULL));
  ASSERT_OK(dml_params_finalize(s));
  ASSERT_ERROR(dml_optim_step(o), DML_ERR_STATE);
  ASSERT_TRUE(strstr(dml_last_error(), "new optimiser"));
  dml_optim_free(o);
  dml_params_free(s);
}

TEST(empty_store) {
  dml_param_store *s = NULL;
  ASSERT_OK(dml_params_new(&s));
  ASSERT_OK(dml_params_finalize(s));
  dml_optim_config c = dml_optim_config_default(DML_OPTIM_ADAM);
  dml_optim *o = NULL;
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_OK(dml_optim_step(o));
  ASSERT_EQ_INT(dml_optim_step_count(o), 1);
  float total = -1.0f;
  ASSERT_OK(dml_clip_grad_norm(s, 1.0f, &total));
  ASSERT_NEAR(total, 0.0, 0.0);
  dml_optim_free(o);
  dml_params_free(s);
}

/* Snapshot of values, grads and state, to prove a refused step changed nothing. */
static int same_floats(const float *a, const float *b, int64_t n) {
  return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void check_refusal(dml_optim_kind kind, float bad) {
  dml_param_store *s = small_store();
  ASSERT_TRUE(s);
  dml_optim_config c = dml_optim_config_default(kind);
  c.momentum = kind == DML_OPTIM_SGD ? 0.9f : 0.0f;
  c.weight_decay = 0.01f;
  dml_optim *o = NULL;
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_OK(dml_optim_step(o));
  ASSERT_OK(dml_optim_step(o));
  dml_param *cp = dml_params_find(s, "c");
  int64_t last = cp->offset + cp->numel;
  float *values = malloc((size_t)last * sizeof(float));
  float *st0 = malloc((size_t)last * sizeof(float));
  memcpy(values, dml_params_values(s), (size_t)last * sizeof(float));
  memcpy(st0, dml_optim_state_buffer(o, 0), (size_t)last * sizeof(float));
  cp->grad[13] = bad;
  ASSERT_ERROR(dml_optim_step(o), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "'c'") && strstr(dml_last_error(), "element 13"));
  ASSERT_EQ_INT(dml_optim_step_count(o), 2);
  ASSERT_TRUE(same_floats(values, dml_params_values(s), last));
  ASSERT_TRUE(same_floats(st0, dml_optim_state_buffer(o, 0), last));
  /* once the gradient is fixed, stepping works again */
  cp->grad[13] = 0.5f;
  ASSERT_OK(dml_optim_step(o));
  ASSERT_EQ_INT(dml_optim_step_count(o), 3);
  ASSERT_TRUE(!same_floats(values, dml_params_values(s), last));
  free(values);
  free(st0);
  dml_optim_free(o);
  dml_params_free(s);
}

TEST(nan_gradient_refused_sgd) { check_refusal(DML_OPTIM_SGD, NAN); }
TEST(inf_gradient_refused_adam) { check_refusal(DML_OPTIM_ADAM, INFINITY); }
TEST(neg_inf_gradient_refused_adamw) { check_refusal(DML_OPTIM_ADAMW, -INFINITY); }

TEST(buffer_gradient_is_ignored) {
  dml_param_store *s = small_store();
  ASSERT_TRUE(s);
  dml_param *buf = dml_params_find(s, "buf");
  buf->grad[1] = NAN; /* buffers are never optimised, so their gradient cannot block a step */
  float v[3];
  memcpy(v, buf->value, sizeof v);
  dml_optim_config c = dml_optim_config_default(DML_OPTIM_ADAMW);
  dml_optim *o = NULL;
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_OK(dml_optim_step(o));
  ASSERT_TRUE(same_floats(v, buf->value, 3));
  for (int b = 0; b < 2; b++)
    for (int j = 0; j < 3; j++) ASSERT_NEAR(dml_optim_state_buffer(o, b)[buf->offset + j], 0, 0);
  float total;
  ASSERT_OK(dml_clip_grad_norm(s, 1.0f, &total)); /* also ignored by clipping */
  ASSERT_TRUE(isnan(buf->grad[1]));
  dml_optim_free(o);
  dml_params_free(s);
}

TEST(state_layout_follows_param_offsets) {
  dml_param_store *s = small_store();
  ASSERT_TRUE(s);
  dml_optim_config c = dml_optim_config_default(DML_OPTIM_SGD);
  dml_optim *o = NULL;
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_EQ_INT(dml_optim_state_buffers(o), 0); /* plain SGD keeps no state */
  dml_optim_free(o);
  c.momentum = 0.9f;
  c.weight_decay = 0.1f;
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_EQ_INT(dml_optim_state_buffers(o), 1);
  dml_param *cp = dml_params_find(s, "c");
  float expect[20];
  for (int j = 0; j < 20; j++) expect[j] = cp->grad[j] + 0.1f * cp->value[j];
  ASSERT_OK(dml_optim_step(o));
  /* torch: the first momentum buffer is the (decayed) gradient itself */
  const float *b = dml_optim_state_buffer(o, 0);
  for (int j = 0; j < 20; j++) ASSERT_NEAR(b[cp->offset + j], expect[j], 1e-7);
  /* each buffer spans the store's padded value block */
  int64_t padded_end = cp->offset + 32;
  ASSERT_TRUE(b[padded_end - 1] == 0.0f);
  dml_optim_free(o);
  c = dml_optim_config_default(DML_OPTIM_ADAM);
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_EQ_INT(dml_optim_state_buffers(o), 2);
  ASSERT_TRUE(dml_optim_state_buffer(o, 0) != dml_optim_state_buffer(o, 1));
  dml_optim_free(o);
  dml_params_free(s);
}

/* Saving values, state and step count after 3 steps and restoring them into a fresh store and
 * optimiser continues the run bit for bit. */
static void check_resume(dml_optim_kind kind) {
  dml_param_store *a = small_store(), *b = small_store();
  ASSERT_TRUE(a && b);
  dml_optim_config c = dml_optim_config_default(kind);
  c.momentum = 0.9f;
  c.lr = 0.05f;
  dml_optim *oa = NULL, *ob = NULL;
  ASSERT_OK(dml_optim_new(a, &c, &oa));
  ASSERT_OK(dml_optim_set_group(oa, 0, 2.0f, 0.2f));
  for (int t = 0; t < 3; t++) ASSERT_OK(dml_optim_step(oa));
  ASSERT_OK(dml_params_copy(b, a));
  ASSERT_OK(dml_optim_new(b, &c, &ob));
  ASSERT_OK(dml_optim_set_group(ob, 0, 2.0f, 0.2f));
  for (int k = 0; k < dml_optim_state_buffers(oa); k++)
    for (int i = 0; i < dml_params_count(a); i++) {
      const dml_param *pa = dml_params_get(a, i), *pb = dml_params_get(b, i);
      memcpy(dml_optim_state_buffer(ob, k) + pb->offset, dml_optim_state_buffer(oa, k) + pa->offset,
             (size_t)pa->numel * sizeof(float));
    }
  dml_optim_set_step_count(ob, dml_optim_step_count(oa));
  for (int t = 0; t < 2; t++) {
    ASSERT_OK(dml_optim_step(oa));
    ASSERT_OK(dml_optim_step(ob));
  }
  ASSERT_EQ_INT(dml_optim_step_count(ob), 5);
  for (int i = 0; i < dml_params_count(a); i++) {
    const dml_param *pa = dml_params_get(a, i), *pb = dml_params_get(b, i);
    ASSERT_TRUE(same_floats(pa->value, pb->value, pa->numel));
  }
  dml_optim_free(oa);
  dml_optim_free(ob);
  dml_params_free(a);
  dml_params_free(b);
}

TEST(resume_from_state_sgd) { check_resume(DML_OPTIM_SGD); }
TEST(resume_from_state_adam) { check_resume(DML_OPTIM_ADAM); }

/* A store large enough for the threaded path, with odd sizes so runs merge (16-multiples) and
 * thread slices have ragged ends, against a plain double-precision loop of Adam's formula. */
TEST(threaded_adamw_matches_plain_loop) {
  dml_param_store *s = NULL;
  const int64_t sizes[5] = {40000, 33333, 777, 16, 50001};
  const int groups[5] = {0, 1, 0, 0, 1};
  ASSERT_OK(dml_params_new(&s));
  for (int i = 0; i < 5; i++) {
    char name[16];
    snprintf(name, sizeof name, "p%d", i);
    ASSERT_OK(dml_params_add(s, name, 1, &sizes[i], i != 2, NULL));
  }
  ASSERT_OK(dml_params_finalize(s));
  int64_t total = 0;
  for (int i = 0; i < 5; i++) {
    dml_param *p = dml_params_get(s, i);
    p->group = groups[i];
    for (int64_t j = 0; j < p->numel; j++) {
      p->value[j] = sinf(0.001f * (float)(j + 31 * i));
      p->grad[j] = cosf(0.0037f * (float)(j * (i + 1)));
    }
    total += p->numel;
  }
  double *pv = malloc((size_t)total * sizeof(double)), *m = calloc((size_t)total, sizeof(double));
  double *v = calloc((size_t)total, sizeof(double));
  int64_t k = 0;
  for (int i = 0; i < 5; i++)
    for (int64_t j = 0; j < dml_params_get(s, i)->numel; j++) pv[k++] = dml_params_get(s, i)->value[j];
  dml_optim_config c = dml_optim_config_default(DML_OPTIM_ADAMW);
  c.lr = 0.01f;
  c.weight_decay = 0.1f;
  dml_optim *o = NULL;
  ASSERT_OK(dml_optim_new(s, &c, &o));
  ASSERT_OK(dml_optim_set_group(o, 1, 10.0f, 0.0f));
  for (int t = 1; t <= 3; t++) {
    ASSERT_OK(dml_optim_step(o));
    k = 0;
    for (int i = 0; i < 5; i++) {
      const dml_param *p = dml_params_get(s, i);
      double lr = groups[i] ? 0.1 : 0.01, wd = groups[i] ? 0.0 : (double)c.weight_decay;
      double b1 = c.beta1, b2 = c.beta2;
      for (int64_t j = 0; j < p->numel; j++, k++) {
        if (!p->trainable) continue;
        double gj = p->grad[j];
        pv[k] *= 1.0 - lr * wd;
        m[k] = b1 * m[k] + (1 - b1) * gj;
        v[k] = b2 * v[k] + (1 - b2) * gj * gj;
        pv[k] -= lr / (1 - pow(b1, t)) * m[k] / (sqrt(v[k]) / sqrt(1 - pow(b2, t)) + c.eps);
      }
    }
  }
  k = 0;
  int bad = 0;
  for (int i = 0; i < 5; i++) {
    const dml_param *p = dml_params_get(s, i);
    for (int64_t j = 0; j < p->numel; j++, k++) {
      double ref = p->trainable ? pv[k] : sinf(0.001f * (float)(j + 31 * i));
      if (!(fabs(p->value[j] - ref) <= ATOL + RTOL * fabs(ref)) && bad++ < 5)
        fprintf(stderr, "    %s[%lld]: %.9g vs %.9g\n", p->name, (long long)j,
                (double)p->value[j], ref);
    }
  }
  ASSERT_EQ_INT(bad, 0);
  free(pv);
  free(m);
  free(v);
  dml_optim_free(o);
  dml_params_free(s);
}

/* Elementwise updates do not depend on the thread count; the clipping norm is the same on
 * repeated calls with the same thread count. */
TEST(results_do_not_depend_on_threads) {
  int saved = dml_get_num_threads();
  float *out[2] = {NULL, NULL};
  float norms[2][2];
  int64_t n = 0;
  for (int run = 0; run < 2; run++) {
    dml_set_num_threads(run ? 2 : 1);
    dml_param_store *s = NULL;
    int64_t sz = 100003;
    ASSERT_OK(dml_params_new(&s));
    ASSERT_OK(dml_params_add(s, "w", 1, &sz, 1, NULL));
    ASSERT_OK(dml_params_finalize(s));
    float *w = dml_params_values(s), *g = dml_params_grads(s);
    for (int64_t j = 0; j < sz; j++) {
      w[j] = sinf(0.01f * (float)j);
      g[j] = cosf(0.013f * (float)j);
    }
    ASSERT_OK(dml_clip_grad_norm(s, 1e9f, &norms[run][0]));
    ASSERT_OK(dml_clip_grad_norm(s, 1e9f, &norms[run][1]));
    ASSERT_TRUE(norms[run][0] == norms[run][1]);
    dml_optim_config c = dml_optim_config_default(DML_OPTIM_SGD);
    c.momentum = 0.9f;
    c.nesterov = 1;
    dml_optim *o = NULL;
    ASSERT_OK(dml_optim_new(s, &c, &o));
    for (int t = 0; t < 3; t++) ASSERT_OK(dml_optim_step(o));
    out[run] = malloc((size_t)sz * sizeof(float));
    memcpy(out[run], w, (size_t)sz * sizeof(float));
    n = sz;
    dml_optim_free(o);
    dml_params_free(s);
  }
  dml_set_num_threads(saved);
  ASSERT_TRUE(same_floats(out[0], out[1], n));
  ASSERT_NEAR(norms[0][0], norms[1][0], 1e-6 * norms[0][0]);
  free(out[0]);
  free(out[1]);
}

TEST(clip_edge_cases) {
  dml_param_store *s = small_store();
  ASSERT_TRUE(s);
  float total = -1.0f;
  ASSERT_ERROR(dml_clip_grad_norm(NULL, 1.0f, &total), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_clip_grad_norm(s, -1.0f, &total), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_clip_grad_norm(s, NAN, &total), DML_ERR_INVALID_ARGUMENT);
  /* a NaN gradient: reported, nothing scaled */
  dml_param *a = dml_params_find(s, "a"), *cp = dml_params_find(s, "c");
  float before = a->grad[0];
  cp->grad[3] = NAN;
  ASSERT_ERROR(dml_clip_grad_norm(s, 1e-3f, &total), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "'c'"));
  ASSERT_TRUE(isnan(total));
  ASSERT_TRUE(a->grad[0] == before);
  /* max_norm 0 zeroes the gradients, as torch does; total_norm may be NULL */
  cp->grad[3] = 1.0f;
  ASSERT_OK(dml_clip_grad_norm(s, 0.0f, NULL));
  for (int64_t j = 0; j < cp->numel; j++) ASSERT_NEAR(cp->grad[j], 0.0, 0.0);
  /* clipping exactly to the norm: the coefficient max/(norm + 1e-6) is just below 1 */
  a->grad[0] = 3.0f;
  for (int64_t j = 1; j < a->numel; j++) a->grad[j] = 0.0f;
  cp->grad[0] = 4.0f;
  ASSERT_OK(dml_clip_grad_norm(s, 5.0f, &total));
  ASSERT_NEAR(total, 5.0, 1e-6);
  ASSERT_TRUE(a->grad[0] < 3.0f && cp->grad[0] < 4.0f);
  float clipped_a = a->grad[0], clipped_c = cp->grad[0];
  ASSERT_NEAR(clipped_a, 3.0 * 5.0 / (5.0 + 1e-6), 1e-6);
  ASSERT_OK(dml_clip_grad_norm(s, 100.0f, &total)); /* under the max: unchanged */
  ASSERT_TRUE(a->grad[0] == clipped_a && cp->grad[0] == clipped_c);
  dml_params_free(s);
}

TEST(schedule_edge_cases) {
  dml_schedule s;
  memset(&s, 0, sizeof s);
  ASSERT_NEAR(dml_schedule_lr(NULL, 3), 0.0, 0.0);
  s.kind = DML_SCHEDULE_COSINE;
  s.base_lr = 0.1f;
  s.min_lr = 0.01f;
  s.warmup_steps = 4;
  s.total_steps = 14;
  ASSERT_NEAR(dml_schedule_lr(&s, 0), 0.025, 1e-8);
  ASSERT_NEAR(dml_schedule_lr(&s, 3), 0.1, 1e-8);     /* warm-up ends at base_lr */
  ASSERT_NEAR(dml_schedule_lr(&s, 4), 0.1, 1e-8);     /* cosine starts at base_lr */
  ASSERT_NEAR(dml_schedule_lr(&s, 9), 0.055, 1e-8);   /* half way */
  ASSERT_NEAR(dml_schedule_lr(&s, 14), 0.01, 1e-9);   /* min_lr at total_steps */
  ASSERT_NEAR(dml_schedule_lr(&s, 1000), 0.01, 1e-9); /* and after */
  ASSERT_NEAR(dml_schedule_lr(&s, -5), 0.025, 1e-8);  /* negative steps count as 0 */
  s.total_steps = 2; /* shorter than the warm-up: min_lr once it is over */
  ASSERT_NEAR(dml_schedule_lr(&s, 4), 0.01, 1e-9);
  s.kind = DML_SCHEDULE_STEP;
  s.warmup_steps = 0;
  s.step_size = 0; /* no decay rather than a division by zero */
  s.gamma = 0.5f;
  ASSERT_NEAR(dml_schedule_lr(&s, 100), 0.1, 1e-8);
  s.step_size = 3;
  ASSERT_NEAR(dml_schedule_lr(&s, 2), 0.1, 1e-8);
  ASSERT_NEAR(dml_schedule_lr(&s, 3), 0.05, 1e-8);
  s.kind = DML_SCHEDULE_EXPONENTIAL;
  ASSERT_NEAR(dml_schedule_lr(&s, 3), 0.0125, 1e-9);
}
