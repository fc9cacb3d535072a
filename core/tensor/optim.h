/* AdamW for a gkd_model: decoupled weight decay (none on norm weights), global-norm gradient clipping,
 * linear warmup then cosine decay of the learning rate.
 * Rules:
 * - The moments m and v live in two contiguous blocks laid out like the model's parameter block, on
 *   the model's backend; with the step count they are the whole state, and restoring them (plus the
 *   parameters) resumes a run bit for bit.
 * - The update itself is the backend's adamw_update op, run once per run of tensors of equal decay.
 * - The step count t is the number of updates done; update number t+1 uses bias corrections
 *   1 - beta^(t+1) and the scheduled learning rate of step index t. */
#ifndef GKD_OPTIM_H
#define GKD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/error.h"
#include "core/tensor/model.h"

typedef struct {
    float lr;             /* peak learning rate, reached at the end of warmup */
    float min_lr;         /* where the cosine decay ends */
    int64_t warmup_steps; /* 0: no warmup */
    int64_t total_steps;  /* warmup + decay; <= warmup_steps: no decay, lr stays at the peak */
    float beta1, beta2, eps;
    float weight_decay; /* decoupled: param -= lr * weight_decay * param */
    float grad_clip;    /* max global L2 norm of the gradient; 0: no clipping */
} gkd_optim_config;

typedef struct {
    float lr;         /* learning rate used */
    float grad_norm;  /* global L2 norm of the gradient before clipping */
    float grad_scale; /* factor applied to the gradient by clipping (1: none) */
} gkd_optim_stats;

typedef struct gkd_optim gkd_optim;

/* lr 3e-4, min_lr 3e-5, no warmup or decay, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 (PyTorch's
 * AdamW defaults), grad_clip 1.0. */
gkd_optim_config gkd_optim_config_default(void);
/* GKD_OK, or GKD_ERR_ARG naming the first bad field. */
gkd_status gkd_optim_config_check(const gkd_optim_config *cfg);
/* The scheduled learning rate of step index `step` (0-based): lr (step+1)/warmup_steps during warmup,
 * then min_lr + (lr - min_lr) (1 + cos(pi p)) / 2 with p = (step - warmup) / (total - warmup) clamped to
 * [0, 1]. */
float gkd_optim_lr_at(const gkd_optim_config *cfg, int64_t step);
/* The curve behind gkd_optim_lr_at, in double, for any setting (rl/schedule.c's warmup-cosine is this
 * function): peak (step+1)/warmup during warmup, then half a cosine from peak down to min at step total;
 * peak throughout when total <= warmup. */
double gkd_optim_warmup_cosine(double peak, double min, int64_t warmup, int64_t total, int64_t step);

/* Zeroed state for model m's parameters. The caller owns *out; m must outlive it. */
gkd_status gkd_optim_create(const gkd_optim_config *cfg, gkd_model *m, gkd_optim **out);
void gkd_optim_free(gkd_optim *o);

/* One update of m's parameters from its gradients, at the scheduled learning rate (gkd_optim_step) or at
 * `lr` (gkd_optim_step_lr, for schedules computed elsewhere). A non-finite gradient norm leaves
 * everything untouched and returns GKD_ERR_ARG. stats may be NULL. Gradients are left as they were. */
gkd_status gkd_optim_step(gkd_optim *o, gkd_optim_stats *stats);
gkd_status gkd_optim_step_lr(gkd_optim *o, float lr, gkd_optim_stats *stats);

/* As gkd_optim_step_lr, but the update uses grad * grad_multiplier (e.g. 1 / micro-batches when the
 * gradients were summed over them), and clipping sees the multiplied norm. */
gkd_status gkd_optim_step_scaled(gkd_optim *o, float lr, float grad_multiplier, gkd_optim_stats *stats);
const gkd_optim_config *gkd_optim_get_config(const gkd_optim *o);
int64_t gkd_optim_step_count(const gkd_optim *o);
gkd_status gkd_optim_set_step_count(gkd_optim *o, int64_t t);
/* Number of floats in each moment block (= gkd_model_num_params). */
size_t gkd_optim_state_numel(const gkd_optim *o);
/* The first and second moment blocks, device memory of the model's backend, owned by the optimizer. */
float *gkd_optim_m(gkd_optim *o);
float *gkd_optim_v(gkd_optim *o);

#endif
