/* bench_gemm: single-precision matrix multiply (OpenBLAS cblas_sgemm, the routine dml's matmul,
 * linear and convolution ops call) in GFLOP/s, at 2048^3 and at the shapes of the reference
 * CNN's convolutions (as im2col GEMMs) and of the CNN's and MLP's linear layers at batch 192,
 * against the processor's peak:
 *   peak = cores x FMA units x float32 lanes x 2 (multiply + add) x clock
 * with cores = the thread count used, and both the AVX-512 (16 lanes) and the AVX2 (8 lanes)
 * figure, because OPENBLAS_CORETYPE=Haswell (needed for Debian's OpenBLAS on Zen 5) selects
 * OpenBLAS's AVX2 kernels. The clock is the mean "cpu MHz" of /proc/cpuinfo unless --ghz says
 * otherwise; under a hypervisor that is the nominal (TSC) clock, and the core may boost above it,
 * so the clock is also measured (on x86-64) by timing a chain of dependent integer additions,
 * one cycle each, and the peaks are given at both clocks.
 * The 2048^3 product is also timed through dml_op_matmul (graph leaf copies and all).
 *
 * Each shape: one warm-up call, then `reps` repetitions, each of as many calls as make about
 * 20 ms; the median per-call time gives GFLOP/s = 2 M N K / t. */
#define _POSIX_C_SOURCE 200809L

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "dml/dml.h"

typedef struct {
  const char *id;
  const char *what;
  int m, n, k;
  int ta, tb; /* row-major op(A)[m,k], op(B)[k,n] */
} gemm_shape;

/* Convolutions as dml's portable path computes them (src/ops/im2col.c): im2col over chunks of
 * images whose columns sit side by side, at most 4 Mi floats of columns per chunk, so conv1 takes
 * the whole batch of 192 and conv2 chunks of 74 images (P = 74 * 196 = 14504 columns):
 * forward y[O,P] = W[O,C*9] col[C*9,P]; weight gradient dW += dy[O,P] col^T; column gradient
 * dcol[C*9,P] = W^T dy. (Built with AVX-512, dml runs these convolutions on its direct kernels
 * instead; the layer table of run_ops.sh shows what those achieve.) Linear layers at batch 192:
 * y = x W^T, dx = dy W, dW = dy^T x. */
static const gemm_shape shapes[] = {
    {"square.2048", "2048^3", 2048, 2048, 2048, 0, 0},
    {"cnn.conv1.fwd", "conv1 fwd W[32,9] col[9,192*784]", 32, 150528, 9, 0, 0},
    {"cnn.conv1.dw", "conv1 dW dy[32,192*784] col^T", 32, 9, 150528, 0, 1},
    {"cnn.conv2.fwd", "conv2 fwd W[64,288] col[288,74*196]", 64, 14504, 288, 0, 0},
    {"cnn.conv2.dw", "conv2 dW dy[64,74*196] col^T", 64, 288, 14504, 0, 1},
    {"cnn.conv2.dcol", "conv2 dcol W^T dy[64,74*196]", 288, 14504, 64, 1, 0},
    {"cnn.fc.fwd", "fc 3136->128 fwd x W^T", 192, 128, 3136, 0, 1},
    {"cnn.fc.dx", "fc dx = dy W", 192, 3136, 128, 0, 0},
    {"cnn.fc.dw", "fc dW = dy^T x", 128, 3136, 192, 1, 0},
    {"mlp.fc1.fwd", "fc1 784->512 fwd", 192, 512, 784, 0, 1},
    {"mlp.fc1.dw", "fc1 dW", 512, 784, 192, 1, 0},
    {"mlp.fc2.fwd", "fc2 512->512 fwd", 192, 512, 512, 0, 1},
    {"mlp.fc2.dx", "fc2 dx", 192, 512, 512, 0, 0},
    {"mlp.fc2.dw", "fc2 dW", 512, 512, 192, 1, 0},
    {"mlp.fc3.fwd", "fc3 512->128 fwd", 192, 128, 512, 0, 1},
    {"mlp.fc3.dx", "fc3 dx", 192, 512, 128, 0, 0},
    {"mlp.fc3.dw", "fc3 dW", 128, 512, 192, 1, 0},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

typedef struct {
  double ms, gflops;
  int calls;
} gemm_result;

static void fill(float *x, int64_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1u;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)((double)(s >> 8) / 16777216.0 - 0.5);
  }
}

