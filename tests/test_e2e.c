/* End to end: an MLP fits two-moons, a small CNN overfits 64 real Fashion-MNIST images, a
 * trained model survives a checkpoint round trip bit for bit, training is reproducible from
 * its seed, and a steady-state training step performs no heap allocation in the arena. */
#include <math.h>
#include <stdlib.h>

#include "test.h"

/* Two interleaving half circles (as scikit-learn's make_moons), Gaussian noise sd 0.1. */
static void two_moons(int n, float *x, int32_t *y, uint64_t seed) {
  for (int i = 0; i < n; i++) {
    int cls = i % 2;
    float t = 3.14159265f * dml_rng_uniform(seed, 1, (uint64_t)i);
    float px = cls ? 1.0f - cosf(t) : cosf(t);
    float py = cls ? 0.5f - sinf(t) : sinf(t);
    x[2 * i] = px + 0.1f * dml_rng_normal(seed, 2, (uint64_t)i);
    x[2 * i + 1] = py + 0.1f * dml_rng_normal(seed, 3, (uint64_t)i);
    y[i] = cls;
  }
}

/* One step of cross-entropy training on (x, y); returns the loss or NAN on failure. */
static float ce_step(dml_model *m, dml_graph *g, dml_optim *opt, const float *x, int64_t n,
                     const int32_t *y) {
  int nd;
  int64_t shape[DML_MAX_DIMS + 1];
  dml_model_input_shape(m, &nd, shape + 1);
  shape[0] = n;
  dml_graph_reset(g);
  dml_graph_set_training(g, 1);
  dml_node *in, *logits, *loss;
  if (dml_graph_input(g, x, nd + 1, shape, 0, &in) || dml_model_forward(m, g, in, &logits) ||
      dml_op_cross_entropy(g, logits, y, 0.0f, &loss))
    return NAN;
  dml_params_zero_grad(dml_model_params(m));
  if (dml_graph_backward(g, loss, NULL) || dml_optim_step(opt)) return NAN;
  return dml_node_value(loss)->data[0];
}

static double accuracy(dml_model *m, dml_graph *g, const float *x, int64_t n, const int32_t *y) {
  int64_t c = dml_model_output_numel(m);
  float *out = malloc((size_t)(n * c) * sizeof(float));
  if (!out || dml_model_predict(m, g, x, n, 64, out) != DML_OK) {
    free(out);
    return -1;
  }
  int64_t right = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t best = 0;
    for (int64_t k = 1; k < c; k++)
      if (out[i * c + k] > out[i * c + best]) best = k;
    right += best == y[i];
  }
  free(out);
  return (double)right / (double)n;
}

static const char *moons_mlp =
    "input 2\nlinear out=64\nrelu\nlinear out=64\nrelu\nlinear out=2\n";

TEST(mlp_fits_two_moons) {
  enum { N = 512 };
  static float x[2 * N];
  static int32_t y[N];
  two_moons(N, x, y, 7);
  dml_model *m;
  dml_graph *g;
  dml_optim *opt;
  ASSERT_OK(dml_model_parse(moons_mlp, "two-moons MLP", &m));
  ASSERT_OK(dml_model_init_weights(m, 3));
  ASSERT_OK(dml_graph_new(&g));
  dml_optim_config cfg = dml_optim_config_default(DML_OPTIM_ADAM);
  cfg.lr = 0.01f;
  ASSERT_OK(dml_optim_new(dml_model_params(m), &cfg, &opt));
  double before = accuracy(m, g, x, N, y);
  float loss = 0;
  for (int step = 0; step < 400; step++) {
    loss = ce_step(m, g, opt, x, N, y);
    ASSERT_TRUE(isfinite(loss));
  }
  double after = accuracy(m, g, x, N, y);
  fprintf(stderr, "  two-moons: accuracy %.3f -> %.3f, final loss %.4f\n", before, after, loss);
  ASSERT_TRUE(after >= 0.995);
  ASSERT_TRUE(loss < 0.05f);
  dml_optim_free(opt);
  dml_graph_free(g);
  dml_model_free(m);
}

static const char *small_cnn =
    "input 1 28 28\n"
    "conv2d out=8 k=3 pad=1\nbatchnorm\nrelu\nmaxpool2d k=2\n"
    "conv2d out=16 k=3 pad=1\nbatchnorm\nrelu\nmaxpool2d k=2\n"
    "flatten\nlinear out=10\n";

static int load_fmnist64(dml_dataset *ds) {
  char ip[1024], lp[1024];
  snprintf(ip, sizeof ip, "%s/fixtures/fmnist64-images-idx3-ubyte.gz", dml_test_data_dir());
  snprintf(lp, sizeof lp, "%s/fixtures/fmnist64-labels-idx1-ubyte.gz", dml_test_data_dir());
  if (dml_data_read_idx(ip, lp, 0, ds) != DML_OK) return 0;
  return dml_dataset_normalize(ds, 0.2860f, 0.3530f) == DML_OK;
}

