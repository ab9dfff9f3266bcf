/* Mutual information between two labellings: NMI (arithmetic and geometric normalisers) and
 * AMI, computed as scikit-learn 1.2 computes them (sklearn.metrics.cluster._supervised and
 * _expected_mutual_info_fast): natural logarithms, the same per-term formula and rounding
 * guards, the same special cases. The contingency table is kept sparse (sorted pairs). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/eval.h"

typedef struct {
  int64_t n, r, c;  /* items, classes of a, classes of b */
  int64_t *ra, *cb; /* row sums [r], column sums [c] */
  int64_t nnz;
  int64_t *zi, *zj, *zv; /* non-zero cells (row, column, count), by row then column */
} contingency;

static int cmp_pair(const void *x, const void *y) {
  const int64_t *a = x, *b = y;
  if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
  return (a[1] > b[1]) - (a[1] < b[1]);
}

static int cmp_i32(const void *x, const void *y) {
  const int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
  return (a > b) - (a < b);
}

/* Dense ids of v[0..n) (0 .. *count-1 in sorted order of the values) into out. */
static int dense(const int32_t *v, int64_t n, int64_t *out, int64_t *count) {
  int32_t *s = malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
  if (!s) return -1;
  if (n > 0) memcpy(s, v, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_i32);
  int64_t u = 0;
  for (int64_t i = 0; i < n; i++)
    if (i == 0 || s[i] != s[i - 1]) s[u++] = s[i];
  for (int64_t i = 0; i < n; i++) {
    int64_t lo = 0, hi = u;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (s[mid] < v[i]) lo = mid + 1; else hi = mid;
    }
    out[i] = lo;
  }
  *count = u;
  free(s);
  return 0;
}

static void contingency_free(contingency *t) {
  free(t->ra);
  free(t->cb);
  free(t->zi);
  free(t->zj);
  free(t->zv);
  memset(t, 0, sizeof *t);
}

static dml_status contingency_build(const int32_t *a, const int32_t *b, int64_t n,
                                    contingency *t) {
  memset(t, 0, sizeof *t);
  t->n = n;
  const size_t nn = (size_t)(n > 0 ? n : 1);
  int64_t *pairs = malloc(2 * nn * sizeof *pairs);
  int64_t *ia = malloc(nn * sizeof *ia), *ib = malloc(nn * sizeof *ib);
  int ok = pairs && ia && ib && dense(a, n, ia, &t->r) == 0 && dense(b, n, ib, &t->c) == 0;
  if (ok) {
    t->ra = calloc((size_t)(t->r > 0 ? t->r : 1), sizeof *t->ra);
    t->cb = calloc((size_t)(t->c > 0 ? t->c : 1), sizeof *t->cb);
    t->zi = malloc(nn * sizeof *t->zi);
    t->zj = malloc(nn * sizeof *t->zj);
    t->zv = malloc(nn * sizeof *t->zv);
    ok = t->ra && t->cb && t->zi && t->zj && t->zv;
  }
  if (ok) {
    for (int64_t i = 0; i < n; i++) {
      pairs[2 * i] = ia[i];
      pairs[2 * i + 1] = ib[i];
      t->ra[ia[i]]++;
      t->cb[ib[i]]++;
    }
    qsort(pairs, (size_t)n, 2 * sizeof *pairs, cmp_pair);
    for (int64_t i = 0; i < n; i++) {
      if (i > 0 && pairs[2 * i] == pairs[2 * i - 2] && pairs[2 * i + 1] == pairs[2 * i - 1]) {
        t->zv[t->nnz - 1]++;
        continue;
      }
      t->zi[t->nnz] = pairs[2 * i];
      t->zj[t->nnz] = pairs[2 * i + 1];
      t->zv[t->nnz++] = 1;
    }
  }
  free(pairs);
  free(ia);
  free(ib);
  if (!ok) {
    contingency_free(t);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory for a contingency table of %lld items",
                      (long long)n);
  }
  return DML_OK;
}

/* sklearn mutual_info_score from a contingency table. */
static double mutual_info(const contingency *t) {
  if (t->r == 1 || t->c == 1) return 0.0;
  const double total = (double)t->n, log_total = log(total);
  double mi = 0.0;
  for (int64_t z = 0; z < t->nnz; z++) {
    const double v = (double)t->zv[z];
    const double nm = v / total;
    const double outer = (double)(t->ra[t->zi[z]] * t->cb[t->zj[z]]);
    const double log_outer = -log(outer) + log_total + log_total;
    double term = nm * (log(v) - log_total) + nm * log_outer;
    if (fabs(term) < DBL_EPSILON) term = 0.0;
    mi += term;
  }
  return mi > 0.0 ? mi : 0.0;
}

