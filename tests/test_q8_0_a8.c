/* The q8_0_a8 weight format (core/tensor/weights.h): q8_0 weights times activation rows quantised to q8_0
 * blocks per product, exact int32 block sums.
 * - the activation quantiser: the AVX-512 one gives exactly the definition's scales and bytes (ties round
 *   half away from zero, blocks of zeros have scale 0);
 * - the product of every path (own VNNI kernel, plain C) against a reference written here from the
 *   definition, the block sums in integers and the sum over blocks in double: the only difference allowed
 *   is fp32 accumulation, |err| <= (nb + 2) 2^-24 sum_b |dx dw S| (one rounding of the scale product, one
 *   of each fused or separate add); odd row counts, output counts that are not a multiple of the kernel's
 *   16-feature panels, blocks of zeros;
 * - a row gives the same bits alone (decoding) as inside many rows, and the thread count changes no bit;
 * - whole models: logits against exact fp32 ones within a stated bound, both paths close to each other;
 *   sampling runs; a dimension that is not a multiple of 32 is refused, naming the format. */
// ctest-labels: cpu
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/base/rng.h"
#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/tensor/packed_cpu.h"
#include "core/tensor/sample.h"
#include "tests/check.h"
#include "tests/weight_models.h"

static const gkd_weight_format A8 = GKD_WEIGHTS_Q8_0_A8;

static int have_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* One block of 32 as the definition says: d = max|x| / 127, q = round(x * (1/d)) half away from zero, the
 * product x * (1/d) rounded to fp32 first; d = 0 and q = 0 for a block of zeros. */
static float quantize_block(int *q, const float *x) {
    float amax = 0.0f;
    for (int k = 0; k < 32; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int k = 0; k < 32; k++) {
        const float t = x[k] * id;
        double r = t < 0.0f ? -floor(-(double)t + 0.5) : floor((double)t + 0.5);
        q[k] = (int)(r > 127.0 ? 127.0 : r < -127.0 ? -127.0 : r);
    }
    return d;
}

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    gkd_rng r = {seed, 7, 0};
    for (size_t i = 0; i < n; i++) x[i] = scale * gkd_rng_normal(&r);
}

static void test_quantizer(void) {
    if (!have_vnni()) {
        printf("no AVX-512 VNNI: the vector quantiser is not run here\n");
        return;
    }
    enum { IN = 32 * 6 };
    float x[IN];
    fill(x, IN, 3, 2.0f);
    /* block 0: max 127, so d = 1 and x itself is rounded: ties go away from zero */
    const float ties[] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 0.49999997f, -126.5f, 3.4999998f, 1.5f, -1.5f};
    for (int k = 0; k < 32; k++) x[k] = k < 10 ? ties[k] : (float)(k - 16) * 0.25f;
    for (int k = 64; k < 96; k++) x[k] = 0.0f;         /* block 2: zeros */
    for (int k = 96; k < 128; k++) x[k] = -1e-30f * k; /* block 3: tiny values */
    x[160] = 1e30f;                                    /* block 5: one huge value */
    uint8_t xq[IN];
    float dx[IN / 32];
    gkd_packed_vnni_quantize_a8(xq, dx, x, IN);
    for (int b = 0; b < IN / 32; b++) {
        int q[32];
        float d = quantize_block(q, x + 32 * b);
        CHECKF(memcmp(&d, &dx[b], sizeof d) == 0, "block %d: scale %a, definition %a", b, dx[b], d);
        for (int k = 0; k < 32; k++)
            CHECKF(xq[32 * b + k] == q[k] + 128, "block %d value %d (%a): %d, definition %d", b, k,
                   x[32 * b + k], xq[32 * b + k] - 128, q[k]);
    }
    const int want[] = {127, 3, -3, 1, -1, 0, -127, 3, 2, -2};
    for (int k = 0; k < 10; k++)
        CHECKF(xq[k] - 128 == want[k], "tie %d: %d, want %d", k, xq[k] - 128, want[k]);
}

/* y = x W^T from the definition: weights and activations quantised per block, block sums in integers, the
 * sum over blocks in double; mag: sum of |terms| per entry. */
static void reference(double *y, double *mag, const float *x, int ldx, const float *w, int N, int out,
                      int in) {
    const int nb = in / 32;
    int *qw = malloc(sizeof(int) * out * in), *qx = malloc(sizeof(int) * in);
    float *dw = malloc(sizeof(float) * out * nb), *dx = malloc(sizeof(float) * nb);
    for (int o = 0; o < out; o++)
        for (int b = 0; b < nb; b++)
            dw[o * nb + b] = quantize_block(qw + (size_t)o * in + 32 * b, w + (size_t)o * in + 32 * b);
    for (int n = 0; n < N; n++) {
        for (int b = 0; b < nb; b++) dx[b] = quantize_block(qx + 32 * b, x + (size_t)n * ldx + 32 * b);
        for (int o = 0; o < out; o++) {
            double s = 0.0, m = 0.0;
            for (int b = 0; b < nb; b++) {
                long S = 0;
                for (int k = 0; k < 32; k++) S += (long)qx[32 * b + k] * qw[(size_t)o * in + 32 * b + k];
                const double t = (double)(dx[b] * dw[o * nb + b]) * (double)S;
                s += t;
                m += fabs(t);
            }
            y[(size_t)n * out + o] = s;
            mag[(size_t)n * out + o] = m;
        }
    }
    free(qw), free(qx), free(dw), free(dx);
}

