/* What a loss kernel sees, and what it gives back.
 *
 * The core (loss.c) turns a batch into one matrix m [b, r] with a single GEMM: row i is anchor
 * i of the batch, column j is a batch embedding (no reference set), a reference embedding, a
 * cross-batch-memory embedding, or a proxy / class weight (proxy kind). m holds distances
 * (DML_DIST_EUCLIDEAN, DML_DIST_SQUARED_EUCLIDEAN: sim == 0) or similarities (DML_DIST_COSINE,
 * DML_DIST_DOT: sim == 1). It also builds rel [b, r], the relation of every (row, column) pair
 * after mining: DML__REL_POS, DML__REL_NEG or DML__REL_NONE (self pairs, pairs the miner
 * dropped). A kernel computes the reduced loss and accumulates (+=) dloss/dm into dm [b, r]
 * (zero on entry) and dloss/dparam into its parameters' gradient buffers (zero on entry); the
 * core back-propagates dm to the embeddings and proxies. So a kernel never touches embeddings:
 * its cost is O(b r) (triplet losses: O(b r log r) with the band below).
 *
 * Kernels are deterministic for any thread count: parallel loops write per-row partial sums
 * (double) which are then added in row order. */
#ifndef DML_LOSS_INTERNAL_H
#define DML_LOSS_INTERNAL_H

#include <stdint.h>

#include "core/status_internal.h"
#include "dml/distance.h"
#include "dml/loss.h"
#include "dml/params.h"

enum { DML__REL_NONE = 0, DML__REL_POS = 1, DML__REL_NEG = 2 };

typedef enum dml__reduction {
  DML__RED_MEAN,    /* mean over all terms */
  DML__RED_NONZERO, /* mean over the terms whose loss is > 0 */
  DML__RED_SUM      /* sum of the terms */
} dml__reduction;

/* 1/divisor for a reduction over n_terms terms of which n_nonzero are > 0; 0 when the divisor
 * is 0 (no valid term: loss 0, gradient 0). */
double dml__reduce_scale(dml__reduction red, int64_t n_terms, int64_t n_nonzero);

/* A numeric parameter of a loss or miner: name, default, valid closed range, one-line help.
 * Integer-valued and boolean options are doubles too (checked by the range). */
typedef struct dml__opt_def {
  const char *name;
  double dflt, lo, hi;
  const char *help;
} dml__opt_def;

#define DML__MAX_OPTS 16
#define DML__MAX_PARAMS 4

/* The triplets a triplet loss sees. Either an explicit list (batch-hard, easy-positive/
 * hard-negative, distance-weighted: O(b r) at most), or the band: every (a, p, n) with
 * rel[a, p] == POS, rel[a, n] == NEG and lo < gap <= hi, where gap = m[a, n] - m[a, p] for
 * distances and m[a, p] - m[a, n] for similarities (gap > 0: the negative is farther). The
 * "all" miner is the band (-inf, +inf); semi-hard is (0, margin]. */
typedef struct dml__triplets {
  int explicit_list;
  int64_t n;
  const int32_t *a, *p, *neg; /* row, column, column */
  double lo, hi;
} dml__triplets;

typedef enum dml__loss_kind {
  DML__KIND_PAIR, /* m compares the batch with itself / the reference set / the memory */
  DML__KIND_PROXY /* m compares the batch with the rows of a learnable matrix (slot 0) */
} dml__loss_kind;

typedef struct dml__loss_term dml__loss_term;

typedef struct dml__loss_args {
  int64_t b, r;
  const float *m;         /* [b, r] */
  int sim;                /* m holds similarities (larger = closer) */
  dml_distance distance;  /* what m holds */
  const uint8_t *rel;     /* [b, r] after mining; NULL for the proxy kind */
  const dml__triplets *trip; /* never NULL: the band (-inf, inf] when nothing was mined */
  const int32_t *labels;  /* [b] labels of the rows (proxy kind: class indices in [0, C)) */
  const int32_t *col_labels; /* [r] labels of the columns (pair kind) */
  int64_t self_cols;      /* columns [0, self_cols) are the batch itself: column j is row j */
  float *dm;              /* [b, r] += dloss/dm */
  dml__reduction red;
} dml__loss_args;

