/* `dml eval`: the quality of an embedding from .npy files: retrieval metrics, k-means
 * clustering (NMI, AMI) and kNN classification (accuracy, F1, sensitivity, specificity,
 * confusion matrix, ROC AUC), as a table on the terminal and optionally as JSON. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"

static const char *CMD = "eval";

static int usage(FILE *f, int code) {
  fprintf(f,
          "usage: dml eval --emb E.npy --labels Y.npy [options]\n"
          "  Retrieval (P@1, P@K, R-Precision, MAP@R, mAP, Recall@K, MRR, nDCG@K), clustering\n"
          "  (k-means with k = number of classes; NMI, AMI) and kNN classification (accuracy,\n"
          "  per-class precision/recall/F1/specificity, macro and weighted F1, confusion matrix,\n"
          "  one-vs-rest ROC AUC) of the embeddings.\n"
          "options:\n"
          "  --ref R.npy --ref-labels RY.npy  a separate reference set (default: the queries\n"
          "                   themselves, each query excluded from its own ranking)\n"
          "  --distance D     cosine (default), euclidean, sqeuclidean or dot\n"
          "  --k K            K of P@K, Recall@K, nDCG@K (default 10)\n"
          "  --knn K          neighbours voting in kNN classification (default 5; 0 skips it)\n"
          "  --vote V         majority (default) or distance\n"
          "  --per-class      print retrieval and classification per class\n"
          "  --no-clustering  skip k-means\n"
          "  --seed N         k-means seed (default 1)\n"
          "  --json OUT.json  write every figure as JSON\n"
          "Labels: int [items] (one class each) or 0/1 [items, labels] (multi-label: relevant =\n"
          "shares a label, nDCG graded by Jaccard similarity; per-label ROC AUC of kNN label\n"
          "scores instead of clustering and single-label classification).\n");
  return code;
}

static cJSON *retrieval_json(const dml_retrieval_report *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "k", (double)r->k);
  cJSON_AddNumberToObject(o, "queries", (double)r->queries);
  cJSON_AddNumberToObject(o, "skipped", (double)r->skipped);
  cJSON_AddNumberToObject(o, "precision_at_1", r->precision_at_1);
  cJSON_AddNumberToObject(o, "precision_at_k", r->precision_at_k);
  cJSON_AddNumberToObject(o, "r_precision", r->r_precision);
  cJSON_AddNumberToObject(o, "map_at_r", r->map_at_r);
  cJSON_AddNumberToObject(o, "map", r->map);
  cJSON_AddNumberToObject(o, "recall_at_k", r->recall_at_k);
  cJSON_AddNumberToObject(o, "mrr", r->mrr);
  cJSON_AddNumberToObject(o, "ndcg_at_k", r->ndcg_at_k);
  return o;
}

static void retrieval_row(const char *name, const dml_retrieval_report *r) {
  printf("  %-10s %7lld %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f\n", name,
         (long long)r->queries, r->precision_at_1, r->precision_at_k, r->r_precision,
         r->map_at_r, r->map, r->recall_at_k, r->mrr, r->ndcg_at_k);
}

typedef struct {
  const char *emb, *labels, *ref, *ref_labels, *json;
  dml_distance dist;
  int64_t k, knn, seed;
  dml_vote vote;
  int per_class, clustering;
} options;

static int parse(int argc, char **argv, options *o) {
  *o = (options){.dist = DML_DIST_COSINE, .k = 10, .knn = 5, .seed = 1, .clustering = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
    if (!strcmp(a, "--per-class")) {
      o->per_class = 1;
      continue;
    }
    if (!strcmp(a, "--no-clustering")) {
      o->clustering = 0;
      continue;
    }
    const char *v = cli_value(CMD, argc, argv, &i);
    if (!v) return 2;
    if (!strcmp(a, "--emb")) o->emb = v;
    else if (!strcmp(a, "--labels")) o->labels = v;
    else if (!strcmp(a, "--ref")) o->ref = v;
    else if (!strcmp(a, "--ref-labels")) o->ref_labels = v;
    else if (!strcmp(a, "--json")) o->json = v;
    else if (!strcmp(a, "--distance")) {
      if (!cli_parse_distance(v, &o->dist)) return 2;
    } else if (!strcmp(a, "--k")) {
      if (!cli_int(CMD, a, v, 1, 100000, &o->k)) return 2;
    } else if (!strcmp(a, "--knn")) {
      if (!cli_int(CMD, a, v, 0, 10000, &o->knn)) return 2;
    } else if (!strcmp(a, "--seed")) {
      if (!cli_int(CMD, a, v, 0, INT64_MAX, &o->seed)) return 2;
    } else if (!strcmp(a, "--vote")) {
      if (!strcmp(v, "majority")) o->vote = DML_VOTE_MAJORITY;
      else if (!strcmp(v, "distance")) o->vote = DML_VOTE_DISTANCE;
      else {
        fprintf(stderr, "dml eval: --vote is majority or distance, got '%s'\n", v);
        return 2;
      }
    } else {
      fprintf(stderr, "dml eval: unknown option %s\n", a);
      return 2;
    }
  }
  if (!o->emb || !o->labels || (!o->ref != !o->ref_labels)) {
    fprintf(stderr, "dml eval: --emb and --labels are required; --ref and --ref-labels go "
                    "together\n");
    return usage(stderr, 2);
  }
  return 0;
}

/* kNN classification of the queries against the reference set (leave-one-out when they are
 * the same set), with its report and one-vs-rest AUCs. */
