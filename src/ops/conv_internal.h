/* Shared by the convolution files: the geometry of one convolution and the two kernel paths.
 *   conv.c        public ops, validation, choice of kernel, bias
 *   im2col.c      portable path: im2col / col2im + OpenBLAS sgemm, any geometry
 *   conv_direct.c AVX-512 direct kernels (built when the compiler targets AVX-512)
 * A conv1d is a conv2d with H = KH = 1. Layouts: x[N,C,H,W], w[O,C/G,KH,KW], y[N,O,Ho,Wo]. */
#ifndef DML_OPS_CONV_INTERNAL_H
#define DML_OPS_CONV_INTERNAL_H

#include <stdint.h>

#include "core/graph_internal.h"

typedef struct dml__conv_geom {
  int64_t n, c, h, w; /* input */
  int64_t o, kh, kw;  /* weight */
  int64_t ho, wo;     /* output */
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t groups, cg, og; /* groups, input and output channels per group */
} dml__conv_geom;

/* Every pass works in a caller-provided workspace (floats, 64-byte aligned) whose size the
 * matching *_size function gives; conv.c allocates it from the graph's arena at forward time,
 * large enough for the forward and for the backward passes that will run, so backward never
 * allocates. nt is the OpenMP team size the pass was sized for (it runs with at most nt threads).
 * All gradient outputs accumulate (+=). */

/* Portable path (im2col.c): one workspace size serves forward and backward. */
int64_t dml__conv_gemm_size(const dml__conv_geom *q);
/* y = conv(x, w), without bias. */
void dml__conv_gemm_forward(const dml__conv_geom *q, float *ws, const float *x, const float *w,
                            float *y);
/* dx and/or dw (either may be NULL) from dy. */
void dml__conv_gemm_backward(const dml__conv_geom *q, float *ws, const float *x, const float *w,
                             const float *dy, float *dx, float *dw);

/* Direct path (conv_direct.c). A size of -1 means the geometry is not one the direct kernels
 * handle (or the build has no AVX-512): use the portable path. */
int64_t dml__conv_direct_forward_size(const dml__conv_geom *q, int nt);
/* y = conv(x, w) + b (b may be NULL). */
void dml__conv_direct_forward(const dml__conv_geom *q, int nt, float *ws, const float *x,
                              const float *w, const float *b, float *y);
int64_t dml__conv_direct_backward_w_size(const dml__conv_geom *q, int nt);
/* dw, and db when not NULL (fused into the pass over dy). */
void dml__conv_direct_backward_w(const dml__conv_geom *q, int nt, float *ws, const float *x,
                                 const float *dy, float *dw, float *db);
int64_t dml__conv_direct_backward_x_size(const dml__conv_geom *q, int nt);
void dml__conv_direct_backward_x(const dml__conv_geom *q, int nt, float *ws, const float *w,
                                 const float *dy, float *dx);

/* Test hooks: when nonzero, every pass uses the portable path (force_gemm), or the direct path
 * uses only its general kernels, not the Winograd and small-reduction variants (force_direct).
 * Not thread-safe; for tests. */
extern int dml__conv_force_gemm;
extern int dml__conv_force_direct;

#endif
