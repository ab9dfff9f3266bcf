/* Input checks shared by the modules that take embeddings from callers. */
#ifndef DML_CORE_CHECK_H
#define DML_CORE_CHECK_H

#include <stdint.h>

#include "dml/status.h"

/* DML_ERR_NOT_FINITE naming the first row of x [n, d] that holds NaN or Inf:
 * "<fn>: <what> row <i> has a non-finite value (<v>)". The scan runs in parallel for large
 * inputs; the message is the same whatever the thread count. */
dml_status dml__check_finite_rows(const float *x, int64_t n, int64_t d, const char *fn,
                                  const char *what);

#endif
