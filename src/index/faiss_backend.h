/* dml's own C interface to FAISS's C++ API (the only C++ in dml: faiss_backend.cpp, compiled
 * when CMake finds libfaiss-dev and DML_FAISS is on; then DML_HAVE_FAISS is defined).
 * Debian's libfaiss.a does not carry FAISS's C API, hence this small wrapper.
 *
 * A handle owns one faiss::Index built by faiss::index_factory. Vectors are numbered in the
 * order they are added (0, 1, 2, ...), as FAISS does without explicit ids; the gallery
 * (gallery.c) maps those numbers to its items. Every call catches FAISS's exceptions and
 * returns a dml_status with the message in dml_last_error(); nothing throws across it. */
#ifndef DML_INDEX_FAISS_BACKEND_H
#define DML_INDEX_FAISS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml__faiss dml__faiss;

/* factory: a FAISS index-factory string ("HNSW32", "IVF1024,Flat", "IVF1024,PQ16", ...).
 * inner_product: 1 for METRIC_INNER_PRODUCT (dot; cosine on normalised vectors), 0 for L2
 * (squared Euclidean distances). A string FAISS rejects is DML_ERR_INVALID_ARGUMENT with
 * FAISS's message. PQ codes skip FAISS's polysemous training (minutes of work that only the
 * "ht" search parameter would use). */
dml_status dml__faiss_create(const char *factory, int64_t d, int inner_product,
                             dml__faiss **out);
void dml__faiss_free(dml__faiss *f);

/* The index's dimension and whether it ranks by inner product (1) or L2 (0). */
int64_t dml__faiss_dim(const dml__faiss *f);
int dml__faiss_inner_product(const dml__faiss *f);

int dml__faiss_is_trained(const dml__faiss *f);
/* Training vectors: how many the index wants at least (e.g. nlist for IVF, 2^nbits for PQ,
 * the larger of both for IVF-PQ, 1 for scalar quantisers), 0 when it needs no training (Flat,
 * HNSW over flat storage). Depends on the index's structure only, not on whether it has been
 * trained yet. Training adds no vectors; add them with dml__faiss_add. Training an index that
 * holds vectors is DML_ERR_STATE (dml__faiss_reset first). */
int64_t dml__faiss_min_train(const dml__faiss *f);
dml_status dml__faiss_train(dml__faiss *f, const float *x, int64_t n);
dml_status dml__faiss_add(dml__faiss *f, const float *x, int64_t n);
/* Empties the index, keeping its training. */
dml_status dml__faiss_reset(dml__faiss *f);
int64_t dml__faiss_ntotal(const dml__faiss *f);

/* dists/ids [nq, k]; missing results have id -1. dists are squared L2 or inner products.
 * Vectors (train, add, search) are row-major [n, d] float32 and must be finite
 * (DML_ERR_NOT_FINITE otherwise); adding to or searching an untrained index is DML_ERR_STATE. */
dml_status dml__faiss_search(const dml__faiss *f, const float *q, int64_t nq, int64_t k,
                             float *dists, int64_t *ids);

/* A search-time parameter through faiss::ParameterSpace ("nprobe", "efSearch", ...). */
dml_status dml__faiss_set_param(dml__faiss *f, const char *name, double value);

/* The index in FAISS's own serialised form (faiss::write_index to memory) behind a small header
 * of dml's (magic, version, metric, dimension, factory string, length, CRC-32; layout in
 * faiss_backend.cpp). *buf is malloc'd; the caller frees it. */
dml_status dml__faiss_serialize(const dml__faiss *f, uint8_t **buf, size_t *len);
/* Rebuilds an index from dml__faiss_serialize's bytes. Truncated or corrupted bytes are
 * DML_ERR_FORMAT (checked against the header's length and CRC before FAISS reads them), never a
 * crash; *out is NULL on error. */
dml_status dml__faiss_deserialize(const uint8_t *buf, size_t len, dml__faiss **out);

/* The factory string and metric the handle was made with, as "HNSW32 (L2)" or
 * "IVF1024,Flat (inner product)" (deserialised handles keep what was serialised). Owned by the
 * handle; "" for NULL. */
const char *dml__faiss_description(const dml__faiss *f);

#ifdef __cplusplus
}
#endif
#endif
