#define _POSIX_C_SOURCE 200809L /* open_memstream */
/* LOSS protocol (BENCHMARKS.md): forward + backward time of every loss with its default miner
 * on random L2-normalised embeddings, D = 128, 16 classes, B = 256 and 1024. The PyTorch side
 * (bench/losses_torch.py) reads this program's JSON output for the specs, the parameter values
 * and the loss values, regenerates the same embeddings (bench_fill) and times the same losses;
 * bench/losses_report.py prints the ratios.
 * Usage: bench_losses [--threads N] [--reps N] [--batches 256,1024] [--only NAME] --json FILE */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "dml/dml.h"

#define DIM 128
#define CLASSES 16

/* name, dml spec: each loss with its default miner */
static const char *const CASES[][2] = {
    {"contrastive", "contrastive"},
    {"triplet", "triplet"},
    {"triplet_semihard", "triplet margin=0.2 miner=semihard"},
    {"triplet_batch_hard", "triplet margin=0.2 miner=batch_hard"},
    {"margin", "margin"},
    {"lifted", "lifted"},
    {"generalized_lifted", "generalized_lifted"},
    {"npair", "npair"},
    {"multi_similarity", "multi_similarity"},
    {"circle", "circle"},
    {"supcon", "supcon"},
    {"ntxent", "ntxent"},
    {"proxy_nca", "proxy_nca"},
    {"proxy_anchor", "proxy_anchor"},
    {"normalized_softmax", "normalized_softmax"},
    {"cosface", "cosface"},
    {"arcface", "arcface"},
    {"subcenter_arcface", "subcenter_arcface"},
    {"cross_entropy", "cross_entropy"},
    {"contrastive_xbm", "contrastive memory=1024"},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

/* Values in [-1, 1) from an integer hash; losses_torch.py's fill() reproduces them. */
static void bench_fill(float *x, int64_t n, uint32_t salt) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t h = (uint32_t)i * 2654435761u + salt * 2246822519u;
    h ^= h >> 16;
    h *= 2246822507u;
    h ^= h >> 13;
    x[i] = (float)((double)(h >> 8) / 16777216.0 * 2.0 - 1.0);
  }
}

static void make_batch(float *emb, int32_t *labels, int64_t b) {
  bench_fill(emb, b * DIM, 1);
  for (int64_t i = 0; i < b; i++) {
    double s = 0;
    for (int k = 0; k < DIM; k++) s += (double)emb[i * DIM + k] * emb[i * DIM + k];
    const float inv = (float)(1.0 / sqrt(s));
    for (int k = 0; k < DIM; k++) emb[i * DIM + k] *= inv;
    labels[i] = (int32_t)((i * 7 + i / 16) % CLASSES);
  }
}

static void write_params(FILE *f, dml_param_store *ps) {
  fprintf(f, "{");
  for (int p = 0; ps && p < dml_params_count(ps); p++) {
    dml_param *q = dml_params_get(ps, p);
    fprintf(f, "%s\"%s\": {\"shape\": [", p ? ", " : "", q->name);
    for (int k = 0; k < q->ndim; k++) fprintf(f, "%s%lld", k ? ", " : "", (long long)q->shape[k]);
    fprintf(f, "], \"data\": [");
    for (int64_t k = 0; k < q->numel; k++) fprintf(f, "%s%.9g", k ? "," : "", q->value[k]);
    fprintf(f, "]}");
  }
  fprintf(f, "}");
}

int main(int argc, char **argv) {
  int threads = 2, reps = 20;
  const char *json = NULL, *only = NULL;
  int64_t batches[4] = {256, 1024};
  int n_batches = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
      n_batches = 0;
      for (char *s = argv[++i]; *s && n_batches < 4;) {
        batches[n_batches++] = strtoll(s, &s, 10);
        if (*s == ',') s++;
      }
    } else {
      fprintf(stderr, "usage: %s [--threads N] [--reps N] [--batches 256,1024] [--only NAME] "
                      "--json FILE\n", argv[0]);
      return 2;
    }
  }
  if (!json || reps < 1) {
    fprintf(stderr, "bench_losses: --json FILE is required\n");
    return 2;
  }
  dml_set_num_threads(threads);
  FILE *f = fopen(json, "w");
  if (!f) {
    perror(json);
    return 1;
  }
  fprintf(f, "{\"threads\": %d, \"dim\": %d, \"classes\": %d, \"results\": [\n", threads, DIM,
          CLASSES);
  int first = 1;
  for (int bi = 0; bi < n_batches; bi++) {
    const int64_t b = batches[bi];
    float *emb = malloc((size_t)(b * DIM) * sizeof(float));
    float *grad = malloc((size_t)(b * DIM) * sizeof(float));
    int32_t *labels = malloc((size_t)b * sizeof(int32_t));
    make_batch(emb, labels, b);
    for (int c = 0; c < N_CASES; c++) {
      if (only && strcmp(only, CASES[c][0])) continue;
      dml_loss_config cfg = {DIM, CLASSES, 1};
      dml_loss *l = NULL;
      if (dml_loss_new(CASES[c][1], &cfg, &l) != DML_OK) {
        fprintf(stderr, "%s: %s\n", CASES[c][0], dml_last_error());
        continue;
      }
      float value = 0;
      double *t = malloc((size_t)reps * sizeof(double));
      int failed = 0;
      /* the parameters and the loss value reported are those of the first call */
      char *params_json = NULL;
      size_t params_len = 0;
      FILE *pj = open_memstream(&params_json, &params_len);
      write_params(pj, dml_loss_params(l));
      fclose(pj);
      for (int r = -3; r < reps && !failed; r++) {
        float v;
        if (dml_loss_params(l)) dml_params_zero_grad(dml_loss_params(l));
        const double t0 = now_ms();
        if (dml_loss_compute(l, emb, labels, b, DIM, NULL, &v, grad) != DML_OK) {
          fprintf(stderr, "%s: %s\n", CASES[c][0], dml_last_error());
          failed = 1;
        }
        const double t1 = now_ms();
        if (r == -3) value = v;
        if (r >= 0) t[r] = t1 - t0;
      }
      if (!failed) {
        const double ms = median(t, reps);
        printf("%-20s B=%-5lld %9.3f ms  loss %.6g\n", CASES[c][0], (long long)b, ms, value);
        fprintf(f, "%s{\"name\": \"%s\", \"spec\": \"%s\", \"b\": %lld, \"ms\": %.6f, "
                   "\"loss\": %.9g, \"params\": %s}",
                first ? "" : ",\n", CASES[c][0], dml_loss_spec(l), (long long)b, ms, value,
                params_json);
        first = 0;
      }
      free(params_json);
      free(t);
      dml_loss_free(l);
    }
    free(emb);
    free(grad);
    free(labels);
  }
  fprintf(f, "\n]}\n");
  fclose(f);
  return 0;
}
