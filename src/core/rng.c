/* Philox4x32-10 counter-based generator and the samplers built on it. */
#include "dml/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void dml_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

static void block(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]) {
  uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)stream,
                     (uint32_t)(stream >> 32)};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  dml_philox4x32(ctr, key, out);
}

uint64_t dml_rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t o[4];
  block(seed, stream, index, o);
  return ((uint64_t)o[0] << 32) | o[1];
}

static float u24(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

float dml_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t o[4];
  block(seed, stream, index, o);
  return u24(o[0]);
}

float dml_rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t o[4];
  block(seed, stream, index, o);
  /* u1 in (0, 1] so the log is finite */
  double u1 = ((double)(o[0] >> 8) + 1.0) / 16777216.0;
  double u2 = (double)(o[1] >> 8) / 16777216.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t dml_rng_below(uint64_t seed, uint64_t stream, uint64_t index, uint64_t n) {
  if (n == 0) return 0;
  /* 128-bit multiply-shift (Lemire) of a 64-bit draw: bias below 2^-64 * n. */
  unsigned __int128 m = (unsigned __int128)dml_rng_u64(seed, stream, index) * n;
  return (uint64_t)(m >> 64);
}

void dml_rng_fill_uniform(float *out, int64_t n, float lo, float hi, uint64_t seed,
                          uint64_t stream) {
  float w = hi - lo;
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; i++) out[i] = lo + w * dml_rng_uniform(seed, stream, (uint64_t)i);
}

void dml_rng_fill_normal(float *out, int64_t n, float mean, float std, uint64_t seed,
                         uint64_t stream) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; i++)
    out[i] = mean + std * dml_rng_normal(seed, stream, (uint64_t)i);
}

void dml_rng_shuffle_i64(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)dml_rng_below(seed, stream, (uint64_t)i, (uint64_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}
