/* The precision setting of matrix products (core/tensor/precision.h) on the CPU backend:
 * - gkd_bf16_round against an independent reference (the nearest multiple of the bf16 quantum at x's
 *   exponent, found in double with ties to even), on hand-picked cases (ties both ways, overflow to
 *   infinity, NaN, infinities, subnormals, signed zero) and on a sweep of every upper half of the bit
 *   pattern with lower halves at and around the rounding boundaries;
 * - the API: names, the CPU's refusal of tf32, a backend without precision entries, GKD_PRECISION;
 * - bf16 products equal fp32 products of pre-rounded operands bit for bit (all transposes, beta 0 and not,
 *   padded strides, sizes on the single-threaded and the split paths, batched with shared and interleaved
 *   operands), and differ from unrounded fp32 products by the expected amount;
 * - fp32, the default, is bit-identical to cblas_sgemm, and stays so after a bf16 episode;
 * - a short AdamW training run in bf16 tracks the fp32 one and its loss falls. */
// ctest-labels: cpu
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/tensor/optim.h"
#include "core/tensor/precision.h"
#include "core/base/rng.h"
#include "tests/check.h"

static const gkd_backend *cpu;
static gkd_rng rng;

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---------- rounding ---------- */

/* bf16 keeps 8 significant bits (7 stored) and float's exponent range: for |x| in [2^(e-1), 2^e) with
 * e >= -125 (normal bf16) its values are the multiples of 2^(e-8); below, the subnormals are the multiples
 * of 2^-133. Dividing by a power of two is exact in double and nearbyint rounds ties to even (the default
 * rounding mode), so this is round-to-nearest-even by definition, computed without looking at bits. */
static float ref_bf16(float x) {
    if (isnan(x) || isinf(x) || x == 0.0f) return x;
    int e;
    frexp((double)x, &e);
    double q = ldexp(1.0, e >= -125 ? e - 8 : -133);
    double r = nearbyint((double)x / q) * q;
    const double bf16_max = ldexp(255.0, 120); /* (2 - 2^-7) * 2^127 */
    if (fabs(r) > bf16_max) return copysignf(INFINITY, x);
    return (float)r;
}

static void check_round(uint32_t in, uint32_t want_bits, const char *why) {
    float got = gkd_bf16_round(float_of(in));
    CHECKF(bits_of(got) == want_bits, "%s: round(0x%08x) = 0x%08x, want 0x%08x", why, in, bits_of(got),
           want_bits);
}

static void test_round_cases(void) {
    check_round(0x3f800000u, 0x3f800000u, "1 stays");
    check_round(0x3f807fffu, 0x3f800000u, "just below half an ulp: down");
    check_round(0x3f808000u, 0x3f800000u, "1 + 2^-8, a tie, kept part even: down");
    check_round(0x3f808001u, 0x3f810000u, "just above half an ulp: up");
    check_round(0x3f818000u, 0x3f820000u, "1 + 3*2^-8, a tie, kept part odd: up to even");
    check_round(0xbf818000u, 0xbf820000u, "negative tie rounds in magnitude like the positive one");
    check_round(0x3fffffffu, 0x40000000u, "carry into the exponent");
    check_round(0x80000000u, 0x80000000u, "-0 keeps its sign");
    check_round(0x7f7f7fffu, 0x7f7f0000u, "largest bf16 from below half an ulp above it");
    check_round(0x7f7f8000u, 0x7f800000u, "tie above the largest bf16 (odd): infinity");
    check_round(0x7f7fffffu, 0x7f800000u, "largest float: infinity");
    check_round(0xff7fffffu, 0xff800000u, "most negative float: -infinity");
    check_round(0x7f800000u, 0x7f800000u, "infinity stays");
    check_round(0xff800000u, 0xff800000u, "-infinity stays");
    check_round(0x00000001u, 0x00000000u, "smallest float subnormal: to 0");
    check_round(0x00008000u, 0x00000000u, "tie at half the smallest bf16 subnormal: to even 0");
    check_round(0x00008001u, 0x00010000u, "above it: the smallest bf16 subnormal");
    check_round(0x00018000u, 0x00020000u, "subnormal tie, odd: up");
    check_round(0x807fffffu, 0x80800000u, "largest negative subnormal: up to the smallest normal");
    check_round(0x00400000u, 0x00400000u, "a bf16 subnormal stays (no flush to zero)");
    /* NaNs: a NaN whose payload sits only in the dropped bits would become infinity if truncated */
    uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu, 0xffffffffu};
    for (int i = 0; i < 5; i++) {
        float r = gkd_bf16_round(float_of(nans[i]));
        CHECKF(isnan(r) && signbit(r) == signbit(float_of(nans[i])) && (bits_of(r) & 0xffffu) == 0,
               "NaN 0x%08x -> 0x%08x", nans[i], bits_of(r));
    }
}

