/* Convolution and pooling ops: PyTorch fixtures (forward, gradients, finite differences) on both
 * convolution paths (direct AVX-512 kernels and im2col + sgemm), the two paths against each
 * other on larger shapes, shape errors, determinism and allocation-free repeated steps. */
#include <stdlib.h>

#include "fixture.h"
#include "ops/conv_internal.h"
#include "test.h"

static dml_status build_conv(dml_graph *g, dml_node **in, int n, const cJSON *attrs, void *ctx,
                             dml_node **out) {
  const char *op = ctx;
  dml_conv_params p = dml_conv_params_default();
  fixture_attr_ints(attrs, "stride", p.stride, 2);
  fixture_attr_ints(attrs, "padding", p.padding, 2);
  fixture_attr_ints(attrs, "dilation", p.dilation, 2);
  p.groups = (int)fixture_attr_num(attrs, "groups", 1);
  dml_node *b = n > 2 ? in[2] : NULL;
  if (!strcmp(op, "conv2d")) return dml_op_conv2d(g, in[0], in[1], b, &p, out);
  return dml_op_conv1d(g, in[0], in[1], b, &p, out);
}

static dml_status build_pool(dml_graph *g, dml_node **in, int n, const cJSON *attrs, void *ctx,
                             dml_node **out) {
  (void)n;
  const char *op = ctx;
  dml_pool_params p;
  memset(&p, 0, sizeof p);
  fixture_attr_ints(attrs, "kernel", p.kernel, 2);
  fixture_attr_ints(attrs, "stride", p.stride, 2);
  fixture_attr_ints(attrs, "padding", p.padding, 2);
  p.count_include_pad = (int)fixture_attr_num(attrs, "count_include_pad", 1);
  if (!strcmp(op, "maxpool2d")) return dml_op_maxpool2d(g, in[0], &p, out);
  if (!strcmp(op, "avgpool2d")) return dml_op_avgpool2d(g, in[0], &p, out);
  if (!strcmp(op, "maxpool1d")) return dml_op_maxpool1d(g, in[0], &p, out);
  if (!strcmp(op, "avgpool1d")) return dml_op_avgpool1d(g, in[0], &p, out);
  if (!strcmp(op, "global_avgpool")) return dml_op_global_avgpool(g, in[0], out);
  return dml_op_global_maxpool(g, in[0], out);
}

#define FIXTURE "fixtures/ops_conv.json"

TEST(conv2d) { ASSERT_EQ_INT(fixture_check_file(FIXTURE, "conv2d", build_conv, "conv2d"), 0); }
TEST(conv1d) { ASSERT_EQ_INT(fixture_check_file(FIXTURE, "conv1d", build_conv, "conv1d"), 0); }

/* The same fixtures on the portable path. */
TEST(conv_gemm_path) {
  dml__conv_force_gemm = 1;
  int f2 = fixture_check_file(FIXTURE, "conv2d", build_conv, "conv2d");
  int f1 = fixture_check_file(FIXTURE, "conv1d", build_conv, "conv1d");
  dml__conv_force_gemm = 0;
  ASSERT_EQ_INT(f2, 0);
  ASSERT_EQ_INT(f1, 0);
}

