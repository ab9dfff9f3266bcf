/* The gallery (include/dml/index.h): labelled embeddings with caller-chosen int64 ids, added
 * and removed at any time, searched exactly (dml_knn_search) or through a FAISS index
 * (faiss_backend.h), and saved to / loaded from one checksummed file.
 *
 * Rows are kept dense: row r holds x[r*d ..], ids[r] and the labels lab[lab_off[r] ..
 * lab_off[r+1]-1]. An open-addressing table maps ids to rows. A FAISS index, when there is
 * one, numbers its vectors by row; removing items compacts the rows and rebuilds the FAISS
 * index from the kept embeddings, so row numbers and FAISS numbers always agree. Until an
 * index that needs training has seen enough items to train, searches run exactly. */
#define _POSIX_C_SOURCE 200809L /* fseeko, ftello */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/check.h"
#include "core/status_internal.h"
#include "dml/index.h"
#include "eval/eval_internal.h"
#include "index/faiss_backend.h"
#include "index/gallery_internal.h"
#include "nn/safetensors_internal.h"

#define MAX_PARAMS 8
#define FACTORY_MAX 255
#define MAX_K (1 << 20) /* neighbours per query */

typedef struct {
  char name[32];
  double value;
} search_param;

struct dml_gallery {
  int64_t d;
  dml_distance dist;
  char factory[FACTORY_MAX + 1];
  int64_t n, cap; /* rows used, rows allocated */
  float *x;
  int64_t *ids;
  int64_t *lab_off; /* cap + 1 entries */
  int32_t *lab;
  int64_t lab_cap;
  int64_t *slot_id; /* id table: slot_row[s] < 0 marks an empty slot */
  int64_t *slot_row;
  int64_t slots; /* power of two, at least twice n */
  dml__faiss *faiss; /* NULL for exact galleries */
  int64_t in_faiss;  /* rows added to the FAISS index (0 until it is trained) */
  search_param params[MAX_PARAMS];
  int nparams;
};

int dml_gallery_has_faiss(void) {
#ifdef DML_HAVE_FAISS
  return 1;
#else
  return 0;
#endif
}

static int is_exact_factory(const char *f) { return !f || !*f || strcmp(f, "Flat") == 0; }

/* ---- id table -------------------------------------------------------------------------- */

