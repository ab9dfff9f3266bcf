/* `dml loss [SPEC ...]`: without a spec, the catalogue of losses, miners and reductions; with
 * specs, checks each (as a config file or `dml train` would read it) and prints it with every
 * parameter spelled out, or the error that says what is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "dml/dml.h"

int dml_cli_loss(int argc, char **argv) {
  int64_t dim = 128, classes = 10;
  int first_spec = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: dml loss [--dim D] [--classes C] [SPEC ...]\n"
             "  no SPEC: list every loss, miner and reduction with its parameters\n"
             "  SPEC:    check a loss spec, e.g. \"triplet margin=0.2 miner=semihard\", and print\n"
             "           it with every parameter; --dim and --classes size the parameters of\n"
             "           proxy and classifier losses (defaults 128 and 10)\n");
      return 0;
    }
    if ((!strcmp(argv[i], "--dim") || !strcmp(argv[i], "--classes")) && i + 1 < argc) {
      char *end = NULL;
      long long v = strtoll(argv[i + 1], &end, 10);
      if (!end || *end || v < 1) {
        fprintf(stderr, "dml loss: %s needs a positive whole number, got '%s'\n", argv[i],
                argv[i + 1]);
        return 2;
      }
      *(argv[i][2] == 'd' ? &dim : &classes) = v;
      i++;
      first_spec = i + 1;
      continue;
    }
    break;
  }
  if (first_spec >= argc) {
    fputs(dml_loss_catalogue(), stdout);
    return 0;
  }
  int rc = 0;
  for (int i = first_spec; i < argc; i++) {
    dml_loss_config cfg = {dim, classes, 0};
    dml_loss *l = NULL;
    if (dml_loss_new(argv[i], &cfg, &l) != DML_OK) {
      fprintf(stderr, "dml loss: %s\n", dml_last_error());
      rc = 1;
      continue;
    }
    printf("%s\n", dml_loss_spec(l));
    dml_param_store *ps = dml_loss_params(l);
    for (int p = 0; ps && p < dml_params_count(ps); p++) {
      const dml_param *q = dml_params_get(ps, p);
      printf("  parameter %-20s [", q->name);
      for (int k = 0; k < q->ndim; k++) printf("%s%lld", k ? ", " : "", (long long)q->shape[k]);
      printf("]\n");
    }
    dml_loss_free(l);
  }
  return rc;
}