/* Every upper half (all exponents, signs, NaN and infinity encodings) with lower halves at the boundaries
 * that decide the rounding, and a random one. */
static void test_round_sweep(void) {
    const uint32_t lows[] = {0x0000u, 0x0001u, 0x3fffu, 0x7ffeu, 0x7fffu, 0x8000u, 0x8001u, 0xc000u, 0xffffu};
    long bad = 0, checked = 0;
    for (uint32_t hi = 0; hi < 0x10000u; hi++)
        for (int k = 0; k <= 9; k++) {
            uint32_t lo = k < 9 ? lows[k] : gkd_rng_below(&rng, 0x10000u);
            float x = float_of(hi << 16 | lo), got = gkd_bf16_round(x), want = ref_bf16(x);
            int ok = isnan(x) ? isnan(got) && signbit(got) == signbit(x) : bits_of(got) == bits_of(want);
            ok = ok && (bits_of(got) & 0xffffu) == 0;
            checked++;
            if (!ok && bad++ < 10)
                fprintf(stderr, "round(0x%08x) = 0x%08x, reference 0x%08x\n", bits_of(x), bits_of(got),
                        bits_of(want));
        }
    CHECKF(bad == 0, "%ld of %ld roundings differ from the reference", bad, checked);
}

/* ---------- API ---------- */

static void test_api(void) {
    static const char *names[] = {"fp32", "tf32", "bf16"};
    for (int i = 0; i < 3; i++) {
        gkd_precision p = (gkd_precision)-1;
        CHECK(gkd_precision_parse(names[i], &p) == GKD_OK && p == (gkd_precision)i);
        CHECK(strcmp(gkd_precision_name(p), names[i]) == 0);
    }
    gkd_precision p = GKD_PRECISION_BF16;
    CHECK(gkd_precision_parse("fp16", &p) == GKD_ERR_ARG && p == GKD_PRECISION_BF16);
    CHECKF(strstr(gkd_error_message(), "fp16") && strstr(gkd_error_message(), "bf16"), "message: %s",
           gkd_error_message());
    CHECK(gkd_precision_parse(NULL, &p) == GKD_ERR_ARG);
    CHECK(strcmp(gkd_precision_name((gkd_precision)7), "?") == 0);

    gkd_precision was = (gkd_precision)-1;
    CHECK(gkd_backend_precision(cpu) == GKD_PRECISION_FP32);
    CHECK(gkd_backend_set_precision(cpu, GKD_PRECISION_BF16, &was) == GKD_OK && was == GKD_PRECISION_FP32);
    CHECK(gkd_backend_precision(cpu) == GKD_PRECISION_BF16);
    /* tf32 is refused with a reason, and the setting stays */
    CHECK(gkd_backend_set_precision(cpu, GKD_PRECISION_TF32, &was) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "tf32") && strstr(gkd_error_message(), "cpu"), "message: %s",
           gkd_error_message());
    CHECK(gkd_backend_precision(cpu) == GKD_PRECISION_BF16);
    CHECK(gkd_backend_set_precision(cpu, (gkd_precision)9, NULL) == GKD_ERR_ARG);
    CHECK(gkd_backend_set_precision(cpu, GKD_PRECISION_FP32, &was) == GKD_OK && was == GKD_PRECISION_BF16);
    CHECK(gkd_backend_set_precision(NULL, GKD_PRECISION_FP32, NULL) == GKD_ERR_ARG);

    /* a backend without the entries offers fp32 only */
    gkd_backend bare = *cpu;
    bare.name = "bare";
    bare.precision = NULL;
    bare.set_precision = NULL;
    CHECK(gkd_backend_precision(&bare) == GKD_PRECISION_FP32);
    CHECK(gkd_backend_set_precision(&bare, GKD_PRECISION_FP32, &was) == GKD_OK && was == GKD_PRECISION_FP32);
    CHECK(gkd_backend_set_precision(&bare, GKD_PRECISION_BF16, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "bare"), "message: %s", gkd_error_message());

    /* the environment variable, as each backend's initialisation reads it */
    setenv("GKD_PRECISION", "tf32", 1);
    CHECK(gkd_precision_from_env("test", &p) == 1 && p == GKD_PRECISION_TF32);
    setenv("GKD_PRECISION", "half", 1); /* prints a note, reports nothing set */
    p = GKD_PRECISION_BF16;
    CHECK(gkd_precision_from_env("test", &p) == 0 && p == GKD_PRECISION_BF16);
    setenv("GKD_PRECISION", "", 1);
    CHECK(gkd_precision_from_env("test", &p) == 0);
    unsetenv("GKD_PRECISION");
    CHECK(gkd_precision_from_env("test", &p) == 0);
}

