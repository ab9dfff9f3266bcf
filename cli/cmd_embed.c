/* `dml embed`: runs a trained model (a checkpoint) over images or arrays and writes the
 * embeddings as a float32 .npy file, with the labels when the input has them. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"

static const char *CMD = "embed";

static int usage(FILE *f, int code) {
  fprintf(f,
          "usage: dml embed --checkpoint PREFIX --out E.npy\n"
          "                 (--images IMAGES.idx[.gz] --labels LABELS.idx[.gz] | --input X.npy)\n"
          "                 [--labels-out Y.npy] [--normalize MEAN,STD] [--limit N]\n"
          "                 [--batch N] [--threads N]\n"
          "  PREFIX.json and PREFIX.safetensors hold the model (dml demo --save, dml train).\n"
          "  IDX images are scaled to [0, 1], then normalised (x - MEAN) / STD: by --normalize,\n"
          "  else by the checkpoint's metadata \"input_normalize\": [MEAN, STD], else not at all.\n"
          "  X.npy is float32 [items, ...] with the model's input size per item, used as is.\n");
  return code;
}

/* The checkpoint's input normalisation, when its metadata names one. */
static int metadata_normalize(const char *json, float *mean, float *std) {
  cJSON *root = json ? cJSON_Parse(json) : NULL;
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "input_normalize");
  int ok = cJSON_IsArray(n) && cJSON_GetArraySize(n) == 2 &&
           cJSON_IsNumber(cJSON_GetArrayItem(n, 0)) && cJSON_IsNumber(cJSON_GetArrayItem(n, 1)) &&
           cJSON_GetArrayItem(n, 1)->valuedouble > 0;
  if (ok) {
    *mean = (float)cJSON_GetArrayItem(n, 0)->valuedouble;
    *std = (float)cJSON_GetArrayItem(n, 1)->valuedouble;
  }
  cJSON_Delete(root);
  return ok;
}

int dml_cli_embed(int argc, char **argv) {
  const char *ckpt = NULL, *out = NULL, *images = NULL, *labels = NULL, *input = NULL,
             *labels_out = NULL, *norm = NULL;
  int64_t limit = 0, batch = 256, threads = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0);
    const char *v = cli_value(CMD, argc, argv, &i);
    if (!v) return 2;
    if (!strcmp(a, "--checkpoint")) ckpt = v;
    else if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--images")) images = v;
    else if (!strcmp(a, "--labels")) labels = v;
    else if (!strcmp(a, "--input")) input = v;
    else if (!strcmp(a, "--labels-out")) labels_out = v;
    else if (!strcmp(a, "--normalize")) norm = v;
    else if (!strcmp(a, "--limit")) {
      if (!cli_int(CMD, a, v, 0, INT64_MAX, &limit)) return 2;
    } else if (!strcmp(a, "--batch")) {
      if (!cli_int(CMD, a, v, 1, 65536, &batch)) return 2;
    } else if (!strcmp(a, "--threads")) {
      if (!cli_int(CMD, a, v, 1, 1024, &threads)) return 2;
    } else {
      fprintf(stderr, "dml embed: unknown option %s\n", a);
      return usage(stderr, 2);
    }
  }
  if (!ckpt || !out || (!images == !input) || (images && !labels)) {
    fprintf(stderr, "dml embed: --checkpoint, --out and either --images with --labels or "
                    "--input are required\n");
    return usage(stderr, 2);
  }
  if (labels_out && !images) {
    fprintf(stderr, "dml embed: --labels-out needs --images/--labels (an .npy input has no "
                    "labels)\n");
    return 2;
  }
  float mean = 0, std = 1;
  int have_norm = 0;
  if (norm) {
    char *end;
    mean = strtof(norm, &end);
    if (*end != ',' || !((std = strtof(end + 1, &end)) > 0) || *end) {
      fprintf(stderr, "dml embed: --normalize expects MEAN,STD with STD > 0, got '%s'\n", norm);
      return 2;
    }
    have_norm = 1;
  }
  if (threads) dml_set_num_threads((int)threads);

  dml_model *m = NULL;
  dml_graph *g = NULL;
  char *meta = NULL;
  dml_dataset ds = {0};
  dml_npy arr = {0};
  float *emb = NULL;
  int rc = 1;
  if (dml_checkpoint_load(ckpt, &m, &meta) != DML_OK) {
    cli_fail(CMD, "checkpoint");
    goto done;
  }
  if (!have_norm && images) have_norm = metadata_normalize(meta, &mean, &std);
  int64_t in_numel = dml_model_input_numel(m), d = dml_model_output_numel(m);
  const float *x;
  int64_t n;
  if (images) {
    if (dml_data_read_idx(images, labels, limit, &ds) != DML_OK) {
      cli_fail(CMD, "images");
      goto done;
    }
    if (have_norm && dml_dataset_normalize(&ds, mean, std) != DML_OK) {
      cli_fail(CMD, "normalising");
      goto done;
    }
    if (ds.example_numel != in_numel) {
      fprintf(stderr, "dml embed: %s has %lld values per image; the model takes %lld\n", images,
              (long long)ds.example_numel, (long long)in_numel);
      goto done;
    }
    x = ds.x;
    n = ds.n;
  } else {
    if (dml_npy_read(input, &arr) != DML_OK) {
      cli_fail(CMD, "input");
      goto done;
    }
    int64_t per = 1;
    for (int i = 1; i < arr.ndim; i++) per *= arr.shape[i];
    if (arr.dtype != DML_NPY_F32 || arr.ndim < 1 || per != in_numel) {
      fprintf(stderr,
              "dml embed: %s must be float32 [items, ...] with %lld values per item (the "
              "model's input size)\n",
              input, (long long)in_numel);
      goto done;
    }
    n = arr.shape[0];
    if (limit > 0 && limit < n) n = limit;
    x = arr.data;
    for (int64_t i = 0; i < n * in_numel; i++)
      if (!(x[i] - x[i] == 0)) {
        fprintf(stderr, "dml embed: %s: item %lld has a NaN or infinite value\n", input,
                (long long)(i / in_numel));
        goto done;
      }
  }
  emb = malloc((size_t)(n * d + 1) * sizeof *emb);
  if (!emb) {
    fprintf(stderr, "dml embed: out of memory for %lld x %lld embeddings\n", (long long)n,
            (long long)d);
    goto done;
  }
  if (dml_graph_new(&g) != DML_OK || dml_model_predict(m, g, x, n, batch, emb) != DML_OK) {
    cli_fail(CMD, "running the model");
    goto done;
  }
  int64_t shape[2] = {n, d};
  if (dml_npy_write(out, DML_NPY_F32, 2, shape, emb) != DML_OK) {
    cli_fail(CMD, "writing embeddings");
    goto done;
  }
  if (labels_out && dml_npy_write(labels_out, DML_NPY_I32, 1, shape, ds.labels) != DML_OK) {
    cli_fail(CMD, "writing labels");
    goto done;
  }
  printf("wrote %lld embeddings of dimension %lld to %s%s%s\n", (long long)n, (long long)d, out,
         labels_out ? " and their labels to " : "", labels_out ? labels_out : "");
  rc = 0;
done:
  free(emb);
  free(meta);
  dml_npy_free(&arr);
  dml_dataset_free(&ds);
  dml_graph_free(g);
  dml_model_free(m);
  return rc;
}
