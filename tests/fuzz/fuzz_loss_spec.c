/* Fuzz target: loss and miner spec strings; whatever parses is run on a small batch, so the
 * options it accepted are exercised too (a spec is user input: config files, the command
 * line). */
#include <dml/dml.h>
#include <stdlib.h>
#include <string.h>

enum { B = 12, D = 5, C = 3 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  float emb[B * D], grad[B * D], v;
  int32_t labels[B];
  for (int i = 0; i < B * D; i++) emb[i] = (float)((i * 37 % 17) - 8) / 8.0f;
  for (int i = 0; i < B; i++) labels[i] = i % C;
  dml_loss_config cfg = {D, C, 1};
  dml_loss *l = NULL;
  if (dml_loss_new(text, &cfg, &l) == DML_OK) {
    (void)dml_loss_compute(l, emb, labels, B, D, NULL, &v, grad);
    (void)dml_loss_compute(l, emb, labels, B, D, NULL, &v, grad); /* memory now filled */
    dml_loss_free(l);
  }
  dml_miner *m = NULL;
  if (dml_miner_new(text, 1, &m) == DML_OK) {
    dml_mined out;
    if (dml_miner_mine(m, emb, labels, B, D, NULL, &out) == DML_OK) dml_mined_free(&out);
    dml_miner_free(m);
  }
  free(text);
  return 0;
}
