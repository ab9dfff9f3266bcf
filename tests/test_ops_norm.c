/* Batch norm, layer norm and L2 normalisation against PyTorch fixtures and finite differences;
 * batch norm's running statistics after a training step and its evaluation-mode output; thread
 * count invariance; bad shapes and arguments. */
#include <stdlib.h>

#include "fixture.h"
#include "test.h"

#define MAX_C 128

/* The builder owns the running buffers and refills them from the case on every call, so the
 * finite-difference forwards all start from the same state. */
static float run_mean[MAX_C], run_var[MAX_C];

static int fill_attr_floats(const cJSON *attrs, const char *key, float *out, int max_n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(attrs, key);
  if (!cJSON_IsArray(v)) return 0;
  int n = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    if (n < max_n) out[n++] = (float)e->valuedouble;
  }
  return n;
}

static dml_status build_norm(dml_graph *g, dml_node **in, int n, const cJSON *attrs, void *ctx,
                             dml_node **out) {
  const char *op = ctx;
  int has_gamma = (int)fixture_attr_num(attrs, "has_gamma", 0);
  int has_beta = (int)fixture_attr_num(attrs, "has_beta", 0);
  dml_node *gamma = has_gamma && n > 1 ? in[1] : NULL;
  dml_node *beta = has_beta && n > 1 ? in[n - 1] : NULL;
  float eps = (float)fixture_attr_num(attrs, "eps", 1e-5);
  if (!strcmp(op, "batchnorm")) {
    dml_graph_set_training(g, (int)fixture_attr_num(attrs, "training", 1));
    int have_rm = fill_attr_floats(attrs, "running_mean", run_mean, MAX_C);
    int have_rv = fill_attr_floats(attrs, "running_var", run_var, MAX_C);
    return dml_op_batchnorm(g, in[0], gamma, beta, have_rm ? run_mean : NULL,
                            have_rv ? run_var : NULL,
                            (float)fixture_attr_num(attrs, "momentum", 0.1), eps, out);
  }
  if (!strcmp(op, "layernorm")) return dml_op_layernorm(g, in[0], gamma, beta, eps, out);
  if (!strcmp(op, "l2_normalize")) return dml_op_l2_normalize(g, in[0], eps, out);
  return DML_ERR_UNSUPPORTED;
}

