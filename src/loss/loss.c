/* The loss object: spec parsing into terms (a weighted sum), parameters, cross-batch memory,
 * and the one pipeline every term runs through:
 *   columns (batch / reference set / memory / proxies) -> m = one GEMM (distance_matrix.c)
 *   -> rel from labels -> miner -> kernel (loss value, dloss/dm) -> backward through the GEMM.
 * The standalone call (dml_loss_compute) and the graph node (dml_loss_node) share it: the node
 * computes value and gradients in its forward and scales them by the upstream gradient in its
 * backward.
 *
 * Cross-batch memory (XBM, Wang et al. 2020): a ring of the last `memory` detached embeddings
 * and labels. A term with memory compares the batch with itself (gradient to both sides, as
 * without memory) and with the memory (gradient to the batch side only); the batch is then
 * pushed into the ring, so it never meets its own copy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph_internal.h"
#include "loss/loss_internal.h"

#define MAX_TERMS 8
#define MAX_KV 32
#define SPEC_MAX 2048

struct dml_loss {
  dml__loss_term terms[MAX_TERMS];
  dml__miner miners[MAX_TERMS];
  int n_terms;
  dml_param_store *store;
  uint64_t step;
  char spec[SPEC_MAX];
  /* workspace reused across calls (grown on demand) */
  void *ws;
  int64_t ws_cap, ws_used;
};

/* ---- small helpers ---- */

static const char *const dist_names[] = {"euclidean", "squared_euclidean", "cosine", "dot"};
static const char *const red_names[] = {"mean", "nonzero", "sum"};
static const char *const common_keys = "distance, normalize, reduction, miner, memory";

static void *ws_take(dml_loss *l, int64_t bytes) {
  bytes = (bytes + 63) & ~(int64_t)63;
  if (l->ws_used + bytes > l->ws_cap) return NULL;
  void *p = (char *)l->ws + l->ws_used;
  l->ws_used += bytes;
  return p;
}

static dml_status ws_reserve(dml_loss *l, int64_t bytes) {
  l->ws_used = 0;
  if (bytes <= l->ws_cap) return DML_OK;
  dml_free_aligned(l->ws);
  l->ws = dml_alloc_aligned(bytes);
  l->ws_cap = l->ws ? bytes : 0;
  if (!l->ws)
    return dml__error(DML_ERR_NO_MEMORY, "loss: out of memory for a %lld-byte workspace",
                      (long long)bytes);
  return DML_OK;
}

dml_status dml__loss_add_param(dml__loss_term *t, const char *name, int ndim,
                               const int64_t *shape, int trainable) {
  if (t->n_params >= DML__MAX_PARAMS)
    return dml__error(DML_ERR_INTERNAL, "%s: more than %d parameters", t->def->name,
                      DML__MAX_PARAMS);
  char full[DML_PARAM_NAME_MAX];
  snprintf(full, sizeof full, "%d.%s", t->index, name);
  int idx = -1;
  DML_TRY(dml_params_add(t->store, full, ndim, shape, trainable, &idx));
  t->param_index[t->n_params++] = idx;
  return DML_OK;
}

dml_param *dml__loss_param(const dml__loss_term *t, int slot) {
  if (slot < 0 || slot >= t->n_params) return NULL;
  return dml_params_get(t->store, t->param_index[slot]);
}

/* ---- spec parsing ---- */

static dml_status parse_enum(const char *what, const char *key, const char *value,
                             const char *const *names, int n, int *out) {
  for (int i = 0; i < n; i++)
    if (!strcmp(value, names[i])) {
      *out = i;
      return DML_OK;
    }
  char list[256] = "";
  for (int i = 0; i < n; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
  return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %s=%s is not one of: %s", what, key, value,
                    list);
}

/* "0.5*triplet ..." -> weight 0.5, rest "triplet ...". */
static dml_status split_weight(char *term, double *weight, char **rest) {
  while (*term == ' ' || *term == '\t') term++;
  *weight = 1.0;
  *rest = term;
  char *star = strchr(term, '*');
  char *space = strpbrk(term, " \t=");
  if (!star || (space && space < star)) return DML_OK;
  char *end = NULL;
  double w = strtod(term, &end);
  while (end && (*end == ' ' || *end == '\t')) end++;
  if (end != star || !isfinite(w) || w < 0.0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "loss term '%s': a weight is a non-negative number before '*', as in "
                      "'0.5*triplet'",
                      term);
  *weight = w;
  *rest = star + 1;
  return DML_OK;
}

