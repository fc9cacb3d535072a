/* gkd reward-model: trains, evaluates and queries the learned reward models (reward/reward_model.h: the
 * factual-consistency kind and the preference kind) from the command line, so a model for
 * gkd.run{reward = "model:DIR"} needs no C.
 *   gkd reward-model train --data FILE.jsonl[.xz] --out DIR [options]
 *   gkd reward-model train --pairs FILE.jsonl [--held-out FILE.jsonl] --out DIR [options]   (preference)
 *   gkd reward-model eval  --model DIR --data FILE.jsonl[.xz] [--rounds N --seed S]
 *   gkd reward-model eval  --model DIR --pairs FILE.jsonl                                    (preference)
 *   gkd reward-model score --model DIR --source TEXT --summary TEXT
 * The data is JSONL with a source field (default "document") and a summary field (default "summary");
 * train holds out --held-out of the examples (by example, before any pair is made) and reports the
 * held-out accuracy, which is what docs/reward-model.md's acceptance figure measures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "core/tensor/backend.h"
#include "core/text/data.h"
#include "reward/reward_model.h"
#include "rl/reward_model_train.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    double t0;
    int quiet;
} progress_state;

static void on_progress(void *user, const gkd_reward_model_progress *p) {
    progress_state *s = user;
    if (s->quiet) return;
    printf("step %6lld  lr %.2e  loss %.4f  train acc %.3f", (long long)p->step, p->lr, p->loss, p->accuracy);
    if (p->eval_accuracy == p->eval_accuracy)
        printf("  held-out loss %.4f  acc %.4f", p->eval_loss, p->eval_accuracy);
    printf("  (%.0f s)\n", now() - s->t0);
    fflush(stdout);
}

/* Reads (source, summary) examples of a JSONL file; 2 with the message printed on failure. */
static int load_examples(const char *cmd, gkd_cli_args *a, gkd_dataset *out) {
    const char *data = gkd_cli_str(a, "data", NULL);
    const char *source_field = gkd_cli_str(a, "source-field", "document");
    const char *summary_field = gkd_cli_str(a, "summary-field", "summary");
    int bad = 0;
    long long max_examples = gkd_cli_int(a, "max-examples", 0, &bad);
    if (bad) return 2;
    if (!data) {
        gkd_cli_error(cmd, "--data FILE.jsonl is required (fields set by --source-field, --summary-field)");
        return 2;
    }
    if (max_examples < 0 || max_examples > 0x7fffffff) {
        gkd_cli_error(cmd, "--max-examples must be >= 0 (0: all)");
        return 2;
    }
    /* The prompt is not used by the reward model; the source field fills it so that the reader checks
     * the field exists on every line. */
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "{%s}", source_field);
    gkd_task_spec spec = {tmpl, summary_field, source_field, (int)max_examples};
    if (gkd_dataset_load_jsonl(data, &spec, out) != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        return 2;
    }
    if (out->n < 2) {
        gkd_cli_error(cmd, "%s: %d example(s); at least 2 are needed", data, out->n);
        gkd_dataset_free(out);
        return 2;
    }
    return 0;
}

/* The model's and training's options, shared by both kinds. */
static void read_model_options(gkd_cli_args *a, gkd_reward_model_config *m, gkd_reward_model_train_config *t,
                               int *bad) {
    gkd_reward_model_config mc = gkd_reward_model_config_default();
    gkd_reward_model_train_config tc = gkd_reward_model_train_config_default();
    mc.vocab_size = gkd_cli_size(a, "vocab", mc.vocab_size, bad);
    mc.dim = gkd_cli_size(a, "dim", mc.dim, bad);
    mc.n_layers = gkd_cli_size(a, "layers", mc.n_layers, bad);
    mc.n_heads = gkd_cli_size(a, "heads", mc.n_heads, bad);
    mc.hidden_dim = gkd_cli_size(a, "hidden", mc.hidden_dim, bad);
    mc.max_source_tokens = gkd_cli_size(a, "source-tokens", mc.max_source_tokens, bad);
    mc.max_summary_tokens = gkd_cli_size(a, "summary-tokens", mc.max_summary_tokens, bad);
    tc.steps = gkd_cli_int(a, "steps", tc.steps, bad);
    tc.batch = gkd_cli_size(a, "batch", tc.batch, bad);
    tc.lr = (float)gkd_cli_double(a, "lr", tc.lr, bad);
    tc.min_lr = (float)gkd_cli_double(a, "min-lr", tc.min_lr, bad);
    tc.warmup_steps = gkd_cli_int(a, "warmup", tc.warmup_steps, bad);
    tc.report_every = gkd_cli_size(a, "report-every", tc.report_every, bad);
    tc.eval_every = gkd_cli_size(a, "eval-every", 0, bad);
    (void)gkd_cli_str(a, "init", NULL); /* read by create_model, after the unused-option check */
    (void)gkd_cli_str(a, "init-tokenizer", NULL);
    *m = mc;
    *t = tc;
}