static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* Dense class ids for single labels: the distinct values of a (and b) in order, and each
 * item's index among them, so that label values like 11318..22634 cost 11317 classes, not
 * 22635. *distinct, *da and *db (when b) are malloc'ed. */
static int dense_classes(const cli_labels *a, const cli_labels *b, int32_t **distinct,
                         int32_t *nd, int32_t **da, int32_t **db) {
  int64_t na = a->l.n, nb = b ? b->l.n : 0;
  int32_t *all = malloc((size_t)(na + nb + 1) * sizeof *all);
  *da = malloc((size_t)(na + 1) * sizeof **da);
  *db = b ? malloc((size_t)(nb + 1) * sizeof **db) : NULL;
  if (!all || !*da || (b && !*db)) {
    free(all);
    free(*da);
    free(*db);
    fprintf(stderr, "dml eval: out of memory\n");
    return 1;
  }
  memcpy(all, a->values, (size_t)na * sizeof *all);
  if (b) memcpy(all + na, b->values, (size_t)nb * sizeof *all);
  qsort(all, (size_t)(na + nb), sizeof *all, cmp_i32);
  int32_t n = 0;
  for (int64_t i = 0; i < na + nb; i++)
    if (i == 0 || all[i] != all[i - 1]) all[n++] = all[i];
  for (int64_t i = 0; i < na; i++)
    (*da)[i] = (int32_t)((int32_t *)bsearch(&a->values[i], all, (size_t)n, sizeof *all, cmp_i32) - all);
  for (int64_t i = 0; i < nb; i++)
    (*db)[i] = (int32_t)((int32_t *)bsearch(&b->values[i], all, (size_t)n, sizeof *all, cmp_i32) - all);
  *distinct = all;
  *nd = n;
  return 0;
}

#define JSON_CONFUSION_MAX 200     /* classes above which the JSON leaves the matrix out */
#define CLASSIFY_MAX_CLASSES 4096 /* above this, no kNN classification report */

