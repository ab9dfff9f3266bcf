/* One knob for OpenMP and OpenBLAS threads. */
#include "dml/threads.h"

#include <omp.h>

void openblas_set_num_threads(int num_threads);

void dml_set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int dml_get_num_threads(void) { return omp_get_max_threads(); }