/* ---------- products ---------- */

static float *frand(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * gkd_rng_normal(&rng);
    return x;
}

static float *rounded_copy(const float *x, size_t n) {
    float *r = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) r[i] = gkd_bf16_round(x[i]);
    return r;
}

static int same_bits(const float *a, const float *b, size_t n, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if (bits_of(a[i]) != bits_of(b[i])) {
            *at = i;
            return 0;
        }
    return 1;
}

static void set_precision(gkd_precision p) {
    if (gkd_backend_set_precision(cpu, p, NULL) != GKD_OK) {
        fprintf(stderr, "set_precision(%s): %s\n", gkd_precision_name(p), gkd_error_message());
        exit(1);
    }
}

/* One product four ways: bf16 on the raw operands, fp32 on pre-rounded ones (must match bit for bit),
 * fp32 on the raw ones (must differ by about bf16's rounding: 2^-9 relative per operand), and, for the
 * fp32 default, cblas_sgemm itself when the product is small enough to stay on one thread. */
static void product_case(int ta, int tb, int M, int N, int K, float alpha, float beta) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *a = frand(na, 1), *b = frand(nb, 1), *c0 = frand(nc, 1);
    float *ra = rounded_copy(a, na), *rb = rounded_copy(b, nb);
    float *c_bf16 = malloc(nc * sizeof(float)), *c_ref = malloc(nc * sizeof(float)),
          *c_fp32 = malloc(nc * sizeof(float)), *c_blas = malloc(nc * sizeof(float));
    memcpy(c_ref, c0, nc * sizeof(float));
    memcpy(c_fp32, c0, nc * sizeof(float));
    memcpy(c_blas, c0, nc * sizeof(float));
    if (beta == 0.0f) /* beta = 0 ignores c: NaN must not leak into the result */
        for (size_t i = 0; i < nc; i++) c_bf16[i] = NAN;
    else
        memcpy(c_bf16, c0, nc * sizeof(float));
    set_precision(GKD_PRECISION_BF16);
    cpu->matmul(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c_bf16, ldc);
    set_precision(GKD_PRECISION_FP32);
    cpu->matmul(ta, tb, M, N, K, alpha, ra, lda, rb, ldb, beta, c_ref, ldc);
    cpu->matmul(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c_fp32, ldc);
    char what[96];
    snprintf(what, sizeof what, "ta=%d tb=%d %dx%dx%d alpha=%g beta=%g", ta, tb, M, N, K, alpha, beta);
    /* padding columns of c: untouched by every path (the bf16 one kept its NaN there when beta = 0) */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++) {
            size_t k = (size_t)i * ldc + j;
            CHECKF(beta == 0.0f ? isnan(c_bf16[k]) : bits_of(c_bf16[k]) == bits_of(c0[k]),
                   "%s: padding written at %zu", what, k);
            c_bf16[k] = c0[k];
        }
    size_t at = 0;
    CHECKF(same_bits(c_bf16, c_ref, nc, &at),
           "%s: bf16 product differs from fp32 on rounded operands at %zu: %.9g vs %.9g", what, at,
           c_bf16[at], c_ref[at]);
    /* each product term carries up to ~2^-8 relative error from rounding both operands; over K random
     * terms the result moves by ~2^-9 * sqrt(2) of its own scale: between 1e-4 and 3e-2 of it */
    double se = 0, sw = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            size_t k = (size_t)i * ldc + j;
            double want = c_fp32[k] - beta * c0[k]; /* the product part alone */
            se += ((double)c_bf16[k] - c_fp32[k]) * ((double)c_bf16[k] - c_fp32[k]);
            sw += want * want;
        }
    double rel = sw > 0 ? sqrt(se / sw) : 0;
    CHECKF(K == 0 || (rel > 1e-4 && rel < 3e-2), "%s: bf16 vs fp32 relative rms difference %.3g", what, rel);
    if ((double)M * N * K < (1 << 21)) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, a, lda, b, ldb, beta, c_blas, ldc);
        CHECKF(same_bits(c_fp32, c_blas, nc, &at), "%s: fp32 default differs from cblas_sgemm at %zu", what,
               at);
    }
    free(a), free(b), free(c0), free(ra), free(rb), free(c_bf16), free(c_ref), free(c_fp32), free(c_blas);
}

