/* Shared by the fuzz targets: writes the fuzz input to a per-process scratch file, since the
 * parsers under test read files. */
#ifndef DML_FUZZ_COMMON_H
#define DML_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size) {
  static char path[256];
  snprintf(path, sizeof path, "/tmp/dml-fuzz-%s-%ld", tag, (long)getpid());
  FILE *f = fopen(path, "wb");
  if (!f) return NULL;
  if (size && fwrite(data, 1, size, f) != size) {
    fclose(f);
    return NULL;
  }
  fclose(f);
  return path;
}

#endif
