/* Input checks shared by the modules that take embeddings from callers (see check.h). */
#include "core/check.h"

#include <math.h>

#include "core/status_internal.h"

dml_status dml__check_finite_rows(const float *x, int64_t n, int64_t d, const char *fn,
                                  const char *what) {
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n * d > 65536)
  for (int64_t i = 0; i < n * d; i++) bad |= !isfinite(x[i]);
  if (!bad) return DML_OK;
  for (int64_t i = 0; i < n * d; i++)
    if (!isfinite(x[i]))
      return dml__error(DML_ERR_NOT_FINITE, "%s: %s row %lld has a non-finite value (%g)", fn,
                        what, (long long)(i / d), (double)x[i]);
  return DML_OK;
}
