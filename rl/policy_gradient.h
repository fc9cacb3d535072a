/* Policy-gradient pieces of GKD + RL (the paper's section 3.2): the objective
 *   maximise  J = E_x[ (1 - alpha) E_{y~q}[r(y)]  -  alpha E_{y~q}[D(y)] ]
 * is estimated on the student's own samples with REINFORCE: the score-function term
 * A(y) * grad log q(y), plus the exact gradient of the divergence on the same samples. The advantage is
 *   A(y) = (1 - alpha) A_r(y) + alpha A_D(y),
 * A_r = r(y) - baseline (divided by the batch's standard deviation with `normalize`), and, when the
 * divergence's score-function term is included (the unbiased estimator of the whole objective, the
 * default), A_D = -(D(y) - baseline); without it (the GKD convention of not differentiating through the
 * sampling) A_D = 0.
 * Rules:
 * - The two parts have their own baselines and only the reward part is normalised, before it is weighted:
 *   dividing the weighted sum by its standard deviation would cancel (1 - alpha), leaving the reward term
 *   the same size for every alpha < 1.
 * - D(y) follows `norm`, as the divergence term of the loss does (rl/distill.h): GKD_NORM_SEQUENCE, the
 *   paper's, D(y) is the mean over y's positions and J is as written; GKD_NORM_TOKEN, TRL's, D(y) is the
 *   sum over y's positions and the whole objective is divided by the batch's mean output length (both
 *   terms are per-token means over the batch).
 * - The surrogate's per-position weight is A(y) / B (sequence) or A(y) / (output positions in the batch)
 *   (token) on every output position of y: grad log q(y) is the sum over y's positions, so the
 *   sequence weight is not divided by y's length (that would bias the gradient towards short outputs).
 * - q is the distribution the samples were drawn from: log-softmax(logits / temperature) (distill.h's
 *   pg_temperature).
 * Baselines: a moving average of past batches' means, or the leave-one-out mean of the other K-1 samples
 * of the same prompt (group baseline; unbiased because it does not depend on the sample itself). */
#ifndef GKD_POLICY_GRADIENT_H
#define GKD_POLICY_GRADIENT_H

#include "core/base/error.h"
#include "core/tensor/model.h"

typedef enum {
    GKD_BASELINE_NONE = 0,
    GKD_BASELINE_MOVING_AVERAGE = 1,
    GKD_BASELINE_GROUP = 2, /* leave-one-out over the K samples of each prompt */
} gkd_baseline_kind;

typedef struct {
    gkd_baseline_kind kind;
    double decay; /* moving average: b <- decay * b + (1 - decay) * mean */
    double value; /* moving average state */
    int initialised;
} gkd_baseline;

/* The baselines of the return's two parts; the moving averages are part of a run's state (checkpoints). */
typedef struct {
    gkd_baseline reward;     /* of r(y) */
    gkd_baseline divergence; /* of D(y) */
} gkd_pg_baselines;

void gkd_pg_baselines_init(gkd_pg_baselines *b, gkd_baseline_kind kind, double decay);

typedef struct {
    double alpha;       /* in [0, 1] */
    int normalize;      /* divide the reward's advantages by their batch standard deviation */
    int score_function; /* include the divergence's score-function term */
    gkd_loss_norm norm;
} gkd_pg_config;

/* The REINFORCE weights of one batch of B = n_groups * K samples, laid out group by group (sample k of
 * prompt g at g*K + k). Updates the moving averages after using the state from before this batch.
 * rewards: (B); row_div: (B) the mean divergence over each row's output positions (distill.h's
 * row_values); mask: (B*T) 1 on output positions.
 * advantages: (B) out, A(y); returns: (B) out or NULL, (1 - alpha) r(y) - alpha D(y) (D only with the
 * score-function term); pg_weight: (B*T) out, the surrogate's weight per position (0 off the mask).
 * GKD_BASELINE_GROUP needs K >= 2. */
gkd_status gkd_pg_weights(gkd_pg_baselines *b, const gkd_pg_config *c, const double *rewards,
                          const double *row_div, const float *mask, int n_groups, int K, int T,
                          double *advantages, double *returns, float *pg_weight);

#endif
