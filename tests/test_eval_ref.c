/* Evaluation against reference values (tests/fixtures/eval/eval_ref.json, written by
 * tools/eval_ref/gen_eval_fixtures.py): retrieval metrics from plain-loop Python over the
 * published formulas (nDCG also from scikit-learn's ndcg_score), NMI, AMI, classification
 * reports, ROC AUC and k-means inertia from scikit-learn 1.2. */
#include <stdlib.h>

#include "fixture.h"
#include "test.h"

static const cJSON *item(const cJSON *o, const char *key) {
  return cJSON_GetObjectItemCaseSensitive(o, key);
}

static double num(const cJSON *o, const char *key) { return item(o, key)->valuedouble; }

/* Numbers of a JSON array as malloc'ed arrays (at least one element); *n gets the count. */
static float *floats(const cJSON *a, int64_t *n) {
  const int64_t m = cJSON_GetArraySize(a);
  float *v = malloc((size_t)(m > 0 ? m : 1) * sizeof *v);
  int64_t i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, a) v[i++] = (float)e->valuedouble;
  if (n) *n = m;
  return v;
}

static int32_t *ints32(const cJSON *a, int64_t *n) {
  const int64_t m = cJSON_GetArraySize(a);
  int32_t *v = malloc((size_t)(m > 0 ? m : 1) * sizeof *v);
  int64_t i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, a) v[i++] = (int32_t)e->valuedouble;
  if (n) *n = m;
  return v;
}

static int64_t *ints64(const cJSON *a) {
  const int64_t m = cJSON_GetArraySize(a);
  int64_t *v = malloc((size_t)(m > 0 ? m : 1) * sizeof *v);
  int64_t i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, a) v[i++] = (int64_t)e->valuedouble;
  return v;
}

static dml_distance parse_dist(const char *s) {
  if (!strcmp(s, "euclidean")) return DML_DIST_EUCLIDEAN;
  if (!strcmp(s, "squared_euclidean")) return DML_DIST_SQUARED_EUCLIDEAN;
  if (!strcmp(s, "dot")) return DML_DIST_DOT;
  return DML_DIST_COSINE;
}

#define TOL(ref) (1e-9 + 1e-9 * fabs(ref))

/* 1 when report r matches JSON summary s; prints the first difference. */
static int report_matches(const char *what, const dml_retrieval_report *r, const cJSON *s) {
  const double got[8] = {r->precision_at_1, r->precision_at_k, r->r_precision, r->map_at_r,
                         r->map,            r->recall_at_k,    r->mrr,         r->ndcg_at_k};
  static const char *names[8] = {"precision_at_1", "precision_at_k", "r_precision", "map_at_r",
                                 "map",            "recall_at_k",    "mrr",         "ndcg_at_k"};
  if (r->queries != (int64_t)num(s, "queries") || r->skipped != (int64_t)num(s, "skipped")) {
    fprintf(stderr, "  %s: queries/skipped %lld/%lld, expected %g/%g\n", what,
            (long long)r->queries, (long long)r->skipped, num(s, "queries"), num(s, "skipped"));
    return 0;
  }
  for (int m = 0; m < 8; m++) {
    const double want = num(s, names[m]);
    if (!(fabs(got[m] - want) <= TOL(want))) {
      fprintf(stderr, "  %s: %s = %.12g, expected %.12g\n", what, names[m], got[m], want);
      return 0;
    }
  }
  return 1;
}

static void read_labels(const cJSON *o, dml_labels *l, int64_t n, int32_t **vals,
                        int64_t **offs) {
  *vals = ints32(item(o, "values"), NULL);
  *offs = cJSON_IsNull(item(o, "offsets")) ? NULL : ints64(item(o, "offsets"));
  *l = (dml_labels){n, *vals, *offs};
}

TEST(retrieval_matches_reference) {
  cJSON *root = fixture_load("fixtures/eval/eval_ref.json");
  ASSERT_TRUE(root);
  const cJSON *c;
  int cases = 0, failures = 0;
  cJSON_ArrayForEach(c, item(root, "retrieval")) {
    const char *name = item(c, "name")->valuestring;
    const int64_t nq = (int64_t)num(c, "nq"), nr = (int64_t)num(c, "nr"), d = (int64_t)num(c, "d");
    const int64_t k = (int64_t)num(c, "k");
    const int32_t nc = (int32_t)num(c, "num_classes");
    float *q = floats(item(c, "queries"), NULL);
    float *r = cJSON_IsNull(item(c, "reference")) ? NULL : floats(item(c, "reference"), NULL);
    int32_t *qv, *rv = NULL;
    int64_t *qo, *ro = NULL;
    dml_labels ql, rl;
    read_labels(item(c, "qlabels"), &ql, nq, &qv, &qo);
    if (r) read_labels(item(c, "rlabels"), &rl, nr, &rv, &ro);
    dml_retrieval_report overall, *per = malloc((size_t)nc * sizeof *per);
    const dml_status st = dml_eval_retrieval_report(q, &ql, nq, r, r ? &rl : NULL, nr, d,
                                                    parse_dist(item(c, "dist")->valuestring), k,
                                                    &overall, per, nc);
    int ok = st == DML_OK;
    if (!ok) fprintf(stderr, "  %s: %s\n", name, dml_last_error());
    char what[160];
    if (ok) {
      snprintf(what, sizeof what, "%s overall", name);
      ok = report_matches(what, &overall, item(c, "overall"));
    }
    for (int32_t cl = 0; ok && cl < nc; cl++) {
      snprintf(what, sizeof what, "%s class %d", name, cl);
      ok = report_matches(what, &per[cl], cJSON_GetArrayItem(item(c, "per_class"), cl)) &&
           per[cl].k == k;
    }
    failures += !ok;
    cases++;
    free(q);
    free(r);
    free(qv);
    free(qo);
    free(rv);
    free(ro);
    free(per);
  }
  cJSON_Delete(root);
  ASSERT_TRUE(cases >= 10);
  ASSERT_EQ_INT(failures, 0);
}

