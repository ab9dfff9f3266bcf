/* Weight initialisers, as torch.nn.init defines them. Deterministic: values depend only on
 * (seed, stream), never on thread count. fan_in / fan_out as torch computes them
 * (for a conv weight [O, C/g, k...]: fan_in = C/g * prod(k), fan_out = O * prod(k)). */
#ifndef DML_INIT_H
#define DML_INIT_H

#include <stdint.h>

#include "dml/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dml_init_kind {
  DML_INIT_ZEROS,
  DML_INIT_ONES,
  DML_INIT_KAIMING_UNIFORM,
  DML_INIT_KAIMING_NORMAL,
  DML_INIT_XAVIER_UNIFORM,
  DML_INIT_XAVIER_NORMAL,
  DML_INIT_UNIFORM, /* U(-a, a) with a = `scale` */
  DML_INIT_NORMAL   /* N(0, scale^2) */
} dml_init_kind;

/* Kaiming: gain = sqrt(2 / (1 + a^2)) with a = `scale` (0 for ReLU), std = gain / sqrt(fan_in).
 * Xavier: std = `scale` (gain; 1 if 0) * sqrt(2 / (fan_in + fan_out)).
 * Uniform variants use bound = sqrt(3) * std. */
dml_status dml_init_fill(float *w, int64_t n, dml_init_kind kind, int64_t fan_in,
                         int64_t fan_out, float scale, uint64_t seed, uint64_t stream);

/* Parses "kaiming_uniform", "xavier_normal", ... */
dml_status dml_init_kind_parse(const char *name, dml_init_kind *out);

#ifdef __cplusplus
}
#endif
#endif
