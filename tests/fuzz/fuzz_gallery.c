/* Fuzz target: the gallery file parser. The input is a gallery file without its trailing
 * CRC-32; the target appends the right checksum, so mutations get past the checksum and reach
 * the header, count and offset checks (and FAISS's reader, in builds with FAISS). A file whose
 * checksum is wrong is covered by tests/test_gallery.c. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "index/gallery_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size + 4);
  if (!buf) return 0;
  if (size) memcpy(buf, data, size);
  uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)size);
  memcpy(buf + size, &crc, 4);
  dml_gallery *g = NULL;
  if (dml__gallery_from_bytes(&g, buf, size + 4, "fuzz input") == DML_OK) {
    /* A gallery that loads must also search. */
    int64_t d = dml_gallery_dim(g), ids[3];
    float *q = calloc((size_t)d, sizeof *q);
    if (q) {
      q[0] = 1.0f;
      (void)dml_gallery_search(g, q, 1, 3, ids, NULL);
    }
    free(q);
    dml_gallery_free(g);
  }
  free(buf);
  return 0;
}
