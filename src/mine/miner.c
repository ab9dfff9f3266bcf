/* The standalone miner API (include/dml/miner.h): a miner spec "name opt=value ... distance=D
 * normalize=0|1" (default Euclidean on L2-normalised embeddings), and dml_miner_mine, which
 * builds the matrix m [b, r] of the batch against itself (self pairs excluded) or against a
 * reference set, the relation from the labels (equal label: positive, else negative), runs the
 * miner of src/mine/ on it and turns the result into index lists: pairs sorted by anchor then
 * column; triplets sorted by anchor, positive, negative, the band of the triplet miners
 * enumerated explicitly. The step advances by one after each call. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dml/miner.h"
#include "dml/tensor.h"
#include "mine/mine_internal.h"

#define MAX_KV 16
#define SPEC_MAX 512

struct dml_miner {
  dml__miner mn;
  dml_distance distance;
  int normalize;
  char spec[SPEC_MAX];
};

static const char *const dist_names[] = {"euclidean", "squared_euclidean", "cosine", "dot"};

static dml_status unknown_key(const dml__miner_def *def, const char *key) {
  char list[512] = "";
  for (int k = 0; k < def->n_opts; k++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s, ", def->opts[k].name);
  snprintf(list + strlen(list), sizeof list - strlen(list), "distance, normalize");
  return dml__error(DML_ERR_INVALID_ARGUMENT, "miner '%s': unknown parameter '%s'; valid: %s",
                    def->name, key, list);
}

dml_status dml_miner_new(const char *spec, uint64_t seed, dml_miner **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_miner_new: out is NULL");
  *out = NULL;
  if (!spec) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_miner_new: spec is NULL");
  char name[64];
  dml__spec_kv kv[MAX_KV];
  int n_kv = 0, used[MAX_KV] = {0};
  DML_TRY(dml__spec_split(spec, name, sizeof name, kv, MAX_KV, &n_kv));
  dml__miner mn;
  DML_TRY(dml__miner_make(name, kv, n_kv, "", used, seed, &mn));
  dml_distance dist = DML_DIST_EUCLIDEAN;
  int normalize = 1;
  for (int i = 0; i < n_kv; i++) {
    if (used[i]) continue;
    const char *k = kv[i].key, *v = kv[i].value;
    if (!strcmp(k, "distance")) {
      int e = -1;
      for (int c = 0; c < 4; c++)
        if (!strcmp(v, dist_names[c])) e = c;
      if (e < 0)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "miner '%s': distance=%s; valid: euclidean, squared_euclidean, "
                          "cosine, dot",
                          name, v);
      dist = (dml_distance)e;
    } else if (!strcmp(k, "normalize")) {
      if (strcmp(v, "0") && strcmp(v, "1"))
        return dml__error(DML_ERR_INVALID_ARGUMENT, "miner '%s': normalize=%s must be 0 or 1",
                          name, v);
      normalize = v[0] == '1';
    } else {
      return unknown_key(mn.def, k);
    }
  }
  if (dist == DML_DIST_COSINE) normalize = 1;
  if (mn.def == &dml__miner_distance_weighted && (dist != DML_DIST_EUCLIDEAN || !normalize))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "miner distance_weighted: needs distance=euclidean normalize=1 (the "
                      "weights are the inverse density of distances on the unit sphere)");
  dml_miner *m = calloc(1, sizeof *m);
  if (!m) return dml__error(DML_ERR_NO_MEMORY, "dml_miner_new: out of memory");
  m->mn = mn;
  m->distance = dist;
  m->normalize = normalize;
  snprintf(m->spec, sizeof m->spec, "%s", mn.def->name);
  dml__opts_format(m->spec, sizeof m->spec, mn.def->opts, mn.def->n_opts, mn.opt);
  size_t len = strlen(m->spec);
  snprintf(m->spec + len, sizeof m->spec - len, " distance=%s normalize=%d", dist_names[dist],
           normalize);
  *out = m;
  return DML_OK;
}

void dml_miner_free(dml_miner *m) { free(m); }

const char *dml_miner_spec(const dml_miner *m) { return m ? m->spec : ""; }

void dml_miner_set_step(dml_miner *m, uint64_t step) {
  if (m) m->mn.step = step;
}

void dml_mined_free(dml_mined *r) {
  if (!r) return;
  free(r->pos_anchor);
  free(r->pos_other);
  free(r->neg_anchor);
  free(r->neg_other);
  free(r->anchor);
  free(r->positive);
  free(r->negative);
  memset(r, 0, sizeof *r);
}

/* n int32 (NULL for n == 0); sets *fail when an allocation fails. */
static int32_t *ints(int64_t n, int *fail) {
  if (n == 0) return NULL;
  int32_t *p = malloc((size_t)n * sizeof(int32_t));
  if (!p) *fail = 1;
  return p;
}