TEST(self_retrieval_single_label_agrees_with_dml_eval_retrieval) {
  cJSON *root = fixture_load("fixtures/eval/eval_ref.json");
  ASSERT_TRUE(root);
  const cJSON *c = cJSON_GetArrayItem(item(root, "retrieval"), 0);
  const int64_t nq = (int64_t)num(c, "nq"), d = (int64_t)num(c, "d");
  float *q = floats(item(c, "queries"), NULL);
  int32_t *y = ints32(item(item(c, "qlabels"), "values"), NULL);
  dml_retrieval_metrics m;
  const dml_status st = dml_eval_retrieval(q, y, nq, d, parse_dist(item(c, "dist")->valuestring), &m);
  const cJSON *s = item(c, "overall");
  const double p1 = num(s, "precision_at_1"), rp = num(s, "r_precision"), mr = num(s, "map_at_r");
  const double queries = num(s, "queries");
  free(q);
  free(y);
  cJSON_Delete(root);
  ASSERT_OK(st);
  ASSERT_EQ_INT(m.queries, (int64_t)queries);
  ASSERT_NEAR(m.precision_at_1, p1, 1e-12);
  ASSERT_NEAR(m.r_precision, rp, 1e-12);
  ASSERT_NEAR(m.map_at_r, mr, 1e-12);
}

TEST(mutual_information_matches_sklearn) {
  cJSON *root = fixture_load("fixtures/eval/eval_ref.json");
  ASSERT_TRUE(root);
  const cJSON *c;
  int failures = 0, cases = 0;
  cJSON_ArrayForEach(c, item(root, "mutual_info")) {
    int64_t n;
    int32_t *a = ints32(item(c, "a"), &n), *b = ints32(item(c, "b"), NULL);
    double na = -1, ng = -1, ami = -1;
    const int ok = dml_nmi(a, b, n, &na, &ng) == DML_OK && dml_ami(a, b, n, &ami) == DML_OK;
    const double wa = num(c, "nmi_arithmetic"), wg = num(c, "nmi_geometric"), wm = num(c, "ami");
    if (!ok || fabs(na - wa) > 1e-12 || fabs(ng - wg) > 1e-12 || fabs(ami - wm) > 1e-10) {
      fprintf(stderr, "  %s: nmi %.15g/%.15g ami %.15g, sklearn %.15g/%.15g %.15g\n",
              item(c, "name")->valuestring, na, ng, ami, wa, wg, wm);
      failures++;
    }
    cases++;
    free(a);
    free(b);
  }
  cJSON_Delete(root);
  ASSERT_TRUE(cases >= 8);
  ASSERT_EQ_INT(failures, 0);
}

TEST(kmeans_reaches_sklearn_inertia_on_blobs) {
  cJSON *root = fixture_load("fixtures/eval/eval_ref.json");
  ASSERT_TRUE(root);
  const cJSON *c = cJSON_GetArrayItem(item(root, "kmeans"), 0);
  const int64_t n = (int64_t)num(c, "n"), d = (int64_t)num(c, "d"), k = (int64_t)num(c, "k");
  float *x = floats(item(c, "x"), NULL);
  int32_t *y = ints32(item(c, "labels"), NULL);
  const double want = num(c, "inertia");
  cJSON_Delete(root);
  double inertia = 0;
  dml_clustering_report rep;
  const dml_status s1 = dml_kmeans(x, n, d, k, 100, 7, NULL, NULL, &inertia);
  const dml_status s2 = dml_eval_clustering(x, y, n, d, 7, &rep);
  free(x);
  free(y);
  ASSERT_OK(s1);
  ASSERT_OK(s2);
  ASSERT_NEAR(inertia, want, 1e-4 * want);
  ASSERT_EQ_INT(rep.clusters, 4);
  ASSERT_NEAR(rep.nmi, 1.0, 1e-12);
  ASSERT_NEAR(rep.nmi_arithmetic, 1.0, 1e-12);
  ASSERT_NEAR(rep.ami, 1.0, 1e-12);
  ASSERT_NEAR(rep.inertia, want, 1e-4 * want);
}