#define OP_TEST(opname)                                                                     \
  TEST(opname) {                                                                            \
    ASSERT_EQ_INT(fixture_check_file("fixtures/ops_norm.json", #opname, build_norm,         \
                                     (void *)#opname),                                      \
                  0);                                                                       \
  }

OP_TEST(batchnorm)
OP_TEST(layernorm)
OP_TEST(l2_normalize)

static const cJSON *find_case(const cJSON *root, const char *name) {
  const cJSON *c;
  cJSON_ArrayForEach(c, root) {
    const char *cn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
    if (cn && !strcmp(cn, name)) return c;
  }
  return NULL;
}

/* Reads a tensor field of a case; NULL on failure. */
static float *case_tensor(const cJSON *c, const char *key, int *ndim, int64_t *shape) {
  float *d = NULL;
  if (fixture_tensor(cJSON_GetObjectItemCaseSensitive(c, key), &d, ndim, shape) != 0) return NULL;
  return d;
}

TEST(batchnorm_running_stats_and_eval_match_torch) {
  cJSON *root = fixture_load("fixtures/ops_norm.json");
  ASSERT_TRUE(root != NULL);
  const cJSON *c = find_case(root, "bn_running_update");
  ASSERT_TRUE(c != NULL);
  const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(c, "attrs");
  float momentum = (float)fixture_attr_num(attrs, "momentum", 0.1);
  float eps = (float)fixture_attr_num(attrs, "eps", 1e-5);
  int nd[12];
  int64_t sh[12][DML_MAX_DIMS];
  float *x = case_tensor(c, "x", &nd[0], sh[0]);
  float *xe = case_tensor(c, "x_eval", &nd[1], sh[1]);
  float *gm = case_tensor(c, "gamma", &nd[2], sh[2]);
  float *bt = case_tensor(c, "beta", &nd[3], sh[3]);
  float *rm = case_tensor(c, "running_mean", &nd[4], sh[4]);
  float *rv = case_tensor(c, "running_var", &nd[5], sh[5]);
  float *yt = case_tensor(c, "y_train", &nd[6], sh[6]);
  float *ye = case_tensor(c, "y_eval", &nd[7], sh[7]);
  float *rm1 = case_tensor(c, "running_mean_after", &nd[8], sh[8]);
  float *rv1 = case_tensor(c, "running_var_after", &nd[9], sh[9]);
  int ok = x && xe && gm && bt && rm && rv && yt && ye && rm1 && rv1;
  dml_graph *g = NULL;
  dml_node *nx, *ng, *nb, *y;
  if (ok) ok = dml_graph_new(&g) == DML_OK;
  if (ok) {
    int64_t cch = sh[2][0];
    int64_t numel = 1, numel_e = 1;
    for (int i = 0; i < nd[0]; i++) numel *= sh[0][i];
    for (int i = 0; i < nd[1]; i++) numel_e *= sh[1][i];
    ok = dml_graph_input(g, x, nd[0], sh[0], 1, &nx) == DML_OK &&
         dml_graph_input(g, gm, 1, sh[2], 1, &ng) == DML_OK &&
         dml_graph_input(g, bt, 1, sh[3], 1, &nb) == DML_OK &&
         dml_op_batchnorm(g, nx, ng, nb, rm, rv, momentum, eps, &y) == DML_OK;
    if (!ok) fprintf(stderr, "  training call failed: %s\n", dml_last_error());
    ok = ok && fixture_compare("y_train", dml_node_value(y)->data, yt, numel, 1e-5, 1e-4);
    ok = ok && fixture_compare("running_mean", rm, rm1, cch, 1e-5, 1e-4);
    ok = ok && fixture_compare("running_var", rv, rv1, cch, 1e-5, 1e-4);
    float rm_train[MAX_C], rv_train[MAX_C];
    ok = ok && cch <= MAX_C;
    if (ok) {
      memcpy(rm_train, rm, (size_t)cch * sizeof(float));
      memcpy(rv_train, rv, (size_t)cch * sizeof(float));
      dml_graph_reset(g);
      dml_graph_set_training(g, 0);
      ok = dml_graph_input(g, xe, nd[1], sh[1], 1, &nx) == DML_OK &&
           dml_graph_input(g, gm, 1, sh[2], 1, &ng) == DML_OK &&
           dml_graph_input(g, bt, 1, sh[3], 1, &nb) == DML_OK &&
           dml_op_batchnorm(g, nx, ng, nb, rm, rv, momentum, eps, &y) == DML_OK;
      if (!ok) fprintf(stderr, "  eval call failed: %s\n", dml_last_error());
      ok = ok && fixture_compare("y_eval", dml_node_value(y)->data, ye, numel_e, 1e-5, 1e-4);
      /* evaluation mode leaves the running statistics alone */
      ok = ok && fixture_compare("running_mean kept", rm, rm_train, cch, 0, 0);
      ok = ok && fixture_compare("running_var kept", rv, rv_train, cch, 0, 0);
    }
  }
  dml_graph_free(g);
  float *all[10] = {x, xe, gm, bt, rm, rv, yt, ye, rm1, rv1};
  for (int i = 0; i < 10; i++) free(all[i]);
  cJSON_Delete(root);
  ASSERT_TRUE(ok);
}

/* Forward + backward of batch norm on [16, 5, 24, 24] (large enough for the parallel path)
 * with the given thread count. */
static int bn_run(int threads, float *y_out, float *dx_out, float *dg_out) {
  enum { N = 16, C = 5, S = 24 * 24 };
  static float x[N * C * S], dy[N * C * S], gamma[C];
  for (int i = 0; i < N * C * S; i++) {
    x[i] = (float)((i * 37) % 101) / 17.0f - 2.0f;
    dy[i] = (float)((i * 53) % 89) / 31.0f - 1.3f;
  }
  for (int c = 0; c < C; c++) gamma[c] = 0.5f + 0.25f * (float)c;
  dml_set_num_threads(threads);
  dml_graph *g;
  if (dml_graph_new(&g) != DML_OK) return 0;
  int64_t shape[4] = {N, C, 24, 24}, gshape[1] = {C};
  dml_node *nx, *ng, *y;
  int ok = dml_graph_input(g, x, 4, shape, 1, &nx) == DML_OK &&
           dml_graph_input(g, gamma, 1, gshape, 1, &ng) == DML_OK &&
           dml_op_batchnorm(g, nx, ng, NULL, NULL, NULL, 0.1f, 1e-5f, &y) == DML_OK &&
           dml_graph_backward(g, y, dy) == DML_OK;
  if (ok) {
    memcpy(y_out, dml_node_value(y)->data, sizeof x);
    memcpy(dx_out, dml_node_grad(nx), sizeof x);
    memcpy(dg_out, dml_node_grad(ng), sizeof gamma);
  }
  dml_graph_free(g);
  return ok;
}

TEST(batchnorm_same_bits_for_any_thread_count) {
  enum { LEN = 16 * 5 * 24 * 24 };
  static float y1[LEN], y2[LEN], dx1[LEN], dx2[LEN];
  float dg1[5], dg2[5];
  int saved = dml_get_num_threads();
  int ok1 = bn_run(1, y1, dx1, dg1), ok2 = bn_run(2, y2, dx2, dg2);
  dml_set_num_threads(saved);
  ASSERT_TRUE(ok1 && ok2);
  ASSERT_TRUE(memcmp(y1, y2, sizeof y1) == 0);
  ASSERT_TRUE(memcmp(dx1, dx2, sizeof dx1) == 0);
  ASSERT_TRUE(memcmp(dg1, dg2, sizeof dg1) == 0);
}

TEST(batchnorm_errors) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float data[2 * 3 * 4 * 2 * 2] = {0};
  int64_t s1[1] = {6}, s2[2] = {4, 3}, s5[5] = {2, 3, 2, 2, 2}, sc[1] = {3}, sbad[1] = {4};
  int64_t s11[2] = {1, 3};
  dml_node *x1, *x2, *x5, *gam, *bad, *x11, *y = NULL;
  ASSERT_OK(dml_graph_input(g, data, 1, s1, 1, &x1));
  ASSERT_OK(dml_graph_input(g, data, 2, s2, 1, &x2));
  ASSERT_OK(dml_graph_input(g, data, 5, s5, 1, &x5));
  ASSERT_OK(dml_graph_input(g, data, 1, sc, 1, &gam));
  ASSERT_OK(dml_graph_input(g, data, 1, sbad, 1, &bad));
  ASSERT_OK(dml_graph_input(g, data, 2, s11, 1, &x11));
  float rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
  ASSERT_ERROR(dml_op_batchnorm(g, x1, NULL, NULL, NULL, NULL, 0.1f, 1e-5f, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[6]") != NULL);
  ASSERT_ERROR(dml_op_batchnorm(g, x5, NULL, NULL, NULL, NULL, 0.1f, 1e-5f, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_batchnorm(g, x2, bad, NULL, NULL, NULL, 0.1f, 1e-5f, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[4]") && strstr(dml_last_error(), "[4, 3]"));
  ASSERT_ERROR(dml_op_batchnorm(g, x2, gam, bad, NULL, NULL, 0.1f, 1e-5f, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_batchnorm(g, NULL, NULL, NULL, NULL, NULL, 0.1f, 1e-5f, &y),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_batchnorm(g, x2, NULL, NULL, rm, NULL, 0.1f, 1e-5f, &y),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_batchnorm(g, x2, NULL, NULL, NULL, NULL, 1.5f, 1e-5f, &y),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_batchnorm(g, x2, NULL, NULL, NULL, NULL, 0.1f, -1.0f, &y),
               DML_ERR_INVALID_ARGUMENT);
  /* one value per channel cannot be normalised with batch statistics */
  ASSERT_ERROR(dml_op_batchnorm(g, x11, NULL, NULL, rm, rv, 0.1f, 1e-5f, &y), DML_ERR_SHAPE);
  dml_graph_set_training(g, 0);
  ASSERT_ERROR(dml_op_batchnorm(g, x2, gam, gam, NULL, NULL, 0.1f, 1e-5f, &y),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "running") != NULL);
  /* ... but evaluation mode can, with running statistics */
  ASSERT_OK(dml_op_batchnorm(g, x11, NULL, NULL, rm, rv, 0.1f, 1e-5f, &y));
  dml_graph_free(g);
}

TEST(layernorm_and_l2_normalize_errors) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float data[12] = {0};
  int64_t s2[2] = {3, 4}, s3[1] = {3}, s0[2] = {3, 0};
  dml_node *x, *bad, *empty, *y = NULL;
  ASSERT_OK(dml_graph_input(g, data, 2, s2, 1, &x));
  ASSERT_OK(dml_graph_input(g, data, 1, s3, 1, &bad));
  ASSERT_OK(dml_graph_input(g, data, 2, s0, 1, &empty));
  ASSERT_ERROR(dml_op_layernorm(g, x, bad, NULL, 1e-5f, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[3]") && strstr(dml_last_error(), "[3, 4]"));
  ASSERT_ERROR(dml_op_layernorm(g, x, NULL, bad, 1e-5f, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_layernorm(g, empty, NULL, NULL, 1e-5f, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_layernorm(g, NULL, NULL, NULL, 1e-5f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_l2_normalize(g, NULL, 1e-12f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_l2_normalize(g, x, -1.0f, &y), DML_ERR_INVALID_ARGUMENT);
  /* an all-zero row: y = 0, dx = dy / eps (the clamped branch) */
  ASSERT_OK(dml_op_l2_normalize(g, x, 0.5f, &y));
  for (int i = 0; i < 12; i++) ASSERT_NEAR(dml_node_value(y)->data[i], 0.0f, 0);
  float seed[12];
  for (int i = 0; i < 12; i++) seed[i] = (float)i;
  ASSERT_OK(dml_graph_backward(g, y, seed));
  ASSERT_NEAR(dml_node_grad(x)[5], 10.0f, 1e-6);
  dml_graph_free(g);
}

TEST(empty_batches_flow_through) {
  float data[4] = {0};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t s0[2] = {0, 4}, s4[4] = {0, 4, 2, 2};
  dml_node *e, *e4, *y;
  ASSERT_OK(dml_graph_input(g, data, 2, s0, 1, &e));
  ASSERT_OK(dml_graph_input(g, data, 4, s4, 1, &e4));
  ASSERT_OK(dml_op_layernorm(g, e, NULL, NULL, 1e-5f, &y));
  ASSERT_EQ_INT(dml_tensor_numel(dml_node_value(y)), 0);
  ASSERT_OK(dml_op_l2_normalize(g, e, 1e-12f, &y));
  ASSERT_EQ_INT(dml_tensor_numel(dml_node_value(y)), 0);
  /* batch statistics of nothing are undefined; running statistics still apply */
  ASSERT_ERROR(dml_op_batchnorm(g, e4, NULL, NULL, NULL, NULL, 0.1f, 1e-5f, &y), DML_ERR_SHAPE);
  float rm[4] = {0}, rv[4] = {1, 1, 1, 1};
  dml_graph_set_training(g, 0);
  ASSERT_OK(dml_op_batchnorm(g, e4, NULL, NULL, rm, rv, 0.1f, 1e-5f, &y));
  ASSERT_EQ_INT(dml_tensor_numel(dml_node_value(y)), 0);
  dml_graph_free(g);
}
