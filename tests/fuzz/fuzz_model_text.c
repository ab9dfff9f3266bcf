/* Fuzz target: the model text parser (and a forward pass of whatever parses). */
#include <dml/dml.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  dml_model *m = NULL;
  if (dml_model_parse(text, "fuzz", &m) == DML_OK) {
    /* small models only: run one forward pass of a batch of 2 */
    if (dml_model_input_numel(m) <= 4096 && dml_params_numel(dml_model_params(m)) <= 1 << 20) {
      dml_graph *g = NULL;
      int64_t n = 2 * dml_model_input_numel(m);
      float *x = calloc((size_t)n, sizeof(float));
      float *y = calloc((size_t)(2 * dml_model_output_numel(m) + 1), sizeof(float));
      if (x && y && dml_graph_new(&g) == DML_OK && dml_model_init_weights(m, 1) == DML_OK)
        (void)dml_model_predict(m, g, x, 2, 2, y);
      dml_graph_free(g);
      free(x);
      free(y);
    }
    dml_model_free(m);
  }
  free(text);
  return 0;
}
