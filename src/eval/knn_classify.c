/* Classification from neighbours: the k nearest reference items of each query (exact search,
 * dml_knn_search) vote for their classes, one vote each or weighted by closeness. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/eval.h"
#include "eval/eval_internal.h"
#include "dml/index.h"

#define QCHUNK 4096 /* queries searched at a time: bounds the neighbour lists */

/* Vote weight of a neighbour at distance (or similarity) v; best = the nearest's value. */
static double weight(dml_distance dist, float v, float best) {
  switch (dist) {
    case DML_DIST_COSINE: return 1.0 + (double)v;
    case DML_DIST_DOT: return exp((double)v - (double)best);
    default: return 1.0 / ((double)v + 1e-12);
  }
}

/* Leave-one-out: removes row `self` from one query's ks neighbours (or the last neighbour, if
 * duplicates of lower index crowded it out of the list), keeping the order. */
static void drop_self(int64_t *id, float *v, int64_t ks, int64_t self) {
  int64_t at = ks - 1;
  for (int64_t j = 0; j < ks; j++)
    if (id[j] == self) {
      at = j;
      break;
    }
  for (int64_t j = at; j + 1 < ks; j++) {
    id[j] = id[j + 1];
    v[j] = v[j + 1];
  }
}

/* The neighbour lists of queries taken QCHUNK at a time, shared by the kNN functions.
 * Leave-one-out when the queries are the reference set itself (the same pointer): one more
 * neighbour is searched and each query's own row dropped, so that row i's first kk entries
 * are the neighbours that vote. */
typedef struct {
  const float *ref, *queries;
  int64_t nr, nq, d;
  dml_distance dist;
  int loo;
  int64_t kk, ks, chunk; /* voting neighbours, searched neighbours, queries per chunk */
  int64_t *ids;          /* [chunk, ks] */
  float *dv;
} knn_chunks;

static dml_status chunks_open(knn_chunks *c, const float *ref, int64_t nr, const float *queries,
                              int64_t nq, int64_t d, dml_distance dist, int64_t k,
                              const char *fn) {
  *c = (knn_chunks){.ref = ref, .queries = queries, .nr = nr, .nq = nq, .d = d, .dist = dist};
  c->loo = queries == ref && nq == nr;
  if (c->loo && nr < 2)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: leave-one-out needs at least 2 items", fn);
  c->kk = k < nr - c->loo ? k : nr - c->loo;
  c->ks = c->kk + c->loo;
  c->chunk = nq < QCHUNK ? nq : QCHUNK;
  c->ids = malloc((size_t)(c->chunk * c->ks) * sizeof *c->ids);
  c->dv = malloc((size_t)(c->chunk * c->ks) * sizeof *c->dv);
  if (!c->ids || !c->dv) {
    free(c->ids);
    free(c->dv);
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld x %lld neighbours", fn,
                      (long long)c->chunk, (long long)c->ks);
  }
  return DML_OK;
}

/* Neighbours of queries [c0, c0 + nc): row i of c->ids / c->dv, stride c->ks. */
static dml_status chunks_search(knn_chunks *c, int64_t c0, int64_t nc) {
  DML_TRY(dml_knn_search(c->ref, c->nr, c->queries + c0 * c->d, nc, c->d, c->dist, c->ks,
                         c->ids, c->dv));
  if (c->loo)
    for (int64_t i = 0; i < nc; i++) drop_self(c->ids + i * c->ks, c->dv + i * c->ks, c->ks, c0 + i);
  return DML_OK;
}

static void chunks_close(knn_chunks *c) {
  free(c->ids);
  free(c->dv);
}