static uint64_t hash_id(int64_t id) {
  uint64_t z = (uint64_t)id + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int64_t find_row(const dml_gallery *g, int64_t id) {
  if (!g->slots) return -1;
  uint64_t mask = (uint64_t)g->slots - 1;
  for (uint64_t s = hash_id(id) & mask;; s = (s + 1) & mask) {
    if (g->slot_row[s] < 0) return -1;
    if (g->slot_id[s] == id) return g->slot_row[s];
  }
}

static void insert_id(dml_gallery *g, int64_t id, int64_t row) {
  uint64_t mask = (uint64_t)g->slots - 1;
  uint64_t s = hash_id(id) & mask;
  while (g->slot_row[s] >= 0) s = (s + 1) & mask;
  g->slot_id[s] = id;
  g->slot_row[s] = row;
}

/* Refills the table from the rows, first growing it to at least twice `rows` slots (it never
 * shrinks, so a refill for fewer rows cannot fail). */
static dml_status rebuild_table(dml_gallery *g, int64_t rows) {
  int64_t slots = g->slots ? g->slots : 16;
  while (slots < 2 * rows) slots *= 2;
  if (slots != g->slots) {
    int64_t *si = malloc((size_t)slots * sizeof *si);
    int64_t *sr = malloc((size_t)slots * sizeof *sr);
    if (!si || !sr) {
      free(si);
      free(sr);
      return dml__error(DML_ERR_NO_MEMORY, "out of memory indexing %lld gallery ids",
                        (long long)rows);
    }
    free(g->slot_id);
    free(g->slot_row);
    g->slot_id = si;
    g->slot_row = sr;
    g->slots = slots;
  }
  for (int64_t s = 0; s < g->slots; s++) g->slot_row[s] = -1;
  for (int64_t r = 0; r < g->n; r++) insert_id(g, g->ids[r], r);
  return DML_OK;
}

/* ---- storage --------------------------------------------------------------------------- */

static dml_status reserve_rows(dml_gallery *g, int64_t rows) {
  if (rows <= g->cap) return DML_OK;
  int64_t cap = g->cap ? g->cap : 64;
  while (cap < rows) cap *= 2;
  float *x = realloc(g->x, (size_t)cap * (size_t)g->d * sizeof *x);
  if (x) g->x = x;
  int64_t *ids = realloc(g->ids, (size_t)cap * sizeof *ids);
  if (ids) g->ids = ids;
  int64_t *off = realloc(g->lab_off, (size_t)(cap + 1) * sizeof *off);
  if (off) g->lab_off = off;
  if (!x || !ids || !off)
    return dml__error(DML_ERR_NO_MEMORY, "out of memory growing the gallery to %lld items",
                      (long long)rows);
  g->cap = cap;
  return DML_OK;
}

static dml_status reserve_labels(dml_gallery *g, int64_t count) {
  if (count <= g->lab_cap) return DML_OK;
  int64_t cap = g->lab_cap ? g->lab_cap : 64;
  while (cap < count) cap *= 2;
  int32_t *lab = realloc(g->lab, (size_t)cap * sizeof *lab);
  if (!lab)
    return dml__error(DML_ERR_NO_MEMORY, "out of memory storing %lld gallery labels",
                      (long long)count);
  g->lab = lab;
  g->lab_cap = cap;
  return DML_OK;
}

dml_status dml_gallery_create(dml_gallery **out, int64_t d, dml_distance dist,
                              const char *factory) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_create: NULL output");
  *out = NULL;
  if (d <= 0 || d > (1 << 20))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "gallery dimension must be between 1 and 1048576, got %lld", (long long)d);
  if (dist != DML_DIST_EUCLIDEAN && dist != DML_DIST_SQUARED_EUCLIDEAN &&
      dist != DML_DIST_COSINE && dist != DML_DIST_DOT)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "unknown distance %d", (int)dist);
  if (factory && strlen(factory) > FACTORY_MAX)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "index factory string longer than %d characters",
                      FACTORY_MAX);
  dml_gallery *g = calloc(1, sizeof *g);
  if (!g) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  g->d = d;
  g->dist = dist;
  snprintf(g->factory, sizeof g->factory, "%s", is_exact_factory(factory) ? "Flat" : factory);
  if (!is_exact_factory(factory)) {
#ifdef DML_HAVE_FAISS
    int ip = dist == DML_DIST_COSINE || dist == DML_DIST_DOT;
    dml_status st = dml__faiss_create(factory, d, ip, &g->faiss);
    if (st != DML_OK) {
      free(g);
      return st;
    }
#else
    free(g);
    return dml__error(DML_ERR_UNSUPPORTED,
                      "approximate index '%s' needs FAISS, and this dml was built without it: "
                      "install Debian's libfaiss-dev and rebuild dml (or use the exact index, "
                      "factory \"Flat\")",
                      factory);
#endif
  }
  dml_status st = reserve_rows(g, 1);
  if (st == DML_OK) st = rebuild_table(g, 0);
  if (st != DML_OK) {
    dml_gallery_free(g);
    return st;
  }
  g->lab_off[0] = 0;
  *out = g;
  return DML_OK;
}

void dml_gallery_free(dml_gallery *g) {
  if (!g) return;
#ifdef DML_HAVE_FAISS
  dml__faiss_free(g->faiss);
#endif
  free(g->x);
  free(g->ids);
  free(g->lab_off);
  free(g->lab);
  free(g->slot_id);
  free(g->slot_row);
  free(g);
}

int64_t dml_gallery_size(const dml_gallery *g) { return g ? g->n : 0; }
int64_t dml_gallery_dim(const dml_gallery *g) { return g ? g->d : 0; }
dml_distance dml_gallery_distance(const dml_gallery *g) { return g ? g->dist : DML_DIST_EUCLIDEAN; }
const char *dml_gallery_factory(const dml_gallery *g) { return g ? g->factory : ""; }

int dml_gallery_index_ready(const dml_gallery *g) {
  return g && g->faiss && g->n > 0 && g->in_faiss == g->n;
}

/* ---- FAISS synchronisation ----------------------------------------------------------------- */