/* Mean "cpu MHz" over the processors of /proc/cpuinfo, in GHz; 0 when unreadable. */
static double cpuinfo_ghz(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return 0;
  char line[512];
  double sum = 0;
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "cpu MHz", 7) != 0) continue;
    const char *colon = strchr(line, ':');
    if (!colon) continue;
    double mhz = strtod(colon + 1, NULL);
    if (mhz > 0) {
      sum += mhz;
      n++;
    }
  }
  fclose(f);
  return n ? sum / n / 1e3 : 0;
}

/* Clock actually running, in GHz: a chain of dependent 1-cycle additions, 20 per loop trip,
 * timed on the calling thread; the fastest of 5 (another process sharing the core only slows the
 * chain down). 0 where not measurable (not x86-64 gcc/clang). */
static double measured_ghz(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  double g[5];
  const uint64_t trips = 10000000;
  for (int r = 0; r < 5; r++) {
    uint64_t x = 0;
    double t0 = now_ms();
    for (uint64_t i = 0; i < trips; i++)
      __asm__ volatile("addq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\t"
                       "addq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\t"
                       "addq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\t"
                       "addq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\t"
                       "addq $1, %0\n\taddq $1, %0\n\taddq $1, %0\n\taddq $1, %0"
                       : "+r"(x));
    double ms = now_ms() - t0;
    g[r] = ms > 0 && x == 20 * trips ? 20.0 * (double)trips / (ms * 1e6) : 0;
  }
  double best = 0;
  for (int r = 0; r < 5; r++)
    if (g[r] > best) best = g[r];
  return best;
#else
  return 0;
#endif
}

static void sgemm(const gemm_shape *s, const float *a, const float *b, float *c) {
  cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
              s->m, s->n, s->k, 1.0f, a, s->ta ? s->m : s->k, b, s->tb ? s->k : s->n, 0.0f, c,
              s->n);
}

static int bench_shape(const gemm_shape *s, int reps, gemm_result *r) {
  int64_t na = (int64_t)s->m * s->k, nb = (int64_t)s->k * s->n, nc = (int64_t)s->m * s->n;
  float *a = dml_alloc_aligned(na * 4), *b = dml_alloc_aligned(nb * 4),
        *c = dml_alloc_aligned(nc * 4);
  double *t = malloc((size_t)reps * sizeof(double));
  if (!a || !b || !c || !t) {
    fprintf(stderr, "bench_gemm: out of memory for %s\n", s->id);
    dml_free_aligned(a);
    dml_free_aligned(b);
    dml_free_aligned(c);
    free(t);
    return 1;
  }
  fill(a, na, 1);
  fill(b, nb, 2);
  double t0 = now_ms();
  sgemm(s, a, b, c);
  double one = now_ms() - t0;
  int calls = one > 0 ? (int)(20.0 / one) : 1000;
  if (calls < 1) calls = 1;
  if (calls > 10000) calls = 10000;
  for (int rep = 0; rep < reps; rep++) {
    t0 = now_ms();
    for (int i = 0; i < calls; i++) sgemm(s, a, b, c);
    t[rep] = (now_ms() - t0) / calls;
  }
  r->ms = median(t, reps);
  r->gflops = 2.0 * s->m * s->n * (double)s->k / (r->ms * 1e6);
  r->calls = calls;
  dml_free_aligned(a);
  dml_free_aligned(b);
  dml_free_aligned(c);
  free(t);
  return 0;
}

