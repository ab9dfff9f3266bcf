/* The end of `dml train`: evaluation of the trained embedding on the test set (retrieval on
 * unseen, seen and all classes, clustering NMI, kNN classification, baselines) and the report
 * folder: metrics.json, report.md, the final model, test embeddings and the pictures. */
#ifndef DML_CLI_TRAIN_REPORT_H
#define DML_CLI_TRAIN_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "dml/dml.h"
#include "dml/train.h"
#include "dml/viz.h"

#define TRAIN_REPORT_MAX_CHANNELS 16

/* Retrieval and clustering figures of one subset of the test classes. */
typedef struct train_subset_metrics {
  const char *name; /* "unseen", "seen", "all" */
  int64_t n;        /* test items in the subset; < 2 means not evaluated */
  int classes;
  dml_retrieval_metrics r;
  double nmi;
} train_subset_metrics;

typedef struct train_run_info {
  int threads;
  double t_start;                 /* train_now() at the start of the command */
  int open_set;                   /* the test classes were kept out of training */
  int num_unseen;
  int32_t unseen[256];
  int norm_channels;
  float mean[TRAIN_REPORT_MAX_CHANNELS], std[TRAIN_REPORT_MAX_CHANNELS];
  const char *outdir;
  const dml_train_config *config;
  const dml_train_history *history;
  int have_baselines;             /* raw and untrained below are filled */
  train_subset_metrics raw[3], untrained[3]; /* unseen, seen (not evaluated), all */
} train_run_info;

double train_now(void);
int train_is_unseen(const train_run_info *info, int32_t label);
/* The JSON metadata stored with every checkpoint: input normalisation and class names. */
void train_checkpoint_metadata(const train_run_info *info, const dml_dataset *train, char *buf,
                               size_t cap);
/* Evaluation-mode embedding of ds (malloc'ed n x d into *out); seconds may be NULL. */
dml_status train_report_embed(dml_model *m, const dml_dataset *ds, float **out, double *seconds);
/* The two baselines, before training: raw inputs (Euclidean) and the untrained network, on
 * the test set's subsets. Returns 0, or 1 after printing why not. */
int train_report_baselines(train_run_info *info, dml_model *m, const dml_dataset *test,
                           dml_distance dist, uint64_t seed);
/* Evaluates and writes the report folder. Returns 0, or 1 after printing why not. */
int train_report_write(const train_run_info *info, dml_model *m, const dml_dataset *train,
                       const dml_dataset *test, dml_distance dist, uint64_t seed);

#endif
