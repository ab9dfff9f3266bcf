/* Metric-learning losses (formulas: docs/losses.md).
 * A dml_loss is made from a spec string, a loss name plus key=value parameters, the same string
 * the command line and config files use:
 *     "triplet margin=0.2 distance=cosine miner=semihard miner.margin=0.2"
 *     "cross_entropy + 0.5*triplet miner=batch_hard"        (a weighted sum of losses)
 *     "contrastive neg_margin=0.5 memory=1024"               (cross-batch memory, XBM)
 * An unknown name or parameter is an error whose message lists the valid ones.
 * The caller owns the dml_loss (dml_loss_free). Losses with learnable parameters (proxies,
 * class weights, the margin loss's beta) keep them in a parameter store owned by the loss
 * (dml_loss_params): optimise it with dml_optim like a model's, save it with the checkpoints.
 * Gradients with respect to those parameters accumulate (+=) into the store's gradients; zero
 * them between steps (dml_params_zero_grad). Nothing passed in is retained after a call
 * returns, except that cross-batch memory copies the batch's embeddings and labels. */
#ifndef DML_LOSS_H
#define DML_LOSS_H

#include <stdint.h>

#include "dml/graph.h"
#include "dml/params.h"
#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dml_loss dml_loss;

typedef struct dml_loss_config {
  int64_t dim;         /* embedding width D; required by losses with parameters */
  int64_t num_classes; /* C: proxy and classifier losses need it, and labels in [0, C) */
  uint64_t seed;       /* initialises parameters; drives random miners (with the step) */
} dml_loss_config;

/* Builds a loss from its spec. cfg may be NULL for losses without parameters. */
dml_status dml_loss_new(const char *spec, const dml_loss_config *cfg, dml_loss **out);
void dml_loss_free(dml_loss *l); /* NULL is a no-op */

/* The spec with every parameter spelled out at its value ("triplet margin=0.2 swap=0 ..."):
 * owned by the loss, valid until dml_loss_free. */
const char *dml_loss_spec(const dml_loss *l);

/* The loss's learnable parameters, or NULL when it has none. Names are "<term>.<name>", e.g.
 * "0.proxies" for the first term of a sum. */
dml_param_store *dml_loss_params(dml_loss *l);

/* Every loss name, miner name and reduction, one "name: parameters" per line (static). */
const char *dml_loss_catalogue(void);

/* A reference set: embeddings compared against but not trained (pytorch-metric-learning's
 * ref_emb). With a reference set the batch is compared only with it, not with itself; no
 * gradient flows to it. */
typedef struct dml_loss_ref {
  const float *emb;      /* [n, d] row-major */
  const int32_t *labels; /* [n] */
  int64_t n;
} dml_loss_ref;

/* Standalone call, for use from another training framework. emb [b, d] row-major float32,
 * labels [b] (any int32 values; proxy and classifier losses need [0, num_classes)).
 * Writes the loss to *loss and, when grad_emb is not NULL, dloss/demb to grad_emb [b, d]
 * (overwritten). Parameter gradients accumulate into dml_loss_params. ref may be NULL.
 * A batch with no valid pair or triplet gives loss 0 and a zero gradient. On an error the
 * contents of grad_emb are unspecified and the cross-batch memory is unchanged. */
dml_status dml_loss_compute(dml_loss *l, const float *emb, const int32_t *labels, int64_t b,
                            int64_t d, const dml_loss_ref *ref, float *loss, float *grad_emb);

/* The same loss as a node of an autograd graph: emb is a [b, d] node, the result a scalar node
 * that combines with other terms (dml_op_add, dml_op_scale) before dml_graph_backward. The
 * loss's parameters enter the graph as parameter nodes, so their gradients accumulate into
 * dml_loss_params during backward. labels and ref are read during this call only. */
dml_status dml_loss_node(dml_loss *l, dml_graph *g, dml_node *emb, const int32_t *labels,
                         const dml_loss_ref *ref, dml_node **out);

/* Training step for random miners (distance-weighted sampling): the draws of a call are a pure
 * function of (seed, step). Incremented by one after each compute/node call. */
void dml_loss_set_step(dml_loss *l, uint64_t step);

/* Cross-batch memory: number of stored embeddings, and forgetting them (0 when the loss has
 * no memory). */
int64_t dml_loss_memory_size(const dml_loss *l);
void dml_loss_memory_clear(dml_loss *l);

#ifdef __cplusplus
}
#endif
#endif
