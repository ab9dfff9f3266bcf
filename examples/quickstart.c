/* Quick start: describe a network in text, train it a few steps with Adam on a toy problem and
 * print the layer table and the loss. Uses only the public API (installed headers + libdml). */
#include <dml/dml.h>
#include <stdio.h>

static const char *model_text =
    "# a small embedding MLP\n"
    "input 8\n"
    "linear out=32\n"
    "relu\n"
    "linear out=4\n";

int main(void) {
  dml_model *m = NULL;
  dml_graph *g = NULL;
  dml_optim *opt = NULL;
  int rc = 1;
  if (dml_model_parse(model_text, "quickstart", &m) || dml_model_init_weights(m, 42) ||
      dml_graph_new(&g))
    goto fail;
  dml_model_print_summary(m, stdout);
  dml_optim_config cfg = dml_optim_config_default(DML_OPTIM_ADAM);
  cfg.lr = 1e-2f;
  if (dml_optim_new(dml_model_params(m), &cfg, &opt)) goto fail;

  /* 64 random points; the class is the sign pattern of the first two coordinates */
  enum { N = 64 };
  float x[N * 8];
  int32_t y[N];
  for (int i = 0; i < N * 8; i++) x[i] = dml_rng_normal(1, 0, (uint64_t)i);
  for (int i = 0; i < N; i++) y[i] = (x[i * 8] > 0) + 2 * (x[i * 8 + 1] > 0);
  int64_t shape[2] = {N, 8};
  float first = 0, last = 0;
  for (int step = 0; step < 100; step++) {
    dml_node *in, *logits, *loss;
    dml_graph_reset(g);
    if (dml_graph_input(g, x, 2, shape, 0, &in) || dml_model_forward(m, g, in, &logits) ||
        dml_op_cross_entropy(g, logits, y, 0.0f, &loss))
      goto fail;
    dml_params_zero_grad(dml_model_params(m));
    if (dml_graph_backward(g, loss, NULL) || dml_optim_step(opt)) goto fail;
    last = dml_node_value(loss)->data[0];
    if (step == 0) first = last;
  }
  printf("cross-entropy: %.4f at step 1, %.4f at step 100\n", first, last);
  rc = last < first ? 0 : 1;
  if (rc) fprintf(stderr, "quickstart: the loss did not decrease\n");
  goto done;
fail:
  fprintf(stderr, "quickstart: %s\n", dml_last_error());
done:
  dml_optim_free(opt);
  dml_graph_free(g);
  dml_model_free(m);
  return rc;
}
