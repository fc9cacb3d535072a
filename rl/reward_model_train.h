/* Training the learned reward model (reward/reward_model.h) through the run loop (rl/run.h): AdamW steps
 * on batches of pairs, with progress reports and evaluations on the report steps.
 * Rules: training is a deterministic function of (model, pairs, config): the data order comes from the
 * seed; the optimizer state is fresh each call. */
#ifndef GKD_REWARD_MODEL_TRAIN_H
#define GKD_REWARD_MODEL_TRAIN_H

#include <stdint.h>

#include "reward/reward_model.h"

typedef struct {
    int64_t step;     /* updates done */
    float lr;         /* learning rate of the last update */
    double loss;      /* mean row loss (logistic on z; a preference model: pair loss) since the last report */
    double accuracy;  /* training accuracy of those updates' batches (before each update) */
    double eval_loss; /* on eval pairs when given and due (else NAN) */
    double eval_accuracy;
} gkd_reward_model_progress;

typedef struct {
    int64_t steps;
    int batch;
    float lr, min_lr; /* warmup to lr, then cosine to min_lr (core/tensor/optim.h) */
    int64_t warmup_steps;
    float weight_decay, grad_clip;
    /* weight of the per-token loss: each summary position's head logit against "this token belongs to
     * the swapped-in word" (known for the corrupted pairs gkd_reward_model_make_pairs makes) */
    float token_loss_weight;
    uint64_t seed;                      /* data order */
    int report_every;                   /* progress is called every this many steps and at the end */
    const gkd_reward_model_pairs *eval; /* may be NULL */
    int eval_every;                     /* 0: only at the end */
    void (*progress)(void *user, const gkd_reward_model_progress *p); /* may be NULL */
    void *user;
} gkd_reward_model_train_config;

/* 6000 steps of 32 pairs, lr 2e-3 -> 1e-4 with 100 warmup steps, weight decay 0.01, clip 1, token loss
 * weight 4, seed 1, report every 100 steps, no eval set. */
gkd_reward_model_train_config gkd_reward_model_train_config_default(void);

/* Trains rm on `train` with AdamW (a fresh optimizer state each call); the pairs are shuffled per
 * epoch. *last (may be NULL) receives the final report. */
gkd_status gkd_reward_model_train(gkd_reward_model *rm, const gkd_reward_model_train_config *cfg,
                                  const gkd_reward_model_pairs *train, gkd_reward_model_progress *last);

#endif
