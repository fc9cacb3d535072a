/* The run loop (see run.h). */
#include "rl/run.h"


#include "rl/checkpoints.h"

static gkd_status evaluate(const gkd_run_target *g, const gkd_run_hooks *h, int64_t step) {
    gkd_status st = g->evaluate(g->self);
    if (st == GKD_OK && h->on_eval) st = h->on_eval(h->ctx, step);
    return st;
}

static gkd_status checkpoint(const gkd_run_target *g, const gkd_run_plan *p, const gkd_run_hooks *h,
                             int64_t step) {
    char path[4096];
    gkd_status st = gkd_checkpoints_save(g, p->checkpoint_dir, step, path, sizeof path);
    if (st == GKD_OK && h->on_checkpoint) st = h->on_checkpoint(h->ctx, step, path);
    if (st == GKD_OK && p->checkpoint_keep > 0) gkd_checkpoints_rotate(p->checkpoint_dir, step, p->checkpoint_keep);
    return st;
}

static int stop_agreed(gkd_dist *dist, int stop) {
    double votes = stop != 0;
    /* a failed vote stops the run: this rank cannot know what the others decided */
    if (gkd_dist_allreduce_f64(dist, &votes, 1) != GKD_OK) return 1;
    return votes > 0;
}

static int due(int64_t step, int64_t every, int last) {
    return (every > 0 && step % every == 0) || last;
}

gkd_status gkd_run_loop(const gkd_run_target *g, const gkd_run_plan *p, const gkd_run_hooks *hooks,
                        gkd_run_result *result) {
    static const gkd_run_hooks none = {0};
    const gkd_run_hooks *h = hooks ? hooks : &none;
    int checkpoints = p->checkpoint_dir && g->save;
    gkd_run_result r = {0, -1};
    gkd_status st = GKD_OK;
    if (p->steps == 0 && g->current_step(g->self) == 0 && g->evaluate) st = evaluate(g, h, 0);
    while (st == GKD_OK && g->current_step(g->self) < p->steps) {
        if (h->should_stop && stop_agreed(p->dist, h->should_stop(h->ctx))) {
            r.interrupted = 1;
            int64_t at = g->current_step(g->self);
            if (checkpoints && (st = checkpoint(g, p, h, at)) == GKD_OK) r.checkpoint_step = at;
            break;
        }
        if ((st = g->step(g->self)) != GKD_OK) break;
        int64_t step = g->current_step(g->self);
        int last = step == p->steps;
        if (h->on_step && (st = h->on_step(h->ctx, step)) != GKD_OK) break;
        if (g->evaluate && due(step, p->eval_every, last) && (st = evaluate(g, h, step)) != GKD_OK) break;
        if (checkpoints && due(step, p->checkpoint_every, last) && (st = checkpoint(g, p, h, step)) != GKD_OK)
            break;
        if (h->on_step_end) h->on_step_end(h->ctx, step, last);
    }
    if (result) *result = r;
    return st;
}