typedef struct dml__loss_def {
  const char *name;
  const char *summary; /* one line for the catalogue and docs */
  dml__loss_kind kind;
  int uses_triplets;   /* reads args->trip (else rel) */
  const dml__opt_def *opts;
  int n_opts;
  dml_distance distance; /* default distance= */
  int normalize;         /* default normalize= (cosine always normalises) */
  dml__reduction reduction;
  const char *miner;     /* default miner= ("" = every pair / the all band) */
  /* Optional: declare parameters with dml__loss_add_param (options are parsed by then). */
  dml_status (*declare)(dml__loss_term *t);
  /* Optional: set parameter values after the store is laid out (proxies, class weights). */
  dml_status (*initialise)(dml__loss_term *t);
  /* Required: the reduced loss into *loss, gradients accumulated as described above. */
  dml_status (*forward)(dml__loss_term *t, const dml__loss_args *a, double *loss);
  /* Optional: free t->state. */
  void (*release)(dml__loss_term *t);
  /* Optional (pair kind): for a loss that reads only a few batch rows (N-pair: two examples of
   * each label), their indices in increasing order into rows [b]; returns how many. The core
   * then runs on that sub-batch (its own columns, the reference set or the memory) and
   * scatters the gradient back, so the GEMMs are that small. */
  int64_t (*select_rows)(const dml__loss_term *t, const int32_t *labels, int64_t b,
                         int has_ref, int64_t *rows);
} dml__loss_def;

typedef struct dml__miner dml__miner;

struct dml__loss_term {
  const dml__loss_def *def;
  double opt[DML__MAX_OPTS]; /* values of def->opts, in order */
  dml_distance distance;
  int normalize;
  dml__reduction reduction;
  double weight;        /* weight in a sum of losses */
  dml__miner *miner;    /* NULL: all pairs / all triplets */
  int64_t dim, num_classes;
  uint64_t seed;
  int index;            /* position in the sum: parameter names are "<index>.<name>" */
  dml_param_store *store; /* the loss's store (shared by all terms) */
  int param_index[DML__MAX_PARAMS]; /* store positions of this term's parameters */
  int n_params;
  int64_t proxy_rows;   /* proxy kind: rows of parameter slot 0 ([proxy_rows, dim]) */
  int64_t rows_per_class; /* proxy kind: row c*rows_per_class + k belongs to class c */
  /* cross-batch memory (memory= option, pair kind): a ring of detached embeddings */
  int64_t memory_cap, memory_len, memory_head;
  int64_t memory_alloc; /* rows allocated: grows with memory_len up to memory_cap */
  float *memory_emb;    /* [memory_alloc, dim] */
  int32_t *memory_labels;
  void *state;          /* kernel-private */
  void *scratch;        /* dml__loss_scratch's block, kept between calls */
  int64_t scratch_bytes;
};

/* Declares parameter `slot` (0, 1, ... in order) of term t as "<index>.<name>". Slot 0 of a
 * proxy-kind loss is its [proxy_rows, dim] matrix. */
dml_status dml__loss_add_param(dml__loss_term *t, const char *name, int ndim,
                               const int64_t *shape, int trainable);
/* The parameter in a slot (pointers are stable once the store is laid out). */
dml_param *dml__loss_param(const dml__loss_term *t, int slot);

/* A 64-byte-aligned block of at least `bytes` for the kernel of term t, kept by the term and
 * reused by its next call (a fresh multi-megabyte allocation per call costs page faults
 * every time); contents undefined. NULL with the error set when out of memory. */
void *dml__loss_scratch(dml__loss_term *t, int64_t bytes);

/* The loss families, each a NULL-terminated list in its own file; dml__loss_find looks through
 * all of them (loss_registry.c). */
extern const dml__loss_def *const dml__losses_hinge[];   /* loss_hinge.c */
extern const dml__loss_def *const dml__losses_softmax[]; /* loss_softmax.c */
extern const dml__loss_def *const dml__losses_proxy[];   /* loss_proxy.c */
const dml__loss_def *dml__loss_find(const char *name);
/* Appends every loss name to buf, separated by ", ". */
void dml__loss_names(char *buf, int size);
/* The i-th loss of the catalogue, NULL past the end. */
const dml__loss_def *dml__loss_at(int i);