/* One shape on every path against the reference; x holds blocks of zeros when `zeros`. */
static void test_product(const gkd_backend *be, int N, int out, int in, int zeros) {
    const int ldx = in + 32, ldy = out + 3, nb = in / 32;
    float *w = malloc(sizeof(float) * out * in), *x = malloc(sizeof(float) * N * ldx);
    float *y = malloc(sizeof(float) * N * ldy), *y1 = malloc(sizeof(float) * out);
    double *ref = malloc(sizeof(double) * N * out), *mag = malloc(sizeof(double) * N * out);
    fill(w, (size_t)out * in, 21 + out, 0.05f);
    fill(x, (size_t)N * ldx, 23 + N, 1.0f);
    if (zeros) {
        for (int n = 0; n < N; n += 2)
            for (int k = 0; k < 32; k++) x[(size_t)n * ldx + 32 * (n % nb) + k] = 0.0f;
        for (int k = 0; k < 32; k++) w[(size_t)(out / 2) * in + k] = 0.0f;
    }
    reference(ref, mag, x, ldx, w, N, out, in);
    void *p = malloc(be->packed_bytes(A8, out, in));
    void *scratch = malloc(be->packed_scratch_bytes(A8, N, in));
    be->pack(p, w, A8, out, in);
    for (int portable = 0; portable <= 1; portable++) {
        gkd_packed_cpu_force_portable(portable);
        const char *path = gkd_packed_cpu_path(A8, N);
        for (size_t i = 0; i < (size_t)N * ldy; i++) y[i] = NAN;
        be->packed_matmul(y, ldy, x, ldx, p, A8, N, out, in, scratch);
        double worst = 0.0;
        int bad = 0;
        for (int n = 0; n < N; n++) {
            for (int o = 0; o < out; o++) {
                const double got = y[(size_t)n * ldy + o],
                             tol = (nb + 2) * 0x1p-24 * mag[(size_t)n * out + o];
                const double err = fabs(got - ref[(size_t)n * out + o]);
                if (!(err <= tol)) bad++;
                if (tol > 0 && err / tol > worst) worst = err / tol;
            }
            for (int o = out; o < ldy; o++) bad += !isnan(y[(size_t)n * ldy + o]); /* nothing past `out` */
        }
        CHECKF(bad == 0,
               "q8_0_a8 N=%d out=%d in=%d zeros=%d on path %s: %d entries off (worst %.3g of the bound)", N,
               out, in, zeros, path, bad, worst);
        /* the last row alone, as decoding computes it: the same bits */
        const int last = N - 1;
        be->packed_matmul(y1, out, x + (size_t)last * ldx, ldx, p, A8, 1, out, in, scratch);
        CHECKF(memcmp(y1, y + (size_t)last * ldy, sizeof(float) * out) == 0,
               "q8_0_a8 N=%d out=%d in=%d on path %s: row %d alone differs from the same row among %d", N,
               out, in, path, last, N);
    }
    gkd_packed_cpu_force_portable(0);
    free(w), free(x), free(y), free(y1), free(ref), free(mag), free(p), free(scratch);
}

/* A product large enough to be split across the team: 1 and 2 threads give the same bits. */
static void test_threads(const gkd_backend *be) {
#ifdef _OPENMP
    const int N = 64, out = 200, in = 576;
    float *w = malloc(sizeof(float) * out * in), *x = malloc(sizeof(float) * N * in);
    float *y1 = malloc(sizeof(float) * N * out), *y2 = malloc(sizeof(float) * N * out);
    fill(w, (size_t)out * in, 5, 0.05f);
    fill(x, (size_t)N * in, 6, 1.0f);
    void *p = malloc(be->packed_bytes(A8, out, in)), *scratch = malloc(be->packed_scratch_bytes(A8, N, in));
    be->pack(p, w, A8, out, in);
    const int was = omp_get_max_threads();
    omp_set_num_threads(1);
    be->packed_matmul(y1, out, x, in, p, A8, N, out, in, scratch);
    omp_set_num_threads(2);
    be->packed_matmul(y2, out, x, in, p, A8, N, out, in, scratch);
    omp_set_num_threads(was);
    CHECKF(memcmp(y1, y2, sizeof(float) * N * out) == 0, "q8_0_a8: 1 and 2 threads give different bits");
    free(w), free(x), free(y1), free(y2), free(p), free(scratch);
#else
    (void)be;
#endif
}

