/* gkd: the command-line program. Dispatches to one function per subcommand (cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", gkd_cmd_run, "run an experiment script: gkd run SCRIPT.lua [args] | gkd run -e 'CODE'"},
    {"sweep", gkd_cmd_sweep, "run a sweep script with N workers, resumable: gkd sweep SCRIPT.lua [--workers N]"},
    {"resume", gkd_cmd_resume, "continue an interrupted run from its last checkpoint: gkd resume RUN"},
    {"runs", gkd_cmd_runs, "list the runs in the database: gkd runs [--db runs.db]"},
    {"report", gkd_cmd_report, "tables, --html FILE or --csv of runs and sweeps"},
    {"export", gkd_cmd_export, "TensorBoard event files of the runs: gkd export --tensorboard DIR"},
    {"quickstart", gkd_cmd_quickstart, "the main job: supervised KD vs on-policy GKD on 3-digit addition (experiments/quickstart.lua)"},
    {"train-tokenizer", gkd_cmd_train_tokenizer, "train a byte-level BPE tokenizer on a JSONL corpus"},
    {"sample", gkd_cmd_sample, "sample from a model checkpoint"},
    {"score", gkd_cmd_score,
     "per-token log-probs of a sequence under a model: gkd score --model M "
     "(--text S | --tokens \"1 2 3\") [--tokenizer T] [--special] [--json]"},
    {"reward-model", gkd_cmd_reward_model, "train, evaluate or query a learned factual-consistency reward model"},
    {"bench", gkd_cmd_bench, "measure training/generation speed, memory and overheads (--json)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: gkd COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n  gkd help        this text\n  gkd version     the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("gkd %s\n", GKD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].fn(argc, argv);
    fprintf(stderr, "gkd: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