TEST(classification_report_matches_sklearn) {
  cJSON *root = fixture_load("fixtures/eval/eval_ref.json");
  ASSERT_TRUE(root);
  const cJSON *c;
  int failures = 0;
  cJSON_ArrayForEach(c, item(root, "classification")) {
    int64_t n;
    int32_t *t = ints32(item(c, "truth"), &n), *p = ints32(item(c, "pred"), NULL);
    const int32_t nc = (int32_t)num(c, "num_classes");
    dml_classification_report r;
    int ok = dml_classification_report_compute(t, p, n, nc, &r) == DML_OK;
    ok = ok && r.n == n && r.num_classes == nc &&
         fabs(r.accuracy - num(c, "accuracy")) < 1e-12 &&
         fabs(r.macro_f1 - num(c, "macro_f1")) < 1e-12 &&
         fabs(r.weighted_f1 - num(c, "weighted_f1")) < 1e-12;
    for (int32_t k = 0; ok && k < nc; k++) {
      ok = fabs(r.precision[k] - cJSON_GetArrayItem(item(c, "precision"), k)->valuedouble) < 1e-12 &&
           fabs(r.recall[k] - cJSON_GetArrayItem(item(c, "recall"), k)->valuedouble) < 1e-12 &&
           fabs(r.f1[k] - cJSON_GetArrayItem(item(c, "f1"), k)->valuedouble) < 1e-12 &&
           fabs(r.specificity[k] - cJSON_GetArrayItem(item(c, "specificity"), k)->valuedouble) <
               1e-12 &&
           r.support[k] == (int64_t)cJSON_GetArrayItem(item(c, "support"), k)->valuedouble;
      for (int32_t j = 0; ok && j < nc; j++)
        ok = r.confusion[k * nc + j] ==
             (int64_t)cJSON_GetArrayItem(item(c, "confusion"), k * nc + j)->valuedouble;
    }
    if (!ok) {
      fprintf(stderr, "  %s: differs from sklearn (macro F1 %.15g vs %.15g)\n",
              item(c, "name")->valuestring, r.macro_f1, num(c, "macro_f1"));
      failures++;
    }
    dml_classification_report_free(&r);
    free(t);
    free(p);
  }
  cJSON_Delete(root);
  ASSERT_EQ_INT(failures, 0);
}

TEST(roc_auc_matches_sklearn) {
  cJSON *root = fixture_load("fixtures/eval/eval_ref.json");
  ASSERT_TRUE(root);
  const cJSON *c;
  int failures = 0;
  cJSON_ArrayForEach(c, item(root, "auc")) {
    int64_t n;
    float *s = floats(item(c, "scores"), &n);
    int32_t *p32 = ints32(item(c, "positive"), NULL);
    uint8_t *p = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) p[i] = (uint8_t)p32[i];
    double auc = -1;
    if (dml_roc_auc(s, p, n, &auc) != DML_OK || fabs(auc - num(c, "auc")) > 1e-12) {
      fprintf(stderr, "  %s: auc %.15g, sklearn %.15g\n", item(c, "name")->valuestring, auc,
              num(c, "auc"));
      failures++;
    }
    free(s);
    free(p32);
    free(p);
  }
  cJSON_ArrayForEach(c, item(root, "multilabel_auc")) {
    const int64_t n = (int64_t)num(c, "n");
    const int32_t nl = (int32_t)num(c, "num_labels");
    float *s = floats(item(c, "scores"), NULL);
    int32_t *t32 = ints32(item(c, "targets"), NULL);
    uint8_t *t = malloc((size_t)(n * nl));
    for (int64_t i = 0; i < n * nl; i++) t[i] = (uint8_t)t32[i];
    double per[16], mean = -1;
    int32_t used = -1;
    int ok = nl <= 16 && dml_multilabel_auc(s, t, n, nl, per, &mean, &used) == DML_OK &&
             used == (int32_t)num(c, "labels_used") && fabs(mean - num(c, "mean")) < 1e-12;
    for (int32_t l = 0; ok && l < nl; l++) {
      const cJSON *w = cJSON_GetArrayItem(item(c, "per_label"), l);
      ok = cJSON_IsNull(w) ? isnan(per[l]) : fabs(per[l] - w->valuedouble) < 1e-12;
    }
    if (!ok) {
      fprintf(stderr, "  %s: mean %.15g used %d, sklearn %.15g\n", item(c, "name")->valuestring,
              mean, used, num(c, "mean"));
      failures++;
    }
    free(s);
    free(t32);
    free(t);
  }
  cJSON_Delete(root);
  ASSERT_EQ_INT(failures, 0);
}
