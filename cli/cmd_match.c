/* `dml calibrate` and `dml classify`: matching queries against a gallery with rejection
 * (include/dml/match.h). calibrate chooses the distance threshold on labelled held-out
 * embeddings and writes it, with the matching rule, to a JSON file; classify applies it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "core/file.h"
#include "cli/commands.h"

typedef struct {
  const char *index, *emb, *labels, *out, *calibration, *out_scores, *json;
  dml_match_config cfg;
  int rule_set, k_set, best_f1;
  double precision;
} options;

static int usage_calibrate(FILE *f, int code) {
  fprintf(f,
          "usage: dml calibrate --index G.dmlg --emb E.npy --labels Y.npy --out CAL.json\n"
          "                     (--precision P | --best-f1) [--rule nearest|majority] [--k K]\n"
          "  Chooses the distance threshold beyond which a query's match is rejected as\n"
          "  \"unknown\", on labelled held-out embeddings: the loosest threshold whose precision\n"
          "  is at least P, or the one with the best F1. Queries whose classes are not in the\n"
          "  gallery may be included: accepting them counts against precision. The rule is the\n"
          "  nearest item's label (default) or the majority of the K nearest (default K 5).\n");
  return code;
}

static int usage_classify(FILE *f, int code) {
  fprintf(f,
          "usage: dml classify --index G.dmlg --queries Q.npy (--calibration CAL.json |\n"
          "                    --threshold T [--rule nearest|majority] [--k K])\n"
          "                    [--out PRED.npy] [--out-scores S.npy] [--labels Y.npy]\n"
          "                    [--json REPORT.json]\n"
          "  Labels each query with its match, or -1 (\"unknown\") beyond the threshold.\n"
          "  PRED.npy: int32 [queries]; S.npy: float32 [queries], the match distance or\n"
          "  similarity. With --labels, prints the open-set report: precision, accuracy on\n"
          "  known queries, share of unknown queries rejected, AUROC of known versus unknown.\n");
  return code;
}

static int parse(const char *cmd, int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->cfg.rule = DML_MATCH_NEAREST;
  o->cfg.k = 5;
  o->cfg.threshold = NAN;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
    if (!strcmp(a, "--best-f1")) {
      o->best_f1 = 1;
      continue;
    }
    const char *v = cli_value(cmd, argc, argv, &i);
    if (!v) return 2;
    if (!strcmp(a, "--index")) o->index = v;
    else if (!strcmp(a, "--emb") || !strcmp(a, "--queries")) o->emb = v;
    else if (!strcmp(a, "--labels")) o->labels = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--calibration")) o->calibration = v;
    else if (!strcmp(a, "--out-scores")) o->out_scores = v;
    else if (!strcmp(a, "--json")) o->json = v;
    else if (!strcmp(a, "--rule")) {
      o->rule_set = 1;
      if (!strcmp(v, "nearest")) o->cfg.rule = DML_MATCH_NEAREST;
      else if (!strcmp(v, "majority")) o->cfg.rule = DML_MATCH_MAJORITY;
      else {
        fprintf(stderr, "dml %s: --rule is nearest or majority, got '%s'\n", cmd, v);
        return 2;
      }
    } else if (!strcmp(a, "--k")) {
      o->k_set = 1;
      if (!cli_int(cmd, a, v, 1, 10000, &o->cfg.k)) return 2;
    } else if (!strcmp(a, "--precision")) {
      if (!cli_double(cmd, a, v, &o->precision)) return 2;
    } else if (!strcmp(a, "--threshold")) {
      if (!cli_double(cmd, a, v, &o->cfg.threshold)) return 2;
    } else {
      fprintf(stderr, "dml %s: unknown option %s\n", cmd, a);
      return 2;
    }
  }
  return 0;
}

static void add_number(cJSON *o, const char *name, double v) {
  if (isfinite(v)) cJSON_AddNumberToObject(o, name, v);
  else cJSON_AddNullToObject(o, name);
}

static cJSON *report_json(const dml_match_report *r) {
  cJSON *o = cJSON_CreateObject();
  add_number(o, "threshold", r->threshold);
  cJSON_AddNumberToObject(o, "queries", (double)r->queries);
  cJSON_AddNumberToObject(o, "known", (double)r->known);
  cJSON_AddNumberToObject(o, "accepted", (double)r->accepted);
  cJSON_AddNumberToObject(o, "correct", (double)r->correct);
  add_number(o, "precision", r->precision);
  add_number(o, "recall", r->recall);
  add_number(o, "f1", r->f1);
  add_number(o, "accuracy_known", r->accuracy_known);
  add_number(o, "unknown_rejected", r->unknown_rejected);
  add_number(o, "auroc", r->auroc);
  return o;
}

static void print_report(const dml_match_report *r, int sim) {
  printf("  threshold          %s %.6g\n", sim ? ">=" : "<=", r->threshold);
  printf("  queries            %lld (%lld of classes in the gallery, %lld unknown)\n",
         (long long)r->queries, (long long)r->known, (long long)(r->queries - r->known));
  printf("  accepted           %lld, of which correct %lld\n", (long long)r->accepted,
         (long long)r->correct);
  printf("  precision          %.4f\n", r->precision);
  printf("  recall             %.4f  (= accuracy on known queries)\n", r->recall);
  printf("  F1                 %.4f\n", r->f1);
  if (r->queries > r->known) printf("  unknown rejected   %.4f\n", r->unknown_rejected);
  if (!isnan(r->auroc)) printf("  AUROC known/unknown %.4f\n", r->auroc);
}

static int write_json(const char *cmd, const char *path, cJSON *root) {
  char *text = cJSON_Print(root);
  int rc = 0;
  if (!text || cli_write_text(path, text) != DML_OK) rc = cli_fail(cmd, "writing JSON");
  free(text);
  return rc;
}

static int load_inputs(const char *cmd, const options *o, dml_gallery **g, cli_matrix *q,
                       cli_labels *y) {
  memset(y, 0, sizeof *y);
  *g = NULL;
  if (dml_gallery_load(g, o->index) != DML_OK) return cli_fail(cmd, "loading the gallery");
  if (cli_read_matrix(cmd, o->emb, q)) goto fail;
  if (q->d != dml_gallery_dim(*g)) {
    fprintf(stderr, "dml %s: %s has %lld dimensions; the gallery has %lld\n", cmd, o->emb,
            (long long)q->d, (long long)dml_gallery_dim(*g));
    dml_npy_free(&q->npy);
    goto fail;
  }
  if (o->labels) {
    if (cli_read_labels(cmd, o->labels, y)) {
      dml_npy_free(&q->npy);
      goto fail;
    }
    if (y->l.n != q->n) {
      fprintf(stderr, "dml %s: %s has %lld labels for %lld embeddings\n", cmd, o->labels,
              (long long)y->l.n, (long long)q->n);
      cli_labels_free(y);
      dml_npy_free(&q->npy);
      goto fail;
    }
  }
  return 0;
fail:
  dml_gallery_free(*g);
  *g = NULL;
  return 1;
}

int dml_cli_calibrate(int argc, char **argv) {
  const char *cmd = "calibrate";
  options o;
  int rc = parse(cmd, argc, argv, &o);
  if (rc < 0) return usage_calibrate(stdout, 0);
  if (rc) return rc;
  if (!o.index || !o.emb || !o.labels || !o.out || (!o.best_f1 && !(o.precision > 0))) {
    fprintf(stderr, "dml calibrate: --index, --emb, --labels, --out and one of --precision or "
                    "--best-f1 are required\n");
    return usage_calibrate(stderr, 2);
  }
  if (!o.best_f1 && o.precision > 1) {
    fprintf(stderr, "dml calibrate: --precision is a fraction in (0, 1], got %g\n", o.precision);
    return 2;
  }
  dml_gallery *g;
  cli_matrix q;
  cli_labels y;
  if (load_inputs(cmd, &o, &g, &q, &y)) return 1;
  dml_match_report r;
  int met = 0;
  dml_calibration_target target = o.best_f1 ? DML_CALIBRATE_BEST_F1 : DML_CALIBRATE_PRECISION;
  if (dml_gallery_calibrate(g, q.x, &y.l, q.n, &o.cfg, target, o.precision, &r, &met) != DML_OK) {
    rc = cli_fail(cmd, "calibration");
  } else {
    int sim = dml_distance_is_similarity(dml_gallery_distance(g));
    printf("calibrated on %lld queries against %s (%lld items, %s distance), rule %s", (long long)q.n,
           o.index, (long long)dml_gallery_size(g), cli_distance_name(dml_gallery_distance(g)),
           o.cfg.rule == DML_MATCH_NEAREST ? "nearest" : "majority");
    if (o.cfg.rule == DML_MATCH_MAJORITY) printf(" of %lld", (long long)o.cfg.k);
    printf(", target %s\n", o.best_f1 ? "best F1" : "precision");
    print_report(&r, sim);
    if (!met)
      printf("warning: %s; the threshold rejects every query\n",
             o.best_f1 ? "no query is matched correctly"
                       : "no threshold reaches the target precision");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "dml-calibration");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "distance", cli_distance_name(dml_gallery_distance(g)));
    cJSON_AddStringToObject(root, "rule", o.cfg.rule == DML_MATCH_NEAREST ? "nearest" : "majority");
    cJSON_AddNumberToObject(root, "k", (double)o.cfg.k);
    cJSON_AddStringToObject(root, "target", o.best_f1 ? "best_f1" : "precision");
    if (!o.best_f1) cJSON_AddNumberToObject(root, "min_precision", o.precision);
    cJSON_AddBoolToObject(root, "target_met", met);
    /* JSON has no infinity: a threshold that rejects everything is written as a string. */
    if (isfinite(r.threshold)) cJSON_AddNumberToObject(root, "threshold", r.threshold);
    else cJSON_AddStringToObject(root, "threshold", "reject_all");
    cJSON_AddItemToObject(root, "calibration_report", report_json(&r));
    rc = write_json(cmd, o.out, root);
    cJSON_Delete(root);
    if (!rc) printf("wrote %s\n", o.out);
  }
  cli_labels_free(&y);
  dml_npy_free(&q.npy);
  dml_gallery_free(g);
  return rc;
}