static const char *check_model_options(const gkd_reward_model_train_config *tc, long long seed) {
    if (seed < 0) return "--seed must be >= 0";
    if (tc->steps < 1 || tc->batch < 1) return "--steps and --batch must be >= 1";
    if (!(tc->lr > 0.0f) || !(tc->min_lr >= 0.0f)) return "--lr must be > 0 and --min-lr >= 0";
    if (tc->report_every < 1 || tc->eval_every < 0 || tc->warmup_steps < 0)
        return "--report-every must be >= 1, --eval-every and --warmup >= 0";
    return NULL;
}

static int train_preferences(const char *cmd, gkd_cli_args *a);

/* The starting model: --init MODEL (a gkd .safetensors file or a Hugging Face directory) with its
 * tokenizer (--init-tokenizer, else the tokenizer.json in the directory or next to the file), or a new
 * model whose tokenizer is trained on `corpus`. With --init the shape options have no effect and are
 * refused. Prints the error and returns 2 on failure. */
static int create_model(const char *cmd, gkd_cli_args *a, const gkd_reward_model_config *mc,
                        const gkd_reward_model_pairs *corpus, gkd_reward_model **rm) {
    const char *init = gkd_cli_str(a, "init", NULL), *init_tok = gkd_cli_str(a, "init-tokenizer", NULL);
    if (!init) {
        if (init_tok) {
            gkd_cli_error(cmd, "--init-tokenizer needs --init MODEL");
            return 2;
        }
        if (gkd_reward_model_create(mc, corpus, gkd_backend_cpu(), rm) == GKD_OK) return 0;
        gkd_cli_error(cmd, "%s", gkd_error_message());
        return 2;
    }
    char tok_path[4096];
    if (init_tok) {
        snprintf(tok_path, sizeof tok_path, "%s", init_tok);
    } else {
        struct stat sb;
        int dir = stat(init, &sb) == 0 && S_ISDIR(sb.st_mode);
        const char *slash = strrchr(init, '/');
        if (dir)
            snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", init);
        else if (slash)
            snprintf(tok_path, sizeof tok_path, "%.*s/tokenizer.json", (int)(slash - init), init);
        else
            snprintf(tok_path, sizeof tok_path, "tokenizer.json");
    }
    if (gkd_reward_model_create_from(mc, init, tok_path, gkd_backend_cpu(), rm) == GKD_OK) return 0;
    gkd_cli_error(cmd, "%s", gkd_error_message());
    return 2;
}

/* With --init the model's shape comes from the base: a shape option given too would have no effect. */
static const char *shape_option_with_init(gkd_cli_args *a) {
    static const char *const shape[] = {"vocab", "dim", "layers", "heads", "hidden"};
    static char why[128];
    if (!gkd_cli_str(a, "init", NULL)) return NULL;
    for (size_t i = 0; i < sizeof shape / sizeof *shape; i++)
        if (gkd_cli_str(a, shape[i], NULL)) {
            snprintf(why, sizeof why, "--%s has no effect with --init: the shape is the base model's", shape[i]);
            return why;
        }
    return NULL;
}

