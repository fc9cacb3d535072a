/* The `gkd` program: one function per subcommand, each in its own file, dispatched by cli/main.c.
 * Rules: a command returns the process exit status (0 ok, 1 failure at run time, 2 bad usage or bad
 * input such as a script syntax error); errors go to stderr as "gkd <command>: message". */
#ifndef GKD_CLI_H
#define GKD_CLI_H

#include <stdint.h>
#include <stdio.h>

/* Options of the form --name value or --flag; positional arguments kept in order. */
typedef struct {
    int argc;
    char **argv;
    const char *command;
    int n_positional;
    const char *positional[64];
    int n_options;
    const char *names[64];
    const char *values[64]; /* NULL for a flag */
    int used[64];
} gkd_cli_args;

/* Parses argv[first..); `flags` lists the options that take no value ("json,verbose"); "--" ends the options
 * (every later argument is positional). 0 or 2 (usage). */
int gkd_cli_parse(gkd_cli_args *a, const char *command, int argc, char **argv, int first, const char *flags);
const char *gkd_cli_str(gkd_cli_args *a, const char *name, const char *fallback);
/* Numeric options: a malformed value prints an error naming the option and sets *bad. */
long long gkd_cli_int(gkd_cli_args *a, const char *name, long long fallback, int *bad);
/* An integer option in [0, INT_MAX] (sizes, counts); out of range sets *bad with a message naming it. */
int gkd_cli_size(gkd_cli_args *a, const char *name, int fallback, int *bad);
double gkd_cli_double(gkd_cli_args *a, const char *name, double fallback, int *bad);
int gkd_cli_flag(gkd_cli_args *a, const char *name);
/* 0 when every option given was read by the command, else prints the unknown ones and returns 2. */
int gkd_cli_check_unused(gkd_cli_args *a);
void gkd_cli_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether `name` is in the comma-separated list `flags` ("json,quiet"). */
int gkd_cli_is_flag(const char *flags, const char *name);
/* Prints "usage: gkd COMMAND ..." with every option of the command, from cli/main.c's command table (what
 * `gkd COMMAND --help` prints); 0 when the command has none there. */
int gkd_cli_usage(FILE *out, const char *command);

int gkd_cmd_train_tokenizer(int argc, char **argv);
int gkd_cmd_sample(int argc, char **argv);
int gkd_cmd_score(int argc, char **argv); /* cli/cmd_score.c: per-token log-probs of a sequence */
int gkd_cmd_bench(int argc, char **argv);
int gkd_cmd_quickstart(int argc, char **argv);
int gkd_cmd_run(int argc, char **argv);    /* cli/cmd_run.c: gkd run SCRIPT.lua | -e CODE */
int gkd_cmd_sweep(int argc, char **argv);  /* cli/cmd_run.c */
int gkd_cmd_resume(int argc, char **argv); /* cli/cmd_run.c */
int gkd_cmd_runs(int argc, char **argv);   /* cli/cmd_report.c */
int gkd_cmd_report(int argc, char **argv); /* cli/cmd_report.c */
int gkd_cmd_export(int argc, char **argv); /* cli/cmd_export.c: gkd export --tensorboard DIR */
int gkd_cmd_merge(int argc, char **argv);  /* cli/cmd_merge.c: per-point stores into one */
int gkd_cmd_reward_model(int argc, char **argv); /* cli/cmd_reward_model.c: train | eval | score */

#endif
