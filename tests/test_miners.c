/* Miners (src/mine/) against plain-loop implementations written here from the definitions:
 *   - at the kernel level (dml__miner_def.mine) on random matrices whose values lie on a
 *     coarse grid, so ties are frequent and the lowest-column rule is exercised; the kept
 *     relation, the triplet list or band and the triplet count must match exactly;
 *   - through the public API (dml_miner_mine) on random batches, against the same plain loops
 *     run on the matrix the library measures (dml__distance_matrix), index for index;
 *   - distance-weighted sampling against the probabilities 1/q(d) computed directly with pow in
 *     double (no log space) and the same uniform draws;
 *   - edge cases (one class, no positive, a singleton class, duplicates, B = 1, arbitrary label
 *     values, a reference set) and spec errors;
 *   - the PyTorch reference tools/loss_ref/miners.py (float64 distances, its own Philox), via
 *     fixtures/miners_ref.json (regenerate: /usr/bin/python3 tools/loss_ref/miners.py). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "loss/loss_internal.h"
#include "loss_check.h"
#include "test.h"

/* ---- plain-loop references ---- */

typedef struct expect {
  uint8_t *rel;     /* [b r] the kept pairs */
  int explicit_list;
  int64_t n;        /* triplets */
  int32_t *a, *p, *q;
  double lo, hi;
} expect;

static void expect_free(expect *e) {
  free(e->rel);
  free(e->a);
  free(e->p);
  free(e->q);
  memset(e, 0, sizeof *e);
}

/* d-like "farther" test: is x farther from the anchor than y? */
static int farther(double x, double y, int sim) { return sim ? x < y : x > y; }

static double gap_of(const float *row, int64_t p, int64_t n, int sim) {
  return sim ? (double)row[p] - (double)row[n] : (double)row[n] - (double)row[p];
}

/* 1 / q(d) of Wu et al. with pytorch-metric-learning's cutoffs, directly (no log space). */
static double dws_weight(double d, double dim, double cutoff, double nonzero) {
  if (isnan(d)) return 0.0;
  if (d < cutoff) d = cutoff;
  if (!(d < nonzero)) return 0.0;
  const double s = 1.0 - d * d / 4.0;
  if (!(s > 0.0)) return 0.0;
  const double w = 1.0 / (pow(d, dim - 2.0) * pow(s, (dim - 3.0) / 2.0));
  return isfinite(w) ? w : 0.0;
}

static void reference(const char *name, const double *opt, uint64_t seed, uint64_t step,
                      const float *m, int64_t b, int64_t r, int sim, int64_t dim,
                      const uint8_t *rel0, expect *e) {
  memset(e, 0, sizeof *e);
  e->rel = calloc((size_t)(b * r + 1), 1);
  e->a = malloc((size_t)(b * r + 1) * sizeof(int32_t));
  e->p = malloc((size_t)(b * r + 1) * sizeof(int32_t));
  e->q = malloc((size_t)(b * r + 1) * sizeof(int32_t));
  e->lo = -INFINITY;
  e->hi = INFINITY;
  const int hard = !strcmp(name, "batch_hard"), easy = !strcmp(name, "easy_hard");
  const int dws = !strcmp(name, "distance_weighted");
  const int band = !strcmp(name, "semihard") || !strcmp(name, "hard_triplets") ||
                   !strcmp(name, "margin_triplets");
  if (!strcmp(name, "semihard")) {
    e->lo = 0.0;
    e->hi = opt[0];
  } else if (!strcmp(name, "hard_triplets")) {
    e->hi = opt[0] < 0.0 ? opt[0] : 0.0;
  } else if (!strcmp(name, "margin_triplets")) {
    e->hi = opt[0];
  }
  e->explicit_list = hard || easy || dws;
  for (int64_t i = 0; i < b; i++) {
    const float *row = m + i * r;
    const uint8_t *r0 = rel0 + i * r;
    uint8_t *ro = e->rel + i * r;
    int64_t np = 0, nn = 0;
    for (int64_t j = 0; j < r; j++) {
      np += r0[j] == DML__REL_POS;
      nn += r0[j] == DML__REL_NEG;
    }
    if (!strcmp(name, "all")) {
      memcpy(ro, r0, (size_t)r);
      e->n += np * nn;
    } else if (hard || easy) {
      const int hp = hard || (easy && opt[0] != 0.0);
      int64_t bp = -1, bn = -1;
      for (int64_t j = 0; j < r; j++) {
        if (r0[j] == DML__REL_POS &&
            (bp < 0 || (hp ? farther(row[j], row[bp], sim) : farther(row[bp], row[j], sim))))
          bp = j;
        if (r0[j] == DML__REL_NEG && (bn < 0 || farther(row[bn], row[j], sim))) bn = j;
      }
      if (bp >= 0 && bn >= 0) {
        ro[bp] = DML__REL_POS;
        ro[bn] = DML__REL_NEG;
        e->a[e->n] = (int32_t)i;
        e->p[e->n] = (int32_t)bp;
        e->q[e->n++] = (int32_t)bn;
      }
    } else if (band) {
      for (int64_t p = 0; p < r; p++) {
        if (r0[p] != DML__REL_POS) continue;
        for (int64_t n = 0; n < r; n++) {
          if (r0[n] != DML__REL_NEG) continue;
          const double g = gap_of(row, p, n, sim);
          if (g > e->lo && g <= e->hi) {
            ro[p] = DML__REL_POS;
            ro[n] = DML__REL_NEG;
            e->n++;
          }
        }
      }
    } else if (!strcmp(name, "multi_similarity")) {
      if (np == 0 || nn == 0) continue;
      const double eps = opt[0];
      /* similarities: min_p s_ip, max_n s_in; distances: max_p d_ip, min_n d_in */
      double hp = 0.0, hn = 0.0;
      int first_p = 1, first_n = 1;
      for (int64_t j = 0; j < r; j++) {
        if (r0[j] == DML__REL_POS && (first_p || farther(row[j], hp, sim))) {
          hp = row[j];
          first_p = 0;
        }
        if (r0[j] == DML__REL_NEG && (first_n || farther(hn, row[j], sim))) {
          hn = row[j];
          first_n = 0;
        }
      }
      int64_t kp = 0, kn = 0;
      for (int64_t j = 0; j < r; j++) {
        const double v = row[j];
        int keep = 0;
        if (r0[j] == DML__REL_NEG) keep = sim ? v > hp - eps : v < hp + eps;
        if (r0[j] == DML__REL_POS) keep = sim ? v < hn + eps : v > hn - eps;
        if (keep) {
          ro[j] = r0[j];
          kp += r0[j] == DML__REL_POS;
          kn += r0[j] == DML__REL_NEG;
        }
      }
      e->n += kp * kn;
    } else if (dws) {
      if (np == 0 || nn == 0) continue;
      double *w = malloc((size_t)r * sizeof(double)), total = 0.0;
      for (int64_t j = 0; j < r; j++) {
        w[j] = r0[j] == DML__REL_NEG ? dws_weight(row[j], (double)dim, opt[0], opt[1]) : 0.0;
        total += w[j];
      }
      if (total == 0.0)
        for (int64_t j = 0; j < r; j++) {
          w[j] = r0[j] == DML__REL_NEG ? 1.0 : 0.0;
          total += w[j];
        }
      for (int64_t p = 0; p < r; p++) {
        if (r0[p] != DML__REL_POS) continue;
        const double u = dml_rng_uniform(seed, step, (uint64_t)(i * r + p));
        double c = 0.0;
        int64_t pick = -1;
        for (int64_t j = 0; j < r && pick < 0; j++) {
          if (w[j] <= 0.0) continue;
          c += w[j] / total;
          if (c > u) pick = j;
        }
        if (pick < 0) /* rounding at the very top: the last negative with weight */
          for (int64_t j = 0; j < r; j++)
            if (w[j] > 0.0) pick = j;
        ro[p] = DML__REL_POS;
        ro[pick] = DML__REL_NEG;
        e->a[e->n] = (int32_t)i;
        e->p[e->n] = (int32_t)p;
        e->q[e->n++] = (int32_t)pick;
      }
      free(w);
    }
  }
}

