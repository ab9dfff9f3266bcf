/* The hinge family (contrastive, triplet, margin, lifted, generalized_lifted): PyTorch
 * reference fixtures with finite differences, the triplet band's sorted fast path against
 * plain enumeration (ties on the band's bounds and the margin included), edge cases (one
 * class, no valid pair or triplet, a class of one, duplicates, a zero vector, B = 1, labels
 * that are not 0..C-1, cross-batch memory) and the errors of the family's options. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss/loss_internal.h"
#include "loss_check.h"
#include "test.h"

TEST(hinge_fixtures) { ASSERT_EQ_INT(loss_check_file("fixtures/losses_hinge.json"), 0); }

/* ---- triplet: sorted band path == enumeration == plain loop ---- */

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return *s >> 33;
}

/* Plain loop over every (a, p, n) of the band: loss and dloss/dm (double). */
static double band_plain(const float *m, const uint8_t *rel, int64_t b, int64_t r, int sim,
                         double lo, double hi, double margin, dml__reduction red, double *dm) {
  const double sg = sim ? -1.0 : 1.0;
  int64_t n = 0, nz = 0;
  double sum = 0.0;
  for (int pass = 0; pass < 2; pass++) {
    const double scale = pass ? dml__reduce_scale(red, n, nz) : 0.0;
    for (int64_t a = 0; a < b; a++)
      for (int64_t p = 0; p < r; p++) {
        if (rel[a * r + p] != DML__REL_POS) continue;
        for (int64_t q = 0; q < r; q++) {
          if (rel[a * r + q] != DML__REL_NEG) continue;
          const double gap = sg * ((double)m[a * r + q] - (double)m[a * r + p]);
          if (!(gap > lo && gap <= hi)) continue;
          if (pass == 0) {
            n++;
            if (gap < margin) {
              nz++;
              sum += margin - gap;
            }
          } else if (gap < margin) {
            dm[a * r + p] += sg * scale;
            dm[a * r + q] -= sg * scale;
          }
        }
      }
  }
  return dml__reduce_scale(red, n, nz) * sum;
}

static int opt_index(const dml__loss_def *def, const char *name) {
  for (int k = 0; k < def->n_opts; k++)
    if (!strcmp(def->opts[k].name, name)) return k;
  return -1;
}

