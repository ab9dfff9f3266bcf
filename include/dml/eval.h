/* Quality of an embedding: retrieval, clustering, classification from neighbours, ROC AUC.
 * The caller owns every array; nothing is retained unless a function says it allocates.
 * Definitions follow ../docs/eval.md (METHODS §5): retrieval as in Musgrave et al., "A Metric
 * Learning Reality Check" (ECCV 2020); NMI and AMI as scikit-learn defines them; AUC by
 * Mann-Whitney with ties counted 1/2. Ties in distance rank the lower reference index first. */
#ifndef DML_EVAL_H
#define DML_EVAL_H

#include <stdint.h>

#include "dml/distance.h"
#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Labels, one or several per item ------------------------------------------------------
 * offsets == NULL: item i has the single label values[i].
 * offsets != NULL: item i has the labels values[offsets[i] .. offsets[i+1]-1] (offsets has
 * n + 1 entries, offsets[0] = 0, non-decreasing; an item may have no label). Labels are any
 * non-negative int32; a label repeated within one item counts once. Two items are relevant to each other when they share at least one
 * label; graded relevance (nDCG) is the Jaccard similarity of their label sets. */
typedef struct dml_labels {
  int64_t n;
  const int32_t *values;
  const int64_t *offsets;
} dml_labels;

/* ---- Retrieval --------------------------------------------------------------------------- */
typedef struct dml_retrieval_metrics {
  double precision_at_1; /* P@1 */
  double r_precision;    /* (relevant in top R) / R */
  double map_at_r;       /* (1/R) sum_{k<=R} P@k rel_k */
  int64_t queries;       /* queries evaluated (R > 0) */
} dml_retrieval_metrics;

/* Self-retrieval, single label (any int32, negative allowed). emb: n x d row-major; labels: n.
 * NaN/Inf is an error. The same computation as dml_eval_retrieval_report with k = 1. */
dml_status dml_eval_retrieval(const float *emb, const int32_t *labels, int64_t n, int64_t d,
                              dml_distance dist, dml_retrieval_metrics *out);

typedef struct dml_retrieval_report {
  int64_t k;             /* the K of P@K, Recall@K and nDCG@K */
  int64_t queries;       /* queries evaluated (at least one relevant reference item) */
  int64_t skipped;       /* queries with no relevant reference item */
  double precision_at_1; /* rel_1 */
  double precision_at_k; /* (relevant in top K) / K */
  double r_precision;    /* (relevant in top R) / R */
  double map_at_r;       /* (1/R) sum_{k<=R} P@k rel_k */
  double map;            /* (1/R) sum_k P@k rel_k over the full ranking */
  double recall_at_k;    /* 1 if any relevant item in the top K (retrieval-paper usage) */
  double mrr;            /* 1 / rank of the first relevant item */
  double ndcg_at_k;      /* graded relevance = Jaccard of label sets (0/1 for single labels) */
} dml_retrieval_report;

/* Query set against a reference set.
 *   queries [nq, d] with qlabels (qlabels->n == nq);
 *   reference [nr, d] with rlabels, or reference == NULL: the queries are the reference set
 *     and each query is excluded from its own ranking (rlabels ignored).
 *   k >= 1; when k exceeds the ranked items, the missing ranks count as not relevant.
 *   overall: averages over evaluated queries; a query with no relevant reference item (or no
 *     label) is counted in `skipped` and left out of the averages.
 *   per_class (may be NULL): array of num_classes reports; a query counts towards each of its
 *     labels < num_classes (skipped queries count in its `skipped`). Entries of classes with no
 *     evaluated query have queries = 0 and zero metrics.
 * Ties in distance rank the lower reference index first. NaN/Inf is an error naming the row.
 * Memory is bounded by blocks of queries (never nq x nr at once); multithreaded, with results
 * independent of the thread count. */
dml_status dml_eval_retrieval_report(const float *queries, const dml_labels *qlabels, int64_t nq,
                                     const float *reference, const dml_labels *rlabels,
                                     int64_t nr, int64_t d, dml_distance dist, int64_t k,
                                     dml_retrieval_report *overall,
                                     dml_retrieval_report *per_class, int32_t num_classes);

/* ---- Clustering -------------------------------------------------------------------------- */
/* Lloyd's k-means with k-means++ initialisation (squared Euclidean, distances by sgemm).
 * Deterministic for a given seed whatever the thread count. n >= k >= 1, max_iter >= 0.
 *   assign [n] (may be NULL), centroids [k, d] (may be NULL), inertia (may be NULL): the sum
 *   of squared distances to the assigned centroid. Stops after max_iter iterations or when no
 *   assignment changes; the assignment returned is always that of the nearest returned
 *   centroid (ties to the lower index). An empty cluster is re-seeded with the point farthest
 *   from its centroid. */
dml_status dml_kmeans(const float *x, int64_t n, int64_t d, int64_t k, int max_iter,
                      uint64_t seed, int32_t *assign, float *centroids, double *inertia);

/* Normalised mutual information of two labellings, with both normalisers: the arithmetic mean
 * (H(a) + H(b)) / 2 (scikit-learn's default) and the geometric mean sqrt(H(a) H(b)) (METHODS
 * §5). Natural log; as scikit-learn, two single-cluster labellings give 1. Labels are any int32
 * values. Either output may be NULL. */
