/* The proxy and classifier losses (proxy_nca, proxy_anchor, normalized_softmax, cosface,
 * arcface, subcenter_arcface, cross_entropy): PyTorch reference fixtures with finite
 * differences, edge cases (one class, a class of one, duplicates, a zero vector, B = 1, an
 * embedding equal to its class weight or opposite it), the parameters' shapes and
 * initialisation, results independent of the thread count, and the errors (labels outside
 * [0, num_classes), no num_classes, unknown options, wrong distance). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss/loss_internal.h"
#include "loss_check.h"
#include "test.h"

#define ED 6
#define NC 4

static const char *const all_losses[] = {"proxy_nca",         "proxy_anchor", "normalized_softmax",
                                         "cosface",           "arcface",      "subcenter_arcface",
                                         "cross_entropy"};
#define N_LOSSES ((int)(sizeof all_losses / sizeof all_losses[0]))

static void fill(float *x, int64_t n, uint64_t seed) {
  dml_rng_fill_normal(x, n, 0.0f, 1.0f, seed, 3);
}

TEST(proxy_fixtures) { ASSERT_EQ_INT(loss_check_file("fixtures/losses_proxy.json"), 0); }

/* loss_check_finite, printing what failed. */
static int finite_case(const char *spec, const float *emb, const int32_t *labels, int64_t b,
                       const char *what) {
  const dml_loss_config cfg = {ED, NC, 7};
  float loss = NAN;
  dml_status st = loss_check_finite(spec, &cfg, emb, labels, b, ED, &loss, NULL);
  if (st != DML_OK) {
    fprintf(stderr, "  %s, %s: %s (%s)\n", spec, what, dml_status_str(st), dml_last_error());
    return 0;
  }
  return 1;
}

TEST(proxy_edge_cases) {
  float emb[8 * ED], dup[6 * ED], zero_row[6 * ED];
  fill(emb, 8 * ED, 1);
  fill(dup, 6 * ED, 2);
  fill(zero_row, 6 * ED, 3);
  for (int k = 0; k < ED; k++) {
    dup[1 * ED + k] = dup[0 * ED + k]; /* duplicates of one class */
    dup[4 * ED + k] = dup[0 * ED + k]; /* and of another */
    zero_row[2 * ED + k] = 0.0f;
  }
  const int32_t one_class[8] = {2, 2, 2, 2, 2, 2, 2, 2};
  const int32_t single[8] = {0, 0, 1, 1, 3, 0, 1, 1}; /* class 3 has one example, 2 none */
  const int32_t dup_lab[6] = {0, 0, 1, 1, 2, 3};
  const char *extra[] = {"proxy_nca distance=cosine scale=8", "proxy_anchor distance=dot",
                         "cross_entropy label_smoothing=0.1", "arcface margin=1.2",
                         "subcenter_arcface centers=1", "proxy_anchor reduction=nonzero",
                         "cosface reduction=sum"};
  for (int s = 0; s < N_LOSSES + (int)(sizeof extra / sizeof extra[0]); s++) {
    const char *spec = s < N_LOSSES ? all_losses[s] : extra[s - N_LOSSES];
    ASSERT_TRUE(finite_case(spec, emb, one_class, 8, "one class"));
    ASSERT_TRUE(finite_case(spec, emb, single, 8, "a class of one"));
    ASSERT_TRUE(finite_case(spec, dup, dup_lab, 6, "duplicates"));
    ASSERT_TRUE(finite_case(spec, zero_row, dup_lab, 6, "a zero vector"));
    ASSERT_TRUE(finite_case(spec, emb, single, 1, "B = 1"));
  }
}

/* Sets every embedding row i to the weight row of its class (sign = +1) or its opposite (-1),
 * runs the loss, and requires a finite loss, gradient and parameter gradient. */
