/* The miner catalogue, miner construction from spec key=value pairs, and the "all" miner.
 * A miner filters the relation mask rel [b, r] of a batch (loss_internal.h) and says which
 * triplets a triplet loss sees: the band lo < gap <= hi over the kept pairs, or an explicit
 * (anchor, positive, negative) list. The individual miners:
 *   all                       every pair; the band (-inf, +inf)              (this file)
 *   batch_hard, easy_hard     one triplet per anchor                          (mine_hard.c)
 *   semihard, hard_triplets,
 *   margin_triplets           bands of the triplet gap                        (mine_band.c)
 *   multi_similarity          pairs near the hardest opposite pair            (mine_ms.c)
 *   distance_weighted         one sampled negative per positive pair          (mine_dws.c) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mine/mine_internal.h"

const dml__miner_def *const dml__miner_defs[] = {
    &dml__miner_all,      &dml__miner_batch_hard,    &dml__miner_easy_hard,
    &dml__miner_semihard, &dml__miner_hard_triplets, &dml__miner_margin_triplets,
    &dml__miner_multi_similarity, &dml__miner_distance_weighted,
    NULL,
};

void dml__mine_band_all(dml__mine_args *a) {
  const int64_t b = a->b, r = a->r;
  int64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (b * r > DML__MINE_PAR)
  for (int64_t i = 0; i < b; i++) {
    const uint8_t *ri = a->rel + i * r;
    /* 32-bit counters vectorise (a row of 2^32 columns is not a case) */
    uint32_t np = 0, nn = 0;
#pragma omp simd reduction(+ : np, nn)
    for (int64_t j = 0; j < r; j++) {
      np += ri[j] == DML__REL_POS;
      nn += ri[j] == DML__REL_NEG;
    }
    total += (int64_t)np * (int64_t)nn;
  }
  dml__triplets *t = a->trip;
  t->explicit_list = 0;
  t->n = total;
  t->a = t->p = t->neg = NULL;
  t->lo = -INFINITY;
  t->hi = INFINITY;
}

static dml_status mine_all(const dml__miner *mn, dml__mine_args *a) {
  (void)mn;
  dml__mine_band_all(a);
  return DML_OK;
}

const dml__miner_def dml__miner_all = {
    .name = "all",
    .summary = "every pair and every triplet (no mining)",
    .mine = mine_all,
};

static const dml__miner_def *find_def(const char *name) {
  for (const dml__miner_def *const *d = dml__miner_defs; *d; d++)
    if (!strcmp((*d)->name, name)) return *d;
  return NULL;
}

dml_status dml__miner_make(const char *name, const dml__spec_kv *kv, int n_kv,
                           const char *prefix, int *used, uint64_t seed, dml__miner *out) {
  if (!name || !out) return dml__error(DML_ERR_INVALID_ARGUMENT, "miner: name or out is NULL");
  const dml__miner_def *def = find_def(name);
  if (!def) {
    char names[512] = "";
    size_t len = 0;
    for (const dml__miner_def *const *d = dml__miner_defs; *d && len + 1 < sizeof names; d++) {
      snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", (*d)->name);
      len = strlen(names);
    }
    return dml__error(DML_ERR_INVALID_ARGUMENT, "unknown miner '%s'; valid miners: %s", name,
                      names);
  }
  if (!prefix) prefix = "";
  /* the option table with the keys as they are spelled in this spec ("miner.margin") */
  dml__opt_def defs[DML__MAX_OPTS];
  char keys[DML__MAX_OPTS][96];
  DML_ASSERT(def->n_opts <= DML__MAX_OPTS);
  for (int k = 0; k < def->n_opts; k++) {
    snprintf(keys[k], sizeof keys[k], "%s%s", prefix, def->opts[k].name);
    defs[k] = def->opts[k];
    defs[k].name = keys[k];
  }
  memset(out, 0, sizeof *out);
  out->def = def;
  char what[96];
  snprintf(what, sizeof what, "miner %s", def->name);
  DML_TRY(dml__opts_apply(what, defs, def->n_opts, out->opt, kv, n_kv, used));
  out->seed = seed;
  out->step = 0;
  return DML_OK;
}
