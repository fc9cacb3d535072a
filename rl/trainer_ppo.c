/* PPO and GRPO steps of the trainer (trainer_internal.h; the estimators are rl/ppo.h, the formulas and
 * TRL's names docs/rlhf.md). A step is one rollout and several optimizer updates:
 *   1. rollout: group_size samples of each of batch / group_size prompts from the student at the sampling
 *      temperature, scored by the reward; with no gradient, the student's log-probs of its tokens (the
 *      "old" policy), the reference policy's (with a KL coefficient), the teacher's (with a teacher reward)
 *      and the value head's values (PPO with a value head);
 *   2. advantages: PPO with a value head: GAE over per-token rewards ((1 - alpha) r(y) on the last token,
 *      the dense teacher reward and the KL penalty on every token), whitened; critic-free PPO: REINFORCE's
 *      sequence advantages (rl/policy_gradient.h: baseline, normalisation, alpha) plus the reward-to-go of
 *      the dense terms (less the mean total of the prompt's other samples, with the group baseline);
 *      GRPO: group-normalised sequence scores (1 - alpha) r(y) + the dense terms' sum;
 *   3. epochs x mini-batches: per mini-batch the student's forward with gradient, alpha times the
 *      divergence to the teacher (rl/distill.h), the clipped surrogate (and the KL as a loss term) through
 *      rl/policy_logprob.h, the value loss, one optimizer update; the updates stop (that mini-batch's
 *      included) once a mini-batch's approximate KL to the rollout policy passes 1.5 target_kl.
 * Rules: the rollout's numbers are constants of the step; mini-batches are whole rows, shuffled per
 * epoch from (seed, step, epoch) (not shuffled with one mini-batch); the divergence is differentiated on
 * the samples (GKD's convention) except in critic-free PPO, which follows score_function as REINFORCE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/safetensors.h"
#include "core/tensor/optim.h"
#include "rl/policy_logprob.h"
#include "rl/trainer_internal.h"
#include "rl/value_head.h"

struct gkd_ppo_state {
    gkd_policy_workspace *pw;         /* the student's (and the reference's: same width) */
    gkd_policy_workspace *pw_teacher; /* the teacher's, for the dense reward */
    gkd_value_head vh;
    int has_vh;
    size_t cap;                       /* B*T capacity of the host arrays below */
    double *logp_old, *logp_ref, *logp_teacher, *values, *returns, *adv, *dense, *kl, *entropy;
    float *w;                         /* (B*T) the mini-batch's aggregation weights */
    int *mb_tokens, *mb_targets;      /* (B*T) the mini-batch's rows */
    float *mb_mask;
    int *rows;                        /* (B) row order */
    float *h_host, *dh_host;          /* (B*T*C) host copies for the value head */
    float *ht_rows, *dh_extra;        /* backend: (B*T*Ct) the mini-batch's teacher rows; (B*T*C) */
    size_t ht_cap, dh_cap;
};

gkd_status gkd_trainer_check_ppo_config(const gkd_train_config *c) {
    gkd_status st;
    const char *m = c->rl_method == GKD_RL_PPO ? "ppo" : "grpo";
    if (c->grad_accum != 1)
        return gkd_error_set(GKD_ERR_ARG, "grad_accum = %d with method \"%s\": use minibatches (updates per rollout)",
                             c->grad_accum, m);
    if (c->minibatches < 1 || c->batch_size % c->minibatches != 0)
        return gkd_error_set(GKD_ERR_ARG, "minibatches (%d) must divide batch (%d)", c->minibatches, c->batch_size);
    if ((st = gkd_schedule_check_range(&c->epochs, "epochs", 1.0, 1000.0)) != GKD_OK) return st;
    if ((st = gkd_schedule_check_range(&c->clip_eps, "clip_eps", 0.0, 10.0)) != GKD_OK) return st;
    if ((st = gkd_schedule_check_range(&c->target_kl, "target_kl", 0.0, 1e6)) != GKD_OK) return st;
    if ((st = gkd_schedule_check_range(&c->vf_coef, "vf_coef", 0.0, 1e6)) != GKD_OK) return st;
    if ((st = gkd_schedule_check_range(&c->teacher_reward, "teacher_reward", 0.0, 1e6)) != GKD_OK) return st;
    if (!(c->gamma >= 0 && c->gamma <= 1)) return gkd_error_set(GKD_ERR_ARG, "gamma must be in [0, 1]");
    if (!(c->gae_lambda >= 0 && c->gae_lambda <= 1)) return gkd_error_set(GKD_ERR_ARG, "gae_lambda must be in [0, 1]");
    if (!(c->value_clip >= 0)) return gkd_error_set(GKD_ERR_ARG, "value_clip must be >= 0 (0 = off)");
    if (c->kl_estimator != 0 && c->kl_estimator != GKD_KL_K1 && c->kl_estimator != GKD_KL_K2 &&
        c->kl_estimator != GKD_KL_K3)
        return gkd_error_set(GKD_ERR_ARG, "kl_estimator must be k1, k2 or k3");
    if (c->loss_agg != GKD_RL_AGG_SEQUENCE_MEAN && c->loss_agg != GKD_RL_AGG_TOKEN_MEAN &&
        c->loss_agg != GKD_RL_AGG_CONSTANT)
        return gkd_error_set(GKD_ERR_ARG, "loss_type must be grpo, bnpo or dr_grpo");
    if (!(c->agg_constant >= 0)) return gkd_error_set(GKD_ERR_ARG, "the dr_grpo length must be >= 0");
    if (c->rl_method == GKD_RL_GRPO && c->group_size < 2)
        return gkd_error_set(GKD_ERR_ARG, "GRPO needs group_size >= 2 (its advantages compare a prompt's samples)");
    return GKD_OK;
}

