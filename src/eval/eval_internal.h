/* Internal helpers shared by the evaluation files: checked label sets and input checks. */
#ifndef DML_EVAL_INTERNAL_H
#define DML_EVAL_INTERNAL_H

#include <stdint.h>

#include "dml/eval.h"

/* Label sets of the items of one or two dml_labels, concatenated: item i of the first, then
 * item j of the second at index n_first + j. Each item's labels are stored sorted and without
 * repeats, as dense ids 0 .. n_distinct-1; distinct[id] is the original label value. */
typedef struct dml__eval_sets {
  int64_t n;         /* items */
  int64_t *start;    /* [n + 1]: item i's ids are ids[start[i] .. start[i+1]-1] */
  int32_t *ids;      /* dense ids */
  int32_t *distinct; /* [n_distinct] sorted label values */
  int32_t n_distinct;
  int single;        /* every item has exactly one label */
} dml__eval_sets;

/* Validates labels for n items: labels->n == n, values present, offsets from 0 and
 * non-decreasing, values >= 0 unless allow_negative. `fn` and `what` name the call and the
 * argument in the message. */
dml_status dml__eval_labels_check(const dml_labels *labels, int64_t n, int allow_negative,
                                  const char *fn, const char *what);

/* Builds the sets of a (n_a items) followed by b (may be NULL). Inputs already checked. */
dml_status dml__eval_sets_build(const dml_labels *a, const dml_labels *b, dml__eval_sets *out);
void dml__eval_sets_free(dml__eval_sets *s);


#endif
