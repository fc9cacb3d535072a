/* The trainer's private state and the helpers its files share (rl/trainer.c: the GKD and REINFORCE steps,
 * evaluation and checkpoints; rl/trainer_ppo.c: PPO and GRPO). Not part of the public API. */
#ifndef GKD_TRAINER_INTERNAL_H
#define GKD_TRAINER_INTERNAL_H

#include "core/base/rng.h"
#include "core/tensor/optim.h"
#include "core/text/tokenizer.h"
#include "rl/trainer.h"

/* Stream offsets are functions of the micro-step, so runs repeat and resume exactly. */
enum { GKD_TRAINER_EVAL_STREAM = GKD_RNG_STREAM_USER + 1, GKD_TRAINER_PPO_STREAM = GKD_RNG_STREAM_USER + 2 };

typedef struct gkd_ppo_state gkd_ppo_state;

struct gkd_trainer {
    gkd_train_config cfg;
    gkd_model *student, *teacher;
    const gkd_backend *be;
    const gkd_tokenizer *tok;
    const gkd_dataset *train_text, *held_text;
    const gkd_token_dataset *train, *held;
    gkd_token_dataset teacher_data; /* SeqKD: same prompts, teacher-generated outputs */
    int eos_id, pad_id;
    gkd_optim *opt;
    gkd_distill_workspace *ws;
    gkd_data_order order;
    gkd_batch batch;
    float *dhidden; /* (B*T, C) device */
    size_t dhidden_cap;
    int *idx;                /* (B) */
    int *prompts;            /* (B, max_prompt) */
    int *prompt_lens;        /* (B) */
    int *gen_tokens;         /* (B, max_new) */
    float *gen_logprobs;     /* (B, max_new) */
    int *gen_lens;           /* (B) */
    int *out_tokens;         /* (B, max_out) the outputs a batch trains on */
    int *out_lens;
    int max_prompt, max_out;
    /* RL */
    gkd_pg_baselines baselines; /* moving averages: saved with the checkpoint */
    int *rl_prompts;     /* (B / K) */
    double *rewards, *returns, *advantages, *row_div; /* (B) */
    float *pg_weight;    /* (B*T) grown */
    size_t pg_cap;
    gkd_reward_sample *samples; /* (B) */
    char **texts;        /* (B) decoded outputs */
    gkd_model *reference; /* frozen initial student, for the KL penalty */
    gkd_distill_workspace *ws_ref;
    float *dhidden_ref;
    size_t dhidden_ref_cap;
    gkd_ppo_state *ppo;   /* PPO and GRPO (rl/trainer_ppo.c); NULL for REINFORCE and plain GKD */
    int64_t step;
    gkd_eval_stats last_eval;
    int has_eval;
};

double gkd_trainer_now(void);
/* The value of schedule s at `step`, checked to lie in [lo, hi]. */
gkd_status gkd_trainer_schedule_at(const gkd_schedule *s, int64_t step, const char *name, double lo, double hi,
                                   double *out);
/* The divergence of the current step, with its scheduled beta / skew and teacher temperature. */
gkd_status gkd_trainer_step_divergence(gkd_trainer *t, gkd_divergence *div);
/* Grows dhidden to (B*T, dim). */
gkd_status gkd_trainer_ensure_dhidden(gkd_trainer *t, int B, int T);
/* Samples continuations of the prompts of rows idx[0..n) of d from m into gen_tokens / gen_lens /
 * gen_logprobs (rows max_out apart). */
gkd_status gkd_trainer_generate(gkd_trainer *t, gkd_model *m, const gkd_token_dataset *d, const int *idx, int n,
                                float temperature, int max_new, uint64_t stream, uint64_t offset);
/* gkd_trainer_generate for rows that are part of a batch of row_stride rows (offset advanced to the first of
 * them): the draws of the whole batch's sampling (core/tensor/sample.h); row_stride 0: the n rows alone. */
