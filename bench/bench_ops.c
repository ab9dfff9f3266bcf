/* bench_ops: time of each layer of the FMNIST-OPEN reference CNN and of the MLP recipe at batch
 * 192, forward alone and forward + backward, and of one whole training step of the CNN
 * (forward, normalised-softmax head + cross-entropy, backward, Adam), through the public API
 * only. bench/ops_torch.py times the same computations in PyTorch; bench/run_ops.sh runs both
 * and prints the ratios.
 *
 * Protocol: each measurement is warmed up, then repeated; the median is reported in ms. A layer
 * repetition records a fresh tape: the input leaf is created (a copy, not timed), then the op is
 * recorded (forward time) and backpropagated from a fixed upstream gradient (forward + backward
 * time). Inputs, weights and upstream gradients come from a small integer hash (bench_fill) that
 * ops_torch.py reproduces bit for bit, so both sides compute on identical numbers and the
 * checksums written to the JSON file show that they compute the same thing. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "dml/dml.h"

#define BATCH 192
#define HEAD_CLASSES 6
#define HEAD_TEMPERATURE 0.05f

/* The reference CNN of the FMNIST-OPEN benchmark; bench/run_ops.sh runs from the repository
 * root, where this file lives. */
#define REFERENCE_CNN_PATH "models/fmnist_cnn.txt"

typedef enum {
  LAYER_CONV,
  LAYER_BATCHNORM,
  LAYER_RELU,
  LAYER_MAXPOOL,
  LAYER_FLATTEN,
  LAYER_LINEAR,
  LAYER_L2NORM
} layer_kind;

typedef struct {
  const char *id;   /* key shared with ops_torch.py */
  const char *desc; /* what the table shows */
  layer_kind kind;
  int ndim;
  int64_t shape[4]; /* input shape, batch first */
  int64_t out_features; /* conv: output channels; linear: output features */
  int input_grad; /* 0 for a network's first layer, whose input needs no gradient */
} layer_spec;

static const layer_spec layers[] = {
    {"cnn.conv1", "conv3x3 1->32 pad1", LAYER_CONV, 4, {BATCH, 1, 28, 28}, 32, 0},
    {"cnn.bn1", "batchnorm2d(32)", LAYER_BATCHNORM, 4, {BATCH, 32, 28, 28}, 0, 1},
    {"cnn.relu1", "relu [192,32,28,28]", LAYER_RELU, 4, {BATCH, 32, 28, 28}, 0, 1},
    {"cnn.pool1", "maxpool2 ->[192,32,14,14]", LAYER_MAXPOOL, 4, {BATCH, 32, 28, 28}, 0, 1},
    {"cnn.conv2", "conv3x3 32->64 pad1", LAYER_CONV, 4, {BATCH, 32, 14, 14}, 64, 1},
    {"cnn.bn2", "batchnorm2d(64)", LAYER_BATCHNORM, 4, {BATCH, 64, 14, 14}, 0, 1},
    {"cnn.relu2", "relu [192,64,14,14]", LAYER_RELU, 4, {BATCH, 64, 14, 14}, 0, 1},
    {"cnn.pool2", "maxpool2 ->[192,64,7,7]", LAYER_MAXPOOL, 4, {BATCH, 64, 14, 14}, 0, 1},
    {"cnn.flatten", "flatten ->[192,3136]", LAYER_FLATTEN, 4, {BATCH, 64, 7, 7}, 0, 1},
    {"cnn.fc", "linear 3136->128", LAYER_LINEAR, 2, {BATCH, 3136}, 128, 1},
    {"cnn.l2norm", "l2norm [192,128]", LAYER_L2NORM, 2, {BATCH, 128}, 0, 1},
    {"mlp.fc1", "linear 784->512", LAYER_LINEAR, 2, {BATCH, 784}, 512, 0},
    {"mlp.relu", "relu [192,512]", LAYER_RELU, 2, {BATCH, 512}, 0, 1},
    {"mlp.fc2", "linear 512->512", LAYER_LINEAR, 2, {BATCH, 512}, 512, 1},
    {"mlp.fc3", "linear 512->128", LAYER_LINEAR, 2, {BATCH, 512}, 128, 1},
    {"mlp.l2norm", "l2norm [192,128]", LAYER_L2NORM, 2, {BATCH, 128}, 0, 1},
};
#define N_LAYERS ((int)(sizeof layers / sizeof layers[0]))