#ifdef DML_HAVE_FAISS
/* Rows [r0, r1) as FAISS gets them: unit-normalised for cosine (zero rows stay zero). */
static dml_status faiss_rows(const dml_gallery *g, const float *x, int64_t n, float **tmp,
                             const float **rows) {
  *tmp = NULL;
  *rows = x;
  if (g->dist != DML_DIST_COSINE || n == 0) return DML_OK;
  float *t = malloc((size_t)n * (size_t)g->d * sizeof *t);
  if (!t) return dml__error(DML_ERR_NO_MEMORY, "out of memory normalising %lld vectors", (long long)n);
  for (int64_t i = 0; i < n; i++) {
    const float *a = x + i * g->d;
    double s = 0;
    for (int64_t j = 0; j < g->d; j++) s += (double)a[j] * a[j];
    float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
    for (int64_t j = 0; j < g->d; j++) t[i * g->d + j] = a[j] * inv;
  }
  *tmp = t;
  *rows = t;
  return DML_OK;
}

static dml_status faiss_train_rows(dml_gallery *g, const float *x, int64_t n) {
  float *tmp;
  const float *rows;
  DML_TRY(faiss_rows(g, x, n, &tmp, &rows));
  dml_status st = dml__faiss_train(g->faiss, rows, n);
  free(tmp);
  return st;
}

/* Adds gallery rows [in_faiss, n) to the FAISS index, training it first when it needs training
 * and enough rows are there. */
static dml_status faiss_catch_up(dml_gallery *g) {
  if (!g->faiss || g->in_faiss == g->n) return DML_OK;
  if (!dml__faiss_is_trained(g->faiss)) {
    int64_t need = dml__faiss_min_train(g->faiss);
    if (g->n < need || g->n == 0) return DML_OK; /* searched exactly until then */
    DML_TRY(faiss_train_rows(g, g->x, g->n));
  }
  int64_t n = g->n - g->in_faiss;
  float *tmp;
  const float *rows;
  DML_TRY(faiss_rows(g, g->x + g->in_faiss * g->d, n, &tmp, &rows));
  dml_status st = dml__faiss_add(g->faiss, rows, n);
  free(tmp);
  if (st != DML_OK) return st;
  g->in_faiss = g->n;
  return DML_OK;
}

/* Empties the FAISS index and adds every row again. On failure the index is left empty
 * (searches run exactly, and the next add tries again), never holding a partial copy. */
static dml_status faiss_rebuild(dml_gallery *g) {
  if (!g->faiss) return DML_OK;
  DML_TRY(dml__faiss_reset(g->faiss));
  g->in_faiss = 0;
  dml_status st = faiss_catch_up(g);
  if (st != DML_OK && dml__faiss_reset(g->faiss) == DML_OK) g->in_faiss = 0;
  return st;
}
#endif

