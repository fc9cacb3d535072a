/* Policy-gradient pieces of GKD + RL (the paper's section 3.2): the objective
 *   maximise  E_x[ (1 - alpha) E_{y~q}[r(y)]  -  alpha E_{y~q}[D(P||Q)(y|x)] ]
 * is estimated on the student's own samples with REINFORCE: the score-function term
 * A(y) * grad log q(y), A = R(y) - baseline, plus the exact gradient of the divergence on the same
 * samples. R(y) = (1 - alpha) r(y) - alpha D(y) when the divergence's score-function term is included
 * (the unbiased estimator of the whole objective, the default), or (1 - alpha) r(y) alone (the GKD
 * convention of not differentiating through the sampling, an option).
 * Baselines: a moving average of past batches' mean R, or the leave-one-out mean of the other K-1
 * samples of the same prompt (group baseline; unbiased because it does not depend on the sample itself).
 * Rules: advantages are computed per sequence; normalisation (optional) divides by the batch's standard
 * deviation and is applied after the baseline. */
#ifndef GKD_POLICY_GRADIENT_H
#define GKD_POLICY_GRADIENT_H

#include "core/error.h"

typedef enum {
    GKD_BASELINE_NONE = 0,
    GKD_BASELINE_MOVING_AVERAGE = 1,
    GKD_BASELINE_GROUP = 2, /* leave-one-out over the K samples of each prompt */
} gkd_baseline_kind;

typedef struct {
    gkd_baseline_kind kind;
    double decay; /* moving average: b <- decay * b + (1 - decay) * mean(R) */
    double value; /* moving average state */
    int initialised;
} gkd_baseline;

/* Advantages of n = n_groups * K returns laid out group by group (sample k of prompt g at g*K + k).
 * The moving-average baseline uses the state before this batch, then updates it. GKD_BASELINE_GROUP
 * needs K >= 2. */
gkd_status gkd_pg_advantages(gkd_baseline *b, const double *returns, int n_groups, int K, int normalize,
                             double *advantages);

#endif