/* Trains the small CNN for `steps` full-batch steps; returns the model (caller frees). */
static dml_model *train_small_cnn(const dml_dataset *ds, uint64_t seed, int steps,
                                  dml_graph_stats *stats_at_3, dml_graph_stats *stats_end) {
  dml_model *m = NULL;
  dml_graph *g = NULL;
  dml_optim *opt = NULL;
  if (dml_model_parse(small_cnn, "small CNN", &m) || dml_model_init_weights(m, seed) ||
      dml_graph_new(&g))
    goto fail;
  dml_optim_config cfg = dml_optim_config_default(DML_OPTIM_ADAM);
  cfg.lr = 3e-3f;
  if (dml_optim_new(dml_model_params(m), &cfg, &opt)) goto fail;
  for (int s = 0; s < steps; s++) {
    if (!isfinite(ce_step(m, g, opt, ds->x, ds->n, ds->labels))) goto fail;
    if (s == 2 && stats_at_3) dml_graph_get_stats(g, stats_at_3);
  }
  if (stats_end) dml_graph_get_stats(g, stats_end);
  dml_optim_free(opt);
  dml_graph_free(g);
  return m;
fail:
  fprintf(stderr, "  training failed: %s\n", dml_last_error());
  dml_optim_free(opt);
  dml_graph_free(g);
  dml_model_free(m);
  return NULL;
}

TEST(cnn_overfits_64_fashion_mnist_images) {
  dml_dataset ds;
  ASSERT_TRUE(load_fmnist64(&ds));
  dml_graph_stats s3, send;
  dml_model *m = train_small_cnn(&ds, 11, 60, &s3, &send);
  ASSERT_TRUE(m != NULL);
  /* steady state: no arena allocation after the third step */
  ASSERT_EQ_INT(send.arena_heap_allocations, s3.arena_heap_allocations);
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  double acc = accuracy(m, g, ds.x, ds.n, ds.labels);
  fprintf(stderr, "  64 Fashion-MNIST images: training accuracy %.3f\n", acc);
  ASSERT_NEAR(acc, 1.0, 0.0);

  /* checkpoint round trip: bit-identical outputs */
  char prefix[1024];
  dml_test_tmp_path("e2e_cnn", prefix, sizeof prefix);
  ASSERT_OK(dml_checkpoint_save(prefix, m, NULL, "{\"epoch\": 1}"));
  dml_model *back = NULL;
  char *meta = NULL;
  ASSERT_OK(dml_checkpoint_load(prefix, &back, &meta));
  ASSERT_TRUE(meta && strstr(meta, "epoch"));
  free(meta);
  float *a = malloc(64 * 10 * sizeof(float)), *b = malloc(64 * 10 * sizeof(float));
  ASSERT_OK(dml_model_predict(m, g, ds.x, 64, 64, a));
  ASSERT_OK(dml_model_predict(back, g, ds.x, 64, 64, b));
  ASSERT_TRUE(memcmp(a, b, 64 * 10 * sizeof(float)) == 0);
  free(a);
  free(b);
  dml_model_free(back);
  dml_graph_free(g);
  dml_model_free(m);
  dml_dataset_free(&ds);
}

TEST(training_is_reproducible_from_the_seed) {
  dml_dataset ds;
  ASSERT_TRUE(load_fmnist64(&ds));
  dml_model *a = train_small_cnn(&ds, 5, 4, NULL, NULL);
  dml_model *b = train_small_cnn(&ds, 5, 4, NULL, NULL);
  dml_model *c = train_small_cnn(&ds, 6, 4, NULL, NULL);
  ASSERT_TRUE(a && b && c);
  dml_param_store *pa = dml_model_params(a), *pb = dml_model_params(b), *pc = dml_model_params(c);
  int64_t n = dml_params_numel(pa);
  ASSERT_EQ_INT(n, dml_params_numel(pb));
  int same_ab = 1, same_ac = 1;
  for (int i = 0; i < dml_params_count(pa); i++) {
    dml_param *x = dml_params_get(pa, i), *y = dml_params_get(pb, i), *z = dml_params_get(pc, i);
    if (memcmp(x->value, y->value, (size_t)x->numel * sizeof(float))) same_ab = 0;
    if (memcmp(x->value, z->value, (size_t)x->numel * sizeof(float))) same_ac = 0;
  }
  ASSERT_TRUE(same_ab);
  ASSERT_TRUE(!same_ac);
  dml_model_free(a);
  dml_model_free(b);
  dml_model_free(c);
  dml_dataset_free(&ds);
}