TEST(triplet_band_fast_path_matches_enumeration) {
  const dml__loss_def *def = dml__loss_find("triplet");
  ASSERT_TRUE(def != NULL);
  const int i_margin = opt_index(def, "margin");
  ASSERT_TRUE(i_margin >= 0 && opt_index(def, "swap") >= 0 && opt_index(def, "soft") >= 0);
  const struct {
    int64_t b, r, self_cols;
    int quantised;
  } shapes[] = {{7, 9, 7, 1}, {13, 11, 0, 0}, {64, 80, 64, 1}, {70, 90, 0, 0}};
  const double bands[][2] = {{-INFINITY, INFINITY}, {0.0, 0.25}, {0.125, 0.5}, {-0.25, 0.125},
                             {0.0, INFINITY}};
  const double margins[] = {0.25, 0.05, 0.0, 1.0};
  uint64_t seed = 12345;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int64_t b = shapes[s].b, r = shapes[s].r;
    float *m = malloc((size_t)(b * r) * sizeof(float));
    float *dm = malloc((size_t)(b * r) * sizeof(float));
    float *dm2 = malloc((size_t)(b * r) * sizeof(float));
    double *ref = malloc((size_t)(b * r) * sizeof(double));
    uint8_t *rel = malloc((size_t)(b * r));
    int32_t *ta = malloc((size_t)(b * r * r) * sizeof(int32_t));
    int32_t *tp = malloc((size_t)(b * r * r) * sizeof(int32_t));
    int32_t *tn = malloc((size_t)(b * r * r) * sizeof(int32_t));
    ASSERT_TRUE(m && dm && dm2 && ref && rel && ta && tp && tn);
    int32_t *labels = calloc((size_t)b, sizeof(int32_t));
    for (int64_t k = 0; k < b * r; k++) {
      /* quantised to 1/16: many gaps fall exactly on a bound or the margin */
      const double u = (double)(lcg(&seed) % 33) / 16.0;
      m[k] = shapes[s].quantised ? (float)u : (float)(u + (double)(lcg(&seed) % 1000) * 1e-4);
      const uint64_t c = lcg(&seed) % 10;
      rel[k] = c < 3 ? DML__REL_POS : c < 9 ? DML__REL_NEG : DML__REL_NONE;
    }
    for (int64_t i = 0; i < shapes[s].self_cols; i++) rel[i * r + i] = DML__REL_NONE;
    for (int sim = 0; sim < 2; sim++)
      for (size_t bi = 0; bi < sizeof bands / sizeof bands[0]; bi++)
        for (size_t mi = 0; mi < sizeof margins / sizeof margins[0]; mi++)
          for (int red = 0; red < 3; red++) {
            dml__loss_term t;
            memset(&t, 0, sizeof t);
            t.def = def;
            for (int k = 0; k < def->n_opts; k++) t.opt[k] = def->opts[k].dflt;
            t.opt[i_margin] = margins[mi];
            dml__triplets band = {0, 0, NULL, NULL, NULL, bands[bi][0], bands[bi][1]};
            dml__loss_args a = {b,     r,    m,    sim,       sim ? DML_DIST_COSINE : DML_DIST_EUCLIDEAN,
                                rel,   &band, labels, labels, shapes[s].self_cols, dm,
                                (dml__reduction)red};
            memset(dm, 0, (size_t)(b * r) * sizeof(float));
            for (int64_t k = 0; k < b * r; k++) ref[k] = 0.0;
            const double want = band_plain(m, rel, b, r, sim, bands[bi][0], bands[bi][1],
                                           margins[mi], (dml__reduction)red, ref);
            double got = NAN;
            ASSERT_OK(def->forward(&t, &a, &got));
            /* the same triplets as an explicit list: the enumeration path */
            int64_t n = 0;
            const double sg = sim ? -1.0 : 1.0;
            for (int64_t i = 0; i < b; i++)
              for (int64_t p = 0; p < r; p++) {
                if (rel[i * r + p] != DML__REL_POS) continue;
                for (int64_t q = 0; q < r; q++) {
                  if (rel[i * r + q] != DML__REL_NEG) continue;
                  const double gap = sg * ((double)m[i * r + q] - (double)m[i * r + p]);
                  if (!(gap > bands[bi][0] && gap <= bands[bi][1])) continue;
                  ta[n] = (int32_t)i;
                  tp[n] = (int32_t)p;
                  tn[n] = (int32_t)q;
                  n++;
                }
              }
            dml__triplets list = {1, n, ta, tp, tn, -INFINITY, INFINITY};
            a.trip = &list;
            a.dm = dm2;
            memset(dm2, 0, (size_t)(b * r) * sizeof(float));
            double got_list = NAN;
            ASSERT_OK(def->forward(&t, &a, &got_list));
            const double tol = 1e-9 * fmax(1.0, fabs(want));
            if (!(fabs(got - want) <= tol) || !(fabs(got_list - want) <= tol))
              fprintf(stderr, "  shape %zu sim %d band %zu margin %g red %d\n", s, sim, bi,
                      margins[mi], red);
            ASSERT_NEAR(got, want, tol);
            ASSERT_NEAR(got_list, want, tol);
            double gmax = 0.0;
            for (int64_t k = 0; k < b * r; k++) gmax = fmax(gmax, fabs(ref[k]));
            for (int64_t k = 0; k < b * r; k++) {
              ASSERT_NEAR(dm[k], ref[k], 1e-6 * gmax + 1e-12);
              ASSERT_NEAR(dm2[k], ref[k], 1e-6 * gmax + 1e-12);
            }
          }
    free(m);
    free(dm);
    free(dm2);
    free(ref);
    free(rel);
    free(ta);
    free(tp);
    free(tn);
    free(labels);
  }
}

/* ---- edge cases ---- */

enum { ED = 4 };

static void fill(float *x, int64_t n, uint64_t seed) { dml_rng_fill_normal(x, n, 0.0f, 1.0f, seed, 3); }

/* Runs spec on emb/labels: finite loss and gradient; when zero, exactly 0 and a 0 gradient. */
static int run_edge(const char *spec, const dml_loss_config *cfg, const float *emb,
                    const int32_t *labels, int64_t b, int zero, const char *what) {
  float loss = NAN, grad[64 * ED];
  dml_status st = loss_check_finite(spec, cfg, emb, labels, b, ED, &loss, grad);
  if (st != DML_OK) {
    fprintf(stderr, "  %s on %s: %s (%s)\n", spec, what, dml_status_str(st), dml_last_error());
    return 0;
  }
  if (zero) {
    int bad = loss != 0.0f;
    for (int64_t k = 0; k < b * ED; k++) bad |= grad[k] != 0.0f;
    if (bad) {
      fprintf(stderr, "  %s on %s: expected loss 0 and gradient 0, got loss %g\n", spec, what,
                      (double)loss);
      return 0;
    }
  }
  return 1;
}