/* Salts of bench_fill, shared with ops_torch.py. */
enum { SALT_INPUT = 1, SALT_UPSTREAM = 2, SALT_WEIGHT = 3, SALT_BIAS = 4, SALT_HEAD = 999 };

typedef struct {
  int threads, reps, warmup;
  const char *json_path;
} options;

typedef struct {
  double sum, asum, wsum; /* sum, sum of |.|, position-weighted sum (catches layout errors) */
  int present;
} checksum;

typedef struct {
  double forward_ms, total_ms;
  checksum out, dx, dw;
} layer_result;

typedef struct {
  double forward_ms, backward_ms, optim_ms, total_ms;
  double loss_first, loss_last;
  int64_t params;
} step_result;

/* Deterministic values in [-scale, scale): a 32-bit integer hash of (index, salt), top 24 bits
 * mapped to [-1, 1). ops_torch.py's fill() computes the same floats. */
static void bench_fill(float *x, int64_t n, uint32_t salt, double scale) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t h = (uint32_t)((uint64_t)i * 2654435761u + (uint64_t)salt * 2246822519u);
    h ^= h >> 16;
    h = (uint32_t)((uint64_t)h * 2246822507u);
    h ^= h >> 13;
    x[i] = (float)(((double)(h >> 8) / 16777216.0 * 2.0 - 1.0) * scale);
  }
}

static checksum checksum_of(const float *x, int64_t n) {
  checksum c = {0, 0, 0, 1};
  if (!x) {
    c.present = 0;
    return c;
  }
  for (int64_t i = 0; i < n; i++) {
    c.sum += x[i];
    c.asum += fabs((double)x[i]);
    c.wsum += x[i] * (double)(i % 97 + 1) / 97.0;
  }
  return c;
}

static int64_t shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

static int fail(const char *what) {
  fprintf(stderr, "bench_ops: %s: %s\n", what, dml_last_error());
  return 1;
}

/* Parameters of one layer: weight (and bias) for conv / linear, gamma, beta and running
 * statistics for batch norm; none for the others. */
static dml_status layer_params(const layer_spec *L, dml_param_store **out) {
  dml_param_store *s = NULL;
  dml_status st = dml_params_new(&s);
  if (st) return st;
  int64_t c_in = L->shape[1];
  if (L->kind == LAYER_CONV) {
    int64_t ws[4] = {L->out_features, c_in, 3, 3}, bs[1] = {L->out_features};
    if ((st = dml_params_add(s, "weight", 4, ws, 1, NULL)) ||
        (st = dml_params_add(s, "bias", 1, bs, 1, NULL)))
      goto fail;
  } else if (L->kind == LAYER_LINEAR) {
    int64_t ws[2] = {L->out_features, c_in}, bs[1] = {L->out_features};
    if ((st = dml_params_add(s, "weight", 2, ws, 1, NULL)) ||
        (st = dml_params_add(s, "bias", 1, bs, 1, NULL)))
      goto fail;
  } else if (L->kind == LAYER_BATCHNORM) {
    int64_t cs[1] = {c_in};
    if ((st = dml_params_add(s, "weight", 1, cs, 1, NULL)) ||
        (st = dml_params_add(s, "bias", 1, cs, 1, NULL)) ||
        (st = dml_params_add(s, "running_mean", 1, cs, 0, NULL)) ||
        (st = dml_params_add(s, "running_var", 1, cs, 0, NULL)))
      goto fail;
  }
  if ((st = dml_params_finalize(s))) goto fail;
  if (L->kind == LAYER_CONV || L->kind == LAYER_LINEAR) {
    dml_param *w = dml_params_get(s, 0), *b = dml_params_get(s, 1);
    bench_fill(w->value, w->numel, SALT_WEIGHT, 1.0 / sqrt((double)(w->numel / w->shape[0])));
    bench_fill(b->value, b->numel, SALT_BIAS, 0.1);
  } else if (L->kind == LAYER_BATCHNORM) {
    for (int64_t c = 0; c < c_in; c++) {
      dml_params_get(s, 0)->value[c] = 1.0f; /* torch's defaults */
      dml_params_get(s, 3)->value[c] = 1.0f;
    }
  }
  *out = s;
  return DML_OK;
fail:
  dml_params_free(s);
  return st;
}