dml_status dml_nmi(const int32_t *a, const int32_t *b, int64_t n, double *nmi_arithmetic,
                   double *nmi_sqrt);
/* Adjusted mutual information (scikit-learn's adjusted_mutual_info_score, arithmetic mean). */
dml_status dml_ami(const int32_t *a, const int32_t *b, int64_t n, double *ami);

typedef struct dml_clustering_report {
  int64_t clusters; /* k used: the number of distinct labels */
  double nmi;       /* sqrt normaliser, as METHODS §5 */
  double nmi_arithmetic;
  double ami;
  double inertia;
} dml_clustering_report;

/* k-means (at most 300 iterations) with k = number of distinct labels on the embeddings, then
 * NMI and AMI of the clusters against the labels (single label per item, any int32). n >= 1. */
dml_status dml_eval_clustering(const float *emb, const int32_t *labels, int64_t n, int64_t d,
                               uint64_t seed, dml_clustering_report *out);

/* ---- Classification from neighbours ------------------------------------------------------ */
typedef enum dml_vote {
  DML_VOTE_MAJORITY, /* one vote per neighbour; ties go to the class of the nearer neighbour */
  DML_VOTE_DISTANCE  /* votes weighted 1/(distance + 1e-12); for similarities weight = sim
                        shifted to be positive: (1 + sim) for cosine, exp(sim - max) for dot */
} dml_vote;

/* k-nearest-neighbour classification of queries against labelled reference embeddings.
 *   ref [nr, d] (nr >= 1), ref_labels [nr] in 0..num_classes-1; queries [nq, d]. k > nr uses
 *     every reference item. Ties between classes go to the class of the nearer neighbour; if
 *     every weight is zero (cosine -1) each neighbour counts one vote.
 *   pred [nq]: the predicted class.
 *   scores [nq, num_classes] (may be NULL): each class's share of the vote (rows sum to 1),
 *     usable as class scores for ROC AUC.
 * Leave-one-out: when queries == ref (the same pointer) and nq == nr, each query's own row is
 * left out of its neighbours. */
dml_status dml_knn_classify(const float *ref, const int32_t *ref_labels, int64_t nr,
                            const float *queries, int64_t nq, int64_t d, dml_distance dist,
                            int64_t k, dml_vote vote, int32_t num_classes, int32_t *pred,
                            float *scores);

/* Multi-label kNN scores: scores [nq, num_labels], scores[i, l] = the share of query i's k
 * nearest reference items that carry label l (labels >= num_labels are ignored). The scores
 * feed dml_multilabel_auc. Leave-one-out as in dml_knn_classify when queries == ref. */
dml_status dml_knn_label_scores(const float *ref, const dml_labels *ref_labels, int64_t nr,
                                const float *queries, int64_t nq, int64_t d, dml_distance dist,
                                int64_t k, int32_t num_labels, float *scores);

typedef struct dml_classification_report {
  int32_t num_classes;
  int64_t n;
  double accuracy;
  double macro_f1;
  double weighted_f1; /* weighted by support */
  /* arrays of num_classes, allocated by dml_classification_report_compute and freed by
   * dml_classification_report_free; per class one-vs-rest: */
  double *precision;   /* TP / (TP + FP); 0 when nothing was predicted (as scikit-learn) */
  double *recall;      /* = sensitivity, TP / (TP + FN) */
  double *f1;
  double *specificity; /* TN / (TN + FP) */
  int64_t *support;    /* true items of the class */
  int64_t *confusion;  /* [num_classes, num_classes], row = true class, column = predicted */
} dml_classification_report;

/* truth, pred: n labels in 0..num_classes-1 (anything else is an error). Ratios with a zero
 * denominator are 0 (scikit-learn's zero_division=0). macro_f1 averages the classes present in
 * truth or pred (as f1_score without `labels`). n = 0 gives an all-zero report. */
dml_status dml_classification_report_compute(const int32_t *truth, const int32_t *pred,
                                             int64_t n, int32_t num_classes,
                                             dml_classification_report *out);
void dml_classification_report_free(dml_classification_report *r);

/* ---- ROC AUC ----------------------------------------------------------------------------- */
/* Mann-Whitney AUC: probability a positive scores above a negative, ties counted 1/2.
 * Needs at least one positive and one negative (otherwise DML_ERR_INVALID_ARGUMENT).
 * O(n log n). */
dml_status dml_roc_auc(const float *scores, const uint8_t *positive, int64_t n, double *auc);

/* Per-label AUC for multi-label scores: scores and targets are [n, num_labels] row-major
 * (targets 0/1). per_label [num_labels] (may be NULL) gets NaN for labels without both a
 * positive and a negative; mean (may be NULL) is the unweighted mean over the other labels (NaN
 * when there are none); labels_used (may be NULL) their number. Targets other than 0/1 and NaN
 * scores are errors. */
dml_status dml_multilabel_auc(const float *scores, const uint8_t *targets, int64_t n,
                              int32_t num_labels, double *per_label, double *mean,
                              int32_t *labels_used);

#ifdef __cplusplus
}
#endif
#endif
