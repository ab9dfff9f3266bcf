/* Fuzz target: training config files (JSON through the config schema). Whatever merges is
 * printed back and merged again, so the resolved form is exercised too. */
#include <dml/dml.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  dml_train_config *c = NULL;
  if (dml_train_config_new(&c) == DML_OK) {
    if (dml_train_config_merge_json(c, text, "fuzz") == DML_OK) {
      char *j = dml_train_config_to_json(c);
      if (j) {
        dml_train_config *c2 = NULL;
        if (dml_train_config_new(&c2) == DML_OK &&
            dml_train_config_merge_json(c2, j, "resolved") != DML_OK)
          abort(); /* a resolved config must read back */
        dml_train_config_free(c2);
        free(j);
      }
    }
    /* the same bytes as a flag value for a few keys of each kind */
    (void)dml_train_config_set(c, "split.test_classes", text);
    (void)dml_train_config_set(c, "optimizer.lr", text);
    (void)dml_train_config_set(c, "augment.hflip", text);
    (void)dml_train_config_set(c, "sampler.kind", text);
    dml_train_config_free(c);
  }
  free(text);
  return 0;
}
