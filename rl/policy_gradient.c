/* Advantages for REINFORCE (see policy_gradient.h). */
#include "rl/policy_gradient.h"

#include <math.h>

gkd_status gkd_pg_advantages(gkd_baseline *b, const double *returns, int n_groups, int K, int normalize,
                             double *advantages) {
    int n = n_groups * K;
    if (n_groups < 1 || K < 1) return gkd_error_set(GKD_ERR_ARG, "policy gradient: empty batch");
    if (b->kind == GKD_BASELINE_GROUP && K < 2)
        return gkd_error_set(GKD_ERR_ARG, "group baseline needs at least 2 samples per prompt (group_size >= 2)");
    double mean = 0;
    for (int i = 0; i < n; i++) mean += returns[i];
    mean /= n;
    switch (b->kind) {
    case GKD_BASELINE_NONE:
        for (int i = 0; i < n; i++) advantages[i] = returns[i];
        break;
    case GKD_BASELINE_MOVING_AVERAGE:
        for (int i = 0; i < n; i++) advantages[i] = returns[i] - (b->initialised ? b->value : 0.0);
        b->value = b->initialised ? b->decay * b->value + (1.0 - b->decay) * mean : mean;
        b->initialised = 1;
        break;
    case GKD_BASELINE_GROUP:
        for (int g = 0; g < n_groups; g++) {
            double sum = 0;
            for (int k = 0; k < K; k++) sum += returns[g * K + k];
            for (int k = 0; k < K; k++) {
                double others = (sum - returns[g * K + k]) / (K - 1);
                advantages[g * K + k] = returns[g * K + k] - others;
            }
        }
        break;
    }
    if (normalize && n > 1) {
        double m = 0, var = 0;
        for (int i = 0; i < n; i++) m += advantages[i];
        m /= n;
        for (int i = 0; i < n; i++) var += (advantages[i] - m) * (advantages[i] - m);
        double sd = sqrt(var / (n - 1));
        for (int i = 0; i < n; i++) advantages[i] = sd > 1e-8 ? advantages[i] / sd : 0.0;
    }
    return GKD_OK;
}