dml_status dml_gallery_train(dml_gallery *g, const float *x, int64_t n) {
  if (!g || (!x && n > 0) || n < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_train: bad arguments");
  if (!g->faiss) return DML_OK;
#ifdef DML_HAVE_FAISS
  DML_TRY(dml__check_finite_rows(x, n, g->d, "dml_gallery_train", "training"));
  if (g->in_faiss > 0)
    return dml__error(DML_ERR_STATE,
                      "the '%s' index already holds items: train it before the first add",
                      g->factory);
  DML_TRY(faiss_train_rows(g, x, n));
  return faiss_catch_up(g);
#else
  return DML_OK;
#endif
}

/* ---- add / remove ------------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

dml_status dml_gallery_add(dml_gallery *g, const float *x, int64_t n, const int64_t *ids,
                           const dml_labels *labels) {
  if (!g || n < 0 || (n > 0 && !x))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_add: bad arguments");
  if (n == 0) return DML_OK;
  DML_TRY(dml__check_finite_rows(x, n, g->d, "dml_gallery_add", "item"));
  if (labels) DML_TRY(dml__eval_labels_check(labels, n, 0, "dml_gallery_add", "item"));
  int64_t next = 0;
  for (int64_t r = 0; r < g->n; r++)
    if (g->ids[r] >= next) next = g->ids[r] < INT64_MAX ? g->ids[r] + 1 : INT64_MAX;
  if (!ids && next > INT64_MAX - n)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "no free ids after the largest one (%lld): give the new items ids",
                      (long long)(next - 1));
  if (ids) {
    int64_t *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
    memcpy(sorted, ids, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_i64);
    if (sorted[0] < 0) {
      int64_t bad = sorted[0];
      free(sorted);
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "item id %lld is negative: ids are >= 0 (-1 marks a missing result)",
                        (long long)bad);
    }
    for (int64_t i = 0; i < n; i++) {
      int64_t id = sorted[i];
      int twice = i > 0 && id == sorted[i - 1];
      if (twice || find_row(g, id) >= 0) {
        free(sorted);
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "item id %lld is %s: ids must be unique in a gallery", (long long)id,
                          twice ? "given twice" : "already in the gallery");
      }
    }
    free(sorted);
  }
  int64_t new_labels = 0;
  if (labels) new_labels = labels->offsets ? labels->offsets[n] : n;
  DML_TRY(reserve_rows(g, g->n + n));
  DML_TRY(reserve_labels(g, g->lab_off[g->n] + new_labels));
  if (2 * (g->n + n) > g->slots) DML_TRY(rebuild_table(g, g->n + n));
  int64_t r0 = g->n;
  memcpy(g->x + r0 * g->d, x, (size_t)n * (size_t)g->d * sizeof *x);
  int64_t at = g->lab_off[r0];
  for (int64_t i = 0; i < n; i++) {
    int64_t r = r0 + i;
    g->ids[r] = ids ? ids[i] : next + i;
    if (labels && labels->offsets) {
      int64_t c = labels->offsets[i + 1] - labels->offsets[i];
      if (c) memcpy(g->lab + at, labels->values + labels->offsets[i], (size_t)c * sizeof *g->lab);
      at += c;
    } else if (labels) {
      g->lab[at++] = labels->values[i];
    }
    g->lab_off[r + 1] = at;
    insert_id(g, g->ids[r], r);
  }
  g->n += n;
#ifdef DML_HAVE_FAISS
  dml_status st = faiss_catch_up(g);
  if (st != DML_OK) {
    /* Undo: the gallery is left as it was. */
    g->n = r0;
    (void)rebuild_table(g, g->n); /* no allocation: the table only shrinks in use */
    /* An add that failed part-way may have left vectors in the index: rebuild it, so that
     * FAISS's numbers stay the gallery's rows. */
    if (g->faiss && dml__faiss_ntotal(g->faiss) != g->in_faiss) (void)faiss_rebuild(g);
    return st;
  }
#endif
  return DML_OK;
}

dml_status dml_gallery_remove(dml_gallery *g, const int64_t *ids, int64_t n, int64_t *removed) {
  if (removed) *removed = 0;
  if (!g || n < 0 || (n > 0 && !ids))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_remove: bad arguments");
  unsigned char *drop = calloc((size_t)(g->n > 0 ? g->n : 1), 1);
  if (!drop) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  int64_t count = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t r = find_row(g, ids[i]);
    if (r >= 0 && !drop[r]) {
      drop[r] = 1;
      count++;
    }
  }
  if (count == 0) {
    free(drop);
    return DML_OK;
  }
  int64_t w = 0, at = 0;
  for (int64_t r = 0; r < g->n; r++) {
    if (drop[r]) continue;
    int64_t b = g->lab_off[r], c = g->lab_off[r + 1] - b;
    if (w != r) {
      memmove(g->x + w * g->d, g->x + r * g->d, (size_t)g->d * sizeof *g->x);
      g->ids[w] = g->ids[r];
    }
    if (c) memmove(g->lab + at, g->lab + b, (size_t)c * sizeof *g->lab);
    g->lab_off[w] = at;
    at += c;
    w++;
  }
  g->lab_off[w] = at;
  g->n = w;
  free(drop);
  if (removed) *removed = count;
  DML_TRY(rebuild_table(g, g->n));
#ifdef DML_HAVE_FAISS
  DML_TRY(faiss_rebuild(g));
#endif
  return DML_OK;
}

/* ---- search ------------------------------------------------------------------------------ */