static int cmd_train(int argc, char **argv) {
    const char *cmd = "reward-model train";
    gkd_cli_args a;
    if (gkd_cli_parse(&a, cmd, argc, argv, 3, "quiet") != 0) return 2;
    if (gkd_cli_str(&a, "pairs", NULL)) return train_preferences(cmd, &a);
    int bad = 0;
    gkd_reward_model_config mc;
    gkd_reward_model_train_config tc;
    gkd_reward_model_pair_config pc = gkd_reward_model_pair_config_default();
    const char *out_dir = gkd_cli_str(&a, "out", NULL);
    double held_out = gkd_cli_double(&a, "held-out", 0.1, &bad);
    long long seed = gkd_cli_int(&a, "seed", 1, &bad);
    read_model_options(&a, &mc, &tc, &bad);
    pc.rounds = gkd_cli_size(&a, "rounds", 4, &bad);
    pc.max_source_words = gkd_cli_size(&a, "source-words", pc.max_source_words, &bad);
    int quiet = gkd_cli_flag(&a, "quiet");
    gkd_dataset all = {0};
    int rc = bad ? 2 : load_examples(cmd, &a, &all);
    if (rc) return rc;
    if (gkd_cli_check_unused(&a)) {
        gkd_dataset_free(&all);
        return 2;
    }
    const char *why = NULL;
    if (!out_dir) why = "--out DIR is required (the model is written to DIR/model.safetensors and DIR/tokenizer.json)";
    else if (!(held_out >= 0.0 && held_out < 1.0)) why = "--held-out must be in [0, 1)";
    else if (pc.rounds < 1) why = "--rounds must be >= 1";
    else if (!(why = shape_option_with_init(&a))) why = check_model_options(&tc, seed);
    if (why) {
        gkd_cli_error(cmd, "%s", why);
        gkd_dataset_free(&all);
        return 2;
    }
    mc.seed = (uint64_t)seed;
    tc.seed = (uint64_t)seed;
    pc.seed = (uint64_t)seed;

    double t0 = now();
    gkd_dataset train = {0}, held = {0};
    gkd_reward_model_pairs tp = {0}, hp = {0};
    gkd_reward_model *rm = NULL;
    gkd_status st = gkd_dataset_split(&all, held_out, 1, &train, &held);
    if (st == GKD_OK) st = gkd_reward_model_make_pairs(&train, &pc, &tp);
    if (st == GKD_OK && held.n > 0) {
        gkd_reward_model_pair_config hc = pc;
        hc.rounds = 1;
        hc.seed = pc.seed + 1;
        st = gkd_reward_model_make_pairs(&held, &hc, &hp);
    }
    if (st == GKD_OK && tp.n == 0) {
        gkd_cli_error(cmd, "no training pairs: no example has a summary whose content words all appear in its "
                           "source (cut after --source-words words)");
        rc = 2;
        goto done;
    }
    if (st != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        rc = 2;
        goto done;
    }
    if ((rc = create_model(cmd, &a, &mc, &tp, &rm)) != 0) goto done;
    mc = *gkd_reward_model_get_config(rm);
    if (!quiet)
        printf("%d training examples -> %d pairs, %d held-out examples -> %d pairs; model: vocab %d, dim %d, "
               "%d layers, %d heads, %zu parameters\n",
               train.n, tp.n, held.n, hp.n, mc.vocab_size, mc.dim, mc.n_layers, mc.n_heads,
               gkd_model_num_params(gkd_reward_model_transformer(rm)));
    progress_state ps = {t0, quiet};
    tc.progress = on_progress;
    tc.user = &ps;
    tc.eval = hp.n > 0 ? &hp : NULL;
    st = gkd_reward_model_train(rm, &tc, &tp, NULL);
    if (st == GKD_OK) st = gkd_reward_model_save(rm, out_dir);
    if (st != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        rc = 1;
        goto done;
    }
    double acc = 0, loss = 0;
    if (hp.n > 0 && gkd_reward_model_evaluate(rm, &hp, &acc, &loss) == GKD_OK)
        printf("held-out accuracy %.4f, loss %.4f (%d pairs); saved to %s (%.0f s)\n", acc, loss, hp.n, out_dir,
               now() - t0);
    else
        printf("saved to %s (%.0f s; no held-out pairs)\n", out_dir, now() - t0);
done:
    gkd_reward_model_free(rm);
    gkd_reward_model_pairs_free(&tp);
    gkd_reward_model_pairs_free(&hp);
    gkd_dataset_free(&train);
    gkd_dataset_free(&held);
    gkd_dataset_free(&all);
    return rc;
}