/* 2048^3 through the public API: graph leaves (copies of a and b) + dml_op_matmul. */
static int bench_dml_matmul(int reps, gemm_result *r) {
  const int n = 2048;
  int64_t shape[2] = {n, n};
  float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float));
  double *t = malloc((size_t)reps * sizeof(double));
  dml_graph *g = NULL;
  int rc = 1;
  if (!a || !b || !t || dml_graph_new(&g)) {
    fprintf(stderr, "bench_gemm: set-up failed: %s\n", dml_last_error());
    goto done;
  }
  fill(a, (int64_t)n * n, 1);
  fill(b, (int64_t)n * n, 2);
  for (int rep = -1; rep < reps; rep++) {
    dml_node *x, *y, *z;
    double t0 = now_ms();
    dml_graph_reset(g);
    if (dml_graph_input(g, a, 2, shape, 0, &x) || dml_graph_input(g, b, 2, shape, 0, &y) ||
        dml_op_matmul(g, x, y, 0, 0, &z)) {
      fprintf(stderr, "bench_gemm: dml_op_matmul: %s\n", dml_last_error());
      goto done;
    }
    if (rep >= 0) t[rep] = now_ms() - t0;
  }
  r->ms = median(t, reps);
  r->gflops = 2.0 * n * n * (double)n / (r->ms * 1e6);
  r->calls = 1;
  rc = 0;
done:
  dml_graph_free(g);
  free(a);
  free(b);
  free(t);
  return rc;
}

static int usage(FILE *f, int code) {
  fprintf(f, "usage: bench_gemm [--threads N] [--reps N] [--ghz X] [--fma-units N] [--json FILE]\n"
             "  sgemm GFLOP/s at 2048^3 and at the reference models' shapes, against the peak\n"
             "  cores x FMA units x lanes x 2 x clock (AVX-512: 16 lanes, AVX2: 8 lanes).\n"
             "  --threads N     threads, also the core count of the peak (default 2)\n"
             "  --reps N        timed repetitions per shape, median reported (default 7)\n"
             "  --ghz X         clock for the peak (default: mean cpu MHz of /proc/cpuinfo)\n"
             "  --fma-units N   FMA units per core (default 2, as AMD Zen 5)\n"
             "  --json FILE     also write the results as JSON\n");
  return code;
}