dml_status dml_gallery_search(const dml_gallery *g, const float *queries, int64_t nq, int64_t k,
                              int64_t *ids, float *dists) {
  if (!g || nq < 0 || k < 1 || (nq > 0 && (!queries || !ids)))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_search: bad arguments (k >= 1)");
  if (k > MAX_K || nq > INT64_MAX / 8 / k)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_gallery_search: k = %lld neighbours of %lld queries is too many (k <= "
                      "%d)",
                      (long long)k, (long long)nq, MAX_K);
  if (nq == 0) return DML_OK;
#ifdef DML_HAVE_FAISS
  int sim = dml_distance_is_similarity(g->dist);
  if (g->faiss && g->in_faiss == g->n && g->n > 0) {
    DML_TRY(dml__check_finite_rows(queries, nq, g->d, "dml_gallery_search", "query"));
    float *tmp;
    const float *rows;
    DML_TRY(faiss_rows(g, queries, nq, &tmp, &rows));
    float *dd = dists;
    float *own = NULL;
    if (!dd) {
      own = malloc((size_t)nq * (size_t)k * sizeof *own);
      if (!own) {
        free(tmp);
        return dml__error(DML_ERR_NO_MEMORY, "out of memory");
      }
      dd = own;
    }
    dml_status st = dml__faiss_search(g->faiss, rows, nq, k, dd, ids);
    free(tmp);
    if (st == DML_OK) {
      for (int64_t i = 0; i < nq * k; i++) {
        if (ids[i] < 0 || ids[i] >= g->n) {
          ids[i] = -1;
          dd[i] = sim ? -INFINITY : INFINITY;
          continue;
        }
        ids[i] = g->ids[ids[i]];
        if (g->dist == DML_DIST_EUCLIDEAN) dd[i] = sqrtf(dd[i] > 0 ? dd[i] : 0);
        else if (g->dist == DML_DIST_SQUARED_EUCLIDEAN && dd[i] < 0) dd[i] = 0;
      }
    }
    free(own);
    return st;
  }
#endif
  DML_TRY(dml_knn_search(g->x, g->n, queries, nq, g->d, g->dist, k, ids, dists));
  for (int64_t i = 0; i < nq * k; i++)
    if (ids[i] >= 0) ids[i] = g->ids[ids[i]];
  return DML_OK;
}

dml_status dml_gallery_labels(const dml_gallery *g, int64_t id, const int32_t **labels,
                              int64_t *count) {
  if (!g || !labels || !count)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_labels: NULL argument");
  int64_t r = find_row(g, id);
  if (r < 0) return dml__error(DML_ERR_NOT_FOUND, "no item with id %lld in the gallery", (long long)id);
  *labels = g->lab + g->lab_off[r];
  *count = g->lab_off[r + 1] - g->lab_off[r];
  return DML_OK;
}

void dml__gallery_all_labels(const dml_gallery *g, const int32_t **labels, int64_t *count) {
  *labels = g->lab;
  *count = g->lab_off[g->n];
}

dml_status dml_gallery_set_param(dml_gallery *g, const char *name, double value) {
  if (!g || !name || !*name)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_set_param: NULL argument");
  if (!g->faiss)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "search parameter '%s' does not apply: the exact index has none", name);
  if (strlen(name) >= sizeof g->params[0].name)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "search parameter name '%s' is too long", name);
  int slot = 0;
  while (slot < g->nparams && strcmp(g->params[slot].name, name) != 0) slot++;
  if (slot == MAX_PARAMS)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "at most %d search parameters", MAX_PARAMS);
#ifdef DML_HAVE_FAISS
  DML_TRY(dml__faiss_set_param(g->faiss, name, value));
#endif
  if (slot < g->nparams) {
    g->params[slot].value = value;
    return DML_OK;
  }
  snprintf(g->params[g->nparams].name, sizeof g->params[0].name, "%s", name);
  g->params[g->nparams++].value = value;
  return DML_OK;
}

/* ---- file format ------------------------------------------------------------------------- *
 * Little-endian, in this order:
 *   "DMLGALRY" | u32 version (1) | u32 distance | i64 d | i64 n | i64 label count
 *   | u32 factory length | factory bytes | u32 parameter count | per parameter: 32-byte name,
 *     f64 value
 *   | i64 ids[n] | i64 label offsets[n + 1] | i32 labels[label count] | f32 x[n * d]
 *   | u64 FAISS blob length | blob (dml__faiss_serialize; 0 bytes for exact galleries)
 *   | u32 CRC-32 (zlib) of every byte before it. */

static const char MAGIC[8] = {'D', 'M', 'L', 'G', 'A', 'L', 'R', 'Y'};
#define GALLERY_VERSION 1u

typedef struct {
  const dml_gallery *g;
  const uint8_t *blob;
  size_t blob_len;
  uLong crc;
} save_ctx;

static dml_status put(FILE *f, save_ctx *c, const void *p, size_t len, const char *path) {
  const uint8_t *b = p;
  size_t done = 0;
  while (done < len) {
    size_t chunk = len - done < (1u << 30) ? len - done : (1u << 30);
    c->crc = crc32(c->crc, b + done, (uInt)chunk);
    if (fwrite(b + done, 1, chunk, f) != chunk)
      return dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    done += chunk;
  }
  return DML_OK;
}