gkd_status gkd_trainer_generate_strided(gkd_trainer *t, gkd_model *m, const gkd_token_dataset *d, const int *idx,
                                        int n, float temperature, int max_new, uint64_t stream, uint64_t offset,
                                        int row_stride);

/* rl/trainer_dist.c: data parallelism (cfg.dist). */
/* Refuses settings a data-parallel run cannot reproduce (batch not a multiple of the ranks, PPO/GRPO). */
gkd_status gkd_trainer_check_dist(const gkd_train_config *c);
/* This rank's share of the global batch's loss normaliser, from the shard's mask (t->batch, B x T rows):
 * its rows with outputs / the batch's (sequence normalisation) or its masked positions / the batch's
 * (token normalisation); token_share (may be NULL) is always the positions' share. 1 in a single process.
 * A collective: every rank calls it. */
gkd_status gkd_trainer_batch_share(gkd_trainer *t, int B, int T, double *share, double *token_share);
/* gkd_pg_weights over the whole batch: each rank's rewards, row divergences (t->row_div) and output lengths
 * gathered, so that baselines, normalisation and the moving averages see the batch one process would;
 * leaves the batch's rewards, returns and advantages in t->rewards, t->returns, t->advantages (batch_size
 * rows) and this shard's per-position weights (B x T) in t->pg_weight, divided by share (the distillation
 * loss multiplies them by it again with its scale). A single process calls gkd_pg_weights as it is. */
gkd_status gkd_trainer_dist_pg_weights(gkd_trainer *t, const gkd_pg_config *pc, int B, int T, double share);
/* The distillation stats (normalised over the shard) times share, so that their sum over ranks is the
 * batch's. */
void gkd_trainer_scale_distill_stats(gkd_distill_stats *ds, double share);
/* Sums the step's logged sums and the gradient block over the ranks (nothing in a single process). */
gkd_status gkd_trainer_dist_reduce(gkd_trainer *t, gkd_step_stats *stats, long *tokens, int *out_total);

/* Compares a hash of the student's weights over the ranks (GKD_ERR_DEVICE naming the first that differs):
 * every rank must have taken the same steps. A collective; nothing in a single process. */
gkd_status gkd_trainer_dist_check_weights(gkd_trainer *t);

/* Decodes the B sampled rows (without their end-of-sequence token) and scores them with the reward into
 * t->rewards; copies them into out_tokens / out_lens and adds their lengths to *out_total. */
gkd_status gkd_trainer_score_samples(gkd_trainer *t, int B, int *out_total);
/* The rollout of GKD + RL: batch_size / group_size prompts from the data order, group_size samples of each
 * from the student at `temperature` (stream offset from micro_step), scored by the reward, made into
 * t->batch; dhidden and pg_weight grown to it. */
gkd_status gkd_trainer_rl_rollout(gkd_trainer *t, uint64_t micro_step, double temperature, gkd_step_stats *stats,
                                  long *tokens, int *out_total);
/* Whether schedule s can take a non-zero value (a callback or a non-zero built-in). */
int gkd_trainer_schedule_maybe_nonzero(const gkd_schedule *s);

/* rl/trainer_ppo.c */
/* Checks the PPO / GRPO settings of c (called by the trainer's check with a reward). */
gkd_status gkd_trainer_check_ppo_config(const gkd_train_config *c);
gkd_status gkd_trainer_ppo_create(gkd_trainer *t);
void gkd_trainer_ppo_free(gkd_trainer *t);
/* One PPO or GRPO step: a rollout, then epochs x mini-batches optimizer updates. */
gkd_status gkd_trainer_ppo_step(gkd_trainer *t, double lr, double temperature, const gkd_divergence *div,
                                double alpha, gkd_step_stats *stats, long *tokens, int *out_total);
/* The value head's weights and moments into / from dir/value_head.safetensors (runs with a value head). */
gkd_status gkd_trainer_ppo_save(gkd_trainer *t, const char *dir);
gkd_status gkd_trainer_ppo_load(gkd_trainer *t, const char *dir);

#endif
