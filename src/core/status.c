/* Status strings and the thread-local last-error message. */
#include "core/status_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char dml__error_message[1024];

const char *dml_status_str(dml_status status) {
  switch (status) {
#define DML__STATUS_CASE(name, value, text) \
  case name:                                \
    return text;
    DML_STATUS_LIST(DML__STATUS_CASE)
#undef DML__STATUS_CASE
  }
  return "unknown status";
}

const char *dml_last_error(void) { return dml__error_message; }

void dml_clear_error(void) { dml__error_message[0] = '\0'; }

dml_status dml__error(dml_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dml__error_message, sizeof dml__error_message, fmt, ap);
  va_end(ap);
  return status;
}
