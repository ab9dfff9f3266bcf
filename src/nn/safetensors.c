/* safetensors files (https://github.com/huggingface/safetensors):
 *   [8 bytes: header length H, unsigned little-endian]
 *   [H bytes: JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *                   "__metadata__": {"key": "value", ...}}, padded with spaces to 8 bytes]
 *   [data: little-endian tensors; offsets are relative to the start of this section]
 * Reading validates everything before a byte reaches the caller's store; writing goes through
 * a temporary file that is renamed into place. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/status_internal.h"
#include "dml/checkpoint.h"
#include "nn/safetensors_internal.h"

#define MAX_HEADER_BYTES ((int64_t)100 << 20)
#define MAX_JSON_INT 9007199254740992.0 /* 2^53: larger integers do not survive a double */

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  return *(const unsigned char *)&one == 1;
}

static void swap4(void *buf, int64_t n) {
  unsigned char *b = buf;
  for (int64_t i = 0; i < n; i++, b += 4) {
    unsigned char t0 = b[0], t1 = b[1];
    b[0] = b[3];
    b[1] = b[2];
    b[2] = t1;
    b[3] = t0;
  }
}

/* ---- atomic write ---- */

dml_status dml__write_atomic(const char *path, dml__write_fn fn, void *ctx) {
  if (!path || !*path) return dml__error(DML_ERR_INVALID_ARGUMENT, "empty output path");
  size_t len = strlen(path) + 32;
  char *tmp = malloc(len);
  if (!tmp) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  /* A unique temporary name (O_EXCL), so concurrent writers of one path never share it. */
  snprintf(tmp, len, "%s.tmp.XXXXXX", path);
  int tfd = mkstemp(tmp);
  FILE *f = NULL;
  if (tfd >= 0) {
    (void)fchmod(tfd, 0644); /* mkstemp creates 0600; a checkpoint is an ordinary file */
    f = fdopen(tfd, "wb");
    if (!f) {
      close(tfd);
      unlink(tmp);
    }
  }
  if (!f) {
    dml_status st = dml__error(DML_ERR_IO, "cannot write '%s': creating '%s' failed: %s", path, tmp,
                               strerror(errno));
    free(tmp);
    return st;
  }
  dml_status st = fn(f, path, ctx);
  if (st == DML_OK && fflush(f) != 0)
    st = dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  if (st == DML_OK && fsync(fileno(f)) != 0)
    st = dml__error(DML_ERR_IO, "cannot write '%s': fsync failed: %s", path, strerror(errno));
  if (fclose(f) != 0 && st == DML_OK)
    st = dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  if (st == DML_OK && rename(tmp, path) != 0)
    st = dml__error(DML_ERR_IO, "cannot replace '%s' (renaming '%s' failed: %s)", path, tmp,
                    strerror(errno));
  if (st != DML_OK) {
    unlink(tmp);
  } else {
    /* Make the rename itself durable (best effort: not every file system allows it). */
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash) {
      size_t n = (size_t)(slash - path);
      dir = malloc(n + 2);
      if (dir) {
        memcpy(dir, path, n ? n : 1);
        dir[n ? n : 1] = '\0';
      }
    }
    int fd = open(dir ? dir : ".", O_RDONLY);
    if (fd >= 0) {
      fsync(fd);
      close(fd);
    }
    free(dir);
  }
  free(tmp);
  return st;
}

/* ---- writer ---- */

static int64_t tensor_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

typedef struct {
  const dml__st_tensor *t;
  int n;
  const char *header; /* padded */
  int64_t header_len;
} st_write_ctx;

static dml_status write_bytes(FILE *f, const char *path, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, f) != n)
    return dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  return DML_OK;
}

static dml_status st_write_body(FILE *f, const char *path, void *vctx) {
  st_write_ctx *c = vctx;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)c->header_len >> (8 * i));
  DML_TRY(write_bytes(f, path, len8, 8));
  DML_TRY(write_bytes(f, path, c->header, (size_t)c->header_len));
  int le = host_is_little_endian();
  for (int i = 0; i < c->n; i++) {
    int64_t numel = tensor_numel(c->t[i].ndim, c->t[i].shape);
    if (le) {
      DML_TRY(write_bytes(f, path, c->t[i].data, (size_t)numel * 4));
    } else {
      float chunk[1024];
      for (int64_t s = 0; s < numel; s += 1024) {
        int64_t m = numel - s < 1024 ? numel - s : 1024;
        memcpy(chunk, c->t[i].data + s, (size_t)m * 4);
        swap4(chunk, m);
        DML_TRY(write_bytes(f, path, chunk, (size_t)m * 4));
      }
    }
  }
  return DML_OK;
}

