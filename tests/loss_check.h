/* Checks for losses: reference fixtures (tests/fixtures/losses_*.json, written by
 * tools/gen_fixtures.py through tools/fixtures/loss_common.py) and edge cases.
 *
 * loss_check_file runs every case of a fixture file:
 *   1. builds the loss from the case's spec and config, writes the case's parameter values into
 *      dml_loss_params, calls dml_loss_compute and compares the loss, dloss/demb and the
 *      parameter gradients with the reference at |a - b| <= 1e-5 * max(|ref|, max_k |ref_k|)
 *      + 1e-7 (relative to the largest element of the gradient);
 *   2. records the same loss as a graph node (dml_loss_node), back-propagates and requires the
 *      same value and gradients;
 *   3. when the case says "fd": central finite differences of the float32 loss in double
 *      (step 1e-3) on every embedding coordinate of small cases; a coordinate passes when the
 *      analytic gradient matches the central, forward or backward quotient (hinge kinks).
 * Returns the number of failing cases (1 when the file is missing or holds no case). */
#ifndef DML_TEST_LOSS_CHECK_H
#define DML_TEST_LOSS_CHECK_H

#include "dml/dml.h"

int loss_check_file(const char *relpath);

/* Builds `spec` with cfg (may be NULL), runs dml_loss_compute on emb [b, d] / labels and
 * returns its status; on success requires the loss and every gradient element to be finite
 * (prints what is not and returns DML_ERR_INTERNAL). loss_out / grad_out (b*d) may be NULL. */
dml_status loss_check_finite(const char *spec, const dml_loss_config *cfg, const float *emb,
                             const int32_t *labels, int64_t b, int64_t d, float *loss_out,
                             float *grad_out);

#endif
