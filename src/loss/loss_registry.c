/* The catalogue: every loss family's list of definitions, looked up by name. */
#include <stdio.h>
#include <string.h>

#include "loss/loss_internal.h"

static const dml__loss_def *const *const families[] = {dml__losses_proxy, dml__losses_hinge,
                                                       dml__losses_softmax};
#define N_FAMILIES ((int)(sizeof families / sizeof families[0]))

const dml__loss_def *dml__loss_find(const char *name) {
  for (int f = 0; f < N_FAMILIES; f++)
    for (const dml__loss_def *const *d = families[f]; *d; d++)
      if (!strcmp((*d)->name, name)) return *d;
  return NULL;
}

void dml__loss_names(char *buf, int size) {
  buf[0] = '\0';
  size_t len = 0;
  for (int f = 0; f < N_FAMILIES; f++)
    for (const dml__loss_def *const *d = families[f]; *d; d++) {
      snprintf(buf + len, (size_t)size - len, "%s%s", len ? ", " : "", (*d)->name);
      len = strlen(buf);
    }
}

/* Iteration for the catalogue text. */
const dml__loss_def *dml__loss_at(int i) {
  for (int f = 0; f < N_FAMILIES; f++)
    for (const dml__loss_def *const *d = families[f]; *d; d++)
      if (i-- == 0) return *d;
  return NULL;
}
