/* The chunked distillation loss: equal to the unchunked one, gradients w.r.t. the student's hidden states
 * and output matrix against central finite differences, the per-sequence/per-token normalisations against
 * a direct computation, and the policy-gradient term. */
#include "core/tensor/backend.h"
#include "core/base/rng.h"
#include "rl/distill.h"
#include "tests/check.h"

#include <string.h>

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    gkd_rng r;
    gkd_rng_init(&r, seed, GKD_RNG_STREAM_USER);
    for (size_t i = 0; i < n; i++) x[i] = scale * gkd_rng_normal(&r);
}

int main(void) {
    const gkd_backend *be = gkd_backend_cpu();
    enum { B = 3, T = 5, V = 11, Cs = 6, Ct = 4, N = B * T };
    float hs[N * Cs], ht[N * Ct], Ws[V * Cs], Wt[V * Ct], mask[N];
    fill(hs, N * Cs, 1, 1.0f);
    fill(ht, N * Ct, 2, 1.0f);
    fill(Ws, V * Cs, 3, 0.5f);
    fill(Wt, V * Ct, 4, 0.8f);
    /* Rows with 3, 1 and 0 output positions. */
    int lens[B] = {3, 1, 0};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = t >= 1 && t < 1 + lens[b];
    const char *names[] = {"forward_kl", "reverse_kl", "jsd", "jsd_scaled", "tv", "skew_kl"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        gkd_divergence d;
        CHECK(gkd_divergence_parse(names[k], &d) == GKD_OK);
        d.beta = 0.3;
        d.teacher_temperature = 0.7;
        for (int norm = 0; norm < 2; norm++) {
            float dhs1[N * Cs], dhs2[N * Cs], dW1[V * Cs] = {0}, dW2[V * Cs] = {0};
            gkd_distill_stats s1, s2;
            gkd_distill_workspace *w1 = NULL, *w2 = NULL;
            CHECK(gkd_distill_workspace_create(be, 1, V, Cs, Ct, &w1) == GKD_OK);
            CHECK(gkd_distill_workspace_create(be, N, V, Cs, Ct, &w2) == GKD_OK);
            CHECK(gkd_distill_loss(w1, &d, norm, hs, Ws, ht, Wt, mask, B, T, 1.0f, dhs1, dW1, &s1) == GKD_OK);
            CHECK(gkd_distill_loss(w2, &d, norm, hs, Ws, ht, Wt, mask, B, T, 1.0f, dhs2, dW2, &s2) == GKD_OK);
            /* Chunking only regroups the same per-row work: results must agree to rounding (1e-6). */
            CHECKF(fabs(s1.loss - s2.loss) <= 1e-6 * fabs(s2.loss) + 1e-12, "%s: %g vs %g", names[k], s1.loss, s2.loss);
            double maxd = 0;
            for (int i = 0; i < N * Cs; i++) maxd = fmax(maxd, fabs(dhs1[i] - dhs2[i]));
            for (int i = 0; i < V * Cs; i++) maxd = fmax(maxd, fabs(dW1[i] - dW2[i]));
            CHECKF(maxd <= 1e-6, "%s: chunked gradient differs by %g", names[k], maxd);
            CHECK(s1.positions == 4);

            /* The normalisation, recomputed: per row values from row_values. */
            double rows[B];
            gkd_distill_extra ex = {.div_scale = 1.0f, .row_values = rows};
            gkd_distill_stats s3;
            CHECK(gkd_distill_loss_ex(w2, &d, norm, hs, Ws, ht, Wt, mask, B, T, 1.0f, &ex, NULL, NULL, &s3) == GKD_OK);
            double want = norm == GKD_NORM_SEQUENCE ? (rows[0] + rows[1]) / 2 : (3 * rows[0] + rows[1]) / 4;
            CHECKF(fabs(s3.loss - want) <= 1e-9 * fabs(want) + 1e-15, "%s norm %d: %g vs %g", names[k], norm, s3.loss, want);

            /* Gradients vs central differences of the loss in hs and Ws (float inputs, so the
             * step is large enough to stay above rounding; tolerance 2e-3 relative to the largest
             * gradient, as the loss itself is summed in double but the logits are float). TV has
             * kinks, so it is skipped here. */
            if (strcmp(names[k], "tv") != 0) {
                double gmax = 0, err = 0;
                for (int i = 0; i < N * Cs; i++) gmax = fmax(gmax, fabs(dhs2[i]));
                for (int i = 0; i < N * Cs; i += 3) {
                    float keep = hs[i];
                    const float h = 1e-2f;
                    gkd_distill_stats sp, sm;
                    hs[i] = keep + h;
                    gkd_distill_loss(w2, &d, norm, hs, Ws, ht, Wt, mask, B, T, 1.0f, NULL, NULL, &sp);
                    hs[i] = keep - h;
                    gkd_distill_loss(w2, &d, norm, hs, Ws, ht, Wt, mask, B, T, 1.0f, NULL, NULL, &sm);
                    hs[i] = keep;
                    err = fmax(err, fabs((sp.loss - sm.loss) / (2.0 * h) - dhs2[i]));
                }
                for (int i = 0; i < V * Cs; i += 2) {
                    float keep = Ws[i];
                    const float h = 1e-2f;
                    gkd_distill_stats sp, sm;
                    Ws[i] = keep + h;
                    gkd_distill_loss(w2, &d, norm, hs, Ws, ht, Wt, mask, B, T, 1.0f, NULL, NULL, &sp);
                    Ws[i] = keep - h;
                    gkd_distill_loss(w2, &d, norm, hs, Ws, ht, Wt, mask, B, T, 1.0f, NULL, NULL, &sm);
                    Ws[i] = keep;
                    err = fmax(err, fabs((sp.loss - sm.loss) / (2.0 * h) - dW2[i]));
                }
                CHECKF(err <= 2e-3 * gmax + 1e-6, "%s norm %d: finite differences off by %g (max grad %g)", names[k],
                       norm, err, gmax);
            }
            gkd_distill_workspace_free(w1);
            gkd_distill_workspace_free(w2);
        }
    }

    /* The policy-gradient term: loss adds sum w * (-log q(target)); its gradient checked by differences. */
    {
        gkd_divergence d;
        gkd_divergence_parse("reverse_kl", &d);
        int targets[N];
        float pgw[N];
        for (int i = 0; i < N; i++) {
            targets[i] = (i * 7) % V;
            pgw[i] = mask[i] ? 0.3f * (float)((i % 3) - 1) : 0.0f;
        }
        gkd_distill_extra ex = {.div_scale = 0.25f, .targets = targets, .pg_weight = pgw};
        gkd_distill_workspace *w = NULL;
        CHECK(gkd_distill_workspace_create(be, 2, V, Cs, Ct, &w) == GKD_OK);
        float dhs[N * Cs], dW[V * Cs] = {0};
        gkd_distill_stats s;
        CHECK(gkd_distill_loss_ex(w, &d, GKD_NORM_SEQUENCE, hs, Ws, ht, Wt, mask, B, T, 1.0f, &ex, dhs, dW, &s) == GKD_OK);
        double gmax = 0, err = 0;
        for (int i = 0; i < V * Cs; i++) gmax = fmax(gmax, fabs(dW[i]));
        for (int i = 0; i < V * Cs; i++) {
            float keep = Ws[i];
            const float h = 1e-2f;
            gkd_distill_stats sp, sm;
            Ws[i] = keep + h;
            gkd_distill_loss_ex(w, &d, GKD_NORM_SEQUENCE, hs, Ws, ht, Wt, mask, B, T, 1.0f, &ex, NULL, NULL, &sp);
            Ws[i] = keep - h;
            gkd_distill_loss_ex(w, &d, GKD_NORM_SEQUENCE, hs, Ws, ht, Wt, mask, B, T, 1.0f, &ex, NULL, NULL, &sm);
            Ws[i] = keep;
            err = fmax(err, fabs((sp.loss - sm.loss) / (2.0 * h) - dW[i]));
        }
        CHECKF(err <= 2e-3 * gmax + 1e-6, "policy gradient + divergence: finite differences off by %g (max %g)", err, gmax);
        CHECK(fabs(s.loss - 0.25 * s.divergence) > 1e-6); /* the PG term contributed */
        gkd_distill_workspace_free(w);
    }
    return check_exit();
}