static dml_status pairs_out(const dml__mine_args *a, dml_mined *out) {
  const int64_t b = a->b, r = a->r;
  int64_t np = 0, nn = 0;
  for (int64_t k = 0; k < b * r; k++) {
    np += a->rel[k] == DML__REL_POS;
    nn += a->rel[k] == DML__REL_NEG;
  }
  int fail = 0;
  out->pos_anchor = ints(np, &fail);
  out->pos_other = ints(np, &fail);
  out->neg_anchor = ints(nn, &fail);
  out->neg_other = ints(nn, &fail);
  if (fail) return dml__error(DML_ERR_NO_MEMORY, "dml_miner_mine: out of memory for the pairs");
  out->n_pos = np;
  out->n_neg = nn;
  int64_t p = 0, q = 0;
  for (int64_t i = 0; i < b; i++)
    for (int64_t j = 0; j < r; j++) {
      const uint8_t v = a->rel[i * r + j];
      if (v == DML__REL_POS) {
        out->pos_anchor[p] = (int32_t)i;
        out->pos_other[p++] = (int32_t)j;
      } else if (v == DML__REL_NEG) {
        out->neg_anchor[q] = (int32_t)i;
        out->neg_other[q++] = (int32_t)j;
      }
    }
  return DML_OK;
}

/* The band lo < gap <= hi over rel, enumerated per anchor in column order (tbuf: scratch). */
static dml_status band_out(const dml__mine_args *a, dml_mined *out) {
  const int64_t b = a->b, r = a->r;
  const double lo = a->trip->lo, hi = a->trip->hi;
  int64_t *off = malloc((size_t)(b + 1) * sizeof(int64_t));
  if (!off) return dml__error(DML_ERR_NO_MEMORY, "dml_miner_mine: out of memory");
  off[0] = 0;
  for (int pass = 0; pass < 2; pass++) {
#pragma omp parallel for schedule(static) if (b * r > DML__MINE_PAR)
    for (int64_t i = 0; i < b; i++) {
      const float *row = a->m + i * r;
      const uint8_t *ri = a->rel + i * r;
      int32_t *pos = a->tbuf + 3 * i * r;
      int64_t np = 0, nn = 0;
      for (int64_t j = 0; j < r; j++)
        if (ri[j] == DML__REL_POS) pos[np++] = (int32_t)j;
      int32_t *neg = pos + np;
      for (int64_t j = 0; j < r; j++)
        if (ri[j] == DML__REL_NEG) neg[nn++] = (int32_t)j;
      int64_t o = pass ? off[i] : 0;
      for (int64_t x = 0; x < np; x++) {
        const double kp = dml__mine_key(row, pos[x], a->sim);
        for (int64_t y = 0; y < nn; y++) {
          const double gap = dml__mine_key(row, neg[y], a->sim) - kp;
          if (!(gap > lo && gap <= hi)) continue;
          if (pass) {
            out->anchor[o] = (int32_t)i;
            out->positive[o] = pos[x];
            out->negative[o] = neg[y];
          }
          o++;
        }
      }
      if (!pass) off[i + 1] = o;
    }
    if (pass) break;
    for (int64_t i = 0; i < b; i++) off[i + 1] += off[i];
    int fail = 0;
    out->anchor = ints(off[b], &fail);
    out->positive = ints(off[b], &fail);
    out->negative = ints(off[b], &fail);
    if (fail) {
      const long long n = (long long)off[b];
      free(off);
      return dml__error(DML_ERR_NO_MEMORY, "dml_miner_mine: out of memory for %lld triplets", n);
    }
    out->n_triplets = off[b];
    if (off[b] == 0) break;
  }
  free(off);
  return DML_OK;
}