/* ---- helpers ---- */

static const char *const miner_names[] = {"all",           "batch_hard",      "easy_hard",
                                          "semihard",      "hard_triplets",   "margin_triplets",
                                          "multi_similarity", "distance_weighted"};
#define N_MINERS 8

static void rand_labels(int32_t *lab, int64_t n, int classes, uint64_t seed, uint64_t stream) {
  for (int64_t i = 0; i < n; i++)
    lab[i] = (int32_t)dml_rng_below(seed, stream, (uint64_t)i, (uint64_t)classes);
}

/* rel0 from labels; self pairs excluded when self */
static void make_rel(uint8_t *rel, const int32_t *lab, const int32_t *col, int64_t b, int64_t r,
                     int self) {
  for (int64_t i = 0; i < b; i++) {
    for (int64_t j = 0; j < r; j++)
      rel[i * r + j] = col[j] == lab[i] ? DML__REL_POS : DML__REL_NEG;
    if (self) rel[i * r + i] = DML__REL_NONE;
  }
}

static int same_ints(const char *what, const int32_t *got, const int32_t *want, int64_t n) {
  for (int64_t k = 0; k < n; k++)
    if (got[k] != want[k]) {
      fprintf(stderr, "  %s[%lld]: %d, expected %d\n", what, (long long)k, got[k], want[k]);
      return 0;
    }
  return 1;
}

/* Runs miner `name` (options from spec kv text) at the kernel level on m and compares with the
 * reference. Returns 1 when everything matches. */
static int check_kernel(const char *name, const char *opts_text, const float *m, int64_t b,
                        int64_t r, int sim, dml_distance dist, int64_t dim, const uint8_t *rel0,
                        uint64_t seed, uint64_t step) {
  char spec[256], nm[64];
  snprintf(spec, sizeof spec, "%s %s", name, opts_text);
  dml__spec_kv kv[8];
  int n_kv = 0, used[8] = {0};
  if (dml__spec_split(spec, nm, sizeof nm, kv, 8, &n_kv) != DML_OK) return 0;
  dml__miner mn;
  if (dml__miner_make(nm, kv, n_kv, "", used, seed, &mn) != DML_OK) {
    fprintf(stderr, "  %s: %s\n", spec, dml_last_error());
    return 0;
  }
  mn.step = step;
  uint8_t *rel = malloc((size_t)(b * r + 1));
  int32_t *tbuf = malloc((size_t)(3 * b * r + 1) * sizeof(int32_t));
  memcpy(rel, rel0, (size_t)(b * r));
  dml__triplets trip = {0, 0, NULL, NULL, NULL, -INFINITY, INFINITY};
  dml__mine_args ma = {b, r, m, sim, dist, dim, rel, &trip, tbuf};
  int ok = 1;
  if (mn.def->mine(&mn, &ma) != DML_OK) {
    fprintf(stderr, "  %s: %s\n", spec, dml_last_error());
    ok = 0;
  }
  expect e;
  reference(name, mn.opt, seed, step, m, b, r, sim, dim, rel0, &e);
  if (ok) {
    for (int64_t k = 0; k < b * r && ok; k++)
      if (rel[k] != e.rel[k]) {
        fprintf(stderr, "  %s (sim %d): rel[%lld, %lld] = %d, expected %d (m = %.9g)\n", spec,
                sim, (long long)(k / r), (long long)(k % r), rel[k], e.rel[k], m[k]);
        ok = 0;
      }
    if (ok && (trip.explicit_list != e.explicit_list || trip.n != e.n)) {
      fprintf(stderr, "  %s (sim %d): explicit %d n %lld, expected explicit %d n %lld\n", spec,
              sim, trip.explicit_list, (long long)trip.n, e.explicit_list, (long long)e.n);
      ok = 0;
    }
    if (ok && e.explicit_list)
      ok = same_ints("anchor", trip.a, e.a, e.n) && same_ints("positive", trip.p, e.p, e.n) &&
           same_ints("negative", trip.neg, e.q, e.n);
    if (ok && !e.explicit_list && (trip.lo != e.lo || trip.hi != e.hi)) {
      fprintf(stderr, "  %s: band (%g, %g], expected (%g, %g]\n", spec, trip.lo, trip.hi, e.lo,
              e.hi);
      ok = 0;
    }
  }
  expect_free(&e);
  free(rel);
  free(tbuf);
  return ok;
}

/* A random matrix on a grid of step 1/8 (frequent exact ties): distances in [0, 2.25] or
 * similarities in [-1, 1]. */
static void grid_matrix(float *m, int64_t n, int sim, uint64_t seed) {
  for (int64_t k = 0; k < n; k++) {
    const double v = (double)dml_rng_below(seed, 7, (uint64_t)k, sim ? 17 : 19) / 8.0;
    m[k] = (float)(sim ? v - 1.0 : v);
  }
}

