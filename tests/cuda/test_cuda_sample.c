/* The device sampler (core/tensor/sample_cuda.h) against the host:
 * - uniforms: curand's device Philox4_32_10 after curand_init(seed, stream, offset) gives, bit for bit,
 *   gkd_rng_uniform_from_word(gkd_rng_word(seed, stream, offset)), for seeds and streams with high bits set
 *   and offsets that are not multiples of 4, cross a 2^32 boundary of the block counter, or are huge;
 * - draws: for random rows (continuous, heavily tied, tied among continuous values, with weights that round
 *   to 0, all equal) and every combination of temperature {0, 0.6, 1}, top_k {0, 1, 2, 50} and top_p
 *   {0.1, 0.9, 1}, the device picks exactly gkd_sample_token's token for the same row and uniform, at a
 *   small vocabulary and at SmolLM2's (49152). Log-probabilities agree to 1e-6 relative: the device sums
 *   exp in another (fixed) order than the CPU.
 * The device may differ from the CPU only where the last bit of a double sum decides (see sample_cuda.h):
 * on these rows that has probability ~1e-12, so any difference is a bug. Exits 77 without a CUDA device. */
// ctest-labels: cuda
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_cuda.h"
#include "core/base/rng.h"
#include "core/tensor/sample.h"
#include "core/tensor/sample_cuda.h"
#include "tests/check.h"

static const double LOGPROB_REL = 1e-6;

static void test_uniforms(void) {
    enum { N_OFF = 64 };
    const uint64_t seeds[] = {0, 1, 77, (1ull << 40) + 3, UINT64_MAX};
    const uint64_t streams[] = {0, GKD_RNG_STREAM_SAMPLE, (1ull << 33) + 1, UINT64_MAX - 2};
    uint64_t offsets[N_OFF];
    int n = 0;
    for (uint64_t o = 0; o < 12; o++) offsets[n++] = o; /* every phase within a block, and past it */
    const uint64_t big[] = {(1ull << 32) * 4 - 1, (1ull << 32) * 4, (1ull << 32) * 4 + 1,
                            (1ull << 34) + 2,     (1ull << 62) + 3, UINT64_MAX - 1,
                            UINT64_MAX,           1000003,          4 * 1000003 + 2};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) offsets[n++] = big[i];
    gkd_rng pick;
    gkd_rng_init(&pick, 9, GKD_RNG_STREAM_USER);
    for (; n < N_OFF; n++) { /* random offsets of every size */
        uint64_t hi = gkd_rng_u32(&pick), lo = gkd_rng_u32(&pick);
        offsets[n] = (hi << 32 | lo) >> (n % 40);
    }
    int bad = 0, total = 0;
    for (size_t si = 0; si < sizeof seeds / sizeof seeds[0]; si++)
        for (size_t ti = 0; ti < sizeof streams / sizeof streams[0]; ti++) {
            float dev[N_OFF];
            gkd_status st = gkd_sample_cuda_uniforms(seeds[si], streams[ti], offsets, N_OFF, dev);
            CHECKF(st == GKD_OK, "uniforms: %s", gkd_error_message());
            if (st) return;
            for (int i = 0; i < N_OFF; i++) {
                float host = gkd_rng_uniform_from_word(gkd_rng_word(seeds[si], streams[ti], offsets[i]));
                total++;
                if (memcmp(&host, &dev[i], sizeof host) != 0 && bad++ < 5)
                    fprintf(stderr, "seed %llu stream %llu offset %llu: device %.9g host %.9g\n",
                            (unsigned long long)seeds[si], (unsigned long long)streams[ti],
                            (unsigned long long)offsets[i], dev[i], host);
            }
        }
    CHECKF(bad == 0, "%d of %d device uniforms differ from the host's", bad, total);
}

static void random_row(gkd_rng *rng, int kind, float *x, int n) {
    for (int v = 0; v < n; v++) {
        switch (kind) {
        case 0:
            x[v] = 3.0f * gkd_rng_normal(rng);
            break;
        case 1:
            x[v] = (float)gkd_rng_below(rng, 4);
            break;
        case 2:
            x[v] = v > 0 && gkd_rng_below(rng, 3) == 0 ? x[gkd_rng_below(rng, (uint32_t)v)]
                                                       : gkd_rng_normal(rng);
            break;
        case 3:
            x[v] = gkd_rng_below(rng, 5) == 0 ? -200.0f + gkd_rng_normal(rng) : gkd_rng_normal(rng);
            break;
        default:
            x[v] = 0.5f;
            break;
        }
    }
}