/* Reads rule, k and threshold from a calibration file; options given explicitly win. */
static int read_calibration(const char *path, options *o, int sim,
                            const char *gallery_distance) {
  char *text = NULL;
  size_t size;
  if (dml__read_file(path, "calibration", 1 << 20, &text, &size) != DML_OK)
    return cli_fail("classify", "calibration");
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
  const cJSON *rule = cJSON_GetObjectItemCaseSensitive(root, "rule");
  const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "k");
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "threshold");
  const cJSON *dist = cJSON_GetObjectItemCaseSensitive(root, "distance");
  int ok = cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "dml-calibration") &&
           cJSON_IsString(rule) &&
           (!strcmp(rule->valuestring, "nearest") || !strcmp(rule->valuestring, "majority")) &&
           cJSON_IsNumber(k) && k->valuedouble >= 1 && k->valuedouble <= 10000 &&
           cJSON_IsString(dist) &&
           (cJSON_IsNumber(t) || (cJSON_IsString(t) && !strcmp(t->valuestring, "reject_all")));
  if (ok && strcmp(dist->valuestring, gallery_distance) != 0) {
    fprintf(stderr,
            "dml classify: '%s' was calibrated for %s distances; this gallery uses %s: "
            "calibrate again on this gallery\n",
            path, dist->valuestring, gallery_distance);
    cJSON_Delete(root);
    return 1;
  }
  if (ok) {
    if (!o->rule_set) o->cfg.rule = strcmp(rule->valuestring, "majority") ? DML_MATCH_NEAREST
                                                                          : DML_MATCH_MAJORITY;
    if (!o->k_set) o->cfg.k = (int64_t)k->valuedouble;
    if (isnan(o->cfg.threshold))
      o->cfg.threshold = cJSON_IsNumber(t) ? t->valuedouble : (sim ? HUGE_VAL : -HUGE_VAL);
  }
  cJSON_Delete(root);
  if (!ok) {
    fprintf(stderr, "dml classify: '%s' is not a calibration file written by dml calibrate\n",
            path);
    return 1;
  }
  return 0;
}

