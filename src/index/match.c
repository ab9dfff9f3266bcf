/* Matching with rejection (include/dml/match.h): the nearest-item or majority-vote label of each
 * query, the threshold sweep that calibrates rejection for a target precision or the best F1,
 * and the open-set report (accuracy on known queries, AUROC of known versus unknown). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/match.h"
#include "eval/eval_internal.h"
#include "index/gallery_internal.h"

static int accepted(int sim, double threshold, float score) {
  if (isnan(threshold)) return 1;
  return sim ? score >= threshold : score <= threshold;
}

/* Votes of one query's k neighbours. */
typedef struct {
  int32_t label;
  int64_t votes;
  int64_t first; /* rank of its nearest voter */
} tally;

static int check_config(const dml_match_config *cfg) {
  return cfg && (cfg->rule == DML_MATCH_NEAREST || cfg->rule == DML_MATCH_MAJORITY) &&
         (cfg->rule == DML_MATCH_NEAREST || cfg->k >= 1);
}

dml_status dml_gallery_match(const dml_gallery *g, const float *queries, int64_t nq,
                             const dml_match_config *cfg, dml_match *out) {
  if (!g || nq < 0 || (nq > 0 && (!queries || !out)))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_match: bad arguments");
  if (!check_config(cfg))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "matching needs a rule (nearest or majority) and k >= 1 for majority");
  if (nq == 0) return DML_OK;
  int64_t k = cfg->rule == DML_MATCH_NEAREST ? 1 : cfg->k;
  int sim = dml_distance_is_similarity(dml_gallery_distance(g));
  int64_t *ids = malloc((size_t)nq * (size_t)k * sizeof *ids);
  float *dists = malloc((size_t)nq * (size_t)k * sizeof *dists);
  if (!ids || !dists) {
    free(ids);
    free(dists);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory matching %lld queries", (long long)nq);
  }
  dml_status st = dml_gallery_search(g, queries, nq, k, ids, dists);
  if (st != DML_OK) {
    free(ids);
    free(dists);
    return st;
  }
  int failed = 0;
#pragma omp parallel reduction(| : failed)
  {
    tally *t = NULL;
    int64_t cap = 0;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < nq; q++) {
      dml_match *m = &out[q];
      m->label = m->raw_label = -1;
      m->item = -1;
      m->score = sim ? -INFINITY : INFINITY;
      int64_t used = 0;
      int ok = 1;
      for (int64_t j = 0; j < k && ok; j++) {
        int64_t id = ids[q * k + j];
        if (id < 0) break;
        const int32_t *lab;
        int64_t c;
        if (dml_gallery_labels(g, id, &lab, &c) != DML_OK) continue;
        for (int64_t a = 0; a < c; a++) {
          int64_t u = 0;
          while (u < used && t[u].label != lab[a]) u++;
          if (u == used) {
            if (used == cap) {
              int64_t nc = cap ? 2 * cap : 16;
              tally *nt = realloc(t, (size_t)nc * sizeof *nt);
              if (!nt) {
                ok = 0;
                failed = 1;
                break;
              }
              t = nt;
              cap = nc;
            }
            t[used].label = lab[a];
            t[used].votes = 0;
            t[used].first = j;
            used++;
          }
          t[u].votes++;
        }
      }
      /* Winner: most votes, then nearest first voter, then smallest label. */
      int64_t best = -1;
      for (int64_t u = 0; u < used; u++)
        if (best < 0 || t[u].votes > t[best].votes ||
            (t[u].votes == t[best].votes &&
             (t[u].first < t[best].first ||
              (t[u].first == t[best].first && t[u].label < t[best].label))))
          best = u;
      if (best >= 0) {
        m->raw_label = t[best].label;
        m->item = ids[q * k + t[best].first];
        m->score = dists[q * k + t[best].first];
        m->label = accepted(sim, cfg->threshold, m->score) ? m->raw_label : -1;
      }
    }
    free(t);
  }
  free(ids);
  free(dists);
  if (failed) return dml__error(DML_ERR_NO_MEMORY, "out of memory tallying votes");
  return DML_OK;
}