/* Every miner at the kernel level over random grid matrices, self and reference layouts. */
static int kernel_sweep(const char *name, const char *opts_text) {
  int fails = 0;
  for (int trial = 0; trial < 24; trial++) {
    const int64_t b = 1 + (int64_t)dml_rng_below(11, 1, (uint64_t)trial, 40);
    const int self = trial % 2 == 0;
    const int64_t r = self ? b : 1 + (int64_t)dml_rng_below(11, 2, (uint64_t)trial, 40);
    const int classes = 1 + (int)dml_rng_below(11, 3, (uint64_t)trial, 6);
    const int sim = strcmp(name, "distance_weighted") ? (trial / 2) % 2 : 0;
    float *m = malloc((size_t)(b * r) * sizeof(float));
    int32_t *lab = malloc((size_t)b * sizeof(int32_t)), *col = malloc((size_t)r * sizeof(int32_t));
    uint8_t *rel0 = malloc((size_t)(b * r));
    grid_matrix(m, b * r, sim, (uint64_t)trial);
    rand_labels(lab, b, classes, (uint64_t)trial, 4);
    if (self)
      memcpy(col, lab, (size_t)b * sizeof(int32_t));
    else
      rand_labels(col, r, classes, (uint64_t)trial, 5);
    make_rel(rel0, lab, col, b, r, self);
    const dml_distance dist = sim ? DML_DIST_COSINE : DML_DIST_EUCLIDEAN;
    const int64_t dim = 2 + trial % 9;
    if (!check_kernel(name, opts_text, m, b, r, sim, dist, dim, rel0, 5u + (uint64_t)trial,
                      (uint64_t)trial)) {
      fprintf(stderr, "  trial %d: b %lld r %lld classes %d\n", trial, (long long)b,
              (long long)r, classes);
      fails++;
    }
    free(m);
    free(lab);
    free(col);
    free(rel0);
  }
  return fails;
}

/* Random embeddings [n, d] (normal). */
static float *rand_emb(int64_t n, int64_t d, uint64_t seed) {
  float *x = malloc((size_t)(n * d + 1) * sizeof(float));
  for (int64_t k = 0; k < n * d; k++) x[k] = dml_rng_normal(seed, 9, (uint64_t)k);
  return x;
}

static const char *const dist_names[] = {"euclidean", "squared_euclidean", "cosine", "dot"};

/* dml_miner_mine on a batch against the plain loops on the library's own matrix. */
static int check_public(const char *spec, const float *emb, const int32_t *lab, int64_t b,
                        int64_t d, const dml_loss_ref *ref, uint64_t seed, uint64_t step) {
  dml_miner *mi = NULL;
  if (dml_miner_new(spec, seed, &mi) != DML_OK) {
    fprintf(stderr, "  %s: %s\n", spec, dml_last_error());
    return 0;
  }
  /* the canonical spec names every setting: read the distance and normalisation back */
  const char *canon = dml_miner_spec(mi);
  dml_distance dist = DML_DIST_EUCLIDEAN;
  for (int k = 0; k < 4; k++) {
    char key[48];
    snprintf(key, sizeof key, " distance=%s ", dist_names[k]);
    if (strstr(canon, key)) dist = (dml_distance)k;
  }
  const int normalize = strstr(canon, " normalize=1") != NULL;
  char name[64];
  sscanf(canon, "%63s", name);
  dml__spec_kv kv[8];
  int n_kv = 0, used[8] = {0};
  char nm[64];
  dml__spec_split(spec, nm, sizeof nm, kv, 8, &n_kv);
  dml__miner mn;
  dml__miner_make(nm, kv, n_kv, "", used, seed, &mn);

  const int64_t r = ref ? ref->n : b;
  float *m = malloc((size_t)(b * r + 1) * sizeof(float));
  uint8_t *rel0 = malloc((size_t)(b * r + 1));
  int ok = 1;
  if (b > 0 && r > 0) {
    if (dml__distance_matrix(emb, b, ref ? ref->emb : NULL, r, d, dist, normalize, m, NULL,
                             NULL) != DML_OK)
      ok = 0;
    make_rel(rel0, lab, ref ? ref->labels : lab, b, r, ref == NULL);
  }
  dml_miner_set_step(mi, step);
  dml_mined out;
  if (dml_miner_mine(mi, emb, lab, b, d, ref, &out) != DML_OK) {
    fprintf(stderr, "  %s: %s\n", spec, dml_last_error());
    ok = 0;
  }
  expect e;
  memset(&e, 0, sizeof e);
  if (ok && b > 0 && r > 0)
    reference(name, mn.opt, seed, step, m, b, r, dml_distance_is_similarity(dist), d, rel0, &e);
  if (ok) {
    const int triplets = mn.def->triplets;
    if (out.kind != (triplets ? DML_MINED_TRIPLETS : DML_MINED_PAIRS)) {
      fprintf(stderr, "  %s: kind %d\n", spec, (int)out.kind);
      ok = 0;
    }
    if (ok && !triplets) {
      int64_t np = 0, nn = 0;
      for (int64_t k = 0; k < (e.rel ? b * r : 0); k++) {
        if (e.rel[k] == DML__REL_POS) {
          if (np >= out.n_pos || out.pos_anchor[np] != k / r || out.pos_other[np] != k % r) {
            fprintf(stderr, "  %s: positive pair %lld differs\n", spec, (long long)np);
            ok = 0;
            break;
          }
          np++;
        } else if (e.rel[k] == DML__REL_NEG) {
          if (nn >= out.n_neg || out.neg_anchor[nn] != k / r || out.neg_other[nn] != k % r) {
            fprintf(stderr, "  %s: negative pair %lld differs\n", spec, (long long)nn);
            ok = 0;
            break;
          }
          nn++;
        }
      }
      if (ok && (np != out.n_pos || nn != out.n_neg || out.n_triplets != 0)) {
        fprintf(stderr, "  %s: %lld/%lld pairs, expected %lld/%lld\n", spec,
                (long long)out.n_pos, (long long)out.n_neg, (long long)np, (long long)nn);
        ok = 0;
      }
    } else if (ok && e.explicit_list) {
      if (out.n_triplets != e.n) {
        fprintf(stderr, "  %s: %lld triplets, expected %lld\n", spec, (long long)out.n_triplets,
                (long long)e.n);
        ok = 0;
      } else {
        ok = same_ints("anchor", out.anchor, e.a, e.n) &&
             same_ints("positive", out.positive, e.p, e.n) &&
             same_ints("negative", out.negative, e.q, e.n);
      }
    } else if (ok) {
      /* the band, enumerated from the relation before mining */
      int64_t t = 0;
      for (int64_t i = 0; i < b && ok; i++)
        for (int64_t p = 0; p < r && ok; p++) {
          if (rel0[i * r + p] != DML__REL_POS) continue;
          for (int64_t n = 0; n < r && ok; n++) {
            if (rel0[i * r + n] != DML__REL_NEG) continue;
            const double g = gap_of(m + i * r, p, n, dml_distance_is_similarity(dist));
            if (!(g > e.lo && g <= e.hi)) continue;
            if (t >= out.n_triplets || out.anchor[t] != i || out.positive[t] != p ||
                out.negative[t] != n) {
              fprintf(stderr, "  %s: triplet %lld differs\n", spec, (long long)t);
              ok = 0;
            }
            t++;
          }
        }
      if (ok && t != out.n_triplets) {
        fprintf(stderr, "  %s: %lld triplets, expected %lld\n", spec, (long long)out.n_triplets,
                (long long)t);
        ok = 0;
      }
      if (ok && t != e.n) {
        fprintf(stderr, "  %s: reference counted %lld triplets, enumerated %lld\n", spec,
                (long long)e.n, (long long)t);
        ok = 0;
      }
    }
  }
  expect_free(&e);
  dml_mined_free(&out);
  dml_miner_free(mi);
  free(m);
  free(rel0);
  return ok;
}