static int classification(const options *o, const cli_matrix *q, const cli_labels *qy_in,
                          const cli_matrix *r, const cli_labels *ry_in, cJSON *root) {
  int64_t nq = q->n;
  int32_t *label_of = NULL, *qd = NULL, *rd = NULL, classes = 0;
  if (dense_classes(qy_in, r == q ? NULL : ry_in, &label_of, &classes, &qd, &rd)) return 1;
  const int32_t *qv = qd, *rv = r == q ? qd : rd;
  if (classes > CLASSIFY_MAX_CLASSES) {
    printf("\nkNN classification skipped: %d classes (the confusion matrix alone would take "
           "%.1f GB; retrieval metrics above are the measure for this many classes)\n",
           classes, (double)classes * classes * 8 / 1e9);
    free(label_of);
    free(qd);
    free(rd);
    return 0;
  }
  /* Class scores for ROC AUC only while they fit in a few hundred MB. */
  int with_auc = (double)nq * classes <= (double)(1 << 27);
  int32_t *pred = malloc((size_t)nq * sizeof *pred);
  float *scores = with_auc ? malloc((size_t)nq * (size_t)classes * sizeof *scores) : NULL;
  uint8_t *pos = malloc((size_t)nq);
  float *col = malloc((size_t)nq * sizeof *col);
  double *auc = malloc((size_t)classes * sizeof *auc);
  dml_classification_report rep = {0};
  int rc = 1;
  if (!pred || (with_auc && !scores) || !pos || !col || !auc) {
    fprintf(stderr, "dml eval: out of memory\n");
    goto done;
  }
  if (dml_knn_classify(r->x, rv, r->n, q->x, nq, q->d, o->dist, o->knn, o->vote,
                       classes, pred, scores) != DML_OK) {
    rc = cli_fail(CMD, "kNN classification");
    goto done;
  }
  if (dml_classification_report_compute(qv, pred, nq, classes, &rep) != DML_OK) {
    rc = cli_fail(CMD, "classification report");
    goto done;
  }
  double auc_sum = 0;
  int auc_n = 0;
  for (int32_t c = 0; c < classes; c++) {
    auc[c] = NAN;
    if (!with_auc) continue;
    for (int64_t i = 0; i < nq; i++) {
      pos[i] = qv[i] == c;
      col[i] = scores[i * classes + c];
    }
    if (rep.support[c] > 0 && rep.support[c] < nq &&
        dml_roc_auc(col, pos, nq, &auc[c]) == DML_OK) {
      auc_sum += auc[c];
      auc_n++;
    }
  }
  double macro_auc = auc_n ? auc_sum / auc_n : NAN;
  printf("\nkNN classification (%lld neighbours, %s vote%s)\n", (long long)o->knn,
         o->vote == DML_VOTE_MAJORITY ? "majority" : "distance-weighted",
         o->ref ? "" : ", leave-one-out");
  printf("  accuracy %.4f   macro F1 %.4f   weighted F1 %.4f   macro ROC AUC %.4f\n",
         rep.accuracy, rep.macro_f1, rep.weighted_f1, macro_auc);
  if (o->per_class) {
    printf("  %-6s %8s %9s %7s %7s %11s %8s\n", "class", "support", "precision", "recall", "F1",
           "specificity", "AUC");
    for (int32_t c = 0; c < classes; c++)
      if (rep.support[c] > 0 || rep.precision[c] > 0)
        printf("  %-6d %8lld %9.4f %7.4f %7.4f %11.4f %8.4f\n", label_of[c],
               (long long)rep.support[c],
               rep.precision[c], rep.recall[c], rep.f1[c], rep.specificity[c], auc[c]);
    if (classes <= 20) {
      printf("  confusion matrix (row = true class, column = predicted):\n");
      for (int32_t a = 0; a < classes; a++) {
        printf("  %4d |", label_of[a]);
        for (int32_t b = 0; b < classes; b++)
          printf(" %5lld", (long long)rep.confusion[(int64_t)a * classes + b]);
        printf("\n");
      }
    }
  }
  if (root) {
    cJSON *k = cJSON_AddObjectToObject(root, "knn");
    cJSON_AddNumberToObject(k, "k", (double)o->knn);
    cJSON_AddStringToObject(k, "vote", o->vote == DML_VOTE_MAJORITY ? "majority" : "distance");
    cJSON_AddBoolToObject(k, "leave_one_out", !o->ref);
    cJSON_AddNumberToObject(k, "accuracy", rep.accuracy);
    cJSON_AddNumberToObject(k, "macro_f1", rep.macro_f1);
    cJSON_AddNumberToObject(k, "weighted_f1", rep.weighted_f1);
    if (auc_n) cJSON_AddNumberToObject(k, "macro_roc_auc", macro_auc);
    cJSON *pc = cJSON_AddArrayToObject(k, "per_class");
    for (int32_t c = 0; c < classes; c++) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddNumberToObject(e, "class", label_of[c]);
      cJSON_AddNumberToObject(e, "support", (double)rep.support[c]);
      cJSON_AddNumberToObject(e, "precision", rep.precision[c]);
      cJSON_AddNumberToObject(e, "recall", rep.recall[c]);
      cJSON_AddNumberToObject(e, "f1", rep.f1[c]);
      cJSON_AddNumberToObject(e, "specificity", rep.specificity[c]);
      if (!isnan(auc[c])) cJSON_AddNumberToObject(e, "roc_auc", auc[c]);
      cJSON_AddItemToArray(pc, e);
    }
    cJSON *order = cJSON_AddArrayToObject(k, "classes");
    for (int32_t c = 0; c < classes; c++) cJSON_AddItemToArray(order, cJSON_CreateNumber(label_of[c]));
    cJSON *cm = classes <= JSON_CONFUSION_MAX ? cJSON_AddArrayToObject(k, "confusion") : NULL;
    for (int32_t a = 0; cm && a < classes; a++) {
      cJSON *row = cJSON_CreateArray();
      for (int32_t b = 0; b < classes; b++)
        cJSON_AddItemToArray(row,
                             cJSON_CreateNumber((double)rep.confusion[(int64_t)a * classes + b]));
      cJSON_AddItemToArray(cm, row);
    }
  }
  rc = 0;
