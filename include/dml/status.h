/* Status codes and the thread-local error message.
 * Every fallible call returns a dml_status (0 = OK, negative = error). The message of the most
 * recent failure on the calling thread is in dml_last_error(); the string is owned by the
 * library and stays valid until the next failing call on the same thread. */
#ifndef DML_STATUS_H
#define DML_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro: name, value, short description. */
#define DML_STATUS_LIST(X)                                                   \
  X(DML_OK, 0, "ok")                                                         \
  X(DML_ERR_INVALID_ARGUMENT, -1, "invalid argument")                        \
  X(DML_ERR_SHAPE, -2, "shape mismatch")                                     \
  X(DML_ERR_NO_MEMORY, -3, "out of memory")                                  \
  X(DML_ERR_IO, -4, "input/output error")                                    \
  X(DML_ERR_FORMAT, -5, "malformed file or text")                            \
  X(DML_ERR_NOT_FINITE, -6, "NaN or infinity in input")                      \
  X(DML_ERR_NOT_FOUND, -7, "not found")                                      \
  X(DML_ERR_UNSUPPORTED, -8, "unsupported")                                  \
  X(DML_ERR_STATE, -9, "call made in the wrong state")                       \
  X(DML_ERR_INTERNAL, -10, "internal error")

typedef enum dml_status {
#define DML__STATUS_ENUM(name, value, text) name = value,
  DML_STATUS_LIST(DML__STATUS_ENUM)
#undef DML__STATUS_ENUM
} dml_status;

/* Short, static description of a status code ("shape mismatch"). */
const char *dml_status_str(dml_status status);

/* Message of the last failure on this thread ("" if none). */
const char *dml_last_error(void);

/* Clears the thread's last error message. */
void dml_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