/* Random batches through the public API for one miner spec, with every distance the miner
 * accepts, with and without a reference set. */
static int public_sweep(const char *name, const char *opts_text) {
  int fails = 0;
  const int dws = !strcmp(name, "distance_weighted");
  for (int trial = 0; trial < 16; trial++) {
    const int64_t b = 2 + (int64_t)dml_rng_below(21, 1, (uint64_t)trial, 30);
    const int64_t d = dws ? (trial % 3 == 0 ? 128 : 4 + trial % 13) : 3 + trial % 6;
    const int classes = 2 + (int)dml_rng_below(21, 3, (uint64_t)trial, 4);
    float *emb = rand_emb(b, d, 100u + (uint64_t)trial);
    int32_t *lab = malloc((size_t)b * sizeof(int32_t));
    rand_labels(lab, b, classes, (uint64_t)trial, 6);
    const int dist = dws ? 0 : trial % 4;
    const int normalize = dws || dist == 2 ? 1 : (trial / 4) % 2;
    char spec[256];
    snprintf(spec, sizeof spec, "%s %s distance=%s normalize=%d", name, opts_text,
             dist_names[dist], normalize);
    dml_loss_ref ref = {NULL, NULL, 0}, *rp = NULL;
    float *remb = NULL;
    int32_t *rlab = NULL;
    if (trial % 3 == 1) {
      ref.n = 1 + (int64_t)dml_rng_below(21, 4, (uint64_t)trial, 30);
      remb = rand_emb(ref.n, d, 200u + (uint64_t)trial);
      rlab = malloc((size_t)ref.n * sizeof(int32_t));
      rand_labels(rlab, ref.n, classes, (uint64_t)trial, 8);
      ref.emb = remb;
      ref.labels = rlab;
      rp = &ref;
    }
    if (!check_public(spec, emb, lab, b, d, rp, 77u + (uint64_t)trial, 3u * (uint64_t)trial)) {
      fprintf(stderr, "  trial %d: b %lld d %lld ref %lld\n", trial, (long long)b, (long long)d,
              (long long)ref.n);
      fails++;
    }
    free(emb);
    free(lab);
    free(remb);
    free(rlab);
  }
  return fails;
}

/* ---- every miner against its plain loop ---- */

TEST(all_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("all", ""), 0);
  ASSERT_EQ_INT(public_sweep("all", ""), 0);
}

TEST(batch_hard_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("batch_hard", ""), 0);
  ASSERT_EQ_INT(public_sweep("batch_hard", ""), 0);
}

TEST(easy_hard_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("easy_hard", ""), 0);
  ASSERT_EQ_INT(kernel_sweep("easy_hard", "hard_positive=1"), 0);
  ASSERT_EQ_INT(public_sweep("easy_hard", ""), 0);
  ASSERT_EQ_INT(public_sweep("easy_hard", "hard_positive=1"), 0);
}

TEST(easy_hard_hard_positive_is_batch_hard) {
  const int64_t b = 24, d = 5;
  float *emb = rand_emb(b, d, 3);
  int32_t lab[24];
  rand_labels(lab, b, 4, 3, 1);
  dml_miner *x = NULL, *y = NULL;
  ASSERT_OK(dml_miner_new("easy_hard hard_positive=1", 0, &x));
  ASSERT_OK(dml_miner_new("batch_hard", 0, &y));
  dml_mined mx, my;
  ASSERT_OK(dml_miner_mine(x, emb, lab, b, d, NULL, &mx));
  ASSERT_OK(dml_miner_mine(y, emb, lab, b, d, NULL, &my));
  ASSERT_EQ_INT(mx.n_triplets, my.n_triplets);
  ASSERT_TRUE(mx.n_triplets > 0);
  for (int64_t k = 0; k < mx.n_triplets; k++) {
    ASSERT_EQ_INT(mx.anchor[k], my.anchor[k]);
    ASSERT_EQ_INT(mx.positive[k], my.positive[k]);
    ASSERT_EQ_INT(mx.negative[k], my.negative[k]);
  }
  dml_mined_free(&mx);
  dml_mined_free(&my);
  dml_miner_free(x);
  dml_miner_free(y);
  free(emb);
}

TEST(semihard_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("semihard", ""), 0);
  ASSERT_EQ_INT(kernel_sweep("semihard", "margin=0.5"), 0);
  ASSERT_EQ_INT(kernel_sweep("semihard", "margin=0"), 0);
  ASSERT_EQ_INT(public_sweep("semihard", ""), 0);
  ASSERT_EQ_INT(public_sweep("semihard", "margin=1"), 0);
}

TEST(hard_triplets_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("hard_triplets", ""), 0);
  ASSERT_EQ_INT(kernel_sweep("hard_triplets", "margin=-0.25"), 0);
  ASSERT_EQ_INT(public_sweep("hard_triplets", ""), 0);
}

TEST(margin_triplets_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("margin_triplets", ""), 0);
  ASSERT_EQ_INT(kernel_sweep("margin_triplets", "margin=0.5"), 0);
  ASSERT_EQ_INT(kernel_sweep("margin_triplets", "margin=-0.125"), 0);
  ASSERT_EQ_INT(public_sweep("margin_triplets", ""), 0);
}

TEST(multi_similarity_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("multi_similarity", ""), 0);
  ASSERT_EQ_INT(kernel_sweep("multi_similarity", "epsilon=0.25"), 0);
  ASSERT_EQ_INT(kernel_sweep("multi_similarity", "epsilon=0"), 0);
  ASSERT_EQ_INT(public_sweep("multi_similarity", ""), 0);
  ASSERT_EQ_INT(public_sweep("multi_similarity", "epsilon=0.3"), 0);
}

TEST(distance_weighted_vs_plain_loop) {
  ASSERT_EQ_INT(kernel_sweep("distance_weighted", ""), 0);
  ASSERT_EQ_INT(kernel_sweep("distance_weighted", "cutoff=0.25 nonzero_loss_cutoff=2"), 0);
  ASSERT_EQ_INT(kernel_sweep("distance_weighted", "nonzero_loss_cutoff=0.75"), 0);
  ASSERT_EQ_INT(public_sweep("distance_weighted", ""), 0);
  ASSERT_EQ_INT(public_sweep("distance_weighted", "cutoff=0.3 nonzero_loss_cutoff=1.8"), 0);
}

