/* AdamW with clipping and a warmup + cosine schedule; see optim.h. The global gradient norm is one
 * reduction over the whole gradient block (contiguous by design), and clipping is folded into the update
 * as a gradient scale, so the gradient is read once more and never rewritten. */
#include "core/tensor/optim.h"

#include <math.h>
#include <stdlib.h>

struct gkd_optim {
    gkd_optim_config cfg;
    gkd_model *model;
    const gkd_backend *be;
    size_t n;
    float *m, *v;
    int64_t t;
};

gkd_optim_config gkd_optim_config_default(void) {
    gkd_optim_config c = {
        .lr = 3e-4f,
        .min_lr = 3e-5f,
        .warmup_steps = 0,
        .total_steps = 0,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
        .weight_decay = 0.01f,
        .grad_clip = 1.0f,
    };
    return c;
}

gkd_status gkd_optim_config_check(const gkd_optim_config *c) {
    if (!c) return gkd_error_set(GKD_ERR_ARG, "gkd_optim_config: NULL");
#define REQUIRE(cond, ...)                                                                                   \
    do {                                                                                                     \
        if (!(cond)) return gkd_error_set(GKD_ERR_ARG, "gkd_optim_config: " __VA_ARGS__);                    \
    } while (0)
    REQUIRE(isfinite(c->lr) && c->lr >= 0.0f, "lr = %g must be >= 0", c->lr);
    REQUIRE(isfinite(c->min_lr) && c->min_lr >= 0.0f, "min_lr = %g must be >= 0", c->min_lr);
    REQUIRE(c->warmup_steps >= 0, "warmup_steps = %lld must be >= 0", (long long)c->warmup_steps);
    REQUIRE(c->total_steps >= 0, "total_steps = %lld must be >= 0", (long long)c->total_steps);
    REQUIRE(c->beta1 >= 0.0f && c->beta1 < 1.0f, "beta1 = %g must be in [0, 1)", c->beta1);
    REQUIRE(c->beta2 >= 0.0f && c->beta2 < 1.0f, "beta2 = %g must be in [0, 1)", c->beta2);
    REQUIRE(isfinite(c->eps) && c->eps > 0.0f, "eps = %g must be > 0", c->eps);
    REQUIRE(isfinite(c->weight_decay) && c->weight_decay >= 0.0f, "weight_decay = %g must be >= 0",
            c->weight_decay);
    REQUIRE(isfinite(c->grad_clip) && c->grad_clip >= 0.0f, "grad_clip = %g must be >= 0 (0: off)",
            c->grad_clip);
#undef REQUIRE
    return GKD_OK;
}

double gkd_optim_warmup_cosine(double peak, double min, int64_t warmup, int64_t total, int64_t step) {
    if (step < warmup) return peak * (double)(step + 1) / (double)warmup;
    if (total <= warmup) return peak;
    double p = (double)(step - warmup) / (double)(total - warmup);
    if (p > 1.0) p = 1.0;
    return min + (peak - min) * 0.5 * (1.0 + cos(M_PI * p));
}

float gkd_optim_lr_at(const gkd_optim_config *c, int64_t step) {
    return (float)gkd_optim_warmup_cosine(c->lr, c->min_lr, c->warmup_steps, c->total_steps, step);
}

gkd_status gkd_optim_create(const gkd_optim_config *cfg, gkd_model *m, gkd_optim **out) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_optim_create: out is NULL");
    *out = NULL;
    if (!m) return gkd_error_set(GKD_ERR_ARG, "gkd_optim_create: model is NULL");
    if (!gkd_model_grads(m))
        return gkd_error_set(GKD_ERR_ARG, "gkd_optim_create: the model was created for inference (no gradients): "
                                          "it cannot be trained");
    gkd_status st = gkd_optim_config_check(cfg);
    if (st) return st;
    gkd_optim *o = calloc(1, sizeof *o);
    if (!o) return gkd_error_set(GKD_ERR_NOMEM, "gkd_optim_create: out of memory");
    o->cfg = *cfg;
    o->model = m;
    o->be = gkd_model_backend(m);
    o->n = gkd_model_num_params(m);
    size_t bytes = o->n * sizeof(float);
    o->m = o->be->alloc(bytes);
    o->v = o->be->alloc(bytes);
    if (!o->m || !o->v) {
        gkd_optim_free(o);
        return gkd_error_set(GKD_ERR_NOMEM, "gkd_optim_create: cannot allocate 2 x %zu bytes for the moments",
                             bytes);
    }
    o->be->zero(o->m, bytes);
    o->be->zero(o->v, bytes);
    *out = o;
    return GKD_OK;
}