static dml_status save_body(FILE *f, const char *path, void *vctx) {
  save_ctx *c = vctx;
  const dml_gallery *g = c->g;
  uint32_t version = GALLERY_VERSION, dist = (uint32_t)g->dist;
  int64_t nlab = g->lab_off[g->n];
  uint32_t flen = (uint32_t)strlen(g->factory), np = (uint32_t)g->nparams;
  uint64_t blen = c->blob_len;
  DML_TRY(put(f, c, MAGIC, sizeof MAGIC, path));
  DML_TRY(put(f, c, &version, 4, path));
  DML_TRY(put(f, c, &dist, 4, path));
  DML_TRY(put(f, c, &g->d, 8, path));
  DML_TRY(put(f, c, &g->n, 8, path));
  DML_TRY(put(f, c, &nlab, 8, path));
  DML_TRY(put(f, c, &flen, 4, path));
  DML_TRY(put(f, c, g->factory, flen, path));
  DML_TRY(put(f, c, &np, 4, path));
  for (int i = 0; i < g->nparams; i++) {
    DML_TRY(put(f, c, g->params[i].name, sizeof g->params[i].name, path));
    DML_TRY(put(f, c, &g->params[i].value, 8, path));
  }
  DML_TRY(put(f, c, g->ids, (size_t)g->n * 8, path));
  DML_TRY(put(f, c, g->lab_off, (size_t)(g->n + 1) * 8, path));
  DML_TRY(put(f, c, g->lab, (size_t)nlab * 4, path));
  DML_TRY(put(f, c, g->x, (size_t)g->n * (size_t)g->d * 4, path));
  DML_TRY(put(f, c, &blen, 8, path));
  if (blen) DML_TRY(put(f, c, c->blob, c->blob_len, path));
  uint32_t crc = (uint32_t)c->crc;
  if (fwrite(&crc, 4, 1, f) != 1)
    return dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  return DML_OK;
}

dml_status dml_gallery_save(const dml_gallery *g, const char *path) {
  if (!g || !path) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_save: NULL argument");
  save_ctx c = {g, NULL, 0, crc32(0L, Z_NULL, 0)};
  uint8_t *blob = NULL;
#ifdef DML_HAVE_FAISS
  if (g->faiss && g->in_faiss > 0) DML_TRY(dml__faiss_serialize(g->faiss, &blob, &c.blob_len));
  else if (g->faiss && dml__faiss_is_trained(g->faiss))
    DML_TRY(dml__faiss_serialize(g->faiss, &blob, &c.blob_len));
#endif
  c.blob = blob;
  dml_status st = dml__write_atomic(path, save_body, &c);
  free(blob);
  return st;
}

typedef struct {
  const uint8_t *p;
  size_t left;
  const char *path;
} reader;

static dml_status take(reader *r, void *dst, size_t len, const char *what) {
  if (len > r->left)
    return dml__error(DML_ERR_FORMAT, "gallery file '%s' is truncated (reading %s)", r->path, what);
  memcpy(dst, r->p, len);
  r->p += len;
  r->left -= len;
  return DML_OK;
}

