/* Fuzz target: the safetensors reader against the store of a small CNN. Any input must give a
 * status (never a crash, a leak or undefined behaviour). */
#include <dml/dml.h>
#include <stdlib.h>

#include "fuzz_common.h"

static const char *model_text =
    "input 1 8 8\nconv2d out=2 k=3 pad=1\nbatchnorm\nrelu\nflatten\nlinear out=3\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static dml_model *m;
  if (!m && (dml_model_parse(model_text, "fuzz", &m) != DML_OK)) abort();
  const char *path = fuzz_write_file("st", data, size);
  if (!path) return 0;
  (void)dml_safetensors_read(path, dml_model_params(m), NULL);
  return 0;
}