dml_status dml_knn_classify(const float *ref, const int32_t *ref_labels, int64_t nr,
                            const float *queries, int64_t nq, int64_t d, dml_distance dist,
                            int64_t k, dml_vote vote, int32_t num_classes, int32_t *pred,
                            float *scores) {
  static const char *fn = "dml_knn_classify";
  if ((!ref && nr > 0) || (!ref_labels && nr > 0) || (!queries && nq > 0) || (!pred && nq > 0))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: NULL reference, labels, queries or pred",
                      fn);
  if (nr < 1 || nq < 0 || d < 1 || k < 1 || num_classes < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: need nr >= 1, nq >= 0, d >= 1, k >= 1 and num_classes >= 1 (got nr "
                      "%lld, nq %lld, d %lld, k %lld, num_classes %d)",
                      fn, (long long)nr, (long long)nq, (long long)d, (long long)k, num_classes);
  if (vote != DML_VOTE_MAJORITY && vote != DML_VOTE_DISTANCE)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: unknown vote %d", fn, (int)vote);
  for (int64_t j = 0; j < nr; j++)
    if (ref_labels[j] < 0 || ref_labels[j] >= num_classes)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: reference label %lld is %d, outside 0..%d (num_classes %d)", fn,
                        (long long)j, ref_labels[j], num_classes - 1, num_classes);
  if (nq == 0) return DML_OK;
  knn_chunks nb;
  DML_TRY(chunks_open(&nb, ref, nr, queries, nq, d, dist, k, fn));
  const int64_t kk = nb.kk, ks = nb.ks;
  dml_status status = DML_OK;
  for (int64_t c0 = 0; c0 < nq && status == DML_OK; c0 += nb.chunk) {
    const int64_t nc = nq - c0 < nb.chunk ? nq - c0 : nb.chunk;
    status = chunks_search(&nb, c0, nc);
    if (status != DML_OK) break;
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
      double *tally = malloc((size_t)num_classes * sizeof *tally);
      int64_t *first = malloc((size_t)num_classes * sizeof *first);
      if (!tally || !first) failed = 1;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < nc; i++) {
        if (!tally || !first) continue;
        const int64_t *id = nb.ids + i * ks;
        const float *v = nb.dv + i * ks;
        for (int32_t c = 0; c < num_classes; c++) {
          tally[c] = 0.0;
          first[c] = kk;
        }
        double total = 0.0;
        for (int64_t j = 0; j < kk; j++) {
          const int32_t c = ref_labels[id[j]];
          const double w = vote == DML_VOTE_MAJORITY ? 1.0 : weight(dist, v[j], v[0]);
          tally[c] += w;
          total += w;
          if (first[c] == kk) first[c] = j;
        }
        if (!(total > 0.0)) { /* every weight zero (cosine -1): one vote each */
          for (int32_t c = 0; c < num_classes; c++) tally[c] = 0.0;
          for (int64_t j = 0; j < kk; j++) tally[ref_labels[id[j]]] += 1.0;
          total = (double)kk;
        }
        int32_t best = ref_labels[id[0]];
        for (int32_t c = 0; c < num_classes; c++)
          if (tally[c] > tally[best] || (tally[c] == tally[best] && first[c] < first[best]))
            best = c;
        pred[c0 + i] = best;
        if (scores)
          for (int32_t c = 0; c < num_classes; c++)
            scores[(c0 + i) * num_classes + c] = (float)(tally[c] / total);
      }
      free(tally);
      free(first);
    }
    if (failed) status = dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", fn);
  }
  chunks_close(&nb);
  return status;
}

dml_status dml_knn_label_scores(const float *ref, const dml_labels *ref_labels, int64_t nr,
                                const float *queries, int64_t nq, int64_t d, dml_distance dist,
                                int64_t k, int32_t num_labels, float *scores) {
  static const char *fn = "dml_knn_label_scores";
  if (!ref || !queries || !scores || nr < 1 || nq < 0 || d < 1 || k < 1 || num_labels < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: need reference and query embeddings, scores, nr >= 1, d >= 1, k >= 1 "
                      "and num_labels >= 1",
                      fn);
  DML_TRY(dml__eval_labels_check(ref_labels, nr, 0, fn, "reference"));
  if (nq == 0) return DML_OK;
  knn_chunks nb;
  DML_TRY(chunks_open(&nb, ref, nr, queries, nq, d, dist, k, fn));
  const int64_t kk = nb.kk;
  dml_status status = DML_OK;
  for (int64_t c0 = 0; c0 < nq && status == DML_OK; c0 += nb.chunk) {
    const int64_t nc = nq - c0 < nb.chunk ? nq - c0 : nb.chunk;
    status = chunks_search(&nb, c0, nc);
    if (status != DML_OK) break;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nc; i++) {
      const int64_t *id = nb.ids + i * nb.ks;
      float *row = scores + (c0 + i) * num_labels;
      for (int32_t l = 0; l < num_labels; l++) row[l] = 0.0f;
      for (int64_t j = 0; j < kk; j++) {
        const int64_t r = id[j];
        const int64_t b = ref_labels->offsets ? ref_labels->offsets[r] : r;
        const int64_t e = ref_labels->offsets ? ref_labels->offsets[r + 1] : r + 1;
        for (int64_t t = b; t < e; t++) {
          const int32_t l = ref_labels->values[t];
          /* a label repeated within one item counts once */
          int seen = 0;
          for (int64_t u = b; u < t; u++) seen |= ref_labels->values[u] == l;
          if (l < num_labels && !seen) row[l] += 1.0f / (float)kk;
        }
      }
    }
  }
  chunks_close(&nb);
  return status;
}
