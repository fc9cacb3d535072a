/* REINFORCE weights for GKD + RL (see policy_gradient.h). */
#include "rl/policy_gradient.h"

#include <math.h>
#include <stdlib.h>

void gkd_pg_baselines_init(gkd_pg_baselines *b, gkd_baseline_kind kind, double decay) {
    b->reward = (gkd_baseline){.kind = kind, .decay = decay};
    b->divergence = (gkd_baseline){.kind = kind, .decay = decay};
}

/* adv (n) <- x - baseline; the moving average moves after it is used. */
static void baseline_apply(gkd_baseline *b, const double *x, int n_groups, int K, double *adv) {
    int n = n_groups * K;
    double mean = 0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    switch (b->kind) {
    case GKD_BASELINE_NONE:
        for (int i = 0; i < n; i++) adv[i] = x[i];
        break;
    case GKD_BASELINE_MOVING_AVERAGE:
        for (int i = 0; i < n; i++) adv[i] = x[i] - (b->initialised ? b->value : 0.0);
        b->value = b->initialised ? b->decay * b->value + (1.0 - b->decay) * mean : mean;
        b->initialised = 1;
        break;
    case GKD_BASELINE_GROUP:
        for (int g = 0; g < n_groups; g++) {
            double sum = 0;
            for (int k = 0; k < K; k++) sum += x[g * K + k];
            for (int k = 0; k < K; k++) adv[g * K + k] = x[g * K + k] - (sum - x[g * K + k]) / (K - 1);
        }
        break;
    }
}

/* Divides by the batch's sample standard deviation (all zero when the batch has none). */
static void normalise(double *adv, int n) {
    if (n < 2) return;
    double m = 0, var = 0;
    for (int i = 0; i < n; i++) m += adv[i];
    m /= n;
    for (int i = 0; i < n; i++) var += (adv[i] - m) * (adv[i] - m);
    double sd = sqrt(var / (n - 1));
    for (int i = 0; i < n; i++) adv[i] = sd > 1e-8 ? adv[i] / sd : 0.0;
}

gkd_status gkd_pg_weights(gkd_pg_baselines *b, const gkd_pg_config *c, const double *rewards,
                          const double *row_div, const float *mask, int n_groups, int K, int T,
                          double *advantages, double *returns, float *pg_weight) {
    if (n_groups < 1 || K < 1 || T < 1) return gkd_error_set(GKD_ERR_ARG, "policy gradient: empty batch");
    if (b->reward.kind == GKD_BASELINE_GROUP && K < 2)
        return gkd_error_set(GKD_ERR_ARG,
                             "group baseline needs at least 2 samples per prompt (group_size >= 2)");
    if (!(c->alpha >= 0.0 && c->alpha <= 1.0))
        return gkd_error_set(GKD_ERR_ARG, "policy gradient: alpha = %g outside [0, 1]", c->alpha);
    int B = n_groups * K;
    double *div = malloc((size_t)B * sizeof *div), *adv_div = malloc((size_t)B * sizeof *adv_div);
    if (!div || !adv_div) {
        free(div);
        free(adv_div);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory (policy gradient)");
    }
    long positions = 0;
    for (int i = 0; i < B; i++) {
        int len = 0;
        for (int p = 0; p < T; p++) len += mask[(size_t)i * T + p] != 0.0f;
        positions += len;
        div[i] = c->norm == GKD_NORM_TOKEN ? row_div[i] * len : row_div[i];
    }
    baseline_apply(&b->reward, rewards, n_groups, K, advantages);
    if (c->normalize) normalise(advantages, B);
    baseline_apply(&b->divergence, div, n_groups, K, adv_div);
    double a = c->alpha, sf = c->score_function ? 1.0 : 0.0;
    for (int i = 0; i < B; i++) {
        advantages[i] = (1.0 - a) * advantages[i] - sf * a * adv_div[i];
        if (returns) returns[i] = (1.0 - a) * rewards[i] - sf * a * div[i];
    }
    double denom = c->norm == GKD_NORM_TOKEN ? (double)positions : (double)B;
    for (int i = 0; i < B; i++)
        for (int p = 0; p < T; p++)
            pg_weight[(size_t)i * T + p] =
                mask[(size_t)i * T + p] != 0.0f && denom > 0 ? (float)(advantages[i] / denom) : 0.0f;
    free(div);
    free(adv_div);
    return GKD_OK;
}