void gkd_trainer_ppo_free(gkd_trainer *t) {
    gkd_ppo_state *p = t->ppo;
    if (!p) return;
    gkd_policy_workspace_free(p->pw);
    gkd_policy_workspace_free(p->pw_teacher);
    gkd_value_head_free(&p->vh);
    double *d[] = {p->logp_old, p->logp_ref, p->logp_teacher, p->values, p->returns, p->adv, p->dense, p->kl,
                   p->entropy};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) free(d[i]);
    free(p->w);
    free(p->mb_tokens);
    free(p->mb_targets);
    free(p->mb_mask);
    free(p->rows);
    free(p->h_host);
    free(p->dh_host);
    t->be->free(p->ht_rows);
    t->be->free(p->dh_extra);
    free(p);
    t->ppo = NULL;
}

gkd_status gkd_trainer_ppo_create(gkd_trainer *t) {
    gkd_ppo_state *p = calloc(1, sizeof *p);
    if (!p) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    t->ppo = p;
    const gkd_model_config *sc = gkd_model_get_config(t->student);
    gkd_status st = gkd_policy_workspace_create(t->be, t->cfg.loss_chunk, sc->vocab_size, sc->dim, &p->pw);
    if (st == GKD_OK && gkd_trainer_schedule_maybe_nonzero(&t->cfg.teacher_reward))
        st = gkd_policy_workspace_create(t->be, t->cfg.loss_chunk, sc->vocab_size,
                                         gkd_model_get_config(t->teacher)->dim, &p->pw_teacher);
    p->has_vh = t->cfg.rl_method == GKD_RL_PPO && t->cfg.value_head;
    if (st == GKD_OK && p->has_vh) st = gkd_value_head_init(&p->vh, sc->dim);
    p->rows = malloc((size_t)t->cfg.batch_size * sizeof *p->rows);
    if (st == GKD_OK && !p->rows) st = gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    return st;
}

/* Grows the per-position host arrays to n = B*T positions of width C. */
static gkd_status ensure_capacity(gkd_trainer *t, size_t n) {
    gkd_ppo_state *p = t->ppo;
    if (n <= p->cap) return GKD_OK;
    double **d[] = {&p->logp_old, &p->logp_ref, &p->logp_teacher, &p->values, &p->returns, &p->adv, &p->dense,
                    &p->kl, &p->entropy};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        double *q = realloc(*d[i], n * sizeof **d[i]);
        if (!q) return gkd_error_set(GKD_ERR_NOMEM, "out of memory (PPO buffers)");
        *d[i] = q;
    }
    size_t C = (size_t)gkd_model_get_config(t->student)->dim;
    float *w = realloc(p->w, n * sizeof *w), *mm = w ? realloc(p->mb_mask, n * sizeof *mm) : NULL;
    if (w) p->w = w;
    if (mm) p->mb_mask = mm;
    int *a = realloc(p->mb_tokens, n * sizeof *a), *b = a ? realloc(p->mb_targets, n * sizeof *b) : NULL;
    if (a) p->mb_tokens = a;
    if (b) p->mb_targets = b;
    float *h = realloc(p->h_host, n * C * sizeof *h), *dh = h ? realloc(p->dh_host, n * C * sizeof *dh) : NULL;
    if (h) p->h_host = h;
    if (dh) p->dh_host = dh;
    if (!w || !mm || !a || !b || !h || !dh) return gkd_error_set(GKD_ERR_NOMEM, "out of memory (PPO buffers)");
    p->cap = n;
    return GKD_OK;
}