void gkd_optim_free(gkd_optim *o) {
    if (!o) return;
    o->be->free(o->m);
    o->be->free(o->v);
    free(o);
}

gkd_status gkd_optim_step_lr(gkd_optim *o, float lr, gkd_optim_stats *stats) {
    return gkd_optim_step_scaled(o, lr, 1.0f, stats);
}

gkd_status gkd_optim_step_scaled(gkd_optim *o, float lr, float grad_multiplier, gkd_optim_stats *stats) {
    if (!o) return gkd_error_set(GKD_ERR_ARG, "gkd_optim_step: optimizer is NULL");
    if (!isfinite(lr) || lr < 0.0f)
        return gkd_error_set(GKD_ERR_ARG, "gkd_optim_step: lr = %g must be >= 0", lr);
    gkd_model *mod = o->model;
    float *params = gkd_model_params(mod);
    const float *grads = gkd_model_grads(mod);
    if (!(grad_multiplier > 0.0f) || !isfinite(grad_multiplier))
        return gkd_error_set(GKD_ERR_ARG, "gkd_optim_step: gradient multiplier %g must be > 0", grad_multiplier);
    double norm = sqrt(o->be->sumsq(grads, o->n)) * grad_multiplier;
    if (!isfinite(norm))
        return gkd_error_set(GKD_ERR_ARG, "gkd_optim_step: gradient norm is not finite; update skipped");
    /* PyTorch's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. */
    float scale = 1.0f;
    if (o->cfg.grad_clip > 0.0f && norm > o->cfg.grad_clip) scale = (float)(o->cfg.grad_clip / (norm + 1e-6));
    scale *= grad_multiplier;
    int64_t t = o->t + 1;
    /* Runs of consecutive tensors that share a decay go through one call each. */
    int nt = gkd_model_num_tensors(mod);
    for (int i = 0; i < nt;) {
        const gkd_tensor_info *first = gkd_model_tensor(mod, i);
        size_t off = first->offset, numel = 0;
        int is_norm = first->is_norm;
        for (; i < nt && gkd_model_tensor(mod, i)->is_norm == is_norm; i++)
            numel += gkd_model_tensor(mod, i)->numel;
        o->be->adamw_update(params + off, grads + off, o->m + off, o->v + off, numel, lr, o->cfg.beta1,
                            o->cfg.beta2, o->cfg.eps, is_norm ? 0.0f : o->cfg.weight_decay, scale, t);
    }
    o->t = t;
    if (stats) {
        stats->lr = lr;
        stats->grad_norm = (float)norm;
        stats->grad_scale = scale;
    }
    return GKD_OK;
}

gkd_status gkd_optim_step(gkd_optim *o, gkd_optim_stats *stats) {
    if (!o) return gkd_error_set(GKD_ERR_ARG, "gkd_optim_step: optimizer is NULL");
    return gkd_optim_step_lr(o, gkd_optim_lr_at(&o->cfg, o->t), stats);
}

const gkd_optim_config *gkd_optim_get_config(const gkd_optim *o) {
    return o ? &o->cfg : NULL;
}

int64_t gkd_optim_step_count(const gkd_optim *o) {
    return o ? o->t : 0;
}

gkd_status gkd_optim_set_step_count(gkd_optim *o, int64_t t) {
    if (!o) return gkd_error_set(GKD_ERR_ARG, "gkd_optim_set_step_count: optimizer is NULL");
    if (t < 0)
        return gkd_error_set(GKD_ERR_ARG, "gkd_optim_set_step_count: t = %lld must be >= 0", (long long)t);
    o->t = t;
    return GKD_OK;
}

size_t gkd_optim_state_numel(const gkd_optim *o) {
    return o ? o->n : 0;
}

float *gkd_optim_m(gkd_optim *o) {
    return o ? o->m : NULL;
}

float *gkd_optim_v(gkd_optim *o) {
    return o ? o->v : NULL;
}
