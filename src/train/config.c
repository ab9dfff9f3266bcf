/* The configuration of a training run: a schema of dotted keys (type, default, allowed values,
 * description) and a cJSON tree holding every key's current value. JSON files and command-line
 * text both go through the schema, so both give the same errors naming the same keys. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/file.h"
#include "core/status_internal.h"
#include "dml/train.h"

typedef enum { K_STR, K_INT, K_NUM, K_BOOL, K_INTS, K_NUMS } key_kind;

typedef struct {
  const char *key;
  key_kind kind;
  const char *def;     /* default, as command-line text */
  const char *choices; /* "a|b|c" for strings with a fixed set of values, or NULL */
  const char *doc;
} key_spec;

static const key_spec schema[] = {
    {"name", K_STR, "run", NULL, "name of the run (report titles)"},
    {"out", K_STR, "", NULL, "output folder (report, checkpoints, log); --out on the command line"},
    {"data.format", K_STR, "idx", "idx|npy|csv|images|manifest", "reader for data.train and data.test"},
    {"data.train", K_STR, "", NULL,
     "training data: IDX images file, .npy array, CSV file, image folder or manifest CSV"},
    {"data.train_labels", K_STR, "", NULL, "IDX or .npy labels of data.train"},
    {"data.test", K_STR, "", NULL, "test data in the same format (optional)"},
    {"data.test_labels", K_STR, "", NULL, "IDX or .npy labels of data.test"},
    {"data.root", K_STR, "", NULL, "manifest: folder the image paths are relative to (default: the CSV's)"},
    {"data.label_column", K_STR, "", NULL, "CSV: label column name or index (default last)"},
    {"data.path_column", K_STR, "", NULL, "manifest: image path column (default first)"},
    {"data.labels_column", K_STR, "", NULL, "manifest: labels column (default second)"},
    {"data.class_names", K_STR, "", NULL, "class names for reports, comma-separated in class-id order (readers of image folders and manifests name classes themselves)"},
    {"data.channels", K_INT, "0", NULL, "images: 1 grey or 3 RGB (0: 1)"},
    {"data.height", K_INT, "0", NULL, "images: resize to this height (0: keep)"},
    {"data.width", K_INT, "0", NULL, "images: resize to this width (0: keep)"},
    {"data.limit", K_INT, "0", NULL, "read only the first N training examples (0: all)"},
    {"data.mean", K_NUMS, "[]", NULL, "per-channel mean for normalisation (empty: from the training set)"},
    {"data.std", K_NUMS, "[]", NULL, "per-channel standard deviation (empty: from the training set)"},
    {"split.kind", K_STR, "given", "given|classes|random_classes|stratified",
     "given: data.test as is; classes: train without split.test_classes, evaluate them as unseen; "
     "random_classes: split.num_test_classes unseen classes drawn from the seed; stratified: "
     "split.test_fraction of each class held out"},
    {"split.test_classes", K_INTS, "[]", NULL, "classes kept out of training (split.kind classes)"},
    {"split.num_test_classes", K_INT, "0", NULL, "unseen classes to draw (random_classes)"},
    {"split.test_fraction", K_NUM, "0.2", NULL, "share of each class held out (stratified)"},
    {"validation.source", K_STR, "holdout", "holdout|test|none",
     "holdout: validation.fraction of the training classes held out; test: the evaluation set "
     "(monitoring only: do not select on it); none"},
    {"validation.fraction", K_NUM, "0.1", NULL, "share of the training set held out (holdout)"},
    {"validation.metric", K_STR, "map_at_r", "map_at_r|p_at_1|r_precision", "validation metric"},
    {"validation.patience", K_INT, "0", NULL, "early stopping: epochs without improvement (0: off)"},
    {"validation.restore_best", K_BOOL, "true", NULL, "evaluate the best epoch's weights, not the last"},
    {"model", K_STR, "", NULL, "model text file (see docs/model-text.md)"},
    {"model_text", K_STR, "", NULL, "model text inline (instead of model)"},
    {"loss", K_STR, "triplet margin=0.2 miner=semihard", NULL, "loss spec (dml loss lists them)"},
    {"sampler.kind", K_STR, "pk", "pk|shuffle", "pk: P classes x K examples; shuffle: random batches"},
    {"sampler.p", K_INT, "6", NULL, "classes per batch (pk)"},
    {"sampler.k", K_INT, "32", NULL, "examples per class (pk)"},
    {"sampler.batch", K_INT, "192", NULL, "batch size (shuffle)"},
    {"sampler.prefetch", K_INT, "2", NULL, "batches prepared ahead on a background thread (0: none)"},
    {"optimizer.kind", K_STR, "adam", "adam|adamw|sgd", "optimiser"},
    {"optimizer.lr", K_NUM, "0.001", NULL, "learning rate"},
    {"optimizer.weight_decay", K_NUM, "0", NULL, "weight decay (decoupled for adamw)"},
    {"optimizer.momentum", K_NUM, "0.9", NULL, "SGD momentum"},
    {"optimizer.nesterov", K_BOOL, "false", NULL, "SGD Nesterov momentum"},
    {"optimizer.loss_lr_scale", K_NUM, "1", NULL, "learning-rate factor for the loss's parameters (proxies: 100)"},
    {"optimizer.clip_grad_norm", K_NUM, "0", NULL, "clip the global gradient norm (0: off)"},
    {"schedule.kind", K_STR, "constant", "constant|cosine|step|exponential", "learning-rate schedule"},
    {"schedule.warmup_steps", K_INT, "0", NULL, "linear warm-up steps"},
    {"schedule.step_size", K_INT, "0", NULL, "step: decay every this many steps"},
    {"schedule.gamma", K_NUM, "0.1", NULL, "step and exponential decay factor"},
    {"schedule.min_lr", K_NUM, "0", NULL, "cosine: final learning rate"},
    {"augment.pad_crop", K_INT, "0", NULL, "pad by N pixels and crop back at a random place"},
    {"augment.hflip", K_BOOL, "false", NULL, "random horizontal flips"},
    {"augment.rotate_deg", K_NUM, "0", NULL, "random rotation in [-r, r] degrees"},
    {"augment.scale", K_NUM, "0", NULL, "random zoom in [1-s, 1+s]"},
    {"augment.translate", K_NUM, "0", NULL, "random shift in [-t, t] of the size"},
    {"epochs", K_INT, "3", NULL, "training epochs"},
    {"seed", K_INT, "1", NULL, "seed of initialisation, sampling, augmentation and splits"},
    {"threads", K_INT, "2", NULL, "threads"},
    {"eval.distance", K_STR, "cosine", "cosine|euclidean|sqeuclidean|dot", "distance for evaluation and validation"},
    {"eval.knn", K_INTS, "[1,5,10]", NULL, "k of kNN classification against the training embeddings (when the test classes were trained)"},
    {"eval.baselines", K_BOOL, "true", NULL, "also evaluate raw inputs and the untrained network"},
    {"eval.pictures", K_BOOL, "true", NULL, "write the retrieval grid, 2-D maps and curves"},
    {"eval.map_points", K_INT, "2000", NULL, "test embeddings drawn in the 2-D maps (t-SNE is O(n^2))"},
    {"eval.grid_queries", K_INT, "8", NULL, "queries in the retrieval picture"},
};
#define N_KEYS ((int)(sizeof schema / sizeof schema[0]))