done:
  dml_classification_report_free(&rep);
  free(label_of);
  free(qd);
  free(rd);
  free(pred);
  free(scores);
  free(pos);
  free(col);
  free(auc);
  return rc;
}

/* Multi-label: kNN label scores (the share of the k nearest reference items carrying each
 * label) and their per-label ROC AUC. */
static int multilabel(const options *o, const cli_matrix *q, const cli_labels *qy,
                      const cli_matrix *r, const cli_labels *ry, int32_t labels, cJSON *root) {
  int64_t nq = q->n;
  float *scores = malloc((size_t)nq * (size_t)labels * sizeof *scores);
  uint8_t *targets = calloc((size_t)nq * (size_t)labels, 1);
  double *auc = malloc((size_t)labels * sizeof *auc);
  int rc = 1;
  if (!scores || !targets || !auc) {
    fprintf(stderr, "dml eval: out of memory\n");
    goto done;
  }
  for (int64_t i = 0; i < nq; i++)
    for (int64_t t = qy->offsets[i]; t < qy->offsets[i + 1]; t++)
      targets[i * labels + qy->values[t]] = 1;
  double mean;
  int32_t used;
  if (dml_knn_label_scores(r->x, &ry->l, r->n, q->x, nq, q->d, o->dist, o->knn, labels,
                           scores) != DML_OK ||
      dml_multilabel_auc(scores, targets, nq, labels, auc, &mean, &used) != DML_OK) {
    rc = cli_fail(CMD, "multi-label kNN scores");
    goto done;
  }
  printf("\nmulti-label kNN (%lld neighbours%s): per-label ROC AUC, mean %.4f over %d labels\n",
         (long long)o->knn, o->ref ? "" : ", leave-one-out", mean, used);
  if (o->per_class)
    for (int32_t l = 0; l < labels; l++) printf("  label %-4d AUC %.4f\n", l, auc[l]);
  if (root) {
    cJSON *m = cJSON_AddObjectToObject(root, "multilabel_knn");
    cJSON_AddNumberToObject(m, "k", (double)o->knn);
    if (used) cJSON_AddNumberToObject(m, "mean_roc_auc", mean);
    cJSON_AddNumberToObject(m, "labels_used", used);
    cJSON *arr = cJSON_AddArrayToObject(m, "roc_auc_per_label");
    for (int32_t l = 0; l < labels; l++)
      cJSON_AddItemToArray(arr, isnan(auc[l]) ? cJSON_CreateNull() : cJSON_CreateNumber(auc[l]));
  }
  rc = 0;
done:
  free(scores);
  free(targets);
  free(auc);
  return rc;
}

