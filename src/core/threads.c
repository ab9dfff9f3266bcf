/* One knob for OpenMP and OpenBLAS threads. */
#include "dml/threads.h"

#include <omp.h>

void openblas_set_num_threads(int num_threads);

#if defined(__clang__)
/* Debian's OpenMP build of OpenBLAS is made for GCC's libgomp. Under clang's libomp (through
 * its GOMP compatibility layer) a threaded sgemm of some shapes (a linear layer's backward at
 * batch 40) waits forever for a team member. Clang builds therefore run OpenBLAS on the
 * calling thread, from load time on; dml's own kernels still use every OpenMP thread. */
#define DML_BLAS_THREADS(n) 1
__attribute__((constructor)) static void dml__blas_single_thread(void) {
  openblas_set_num_threads(1);
}
#else
#define DML_BLAS_THREADS(n) (n)
#endif

void dml_set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(DML_BLAS_THREADS(n));
}

int dml_get_num_threads(void) { return omp_get_max_threads(); }
