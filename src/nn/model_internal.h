/* The model struct, shared by the parser (model_text.c) and the model functions (model.c). */
#ifndef DML_NN_MODEL_INTERNAL_H
#define DML_NN_MODEL_INTERNAL_H

#include "dml/nn.h"
#include "nn/layer.h"

struct dml_model {
  char *text;   /* the model text as given */
  char *source; /* name used in messages */
  int in_ndim;
  int64_t in_shape[DML_MAX_DIMS];
  dml__layer **layers;
  int n_layers, cap_layers;
  dml_param_store *store;
};

#endif