/* ---- per-query outcomes ------------------------------------------------------------------- */

typedef struct {
  float key;   /* smaller = better match: distance, or minus similarity */
  int matched; /* has a candidate label at all */
  int correct; /* candidate label is one of the query's labels */
  int known;   /* one of the query's labels is in the gallery */
} outcome;

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static int cmp_outcome(const void *a, const void *b) {
  float x = ((const outcome *)a)->key, y = ((const outcome *)b)->key;
  return (x > y) - (x < y);
}

/* Matches the queries without a threshold and records, for each, its key, whether the
 * candidate is correct and whether the query is known. *o is malloc'ed. */
static dml_status outcomes(const dml_gallery *g, const float *queries, const dml_labels *labels,
                           int64_t nq, const dml_match_config *cfg, outcome **o) {
  *o = NULL;
  if (!g || !labels || nq < 1 || !queries)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "calibration needs a gallery and at least one labelled query");
  DML_TRY(dml__eval_labels_check(labels, nq, 0, "calibration", "query"));
  if (!check_config(cfg))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "bad matching configuration (rule, k)");
  dml_match_config open = *cfg;
  open.threshold = NAN;
  dml_match *m = malloc((size_t)nq * sizeof *m);
  outcome *r = malloc((size_t)nq * sizeof *r);
  /* The gallery's distinct labels, to tell known queries from unknown ones. */
  const int32_t *glab;
  int64_t nglab;
  dml__gallery_all_labels(g, &glab, &nglab);
  int32_t *known = malloc((size_t)(nglab > 0 ? nglab : 1) * sizeof *known);
  if (!m || !r || !known) {
    free(m);
    free(r);
    free(known);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory calibrating %lld queries", (long long)nq);
  }
  if (nglab) memcpy(known, glab, (size_t)nglab * sizeof *known);
  qsort(known, (size_t)nglab, sizeof *known, cmp_i32);
  dml_status st = dml_gallery_match(g, queries, nq, &open, m);
  int sim = dml_distance_is_similarity(dml_gallery_distance(g));
  for (int64_t q = 0; st == DML_OK && q < nq; q++) {
    int64_t b = labels->offsets ? labels->offsets[q] : q;
    int64_t e = labels->offsets ? labels->offsets[q + 1] : q + 1;
    r[q].matched = m[q].raw_label >= 0;
    r[q].key = r[q].matched ? (sim ? -m[q].score : m[q].score) : INFINITY;
    r[q].correct = 0;
    r[q].known = 0;
    for (int64_t a = b; a < e; a++) {
      int32_t y = labels->values[a];
      if (y == m[q].raw_label) r[q].correct = 1;
      if (bsearch(&y, known, (size_t)nglab, sizeof *known, cmp_i32)) r[q].known = 1;
    }
  }
  free(m);
  free(known);
  if (st != DML_OK) {
    free(r);
    return st;
  }
  *o = r;
  return DML_OK;
}

/* Fills the report for "accept the first `acc` outcomes of the sorted list". */
static void fill(dml_match_report *out, const outcome *o, int64_t nq, int64_t acc, int64_t known,
                 int64_t unknown_accepted) {
  int64_t tp = 0;
  for (int64_t i = 0; i < acc; i++) tp += o[i].correct;
  int64_t unknown = nq - known;
  out->queries = nq;
  out->known = known;
  out->accepted = acc;
  out->correct = tp;
  out->precision = acc ? (double)tp / (double)acc : 0.0;
  out->recall = known ? (double)tp / (double)known : 0.0;
  out->accuracy_known = out->recall;
  out->f1 = acc + known ? 2.0 * (double)tp / (double)(acc + known) : 0.0;
  out->unknown_rejected = unknown ? (double)(unknown - unknown_accepted) / (double)unknown : NAN;
}