/* Records the layer's forward on g. */
static dml_status layer_forward(const layer_spec *L, dml_graph *g, dml_param_store *s,
                                dml_node *x, dml_node **y) {
  dml_node *w = NULL, *b = NULL;
  dml_status st;
  if (L->kind == LAYER_CONV || L->kind == LAYER_LINEAR || L->kind == LAYER_BATCHNORM) {
    if ((st = dml_graph_param(g, dml_params_get(s, 0), &w)) ||
        (st = dml_graph_param(g, dml_params_get(s, 1), &b)))
      return st;
  }
  switch (L->kind) {
  case LAYER_CONV: {
    dml_conv_params p = dml_conv_params_default();
    p.padding[0] = p.padding[1] = 1;
    return dml_op_conv2d(g, x, w, b, &p, y);
  }
  case LAYER_BATCHNORM:
    return dml_op_batchnorm(g, x, w, b, dml_params_get(s, 2)->value, dml_params_get(s, 3)->value,
                            0.1f, 1e-5f, y);
  case LAYER_RELU: return dml_op_relu(g, x, y);
  case LAYER_MAXPOOL: {
    dml_pool_params p;
    memset(&p, 0, sizeof p);
    p.kernel[0] = p.kernel[1] = 2;
    return dml_op_maxpool2d(g, x, &p, y);
  }
  case LAYER_FLATTEN: return dml_op_flatten(g, x, y);
  case LAYER_LINEAR: return dml_op_linear(g, x, w, b, y);
  case LAYER_L2NORM: return dml_op_l2_normalize(g, x, 1e-12f, y);
  }
  return DML_ERR_INTERNAL;
}

static int bench_layer(const layer_spec *L, const options *o, layer_result *r) {
  int rc = 1;
  dml_param_store *s = NULL;
  dml_graph *g = NULL;
  float *xin = NULL, *up = NULL;
  int n = o->warmup + o->reps;
  double *tf = malloc((size_t)n * sizeof(double)), *tt = malloc((size_t)n * sizeof(double));
  int64_t in_numel = shape_numel(L->ndim, L->shape);
  xin = malloc((size_t)in_numel * sizeof(float));
  if (!tf || !tt || !xin) {
    fprintf(stderr, "bench_ops: out of memory\n");
    goto done;
  }
  bench_fill(xin, in_numel, SALT_INPUT, 1.0);
  if (layer_params(L, &s) || dml_graph_new(&g)) {
    rc = fail(L->id);
    goto done;
  }
  for (int rep = 0; rep < n; rep++) {
    dml_node *x, *y;
    dml_params_zero_grad(s);
    dml_graph_reset(g);
    dml_graph_set_training(g, 1);
    if (dml_graph_input(g, xin, L->ndim, L->shape, L->input_grad, &x)) {
      rc = fail(L->id);
      goto done;
    }
    double t0 = now_ms();
    if (layer_forward(L, g, s, x, &y)) {
      rc = fail(L->id);
      goto done;
    }
    double t1 = now_ms();
    int64_t out_numel = dml_tensor_numel(dml_node_value(y));
    if (!up) {
      up = malloc((size_t)out_numel * sizeof(float));
      if (!up) {
        fprintf(stderr, "bench_ops: out of memory\n");
        goto done;
      }
      bench_fill(up, out_numel, SALT_UPSTREAM, 1.0);
    }
    if (dml_graph_backward(g, y, up)) {
      rc = fail(L->id);
      goto done;
    }
    double t2 = now_ms();
    tf[rep] = t1 - t0;
    tt[rep] = t2 - t0;
    if (rep == n - 1) {
      r->out = checksum_of(dml_node_value(y)->data, out_numel);
      r->dx = checksum_of(L->input_grad ? dml_node_grad(x) : NULL, in_numel);
      dml_param *w = dml_params_count(s) > 0 ? dml_params_get(s, 0) : NULL;
      r->dw = checksum_of(w ? w->grad : NULL, w ? w->numel : 0);
    }
  }
  r->forward_ms = median(tf + o->warmup, o->reps);
  r->total_ms = median(tt + o->warmup, o->reps);
  rc = 0;
done:
  free(tf);
  free(tt);
  free(xin);
  free(up);
  dml_graph_free(g);
  dml_params_free(s);
  return rc;
}