static int on_class_weights(const char *spec, float sign, float *loss_out) {
  const dml_loss_config cfg = {ED, NC, 11};
  dml_loss *l = NULL;
  if (dml_loss_new(spec, &cfg, &l) != DML_OK) return 0;
  dml_param *w = dml_params_find(dml_loss_params(l), "0.weight");
  if (!w) w = dml_params_find(dml_loss_params(l), "0.proxies");
  const int64_t k = w->shape[0] / NC;
  const int32_t labels[6] = {0, 1, 2, 3, 1, 0};
  float emb[6 * ED], grad[6 * ED], loss = NAN;
  for (int i = 0; i < 6; i++)
    for (int c = 0; c < ED; c++) emb[i * ED + c] = sign * w->value[labels[i] * k * ED + c];
  int ok = dml_loss_compute(l, emb, labels, 6, ED, NULL, &loss, grad) == DML_OK;
  if (!ok) fprintf(stderr, "  %s: %s\n", spec, dml_last_error());
  ok &= isfinite(loss);
  for (int i = 0; i < 6 * ED; i++) ok &= isfinite(grad[i]);
  dml_param_store *ps = dml_loss_params(l);
  for (int p = 0; p < dml_params_count(ps); p++) {
    const dml_param *q = dml_params_get(ps, p);
    for (int64_t i = 0; i < q->numel; i++) ok &= isfinite(q->grad[i]);
  }
  if (!ok) fprintf(stderr, "  %s (sign %g): loss %g or a gradient is not finite\n", spec, sign,
                   loss);
  if (loss_out) *loss_out = loss;
  dml_loss_free(l);
  return ok;
}

TEST(proxy_embedding_equal_to_class_weight) {
  const char *specs[] = {"arcface",           "arcface margin=0",       "cosface",
                         "subcenter_arcface", "subcenter_arcface centers=1",
                         "normalized_softmax", "proxy_nca",             "proxy_anchor",
                         "cross_entropy"};
  for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
    float loss = NAN;
    ASSERT_TRUE(on_class_weights(specs[s], 1.0f, &loss));
    ASSERT_TRUE(on_class_weights(specs[s], -1.0f, NULL)); /* cos = -1: ArcFace's fallback */
  }
  /* cos = 1 in ArcFace: the target logit is s cos(m) (theta clamped at ~0) */
  float loss = NAN;
  ASSERT_TRUE(on_class_weights("arcface scale=1 margin=0", 1.0f, &loss));
  ASSERT_TRUE(loss > 0.0f);
}

/* The ArcFace target logit's derivative near cos = 1 stays finite and matches a difference
 * quotient of the value (the kernel's arcface_target through a one-row batch). */
TEST(arcface_near_parallel_gradient_finite) {
  const dml_loss_config cfg = {2, 2, 0};
  dml_loss *l = NULL;
  ASSERT_OK(dml_loss_new("arcface scale=1 margin=0.5", &cfg, &l));
  dml_param *w = dml_params_find(dml_loss_params(l), "0.weight");
  w->value[0] = 1.0f; /* class 0 along x, class 1 along y */
  w->value[1] = 0.0f;
  w->value[2] = 0.0f;
  w->value[3] = 1.0f;
  const int32_t y = 0;
  const float angles[] = {0.0f, 1e-4f, 1e-3f, 0.01f};
  for (size_t a = 0; a < sizeof angles / sizeof angles[0]; a++) {
    float e[2] = {cosf(angles[a]), sinf(angles[a])}, g[2], loss = NAN;
    ASSERT_OK(dml_loss_compute(l, e, &y, 1, 2, NULL, &loss, g));
    ASSERT_TRUE(isfinite(loss) && isfinite(g[0]) && isfinite(g[1]));
    ASSERT_TRUE(fabsf(g[0]) < 1e4f && fabsf(g[1]) < 1e4f);
  }
  dml_loss_free(l);
}