/* AUROC of the match score, known queries positive (a better match scores higher). */
static void known_auroc(dml_match_report *out, const outcome *o, int64_t nq) {
  out->auroc = NAN;
  int64_t known = 0;
  for (int64_t i = 0; i < nq; i++) known += o[i].known;
  if (known == 0 || known == nq) return;
  float *s = malloc((size_t)nq * sizeof *s);
  uint8_t *pos = malloc((size_t)nq);
  if (s && pos) {
    for (int64_t i = 0; i < nq; i++) {
      /* Unmatched queries rank below every match. */
      s[i] = o[i].matched ? -o[i].key : -FLT_MAX;
      pos[i] = (uint8_t)o[i].known;
    }
    double auc;
    if (dml_roc_auc(s, pos, nq, &auc) == DML_OK) out->auroc = auc;
  }
  free(s);
  free(pos);
}

dml_status dml_gallery_calibrate(const dml_gallery *g, const float *queries,
                                 const dml_labels *labels, int64_t nq,
                                 const dml_match_config *cfg, dml_calibration_target target,
                                 double min_precision, dml_match_report *out, int *target_met) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_calibrate: NULL report");
  if (target_met) *target_met = 0;
  if (target != DML_CALIBRATE_PRECISION && target != DML_CALIBRATE_BEST_F1)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "unknown calibration target %d", (int)target);
  if (target == DML_CALIBRATE_PRECISION && !(min_precision > 0 && min_precision <= 1))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "target precision must be in (0, 1], got %g", min_precision);
  outcome *o;
  DML_TRY(outcomes(g, queries, labels, nq, cfg, &o));
  memset(out, 0, sizeof *out);
  known_auroc(out, o, nq);
  qsort(o, (size_t)nq, sizeof *o, cmp_outcome);
  int64_t known = 0, matched = 0;
  for (int64_t i = 0; i < nq; i++) {
    known += o[i].known;
    matched += o[i].matched;
  }
  /* Sweep the thresholds between distinct keys; accepting a prefix [0, acc). */
  int64_t best_acc = 0, tp = 0, unk = 0, best_unk = 0;
  double best_f1 = 0;
  int met = 0;
  for (int64_t i = 0; i < matched;) {
    int64_t j = i;
    while (j < matched && o[j].key == o[i].key) {
      tp += o[j].correct;
      unk += !o[j].known;
      j++;
    }
    double prec = (double)tp / (double)j;
    if (target == DML_CALIBRATE_PRECISION) {
      if (prec >= min_precision) {
        best_acc = j;
        best_unk = unk;
        met = 1;
      }
    } else {
      double f1 = 2.0 * (double)tp / (double)(j + known);
      if (f1 > best_f1) {
        best_f1 = f1;
        best_acc = j;
        best_unk = unk;
      }
    }
    i = j;
  }
  int sim = dml_distance_is_similarity(dml_gallery_distance(g));
  if (best_acc > 0) {
    float key = o[best_acc - 1].key;
    out->threshold = sim ? -(double)key : (double)key;
  } else {
    /* Rejects every match. */
    out->threshold = sim ? HUGE_VAL : -HUGE_VAL;
  }
  fill(out, o, nq, best_acc, known, best_unk);
  if (target_met) *target_met = target == DML_CALIBRATE_BEST_F1 ? best_acc > 0 : met;
  free(o);
  return DML_OK;
}

dml_status dml_gallery_evaluate_matching(const dml_gallery *g, const float *queries,
                                         const dml_labels *labels, int64_t nq,
                                         const dml_match_config *cfg, dml_match_report *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_evaluate_matching: NULL report");
  outcome *o;
  DML_TRY(outcomes(g, queries, labels, nq, cfg, &o));
  memset(out, 0, sizeof *out);
  known_auroc(out, o, nq);
  int sim = dml_distance_is_similarity(dml_gallery_distance(g));
  /* Accepted outcomes first, so fill() counts them as the prefix. */
  int64_t acc = 0, known = 0, unk = 0;
  for (int64_t i = 0; i < nq; i++) {
    known += o[i].known;
    float score = sim ? -o[i].key : o[i].key;
    if (o[i].matched && accepted(sim, cfg->threshold, score)) {
      unk += !o[i].known;
      outcome t = o[acc];
      o[acc] = o[i];
      o[i] = t;
      acc++;
    }
  }
  fill(out, o, nq, acc, known, unk);
  out->threshold = cfg->threshold;
  free(o);
  return DML_OK;
}
