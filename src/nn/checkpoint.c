/* Checkpoints at a prefix P: P.safetensors holds every parameter and buffer under its
 * state_dict name, plus (optionally) the optimiser state as "optim.<k>.<param name>" for each
 * state buffer k of each trainable parameter; P.json holds
 *   {"format": "dml-checkpoint", "version": 1, "model": "<model text>",
 *    "weights": "<basename of P>.safetensors", "metadata": {...},
 *    "optim": {"buffers": k, "step": s}}            (the last only with optimiser state)
 * Both files are written atomically (temporary file + rename), weights first. */
#define _POSIX_C_SOURCE 200809L

#include "dml/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/status_internal.h"
#include "nn/safetensors_internal.h"

#define CHECKPOINT_FORMAT "dml-checkpoint"
#define CHECKPOINT_VERSION 1
#define MAX_JSON_BYTES ((long)64 << 20)

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 1);
  if (!s) return NULL;
  memcpy(s, a, la);
  memcpy(s + la, b, lb + 1);
  return s;
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* ---- save ---- */

static dml_status write_text(FILE *f, const char *path, void *ctx) {
  const char *text = ctx;
  size_t n = strlen(text);
  if (fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF)
    return dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  return DML_OK;
}

/* The optimiser's state buffers are laid out like its own store: it must be this store, with
 * the layout it had when the optimiser was made. */
static dml_status check_optim_store(const dml_optim *optim_c, dml_param_store *ps,
                                    const char *what) {
  dml_optim *optim = (dml_optim *)optim_c;
  if (dml_optim_params(optim) != ps)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "%s: the optimiser was made for another parameter store than this model's",
                      what);
  int64_t block = dml_optim_state_numel(optim);
  for (int i = 0; i < dml_params_count(ps); i++) {
    const dml_param *p = dml_params_get(ps, i);
    if (p->trainable && p->offset + p->numel > block)
      return dml__error(DML_ERR_STATE,
                        "%s: the model's parameters changed after the optimiser was made; make "
                        "a new optimiser",
                        what);
  }
  return DML_OK;
}

static dml_status save_weights(const char *path, dml_param_store *ps, dml_optim *optim) {
  if (optim) DML_TRY(check_optim_store(optim, ps, "checkpoint save"));
  int n = dml_params_count(ps), n_buf = optim ? dml_optim_state_buffers(optim) : 0;
  int n_train = 0;
  for (int i = 0; i < n; i++) n_train += dml_params_get(ps, i)->trainable;
  int total = n + n_buf * n_train;
  dml__st_tensor *t = calloc((size_t)(total > 0 ? total : 1), sizeof *t);
  char *names =
      calloc((size_t)(n_buf * n_train > 0 ? n_buf * n_train : 1), DML_PARAM_NAME_MAX + 32);
  if (!t || !names) {
    free(t);
    free(names);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory saving a checkpoint");
  }
  int k = 0;
  for (int i = 0; i < n; i++) {
    dml_param *p = dml_params_get(ps, i);
    t[k++] = (dml__st_tensor){p->name, p->ndim, p->shape, p->value};
  }
  dml_status st = DML_OK;
  for (int b = 0; b < n_buf && st == DML_OK; b++) {
    const float *buf = dml_optim_state_buffer(optim, b);
    if (!buf) {
      st = dml__error(DML_ERR_STATE, "optimiser state buffer %d is missing", b);
      break;
    }
    for (int i = 0; i < n; i++) {
      dml_param *p = dml_params_get(ps, i);
      if (!p->trainable) continue;
      char *name = names + (size_t)(k - n) * (DML_PARAM_NAME_MAX + 32);
      snprintf(name, DML_PARAM_NAME_MAX + 32, "optim.%d.%s", b, p->name);
      t[k++] = (dml__st_tensor){name, p->ndim, p->shape, buf + p->offset};
    }
  }
  char step[32], nb[16];
  snprintf(step, sizeof step, "%lld", optim ? (long long)dml_optim_step_count(optim) : 0LL);
  snprintf(nb, sizeof nb, "%d", n_buf);
  const char *meta[] = {
      "format",        "pt", "dml.format", CHECKPOINT_FORMAT, optim ? "optim.step" : NULL, step,
      "optim.buffers", nb,   NULL};
  if (st == DML_OK) st = dml__st_write(path, t, total, meta);
  free(t);
  free(names);
  return st;
}

