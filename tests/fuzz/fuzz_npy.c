/* Fuzz target: the .npy reader (embeddings, labels and neighbour ids come in as .npy files). */
#include <dml/dml.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write_file("npy", data, size);
  if (!path) return 0;
  dml_npy a;
  if (dml_npy_read(path, &a) == DML_OK) dml_npy_free(&a);
  return 0;
}