/* The settings of one step, from the schedules and the method's defaults. */
typedef struct {
    double alpha, temperature, lr, clip_eps, kl_coef, target_kl, vf_coef, teacher_reward;
    int epochs, kl_in_loss;
    gkd_kl_estimator kl_estimator;
    gkd_rl_agg agg;
    double agg_constant;
} step_settings;

static gkd_status read_settings(gkd_trainer *t, double lr, double temperature, double alpha, step_settings *s) {
    const gkd_train_config *c = &t->cfg;
    int64_t k = t->step;
    double epochs;
    gkd_status st = gkd_trainer_schedule_at(&c->epochs, k, "epochs", 1.0, 1000.0, &epochs);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&c->clip_eps, k, "clip_eps", 0.0, 10.0, &s->clip_eps);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&c->kl_coef, k, "kl_coef", 0.0, 1e6, &s->kl_coef);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&c->target_kl, k, "target_kl", 0.0, 1e6, &s->target_kl);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&c->vf_coef, k, "vf_coef", 0.0, 1e6, &s->vf_coef);
    if (st == GKD_OK) st = gkd_trainer_schedule_at(&c->teacher_reward, k, "teacher_reward", 0.0, 1e6, &s->teacher_reward);
    if (st != GKD_OK) return st;
    if (epochs != floor(epochs))
        return gkd_error_set(GKD_ERR_ARG, "schedule epochs gave %g at step %lld: it must be a whole number", epochs,
                             (long long)k);
    if (!(temperature > 0))
        return gkd_error_set(GKD_ERR_ARG, "temperature is %g at step %lld: with a reward it must be > 0", temperature,
                             (long long)k);
    if (s->kl_coef > 0 && !t->reference)
        return gkd_error_set(GKD_ERR_ARG, "kl_coef is %g at step %lld but the run has no reference policy", s->kl_coef,
                             (long long)k);
    if (s->teacher_reward > 0 && !t->ppo->pw_teacher)
        return gkd_error_set(GKD_ERR_ARG, "teacher_reward is %g at step %lld but was 0 when the run started",
                             s->teacher_reward, (long long)k);
    s->epochs = (int)epochs;
    s->alpha = alpha;
    s->temperature = temperature;
    s->lr = lr;
    int grpo = c->rl_method == GKD_RL_GRPO;
    s->kl_estimator = c->kl_estimator ? c->kl_estimator : grpo ? GKD_KL_K3 : GKD_KL_K1;
    s->kl_in_loss = c->kl_in_loss >= 0 ? c->kl_in_loss : grpo;
    s->agg = grpo ? c->loss_agg : c->norm == GKD_NORM_TOKEN ? GKD_RL_AGG_TOKEN_MEAN : GKD_RL_AGG_CONSTANT;
    s->agg_constant = grpo ? (c->agg_constant > 0 ? c->agg_constant : c->max_new_tokens) : 1.0;
    return GKD_OK;
}

/* The reward-to-go of x (B,T) along each row's masked positions, in place (GAE with values 0, gamma 1,
 * lambda 1, summed the same way); 0 off the mask. */
static void reward_to_go(double *x, const float *mask, int B, int T) {
    for (int b = 0; b < B; b++) {
        double acc = 0.0;
        for (int t = T - 1; t >= 0; t--) {
            size_t i = (size_t)b * T + t;
            x[i] = mask[i] != 0.0f ? (acc = x[i] + acc) : 0.0;
        }
    }
}