/* The sampler is a pure function of (seed, step): the same step repeats its draws, the step
 * advances by one per call, and over many steps the empirical frequencies follow 1/q(d). */
TEST(distance_weighted_draws) {
  const int64_t b = 12, d = 6;
  float *emb = rand_emb(b, d, 42);
  int32_t lab[12];
  for (int i = 0; i < 12; i++) lab[i] = i % 3;
  dml_miner *mi = NULL;
  ASSERT_OK(dml_miner_new("distance_weighted", 9, &mi));
  dml_mined x, y, z;
  dml_miner_set_step(mi, 5);
  ASSERT_OK(dml_miner_mine(mi, emb, lab, b, d, NULL, &x)); /* step 5, then 6 */
  ASSERT_OK(dml_miner_mine(mi, emb, lab, b, d, NULL, &z)); /* step 6 */
  dml_miner_set_step(mi, 5);
  ASSERT_OK(dml_miner_mine(mi, emb, lab, b, d, NULL, &y));
  ASSERT_EQ_INT(x.n_triplets, 12 * 3);
  ASSERT_EQ_INT(x.n_triplets, y.n_triplets);
  int differ = 0;
  for (int64_t k = 0; k < x.n_triplets; k++) {
    ASSERT_EQ_INT(x.negative[k], y.negative[k]);
    differ += x.negative[k] != z.negative[k];
  }
  ASSERT_TRUE(differ > 0);
  dml_mined_free(&x);
  dml_mined_free(&y);
  dml_mined_free(&z);
  /* frequencies of anchor 0's negatives over 4000 steps against the normalised weights */
  float m[12 * 12];
  ASSERT_OK(dml__distance_matrix(emb, b, NULL, b, d, DML_DIST_EUCLIDEAN, 1, m, NULL, NULL));
  double w[12] = {0}, tot = 0.0;
  for (int j = 0; j < 12; j++)
    if (lab[j] != lab[0]) tot += w[j] = dws_weight(m[j], (double)d, 0.5, 1.4);
  ASSERT_TRUE(tot > 0.0);
  int count[12] = {0}, draws = 0;
  for (uint64_t s = 0; s < 4000; s++) {
    dml_miner_set_step(mi, s);
    ASSERT_OK(dml_miner_mine(mi, emb, lab, b, d, NULL, &x));
    for (int64_t k = 0; k < x.n_triplets && x.anchor[k] == 0; k++) {
      count[x.negative[k]]++;
      draws++;
    }
    dml_mined_free(&x);
  }
  for (int j = 0; j < 12; j++) {
    const double pj = w[j] / tot, sd = sqrt(pj * (1.0 - pj) / draws);
    ASSERT_NEAR((double)count[j] / draws, pj, 5.0 * sd + 1e-9);
  }
  dml_miner_free(mi);
  free(emb);
}

/* D = 128: d^(D-2) underflows float (and 1/q overflows it); the log-space weights must still
 * give the probabilities that double computes directly. Distances of random 128-d points sit
 * around sqrt(2), on both sides of the 1.4 cutoff. */
TEST(distance_weighted_high_dim) {
  const int64_t b = 40, d = 128;
  float *emb = rand_emb(b, d, 5);
  int32_t lab[40];
  rand_labels(lab, b, 5, 5, 2);
  ASSERT_TRUE(check_public("distance_weighted", emb, lab, b, d, NULL, 1, 17));
  /* clustered points: short distances, weights near 1/q(cutoff) ~ 1e39 */
  for (int64_t i = 0; i < b; i++)
    for (int64_t k = 0; k < d; k++)
      emb[i * d + k] = 0.05f * emb[i * d + k] + (k == 0 ? 1.0f : 0.0f);
  ASSERT_TRUE(check_public("distance_weighted", emb, lab, b, d, NULL, 2, 18));
  free(emb);
}

/* ---- edge cases ---- */

/* Number of mined items: triplets, or positive + negative pairs. */
static int64_t mined_count(const dml_mined *o, int64_t *np, int64_t *nn) {
  if (np) *np = o->n_pos;
  if (nn) *nn = o->n_neg;
  return o->kind == DML_MINED_TRIPLETS ? o->n_triplets : o->n_pos + o->n_neg;
}

static int64_t mine_count(const char *name, const float *emb, const int32_t *lab, int64_t b,
                          int64_t d, const dml_loss_ref *ref, int64_t *np, int64_t *nn) {
  dml_miner *mi = NULL;
  if (dml_miner_new(name, 1, &mi) != DML_OK) return -1;
  dml_mined o;
  int64_t c = -1;
  if (dml_miner_mine(mi, emb, lab, b, d, ref, &o) == DML_OK) c = mined_count(&o, np, nn);
  dml_mined_free(&o);
  dml_miner_free(mi);
  return c;
}

TEST(one_class_mines_no_negative) {
  const int64_t b = 8, d = 4;
  float *emb = rand_emb(b, d, 1);
  int32_t lab[8] = {3, 3, 3, 3, 3, 3, 3, 3};
  for (int k = 0; k < N_MINERS; k++) {
    int64_t np = 0, nn = 0;
    const int64_t c = mine_count(miner_names[k], emb, lab, b, d, NULL, &np, &nn);
    if (!strcmp(miner_names[k], "all")) {
      ASSERT_EQ_INT(np, b * (b - 1));
      ASSERT_EQ_INT(nn, 0);
    } else {
      ASSERT_EQ_INT(c, 0);
    }
  }
  free(emb);
}

TEST(no_positive_mines_nothing) {
  const int64_t b = 6, d = 3;
  float *emb = rand_emb(b, d, 2);
  int32_t lab[6] = {0, 1, 2, 3, 4, 5};
  for (int k = 0; k < N_MINERS; k++) {
    int64_t np = 0, nn = 0;
    const int64_t c = mine_count(miner_names[k], emb, lab, b, d, NULL, &np, &nn);
    if (!strcmp(miner_names[k], "all")) {
      ASSERT_EQ_INT(np, 0);
      ASSERT_EQ_INT(nn, b * (b - 1));
    } else {
      ASSERT_EQ_INT(c, 0);
    }
  }
  free(emb);
}

