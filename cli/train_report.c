/* The end of `dml train`: evaluation on the test set and the report folder.
 *   metrics.json   every figure (the shape bench/fmnist reads)
 *   report.md      the tables and the pictures, for a person
 *   model.json + model.safetensors   the evaluated weights (for dml embed)
 *   test_embeddings.npy, test_labels.npy
 *   retrieval.png  queries and their top-5, framed green (same class) or red
 *   map_pca.png, map_tsne.png   2-D maps of the test embeddings coloured by class
 *   loss.svg, validation.svg    training curves */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli/cli_util.h"
#include "cli/train_report.h"

double train_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int train_is_unseen(const train_run_info *info, int32_t label) {
  for (int i = 0; i < info->num_unseen; i++)
    if (info->unseen[i] == label) return 1;
  return 0;
}

void train_checkpoint_metadata(const train_run_info *info, const dml_dataset *train, char *buf,
                               size_t cap) {
  cJSON *m = cJSON_CreateObject();
  if (!m) {
    snprintf(buf, cap, "{}");
    return;
  }
  if (info->norm_channels == 1) {
    cJSON *a = cJSON_AddArrayToObject(m, "input_normalize");
    cJSON_AddItemToArray(a, cJSON_CreateNumber(info->mean[0]));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(info->std[0]));
  } else if (info->norm_channels > 1 && info->norm_channels <= TRAIN_REPORT_MAX_CHANNELS) {
    cJSON *o = cJSON_AddObjectToObject(m, "input_normalize_channels");
    cJSON *me = cJSON_AddArrayToObject(o, "mean"), *sd = cJSON_AddArrayToObject(o, "std");
    for (int i = 0; i < info->norm_channels; i++) {
      cJSON_AddItemToArray(me, cJSON_CreateNumber(info->mean[i]));
      cJSON_AddItemToArray(sd, cJSON_CreateNumber(info->std[i]));
    }
  }
  if (train->class_names && train->num_classes <= 4096) {
    cJSON *a = cJSON_AddArrayToObject(m, "class_names");
    for (int i = 0; i < train->num_classes; i++)
      cJSON_AddItemToArray(a, cJSON_CreateString(train->class_names[i]));
  }
  char *s = cJSON_PrintUnformatted(m);
  cJSON_Delete(m);
  if (s && strlen(s) < cap) snprintf(buf, cap, "%s", s);
  else snprintf(buf, cap, "{}");
  free(s);
}

dml_status train_report_embed(dml_model *m, const dml_dataset *ds, float **out, double *seconds) {
  int64_t d = dml_model_output_numel(m);
  *out = malloc((size_t)(ds->n * d) * sizeof(float));
  if (!*out) return DML_ERR_NO_MEMORY;
  dml_graph *g = NULL;
  dml_status st = dml_graph_new(&g);
  double t0 = train_now();
  if (st == DML_OK) st = dml_model_predict(m, g, ds->x, ds->n, 256, *out);
  if (seconds) *seconds = train_now() - t0;
  dml_graph_free(g);
  if (st != DML_OK) {
    free(*out);
    *out = NULL;
  }
  return st;
}

typedef train_subset_metrics subset_metrics;

enum { SUBSET_UNSEEN, SUBSET_SEEN, SUBSET_ALL };

static int in_subset(const train_run_info *info, int which, int32_t label) {
  if (which == SUBSET_ALL) return 1;
  int u = train_is_unseen(info, label);
  return which == SUBSET_UNSEEN ? u : !u;
}

/* Retrieval (query = reference set, self excluded) and k-means NMI on one subset of the test
 * rows. m->n == 0 when the subset is empty. */
