/* Fuzz target: the IDX reader (images file fuzzed, labels file fuzzed the same). */
#include <dml/dml.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write_file("idx", data, size);
  if (!path) return 0;
  dml_dataset ds;
  if (dml_data_read_idx(path, path, 1000, &ds) == DML_OK) dml_dataset_free(&ds);
  return 0;
}