/* A class with one example: it anchors nothing, but is a negative of the others. */
TEST(singleton_class) {
  const int64_t b = 7, d = 4;
  float *emb = rand_emb(b, d, 3);
  int32_t lab[7] = {0, 0, 0, 1, 1, 1, 9};
  for (int k = 0; k < N_MINERS; k++) {
    dml_miner *mi = NULL;
    ASSERT_OK(dml_miner_new(miner_names[k], 4, &mi));
    dml_mined o;
    ASSERT_OK(dml_miner_mine(mi, emb, lab, b, d, NULL, &o));
    for (int64_t t = 0; t < o.n_triplets; t++) ASSERT_TRUE(o.anchor[t] != 6);
    for (int64_t t = 0; t < o.n_pos; t++) ASSERT_TRUE(o.pos_anchor[t] != 6 && o.pos_other[t] != 6);
    if (!strcmp(miner_names[k], "batch_hard") || !strcmp(miner_names[k], "easy_hard"))
      ASSERT_EQ_INT(o.n_triplets, 6);
    if (!strcmp(miner_names[k], "distance_weighted")) ASSERT_EQ_INT(o.n_triplets, 12);
    dml_mined_free(&o);
    dml_miner_free(mi);
    ASSERT_TRUE(check_public(miner_names[k], emb, lab, b, d, NULL, 4, 0));
  }
  free(emb);
}

/* Exact duplicates: distance 0 (ties everywhere); the lowest column wins and nothing breaks. */
TEST(duplicate_embeddings) {
  const int64_t b = 10, d = 4;
  float *emb = rand_emb(b, d, 4);
  for (int64_t i = 1; i < b; i += 2)
    memcpy(emb + i * d, emb + (i - 1) * d, (size_t)d * sizeof(float));
  memcpy(emb + 4 * d, emb, (size_t)d * sizeof(float));
  int32_t lab[10] = {0, 1, 0, 1, 1, 0, 2, 2, 0, 1};
  for (int k = 0; k < N_MINERS; k++)
    ASSERT_TRUE(check_public(miner_names[k], emb, lab, b, d, NULL, 6, 1));
  /* all identical: every distance 0, every gap 0 */
  for (int64_t i = 1; i < b; i++) memcpy(emb + i * d, emb, (size_t)d * sizeof(float));
  for (int k = 0; k < N_MINERS; k++)
    ASSERT_TRUE(check_public(miner_names[k], emb, lab, b, d, NULL, 6, 2));
  /* batch_hard on identical points: positive and negative are the lowest such columns */
  dml_miner *mi = NULL;
  ASSERT_OK(dml_miner_new("batch_hard", 0, &mi));
  dml_mined o;
  ASSERT_OK(dml_miner_mine(mi, emb, lab, b, d, NULL, &o));
  ASSERT_EQ_INT(o.n_triplets, b);
  ASSERT_EQ_INT(o.positive[0], 2);
  ASSERT_EQ_INT(o.negative[0], 1);
  ASSERT_EQ_INT(o.positive[1], 3);
  ASSERT_EQ_INT(o.negative[1], 0);
  dml_mined_free(&o);
  dml_miner_free(mi);
  /* a zero vector among them */
  memset(emb, 0, (size_t)d * sizeof(float));
  for (int k = 0; k < N_MINERS; k++)
    ASSERT_TRUE(check_public(miner_names[k], emb, lab, b, d, NULL, 6, 3));
  free(emb);
}

TEST(batch_of_one_and_empty) {
  float emb[4] = {1, 2, 3, 4};
  int32_t lab[1] = {5};
  for (int k = 0; k < N_MINERS; k++) {
    ASSERT_EQ_INT(mine_count(miner_names[k], emb, lab, 1, 4, NULL, NULL, NULL), 0);
    ASSERT_EQ_INT(mine_count(miner_names[k], emb, lab, 0, 4, NULL, NULL, NULL), 0);
  }
  /* B = 1 against a reference set does mine */
  float remb[12] = {1, 2, 3, 5, -1, 0, 2, 1, 1, 2, 3, 3};
  int32_t rlab[3] = {5, 6, 5};
  dml_loss_ref ref = {remb, rlab, 3};
  for (int k = 0; k < N_MINERS; k++)
    ASSERT_TRUE(check_public(miner_names[k], emb, lab, 1, 4, &ref, 1, 0));
  ASSERT_EQ_INT(mine_count("batch_hard", emb, lab, 1, 4, &ref, NULL, NULL), 1);
  ASSERT_EQ_INT(mine_count("distance_weighted", emb, lab, 1, 4, &ref, NULL, NULL), 2);
  dml_loss_ref empty = {NULL, NULL, 0};
  ASSERT_EQ_INT(mine_count("all", emb, lab, 1, 4, &empty, NULL, NULL), 0);
}

/* Labels are compared for equality only: 7, 42, -3 mine as 0, 1, 2 do. */
TEST(labels_not_0_to_c) {
  const int64_t b = 15, d = 5;
  float *emb = rand_emb(b, d, 8);
  int32_t a[15], c[15];
  const int32_t map[3] = {7, 42, -3};
  rand_labels(a, b, 3, 8, 1);
  for (int i = 0; i < 15; i++) c[i] = map[a[i]];
  for (int k = 0; k < N_MINERS; k++) {
    dml_miner *mi = NULL;
    ASSERT_OK(dml_miner_new(miner_names[k], 3, &mi));
    dml_mined x, y;
    ASSERT_OK(dml_miner_mine(mi, emb, a, b, d, NULL, &x));
    dml_miner_set_step(mi, 0);
    ASSERT_OK(dml_miner_mine(mi, emb, c, b, d, NULL, &y));
    ASSERT_EQ_INT(mined_count(&x, NULL, NULL), mined_count(&y, NULL, NULL));
    ASSERT_TRUE(mined_count(&x, NULL, NULL) > 0);
    for (int64_t t = 0; t < x.n_triplets; t++) {
      ASSERT_EQ_INT(x.anchor[t], y.anchor[t]);
      ASSERT_EQ_INT(x.positive[t], y.positive[t]);
      ASSERT_EQ_INT(x.negative[t], y.negative[t]);
    }
    for (int64_t t = 0; t < x.n_pos; t++) ASSERT_EQ_INT(x.pos_other[t], y.pos_other[t]);
    for (int64_t t = 0; t < x.n_neg; t++) ASSERT_EQ_INT(x.neg_other[t], y.neg_other[t]);
    dml_mined_free(&x);
    dml_mined_free(&y);
    dml_miner_free(mi);
    ASSERT_TRUE(check_public(miner_names[k], emb, c, b, d, NULL, 3, 0));
  }
  free(emb);
}

/* A larger batch: the O(r log r) band reduction against the O(r^2) plain loop. */
TEST(band_large_batch) {
  const int64_t b = 160, r = 160;
  float *m = malloc((size_t)(b * r) * sizeof(float));
  int32_t lab[160];
  uint8_t *rel0 = malloc((size_t)(b * r));
  for (int sim = 0; sim < 2; sim++) {
    grid_matrix(m, b * r, sim, 99u + (uint64_t)sim);
    rand_labels(lab, b, 10, 99, 1);
    make_rel(rel0, lab, lab, b, r, 1);
    const dml_distance dist = sim ? DML_DIST_DOT : DML_DIST_SQUARED_EUCLIDEAN;
    ASSERT_TRUE(check_kernel("semihard", "", m, b, r, sim, dist, 8, rel0, 0, 0));
    ASSERT_TRUE(check_kernel("hard_triplets", "", m, b, r, sim, dist, 8, rel0, 0, 0));
    ASSERT_TRUE(check_kernel("margin_triplets", "margin=0.375", m, b, r, sim, dist, 8, rel0, 0, 0));
    ASSERT_TRUE(check_kernel("multi_similarity", "", m, b, r, sim, dist, 8, rel0, 0, 0));
  }
  free(m);
  free(rel0);
}

