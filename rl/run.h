/* The run loop: the one loop that takes optimizer steps, evaluates and checkpoints, for whatever it
 * trains (the GKD trainer, gkd_trainer_run_hooked; the reward model, rl/reward_model_train.h). Callers
 * differ only in the target they pass and their hooks.
 * Rules: a step's order is fixed: the step, on_step, the evaluation and on_eval, the checkpoint and
 * on_checkpoint, the rotation of older checkpoints, on_step_end; a stop is checked only between steps,
 * so every checkpoint holds whole steps. */
#ifndef GKD_RUN_H
#define GKD_RUN_H

#include <stdint.h>

#include "core/base/error.h"
#include "rl/dist.h"

/* What the loop trains. step and current_step are required; evaluate and save may be NULL (nothing to
 * evaluate on; no checkpoints). */
typedef struct {
    void *self;
    gkd_status (*step)(void *self); /* one optimizer step; current_step counts it after */
    int64_t (*current_step)(const void *self);
    gkd_status (*evaluate)(void *self);
    gkd_status (*save)(void *self, const char *dir); /* a checkpoint into dir, created */
} gkd_run_target;

/* The loop's cadence. */
typedef struct {
    int64_t steps;            /* the step the run ends at */
    int64_t eval_every;       /* 0: only at the last step */
    int64_t checkpoint_every; /* 0: only at the last step */
    const char *checkpoint_dir; /* its step-N folders (rl/checkpoints.h); NULL: no checkpoints */
    int checkpoint_keep;      /* the newest this many step folders are kept; 0: all */
    /* Data parallelism (rl/dist.h): should_stop is agreed over the ranks (any rank's stop stops all at the
     * same step; one that stopped alone would leave the others waiting in an all-reduce). NULL: one
     * process. */
    gkd_dist *dist;
} gkd_run_plan;

/* What a caller adds to the loop; every member may be NULL. A hook's failure (a status other than
 * GKD_OK, with the last error set) ends the run with that status. */
typedef struct {
    void *ctx;
    /* Before each step: non-zero ends the run as interrupted, checkpointed at the step it reached. */
    int (*should_stop)(void *ctx);
    /* After each step, before its evaluation; `step` counts the step just taken. */
    gkd_status (*on_step)(void *ctx, int64_t step);
    /* After each evaluation. */
    gkd_status (*on_eval)(void *ctx, int64_t step);
    /* After each checkpoint folder is whole, before older ones are rotated out: a record of it. */
    gkd_status (*on_checkpoint)(void *ctx, int64_t step, const char *path);
    /* Last in each step, after its evaluation and checkpoint; `last` on the final step. */
    void (*on_step_end)(void *ctx, int64_t step, int last);
} gkd_run_hooks;

typedef struct {
    int interrupted;         /* should_stop ended the run */
    int64_t checkpoint_step; /* interrupted: the step of the checkpoint saved as it stopped, else -1 */
} gkd_run_result;

/* Steps the target until plan->steps; evaluates every eval_every steps and at the last (a run of 0 steps
 * from step 0 evaluates once, at step 0: a baseline must not be silently skipped); checkpoints every
 * checkpoint_every steps and at the last. hooks and result may be NULL. */
gkd_status gkd_run_loop(const gkd_run_target *target, const gkd_run_plan *plan, const gkd_run_hooks *hooks,
                        gkd_run_result *result);

#endif