enum { TL = 21 };

static void test_models(void) {
    gkd_model_config cfg = {.vocab_size = 97,
                            .dim = 64,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = 2,
                            .hidden_dim = 96,
                            .max_seq_len = 48,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f,
                            .tied_embeddings = 1};
    int tokens[TL];
    for (int t = 0; t < TL; t++) tokens[t] = (t * 37 + 5) % cfg.vocab_size;
    const size_t VL = (size_t)cfg.vocab_size * TL;
    float *exact = malloc(VL * sizeof(float)), *got = malloc(VL * sizeof(float)),
          *port = malloc(VL * sizeof(float));
    gkd_model *fp = make(&cfg, GKD_MODEL_INFERENCE, GKD_WEIGHTS_FP32, 6),
              *q = make(&cfg, GKD_MODEL_INFERENCE, A8, 6);
    CHECK(gkd_model_weight_format(q) == A8 && gkd_model_params(q) == NULL);
    if (gkd_model_logits(fp, tokens, TL, exact) || gkd_model_logits(q, tokens, TL, got)) die("logits");
    gkd_packed_cpu_force_portable(1);
    if (gkd_model_logits(q, tokens, TL, port)) die("logits");
    gkd_packed_cpu_force_portable(0);
    double scale, d = max_abs_diff(got, exact, VL, &scale), dp = max_abs_diff(port, got, VL, NULL);
    printf("q8_0_a8 vs exact fp32 logits: max |diff| %.3g (max |logit| %.3g); portable vs %s: %.3g\n", d,
           scale, gkd_packed_cpu_path(A8, TL), dp);
    /* weights and activations each lose up to half a step of 1/127 of their block's largest: about 1 % per
     * product in the worst case, a few % of the largest logit after 2 layers */
    CHECKF(d <= 0.08 * scale && d > 0.0, "q8_0_a8 vs exact logits: %g of %g", d, scale);
    /* the same quantised operands and exact block sums: only fp32 sums in another order (which can move an
     * activation across a rounding boundary of the next layer's quantiser, rarely) */
    CHECKF(dp <= 1e-3 * scale, "q8_0_a8 portable vs vector path: %g of %g", dp, scale);
    gkd_model_memory mf, mq;
    gkd_model_memory_usage(fp, &mf);
    gkd_model_memory_usage(q, &mq);
    CHECKF(mq.params * 3 < mf.params, "parameter bytes: q8_0_a8 %zu, fp32 %zu", mq.params, mf.params);

    gkd_sample_config sc = {
        .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = 8, .eos_id = -1};
    int prompt[4] = {3, 9, 27, 81}, plen = 4, toks[8], len = 0;
    float lp[8];
    gkd_rng rng = {1, GKD_RNG_STREAM_SAMPLE, 0};
    CHECK(gkd_sample_generate(q, prompt, &plen, 1, 4, &sc, &rng, toks, &len, lp) == GKD_OK && len == 8);
    for (int i = 0; i < len; i++) CHECKF(isfinite(lp[i]) && lp[i] <= 0.0f, "log-prob %d: %g", i, lp[i]);
    gkd_model_free(fp);
    gkd_model_free(q);

    gkd_model_config bad = cfg;
    bad.dim = 48;
    gkd_model *m = make(&bad, GKD_MODEL_INFERENCE, GKD_WEIGHTS_FP32, 6);
    CHECK(gkd_model_set_weight_format(m, A8) == GKD_ERR_ARG && strstr(gkd_error_message(), "q8_0_a8") &&
          strstr(gkd_error_message(), "dim = 48 must be a multiple of 32"));
    gkd_model_free(m);
    gkd_weight_format f;
    CHECK(gkd_weight_format_parse("q8_0_a8", "--weights", &f) == GKD_OK && f == A8);
    CHECK(strcmp(gkd_weight_format_name(A8), "q8_0_a8") == 0);
    free(exact), free(got), free(port);
}

int main(void) {
    const gkd_backend *be = gkd_backend_cpu();
    test_quantizer();
    const int rows[] = {1, 2, 3, 4, 5, 15, 16, 17, 100};
    const int outs[] = {1, 17, 37, 70, 96, 160};
    for (int i = 0; i < (int)(sizeof rows / sizeof rows[0]); i++)
        for (int j = 0; j < (int)(sizeof outs / sizeof outs[0]); j++) {
            test_product(be, rows[i], outs[j], 64, 0);
            test_product(be, rows[i], outs[j], 576, j % 2);
        }
    test_product(be, 7, 33, 32, 1);
    CHECK(be->packed_bytes(A8, 4, 48) == 0);
    test_threads(be);
    test_models();
    return check_exit();
}