/* Which batches have nothing valid for a loss. */
enum { Z_ONE_CLASS = 1, Z_DISTINCT = 2 };

static const struct {
  const char *spec;
  int zero; /* Z_ flags: batches where the loss must be exactly 0 */
} edge_specs[] = {
    {"contrastive", 0},
    {"contrastive power=2 distance=cosine pos_margin=0.8 neg_margin=0.2", 0},
    {"contrastive distance=squared_euclidean reduction=mean", 0},
    {"triplet", Z_ONE_CLASS | Z_DISTINCT},
    {"triplet margin=0.2 distance=cosine", Z_ONE_CLASS | Z_DISTINCT},
    {"triplet swap=1", Z_ONE_CLASS | Z_DISTINCT},
    {"triplet soft=1 reduction=mean", Z_ONE_CLASS | Z_DISTINCT},
    {"triplet soft=1 swap=1 distance=dot normalize=0", Z_ONE_CLASS | Z_DISTINCT},
    {"margin", 0},
    {"margin nu=0.1 reduction=sum distance=cosine beta=0.5", 0},
    {"lifted", Z_ONE_CLASS | Z_DISTINCT},
    {"lifted distance=cosine reduction=nonzero", Z_ONE_CLASS | Z_DISTINCT},
    {"generalized_lifted", Z_ONE_CLASS | Z_DISTINCT},
    {"generalized_lifted distance=dot normalize=0 reduction=sum", Z_ONE_CLASS | Z_DISTINCT},
};

TEST(hinge_edge_cases) {
  float emb[8 * ED], dup[6 * ED], zero_row[6 * ED];
  fill(emb, 8 * ED, 1);
  fill(dup, 6 * ED, 2);
  fill(zero_row, 6 * ED, 3);
  for (int k = 0; k < ED; k++) {
    dup[1 * ED + k] = dup[0 * ED + k]; /* a duplicated positive */
    dup[3 * ED + k] = dup[2 * ED + k]; /* a duplicated negative of row 0's class... */
    dup[4 * ED + k] = dup[0 * ED + k]; /* ...and of another class */
    zero_row[2 * ED + k] = 0.0f;
  }
  const int32_t one_class[8] = {3, 3, 3, 3, 3, 3, 3, 3};
  const int32_t distinct[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  const int32_t single[8] = {0, 0, 1, 1, 2, 0, 1, 1}; /* class 2 has one example */
  const int32_t odd[8] = {7, 42, -3, 7, 42, -3, 7, 7};
  const int32_t dup_lab[6] = {0, 0, 1, 1, 2, 2};
  for (size_t s = 0; s < sizeof edge_specs / sizeof edge_specs[0]; s++) {
    const char *spec = edge_specs[s].spec;
    const int z = edge_specs[s].zero;
    ASSERT_TRUE(run_edge(spec, NULL, emb, one_class, 8, (z & Z_ONE_CLASS) != 0, "one class"));
    ASSERT_TRUE(run_edge(spec, NULL, emb, distinct, 8, (z & Z_DISTINCT) != 0, "distinct labels"));
    ASSERT_TRUE(run_edge(spec, NULL, emb, single, 8, 0, "a class of one"));
    ASSERT_TRUE(run_edge(spec, NULL, emb, odd, 8, 0, "labels 7, 42, -3"));
    ASSERT_TRUE(run_edge(spec, NULL, dup, dup_lab, 6, 0, "duplicates"));
    ASSERT_TRUE(run_edge(spec, NULL, zero_row, dup_lab, 6, 0, "a zero vector"));
    ASSERT_TRUE(run_edge(spec, NULL, emb, odd, 1, 1, "B = 1"));
    ASSERT_TRUE(run_edge(spec, NULL, emb, distinct, 2, (z & Z_DISTINCT) != 0, "B = 2"));
  }
  /* per-class beta: labels in [0, num_classes) */
  const dml_loss_config cfg = {ED, 8, 0};
  const char *pc = "margin per_class=1 nu=0.05";
  ASSERT_TRUE(run_edge(pc, &cfg, emb, one_class, 8, 0, "one class"));
  ASSERT_TRUE(run_edge(pc, &cfg, emb, distinct, 8, 0, "distinct labels"));
  ASSERT_TRUE(run_edge(pc, &cfg, dup, dup_lab, 6, 0, "duplicates"));
  ASSERT_TRUE(run_edge(pc, &cfg, zero_row, dup_lab, 6, 0, "a zero vector"));
  ASSERT_TRUE(run_edge(pc, &cfg, emb, distinct, 1, 1, "B = 1"));
}

TEST(hinge_cross_batch_memory) {
  const char *specs[] = {"contrastive memory=12", "triplet memory=12",
                         "triplet soft=1 memory=12", "margin memory=12", "lifted memory=12",
                         "generalized_lifted memory=12"};
  float emb[8 * ED];
  const int32_t labels[8] = {0, 0, 1, 1, 2, 2, 0, 1};
  float grad[8 * ED];
  for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
    dml_loss *l = NULL;
    ASSERT_OK(dml_loss_new(specs[s], NULL, &l));
    for (int step = 0; step < 3; step++) {
      fill(emb, 8 * ED, 10 + (uint64_t)step);
      float loss = NAN;
      ASSERT_OK(dml_loss_compute(l, emb, labels, 8, ED, NULL, &loss, grad));
      ASSERT_TRUE(isfinite(loss));
      for (int k = 0; k < 8 * ED; k++) ASSERT_TRUE(isfinite(grad[k]));
    }
    ASSERT_TRUE(dml_loss_memory_size(l) > 0);
    dml_loss_free(l);
  }
}

