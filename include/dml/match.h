/* Matching queries against a gallery, with rejection: each query gets the label of its nearest
 * gallery item, or of the majority of its k nearest, and "unknown" (-1) when that match is
 * farther than a distance threshold. The threshold is calibrated on labelled held-out queries
 * for a target precision or for the best F1. Open-set evaluation reports how well the match
 * distance separates queries of classes the gallery knows from queries of classes it does not.
 *
 * Conventions. A match's score is a distance (Euclidean, squared Euclidean: accepted when
 * <= threshold) or a similarity (cosine, dot: accepted when >= threshold), as the gallery's
 * distance says. A query is correct when the matched label is one of its labels. A query is
 * "known" when at least one of its labels occurs in the gallery. */
#ifndef DML_MATCH_H
#define DML_MATCH_H

#include <stdint.h>

#include "dml/eval.h"
#include "dml/index.h"
#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dml_match_rule {
  DML_MATCH_NEAREST, /* the label of the nearest item (its smallest label if it has several) */
  DML_MATCH_MAJORITY /* the label with most votes among the k nearest (an item votes for each
                        of its labels); a tie goes to the label whose nearest voter is nearer */
} dml_match_rule;

typedef struct dml_match_config {
  dml_match_rule rule;
  int64_t k;        /* neighbours that vote (DML_MATCH_NEAREST uses 1) */
  double threshold; /* NAN: accept every match */
} dml_match_config;

typedef struct dml_match {
  int32_t label;  /* matched label; -1 when rejected or when no neighbour has a label */
  int64_t item;   /* id of the nearest item carrying the matched label (-1 when none) */
  float score;    /* its distance or similarity: the value compared with the threshold */
  int32_t raw_label; /* the label before the threshold was applied (-1 when none) */
} dml_match;

/* Matches nq queries [nq, d]; out [nq]. */
dml_status dml_gallery_match(const dml_gallery *g, const float *queries, int64_t nq,
                             const dml_match_config *cfg, dml_match *out);

typedef enum dml_calibration_target {
  DML_CALIBRATE_PRECISION, /* the loosest threshold whose precision >= min_precision */
  DML_CALIBRATE_BEST_F1    /* the threshold with the highest F1 (the tighter one on a tie) */
} dml_calibration_target;

/* Quality of matching at one threshold. Over the queries: TP = accepted and correct,
 * accepted = matches within the threshold; precision = TP / accepted, recall = TP / known,
 * F1 = their harmonic mean; accuracy_known = TP / known; unknown_rejected = share of unknown
 * queries rejected. auroc: ROC AUC of the match score separating known (positive) from
 * unknown queries, NaN unless both occur. */
typedef struct dml_match_report {
  double threshold;
  int64_t queries, known, accepted, correct;
  double precision, recall, f1, accuracy_known, unknown_rejected, auroc;
} dml_match_report;

/* Chooses the threshold on labelled queries (labels->n == nq). For DML_CALIBRATE_PRECISION,
 * when no threshold reaches min_precision, the threshold rejects everything and
 * *target_met = 0 (target_met may be NULL). cfg->threshold is ignored; the report's threshold
 * is the result. */
dml_status dml_gallery_calibrate(const dml_gallery *g, const float *queries,
                                 const dml_labels *labels, int64_t nq,
                                 const dml_match_config *cfg, dml_calibration_target target,
                                 double min_precision, dml_match_report *out, int *target_met);

/* Evaluates matching at cfg->threshold on labelled queries (open-set report). */
dml_status dml_gallery_evaluate_matching(const dml_gallery *g, const float *queries,
                                         const dml_labels *labels, int64_t nq,
                                         const dml_match_config *cfg, dml_match_report *out);

#ifdef __cplusplus
}
#endif
#endif
