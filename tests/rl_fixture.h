/* The shared start of the trainer's RL tests (test_rl_trainer.c, test_ppo_trainer.c): 3-digit addition
 * prompts (40 to train on, 8 held out), a tokenizer trained on them, tiny models, a student warm-started
 * by a short SFT (so that its outputs end at varied lengths), and a reward with spread within every group.
 * Include once, from a test's .c file. */
#ifndef GKD_TESTS_RL_FIXTURE_H
#define GKD_TESTS_RL_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "core/text/data.h"
#include "core/text/tokenizer.h"
#include "rl/trainer.h"
#include "tests/check.h"

static gkd_tokenizer *tok;
static gkd_dataset train_text, held_text;
static gkd_token_dataset train, held;
static int V;
static float *warm; /* the student's weights after the warm start */

static gkd_model *tiny_model(int dim, int layers, uint64_t seed) {
    gkd_model_config c = {.vocab_size = V, .dim = dim, .n_layers = layers, .n_heads = 4, .n_kv_heads = 2,
                          .hidden_dim = 2 * dim, .max_seq_len = 128, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    if (gkd_model_create(&c, gkd_backend_cpu(), &m) != GKD_OK) return NULL;
    gkd_model_init_weights(m, seed);
    return m;
}

/* The student (and its twins) at the warm start. */
static gkd_model *student_model(void) {
    gkd_model *m = tiny_model(16, 1, 12);
    if (m && warm) memcpy(gkd_model_params(m), warm, gkd_model_num_params(m) * sizeof(float));
    return m;
}

static void warm_start(void) {
    gkd_model *m = tiny_model(16, 1, 12);
    gkd_train_config c;
    gkd_train_config_default(&c);
    CHECK(gkd_train_config_preset(&c, "sft") == GKD_OK);
    c.steps = 60;
    c.batch_size = 8;
    c.lr = gkd_schedule_constant(1e-2);
    gkd_trainer *t = NULL;
    CHECKF(gkd_trainer_create(&c, m, NULL, tok, &train_text, &train, NULL, NULL, &t) == GKD_OK, "%s",
           gkd_error_message());
    CHECKF(t && gkd_trainer_run(t) == GKD_OK, "%s", gkd_error_message());
    gkd_trainer_free(t);
    size_t n = gkd_model_num_params(m);
    warm = malloc(n * sizeof *warm);
    if (warm) memcpy(warm, gkd_model_params(m), n * sizeof *warm);
    gkd_model_free(m);
}

/* The output's length in bytes, modulo 5, over 4. */
static gkd_status length_mod_reward(gkd_reward *r, const gkd_reward_sample *samples, int n, double *scores) {
    (void)r;
    for (int i = 0; i < n; i++) scores[i] = (double)(strlen(samples[i].output) % 5) / 4.0;
    return GKD_OK;
}

/* The data and tokenizer, then the warm start. */
static void rl_fixture_init(void) {
    CHECK(gkd_dataset_arithmetic(3, 40, &train_text) == GKD_OK);
    CHECK(gkd_dataset_arithmetic(4, 8, &held_text) == GKD_OK);
    const char *texts[40];
    for (int i = 0; i < 40; i++) texts[i] = train_text.items[i].prompt;
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    CHECK(gkd_tokenizer_train(texts, 40, 400, specials, 2, &tok) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&train_text, tok, 48, 24, &train) == GKD_OK);
    CHECK(gkd_dataset_tokenize(&held_text, tok, 48, 24, &held) == GKD_OK);
    V = gkd_tokenizer_vocab_size(tok);
    warm_start();
}

static void rl_fixture_free(void) {
    free(warm);
    gkd_token_dataset_free(&train);
    gkd_token_dataset_free(&held);
    gkd_dataset_free(&train_text);
    gkd_dataset_free(&held_text);
    gkd_tokenizer_free(tok);
}

#endif
