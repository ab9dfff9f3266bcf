/* Fuzz target: the gallery file parser. The input is a gallery file without its trailing
 * CRC-32; the target appends the right checksum, so mutations get past the checksum and reach
 * the header, count, offset and id checks. A file whose checksum is wrong is covered by
 * tests/test_gallery.c.
 * Only exact ("Flat") galleries are parsed: the index part of an approximate gallery goes to
 * FAISS's own reader, which trusts the sizes it reads (a mutated size makes it allocate up to
 * a terabyte) and is documented as trusted input (include/dml/index.h); fuzz_faiss_blob covers
 * dml's checks in front of it. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "index/gallery_internal.h"

/* Offset of the factory string's length: magic, version, distance, d, n, label count. */
#define FACTORY_AT (8 + 4 + 4 + 8 + 8 + 8)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint32_t flen;
  if (size >= FACTORY_AT + 4) {
    memcpy(&flen, data + FACTORY_AT, 4);
    if (flen != 4 || size < FACTORY_AT + 8 || memcmp(data + FACTORY_AT + 4, "Flat", 4) != 0)
      return 0;
  }
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