static dml_status unknown_key_error(const dml__loss_term *t, const char *key) {
  char list[1024] = "";
  for (int k = 0; k < t->def->n_opts; k++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s, ", t->def->opts[k].name);
  snprintf(list + strlen(list), sizeof list - strlen(list), "%s", common_keys);
  if (t->miner) /* the miner's own options, as miner.<name> */
    for (int k = 0; k < t->miner->def->n_opts; k++)
      snprintf(list + strlen(list), sizeof list - strlen(list), ", miner.%s",
               t->miner->def->opts[k].name);
  return dml__error(DML_ERR_INVALID_ARGUMENT, "loss '%s': unknown parameter '%s'; valid: %s",
                    t->def->name, key, list);
}

static dml_status parse_term(dml_loss *l, int index, char *text, const dml_loss_config *cfg) {
  dml__loss_term *t = &l->terms[index];
  memset(t, 0, sizeof *t);
  char *body;
  DML_TRY(split_weight(text, &t->weight, &body));
  char name[64];
  dml__spec_kv kv[MAX_KV];
  int n_kv = 0, used[MAX_KV] = {0};
  DML_TRY(dml__spec_split(body, name, sizeof name, kv, MAX_KV, &n_kv));
  const dml__loss_def *def = dml__loss_find(name);
  if (!def) {
    char names[1024];
    dml__loss_names(names, sizeof names);
    return dml__error(DML_ERR_INVALID_ARGUMENT, "unknown loss '%s'; valid losses: %s", name,
                      names);
  }
  t->def = def;
  t->index = index;
  t->store = l->store;
  t->distance = def->distance;
  t->normalize = def->normalize;
  t->reduction = def->reduction;
  t->dim = cfg ? cfg->dim : 0;
  t->num_classes = cfg ? cfg->num_classes : 0;
  t->seed = cfg ? cfg->seed : 0;
  DML_TRY(dml__opts_apply(def->name, def->opts, def->n_opts, t->opt, kv, n_kv, used));
  const char *miner_name = def->miner && def->miner[0] ? def->miner : NULL;
  for (int i = 0; i < n_kv; i++) {
    const char *k = kv[i].key, *v = kv[i].value;
    int e = 0;
    if (!strcmp(k, "distance")) {
      DML_TRY(parse_enum(def->name, k, v, dist_names, 4, &e));
      t->distance = (dml_distance)e;
    } else if (!strcmp(k, "normalize")) {
      if (strcmp(v, "0") && strcmp(v, "1"))
        return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: normalize=%s must be 0 or 1",
                          def->name, v);
      t->normalize = v[0] == '1';
    } else if (!strcmp(k, "reduction")) {
      DML_TRY(parse_enum(def->name, k, v, red_names, 3, &e));
      t->reduction = (dml__reduction)e;
    } else if (!strcmp(k, "miner")) {
      miner_name = v;
    } else if (!strcmp(k, "memory")) {
      char *end = NULL;
      long long n = strtoll(v, &end, 10);
      if (end == v || *end || n < 0 || n > ((int64_t)1 << 30))
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: memory=%s must be a whole number of embeddings from 0 (none) "
                          "to %lld",
                          def->name, v, (long long)((int64_t)1 << 30));
      if (n > 0 && def->kind != DML__KIND_PAIR)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s: cross-batch memory needs a loss that compares embeddings with "
                          "each other; a proxy or classifier loss has nothing to remember",
                          def->name);
      t->memory_cap = n;
    } else {
      continue;
    }
    used[i] = 1;
  }
  if (t->distance == DML_DIST_COSINE) t->normalize = 1;
  if (miner_name) {
    if (def->kind != DML__KIND_PAIR)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: miners select pairs of embeddings; a proxy or classifier loss "
                        "takes no miner",
                        def->name);
    t->miner = &l->miners[index];
    DML_TRY(dml__miner_make(miner_name, kv, n_kv, "miner.", used, t->seed, t->miner));
    /* its density is that of distances between points on the unit sphere */
    if (!strcmp(t->miner->def->name, "distance_weighted") &&
        (t->distance != DML_DIST_EUCLIDEAN || !t->normalize))
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "%s: miner=distance_weighted needs distance=euclidean normalize=1 "
                        "(its sampling density is that of points on the unit sphere)",
                        def->name);
  }
  for (int i = 0; i < n_kv; i++)
    if (!used[i]) return unknown_key_error(t, kv[i].key);
  if (def->declare) DML_TRY(def->declare(t));
  return DML_OK;
}