struct dml_train_config {
  cJSON *values; /* flat object: dotted key -> value */
};

static const key_spec *find_key(const char *key) {
  for (int i = 0; i < N_KEYS; i++)
    if (!strcmp(schema[i].key, key)) return &schema[i];
  return NULL;
}

int dml_train_config_has_key(const char *key) { return key && find_key(key) != NULL; }

static const char *kind_name(key_kind k) {
  switch (k) {
    case K_STR: return "a string";
    case K_INT: return "an integer";
    case K_NUM: return "a number";
    case K_BOOL: return "true or false";
    case K_INTS: return "a list of integers";
    case K_NUMS: return "a list of numbers";
  }
  return "?";
}

/* Lists the schema keys that share the key's first component (for "unknown key" messages). */
static void sibling_keys(const char *key, char *buf, size_t cap) {
  const char *dot = strchr(key, '.');
  size_t plen = dot ? (size_t)(dot - key) + 1 : 0;
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < N_KEYS; i++) {
    const char *k = schema[i].key;
    int same = plen ? !strncmp(k, key, plen) : strchr(k, '.') == NULL;
    if (!same) continue;
    int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", k);
    if (w < 0 || (size_t)w >= cap - used) break;
    used += (size_t)w;
  }
  if (!used) {
    /* no sibling: list the top-level names */
    for (int i = 0; i < N_KEYS; i++) {
      const char *k = schema[i].key;
      const char *d = strchr(k, '.');
      size_t len = d ? (size_t)(d - k) : strlen(k);
      if (i > 0) {
        const char *pk = schema[i - 1].key;
        const char *pd = strchr(pk, '.');
        size_t plen2 = pd ? (size_t)(pd - pk) : strlen(pk);
        if (plen2 == len && !strncmp(pk, k, len)) continue;
      }
      int w = snprintf(buf + used, cap - used, "%s%.*s", used ? ", " : "", (int)len, k);
      if (w < 0 || (size_t)w >= cap - used) break;
      used += (size_t)w;
    }
  }
}

