/* The triplet margin loss (Schroff et al. 2015, "FaceNet"; METHODS.md 2), listed with the hinge
 * family in loss_hinge.c. Over the triplets (a, p, n) of args->trip (an explicit list or the
 * band lo < gap <= hi, loss_internal.h):
 *   hinge:  [d_ap - d_an + margin]+        similarities: [s_an - s_ap + margin]+
 *   soft=1: log(1 + exp(d_ap - d_an))      (no margin; every term counts as non-zero)
 *   swap=1: d_an := min(d_an, d_pn), s_an := max(s_an, s_pn) (Balntas et al. 2016), with
 *           d_pn = m[p, n]: needs p and n to be batch columns (no reference set, no memory).
 * With v = sigma m (sigma = +1 for distances, -1 for similarities) and gap = v_an - v_ap, the
 * hinge is [margin - gap]+ in both cases. Reduction: nonzero (default), mean or sum over the
 * triplets. Band membership is decided on the unswapped gap, as the miner saw it.
 *
 * The band without swap or soft margin never enumerates the b P N triplets. Per anchor only
 * the positives are sorted by v; for a negative the active positives (lo < gap <= hi and
 * gap < margin) are a contiguous run of them, found by binary search, with hinge sum
 * cnt (margin - v_an) + sum v_ap from prefix sums (double); a difference array over these runs
 * gives each positive's count of active negatives (its gradient). The comparisons are the
 * same double expressions ((double)v_an - (double)v_ap against the bounds) that enumeration
 * uses, so both give the same triplet sets: O(b (r + P log P + N log P)) time, one pass,
 * O(r) scratch per thread plus a [b, r] float buffer of counts. Every other case enumerates
 * (per anchor, positives x negatives of the band; or the list) in one pass with a [b, r]
 * double buffer of the unscaled gradient, serial where writes cross rows (lists, swap).
 * Results do not depend on the thread count: rows are independent, sums run in row order. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "loss/loss_internal.h"

#define PAR_MIN 4096

enum { TRI_MARGIN, TRI_SWAP, TRI_SOFT };

static const dml__opt_def triplet_opts[] = {
    {"margin", 0.05, 0.0, 1e6, "required gap between the negative and the positive distance"},
    {"swap", 0.0, 0.0, 1.0, "1: the negative's distance is min(d_an, d_pn) (batch columns only)"},
    {"soft", 0.0, 0.0, 1.0, "1: soft margin log(1 + exp(d_ap - d_an)) instead of the hinge"},
};

typedef struct {
  int64_t n, nz;
  double sum;
} tri_row;

typedef struct {
  float v;
  int32_t j;
} entry;

static int entry_cmp(const void *x, const void *y) {
  const entry *p = x, *q = y;
  if (p->v < q->v) return -1;
  if (p->v > q->v) return 1;
  return (p->j > q->j) - (p->j < q->j);
}

/* ---- band, hinge, no swap: runs of sorted positives ---- */

static void sort_entries(entry *e, int64_t n) {
  if (n > 32) {
    qsort(e, (size_t)n, sizeof(entry), entry_cmp);
    return;
  }
  for (int64_t i = 1; i < n; i++) {
    const entry x = e[i];
    int64_t k = i;
    for (; k > 0 && entry_cmp(&e[k - 1], &x) > 0; k--) e[k] = e[k - 1];
    e[k] = x;
  }
}

/* First position of the ascending positives pos[0..n) where gap = vn - v_p satisfies
 * gap <= t1 && gap < t2; gap decreases along the list, so the predicate goes false -> true.
 * Branch-free halving (the compiler turns the step into a conditional move); for a short list
 * the count of positions where the predicate is false, which is the same index. */
