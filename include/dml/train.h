/* Training: the configuration of a run (a JSON file, every key also settable as text from the
 * command line) and the training loop (dml_trainer).
 *
 * A dml_train_config is opaque and owned by the caller (dml_train_config_free). Keys are dotted
 * paths ("optimizer.lr", "split.test_classes"); docs/train.md lists them all with their
 * defaults. Every key has a default, so a config holds every key after parsing; an unknown key
 * or a value of the wrong type is an error that names the key.
 *
 * A dml_trainer borrows the model, the data sets and the loss spec given to dml_trainer_new
 * (they must outlive it) and owns its loss, optimisers, loader and history. */
#ifndef DML_TRAIN_H
#define DML_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "dml/data.h"
#include "dml/distance.h"
#include "dml/loss.h"
#include "dml/nn.h"
#include "dml/optim.h"
#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Configuration ---------------------------------------------------------------------- */
typedef struct dml_train_config dml_train_config;

/* A config with every key at its default. */
dml_status dml_train_config_new(dml_train_config **out);
void dml_train_config_free(dml_train_config *c); /* NULL is a no-op */

/* Merges a JSON object (text) into the config: nested objects address dotted keys
 * ({"optimizer": {"lr": 0.01}} sets "optimizer.lr"). source_name (may be NULL) prefixes
 * messages. Unknown keys, wrong types and values outside a key's choices are errors naming the
 * key; on error the config is unchanged. */
dml_status dml_train_config_merge_json(dml_train_config *c, const char *json_text,
                                       const char *source_name);
/* Reads a JSON file and merges it. */
dml_status dml_train_config_merge_file(dml_train_config *c, const char *path);

/* Sets one key from text, as a command-line flag gives it: numbers as numbers, booleans as
 * true/false/1/0, lists as "6,7,8,9" or "[6,7,8,9]". */
dml_status dml_train_config_set(dml_train_config *c, const char *key, const char *value);

/* 1 when the key exists in the schema. */
int dml_train_config_has_key(const char *key);

/* Getters. The key must exist (a programming error otherwise). Strings stay valid until the key
 * is set again or the config is freed; "" means unset. */
const char *dml_train_config_string(const dml_train_config *c, const char *key);
int64_t dml_train_config_int(const dml_train_config *c, const char *key);
double dml_train_config_number(const dml_train_config *c, const char *key);
int dml_train_config_bool(const dml_train_config *c, const char *key);
/* Lists: copies up to max values into out and returns the list's length. */
int dml_train_config_ints(const dml_train_config *c, const char *key, int64_t *out, int max);
int dml_train_config_numbers(const dml_train_config *c, const char *key, double *out, int max);

/* The whole resolved config as indented JSON (malloc'ed; caller frees). NULL on no memory. */
char *dml_train_config_to_json(const dml_train_config *c);

/* Every key, one "key (type, default): description" per line (static text). */
const char *dml_train_config_catalogue(void);

/* ---- Multi-process hooks ---------------------------------------------------------------- *
 * The step is written for data parallelism: each process embeds its own batch, the embeddings
 * and labels of all processes are gathered before the loss (so every process computes the loss
 * over the global batch and the gradient of its own rows), and parameter gradients are summed
 * across processes before the optimiser steps. A single process needs no dml_comm (NULL); an MPI
 * build fills these with MPI_Allgather and MPI_Allreduce. */
typedef struct dml_comm {
  int rank, size;
  void *ctx;
  /* Gathers `bytes` from every process into recv (size * bytes, rank order). */
  dml_status (*all_gather)(void *ctx, const void *send, int64_t bytes, void *recv);
  /* In-place sum across processes. */
  dml_status (*all_reduce_sum)(void *ctx, float *buf, int64_t n);
} dml_comm;

/* ---- Trainer ---------------------------------------------------------------------------- */
typedef enum dml_progress_mode {
  DML_PROGRESS_NONE,  /* silent */
  DML_PROGRESS_LINES, /* a plain line every tenth of an epoch and at each epoch's end */
  DML_PROGRESS_BAR    /* a progress bar redrawn in place (for a terminal) */
} dml_progress_mode;