TEST(hinge_option_errors) {
  const char *names[] = {"contrastive", "triplet", "margin", "lifted", "generalized_lifted"};
  for (size_t s = 0; s < sizeof names / sizeof names[0]; s++) {
    char spec[96];
    snprintf(spec, sizeof spec, "%s no_such_option=1", names[s]);
    dml_loss *l = NULL;
    ASSERT_ERROR(dml_loss_new(spec, NULL, &l), DML_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(l == NULL);
    ASSERT_TRUE(strstr(dml_last_error(), "no_such_option") != NULL);
  }
  dml_loss *l = NULL;
  ASSERT_ERROR(dml_loss_new("contrastive power=3", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("triplet margin=-1", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  /* per-class beta needs num_classes, and labels below it */
  ASSERT_ERROR(dml_loss_new("margin per_class=1", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  const dml_loss_config cfg = {ED, 3, 0};
  ASSERT_OK(dml_loss_new("margin per_class=1", &cfg, &l));
  ASSERT_TRUE(dml_loss_params(l) != NULL);
  ASSERT_TRUE(dml_params_find(dml_loss_params(l), "0.beta") != NULL);
  ASSERT_EQ_INT(dml_params_find(dml_loss_params(l), "0.beta")->numel, 3);
  ASSERT_NEAR(dml_params_find(dml_loss_params(l), "0.beta")->value[2], 1.2, 1e-6);
  float emb[4 * ED], loss = 0.0f;
  fill(emb, 4 * ED, 5);
  const int32_t bad_labels[4] = {0, 1, 3, 1};
  ASSERT_ERROR(dml_loss_compute(l, emb, bad_labels, 4, ED, NULL, &loss, NULL),
               DML_ERR_INVALID_ARGUMENT);
  dml_loss_free(l);
  /* swap reads d(p, n): refused with a reference set and once the memory holds entries */
  const int32_t labels[4] = {0, 0, 1, 1};
  const dml_loss_ref ref = {emb, labels, 4};
  l = NULL;
  ASSERT_OK(dml_loss_new("triplet swap=1", NULL, &l));
  ASSERT_ERROR(dml_loss_compute(l, emb, labels, 4, ED, &ref, &loss, NULL),
               DML_ERR_INVALID_ARGUMENT);
  dml_loss_free(l);
  l = NULL;
  ASSERT_OK(dml_loss_new("triplet swap=1 memory=8", NULL, &l));
  ASSERT_OK(dml_loss_compute(l, emb, labels, 4, ED, NULL, &loss, NULL));
  ASSERT_ERROR(dml_loss_compute(l, emb, labels, 4, ED, NULL, &loss, NULL),
               DML_ERR_INVALID_ARGUMENT);
  dml_loss_free(l);
}
