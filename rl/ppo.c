/* PPO / GRPO estimators (see ppo.h).
 * Rules: every loop skips positions off the mask and writes 0 there, so callers may pass whole (B,T)
 * buffers; the batch statistics (means, stds) count masked positions only. */
#include "rl/ppo.h"

#include <math.h>
#include <stddef.h>

static int on(const float *mask, int i) {
    return !mask || mask[i] != 0.0f;
}

gkd_status gkd_ppo_clip_loss(const double *logp_new, const double *logp_old, const double *adv,
                             const float *mask, int n, double eps, double *loss, double *dlogp,
                             gkd_ppo_stats *stats) {
    if (n < 0) return gkd_error_set(GKD_ERR_ARG, "ppo: negative token count");
    double clipped = 0, kl = 0, ratio_sum = 0, count = 0;
    for (int i = 0; i < n; i++) {
        loss[i] = dlogp[i] = 0.0;
        if (!on(mask, i)) continue;
        double lr = logp_new[i] - logp_old[i], rho = exp(lr), a = adv[i];
        /* The min is the clipped branch exactly when rho left the interval on the side A favours; ties
         * (rho on the boundary) count as unclipped, the derivative from inside. */
        int clip = eps > 0 && ((a > 0 && rho > 1.0 + eps) || (a < 0 && rho < 1.0 - eps));
        double rc = rho < 1.0 - eps ? 1.0 - eps : rho > 1.0 + eps ? 1.0 + eps : rho;
        loss[i] = clip ? -rc * a : -rho * a;
        dlogp[i] = clip ? 0.0 : -a * rho;
        clipped += clip;
        kl += (rho - 1.0) - lr; /* k3 of KL(old || new) with samples from old: r = new/old */
        ratio_sum += rho;
        count += 1;
    }
    if (stats) {
        double c = count > 0 ? count : 1;
        *stats = (gkd_ppo_stats){clipped / c, kl / c, ratio_sum / c};
    }
    return GKD_OK;
}

gkd_status gkd_kl_estimate(gkd_kl_estimator k, const double *logq, const double *logp_ref, const float *mask,
                           int n, double *kl, double *dlogq) {
    if (k != GKD_KL_K1 && k != GKD_KL_K2 && k != GKD_KL_K3)
        return gkd_error_set(GKD_ERR_ARG, "kl estimator %d: expected k1, k2 or k3", (int)k);
    for (int i = 0; i < n; i++) {
        double lr = on(mask, i) ? logp_ref[i] - logq[i] : 0.0, v, d; /* lr = log(p/q) */
        switch (k) {
        case GKD_KL_K1:
            v = -lr, d = 1.0;
            break;
        case GKD_KL_K2:
            v = 0.5 * lr * lr, d = -lr;
            break;
        default:
            v = expm1(lr) - lr, d = 1.0 - exp(lr);
            break;
        }
        kl[i] = on(mask, i) ? v : 0.0;
        if (dlogq) dlogq[i] = on(mask, i) ? d : 0.0;
    }
    return GKD_OK;
}

void gkd_rl_kl_penalty(double *reward, const double *kl, const float *mask, int n, double beta) {
    for (int i = 0; i < n; i++)
        if (on(mask, i)) reward[i] -= beta * kl[i];
}

gkd_status gkd_rl_gae(const double *rewards, const double *values, const float *mask, int B, int T,
                      double gamma, double lambda, double *adv, double *returns) {
    if (B < 1 || T < 1) return gkd_error_set(GKD_ERR_ARG, "gae: empty batch");
    for (int b = 0; b < B; b++) {
        double next_value = 0.0, next_adv = 0.0; /* past the row's last output: the episode ended */
        for (int t = T - 1; t >= 0; t--) {
            size_t i = (size_t)b * T + t;
            if (!on(mask, (int)i)) {
                adv[i] = 0.0;
                if (returns) returns[i] = 0.0;
                continue;
            }
            double delta = rewards[i] + gamma * next_value - values[i];
            next_adv = delta + gamma * lambda * next_adv;
            next_value = values[i];
            adv[i] = next_adv;
            if (returns) returns[i] = next_adv + values[i];
        }
    }
    return GKD_OK;
}

