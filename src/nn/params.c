/* Parameter store: contiguous value and gradient blocks with named views (see params.h). */
#include "dml/params.h"

#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"

struct dml_param_store {
  dml_param *items;
  int count, cap;
  float *values; /* numel floats, 64-byte aligned */
  float *grads;
  int64_t numel;
  int finalized;
};

dml_status dml_params_new(dml_param_store **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_params_new: out is NULL");
  *out = calloc(1, sizeof **out);
  if (!*out) return dml__error(DML_ERR_NO_MEMORY, "could not allocate a parameter store");
  return DML_OK;
}

void dml_params_free(dml_param_store *s) {
  if (!s) return;
  free(s->items);
  dml_free_aligned(s->values);
  dml_free_aligned(s->grads);
  free(s);
}

dml_status dml_params_add(dml_param_store *s, const char *name, int ndim, const int64_t *shape,
                          int trainable, int *index) {
  if (!s || !name) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_params_add: NULL argument");
  if (strlen(name) >= DML_PARAM_NAME_MAX)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter name '%s' is longer than %d bytes",
                      name, DML_PARAM_NAME_MAX - 1);
  if (ndim < 0 || ndim > DML_MAX_DIMS)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter '%s' has rank %d (max %d)", name, ndim,
                      DML_MAX_DIMS);
  if (ndim > 0 && !shape)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter '%s': shape is NULL", name);
  if (dml_params_find(s, name))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter name '%s' is used twice", name);
  if (s->count == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    dml_param *items = realloc(s->items, (size_t)cap * sizeof *items);
    if (!items) return dml__error(DML_ERR_NO_MEMORY, "could not grow the parameter list");
    s->items = items;
    s->cap = cap;
  }
  dml_param *p = &s->items[s->count];
  memset(p, 0, sizeof *p);
  strcpy(p->name, name);
  p->ndim = ndim;
  p->numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] <= 0)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter '%s' has dimension %d = %lld", name,
                        i, (long long)shape[i]);
    if (p->numel > ((int64_t)1 << 56) / shape[i])
      return dml__error(DML_ERR_INVALID_ARGUMENT, "parameter '%s' has more than 2^56 elements",
                        name);
    p->shape[i] = shape[i];
    p->numel *= shape[i];
  }
  p->offset = -1;
  p->trainable = trainable ? 1 : 0;
  if (index) *index = s->count;
  s->count++;
  s->finalized = 0;
  return DML_OK;
}

/* Each parameter starts on a 16-float (64-byte) boundary so kernels see aligned views. */
static int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

dml_status dml_params_finalize(dml_param_store *s) {
  if (!s) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_params_finalize: NULL store");
  int64_t total = 0;
  for (int i = 0; i < s->count; i++) total += round16(s->items[i].numel);
  float *values = dml_alloc_aligned(total * (int64_t)sizeof(float));
  float *grads = dml_alloc_aligned(total * (int64_t)sizeof(float));
  if (!values || !grads) {
    dml_free_aligned(values);
    dml_free_aligned(grads);
    return dml__error(DML_ERR_NO_MEMORY, "could not allocate %lld parameter floats",
                      (long long)total);
  }
  memset(values, 0, (size_t)total * sizeof(float));
  memset(grads, 0, (size_t)total * sizeof(float));
  int64_t off = 0;
  for (int i = 0; i < s->count; i++) {
    dml_param *p = &s->items[i];
    if (p->offset >= 0 && s->values) { /* keep values laid out before */
      memcpy(values + off, s->values + p->offset, (size_t)p->numel * sizeof(float));
      memcpy(grads + off, s->grads + p->offset, (size_t)p->numel * sizeof(float));
    }
    p->offset = off;
    p->value = values + off;
    p->grad = grads + off;
    off += round16(p->numel);
  }
  dml_free_aligned(s->values);
  dml_free_aligned(s->grads);
  s->values = values;
  s->grads = grads;
  s->numel = total;
  s->finalized = 1;
  return DML_OK;
}

int dml_params_count(const dml_param_store *s) { return s ? s->count : 0; }

dml_param *dml_params_get(dml_param_store *s, int index) {
  if (!s || index < 0 || index >= s->count) return NULL;
  return &s->items[index];
}

dml_param *dml_params_find(dml_param_store *s, const char *name) {
  if (!s || !name) return NULL;
  for (int i = 0; i < s->count; i++)
    if (strcmp(s->items[i].name, name) == 0) return &s->items[i];
  return NULL;
}

int64_t dml_params_numel(const dml_param_store *s) {
  int64_t n = 0;
  for (int i = 0; s && i < s->count; i++) n += s->items[i].numel;
  return n;
}

int64_t dml_params_trainable_numel(const dml_param_store *s) {
  int64_t n = 0;
  for (int i = 0; s && i < s->count; i++)
    if (s->items[i].trainable) n += s->items[i].numel;
  return n;
}

float *dml_params_values(dml_param_store *s) { return s ? s->values : NULL; }
float *dml_params_grads(dml_param_store *s) { return s ? s->grads : NULL; }

void dml_params_zero_grad(dml_param_store *s) {
  if (s && s->grads) memset(s->grads, 0, (size_t)s->numel * sizeof(float));
}

dml_status dml_params_copy(dml_param_store *dst, const dml_param_store *src) {
  if (!dst || !src) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_params_copy: NULL store");
  if (dst->count != src->count)
    return dml__error(DML_ERR_SHAPE, "parameter stores differ: %d versus %d parameters",
                      dst->count, src->count);
  for (int i = 0; i < src->count; i++) {
    const dml_param *a = &src->items[i];
    dml_param *b = &dst->items[i];
    if (strcmp(a->name, b->name) != 0 || a->numel != b->numel || a->ndim != b->ndim)
      return dml__error(DML_ERR_SHAPE, "parameter %d differs: '%s' versus '%s'", i, a->name,
                        b->name);
    if (!a->value || !b->value)
      return dml__error(DML_ERR_STATE, "parameter store not finalized");
    memcpy(b->value, a->value, (size_t)a->numel * sizeof(float));
  }
  return DML_OK;
}
