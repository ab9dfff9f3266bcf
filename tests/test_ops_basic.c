/* Matmul, linear, elementwise ops and activations against PyTorch fixtures and finite
 * differences; shape errors. */
#include "fixture.h"
#include "test.h"

static dml_status build_basic(dml_graph *g, dml_node **in, int n, const cJSON *attrs, void *ctx,
                              dml_node **out) {
  const char *op = ctx;
  if (!strcmp(op, "matmul"))
    return dml_op_matmul(g, in[0], in[1], (int)fixture_attr_num(attrs, "trans_a", 0),
                         (int)fixture_attr_num(attrs, "trans_b", 0), out);
  if (!strcmp(op, "linear")) return dml_op_linear(g, in[0], in[1], n > 2 ? in[2] : NULL, out);
  if (!strcmp(op, "add")) return dml_op_add(g, in[0], in[1], out);
  if (!strcmp(op, "sub")) return dml_op_sub(g, in[0], in[1], out);
  if (!strcmp(op, "mul")) return dml_op_mul(g, in[0], in[1], out);
  if (!strcmp(op, "scale")) return dml_op_scale(g, in[0], (float)fixture_attr_num(attrs, "s", 1), out);
  if (!strcmp(op, "add_bias")) return dml_op_add_bias(g, in[0], in[1], out);
  if (!strcmp(op, "relu")) return dml_op_relu(g, in[0], out);
  if (!strcmp(op, "leaky_relu"))
    return dml_op_leaky_relu(g, in[0], (float)fixture_attr_num(attrs, "slope", 0.01), out);
  if (!strcmp(op, "gelu")) return dml_op_gelu(g, in[0], out);
  if (!strcmp(op, "sigmoid")) return dml_op_sigmoid(g, in[0], out);
  if (!strcmp(op, "tanh")) return dml_op_tanh(g, in[0], out);
  if (!strcmp(op, "softplus"))
    return dml_op_softplus(g, in[0], (float)fixture_attr_num(attrs, "beta", 1),
                           (float)fixture_attr_num(attrs, "threshold", 20), out);
  return DML_ERR_UNSUPPORTED;
}

#define OP_TEST(opname)                                                                   \
  TEST(opname) {                                                                          \
    ASSERT_EQ_INT(fixture_check_file("fixtures/ops_basic.json", #opname, build_basic,     \
                                     (void *)#opname),                                    \
                  0);                                                                     \
  }

OP_TEST(matmul)
OP_TEST(linear)
OP_TEST(add)
OP_TEST(sub)
OP_TEST(mul)
OP_TEST(scale)
OP_TEST(add_bias)
OP_TEST(relu)
OP_TEST(leaky_relu)
OP_TEST(gelu)
OP_TEST(sigmoid)
OP_TEST(tanh)
OP_TEST(softplus)

TEST(shape_errors_name_both_shapes) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float a[6] = {0}, b[8] = {0};
  int64_t sa[2] = {2, 3}, sb[2] = {2, 4};
  dml_node *na, *nb, *y = NULL;
  ASSERT_OK(dml_graph_input(g, a, 2, sa, 1, &na));
  ASSERT_OK(dml_graph_input(g, b, 2, sb, 1, &nb));
  ASSERT_ERROR(dml_op_matmul(g, na, nb, 0, 0, &y), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[2, 3]") && strstr(dml_last_error(), "[2, 4]"));
  ASSERT_ERROR(dml_op_add(g, na, nb, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_linear(g, na, nb, NULL, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_relu(g, NULL, &y), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_softplus(g, na, 0.0f, 20.0f, &y), DML_ERR_INVALID_ARGUMENT);
  dml_graph_free(g);
}

TEST(backward_needs_scalar_or_seed) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float a[4] = {1, -2, 3, -4};
  int64_t s[1] = {4};
  dml_node *x, *y, *l;
  ASSERT_OK(dml_graph_input(g, a, 1, s, 1, &x));
  ASSERT_OK(dml_op_relu(g, x, &y));
  ASSERT_ERROR(dml_graph_backward(g, y, NULL), DML_ERR_SHAPE);
  dml_graph_reset(g);
  ASSERT_OK(dml_graph_input(g, a, 1, s, 1, &x));
  ASSERT_OK(dml_op_relu(g, x, &y));
  ASSERT_OK(dml_op_mul(g, y, y, &l));
  float seed[4] = {1, 1, 1, 1};
  ASSERT_OK(dml_graph_backward(g, l, seed));
  const float *gx = dml_node_grad(x);
  ASSERT_TRUE(gx != NULL);
  /* d/dx relu(x)^2 = 2x for x > 0: the gradient of a node used twice accumulates */
  ASSERT_NEAR(gx[0], 2.0f, 1e-6);
  ASSERT_NEAR(gx[1], 0.0f, 1e-6);
  ASSERT_NEAR(gx[2], 6.0f, 1e-6);
  ASSERT_ERROR(dml_graph_backward(g, l, seed), DML_ERR_STATE);
  dml_graph_free(g);
}

TEST(non_finite_input_is_refused) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float a[3] = {1, INFINITY, 2}, b[3] = {NAN, 0, 0};
  int64_t s[1] = {3};
  dml_node *x = NULL;
  ASSERT_ERROR(dml_graph_input(g, a, 1, s, 1, &x), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "index 1") != NULL);
  ASSERT_ERROR(dml_graph_input(g, b, 1, s, 1, &x), DML_ERR_NOT_FINITE);
  dml_graph_stats st;
  dml_graph_get_stats(g, &st);
  ASSERT_EQ_INT(st.nodes, 0);
  dml_graph_free(g);
}

