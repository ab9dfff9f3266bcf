/* Elementary functions for the loss kernels, written so that gcc and clang vectorise them
 * (libm's exp is a call per element). */
#ifndef DML_LOSS_MATH_H
#define DML_LOSS_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x in double for x <= 0, written so that gcc and clang vectorise it inside a simd loop:
 * x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), e^r by its degree-10 Taylor
 * polynomial (relative error < 3e-13, far below float32's 6e-8), 2^n put into the exponent
 * bits. Inputs below -708 (-inf included) give exactly 0: their
 * intermediate values are garbage or NaN, and the result's bits are cleared with a mask (a ?:
 * here stops gcc 12 vectorising the loop). */
static inline double exp_d(double x) {
  const double shift = 6755399441055744.0; /* 1.5 * 2^52: adding it rounds to an integer */
  double kd = x * 1.4426950408889634 + shift;
  uint64_t ki;
  memcpy(&ki, &kd, sizeof ki);
  kd -= shift;
  const double r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
  double p = 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  /* the low 12 bits of ki hold n (mod 4096); for x in [-708, 0], n + 1023 lies in [1, 1023] */
  const uint64_t bits = (ki + 1023u) << 52;
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  double v = p * scale;
  uint64_t vb;
  memcpy(&vb, &v, sizeof vb);
  vb &= (uint64_t)0 - (uint64_t)(x >= -708.0);
  memcpy(&v, &vb, sizeof v);
  return v;
}

/* x * y + z, fused where the target has FMA (a vectorised fmaf without it would be a libm
 * call per element). */
#if defined(__FMA__)
#define FMAF(x, y, z) fmaf(x, y, z)
#else
#define FMAF(x, y, z) ((x) * (y) + (z))
#endif

/* e^y in float for y in [-87, 64], y outside taken as the nearest end (e^-87 = 1.6e-38,
 * e^64 = 6e27: lanes that are masked out may hold any exponent; callers multiply them by 0).
 * The kernels' exponents are <= 0 up to rounding. y = n ln2 + t, |t| <= ln2/2 (ln2 split in two
 * so n ln2 is exact), e^t by its degree-7 Taylor polynomial (relative error < 6e-9), 2^n put
 * into the exponent bits; vectorises (no branch, no table). */
static inline float exp_f(float y) {
  y = y < 64.0f ? y : 64.0f;
  y = y > -87.0f ? y : -87.0f;
  const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float kf = FMAF(y, 1.44269504f, shift);
  uint32_t ki;
  memcpy(&ki, &kf, sizeof ki);
  kf -= shift;
  float t = FMAF(kf, -0.693359375f, y);
  t = FMAF(kf, 2.12194440e-4f, t);
  float q = 1.0f / 5040.0f;
  q = FMAF(q, t, 1.0f / 720.0f);
  q = FMAF(q, t, 1.0f / 120.0f);
  q = FMAF(q, t, 1.0f / 24.0f);
  q = FMAF(q, t, 1.0f / 6.0f);
  q = FMAF(q, t, 0.5f);
  q = FMAF(q, t, 1.0f);
  q = FMAF(q, t, 1.0f);
  /* the low 9 bits of ki hold n + 2^22 (mod 512); n + 127 lies in [1, 219] */
  const uint32_t bits = (ki + 127u) << 23;
  float sc;
  memcpy(&sc, &bits, sizeof sc);
  return q * sc;
}

/* log(1 + e) in float for e in [0, 1], given v = e / (2 + e) <= 1/3: 2 atanh(v) by its series
 * to v^13 (relative error < 2e-8); vectorises. */
static inline float log1p_f(float v) {
  const float v2 = v * v;
  float q = 1.0f / 13.0f;
  q = FMAF(q, v2, 1.0f / 11.0f);
  q = FMAF(q, v2, 1.0f / 9.0f);
  q = FMAF(q, v2, 1.0f / 7.0f);
  q = FMAF(q, v2, 1.0f / 5.0f);
  q = FMAF(q, v2, 1.0f / 3.0f);
  q = FMAF(q, v2, 1.0f);
  return 2.0f * v * q;
}

/* Relation masks as floats: with c = rel (DML__REL_NONE 0, POS 1, NEG 2) as a float,
 * positive = c (2 - c) and negative = c (c - 1) / 2 are exactly 0 or 1. Row loops select by
 * multiplying with them (a masked-out lane gets +-FLT_MAX in a min / max, 0 in a sum): gcc 12
 * vectorises that, while ?: on the relations, and sometimes on floats next to a reduction,
 * leaves the loop scalar. */
static inline float pos_f(float c) { return c * (2.0f - c); }
static inline float neg_f(float c) { return 0.5f * c * (c - 1.0f); }

#endif