/* Step 2: the per-token advantages (and, with a value head, returns) of the rollout. */
static gkd_status advantages(gkd_trainer *t, const step_settings *s, const float *mask, int B, int T,
                             gkd_step_stats *stats) {
    const gkd_train_config *c = &t->cfg;
    gkd_ppo_state *p = t->ppo;
    int K = c->group_size, G = B / K;
    size_t n = (size_t)B * T;
    gkd_status st;
    /* The dense per-token terms: the teacher reward and the KL penalty (when in the reward). */
    double teacher_sum = 0;
    int positions = 0;
    for (size_t i = 0; i < n; i++) {
        p->dense[i] = 0;
        if (mask[i] == 0.0f) continue;
        positions++;
        if (s->teacher_reward > 0) {
            double r = s->teacher_reward * (p->logp_teacher[i] - p->logp_old[i]);
            p->dense[i] += r;
            teacher_sum += r;
        }
        if (s->kl_coef > 0 && !s->kl_in_loss) p->dense[i] -= s->kl_coef * p->kl[i];
    }
    stats->teacher_reward = positions ? teacher_sum / positions : 0;
    double mean_ret = 0;
    for (int b = 0; b < B; b++) {
        double sum = 0;
        for (int j = 0; j < T; j++) sum += p->dense[(size_t)b * T + j];
        mean_ret += ((1 - s->alpha) * t->rewards[b] + sum) / B;
        t->returns[b] = (1 - s->alpha) * t->rewards[b] + sum; /* GRPO's sequence score */
    }
    stats->ret = mean_ret;
    if (c->rl_method == GKD_RL_GRPO) {
        if ((st = gkd_grpo_advantages(t->returns, G, K, c->scale_rewards, 1e-4, t->advantages)) != GKD_OK) return st;
        for (size_t i = 0; i < n; i++) p->adv[i] = mask[i] != 0.0f ? t->advantages[i / T] : 0.0;
        return GKD_OK;
    }
    if (p->has_vh) {
        for (int b = 0; b < B; b++) { /* (1 - alpha) r(y) on the row's last output position */
            for (int j = T - 1; j >= 0; j--)
                if (mask[(size_t)b * T + j] != 0.0f) {
                    p->dense[(size_t)b * T + j] += (1 - s->alpha) * t->rewards[b];
                    break;
                }
        }
        if (c->whiten_rewards) gkd_rl_whiten(p->dense, mask, (int)n, 0);
        if ((st = gkd_rl_gae(p->dense, p->values, mask, B, T, c->gamma, c->gae_lambda, p->adv, p->returns)) != GKD_OK)
            return st;
        stats->explained_variance = gkd_explained_variance(p->values, p->returns, mask, (int)n);
        if (c->whiten_advantages) gkd_rl_whiten(p->adv, mask, (int)n, 1);
        return GKD_OK;
    }
    /* Critic-free: REINFORCE's advantages of r(y) (and of the divergence with score_function), plus the
     * reward-to-go of the dense terms. */
    gkd_pg_config pc = {.alpha = s->alpha, .normalize = c->normalize_advantages,
                        .score_function = c->divergence_score_function, .norm = c->norm};
    if ((st = gkd_pg_weights(&t->baselines, &pc, t->rewards, t->row_div, mask, G, K, T, t->advantages, NULL,
                             t->pg_weight)) != GKD_OK)
        return st;
    /* The dense terms' baseline: with the group baseline, the mean total of the prompt's other samples
     * (independent of the sample, so unbiased; without it the KL penalty's reward-to-go is noisy). */
    double *base = t->returns; /* free now: (B) */
    for (int b = 0; b < B; b++) {
        base[b] = 0;
        for (int j = 0; j < T; j++) base[b] += p->dense[(size_t)b * T + j];
    }
    if (c->baseline == GKD_BASELINE_GROUP && K >= 2) {
        for (int g = 0; g < G; g++) {
            double sum = 0;
            for (int k = 0; k < K; k++) sum += base[g * K + k];
            for (int k = 0; k < K; k++) t->row_div[g * K + k] = (sum - base[g * K + k]) / (K - 1);
        }
    } else {
        for (int b = 0; b < B; b++) t->row_div[b] = 0;
    }
    reward_to_go(p->dense, mask, B, T);
    for (size_t i = 0; i < n; i++)
        p->adv[i] = mask[i] != 0.0f ? t->advantages[i / T] + p->dense[i] - t->row_div[i / T] : 0.0;
    return GKD_OK;
}

