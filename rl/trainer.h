/* The GKD trainer (the paper's Algorithm 1) and its special cases as settings of one loop: each step,
 * with probability lambda the batch's outputs are the student's own samples (on-policy), otherwise the
 * fixed data (ground truth, or teacher-generated outputs cached once: sequence-level KD); the loss is a
 * token-level divergence between teacher and student on those outputs (or cross-entropy, for SFT), with
 * no gradient through the sampling.
 * Rules: every random draw is a pure function of (seed, stream, step) and, for a row's draws, of the row's
 * index in the global batch, so a run repeated or resumed from a checkpoint is bit-identical and a
 * data-parallel run draws what one process would; all numeric settings that may change over steps are schedules;
 * settings are checked by gkd_trainer_create before any work starts. The trainer borrows the models,
 * datasets and tokenizer: they must outlive it. */
#ifndef GKD_TRAINER_H
#define GKD_TRAINER_H

#include <stdint.h>

#include "core/text/data.h"
#include "core/tensor/model.h"
#include "reward/reward.h"
#include "rl/dist.h"
#include "rl/distill.h"
#include "rl/policy_gradient.h"
#include "rl/ppo.h"
#include "rl/run.h"
#include "rl/schedule.h"

/* The policy-gradient method of GKD + RL (docs/rlhf.md). */
typedef enum {
    GKD_RL_REINFORCE = 0, /* one update per batch, the score-function estimator (rl/policy_gradient.h) */
    GKD_RL_PPO = 1,       /* rollout, then epochs x mini-batches of the clipped surrogate (rl/trainer_ppo.c) */
    GKD_RL_GRPO = 2,      /* PPO's loop with group-normalised sequence advantages and the KL as a loss term */
} gkd_rl_method;

typedef enum {
    GKD_FIXED_GROUND_TRUTH = 0, /* the dataset's reference outputs */
    GKD_FIXED_TEACHER = 1,      /* teacher-generated outputs (SeqKD), generated once at the start */
} gkd_fixed_source;

/* Receives every number the trainer produces. `split` is "train" for per-step metrics, else the
 * evaluation split name; return non-zero to stop training with an error (the sink sets the last error). */
typedef int (*gkd_metric_fn)(void *ctx, const char *split, int64_t step, const char *name, double value);

/* A text metric for evaluation, on detokenised outputs: returns the score of one output. */
typedef struct {
    const char *name;
    double (*fn)(void *ctx, const char *output, const gkd_example *example, int *failed);
    void *ctx;
} gkd_text_metric;

enum { GKD_MAX_TEXT_METRICS = 8 };

