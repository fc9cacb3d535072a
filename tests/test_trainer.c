/* The GKD trainer: settings are checked before any work; a run with a fixed seed is bit-identical when
 * repeated and when stopped, saved and resumed; every method preset runs; on-policy batches really are
 * the student's samples. */
#include "core/text/data.h"
#include "core/text/tokenizer.h"
#include "rl/trainer.h"
#include "tests/check.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gkd_tokenizer *tok;
static gkd_dataset train_text, held_text;
static gkd_token_dataset train, held;

static gkd_model *tiny_model(int dim, int layers, int vocab, uint64_t seed) {
    gkd_model_config c = {.vocab_size = vocab, .dim = dim, .n_layers = layers, .n_heads = 4, .n_kv_heads = 2,
                          .hidden_dim = 2 * dim, .max_seq_len = 128, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    if (gkd_model_create(&c, gkd_backend_cpu(), &m) != GKD_OK) return NULL;
    gkd_model_init_weights(m, seed);
    return m;
}

typedef struct {
    double losses[64];
    int n;
} loss_log;

static int log_loss(void *ctx, const char *split, int64_t step, const char *name, double value) {
    loss_log *l = ctx;
    if (strcmp(split, "train") == 0 && strcmp(name, "loss") == 0 && step >= 1 && step <= 64) {
        l->losses[step - 1] = value;
        if (step > l->n) l->n = (int)step;
    }
    return 0;
}

static void gkd_config(gkd_train_config *c, loss_log *log) {
    gkd_train_config_default(c);
    c->batch_size = 4;
    c->max_new_tokens = 8;
    c->steps = 6;
    c->seed = 7;
    c->divergence.kind = GKD_DIV_JSD;
    c->beta = gkd_schedule_constant(0.9);
    c->lambda = gkd_schedule_constant(0.5);
    c->per_sample_coin = 1;
    c->lr = gkd_schedule_constant(1e-3);
    c->on_metric = log_loss;
    c->metric_ctx = log;
}

static void run_steps(gkd_trainer *t, int n) {
    for (int i = 0; i < n; i++) {
        gkd_step_stats s;
        gkd_status st = gkd_trainer_step(t, &s);
        CHECKF(st == GKD_OK, "%s", gkd_error_message());
    }
}

int main(void) {
    CHECK(gkd_dataset_arithmetic(3, 80, &train_text) == GKD_OK);
    CHECK(gkd_dataset_arithmetic(4, 8, &held_text) == GKD_OK);
    const char *texts[80];
    for (int i = 0; i < 80; i++) texts[i] = train_text.items[i].prompt;
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    CHECK(gkd_tokenizer_train(texts, 80, 400, specials, 2, &tok) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&train_text, tok, 48, 24, &train) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&held_text, tok, 48, 24, &held) == GKD_OK);
    int V = gkd_tokenizer_vocab_size(tok);
    gkd_model *teacher = tiny_model(32, 2, V, 11);

    /* Bad settings are refused before any training, naming the setting. */
    gkd_train_config c;
    loss_log log = {0};
    gkd_trainer *t = NULL;
    gkd_model *student = tiny_model(16, 1, V, 12);
    gkd_config(&c, &log);
    c.beta = gkd_schedule_constant(1.5);
    CHECK(gkd_trainer_create(&c, student, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "beta") != NULL, "%s", gkd_error_message());
    gkd_config(&c, &log);
    c.lambda = gkd_schedule_linear(0.0, 1.2, 10);
    CHECK(gkd_trainer_create(&c, student, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "lambda") != NULL, "%s", gkd_error_message());
    gkd_config(&c, &log);
    c.divergence.beta = -0.1;
    c.divergence.kind = GKD_DIV_JSD;
    CHECK(gkd_trainer_create(&c, student, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    gkd_divergence d;
    CHECK(gkd_divergence_parse("jensen", &d) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "jensen") != NULL, "%s", gkd_error_message());
    gkd_model *other = tiny_model(16, 1, V + 3, 12);
    gkd_config(&c, &log);
    CHECK(gkd_trainer_create(&c, other, teacher, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "vocabularies differ") != NULL, "%s", gkd_error_message());
    gkd_model_free(other);
    gkd_config(&c, &log);
    CHECK(gkd_trainer_create(&c, student, NULL, tok, &train_text, &train, &held_text, &held, &t) == GKD_ERR_ARG);
    CHECK(gkd_train_config_preset(&c, "distill-ish") == GKD_ERR_ARG);
    CHECK(t == NULL);

    /* Two runs with the same seed: bit-identical losses (lambda 0.5 per row: sampling and data both used). */
    loss_log a = {0}, b = {0};
    gkd_model *s1 = tiny_model(16, 1, V, 12), *s2 = tiny_model(16, 1, V, 12);
    gkd_config(&c, &a);
    gkd_trainer *t1 = NULL, *t2 = NULL;
    CHECKF(gkd_trainer_create(&c, s1, teacher, tok, &train_text, &train, &held_text, &held, &t1) == GKD_OK, "%s",
           gkd_error_message());
    run_steps(t1, 6);
    gkd_config(&c, &b);
    CHECK(gkd_trainer_create(&c, s2, teacher, tok, &train_text, &train, &held_text, &held, &t2) == GKD_OK);
    run_steps(t2, 6);
    CHECK(a.n == 6 && b.n == 6);
    for (int i = 0; i < 6; i++) fprintf(stderr, "step %d loss %.6f\n", i + 1, a.losses[i]);
    CHECK(memcmp(a.losses, b.losses, sizeof a.losses) == 0);
    CHECK(memcmp(gkd_model_params(s1), gkd_model_params(s2), gkd_model_num_params(s1) * sizeof(float)) == 0);
    int moved = 0;
    for (int i = 1; i < 6; i++) moved += a.losses[i] != a.losses[0];
    CHECK(moved > 0);

    /* Stopped at step 3, saved, resumed in a fresh trainer and model: steps 4..6 bit-identical. */
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/gkd-test-trainer-%d", (int)getpid());
    loss_log r1 = {0}, r2 = {0};
    gkd_model *s3 = tiny_model(16, 1, V, 12), *s4 = tiny_model(16, 1, V, 99);
    gkd_trainer *t3 = NULL, *t4 = NULL;
    gkd_config(&c, &r1);
    CHECK(gkd_trainer_create(&c, s3, teacher, tok, &train_text, &train, &held_text, &held, &t3) == GKD_OK);
    run_steps(t3, 3);
    CHECKF(gkd_trainer_save(t3, dir) == GKD_OK, "%s", gkd_error_message());
    gkd_trainer_free(t3);
    gkd_config(&c, &r2);
    CHECK(gkd_trainer_create(&c, s4, teacher, tok, &train_text, &train, &held_text, &held, &t4) == GKD_OK);
    CHECKF(gkd_trainer_load(t4, dir) == GKD_OK, "%s", gkd_error_message());
    CHECK(gkd_trainer_current_step(t4) == 3);
    run_steps(t4, 3);
    CHECK(r1.n == 3 && r2.n == 6);
    for (int i = 0; i < 3; i++) CHECKF(a.losses[i] == r1.losses[i], "step %d before the stop", i + 1);
    for (int i = 3; i < 6; i++)
        CHECKF(a.losses[i] == r2.losses[i], "step %d after resume: %.9g vs %.9g", i + 1, r2.losses[i], a.losses[i]);
    CHECK(memcmp(gkd_model_params(s1), gkd_model_params(s4), gkd_model_num_params(s1) * sizeof(float)) == 0);
    /* A checkpoint of another seed is refused. */
    gkd_config(&c, &r2);
    c.seed = 8;
    gkd_trainer *t5 = NULL;
    CHECK(gkd_trainer_create(&c, s4, teacher, tok, &train_text, &train, &held_text, &held, &t5) == GKD_OK);
    CHECK(gkd_trainer_load(t5, dir) == GKD_ERR_ARG);
    gkd_trainer_free(t5);

    /* Every method runs and evaluates. */
    const char *methods[] = {"sft", "supervised_kd", "seqkd", "imitkd", "gkd"};
    for (int k = 0; k < 5; k++) {
        gkd_model *s = tiny_model(16, 1, V, 12);
        loss_log l = {0};
        gkd_config(&c, &l);
        c.steps = 2;
        CHECK(gkd_train_config_preset(&c, methods[k]) == GKD_OK);
        gkd_trainer *tm = NULL;
        CHECKF(gkd_trainer_create(&c, s, teacher, tok, &train_text, &train, &held_text, &held, &tm) == GKD_OK, "%s: %s",
               methods[k], gkd_error_message());
        CHECKF(tm && gkd_trainer_run(tm) == GKD_OK, "%s: %s", methods[k], gkd_error_message());
        gkd_eval_stats es;
        CHECK(tm && gkd_trainer_evaluate(tm, &es) == GKD_OK);
        CHECKF(l.n == 2 && isfinite(l.losses[1]), "%s", methods[k]);
        CHECK(es.examples == 8 && isfinite(es.ce_loss) && es.forward_kl >= 0);
        gkd_trainer_free(tm);
        gkd_model_free(s);
    }

    /* GKD + RL: a reward, K = 2 samples per prompt, alpha 0.5 and a KL penalty to the initial student;
     * repeatable, and the reward's numbers reach the metric sink. */
    {
        gkd_reward *reward = NULL;
        CHECK(gkd_reward_builtin("exact_match", &reward) == GKD_OK);
        loss_log l1 = {0}, l2 = {0};
        for (int rep = 0; rep < 2; rep++) {
            gkd_model *s = tiny_model(16, 1, V, 12);
            gkd_config(&c, rep ? &l2 : &l1);
            c.reward = reward;
            c.alpha = gkd_schedule_constant(0.5);
            c.group_size = 2;
            c.kl_coef = gkd_schedule_constant(0.1);
            c.steps = 3;
            gkd_trainer *tr = NULL;
            CHECKF(gkd_trainer_create(&c, s, teacher, tok, &train_text, &train, &held_text, &held, &tr) == GKD_OK, "%s",
                   gkd_error_message());
            CHECKF(tr && gkd_trainer_run(tr) == GKD_OK, "%s", gkd_error_message());
            gkd_trainer_free(tr);
            gkd_model_free(s);
        }
        CHECK(l1.n == 3 && memcmp(l1.losses, l2.losses, sizeof l1.losses) == 0);
        gkd_config(&c, &l1);
        c.reward = reward;
        c.group_size = 3;
        gkd_trainer *tr = NULL;
        CHECK(gkd_trainer_create(&c, student, teacher, tok, &train_text, &train, &held_text, &held, &tr) == GKD_ERR_ARG);
        CHECKF(strstr(gkd_error_message(), "group_size") != NULL, "%s", gkd_error_message());
        c.group_size = 2;
        c.alpha = gkd_schedule_constant(-0.5);
        CHECK(gkd_trainer_create(&c, student, teacher, tok, &train_text, &train, &held_text, &held, &tr) == GKD_ERR_ARG);
        CHECKF(strstr(gkd_error_message(), "alpha") != NULL, "%s", gkd_error_message());
        gkd_reward_free(reward);
    }

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    gkd_trainer_free(t1);
    gkd_trainer_free(t2);
    gkd_trainer_free(t4);
    gkd_model_free(s1);
    gkd_model_free(s2);
    gkd_model_free(s3);
    gkd_model_free(s4);
    gkd_model_free(student);
    gkd_model_free(teacher);
    gkd_token_dataset_free(&train);
    gkd_token_dataset_free(&held);
    gkd_dataset_free(&train_text);
    gkd_dataset_free(&held_text);
    gkd_tokenizer_free(tok);
    return check_exit();
}
