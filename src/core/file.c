/* Whole-file reads with a size limit (see file.h). */
#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"

dml_status dml__read_file(const char *path, const char *what, size_t max_bytes, char **out,
                          size_t *size) {
  *out = NULL;
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return dml__error(DML_ERR_IO, "cannot open %s '%s': %s", what, path, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  dml_status st = DML_OK;
  for (;;) {
    if (n + 1 >= cap) {
      size_t ncap = cap ? cap * 2 : 4096;
      char *b = realloc(buf, ncap);
      if (!b) {
        st = dml__error(DML_ERR_NO_MEMORY, "out of memory reading %s '%s'", what, path);
        break;
      }
      buf = b;
      cap = ncap;
    }
    size_t got = fread(buf + n, 1, cap - 1 - n, f);
    n += got;
    if (got == 0) break;
    if (n > max_bytes) {
      st = dml__error(DML_ERR_FORMAT, "%s '%s' is larger than %zu bytes", what, path, max_bytes);
      break;
    }
  }
  if (st == DML_OK && ferror(f))
    st = dml__error(DML_ERR_IO, "cannot read %s '%s': %s", what, path, strerror(errno));
  fclose(f);
  if (st != DML_OK) {
    free(buf);
    return st;
  }
  buf[n] = '\0';
  *out = buf;
  *size = n;
  return DML_OK;
}