typedef struct {
    const char *method;       /* a label recorded with the run; presets: see gkd_train_config_preset */
    int use_ce;               /* 1: cross-entropy on the batch outputs (SFT/SeqKD-CE), no teacher needed */
    gkd_divergence divergence;
    gkd_div_precision divergence_precision; /* how the divergence rows are computed (rl/divergence.h); default
                                               GKD_DIV_FLOAT32, GKD_DIV_EXACT the double reference */
    gkd_schedule lambda;      /* probability of an on-policy batch (or row, with per_sample_coin) */
    gkd_schedule beta;        /* JSD beta / skew alpha, per step (overrides divergence.beta) */
    gkd_schedule teacher_temperature;
    /* Weight formats (core/tensor/weights.h) of the teacher and of the KL reference policy (kl_coef), chosen
     * explicitly (teacher_precision, reference_precision in gkd.run): fp32 (the default) keeps them as they
     * are; bf16, q8_0 or q8_0_a8 converts them once at gkd_trainer_create (the teacher in place: it must be an
     * inference model, and a teacher already packed must be asked for in its own format). Not with the
     * ppo and grpo methods, whose log-probability passes read the fp32 output matrices. */
    gkd_weight_format teacher_weights, reference_weights;
    gkd_schedule sample_temperature;
    gkd_schedule lr;
    int per_sample_coin;
    gkd_fixed_source fixed;
    gkd_loss_norm norm;
    int max_new_tokens;
    int top_k;
    float top_p;

    int steps;
    int batch_size;
    int grad_accum;
    float weight_decay, beta1, beta2, adam_eps, grad_clip;
    uint64_t seed;
    int loss_chunk;           /* positions per chunk of the distillation loss */

    int eval_every;           /* 0: only at the end */
    int eval_examples;        /* held-out examples per evaluation (0: all) */
    float eval_temperature;   /* for the student's own samples at evaluation; 0 = greedy */
    gkd_text_metric text_metrics[GKD_MAX_TEXT_METRICS];
    int n_text_metrics;

    /* GKD + RL (the paper's section 3.2; rl/policy_gradient.h): with a reward, every batch is the student's
     * own samples, group_size per prompt, and the loss is the REINFORCE surrogate of (1 - alpha) r(y) plus
     * alpha times the divergence on the same samples; `norm` applies to both terms, and the surrogate
     * takes the student's log-probs at the sampling temperature (which must then be > 0). */
    gkd_reward *reward;       /* borrowed; NULL: no RL */
    gkd_schedule alpha;       /* in [0, 1]; 1 = pure distillation on the student's samples */
    int group_size;           /* samples per prompt (K); batch_size must be a multiple of it */
    gkd_baseline_kind baseline;
    double baseline_decay;    /* moving-average baseline */
    int normalize_advantages; /* the reward's advantages / their batch standard deviation, before the
                                 weight 1 - alpha */
    int divergence_score_function; /* 1 (default): the return includes -alpha D(y): unbiased for the whole
                                      objective; 0: the divergence is only differentiated, GKD-style */
    gkd_schedule kl_coef;     /* > 0: a KL(student || frozen initial student) term with this weight: REINFORCE
                                 adds the exact per-token KL to the loss; PPO / GRPO use kl_estimator, in the
                                 reward or the loss (kl_in_loss) */
    /* PPO and GRPO (with a reward; docs/rlhf.md). The reward's part of the return is weighted 1 - alpha and
     * the divergence term alpha, as in REINFORCE; the divergence is differentiated on the samples (GKD's
     * convention). */
    gkd_rl_method rl_method;
    gkd_schedule epochs;      /* passes over each rollout, an integer >= 1 (TRL num_ppo_epochs / num_iterations) */
    int minibatches;          /* updates per epoch; must divide batch */
    gkd_schedule clip_eps;    /* the ratio's clip range; 0: no clipping */
    gkd_kl_estimator kl_estimator; /* 0: the method's default (PPO k1, GRPO k3) */
    int kl_in_loss;           /* -1: the method's default (PPO: a reward penalty, GRPO: a loss term) */
    gkd_schedule target_kl;   /* > 0: stop the step's updates once approx KL > 1.5 target */
    int value_head;           /* PPO: 1 GAE with a value head on the student's last hidden state, 0 critic-free
                                 (the REINFORCE advantages: baseline, normalize_advantages) */
    double gamma, gae_lambda; /* GAE */
    gkd_schedule vf_coef;     /* weight of the value loss */
    double value_clip;        /* clip range of the value prediction around the rollout's; 0: none */
    int whiten_advantages;    /* GAE advantages whitened over the batch's tokens */
    int whiten_rewards;       /* the per-token rewards scaled by their std over the batch's tokens before GAE
                                 (mean kept, as TRL's whiten_rewards) */
    gkd_rl_agg loss_agg;      /* GRPO: how token losses combine (PPO follows norm) */
    double agg_constant;      /* GKD_RL_AGG_CONSTANT's length (Dr. GRPO); 0: max_new_tokens */
    int scale_rewards;        /* GRPO: divide by the group's std (1), Dr. GRPO's 0 */
    gkd_schedule teacher_reward; /* weight of the teacher's per-token reverse KL as a dense reward */

    int checkpoint_every;     /* 0: only at the end (if checkpoint_dir) */
    const char *checkpoint_dir; /* the run loop saves into its step-N folders (rl/checkpoints.h); NULL: none */
    int checkpoint_keep;      /* the run loop keeps the newest this many step folders; 0: all */

    gkd_metric_fn on_metric;
    void *metric_ctx;

    /* Data parallelism (rl/dist.h, docs/data-parallel.md); NULL or one rank: a single process. With N ranks
     * each takes rows [r B/N, (r+1) B/N) of every global batch of batch_size rows (its share of the
     * on-policy samples included, with the draws the whole batch would give them); the loss is normalised
     * by the global batch's counts, gradients and logged sums are summed over ranks, so every rank takes
     * the optimizer step one process would. Rank 0 alone evaluates and saves checkpoints. batch_size must
     * be a multiple of N. Borrowed. */
    gkd_dist *dist;
} gkd_train_config;

/* Defaults: supervised KD (lambda 0, forward KL), per-sequence normalisation, teacher temperature 1,
 * sampling temperature 1, lr 3e-4 with 10 warmup steps then cosine to 3e-5 at step 100 (set lr with the steps), batch 8, AdamW (0.9, 0.95, 1e-8, wd 0.01),
 * clip 1.0, 64 new tokens, seed 1. */