/* Overwrites the conv / linear weights and biases ("<k>.weight" of rank >= 2 and its "<k>.bias")
 * with bench_fill values, salted by layer index, as ops_torch.py does for its nn.Sequential;
 * batch-norm parameters keep their defaults. */
static void fill_model(dml_param_store *s) {
  for (int i = 0; i < dml_params_count(s); i++) {
    dml_param *p = dml_params_get(s, i);
    int layer = atoi(p->name);
    const char *dot = strchr(p->name, '.');
    if (!p->trainable || !dot) continue;
    if (!strcmp(dot + 1, "weight") && p->ndim >= 2) {
      bench_fill(p->value, p->numel, (uint32_t)(100 + 2 * layer),
                 1.0 / sqrt((double)(p->numel / p->shape[0])));
    } else if (!strcmp(dot + 1, "bias")) {
      char wname[DML_PARAM_NAME_MAX];
      snprintf(wname, sizeof wname, "%d.weight", layer);
      dml_param *w = dml_params_find(s, wname);
      if (w && w->ndim >= 2) bench_fill(p->value, p->numel, (uint32_t)(101 + 2 * layer), 0.1);
    }
  }
}

static int bench_step(const options *o, step_result *r) {
  int rc = 1;
  dml_model *m = NULL;
  dml_graph *g = NULL;
  dml_param_store *head = NULL;
  dml_optim *opt_net = NULL, *opt_head = NULL;
  int n = o->warmup + o->reps;
  double *tf = malloc((size_t)n * sizeof(double)), *tb = malloc((size_t)n * sizeof(double));
  double *to = malloc((size_t)n * sizeof(double)), *tt = malloc((size_t)n * sizeof(double));
  float *xb = malloc((size_t)BATCH * 784 * sizeof(float));
  int32_t yb[BATCH];
  if (!tf || !tb || !to || !tt || !xb) {
    fprintf(stderr, "bench_ops: out of memory\n");
    goto done;
  }
  if (dml_model_load_text_file(REFERENCE_CNN_PATH, &m) || dml_model_init_weights(m, 1) ||
      dml_graph_new(&g)) {
    rc = fail("model");
    goto done;
  }
  fill_model(dml_model_params(m));
  int64_t d = dml_model_output_numel(m);
  int64_t hshape[2] = {HEAD_CLASSES, d};
  if (dml_params_new(&head) || dml_params_add(head, "head.weight", 2, hshape, 1, NULL) ||
      dml_params_finalize(head)) {
    rc = fail("head");
    goto done;
  }
  bench_fill(dml_params_get(head, 0)->value, HEAD_CLASSES * d, SALT_HEAD, 1.0);
  dml_optim_config oc = dml_optim_config_default(DML_OPTIM_ADAM);
  oc.lr = 1e-3f;
  if (dml_optim_new(dml_model_params(m), &oc, &opt_net) ||
      dml_optim_new(head, &oc, &opt_head)) {
    rc = fail("optimiser");
    goto done;
  }
  r->params = dml_params_trainable_numel(dml_model_params(m)) + HEAD_CLASSES * d;
  bench_fill(xb, (int64_t)BATCH * 784, SALT_INPUT, 1.0);
  for (int b = 0; b < BATCH; b++) yb[b] = b % HEAD_CLASSES;
  int64_t in_shape[4] = {BATCH, 1, 28, 28};
  for (int rep = 0; rep < n; rep++) {
    dml_node *x, *z, *w, *wn, *logits, *scaled, *loss;
    double t0 = now_ms();
    dml_graph_reset(g);
    dml_graph_set_training(g, 1);
    if (dml_graph_input(g, xb, 4, in_shape, 0, &x) || dml_model_forward(m, g, x, &z) ||
        dml_graph_param(g, dml_params_get(head, 0), &w) ||
        dml_op_l2_normalize(g, w, 1e-12f, &wn) || dml_op_matmul(g, z, wn, 0, 1, &logits) ||
        dml_op_scale(g, logits, 1.0f / HEAD_TEMPERATURE, &scaled) ||
        dml_op_cross_entropy(g, scaled, yb, 0.0f, &loss)) {
      rc = fail("training step");
      goto done;
    }
    double t1 = now_ms();
    dml_params_zero_grad(dml_model_params(m));
    dml_params_zero_grad(head);
    if (dml_graph_backward(g, loss, NULL)) {
      rc = fail("backward");
      goto done;
    }
    double t2 = now_ms();
    if (dml_optim_step(opt_net) || dml_optim_step(opt_head)) {
      rc = fail("optimiser step");
      goto done;
    }
    double t3 = now_ms();
    double l = dml_node_value(loss)->data[0];
    if (rep == 0) r->loss_first = l;
    r->loss_last = l;
    tf[rep] = t1 - t0;
    tb[rep] = t2 - t1;
    to[rep] = t3 - t2;
    tt[rep] = t3 - t0;
  }
  r->forward_ms = median(tf + o->warmup, o->reps);
  r->backward_ms = median(tb + o->warmup, o->reps);
  r->optim_ms = median(to + o->warmup, o->reps);
  r->total_ms = median(tt + o->warmup, o->reps);
  rc = 0;
done:
  free(tf);
  free(tb);
  free(to);
  free(tt);
  free(xb);
  dml_optim_free(opt_net);
  dml_optim_free(opt_head);
  dml_params_free(head);
  dml_graph_free(g);
  dml_model_free(m);
  return rc;
}

