/* Differentiable ops on graph nodes (see graph.h). Each records one node on the tape and
 * returns it through `out`; the result lives in the graph's arena until dml_graph_reset.
 * Shapes are row-major. Images are NCHW, signals NCL. Ops validate shapes and return
 * DML_ERR_SHAPE with both shapes in the message on a mismatch. */
#ifndef DML_OPS_H
#define DML_OPS_H

#include <stdint.h>

#include "dml/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- linear algebra (OpenBLAS sgemm) ---- */
/* y = op(a) op(b); a, b rank 2; op transposes when the flag is set. */
dml_status dml_op_matmul(dml_graph *g, dml_node *a, dml_node *b, int trans_a, int trans_b,
                         dml_node **out);
/* y[N,out] = x[N,in] W[out,in]^T + b[out] (b may be NULL). Same layout as torch.nn.Linear. */
dml_status dml_op_linear(dml_graph *g, dml_node *x, dml_node *w, dml_node *b, dml_node **out);

/* ---- elementwise ---- */
/* y = a + b, y = a * b: same shape, or b with numel 1 (a scalar broadcast). */
dml_status dml_op_add(dml_graph *g, dml_node *a, dml_node *b, dml_node **out);
dml_status dml_op_sub(dml_graph *g, dml_node *a, dml_node *b, dml_node **out);
dml_status dml_op_mul(dml_graph *g, dml_node *a, dml_node *b, dml_node **out);
/* y = s * x */
dml_status dml_op_scale(dml_graph *g, dml_node *x, float s, dml_node **out);
/* Adds bias[C] along dim 1 of x[N,C,...]. */
dml_status dml_op_add_bias(dml_graph *g, dml_node *x, dml_node *bias, dml_node **out);

/* ---- activations ---- */
dml_status dml_op_relu(dml_graph *g, dml_node *x, dml_node **out);
dml_status dml_op_leaky_relu(dml_graph *g, dml_node *x, float negative_slope, dml_node **out);
/* Exact GELU, x * Phi(x) (torch's approximate='none'). */
dml_status dml_op_gelu(dml_graph *g, dml_node *x, dml_node **out);
dml_status dml_op_sigmoid(dml_graph *g, dml_node *x, dml_node **out);
dml_status dml_op_tanh(dml_graph *g, dml_node *x, dml_node **out);
/* (1/beta) log(1 + exp(beta x)), linear above beta x > threshold (torch defaults 1, 20). */
dml_status dml_op_softplus(dml_graph *g, dml_node *x, float beta, float threshold,
                           dml_node **out);

/* ---- convolution ---- */
typedef struct dml_conv_params {
  int stride[2];   /* [h, w]; conv1d uses index 0 */
  int padding[2];  /* zero padding on both sides */
  int dilation[2];
  int groups;
} dml_conv_params;
/* Stride 1, no padding, dilation 1, one group. */
dml_conv_params dml_conv_params_default(void);
/* y[N,O,Ho,Wo] = conv(x[N,C,H,W], w[O,C/groups,KH,KW]) + b[O] (b may be NULL). */
dml_status dml_op_conv2d(dml_graph *g, dml_node *x, dml_node *w, dml_node *b,
                         const dml_conv_params *p, dml_node **out);
/* y[N,O,Lo] = conv(x[N,C,L], w[O,C/groups,K]) + b[O]. */
dml_status dml_op_conv1d(dml_graph *g, dml_node *x, dml_node *w, dml_node *b,
                         const dml_conv_params *p, dml_node **out);

/* ---- pooling ---- */
typedef struct dml_pool_params {
  int kernel[2];
  int stride[2];  /* 0 means "same as kernel" (torch's default) */
  int padding[2];
  int count_include_pad; /* average pooling only; torch's default is 1 */
} dml_pool_params;
/* x[N,C,H,W] -> y[N,C,Ho,Wo]; padded positions never win a max. */
dml_status dml_op_maxpool2d(dml_graph *g, dml_node *x, const dml_pool_params *p,
                            dml_node **out);