dml_status dml_checkpoint_save(const char *prefix, dml_model *m, dml_optim *optim,
                               const char *metadata_json) {
  if (!prefix || !*prefix || !m)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_checkpoint_save: empty prefix or NULL model");
  cJSON *meta = NULL;
  if (metadata_json) {
    meta = cJSON_Parse(metadata_json);
    if (!cJSON_IsObject(meta)) {
      cJSON_Delete(meta);
      return dml__error(
          DML_ERR_INVALID_ARGUMENT,
          "checkpoint metadata must be a JSON object like {\"epoch\": 3}, got '%.60s'",
          metadata_json);
    }
  } else {
    meta = cJSON_CreateObject();
    if (!meta) return dml__error(DML_ERR_NO_MEMORY, "out of memory saving a checkpoint");
  }
  char *wpath = join(prefix, ".safetensors"), *jpath = join(prefix, ".json");
  char *wname = join(base_name(prefix), ".safetensors");
  cJSON *root = cJSON_CreateObject();
  dml_status st = DML_OK;
  if (!wpath || !jpath || !wname || !root) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
  if (st == DML_OK && !*base_name(prefix))
    st = dml__error(DML_ERR_INVALID_ARGUMENT,
                    "checkpoint prefix '%s' ends with '/': give a file name prefix", prefix);
  if (st == DML_OK) {
    cJSON_AddStringToObject(root, "format", CHECKPOINT_FORMAT);
    cJSON_AddNumberToObject(root, "version", CHECKPOINT_VERSION);
    cJSON_AddStringToObject(root, "model", dml_model_text(m));
    cJSON_AddStringToObject(root, "weights", wname);
    cJSON_AddItemToObject(root, "metadata", meta);
    meta = NULL;
    if (optim) {
      cJSON *o = cJSON_AddObjectToObject(root, "optim");
      if (o) {
        cJSON_AddNumberToObject(o, "buffers", dml_optim_state_buffers(optim));
        cJSON_AddNumberToObject(o, "step", (double)dml_optim_step_count(optim));
      }
    }
  }
  char *json = st == DML_OK ? cJSON_Print(root) : NULL;
  if (st == DML_OK && !json)
    st = dml__error(DML_ERR_NO_MEMORY, "out of memory saving a checkpoint");
  if (st == DML_OK) st = save_weights(wpath, dml_model_params(m), optim);
  if (st == DML_OK) st = dml__write_atomic(jpath, write_text, json);
  cJSON_free(json);
  cJSON_Delete(root);
  cJSON_Delete(meta);
  free(wpath);
  free(jpath);
  free(wname);
  return st;
}

/* ---- load ---- */