static dml_status eval_subset(const train_run_info *info, int which, const float *emb, int64_t d,
                              const int32_t *labels, int64_t n, dml_distance dist, uint64_t seed,
                              int with_nmi, subset_metrics *m) {
  static const char *names[] = {"unseen", "seen", "all"};
  memset(m, 0, sizeof *m);
  m->name = names[which];
  m->nmi = NAN;
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) k += in_subset(info, which, labels[i]);
  if (k < 2) return DML_OK;
  float *e = malloc((size_t)(k * d) * sizeof(float));
  int32_t *y = malloc((size_t)k * sizeof(int32_t));
  if (!e || !y) {
    free(e);
    free(y);
    return DML_ERR_NO_MEMORY;
  }
  int64_t j = 0;
  for (int64_t i = 0; i < n; i++)
    if (in_subset(info, which, labels[i])) {
      memcpy(e + j * d, emb + i * d, (size_t)d * sizeof(float));
      y[j++] = labels[i];
    }
  m->n = k;
  dml_status st = dml_eval_retrieval(e, y, k, d, dist, &m->r);
  if (st == DML_OK && with_nmi) {
    dml_clustering_report cr;
    st = dml_eval_clustering(e, y, k, d, seed, &cr);
    if (st == DML_OK) {
      m->nmi = cr.nmi_arithmetic;
      m->classes = (int)cr.clusters;
    }
  }
  free(e);
  free(y);
  return st;
}

static cJSON *subset_json(const subset_metrics *m) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "p_at_1", m->r.precision_at_1);
  cJSON_AddNumberToObject(o, "r_precision", m->r.r_precision);
  cJSON_AddNumberToObject(o, "map_at_r", m->r.map_at_r);
  if (isfinite(m->nmi)) cJSON_AddNumberToObject(o, "nmi", m->nmi);
  cJSON_AddNumberToObject(o, "queries", (double)m->r.queries);
  return o;
}

static double peak_rss_mb(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru)) return NAN;
  return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* ---- pictures ---- */

static const char *const *class_names_of(const dml_dataset *test, const dml_dataset *train) {
  if (test->class_names) return (const char *const *)test->class_names;
  if (train->class_names) return (const char *const *)train->class_names;
  return NULL;
}

static int max_label(const dml_dataset *a, const dml_dataset *b) {
  int32_t mx = -1;
  for (int64_t i = 0; i < a->n; i++)
    if (a->labels[i] > mx) mx = a->labels[i];
  for (int64_t i = 0; b && i < b->n; i++)
    if (b->labels[i] > mx) mx = b->labels[i];
  return mx;
}