dml_status dml_op_avgpool2d(dml_graph *g, dml_node *x, const dml_pool_params *p,
                            dml_node **out);
/* x[N,C,L] -> y[N,C,Lo] (index 0 of the params). */
dml_status dml_op_maxpool1d(dml_graph *g, dml_node *x, const dml_pool_params *p,
                            dml_node **out);
dml_status dml_op_avgpool1d(dml_graph *g, dml_node *x, const dml_pool_params *p,
                            dml_node **out);
/* x[N,C,...] -> y[N,C]: mean / max over all positions after dim 1. */
dml_status dml_op_global_avgpool(dml_graph *g, dml_node *x, dml_node **out);
dml_status dml_op_global_maxpool(dml_graph *g, dml_node *x, dml_node **out);

/* ---- normalisation ---- */
/* Batch norm over x[N,C] or x[N,C,L] or x[N,C,H,W] with gamma[C], beta[C] nodes (either may
 * be NULL for no affine part). running_mean / running_var (C floats each, may be NULL) are
 * updated in training mode as torch does (momentum, unbiased variance) and used in evaluation
 * mode (dml_graph_training(g) == 0), where they must be given. */
dml_status dml_op_batchnorm(dml_graph *g, dml_node *x, dml_node *gamma, dml_node *beta,
                            float *running_mean, float *running_var, float momentum, float eps,
                            dml_node **out);
/* Layer norm over the last dimension of x[..., D] with gamma[D], beta[D] (may be NULL). */
dml_status dml_op_layernorm(dml_graph *g, dml_node *x, dml_node *gamma, dml_node *beta,
                            float eps, dml_node **out);
/* Row-wise L2 normalisation over the last dimension: y = x / max(||x||, eps). */
dml_status dml_op_l2_normalize(dml_graph *g, dml_node *x, float eps, dml_node **out);

/* ---- regularisation ---- */
/* Inverted dropout: in training mode zeroes each element with probability p and scales the
 * rest by 1/(1-p); the identity in evaluation mode. The mask comes from the graph's seed. */
dml_status dml_op_dropout(dml_graph *g, dml_node *x, float p, dml_node **out);

/* ---- shape ---- */
/* Same data, new shape (same numel); one dimension may be -1. */
dml_status dml_op_reshape(dml_graph *g, dml_node *x, int ndim, const int64_t *shape,
                          dml_node **out);
/* x[N, ...] -> y[N, prod(...)] */
dml_status dml_op_flatten(dml_graph *g, dml_node *x, dml_node **out);
/* Concatenation along `axis` of n nodes that agree on every other dimension. */
dml_status dml_op_concat(dml_graph *g, dml_node *const *xs, int n, int axis, dml_node **out);
/* y = x[..., start:start+length, ...] along `axis`. */
dml_status dml_op_slice(dml_graph *g, dml_node *x, int axis, int64_t start, int64_t length,
                        dml_node **out);

/* ---- softmax family and losses (over the last dimension) ---- */
dml_status dml_op_softmax(dml_graph *g, dml_node *x, dml_node **out);
dml_status dml_op_log_softmax(dml_graph *g, dml_node *x, dml_node **out);
/* Mean cross-entropy of logits[N,C] against integer labels in [0,C) (copied), with label
 * smoothing eps: target = (1-eps) one-hot + eps/C, as torch. Result has one element. */
dml_status dml_op_cross_entropy(dml_graph *g, dml_node *logits, const int32_t *labels,
                                float label_smoothing, dml_node **out);
/* Sum / mean of all elements (one-element result). */
dml_status dml_op_sum(dml_graph *g, dml_node *x, dml_node **out);
dml_status dml_op_mean(dml_graph *g, dml_node *x, dml_node **out);
/* Mean squared error between same-shaped a and b (one-element result). */
dml_status dml_op_mse(dml_graph *g, dml_node *a, dml_node *b, dml_node **out);

#ifdef __cplusplus
}
#endif
#endif