/* Step 1 after sampling and scoring: the no-gradient passes of the rollout over the batch in t->batch. */
static gkd_status rollout_logprobs(gkd_trainer *t, const step_settings *s, const gkd_divergence *div,
                                   const float **ht, gkd_step_stats *stats) {
    const gkd_train_config *c = &t->cfg;
    gkd_ppo_state *p = t->ppo;
    int B = t->batch.B, T = t->batch.T;
    size_t n = (size_t)B * T, C = (size_t)gkd_model_get_config(t->student)->dim;
    const float *mask = t->batch.mask;
    const int *tg = t->batch.targets;
    const float *hs, *hr;
    double t0 = gkd_trainer_now();
    gkd_status st = gkd_model_forward_nograd(t->teacher, t->batch.tokens, B, T, ht);
    if (st != GKD_OK) return gkd_error_prefix(st, "teacher forward");
    if (s->teacher_reward > 0 &&
        (st = gkd_policy_logprobs(p->pw_teacher, *ht, gkd_model_output_weight(t->teacher), tg, mask, B, T,
                                  div->teacher_temperature, NULL, NULL, 1.0f, p->logp_teacher, NULL, NULL, NULL)) != GKD_OK)
        return st;
    stats->t_teacher += gkd_trainer_now() - t0;
    if ((st = gkd_model_forward_nograd(t->student, t->batch.tokens, B, T, &hs)) != GKD_OK) return st;
    const float *Ws = gkd_model_output_weight(t->student);
    if ((st = gkd_policy_logprobs(p->pw, hs, Ws, tg, mask, B, T, s->temperature, NULL, NULL, 1.0f, p->logp_old,
                                  p->entropy, NULL, NULL)) != GKD_OK)
        return st;
    double ent = 0; /* the policy's mean entropy over the rollout's tokens (a metric) */
    int ent_n = 0;
    for (size_t i = 0; i < n; i++)
        if (mask[i] != 0.0f) ent += p->entropy[i], ent_n++;
    stats->entropy = ent_n ? ent / ent_n : 0;
    if (p->has_vh) {
        t->be->copy_out(p->h_host, hs, n * C * sizeof(float));
        gkd_value_head_forward(&p->vh, p->h_host, mask, (int)n, p->values);
    }
    if (c->rl_method == GKD_RL_PPO && !p->has_vh && c->divergence_score_function && s->alpha > 0) {
        gkd_distill_stats ds; /* D(y) of each row, for REINFORCE's divergence advantage */
        gkd_distill_extra probe = {.div_scale = 1.0f, .row_values = t->row_div};
        if ((st = gkd_distill_loss_ex(t->ws, div, c->norm, hs, Ws, *ht, gkd_model_output_weight(t->teacher), mask, B, T,
                                      1.0f, &probe, NULL, NULL, &ds)) != GKD_OK)
            return st;
    }
    for (size_t i = 0; i < n; i++) p->kl[i] = 0.0;
    if (t->reference) {
        if ((st = gkd_model_forward_nograd(t->reference, t->batch.tokens, B, T, &hr)) != GKD_OK) return st;
        if ((st = gkd_policy_logprobs(p->pw, hr, gkd_model_output_weight(t->reference), tg, mask, B, T, s->temperature,
                                      NULL, NULL, 1.0f, p->logp_ref, NULL, NULL, NULL)) != GKD_OK)
            return st;
        if ((st = gkd_kl_estimate(s->kl_estimator, p->logp_old, p->logp_ref, mask, (int)n, p->kl, NULL)) != GKD_OK)
            return st;
        double sum = 0;
        int cnt = 0;
        for (size_t i = 0; i < n; i++)
            if (mask[i] != 0.0f) sum += p->kl[i], cnt++;
        stats->kl_reference = cnt ? sum / cnt : 0;
    }
    return GKD_OK;
}

/* The clipped surrogate's weight of one token (gkd_logprob_weight_fn), and the update's statistics. */
typedef struct {
    gkd_ppo_state *p;
    const step_settings *s;
    const int *rows;
    int T;
    double loss, clipped, approx_kl, ratio, count;
} token_ctx;

static double token_weight(void *vctx, int pos, double logp, int *failed) {
    token_ctx *x = vctx;
    gkd_ppo_state *p = x->p;
    size_t full = (size_t)x->rows[pos / x->T] * x->T + pos % x->T;
    double loss, dlogp;
    gkd_ppo_stats ps;
    if (gkd_ppo_clip_loss(&logp, &p->logp_old[full], &p->adv[full], NULL, 1, x->s->clip_eps, &loss, &dlogp, &ps) !=
        GKD_OK) {
        *failed = 1;
        return 0;
    }
    x->clipped += ps.clip_fraction;
    x->approx_kl += ps.approx_kl;
    x->ratio += ps.ratio_mean;
    x->count += 1;
    double w = p->w[pos], g = dlogp;
    if (x->s->kl_in_loss && x->s->kl_coef > 0) {
        double kl, dkl;
        if (gkd_kl_estimate(x->s->kl_estimator, &logp, &p->logp_ref[full], NULL, 1, &kl, &dkl) != GKD_OK) {
            *failed = 1;
            return 0;
        }
        loss += x->s->kl_coef * kl;
        g += x->s->kl_coef * dkl;
    }
    x->loss += w * loss;
    return w * g;
}

