/* The loss core: the distance matrix and its backward against plain loops and finite
 * differences, spec parsing and its errors, weighted sums, cross-batch memory, the reference
 * set, bad input. */
#include <math.h>
#include <stdlib.h>

#include "loss/loss_internal.h"
#include "loss_check.h"
#include "test.h"

static void fill_random(float *x, int64_t n, uint64_t seed) {
  dml_rng_fill_normal(x, n, 0.0f, 1.0f, seed, 7);
}

/* Plain-loop distance between rows p and q, both normalised first when asked. */
static double plain_distance(const float *p, const float *q, int64_t d, dml_distance dist,
                             int normalize) {
  double np = 0, nq = 0;
  for (int64_t k = 0; k < d; k++) {
    np += (double)p[k] * p[k];
    nq += (double)q[k] * q[k];
  }
  np = sqrt(np);
  nq = sqrt(nq);
  if (dist == DML_DIST_COSINE) normalize = 1;
  const double sp = normalize ? 1.0 / fmax(np, 1e-12) : 1.0;
  const double sq = normalize ? 1.0 / fmax(nq, 1e-12) : 1.0;
  double dot = 0, sq2 = 0;
  for (int64_t k = 0; k < d; k++) {
    dot += p[k] * sp * q[k] * sq;
    double t = p[k] * sp - q[k] * sq;
    sq2 += t * t;
  }
  switch (dist) {
    case DML_DIST_EUCLIDEAN: return sqrt(sq2);
    case DML_DIST_SQUARED_EUCLIDEAN: return sq2;
    default: return dot;
  }
}

TEST(distance_matrix_matches_plain_loops) {
  enum { B = 9, R = 7, D = 5 };
  float a[B * D], c[R * D], m[B * R], self_m[B * B];
  fill_random(a, B * D, 1);
  fill_random(c, R * D, 2);
  for (int k = 0; k < D; k++) {
    a[3 * D + k] = a[1 * D + k]; /* duplicate rows */
    c[2 * D + k] = a[1 * D + k]; /* a column equal to a row */
    a[5 * D + k] = 0.0f;         /* a zero row */
  }
  for (int dist = 0; dist < 4; dist++)
    for (int norm = 0; norm < 2; norm++) {
      ASSERT_OK(dml__distance_matrix(a, B, c, R, D, (dml_distance)dist, norm, m, NULL, NULL));
      ASSERT_OK(dml__distance_matrix(a, B, NULL, B, D, (dml_distance)dist, norm, self_m, NULL,
                                     NULL));
      for (int i = 0; i < B; i++) {
        for (int j = 0; j < R; j++) {
          double ref = plain_distance(a + i * D, c + j * D, D, (dml_distance)dist, norm);
          ASSERT_NEAR(m[i * R + j], ref, 1e-5 * fmax(1.0, fabs(ref)));
        }
        for (int j = 0; j < B; j++) {
          double ref = plain_distance(a + i * D, a + j * D, D, (dml_distance)dist, norm);
          ASSERT_NEAR(self_m[i * B + j], ref, 1e-5 * fmax(1.0, fabs(ref)));
        }
      }
      if (dist <= DML_DIST_SQUARED_EUCLIDEAN) {
        /* duplicates are exactly 0 apart, not sqrt(rounding error) */
        ASSERT_TRUE(self_m[1 * B + 3] == 0.0f);
        ASSERT_TRUE(self_m[4 * B + 4] == 0.0f);
        ASSERT_TRUE(m[1 * R + 2] == 0.0f);
      }
    }
}

/* L(A, C) = sum_ij w_ij m_ij(A, C): the backward against central differences in double. */
static double weighted_sum(const float *a, int64_t b, const float *c, int64_t r, int64_t d,
                           dml_distance dist, int norm, const float *w) {
  double s = 0;
  for (int64_t i = 0; i < b; i++)
    for (int64_t j = 0; j < r; j++)
      s += w[i * r + j] * plain_distance(a + i * d, c ? c + j * d : a + j * d, d, dist, norm);
  return s;
}