static void format_spec(dml_loss *l) {
  char *buf = l->spec;
  buf[0] = '\0';
  for (int i = 0; i < l->n_terms; i++) {
    const dml__loss_term *t = &l->terms[i];
    size_t len = strlen(buf);
    snprintf(buf + len, SPEC_MAX - len, "%s%.9g*%s", i ? " + " : "", t->weight, t->def->name);
    dml__opts_format(buf, SPEC_MAX, t->def->opts, t->def->n_opts, t->opt);
    len = strlen(buf);
    snprintf(buf + len, SPEC_MAX - len, " distance=%s normalize=%d reduction=%s",
             dist_names[t->distance], t->normalize, red_names[t->reduction]);
    if (t->miner) {
      len = strlen(buf);
      snprintf(buf + len, SPEC_MAX - len, " miner=%s", t->miner->def->name);
      for (int k = 0; k < t->miner->def->n_opts; k++) {
        len = strlen(buf);
        snprintf(buf + len, SPEC_MAX - len, " miner.%s=%.9g", t->miner->def->opts[k].name,
                 t->miner->opt[k]);
      }
    }
    if (t->memory_cap) {
      len = strlen(buf);
      snprintf(buf + len, SPEC_MAX - len, " memory=%lld", (long long)t->memory_cap);
    }
  }
}

dml_status dml_loss_new(const char *spec, const dml_loss_config *cfg, dml_loss **out) {
  if (!spec || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loss_new: spec or out is NULL");
  *out = NULL;
  if (strlen(spec) >= SPEC_MAX)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "loss spec longer than %d characters",
                      SPEC_MAX - 1);
  if (cfg && (cfg->dim < 0 || cfg->num_classes < 0))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "loss config: dim and num_classes must be >= 0");
  dml_loss *l = calloc(1, sizeof *l);
  if (!l) return dml__error(DML_ERR_NO_MEMORY, "could not allocate a loss");
  dml_status st = dml_params_new(&l->store);
  char text[SPEC_MAX];
  snprintf(text, sizeof text, "%s", spec);
  /* terms are separated by '+' */
  for (char *part = text; st == DML_OK && part;) {
    char *plus = strchr(part, '+');
    if (plus) *plus = '\0';
    if (l->n_terms == MAX_TERMS) {
      st = dml__error(DML_ERR_INVALID_ARGUMENT, "a loss sums at most %d terms", MAX_TERMS);
      break;
    }
    st = parse_term(l, l->n_terms, part, cfg);
    if (st == DML_OK || l->terms[l->n_terms].def) l->n_terms++;
    part = plus ? plus + 1 : NULL;
  }
  if (st == DML_OK && l->n_terms == 0)
    st = dml__error(DML_ERR_INVALID_ARGUMENT, "empty loss spec");
  if (st == DML_OK) st = dml_params_finalize(l->store);
  for (int i = 0; st == DML_OK && i < l->n_terms; i++)
    if (l->terms[i].def->initialise) st = l->terms[i].def->initialise(&l->terms[i]);
  if (st != DML_OK) {
    dml_loss_free(l);
    return st;
  }
  format_spec(l);
  *out = l;
  return DML_OK;
}

void *dml__loss_scratch(dml__loss_term *t, int64_t bytes) {
  if (bytes < 64) bytes = 64;
  if (bytes <= t->scratch_bytes) return t->scratch;
  dml_free_aligned(t->scratch);
  t->scratch = dml_alloc_aligned(bytes);
  t->scratch_bytes = t->scratch ? bytes : 0;
  if (!t->scratch)
    dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld bytes of scratch", t->def->name,
               (long long)bytes);
  return t->scratch;
}

void dml_loss_free(dml_loss *l) {
  if (!l) return;
  for (int i = 0; i < l->n_terms; i++) {
    dml__loss_term *t = &l->terms[i];
    if (t->def && t->def->release) t->def->release(t);
    free(t->memory_emb);
    free(t->memory_labels);
    dml_free_aligned(t->scratch);
  }
  dml_params_free(l->store);
  dml_free_aligned(l->ws);
  free(l);
}

const char *dml_loss_spec(const dml_loss *l) { return l ? l->spec : ""; }

dml_param_store *dml_loss_params(dml_loss *l) {
  return l && dml_params_count(l->store) > 0 ? l->store : NULL;
}

void dml_loss_set_step(dml_loss *l, uint64_t step) {
  if (l) l->step = step;
}

int64_t dml_loss_memory_size(const dml_loss *l) {
  int64_t n = 0;
  for (int i = 0; l && i < l->n_terms; i++)
    if (l->terms[i].memory_len > n) n = l->terms[i].memory_len;
  return n;
}

