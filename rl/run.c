/* The run loop (see gkd_trainer_run_hooked in trainer.h): the one loop every caller of the trainer runs,
 * the Lua binding's gkd.run and the reward model's training among them; they differ only in hooks.
 * Rules: a step's order is fixed: the step, on_step, the evaluation and on_eval, the checkpoint and
 * on_checkpoint, the rotation, on_step_end; a stop is checked only between steps, so every checkpoint
 * holds whole steps. */
#include <stdio.h>

#include "rl/checkpoints.h"
#include "rl/trainer.h"

static gkd_status evaluate(gkd_trainer *t, const gkd_run_hooks *h, int64_t step) {
    gkd_eval_stats es;
    gkd_status st = gkd_trainer_evaluate(t, &es);
    if (st == GKD_OK && h->on_eval) st = h->on_eval(h->ctx, step);
    return st;
}

static gkd_status checkpoint(gkd_trainer *t, const gkd_train_config *c, const gkd_run_hooks *h, int64_t step) {
    char path[4096];
    gkd_status st = gkd_checkpoints_save(t, c->checkpoint_dir, step, path, sizeof path);
    if (st == GKD_OK && h->on_checkpoint) st = h->on_checkpoint(h->ctx, step, path);
    if (st == GKD_OK && c->checkpoint_keep > 0) gkd_checkpoints_rotate(c->checkpoint_dir, step, c->checkpoint_keep);
    return st;
}

gkd_status gkd_trainer_run_hooked(gkd_trainer *t, const gkd_run_hooks *hooks, gkd_run_result *result) {
    static const gkd_run_hooks none = {0};
    const gkd_run_hooks *h = hooks ? hooks : &none;
    const gkd_train_config *c = gkd_trainer_config(t);
    gkd_run_result r = {0, -1};
    gkd_status st = GKD_OK;
    /* 0 steps evaluates the student as it is (a baseline, a warm start's score): the loop never reaches
     * its last step's evaluation, and an evaluation asked for must not be silently skipped. */
    if (c->steps == 0 && gkd_trainer_current_step(t) == 0 && gkd_trainer_has_held_out(t)) st = evaluate(t, h, 0);
    while (st == GKD_OK && gkd_trainer_current_step(t) < c->steps) {
        if (h->should_stop && h->should_stop(h->ctx)) {
            r.interrupted = 1;
            int64_t at = gkd_trainer_current_step(t);
            if (c->checkpoint_dir && (st = checkpoint(t, c, h, at)) == GKD_OK) r.checkpoint_step = at;
            break;
        }
        gkd_step_stats stats;
        if ((st = gkd_trainer_step(t, &stats)) != GKD_OK) break;
        int64_t step = gkd_trainer_current_step(t);
        int last = step == c->steps;
        if (h->on_step && (st = h->on_step(h->ctx, step)) != GKD_OK) break;
        if (gkd_trainer_has_held_out(t) && ((c->eval_every > 0 && step % c->eval_every == 0) || last) &&
            (st = evaluate(t, h, step)) != GKD_OK)
            break;
        if (c->checkpoint_dir && ((c->checkpoint_every > 0 && step % c->checkpoint_every == 0) || last) &&
            (st = checkpoint(t, c, h, step)) != GKD_OK)
            break;
        if (h->on_step_end) h->on_step_end(h->ctx, step, last);
    }
    if (result) *result = r;
    return st;
}

gkd_status gkd_trainer_run(gkd_trainer *t) {
    return gkd_trainer_run_hooked(t, NULL, NULL);
}