/* Copies the rows rows[0..mb) of the batch into the mini-batch arrays, and their teacher hidden rows. */
static void gather_minibatch(gkd_trainer *t, const int *rows, int mb, const float *ht) {
    gkd_ppo_state *p = t->ppo;
    int T = t->batch.T;
    size_t Ct = (size_t)gkd_model_get_config(t->teacher)->dim;
    for (int i = 0; i < mb; i++) {
        size_t src = (size_t)rows[i] * T, dst = (size_t)i * T;
        memcpy(p->mb_tokens + dst, t->batch.tokens + src, (size_t)T * sizeof(int));
        memcpy(p->mb_targets + dst, t->batch.targets + src, (size_t)T * sizeof(int));
        memcpy(p->mb_mask + dst, t->batch.mask + src, (size_t)T * sizeof(float));
        t->be->copy(p->ht_rows + dst * Ct, ht + src * Ct, (size_t)T * Ct * sizeof(float));
    }
}

/* The value loss of the mini-batch: its gradient into the head and, through dhidden, the trunk. */
static gkd_status value_update(gkd_trainer *t, const int *rows, int mb, const float *hs, double vf_coef,
                               double *value_loss) {
    gkd_ppo_state *p = t->ppo;
    int T = t->batch.T;
    size_t n = (size_t)mb * T, C = (size_t)gkd_model_get_config(t->student)->dim;
    double *ret = p->dense, *old = p->entropy; /* free here: gathered returns and old values */
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < T; j++) {
            ret[(size_t)i * T + j] = p->returns[(size_t)rows[i] * T + j];
            old[(size_t)i * T + j] = p->values[(size_t)rows[i] * T + j];
        }
    t->be->copy_out(p->h_host, hs, n * C * sizeof(float));
    memset(p->dh_host, 0, n * C * sizeof(float));
    gkd_status st = gkd_value_head_loss(&p->vh, p->h_host, p->mb_mask, (int)n, ret, old, t->cfg.value_clip, vf_coef,
                                        p->dh_host, value_loss);
    if (st != GKD_OK) return st;
    t->be->copy_in(p->dh_extra, p->dh_host, n * C * sizeof(float));
    t->be->residual_forward(t->dhidden, t->dhidden, p->dh_extra, n * C);
    return GKD_OK;
}

/* One optimizer update on the mini-batch rows[0..mb), unless the approximate KL of the mini-batch's
 * policy to the rollout's (measured in the same forward) passes 1.5 target_kl: then no update, *stop = 1
 * (Stable-Baselines3's rule: the update that would overshoot is not taken). */
