/* Subcommands of the `dml` tool: each takes argc/argv starting at its own name and returns the
 * process exit code (0 ok, 1 failure, 2 usage error). */
#ifndef DML_CLI_COMMANDS_H
#define DML_CLI_COMMANDS_H

typedef struct dml_cli_command {
  const char *name;
  const char *help;
  int (*run)(int argc, char **argv);
} dml_cli_command;

int dml_cli_calibrate(int argc, char **argv);
int dml_cli_classify(int argc, char **argv);
int dml_cli_demo(int argc, char **argv);
int dml_cli_embed(int argc, char **argv);
int dml_cli_eval(int argc, char **argv);
int dml_cli_index(int argc, char **argv);
int dml_cli_loss(int argc, char **argv);
int dml_cli_model(int argc, char **argv);
int dml_cli_train(int argc, char **argv);
int dml_cli_version(int argc, char **argv);

#endif
