/* Models described in text, one layer per line (see models/ and docs/model-text.md):
 *
 *   input 1 28 28          # shape of one example, without the batch dimension
 *   conv2d out=32 k=3 pad=1
 *   batchnorm
 *   relu
 *   maxpool2d k=2
 *   flatten
 *   linear out=128
 *   l2norm
 *
 * A model owns its layers and its parameter store. Parameters are named "<line index>.<name>"
 * ("0.weight", "1.running_mean"), counting layers from 0 after the input line, so the weights
 * load into an equivalent torch.nn.Sequential. */
#ifndef DML_NN_H
#define DML_NN_H

#include <stdint.h>
#include <stdio.h>

#include "dml/graph.h"
#include "dml/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_model dml_model;

/* Parses model text. Errors name the line ("model.txt:4: conv2d: unknown option 'kernal'").
 * `source_name` is used in messages (may be NULL). Weights are zero until
 * dml_model_init_weights or a checkpoint load. */
dml_status dml_model_parse(const char *text, const char *source_name, dml_model **out);
dml_status dml_model_load_text_file(const char *path, dml_model **out);
void dml_model_free(dml_model *m); /* NULL is a no-op */

/* Initialises every parameter (layer defaults as torch: Kaiming-uniform weights, batch-norm
 * gamma 1, beta 0, running var 1) from the seed. Same seed, same weights. */
dml_status dml_model_init_weights(dml_model *m, uint64_t seed);

/* Records the forward pass on g for a batch x[N, input shape...]. Training behaviour (dropout,
 * batch statistics) follows dml_graph_training(g). */
dml_status dml_model_forward(dml_model *m, dml_graph *g, dml_node *x, dml_node **out);

/* Evaluation-mode forward of n examples (x: n * input_numel floats) into out
 * (n * output_numel floats). With several threads each thread embeds its own chunks of
 * batch_size / threads examples on its own graph (g serves the first); with one thread, chunks
 * of batch_size on g. Same threads and batch size, same bits. */
dml_status dml_model_predict(dml_model *m, dml_graph *g, const float *x, int64_t n,
                             int64_t batch_size, float *out);

/* Prints the layer table: index, layer, output shape, parameters; and the totals. */
void dml_model_print_summary(const dml_model *m, FILE *f);

dml_param_store *dml_model_params(dml_model *m);
const char *dml_model_text(const dml_model *m);
int dml_model_num_layers(const dml_model *m);
/* Shapes without the batch dimension. shape must hold DML_MAX_DIMS entries. */
void dml_model_input_shape(const dml_model *m, int *ndim, int64_t *shape);
void dml_model_output_shape(const dml_model *m, int *ndim, int64_t *shape);
int64_t dml_model_input_numel(const dml_model *m);
int64_t dml_model_output_numel(const dml_model *m);

#ifdef __cplusplus
}
#endif
#endif