void dml_loss_memory_clear(dml_loss *l) {
  for (int i = 0; l && i < l->n_terms; i++) {
    dml__loss_term *t = &l->terms[i];
    free(t->memory_emb);
    free(t->memory_labels);
    t->memory_emb = NULL;
    t->memory_labels = NULL;
    t->memory_len = t->memory_head = t->memory_alloc = 0;
  }
}

/* Floats spanned by the store's blocks: parameters start on 16-float boundaries, so this is
 * more than dml_params_numel; gradient scratch laid out like the store needs this many. */
static int64_t store_span(dml_param_store *s) {
  int64_t n = 0;
  for (int p = 0; p < dml_params_count(s); p++) {
    const dml_param *q = dml_params_get(s, p);
    if (q->offset + q->numel > n) n = q->offset + q->numel;
  }
  return n;
}

/* ---- the pipeline ---- */

static dml_status check_inputs(const dml_loss *l, const float *emb, const int32_t *labels,
                               int64_t b, int64_t d, const dml_loss_ref *ref) {
  if (!l || !emb || !labels)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "loss: loss, embeddings or labels is NULL");
  if (b < 1 || d < 1)
    return dml__error(DML_ERR_SHAPE, "loss: embeddings are %lld x %lld; need at least 1 x 1",
                      (long long)b, (long long)d);
  if (b > (1 << 20) || d > (1 << 20))
    return dml__error(DML_ERR_SHAPE, "loss: %lld x %lld embeddings exceed 2^20 per side",
                      (long long)b, (long long)d);
  dml_tensor te = dml_tensor_view((float *)emb, 2, (int64_t[]){b, d});
  DML_TRY(dml_tensor_check_finite(&te, "loss embeddings"));
  if (ref) {
    if (!ref->emb || !ref->labels || ref->n < 1)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "loss: the reference set needs embeddings, labels and n >= 1");
    if (ref->n > (1 << 24))
      return dml__error(DML_ERR_SHAPE, "loss: reference set of %lld rows exceeds 2^24",
                        (long long)ref->n);
    dml_tensor tr = dml_tensor_view((float *)ref->emb, 2, (int64_t[]){ref->n, d});
    DML_TRY(dml_tensor_check_finite(&tr, "loss reference embeddings"));
  }
  for (int i = 0; i < l->n_terms; i++) {
    const dml__loss_term *t = &l->terms[i];
    if (t->def->kind == DML__KIND_PROXY) {
      if (d != t->dim)
        return dml__error(DML_ERR_SHAPE, "%s: embeddings have %lld columns, the loss was made "
                          "for dim=%lld", t->def->name, (long long)d, (long long)t->dim);
      for (int64_t k = 0; k < b; k++)
        if (labels[k] < 0 || labels[k] >= t->num_classes)
          return dml__error(DML_ERR_INVALID_ARGUMENT,
                            "%s: label of row %lld is %d, outside [0, %lld): proxy and "
                            "classifier losses need class indices below num_classes",
                            t->def->name, (long long)k, (int)labels[k],
                            (long long)t->num_classes);
      if (ref)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "%s compares embeddings with learned class vectors; it takes no "
                          "reference set", t->def->name);
    }
    if (t->memory_len > 0 && t->dim != d)
      return dml__error(DML_ERR_SHAPE, "%s: the memory holds %lld-wide embeddings, got %lld",
                        t->def->name, (long long)t->dim, (long long)d);
  }
  return DML_OK;
}

/* Upper bound of the workspace one term needs. */
static int64_t term_bytes(const dml__loss_term *t, int64_t b, int64_t d, int64_t n_ref) {
  int64_t r;
  if (t->def->kind == DML__KIND_PROXY)
    r = t->proxy_rows;
  else
    r = (n_ref > 0 ? n_ref : b) + t->memory_len;
  int64_t f = (int64_t)sizeof(float);
  int64_t bytes = 2 * b * r * f + b * r;           /* m, dm, rel */
  bytes += (r * d + b * d + r * d + 2 * b * d) * f; /* columns, normalised rows and columns,
                                                      dA, dC */
  bytes += r * d * f + r * 4 + 4 * 64;
  if (t->miner) bytes += 3 * b * r * (int64_t)sizeof(int32_t);
  if (t->def->select_rows) bytes += b * (8 + 4) + 2 * b * d * (int64_t)sizeof(float);
  return bytes + 16 * 64;
}

/* Makes room in the ring for a batch of b: its storage grows with its content (doubling) up
 * to memory_cap rows, so a large memory= costs only what it holds. Called for every term
 * before any runs, so that running out of memory leaves every memory as it was. */
