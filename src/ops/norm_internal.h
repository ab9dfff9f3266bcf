/* Normalisation ops used by the model layers but not public: batch norm fused with the ReLU
 * that follows it, for inference. */
#ifndef DML_OPS_NORM_INTERNAL_H
#define DML_OPS_NORM_INTERNAL_H

#include "dml/graph.h"

/* relu(batchnorm(x)) with the running statistics, in one pass and over x's own value when x
 * came from conv2d, conv1d or linear and has no consumer yet, when g records for inference
 * (dml_model_predict). Otherwise exactly dml_op_batchnorm (the ReLU layer that follows then
 * runs as usual). The ReLU layer after a fused node passes it through (dml__op_relu_inplace). */
dml_status dml__op_batchnorm_relu_inference(dml_graph *g, dml_node *x, dml_node *gamma,
                                            dml_node *beta, float *running_mean,
                                            float *running_var, float momentum, float eps,
                                            dml_node **out);

#endif