/* Reads a preference pairs file; 2 with the message (file and line) printed on failure. */
static int load_preferences(const char *cmd, const char *path, gkd_reward_model_pairs *out) {
    if (gkd_reward_model_read_preferences(path, out) == GKD_OK) return 0;
    gkd_cli_error(cmd, "%s", gkd_error_message());
    return 2;
}

/* train --pairs FILE: a preference (Bradley-Terry) model; --held-out names a file of pairs. */
static int train_preferences(const char *cmd, gkd_cli_args *a) {
    int bad = 0;
    gkd_reward_model_config mc;
    gkd_reward_model_train_config tc;
    const char *path = gkd_cli_str(a, "pairs", NULL), *held = gkd_cli_str(a, "held-out", NULL);
    const char *out_dir = gkd_cli_str(a, "out", NULL);
    long long seed = gkd_cli_int(a, "seed", 1, &bad);
    read_model_options(a, &mc, &tc, &bad);
    int quiet = gkd_cli_flag(a, "quiet");
    if (bad || gkd_cli_check_unused(a)) return 2;
    const char *why = !out_dir ? "--out DIR is required" : shape_option_with_init(a);
    if (!why) why = check_model_options(&tc, seed);
    if (why) {
        gkd_cli_error(cmd, "%s", why);
        return 2;
    }
    mc.seed = tc.seed = (uint64_t)seed;
    mc.preference = 1;
    tc.token_loss_weight = 0;
    double t0 = now();
    gkd_reward_model_pairs tp = {0}, hp = {0};
    gkd_reward_model *rm = NULL;
    int rc = load_preferences(cmd, path, &tp);
    if (rc == 0 && held) rc = load_preferences(cmd, held, &hp);
    if (rc == 0) rc = create_model(cmd, a, &mc, &tp, &rm);
    if (rc == 0 && !quiet)
        printf("%d training pairs, %d held-out pairs; preference model: vocab %d, dim %d, %d layers, %zu parameters\n",
               tp.n / 2, hp.n / 2, gkd_reward_model_get_config(rm)->vocab_size, gkd_reward_model_get_config(rm)->dim,
               gkd_reward_model_get_config(rm)->n_layers, gkd_model_num_params(gkd_reward_model_transformer(rm)));
    progress_state ps = {t0, quiet};
    tc.progress = on_progress;
    tc.user = &ps;
    tc.eval = hp.n > 0 ? &hp : NULL;
    if (rc == 0 && (gkd_reward_model_train(rm, &tc, &tp, NULL) != GKD_OK || gkd_reward_model_save(rm, out_dir) != GKD_OK)) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        rc = 1;
    }
    double acc = 0, loss = 0;
    if (rc == 0 && hp.n > 0 && gkd_reward_model_evaluate(rm, &hp, &acc, &loss) == GKD_OK)
        printf("held-out pairwise accuracy %.4f, loss %.4f (%d pairs); saved to %s (%.0f s)\n", acc, loss,
               hp.n / 2, out_dir, now() - t0);
    else if (rc == 0)
        printf("saved to %s (%.0f s; no held-out pairs)\n", out_dir, now() - t0);
    gkd_reward_model_free(rm);
    gkd_reward_model_pairs_free(&tp);
    gkd_reward_model_pairs_free(&hp);
    return rc;
}

static int load_model(const char *cmd, const char *dir, gkd_reward_model **rm) {
    if (!dir) {
        gkd_cli_error(cmd, "--model DIR (written by gkd reward-model train) is required");
        return 2;
    }
    if (gkd_reward_model_load(dir, gkd_backend_cpu(), rm) != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        return 2;
    }
    return 0;
}