static dml_status reserve_memory(dml__loss_term *t, int64_t b, int64_t d) {
  const int64_t want = t->memory_len + b < t->memory_cap ? t->memory_len + b : t->memory_cap;
  if (want <= t->memory_alloc) return DML_OK;
  int64_t n = t->memory_alloc * 2 > want ? t->memory_alloc * 2 : want;
  if (n > t->memory_cap) n = t->memory_cap;
  float *e = realloc(t->memory_emb, (size_t)(n * d) * sizeof(float));
  if (e) t->memory_emb = e;
  int32_t *lab = e ? realloc(t->memory_labels, (size_t)n * sizeof(int32_t)) : NULL;
  if (lab) t->memory_labels = lab;
  if (!e || !lab)
    return dml__error(DML_ERR_NO_MEMORY,
                      "%s: out of memory growing the cross-batch memory to %lld embeddings "
                      "(memory=%lld); choose a smaller memory=",
                      t->def->name, (long long)n, (long long)t->memory_cap);
  t->memory_alloc = n;
  return DML_OK;
}

/* Appends the batch to the ring (room reserved): rows go in order until the ring is full, and
 * then overwrite the oldest. */
static void push_memory(dml__loss_term *t, const float *emb, const int32_t *labels, int64_t b,
                        int64_t d) {
  if (t->memory_len == 0) t->dim = d;
  for (int64_t i = 0; i < b; i++) {
    memcpy(t->memory_emb + t->memory_head * d, emb + i * d, (size_t)d * sizeof(float));
    t->memory_labels[t->memory_head] = labels[i];
    t->memory_head = (t->memory_head + 1) % t->memory_cap;
    if (t->memory_len < t->memory_cap) t->memory_len++;
  }
}

/* Runs term t; adds weight * loss to *total, weight * dloss/demb to grad [b, d] (direct: writes
 * it there, grad's old content is ignored; only for a term without select_rows, which always
 * reaches the backward) and the weighted parameter gradients to pgrad (store layout). */