/* ---- specs and errors ---- */

TEST(unknown_miner_lists_valid_names) {
  dml_miner *mi = NULL;
  ASSERT_ERROR(dml_miner_new("hardest", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(mi == NULL);
  for (int k = 0; k < N_MINERS; k++) ASSERT_TRUE(strstr(dml_last_error(), miner_names[k]));
  dml__miner mn;
  ASSERT_ERROR(dml__miner_make("nope", NULL, 0, "miner.", NULL, 0, &mn),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "semihard"));
}

TEST(unknown_or_bad_option_refused) {
  dml_miner *mi = NULL;
  ASSERT_ERROR(dml_miner_new("semihard marg=0.1", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "margin"));
  ASSERT_TRUE(strstr(dml_last_error(), "distance"));
  ASSERT_TRUE(strstr(dml_last_error(), "normalize"));
  ASSERT_ERROR(dml_miner_new("distance_weighted cut=1", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "nonzero_loss_cutoff"));
  ASSERT_ERROR(dml_miner_new("batch_hard margin=0.1", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_new("semihard margin=-1", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_new("semihard margin=abc", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_new("multi_similarity distance=manhattan", 0, &mi),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "squared_euclidean"));
  ASSERT_ERROR(dml_miner_new("all normalize=2", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_new("", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_new(NULL, 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(mi == NULL);
}

TEST(distance_weighted_needs_normalised_euclidean) {
  dml_miner *mi = NULL;
  ASSERT_ERROR(dml_miner_new("distance_weighted distance=cosine", 0, &mi),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_new("distance_weighted normalize=0", 0, &mi), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_new("distance_weighted distance=squared_euclidean", 0, &mi),
               DML_ERR_INVALID_ARGUMENT);
  /* the kernel refuses a similarity matrix too (a loss with distance=cosine) */
  float m[4] = {1, 0.5f, 0.5f, 1};
  uint8_t rel[4] = {0, 2, 2, 0};
  int32_t tbuf[12];
  dml__triplets trip = {0, 0, NULL, NULL, NULL, -INFINITY, INFINITY};
  dml__mine_args ma = {2, 2, m, 1, DML_DIST_COSINE, 4, rel, &trip, tbuf};
  dml__miner mn;
  ASSERT_OK(dml__miner_make("distance_weighted", NULL, 0, "", NULL, 0, &mn));
  ASSERT_ERROR(mn.def->mine(&mn, &ma), DML_ERR_INVALID_ARGUMENT);
}

TEST(canonical_spec) {
  dml_miner *mi = NULL;
  ASSERT_OK(dml_miner_new("semihard", 0, &mi));
  ASSERT_TRUE(!strcmp(dml_miner_spec(mi), "semihard margin=0.2 distance=euclidean normalize=1"));
  dml_miner_free(mi);
  ASSERT_OK(
      dml_miner_new("  multi_similarity   distance=cosine normalize=0 epsilon=0.05 ", 0, &mi));
  ASSERT_TRUE(!strcmp(dml_miner_spec(mi),
                      "multi_similarity epsilon=0.05 distance=cosine normalize=1"));
  dml_miner_free(mi);
  ASSERT_OK(dml_miner_new("distance_weighted", 0, &mi));
  ASSERT_TRUE(!strcmp(dml_miner_spec(mi), "distance_weighted cutoff=0.5 nonzero_loss_cutoff=1.4 "
                                          "distance=euclidean normalize=1"));
  dml_miner_free(mi);
  /* every canonical spec parses back to itself */
  for (int k = 0; k < N_MINERS; k++) {
    dml_miner *x = NULL, *y = NULL;
    ASSERT_OK(dml_miner_new(miner_names[k], 0, &x));
    ASSERT_OK(dml_miner_new(dml_miner_spec(x), 0, &y));
    ASSERT_TRUE(!strcmp(dml_miner_spec(x), dml_miner_spec(y)));
    dml_miner_free(x);
    dml_miner_free(y);
  }
  dml_miner_free(NULL);
  dml_mined_free(NULL);
}

/* Inside a loss spec the options are "miner.<name>" and are marked used; others are left. */
TEST(miner_make_with_prefix) {
  dml__spec_kv kv[3] = {{"margin", "0.5"}, {"miner.margin", "0.3"}, {"miner.epsilon", "1"}};
  int used[3] = {0, 0, 0};
  dml__miner mn;
  ASSERT_OK(dml__miner_make("semihard", kv, 3, "miner.", used, 11, &mn));
  ASSERT_NEAR(mn.opt[0], 0.3, 0.0);
  ASSERT_EQ_INT(used[0], 0);
  ASSERT_EQ_INT(used[1], 1);
  ASSERT_EQ_INT(used[2], 0);
  ASSERT_EQ_INT((long long)mn.seed, 11);
  ASSERT_TRUE(!strcmp(mn.def->name, "semihard"));
  dml__spec_kv bad[1] = {{"miner.margin", "-2"}};
  ASSERT_ERROR(dml__miner_make("semihard", bad, 1, "miner.", NULL, 0, &mn),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "miner.margin"));
  /* every miner is in the catalogue with a summary */
  int n = 0;
  for (const dml__miner_def *const *d = dml__miner_defs; *d; d++, n++)
    ASSERT_TRUE((*d)->summary && (*d)->summary[0]);
  ASSERT_EQ_INT(n, N_MINERS);
  for (int k = 0; k < N_MINERS; k++) ASSERT_TRUE(strstr(dml_loss_catalogue(), miner_names[k]));
}

TEST(mine_argument_errors) {
  dml_miner *mi = NULL;
  ASSERT_OK(dml_miner_new("all", 0, &mi));
  float emb[4] = {0};
  int32_t lab[2] = {0, 1};
  dml_mined o;
  ASSERT_ERROR(dml_miner_mine(mi, NULL, lab, 2, 2, NULL, &o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_mine(mi, emb, lab, 2, 0, NULL, &o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_miner_mine(mi, emb, lab, -1, 2, NULL, &o), DML_ERR_INVALID_ARGUMENT);
  dml_loss_ref ref = {NULL, lab, 2};
  ASSERT_ERROR(dml_miner_mine(mi, emb, lab, 2, 2, &ref, &o), DML_ERR_INVALID_ARGUMENT);
  ASSERT_EQ_INT(o.n_pos + o.n_neg + o.n_triplets, 0);
  ASSERT_TRUE(o.pos_anchor == NULL && o.anchor == NULL);
  dml_miner_free(mi);
}

/* ---- the PyTorch reference (tools/loss_ref/miners.py, float64 distances) ---- */

static int32_t *json_ints(const cJSON *arr, int64_t *n) {
  const int64_t len = cJSON_GetArraySize(arr);
  int32_t *out = malloc((size_t)(len + 1) * sizeof(int32_t));
  int64_t i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, arr) out[i++] = (int32_t)v->valuedouble;
  *n = len;
  return out;
}

/* Compares k parallel index arrays got[k][0..n_got) with the JSON arrays want[k]. */
static int same_lists(const char *name, const char *what, int k, int32_t *const *got,
                      int64_t n_got, const cJSON *want) {
  for (int c = 0; c < k; c++) {
    int64_t n = 0;
    int32_t *w = json_ints(cJSON_GetArrayItem(want, c), &n);
    const int ok = n == n_got && same_ints(what, got[c], w, n);
    if (n != n_got)
      fprintf(stderr, "  %s: %lld %s, reference %lld\n", name, (long long)n_got, what,
              (long long)n);
    free(w);
    if (!ok) return 0;
  }
  return 1;
}

TEST(pytorch_reference_fixture) {
  cJSON *root = fixture_load("fixtures/miners_ref.json");
  ASSERT_TRUE(root != NULL);
  int cases = 0, fails = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, root) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const char *spec = cJSON_GetObjectItem(c, "spec")->valuestring;
    float *emb = NULL, *remb = NULL;
    int ndim = 0;
    int64_t shape[4], rshape[4], nl = 0, nrl = 0;
    int32_t *lab = NULL, *rlab = NULL;
    fixture_tensor(cJSON_GetObjectItem(c, "emb"), &emb, &ndim, shape);
    lab = json_ints(cJSON_GetObjectItem(c, "labels"), &nl);
    const cJSON *jr = cJSON_GetObjectItem(c, "ref");
    dml_loss_ref ref = {NULL, NULL, 0};
    if (jr && !cJSON_IsNull(jr)) {
      fixture_tensor(cJSON_GetObjectItem(jr, "emb"), &remb, &ndim, rshape);
      rlab = json_ints(cJSON_GetObjectItem(jr, "labels"), &nrl);
      ref = (dml_loss_ref){remb, rlab, nrl};
    }
    dml_miner *mi = NULL;
    dml_mined o;
    memset(&o, 0, sizeof o);
    int ok = dml_miner_new(spec, (uint64_t)cJSON_GetObjectItem(c, "seed")->valuedouble, &mi) ==
             DML_OK;
    if (ok) {
      dml_miner_set_step(mi, (uint64_t)cJSON_GetObjectItem(c, "step")->valuedouble);
      ok = dml_miner_mine(mi, emb, lab, shape[0], shape[1], remb ? &ref : NULL, &o) == DML_OK;
    }
    if (!ok) fprintf(stderr, "  %s: %s\n", name, dml_last_error());
    const int triplets = !strcmp(cJSON_GetObjectItem(c, "kind")->valuestring, "triplets");
    if (ok && triplets) {
      int32_t *got[3] = {o.anchor, o.positive, o.negative};
      ok = o.kind == DML_MINED_TRIPLETS &&
           same_lists(name, "triplets", 3, got, o.n_triplets, cJSON_GetObjectItem(c, "triplets"));
    } else if (ok) {
      int32_t *gp[2] = {o.pos_anchor, o.pos_other}, *gn[2] = {o.neg_anchor, o.neg_other};
      ok = o.kind == DML_MINED_PAIRS &&
           same_lists(name, "positive pairs", 2, gp, o.n_pos, cJSON_GetObjectItem(c, "pos")) &&
           same_lists(name, "negative pairs", 2, gn, o.n_neg, cJSON_GetObjectItem(c, "neg"));
    }
    if (!ok) {
      fprintf(stderr, "  case %s (%s) failed\n", name, spec);
      fails++;
    }
    cases++;
    dml_mined_free(&o);
    dml_miner_free(mi);
    free(emb);
    free(remb);
    free(lab);
    free(rlab);
  }
  cJSON_Delete(root);
  ASSERT_TRUE(cases >= 20);
  ASSERT_EQ_INT(fails, 0);
}

/* ---- inside a loss ---- */

/* Every miner under a pair loss and a triplet loss: a finite loss and gradient; nothing valid
 * (one class) gives exactly 0. With a triplet miner the pair loss sees the triplets' pairs. */
TEST(losses_with_every_miner) {
  const int64_t b = 12, d = 5;
  float *emb = rand_emb(b, d, 31), grad[60], loss = -1.0f;
  int32_t lab[12], one[12];
  rand_labels(lab, b, 3, 31, 1);
  for (int i = 0; i < 12; i++) one[i] = 4;
  dml_loss_config cfg = {d, 0, 7};
  const char *losses[] = {"triplet", "contrastive"};
  for (int k = 0; k < N_MINERS; k++)
    for (int l = 0; l < 2; l++) {
      char spec[128];
      snprintf(spec, sizeof spec, "%s miner=%s", losses[l], miner_names[k]);
      ASSERT_OK(loss_check_finite(spec, &cfg, emb, lab, b, d, &loss, grad));
      ASSERT_OK(loss_check_finite(spec, &cfg, emb, one, b, d, &loss, grad));
      if (strcmp(miner_names[k], "all")) { /* "all" keeps the positive pairs of one class */
        ASSERT_NEAR(loss, 0.0, 0.0);
        for (int x = 0; x < 60; x++) ASSERT_NEAR(grad[x], 0.0, 0.0);
      }
    }
  /* miner options inside the loss spec, and the canonical spec naming them */
  dml_loss *lo = NULL;
  ASSERT_OK(dml_loss_new("triplet miner=semihard miner.margin=0.3", &cfg, &lo));
  ASSERT_TRUE(strstr(dml_loss_spec(lo), "miner=semihard miner.margin=0.3"));
  dml_loss_free(lo);
  ASSERT_ERROR(dml_loss_new("triplet miner=semihard miner.marg=0.3", &cfg, &lo),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "miner.margin"));
  ASSERT_ERROR(dml_loss_new("triplet miner=hardest", &cfg, &lo), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "batch_hard"));
  /* distance-weighted sampling needs Euclidean distances: refused when the loss measures
   * cosine similarity */
  ASSERT_STATUS(loss_check_finite("triplet distance=cosine miner=distance_weighted", &cfg, emb,
                                  lab, b, d, NULL, NULL),
                DML_ERR_INVALID_ARGUMENT);
  free(emb);
}
