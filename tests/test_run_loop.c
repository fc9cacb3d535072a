// ctest-labels: cpu
/* The run loop (gkd_trainer_run_hooked) and its checkpoint folder (rl/checkpoints.h):
 * - the hooks run in the documented order: on_step, the evaluation's on_eval, the checkpoint's
 *   on_checkpoint, on_step_end, with evaluations every eval_every steps and at the last, and
 *   checkpoints every checkpoint_every steps and at the last;
 * - rotation keeps the newest `keep` step folders up to the step saved, removes older ones (those of an
 *   earlier process too) and the .tmp folders of killed saves, and leaves folders after the step alone;
 * - should_stop ends the run between steps as interrupted, checkpointed at the step it reached;
 * - a run of 0 steps evaluates once, at step 0;
 * - a hook's failure ends the run with its status. */
#include "core/text/data.h"
#include "core/text/tokenizer.h"
#include "rl/checkpoints.h"
#include "rl/trainer.h"
#include "tests/check.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gkd_tokenizer *tok;
static gkd_dataset train_text, held_text;
static gkd_token_dataset train, held;

typedef struct {
    char log[1024]; /* "s1 e1 c1 end1 ..." */
    int stop_at;    /* should_stop answers yes at this step (0: never) */
    int64_t step;
    int fail_on_step;
} recorder;

static void note(recorder *r, const char *what, int64_t step) {
    size_t n = strlen(r->log);
    snprintf(r->log + n, sizeof r->log - n, "%s%s%lld", n ? " " : "", what, (long long)step);
}

static int should_stop(void *ctx) {
    recorder *r = ctx;
    return r->stop_at > 0 && r->step >= r->stop_at;
}

static gkd_status on_step(void *ctx, int64_t step) {
    recorder *r = ctx;
    r->step = step;
    note(r, "s", step);
    if (r->fail_on_step && step == r->fail_on_step) return gkd_error_set(GKD_ERR_CALLBACK, "on_step failed");
    return GKD_OK;
}

static gkd_status on_eval(void *ctx, int64_t step) {
    note(ctx, "e", step);
    return GKD_OK;
}

static gkd_status on_checkpoint(void *ctx, int64_t step, const char *path) {
    struct stat sb;
    CHECKF(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode), "%s is not a folder when recorded", path);
    note(ctx, "c", step);
    return GKD_OK;
}

static void on_step_end(void *ctx, int64_t step, int last) {
    note(ctx, last ? "last" : "end", step);
}

static int exists(const char *dir, const char *name) {
    char path[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &sb) == 0;
}

static void make_folder(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(mkdir(path, 0777) == 0);
}