TEST(distance_backward_matches_finite_differences) {
  enum { B = 6, R = 5, D = 4 };
  float a[B * D], c[R * D], w[B * R], wself[B * B];
  fill_random(a, B * D, 3);
  fill_random(c, R * D, 4);
  fill_random(w, B * R, 5);
  fill_random(wself, B * B, 6);
  for (int dist = 0; dist < 4; dist++)
    for (int norm = 0; norm < 2; norm++)
      for (int self = 0; self < 2; self++) {
        const int64_t r = self ? B : R;
        const float *cols = self ? NULL : c;
        const float *wt = self ? wself : w;
        float m[B * B], dm[B * B], an[B * D], cn[B * D], dA[B * D], dC[B * D];
        const int nrm = norm || dist == DML_DIST_COSINE;
        ASSERT_OK(dml__distance_matrix(a, B, cols, r, D, (dml_distance)dist, norm, m,
                                       nrm ? an : NULL, nrm ? cn : NULL));
        memcpy(dm, wt, sizeof(float) * (size_t)(B * r));
        const float *A = nrm ? an : a, *C = nrm ? cn : (self ? a : c);
        ASSERT_OK(dml__distance_backward(dm, m, B, r, D, (dml_distance)dist, A, C, r, self, dA,
                                         self ? NULL : dC));
        if (nrm) {
          dml__normalise_backward(dA, an, a, B, D);
          if (!self) dml__normalise_backward(dC, cn, c, r, D);
        }
        float x[B * D];
        memcpy(x, a, sizeof x);
        for (int k = 0; k < B * D; k++) {
          const float o = x[k];
          const double h = 1e-3;
          x[k] = (float)(o + h);
          double fp = weighted_sum(x, B, self ? NULL : c, r, D, (dml_distance)dist, norm, wt);
          x[k] = (float)(o - h);
          double fm = weighted_sum(x, B, self ? NULL : c, r, D, (dml_distance)dist, norm, wt);
          x[k] = o;
          ASSERT_NEAR(dA[k], (fp - fm) / (2 * h), 2e-3 * fmax(1.0, fabs(dA[k])));
        }
        if (!self) {
          float y[R * D];
          memcpy(y, c, sizeof y);
          for (int k = 0; k < R * D; k++) {
            const float o = y[k];
            const double h = 1e-3;
            y[k] = (float)(o + h);
            double fp = weighted_sum(a, B, y, R, D, (dml_distance)dist, norm, w);
            y[k] = (float)(o - h);
            double fm = weighted_sum(a, B, y, R, D, (dml_distance)dist, norm, w);
            y[k] = o;
            ASSERT_NEAR(dC[k], (fp - fm) / (2 * h), 2e-3 * fmax(1.0, fabs(dC[k])));
          }
        }
      }
}