static dml_status run_term(dml_loss *l, dml__loss_term *t, const float *emb,
                           const int32_t *labels, int64_t b, int64_t d, const dml_loss_ref *ref,
                           double *total, float *grad, float *pgrad, int direct) {
  const int proxy = t->def->kind == DML__KIND_PROXY;
  const int64_t f = (int64_t)sizeof(float);
  /* a loss that reads few rows runs on that sub-batch */
  const int64_t *sel = NULL;
  if (!proxy && t->def->select_rows) {
    int64_t *rows = ws_take(l, b * 8);
    if (!rows) return dml__error(DML_ERR_INTERNAL, "loss workspace too small");
    const int64_t n = t->def->select_rows(t, labels, b, ref != NULL, rows);
    if (n == 0) return DML_OK; /* nothing to compare: loss 0, gradient 0 */
    if (n < b) {
      float *se = ws_take(l, n * d * f);
      int32_t *sl = ws_take(l, n * 4);
      if (!se || !sl) return dml__error(DML_ERR_INTERNAL, "loss workspace too small");
      for (int64_t i = 0; i < n; i++) {
        memcpy(se + i * d, emb + rows[i] * d, (size_t)d * sizeof(float));
        sl[i] = labels[rows[i]];
      }
      emb = se;
      labels = sl;
      b = n;
      sel = rows;
    }
  }
  int64_t base = 0, self_cols = 0, r;
  const float *cols;       /* NULL: the batch itself */
  const int32_t *col_lab;
  float *concat = NULL;
  if (proxy) {
    dml_param *w = dml__loss_param(t, 0);
    cols = w->value;
    r = t->proxy_rows;
    col_lab = NULL;
  } else {
    if (ref) {
      base = ref->n;
    } else {
      base = b;
      self_cols = b;
    }
    r = base + (t->memory_cap > 0 ? t->memory_len : 0);
    if (r == base) {
      cols = ref ? ref->emb : NULL;
      col_lab = ref ? ref->labels : labels;
    } else {
      concat = ws_take(l, r * d * f);
      int32_t *cl = ws_take(l, r * 4);
      if (!concat || !cl) return dml__error(DML_ERR_INTERNAL, "loss workspace too small");
      memcpy(concat, ref ? ref->emb : emb, (size_t)(base * d) * sizeof(float));
      memcpy(cl, ref ? ref->labels : labels, (size_t)base * sizeof(int32_t));
      memcpy(concat + base * d, t->memory_emb, (size_t)(t->memory_len * d) * sizeof(float));
      memcpy(cl + base, t->memory_labels, (size_t)t->memory_len * sizeof(int32_t));
      cols = concat;
      col_lab = cl;
    }
  }
  float *m = ws_take(l, b * r * f), *dm = ws_take(l, b * r * f);
  uint8_t *rel = ws_take(l, b * r);
  float *an = t->normalize ? ws_take(l, b * d * f) : NULL;
  float *cn = t->normalize ? ws_take(l, r * d * f) : NULL;
  float *dA = direct ? grad : ws_take(l, b * d * f), *dC = ws_take(l, r * d * f);
  int32_t *tbuf = t->miner ? ws_take(l, 3 * b * r * (int64_t)sizeof(int32_t)) : NULL;
  if (!m || !dm || !rel || !dA || !dC || (t->normalize && (!an || !cn)) || (t->miner && !tbuf))
    return dml__error(DML_ERR_INTERNAL, "loss workspace too small");
  /* with self columns only, cols == NULL gives the symmetric product */
  DML_TRY(dml__distance_matrix(emb, b, cols, r, d, t->distance, t->normalize, m, an, cn));
  const float *A = t->normalize ? an : emb;
  const float *C = t->normalize ? cn : (cols ? cols : emb);
  /* relations (pair kind; proxy kernels know each row's class columns from its label) */
  if (!proxy)
#pragma omp parallel for schedule(static) if (b * r > 65536)
    for (int64_t i = 0; i < b; i++) {
      uint8_t *ri = rel + i * r;
      for (int64_t j = 0; j < r; j++)
        ri[j] = col_lab[j] == labels[i] ? DML__REL_POS : DML__REL_NEG;
      if (i < self_cols) ri[i] = DML__REL_NONE;
    }
  const int sim = dml_distance_is_similarity(t->distance);
  dml__triplets trip = {0, 0, NULL, NULL, NULL, -INFINITY, INFINITY};
  if (t->miner) {
    t->miner->step = l->step;
    dml__mine_args ma = {b, r, m, sim, t->distance, d, rel, &trip, tbuf};
    DML_TRY(t->miner->def->mine(t->miner, &ma));
  }
  memset(dm, 0, (size_t)(b * r) * sizeof(float));
  /* the kernel's own parameter gradients: collected alone, then weighted into pgrad */
  float *saved = NULL;
  int64_t saved_n = 0;
  for (int s = 0; s < t->n_params; s++) saved_n += dml__loss_param(t, s)->numel;
  if (saved_n > 0) {
    saved = malloc((size_t)saved_n * sizeof(float));
    if (!saved) return dml__error(DML_ERR_NO_MEMORY, "loss: out of memory");
    int64_t o = 0;
    for (int s = 0; s < t->n_params; s++) {
      dml_param *p = dml__loss_param(t, s);
      memcpy(saved + o, p->grad, (size_t)p->numel * sizeof(float));
      memset(p->grad, 0, (size_t)p->numel * sizeof(float));
      o += p->numel;
    }
  }
  dml__loss_args a = {b,      r,           m,      sim,       t->distance, proxy ? NULL : rel,
                      &trip,  labels,      col_lab, self_cols, dm,          t->reduction};
  double value = 0.0;
  dml_status st = t->def->forward(t, &a, &value);
  if (saved) {
    int64_t o = 0;
    for (int s = 0; s < t->n_params; s++) {
      dml_param *p = dml__loss_param(t, s);
      float *dst = pgrad + p->offset;
      for (int64_t k = 0; k < p->numel; k++) dst[k] += (float)t->weight * p->grad[k];
      memcpy(p->grad, saved + o, (size_t)p->numel * sizeof(float));
      o += p->numel;
    }
    free(saved);
  }
  DML_TRY(st);
  if (!isfinite(value))
    return dml__error(DML_ERR_NOT_FINITE, "%s produced a non-finite loss (%g): report this with "
                      "the batch that caused it", t->def->name, value);
  *total += t->weight * value;
  if (t->weight != 1.0) {
    const float w = (float)t->weight;
    for (int64_t k = 0; k < b * r; k++) dm[k] *= w;
  }
  /* columns that receive a gradient: the batch's own (self) columns, or the proxies */
  const int64_t c_rows = proxy ? r : self_cols;
  DML_TRY(dml__distance_backward(dm, m, b, r, d, t->distance, A, C, c_rows, !proxy, dA,
                                 proxy ? dC : NULL));
  if (t->normalize) {
    dml__normalise_backward(dA, an, emb, b, d);
    if (proxy) dml__normalise_backward(dC, cn, cols, c_rows, d);
  }
  if (sel) {
    for (int64_t i = 0; i < b; i++)
      for (int64_t k = 0; k < d; k++) grad[sel[i] * d + k] += dA[i * d + k];
  } else if (!direct) {
    for (int64_t k = 0; k < b * d; k++) grad[k] += dA[k];
  }
  if (proxy) {
    float *dst = pgrad + dml__loss_param(t, 0)->offset;
    for (int64_t k = 0; k < r * d; k++) dst[k] += dC[k];
  }
  return DML_OK;
}