typedef struct dml_train_options {
  const char *loss_spec;        /* e.g. "triplet margin=0.2 miner=semihard" */
  int32_t num_classes;          /* for proxy and classifier losses: labels in [0, num_classes) */
  dml_loader_config loader;     /* batching, augmentation, prefetch; loader.seed is set from seed */
  dml_optim_config optim;       /* for the model and the loss's parameters */
  float loss_lr_scale;          /* the loss's parameters (proxies) learn at lr * this (1) */
  dml_schedule schedule;        /* base_lr is taken from optim.lr; total_steps filled in if 0 */
  float clip_grad_norm;         /* 0 = off */
  int epochs;
  uint64_t seed;                /* initialisation of the loss, sampling, augmentation, dropout */
  /* Validation after every epoch: MAP@R (or the chosen metric) of val against itself. */
  const dml_dataset *val;       /* NULL: no validation */
  const int64_t *val_rows;      /* validate on these rows of val only (NULL: all); val is
                                 * embedded whole, so no copy of the subset is needed */
  int64_t val_num_rows;
  dml_distance distance;        /* for validation retrieval */
  const char *val_metric;       /* "map_at_r" (default), "p_at_1", "r_precision" */
  int patience;                 /* stop after this many epochs without improvement; 0 = never */
  /* Checkpoints: <dir>/last.* after every epoch (and on interruption), <dir>/best.* whenever
   * the validation metric improves. NULL: none. */
  const char *checkpoint_dir;
  const char *metadata_json;    /* JSON object stored in every checkpoint (may be NULL) */
  const char *log_path;         /* JSON lines, one per step and per epoch; NULL: none */
  dml_progress_mode progress;
  FILE *progress_stream;        /* NULL = stderr */
  const dml_comm *comm;         /* NULL: one process */
  int64_t max_steps;            /* stop as if interrupted after this many steps of this call to
                                 * dml_trainer_run (a time budget); 0 = no limit */
} dml_train_options;

/* Defaults: Adam lr 1e-3, P x K 6 x 32 batches, 3 epochs, seed 1, cosine distance, MAP@R,
 * progress lines. */
dml_train_options dml_train_options_default(void);

typedef struct dml_epoch_record {
  int epoch;              /* 1-based */
  double loss;            /* mean training loss of the epoch */
  double val_metric;      /* NaN without validation */
  double seconds;         /* training time of the epoch (validation excluded) */
  double images_per_s;
  double lr;              /* learning rate at the epoch's last step */
} dml_epoch_record;

typedef struct dml_train_history {
  int num_epochs;                 /* epochs completed */
  const dml_epoch_record *epochs;
  int64_t num_steps;              /* steps completed */
  const float *step_loss;         /* num_steps values */
  int best_epoch;                 /* 0 when no validation */
  double best_val_metric;
  int64_t images;                 /* training images processed (this process) */
  double train_seconds;           /* training loop wall time, validation excluded */
  int stopped_early;              /* patience ran out */
  int interrupted;                /* dml_trainer_request_stop was called */
} dml_train_history;

typedef struct dml_trainer dml_trainer;

/* m: a model with initialised weights (dml_model_init_weights or a checkpoint); train: the
 * training set (its example shape must equal the model's input shape). */
dml_status dml_trainer_new(dml_model *m, const dml_dataset *train, const dml_train_options *o,
                           dml_trainer **out);
void dml_trainer_free(dml_trainer *t); /* NULL is a no-op */

/* Restores a checkpoint written by this trainer (a prefix such as "run/last"): weights,
 * optimiser state, the loss's parameters, the position (epoch and batch), the history and the
 * best metric. Continuing from it with the same options gives the same weights, bit for bit,
 * as the uninterrupted run (same seed, same threads). */
dml_status dml_trainer_resume(dml_trainer *t, const char *checkpoint_prefix);

/* Trains until the configured epochs are done, patience runs out or a stop is requested.
 * With a checkpoint directory and a stop request, the position is saved as <dir>/last before
 * returning. */
dml_status dml_trainer_run(dml_trainer *t);

/* Asks a running dml_trainer_run to stop after the current step. Async-signal-safe (it only
 * sets a flag): call it from a SIGINT handler. */
void dml_trainer_request_stop(dml_trainer *t);

const dml_train_history *dml_trainer_history(const dml_trainer *t);

/* Puts the weights (model and loss) of the epoch with the best validation metric back into the
 * model. DML_ERR_STATE when no epoch was validated. */
dml_status dml_trainer_restore_best(dml_trainer *t);

/* The loss the trainer optimises (its parameters hold proxies or a classifier head). */
dml_loss *dml_trainer_loss(dml_trainer *t);

#ifdef __cplusplus
}
#endif
#endif