void gkd_train_config_default(gkd_train_config *cfg);
/* Applies a named method: "sft", "supervised_kd", "seqkd", "imitkd", "gkd" (on-policy, lambda 1),
 * keeping the divergence for the KD ones unless it is a method's defining choice. */
gkd_status gkd_train_config_preset(gkd_train_config *cfg, const char *method);

typedef struct gkd_trainer gkd_trainer;

/* Checks every setting (beta and lambda in [0,1], vocabularies equal, ...) and allocates. The teacher
 * may be NULL only with use_ce and fixed = ground truth. Caller frees with gkd_trainer_free. */
gkd_status gkd_trainer_create(const gkd_train_config *cfg, gkd_model *student, gkd_model *teacher,
                              const gkd_tokenizer *tok, const gkd_dataset *train_text,
                              const gkd_token_dataset *train, const gkd_dataset *held_out_text,
                              const gkd_token_dataset *held_out, gkd_trainer **out);
void gkd_trainer_free(gkd_trainer *t);

typedef struct {
    double loss;
    double lr;
    double lambda;
    double grad_norm;
    double on_policy_fraction;
    double output_length;
    gkd_distill_stats div;
    double tokens_per_s;
    double t_generate, t_teacher, t_student, t_optimizer; /* seconds */
    double reward, ret, advantage_std, alpha; /* RL: mean reward and return of the batch */
    double kl_reference; /* RL with kl_coef: KL(student || initial student) per token */
    /* PPO / GRPO: means over the step's updates (clip_fraction, approx_kl, ratio, entropy, value loss) or
     * over the rollout (explained_variance, teacher_reward) */
    double clip_fraction, approx_kl, ratio, entropy, value_loss, explained_variance, teacher_reward;
    int updates;         /* optimizer updates taken (fewer than epochs x minibatches after an early stop) */
} gkd_step_stats;

/* One optimizer step (grad_accum micro-batches). */
gkd_status gkd_trainer_step(gkd_trainer *t, gkd_step_stats *stats);
int64_t gkd_trainer_current_step(const gkd_trainer *t);
/* The configuration the trainer runs with (its copy, owned by the trainer). */
const gkd_train_config *gkd_trainer_get_config(const gkd_trainer *t);
/* Whether the trainer was given held-out data to evaluate on. */
int gkd_trainer_has_held_out(const gkd_trainer *t);

/* gkd_run_loop (rl/run.h) over the trainer: cfg.steps steps, evaluations every cfg.eval_every steps and
 * at the last when it has held-out data, checkpoints (gkd_trainer_save) every cfg.checkpoint_every steps
 * and at the last into cfg.checkpoint_dir, the newest cfg.checkpoint_keep kept. hooks and result may be
 * NULL. */
gkd_status gkd_trainer_run_hooked(gkd_trainer *t, const gkd_run_hooks *hooks, gkd_run_result *result);
/* gkd_trainer_run_hooked without hooks. */
gkd_status gkd_trainer_run(gkd_trainer *t);

typedef struct {
    double ce_loss;           /* teacher-forced on the reference outputs */
    double forward_kl, reverse_kl, jsd_half; /* teacher-forced on the reference outputs */
    double own_forward_kl, own_reverse_kl, own_jsd_half; /* on the student's own samples */
    double own_length;
    double text[GKD_MAX_TEXT_METRICS];
    int examples;
} gkd_eval_stats;

gkd_status gkd_trainer_evaluate(gkd_trainer *t, gkd_eval_stats *out);
/* The latest evaluation's numbers (owned by the trainer), or NULL before the first. */
const gkd_eval_stats *gkd_trainer_last_eval(const gkd_trainer *t);

/* Writes dir/model.safetensors (the student, Hugging Face names), dir/state.safetensors (optimizer
 * moments and update count, step, data position, the moving-average baselines of GKD + RL: state version 3)
 * and, for PPO with a value head, dir/value_head.safetensors (its parameters and AdamW moments, float64), so
 * that gkd_trainer_load continues bit-identically. gkd_trainer_load reads versions 1 to 3, except that a
 * version 1 state is refused for GKD + RL with the moving-average baseline (it does not hold it), and a state
 * without the update count (versions 1 and 2) or without value_head.safetensors is refused for PPO/GRPO. */
gkd_status gkd_trainer_save(gkd_trainer *t, const char *dir);
gkd_status gkd_trainer_load(gkd_trainer *t, const char *dir);

#endif
