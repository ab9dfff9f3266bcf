/* Whole-file reads for the text formats (model text, checkpoint JSON). */
#ifndef DML_CORE_FILE_H
#define DML_CORE_FILE_H

#include <stddef.h>

#include "dml/status.h"

/* Reads the file at path into a malloc'ed, NUL-terminated buffer (*out, *size bytes before the
 * terminator). Errors name `what` and the path: missing or unreadable file (DML_ERR_IO), a file
 * above max_bytes (DML_ERR_FORMAT). */
dml_status dml__read_file(const char *path, const char *what, size_t max_bytes, char **out,
                          size_t *size);

#endif
