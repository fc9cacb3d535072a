/* The learned reward model's acceptance experiment (issue 5, criterion 4): trained on the full debdesc set,
 * it must tell consistent from corrupted summaries of held-out packages with >= 85% accuracy.
 * Data: $GKD_DEBDESC, else ../shared/data/debdesc.jsonl.xz beside the source tree; skipped (77) when absent.
 * Split: 10% of the packages held out (gkd_dataset_split, seed 1); training pairs: 4 rounds of swaps per
 * grounded example (seed 1); held-out pairs: 1 round (seed 2). Run by experiments/reward-model.sh, which
 * also records the output; the trained model is left in reward_model_debdesc.d/ of the working directory.
 * Everything is a function of the seeds, so a rerun gives the same numbers (on the same BLAS). $GKD_RM_SEED
 * (default 1) reseeds the training pairs, the initial weights and the data order; the split and the held-out
 * pairs stay the same. */
// ctest-labels: cpu;slow;experiment
#include "reward/reward_model.h"
#include "rl/reward_model_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/text/data.h"
#include "reward/metrics.h"
#include "tests/check.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double t_start;

static void on_progress(void *user, const gkd_reward_model_progress *p) {
    (void)user;
    printf("step %5lld  lr %.2e  loss %.4f  train acc %.3f", (long long)p->step, p->lr, p->loss, p->accuracy);
    if (p->eval_accuracy == p->eval_accuracy)
        printf("  held-out loss %.4f  acc %.4f", p->eval_loss, p->eval_accuracy);
    printf("  (%.0f s)\n", now() - t_start);
    fflush(stdout);
}

int main(void) {
    const char *path = getenv("GKD_DEBDESC");
    if (!path) path = GKD_SOURCE_DIR "/../shared/data/debdesc.jsonl.xz";
    if (access(path, R_OK) != 0) check_skip("debdesc.jsonl.xz not found (set GKD_DEBDESC)");
    t_start = now();
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *seed_env = getenv("GKD_RM_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 1;

    gkd_task_spec spec = {"{package}", "summary", "document", 0};
    gkd_dataset all = {0}, train = {0}, held = {0};
    gkd_status st = gkd_dataset_load_jsonl(path, &spec, &all);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (st != GKD_OK) return check_exit();
    CHECK(gkd_dataset_split(&all, 0.1, 1, &train, &held) == GKD_OK);

    gkd_reward_model_pair_config pc = gkd_reward_model_pair_config_default();
    pc.rounds = 4;
    pc.seed = seed;
    gkd_reward_model_pairs tp = {0}, hp = {0};
    CHECK(gkd_reward_model_make_pairs(&train, &pc, &tp) == GKD_OK);
    pc.rounds = 1;
    pc.seed = 2;
    CHECK(gkd_reward_model_make_pairs(&held, &pc, &hp) == GKD_OK);
    printf("seed %llu: %d training packages -> %d pairs; %d held-out packages -> %d pairs (%.0f s)\n",
           (unsigned long long)seed, train.n, tp.n, held.n, hp.n, now() - t_start);

    /* the rule the corruptions follow, as a reference: gkd_factual_score's content precision */
    int rule_correct = 0;
    for (int i = 0; i < hp.n; i++) {
        gkd_factual_parts fp;
        gkd_factual_score(hp.items[i].summary, hp.items[i].source, NULL, &fp);
        rule_correct += (fp.content_precision == 1.0) == (hp.items[i].label == 1);
    }
    printf("reference: factual content precision == 1 classifies %.4f of the held-out pairs\n",
           (double)rule_correct / hp.n);

    gkd_reward_model_config mc = gkd_reward_model_config_default();
    mc.dim = 64;
    mc.n_heads = 4;
    mc.hidden_dim = 172;
    mc.seed = seed;
    gkd_reward_model *rm = NULL;
    st = gkd_reward_model_create(&mc, &tp, gkd_backend_cpu(), &rm);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (st != GKD_OK) return check_exit();
    mc = *gkd_reward_model_get_config(rm);
    printf("model: vocab %d, dim %d, %d layers, %d heads, hidden %d, %zu parameters; %d source + %d summary "
           "tokens\n",
           mc.vocab_size, mc.dim, mc.n_layers, mc.n_heads, mc.hidden_dim,
           gkd_model_num_params(gkd_reward_model_transformer(rm)), mc.max_source_tokens,
           mc.max_summary_tokens);

    gkd_reward_model_train_config tc = gkd_reward_model_train_config_default();
    tc.steps = 6000;
    tc.seed = seed;
    tc.report_every = 250;
    tc.eval = &hp;
    tc.eval_every = 1000;
    tc.progress = on_progress;
    gkd_reward_model_progress last;
    st = gkd_reward_model_train(rm, &tc, &tp, &last);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());

    double acc = 0, loss = 0;
    CHECK(gkd_reward_model_evaluate(rm, &hp, &acc, &loss) == GKD_OK);
    printf("held-out accuracy %.4f (%d pairs), loss %.4f, after %.0f s\n", acc, hp.n, loss, now() - t_start);
    CHECKF(acc >= 0.85, "held-out accuracy %.4f < 0.85", acc);
    CHECKF(gkd_reward_model_save(rm, "reward_model_debdesc.d") == GKD_OK, "%s", gkd_error_message());

    gkd_reward_model_free(rm);
    gkd_reward_model_pairs_free(&tp);
    gkd_reward_model_pairs_free(&hp);
    gkd_dataset_free(&train);
    gkd_dataset_free(&held);
    gkd_dataset_free(&all);
    return check_exit();
}
