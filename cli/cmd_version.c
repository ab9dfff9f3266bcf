/* `dml version` */
#include <stdio.h>

#include "cli/commands.h"
#include "dml/dml.h"

int dml_cli_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("dml %s\n", DML_VERSION_STRING);
  return 0;
}