static int64_t first_within(const entry *pos, int64_t n, double vn, double t1, double t2) {
  if (n <= 16) { /* few positives: count the false prefix (independent compares) */
    int64_t f = 0;
    for (int64_t k = 0; k < n; k++) {
      const double gap = vn - (double)pos[k].v;
      f += !(gap <= t1 && gap < t2);
    }
    return f;
  }
  const entry *base = pos;
  while (n > 1) {
    const int64_t half = n / 2;
    const double gap = vn - (double)base[half - 1].v;
    base += (gap <= t1 && gap < t2) ? 0 : half;
    n -= half;
  }
  const double gap = vn - (double)base->v;
  return (base - pos) + !(gap <= t1 && gap < t2);
}

/* One anchor: statistics into *out and, into crow [r] (zero on entry), sigma times the number
 * of active triplets in which each column is the positive (+) or the negative (-). For each
 * negative its band positives (lo < gap <= hi) are the run [first_within(hi), first_within(lo))
 * of the sorted positives, the active ones (also gap < margin) [first_within(hi, margin),
 * first_within(lo)); a difference array over the runs gives each positive's count of active
 * negatives. Scratch: pos [r], ps [r + 1] (prefix sums of the sorted v_ap), cnt [r + 1]. */
static void band_row(const dml__loss_args *a, int64_t i, double sg, double margin, entry *pos,
                     double *ps, int64_t *cnt, float *crow, tri_row *out) {
  const int64_t r = a->r;
  const float *mi = a->m + i * r;
  const uint8_t *ri = a->rel + i * r;
  const double lo = a->trip->lo, hi = a->trip->hi;
  tri_row acc = {0, 0, 0.0};
  int64_t np = 0;
  for (int64_t j = 0; j < r; j++)
    if (ri[j] == DML__REL_POS) pos[np++] = (entry){(float)(sg * mi[j]), (int32_t)j};
  if (np == 0) {
    *out = acc;
    return;
  }
  sort_entries(pos, np);
  ps[0] = 0.0;
  for (int64_t k = 0; k < np; k++) {
    ps[k + 1] = ps[k] + (double)pos[k].v;
    cnt[k] = 0;
  }
  cnt[np] = 0;
  const float fs = (float)sg;
  for (int64_t j = 0; j < r; j++) {
    if (ri[j] != DML__REL_NEG) continue;
    const double vn = sg * (double)mi[j];
    const int64_t end = lo == -INFINITY ? np : first_within(pos, np, vn, lo, INFINITY);
    const int64_t band = hi == INFINITY ? 0 : first_within(pos, np, vn, hi, INFINITY);
    if (end > band) acc.n += end - band;
    const int64_t act = first_within(pos, np, vn, hi, margin);
    if (end > act) {
      const int64_t c = end - act;
      acc.nz += c;
      acc.sum += (double)c * (margin - vn) + (ps[end] - ps[act]);
      crow[j] -= fs * (float)c;
      cnt[act]++;
      cnt[end]--;
    }
  }
  int64_t run = 0;
  for (int64_t k = 0; k < np; k++) {
    run += cnt[k];
    crow[pos[k].j] += fs * (float)run;
  }
  *out = acc;
}

/* The band without swap or soft margin: one pass over the anchors, then dm += scale counts. */
static dml_status triplet_band(const dml__loss_args *a, double sg, double margin,
                               double *loss) {
  const int64_t b = a->b, r = a->r;
  const int par = b * r > PAR_MIN;
  const int nt = par ? omp_get_max_threads() : 1;
  const size_t per = (size_t)(r + 1);
  entry *ent = malloc((size_t)nt * per * sizeof(entry));
  double *ps = malloc((size_t)nt * per * sizeof(double));
  int64_t *cnt = malloc((size_t)nt * per * sizeof(int64_t));
  float *counts = calloc((size_t)(b * r), sizeof(float));
  tri_row *rows = calloc((size_t)b, sizeof(tri_row));
  dml_status st = DML_OK;
  if (!ent || !ps || !cnt || !counts || !rows) {
    st = dml__error(DML_ERR_NO_MEMORY, "triplet: out of memory (%lld x %lld counts)",
                    (long long)b, (long long)r);
    goto done;
  }
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt) if (par)
  for (int64_t i = 0; i < b; i++) {
    const size_t th = (size_t)omp_get_thread_num();
    band_row(a, i, sg, margin, ent + th * per, ps + th * per, cnt + th * per, counts + i * r,
             &rows[i]);
  }
  tri_row tot = {0, 0, 0.0};
  for (int64_t i = 0; i < b; i++) {
    tot.n += rows[i].n;
    tot.nz += rows[i].nz;
    tot.sum += rows[i].sum;
  }
  const double scale = dml__reduce_scale(a->red, tot.n, tot.nz);
  *loss = scale * tot.sum;
  if (scale != 0.0 && tot.nz > 0) {
    const float fs = (float)scale;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t k = 0; k < b * r; k++) a->dm[k] += fs * counts[k];
  }