static dml_status unknown_key(const char *src, const char *key) {
  char keys[2048];
  sibling_keys(key, keys, sizeof keys);
  return dml__error(DML_ERR_INVALID_ARGUMENT, "%s%sunknown key '%s' (known: %s)", src ? src : "",
                    src ? ": " : "", key, keys);
}

static int is_int_value(double v) { return isfinite(v) && v == floor(v) && fabs(v) < 9.0e15; }

/* Checks a JSON value against a key's spec and returns a copy to store (NULL on error). */
static cJSON *checked_value(const char *src, const key_spec *ks, const cJSON *v, dml_status *st) {
  const char *pre = src ? src : "";
  const char *sep = src ? ": " : "";
  switch (ks->kind) {
    case K_STR:
      if (!cJSON_IsString(v)) break;
      if (ks->choices) {
        const char *s = v->valuestring;
        size_t n = strlen(s);
        const char *c = ks->choices;
        int ok = 0;
        while (*c) {
          const char *bar = strchr(c, '|');
          size_t len = bar ? (size_t)(bar - c) : strlen(c);
          if (len == n && !strncmp(c, s, n)) ok = 1;
          c += len + (bar ? 1 : 0);
        }
        if (!ok) {
          *st = dml__error(DML_ERR_INVALID_ARGUMENT, "%s%s'%s' must be one of %s, got \"%s\"",
                           pre, sep, ks->key, ks->choices, s);
          return NULL;
        }
      }
      return cJSON_CreateString(v->valuestring);
    case K_INT:
      if (!cJSON_IsNumber(v) || !is_int_value(v->valuedouble)) break;
      return cJSON_CreateNumber(v->valuedouble);
    case K_NUM:
      if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) break;
      return cJSON_CreateNumber(v->valuedouble);
    case K_BOOL:
      if (!cJSON_IsBool(v)) break;
      return cJSON_CreateBool(cJSON_IsTrue(v));
    case K_INTS:
    case K_NUMS: {
      if (!cJSON_IsArray(v)) break;
      const cJSON *e;
      cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) ||
            (ks->kind == K_INTS && !is_int_value(e->valuedouble))) {
          *st = dml__error(DML_ERR_INVALID_ARGUMENT, "%s%s'%s' must be %s", pre, sep, ks->key,
                           kind_name(ks->kind));
          return NULL;
        }
      }
      return cJSON_Duplicate(v, 1);
    }
  }
  char *shown = cJSON_PrintUnformatted(v);
  *st = dml__error(DML_ERR_INVALID_ARGUMENT, "%s%s'%s' must be %s, got %s", pre, sep, ks->key,
                   kind_name(ks->kind), shown ? shown : "?");
  free(shown);
  return NULL;
}

/* Parses command-line text into a JSON value of the key's kind (NULL on a syntax error). */
static cJSON *value_from_text(const key_spec *ks, const char *text) {
  char *end = NULL;
  switch (ks->kind) {
    case K_STR: return cJSON_CreateString(text);
    case K_INT:
    case K_NUM: {
      errno = 0;
      double v = strtod(text, &end);
      if (end == text || *end || errno) return cJSON_CreateString(text); /* type error later */
      return cJSON_CreateNumber(v);
    }
    case K_BOOL:
      if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes"))
        return cJSON_CreateBool(1);
      if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no"))
        return cJSON_CreateBool(0);
      return cJSON_CreateString(text);
    case K_INTS:
    case K_NUMS: {
      const char *p = text;
      while (isspace((unsigned char)*p)) p++;
      if (*p == '[') return cJSON_Parse(p);
      cJSON *a = cJSON_CreateArray();
      if (!a) return NULL;
      while (*p) {
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno) {
          cJSON_Delete(a);
          return cJSON_CreateString(text);
        }
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v));
        p = end;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') p++;
        else if (*p) {
          cJSON_Delete(a);
          return cJSON_CreateString(text);
        }
      }
      return a;
    }
  }
  return NULL;
}

static dml_status store(cJSON *values, const key_spec *ks, cJSON *v);

/* "model" and "model_text" are two ways to give one model: setting one clears the other, so a
 * flag overrides whichever the file used. */
