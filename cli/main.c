/* The `dml` command: a table of subcommands, one file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "dml/dml.h"

static const dml_cli_command commands[] = {
    {"calibrate", "choose a gallery's rejection threshold on labelled embeddings", dml_cli_calibrate},
    {"classify", "label queries by their gallery match, or \"unknown\"", dml_cli_classify},
    {"demo", "train the reference CNN on Fashion-MNIST and report retrieval", dml_cli_demo},
    {"embed", "run a trained model over images or arrays and write embeddings", dml_cli_embed},
    {"eval", "retrieval, clustering and kNN metrics of embedding files", dml_cli_eval},
    {"index", "build, edit and search galleries of labelled embeddings", dml_cli_index},
    {"loss", "list the losses and miners, or check a loss spec", dml_cli_loss},
    {"model", "check a model text file and print its layer table", dml_cli_model},
    {"train", "train an embedding from a config; evaluate it and write a report", dml_cli_train},
    {"version", "print the version", dml_cli_version},
};

static void usage(FILE *f) {
  fprintf(f, "usage: dml <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\nRun 'dml <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "dml: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
