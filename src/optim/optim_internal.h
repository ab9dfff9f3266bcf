/* Shared by the optimiser and gradient clipping: the trainable parts of a parameter store as
 * runs of contiguous elements, and the per-thread split of a run that OpenMP kernels use. */
#ifndef DML_OPTIM_INTERNAL_H
#define DML_OPTIM_INTERNAL_H

#include <stdint.h>

#include "dml/params.h"

/* Below this many trainable elements the kernels run on one thread. */
#define DML__OPTIM_PAR_MIN 32768

/* Elements [begin, end) of the value/gradient blocks, all belonging to trainable parameters
 * of one group. Neighbouring parameters are merged only when the first ends exactly where the
 * next begins, so store padding is never read or written. */
typedef struct dml__param_run {
  int64_t begin, end;
  int group;
} dml__param_run;

/* Fills runs (room for dml_params_count(s) entries) with the store's trainable parameters in
 * order; parameters of different groups stay in separate runs when split_groups is set.
 * Returns the number of runs and, in total (may be NULL), the elements they cover. */
int dml__param_runs(dml_param_store *s, int split_groups, dml__param_run *runs, int64_t *total);

/* This thread's part [*lo, *hi) of n elements inside an OpenMP parallel region (the whole range
 * outside one): equal contiguous slices, multiples of 16 floats so slices of a 64-byte aligned
 * run never share a cache line. Depends only on n and the team size. */
void dml__thread_slice(int64_t n, int64_t *lo, int64_t *hi);

/* Index (into the store) of the first trainable parameter whose gradient holds NaN or Inf, or
 * -1 when every one is finite; *element receives the position inside that parameter. */
int dml__first_nonfinite_grad(dml_param_store *s, const dml__param_run *runs, int n_runs,
                              int64_t total, int64_t *element);

#endif
