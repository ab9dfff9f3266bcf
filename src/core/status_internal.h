/* Internal helpers for reporting errors: set the thread-local message and return the status. */
#ifndef DML_CORE_STATUS_INTERNAL_H
#define DML_CORE_STATUS_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>

#include "dml/status.h"

#if defined(__GNUC__)
#define DML__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DML__PRINTF(a, b)
#endif

/* Records a formatted message as the thread's last error and returns `status`. */
dml_status dml__error(dml_status status, const char *fmt, ...) DML__PRINTF(2, 3);

/* Propagates a failing status to the caller. */
#define DML_TRY(expr)                   \
  do {                                  \
    dml_status dml__s = (expr);         \
    if (dml__s != DML_OK) return dml__s; \
  } while (0)

/* Only for broken internal invariants, never for user input. */
#define DML_ASSERT(cond)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "dml: internal invariant failed: %s (%s:%d)\n", #cond, __FILE__, \
              __LINE__);                                                          \
      abort();                                                                    \
    }                                                                             \
  } while (0)

#endif