static dml_status list_out(const dml__triplets *t, dml_mined *out) {
  int fail = 0;
  out->anchor = ints(t->n, &fail);
  out->positive = ints(t->n, &fail);
  out->negative = ints(t->n, &fail);
  if (fail) return dml__error(DML_ERR_NO_MEMORY, "dml_miner_mine: out of memory for the triplets");
  out->n_triplets = t->n;
  if (t->n > 0) {
    memcpy(out->anchor, t->a, (size_t)t->n * sizeof(int32_t));
    memcpy(out->positive, t->p, (size_t)t->n * sizeof(int32_t));
    memcpy(out->negative, t->neg, (size_t)t->n * sizeof(int32_t));
  }
  return DML_OK;
}

/* Mines into out with the buffers mat [b r], rel [b r], tbuf [3 b r] (b, r >= 1). */
static dml_status mine_into(const dml_miner *m, uint64_t step, const float *emb,
                            const int32_t *labels, int64_t b, int64_t d, const dml_loss_ref *ref,
                            int64_t r, float *mat, uint8_t *rel, int32_t *tbuf, dml_mined *out) {
  const dml__miner_def *def = m->mn.def;
  const int64_t br = b * r;
  DML_TRY(dml__distance_matrix(emb, b, ref ? ref->emb : NULL, r, d, m->distance, m->normalize,
                               mat, NULL, NULL));
  const int32_t *col = ref ? ref->labels : labels;
#pragma omp parallel for schedule(static) if (br > DML__MINE_PAR)
  for (int64_t i = 0; i < b; i++) {
    uint8_t *ri = rel + i * r;
    for (int64_t j = 0; j < r; j++) ri[j] = col[j] == labels[i] ? DML__REL_POS : DML__REL_NEG;
    if (!ref) ri[i] = DML__REL_NONE;
  }
  dml__triplets trip = {0, 0, NULL, NULL, NULL, -INFINITY, INFINITY};
  dml__miner mn = m->mn;
  mn.step = step;
  dml__mine_args ma = {b, r, mat, dml_distance_is_similarity(m->distance), m->distance, d, rel,
                       &trip, tbuf};
  DML_TRY(def->mine(&mn, &ma));
  if (!def->triplets) return pairs_out(&ma, out);
  if (trip.explicit_list) return list_out(&trip, out);
  return band_out(&ma, out);
}

dml_status dml_miner_mine(dml_miner *m, const float *emb, const int32_t *labels, int64_t b,
                          int64_t d, const dml_loss_ref *ref, dml_mined *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_miner_mine: out is NULL");
  memset(out, 0, sizeof *out);
  if (!m) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_miner_mine: miner is NULL");
  out->kind = m->mn.def->triplets ? DML_MINED_TRIPLETS : DML_MINED_PAIRS;
  if (b < 0 || d < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_miner_mine: batch of %lld embeddings of width %lld; need b >= 0, "
                      "d >= 1",
                      (long long)b, (long long)d);
  if (b > 0 && (!emb || !labels))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_miner_mine: embeddings or labels are NULL");
  if (ref && (ref->n < 0 || (ref->n > 0 && (!ref->emb || !ref->labels))))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_miner_mine: the reference set needs n >= 0 and, when n > 0, its "
                      "embeddings and labels");
  const int64_t r = ref ? ref->n : b;
  if (b > INT32_MAX || r > INT32_MAX)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_miner_mine: %lld x %lld pairs: indices must fit in int32",
                      (long long)b, (long long)r);
  const uint64_t step = m->mn.step++;
  if (b == 0 || r == 0) return DML_OK;
  const int64_t br = b * r;
  float *mat = dml_alloc_aligned(br * (int64_t)sizeof(float));
  uint8_t *rel = malloc((size_t)br);
  int32_t *tbuf = malloc((size_t)(3 * br) * sizeof(int32_t));
  dml_status st;
  if (!mat || !rel || !tbuf)
    st = dml__error(DML_ERR_NO_MEMORY, "dml_miner_mine: out of memory for %lld x %lld pairs",
                    (long long)b, (long long)r);
  else
    st = mine_into(m, step, emb, labels, b, d, ref, r, mat, rel, tbuf, out);
  if (st != DML_OK) {
    const dml_mined_kind kind = out->kind;
    dml_mined_free(out);
    out->kind = kind;
  }
  dml_free_aligned(mat);
  free(rel);
  free(tbuf);
  return st;
}