int dml_cli_classify(int argc, char **argv) {
  const char *cmd = "classify";
  options o;
  int rc = parse(cmd, argc, argv, &o);
  if (rc < 0) return usage_classify(stdout, 0);
  if (rc) return rc;
  if (!o.index || !o.emb || (!o.calibration && isnan(o.cfg.threshold))) {
    fprintf(stderr, "dml classify: --index, --queries and --calibration (or --threshold) are "
                    "required\n");
    return usage_classify(stderr, 2);
  }
  dml_gallery *g;
  cli_matrix q;
  cli_labels y;
  if (load_inputs(cmd, &o, &g, &q, &y)) return 1;
  int sim = dml_distance_is_similarity(dml_gallery_distance(g));
  dml_match *m = NULL;
  int32_t *pred = NULL;
  float *score = NULL;
  if (o.calibration &&
      read_calibration(o.calibration, &o, sim, cli_distance_name(dml_gallery_distance(g)))) {
    rc = 1;
    goto done;
  }
  m = malloc((size_t)(q.n + 1) * sizeof *m);
  pred = malloc((size_t)(q.n + 1) * sizeof *pred);
  score = malloc((size_t)(q.n + 1) * sizeof *score);
  if (!m || !pred || !score) {
    fprintf(stderr, "dml classify: out of memory\n");
    rc = 1;
    goto done;
  }
  if (dml_gallery_match(g, q.x, q.n, &o.cfg, m) != DML_OK) {
    rc = cli_fail(cmd, "matching");
    goto done;
  }
  int64_t unknown = 0;
  for (int64_t i = 0; i < q.n; i++) {
    pred[i] = m[i].label;
    score[i] = m[i].score;
    unknown += m[i].label < 0;
  }
  printf("%lld queries: %lld matched, %lld unknown (threshold %s %.6g, rule %s)\n",
         (long long)q.n, (long long)(q.n - unknown), (long long)unknown, sim ? ">=" : "<=",
         o.cfg.threshold, o.cfg.rule == DML_MATCH_NEAREST ? "nearest" : "majority");
  int64_t shape[1] = {q.n};
  if (o.out && dml_npy_write(o.out, DML_NPY_I32, 1, shape, pred) != DML_OK) {
    rc = cli_fail(cmd, "writing predictions");
    goto done;
  }
  if (o.out_scores && dml_npy_write(o.out_scores, DML_NPY_F32, 1, shape, score) != DML_OK) {
    rc = cli_fail(cmd, "writing scores");
    goto done;
  }
  if (!o.out) {
    int64_t show = q.n < 10 ? q.n : 10;
    for (int64_t i = 0; i < show; i++)
      printf("  query %lld: %s%d (item %lld, %.4g)\n", (long long)i,
             pred[i] < 0 ? "unknown, nearest " : "", pred[i] < 0 ? m[i].raw_label : pred[i],
             (long long)m[i].item, (double)m[i].score);
  }
  if (o.labels) {
    dml_match_report r;
    if (dml_gallery_evaluate_matching(g, q.x, &y.l, q.n, &o.cfg, &r) != DML_OK) {
      rc = cli_fail(cmd, "evaluation");
      goto done;
    }
    printf("open-set report against %s:\n", o.labels);
    print_report(&r, sim);
    if (o.json) {
      cJSON *root = report_json(&r);
      rc = write_json(cmd, o.json, root);
      cJSON_Delete(root);
    }
  }
done:
  free(m);
  free(pred);
  free(score);
  cli_labels_free(&y);
  dml_npy_free(&q.npy);
  dml_gallery_free(g);
  return rc;
}