static void mean_std(const double *x, const float *mask, int n, double *mean, double *sd) {
    double m = 0, v = 0, c = 0;
    for (int i = 0; i < n; i++)
        if (on(mask, i)) m += x[i], c += 1;
    m = c > 0 ? m / c : 0.0;
    for (int i = 0; i < n; i++)
        if (on(mask, i)) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *sd = c > 1 ? sqrt(v / (c - 1)) : 0.0;
}

void gkd_rl_whiten(double *x, const float *mask, int n, int shift_mean) {
    double m, sd;
    mean_std(x, mask, n, &m, &sd);
    if (sd < 1e-12) return; /* dividing by ~0 would turn a constant batch into noise */
    for (int i = 0; i < n; i++)
        if (on(mask, i)) x[i] = (x[i] - m) / sd + (shift_mean ? 0.0 : m);
}

gkd_status gkd_rl_sequence_advantages(const double *rewards, const float *mask, int B, int T, double *adv) {
    if (B < 2 || T < 1) return gkd_error_set(GKD_ERR_ARG, "sequence advantages: need B >= 2 rows");
    for (int b = 0; b < B; b++) {
        double ret = 0;
        for (int t = 0; t < T; t++)
            if (on(mask, b * T + t)) ret += rewards[(size_t)b * T + t];
        adv[(size_t)b * T] = ret; /* row returns gathered in column 0, whitened, then broadcast */
    }
    double m = 0, v = 0;
    for (int b = 0; b < B; b++) m += adv[(size_t)b * T];
    m /= B;
    for (int b = 0; b < B; b++) v += (adv[(size_t)b * T] - m) * (adv[(size_t)b * T] - m);
    double sd = sqrt(v / (B - 1));
    for (int b = 0; b < B; b++) {
        double a = sd > 1e-12 ? (adv[(size_t)b * T] - m) / sd : 0.0;
        for (int t = 0; t < T; t++) adv[(size_t)b * T + t] = on(mask, b * T + t) ? a : 0.0;
    }
    return GKD_OK;
}

int gkd_ppo_should_stop(double approx_kl, double target, double factor) {
    return target > 0 && approx_kl > factor * target;
}

gkd_status gkd_grpo_advantages(const double *rewards, int n_groups, int G, int scale_std, double eps,
                               double *adv) {
    if (n_groups < 1 || G < 2)
        return gkd_error_set(GKD_ERR_ARG, "grpo: need at least 2 samples per prompt (G = %d)", G);
    for (int g = 0; g < n_groups; g++) {
        double m, sd;
        mean_std(rewards + (size_t)g * G, NULL, G, &m, &sd);
        for (int k = 0; k < G; k++) {
            double centred = rewards[(size_t)g * G + k] - m;
            adv[(size_t)g * G + k] = scale_std ? centred / (sd + eps) : centred;
        }
    }
    return GKD_OK;
}

gkd_status gkd_rl_token_weights(const float *mask, int B, int T, gkd_rl_agg agg, double constant, float *w) {
    if (B < 1 || T < 1) return gkd_error_set(GKD_ERR_ARG, "loss weights: empty batch");
    if (agg == GKD_RL_AGG_CONSTANT && !(constant > 0))
        return gkd_error_set(GKD_ERR_ARG, "loss weights: constant normaliser %g must be > 0", constant);
    double total = 0;
    for (int i = 0; i < B * T; i++) total += on(mask, i);
    for (int b = 0; b < B; b++) {
        double len = 0;
        for (int t = 0; t < T; t++) len += on(mask, b * T + t);
        double denom = agg == GKD_RL_AGG_SEQUENCE_MEAN ? B * len
                       : agg == GKD_RL_AGG_TOKEN_MEAN  ? total
                                                       : B * constant;
        for (int t = 0; t < T; t++)
            w[(size_t)b * T + t] = on(mask, b * T + t) && denom > 0 ? (float)(1.0 / denom) : 0.0f;
    }
    return GKD_OK;
}

void gkd_rl_reverse_kl_reward(const double *logq, const double *logp_teacher, const float *mask, int n,
                              double *r) {
    for (int i = 0; i < n; i++) r[i] = on(mask, i) ? -(logq[i] - logp_teacher[i]) : 0.0;
}