done:
  free(ent);
  free(ps);
  free(cnt);
  free(counts);
  free(rows);
  return st;
}

/* ---- enumeration: explicit lists, swap, soft margin ---- */

typedef struct {
  double sg, margin;
  int swap, soft;
} tri_cfg;

/* Triplet (i, p, n) with v = sigma m: its term, whether it is active, dterm/dv_ap = g (and
 * dterm/dv_an = -g, taken at column (i, n) or, when swapped, at (p, n): *swapped). */
static double tri_term(const dml__loss_args *a, const tri_cfg *c, int64_t i, int64_t p,
                       int64_t n, int *active, double *g, int *swapped) {
  const int64_t r = a->r;
  const double vp = c->sg * (double)a->m[i * r + p];
  double vn = c->sg * (double)a->m[i * r + n];
  *swapped = 0;
  if (c->swap) {
    const double vpn = c->sg * (double)a->m[p * r + n];
    if (vpn < vn) {
      vn = vpn;
      *swapped = 1;
    }
  }
  const double gap = vn - vp;
  if (c->soft) { /* softplus(x) and its derivative sigmoid(x), x = -gap, one exp */
    const double x = -gap, e = exp(-fabs(x));
    *active = 1;
    *g = x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    return (x > 0.0 ? x : 0.0) + log1p(e);
  }
  *active = gap < c->margin;
  *g = 1.0;
  return *active ? c->margin - gap : 0.0;
}

/* One triplet into the statistics and G [b, r] (dterm/dv, unscaled). */
static void tri_add(const dml__loss_args *a, const tri_cfg *c, int64_t i, int64_t p, int64_t n,
                    double *G, tri_row *acc) {
  int active, sw;
  double g;
  const double term = tri_term(a, c, i, p, n, &active, &g, &sw);
  acc->n++;
  if (!active) return;
  acc->nz++;
  acc->sum += term;
  G[i * a->r + p] += g;
  G[(sw ? p : i) * a->r + n] -= g;
}

/* Anchor i's triplets of the band (lo < gap <= hi on the unswapped gap). */
static void enum_band_row(const dml__loss_args *a, const tri_cfg *c, int64_t i, double *G,
                          tri_row *out) {
  const int64_t r = a->r;
  const uint8_t *ri = a->rel + i * r;
  const float *mi = a->m + i * r;
  const double lo = a->trip->lo, hi = a->trip->hi;
  tri_row acc = {0, 0, 0.0};
  for (int64_t p = 0; p < r; p++) {
    if (ri[p] != DML__REL_POS) continue;
    for (int64_t n = 0; n < r; n++) {
      if (ri[n] != DML__REL_NEG) continue;
      const double gap = c->sg * ((double)mi[n] - (double)mi[p]);
      if (gap > lo && gap <= hi) tri_add(a, c, i, p, n, G, &acc);
    }
  }
  *out = acc;
}

/* One pass: statistics, and the unscaled gradient in a [b, r] double buffer (the reduction's
 * scale is a constant factor, applied at the end). Parallel over anchors when every write
 * stays in the anchor's row (the band without swap); lists and swap run in order. */
