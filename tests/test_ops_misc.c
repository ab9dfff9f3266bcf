/* Shape ops, softmax family, cross-entropy and reductions against PyTorch fixtures and finite
 * differences; dropout's statistics, gradient, determinism and modes; bad input. */
#include <math.h>
#include <stdlib.h>

#include "fixture.h"
#include "test.h"

static dml_status build_misc(dml_graph *g, dml_node **in, int n, const cJSON *attrs, void *ctx,
                             dml_node **out) {
  const char *op = ctx;
  if (!strcmp(op, "reshape")) {
    int dims[DML_MAX_DIMS];
    int nd = fixture_attr_ints(attrs, "shape", dims, DML_MAX_DIMS);
    int64_t shape[DML_MAX_DIMS];
    for (int i = 0; i < nd; i++) shape[i] = dims[i];
    return dml_op_reshape(g, in[0], nd, shape, out);
  }
  if (!strcmp(op, "flatten")) return dml_op_flatten(g, in[0], out);
  if (!strcmp(op, "concat"))
    return dml_op_concat(g, in, n, (int)fixture_attr_num(attrs, "axis", 0), out);
  if (!strcmp(op, "slice"))
    return dml_op_slice(g, in[0], (int)fixture_attr_num(attrs, "axis", 0),
                        (int64_t)fixture_attr_num(attrs, "start", 0),
                        (int64_t)fixture_attr_num(attrs, "length", 0), out);
  if (!strcmp(op, "softmax")) return dml_op_softmax(g, in[0], out);
  if (!strcmp(op, "log_softmax")) return dml_op_log_softmax(g, in[0], out);
  if (!strcmp(op, "cross_entropy")) {
    int lab[64];
    int nl = fixture_attr_ints(attrs, "labels", lab, 64);
    int32_t labels[64];
    for (int i = 0; i < nl; i++) labels[i] = lab[i];
    return dml_op_cross_entropy(g, in[0], labels,
                                (float)fixture_attr_num(attrs, "label_smoothing", 0), out);
  }
  if (!strcmp(op, "sum")) return dml_op_sum(g, in[0], out);
  if (!strcmp(op, "mean")) return dml_op_mean(g, in[0], out);
  if (!strcmp(op, "mse")) return dml_op_mse(g, in[0], in[1], out);
  return DML_ERR_UNSUPPORTED;
}

