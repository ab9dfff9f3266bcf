#define _POSIX_C_SOURCE 200809L
/* KNN protocol (BENCHMARKS.md): a gallery of n x 128 random normal float32 rows (or embeddings
 * read from .npy files), 10,000 queries, k = 10, squared Euclidean (FAISS IndexFlatL2's
 * metric).
 *   - Exact: dml_knn_search, median of --reps runs.
 *   - Approximate (--approx, when dml is built with FAISS): for each FAISS factory string, a
 *     dml gallery is built (train + add, timed once) and searched (median of --reps), and its
 *     recall@k against the exact neighbours computed.
 * Neighbours are written next to the data; bench/knn_faiss.py reads them to time FAISS's own
 * indexes on the same arrays with the same parameters and compare.
 * Usage: bench_knn [--threads N] [--reps N] [--n N] [--nq N] [--k N]
 *                  [--gallery G.npy --queries Q.npy] [--approx "F1[:p=v];F2[:p=v]..."] --out DIR
 * Writes DIR/gallery.f32, DIR/queries.f32 (raw row-major float32), DIR/dml_ids.i64 (exact),
 * DIR/dml_approx_<i>.i64 and DIR/dml.json (sizes, times, recalls). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "dml/dml.h"

#define MAX_APPROX 8

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

/* One approximate index of the --approx list: "FACTORY" or "FACTORY:param=value". */
typedef struct {
  char factory[128], param[32];
  double value;
  double build_ms, search_ms, recall;
} approx_run;

static int parse_approx(const char *spec, approx_run *runs, int *nruns) {
  *nruns = 0;
  const char *p = spec;
  while (*p) {
    const char *end = strchr(p, ';');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > 0) {
      if (*nruns == MAX_APPROX || len >= sizeof runs[0].factory) return 1;
      approx_run *r = &runs[(*nruns)++];
      memset(r, 0, sizeof *r);
      memcpy(r->factory, p, len);
      char *colon = strchr(r->factory, ':');
      if (colon) {
        *colon = 0;
        char *eq = strchr(colon + 1, '=');
        if (!eq || (size_t)(eq - colon - 1) >= sizeof r->param) return 1;
        memcpy(r->param, colon + 1, (size_t)(eq - colon - 1));
        r->value = atof(eq + 1);
      }
    }
    p += len + (end ? 1 : 0);
  }
  return 0;
}

static double recall_at(const int64_t *got, const int64_t *truth, int64_t nq, int64_t k) {
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; i++)
    for (int64_t a = 0; a < k; a++)
      for (int64_t b = 0; b < k; b++) hits += got[i * k + a] == truth[i * k + b] && got[i * k + a] >= 0;
  return (double)hits / (double)(nq * k);
}

/* Reads a float32 [rows, cols] .npy file, keeping at most `limit` rows (0: all). */
static float *read_npy(const char *path, int64_t limit, int64_t *rows, int64_t *cols) {
  dml_npy a;
  if (dml_npy_read(path, &a) != DML_OK) {
    fprintf(stderr, "bench_knn: %s\n", dml_last_error());
    return NULL;
  }
  if (a.dtype != DML_NPY_F32 || a.ndim != 2) {
    fprintf(stderr, "bench_knn: %s must be float32 [rows, dims]\n", path);
    dml_npy_free(&a);
    return NULL;
  }
  *rows = limit > 0 && limit < a.shape[0] ? limit : a.shape[0];
  *cols = a.shape[1];
  float *x = malloc((size_t)(*rows * *cols) * sizeof *x);
  if (x) memcpy(x, a.data, (size_t)(*rows * *cols) * sizeof *x);
  dml_npy_free(&a);
  return x;
}