#define POOL_TEST(opname)                                                                \
  TEST(opname) {                                                                         \
    ASSERT_EQ_INT(fixture_check_file(FIXTURE, #opname, build_pool, (void *)#opname), 0); \
  }
POOL_TEST(maxpool2d)
POOL_TEST(avgpool2d)
POOL_TEST(maxpool1d)
POOL_TEST(avgpool1d)
POOL_TEST(global_avgpool)
POOL_TEST(global_maxpool)

/* ---- direct kernels against the im2col path ---- */

static void fill(float *v, int64_t n, unsigned seed) {
  unsigned s = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    v[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
  }
}

typedef struct {
  float *y, *dx, *dw, *db;
  int64_t ny, nx, nw, nb;
} conv_result;

static void result_free(conv_result *r) {
  free(r->y);
  free(r->dx);
  free(r->dw);
  free(r->db);
}

/* Forward + backward of conv (dims 1 or 2) with a fixed upstream gradient; copies the results. */
static dml_status run_conv(int dims, const int64_t *xs, const int64_t *wsh, int bias,
                           const dml_conv_params *p, int x_grad, conv_result *r) {
  dml_graph *g = NULL;
  dml_status st = dml_graph_new(&g);
  if (st != DML_OK) return st;
  int nd = dims + 2;
  int64_t nx = 1, nw = 1;
  for (int i = 0; i < nd; i++) nx *= xs[i], nw *= wsh[i];
  float *x = malloc((size_t)nx * 4), *w = malloc((size_t)nw * 4), *b = malloc((size_t)wsh[0] * 4);
  fill(x, nx, 1);
  fill(w, nw, 2);
  fill(b, wsh[0], 3);
  dml_node *nx_, *nw_, *nb_ = NULL, *y = NULL;
  memset(r, 0, sizeof *r);
  st = dml_graph_input(g, x, nd, xs, x_grad, &nx_);
  if (st == DML_OK) st = dml_graph_input(g, w, nd, wsh, 1, &nw_);
  if (st == DML_OK && bias) st = dml_graph_input(g, b, 1, wsh, 1, &nb_);
  if (st == DML_OK)
    st =
        dims == 2 ? dml_op_conv2d(g, nx_, nw_, nb_, p, &y) : dml_op_conv1d(g, nx_, nw_, nb_, p, &y);
  if (st == DML_OK) {
    int64_t ny = dml_tensor_numel(dml_node_value(y));
    float *dy = malloc((size_t)(ny > 0 ? ny : 1) * 4);
    fill(dy, ny, 4);
    st = dml_graph_backward(g, y, dy);
    free(dy);
    r->ny = ny;
    r->nx = nx;
    r->nw = nw;
    r->nb = wsh[0];
    r->y = malloc((size_t)(ny > 0 ? ny : 1) * 4);
    memcpy(r->y, dml_node_value(y)->data, (size_t)ny * 4);
    r->dx = calloc((size_t)(nx > 0 ? nx : 1), 4);
    r->dw = calloc((size_t)nw, 4);
    r->db = calloc((size_t)wsh[0], 4);
    if (st == DML_OK && x_grad && dml_node_grad(nx_))
      memcpy(r->dx, dml_node_grad(nx_), (size_t)nx * 4);
    if (st == DML_OK && dml_node_grad(nw_)) memcpy(r->dw, dml_node_grad(nw_), (size_t)nw * 4);
    if (st == DML_OK && bias && dml_node_grad(nb_))
      memcpy(r->db, dml_node_grad(nb_), (size_t)wsh[0] * 4);
  }
  free(x);
  free(w);
  free(b);
  dml_graph_free(g);
  return st;
}

/* |a - b| <= 1e-4 (1 + |b|): the two paths sum in different orders over up to a few hundred
 * terms of magnitude ~1. */
static int close_enough(const char *what, const float *a, const float *b, int64_t n) {
  return fixture_compare(what, a, b, n, 1e-4, 1e-4);
}

/* Runs the case on the fast paths (mode 0: whatever conv.c picks; mode 1: the generic direct
 * kernels, no Winograd or small-reduction variants) and on the im2col path, and compares. */
static int compare_paths_mode(int dims, const int64_t *xs, const int64_t *wsh, int bias,
                              const dml_conv_params *p, int x_grad, int mode) {
  conv_result d, r;
  dml__conv_force_direct = mode == 1;
  dml_status st = run_conv(dims, xs, wsh, bias, p, x_grad, &d);
  dml__conv_force_direct = 0;
  if (st != DML_OK) {
    fprintf(stderr, "  direct run failed: %s\n", dml_last_error());
    return 0;
  }
  dml__conv_force_gemm = 1;
  st = run_conv(dims, xs, wsh, bias, p, x_grad, &r);
  dml__conv_force_gemm = 0;
  if (st != DML_OK) {
    fprintf(stderr, "  gemm run failed: %s\n", dml_last_error());
    result_free(&d);
    return 0;
  }
  int ok = close_enough("y", d.y, r.y, d.ny) && close_enough("dx", d.dx, r.dx, d.nx) &&
           close_enough("dw", d.dw, r.dw, d.nw) && close_enough("db", d.db, r.db, d.nb);
  result_free(&d);
  result_free(&r);
  return ok;
}

static int compare_paths(int dims, const int64_t *xs, const int64_t *wsh, int bias,
                         const dml_conv_params *p, int x_grad) {
  return compare_paths_mode(dims, xs, wsh, bias, p, x_grad, 0) &&
         compare_paths_mode(dims, xs, wsh, bias, p, x_grad, 1);
}

static dml_conv_params cp(int s0, int s1, int p0, int p1, int d0, int d1, int groups) {
  dml_conv_params p = {{s0, s1}, {p0, p1}, {d0, d1}, groups};
  return p;
}

TEST(direct_matches_gemm_reference_cnn_layers) {
  dml_conv_params p = cp(1, 1, 1, 1, 1, 1, 1);
  int64_t x1[4] = {3, 1, 28, 28}, w1[4] = {32, 1, 3, 3};
  int64_t x2[4] = {3, 32, 14, 14}, w2[4] = {64, 32, 3, 3};
  ASSERT_TRUE(compare_paths(2, x1, w1, 1, &p, 0));
  ASSERT_TRUE(compare_paths(2, x1, w1, 1, &p, 1));
  ASSERT_TRUE(compare_paths(2, x2, w2, 1, &p, 1));
}

TEST(direct_matches_gemm_odd_shapes) {
  struct {
    int64_t x[4], w[4];
    dml_conv_params p;
    int bias;
  } cases[] = {
      {{2, 8, 13, 11}, {80, 8, 3, 3}, cp(1, 1, 1, 1, 1, 1, 1), 1},  /* 5 vectors of 16 */
      {{2, 12, 9, 10}, {24, 12, 5, 3}, cp(1, 1, 2, 1, 1, 1, 1), 0}, /* 24 = 16 + 8 lanes */
      {{3, 16, 10, 9}, {48, 16, 3, 3}, cp(2, 2, 1, 1, 1, 1, 1), 1}, /* stride 2 */
      {{2, 16, 9, 9}, {32, 8, 3, 3}, cp(1, 1, 2, 2, 2, 2, 2), 1},   /* groups, dilation */
      {{2, 20, 7, 6}, {40, 20, 1, 1}, cp(1, 1, 0, 0, 1, 1, 1), 1},  /* 1x1 */
      {{1, 9, 4, 30}, {16, 9, 3, 7}, cp(1, 3, 1, 3, 1, 1, 1), 1},   /* wide rows, stride (1,3) */
      {{2, 16, 3, 3}, {16, 16, 3, 3}, cp(1, 1, 3, 2, 1, 1, 1), 1},  /* padding larger than k-1 */
      /* Winograd: odd output sizes (partial tiles), channels not multiples of 16, pad 0 and 2 */
      {{2, 16, 7, 9}, {16, 16, 3, 3}, cp(1, 1, 1, 1, 1, 1, 1), 1},
      {{1, 20, 5, 6}, {40, 20, 3, 3}, cp(1, 1, 0, 0, 1, 1, 1), 1},
      {{2, 17, 6, 5}, {33, 17, 3, 3}, cp(1, 1, 2, 2, 1, 1, 1), 0},
      {{1, 16, 4, 4}, {80, 16, 3, 3}, cp(1, 1, 1, 0, 1, 1, 1), 1},
      /* small reductions: vectors over positions with masks */
      {{2, 1, 9, 19}, {8, 1, 3, 3}, cp(1, 1, 1, 1, 1, 1, 1), 1},
      {{2, 3, 11, 10}, {13, 3, 3, 3}, cp(1, 1, 2, 2, 2, 2, 1), 1}, /* dilation, 13 outputs */
      {{1, 2, 6, 7}, {20, 1, 5, 5}, cp(1, 1, 3, 2, 1, 1, 2), 1},   /* groups, Ho != H */
      {{3, 4, 5, 17}, {4, 1, 3, 3}, cp(1, 1, 1, 1, 1, 1, 4), 1},   /* depthwise */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (!compare_paths(2, cases[i].x, cases[i].w, cases[i].bias, &cases[i].p, 1)) {
      fprintf(stderr, "  case %zu differs\n", i);
      ASSERT_TRUE(0);
    }
  }
  int64_t x1[3] = {3, 16, 50}, w1[3] = {32, 16, 7};
  dml_conv_params p1 = cp(1, 1, 3, 0, 2, 1, 1);
  ASSERT_TRUE(compare_paths(1, x1, w1, 1, &p1, 1));
  int64_t x2[3] = {2, 4, 37}, w2[3] = {12, 4, 5}; /* small reduction, conv1d */
  dml_conv_params p2 = cp(1, 1, 2, 0, 1, 1, 1);
  ASSERT_TRUE(compare_paths(1, x2, w2, 1, &p2, 1));
}

/* ---- errors ---- */

static dml_node *leaf(dml_graph *g, int nd, const int64_t *shape) {
  static float zeros[4096];
  dml_node *n = NULL;
  if (dml_graph_input(g, zeros, nd, shape, 1, &n) != DML_OK) return NULL;
  return n;
}

TEST(conv_shape_errors) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t xs[4] = {2, 3, 5, 5}, ws_bad_groups[4] = {4, 1, 3, 3}, wbig[4] = {4, 3, 7, 7};
  int64_t w3[3] = {4, 3, 3}, ws[4] = {4, 3, 3, 3}, bs[1] = {5};
  dml_node *x = leaf(g, 4, xs), *y = NULL;
  ASSERT_TRUE(x != NULL);
  dml_conv_params p = dml_conv_params_default();
  /* 3 channels in 2 groups */
  p.groups = 2;
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 4, ws_bad_groups), NULL, &p, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "divisible by groups") &&
              strstr(dml_last_error(), "[2, 3, 5, 5]"));
  /* a 7x7 kernel on a 5x5 input with padding 0 */
  p = dml_conv_params_default();
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 4, wbig), NULL, &p, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "larger than the padded input") &&
              strstr(dml_last_error(), "[2, 3, 5, 5]"));
  /* ... which fits once padded */
  p.padding[0] = p.padding[1] = 1;
  ASSERT_OK(dml_op_conv2d(g, x, leaf(g, 4, wbig), NULL, &p, &y));
  ASSERT_EQ_INT(dml_node_value(y)->shape[2], 1);
  /* dilation makes a 3x3 kernel 5x5 wide */
  p = dml_conv_params_default();
  p.dilation[0] = 3;
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 4, ws), NULL, &p, &y), DML_ERR_SHAPE);
  /* rank-3 weight for conv2d */
  p = dml_conv_params_default();
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 3, w3), NULL, &p, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "weight must have rank 4") &&
              strstr(dml_last_error(), "[4, 3, 3]"));
  /* channels per group mismatch */
  int64_t wc[4] = {4, 2, 3, 3};
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 4, wc), NULL, &p, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[4, 2, 3, 3]") != NULL);
  /* bias of the wrong length */
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 4, ws), leaf(g, 1, bs), &p, &y), DML_ERR_SHAPE);
  /* rank-4 input for conv1d */
  ASSERT_ERROR(dml_op_conv1d(g, x, leaf(g, 3, w3), NULL, &p, &y), DML_ERR_SHAPE);
  /* bad parameters and NULLs */
  p.stride[1] = 0;
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 4, ws), NULL, &p, &y), DML_ERR_INVALID_ARGUMENT);
  p = dml_conv_params_default();
  p.groups = 0;
  ASSERT_ERROR(dml_op_conv2d(g, x, leaf(g, 4, ws), NULL, &p, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_conv2d(g, NULL, leaf(g, 4, ws), NULL, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_conv2d(g, x, NULL, NULL, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  /* NULL params mean the defaults */
  ASSERT_OK(dml_op_conv2d(g, x, leaf(g, 4, ws), NULL, NULL, &y));
  ASSERT_EQ_INT(dml_node_value(y)->shape[3], 3);
  dml_graph_free(g);
}

TEST(pool_shape_errors) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t xs[4] = {2, 3, 4, 4}, x3[3] = {2, 3, 4}, x2[2] = {2, 3}, xe[3] = {2, 3, 0};
  dml_node *x = leaf(g, 4, xs), *y = NULL;
  dml_pool_params p = {{5, 5}, {0, 0}, {0, 0}, 1};
  ASSERT_ERROR(dml_op_maxpool2d(g, x, &p, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[2, 3, 4, 4]") != NULL);
  p.padding[0] = p.padding[1] = 3; /* more than half the kernel */
  ASSERT_ERROR(dml_op_avgpool2d(g, x, &p, &y), DML_ERR_INVALID_ARGUMENT);
  p.padding[0] = p.padding[1] = 2; /* 4 + 2*2 >= 5; stride 0 means 5 */
  ASSERT_OK(dml_op_avgpool2d(g, x, &p, &y));
  ASSERT_EQ_INT(dml_node_value(y)->shape[2], 1);
  p.stride[0] = p.stride[1] = 1;
  ASSERT_OK(dml_op_avgpool2d(g, x, &p, &y));
  ASSERT_EQ_INT(dml_node_value(y)->shape[2], 4);
  dml_pool_params p1 = {{2, 0}, {0, 0}, {0, 0}, 1};
  ASSERT_ERROR(dml_op_maxpool1d(g, x, &p1, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_maxpool2d(g, leaf(g, 3, x3), &p1, &y), DML_ERR_SHAPE);
  ASSERT_OK(dml_op_maxpool1d(g, leaf(g, 3, x3), &p1, &y));
  ASSERT_EQ_INT(dml_node_value(y)->shape[2], 2);
  p1.kernel[0] = 0;
  ASSERT_ERROR(dml_op_avgpool1d(g, leaf(g, 3, x3), &p1, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_maxpool2d(g, x, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_global_avgpool(g, leaf(g, 2, x2), &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_global_maxpool(g, leaf(g, 3, xe), &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_global_maxpool(g, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  dml_graph_free(g);
}

/* ---- behaviour ---- */

TEST(maxpool_nan_wins_and_padding_never_wins) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  /* all-negative input with padding: the zero padding must not be the max */
  float xv[8] = {-5, -4, -3, -2, -1, -6, -7, -8};
  int64_t xs[3] = {1, 1, 8};
  dml_node *x, *y;
  ASSERT_OK(dml_graph_input(g, xv, 3, xs, 1, &x));
  dml_pool_params p = {{3, 0}, {1, 0}, {1, 0}, 1};
  ASSERT_OK(dml_op_maxpool1d(g, x, &p, &y));
  const float *yv = dml_node_value(y)->data;
  ASSERT_NEAR(yv[0], -4.0f, 0);
  ASSERT_NEAR(yv[7], -7.0f, 0);
  /* graph inputs must be finite, so make a NaN at index 2: (1e30 m)^2 overflows to inf where
   * m = 1, and inf - inf = NaN */
  dml_graph_reset(g);
  float mv[8] = {0, 0, 1, 0, 0, 0, 0, 0};
  dml_node *m, *t, *sq, *nan_mask;
  ASSERT_OK(dml_graph_input(g, xv, 3, xs, 1, &x));
  ASSERT_OK(dml_graph_input(g, mv, 3, xs, 0, &m));
  ASSERT_OK(dml_op_scale(g, m, 1e30f, &t));
  ASSERT_OK(dml_op_mul(g, t, t, &sq));
  ASSERT_OK(dml_op_sub(g, sq, sq, &nan_mask));
  ASSERT_OK(dml_op_add(g, x, nan_mask, &t));
  ASSERT_OK(dml_op_maxpool1d(g, t, &p, &y));
  yv = dml_node_value(y)->data;
  ASSERT_TRUE(isnan(yv[1]) && isnan(yv[2]) && isnan(yv[3]) && !isnan(yv[4]) && !isnan(yv[0]));
  ASSERT_OK(dml_op_global_maxpool(g, t, &y));
  ASSERT_TRUE(isnan(dml_node_value(y)->data[0]));
  /* the same input as a 2x4 image through the 2x2 / stride 2 pool: NaN at (0,2) wins window 1 */
  int64_t s4[4] = {1, 1, 2, 4};
  dml_node *t4;
  ASSERT_OK(dml_op_reshape(g, t, 4, s4, &t4));
  dml_pool_params p2 = {{2, 2}, {0, 0}, {0, 0}, 1};
  ASSERT_OK(dml_op_maxpool2d(g, t4, &p2, &y));
  yv = dml_node_value(y)->data;
  ASSERT_NEAR(yv[0], -1.0f, 0); /* max of -5, -4, -1, -6 */
  ASSERT_TRUE(isnan(yv[1]));
  dml_graph_free(g);
}

TEST(conv_empty_batch) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float dummy[1] = {0}, w[4 * 3 * 9];
  fill(w, 4 * 3 * 9, 9);
  int64_t xs[4] = {0, 3, 5, 5}, ws[4] = {4, 3, 3, 3};
  dml_node *x, *wn, *y, *s;
  ASSERT_OK(dml_graph_input(g, dummy, 4, xs, 1, &x));
  ASSERT_OK(dml_graph_input(g, w, 4, ws, 1, &wn));
  ASSERT_OK(dml_op_conv2d(g, x, wn, NULL, NULL, &y));
  ASSERT_EQ_INT(dml_node_value(y)->shape[0], 0);
  ASSERT_EQ_INT(dml_node_value(y)->shape[1], 4);
  ASSERT_OK(dml_op_sum(g, y, &s));
  ASSERT_OK(dml_graph_backward(g, s, NULL));
  const float *gw = dml_node_grad(wn);
  ASSERT_TRUE(gw != NULL);
  ASSERT_NEAR(gw[0], 0.0f, 0);
  dml_graph_free(g);
}

/* Two identical steps give identical bits; from the second step on, nothing is allocated. */
TEST(conv_deterministic_and_allocation_free) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t xs[4] = {6, 16, 12, 12}, ws[4] = {32, 16, 3, 3}, bs[1] = {32};
  int64_t nx = 6 * 16 * 144, nw = 32 * 16 * 9;
  float *x = malloc((size_t)nx * 4), *w = malloc((size_t)nw * 4), *b = malloc(32 * 4);
  float *first_dw = malloc((size_t)nw * 4), *first_dx = malloc((size_t)nx * 4);
  fill(x, nx, 5);
  fill(w, nw, 6);
  fill(b, 32, 7);
  dml_conv_params p = dml_conv_params_default();
  p.padding[0] = p.padding[1] = 1;
  dml_pool_params pp = {{2, 2}, {0, 0}, {0, 0}, 1};
  int64_t allocs = 0;
  for (int step = 0; step < 3; step++) {
    dml_node *xn, *wn, *bn, *y, *pl, *gp, *l;
    dml_graph_reset(g);
    ASSERT_OK(dml_graph_input(g, x, 4, xs, 1, &xn));
    ASSERT_OK(dml_graph_input(g, w, 4, ws, 1, &wn));
    ASSERT_OK(dml_graph_input(g, b, 1, bs, 1, &bn));
    ASSERT_OK(dml_op_conv2d(g, xn, wn, bn, &p, &y));
    ASSERT_OK(dml_op_maxpool2d(g, y, &pp, &pl));
    ASSERT_OK(dml_op_global_avgpool(g, pl, &gp));
    ASSERT_OK(dml_op_sum(g, gp, &l));
    ASSERT_OK(dml_graph_backward(g, l, NULL));
    if (step == 0) {
      memcpy(first_dw, dml_node_grad(wn), (size_t)nw * 4);
      memcpy(first_dx, dml_node_grad(xn), (size_t)nx * 4);
    } else {
      ASSERT_TRUE(memcmp(first_dw, dml_node_grad(wn), (size_t)nw * 4) == 0);
      ASSERT_TRUE(memcmp(first_dx, dml_node_grad(xn), (size_t)nx * 4) == 0);
    }
    dml_graph_stats st;
    dml_graph_get_stats(g, &st);
    if (step == 1) allocs = st.arena_heap_allocations;
    if (step == 2) ASSERT_EQ_INT(st.arena_heap_allocations, allocs);
  }
  free(x);
  free(w);
  free(b);
  free(first_dw);
  free(first_dx);
  dml_graph_free(g);
}
