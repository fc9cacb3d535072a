/* PPO's critic: a linear value head V_t = w . h_t + b on the student's last hidden state (after the final
 * norm), sharing the student's trunk, with its own AdamW. Starts at w = 0, b = 0, so the first values are
 * 0 and the first GAE advantages are the reward-to-go.
 * Loss (TRL's clipped value loss): per masked token, 0.5 max((V - R)^2, (clip(V, V_old +- c) - R)^2),
 * averaged over the masked tokens and times vf_coef; its gradient goes to w, b and (through dh) the trunk.
 * Host memory throughout: h and dh are host copies of the (B*T, C) rows (the caller copies to and from
 * a device backend). Doubles for the head's parameters and moments. */
#ifndef GKD_VALUE_HEAD_H
#define GKD_VALUE_HEAD_H

#include <stdint.h>

#include "core/base/error.h"

typedef struct {
    int C;
    double *p;    /* (C + 1): w then b */
    double *g;    /* (C + 1) gradient, accumulated by gkd_value_head_loss */
    double *m, *v; /* (C + 1) AdamW moments */
    int64_t t;    /* updates taken */
} gkd_value_head;

gkd_status gkd_value_head_init(gkd_value_head *vh, int C);
void gkd_value_head_free(gkd_value_head *vh);

/* values (N) <- w . h_i + b on masked rows (0 elsewhere). h: (N, C). */
void gkd_value_head_forward(const gkd_value_head *vh, const float *h, const float *mask, int N, double *values);

/* The clipped value loss of N rows (returns, old_values: (N)); adds coef * dloss/dh into dh (N, C) (may be
 * NULL) and coef * dloss/dparams into vh->g. Returns the loss (without coef) in *loss. clip <= 0: no
 * clipping. */
gkd_status gkd_value_head_loss(gkd_value_head *vh, const float *h, const float *mask, int N, const double *returns,
                               const double *old_values, double clip, double coef, float *dh, double *loss);

/* One AdamW update from vh->g (then zeroed). */
void gkd_value_head_step(gkd_value_head *vh, double lr, double beta1, double beta2, double eps, double weight_decay);

/* 1 - Var(returns - values) / Var(returns) over the masked entries (0 when Var(returns) is 0). */
double gkd_explained_variance(const double *values, const double *returns, const float *mask, int N);

#endif
