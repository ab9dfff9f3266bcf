/* Activation ops used by the model layers but not public: the in-place ReLU. */
#ifndef DML_OPS_ACTIVATION_INTERNAL_H
#define DML_OPS_ACTIVATION_INTERNAL_H

#include "dml/graph.h"

/* ReLU over x's own value when x came from conv2d, conv1d, linear or batchnorm and has no
 * consumer yet (the caller promises none will follow); otherwise dml_op_relu. */
dml_status dml__op_relu_inplace(dml_graph *g, dml_node *x, dml_node **out);

#endif
