#define _POSIX_C_SOURCE 200809L
/* KNN protocol (BENCHMARKS.md), exact search: a gallery of n x 128 random normal float32 rows,
 * 10,000 queries, k = 10, squared Euclidean (FAISS IndexFlatL2's metric). dml_knn_search is
 * timed (median of --reps runs) and its neighbours written next to the data, which
 * bench/knn_faiss.py reads to time faiss.IndexFlatL2 on the same arrays and compare the ids.
 * Usage: bench_knn [--threads N] [--reps N] [--n N] [--nq N] [--k N] --out DIR
 * Writes DIR/gallery.f32, DIR/queries.f32 (raw row-major float32), DIR/dml_ids.i64 and
 * DIR/dml.json (sizes, median ms, queries per second). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "dml/dml.h"

#define DIM 128

/* Standard normal values from a counter hash and Box-Muller (deterministic, no state). */
static uint32_t hash32(uint64_t i, uint32_t salt) {
  uint32_t h = (uint32_t)i * 2654435761u ^ (uint32_t)(i >> 32) * 40503u;
  h += salt * 2246822519u;
  h ^= h >> 16;
  h *= 2246822507u;
  h ^= h >> 13;
  h *= 3266489909u;
  h ^= h >> 16;
  return h;
}

static void fill_normal(float *x, int64_t n, uint32_t salt) {
  for (int64_t i = 0; i < n; i += 2) {
    const double u1 = ((double)hash32((uint64_t)i, salt) + 1.0) / 4294967297.0;
    const double u2 = (double)hash32((uint64_t)i + 1, salt) / 4294967296.0;
    const double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    x[i] = (float)(r * cos(a));
    if (i + 1 < n) x[i + 1] = (float)(r * sin(a));
  }
}

static int write_file(const char *dir, const char *name, const void *p, size_t bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f)) {
    perror(path);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int threads = 2, reps = 3;
  int64_t n = 60000, nq = 10000, k = 10;
  const char *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--nq") && i + 1 < argc) nq = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--k") && i + 1 < argc) k = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--threads N] [--reps N] [--n N] [--nq N] [--k N] --out DIR\n",
              argv[0]);
      return 2;
    }
  }
  if (!out || reps < 1 || n < 1 || nq < 1 || k < 1) {
    fprintf(stderr, "bench_knn: --out DIR is required; sizes must be positive\n");
    return 2;
  }
  dml_set_num_threads(threads);
  float *g = malloc((size_t)(n * DIM) * sizeof(float));
  float *q = malloc((size_t)(nq * DIM) * sizeof(float));
  int64_t *ids = malloc((size_t)(nq * k) * sizeof(int64_t));
  float *dv = malloc((size_t)(nq * k) * sizeof(float));
  double *t = malloc((size_t)reps * sizeof(double));
  if (!g || !q || !ids || !dv || !t) {
    fprintf(stderr, "bench_knn: out of memory\n");
    return 1;
  }
  fill_normal(g, n * DIM, 1);
  fill_normal(q, nq * DIM, 2);
  for (int r = 0; r < reps; r++) {
    const double t0 = now_ms();
    if (dml_knn_search(g, n, q, nq, DIM, DML_DIST_SQUARED_EUCLIDEAN, k, ids, dv) != DML_OK) {
      fprintf(stderr, "bench_knn: %s\n", dml_last_error());
      return 1;
    }
    t[r] = now_ms() - t0;
  }
  const double ms = median(t, reps);
  printf("dml exact      n=%-8lld nq=%lld k=%lld d=%d: %9.1f ms  %10.0f queries/s\n",
         (long long)n, (long long)nq, (long long)k, DIM, ms, 1e3 * (double)nq / ms);
  int rc = write_file(out, "gallery.f32", g, (size_t)(n * DIM) * sizeof(float)) ||
           write_file(out, "queries.f32", q, (size_t)(nq * DIM) * sizeof(float)) ||
           write_file(out, "dml_ids.i64", ids, (size_t)(nq * k) * sizeof(int64_t));
  char path[4096];
  snprintf(path, sizeof path, "%s/dml.json", out);
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    return 1;
  }
  fprintf(f, "{\"n\": %lld, \"nq\": %lld, \"k\": %lld, \"d\": %d, \"threads\": %d, \"ms\": %.3f}\n",
          (long long)n, (long long)nq, (long long)k, DIM, threads, ms);
  fclose(f);
  free(g);
  free(q);
  free(ids);
  free(dv);
  free(t);
  return rc;
}
