/* The device sampler (core/tensor/sample_cuda.h) on rows holding NaN or an infinity, as a diverged model gives:
 * such a row draws nothing (token -1, log-probability NaN, as gkd_sample_token on the CPU) under greedy,
 * top-k and top-p settings, whether one logit or the whole row is bad; the finite rows of the same call
 * draw what the CPU draws. Before, a row of NaN gave the token V (one past the row) and its log-probability
 * was read past the row. Exits 77 without a CUDA device. */
// ctest-labels: cuda
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_cuda.h"
#include "core/base/rng.h"
#include "core/tensor/sample.h"
#include "core/tensor/sample_cuda.h"
#include "tests/check.h"

enum { V = 301, B = 8 };

int main(void) {
    if (gkd_backend_cuda_device_count() == 0) check_skip("no CUDA device");
    const gkd_backend *gpu = gkd_backend_cuda();
    if (!gpu) {
        fprintf(stderr, "a CUDA device is present but the backend failed: %s\n", gkd_error_message());
        return 1;
    }
    const float bad[] = {NAN, INFINITY, -INFINITY};
    const gkd_sample_config cfgs[] = {
        {0.0f, 0, 1.0f, 1, -1, 0}, {1.0f, 5, 1.0f, 1, -1, 0}, {1.0f, 0, 0.9f, 1, -1, 0}, {0.7f, 5, 0.9f, 1, -1, 0}};
    static float x[B * V], probs[V];
    static int order[V];
    float lp[B], want_lp;
    int tok[B];
    float *dx = gpu->alloc(sizeof x);
    void *ws = gpu->alloc(gkd_sample_cuda_workspace_bytes(B, V));
    CHECK(dx && ws);
    if (!dx || !ws) return check_exit();
    gkd_rng rng;
    gkd_rng_init(&rng, 5, GKD_RNG_STREAM_USER);
    int wrong = 0, cases = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
            /* rows 0 and 4: one bad logit, first or last; row 2: all bad; the others finite */
            for (int b = 0; b < B; b++)
                for (int v = 0; v < V; v++)
                    x[b * V + v] = b == 2 || (b == 0 && v == 0) || (b == 4 && v == V - 1)
                                       ? bad[i]
                                       : 2.0f * gkd_rng_normal(&rng);
            gpu->copy_in(dx, x, sizeof x);
            gkd_status st =
                gkd_sample_cuda_draw(dx, B, V, &cfgs[c], 77, GKD_RNG_STREAM_SAMPLE, 0, ws, tok, lp);
            CHECKF(st == GKD_OK, "draw: %s", gkd_error_message());
            for (int b = 0; b < B; b++) {
                float u = gkd_rng_uniform_from_word(gkd_rng_word(77, GKD_RNG_STREAM_SAMPLE, (uint64_t)b));
                int want = gkd_sample_token(x + (size_t)b * V, V, &cfgs[c], u, probs, order, &want_lp);
                int nonfinite = b == 0 || b == 2 || b == 4;
                cases++;
                if ((nonfinite && (tok[b] != -1 || !isnan(lp[b]))) || tok[b] != want) {
                    if (wrong++ < 5)
                        fprintf(stderr, "logit %g, top_k %d, top_p %g, row %d: device %d (%g), cpu %d\n",
                                bad[i], cfgs[c].top_k, cfgs[c].top_p, b, tok[b], lp[b], want);
                }
            }
        }
    CHECKF(wrong == 0, "%d of %d rows drawn wrongly", wrong, cases);
    gpu->free(dx);
    gpu->free(ws);
    CHECK(gkd_backend_cuda_sync() == GKD_OK);
    return check_exit();
}
