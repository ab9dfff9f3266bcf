/* Counter-based random numbers (Philox4x32-10, Salmon et al. SC'11).
 * Every random value is a pure function of (seed, stream, index), so results do not depend on
 * how work is split across threads: the same seed gives the same bits with any thread count.
 * A `stream` separates independent uses (one per layer, per epoch, per purpose). */
#ifndef DML_RNG_H
#define DML_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The raw generator: 4 x 32 random bits for counter (c0..c3) and key (k0, k1). */
void dml_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* 64 random bits at position `index` of `stream` under `seed`. */
uint64_t dml_rng_u64(uint64_t seed, uint64_t stream, uint64_t index);

/* Uniform float in [0, 1) (24-bit resolution) at `index`. */
float dml_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);

/* Standard normal at `index` (Box-Muller on one Philox block). */
float dml_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

/* Uniform integer in [0, n) at `index` (n > 0), without modulo bias worth noticing (64-bit). */
uint64_t dml_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n);

/* Fill out[0..n) with uniform values in [lo, hi) / normal values (mean, std). Element i uses
 * index i; parallel with OpenMP, bit-identical for any thread count. */
void dml_rng_fill_uniform(float *out, int64_t n, float lo, float hi, uint64_t seed,
                          uint64_t stream);
void dml_rng_fill_normal(float *out, int64_t n, float mean, float std, uint64_t seed,
                         uint64_t stream);

/* Fisher-Yates shuffle of perm[0..n) driven by (seed, stream). */
void dml_rng_shuffle_i64(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream);

#ifdef __cplusplus
}
#endif
#endif