/* m [b, r] between emb [b, d] and cols [r, d] (cols == NULL: the batch itself, r == b):
 * Euclidean or squared Euclidean distance, cosine or dot similarity, with both sides
 * L2-normalised first when normalize (cosine always). One sgemm; pairs closer than ~1e-3 of
 * their norms get their distance recomputed directly, so duplicates are exactly 0. When
 * emb_n / cols_n are not NULL they receive the normalised rows used ([b, d], [r, d]). */
dml_status dml__distance_matrix(const float *emb, int64_t b, const float *cols, int64_t r,
                                int64_t d, dml_distance dist, int normalize, float *m,
                                float *emb_n, float *cols_n);
/* Backward of that matrix: dm [b, r] (consumed: overwritten with scratch values) to dA [b, d]
 * (overwritten) for the rows A, and to the first c_rows columns of C. A and C are the rows the
 * forward multiplied (normalised when it normalised); m is the forward's result. With self,
 * the first c_rows columns are the rows themselves (C[j] = A[j]) and dA receives the gradient
 * of both ends of every pair (dC unused); otherwise dC [c_rows, d] (overwritten; may be NULL)
 * receives the columns' gradient. */
dml_status dml__distance_backward(float *dm, const float *m, int64_t b, int64_t r, int64_t d,
                                  dml_distance dist, const float *A, const float *C,
                                  int64_t c_rows, int self, float *dA, float *dC);
/* In place: dx [n, d] from d(normalised x) to d(raw x); xn the normalised rows, raw the raw
 * rows. Zero rows get a zero gradient. */
void dml__normalise_backward(float *dx, const float *xn, const float *raw, int64_t n,
                             int64_t d);

/* Spec parsing shared by losses and miners (loss/spec.c). */
typedef struct dml__spec_kv {
  char key[64];
  char value[128];
} dml__spec_kv;
/* Splits "name k=v k=v" into the name and pairs; at most max_kv pairs. */
dml_status dml__spec_split(const char *spec, char *name, int name_size, dml__spec_kv *kv,
                           int max_kv, int *n_kv);
/* Sets opt[] from the defaults of defs, then from every kv whose key is in defs (marking it
 * used[k] = 1); a value outside the range is an error naming the option and the range. */
dml_status dml__opts_apply(const char *what, const dml__opt_def *defs, int n_defs, double *opt,
                           const dml__spec_kv *kv, int n_kv, int *used);
/* Appends " name=value" for every option to buf. */
void dml__opts_format(char *buf, int size, const dml__opt_def *defs, int n_defs,
                      const double *opt);

/* ---- miners (src/mine/) ---- */

typedef struct dml__miner_def dml__miner_def;

struct dml__miner {
  const dml__miner_def *def;
  double opt[DML__MAX_OPTS];
  uint64_t seed, step;
};

typedef struct dml__mine_args {
  int64_t b, r;
  const float *m;        /* [b, r] the loss's distances or similarities */
  int sim;
  dml_distance distance;
  int64_t dim;           /* embedding width (distance-weighted sampling's density) */
  uint8_t *rel;          /* [b, r] in: every POS / NEG pair; out: the pairs kept */
  dml__triplets *trip;   /* out: the triplets kept (band or explicit list) */
  int32_t *tbuf;         /* scratch for an explicit list: 3 * b * r int32 (a, p, neg) */
} dml__mine_args;

struct dml__miner_def {
  const char *name;
  const char *summary;
  int triplets; /* mines triplets (else pairs) */
  const dml__opt_def *opts;
  int n_opts;
  /* Filters a->rel and fills a->trip. Triplet miners also clear from rel the pairs that are
   * in no kept triplet, so a pair loss given a triplet miner sees the pairs of its triplets. */
  dml_status (*mine)(const dml__miner *mn, dml__mine_args *a);
};

/* Every miner, NULL-terminated (src/mine/miners.c). */
extern const dml__miner_def *const dml__miner_defs[];
/* Looks a miner up by name and sets its options from the kv pairs whose key is
 * "<prefix><option>" (prefix "" for a standalone miner spec, "miner." inside a loss spec),
 * marking them used. An unknown miner name is an error listing the valid ones. */
dml_status dml__miner_make(const char *name, const dml__spec_kv *kv, int n_kv,
                           const char *prefix, int *used, uint64_t seed, dml__miner *out);

#endif
