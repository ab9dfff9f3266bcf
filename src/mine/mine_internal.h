/* Shared by the miner files (src/mine/): the miner definitions and the closeness key.
 * Every miner works on key = m for distances and key = -m for similarities, so "closer" is
 * always "smaller key" and the triplet gap of loss_internal.h is key_n - key_p (in double, as
 * the triplet kernels compute it: -(s_n - s_p) and s_p - s_n round identically). */
#ifndef DML_MINE_INTERNAL_H
#define DML_MINE_INTERNAL_H

#include "loss/loss_internal.h"

extern const dml__miner_def dml__miner_all;               /* miners.c */
extern const dml__miner_def dml__miner_batch_hard;        /* mine_hard.c */
extern const dml__miner_def dml__miner_easy_hard;         /* mine_hard.c */
extern const dml__miner_def dml__miner_semihard;          /* mine_band.c */
extern const dml__miner_def dml__miner_hard_triplets;     /* mine_band.c */
extern const dml__miner_def dml__miner_margin_triplets;   /* mine_band.c */
extern const dml__miner_def dml__miner_multi_similarity;  /* mine_ms.c */
extern const dml__miner_def dml__miner_distance_weighted; /* mine_dws.c */

/* Row-parallel loops run threaded above this many matrix elements. */
#define DML__MINE_PAR 16384

static inline double dml__mine_key(const float *row, int64_t j, int sim) {
  return sim ? -(double)row[j] : (double)row[j];
}

/* Sets trip to the band (-inf, +inf) over the current rel, with n = sum over rows of
 * (#POS) x (#NEG): what a triplet loss sees after a pair miner. */
void dml__mine_band_all(dml__mine_args *a);

#endif