static void test_products(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            product_case(ta, tb, 5, 7, 3, 1.0f, 0.0f);
            product_case(ta, tb, 40, 61, 50, -0.5f, 1.0f);
            product_case(ta, tb, 1, 33, 17, 1.0f, 0.25f);
            product_case(ta, tb, 150, 140, 200, 1.0f, 0.0f); /* above 2^21 flops: split across threads */
            product_case(ta, tb, 90, 300, 160, 2.0f, 1.0f);  /* split by columns */
        }
}

/* batched: a shared operand (stride 0), and operands interleaved like attention heads (matrices closer
 * than their extent: stride < rows * ld) */
static void test_batched(void) {
    for (int t = 0; t < 2; t++) {
        const int M = 9, N = 11, K = 13, batch = 6;
        int lda = 4 * (t ? M : K), ldb = t ? K : N, ldc = N + 1;
        size_t sa = t ? (size_t)M : (size_t)K, sc = (size_t)M * ldc; /* a: heads side by side in a row */
        size_t na = (size_t)(t ? K : M) * lda + (size_t)batch * sa, nb = (size_t)(t ? N : K) * ldb,
               nc = (size_t)batch * sc;
        float *a = frand(na, 1), *b = frand(nb, 1), *c0 = frand(nc, 1);
        float *ra = rounded_copy(a, na), *rb = rounded_copy(b, nb);
        float *got = malloc(nc * sizeof(float)), *want = malloc(nc * sizeof(float));
        memcpy(got, c0, nc * sizeof(float));
        memcpy(want, c0, nc * sizeof(float));
        set_precision(GKD_PRECISION_BF16);
        cpu->matmul_batched(t, t, M, N, K, 0.5f, a, lda, sa, b, ldb, 0, 1.0f, got, ldc, sc, batch);
        set_precision(GKD_PRECISION_FP32);
        cpu->matmul_batched(t, t, M, N, K, 0.5f, ra, lda, sa, rb, ldb, 0, 1.0f, want, ldc, sc, batch);
        size_t at = 0;
        CHECKF(same_bits(got, want, nc, &at), "matmul_batched t=%d: differs at %zu: %.9g vs %.9g", t, at,
               got[at], want[at]);
        free(a), free(b), free(c0), free(ra), free(rb), free(got), free(want);
    }
}

/* ---------- training ---------- */

enum { TB = 4, TT = 16, STEPS = 25 };

typedef struct {
    float loss[STEPS];
    float *init, *params; /* before the first step and after the last */
    size_t n;
} train_run;

/* A tiny model learning fixed sequences (each row an arithmetic progression mod V) with AdamW, from the
 * same initial weights every time. */
