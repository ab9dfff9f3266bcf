/* Checkpoints: weights in safetensors (readable by Python's safetensors and PyTorch), model text
 * and training metadata in JSON. A checkpoint at prefix P is two files, P.safetensors and
 * P.json; each is written to a temporary name and renamed, so a crash never leaves a
 * half-written file where a good one was. */
#ifndef DML_CHECKPOINT_H
#define DML_CHECKPOINT_H

#include "dml/nn.h"
#include "dml/optim.h"
#include "dml/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes every parameter of the store as an F32 tensor under its name. meta (may be NULL) is a
 * NULL-terminated list of key, value, key, value, ... strings for the "__metadata__" map. */
dml_status dml_safetensors_write(const char *path, dml_param_store *params,
                                 const char *const *meta);

/* Reads tensors into a finalized store whose names and shapes must match the file exactly;
 * missing, extra and mis-shaped tensors are reported by name. Tensors whose names start with
 * `skip_prefix` (may be NULL) are ignored. The store is unchanged on failure. */
dml_status dml_safetensors_read(const char *path, dml_param_store *params,
                                const char *skip_prefix);

/* Saves the model (and the optimiser state when optim is not NULL) at prefix.
 * metadata_json (may be NULL) must be a JSON object; it is stored under "metadata". */
dml_status dml_checkpoint_save(const char *prefix, dml_model *m, dml_optim *optim,
                               const char *metadata_json);

/* Loads a checkpoint: parses the model text from P.json, reads the weights, and returns the
 * model (caller frees). metadata_json (may be NULL) receives a malloc'ed JSON string of the
 * stored metadata (caller frees with free()). */
dml_status dml_checkpoint_load(const char *prefix, dml_model **out, char **metadata_json);

/* Restores optimiser state saved with the checkpoint into an optimiser made for the loaded
 * model's parameters. */
dml_status dml_checkpoint_load_optim(const char *prefix, dml_optim *optim);

#ifdef __cplusplus
}
#endif
#endif
