/* gkd: the command-line program. Dispatches to one function per subcommand (cli.h).
 * Rules: the command table holds each command's usage, which names every option it reads
 * (tests/test_cli_help.sh checks that against the sources); `gkd COMMAND --help` or `-h` prints it on
 * stdout and exits 0 before the command runs, so no command can take "-h" for a file name. Help is looked
 * for before "--" (the script's arguments after it), and for `gkd run` only before the script or -e
 * CODE: everything after them is the script's, --help included (lua.c's convention). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define DEVICE "[--device cpu|cuda|auto|sim]"
#define LIMITS "[--sandbox] [--memory-limit MIB] [--instruction-limit N] [--callback-instructions N] [--callback-seconds S]"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *usage; /* from "gkd NAME" on: every option the command reads */
    /* gkd run: its options that take no value, so that the scan for --help can step over the others'
     * values and stop at the script; NULL for a command whose --help counts anywhere before "--" */
    const char *script_flags;
} command;

static const command commands[] = {
    {"run", gkd_cmd_run, "run an experiment script: gkd run SCRIPT.lua [args] | gkd run -e 'CODE'",
     "gkd run [--db FILE] " DEVICE " [--quiet] [--resume] [--reuse-stale] " LIMITS " SCRIPT.lua [args...]\n"
     "       gkd run [options] -e 'CODE' [args...]\n"
     "Runs a Lua experiment script (docs/lua-api.md); the arguments after the script are its own (arg[1]..).\n"
     "  --db FILE     the run store (default runs.db)\n"
     "  --quiet       no progress line (GKD_PROGRESS_SECONDS: seconds between lines in a log, default 30)\n"
     "  --resume      look each run up by name: a finished one is skipped, a stopped one continues\n"
     "  --reuse-stale reuse a stored run even when its configuration hash differs from this one's\n"
     "Scripts are trusted code with your rights unless --sandbox; see docs/trust.md.\n",
     "quiet,resume,reuse-stale,sandbox"},
    {"sweep", gkd_cmd_sweep, "run a sweep script with N workers, resumable: gkd sweep SCRIPT.lua [--workers N]",
     "gkd sweep SCRIPT.lua [--workers N] [--db FILE] " DEVICE " [--retry-failed] [--reuse-stale] [--quiet] " LIMITS
     " [args...] [-- args...]\n"
     "       gkd sweep SCRIPT.lua --slurm [--resume] [--partition P] [--time T] [--gpus-per-task G] [--cpus-per-task C]\n"
     "           [--mem M] [--account A] [--max-parallel K] [--dry-run] [options above] [-- args...]\n"
     "       gkd sweep SCRIPT.lua --point I [--db FILE] [options above] [-- args...]\n"
     "Runs a sweep script (gkd.sweep, docs/lua-api.md); finished runs are skipped, stopped ones continue.\n"
     "Arguments after \"--\" go to the script as they are, also ones that start with \"--\".\n"
     "--slurm writes a Slurm job array into DB_DIR/SWEEP.slurm/ (one task per point, each with its own store\n"
     "points/I.db), submits it with sbatch and prints the job id; --dry-run only writes it. Run again (or with\n"
     "--resume), it merges the point stores into --db and submits only the unfinished points; successive halving\n"
     "submits each rung after a controller job (--advance, internal). --point I runs point I alone (what an\n"
     "array task does). See docs/cluster.md.\n",
     NULL},
    {"resume", gkd_cmd_resume, "continue an interrupted run from its last checkpoint: gkd resume RUN",
     "gkd resume RUN [--db FILE] " DEVICE " [--quiet] [--reuse-stale] " LIMITS "\n"
     "Runs the script that started RUN again, which continues it from its last checkpoint.\n"
     "The run's own sandbox and limit flags apply again; those given here override them.\n",
     NULL},
    {"merge", gkd_cmd_merge, "gather run stores (a Slurm sweep's per-point databases) into one: gkd merge DIR",
     "gkd merge DIR|FILE.db... [--db FILE] [--quiet]\n"
     "Copies the runs of the given stores into the run store (default runs.db) with all their rows. A folder\n"
     "stands for its *.db files and those of its points/ folder (a sweep's DIR.slurm, docs/cluster.md).\n"
     "Idempotent: runs are matched by uuid and updated in place, never duplicated; points still running can\n"
     "be merged and merged again later. A file that is not a gkd store is named and leaves the target as it was.\n",
     NULL},
    {"runs", gkd_cmd_runs, "list the runs in the database: gkd runs [--db runs.db]",
     "gkd runs [--db FILE | FILE] [--sweep NAME] [--status running|finished|failed|interrupted]\n"
     "Lists the runs of a run store (default runs.db), opened read-only (docs/reports.md).\n",
     NULL},
    {"report", gkd_cmd_report, "tables, --html FILE or --csv of runs and sweeps",
     "gkd report [--db FILE | FILE] [--sweep NAME] [--status S] [--split held_out]\n"
     "           [--metric M[,M...]]... [--maximize M,...] [--minimize M,...] [--ignore KEY,...]\n"
     "           [--csv FILE|-] [--html FILE] [--title TEXT] [--curve M,...]\n"
     "           [--heatmap M] [--heatmap-x KEY] [--heatmap-y KEY] [--reward M] [--task M] [--label KEY]\n"
     "Tables of the runs and sweeps of a run store, as CSV or as one HTML page (docs/reports.md).\n",
     NULL},
    {"export", gkd_cmd_export, "TensorBoard event files of the runs: gkd export --tensorboard DIR",
     "gkd export --tensorboard DIR [--db FILE] [--run NAME] [--sweep NAME]\n"
     "Writes the runs of the store (default runs.db) as TensorBoard event files under DIR, one folder per run:\n"
     "training metrics and evaluations as scalars, the config as HParams, stored samples as text.\n"
     "--run keeps the runs of that name, --sweep that sweep's runs. Then: tensorboard --logdir DIR\n",
     NULL},
    {"quickstart", gkd_cmd_quickstart,
     "the main job: supervised KD vs on-policy GKD on 3-digit addition (experiments/quickstart.lua)",
     "gkd quickstart " DEVICE " [--db FILE] [--out DIR] [--seeds 1,2,3] [--ablation] [--warm-gate X]\n"
     "               [--teacher-gate X] [--smoke]\n"
     "Runs experiments/quickstart.lua (GKD_QUICKSTART_SCRIPT overrides it): about 2 minutes on 2 cores;\n"
     "--smoke: seconds. The teacher must reach --teacher-gate (0.9) greedy validation exact match and the\n"
     "student --warm-gate (0.45), else the next seed is trained (3 tries).\n",
     NULL},
    {"train-tokenizer", gkd_cmd_train_tokenizer, "train a byte-level BPE tokenizer on a JSONL corpus",
     "gkd train-tokenizer --data FILE.jsonl --out tokenizer.json [--vocab N] [--fields a,b] [--max-docs N]\n"
     "Trains a byte-level BPE tokenizer on the text of the given fields (docs/tokenizer.md).\n",
     NULL},
    {"sample", gkd_cmd_sample, "sample from a model checkpoint",
     "gkd sample --model MODEL --prompt TEXT [--tokenizer tokenizer.json] [--n N] [--max-new-tokens N]\n"
     "           [--temperature T] [--top-k K] [--top-p P] [--seed S] [--weights fp32|bf16|q8_0|q8_0_a8] [--stats]\n"
     "           [--ignore-eos]\n"
     "           " DEVICE "\n"
     "Samples continuations of a prompt from a model checkpoint. --weights bf16|q8_0|q8_0_a8 stores its matrices in\n"
     "reduced precision (an approximation, CPU only: docs/inference-precision.md); --stats prints the rate;\n"
     "--ignore-eos runs every sample to --max-new-tokens (EOS, if drawn, stays in the text).\n",
     NULL},
    {"score", gkd_cmd_score,
     "per-token log-probs of a sequence under a model: gkd score --model M "
     "(--text S | --tokens \"1 2 3\") [--tokenizer T] [--special] [--json]",
     "gkd score --model MODEL (--text TEXT | --tokens \"ID ID ...\") [--tokenizer tokenizer.json] [--special]\n"
     "          [--json] [--weights fp32|bf16|q8_0|q8_0_a8] [--weights-error bf16|q8_0|q8_0_a8] " DEVICE "\n"
     "The log-probability of each token of a sequence under a model. --weights scores with reduced-precision\n"
     "matrices; --weights-error reports that format's logit error against fp32 over the sequence\n"
     "(docs/inference-precision.md).\n",
     NULL},
    {"reward-model", gkd_cmd_reward_model, "train, evaluate or query a learned reward model (factual or preference)",
     "gkd reward-model train --data FILE --out DIR [--source-field F] [--summary-field F] [--max-examples N]\n"
     "           [--steps N] [--batch N] [--lr X] [--min-lr X] [--warmup N] [--dim N] [--layers N] [--heads N]\n"
     "           [--hidden N] [--vocab N] [--source-tokens N] [--summary-tokens N] [--source-words N]\n"
     "           [--rounds N] [--held-out F] [--seed S] [--report-every N] [--eval-every N] [--quiet]\n"
     "           [--init MODEL [--init-tokenizer FILE]]  (start from a pretrained gkd or Hugging Face model)\n"
     "       gkd reward-model eval --model DIR --data FILE [--rounds N] [--seed S] [--source-words N]\n"
     "           [--source-field F] [--summary-field F] [--max-examples N]\n"
     "       gkd reward-model train --pairs FILE --out DIR [--held-out FILE] [model and training options above]\n"
     "       gkd reward-model eval --model DIR --pairs FILE\n"
     "       gkd reward-model score --model DIR --source TEXT --summary TEXT\n"
     "A learned factual-consistency reward, or with --pairs a preference (Bradley-Terry) reward model on\n"
     "{prompt, chosen, rejected[, margin, tie]} JSONL pairs (docs/reward-model.md).\n",
     NULL},
    {"bench", gkd_cmd_bench, "measure training/generation speed, memory and overheads (--json)",
     "gkd bench [--json] [--quick] " DEVICE " [--precision fp32|tf32|bf16]\n"
     "          [--only distill,sgemm,train,generate,teacher_score,gkd_step,lua,data_parallel]\n"
     "          [--reps N] [--vocab N] [--dim N] [--layers N] [--heads N] [--kv-heads N] [--ffn N] [--seq N]\n"
     "          [--batch N] [--gen-batch N] [--gen-new N] [--score-batch N] [--score-seq N] [--smol-layers N]\n"
     "Training and generation speed, memory and overheads (docs/benchmarks.md); teacher_score and generate's\n"
     "batch-1 figures compare fp32 with bf16, q8_0_a8 (and, batch 1, q8_0) weights (docs/inference-precision.md)\n"
     "on the SmolLM2-135M shape (--smol-layers: fewer of its 30 layers, for a quick check only).\n",
     NULL},
};

