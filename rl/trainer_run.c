/* The GKD trainer as a target of the run loop (gkd_trainer_run_hooked, trainer.h). */
#include "rl/trainer.h"
#include "rl/trainer_internal.h"

static gkd_status trainer_step(void *self) {
    gkd_step_stats stats;
    return gkd_trainer_step(self, &stats);
}

static int64_t trainer_current_step(const void *self) {
    return gkd_trainer_current_step(self);
}

static gkd_status trainer_evaluate(void *self) {
    gkd_eval_stats es;
    return gkd_trainer_evaluate(self, &es);
}

static gkd_status trainer_save(void *self, const char *dir) {
    return gkd_trainer_save(self, dir);
}

gkd_status gkd_trainer_run_hooked(gkd_trainer *t, const gkd_run_hooks *hooks, gkd_run_result *result) {
    const gkd_train_config *c = gkd_trainer_get_config(t);
    /* Rank 0 alone evaluates and writes checkpoints (every rank holds the same weights). */
    int writer = gkd_dist_rank(c->dist) == 0;
    const gkd_run_target target = {t, trainer_step, trainer_current_step,
                                   writer && gkd_trainer_has_held_out(t) ? trainer_evaluate : NULL,
                                   writer ? trainer_save : NULL};
    const gkd_run_plan plan = {c->steps,          c->eval_every,      c->checkpoint_every,
                               c->checkpoint_dir, c->checkpoint_keep, c->dist};
    gkd_status st = gkd_run_loop(&target, &plan, hooks, result);
    /* every rank reaches this point: a stop is agreed, and a failure ends the job (rl/dist.h) */
    return st == GKD_OK ? gkd_trainer_dist_check_weights(t) : st;
}

gkd_status gkd_trainer_run(gkd_trainer *t) {
    return gkd_trainer_run_hooked(t, NULL, NULL);
}