dml_status dml__st_write(const char *path, const dml__st_tensor *t, int n,
                         const char *const *meta) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return dml__error(DML_ERR_NO_MEMORY, "out of memory building a safetensors header");
  dml_status st = DML_OK;
  if (meta && meta[0]) {
    cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; m && meta[i] && st == DML_OK; i += 2) {
      if (!meta[i + 1])
        st = dml__error(DML_ERR_INVALID_ARGUMENT, "metadata key '%s' has no value", meta[i]);
      else if (!cJSON_AddStringToObject(m, meta[i], meta[i + 1]))
        st = dml__error(DML_ERR_NO_MEMORY, "out of memory building a safetensors header");
    }
    if (!m) st = dml__error(DML_ERR_NO_MEMORY, "out of memory building a safetensors header");
  }
  int64_t offset = 0;
  for (int i = 0; i < n && st == DML_OK; i++) {
    if (!t[i].name || !*t[i].name || strcmp(t[i].name, "__metadata__") == 0) {
      st = dml__error(DML_ERR_INVALID_ARGUMENT, "tensor %d has an empty or reserved name", i);
      break;
    }
    int64_t bytes = tensor_numel(t[i].ndim, t[i].shape) * 4;
    cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
    cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
    cJSON *offs = NULL;
    if (e && shape && cJSON_AddStringToObject(e, "dtype", "F32")) {
      for (int d = 0; d < t[i].ndim; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
      offs = cJSON_AddArrayToObject(e, "data_offsets");
    }
    if (!offs) {
      st = dml__error(DML_ERR_NO_MEMORY, "out of memory building a safetensors header");
      break;
    }
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes)));
    if (cJSON_GetArraySize(offs) != 2 || cJSON_GetArraySize(shape) != t[i].ndim)
      st = dml__error(DML_ERR_NO_MEMORY, "out of memory building a safetensors header");
    offset += bytes;
  }
  char *json = st == DML_OK ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (st != DML_OK) return st;
  if (!json) return dml__error(DML_ERR_NO_MEMORY, "out of memory printing a safetensors header");
  int64_t len = (int64_t)strlen(json), padded = (len + 7) / 8 * 8;
  char *header = malloc((size_t)padded + 1);
  if (!header) {
    free(json);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory printing a safetensors header");
  }
  memcpy(header, json, (size_t)len);
  memset(header + len, ' ', (size_t)(padded - len));
  header[padded] = '\0';
  free(json);
  st_write_ctx ctx = {t, n, header, padded};
  st = dml__write_atomic(path, st_write_body, &ctx);
  free(header);
  return st;
}

dml_status dml_safetensors_write(const char *path, dml_param_store *params,
                                 const char *const *meta) {
  if (!path || !params)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_safetensors_write: NULL path or store");
  int n = dml_params_count(params);
  dml__st_tensor *t = calloc((size_t)(n > 0 ? n : 1), sizeof *t);
  if (!t) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  for (int i = 0; i < n; i++) {
    dml_param *p = dml_params_get(params, i);
    if (!p->value) {
      free(t);
      return dml__error(DML_ERR_STATE, "parameter '%s' has no storage: finalize the store first",
                        p->name);
    }
    t[i].name = p->name;
    t[i].ndim = p->ndim;
    t[i].shape = p->shape;
    t[i].data = p->value;
  }
  dml_status st = dml__st_write(path, t, n, meta);
  free(t);
  return st;
}

/* ---- reader ---- */

static int dtype_size(const char *d) {
  static const struct {
    const char *name;
    int size;
  } table[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
               {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
               {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(d, table[i].name) == 0) return table[i].size;
  return 0;
}

/* A non-negative integer JSON number (<= 2^53). */
static int json_uint(const cJSON *v, int64_t *out) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= MAX_JSON_INT) || d != floor(d)) return 0;
  *out = (int64_t)d;
  return 1;
}

void dml__st_close(dml__st_file *f) {
  if (!f) return;
  if (f->f) fclose(f->f);
  free(f->path);
  free(f->entries);
  cJSON_Delete(f->header);
  memset(f, 0, sizeof *f);
}