static dml_status load_parse(dml_gallery **out, const uint8_t *buf, size_t size, const char *path) {
  reader r = {buf, size - 4, path};
  char magic[8];
  uint32_t version = 0, dist = 0, flen = 0, np = 0;
  int64_t d = 0, n = 0, nlab = 0;
  DML_TRY(take(&r, magic, 8, "the magic number"));
  if (memcmp(magic, MAGIC, 8) != 0)
    return dml__error(DML_ERR_FORMAT, "'%s' is not a dml gallery file (wrong magic number)", path);
  DML_TRY(take(&r, &version, 4, "the version"));
  if (version != GALLERY_VERSION)
    return dml__error(DML_ERR_FORMAT, "gallery file '%s' has version %u; this dml reads version %u",
                      path, version, GALLERY_VERSION);
  DML_TRY(take(&r, &dist, 4, "the distance"));
  DML_TRY(take(&r, &d, 8, "the dimension"));
  DML_TRY(take(&r, &n, 8, "the item count"));
  DML_TRY(take(&r, &nlab, 8, "the label count"));
  DML_TRY(take(&r, &flen, 4, "the factory string"));
  if (dist > DML_DIST_DOT || d <= 0 || d > (1 << 20) || n < 0 || nlab < 0 ||
      flen > FACTORY_MAX || (uint64_t)n > r.left / 8 || (uint64_t)nlab > r.left / 4 ||
      (uint64_t)n * (uint64_t)d > r.left / 4)
    return dml__error(DML_ERR_FORMAT, "gallery file '%s' has an inconsistent header", path);
  char factory[FACTORY_MAX + 1];
  DML_TRY(take(&r, factory, flen, "the factory string"));
  factory[flen] = 0;
  if (flen == 0 || memchr(factory, 0, flen))
    return dml__error(DML_ERR_FORMAT, "gallery file '%s' has a malformed factory string", path);
  DML_TRY(take(&r, &np, 4, "the parameter count"));
  if (np > MAX_PARAMS)
    return dml__error(DML_ERR_FORMAT, "gallery file '%s' has %u search parameters (at most %d)",
                      path, np, MAX_PARAMS);
  search_param params[MAX_PARAMS];
  for (uint32_t i = 0; i < np; i++) {
    DML_TRY(take(&r, params[i].name, sizeof params[i].name, "a parameter"));
    DML_TRY(take(&r, &params[i].value, 8, "a parameter"));
    if (!memchr(params[i].name, 0, sizeof params[i].name) || !params[i].name[0])
      return dml__error(DML_ERR_FORMAT, "gallery file '%s' has a malformed parameter name", path);
  }
  dml_gallery *g = NULL;
  dml_status st;
  /* The FAISS index comes from the blob; create the gallery exact, then attach it. */
  DML_TRY(dml_gallery_create(&g, d, (dml_distance)dist, NULL));
  snprintf(g->factory, sizeof g->factory, "%s", factory);
  st = reserve_rows(g, n > 0 ? n : 1);
  if (st == DML_OK) st = reserve_labels(g, nlab > 0 ? nlab : 1);
  if (st == DML_OK) st = take(&r, g->ids, (size_t)n * 8, "the ids");
  if (st == DML_OK) st = take(&r, g->lab_off, (size_t)(n + 1) * 8, "the label offsets");
  if (st == DML_OK) st = take(&r, g->lab, (size_t)nlab * 4, "the labels");
  if (st == DML_OK) st = take(&r, g->x, (size_t)n * (size_t)d * 4, "the embeddings");
  if (st == DML_OK) {
    g->n = n;
    if (g->lab_off[0] != 0 || g->lab_off[n] != nlab)
      st = dml__error(DML_ERR_FORMAT, "gallery file '%s' has inconsistent label offsets", path);
    for (int64_t i = 0; st == DML_OK && i < n; i++)
      if (g->lab_off[i + 1] < g->lab_off[i])
        st = dml__error(DML_ERR_FORMAT, "gallery file '%s' has inconsistent label offsets", path);
    for (int64_t i = 0; st == DML_OK && i < nlab; i++)
      if (g->lab[i] < 0)
        st = dml__error(DML_ERR_FORMAT, "gallery file '%s' has a negative label", path);
    for (int64_t i = 0; st == DML_OK && i < n * d; i++)
      if (!isfinite(g->x[i]))
        st = dml__error(DML_ERR_FORMAT, "gallery file '%s' has a non-finite embedding", path);
  }
  if (st == DML_OK) st = rebuild_table(g, n);
  for (int64_t i = 0; st == DML_OK && i < n; i++)
    if (g->ids[i] < 0)
      st = dml__error(DML_ERR_FORMAT, "gallery file '%s' has a negative id", path);
  for (int64_t i = 0; st == DML_OK && i < n; i++)
    if (find_row(g, g->ids[i]) != i)
      st = dml__error(DML_ERR_FORMAT, "gallery file '%s' lists id %lld twice", path,
                      (long long)g->ids[i]);
  uint64_t blen = 0;
  if (st == DML_OK) st = take(&r, &blen, 8, "the index length");
  if (st == DML_OK && blen != r.left)
    st = dml__error(DML_ERR_FORMAT, "gallery file '%s' has %llu index bytes where %llu remain",
                    path, (unsigned long long)blen, (unsigned long long)r.left);
  if (st == DML_OK && is_exact_factory(factory) && blen)
    st = dml__error(DML_ERR_FORMAT, "gallery file '%s' is exact but carries an index", path);
  if (st == DML_OK && !is_exact_factory(factory)) {
#ifdef DML_HAVE_FAISS
    if (blen) {
      st = dml__faiss_deserialize(r.p, (size_t)blen, &g->faiss);
      int ip = dist == DML_DIST_COSINE || dist == DML_DIST_DOT;
      if (st == DML_OK &&
          (dml__faiss_dim(g->faiss) != d || dml__faiss_inner_product(g->faiss) != ip))
        st = dml__error(DML_ERR_FORMAT,
                        "gallery file '%s': its index (%s) does not match the gallery's "
                        "dimension %lld and distance",
                        path, dml__faiss_description(g->faiss), (long long)d);
      if (st == DML_OK) {
        int64_t nt = dml__faiss_ntotal(g->faiss);
        if (nt != 0 && nt != n)
          st = dml__error(DML_ERR_FORMAT,
                          "gallery file '%s': its index holds %lld vectors for %lld items", path,
                          (long long)nt, (long long)n);
        g->in_faiss = nt;
      }
    } else {
      int ip = dist == DML_DIST_COSINE || dist == DML_DIST_DOT;
      st = dml__faiss_create(factory, d, ip, &g->faiss);
    }
    for (uint32_t i = 0; st == DML_OK && i < np; i++)
      st = dml_gallery_set_param(g, params[i].name, params[i].value);
    if (st == DML_OK) st = faiss_catch_up(g);
#else
    st = dml__error(DML_ERR_UNSUPPORTED,
                    "gallery '%s' uses the approximate index '%s', which needs FAISS, and this "
                    "dml was built without it: install Debian's libfaiss-dev and rebuild dml",
                    path, factory);
#endif
  }
  if (st != DML_OK) {
    dml_gallery_free(g);
    return st;
  }
  *out = g;
  return DML_OK;
}