/* The whole sum on checked inputs: *loss, grad [b, d] (overwritten), pgrad (store span,
 * overwritten). */
static dml_status loss_run(dml_loss *l, const float *emb, const int32_t *labels, int64_t b,
                           int64_t d, const dml_loss_ref *ref, double *loss, float *grad,
                           float *pgrad) {
  int64_t bytes = 0;
  for (int i = 0; i < l->n_terms; i++) {
    dml__loss_term *t = &l->terms[i];
    int64_t tb = term_bytes(t, b, d, ref ? ref->n : 0);
    if (tb > bytes) bytes = tb;
  }
  DML_TRY(ws_reserve(l, bytes));
  for (int i = 0; i < l->n_terms; i++)
    if (l->terms[i].memory_cap > 0) DML_TRY(reserve_memory(&l->terms[i], b, d));
  /* the first term writes its gradient straight into grad unless it may skip the backward */
  const int direct = !l->terms[0].def->select_rows;
  if (!direct) memset(grad, 0, (size_t)(b * d) * sizeof(float));
  const int64_t np = store_span(l->store);
  if (np) memset(pgrad, 0, (size_t)np * sizeof(float));
  double total = 0.0;
  for (int i = 0; i < l->n_terms; i++) {
    l->ws_used = 0;
    DML_TRY(run_term(l, &l->terms[i], emb, labels, b, d, ref, &total, grad, pgrad,
                     i == 0 && direct));
  }
  for (int i = 0; i < l->n_terms; i++)
    if (l->terms[i].memory_cap > 0) push_memory(&l->terms[i], emb, labels, b, d);
  l->step++;
  *loss = total;
  return DML_OK;
}

dml_status dml_loss_compute(dml_loss *l, const float *emb, const int32_t *labels, int64_t b,
                            int64_t d, const dml_loss_ref *ref, float *loss, float *grad_emb) {
  if (!loss) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loss_compute: loss is NULL");
  if (!l) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loss_compute: loss object is NULL");
  DML_TRY(check_inputs(l, emb, labels, b, d, ref));
  const int64_t np = store_span(l->store);
  float *grad = grad_emb ? grad_emb : malloc((size_t)(b * d) * sizeof(float));
  float *pgrad = np ? malloc((size_t)np * sizeof(float)) : NULL;
  if (!grad || (np && !pgrad)) {
    if (!grad_emb) free(grad);
    free(pgrad);
    return dml__error(DML_ERR_NO_MEMORY, "dml_loss_compute: out of memory");
  }
  double value = 0.0;
  dml_status st = loss_run(l, emb, labels, b, d, ref, &value, grad, pgrad);
  if (st == DML_OK) {
    float *pg = dml_params_grads(l->store);
    for (int64_t k = 0; k < np; k++) pg[k] += pgrad[k];
    *loss = (float)value;
  }
  if (!grad_emb) free(grad);
  free(pgrad);
  return st;
}

/* ---- graph node ---- */

typedef struct {
  float *grad; /* [b, d] dloss/demb */
  float *pgrad; /* store numel */
  int64_t numel, np;
  int n_param_nodes;
  int64_t offset[DML__MAX_PARAMS * MAX_TERMS], count[DML__MAX_PARAMS * MAX_TERMS];
} node_saved;

static void loss_node_backward(dml_graph *g, dml_node *n) {
  (void)g;
  const node_saved *sv = n->saved;
  const float s = n->grad[0];
  dml_node *e = n->inputs[0];
  if (e->requires_grad && e->grad)
    for (int64_t k = 0; k < sv->numel; k++) e->grad[k] += s * sv->grad[k];
  for (int p = 0; p < sv->n_param_nodes; p++) {
    dml_node *pn = n->inputs[1 + p];
    if (!pn->requires_grad || !pn->grad) continue;
    const float *src = sv->pgrad + sv->offset[p];
    for (int64_t k = 0; k < sv->count[p]; k++) pn->grad[k] += s * src[k];
  }
}

