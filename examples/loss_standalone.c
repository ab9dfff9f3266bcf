/* A dml loss inside someone else's training loop. The "framework" here is a hand-written linear
 * embedding z = x W trained by plain SGD; dml only supplies the loss and dloss/dz through
 * dml_loss_compute, which is how a loss plugs into any other framework: hand it the batch's
 * embeddings and labels, get back the value and the gradient, push the gradient through your
 * own network. The loss's own parameters (here the ProxyAnchor proxies of the second term)
 * get their gradients in dml_loss_params and are stepped by a dml optimiser.
 * Uses only the public API (installed headers + libdml). */
#include <dml/dml.h>
#include <stdio.h>
#include <stdlib.h>

enum { N = 96, IN = 10, DIM = 4, CLASSES = 4, STEPS = 60 };

int main(void) {
  /* 4 classes of noisy points around random centres in 10-d */
  static float x[N * IN], w[IN * DIM], z[N * DIM], dz[N * DIM], dw[IN * DIM];
  int32_t y[N];
  for (int i = 0; i < N; i++) {
    y[i] = i % CLASSES;
    for (int k = 0; k < IN; k++)
      x[i * IN + k] = 2.0f * dml_rng_normal(7, 1, (uint64_t)(y[i] * IN + k)) +
                      dml_rng_normal(7, 2, (uint64_t)(i * IN + k));
  }
  for (int k = 0; k < IN * DIM; k++) w[k] = 0.3f * dml_rng_normal(7, 3, (uint64_t)k);

  dml_loss_config cfg = {DIM, CLASSES, 42};
  dml_loss *loss = NULL;
  dml_optim *opt = NULL;
  int rc = 1;
  if (dml_loss_new("triplet margin=0.2 miner=semihard + 0.5*proxy_anchor", &cfg, &loss))
    goto fail;
  printf("loss: %s\n", dml_loss_spec(loss));
  dml_optim_config oc = dml_optim_config_default(DML_OPTIM_SGD);
  oc.lr = 0.5f;
  if (dml_optim_new(dml_loss_params(loss), &oc, &opt)) goto fail;

  float first = 0, last = 0;
  for (int step = 0; step < STEPS; step++) {
    /* the framework's forward: z = x W */
    for (int i = 0; i < N; i++)
      for (int j = 0; j < DIM; j++) {
        float s = 0;
        for (int k = 0; k < IN; k++) s += x[i * IN + k] * w[k * DIM + j];
        z[i * DIM + j] = s;
      }
    float value;
    dml_params_zero_grad(dml_loss_params(loss));
    if (dml_loss_compute(loss, z, y, N, DIM, NULL, &value, dz)) goto fail;
    /* the framework's backward: dW = x^T dz, then SGD on W; dml steps its proxies */
    for (int k = 0; k < IN; k++)
      for (int j = 0; j < DIM; j++) {
        float s = 0;
        for (int i = 0; i < N; i++) s += x[i * IN + k] * dz[i * DIM + j];
        dw[k * DIM + j] = s;
      }
    for (int k = 0; k < IN * DIM; k++) w[k] -= 0.05f * dw[k];
    if (dml_optim_step(opt)) goto fail;
    if (step == 0) first = value;
    last = value;
    if (step % 20 == 0 || step == STEPS - 1) printf("step %2d  loss %.4f\n", step + 1, value);
  }
  dml_retrieval_metrics rm;
  if (dml_eval_retrieval(z, y, N, DIM, DML_DIST_COSINE, &rm)) goto fail;
  printf("loss %.4f -> %.4f; retrieval on the training points: P@1 %.3f, MAP@R %.3f\n", first,
         last, rm.precision_at_1, rm.map_at_r);
  rc = last < first ? 0 : 1;
  if (rc) fprintf(stderr, "loss_standalone: the loss did not decrease\n");
  goto done;
fail:
  fprintf(stderr, "loss_standalone: %s\n", dml_last_error());
done:
  dml_optim_free(opt);
  dml_loss_free(loss);
  return rc;
}
