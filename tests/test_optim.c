/* AdamW against a scalar double-precision reference over several steps (warmup + cosine schedule, some
 * steps clipped, some not; no decay on norm weights), the schedule's closed form, exact resume from saved
 * state, and bad input. */
// ctest-labels: cpu
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/tensor/optim.h"
#include "core/base/rng.h"
#include "tests/check.h"

static gkd_model *tiny_model(void) {
    gkd_model_config cfg = {.vocab_size = 13,
                            .dim = 8,
                            .n_layers = 2,
                            .n_heads = 2,
                            .n_kv_heads = 1,
                            .hidden_dim = 12,
                            .max_seq_len = 8,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    if (gkd_model_create(&cfg, gkd_backend_cpu(), &m)) {
        fprintf(stderr, "create: %s\n", gkd_error_message());
        exit(1);
    }
    gkd_model_init_weights(m, 3);
    return m;
}

static void fill_grads(gkd_model *m, gkd_rng *rng, float scale) {
    float *g = gkd_model_grads(m);
    for (size_t i = 0; i < gkd_model_num_params(m); i++) g[i] = scale * gkd_rng_normal(rng);
}

static void test_against_reference(void) {
    gkd_model *m = tiny_model();
    size_t n = gkd_model_num_params(m);
    gkd_optim_config cfg = {.lr = 0.01f,
                            .min_lr = 0.001f,
                            .warmup_steps = 2,
                            .total_steps = 6,
                            .beta1 = 0.9f,
                            .beta2 = 0.95f,
                            .eps = 1e-8f,
                            .weight_decay = 0.1f,
                            .grad_clip = 1.0f};
    gkd_optim *o = NULL;
    CHECK(gkd_optim_create(&cfg, m, &o) == GKD_OK);
    double *p = malloc(n * sizeof(double)), *mr = calloc(n, sizeof(double)), *vr = calloc(n, sizeof(double));
    char *decays = malloc(n);
    for (size_t i = 0; i < n; i++) p[i] = gkd_model_params(m)[i];
    for (int t = 0; t < gkd_model_num_tensors(m); t++) {
        const gkd_tensor_info *ti = gkd_model_tensor(m, t);
        memset(decays + ti->offset, !ti->is_norm, ti->numel);
    }
    gkd_rng rng;
    gkd_rng_init(&rng, 9, GKD_RNG_STREAM_USER);
    int clipped = 0, unclipped = 0;
    for (int step = 0; step < 7; step++) {
        /* gradient norms ~ 0.01 sqrt(n) ~ 0.3 (under the clip) and ~ 30 (over it), alternately */
        fill_grads(m, &rng, step % 2 ? 1.0f : 0.01f);
        const float *g = gkd_model_grads(m);
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
        double norm = sqrt(ss), scale = norm > cfg.grad_clip ? cfg.grad_clip / (norm + 1e-6) : 1.0;
        double lr = step < 2 ? 0.01 * (step + 1) / 2.0
                             : 0.001 + 0.5 * (0.01 - 0.001) * (1 + cos(M_PI * fmin(1.0, (step - 2) / 4.0)));
        gkd_optim_stats st;
        CHECK(gkd_optim_step(o, &st) == GKD_OK);
        CHECKF(fabs(st.lr - lr) <= 1e-7 * lr, "step %d: lr %.9g vs %.9g", step, st.lr, lr);
        CHECKF(fabs(st.grad_norm - norm) <= 1e-6 * norm, "step %d: grad norm %.9g vs %.9g", step,
               st.grad_norm, norm);
        CHECKF(fabs(st.grad_scale - scale) <= 1e-6 * scale, "step %d: scale %.9g vs %.9g", step,
               st.grad_scale, scale);
        clipped += scale < 1.0;
        unclipped += scale == 1.0;
        int t = step + 1;
        for (size_t i = 0; i < n; i++) {
            double gi = g[i] * scale;
            p[i] -= lr * (decays[i] ? cfg.weight_decay : 0.0) * p[i];
            mr[i] = cfg.beta1 * mr[i] + (1 - cfg.beta1) * gi;
            vr[i] = cfg.beta2 * vr[i] + (1 - cfg.beta2) * gi * gi;
            p[i] -=
                lr * (mr[i] / (1 - pow(cfg.beta1, t))) / (sqrt(vr[i] / (1 - pow(cfg.beta2, t))) + cfg.eps);
        }
    }
    CHECK(clipped > 0 && unclipped > 0);
    CHECK(gkd_optim_step_count(o) == 7);
    /* 7 float updates of size <= lr each on parameters ~0.02..1: rounding ~1e-7 absolute per step */
    double err_p = 0, err_m = 0, err_v = 0;
    for (size_t i = 0; i < n; i++) {
        err_p = fmax(err_p, fabs(gkd_model_params(m)[i] - p[i]));
        err_m = fmax(err_m, fabs(gkd_optim_m(o)[i] - mr[i]));
        err_v = fmax(err_v, fabs(gkd_optim_v(o)[i] - vr[i]) / (vr[i] + 1e-12));
    }
    CHECKF(err_p <= 2e-6, "params differ from the reference by %g", err_p);
    CHECKF(err_m <= 1e-6, "m differs from the reference by %g", err_m);
    CHECKF(err_v <= 1e-5, "v differs from the reference by a relative %g", err_v);
    gkd_optim_free(o);
    gkd_model_free(m);
    free(p), free(mr), free(vr), free(decays);
}

/* With zero gradients Adam's step is 0, so only the decay moves a parameter: norms must stay put. */
static void test_no_decay_on_norms(void) {
    gkd_model *m = tiny_model();
    gkd_optim_config cfg = gkd_optim_config_default();
    cfg.lr = 0.1f;
    cfg.weight_decay = 0.5f;
    gkd_optim *o = NULL;
    CHECK(gkd_optim_create(&cfg, m, &o) == GKD_OK);
    size_t n = gkd_model_num_params(m);
    float *before = malloc(n * sizeof(float));
    memcpy(before, gkd_model_params(m), n * sizeof(float));
    gkd_model_zero_grad(m);
    CHECK(gkd_optim_step(o, NULL) == GKD_OK);
    int norms_ok = 1, others_ok = 1, n_norm = 0;
    for (int t = 0; t < gkd_model_num_tensors(m); t++) {
        const gkd_tensor_info *ti = gkd_model_tensor(m, t);
        n_norm += ti->is_norm;
        for (size_t j = 0; j < ti->numel; j++) {
            float a = gkd_model_params(m)[ti->offset + j], b = before[ti->offset + j];
            if (ti->is_norm)
                norms_ok &= a == b;
            else
                others_ok &= fabs(a - b * (1.0 - 0.1 * 0.5)) <= 2e-7 * fabs(b); /* two roundings */
        }
    }
    CHECK(n_norm == 2 * 2 + 1);
    CHECK(norms_ok);
    CHECK(others_ok);
    gkd_optim_free(o);
    gkd_model_free(m);
    free(before);
}

static void test_schedule(void) {
    gkd_optim_config c = gkd_optim_config_default();
    c.lr = 1.0f;
    c.min_lr = 0.1f;
    c.warmup_steps = 10;
    c.total_steps = 110;
    CHECK(fabsf(gkd_optim_lr_at(&c, 0) - 0.1f) < 1e-7f);
    CHECK(fabsf(gkd_optim_lr_at(&c, 4) - 0.5f) < 1e-7f);
    CHECK(fabsf(gkd_optim_lr_at(&c, 9) - 1.0f) < 1e-7f);
    CHECK(fabsf(gkd_optim_lr_at(&c, 10) - 1.0f) < 1e-7f);
    CHECK(fabsf(gkd_optim_lr_at(&c, 60) - 0.55f) < 1e-6f);                               /* half way */
    CHECK(fabs(gkd_optim_lr_at(&c, 35) - (0.1 + 0.45 * (1 + cos(M_PI * 0.25)))) < 1e-6); /* a quarter */
    CHECK(fabsf(gkd_optim_lr_at(&c, 110) - 0.1f) < 1e-7f);
    CHECK(fabsf(gkd_optim_lr_at(&c, 500) - 0.1f) < 1e-7f);
    c.total_steps = 0; /* no decay: constant after warmup */
    CHECK(gkd_optim_lr_at(&c, 1000) == 1.0f);
    c.warmup_steps = 0;
    CHECK(gkd_optim_lr_at(&c, 0) == 1.0f);
}

/* Saving (params, m, v, t) and restoring them into a fresh optimizer continues bit for bit. */
static void test_resume(void) {
    gkd_model *a = tiny_model(), *b = tiny_model();
    size_t n = gkd_model_num_params(a), bytes = n * sizeof(float);
    gkd_optim_config cfg = gkd_optim_config_default();
    cfg.warmup_steps = 3;
    cfg.total_steps = 20;
    gkd_optim *oa = NULL, *ob = NULL;
    CHECK(gkd_optim_create(&cfg, a, &oa) == GKD_OK);
    gkd_rng rng;
    gkd_rng_init(&rng, 4, GKD_RNG_STREAM_USER);
    for (int s = 0; s < 4; s++) {
        fill_grads(a, &rng, 0.1f);
        CHECK(gkd_optim_step(oa, NULL) == GKD_OK);
    }
    CHECK(gkd_optim_create(&cfg, b, &ob) == GKD_OK);
    CHECK(gkd_optim_state_numel(ob) == n);
    memcpy(gkd_model_params(b), gkd_model_params(a), bytes);
    memcpy(gkd_optim_m(ob), gkd_optim_m(oa), bytes);
    memcpy(gkd_optim_v(ob), gkd_optim_v(oa), bytes);
    CHECK(gkd_optim_set_step_count(ob, gkd_optim_step_count(oa)) == GKD_OK);
    for (int s = 0; s < 3; s++) {
        fill_grads(a, &rng, 0.1f);
        memcpy(gkd_model_grads(b), gkd_model_grads(a), bytes);
        CHECK(gkd_optim_step(oa, NULL) == GKD_OK);
        CHECK(gkd_optim_step(ob, NULL) == GKD_OK);
    }
    CHECK(memcmp(gkd_model_params(a), gkd_model_params(b), bytes) == 0);
    CHECK(memcmp(gkd_optim_v(oa), gkd_optim_v(ob), bytes) == 0);
    gkd_optim_free(oa);
    gkd_optim_free(ob);
    gkd_model_free(a);
    gkd_model_free(b);
}

static void test_bad_input(void) {
    gkd_model *m = tiny_model();
    gkd_optim_config cfg = gkd_optim_config_default();
    gkd_optim *o = NULL;
    cfg.beta2 = 1.0f;
    CHECK(gkd_optim_create(&cfg, m, &o) == GKD_ERR_ARG && o == NULL);
    CHECKF(strstr(gkd_error_message(), "beta2") != NULL, "message: %s", gkd_error_message());
    cfg = gkd_optim_config_default();
    cfg.grad_clip = -1.0f;
    CHECK(gkd_optim_config_check(&cfg) == GKD_ERR_ARG && strstr(gkd_error_message(), "grad_clip"));
    cfg = gkd_optim_config_default();
    CHECK(gkd_optim_create(&cfg, m, &o) == GKD_OK);
    size_t n = gkd_model_num_params(m);
    float *before = malloc(n * sizeof(float));
    memcpy(before, gkd_model_params(m), n * sizeof(float));
    gkd_model_zero_grad(m);
    gkd_model_grads(m)[5] = NAN;
    CHECK(gkd_optim_step(o, NULL) == GKD_ERR_ARG);
    CHECK(memcmp(before, gkd_model_params(m), n * sizeof(float)) == 0 && gkd_optim_step_count(o) == 0);
    CHECK(gkd_optim_step_lr(o, -1.0f, NULL) == GKD_ERR_ARG);
    CHECK(gkd_optim_set_step_count(o, -2) == GKD_ERR_ARG);
    gkd_optim_free(o);
    gkd_optim_free(NULL);
    gkd_model_free(m);
    free(before);
}

int main(void) {
    test_against_reference();
    test_no_decay_on_norms();
    test_schedule();
    test_resume();
    test_bad_input();
    return check_exit();
}
