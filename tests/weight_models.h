/* The shared part of the weight-format tests (test_weight_format.c, test_q8_0_a8.c): a small model with
 * weights larger than the default init, so its logits spread over several units as a trained model's do,
 * then packed in a format; and the largest difference between two logit arrays. Include once, from a test's
 * .c file; a setup failure exits with the library's message. */
#ifndef GKD_TESTS_WEIGHT_MODELS_H
#define GKD_TESTS_WEIGHT_MODELS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"

static void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, gkd_error_message());
    exit(1);
}

static gkd_model *make(const gkd_model_config *cfg, unsigned flags, gkd_weight_format f, uint64_t seed) {
    gkd_model *m = NULL;
    if (gkd_model_create_ex(cfg, gkd_backend_cpu(), flags, &m)) die("create");
    gkd_model_init_weights(m, seed);
    float *p = gkd_model_params(m);
    for (int i = 0; i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(m, i);
        if (!t->is_norm)
            for (size_t j = 0; j < t->numel; j++) p[t->offset + j] *= 5.0f;
    }
    if (f != GKD_WEIGHTS_FP32 && gkd_model_set_weight_format(m, f)) die("set_weight_format");
    return m;
}

/* max |a - b| over n entries; *scale (may be NULL) receives max |b| */
static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        d = fabs(a[i] - b[i]) > d ? fabs(a[i] - b[i]) : d;
        s = fabs(b[i]) > s ? fabs(b[i]) : s;
    }
    if (scale) *scale = s;
    return d;
}

#endif
