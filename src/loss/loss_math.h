/* Elementary functions for the loss kernels, written so that gcc and clang vectorise them
 * (libm's exp is a call per element). */
#ifndef DML_LOSS_MATH_H
#define DML_LOSS_MATH_H

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

/* Relation masks as floats: with c = rel (DML__REL_NONE 0, POS 1, NEG 2) as a float,
 * positive = c (2 - c) and negative = c (c - 1) / 2 are exactly 0 or 1. Row loops select by
 * multiplying with them (a masked-out lane gets +-FLT_MAX in a min / max, 0 in a sum): gcc 12
 * vectorises that, while ?: on the relations, and sometimes on floats next to a reduction,
 * leaves the loop scalar. */
static inline float pos_f(float c) { return c * (2.0f - c); }
static inline float neg_f(float c) { return 0.5f * c * (c - 1.0f); }

#endif
