/* Internal pieces of the training module shared between the loop (trainer.c) and the progress
 * display (progress.c). */
#ifndef DML_TRAIN_INTERNAL_H
#define DML_TRAIN_INTERNAL_H

#include "dml/eval.h"
#include "dml/train.h"

/* Embeds val in evaluation mode and computes the self-retrieval metrics of rows[0..n_rows)
 * (rows NULL: every row). */
dml_status dml__train_validate(dml_model *m, dml_graph *g, const dml_dataset *val,
                               const int64_t *rows, int64_t n_rows, dml_distance dist,
                               dml_retrieval_metrics *out);

/* Progress display: a bar redrawn in place, or a plain line every tenth of an epoch. */
void dml__progress_start(const dml_train_options *o, int64_t epoch, int64_t batch,
                         int64_t batches_per_epoch);
void dml__progress_step(const dml_train_options *o, int64_t epoch, int64_t batch,
                        int64_t batches_per_epoch, double mean_loss, double images_per_s,
                        double elapsed_s, int64_t steps_this_run);
void dml__progress_epoch(const dml_train_options *o, const dml_train_history *h,
                         const dml_epoch_record *r, int improved);
void dml__progress_interrupted(const dml_train_options *o, int64_t epoch, int64_t batch);

#endif
