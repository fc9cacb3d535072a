/* Training the learned reward model through the run loop (see reward_model_train.h). The loop takes the
 * steps; this file's target draws a batch, adds its gradients (gkd_reward_model_batches_gradients) and
 * updates, and its on_step hook reports (and evaluates) every report_every steps and at the last. */
#include "rl/reward_model_train.h"

#include <math.h>
#include <stdlib.h>

#include "core/tensor/optim.h"
#include "core/text/data.h"
#include "rl/run.h"

gkd_reward_model_train_config gkd_reward_model_train_config_default(void) {
    return (gkd_reward_model_train_config){.steps = 6000,
                                           .batch = 32,
                                           .lr = 2e-3f,
                                           .min_lr = 1e-4f,
                                           .warmup_steps = 100,
                                           .weight_decay = 0.01f,
                                           .grad_clip = 1.0f,
                                           .token_loss_weight = 4.0f,
                                           .seed = 1,
                                           .report_every = 100};
}

typedef struct {
    gkd_reward_model *rm;
    const gkd_reward_model_train_config *cfg;
    gkd_reward_model_batches *batches;
    gkd_optim *opt;
    gkd_data_order order;
    int *idx;            /* (batch) the pairs of the step */
    int64_t step, seen;  /* updates done; pairs since the last report */
    gkd_optim_stats os;  /* of the last update */
    gkd_reward_model_progress rep;
} training;

static gkd_status training_step(void *self) {
    training *r = self;
    gkd_data_order_next(&r->order, r->idx, r->cfg->batch);
    gkd_model_zero_grad(gkd_reward_model_transformer(r->rm));
    gkd_status st = gkd_reward_model_batches_gradients(r->batches, r->idx, r->cfg->token_loss_weight);
    if (st == GKD_OK) st = gkd_optim_step(r->opt, &r->os);
    if (st != GKD_OK) return st;
    r->step++;
    r->seen += r->cfg->batch;
    return GKD_OK;
}

static int64_t training_current_step(const void *self) {
    return ((const training *)self)->step;
}

/* The on_step hook: the means since the last report, the evaluation when due, then progress. */
static gkd_status report(void *ctx, int64_t step) {
    training *r = ctx;
    const gkd_reward_model_train_config *c = r->cfg;
    int end = step == c->steps;
    if (step % c->report_every != 0 && !end) return GKD_OK;
    double loss_sum, correct;
    gkd_reward_model_batches_take(r->batches, &loss_sum, &correct);
    r->rep = (gkd_reward_model_progress){step, r->os.lr, loss_sum / r->seen, correct / r->seen, NAN, NAN};
    r->seen = 0;
    int eval_due = c->eval_every > 0 && step % c->eval_every == 0;
    gkd_status st = GKD_OK;
    if (c->eval && (eval_due || end))
        st = gkd_reward_model_evaluate(r->rm, c->eval, &r->rep.eval_accuracy, &r->rep.eval_loss);
    if (st == GKD_OK && c->progress) c->progress(c->user, &r->rep);
    return st;
}

gkd_status gkd_reward_model_train(gkd_reward_model *rm, const gkd_reward_model_train_config *cfg,
                                  const gkd_reward_model_pairs *train, gkd_reward_model_progress *last_report) {
    if (!rm || !cfg || !train) return gkd_error_set(GKD_ERR_ARG, "reward model train: NULL argument");
    if (train->n < 1 || cfg->batch < 1 || cfg->steps < 0 || cfg->report_every < 1 ||
        !(cfg->token_loss_weight >= 0))
        return gkd_error_set(GKD_ERR_ARG, "reward model train: need pairs, batch >= 1, steps >= 0, "
                                          "report_every >= 1, token_loss_weight >= 0");
    gkd_optim_config oc = gkd_optim_config_default();
    oc.lr = cfg->lr;
    oc.min_lr = cfg->min_lr;
    oc.warmup_steps = cfg->warmup_steps;
    oc.total_steps = cfg->steps;
    oc.weight_decay = cfg->weight_decay;
    oc.grad_clip = cfg->grad_clip;
    training r = {.rm = rm, .cfg = cfg, .rep = {.loss = NAN, .accuracy = NAN, .eval_loss = NAN, .eval_accuracy = NAN}};
    r.idx = malloc((size_t)cfg->batch * sizeof *r.idx);
    gkd_status st = r.idx ? GKD_OK : gkd_error_set(GKD_ERR_NOMEM, "reward model: batches of %d", cfg->batch);
    if (st == GKD_OK) st = gkd_reward_model_batches_create(rm, train, cfg->batch, &r.batches);
    if (st == GKD_OK) st = gkd_optim_create(&oc, gkd_reward_model_transformer(rm), &r.opt);
    /* a preference model's batches are of pairs (2 items each) */
    int n_units = gkd_reward_model_get_config(rm)->preference ? train->n / 2 : train->n;
    if (st == GKD_OK) st = gkd_data_order_init(&r.order, n_units, cfg->seed);
    const gkd_run_target target = {&r, training_step, training_current_step, NULL, NULL};
    const gkd_run_plan plan = {.steps = cfg->steps};
    const gkd_run_hooks hooks = {.ctx = &r, .on_step = report};
    if (st == GKD_OK) st = gkd_run_loop(&target, &plan, &hooks, NULL);
    if (st == GKD_OK && last_report) *last_report = r.rep;
    gkd_optim_free(r.opt);
    gkd_data_order_free(&r.order);
    gkd_reward_model_batches_free(r.batches);
    free(r.idx);
    return st == GKD_OK ? st : gkd_error_prefix(st, "reward model train");
}