static dml_status store_clearing_twin(cJSON *values, const key_spec *ks, cJSON *v) {
  const char *twin = !strcmp(ks->key, "model") ? "model_text"
                     : !strcmp(ks->key, "model_text") ? "model" : NULL;
  if (twin && cJSON_IsString(v) && *v->valuestring) {
    for (int i = 0; i < N_KEYS; i++)
      if (!strcmp(schema[i].key, twin)) {
        cJSON *empty = cJSON_CreateString("");
        if (!empty) break;
        DML_TRY(store(values, &schema[i], empty));
      }
  }
  return store(values, ks, v);
}

static dml_status store(cJSON *values, const key_spec *ks, cJSON *v) {
  if (cJSON_GetObjectItemCaseSensitive(values, ks->key)) {
    if (!cJSON_ReplaceItemInObjectCaseSensitive(values, ks->key, v)) {
      cJSON_Delete(v);
      return dml__error(DML_ERR_NO_MEMORY, "out of memory setting '%s'", ks->key);
    }
  } else if (!cJSON_AddItemToObject(values, ks->key, v)) {
    cJSON_Delete(v);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory setting '%s'", ks->key);
  }
  return DML_OK;
}

dml_status dml_train_config_new(dml_train_config **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_train_config_new: out is NULL");
  *out = NULL;
  dml_train_config *c = calloc(1, sizeof *c);
  if (!c || !(c->values = cJSON_CreateObject())) {
    free(c);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory making a training config");
  }
  for (int i = 0; i < N_KEYS; i++) {
    cJSON *v = value_from_text(&schema[i], schema[i].def);
    dml_status st = DML_OK;
    cJSON *ok = v ? checked_value("default", &schema[i], v, &st) : NULL;
    cJSON_Delete(v);
    DML_ASSERT(ok != NULL); /* the schema's defaults are valid */
    if (store(c->values, &schema[i], ok) != DML_OK) {
      dml_train_config_free(c);
      return dml__error(DML_ERR_NO_MEMORY, "out of memory making a training config");
    }
  }
  *out = c;
  return DML_OK;
}

void dml_train_config_free(dml_train_config *c) {
  if (!c) return;
  cJSON_Delete(c->values);
  free(c);
}

/* Flattens a JSON object into (dotted key, value) pairs checked against the schema, into a
 * staging object; nothing touches the config until everything has been checked. */
static dml_status flatten(const char *src, const cJSON *obj, const char *prefix, cJSON *staged) {
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    char key[256];
    int w = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", it->string);
    if (w < 0 || (size_t)w >= sizeof key)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: key '%s...' is too long", src, prefix);
    const key_spec *ks = find_key(key);
    if (!ks && cJSON_IsObject(it)) {
      /* an object is a group of keys when some key starts with "key." */
      size_t n = strlen(key);
      int group = 0;
      for (int i = 0; i < N_KEYS && !group; i++)
        group = !strncmp(schema[i].key, key, n) && schema[i].key[n] == '.';
      if (group) {
        DML_TRY(flatten(src, it, key, staged));
        continue;
      }
    }
    if (!ks) return unknown_key(src, key);
    dml_status st = DML_OK;
    cJSON *v = checked_value(src, ks, it, &st);
    if (!v) return st;
    DML_TRY(store(staged, ks, v));
  }
  return DML_OK;
}

static dml_status apply_staged(dml_train_config *c, cJSON *staged) {
  cJSON *it = staged->child;
  while (it) {
    cJSON *next = it->next;
    cJSON_DetachItemViaPointer(staged, it);
    const key_spec *ks = find_key(it->string);
    DML_ASSERT(ks != NULL);
    dml_status st = store_clearing_twin(c->values, ks, it);
    if (st != DML_OK) return st;
    it = next;
  }
  return DML_OK;
}