/* Reads and checks P.json; on success *root holds it and *wpath the weights file's path. */
static dml_status read_checkpoint_json(const char *prefix, cJSON **root, char **wpath) {
  *root = NULL;
  *wpath = NULL;
  char *jpath = join(prefix, ".json");
  if (!jpath) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  char *buf = NULL;
  size_t n = 0;
  dml_status st = dml__read_file(jpath, "checkpoint", (size_t)MAX_JSON_BYTES, &buf, &n);
  cJSON *j = NULL;
  if (st == DML_OK) {
    j = cJSON_ParseWithLength(buf, n);
    if (!cJSON_IsObject(j))
      st = dml__error(DML_ERR_FORMAT, "'%s' is not a JSON object (not a dml checkpoint?)", jpath);
  }
  free(buf);
  const cJSON *format = cJSON_GetObjectItemCaseSensitive(j, "format");
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(j, "version");
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
  const cJSON *weights = cJSON_GetObjectItemCaseSensitive(j, "weights");
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(j, "metadata");
  if (st == DML_OK && (!cJSON_IsString(format) || strcmp(format->valuestring, CHECKPOINT_FORMAT)))
    st = dml__error(DML_ERR_FORMAT, "'%s': \"format\" is not \"%s\" (not a dml checkpoint)", jpath,
                    CHECKPOINT_FORMAT);
  if (st == DML_OK && !cJSON_IsNumber(version))
    st = dml__error(DML_ERR_FORMAT, "'%s': \"version\" is missing", jpath);
  if (st == DML_OK && version->valuedouble != CHECKPOINT_VERSION)
    st =
        dml__error(version->valuedouble > CHECKPOINT_VERSION ? DML_ERR_UNSUPPORTED : DML_ERR_FORMAT,
                   "'%s' has checkpoint version %g; this dml reads version %d (use a newer dml)",
                   jpath, version->valuedouble, CHECKPOINT_VERSION);
  if (st == DML_OK && !cJSON_IsString(model))
    st = dml__error(DML_ERR_FORMAT, "'%s': \"model\" (the model text) is missing", jpath);
  if (st == DML_OK &&
      (!cJSON_IsString(weights) || !*weights->valuestring || strchr(weights->valuestring, '/') ||
       !strcmp(weights->valuestring, ".") || !strcmp(weights->valuestring, "..")))
    st = dml__error(DML_ERR_FORMAT,
                    "'%s': \"weights\" must name the weights file next to it (a file name "
                    "without '/')",
                    jpath);
  if (st == DML_OK && meta && !cJSON_IsObject(meta))
    st = dml__error(DML_ERR_FORMAT, "'%s': \"metadata\" is not an object", jpath);
  if (st == DML_OK) {
    const char *base = base_name(prefix);
    size_t dir_len = (size_t)(base - prefix), wl = strlen(weights->valuestring);
    *wpath = malloc(dir_len + wl + 1);
    if (!*wpath) {
      st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
    } else {
      memcpy(*wpath, prefix, dir_len);
      memcpy(*wpath + dir_len, weights->valuestring, wl + 1);
    }
  }
  free(jpath);
  if (st != DML_OK) {
    cJSON_Delete(j);
    return st;
  }
  *root = j;
  return DML_OK;
}

static dml_status parse_model(const char *prefix, const cJSON *root, dml_model **out) {
  char *src = join(prefix, ".json (model text)");
  if (!src) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  dml_status st =
      dml_model_parse(cJSON_GetObjectItemCaseSensitive(root, "model")->valuestring, src, out);
  free(src);
  return st;
}

dml_status dml_checkpoint_load(const char *prefix, dml_model **out, char **metadata_json) {
  if (out) *out = NULL;
  if (metadata_json) *metadata_json = NULL;
  if (!prefix || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_checkpoint_load: NULL prefix or output");
  cJSON *root;
  char *wpath;
  DML_TRY(read_checkpoint_json(prefix, &root, &wpath));
  dml_model *m = NULL;
  dml_status st = parse_model(prefix, root, &m);
  if (st == DML_OK) st = dml_safetensors_read(wpath, dml_model_params(m), "optim.");
  char *meta_text = NULL; /* malloc'ed: the caller releases it with free() */
  if (st == DML_OK && metadata_json) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    char *printed = meta ? cJSON_PrintUnformatted(meta) : NULL;
    const char *text = meta ? printed : "{}";
    meta_text = text ? malloc(strlen(text) + 1) : NULL;
    if (meta_text) strcpy(meta_text, text);
    cJSON_free(printed);
    if (!meta_text) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
  }
  cJSON_Delete(root);
  free(wpath);
  if (st != DML_OK) {
    dml_model_free(m);
    return st;
  }
  *out = m;
  if (metadata_json) *metadata_json = meta_text;
  return DML_OK;
}

