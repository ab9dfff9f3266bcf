/* `dml model FILE`: parses a model text file and prints its layer table. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "dml/dml.h"

int dml_cli_model(int argc, char **argv) {
  if (argc != 2 || !strcmp(argv[1], "--help")) {
    fprintf(argc == 2 ? stdout : stderr,
            "usage: dml model MODEL.txt\n  Checks the model text and prints layer output shapes "
            "and parameter counts.\n");
    return argc == 2 ? 0 : 2;
  }
  dml_model *m = NULL;
  if (dml_model_load_text_file(argv[1], &m) != DML_OK) {
    fprintf(stderr, "dml model: %s\n", dml_last_error());
    return 1;
  }
  dml_model_print_summary(m, stdout);
  dml_model_free(m);
  return 0;
}
