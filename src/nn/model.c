/* A model: the layers parsed from model text (model_text.c) and their parameter store.
 * Forward runs the layers in order on a graph; predict runs evaluation-mode forward passes in
 * chunks; the summary prints the layer table with output shapes and parameter counts. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph_internal.h"
#include "nn/model_internal.h"

void dml_model_free(dml_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_layers; i++) dml__layer_free(m->layers[i]);
  free(m->layers);
  dml_params_free(m->store);
  free(m->text);
  free(m->source);
  free(m);
}

dml_status dml_model_init_weights(dml_model *m, uint64_t seed) {
  if (!m) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_init_weights: model is NULL");
  for (int i = 0; i < m->n_layers; i++) {
    dml__layer *l = m->layers[i];
    if (l->vt->init) DML_TRY(l->vt->init(l, seed));
  }
  return DML_OK;
}

/* Re-reports a layer's failure with the layer's position and line in front. */
static dml_status layer_failed(const dml_model *m, const dml__layer *l, dml_status st) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", dml_last_error());
  return dml__error(st, "%s:%d: layer %d (%s): %s", m->source, l->line, l->index, l->desc, msg);
}

dml_status dml_model_forward(dml_model *m, dml_graph *g, dml_node *x, dml_node **out) {
  if (!m || !g || !x || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_forward: NULL argument");
  const dml_tensor *v = dml_node_value(x);
  int ok = v->ndim == m->in_ndim + 1;
  for (int i = 0; ok && i < m->in_ndim; i++) ok = v->shape[i + 1] == m->in_shape[i];
  if (!ok) {
    char want[96], got[96];
    dml__shape_str(m->in_ndim, m->in_shape, want, sizeof want);
    dml_tensor_shape_str(v, got, sizeof got);
    return dml__error(DML_ERR_SHAPE,
                      "%s: the input batch has shape %s; expected [N] followed by the example "
                      "shape %s",
                      m->source, got, want);
  }
  if (v->shape[0] < 1)
    return dml__error(DML_ERR_SHAPE, "%s: the input batch is empty (N = 0)", m->source);
  dml_node *cur = x;
  for (int i = 0; i < m->n_layers; i++) {
    dml__layer *l = m->layers[i];
    dml_node *y = NULL;
    dml_status st = l->vt->forward(l, g, cur, &y);
    if (st != DML_OK) return layer_failed(m, l, st);
    cur = y;
  }
  *out = cur;
  return DML_OK;
}

/* Evaluation-mode forward of rows [start, start + nb) on g. */
static dml_status predict_chunk(dml_model *m, dml_graph *g, const float *x, int64_t start,
                                int64_t nb, float *out) {
  int64_t in_numel = dml_model_input_numel(m), out_numel = dml_model_output_numel(m);
  int64_t shape[DML_MAX_DIMS + 1];
  for (int i = 0; i < m->in_ndim; i++) shape[1 + i] = m->in_shape[i];
  shape[0] = nb;
  dml_graph_reset(g);
  dml_graph_set_training(g, 0);
  dml__graph_set_inference(g, 1);
  dml_node *xin, *y;
  DML_TRY(dml_graph_input(g, x + start * in_numel, m->in_ndim + 1, shape, 0, &xin));
  DML_TRY(dml_model_forward(m, g, xin, &y));
  const dml_tensor *yv = dml_node_value(y);
  if (dml_tensor_numel(yv) != nb * out_numel)
    return dml__error(DML_ERR_INTERNAL, "%s: the last layer produced %lld values, expected %lld",
                      m->source, (long long)dml_tensor_numel(yv), (long long)(nb * out_numel));
  memcpy(out + start * out_numel, yv->data, (size_t)(nb * out_numel) * sizeof(float));
  return DML_OK;
}

dml_status dml_model_predict(dml_model *m, dml_graph *g, const float *x, int64_t n,
                             int64_t batch_size, float *out) {
  if (!m || !g)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_predict: NULL model or graph");
  if (n < 0 || batch_size < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_model_predict: n = %lld and batch_size = %lld (need n >= 0, "
                      "batch_size >= 1)",
                      (long long)n, (long long)batch_size);
  if (n == 0) return DML_OK;
  if (!x || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_predict: NULL input or output buffer");
  int was_training = dml_graph_training(g);
  dml_status st = DML_OK;
  /* Inference has no backward pass to share a batch across threads, so each thread runs its
   * own chunks end to end, single-threaded, on its own graph: no barrier per layer, and every
   * memory-bound layer (norms, activations, pooling) runs in parallel. Chunks of
   * batch_size / threads rows keep the memory of one batch_size forward. The same thread
   * count and batch size give the same bits; another split may change the last bits (GEMM
   * blocking follows the chunk's size). */
  int nt = omp_get_max_threads();
  int64_t chunk = batch_size / (nt > 0 ? nt : 1);
  if (chunk < 16) chunk = 16;
  int64_t nchunks = (n + chunk - 1) / chunk;
  /* OpenBLAS is called from both threads at once here. Debian's OpenMP build of OpenBLAS runs
   * on GCC's libgomp; with clang's libomp in its place, OpenBLAS's own thread team hangs on a
   * later multi-threaded call after such concurrent calls, so clang builds embed one chunk
   * at a time with every op threaded instead. */
#if defined(__clang__)
  const int per_thread_chunks = 0;
#else
  const int per_thread_chunks = 1;
#endif
  if (per_thread_chunks && nt > 1 && nchunks >= 2 && !omp_in_parallel()) {
    if (nt > nchunks) nt = (int)nchunks;
    dml_graph *gs[64];
    if (nt > 64) nt = 64;
    gs[0] = g;
    int made = 1;
    for (; made < nt; made++)
      if (dml_graph_new(&gs[made]) != DML_OK) break;
    nt = made;
    dml_status sts[64];
    char msg[64][256];
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num();
      sts[t] = DML_OK;
      for (int64_t c = t; c < nchunks && sts[t] == DML_OK; c += nt) {
        int64_t start = c * chunk, nb = n - start < chunk ? n - start : chunk;
        sts[t] = predict_chunk(m, gs[t], x, start, nb, out);
      }
      if (sts[t] != DML_OK) snprintf(msg[t], sizeof msg[t], "%s", dml_last_error());
    }
    for (int t = 0; t < nt && st == DML_OK; t++)
      if (sts[t] != DML_OK) st = dml__error(sts[t], "%s", msg[t]);
    for (int t = 1; t < nt; t++) dml_graph_free(gs[t]);
  } else {
    for (int64_t start = 0; start < n && st == DML_OK; start += batch_size) {
      int64_t nb = n - start < batch_size ? n - start : batch_size;
      st = predict_chunk(m, g, x, start, nb, out);
    }
  }
  dml_graph_reset(g);
  dml_graph_set_training(g, was_training);
  return st;
}

static void layer_counts(const dml__layer *l, int64_t *trainable, int64_t *buffers) {
  *trainable = *buffers = 0;
  for (int k = 0; k < l->n_params; k++) {
    const dml_param *p = dml__layer_param(l, k);
    if (p->trainable)
      *trainable += p->numel;
    else
      *buffers += p->numel;
  }
}

void dml_model_print_summary(const dml_model *m, FILE *f) {
  if (!m || !f) return;
  char in_desc[128], shape[96];
  int pos = snprintf(in_desc, sizeof in_desc, "input");
  for (int i = 0; i < m->in_ndim; i++)
    pos +=
        snprintf(in_desc + pos, sizeof in_desc - (size_t)pos, " %lld", (long long)m->in_shape[i]);
  int w_layer = (int)strlen(in_desc), w_shape = 12;
  for (int i = 0; i < m->n_layers; i++) {
    const dml__layer *l = m->layers[i];
    int len = (int)strlen(l->desc);
    if (len > w_layer) w_layer = len;
    dml__shape_str(l->out_ndim, l->out_shape, shape, sizeof shape);
    if ((int)strlen(shape) > w_shape) w_shape = (int)strlen(shape);
  }
  if (w_layer > 72) w_layer = 72; /* longer lines end in "..." */
  fprintf(f, "model %s: %d layers\n", m->source, m->n_layers);
  fprintf(f, "%4s  %-*s  %-*s  %12s  %10s\n", "#", w_layer, "layer", w_shape, "output shape",
          "parameters", "buffers");
  dml__shape_str(m->in_ndim, m->in_shape, shape, sizeof shape);
  fprintf(f, "%4s  %-*s  %-*s  %12d  %10d\n", "-", w_layer, in_desc, w_shape, shape, 0, 0);
  int64_t total_t = 0, total_b = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const dml__layer *l = m->layers[i];
    int64_t t, b;
    layer_counts(l, &t, &b);
    total_t += t;
    total_b += b;
    dml__shape_str(l->out_ndim, l->out_shape, shape, sizeof shape);
    char desc[96];
    if ((int)strlen(l->desc) > w_layer)
      snprintf(desc, sizeof desc, "%.*s...", w_layer - 3, l->desc);
    else
      snprintf(desc, sizeof desc, "%s", l->desc);
    fprintf(f, "%4d  %-*s  %-*s  %12lld  %10lld\n", l->index, w_layer, desc, w_shape, shape,
            (long long)t, (long long)b);
  }
  fprintf(f, "total: %lld trainable parameters, %lld buffer values (%.2f MiB as float32)\n",
          (long long)total_t, (long long)total_b,
          (double)(total_t + total_b) * 4.0 / (1024.0 * 1024.0));
}

dml_param_store *dml_model_params(dml_model *m) { return m ? m->store : NULL; }
const char *dml_model_text(const dml_model *m) { return m ? m->text : NULL; }
int dml_model_num_layers(const dml_model *m) { return m ? m->n_layers : 0; }

void dml_model_input_shape(const dml_model *m, int *ndim, int64_t *shape) {
  int n = m ? m->in_ndim : 0;
  if (ndim) *ndim = n;
  for (int i = 0; shape && i < n; i++) shape[i] = m->in_shape[i];
}

void dml_model_output_shape(const dml_model *m, int *ndim, int64_t *shape) {
  if (!m || m->n_layers == 0) {
    dml_model_input_shape(m, ndim, shape);
    return;
  }
  const dml__layer *l = m->layers[m->n_layers - 1];
  if (ndim) *ndim = l->out_ndim;
  for (int i = 0; shape && i < l->out_ndim; i++) shape[i] = l->out_shape[i];
}

int64_t dml_model_input_numel(const dml_model *m) {
  return m ? dml__shape_numel(m->in_ndim, m->in_shape) : 0;
}

int64_t dml_model_output_numel(const dml_model *m) {
  if (!m) return 0;
  int nd;
  int64_t shape[DML_MAX_DIMS];
  dml_model_output_shape(m, &nd, shape);
  return dml__shape_numel(nd, shape);
}