TEST(proxy_labels_outside_classes_refused) {
  const dml_loss_config cfg = {ED, NC, 0};
  float emb[4 * ED], loss = 0.0f;
  fill(emb, 4 * ED, 5);
  const int32_t too_big[4] = {0, 1, NC, 1}, negative[4] = {0, -1, 2, 1};
  for (int s = 0; s < N_LOSSES; s++) {
    dml_loss *l = NULL;
    ASSERT_OK(dml_loss_new(all_losses[s], &cfg, &l));
    ASSERT_ERROR(dml_loss_compute(l, emb, too_big, 4, ED, NULL, &loss, NULL),
                 DML_ERR_INVALID_ARGUMENT);
    ASSERT_ERROR(dml_loss_compute(l, emb, negative, 4, ED, NULL, &loss, NULL),
                 DML_ERR_INVALID_ARGUMENT);
    /* no reference set, and embeddings of the configured width */
    const int32_t ok_labels[4] = {0, 1, 2, 3};
    const dml_loss_ref ref = {emb, ok_labels, 4};
    ASSERT_ERROR(dml_loss_compute(l, emb, ok_labels, 4, ED, &ref, &loss, NULL),
                 DML_ERR_INVALID_ARGUMENT);
    ASSERT_ERROR(dml_loss_compute(l, emb, ok_labels, 4, ED - 1, NULL, &loss, NULL),
                 DML_ERR_SHAPE);
    dml_loss_free(l);
  }
}