static void json_checksum(FILE *f, const char *key, const checksum *c) {
  if (!c->present)
    fprintf(f, "\"%s\": null", key);
  else
    fprintf(f, "\"%s\": [%.9g, %.9g, %.9g]", key, c->sum, c->asum, c->wsum);
}

static int write_json(const char *path, const options *o, const layer_result *lr,
                      const step_result *sr) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "bench_ops: cannot write %s\n", path);
    return 1;
  }
  fprintf(f, "{\n  \"impl\": \"dml\",\n  \"threads\": %d,\n  \"reps\": %d,\n  \"warmup\": %d,\n",
          o->threads, o->reps, o->warmup);
  fprintf(f, "  \"batch\": %d,\n  \"layers\": [\n", BATCH);
  for (int i = 0; i < N_LAYERS; i++) {
    fprintf(f, "    {\"id\": \"%s\", \"desc\": \"%s\", \"forward_ms\": %.6f, \"total_ms\": %.6f, ",
            layers[i].id, layers[i].desc, lr[i].forward_ms, lr[i].total_ms);
    json_checksum(f, "out", &lr[i].out);
    fprintf(f, ", ");
    json_checksum(f, "dx", &lr[i].dx);
    fprintf(f, ", ");
    json_checksum(f, "dw", &lr[i].dw);
    fprintf(f, "}%s\n", i + 1 < N_LAYERS ? "," : "");
  }
  fprintf(f, "  ],\n  \"step\": {\"forward_ms\": %.6f, \"backward_ms\": %.6f, ", sr->forward_ms,
          sr->backward_ms);
  fprintf(f, "\"optim_ms\": %.6f, \"total_ms\": %.6f, \"images_per_s\": %.3f, ", sr->optim_ms,
          sr->total_ms, 1e3 * BATCH / sr->total_ms);
  fprintf(f, "\"loss_first\": %.9g, \"loss_last\": %.9g, \"params\": %lld}\n}\n", sr->loss_first,
          sr->loss_last, (long long)sr->params);
  if (fclose(f) != 0) {
    fprintf(stderr, "bench_ops: error writing %s\n", path);
    return 1;
  }
  return 0;
}

