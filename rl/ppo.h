/* The estimator layer of PPO and GRPO (issue 16): per-token pieces a trainer combines. Nothing here
 * knows about models or backends; everything works on per-token log-probabilities of the sampled tokens.
 *   - the clipped-ratio surrogate  L_t = -min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t),
 *     rho_t = exp(logp_new - logp_old), with its weight dL_t/dlogp_new;
 *   - per-token estimators of KL(q || p_ref) on samples from q (k1, k2, k3, Schulman 2020);
 *   - GAE(gamma, lambda), the critic-free advantage, whitening, the approx-KL early stop;
 *   - GRPO's group-normalised advantages and Dr. GRPO's variant, and the loss aggregations;
 *   - the teacher's per-token reverse KL as a dense reward (on-policy distillation written as RL).
 * Rules:
 * - Layout (B,T) row-major; mask (B,T) is 1 on output positions, and every output is 0 off the mask.
 *   A row's output positions need not be contiguous: "next position" means the next masked one.
 * - Losses are per token and unnormalised; gkd_rl_token_weights turns them into the batch loss, so one
 *   aggregation rule serves the surrogate and the KL term alike.
 * - Gradients are with respect to the new log-prob of the sampled token (dlogp); the caller chains them
 *   through log-softmax. Quantities computed at rollout (old log-probs, rewards, advantages) are
 *   constants: they carry no gradient.
 * - Doubles throughout: these are (B*T) vectors, and the tests compare with exact enumerations. */
#ifndef GKD_PPO_H
#define GKD_PPO_H

#include "core/base/error.h"

typedef struct {
    double clip_fraction; /* share of masked tokens whose clipped branch is the active one */
    double approx_kl;     /* mean k3 estimate of KL(old || new) on samples from old */
    double ratio_mean;    /* mean of rho over masked tokens */
} gkd_ppo_stats;

/* The clipped surrogate. logp_new, logp_old, adv, loss, dlogp: (n); mask: (n) or NULL (all on).
 * loss_t = -min(rho A, clip(rho) A); dlogp_t = -A rho where the unclipped branch is active, else 0
 * (the min picks the clipped, constant branch only when the ratio has left [1-eps, 1+eps] in the
 * direction the advantage favours). stats may be NULL. eps <= 0 means no clipping. */
gkd_status gkd_ppo_clip_loss(const double *logp_new, const double *logp_old, const double *adv,
                             const float *mask, int n, double eps, double *loss, double *dlogp,
                             gkd_ppo_stats *stats);

typedef enum {
    GKD_KL_K1 = 1, /* log q - log p: unbiased, can be negative, high variance */
    GKD_KL_K2 = 2, /* (log p - log q)^2 / 2: biased, low variance; as a loss its gradient is KL(q||p)'s */
    GKD_KL_K3 = 3, /* p/q - 1 - log(p/q): unbiased and >= 0; as a loss its gradient is KL(p||q)'s */
} gkd_kl_estimator;

/* Per-token estimate of KL(q || p_ref) on tokens sampled from q. logq, logp_ref, kl: (n); dlogq: (n)
 * or NULL, d kl_t / d logq_t (for use as a loss term; as a reward penalty the estimate is a constant).
 * mask: (n) or NULL. */
gkd_status gkd_kl_estimate(gkd_kl_estimator k, const double *logq, const double *logp_ref, const float *mask,
                           int n, double *kl, double *dlogq);

/* reward (B*T) -= beta * kl (B*T) on masked positions: the KL to the reference as a reward penalty. */
void gkd_rl_kl_penalty(double *reward, const double *kl, const float *mask, int n, double beta);

/* GAE over per-token rewards and values. rewards, values, mask: (B,T); adv, returns: (B,T) out
 * (returns may be NULL; returns = adv + values, the critic's target). The value after a row's last
 * output position is 0 (the episode ends there). With values 0, gamma 1 and lambda 1, adv is the
 * reward-to-go. */
gkd_status gkd_rl_gae(const double *rewards, const double *values, const float *mask, int B, int T,
                      double gamma, double lambda, double *adv, double *returns);

/* Critic-free: each row's return sum_t rewards (B,T), whitened over the batch (mean 0, std 1), written
 * on each of the row's output positions of adv (B,T). Needs B >= 2. */
gkd_status gkd_rl_sequence_advantages(const double *rewards, const float *mask, int B, int T, double *adv);

/* x (n) <- (x - mean) / std over masked entries (sample std, n - 1); with shift_mean 0 the mean is
 * added back (TRL's whiten for rewards, which keeps their sign). Unchanged when std is ~0. */
void gkd_rl_whiten(double *x, const float *mask, int n, int shift_mean);

/* PPO's early stop on an approx-KL target: stop the epochs when approx_kl > factor * target (TRL
 * uses factor 1.5). target <= 0 disables it. */
int gkd_ppo_should_stop(double approx_kl, double target, double factor);

/* GRPO advantages of n_groups * G sequence rewards laid out group by group (sample k of prompt g at
 * g*G + k): (r - mean_g) / (std_g + eps) with the group's sample std (n - 1, as TRL), or r - mean_g
 * with scale_std 0 (Dr. GRPO). rewards, adv: (n_groups*G). Needs G >= 2. */
gkd_status gkd_grpo_advantages(const double *rewards, int n_groups, int G, int scale_std, double eps,
                               double *adv);

typedef enum {
    GKD_RL_AGG_SEQUENCE_MEAN = 0, /* mean over each row's tokens, then over rows (GRPO, loss "grpo") */
    GKD_RL_AGG_TOKEN_MEAN = 1,    /* mean over all the batch's tokens (TRL PPO, loss "bnpo") */
    GKD_RL_AGG_CONSTANT = 2,      /* sum over tokens / (B * constant) (Dr. GRPO; constant 1 = REINFORCE) */
} gkd_rl_agg;

/* The weight w (B,T) such that the batch loss is sum w * loss_t: one rule for every per-token term.
 * constant: used by GKD_RL_AGG_CONSTANT only (Dr. GRPO's maximum completion length). */
gkd_status gkd_rl_token_weights(const float *mask, int B, int T, gkd_rl_agg agg, double constant, float *w);

/* On-policy distillation as RL: r_t = -(log q(y_t) - log p_T(y_t)) on masked positions, the negated
 * per-token reverse KL (its k1 estimate). logq, logp_teacher, r: (n). Treated as a constant reward
 * with the reward-to-go, its score-function gradient is, in expectation, -grad KL(q(y) || p_T(y)). */
void gkd_rl_reverse_kl_reward(const double *logq, const double *logp_teacher, const float *mask, int n,
                              double *r);

#endif