/* sklearn entropy of a labelling from its class sizes. */
static double entropy(const int64_t *sizes, int64_t count, int64_t n) {
  if (n == 0) return 1.0;
  if (count == 1) return 0.0;
  const double total = (double)n, log_total = log(total);
  double h = 0.0;
  for (int64_t i = 0; i < count; i++) {
    const double p = (double)sizes[i];
    h += (p / total) * (log(p) - log_total);
  }
  return -h;
}

/* Expected mutual information under the hypergeometric model of random labellings (Vinh,
 * Epps and Bailey, JMLR 2010), term for term as sklearn's expected_mutual_information. */
static double expected_mutual_info(const contingency *t) {
  if (t->r == 1 || t->c == 1) return 0.0;
  const double nn = (double)t->n;
  const double gln_n1 = lgamma(nn + 1.0), log_n = log(nn);
  double emi = 0.0;
  for (int64_t i = 0; i < t->r; i++) {
    const int64_t ai = t->ra[i];
    const double a = (double)ai;
    const double gln_a = lgamma(a + 1.0), gln_na = lgamma(nn - a + 1.0), log_a = log(a);
    for (int64_t j = 0; j < t->c; j++) {
      const int64_t bj = t->cb[j];
      const double b = (double)bj;
      const double gln_b = lgamma(b + 1.0), gln_nb = lgamma(nn - b + 1.0), log_b = log(b);
      int64_t start = ai - t->n + bj;
      if (start < 1) start = 1;
      const int64_t end = (ai < bj ? ai : bj) + 1;
      for (int64_t v = start; v < end; v++) {
        const double nij = (double)v;
        const double term1 = nij / nn;
        const double term2 = (log_n + log(nij)) - log_a - log_b;
        const double gln = gln_a + gln_b + gln_na + gln_nb - (lgamma(nij + 1.0) + gln_n1) -
                           lgamma(a - nij + 1.0) - lgamma(b - nij + 1.0) -
                           lgamma(nn - a - b + nij + 1.0);
        emi += term1 * term2 * exp(gln);
      }
    }
  }
  return emi;
}

static dml_status check_args(const char *fn, const int32_t *a, const int32_t *b, int64_t n) {
  if (n < 0 || ((!a || !b) && n > 0))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: need two labellings of n >= 0 items", fn);
  return DML_OK;
}

dml_status dml_nmi(const int32_t *a, const int32_t *b, int64_t n, double *nmi_arithmetic,
                   double *nmi_sqrt) {
  DML_TRY(check_args("dml_nmi", a, b, n));
  contingency t;
  DML_TRY(contingency_build(a, b, n, &t));
  double arith, geo;
  if (t.r == t.c && t.r <= 1) { /* no split in either labelling: a perfect match */
    arith = geo = 1.0;
  } else {
    const double mi = mutual_info(&t);
    if (mi == 0.0) {
      arith = geo = 0.0;
    } else {
      const double ha = entropy(t.ra, t.r, n), hb = entropy(t.cb, t.c, n);
      arith = mi / ((ha + hb) / 2.0);
      geo = mi / sqrt(ha * hb);
    }
  }
  contingency_free(&t);
  if (nmi_arithmetic) *nmi_arithmetic = arith;
  if (nmi_sqrt) *nmi_sqrt = geo;
  return DML_OK;
}

dml_status dml_ami(const int32_t *a, const int32_t *b, int64_t n, double *ami) {
  DML_TRY(check_args("dml_ami", a, b, n));
  if (!ami) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_ami: ami is NULL");
  contingency t;
  DML_TRY(contingency_build(a, b, n, &t));
  if (t.r == t.c && t.r <= 1) {
    *ami = 1.0;
  } else {
    const double mi = mutual_info(&t), emi = expected_mutual_info(&t);
    const double ha = entropy(t.ra, t.r, n), hb = entropy(t.cb, t.c, n);
    double den = (ha + hb) / 2.0 - emi;
    /* as sklearn: keep the sign, never divide by less than machine epsilon */
    if (den < 0.0) den = den < -DBL_EPSILON ? den : -DBL_EPSILON;
    else den = den > DBL_EPSILON ? den : DBL_EPSILON;
    *ami = (mi - emi) / den;
  }
  contingency_free(&t);
  return DML_OK;
}