dml_status dml_checkpoint_load_optim(const char *prefix, dml_optim *optim) {
  if (!prefix || !optim)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_checkpoint_load_optim: NULL argument");
  cJSON *root;
  char *wpath;
  DML_TRY(read_checkpoint_json(prefix, &root, &wpath));
  dml__st_file sf;
  memset(&sf, 0, sizeof sf);
  float *tmp = NULL;
  dml_status st = DML_OK;
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "optim");
  const cJSON *nb = cJSON_GetObjectItemCaseSensitive(o, "buffers");
  int n_buf = dml_optim_state_buffers(optim);
  if (!cJSON_IsObject(o))
    st = dml__error(DML_ERR_NOT_FOUND,
                    "checkpoint '%s' holds no optimiser state (it was saved without one)", prefix);
  else if (!cJSON_IsNumber(nb))
    st = dml__error(DML_ERR_FORMAT, "checkpoint '%s': \"optim\" lacks \"buffers\"", prefix);
  else if (nb->valuedouble != n_buf)
    st = dml__error(DML_ERR_SHAPE,
                    "checkpoint '%s' holds %g optimiser state buffers per parameter, this "
                    "optimiser has %d: make it of the same kind (SGD with momentum has 1, Adam 2)",
                    prefix, nb->valuedouble, n_buf);
  /* State goes into the optimiser's own store layout; every tensor is matched by name and
   * checked against that store's shapes. */
  dml_param_store *ps = dml_optim_params(optim);
  if (st == DML_OK) st = check_optim_store(optim, ps, "checkpoint optimiser load");
  if (st == DML_OK) st = dml__st_open(wpath, &sf);
  int n = dml_params_count(ps);
  int64_t block = 0;
  for (int i = 0; i < n; i++) {
    dml_param *p = dml_params_get(ps, i);
    if (p->offset + p->numel > block) block = p->offset + p->numel;
  }
  if (st == DML_OK && n_buf > 0) {
    tmp = calloc((size_t)(block * n_buf > 0 ? block * n_buf : 1), sizeof(float));
    if (!tmp) st = dml__error(DML_ERR_NO_MEMORY, "out of memory reading optimiser state");
  }
  for (int b = 0; b < n_buf && st == DML_OK; b++) {
    for (int i = 0; i < n && st == DML_OK; i++) {
      dml_param *p = dml_params_get(ps, i);
      if (!p->trainable) continue;
      char name[DML_PARAM_NAME_MAX + 32];
      snprintf(name, sizeof name, "optim.%d.%s", b, p->name);
      const dml__st_entry *e = dml__st_find(&sf, name);
      if (!e)
        st = dml__error(DML_ERR_NOT_FOUND, "%s: missing optimiser state tensor '%s'", wpath, name);
      if (st == DML_OK) st = dml__st_check_entry(&sf, e, name, p->ndim, p->shape);
      if (st == DML_OK) st = dml__st_read_f32(&sf, e, tmp + (int64_t)b * block + p->offset);
    }
  }
  long long steps = 0;
  if (st == DML_OK) {
    const char *s = dml__st_meta(&sf, "optim.step");
    char *end = NULL;
    if (s) steps = strtoll(s, &end, 10);
    if (!s || end == s || *end != '\0' || steps < 0)
      st = dml__error(DML_ERR_FORMAT, "%s: metadata \"optim.step\" is missing or not a count",
                      wpath);
  }
  if (st == DML_OK) {
    for (int b = 0; b < n_buf; b++) {
      float *dst = dml_optim_state_buffer(optim, b);
      for (int i = 0; i < n; i++) {
        dml_param *p = dml_params_get(ps, i);
        if (p->trainable)
          memcpy(dst + p->offset, tmp + (int64_t)b * block + p->offset,
                 (size_t)p->numel * sizeof(float));
      }
    }
    dml_optim_set_step_count(optim, (int64_t)steps);
  }
  free(tmp);
  dml__st_close(&sf);
  cJSON_Delete(root);
  free(wpath);
  return st;
}