static int write_retrieval_grid(const train_run_info *info, const dml_dataset *test,
                                const dml_dataset *train, const float *emb, int64_t d,
                                dml_distance dist, uint64_t seed, const char *path) {
  if (test->ndim != 3 || (test->shape[0] != 1 && test->shape[0] != 3)) return 0;
  int which = info->open_set ? SUBSET_UNSEEN : SUBSET_ALL;
  int64_t n = 0;
  for (int64_t i = 0; i < test->n; i++) n += in_subset(info, which, test->labels[i]);
  int nq = (int)dml_train_config_int(info->config, "eval.grid_queries");
  const int k = 5;
  if (n < k + 2 || nq < 1) return 0;
  if (nq > 64) nq = 64;
  if (nq > n) nq = (int)n;
  int64_t *rows = malloc((size_t)n * sizeof(int64_t));
  float *e = malloc((size_t)(n * d) * sizeof(float));
  int64_t *ids = malloc((size_t)nq * (k + 1) * sizeof(int64_t));
  int64_t *nb = malloc((size_t)nq * k * sizeof(int64_t));
  int64_t *qrows = malloc((size_t)nq * sizeof(int64_t));
  float *qe = malloc((size_t)(nq * d) * sizeof(float));
  int rc = 1;
  if (!rows || !e || !ids || !nb || !qrows || !qe) goto out;
  int64_t j = 0;
  for (int64_t i = 0; i < test->n; i++)
    if (in_subset(info, which, test->labels[i])) {
      rows[j] = i;
      memcpy(e + j * d, emb + i * d, (size_t)d * sizeof(float));
      j++;
    }
  /* queries: an even spread over a seeded shuffle of the subset */
  int64_t *perm = malloc((size_t)n * sizeof(int64_t));
  if (!perm) goto out;
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  dml_rng_shuffle_i64(perm, n, seed, 0x6a1dULL);
  for (int q = 0; q < nq; q++) {
    qrows[q] = perm[q];
    memcpy(qe + q * d, e + perm[q] * d, (size_t)d * sizeof(float));
  }
  free(perm);
  if (dml_knn_search(e, n, qe, nq, d, dist, k + 1, ids, NULL)) {
    cli_fail("train", "retrieval picture");
    goto out;
  }
  for (int q = 0; q < nq; q++) {
    int c = 0;
    for (int t = 0; t < k + 1 && c < k; t++)
      if (ids[q * (k + 1) + t] != qrows[q] && ids[q * (k + 1) + t] >= 0)
        nb[q * k + c++] = rows[ids[q * (k + 1) + t]];
    while (c < k) nb[q * k + c++] = -1;
    qrows[q] = rows[qrows[q]];
  }
  dml_image_set set = {test->x, test->n, (int)test->shape[0], (int)test->shape[1],
                       (int)test->shape[2], info->mean[0], info->std[0]};
  float *pixels = NULL; /* per-channel normalisation: undo it on a copy */
  if (info->norm_channels > 1) {
    int64_t plane = test->shape[1] * test->shape[2];
    pixels = malloc((size_t)(test->n * test->example_numel) * sizeof(float));
    if (!pixels) goto out;
    for (int64_t i = 0; i < test->n * test->example_numel; i++) {
      int ch = (int)((i / plane) % test->shape[0]);
      if (ch >= info->norm_channels) ch = info->norm_channels - 1;
      pixels[i] = test->x[i] * info->std[ch] + info->mean[ch];
    }
    set.x = pixels;
    set.mean = 0;
    set.std = 1;
  }
  int scale = test->shape[1] <= 32 ? 3 : test->shape[1] <= 64 ? 2 : 1;
  if (dml_viz_retrieval_grid(path, &set, test->labels, qrows, nq, &set, test->labels, nb, k,
                             class_names_of(test, train), max_label(test, train) + 1, scale)) {
    cli_fail("train", "retrieval picture");
    free(pixels);
    goto out;
  }
  free(pixels);
  rc = 0;
out:
  free(rows);
  free(e);
  free(ids);
  free(nb);
  free(qrows);
  free(qe);
  return rc;
}

static int write_maps(const train_run_info *info, const dml_dataset *test,
                      const dml_dataset *train, const float *emb, int64_t d, uint64_t seed,
                      double *tsne_seconds) {
  int64_t n = dml_train_config_int(info->config, "eval.map_points");
  if (n > test->n) n = test->n;
  if (n > 10000) n = 10000;
  if (n < 3) return 0;
  int64_t *perm = malloc((size_t)test->n * sizeof(int64_t));
  float *e = malloc((size_t)(n * d) * sizeof(float));
  float *xy = malloc((size_t)(n * 2) * sizeof(float));
  int32_t *y = malloc((size_t)n * sizeof(int32_t));
  int rc = 1;
  if (!perm || !e || !xy || !y) goto out;
  for (int64_t i = 0; i < test->n; i++) perm[i] = i;
  dml_rng_shuffle_i64(perm, test->n, seed, 0x3a95ULL);
  for (int64_t i = 0; i < n; i++) {
    memcpy(e + i * d, emb + perm[i] * d, (size_t)d * sizeof(float));
    y[i] = test->labels[perm[i]];
  }
  const char *const *names = class_names_of(test, train);
  int ncls = max_label(test, train) + 1;
  char path[4200], title[256];
  char unseen_note[96] = "";
  if (info->open_set) snprintf(unseen_note, sizeof unseen_note, "; %d classes unseen in training",
                               info->num_unseen);
  double ex[2];
  snprintf(path, sizeof path, "%s/map_pca.png", info->outdir);
  if (dml_pca_2d(e, n, d, xy, ex)) {
    cli_fail("train", "PCA map");
    goto out;
  }
  snprintf(title, sizeof title, "PCA of %lld test embeddings (%.0f%% + %.0f%% of variance%s)",
           (long long)n, 100 * ex[0], 100 * ex[1], unseen_note);
  if (dml_viz_scatter_png(path, xy, y, n, names, ncls, title, 900, 760)) {
    cli_fail("train", "PCA map");
    goto out;
  }
  double t0 = train_now();
  dml_tsne_config tc = dml_tsne_config_default();
  tc.seed = seed;
  if (tc.perplexity > (double)(n - 1) / 3.0) tc.perplexity = (double)(n - 1) / 3.0; /* < n */
  if (dml_tsne_2d(e, n, d, &tc, xy, NULL)) {
    cli_fail("train", "t-SNE map");
    goto out;
  }
  *tsne_seconds = train_now() - t0;
  snprintf(path, sizeof path, "%s/map_tsne.png", info->outdir);
  snprintf(title, sizeof title, "t-SNE of %lld test embeddings (perplexity %.0f%s)", (long long)n,
           tc.perplexity, unseen_note);
  if (dml_viz_scatter_png(path, xy, y, n, names, ncls, title, 900, 760)) {
    cli_fail("train", "t-SNE map");
    goto out;
  }
  rc = 0;
out:
  free(perm);
  free(e);
  free(xy);
  free(y);
  return rc;
}