int dml_cli_eval(int argc, char **argv) {
  options o;
  int rc = parse(argc, argv, &o);
  if (rc < 0) return usage(stdout, 0);
  if (rc) return rc;
  cli_matrix q = {0}, r = {0};
  cli_labels qy = {0}, ry = {0};
  dml_retrieval_report overall, *per = NULL;
  cJSON *root = o.json ? cJSON_CreateObject() : NULL;
  rc = 1;
  if (cli_read_matrix(CMD, o.emb, &q) || cli_read_labels(CMD, o.labels, &qy)) goto done;
  if (qy.l.n != q.n) {
    fprintf(stderr, "dml eval: %s has %lld labels for %lld embeddings\n", o.labels,
            (long long)qy.l.n, (long long)q.n);
    goto done;
  }
  if (o.ref) {
    if (cli_read_matrix(CMD, o.ref, &r) || cli_read_labels(CMD, o.ref_labels, &ry)) goto done;
    if (ry.l.n != r.n || r.d != q.d || ry.multi != qy.multi) {
      fprintf(stderr, "dml eval: the reference set must have one label entry per embedding, "
                      "the queries' dimension and the same label layout\n");
      goto done;
    }
  }
  int32_t classes = qy.num_classes > ry.num_classes ? qy.num_classes : ry.num_classes;
  if (o.per_class) {
    per = calloc((size_t)(classes > 0 ? classes : 1), sizeof *per);
    if (!per) goto done;
  }
  if (dml_eval_retrieval_report(q.x, &qy.l, q.n, o.ref ? r.x : NULL, o.ref ? &ry.l : NULL,
                                o.ref ? r.n : 0, q.d, o.dist, o.k, &overall, per,
                                per ? classes : 0) != DML_OK) {
    rc = cli_fail(CMD, "retrieval");
    goto done;
  }
  printf("%lld queries against %s (%lld items), %s distance%s\n", (long long)q.n,
         o.ref ? o.ref : "themselves", (long long)(o.ref ? r.n : q.n), cli_distance_name(o.dist),
         qy.multi ? ", multi-label" : "");
  printf("\nretrieval (K = %lld; %lld queries without a relevant item skipped)\n",
         (long long)o.k, (long long)overall.skipped);
  printf("  %-10s %7s %7s %7s %7s %7s %7s %7s %7s %7s\n", "", "queries", "P@1", "P@K", "R-Prec",
         "MAP@R", "mAP", "R@K", "MRR", "nDCG@K");
  retrieval_row("all", &overall);
  if (per)
    for (int32_t c = 0; c < classes; c++)
      if (per[c].queries) {
        char name[32];
        snprintf(name, sizeof name, "class %d", c);
        retrieval_row(name, &per[c]);
      }
  if (root) {
    cJSON_AddItemToObject(root, "retrieval", retrieval_json(&overall));
    if (per) {
      cJSON *arr = cJSON_AddArrayToObject(root, "retrieval_per_class");
      for (int32_t c = 0; c < classes; c++) {
        if (!per[c].queries) continue;
        cJSON *e = retrieval_json(&per[c]);
        cJSON_AddNumberToObject(e, "class", c);
        cJSON_AddItemToArray(arr, e);
      }
    }
  }
  if (o.clustering && !qy.multi) {
    dml_clustering_report cr;
    if (dml_eval_clustering(q.x, qy.values, q.n, q.d, (uint64_t)o.seed, &cr) != DML_OK) {
      rc = cli_fail(CMD, "clustering");
      goto done;
    }
    printf("\nclustering (k-means, k = %lld, k-means++ seed %lld)\n", (long long)cr.clusters,
           (long long)o.seed);
    printf("  NMI %.4f (arithmetic normaliser %.4f)   AMI %.4f\n", cr.nmi, cr.nmi_arithmetic,
           cr.ami);
    if (root) {
      cJSON *c = cJSON_AddObjectToObject(root, "clustering");
      cJSON_AddNumberToObject(c, "clusters", (double)cr.clusters);
      cJSON_AddNumberToObject(c, "nmi", cr.nmi);
      cJSON_AddNumberToObject(c, "nmi_arithmetic", cr.nmi_arithmetic);
      cJSON_AddNumberToObject(c, "ami", cr.ami);
      cJSON_AddNumberToObject(c, "inertia", cr.inertia);
    }
  }
  if (o.knn > 0 && !qy.multi &&
      classification(&o, &q, &qy, o.ref ? &r : &q, o.ref ? &ry : &qy, root))
    goto done;
  if (o.knn > 0 && qy.multi &&
      multilabel(&o, &q, &qy, o.ref ? &r : &q, o.ref ? &ry : &qy, classes, root))
    goto done;
  if (root) {
    char *text = cJSON_Print(root);
    if (!text || cli_write_text(o.json, text) != DML_OK) {
      free(text);
      rc = cli_fail(CMD, "writing JSON");
      goto done;
    }
    free(text);
    printf("\nwrote %s\n", o.json);
  }
  rc = 0;
done:
  cJSON_Delete(root);
  free(per);
  cli_labels_free(&qy);
  cli_labels_free(&ry);
  dml_npy_free(&q.npy);
  dml_npy_free(&r.npy);
  return rc;
}
