/* Nearest-neighbour search over a gallery of embeddings. The caller owns every array; nothing
 * is retained.
 *
 * Exact search: every query is compared with every gallery row, the distances coming from
 * blocked matrix products (OpenBLAS sgemm) and the k nearest kept per query by a bounded
 * selection, so memory stays at a few blocks whatever the gallery size (never queries x
 * gallery). Ties in distance go to the lower gallery index. Query blocks run in parallel on
 * dml's threads (dml_set_num_threads). */
#ifndef DML_INDEX_H
#define DML_INDEX_H

#include <stdint.h>

#include "dml/distance.h"
#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The k nearest gallery rows of each query.
 *   gallery [n, d], queries [nq, d]: row-major float32, finite (NaN or Inf is an error).
 *   dist: DML_DIST_SQUARED_EUCLIDEAN (as FAISS's IndexFlatL2), DML_DIST_EUCLIDEAN,
 *     DML_DIST_DOT (inner product, larger = closer) or DML_DIST_COSINE (larger = closer; a
 *     zero vector has cosine 0 with everything).
 *   ids [nq, k]: gallery row indices, nearest first; dists [nq, k] (may be NULL): their
 *     distances or similarities. When n < k the last k - n slots hold id -1 and +inf (distances)
 *     or -inf (similarities).
 * Euclidean distances are computed as ||q||^2 + ||g||^2 - 2 q.g (clamped at 0), as FAISS does:
 * for near-duplicates that cancels to about 1e-6 of ||q||^2 + ||g||^2. Ranking uses the
 * unrounded keys, so two rows whose reported distances print equal may still come in either
 * id order. A row whose squared norm passes FLT_MAX / 8 is refused under Euclidean distances
 * (the float keys would overflow). */
dml_status dml_knn_search(const float *gallery, int64_t n, const float *queries, int64_t nq,
                          int64_t d, dml_distance dist, int64_t k, int64_t *ids, float *dists);

#ifdef __cplusplus
}
#endif
#endif