/* B rows of V logits for each combination of the settings: device draws against gkd_sample_token. */
static void test_draws(const gkd_backend *gpu, int V, int B) {
    enum { KINDS = 5 };
    const float temps[] = {0.0f, 0.6f, 1.0f};
    const int top_ks[] = {0, 1, 2, 50};
    const float top_ps[] = {0.1f, 0.9f, 1.0f};
    float *x = malloc(sizeof(float) * B * V), *probs = malloc(sizeof(float) * V),
          *lp = malloc(sizeof(float) * B);
    int *order = malloc(sizeof(int) * V), *tok = malloc(sizeof(int) * B);
    float *dx = gpu->alloc(sizeof(float) * B * V);
    void *ws = gpu->alloc(gkd_sample_cuda_workspace_bytes(B, V));
    CHECK(x && probs && lp && order && tok && dx && ws);
    if (!x || !probs || !lp || !order || !tok || !dx || !ws) return;
    gkd_rng rng;
    gkd_rng_init(&rng, (uint64_t)V, GKD_RNG_STREAM_USER);
    int bad_tok = 0, bad_lp = 0, draws = 0;
    uint64_t offset = 5; /* not a multiple of 4 */
    for (size_t ti = 0; ti < sizeof temps / sizeof temps[0]; ti++)
        for (size_t ki = 0; ki < sizeof top_ks / sizeof top_ks[0]; ki++)
            for (size_t pi = 0; pi < sizeof top_ps / sizeof top_ps[0]; pi++) {
                gkd_sample_config cfg = {.temperature = temps[ti],
                                         .top_k = top_ks[ki],
                                         .top_p = top_ps[pi],
                                         .max_new_tokens = 1,
                                         .eos_id = -1};
                for (int b = 0; b < B; b++) random_row(&rng, b % KINDS, x + (size_t)b * V, V);
                gpu->copy_in(dx, x, sizeof(float) * B * V);
                gkd_status st =
                    gkd_sample_cuda_draw(dx, B, V, &cfg, 1234, GKD_RNG_STREAM_SAMPLE, offset, ws, tok, lp);
                CHECKF(st == GKD_OK, "draw: %s", gkd_error_message());
                if (st) goto out;
                int uses_u = cfg.temperature > 0.0f && cfg.top_k != 1;
                for (int b = 0; b < B; b++) {
                    float u =
                        uses_u
                            ? gkd_rng_uniform_from_word(gkd_rng_word(1234, GKD_RNG_STREAM_SAMPLE, offset + b))
                            : 1.0f;
                    float want_lp;
                    int want = gkd_sample_token(x + (size_t)b * V, V, &cfg, u, probs, order, &want_lp);
                    draws++;
                    if (tok[b] != want && bad_tok++ < 5)
                        fprintf(stderr, "V %d T %g top_k %d top_p %g row %d (kind %d): device %d, cpu %d\n",
                                V, cfg.temperature, cfg.top_k, cfg.top_p, b, b % KINDS, tok[b], want);
                    if (tok[b] == want && fabs(lp[b] - want_lp) > LOGPROB_REL * fmax(1.0, fabs(want_lp)) &&
                        bad_lp++ < 5)
                        fprintf(stderr, "V %d row %d: logprob device %.9g cpu %.9g\n", V, b, lp[b], want_lp);
                }
                offset += (uint64_t)B;
            }
    CHECKF(bad_tok == 0, "V %d: %d of %d device draws differ from gkd_sample_token", V, bad_tok, draws);
    CHECKF(bad_lp == 0, "V %d: %d log-probabilities differ by more than %g relative", V, bad_lp, LOGPROB_REL);
    fprintf(stderr, "V %d: %d device draws compared with gkd_sample_token\n", V, draws);
out:
    gpu->free(dx);
    gpu->free(ws);
    free(x), free(probs), free(lp), free(order), free(tok);
}

int main(void) {
    if (gkd_backend_cuda_device_count() == 0) check_skip("no CUDA device");
    const gkd_backend *gpu = gkd_backend_cuda();
    if (!gpu) {
        fprintf(stderr, "a CUDA device is present but the backend failed: %s\n", gkd_error_message());
        return 1;
    }
    test_uniforms();
    test_draws(gpu, 301, 200);
    test_draws(gpu, 49152, 20);
    CHECK(gkd_backend_cuda_sync() == GKD_OK);
    return check_exit();
}
