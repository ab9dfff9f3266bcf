/* Kaiming / Xavier initialisers on the counter-based RNG. */
#include "dml/init.h"

#include <math.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/rng.h"

dml_status dml_init_fill(float *w, int64_t n, dml_init_kind kind, int64_t fan_in,
                         int64_t fan_out, float scale, uint64_t seed, uint64_t stream) {
  if (!w && n > 0) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_init_fill: NULL buffer");
  double std = 0;
  switch (kind) {
    case DML_INIT_ZEROS:
      for (int64_t i = 0; i < n; i++) w[i] = 0.0f;
      return DML_OK;
    case DML_INIT_ONES:
      for (int64_t i = 0; i < n; i++) w[i] = 1.0f;
      return DML_OK;
    case DML_INIT_KAIMING_UNIFORM:
    case DML_INIT_KAIMING_NORMAL:
      if (fan_in <= 0) return dml__error(DML_ERR_INVALID_ARGUMENT, "Kaiming init needs fan_in > 0");
      std = sqrt(2.0 / (1.0 + (double)scale * scale)) / sqrt((double)fan_in);
      break;
    case DML_INIT_XAVIER_UNIFORM:
    case DML_INIT_XAVIER_NORMAL:
      if (fan_in + fan_out <= 0)
        return dml__error(DML_ERR_INVALID_ARGUMENT, "Xavier init needs fan_in + fan_out > 0");
      std = (scale != 0 ? scale : 1.0) * sqrt(2.0 / (double)(fan_in + fan_out));
      break;
    case DML_INIT_UNIFORM:
      dml_rng_fill_uniform(w, n, -scale, scale, seed, stream);
      return DML_OK;
    case DML_INIT_NORMAL:
      dml_rng_fill_normal(w, n, 0.0f, scale, seed, stream);
      return DML_OK;
    default:
      return dml__error(DML_ERR_INVALID_ARGUMENT, "unknown initialiser %d", (int)kind);
  }
  if (kind == DML_INIT_KAIMING_UNIFORM || kind == DML_INIT_XAVIER_UNIFORM) {
    float bound = (float)(sqrt(3.0) * std);
    dml_rng_fill_uniform(w, n, -bound, bound, seed, stream);
  } else {
    dml_rng_fill_normal(w, n, 0.0f, (float)std, seed, stream);
  }
  return DML_OK;
}

dml_status dml_init_kind_parse(const char *name, dml_init_kind *out) {
  static const struct {
    const char *name;
    dml_init_kind kind;
  } table[] = {{"zeros", DML_INIT_ZEROS},
               {"ones", DML_INIT_ONES},
               {"kaiming_uniform", DML_INIT_KAIMING_UNIFORM},
               {"kaiming_normal", DML_INIT_KAIMING_NORMAL},
               {"xavier_uniform", DML_INIT_XAVIER_UNIFORM},
               {"xavier_normal", DML_INIT_XAVIER_NORMAL},
               {"uniform", DML_INIT_UNIFORM},
               {"normal", DML_INIT_NORMAL}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(name, table[i].name) == 0) {
      *out = table[i].kind;
      return DML_OK;
    }
  return dml__error(DML_ERR_INVALID_ARGUMENT,
                    "unknown initialiser '%s' (valid: zeros, ones, kaiming_uniform, "
                    "kaiming_normal, xavier_uniform, xavier_normal, uniform, normal)",
                    name);
}