static int write_curves(const train_run_info *info) {
  const dml_train_history *h = info->history;
  if (h->num_steps < 1) return 0;
  int64_t ns = h->num_steps;
  int ne = h->num_epochs;
  double *sx = malloc((size_t)ns * sizeof(double)), *sy = malloc((size_t)ns * sizeof(double));
  double *ex = malloc((size_t)(ne + 1) * sizeof(double)), *ey = malloc((size_t)(ne + 1) * sizeof(double));
  double *vx = malloc((size_t)(ne + 1) * sizeof(double)), *vy = malloc((size_t)(ne + 1) * sizeof(double));
  int rc = 1;
  if (!sx || !sy || !ex || !ey || !vx || !vy) goto out;
  for (int64_t i = 0; i < ns; i++) {
    sx[i] = (double)(i + 1);
    sy[i] = h->step_loss[i];
  }
  int64_t per_epoch = ne > 0 ? ns / ne : ns;
  int nv = 0;
  for (int i = 0; i < ne; i++) {
    ex[i] = (double)((i + 1) * per_epoch);
    ey[i] = h->epochs[i].loss;
    vx[i] = h->epochs[i].epoch;
    vy[i] = h->epochs[i].val_metric;
    nv += isfinite(vy[i]);
  }
  dml_series s[2] = {{"loss per step", sx, sy, ns}, {"epoch mean", ex, ey, ne}};
  char path[4200];
  snprintf(path, sizeof path, "%s/loss.svg", info->outdir);
  if (dml_viz_line_chart_svg(path, "Training loss", "step", "loss", s, ne > 0 ? 2 : 1)) {
    cli_fail("train", "loss curve");
    goto out;
  }
  if (nv > 0) {
    char yl[64];
    snprintf(yl, sizeof yl, "validation %s",
             dml_train_config_string(info->config, "validation.metric"));
    dml_series v = {yl, vx, vy, ne};
    snprintf(path, sizeof path, "%s/validation.svg", info->outdir);
    if (dml_viz_line_chart_svg(path, "Validation after each epoch", "epoch", yl, &v, 1)) {
      cli_fail("train", "validation curve");
      goto out;
    }
  }
  rc = 0;
out:
  free(sx);
  free(sy);
  free(ex);
  free(ey);
  free(vx);
  free(vy);
  return rc;
}

/* ---- tables ---- */

typedef struct {
  int k;
  double accuracy, macro_f1;
} knn_result;

static void print_row(FILE *f, int md, const char *what, const subset_metrics *m) {
  if (m->n < 2) return;
  char nmi[32];
  if (isfinite(m->nmi)) snprintf(nmi, sizeof nmi, "%.4f", m->nmi);
  else snprintf(nmi, sizeof nmi, "-");
  if (md)
    fprintf(f, "| %s | %s (%lld) | %.4f | %.4f | %.4f | %s |\n", what, m->name, (long long)m->n,
            m->r.precision_at_1, m->r.r_precision, m->r.map_at_r, nmi);
  else
    fprintf(f, "  %-22s %-14s %8.4f %12.4f %8.4f %8s\n", what, m->name, m->r.precision_at_1,
            m->r.r_precision, m->r.map_at_r, nmi);
}

