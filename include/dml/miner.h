/* Miners: which pairs or triplets of a batch a loss sees (formulas: docs/losses.md).
 * A dml_miner is made from a spec string, "semihard margin=0.2", "batch_hard",
 * "multi_similarity epsilon=0.1", "distance_weighted cutoff=0.5"; inside a loss spec the same
 * miner is "miner=semihard miner.margin=0.2" and mines on the loss's own distance. A standalone
 * miner measures with its own distance= and normalize= parameters (default: Euclidean on
 * L2-normalised embeddings, as pytorch-metric-learning).
 * dml_miner_mine fills a caller-owned dml_mined whose arrays the library allocates; release
 * them with dml_mined_free. */
#ifndef DML_MINER_H
#define DML_MINER_H

#include <stdint.h>

#include "dml/loss.h"
#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_miner dml_miner;

typedef enum dml_mined_kind {
  DML_MINED_PAIRS,   /* positive pairs (anchor, positive) and negative pairs (anchor, negative) */
  DML_MINED_TRIPLETS /* triplets (anchor, positive, negative) */
} dml_mined_kind;

/* Indices: anchors index the batch; positives and negatives index the batch, or the reference
 * set when one is given. Sorted by anchor, then positive, then negative. */
typedef struct dml_mined {
  dml_mined_kind kind;
  int64_t n_pos, n_neg;        /* pairs */
  int32_t *pos_anchor, *pos_other;
  int32_t *neg_anchor, *neg_other;
  int64_t n_triplets;          /* triplets */
  int32_t *anchor, *positive, *negative;
} dml_mined;

/* seed drives random miners (distance-weighted sampling) together with the step, which starts
 * at 0 and advances by one after each dml_miner_mine (set it with dml_miner_set_step). */
dml_status dml_miner_new(const char *spec, uint64_t seed, dml_miner **out);
void dml_miner_free(dml_miner *m); /* NULL is a no-op */
const char *dml_miner_spec(const dml_miner *m); /* every parameter spelled out */
void dml_miner_set_step(dml_miner *m, uint64_t step);

/* Mines a batch emb [b, d] with labels [b] (against ref when not NULL). out is overwritten. */
dml_status dml_miner_mine(dml_miner *m, const float *emb, const int32_t *labels, int64_t b,
                          int64_t d, const dml_loss_ref *ref, dml_mined *out);
void dml_mined_free(dml_mined *r); /* frees the arrays and zeroes the struct; NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