static gkd_status minibatch_update(gkd_trainer *t, const step_settings *s, const gkd_divergence *div, const int *rows,
                                   int mb, const float *ht, gkd_step_stats *stats, int *stop) {
    const gkd_train_config *c = &t->cfg;
    gkd_ppo_state *p = t->ppo;
    int T = t->batch.T;
    gather_minibatch(t, rows, mb, ht);
    gkd_status st = gkd_rl_token_weights(p->mb_mask, mb, T, s->agg, s->agg_constant, p->w);
    if (st != GKD_OK) return st;
    double t1 = gkd_trainer_now();
    gkd_model_zero_grad(t->student);
    const float *hs;
    if ((st = gkd_model_forward(t->student, p->mb_tokens, mb, T, &hs)) != GKD_OK)
        return gkd_error_prefix(st, "student forward");
    const float *Ws = gkd_model_output_weight(t->student);
    float *dWs = gkd_model_output_weight_grad(t->student);
    gkd_distill_stats ds;
    gkd_distill_extra ex = {.div_scale = (float)s->alpha};
    if ((st = gkd_distill_loss_ex(t->ws, div, c->norm, hs, Ws, p->ht_rows, gkd_model_output_weight(t->teacher),
                                  p->mb_mask, mb, T, 1.0f, &ex, t->dhidden, dWs, &ds)) != GKD_OK)
        return st;
    token_ctx ctx = {.p = p, .s = s, .rows = rows, .T = T}, *x = &ctx;
    if ((st = gkd_policy_logprobs(p->pw, hs, Ws, p->mb_targets, p->mb_mask, mb, T, s->temperature, token_weight, x,
                                  1.0f, NULL, NULL, t->dhidden, dWs)) != GKD_OK)
        return gkd_error_prefix(st, "policy surrogate");
    double value_loss = 0;
    if (p->has_vh && (st = value_update(t, rows, mb, hs, s->vf_coef, &value_loss)) != GKD_OK) return st;
    double cnt = x->count > 0 ? x->count : 1;
    if ((*stop = gkd_ppo_should_stop(x->approx_kl / cnt, s->target_kl, 1.5))) {
        stats->t_student += gkd_trainer_now() - t1;
        return GKD_OK;
    }
    if ((st = gkd_model_backward(t->student, t->dhidden)) != GKD_OK) return gkd_error_prefix(st, "student backward");
    double t2 = gkd_trainer_now();
    stats->t_student += t2 - t1;
    gkd_optim_stats os;
    if ((st = gkd_optim_step_scaled(t->opt, (float)s->lr, 1.0f, &os)) != GKD_OK)
        return gkd_error_prefix(st, "optimizer update");
    if (p->has_vh)
        gkd_value_head_step(&p->vh, s->lr, c->beta1, c->beta2, c->adam_eps, 0.0);
    stats->t_optimizer += gkd_trainer_now() - t2;
    stats->loss += ds.loss + x->loss + s->vf_coef * value_loss;
    stats->grad_norm += os.grad_norm;
    stats->clip_fraction += x->clipped / cnt;
    stats->approx_kl += x->approx_kl / cnt;
    stats->ratio += x->ratio / cnt;
    stats->value_loss += value_loss;
    stats->div.divergence += ds.divergence;
    stats->div.forward_kl += ds.forward_kl;
    stats->div.reverse_kl += ds.reverse_kl;
    stats->div.jsd_half += ds.jsd_half;
    stats->div.teacher_entropy += ds.teacher_entropy;
    stats->div.student_entropy += ds.student_entropy;
    stats->updates++;
    return GKD_OK;
}

/* The row order of an epoch: a shuffle from (seed, step, epoch), or the identity with one mini-batch. */
static void epoch_order(gkd_trainer *t, int epoch, int *rows, int B) {
    for (int i = 0; i < B; i++) rows[i] = i;
    if (t->cfg.minibatches == 1) return;
    uint64_t base = ((uint64_t)t->step * 1024u + (uint64_t)epoch) * (uint64_t)B;
    for (int i = B - 1; i > 0; i--) {
        uint32_t r = gkd_rng_word(t->cfg.seed, GKD_TRAINER_PPO_STREAM, base + (uint64_t)i);
        int j = (int)(r % (uint32_t)(i + 1));
        int tmp = rows[i];
        rows[i] = rows[j];
        rows[j] = tmp;
    }
}

gkd_status gkd_trainer_ppo_step(gkd_trainer *t, double lr, double temperature, const gkd_divergence *div,
                                double alpha, gkd_step_stats *stats, long *tokens, int *out_total) {
    const gkd_train_config *c = &t->cfg;
    gkd_ppo_state *p = t->ppo;
    step_settings s;
    gkd_status st = read_settings(t, lr, temperature, alpha, &s);
    if (st != GKD_OK) return st;
    int B = c->batch_size;
    if ((st = gkd_trainer_rl_rollout(t, (uint64_t)t->step, temperature, stats, tokens, out_total)) != GKD_OK) return st;
    int T = t->batch.T;
    size_t n = (size_t)B * T, C = (size_t)gkd_model_get_config(t->student)->dim;
    size_t Ct = (size_t)gkd_model_get_config(t->teacher)->dim;
    if ((st = ensure_capacity(t, n)) != GKD_OK) return st;
    if (n * Ct > p->ht_cap) {
        t->be->free(p->ht_rows);
        p->ht_rows = t->be->alloc(n * Ct * sizeof(float));
        p->ht_cap = p->ht_rows ? n * Ct : 0;
        if (!p->ht_rows) return gkd_error_set(GKD_ERR_NOMEM, "out of memory (teacher rows)");
    }
    if (p->has_vh && n * C > p->dh_cap) {
        t->be->free(p->dh_extra);
        p->dh_extra = t->be->alloc(n * C * sizeof(float));
        p->dh_cap = p->dh_extra ? n * C : 0;
        if (!p->dh_extra) return gkd_error_set(GKD_ERR_NOMEM, "out of memory (value gradients)");
    }
    const float *ht;
    if ((st = rollout_logprobs(t, &s, div, &ht, stats)) != GKD_OK) return st;
    if ((st = advantages(t, &s, t->batch.mask, B, T, stats)) != GKD_OK) return st;
    double mean_r = 0, var = 0, adv_n = 0;
    for (int b = 0; b < B; b++) mean_r += t->rewards[b] / B;
    for (size_t i = 0; i < n; i++)
        if (t->batch.mask[i] != 0.0f) var += p->adv[i] * p->adv[i], adv_n += 1;
    stats->reward = mean_r;
    stats->advantage_std = adv_n > 0 ? sqrt(var / adv_n) : 0;
    /* Step 3: the updates; the teacher's hidden states of the rollout stay valid (no other teacher pass). */
    int mb = B / c->minibatches, stop = 0;
    for (int e = 0; e < s.epochs && !stop; e++) {
        epoch_order(t, e, p->rows, B);
        for (int m = 0; m < c->minibatches && !stop; m++) {
            if ((st = minibatch_update(t, &s, div, p->rows + m * mb, mb, ht, stats, &stop)) != GKD_OK) return st;
        }
    }
    double u = stats->updates > 0 ? stats->updates : 1;
    stats->loss /= u;
    stats->grad_norm /= u;
    stats->clip_fraction /= u;
    stats->approx_kl /= u;
    stats->ratio /= u;
    stats->value_loss /= u;
    stats->div.divergence /= u;
    stats->div.forward_kl /= u;
    stats->div.reverse_kl /= u;
    stats->div.jsd_half /= u;
    stats->div.teacher_entropy /= u;
    stats->div.student_entropy /= u;
    return GKD_OK;
}