static const command *find_command(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(name, commands[i].name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *out) {
    fprintf(out, "usage: gkd COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n  gkd help        this text\n  gkd version     the version\n"
                 "  gkd COMMAND --help   the command's options\n");
}

int gkd_cli_usage(FILE *out, const char *name) {
    const command *c = find_command(name);
    if (!c || !c->usage) return 0;
    fprintf(out, "usage: %s", c->usage);
    return 1;
}

static int is_help(const char *arg) {
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Whether argv[2..] asks for the command's help (see the Rules above). */
static int wants_help(const command *c, int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) return 0;
        if (is_help(arg)) return 1;
        if (!c->script_flags) continue;
        if (arg[0] != '-' || strcmp(arg, "-e") == 0) return 0; /* the script or its code: the rest is its own */
        if (strncmp(arg, "--", 2) == 0 && !strchr(arg, '=') && !gkd_cli_is_flag(c->script_flags, arg + 2)) i++;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || is_help(cmd)) {
        if (argc > 2 && gkd_cli_usage(stdout, argv[2])) return 0;
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("gkd %s\n", GKD_VERSION);
        return 0;
    }
    const command *c = find_command(cmd);
    if (c && c->usage && wants_help(c, argc, argv)) return gkd_cli_usage(stdout, cmd) ? 0 : 2;
    if (c) return c->fn(argc, argv);
    fprintf(stderr, "gkd: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