/* eval --pairs FILE: the pairwise accuracy of a preference model (ties left out) and its mean pair loss. */
static int eval_preferences(const char *cmd, gkd_cli_args *a, const char *dir, const char *path) {
    if (gkd_cli_check_unused(a)) return 2;
    gkd_reward_model *rm = NULL;
    gkd_reward_model_pairs pairs = {0};
    int rc = load_model(cmd, dir, &rm);
    if (rc == 0 && !gkd_reward_model_get_config(rm)->preference) {
        gkd_cli_error(cmd, "%s is a factual-consistency model: --pairs needs a preference model (train --pairs)", dir);
        rc = 2;
    }
    if (rc == 0) rc = load_preferences(cmd, path, &pairs);
    double acc = 0, loss = 0;
    if (rc == 0 && gkd_reward_model_evaluate(rm, &pairs, &acc, &loss) != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        rc = 1;
    }
    if (rc == 0) printf("pairwise accuracy %.4f, loss %.4f (%d pairs)\n", acc, loss, pairs.n / 2);
    gkd_reward_model_pairs_free(&pairs);
    gkd_reward_model_free(rm);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    const char *cmd = "reward-model eval";
    gkd_cli_args a;
    if (gkd_cli_parse(&a, cmd, argc, argv, 3, "") != 0) return 2;
    int bad = 0;
    gkd_reward_model_pair_config pc = gkd_reward_model_pair_config_default();
    pc.rounds = gkd_cli_size(&a, "rounds", 1, &bad);
    pc.seed = (uint64_t)gkd_cli_int(&a, "seed", 2, &bad);
    pc.max_source_words = gkd_cli_size(&a, "source-words", pc.max_source_words, &bad);
    const char *dir = gkd_cli_str(&a, "model", NULL);
    const char *prefs = gkd_cli_str(&a, "pairs", NULL);
    if (prefs) return bad ? 2 : eval_preferences(cmd, &a, dir, prefs);
    gkd_dataset d = {0};
    int rc = bad ? 2 : load_examples(cmd, &a, &d);
    if (rc) return rc;
    gkd_reward_model *rm = NULL;
    gkd_reward_model_pairs pairs = {0};
    if (gkd_cli_check_unused(&a) || pc.rounds < 1) {
        if (pc.rounds < 1) gkd_cli_error(cmd, "--rounds must be >= 1");
        rc = 2;
    } else {
        rc = load_model(cmd, dir, &rm);
    }
    if (rc == 0 && gkd_reward_model_make_pairs(&d, &pc, &pairs) != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        rc = 2;
    }
    if (rc == 0 && pairs.n == 0) {
        gkd_cli_error(cmd, "no pairs: no example has a fully grounded summary");
        rc = 2;
    }
    double acc = 0, loss = 0;
    if (rc == 0 && gkd_reward_model_evaluate(rm, &pairs, &acc, &loss) != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        rc = 1;
    }
    if (rc == 0) printf("accuracy %.4f, loss %.4f (%d pairs from %d examples)\n", acc, loss, pairs.n, d.n);
    gkd_reward_model_pairs_free(&pairs);
    gkd_reward_model_free(rm);
    gkd_dataset_free(&d);
    return rc;
}

static int cmd_score(int argc, char **argv) {
    const char *cmd = "reward-model score";
    gkd_cli_args a;
    if (gkd_cli_parse(&a, cmd, argc, argv, 3, "") != 0) return 2;
    const char *source = gkd_cli_str(&a, "source", NULL), *summary = gkd_cli_str(&a, "summary", NULL);
    const char *dir = gkd_cli_str(&a, "model", NULL);
    if (gkd_cli_check_unused(&a)) return 2;
    if (!source || !summary) {
        gkd_cli_error(cmd, "--source TEXT and --summary TEXT are required");
        return 2;
    }
    gkd_reward_model *rm = NULL;
    int rc = load_model(cmd, dir, &rm);
    double p = 0;
    if (rc == 0 && gkd_reward_model_score(rm, &source, &summary, 1, &p) != GKD_OK) {
        gkd_cli_error(cmd, "%s", gkd_error_message());
        rc = 1;
    }
    if (rc == 0) printf("%.6f\n", p);
    gkd_reward_model_free(rm);
    return rc;
}

int gkd_cmd_reward_model(int argc, char **argv) {
    const char *sub = argc > 2 ? argv[2] : "";
    if (strcmp(sub, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(sub, "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(sub, "score") == 0) return cmd_score(argc, argv);
    gkd_cli_error("reward-model",
                  "usage: gkd reward-model train --data FILE | --pairs FILE [--held-out FILE] --out DIR [--steps N --batch N --lr X --dim N "
                  "--layers N --heads N --hidden N --vocab N --rounds N --held-out F --seed S --quiet] | "
                  "eval --model DIR --data FILE | --pairs FILE | score --model DIR --source TEXT --summary TEXT");
    return 2;
}