dml_status dml_loss_node(dml_loss *l, dml_graph *g, dml_node *emb, const int32_t *labels,
                         const dml_loss_ref *ref, dml_node **out) {
  if (!l || !g || !emb || !out)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loss_node: NULL argument");
  if (emb->value.ndim != 2) {
    char s[96];
    dml_tensor_shape_str(&emb->value, s, sizeof s);
    return dml__error(DML_ERR_SHAPE, "dml_loss_node: embeddings must be [b, d], got %s", s);
  }
  const int64_t b = emb->value.shape[0], d = emb->value.shape[1];
  DML_TRY(check_inputs(l, emb->value.data, labels, b, d, ref));
  const int n_params = dml_params_count(l->store);
  if (n_params > DML__MAX_PARAMS * MAX_TERMS)
    return dml__error(DML_ERR_INTERNAL, "too many loss parameters");
  dml_node *inputs[1 + DML__MAX_PARAMS * MAX_TERMS];
  inputs[0] = emb;
  for (int p = 0; p < n_params; p++)
    DML_TRY(dml_graph_param(g, dml_params_get(l->store, p), &inputs[1 + p]));
  dml_node *y;
  DML_TRY(dml__node_new(g, "metric_loss", 0, NULL, inputs, 1 + n_params, &y));
  node_saved *sv = dml__graph_alloc(g, (int64_t)sizeof *sv);
  const int64_t np = store_span(l->store);
  float *grad = dml__graph_alloc(g, b * d * (int64_t)sizeof(float));
  float *pgrad = np ? dml__graph_alloc(g, np * (int64_t)sizeof(float)) : NULL;
  if (!sv || !grad || (np && !pgrad))
    return dml__error(DML_ERR_NO_MEMORY, "dml_loss_node: out of memory");
  double value = 0.0;
  DML_TRY(loss_run(l, emb->value.data, labels, b, d, ref, &value, grad, pgrad));
  y->value.data[0] = (float)value;
  sv->grad = grad;
  sv->pgrad = pgrad;
  sv->numel = b * d;
  sv->np = np;
  sv->n_param_nodes = n_params;
  for (int p = 0; p < n_params; p++) {
    const dml_param *pp = dml_params_get(l->store, p);
    sv->offset[p] = pp->offset;
    sv->count[p] = pp->numel;
  }
  y->saved = sv;
  y->backward = loss_node_backward;
  *out = y;
  return DML_OK;
}

/* ---- catalogue ---- */

const char *dml_loss_catalogue(void) {
  static char text[16384];
  if (text[0]) return text;
  size_t len = 0;
  len += (size_t)snprintf(text + len, sizeof text - len,
                          "losses (common parameters: distance=euclidean|squared_euclidean|"
                          "cosine|dot normalize=0|1 reduction=mean|nonzero|sum miner=NAME "
                          "miner.<option>=V memory=N; weighted sums: 'a + 0.5*b'):\n");
  for (int i = 0;; i++) {
    const dml__loss_def *def = dml__loss_at(i);
    if (!def || len + 1 >= sizeof text) break;
    len += (size_t)snprintf(text + len, sizeof text - len, "  %s:", def->name);
    char opts[1024] = "";
    double dflt[DML__MAX_OPTS];
    for (int k = 0; k < def->n_opts; k++) dflt[k] = def->opts[k].dflt;
    dml__opts_format(opts, sizeof opts, def->opts, def->n_opts, dflt);
    len += (size_t)snprintf(text + len, sizeof text - len, "%s distance=%s%s%s  -- %s\n",
                            opts, dist_names[def->distance],
                            def->miner && def->miner[0] ? " miner=" : "",
                            def->miner && def->miner[0] ? def->miner : "", def->summary);
  }
  len += (size_t)snprintf(text + len, sizeof text - len, "miners (miner=NAME miner.<option>=V):\n");
  for (const dml__miner_def *const *m = dml__miner_defs; *m && len + 1 < sizeof text; m++) {
    char opts[512] = "";
    double dflt[DML__MAX_OPTS];
    for (int k = 0; k < (*m)->n_opts; k++) dflt[k] = (*m)->opts[k].dflt;
    dml__opts_format(opts, sizeof opts, (*m)->opts, (*m)->n_opts, dflt);
    len += (size_t)snprintf(text + len, sizeof text - len, "  %s:%s  -- %s\n", (*m)->name, opts,
                            (*m)->summary);
  }
  len += (size_t)snprintf(text + len, sizeof text - len,
                          "reductions (reduction=NAME): mean, nonzero (mean over terms > 0), "
                          "sum\n");
  return text;
}