TEST(spec_errors_list_what_is_valid) {
  dml_loss *l = NULL;
  ASSERT_ERROR(dml_loss_new("no_such_loss", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "triplet") && strstr(dml_last_error(), "contrastive"));
  ASSERT_ERROR(dml_loss_new("triplet margni=0.2", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "margni") && strstr(dml_last_error(), "margin") &&
              strstr(dml_last_error(), "distance"));
  ASSERT_ERROR(dml_loss_new("triplet margin=abc", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("triplet margin=-5", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "outside"));
  ASSERT_ERROR(dml_loss_new("triplet distance=manhattan", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "cosine"));
  ASSERT_ERROR(dml_loss_new("triplet miner=nonsense", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "semihard"));
  ASSERT_ERROR(dml_loss_new("triplet miner=semihard miner.margn=1", NULL, &l),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "miner.margin"));
  ASSERT_ERROR(dml_loss_new("triplet margin=0.1 margin=0.2", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("triplet + ", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("x*triplet", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("arcface memory=64", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_new("", NULL, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(l == NULL);
  ASSERT_OK(dml_loss_new("  triplet   margin=0.3 miner=semihard  ", NULL, &l));
  ASSERT_TRUE(strstr(dml_loss_spec(l), "triplet margin=0.3"));
  ASSERT_TRUE(strstr(dml_loss_spec(l), "miner=semihard"));
  ASSERT_TRUE(dml_loss_params(l) == NULL);
  dml_loss_free(l);
  dml_loss_free(NULL);
  ASSERT_TRUE(strstr(dml_loss_catalogue(), "multi_similarity"));
  ASSERT_TRUE(strstr(dml_loss_catalogue(), "batch_hard"));
}

TEST(bad_input_is_refused) {
  dml_loss *l = NULL;
  ASSERT_OK(dml_loss_new("contrastive", NULL, &l));
  float e[8] = {1, 0, 0, 1, 1, 1, 0.5f, 0}, g[8], v;
  int32_t lab[4] = {0, 0, 1, 1};
  ASSERT_ERROR(dml_loss_compute(l, NULL, lab, 4, 2, NULL, &v, g), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_compute(l, e, NULL, 4, 2, NULL, &v, g), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_loss_compute(l, e, lab, 0, 2, NULL, &v, g), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_loss_compute(l, e, lab, 4, 0, NULL, &v, g), DML_ERR_SHAPE);
  e[3] = NAN;
  ASSERT_ERROR(dml_loss_compute(l, e, lab, 4, 2, NULL, &v, g), DML_ERR_NOT_FINITE);
  e[3] = 1;
  dml_loss_ref bad = {NULL, lab, 4};
  ASSERT_ERROR(dml_loss_compute(l, e, lab, 4, 2, &bad, &v, g), DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml_loss_compute(l, e, lab, 4, 2, NULL, &v, g));
  dml_loss_free(l);
  dml_loss_config cfg = {2, 2, 1};
  ASSERT_OK(dml_loss_new("normalized_softmax", &cfg, &l));
  lab[1] = 5;
  ASSERT_ERROR(dml_loss_compute(l, e, lab, 4, 2, NULL, &v, g), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "num_classes"));
  lab[1] = 0;
  ASSERT_ERROR(dml_loss_compute(l, e, lab, 2, 4, NULL, &v, g), DML_ERR_SHAPE);
  dml_loss_free(l);
}

/* loss(spec) on (emb, labels) with the gradient */
static dml_status eval(const char *spec, const float *emb, const int32_t *lab, int64_t b,
                       int64_t d, const dml_loss_ref *ref, float *v, float *g) {
  dml_loss *l = NULL;
  dml_loss_config cfg = {d, 4, 3};
  DML_TRY(dml_loss_new(spec, &cfg, &l));
  dml_status st = dml_loss_compute(l, emb, lab, b, d, ref, v, g);
  dml_loss_free(l);
  return st;
}

TEST(weighted_sum_is_the_sum_of_its_terms) {
  enum { B = 12, D = 6 };
  float e[B * D], g1[B * D], g2[B * D], gs[B * D], v1, v2, vs;
  int32_t lab[B];
  fill_random(e, B * D, 11);
  for (int i = 0; i < B; i++) lab[i] = i % 3;
  ASSERT_OK(eval("contrastive neg_margin=0.8", e, lab, B, D, NULL, &v1, g1));
  ASSERT_OK(eval("triplet margin=0.3", e, lab, B, D, NULL, &v2, g2));
  ASSERT_OK(eval("2*contrastive neg_margin=0.8 + 0.5*triplet margin=0.3", e, lab, B, D, NULL,
                 &vs, gs));
  ASSERT_NEAR(vs, 2 * v1 + 0.5 * v2, 1e-5 * fabs(vs) + 1e-6);
  for (int k = 0; k < B * D; k++) ASSERT_NEAR(gs[k], 2 * g1[k] + 0.5 * g2[k], 1e-5);
}

TEST(reference_set_gets_no_gradient_and_is_compared_only) {
  enum { B = 6, N = 8, D = 4 };
  float e[B * D], r[N * D], g[B * D], v;
  int32_t lab[B] = {0, 1, 2, 0, 1, 2}, rl[N] = {0, 0, 1, 1, 2, 2, 3, 3};
  fill_random(e, B * D, 21);
  fill_random(r, N * D, 22);
  dml_loss_ref ref = {r, rl, N};
  ASSERT_OK(eval("contrastive", e, lab, B, D, &ref, &v, g));
  /* plain loop: positives over the reference, each term [d]_+ and [1 - d]_+ averaged over the
   * non-zero ones */
  double ps = 0, ns = 0;
  int pn = 0, nn = 0;
  for (int i = 0; i < B; i++)
    for (int j = 0; j < N; j++) {
      double dd = plain_distance(e + i * D, r + j * D, D, DML_DIST_EUCLIDEAN, 1);
      if (lab[i] == rl[j]) {
        if (dd > 0) ps += dd, pn++;
      } else if (1 - dd > 0) {
        ns += 1 - dd, nn++;
      }
    }
  ASSERT_NEAR(v, (pn ? ps / pn : 0) + (nn ? ns / nn : 0), 1e-5);
}

TEST(cross_batch_memory_compares_with_past_batches) {
  enum { B = 6, D = 4 };
  float a[B * D], bb[B * D], g[B * D], v1, v2;
  int32_t la[B] = {0, 1, 2, 0, 1, 2}, lb[B] = {2, 1, 0, 0, 2, 1};
  fill_random(a, B * D, 31);
  fill_random(bb, B * D, 32);
  dml_loss *l = NULL;
  ASSERT_OK(dml_loss_new("contrastive memory=16", NULL, &l));
  float v0, g0[B * D];
  ASSERT_OK(eval("contrastive", a, la, B, D, NULL, &v0, g0));
  ASSERT_OK(dml_loss_compute(l, a, la, B, D, NULL, &v1, g));
  ASSERT_NEAR(v1, v0, 1e-6); /* empty memory: the plain loss */
  ASSERT_EQ_INT(dml_loss_memory_size(l), B);
  ASSERT_OK(dml_loss_compute(l, bb, lb, B, D, NULL, &v2, g));
  ASSERT_EQ_INT(dml_loss_memory_size(l), 2 * B);
  /* plain loop over the batch pairs (i != j) and the batch x memory pairs */
  double ps = 0, ns = 0;
  int pn = 0, nn = 0;
  for (int i = 0; i < B; i++)
    for (int j = 0; j < 2 * B; j++) {
      if (j == i) continue;
      const float *q = j < B ? bb + j * D : a + (j - B) * D;
      int lq = j < B ? lb[j] : la[j - B];
      double dd = plain_distance(bb + i * D, q, D, DML_DIST_EUCLIDEAN, 1);
      if (lb[i] == lq) {
        if (dd > 0) ps += dd, pn++;
      } else if (1 - dd > 0) {
        ns += 1 - dd, nn++;
      }
    }
  ASSERT_NEAR(v2, ps / pn + ns / nn, 1e-5);
  /* the ring keeps only the last 16 */
  for (int k = 0; k < 3; k++) ASSERT_OK(dml_loss_compute(l, a, la, B, D, NULL, &v1, g));
  ASSERT_EQ_INT(dml_loss_memory_size(l), 16);
  dml_loss_memory_clear(l);
  ASSERT_EQ_INT(dml_loss_memory_size(l), 0);
  dml_loss_free(l);
}

TEST(cross_batch_memory_grows_with_its_content) {
  /* memory= is a cap: storage follows what the ring holds, so a cap of 10^9 embeddings on a
   * 12 x 5 batch allocates 24 rows after two steps (a fuzzer found the old eager allocation) */
  enum { B = 12, D = 5 };
  float e[B * D], g[B * D], v, v_small;
  int32_t lab[B];
  for (int i = 0; i < B; i++) lab[i] = i % 3;
  fill_random(e, B * D, 51);
  dml_loss *big = NULL, *small = NULL;
  ASSERT_OK(dml_loss_new("triplet memory=1000000000", NULL, &big));
  ASSERT_OK(dml_loss_new("triplet memory=24", NULL, &small));
  for (int k = 0; k < 3; k++) {
    ASSERT_OK(dml_loss_compute(big, e, lab, B, D, NULL, &v, g));
    ASSERT_OK(dml_loss_compute(small, e, lab, B, D, NULL, &v_small, g));
    ASSERT_NEAR(v, v_small, 1e-6);
  }
  ASSERT_EQ_INT(dml_loss_memory_size(big), 3 * B);
  ASSERT_EQ_INT(dml_loss_memory_size(small), 24);
  /* a cleared memory takes embeddings of another width */
  dml_loss_memory_clear(big);
  float wide[B * 2 * D], gw[B * 2 * D];
  fill_random(wide, B * 2 * D, 52);
  ASSERT_OK(dml_loss_compute(big, wide, lab, B, 2 * D, NULL, &v, gw));
  ASSERT_OK(dml_loss_compute(big, wide, lab, B, 2 * D, NULL, &v, gw));
  ASSERT_ERROR(dml_loss_compute(big, e, lab, B, D, NULL, &v, g), DML_ERR_SHAPE);
  dml_loss_free(big);
  dml_loss_free(small);
}

TEST(graph_node_combines_with_other_terms) {
  enum { B = 8, D = 5 };
  float e[B * D], g[B * D], v;
  int32_t lab[B] = {0, 0, 1, 1, 2, 2, 3, 3};
  fill_random(e, B * D, 41);
  ASSERT_OK(eval("triplet margin=0.2", e, lab, B, D, NULL, &v, g));
  dml_loss *l = NULL;
  ASSERT_OK(dml_loss_new("triplet margin=0.2", NULL, &l));
  dml_graph *gr = NULL;
  ASSERT_OK(dml_graph_new(&gr));
  dml_node *x, *y, *y3, *mse, *tot;
  int64_t shape[2] = {B, D};
  ASSERT_OK(dml_graph_input(gr, e, 2, shape, 1, &x));
  ASSERT_OK(dml_loss_node(l, gr, x, lab, NULL, &y));
  ASSERT_OK(dml_op_scale(gr, y, 3.0f, &y3));
  ASSERT_OK(dml_op_mse(gr, x, x, &mse));
  ASSERT_OK(dml_op_add(gr, y3, mse, &tot));
  ASSERT_OK(dml_graph_backward(gr, tot, NULL));
  ASSERT_NEAR(dml_node_value(tot)->data[0], 3 * v, 1e-5);
  const float *gx = dml_node_grad(x);
  ASSERT_TRUE(gx != NULL);
  for (int k = 0; k < B * D; k++) ASSERT_NEAR(gx[k], 3 * g[k], 1e-5);
  dml_graph_free(gr);
  dml_loss_free(l);
}
