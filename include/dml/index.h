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
#include "dml/eval.h"
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

/* ---- Gallery: a searchable, editable collection of labelled embeddings -------------------
 * A gallery holds items: an embedding, an int64 id chosen by the caller (unique within the
 * gallery) and zero, one or several int32 labels. Items can be added and removed at any time;
 * adding items of a class never seen in training is how a new class joins (open set: no
 * retraining). The gallery keeps its own copy of the embeddings.
 *
 * Search runs on one of two backends, chosen when the gallery is created:
 *   - exact (factory NULL, "" or "Flat"): dml_knn_search over all items;
 *   - approximate, when dml is built with FAISS: any FAISS index-factory string, such as
 *     "HNSW32", "IVF1024,Flat" or "IVF1024,PQ16". An index that needs training is trained on
 *     the first dml_gallery_add of enough items (or explicitly with dml_gallery_train).
 *     Removing items rebuilds the FAISS index from the kept embeddings (keeping its
 *     training), at once: one add of every kept item.
 * Cosine galleries store embeddings as given and search on unit-normalised copies.
 * A gallery object is not thread-safe for concurrent modification; searches may run in
 * parallel with each other. */
typedef struct dml_gallery dml_gallery;

/* 1 when this build of dml can make FAISS-backed galleries. */
int dml_gallery_has_faiss(void);

dml_status dml_gallery_create(dml_gallery **out, int64_t d, dml_distance dist,
                              const char *factory);
void dml_gallery_free(dml_gallery *g);

int64_t dml_gallery_size(const dml_gallery *g);
int64_t dml_gallery_dim(const dml_gallery *g);
dml_distance dml_gallery_distance(const dml_gallery *g);
/* "Flat" for exact search, otherwise the FAISS factory string. */
const char *dml_gallery_factory(const dml_gallery *g);
/* 1 when searches go through the FAISS index; 0 for exact galleries, empty ones, and indexes
 * still waiting for enough items to train (searched exactly meanwhile). */
int dml_gallery_index_ready(const dml_gallery *g);

/* Trains an approximate index on x [n, d] (no-op for exact galleries). */
dml_status dml_gallery_train(dml_gallery *g, const float *x, int64_t n);

/* Adds n items: x [n, d]; ids [n], each >= 0 (NULL: the next free ids, max id + 1 onwards);
 * labels
 * (NULL: no labels) with labels->n == n, in the layout of dml_labels (dml/eval.h). An id
 * already present, NaN/Inf or a negative label is an error and nothing is added. */
dml_status dml_gallery_add(dml_gallery *g, const float *x, int64_t n, const int64_t *ids,
                           const dml_labels *labels);

/* Removes the items with these ids; ids not present are ignored. *removed (may be NULL) gets
 * how many were removed. */
dml_status dml_gallery_remove(dml_gallery *g, const int64_t *ids, int64_t n, int64_t *removed);

/* The k nearest items of each query: ids [nq, k] are item ids (-1 past the end), dists
 * [nq, k] (may be NULL) their distances or similarities as dml_knn_search reports them. */
dml_status dml_gallery_search(const dml_gallery *g, const float *queries, int64_t nq, int64_t k,
                              int64_t *ids, float *dists);

/* An item's labels: *labels points into the gallery (valid until it is next modified).
 * DML_ERR_NOT_FOUND when the id is not present. */
dml_status dml_gallery_labels(const dml_gallery *g, int64_t id, const int32_t **labels,
                              int64_t *count);

/* Search-time parameter of an approximate index ("efSearch" for HNSW, "nprobe" for IVF), as
 * FAISS's ParameterSpace names them. Kept with the gallery when saved. */
dml_status dml_gallery_set_param(dml_gallery *g, const char *name, double value);

/* Saves the gallery (embeddings, ids, labels, and the trained FAISS index) to one file,
 * atomically; dml_gallery_load reads it back. A truncated or corrupted file is an error
 * (checksummed), never a crash. The FAISS part of a file is read by FAISS's own reader, which
 * trusts the sizes it reads: the checksum catches accidents, not a file crafted to pass it,
 * so load approximate galleries only from sources you trust. */
dml_status dml_gallery_save(const dml_gallery *g, const char *path);
dml_status dml_gallery_load(dml_gallery **out, const char *path);

#ifdef __cplusplus
}
#endif
#endif
