/* Thread count for dml's OpenMP kernels and OpenBLAS. */
#ifndef DML_THREADS_H
#define DML_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Sets the threads used by OpenMP kernels and by OpenBLAS (n >= 1). */
void dml_set_num_threads(int n);
int dml_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