static void tables(FILE *f, int md, const subset_metrics *trained, const subset_metrics *raw,
                   const subset_metrics *untrained, int have_baselines, const knn_result *knn,
                   int nknn) {
  if (md) {
    fprintf(f, "| embedding | test classes (items) | P@1 | R-Precision | MAP@R | NMI |\n");
    fprintf(f, "|---|---|---|---|---|---|\n");
  } else {
    fprintf(f, "  %-22s %-14s %8s %12s %8s %8s\n", "embedding", "test classes", "P@1",
            "R-Precision", "MAP@R", "NMI");
  }
  for (int s = 0; s < 3; s++) {
    if (have_baselines) {
      print_row(f, md, "raw input (Euclidean)", &raw[s]);
      print_row(f, md, "untrained network", &untrained[s]);
    }
    print_row(f, md, "trained network", &trained[s]);
  }
  if (nknn > 0) {
    if (md) {
      fprintf(f, "\n| kNN classification (vs. training embeddings) | accuracy | macro-F1 |\n");
      fprintf(f, "|---|---|---|\n");
    } else {
      fprintf(f, "\n  kNN classification against the training embeddings\n");
    }
    for (int i = 0; i < nknn; i++) {
      if (md)
        fprintf(f, "| k = %d | %.4f | %.4f |\n", knn[i].k, knn[i].accuracy, knn[i].macro_f1);
      else
        fprintf(f, "  k = %-3d accuracy %.4f  macro-F1 %.4f\n", knn[i].k, knn[i].accuracy,
                knn[i].macro_f1);
    }
  }
}

typedef struct {
  const train_run_info *info;
  const subset_metrics *trained, *raw, *untrained;
  int have_baselines;
  const knn_result *knn;
  int nknn;
  double train_s, train_ips, embed_ips, wall_s, rss;
  int pictures_grid, pictures_maps, pictures_val;
  const char *verdict;
} md_ctx;

static dml_status write_md(FILE *f, const char *path, void *ctx_) {
  (void)path;
  md_ctx *c = ctx_;
  const dml_train_config *cfg = c->info->config;
  const dml_train_history *h = c->info->history;
  fprintf(f, "# %s\n\n", dml_train_config_string(cfg, "name"));
  fprintf(f, "- data: `%s` (%s)\n", dml_train_config_string(cfg, "data.train"),
          dml_train_config_string(cfg, "data.format"));
  if (c->info->open_set) {
    fprintf(f, "- open set: classes");
    for (int i = 0; i < c->info->num_unseen; i++) fprintf(f, " %d", c->info->unseen[i]);
    fprintf(f, " kept out of training\n");
  }
  const char *model = dml_train_config_string(cfg, "model");
  fprintf(f, "- model: `%s`\n", *model ? model : "(model_text in config.json)");
  fprintf(f, "- loss: `%s`\n", dml_train_config_string(cfg, "loss"));
  fprintf(f, "- %d epochs, %lld steps, seed %lld, %d threads\n", h->num_epochs,
          (long long)h->num_steps, (long long)dml_train_config_int(cfg, "seed"),
          c->info->threads);
  fprintf(f, "- training %.1f s (%.0f images/s), embedding %.0f images/s, wall %.1f s, peak "
             "memory %.0f MiB\n\n",
          c->train_s, c->train_ips, c->embed_ips, c->wall_s, c->rss);
  fprintf(f, "## Retrieval (query = reference set, self excluded)\n\n");
  tables(f, 1, c->trained, c->raw, c->untrained, c->have_baselines, c->knn, c->nknn);
  if (c->verdict) fprintf(f, "\n%s\n", c->verdict);
  if (h->num_epochs > 0) {
    fprintf(f, "\n## Epochs\n\n| epoch | loss | validation | seconds | images/s |\n|---|---|---|---|---|\n");
    for (int i = 0; i < h->num_epochs; i++) {
      const dml_epoch_record *r = &h->epochs[i];
      char v[32];
      if (isfinite(r->val_metric)) snprintf(v, sizeof v, "%.4f%s", r->val_metric,
                                            r->epoch == h->best_epoch ? " (best)" : "");
      else snprintf(v, sizeof v, "-");
      fprintf(f, "| %d | %.4f | %s | %.1f | %.0f |\n", r->epoch, r->loss, v, r->seconds,
              r->images_per_s);
    }
  }
  fprintf(f, "\n## Pictures\n\n");
  if (c->pictures_grid)
    fprintf(f, "Queries (blue frame) and their five nearest test images: green = same class, "
               "red = another class.\n\n![retrieval](retrieval.png)\n\n");
  if (c->pictures_maps)
    fprintf(f, "![t-SNE map](map_tsne.png)\n\n![PCA map](map_pca.png)\n\n");
  fprintf(f, "![loss](loss.svg)\n\n");
  if (c->pictures_val) fprintf(f, "![validation](validation.svg)\n");
  return ferror(f) ? DML_ERR_IO : DML_OK;
}