static int usage(FILE *f, int code) {
  fprintf(f, "usage: bench_ops [--threads N] [--reps N] [--warmup N] [--json FILE]\n"
             "  Times each layer of the reference CNN and of the MLP at batch %d (forward, and\n"
             "  forward + backward) and one whole CNN training step; medians in ms.\n"
             "  --threads N   OpenMP and OpenBLAS threads (default 2)\n"
             "  --reps N      timed repetitions (default 20)\n"
             "  --warmup N    untimed repetitions first (default 3)\n"
             "  --json FILE   also write the results (with output checksums) as JSON\n",
          BATCH);
  return code;
}

int main(int argc, char **argv) {
  options o = {2, 20, 3, NULL};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0);
    if (i + 1 >= argc) {
      fprintf(stderr, "bench_ops: option %s needs a value\n", a);
      return usage(stderr, 2);
    }
    const char *v = argv[++i];
    char *end = NULL;
    if (!strcmp(a, "--threads")) o.threads = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--reps")) o.reps = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--warmup")) o.warmup = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--json")) o.json_path = v;
    else {
      fprintf(stderr, "bench_ops: unknown option %s\n", a);
      return usage(stderr, 2);
    }
    if (end && *end) {
      fprintf(stderr, "bench_ops: %s expects an integer, got '%s'\n", a, v);
      return 2;
    }
  }
  if (o.threads < 1 || o.reps < 1 || o.warmup < 0) {
    fprintf(stderr, "bench_ops: need --threads >= 1, --reps >= 1, --warmup >= 0\n");
    return 2;
  }
  dml_set_num_threads(o.threads);

  layer_result lr[N_LAYERS];
  memset(lr, 0, sizeof lr);
  printf("dml layers at batch %d, %d threads, median of %d (after %d warm-up)\n", BATCH,
         o.threads, o.reps, o.warmup);
  printf("  %-12s %-26s %10s %10s\n", "layer", "", "fwd ms", "fwd+bwd ms");
  for (int i = 0; i < N_LAYERS; i++) {
    if (bench_layer(&layers[i], &o, &lr[i])) return 1;
    printf("  %-12s %-26s %10.3f %10.3f\n", layers[i].id, layers[i].desc, lr[i].forward_ms,
           lr[i].total_ms);
    fflush(stdout);
  }
  step_result sr;
  memset(&sr, 0, sizeof sr);
  if (bench_step(&o, &sr)) return 1;
  printf("CNN training step (forward, softmax head + cross-entropy, backward, Adam):\n"
         "  forward %.3f ms, backward %.3f ms, Adam %.3f ms, total %.3f ms = %.0f images/s\n"
         "  loss %.6f at the first step, %.6f at the last\n",
         sr.forward_ms, sr.backward_ms, sr.optim_ms, sr.total_ms, 1e3 * BATCH / sr.total_ms,
         sr.loss_first, sr.loss_last);
  if (o.json_path && write_json(o.json_path, &o, lr, &sr)) return 1;
  return 0;
}