dml_status dml_gallery_load(dml_gallery **out, const char *path) {
  if (!out || !path) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_gallery_load: NULL argument");
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return dml__error(DML_ERR_IO, "cannot open gallery '%s': %s", path, strerror(errno));
  uint8_t *buf = NULL;
  size_t size = 0;
  dml_status st = DML_OK;
  struct stat info;
  if (fstat(fileno(f), &info) != 0 || !S_ISREG(info.st_mode))
    st = dml__error(DML_ERR_IO, "'%s' is not a regular file", path);
  if (st == DML_OK && fseeko(f, 0, SEEK_END) != 0)
    st = dml__error(DML_ERR_IO, "cannot read '%s'", path);
  off_t end = st == DML_OK ? ftello(f) : -1;
  if (st == DML_OK && (end < 0 || fseeko(f, 0, SEEK_SET) != 0))
    st = dml__error(DML_ERR_IO, "cannot read '%s'", path);
  if (st == DML_OK && end < 8 + 4)
    st = dml__error(DML_ERR_FORMAT, "gallery file '%s' is truncated (%lld bytes)", path,
                    (long long)end);
  if (st == DML_OK) {
    size = (size_t)end;
    buf = malloc(size);
    if (!buf) st = dml__error(DML_ERR_NO_MEMORY, "out of memory reading '%s'", path);
  }
  if (st == DML_OK && fread(buf, 1, size, f) != size)
    st = dml__error(DML_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
  fclose(f);
  if (st == DML_OK) st = dml__gallery_from_bytes(out, buf, size, path);
  free(buf);
  return st;
}

dml_status dml__gallery_from_bytes(dml_gallery **out, const uint8_t *buf, size_t size,
                                   const char *path) {
  *out = NULL;
  if (size < 8 + 4)
    return dml__error(DML_ERR_FORMAT, "gallery file '%s' is truncated", path);
  if (memcmp(buf, MAGIC, 8) != 0)
    return dml__error(DML_ERR_FORMAT, "'%s' is not a dml gallery file (wrong magic number)", path);
  uLong crc = crc32(0L, Z_NULL, 0);
  size_t done = 0, body = size - 4;
  while (done < body) {
    size_t chunk = body - done < (1u << 30) ? body - done : (1u << 30);
    crc = crc32(crc, buf + done, (uInt)chunk);
    done += chunk;
  }
  uint32_t stored;
  memcpy(&stored, buf + body, 4);
  if ((uint32_t)crc != stored)
    return dml__error(DML_ERR_FORMAT,
                      "gallery file '%s' is corrupted or truncated (checksum mismatch)", path);
  return load_parse(out, buf, size, path);
}