/* Writes the text through cli_write_text's atomic path: formats into memory first. */
static int write_report_md(const char *path, md_ctx *ctx) {
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (!mem) return 1;
  write_md(mem, path, ctx);
  fclose(mem);
  int rc = cli_write_text(path, buf) != DML_OK;
  if (rc) cli_fail("train", "writing report.md");
  free(buf);
  return rc;
}

int train_report_baselines(train_run_info *info, dml_model *m, const dml_dataset *test,
                           dml_distance dist, uint64_t seed) {
  int64_t d = dml_model_output_numel(m);
  float *emb = NULL;
  if (train_report_embed(m, test, &emb, NULL)) {
    cli_fail("train", "embedding the test set with the untrained network");
    return 1;
  }
  int first = info->open_set ? SUBSET_UNSEEN : SUBSET_ALL;
  for (int s = first; s <= SUBSET_ALL; s++) {
    if (s == SUBSET_SEEN) continue;
    if (eval_subset(info, s, test->x, test->example_numel, test->labels, test->n,
                    DML_DIST_EUCLIDEAN, seed, 0, &info->raw[s]) ||
        eval_subset(info, s, emb, d, test->labels, test->n, dist, seed, 0, &info->untrained[s])) {
      free(emb);
      cli_fail("train", "baseline evaluation");
      return 1;
    }
  }
  free(emb);
  info->have_baselines = 1;
  return 0;
}

