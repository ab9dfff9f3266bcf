/* Fuzz target: the CSV reader (the first input byte picks the options: delimiter, header
 * mode, label column) and the manifest reader on the same text. The manifest's images are
 * looked up under a folder that does not exist, so no file outside the input is read. */
#include <dml/dml.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t pick = data[0];
  const char *path = fuzz_write_file("csv", data + 1, size - 1);
  if (!path) return 0;
  static const char delimiters[4] = {0, ';', '\t', '|'};
  static const char *const columns[4] = {NULL, "0", "-1", "label"};
  dml_csv_options o = {delimiters[pick & 3], (int)((pick >> 2) % 3) - 1, columns[(pick >> 4) & 3]};
  dml_dataset ds;
  if (dml_data_read_csv(path, &o, (pick & 0x40) ? 3 : 0, &ds) == DML_OK) dml_dataset_free(&ds);
  if (pick & 0x80) {
    if (dml_data_read_manifest(path, "/nonexistent-dml-fuzz", NULL, 0, &ds) == DML_OK)
      dml_dataset_free(&ds);
  }
  return 0;
}