gkd_status gkd_trainer_ppo_save(gkd_trainer *t, const char *dir) {
    gkd_ppo_state *p = t->ppo;
    if (!p->has_vh) return GKD_OK;
    int C = p->vh.C;
    int64_t shape[1] = {(int64_t)C + 1};
    /* F64: the head trains in double, and a resumed run must continue bit-identically */
    gkd_st_tensor tensors[3] = {{"value_head.params", GKD_ST_F64, 1, shape, p->vh.p},
                                {"value_head.adam_m", GKD_ST_F64, 1, shape, p->vh.m},
                                {"value_head.adam_v", GKD_ST_F64, 1, shape, p->vh.v}};
    char path[4096], updates[32];
    snprintf(path, sizeof path, "%s/value_head.safetensors", dir);
    snprintf(updates, sizeof updates, "%lld", (long long)p->vh.t);
    const char *keys[] = {"gkd_value_head_updates"}, *values[] = {updates};
    return gkd_safetensors_write(path, tensors, 3, keys, values, 1);
}

gkd_status gkd_trainer_ppo_load(gkd_trainer *t, const char *dir) {
    gkd_ppo_state *p = t->ppo;
    if (!p->has_vh) return GKD_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/value_head.safetensors", dir);
    gkd_safetensors *sf = NULL;
    gkd_status st = gkd_safetensors_open(path, &sf);
    if (st != GKD_OK) return gkd_error_prefix(st, "PPO with a value head needs its state");
    const char *u = gkd_safetensors_metadata(sf, "gkd_value_head_updates");
    char *end = NULL;
    long long updates = u ? strtoll(u, &end, 10) : -1;
    if (!u || end == u || *end || updates < 0) {
        gkd_safetensors_close(sf);
        return gkd_error_set(GKD_ERR_FORMAT, "%s: metadata \"gkd_value_head_updates\" is missing or not a count", path);
    }
    int64_t shape[1] = {(int64_t)p->vh.C + 1};
    double *dst[3] = {p->vh.p, p->vh.m, p->vh.v};
    const char *names[3] = {"value_head.params", "value_head.adam_m", "value_head.adam_v"};
    gkd_value_head tmp;
    if ((st = gkd_value_head_init(&tmp, p->vh.C)) != GKD_OK) {
        gkd_safetensors_close(sf);
        return st;
    }
    double *scratch[3] = {tmp.p, tmp.m, tmp.v};
    for (int k = 0; st == GKD_OK && k < 3; k++)
        st = gkd_safetensors_read_raw(sf, names[k], GKD_ST_F64, scratch[k], 1, shape);
    gkd_safetensors_close(sf);
    if (st == GKD_OK) { /* all or nothing */
        for (int k = 0; k < 3; k++) memcpy(dst[k], scratch[k], (size_t)shape[0] * sizeof(double));
        p->vh.t = updates;
    }
    gkd_value_head_free(&tmp);
    return st;
}