int train_report_write(const train_run_info *info, dml_model *m, const dml_dataset *train,
                       const dml_dataset *test, dml_distance dist, uint64_t seed) {
  const dml_train_config *cfg = info->config;
  const dml_train_history *h = info->history;
  int64_t d = dml_model_output_numel(m);
  int rc = 1;
  float *emb = NULL, *train_emb = NULL;
  int32_t *pred = NULL;
  cJSON *root = NULL;
  char path[4200];
  subset_metrics trained[3];
  memset(trained, 0, sizeof trained);
  const subset_metrics *raw = info->raw, *untrained = info->untrained;
  knn_result knn[16];
  int nknn = 0;
  double embed_s = 0, tsne_s = 0;
  int have_baselines = info->have_baselines;

  /* the evaluated model, usable by dml embed */
  char meta[8192];
  train_checkpoint_metadata(info, train, meta, sizeof meta);
  snprintf(path, sizeof path, "%s/model", info->outdir);
  if (dml_checkpoint_save(path, m, NULL, meta)) {
    cli_fail("train", "saving the model");
    goto out;
  }
  if (test->n < 2) {
    printf("no test set: nothing to evaluate (set data.test or a split)\n");
    rc = 0;
    goto out;
  }
  if (train_report_embed(m, test, &emb, &embed_s)) {
    cli_fail("train", "embedding the test set");
    goto out;
  }
  int first = info->open_set ? SUBSET_UNSEEN : SUBSET_ALL;
  for (int s = first; s <= SUBSET_ALL; s++) {
    if (eval_subset(info, s, emb, d, test->labels, test->n, dist, seed, 1, &trained[s])) {
      cli_fail("train", "evaluation");
      goto out;
    }
  }
  /* kNN classification when every test class was trained */
  if (!info->open_set) {
    int64_t ks[16];
    int nk = dml_train_config_ints(cfg, "eval.knn", ks, 16);
    int32_t ncls = max_label(train, test) + 1;
    if (nk > 0 && train->n > 0) {
      if (train_report_embed(m, train, &train_emb, NULL) ||
          !(pred = malloc((size_t)test->n * sizeof(int32_t)))) {
        cli_fail("train", "embedding the training set");
        goto out;
      }
      for (int i = 0; i < nk && i < 16; i++) {
        dml_classification_report cr;
        if (ks[i] < 1 ||
            dml_knn_classify(train_emb, train->labels, train->n, emb, test->n, d, dist, ks[i],
                             DML_VOTE_MAJORITY, ncls, pred, NULL) ||
            dml_classification_report_compute(test->labels, pred, test->n, ncls, &cr)) {
          cli_fail("train", "kNN classification (eval.knn)");
          goto out;
        }
        knn[nknn++] = (knn_result){(int)ks[i], cr.accuracy, cr.macro_f1};
        dml_classification_report_free(&cr);
      }
    }
  }
  /* arrays for other tools */
  int64_t shp[2] = {test->n, d};
  snprintf(path, sizeof path, "%s/test_embeddings.npy", info->outdir);
  if (dml_npy_write(path, DML_NPY_F32, 2, shp, emb)) {
    cli_fail("train", "writing test_embeddings.npy");
    goto out;
  }
  snprintf(path, sizeof path, "%s/test_labels.npy", info->outdir);
  if (dml_npy_write(path, DML_NPY_I32, 1, shp, test->labels)) {
    cli_fail("train", "writing test_labels.npy");
    goto out;
  }
  /* pictures */
  int pictures = dml_train_config_bool(cfg, "eval.pictures");
  int grid = 0, maps = 0;
  if (pictures) {
    snprintf(path, sizeof path, "%s/retrieval.png", info->outdir);
    if (write_retrieval_grid(info, test, train, emb, d, dist, seed, path)) goto out;
    grid = test->ndim == 3 && (test->shape[0] == 1 || test->shape[0] == 3);
    if (write_maps(info, test, train, emb, d, seed, &tsne_s)) goto out;
    maps = 1;
    if (write_curves(info)) goto out;
  }
  double wall = train_now() - info->t_start;
  double rss = peak_rss_mb();
  double train_ips = h->train_seconds > 0 ? (double)h->images / h->train_seconds : 0;
  double embed_ips = embed_s > 0 ? (double)test->n / embed_s : 0;
  const char *verdict = NULL;
  char vbuf[512];
  if (info->open_set && have_baselines && trained[SUBSET_UNSEEN].n >= 2) {
    double tm = trained[SUBSET_UNSEEN].r.map_at_r, rm = raw[SUBSET_UNSEEN].r.map_at_r;
    if (tm <= rm)
      snprintf(vbuf, sizeof vbuf,
               "On the unseen classes the trained embedding retrieves no better than raw input "
               "(MAP@R %.4f vs %.4f): it has not learned a metric that transfers beyond the "
               "training classes.", tm, rm);
    else
      snprintf(vbuf, sizeof vbuf,
               "On the unseen classes the trained embedding retrieves better than raw input "
               "(MAP@R %.4f vs %.4f, %+.1f points).", tm, rm, 100 * (tm - rm));
    verdict = vbuf;
  }
  /* metrics.json */
  root = cJSON_CreateObject();
  if (!root) goto out;
  cJSON_AddStringToObject(root, "recipe", dml_train_config_string(cfg, "name"));
  cJSON_AddStringToObject(root, "framework", "dml");
  cJSON_AddNumberToObject(root, "threads", info->threads);
  cJSON_AddNumberToObject(root, "epochs", h->num_epochs);
  cJSON_AddNumberToObject(root, "seed", (double)dml_train_config_int(cfg, "seed"));
  cJSON_AddStringToObject(root, "loss", dml_train_config_string(cfg, "loss"));
  cJSON *tj = cJSON_AddObjectToObject(root, "train");
  cJSON_AddNumberToObject(tj, "images", (double)h->images);
  cJSON_AddNumberToObject(tj, "seconds", h->train_seconds);
  cJSON_AddNumberToObject(tj, "images_per_s", train_ips);
  cJSON_AddNumberToObject(tj, "steps", (double)h->num_steps);
  cJSON_AddNumberToObject(tj, "best_epoch", h->best_epoch);
  cJSON *ej = cJSON_AddObjectToObject(root, "embed");
  cJSON_AddNumberToObject(ej, "images", (double)test->n);
  cJSON_AddNumberToObject(ej, "seconds", embed_s);
  cJSON_AddNumberToObject(ej, "images_per_s", embed_ips);
  cJSON_AddNumberToObject(root, "wall_seconds", wall);
  cJSON_AddNumberToObject(root, "peak_rss_mb", rss);
  cJSON *ev = cJSON_AddObjectToObject(root, "eval");
  for (int s = first; s <= SUBSET_ALL; s++)
    if (trained[s].n >= 2) cJSON_AddItemToObject(ev, trained[s].name, subset_json(&trained[s]));
  if (nknn > 0) {
    cJSON *ka = cJSON_AddArrayToObject(ev, "knn");
    for (int i = 0; i < nknn; i++) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "k", knn[i].k);
      cJSON_AddNumberToObject(o, "accuracy", knn[i].accuracy);
      cJSON_AddNumberToObject(o, "macro_f1", knn[i].macro_f1);
      cJSON_AddItemToArray(ka, o);
    }
  }
  if (have_baselines) {
    cJSON *b = cJSON_AddObjectToObject(root, "baselines");
    cJSON *rj = cJSON_AddObjectToObject(b, "raw_pixels"), *uj = cJSON_AddObjectToObject(b, "untrained");
    for (int s = first; s <= SUBSET_ALL; s++) {
      if (raw[s].n >= 2) cJSON_AddItemToObject(rj, raw[s].name, subset_json(&raw[s]));
      if (untrained[s].n >= 2) cJSON_AddItemToObject(uj, untrained[s].name, subset_json(&untrained[s]));
    }
  }
  cJSON *hj = cJSON_AddArrayToObject(root, "history");
  for (int i = 0; i < h->num_epochs; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "epoch", h->epochs[i].epoch);
    cJSON_AddNumberToObject(o, "loss", h->epochs[i].loss);
    if (isfinite(h->epochs[i].val_metric))
      cJSON_AddNumberToObject(o, "val_metric", h->epochs[i].val_metric);
    cJSON_AddNumberToObject(o, "seconds", h->epochs[i].seconds);
    cJSON_AddItemToArray(hj, o);
  }
  char *text = cJSON_Print(root);
  snprintf(path, sizeof path, "%s/metrics.json", info->outdir);
  if (!text || cli_write_text(path, text)) {
    free(text);
    cli_fail("train", "writing metrics.json");
    goto out;
  }
  free(text);
  md_ctx mc = {info, trained, raw, untrained, have_baselines, knn, nknn, h->train_seconds,
               train_ips, embed_ips, wall, rss, grid, maps,
               pictures && h->num_epochs > 0 && isfinite(h->epochs[0].val_metric), verdict};
  snprintf(path, sizeof path, "%s/report.md", info->outdir);
  if (write_report_md(path, &mc)) goto out;
  /* terminal */
  printf("\nretrieval on the test set (query = reference set, self excluded)\n");
  tables(stdout, 0, trained, raw, untrained, have_baselines, knn, nknn);
  if (verdict) printf("\n%s\n", verdict);
  printf("\ntraining %.1f s (%.0f images/s); embedding %.0f images/s; peak memory %.0f MiB; "
         "wall %.1f s%s\n",
         h->train_seconds, train_ips, embed_ips, rss, wall, tsne_s > 0 ? "" : "");
  printf("report: %s/report.md (metrics.json, pictures, model, log.jsonl)\n", info->outdir);
  rc = 0;
out:
  cJSON_Delete(root);
  free(emb);
  free(train_emb);
  free(pred);
  return rc;
}