#define OP_TEST(opname)                                                                     \
  TEST(opname) {                                                                            \
    ASSERT_EQ_INT(fixture_check_file("fixtures/ops_misc.json", #opname, build_misc,         \
                                     (void *)#opname),                                      \
                  0);                                                                       \
  }

OP_TEST(reshape)
OP_TEST(flatten)
OP_TEST(concat)
OP_TEST(slice)
OP_TEST(softmax)
OP_TEST(log_softmax)
OP_TEST(cross_entropy)
OP_TEST(sum)
OP_TEST(mean)
OP_TEST(mse)

/* ---- dropout ---- */

enum { DROP_N = 100000 };

/* Records dropout(x) on a fresh graph with (seed, step) and copies the result to y. */
static int dropout_once(const float *x, float p, uint64_t seed, uint64_t step, int training,
                        float *y) {
  dml_graph *g;
  if (dml_graph_new(&g) != DML_OK) return 0;
  dml_graph_set_seed(g, seed, step);
  dml_graph_set_training(g, training);
  int64_t shape[2] = {200, DROP_N / 200};
  dml_node *nx, *ny;
  int ok = dml_graph_input(g, x, 2, shape, 1, &nx) == DML_OK &&
           dml_op_dropout(g, nx, p, &ny) == DML_OK;
  if (ok) memcpy(y, dml_node_value(ny)->data, DROP_N * sizeof(float));
  dml_graph_free(g);
  return ok;
}

static float *ramp(void) {
  float *x = malloc(DROP_N * sizeof(float));
  if (x)
    for (int i = 0; i < DROP_N; i++) x[i] = 1.0f + (float)(i % 7); /* never zero */
  return x;
}

TEST(dropout_statistics) {
  float *x = ramp(), *y = malloc(DROP_N * sizeof(float));
  ASSERT_TRUE(x && y);
  const float p = 0.3f, scale = 1.0f / (1.0f - p);
  int ok = dropout_once(x, p, 1234, 0, 1, y);
  int dropped = 0, bad = 0;
  for (int i = 0; ok && i < DROP_N; i++) {
    if (y[i] == 0.0f)
      dropped++;
    else if (y[i] != x[i] * scale)
      bad++;
  }
  free(x);
  free(y);
  ASSERT_TRUE(ok);
  ASSERT_EQ_INT(bad, 0);
  /* binomial: sd of the fraction is sqrt(p (1 - p) / n) = 0.00145; allow 4 sd */
  ASSERT_NEAR((double)dropped / DROP_N, p, 0.006);
}

TEST(dropout_gradient_is_mask_times_scale) {
  float *x = ramp();
  ASSERT_TRUE(x != NULL);
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  dml_graph_set_seed(g, 99, 3);
  int64_t shape[1] = {DROP_N};
  dml_node *nx, *ny, *nz;
  ASSERT_OK(dml_graph_input(g, x, 1, shape, 1, &nx));
  free(x);
  const float p = 0.5f, scale = 2.0f;
  ASSERT_OK(dml_op_dropout(g, nx, p, &ny));
  ASSERT_TRUE(ny != nx);
  ASSERT_OK(dml_op_mean(g, ny, &nz));
  ASSERT_OK(dml_graph_backward(g, nz, NULL));
  const float *y = dml_node_value(ny)->data, *dx = dml_node_grad(nx);
  ASSERT_TRUE(dx != NULL);
  const float dy = 1.0f / DROP_N;
  int bad = 0;
  for (int i = 0; i < DROP_N; i++) {
    float want = y[i] != 0.0f ? dy * scale : 0.0f;
    if (dx[i] != want) bad++;
  }
  dml_graph_free(g);
  ASSERT_EQ_INT(bad, 0);
}

TEST(dropout_mask_depends_only_on_seed_and_step) {
  float *x = ramp(), *a = malloc(DROP_N * sizeof(float)), *b = malloc(DROP_N * sizeof(float));
  ASSERT_TRUE(x && a && b);
  int saved = dml_get_num_threads();
  dml_set_num_threads(1);
  int ok = dropout_once(x, 0.2f, 42, 7, 1, a);
  dml_set_num_threads(2);
  ok = ok && dropout_once(x, 0.2f, 42, 7, 1, b);
  dml_set_num_threads(saved);
  int same_threads = ok && memcmp(a, b, DROP_N * sizeof(float)) == 0;
  ok = ok && dropout_once(x, 0.2f, 42, 8, 1, b);
  int diff_step = 0;
  for (int i = 0; ok && i < DROP_N; i++) diff_step += (a[i] == 0.0f) != (b[i] == 0.0f);
  ok = ok && dropout_once(x, 0.2f, 43, 7, 1, b);
  int diff_seed = 0;
  for (int i = 0; ok && i < DROP_N; i++) diff_seed += (a[i] == 0.0f) != (b[i] == 0.0f);
  free(x);
  free(a);
  free(b);
  ASSERT_TRUE(ok);
  ASSERT_TRUE(same_threads);
  /* independent masks at p = 0.2 disagree on 2 p (1 - p) = 32% of the elements */
  ASSERT_TRUE(diff_step > DROP_N / 4);
  ASSERT_TRUE(diff_seed > DROP_N / 4);
}

TEST(dropout_two_ops_in_one_step_get_different_masks) {
  float x[4096];
  for (int i = 0; i < 4096; i++) x[i] = 1.0f;
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  dml_graph_set_seed(g, 5, 0);
  int64_t shape[1] = {4096};
  dml_node *nx, *a, *b;
  ASSERT_OK(dml_graph_input(g, x, 1, shape, 0, &nx));
  ASSERT_OK(dml_op_dropout(g, nx, 0.5f, &a));
  ASSERT_OK(dml_op_dropout(g, nx, 0.5f, &b));
  int diff = 0;
  for (int i = 0; i < 4096; i++)
    diff += (dml_node_value(a)->data[i] == 0.0f) != (dml_node_value(b)->data[i] == 0.0f);
  dml_graph_free(g);
  ASSERT_TRUE(diff > 4096 / 4);
}

TEST(dropout_identity_in_eval_and_for_p0) {
  float x[6] = {1, -2, 3, 0, 5, -6};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t shape[2] = {2, 3};
  dml_node *nx, *y, *s;
  ASSERT_OK(dml_graph_input(g, x, 2, shape, 1, &nx));
  ASSERT_OK(dml_op_dropout(g, nx, 0.0f, &y));
  for (int i = 0; i < 6; i++) ASSERT_NEAR(dml_node_value(y)->data[i], x[i], 0);
  dml_graph_set_training(g, 0);
  ASSERT_OK(dml_op_dropout(g, nx, 0.9f, &y));
  for (int i = 0; i < 6; i++) ASSERT_NEAR(dml_node_value(y)->data[i], x[i], 0);
  ASSERT_OK(dml_op_sum(g, y, &s));
  ASSERT_OK(dml_graph_backward(g, s, NULL));
  for (int i = 0; i < 6; i++) ASSERT_NEAR(dml_node_grad(nx)[i], 1.0f, 0);
  dml_graph_free(g);
}

TEST(dropout_rejects_bad_p) {
  float x[2] = {1, 2};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t shape[1] = {2};
  dml_node *nx, *y;
  ASSERT_OK(dml_graph_input(g, x, 1, shape, 1, &nx));
  ASSERT_ERROR(dml_op_dropout(g, nx, 1.0f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "[0, 1)") != NULL);
  ASSERT_ERROR(dml_op_dropout(g, nx, -0.1f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_dropout(g, nx, NAN, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_dropout(g, NULL, 0.5f, &y), DML_ERR_INVALID_ARGUMENT);
  dml_graph_free(g);
}

/* ---- cross-entropy details ---- */

TEST(cross_entropy_label_errors_name_row_and_value) {
  float logits[6] = {0.1f, 0.2f, 0.3f, 1, 2, 3};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t shape[2] = {2, 3}, s1[1] = {6}, s0[2] = {0, 3};
  dml_node *x, *flat, *empty, *y;
  ASSERT_OK(dml_graph_input(g, logits, 2, shape, 1, &x));
  ASSERT_OK(dml_graph_input(g, logits, 1, s1, 1, &flat));
  ASSERT_OK(dml_graph_input(g, logits, 2, s0, 1, &empty));
  int32_t high[2] = {0, 3}, neg[2] = {-1, 0}, good[2] = {2, 0};
  ASSERT_ERROR(dml_op_cross_entropy(g, x, high, 0.0f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "row 1") && strstr(dml_last_error(), "is 3"));
  ASSERT_ERROR(dml_op_cross_entropy(g, x, neg, 0.0f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "row 0") && strstr(dml_last_error(), "is -1"));
  ASSERT_ERROR(dml_op_cross_entropy(g, x, NULL, 0.0f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_cross_entropy(g, x, good, 1.5f, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_cross_entropy(g, flat, good, 0.0f, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_cross_entropy(g, empty, good, 0.0f, &y), DML_ERR_SHAPE);
  dml_graph_free(g);
}

TEST(cross_entropy_copies_labels) {
  float logits[6] = {0.1f, 0.2f, 0.3f, 1, 2, 3};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t shape[2] = {2, 3};
  dml_node *x, *y;
  ASSERT_OK(dml_graph_input(g, logits, 2, shape, 1, &x));
  int32_t labels[2] = {2, 0};
  ASSERT_OK(dml_op_cross_entropy(g, x, labels, 0.0f, &y));
  labels[0] = 0;
  labels[1] = 2;
  ASSERT_OK(dml_graph_backward(g, y, NULL));
  /* dlogits = (softmax - onehot(original labels)) / N */
  const float *d = dml_node_grad(x);
  double e0 = exp(0.1), e1 = exp(0.2), e2 = exp(0.3);
  ASSERT_NEAR(d[2], (e2 / (e0 + e1 + e2) - 1.0) / 2.0, 1e-6);
  ASSERT_NEAR(d[0], (e0 / (e0 + e1 + e2)) / 2.0, 1e-6);
  ASSERT_NEAR(d[3], (exp(1.0) / (exp(1.0) + exp(2.0) + exp(3.0)) - 1.0) / 2.0, 1e-6);
  dml_graph_free(g);
}

TEST(softmax_of_huge_logits_is_finite) {
  float x[4] = {1e30f, 1e30f, -1e30f, 88.0f};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t shape[2] = {1, 4};
  dml_node *nx, *y, *ly;
  ASSERT_OK(dml_graph_input(g, x, 2, shape, 1, &nx));
  ASSERT_OK(dml_op_softmax(g, nx, &y));
  ASSERT_OK(dml_op_log_softmax(g, nx, &ly));
  ASSERT_NEAR(dml_node_value(y)->data[0], 0.5f, 1e-7);
  ASSERT_NEAR(dml_node_value(y)->data[2], 0.0f, 0);
  ASSERT_NEAR(dml_node_value(ly)->data[1], -0.69314718f, 1e-6);
  ASSERT_TRUE(isinf(dml_node_value(ly)->data[2]) || dml_node_value(ly)->data[2] < -1e29f);
  dml_graph_free(g);
}

/* ---- shape and reduction errors ---- */

TEST(shape_op_errors) {
  float data[24] = {0};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t s234[3] = {2, 3, 4}, s24[2] = {2, 4}, s33[2] = {3, 3}, s6[1] = {6};
  dml_node *x, *a, *b, *v, *y;
  ASSERT_OK(dml_graph_input(g, data, 3, s234, 1, &x));
  ASSERT_OK(dml_graph_input(g, data, 2, s24, 1, &a));
  ASSERT_OK(dml_graph_input(g, data, 2, s33, 1, &b));
  ASSERT_OK(dml_graph_input(g, data, 1, s6, 1, &v));
  int64_t t_bad[2] = {5, 5}, t_two[2] = {-1, -1}, t_neg[2] = {-2, 12}, t_inf[2] = {5, -1};
  ASSERT_ERROR(dml_op_reshape(g, x, 2, t_bad, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[2, 3, 4]") && strstr(dml_last_error(), "[5, 5]"));
  ASSERT_ERROR(dml_op_reshape(g, x, 2, t_two, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_reshape(g, x, 2, t_neg, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_reshape(g, x, 2, t_inf, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_reshape(g, x, 2, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_reshape(g, x, 7, t_bad, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_flatten(g, v, &y), DML_ERR_SHAPE);
  dml_node *pair[2] = {a, b};
  ASSERT_ERROR(dml_op_concat(g, pair, 2, 0, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[2, 4]") && strstr(dml_last_error(), "[3, 3]"));
  ASSERT_ERROR(dml_op_concat(g, pair, 2, 2, &y), DML_ERR_SHAPE);
  dml_node *mixed[2] = {a, x};
  ASSERT_ERROR(dml_op_concat(g, mixed, 2, 0, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_concat(g, pair, 0, 0, &y), DML_ERR_INVALID_ARGUMENT);
  dml_node *with_null[2] = {a, NULL};
  ASSERT_ERROR(dml_op_concat(g, with_null, 2, 0, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_slice(g, x, 1, 2, 2, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[2, 3, 4]") != NULL);
  ASSERT_ERROR(dml_op_slice(g, x, 3, 0, 1, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_slice(g, x, 1, 0, -1, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_mse(g, a, b, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[2, 4]") && strstr(dml_last_error(), "[3, 3]"));
  ASSERT_ERROR(dml_op_sum(g, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_softmax(g, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  /* an empty slice is fine, a mean over nothing is not */
  ASSERT_OK(dml_op_slice(g, x, -1, 4, 0, &y));
  ASSERT_EQ_INT(dml_tensor_numel(dml_node_value(y)), 0);
  dml_node *m;
  ASSERT_ERROR(dml_op_mean(g, y, &m), DML_ERR_SHAPE);
  ASSERT_OK(dml_op_sum(g, y, &m));
  ASSERT_NEAR(dml_node_value(m)->data[0], 0.0f, 0);
  dml_graph_free(g);
}

TEST(reductions_are_rank0_and_thread_invariant) {
  enum { N = 300001 };
  float *x = malloc(N * sizeof(float));
  ASSERT_TRUE(x != NULL);
  for (int i = 0; i < N; i++) x[i] = sinf((float)i) * 1e3f + 1e-3f;
  float r[2];
  int saved = dml_get_num_threads();
  int ok = 1;
  for (int t = 0; t < 2; t++) {
    dml_set_num_threads(t + 1);
    dml_graph *g = NULL;
    int64_t shape[1] = {N};
    dml_node *nx, *s;
    ok = ok && dml_graph_new(&g) == DML_OK;
    ok = ok && dml_graph_input(g, x, 1, shape, 0, &nx) == DML_OK &&
         dml_op_sum(g, nx, &s) == DML_OK && dml_node_value(s)->ndim == 0;
    if (ok) r[t] = dml_node_value(s)->data[0];
    dml_graph_free(g);
  }
  dml_set_num_threads(saved);
  double ref = 0;
  for (int i = 0; i < N; i++) ref += x[i];
  free(x);
  ASSERT_TRUE(ok);
  ASSERT_TRUE(memcmp(&r[0], &r[1], sizeof(float)) == 0);
  ASSERT_NEAR(r[0], ref, 1e-6 * fabs(ref) + 1e-2);
}

TEST(empty_batches_flow_through) {
  float data[6] = {1, 2, 3, 4, 5, 6};
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  int64_t s0[2] = {0, 3}, s2[2] = {2, 3};
  dml_node *e, *x, *y, *parts[2], *cat, *sm, *s;
  ASSERT_OK(dml_graph_input(g, data, 2, s0, 1, &e));
  ASSERT_OK(dml_graph_input(g, data, 2, s2, 1, &x));
  ASSERT_OK(dml_op_softmax(g, e, &sm));
  ASSERT_EQ_INT(dml_tensor_numel(dml_node_value(sm)), 0);
  ASSERT_OK(dml_op_log_softmax(g, e, &y));
  parts[0] = e;
  parts[1] = x;
  ASSERT_OK(dml_op_concat(g, parts, 2, 0, &cat));
  ASSERT_EQ_INT(dml_node_value(cat)->shape[0], 2);
  int64_t flat[1] = {-1};
  ASSERT_OK(dml_op_reshape(g, cat, 1, flat, &y));
  ASSERT_EQ_INT(dml_node_value(y)->shape[0], 6);
  ASSERT_OK(dml_op_sum(g, y, &s));
  ASSERT_NEAR(dml_node_value(s)->data[0], 21.0f, 0);
  ASSERT_OK(dml_graph_backward(g, s, NULL));
  for (int i = 0; i < 6; i++) ASSERT_NEAR(dml_node_grad(x)[i], 1.0f, 0);
  dml_graph_free(g);
}
