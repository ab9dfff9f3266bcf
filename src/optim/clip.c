/* Gradient clipping by global L2 norm, as torch.nn.utils.clip_grad_norm_:
 *   total = sqrt(sum over trainable gradients of g^2)   (accumulated in double)
 *   coef = max_norm / (total + 1e-6);  g *= coef when coef < 1.
 * Each thread sums a fixed slice of every run and the per-thread sums are added in thread
 * order, so the norm is the same on every call with the same thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "core/status_internal.h"
#include "dml/optim.h"
#include "optim/optim_internal.h"

static double sum_squares(const float *restrict x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += (double)x[i + k] * (double)x[i + k];
  double s = 0.0;
  for (int k = 0; k < 8; k++) s += acc[k];
  for (; i < n; i++) s += (double)x[i] * (double)x[i];
  return s;
}

#define STACK_RUNS 256
#define MAX_THREADS 256

static void scale(float *restrict x, int64_t n, float c) {
  for (int64_t i = 0; i < n; i++) x[i] *= c;
}

dml_status dml_clip_grad_norm(dml_param_store *params, float max_norm, float *total_norm) {
  if (total_norm) *total_norm = 0.0f;
  if (!params)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_clip_grad_norm: parameter store is NULL");
  if (!(max_norm >= 0.0f))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "max_norm %g must be >= 0", (double)max_norm);
  int count = dml_params_count(params);
  for (int i = 0; i < count; i++)
    if (!dml_params_get(params, i)->grad)
      return dml__error(DML_ERR_STATE,
                        "parameter store is not finalized (parameter '%s' has no storage)",
                        dml_params_get(params, i)->name);
  /* No heap allocation for ordinary models (a training step should not allocate): the run
   * list lives on the stack up to STACK_RUNS parameters, the per-thread sums always do. */
  dml__param_run stack_runs[STACK_RUNS];
  dml__param_run *runs =
      count <= STACK_RUNS ? stack_runs : malloc((size_t)count * sizeof *runs);
  int nt = omp_get_max_threads();
  if (nt > MAX_THREADS) nt = MAX_THREADS;
  double partial[MAX_THREADS] = {0};
  if (!runs) return dml__error(DML_ERR_NO_MEMORY, "dml_clip_grad_norm: out of memory");
  int64_t total;
  int n_runs = dml__param_runs(params, 0, runs, &total);
  float *grads = dml_params_grads(params);
#pragma omp parallel num_threads(nt) if (total > DML__OPTIM_PAR_MIN)
  {
    double acc = 0.0;
    for (int r = 0; r < n_runs; r++) {
      int64_t lo, hi;
      dml__thread_slice(runs[r].end - runs[r].begin, &lo, &hi);
      acc += sum_squares(grads + runs[r].begin + lo, hi - lo);
    }
    partial[omp_get_thread_num()] = acc;
  }
  double sum = 0.0;
  for (int t = 0; t < nt; t++) sum += partial[t];
  double norm = sqrt(sum);
  if (total_norm) *total_norm = (float)norm;
  if (!isfinite(norm)) {
    int64_t at = 0;
    int bad = dml__first_nonfinite_grad(params, runs, n_runs, total, &at);
    if (runs != stack_runs) free(runs);
    if (bad >= 0)
      return dml__error(DML_ERR_NOT_FINITE,
                        "gradient of '%s' holds %g at element %lld, so its norm cannot be "
                        "clipped; gradients left unchanged",
                        dml_params_get(params, bad)->name,
                        (double)dml_params_get(params, bad)->grad[at], (long long)at);
    return dml__error(DML_ERR_NOT_FINITE, "gradient norm is not finite; gradients left unchanged");
  }
  double coef = (double)max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    const float c = (float)coef;
#pragma omp parallel num_threads(nt) if (total > DML__OPTIM_PAR_MIN)
    for (int r = 0; r < n_runs; r++) {
      int64_t lo, hi;
      dml__thread_slice(runs[r].end - runs[r].begin, &lo, &hi);
      scale(grads + runs[r].begin + lo, hi - lo, c);
    }
  }
  if (runs != stack_runs) free(runs);
  return DML_OK;
}