dml_status dml_train_config_merge_json(dml_train_config *c, const char *json_text,
                                       const char *source_name) {
  const char *src = source_name ? source_name : "config";
  if (!c || !json_text)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_train_config_merge_json: NULL argument");
  const char *err_at = NULL;
  cJSON *root = cJSON_ParseWithOpts(json_text, &err_at, 1);
  if (!root) {
    int line = 1, col = 1;
    const char *stop = err_at ? err_at : json_text;
    for (const char *p = json_text; p < stop && *p; p++) {
      if (*p == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
    }
    return dml__error(DML_ERR_FORMAT, "%s:%d:%d: not valid JSON", src, line, col);
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return dml__error(DML_ERR_FORMAT, "%s: the config must be a JSON object {...}", src);
  }
  cJSON *staged = cJSON_CreateObject();
  dml_status st = staged ? flatten(src, root, "", staged)
                         : dml__error(DML_ERR_NO_MEMORY, "out of memory reading %s", src);
  if (st == DML_OK) st = apply_staged(c, staged);
  cJSON_Delete(staged);
  cJSON_Delete(root);
  return st;
}

dml_status dml_train_config_merge_file(dml_train_config *c, const char *path) {
  if (!c || !path)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_train_config_merge_file: NULL argument");
  char *text = NULL;
  size_t len = 0;
  DML_TRY(dml__read_file(path, "training config", (size_t)1 << 24, &text, &len));
  dml_status st = DML_OK;
  if (strlen(text) != len)
    st = dml__error(DML_ERR_FORMAT, "%s: the config file holds a NUL byte; it is not JSON text",
                    path);
  if (st == DML_OK) st = dml_train_config_merge_json(c, text, path);
  free(text);
  return st;
}

dml_status dml_train_config_set(dml_train_config *c, const char *key, const char *value) {
  if (!c || !key || !value)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_train_config_set: NULL argument");
  const key_spec *ks = find_key(key);
  if (!ks) return unknown_key(NULL, key);
  cJSON *raw = value_from_text(ks, value);
  if (!raw)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "'%s' must be %s, got \"%s\"", key,
                      kind_name(ks->kind), value);
  dml_status st = DML_OK;
  cJSON *v = checked_value(NULL, ks, raw, &st);
  cJSON_Delete(raw);
  if (!v) return st;
  return store_clearing_twin(c->values, ks, v);
}

static const cJSON *get(const dml_train_config *c, const char *key, key_kind kind) {
  const key_spec *ks = find_key(key);
  DML_ASSERT(c && ks && ks->kind == kind);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->values, key);
  DML_ASSERT(v != NULL);
  return v;
}

const char *dml_train_config_string(const dml_train_config *c, const char *key) {
  return get(c, key, K_STR)->valuestring;
}

int64_t dml_train_config_int(const dml_train_config *c, const char *key) {
  return (int64_t)get(c, key, K_INT)->valuedouble;
}

double dml_train_config_number(const dml_train_config *c, const char *key) {
  return get(c, key, K_NUM)->valuedouble;
}

int dml_train_config_bool(const dml_train_config *c, const char *key) {
  return cJSON_IsTrue(get(c, key, K_BOOL));
}

int dml_train_config_ints(const dml_train_config *c, const char *key, int64_t *out, int max) {
  const cJSON *a = get(c, key, K_INTS), *e;
  int n = 0;
  cJSON_ArrayForEach(e, a) {
    if (n < max && out) out[n] = (int64_t)e->valuedouble;
    n++;
  }
  return n;
}

int dml_train_config_numbers(const dml_train_config *c, const char *key, double *out, int max) {
  const cJSON *a = get(c, key, K_NUMS), *e;
  int n = 0;
  cJSON_ArrayForEach(e, a) {
    if (n < max && out) out[n] = e->valuedouble;
    n++;
  }
  return n;
}

/* Nested output: "optimizer.lr" goes under {"optimizer": {"lr": ...}}. */
char *dml_train_config_to_json(const dml_train_config *c) {
  if (!c) return NULL;
  cJSON *root = cJSON_CreateObject();
  if (!root) return NULL;
  for (int i = 0; i < N_KEYS; i++) {
    const char *key = schema[i].key;
    const char *dot = strchr(key, '.');
    cJSON *parent = root;
    const char *leaf = key;
    if (dot) {
      char group[64];
      snprintf(group, sizeof group, "%.*s", (int)(dot - key), key);
      parent = cJSON_GetObjectItemCaseSensitive(root, group);
      if (!parent) parent = cJSON_AddObjectToObject(root, group);
      leaf = dot + 1;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->values, key);
    if (!parent || !v || !cJSON_AddItemToObject(parent, leaf, cJSON_Duplicate(v, 1))) {
      cJSON_Delete(root);
      return NULL;
    }
  }
  char *s = cJSON_Print(root);
  cJSON_Delete(root);
  return s;
}

const char *dml_train_config_catalogue(void) {
  static char text[16384];
  if (text[0]) return text;
  size_t used = 0;
  for (int i = 0; i < N_KEYS; i++) {
    const key_spec *ks = &schema[i];
    int w = snprintf(text + used, sizeof text - used, "  %-26s %s, default %s%s%s\n      %s\n",
                     ks->key, kind_name(ks->kind), *ks->def ? ks->def : "\"\"",
                     ks->choices ? "; one of " : "", ks->choices ? ks->choices : "", ks->doc);
    if (w < 0 || (size_t)w >= sizeof text - used) break;
    used += (size_t)w;
  }
  return text;
}