static dml_status triplet_enumerate(const dml__loss_args *a, const tri_cfg *c, double *loss) {
  const int64_t b = a->b, r = a->r;
  const dml__triplets *tr = a->trip;
  double *G = calloc((size_t)(b * r), sizeof(double));
  tri_row *rows = calloc((size_t)b, sizeof(tri_row));
  if (!G || !rows) {
    free(G);
    free(rows);
    return dml__error(DML_ERR_NO_MEMORY, "triplet: out of memory (%lld x %lld gradient)",
                      (long long)b, (long long)r);
  }
  tri_row tot = {0, 0, 0.0};
  if (tr->explicit_list) {
    for (int64_t k = 0; k < tr->n; k++) tri_add(a, c, tr->a[k], tr->p[k], tr->neg[k], G, &tot);
  } else {
    if (c->swap) {
      for (int64_t i = 0; i < b; i++) enum_band_row(a, c, i, G, &rows[i]);
    } else {
#pragma omp parallel for schedule(dynamic, 4) if (b * r > PAR_MIN)
      for (int64_t i = 0; i < b; i++) enum_band_row(a, c, i, G, &rows[i]);
    }
    for (int64_t i = 0; i < b; i++) {
      tot.n += rows[i].n;
      tot.nz += rows[i].nz;
      tot.sum += rows[i].sum;
    }
  }
  const double scale = dml__reduce_scale(a->red, tot.n, tot.nz);
  *loss = scale * tot.sum;
  if (scale != 0.0 && tot.nz > 0) {
    const double f = c->sg * scale;
#pragma omp parallel for schedule(static) if (b * r > PAR_MIN)
    for (int64_t k = 0; k < b * r; k++)
      if (G[k] != 0.0) a->dm[k] += (float)(f * G[k]);
  }
  free(G);
  free(rows);
  return DML_OK;
}

/* swap reads m[p, n]: p and n must be batch columns. */
static dml_status check_swap(const dml__loss_args *a) {
  const dml__triplets *tr = a->trip;
  int64_t bad = -1;
  if (tr->explicit_list) {
    for (int64_t k = 0; k < tr->n && bad < 0; k++)
      if (tr->p[k] >= a->self_cols || tr->neg[k] >= a->self_cols)
        bad = tr->p[k] >= a->self_cols ? tr->p[k] : tr->neg[k];
  } else {
    for (int64_t i = 0; i < a->b && bad < 0; i++)
      for (int64_t j = a->self_cols; j < a->r; j++)
        if (a->rel[i * a->r + j] != DML__REL_NONE) {
          bad = j;
          break;
        }
  }
  if (bad >= 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "triplet: swap=1 needs d(positive, negative), which exists only between "
                      "batch embeddings; column %lld is a reference or memory entry (use swap=0 "
                      "with a reference set or memory=)",
                      (long long)bad);
  return DML_OK;
}

static dml_status triplet_forward(dml__loss_term *t, const dml__loss_args *a, double *loss) {
  const tri_cfg c = {a->sim ? -1.0 : 1.0, t->opt[TRI_MARGIN], t->opt[TRI_SWAP] != 0.0,
                     t->opt[TRI_SOFT] != 0.0};
  *loss = 0.0;
  if (a->b <= 0 || a->r <= 0) return DML_OK;
  if (c.swap) DML_TRY(check_swap(a));
  if (a->trip->explicit_list || c.swap || c.soft) return triplet_enumerate(a, &c, loss);
  return triplet_band(a, c.sg, c.margin, loss);
}

const dml__loss_def dml__loss_triplet = {
    .name = "triplet",
    .summary = "triplet margin loss: [d_ap - d_an + margin]+ over all or mined triplets "
               "(swap, soft margin options)",
    .kind = DML__KIND_PAIR,
    .uses_triplets = 1,
    .opts = triplet_opts,
    .n_opts = (int)(sizeof triplet_opts / sizeof triplet_opts[0]),
    .distance = DML_DIST_EUCLIDEAN,
    .normalize = 1,
    .reduction = DML__RED_NONZERO,
    .miner = "",
    .forward = triplet_forward,
};