int main(int argc, char **argv) {
  int threads = 2, reps = 3, nruns = 0;
  int64_t n = 60000, nq = 10000, k = 10, dim = 128;
  const char *out = NULL, *gallery_path = NULL, *queries_path = NULL, *approx = "";
  approx_run runs[MAX_APPROX];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--nq") && i + 1 < argc) nq = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--k") && i + 1 < argc) k = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "--gallery") && i + 1 < argc) gallery_path = argv[++i];
    else if (!strcmp(argv[i], "--queries") && i + 1 < argc) queries_path = argv[++i];
    else if (!strcmp(argv[i], "--approx") && i + 1 < argc) approx = argv[++i];
    else {
      fprintf(stderr,
              "usage: %s [--threads N] [--reps N] [--n N] [--nq N] [--k N] [--gallery G.npy "
              "--queries Q.npy] [--approx SPEC] --out DIR\n",
              argv[0]);
      return 2;
    }
  }
  if (!out || reps < 1 || n < 1 || nq < 1 || k < 1 || !gallery_path != !queries_path ||
      parse_approx(approx, runs, &nruns)) {
    fprintf(stderr, "bench_knn: --out DIR is required; sizes must be positive; --gallery and "
                    "--queries go together; --approx is \"FACTORY[:param=value];...\"\n");
    return 2;
  }
  if (nruns && !dml_gallery_has_faiss()) {
    fprintf(stderr, "bench_knn: this dml is built without FAISS; approximate indexes skipped\n");
    nruns = 0;
  }
  dml_set_num_threads(threads);
  float *g, *q;
  if (gallery_path) {
    int64_t dq;
    g = read_npy(gallery_path, n, &n, &dim);
    q = g ? read_npy(queries_path, nq, &nq, &dq) : NULL;
    if (!g || !q || dq != dim) {
      fprintf(stderr, "bench_knn: could not read the gallery and queries (same width)\n");
      return 1;
    }
  } else {
    g = malloc((size_t)(n * dim) * sizeof(float));
    q = malloc((size_t)(nq * dim) * sizeof(float));
    if (g && q) {
      fill_normal(g, n * dim, 1);
      fill_normal(q, nq * dim, 2);
    }
  }
  int64_t *ids = malloc((size_t)(nq * k) * sizeof(int64_t));
  int64_t *aids = malloc((size_t)(nq * k) * sizeof(int64_t));
  float *dv = malloc((size_t)(nq * k) * sizeof(float));
  double *t = malloc((size_t)reps * sizeof(double));
  if (!g || !q || !ids || !aids || !dv || !t) {
    fprintf(stderr, "bench_knn: out of memory\n");
    return 1;
  }
  const int d = (int)dim; /* sgemm and the gallery take int widths */
  for (int r = 0; r < reps; r++) {
    const double t0 = now_ms();
    if (dml_knn_search(g, n, q, nq, d, DML_DIST_SQUARED_EUCLIDEAN, k, ids, dv) != DML_OK) {
      fprintf(stderr, "bench_knn: %s\n", dml_last_error());
      return 1;
    }
    t[r] = now_ms() - t0;
  }
  const double ms = median(t, reps);
  printf("dml exact      n=%-8lld nq=%lld k=%lld d=%d: %9.1f ms  %10.0f queries/s\n",
         (long long)n, (long long)nq, (long long)k, d, ms, 1e3 * (double)nq / ms);
  int rc = write_file(out, "gallery.f32", g, (size_t)(n * d) * sizeof(float)) ||
           write_file(out, "queries.f32", q, (size_t)(nq * d) * sizeof(float)) ||
           write_file(out, "dml_ids.i64", ids, (size_t)(nq * k) * sizeof(int64_t));
  for (int a = 0; a < nruns && !rc; a++) {
    approx_run *run = &runs[a];
    dml_gallery *gal = NULL;
    const double t0 = now_ms();
    if (dml_gallery_create(&gal, d, DML_DIST_SQUARED_EUCLIDEAN, run->factory) != DML_OK ||
        (run->param[0] && dml_gallery_set_param(gal, run->param, run->value) != DML_OK) ||
        dml_gallery_add(gal, g, n, NULL, NULL) != DML_OK) {
      fprintf(stderr, "bench_knn: %s: %s\n", run->factory, dml_last_error());
      dml_gallery_free(gal);
      return 1;
    }
    run->build_ms = now_ms() - t0;
    for (int r = 0; r < reps; r++) {
      const double t1 = now_ms();
      if (dml_gallery_search(gal, q, nq, k, aids, dv) != DML_OK) {
        fprintf(stderr, "bench_knn: %s: %s\n", run->factory, dml_last_error());
        return 1;
      }
      t[r] = now_ms() - t1;
    }
    run->search_ms = median(t, reps);
    run->recall = recall_at(aids, ids, nq, k);
    printf("dml %-14s %-14s build %9.1f ms  search %9.1f ms  %10.0f queries/s  recall@%lld "
           "%.4f\n",
           run->factory, run->param[0] ? run->param : "", run->build_ms, run->search_ms,
           1e3 * (double)nq / run->search_ms, (long long)k, run->recall);
    char name[64];
    snprintf(name, sizeof name, "dml_approx_%d.i64", a);
    rc = write_file(out, name, aids, (size_t)(nq * k) * sizeof(int64_t));
    dml_gallery_free(gal);
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/dml.json", out);
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    return 1;
  }
  fprintf(f, "{\"n\": %lld, \"nq\": %lld, \"k\": %lld, \"d\": %d, \"threads\": %d, \"ms\": %.3f,"
             " \"data\": \"%s\", \"approx\": [",
          (long long)n, (long long)nq, (long long)k, d, threads, ms,
          gallery_path ? "npy" : "random normal");
  for (int a = 0; a < nruns; a++)
    fprintf(f, "%s{\"factory\": \"%s\", \"param\": \"%s\", \"value\": %g, \"build_ms\": %.3f, "
               "\"search_ms\": %.3f, \"recall\": %.6f}",
            a ? ", " : "", runs[a].factory, runs[a].param, runs[a].value, runs[a].build_ms,
            runs[a].search_ms, runs[a].recall);
  fprintf(f, "]}\n");
  fclose(f);
  free(g);
  free(q);
  free(ids);
  free(aids);
  free(dv);
  free(t);
  return rc;
}
