/* Class-balanced batch samplers: P x K batches (P classes, K examples each) and N-pair batches
 * (N classes x an anchor and a positive), reproducible per (seed, epoch).
 * dml_sampler_new_* allocate a sampler that owns a copy of what it needs from the labels (the
 * caller's array may be freed after the call); dml_sampler_free releases it. Index buffers
 * passed to dml_sampler_batch are caller-owned, dml_sampler_batch_size() int64 values long.
 * A sampler is not modified by dml_sampler_batch, so several threads may read batches of one
 * prepared epoch at once; dml_sampler_epoch must not run concurrently with anything else on
 * the same sampler. See docs/sampler.md for the algorithm and its guarantees. */
#ifndef DML_SAMPLER_H
#define DML_SAMPLER_H

#include <stdint.h>

#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_sampler dml_sampler;

/* P x K sampler over labels[0..n) (any int32 values; equal values are one class).
 * Every batch holds p distinct classes with k examples each, batch size p * k, laid out class
 * by class: indices[j*k .. (j+1)*k) are the k examples of the batch's j-th class.
 * Per epoch every example appears at least once; an example appears again only where class
 * sizes force it: to fill the last chunk of a class whose size is not a multiple of k (a class
 * with fewer than k examples repeats its examples within its chunk), and in the final batches
 * of an epoch when fewer than p classes still have unvisited examples (their free places take
 * chunks re-drawn from other classes). Errors: labels/out NULL, n < 1, p < 1, k < 1, p larger
 * than the number of distinct labels (the message says how many there are). p = 1 is allowed
 * but gives batches without negatives. */
dml_status dml_sampler_new_pk(const int32_t *labels, int64_t n, int p, int k, uint64_t seed,
                              dml_sampler **out);

/* N-pair sampler: n_pairs distinct classes per batch, an anchor and a positive of each (two
 * different examples), batch size 2 * n_pairs, layout [a0, p0, a1, p1, ...] (the P x K layout
 * with k = 2). Classes with a single example cannot form a pair and are never sampled; every
 * example of the other classes is visited at least once per epoch (an odd-sized class repeats
 * one of its examples, paired with its last one). Errors: labels/out NULL, n < 1,
 * n_pairs < 1, fewer than n_pairs classes with at least two examples. */
dml_status dml_sampler_new_npair(const int32_t *labels, int64_t n, int n_pairs, uint64_t seed,
                                 dml_sampler **out);

/* Prepares the batches of `epoch` (>= 0). The result is a pure function of (labels, p, k,
 * seed, epoch): the same epoch always gives the same batches, and any epoch can be prepared
 * directly (resuming at epoch 17 needs no replay of epochs 0..16). */
dml_status dml_sampler_epoch(dml_sampler *s, int64_t epoch);

/* Batches per epoch (the same for every epoch, known before the first dml_sampler_epoch)
 * and examples per batch (p * k, or 2 * n_pairs). Both return 0 for NULL. */
int64_t dml_sampler_num_batches(const dml_sampler *s);
int64_t dml_sampler_batch_size(const dml_sampler *s);

/* Writes the example indices (positions in the labels array) of batch i, 0 <= i <
 * dml_sampler_num_batches(s), of the prepared epoch into indices[0 .. batch_size).
 * DML_ERR_STATE before the first dml_sampler_epoch. */
dml_status dml_sampler_batch(const dml_sampler *s, int64_t i, int64_t *indices);

void dml_sampler_free(dml_sampler *s); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