int main(int argc, char **argv) {
  int threads = 2, reps = 7, fma_units = 2;
  double ghz = 0;
  const char *json_path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0);
    if (i + 1 >= argc) {
      fprintf(stderr, "bench_gemm: option %s needs a value\n", a);
      return usage(stderr, 2);
    }
    const char *v = argv[++i];
    char *end = NULL;
    if (!strcmp(a, "--threads")) threads = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--reps")) reps = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--fma-units")) fma_units = (int)strtol(v, &end, 10);
    else if (!strcmp(a, "--ghz")) ghz = strtod(v, &end);
    else if (!strcmp(a, "--json")) json_path = v;
    else {
      fprintf(stderr, "bench_gemm: unknown option %s\n", a);
      return usage(stderr, 2);
    }
    if (end && *end) {
      fprintf(stderr, "bench_gemm: %s expects a number, got '%s'\n", a, v);
      return 2;
    }
  }
  if (threads < 1 || reps < 1 || fma_units < 1 || ghz < 0) {
    fprintf(stderr, "bench_gemm: need --threads >= 1, --reps >= 1, --fma-units >= 1, --ghz > 0\n");
    return 2;
  }
  const char *ghz_source = "--ghz";
  if (ghz == 0) {
    ghz = cpuinfo_ghz();
    ghz_source = "/proc/cpuinfo cpu MHz";
    if (ghz == 0) {
      fprintf(stderr, "bench_gemm: cannot read the clock from /proc/cpuinfo; give --ghz\n");
      return 2;
    }
  }
  dml_set_num_threads(threads);
  double mghz = measured_ghz();
  double lanes_flops = (double)threads * fma_units * 2; /* per lane per cycle, all cores */
  double peak512 = lanes_flops * 16 * ghz, peak256 = lanes_flops * 8 * ghz;
  double mpeak512 = lanes_flops * 16 * mghz, mpeak256 = lanes_flops * 8 * mghz;
  const char *core = openblas_get_corename();
  const char *coretype = getenv("OPENBLAS_CORETYPE");
  printf("sgemm (%s; kernel core %s, OPENBLAS_CORETYPE=%s), %d threads, median of %d\n",
         openblas_get_config(), core, coretype ? coretype : "(unset)", threads, reps);
  printf("peak = %d cores x %d FMA units x lanes x 2 x clock\n", threads, fma_units);
  printf("  at %.3f GHz (%s): AVX-512 %.1f GFLOP/s, AVX2 %.1f GFLOP/s\n", ghz, ghz_source,
         peak512, peak256);
  if (mghz > 0)
    printf("  at %.3f GHz (measured, dependent-add chain): AVX-512 %.1f GFLOP/s, AVX2 %.1f "
           "GFLOP/s\n",
           mghz, mpeak512, mpeak256);
  printf("fractions below are of the peaks at the %s clock%s\n", ghz_source,
         mghz > 0 ? "; the JSON file also has them at the measured clock" : "");
  printf("  %-20s %-36s %6s %6s %6s %10s %9s %8s %8s\n", "id", "shape", "M", "N", "K", "ms",
         "GFLOP/s", "%AVX512", "%AVX2");
  gemm_result res[N_SHAPES + 1];
  for (int i = 0; i < N_SHAPES; i++) {
    const gemm_shape *s = &shapes[i];
    if (bench_shape(s, reps, &res[i])) return 1;
    printf("  %-20s %-36s %6d %6d %6d %10.4f %9.1f %7.1f%% %7.1f%%\n", s->id, s->what, s->m, s->n,
           s->k, res[i].ms, res[i].gflops, 100 * res[i].gflops / peak512,
           100 * res[i].gflops / peak256);
    fflush(stdout);
  }
  if (bench_dml_matmul(reps, &res[N_SHAPES])) return 1;
  printf("  %-20s %-36s %6d %6d %6d %10.4f %9.1f %7.1f%% %7.1f%%\n", "dml_op_matmul.2048",
         "2048^3 via graph (incl. input copies)", 2048, 2048, 2048, res[N_SHAPES].ms,
         res[N_SHAPES].gflops, 100 * res[N_SHAPES].gflops / peak512,
         100 * res[N_SHAPES].gflops / peak256);
  if (json_path) {
    FILE *f = fopen(json_path, "w");
    if (!f) {
      fprintf(stderr, "bench_gemm: cannot write %s\n", json_path);
      return 1;
    }
    fprintf(f, "{\n  \"impl\": \"dml/openblas\",\n  \"threads\": %d,\n  \"reps\": %d,\n", threads,
            reps);
    fprintf(f, "  \"openblas_config\": \"%s\",\n  \"openblas_core\": \"%s\",\n",
            openblas_get_config(), core);
    fprintf(f, "  \"openblas_coretype_env\": \"%s\",\n", coretype ? coretype : "");
    fprintf(f, "  \"ghz\": %.4f,\n  \"ghz_source\": \"%s\",\n  \"fma_units\": %d,\n", ghz,
            ghz_source, fma_units);
    fprintf(f, "  \"peak_avx512_gflops\": %.3f,\n  \"peak_avx2_gflops\": %.3f,\n", peak512,
            peak256);
    fprintf(f, "  \"measured_ghz\": %.4f,\n", mghz);
    fprintf(f, "  \"peak_avx512_gflops_measured_clock\": %.3f,\n", mpeak512);
    fprintf(f, "  \"peak_avx2_gflops_measured_clock\": %.3f,\n", mpeak256);
    fprintf(f, "  \"shapes\": [\n");
    for (int i = 0; i <= N_SHAPES; i++) {
      const gemm_shape *s = i < N_SHAPES ? &shapes[i] : NULL;
      fprintf(f,
              "    {\"id\": \"%s\", \"what\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
              "\"ta\": %d, \"tb\": %d, \"ms\": %.6f, \"gflops\": %.3f}%s\n",
              s ? s->id : "dml_op_matmul.2048", s ? s->what : "2048^3 via graph", s ? s->m : 2048,
              s ? s->n : 2048, s ? s->k : 2048, s ? s->ta : 0, s ? s->tb : 0, res[i].ms,
              res[i].gflops, i < N_SHAPES ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    if (fclose(f) != 0) {
      fprintf(stderr, "bench_gemm: error writing %s\n", json_path);
      return 1;
    }
  }
  return 0;
}