static dml_status parse_entry(dml__st_file *sf, const cJSON *item, dml__st_entry *e) {
  const char *path = sf->path;
  e->name = item->string;
  if (!cJSON_IsObject(item))
    return dml__error(DML_ERR_FORMAT, "%s: header entry '%s' is not an object", path, e->name);
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
    return dml__error(DML_ERR_FORMAT,
                      "%s: tensor '%s' needs \"dtype\" (string), \"shape\" and \"data_offsets\" "
                      "(arrays) in the header",
                      path, e->name);
  e->dtype = dtype->valuestring;
  int esize = dtype_size(e->dtype);
  if (!esize)
    return dml__error(DML_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, e->name,
                      e->dtype);
  int nd = cJSON_GetArraySize(shape);
  if (nd > DML_MAX_DIMS)
    return dml__error(DML_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %d (dml supports up to %d)",
                      path, e->name, nd, DML_MAX_DIMS);
  e->ndim = nd;
  double numel = 1;
  for (int d = 0; d < nd; d++) {
    if (!json_uint(cJSON_GetArrayItem(shape, d), &e->shape[d]))
      return dml__error(DML_ERR_FORMAT,
                        "%s: tensor '%s': shape entries must be non-negative integers", path,
                        e->name);
    numel *= (double)e->shape[d];
  }
  if (cJSON_GetArraySize(offs) != 2 || !json_uint(cJSON_GetArrayItem(offs, 0), &e->begin) ||
      !json_uint(cJSON_GetArrayItem(offs, 1), &e->end))
    return dml__error(DML_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets must be two non-negative integers", path,
                      e->name);
  if (e->end < e->begin)
    return dml__error(DML_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets [%lld, %lld) end before they "
                      "begin",
                      path, e->name, (long long)e->begin, (long long)e->end);
  if (numel * esize != (double)(e->end - e->begin)) {
    dml_tensor t = dml_tensor_view(NULL, e->ndim, e->shape);
    char s[128];
    dml_tensor_shape_str(&t, s, sizeof s);
    return dml__error(DML_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets [%lld, %lld) hold %lld bytes, but dtype %s "
                      "with shape %s needs %.0f",
                      path, e->name, (long long)e->begin, (long long)e->end,
                      (long long)(e->end - e->begin), e->dtype, s, numel * esize);
  }
  if (e->end > sf->data_size)
    return dml__error(DML_ERR_FORMAT,
                      "%s: file is truncated: tensor '%s' needs bytes [%lld, %lld) of the data "
                      "section, which holds %lld bytes",
                      path, e->name, (long long)e->begin, (long long)e->end,
                      (long long)sf->data_size);
  return DML_OK;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const dml__st_entry *const *)a)->name, (*(const dml__st_entry *const *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
  const dml__st_entry *x = *(const dml__st_entry *const *)a, *y = *(const dml__st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : (x->end > y->end);
}

static dml_status parse_header(dml__st_file *sf, const char *buf, int64_t len) {
  const char *path = sf->path;
  int64_t first = 0;
  while (first < len && buf[first] == ' ') first++;
  if (first == len || buf[first] != '{')
    return dml__error(DML_ERR_FORMAT,
                      "%s: the header is not a JSON object (not a safetensors "
                      "file?)",
                      path);
  const char *end = NULL;
  sf->header = cJSON_ParseWithLengthOpts(buf, (size_t)len, &end, 0);
  if (!sf->header) {
    long pos = end ? (long)(end - buf) : 0;
    return dml__error(DML_ERR_FORMAT, "%s: the header is not valid JSON (error near byte %ld)",
                      path, pos);
  }
  for (const char *p = end; p < buf + len; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
      return dml__error(DML_ERR_FORMAT, "%s: unexpected bytes after the header JSON (at byte %ld)",
                        path, (long)(p - buf));
  if (!cJSON_IsObject(sf->header))
    return dml__error(DML_ERR_FORMAT, "%s: the header is not a JSON object", path);
  int count = cJSON_GetArraySize(sf->header);
  sf->entries = calloc((size_t)(count > 0 ? count : 1), sizeof *sf->entries);
  if (!sf->entries) return dml__error(DML_ERR_NO_MEMORY, "out of memory reading '%s'", path);
  const cJSON *item;
  cJSON_ArrayForEach(item, sf->header) {
    if (!item->string) return dml__error(DML_ERR_FORMAT, "%s: header entry without a name", path);
    if (strcmp(item->string, "__metadata__") == 0) {
      if (sf->meta) return dml__error(DML_ERR_FORMAT, "%s: \"__metadata__\" appears twice", path);
      if (!cJSON_IsObject(item))
        return dml__error(DML_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
      const cJSON *kv;
      cJSON_ArrayForEach(kv, item) {
        if (!cJSON_IsString(kv))
          return dml__error(DML_ERR_FORMAT, "%s: metadata value '%s' is not a string", path,
                            kv->string ? kv->string : "?");
      }
      sf->meta = item;
      continue;
    }
    DML_TRY(parse_entry(sf, item, &sf->entries[sf->n]));
    sf->n++;
  }
  if (sf->n > 1) {
    const dml__st_entry **order = malloc((size_t)sf->n * sizeof *order);
    if (!order) return dml__error(DML_ERR_NO_MEMORY, "out of memory reading '%s'", path);
    /* duplicate names: sort by name and compare neighbours (n log n, not n^2) */
    for (int i = 0; i < sf->n; i++) order[i] = &sf->entries[i];
    qsort(order, (size_t)sf->n, sizeof *order, cmp_name);
    for (int i = 1; i < sf->n; i++)
      if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
        dml_status st = dml__error(DML_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                                   path, order[i]->name);
        free(order);
        return st;
      }
    for (int i = 0; i < sf->n; i++) order[i] = &sf->entries[i];
    qsort(order, (size_t)sf->n, sizeof *order, cmp_begin);
    dml_status st = DML_OK;
    for (int i = 1; i < sf->n && st == DML_OK; i++)
      if (order[i]->begin < order[i - 1]->end)
        st = dml__error(DML_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section",
                        path, order[i - 1]->name, order[i]->name);
    free(order);
    DML_TRY(st);
  }
  return DML_OK;
}

static dml_status st_open_inner(const char *path, dml__st_file *sf) {
  sf->path = malloc(strlen(path) + 1);
  if (!sf->path) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  strcpy(sf->path, path);
  sf->f = fopen(path, "rb");
  if (!sf->f) return dml__error(DML_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  if (fseeko(sf->f, 0, SEEK_END) != 0)
    return dml__error(DML_ERR_IO, "cannot seek in '%s': %s", path, strerror(errno));
  off_t size = ftello(sf->f);
  if (size < 0 || fseeko(sf->f, 0, SEEK_SET) != 0)
    return dml__error(DML_ERR_IO, "cannot read '%s' (not a regular file?)", path);
  if (size < 8)
    return dml__error(DML_ERR_FORMAT,
                      "%s: %lld bytes is too short for a safetensors file (it starts with an "
                      "8-byte header length)",
                      path, (long long)size);
  unsigned char len8[8];
  if (fread(len8, 1, 8, sf->f) != 8)
    return dml__error(DML_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
  if (hlen > (uint64_t)size - 8)
    return dml__error(DML_ERR_FORMAT,
                      "%s: header length %llu is larger than the rest of the file (%lld bytes): "
                      "truncated, or not a safetensors file",
                      path, (unsigned long long)hlen, (long long)size - 8);
  if (hlen > (uint64_t)MAX_HEADER_BYTES)
    return dml__error(DML_ERR_FORMAT, "%s: header length %llu is over the 100 MB limit", path,
                      (unsigned long long)hlen);
  if (hlen < 2)
    return dml__error(DML_ERR_FORMAT, "%s: header length %llu is too small for a JSON object", path,
                      (unsigned long long)hlen);
  char *buf = malloc((size_t)hlen + 1);
  if (!buf) return dml__error(DML_ERR_NO_MEMORY, "out of memory reading '%s'", path);
  if (fread(buf, 1, (size_t)hlen, sf->f) != (size_t)hlen) {
    free(buf);
    return dml__error(DML_ERR_IO, "cannot read the header of '%s'", path);
  }
  buf[hlen] = '\0';
  sf->data_start = 8 + (int64_t)hlen;
  sf->data_size = (int64_t)size - sf->data_start;
  dml_status st = parse_header(sf, buf, (int64_t)hlen);
  free(buf);
  return st;
}

dml_status dml__st_open(const char *path, dml__st_file *out) {
  memset(out, 0, sizeof *out);
  dml_status st = st_open_inner(path, out);
  if (st != DML_OK) dml__st_close(out);
  return st;
}

const dml__st_entry *dml__st_find(const dml__st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
  return NULL;
}

const char *dml__st_meta(const dml__st_file *f, const char *key) {
  if (!f->meta) return NULL;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

dml_status dml__st_check_entry(const dml__st_file *f, const dml__st_entry *e, const char *name,
                               int ndim, const int64_t *shape) {
  if (strcmp(e->dtype, "F32") != 0)
    return dml__error(DML_ERR_UNSUPPORTED,
                      "%s: tensor '%s' has dtype %s; dml reads only F32 (save float32 tensors, "
                      "e.g. tensor.float())",
                      f->path, name, e->dtype);
  int same = e->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = e->shape[d] == shape[d];
  if (!same) {
    dml_tensor a = dml_tensor_view(NULL, e->ndim, e->shape), b = dml_tensor_view(NULL, ndim, shape);
    char sa[128], sb[128];
    dml_tensor_shape_str(&a, sa, sizeof sa);
    dml_tensor_shape_str(&b, sb, sizeof sb);
    return dml__error(DML_ERR_SHAPE,
                      "%s: tensor '%s' has shape %s in the file, the model expects %s", f->path,
                      name, sa, sb);
  }
  return DML_OK;
}

dml_status dml__st_read_f32(dml__st_file *f, const dml__st_entry *e, float *dst) {
  int64_t bytes = e->end - e->begin;
  if (bytes == 0) return DML_OK;
  if (fseeko(f->f, (off_t)(f->data_start + e->begin), SEEK_SET) != 0 ||
      fread(dst, 1, (size_t)bytes, f->f) != (size_t)bytes)
    return dml__error(DML_ERR_FORMAT, "%s: cannot read tensor '%s' (file truncated?)", f->path,
                      e->name);
  if (!host_is_little_endian()) swap4(dst, bytes / 4);
  return DML_OK;
}

dml_status dml_safetensors_read(const char *path, dml_param_store *params,
                                const char *skip_prefix) {
  if (!path || !params)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_safetensors_read: NULL path or store");
  int n = dml_params_count(params);
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    dml_param *p = dml_params_get(params, i);
    if (!p->value)
      return dml__error(DML_ERR_STATE, "parameter '%s' has no storage: finalize the store first",
                        p->name);
    total += p->numel;
  }
  dml__st_file sf;
  DML_TRY(dml__st_open(path, &sf));
  size_t skip_len = skip_prefix ? strlen(skip_prefix) : 0;
  dml_status st = DML_OK;
  for (int i = 0; i < sf.n && st == DML_OK; i++) {
    const dml__st_entry *e = &sf.entries[i];
    dml_param *p = dml_params_find(params, e->name);
    if (!p && skip_len && strncmp(e->name, skip_prefix, skip_len) == 0) continue;
    if (!p)
      st = dml__error(DML_ERR_FORMAT,
                      "%s: unexpected tensor '%s': the model has no parameter of that name "
                      "(is the file for another model?)",
                      path, e->name);
    else
      st = dml__st_check_entry(&sf, e, p->name, p->ndim, p->shape);
  }
  for (int i = 0; i < n && st == DML_OK; i++) {
    dml_param *p = dml_params_get(params, i);
    if (!dml__st_find(&sf, p->name))
      st = dml__error(DML_ERR_NOT_FOUND,
                      "%s: missing tensor '%s' (the model has it, the file "
                      "does not)",
                      path, p->name);
  }
  float *tmp = NULL;
  if (st == DML_OK) {
    tmp = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    if (!tmp) st = dml__error(DML_ERR_NO_MEMORY, "out of memory reading '%s'", path);
  }
  int64_t off = 0;
  for (int i = 0; i < n && st == DML_OK; i++) {
    dml_param *p = dml_params_get(params, i);
    st = dml__st_read_f32(&sf, dml__st_find(&sf, p->name), tmp + off);
    off += p->numel;
  }
  if (st == DML_OK) {
    off = 0;
    for (int i = 0; i < n; i++) {
      dml_param *p = dml_params_get(params, i);
      memcpy(p->value, tmp + off, (size_t)p->numel * sizeof(float));
      off += p->numel;
    }
  }
  free(tmp);
  dml__st_close(&sf);
  return st;
}
