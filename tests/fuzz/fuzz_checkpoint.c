/* Fuzz target: the checkpoint JSON (model text + metadata) next to a valid weights file. */
#include <dml/dml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char prefix[256];
  static int ready;
  if (!ready) {
    dml_model *m;
    snprintf(prefix, sizeof prefix, "/tmp/dml-fuzz-ckpt-%ld", (long)getpid());
    if (dml_model_parse("input 4\nlinear out=3\n", "fuzz", &m) != DML_OK) abort();
    if (dml_checkpoint_save(prefix, m, NULL, NULL) != DML_OK) abort();
    dml_model_free(m);
    ready = 1;
  }
  char json[300];
  snprintf(json, sizeof json, "%s.json", prefix);
  FILE *f = fopen(json, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  dml_model *m = NULL;
  char *meta = NULL;
  if (dml_checkpoint_load(prefix, &m, &meta) == DML_OK) {
    dml_model_free(m);
    free(meta);
  }
  return 0;
}