/* x feeds relu and, directly, add: relu's backward must accumulate into the gradient add has
 * already written, while a lone relu stores into a fresh buffer. */
TEST(gradient_of_a_node_used_twice_accumulates) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float a[4] = {1, -2, 3, -4}, w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  int64_t s[2] = {1, 4}, ws[2] = {2, 4};
  dml_node *x, *r, *y, *wn, *l1, *l2;
  ASSERT_OK(dml_graph_input(g, a, 2, s, 1, &x));
  ASSERT_OK(dml_op_relu(g, x, &r));
  ASSERT_OK(dml_op_add(g, r, x, &y));
  float seed[4] = {1, 10, 100, 1000};
  ASSERT_OK(dml_graph_backward(g, y, seed));
  const float *gx = dml_node_grad(x);
  ASSERT_NEAR(gx[0], 2.0f, 0);
  ASSERT_NEAR(gx[1], 10.0f, 0);
  ASSERT_NEAR(gx[2], 200.0f, 0);
  ASSERT_NEAR(gx[3], 1000.0f, 0);
  /* the same input through two linears: dx = dy1 W + dy2 W */
  dml_graph_reset(g);
  ASSERT_OK(dml_graph_input(g, a, 2, s, 1, &x));
  ASSERT_OK(dml_graph_input(g, w, 2, ws, 1, &wn));
  ASSERT_OK(dml_op_linear(g, x, wn, NULL, &l1));
  ASSERT_OK(dml_op_linear(g, x, wn, NULL, &l2));
  ASSERT_OK(dml_op_add(g, l1, l2, &y));
  float seed2[2] = {1, 1};
  ASSERT_OK(dml_graph_backward(g, y, seed2));
  gx = dml_node_grad(x);
  const float *gw = dml_node_grad(wn);
  for (int k = 0; k < 4; k++) {
    ASSERT_NEAR(gx[k], 2.0f * (w[k] + w[4 + k]), 0);
    ASSERT_NEAR(gw[k], 2.0f * a[k], 0);
  }
  dml_graph_free(g);
}

/* Hostile shapes and NULL outputs are errors, not overflows or crashes. */
TEST(huge_shapes_and_null_outputs_are_errors) {
  dml_graph *g, *other;
  ASSERT_OK(dml_graph_new(&g));
  ASSERT_OK(dml_graph_new(&other));
  float a[4] = {1, 2, 3, 4};
  int64_t huge[1] = {((int64_t)1 << 62) + 1}, huge2[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  int64_t s4[1] = {4};
  dml_node *x = NULL, *y = NULL, *z = NULL;
  ASSERT_ERROR(dml_graph_input(g, a, 1, huge, 1, &x), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_graph_input(g, a, 2, huge2, 1, &x), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_graph_input(g, a, 1, NULL, 1, &x), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_graph_input(g, a, 1, s4, 1, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml_graph_input(g, a, 1, s4, 1, &x));
  int64_t r[2] = {((int64_t)1 << 62) + 1, 4};
  ASSERT_ERROR(dml_op_reshape(g, x, 2, r, &y), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_op_relu(g, x, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_op_add(g, x, x, NULL), DML_ERR_INVALID_ARGUMENT);
  /* backward from a node of another graph leaves both graphs usable */
  ASSERT_OK(dml_graph_input(other, a, 1, s4, 1, &z));
  ASSERT_OK(dml_op_sum(other, z, &y));
  ASSERT_ERROR(dml_graph_backward(g, y, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml_op_sum(g, x, &y));
  ASSERT_OK(dml_graph_backward(g, y, NULL));
  ASSERT_NEAR(dml_node_grad(x)[0], 1.0f, 0);
  dml_param_store *ps;
  ASSERT_OK(dml_params_new(&ps));
  ASSERT_ERROR(dml_params_add(ps, "w", 2, huge2, 1, NULL), DML_ERR_INVALID_ARGUMENT);
  dml_params_free(ps);
  dml_graph_free(other);
  dml_graph_free(g);
}

/* A reshape whose input has another consumer copies its gradient: the reshape's own gradient
 * stays what reached it. */
TEST(reshape_gradient_with_two_consumers) {
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float a[4] = {1, 2, 3, 4};
  int64_t s4[1] = {4}, s22[2] = {2, 2};
  dml_node *x, *z, *y, *yf, *t, *l;
  ASSERT_OK(dml_graph_input(g, a, 1, s4, 1, &x));
  ASSERT_OK(dml_op_scale(g, x, 3.0f, &z));
  ASSERT_OK(dml_op_reshape(g, x, 2, s22, &y));
  ASSERT_OK(dml_op_reshape(g, y, 1, s4, &yf));
  ASSERT_OK(dml_op_add(g, yf, z, &t));
  ASSERT_OK(dml_op_sum(g, t, &l));
  ASSERT_OK(dml_graph_backward(g, l, NULL));
  for (int k = 0; k < 4; k++) {
    ASSERT_NEAR(dml_node_grad(y)[k], 1.0f, 0);
    ASSERT_NEAR(dml_node_grad(yf)[k], 1.0f, 0);
    ASSERT_NEAR(dml_node_grad(x)[k], 4.0f, 0);
  }
  dml_graph_free(g);
}