static void train(train_run *out) {
    gkd_model_config cfg = {.vocab_size = 32,
                            .dim = 32,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = 2,
                            .hidden_dim = 64,
                            .max_seq_len = TT,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    gkd_optim *o = NULL;
    gkd_optim_config oc = gkd_optim_config_default();
    oc.lr = 1e-2f;
    if (gkd_model_create(&cfg, cpu, &m) != GKD_OK || gkd_optim_create(&oc, m, &o) != GKD_OK) {
        fprintf(stderr, "setup: %s\n", gkd_error_message());
        exit(1);
    }
    gkd_model_init_weights(m, 11);
    out->n = gkd_model_num_params(m);
    out->init = malloc(out->n * sizeof(float));
    memcpy(out->init, gkd_model_params(m), out->n * sizeof(float));
    int tokens[TB * TT], targets[TB * TT];
    float mask[TB * TT];
    for (int b = 0; b < TB; b++)
        for (int t = 0; t < TT; t++) {
            tokens[b * TT + t] = (b + (2 * b + 1) * t) % cfg.vocab_size;
            targets[b * TT + t] = (b + (2 * b + 1) * (t + 1)) % cfg.vocab_size;
            mask[b * TT + t] = 1.0f;
        }
    float *dhidden = malloc((size_t)TB * TT * cfg.dim * sizeof(float));
    for (int s = 0; s < STEPS; s++) {
        const float *hidden = NULL;
        gkd_model_zero_grad(m);
        gkd_status st = gkd_model_forward(m, tokens, TB, TT, &hidden);
        if (st == GKD_OK)
            st = gkd_model_ce_loss(m, hidden, targets, mask, TB, TT, GKD_NORM_TOKEN, &out->loss[s], dhidden);
        if (st == GKD_OK) st = gkd_model_backward(m, dhidden);
        if (st == GKD_OK) st = gkd_optim_step(o, NULL);
        if (st != GKD_OK) {
            fprintf(stderr, "step %d: %s\n", s, gkd_error_message());
            exit(1);
        }
    }
    out->params = malloc(out->n * sizeof(float));
    memcpy(out->params, gkd_model_params(m), out->n * sizeof(float));
    free(dhidden);
    gkd_optim_free(o);
    gkd_model_free(m);
}

static void test_training(void) {
    train_run fp32, bf16, fp32_again;
    set_precision(GKD_PRECISION_FP32);
    train(&fp32);
    set_precision(GKD_PRECISION_BF16);
    train(&bf16);
    set_precision(GKD_PRECISION_FP32);
    train(&fp32_again);
    /* the default path is untouched by a bf16 episode: same bits */
    size_t at = 0;
    CHECKF(same_bits(fp32.params, fp32_again.params, fp32.n, &at) &&
               memcmp(fp32.loss, fp32_again.loss, sizeof fp32.loss) == 0,
           "fp32 training differs after a bf16 run (parameter %zu)", at);
    /* bf16 learns: the loss of the fixed sequences falls well below its start (ln 32 = 3.47) */
    CHECKF(bf16.loss[STEPS - 1] < 0.5f * bf16.loss[0], "bf16 loss %.4f -> %.4f", bf16.loss[0],
           bf16.loss[STEPS - 1]);
    /* Step 0 sees the same weights: only the products' rounding differs (~2^-9 relative per operand) and
     * the initial logits are small, so the loss moves by ~1e-6 of itself (measured 3e-6; 1e-4 allows 30x).
     * Later steps compound it through AdamW, whose normalisation turns small differences of near-zero
     * gradients into differences of up to lr per parameter per step: the curves drift apart by up to ~1%
     * of the starting loss (measured 0.029 of 3.46 at step 19; 3% allows 3x), and the parameters' changes
     * by ~20% (measured 0.18 of the distance fp32 travelled from the initial weights; 40% allows 2x).
     * A broken product (an operand unrounded on one side, a lost beta, a wrong transpose) either does not
     * learn, leaving the loss near 3.4 where fp32 reaches 0.09, or moves step 0 by far more than 1e-4. */
    CHECKF(fabsf(bf16.loss[0] - fp32.loss[0]) <= 1e-4f * fp32.loss[0], "step 0 loss: bf16 %.7f fp32 %.7f",
           bf16.loss[0], fp32.loss[0]);
    CHECKF(bf16.loss[0] != fp32.loss[0], "bf16 loss equals fp32's bit for bit: was bf16 in effect?");
    double worst = 0;
    for (int s = 0; s < STEPS; s++) worst = fmax(worst, fabs(bf16.loss[s] - fp32.loss[s]));
    CHECKF(worst <= 0.03 * fp32.loss[0], "bf16 loss drifts up to %.4f from fp32's (start %.4f)", worst,
           fp32.loss[0]);
    double dp = 0, moved = 0;
    for (size_t i = 0; i < fp32.n; i++) {
        dp += ((double)bf16.params[i] - fp32.params[i]) * ((double)bf16.params[i] - fp32.params[i]);
        moved += ((double)fp32.params[i] - fp32.init[i]) * ((double)fp32.params[i] - fp32.init[i]);
    }
    double rel = sqrt(dp / moved);
    CHECKF(rel <= 0.4, "bf16 parameters end %.3g (of fp32's distance travelled) from fp32's", rel);
    fprintf(stderr, "training: fp32 loss %.4f -> %.4f, bf16 %.4f -> %.4f, worst loss gap %.4f, params %.3f\n",
            fp32.loss[0], fp32.loss[STEPS - 1], bf16.loss[0], bf16.loss[STEPS - 1], worst, rel);
    free(fp32.init), free(bf16.init), free(fp32_again.init);
    free(fp32.params), free(bf16.params), free(fp32_again.params);
}

int main(void) {
    /* the CPU backend reads GKD_PRECISION once, when first asked for */
    setenv("GKD_PRECISION", "bf16", 1);
    cpu = gkd_backend_cpu();
    unsetenv("GKD_PRECISION");
    CHECKF(gkd_backend_precision(cpu) == GKD_PRECISION_BF16, "GKD_PRECISION=bf16 at initialisation gave %s",
           gkd_precision_name(gkd_backend_precision(cpu)));
    set_precision(GKD_PRECISION_FP32);
    gkd_rng_init(&rng, 77, GKD_RNG_STREAM_USER);
    test_round_cases();
    test_round_sweep();
    test_api();
    test_products();
    test_batched();
    test_training();
    return check_exit();
}