TEST(proxy_config_and_option_errors) {
  for (int s = 0; s < N_LOSSES; s++) {
    dml_loss *l = NULL;
    char expect[96];
    snprintf(expect, sizeof expect, "%s needs num_classes in the loss config", all_losses[s]);
    /* no config, num_classes = 0, dim = 0 */
    ASSERT_ERROR(dml_loss_new(all_losses[s], NULL, &l), DML_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(strstr(dml_last_error(), expect) != NULL);
    const dml_loss_config no_classes = {ED, 0, 0}, no_dim = {0, NC, 0};
    ASSERT_ERROR(dml_loss_new(all_losses[s], &no_classes, &l), DML_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(strstr(dml_last_error(), expect) != NULL);
    ASSERT_ERROR(dml_loss_new(all_losses[s], &no_dim, &l), DML_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(strstr(dml_last_error(), "dim") != NULL);
    /* an unknown option: the core lists the valid ones */
    const dml_loss_config cfg = {ED, NC, 0};
    char spec[96];
    snprintf(spec, sizeof spec, "%s no_such_option=1", all_losses[s]);
    ASSERT_ERROR(dml_loss_new(spec, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(strstr(dml_last_error(), "no_such_option") != NULL);
    /* no miners, no memory */
    snprintf(spec, sizeof spec, "%s miner=batch_hard", all_losses[s]);
    ASSERT_ERROR(dml_loss_new(spec, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
    snprintf(spec, sizeof spec, "%s memory=16", all_losses[s]);
    ASSERT_ERROR(dml_loss_new(spec, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(l == NULL);
  }
  const dml_loss_config cfg = {ED, NC, 0}, one = {ED, 1, 0};
  dml_loss *l = NULL;
  /* ProxyNCA's denominator runs over the other classes: it needs two */
  ASSERT_ERROR(dml_loss_new("proxy_nca", &one, &l), DML_ERR_INVALID_ARGUMENT);
  /* the margins are on cosines */
  ASSERT_ERROR(dml_loss_new("arcface distance=euclidean", &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("cosface distance=dot", &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("subcenter_arcface distance=squared_euclidean", &cfg, &l),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("subcenter_arcface centers=2.5", &cfg, &l),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("subcenter_arcface centers=0", &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("arcface margin=4", &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("normalized_softmax temperature=0", &cfg, &l),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("cross_entropy label_smoothing=1.5", &cfg, &l),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(l == NULL);
  /* one class is allowed where the loss is defined */
  ASSERT_OK(dml_loss_new("cross_entropy", &one, &l));
  dml_loss_free(l);
}

/* Shapes, names, initialisation: deterministic in the seed, torch's distributions. */
TEST(proxy_parameters_and_init) {
  const int64_t D = 64, C = 50;
  const dml_loss_config cfg = {D, C, 123}, cfg2 = {D, C, 124};
  struct {
    const char *spec, *name;
    int64_t rows;
  } want[] = {{"proxy_nca", "0.proxies", C},          {"proxy_anchor", "0.proxies", C},
              {"normalized_softmax", "0.weight", C},  {"cosface", "0.weight", C},
              {"arcface", "0.weight", C},             {"subcenter_arcface", "0.weight", 3 * C},
              {"subcenter_arcface centers=5", "0.weight", 5 * C},
              {"cross_entropy", "0.weight", C}};
  for (size_t s = 0; s < sizeof want / sizeof want[0]; s++) {
    dml_loss *a = NULL, *b = NULL, *c = NULL;
    ASSERT_OK(dml_loss_new(want[s].spec, &cfg, &a));
    ASSERT_OK(dml_loss_new(want[s].spec, &cfg, &b));
    ASSERT_OK(dml_loss_new(want[s].spec, &cfg2, &c));
    dml_param *pa = dml_params_find(dml_loss_params(a), want[s].name);
    dml_param *pb = dml_params_find(dml_loss_params(b), want[s].name);
    dml_param *pc = dml_params_find(dml_loss_params(c), want[s].name);
    ASSERT_TRUE(pa && pb && pc);
    ASSERT_EQ_INT(pa->ndim, 2);
    ASSERT_EQ_INT(pa->shape[0], want[s].rows);
    ASSERT_EQ_INT(pa->shape[1], D);
    ASSERT_TRUE(memcmp(pa->value, pb->value, (size_t)pa->numel * sizeof(float)) == 0);
    ASSERT_TRUE(memcmp(pa->value, pc->value, (size_t)pa->numel * sizeof(float)) != 0);
    double sum = 0, sq = 0, mx = 0;
    for (int64_t k = 0; k < pa->numel; k++) {
      sum += pa->value[k];
      sq += (double)pa->value[k] * pa->value[k];
      mx = fmax(mx, fabs(pa->value[k]));
    }
    const double mean = sum / (double)pa->numel, sd = sqrt(sq / (double)pa->numel);
    ASSERT_NEAR(mean, 0.0, 0.1 * sd);
    double want_sd = 1.0; /* N(0, 1) */
    if (!strcmp(want[s].spec, "proxy_anchor")) want_sd = sqrt(2.0 / (double)C);
    if (!strcmp(want[s].spec, "cross_entropy")) {
      want_sd = 1.0 / sqrt(3.0 * (double)D); /* U(-1/sqrt(D), 1/sqrt(D)) */
      ASSERT_TRUE(mx <= 1.0 / sqrt((double)D) + 1e-6);
      dml_param *bias = dml_params_find(dml_loss_params(a), "0.bias");
      ASSERT_TRUE(bias != NULL);
      ASSERT_EQ_INT(bias->ndim, 1);
      ASSERT_EQ_INT(bias->shape[0], C);
      int nonzero = 0;
      for (int64_t k = 0; k < C; k++) {
        ASSERT_TRUE(fabs(bias->value[k]) <= 1.0 / sqrt((double)D) + 1e-6);
        nonzero += bias->value[k] != 0.0f;
      }
      ASSERT_TRUE(nonzero > C / 2);
      /* weight and bias come from different streams */
      ASSERT_TRUE(bias->value[0] != pa->value[0] || bias->value[1] != pa->value[1]);
    }
    ASSERT_NEAR(sd, want_sd, 0.1 * want_sd);
    dml_loss_free(a);
    dml_loss_free(b);
    dml_loss_free(c);
  }
  /* two terms of a sum get their own parameters and values */
  dml_loss *l = NULL;
  ASSERT_OK(dml_loss_new("proxy_nca + 0.5*proxy_nca", &cfg, &l));
  dml_param *p0 = dml_params_find(dml_loss_params(l), "0.proxies");
  dml_param *p1 = dml_params_find(dml_loss_params(l), "1.proxies");
  ASSERT_TRUE(p0 && p1);
  ASSERT_TRUE(memcmp(p0->value, p1->value, (size_t)p0->numel * sizeof(float)) != 0);
  dml_loss_free(l);
  /* the spec spells every option out */
  ASSERT_OK(dml_loss_new("subcenter_arcface", &cfg, &l));
  ASSERT_TRUE(strstr(dml_loss_spec(l), "centers=3") != NULL);
  ASSERT_TRUE(strstr(dml_loss_spec(l), "scale=64") != NULL);
  ASSERT_TRUE(strstr(dml_loss_spec(l), "margin=0.5") != NULL);
  ASSERT_TRUE(strstr(dml_loss_spec(l), "distance=cosine") != NULL);
  dml_loss_free(l);
}

/* "cross_entropy + 0.5*triplet": the classifier term next to a metric loss. */
TEST(cross_entropy_in_a_sum) {
  const dml_loss_config cfg = {ED, NC, 3};
  float emb[8 * ED], g_sum[8 * ED], g_ce[8 * ED], g_tr[8 * ED];
  fill(emb, 8 * ED, 9);
  const int32_t labels[8] = {0, 1, 2, 3, 0, 1, 2, 3};
  dml_loss *sum = NULL, *ce = NULL, *tr = NULL;
  ASSERT_OK(dml_loss_new("cross_entropy + 0.5*triplet margin=0.2", &cfg, &sum));
  ASSERT_OK(dml_loss_new("cross_entropy", &cfg, &ce));
  ASSERT_OK(dml_loss_new("triplet margin=0.2", &cfg, &tr));
  dml_param *w_sum = dml_params_find(dml_loss_params(sum), "0.weight");
  dml_param *w_ce = dml_params_find(dml_loss_params(ce), "0.weight");
  ASSERT_TRUE(w_sum && w_ce);
  ASSERT_TRUE(memcmp(w_sum->value, w_ce->value, (size_t)w_ce->numel * sizeof(float)) == 0);
  float v_sum = 0, v_ce = 0, v_tr = 0;
  ASSERT_OK(dml_loss_compute(sum, emb, labels, 8, ED, NULL, &v_sum, g_sum));
  ASSERT_OK(dml_loss_compute(ce, emb, labels, 8, ED, NULL, &v_ce, g_ce));
  ASSERT_OK(dml_loss_compute(tr, emb, labels, 8, ED, NULL, &v_tr, g_tr));
  ASSERT_NEAR(v_sum, v_ce + 0.5 * v_tr, 1e-5 * fabs(v_sum) + 1e-6);
  for (int k = 0; k < 8 * ED; k++) ASSERT_NEAR(g_sum[k], g_ce[k] + 0.5f * g_tr[k], 1e-5);
  dml_param *b_sum = dml_params_find(dml_loss_params(sum), "0.bias");
  dml_param *b_ce = dml_params_find(dml_loss_params(ce), "0.bias");
  for (int k = 0; k < NC; k++) ASSERT_NEAR(b_sum->grad[k], b_ce->grad[k], 1e-6);
  /* gradients accumulate over calls */
  ASSERT_OK(dml_loss_compute(ce, emb, labels, 8, ED, NULL, &v_ce, g_ce));
  ASSERT_NEAR(b_ce->grad[0], 2.0f * b_sum->grad[0], 1e-6);
  dml_loss_free(sum);
  dml_loss_free(ce);
  dml_loss_free(tr);
}

/* The kernels alone (the core's GEMMs are OpenBLAS's business), on an m large enough for
 * their parallel loops: bit-identical dm, loss and bias gradient with 1 and 2 threads. */
static int kernel_run(const char *spec, const float *m, const int32_t *labels, int64_t b,
                      int64_t c, int64_t d, int threads, double *loss, float *dm, float *dbias) {
  char name[64];
  dml__spec_kv kv[4];
  int n_kv = 0;
  if (dml__spec_split(spec, name, sizeof name, kv, 4, &n_kv) != DML_OK) return 0;
  dml__loss_term t;
  memset(&t, 0, sizeof t);
  t.def = dml__loss_find(name);
  if (!t.def || dml_params_new(&t.store) != DML_OK) return 0;
  t.distance = t.def->distance;
  t.normalize = t.def->normalize;
  t.reduction = t.def->reduction;
  t.weight = 1.0;
  t.dim = d;
  t.num_classes = c;
  int ok = dml__opts_apply(name, t.def->opts, t.def->n_opts, t.opt, kv, n_kv, NULL) == DML_OK &&
           t.def->declare(&t) == DML_OK && dml_params_finalize(t.store) == DML_OK &&
           t.def->initialise(&t) == DML_OK;
  const int64_t r = t.proxy_rows;
  const dml__triplets trip = {0, 0, NULL, NULL, NULL, -INFINITY, INFINITY};
  const int sim = dml_distance_is_similarity(t.distance);
  /* proxy kernels get no relation matrix: they read each row's classes from its label */
  const dml__loss_args a = {b, r, m, sim, t.distance, NULL, &trip, labels, NULL, 0, dm,
                            t.reduction};
  memset(dm, 0, sizeof(float) * (size_t)(b * r));
  const int before = dml_get_num_threads();
  dml_set_num_threads(threads);
  ok = ok && t.def->forward(&t, &a, loss) == DML_OK;
  dml_set_num_threads(before);
  if (ok && t.n_params > 1) memcpy(dbias, dml__loss_param(&t, 1)->grad, sizeof(float) * (size_t)c);
  dml_free_aligned(t.scratch);
  dml_params_free(t.store);
  return ok;
}

TEST(proxy_kernels_thread_count_independent) {
  enum { B = 160, D = 8, C = 150, K = 3 };
  float *m = malloc(sizeof(float) * B * C * K);
  float *dm1 = malloc(sizeof(float) * B * C * K), *dm2 = malloc(sizeof(float) * B * C * K);
  float db1[C] = {0}, db2[C] = {0};
  int32_t labels[B];
  for (int i = 0; i < B; i++) labels[i] = (i * 37) % (C - 7); /* some classes absent */
  const char *specs[] = {"proxy_nca scale=3", "proxy_anchor", "normalized_softmax", "cosface",
                         "arcface", "arcface margin=1.2", "subcenter_arcface",
                         "cross_entropy label_smoothing=0.1", "proxy_anchor reduction=nonzero"};
  for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
    /* cosines in (-1, 1), squared distances in [0, 4) */
    dml_rng_fill_uniform(m, B * C * K, -0.999f, 0.999f, 40 + s, 1);
    if (!strncmp(specs[s], "proxy_nca", 9))
      for (int k = 0; k < B * C * K; k++) m[k] = 2.0f * (m[k] + 1.0f);
    double l1 = 0, l2 = 0;
    ASSERT_TRUE(kernel_run(specs[s], m, labels, B, C, D, 1, &l1, dm1, db1));
    ASSERT_TRUE(kernel_run(specs[s], m, labels, B, C, D, 2, &l2, dm2, db2));
    const int64_t r = strstr(specs[s], "subcenter") ? C * K : C;
    const int same = l1 == l2 && !memcmp(dm1, dm2, sizeof(float) * (size_t)(B * r)) &&
                     !memcmp(db1, db2, sizeof db1);
    if (!same) fprintf(stderr, "  %s: results differ between 1 and 2 threads\n", specs[s]);
    ASSERT_TRUE(same);
    ASSERT_TRUE(isfinite(l1));
  }
  free(m);
  free(dm1);
  free(dm2);
}