static void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* Runs a fresh SFT trainer of `steps` with the recorder's hooks; returns the run's status. */
static gkd_status run(int steps, const char *dir, int keep, recorder *r, gkd_run_result *result) {
    gkd_model_config mc = {.vocab_size = gkd_tokenizer_vocab_size(tok), .dim = 16, .n_layers = 1, .n_heads = 4,
                           .n_kv_heads = 2, .hidden_dim = 32, .max_seq_len = 128, .rope_theta = 10000.0f,
                           .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    CHECK(gkd_model_create(&mc, gkd_backend_cpu(), &m) == GKD_OK);
    gkd_model_init_weights(m, 1);
    gkd_train_config c;
    gkd_train_config_default(&c);
    CHECK(gkd_train_config_preset(&c, "sft") == GKD_OK);
    c.steps = steps;
    c.batch_size = 4;
    c.max_new_tokens = 4;
    c.eval_every = 3;
    c.eval_examples = 4;
    c.checkpoint_every = 2;
    c.checkpoint_dir = dir;
    c.checkpoint_keep = keep;
    gkd_trainer *t = NULL;
    CHECKF(gkd_trainer_create(&c, m, NULL, tok, &train_text, &train, &held_text, &held, &t) == GKD_OK, "%s",
           gkd_error_message());
    gkd_run_hooks hooks = {r, should_stop, on_step, on_eval, on_checkpoint, on_step_end};
    gkd_status st = t ? gkd_trainer_run_hooked(t, &hooks, result) : GKD_ERR_ARG;
    gkd_trainer_free(t);
    gkd_model_free(m);
    return st;
}

static void check_order_and_rotation(const char *dir) {
    /* Left by an earlier process: an old checkpoint, a killed save, and a later history's folder. */
    CHECK(mkdir(dir, 0777) == 0);
    make_folder(dir, "step-00000001");
    make_folder(dir, "step-00000003.tmp");
    make_folder(dir, "step-00000099");
    make_folder(dir, "notes");
    recorder r = {0};
    gkd_run_result result;
    CHECKF(run(6, dir, 2, &r, &result) == GKD_OK, "%s", gkd_error_message());
    const char *want = "s1 end1 s2 c2 end2 s3 e3 end3 s4 c4 end4 s5 end5 s6 e6 c6 last6";
    CHECKF(strcmp(r.log, want) == 0, "hooks ran as \"%s\", not \"%s\"", r.log, want);
    CHECK(!result.interrupted && result.checkpoint_step == -1);
    CHECK(exists(dir, "step-00000006") && exists(dir, "step-00000004"));
    CHECK(exists(dir, "step-00000006/model.safetensors") && exists(dir, "step-00000006/state.safetensors"));
    CHECK(!exists(dir, "step-00000002") && !exists(dir, "step-00000001") && !exists(dir, "step-00000003.tmp"));
    CHECK(exists(dir, "step-00000099") && exists(dir, "notes"));
    remove_tree(dir);
}

static void check_rotate_alone(const char *dir) {
    CHECK(mkdir(dir, 0777) == 0);
    const char *names[] = {"step-00000002", "step-00000005", "step-00000007", "step-00000009", "step-7",
                           "step-00000004.tmp", "step-00000008.tmp"};
    for (int i = 0; i < 7; i++) make_folder(dir, names[i]);
    gkd_checkpoints_rotate(dir, 7, 2);
    CHECK(exists(dir, "step-00000007") && exists(dir, "step-00000005"));
    CHECK(!exists(dir, "step-00000002") && !exists(dir, "step-00000004.tmp"));
    /* after the step saved, or not named as the loop names them: left alone */
    CHECK(exists(dir, "step-00000009") && exists(dir, "step-00000008.tmp") && exists(dir, "step-7"));
    gkd_checkpoints_rotate(dir, 7, 1);
    CHECK(exists(dir, "step-00000007") && !exists(dir, "step-00000005"));
    remove_tree(dir);
}

static void check_stop(const char *dir) {
    recorder r = {.stop_at = 3};
    gkd_run_result result;
    CHECKF(run(6, dir, 0, &r, &result) == GKD_OK, "%s", gkd_error_message());
    const char *want = "s1 end1 s2 c2 end2 s3 e3 end3 c3";
    CHECKF(strcmp(r.log, want) == 0, "hooks ran as \"%s\", not \"%s\"", r.log, want);
    CHECK(result.interrupted && result.checkpoint_step == 3);
    CHECK(exists(dir, "step-00000002") && exists(dir, "step-00000003")); /* keep 0: all kept */
    remove_tree(dir);
}

static void check_zero_steps_and_failure(const char *dir) {
    recorder r = {0};
    gkd_run_result result;
    CHECK(run(0, dir, 2, &r, &result) == GKD_OK);
    CHECKF(strcmp(r.log, "e0") == 0, "a run of 0 steps ran \"%s\"", r.log);
    CHECK(!exists(dir, "step-00000000"));
    recorder f = {.fail_on_step = 2};
    CHECK(run(6, dir, 2, &f, &result) == GKD_ERR_CALLBACK);
    CHECKF(strcmp(f.log, "s1 end1 s2") == 0, "a failed run ran \"%s\"", f.log);
    CHECK(strstr(gkd_error_message(), "on_step failed") != NULL);
    remove_tree(dir);
}

int main(void) {
    CHECK(gkd_dataset_arithmetic(3, 24, &train_text) == GKD_OK);
    CHECK(gkd_dataset_arithmetic(4, 4, &held_text) == GKD_OK);
    const char *texts[24];
    for (int i = 0; i < 24; i++) texts[i] = train_text.items[i].prompt;
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    CHECK(gkd_tokenizer_train(texts, 24, 300, specials, 2, &tok) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&train_text, tok, 48, 24, &train) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&held_text, tok, 48, 24, &held) == GKD_OK);
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/gkd-test-run-loop-%d", (int)getpid());
    check_order_and_rotation(dir);
    check_rotate_alone(dir);
    check_stop(dir);
    check_zero_steps_and_failure(dir);
    gkd_token_dataset_free(&train);
    gkd_token_dataset_free(&held);
    gkd_dataset_free(&train_text);
    gkd_dataset_free(&held_text);
    gkd_tokenizer_free(tok);
    return check_exit();
}
