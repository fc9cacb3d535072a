/* Packed weight formats of inference models (core/tensor/weights.h, gkd_model_set_weight_format):
 * - packing: bf16 weights are exactly gkd_bf16_round of the fp32 ones (ties to even, subnormals, overflow,
 *   NaN), and so are the activations the AVX-512 path rounds; q8_0 blocks are what the quantiser's
 *   definition gives, computed here independently;
 * - the packed product of every path (oneDNN, own AVX-512 kernels, portable) against a double-precision
 *   sum over the rounded operands: equal up to fp32 accumulation, |err| <= (in + 2) 2^-24 sum|terms|;
 * - whole models: a bf16 model equals an fp32 model with the same weights whose products round both
 *   operands (the backend's bf16 precision, core/tensor/precision.h) up to the order of fp32 sums; the
 *   logits of bf16 and q8_0 models against exact fp32 ones within a stated tolerance; sampling and scoring
 *   end to end; the memory drop;
 * - refusals: trainable models, a backend without packed weights, a second change, q8_0 dimensions. */
// ctest-labels: cpu
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"
#include "core/tensor/backend.h"
#include "core/tensor/backend_sim.h"
#include "core/tensor/model.h"
#include "core/tensor/packed_cpu.h"
#include "core/tensor/precision.h"
#include "core/tensor/sample.h"
#include "tests/check.h"
#include "tests/weight_models.h"

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Values that exercise the rounding: ties with even and odd kept parts, just above and below a tie,
 * subnormals, the largest finite float (rounds to infinity), infinities, NaNs, zeros. */
static const uint32_t special[] = {
    0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0x00000001u, 0x00008000u,
    0x00018000u, 0x807fffffu, 0x7f7fffffu, 0x7f7f7fffu, 0x7f800000u, 0xff800000u,
    0x7fc00001u, 0xffa00000u, 0x00000000u, 0x80000000u, 0x3effffffu, 0xc0490fdbu,
};
enum { N_SPECIAL = sizeof special / sizeof special[0] };

static void test_bf16_rounding(const gkd_backend *be) {
    const int rows = N_SPECIAL, cols = 1;
    float w[N_SPECIAL];
    for (int i = 0; i < rows; i++) w[i] = from_bits(special[i]);
    size_t bytes = be->packed_bytes(GKD_WEIGHTS_BF16, rows, cols);
    CHECK(bytes == (size_t)rows * cols * 2);
    void *p = malloc(bytes);
    float out[N_SPECIAL];
    int tokens[N_SPECIAL];
    for (int i = 0; i < rows; i++) tokens[i] = i;
    be->pack(p, w, GKD_WEIGHTS_BF16, rows, cols);
    be->packed_rows(out, tokens, p, GKD_WEIGHTS_BF16, rows, rows, cols);
    for (int i = 0; i < rows; i++) {
        float want = gkd_bf16_round(w[i]);
        CHECKF(bits(out[i]) == bits(want) ||
                   (isnan(out[i]) && isnan(want) && signbit(out[i]) == signbit(want)),
               "weight %08x packs to %08x, gkd_bf16_round gives %08x", special[i], bits(out[i]), bits(want));
    }
    free(p);
    /* the activations' vector rounding, on a CPU that runs it: every special value in every lane position */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
        enum { n = 16 * 3 + 5 };
        float x[n];
        uint16_t r[n];
        for (int i = 0; i < n; i++) x[i] = from_bits(special[i % N_SPECIAL]);
        gkd_packed_avx512_round_bf16(r, x, n);
        for (int i = 0; i < n; i++) {
            uint32_t want = bits(gkd_bf16_round(x[i])) >> 16;
            CHECKF(r[i] == want, "activation %08x rounds to %04x, gkd_bf16_round to %04x", bits(x[i]), r[i],
                   want);
        }
    }
}

/* The q8_0 weights, from the format's definition: d = max|w| / 127 per block of 32, q = round(w / d) half
 * away from zero; the product uses the float d * q. */
static void q8_0_reference(float *wq, const float *w, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < cols / 32; b++) {
            const float *wb = w + (size_t)r * cols + b * 32;
            double amax = 0.0;
            for (int k = 0; k < 32; k++) amax = fabs(wb[k]) > amax ? fabs(wb[k]) : amax;
            float d = (float)amax / 127.0f;
            for (int k = 0; k < 32; k++) {
                double q = d > 0.0f ? round((double)wb[k] * (double)(1.0f / d)) : 0.0;
                wq[(size_t)r * cols + b * 32 + k] = d * (float)q;
            }
        }
}

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    gkd_rng r = {seed, 7, 0};
    for (size_t i = 0; i < n; i++) x[i] = scale * gkd_rng_normal(&r);
}

/* The packed product of one shape against double sums over the operands as the format defines them. */
static void test_product(const gkd_backend *be, gkd_weight_format f, int N, int out, int in) {
    float *w = malloc(sizeof(float) * out * in), *wr = malloc(sizeof(float) * out * in);
    float *x = malloc(sizeof(float) * N * (in + 3)), *y = malloc(sizeof(float) * N * (out + 5));
    fill(w, (size_t)out * in, 11 + out, 0.05f);
    fill(x, (size_t)N * (in + 3), 13 + N, 1.0f);
    const int ldx = in + 3, ldy = out + 5; /* strided rows, as the model's callers may pass */
    if (f == GKD_WEIGHTS_BF16)
        for (size_t i = 0; i < (size_t)out * in; i++) wr[i] = gkd_bf16_round(w[i]);
    else
        q8_0_reference(wr, w, out, in);
    void *p = malloc(be->packed_bytes(f, out, in));
    void *scratch = malloc(be->packed_scratch_bytes(f, N, in));
    be->pack(p, w, f, out, in);
    for (int portable = 0; portable <= 1; portable++) {
        gkd_packed_cpu_force_portable(portable);
        const char *path = gkd_packed_cpu_path(f, N);
        be->packed_matmul(y, ldy, x, ldx, p, f, N, out, in, scratch);
        double worst = 0.0;
        for (int n = 0; n < N; n++)
            for (int o = 0; o < out; o++) {
                double sum = 0.0, mag = 0.0;
                for (int k = 0; k < in; k++) {
                    double xv = x[(size_t)n * ldx + k];
                    if (f == GKD_WEIGHTS_BF16) xv = gkd_bf16_round((float)xv);
                    double t = xv * wr[(size_t)o * in + k];
                    sum += t;
                    mag += fabs(t);
                }
                double err = fabs(y[(size_t)n * ldy + o] - sum), tol = (in + 2) * 0x1p-24 * mag + 1e-30;
                if (err / tol > worst) worst = err / tol;
            }
        CHECKF(worst <= 1.0, "%s product N=%d out=%d in=%d on path %s: error %.3g of the fp32 bound",
               gkd_weight_format_name(f), N, out, in, path, worst);
    }
    gkd_packed_cpu_force_portable(0);
    free(w), free(wr), free(x), free(y), free(p), free(scratch);
}

static gkd_model_config small_config(int V, int C, int F) {
    gkd_model_config cfg = {.vocab_size = V,
                            .dim = C,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = 2,
                            .hidden_dim = F,
                            .max_seq_len = 48,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f,
                            .tied_embeddings = 1};
    return cfg;
}

enum { TL = 21 };

static void logits_of(gkd_model *m, const int *tokens, float *out) {
    if (gkd_model_logits(m, tokens, TL, out)) die("logits");
}

static void test_models(void) {
    const gkd_backend *be = gkd_backend_cpu();
    int tokens[TL];
    /* C = 24, F = 40: rows that are not a multiple of the 32 bf16 lanes take the kernels' tails */
    gkd_model_config cfg = small_config(97, 24, 40);
    for (int t = 0; t < TL; t++) tokens[t] = (t * 37 + 5) % cfg.vocab_size;
    const size_t VL = (size_t)cfg.vocab_size * TL;
    float *exact = malloc(VL * sizeof(float)), *ref = malloc(VL * sizeof(float)),
          *got = malloc(VL * sizeof(float));

    gkd_model *fp = make(&cfg, GKD_MODEL_INFERENCE, GKD_WEIGHTS_FP32, 5);
    logits_of(fp, tokens, exact);
    gkd_model_memory mem_fp, mem_bf;
    gkd_model_memory_usage(fp, &mem_fp);
    /* The bf16 format's definition: an fp32 model whose matrices hold the rounded weights (the embedding
     * rows too), with both operands of every product but attention's rounded (the backend's bf16 precision).
     */
    float *p = gkd_model_params(fp);
    for (int i = 0; i < gkd_model_num_tensors(fp); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(fp, i);
        if (!t->is_norm)
            for (size_t j = 0; j < t->numel; j++) p[t->offset + j] = gkd_bf16_round(p[t->offset + j]);
    }
    gkd_precision was;
    if (gkd_backend_set_precision(be, GKD_PRECISION_BF16, &was)) die("precision");
    logits_of(fp, tokens, ref);
    gkd_backend_set_precision(be, was, NULL);

    gkd_model *bf = make(&cfg, GKD_MODEL_INFERENCE, GKD_WEIGHTS_BF16, 5);
    CHECK(gkd_model_weight_format(bf) == GKD_WEIGHTS_BF16);
    CHECK(gkd_model_params(bf) == NULL && gkd_model_output_weight(bf) == NULL);
    gkd_model_memory_usage(bf, &mem_bf);
    CHECKF(mem_bf.params * 19 / 10 < mem_fp.params, "parameter bytes: bf16 %zu, fp32 %zu", mem_bf.params,
           mem_fp.params);
    for (int portable = 0; portable <= 1; portable++) {
        gkd_packed_cpu_force_portable(portable);
        logits_of(bf, tokens, got);
        double scale, d = max_abs_diff(got, ref, VL, &scale);
        /* the same rounded operands, summed in another order through 2 layers: fp32-level agreement */
        CHECKF(d <= 1e-4 * scale,
               "bf16 model vs fp32 model with bf16 products (portable %d): max |diff| %g of %g", portable, d,
               scale);
    }
    gkd_packed_cpu_force_portable(0);
    double scale, d = max_abs_diff(got, exact, VL, &scale);
    printf("bf16 vs exact fp32 logits: max |diff| %.3g (max |logit| %.3g)\n", d, scale);
    /* bf16 keeps 8 significant bits: each product is off by up to 2^-8 relative, a few % of a logit at most
     */
    CHECKF(d <= 0.05 * scale && d > 0.0, "bf16 vs exact logits: max |diff| %g of %g", d, scale);

    /* the output projection and the cached forward agree, and so does the hidden state path */
    const float *h = NULL;
    float *proj = malloc((size_t)TL * cfg.vocab_size * sizeof(float));
    if (gkd_model_forward_nograd(bf, tokens, 1, TL, &h)) die("forward_nograd");
    CHECK(gkd_model_project(bf, h, TL, proj) == GKD_OK);
    d = max_abs_diff(proj, got, VL, &scale);
    CHECKF(d <= 1e-5 * scale, "gkd_model_project vs cached logits: %g of %g", d, scale);
    free(proj);

    /* sampling and scoring end to end: greedy tokens as the reference's, log-probabilities close */
    gkd_sample_config sc = {
        .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = 12, .eos_id = -1};
    int prompt[4] = {3, 9, 27, 81}, plen = 4, tok_bf[12], tok_ref[12], len_bf, len_ref;
    float lp_bf[12], lp_ref[12];
    gkd_rng rng = {1, GKD_RNG_STREAM_SAMPLE, 0};
    CHECK(gkd_sample_generate(bf, prompt, &plen, 1, 4, &sc, &rng, tok_bf, &len_bf, lp_bf) == GKD_OK);
    gkd_backend_set_precision(be, GKD_PRECISION_BF16, NULL);
    CHECK(gkd_sample_generate(fp, prompt, &plen, 1, 4, &sc, &rng, tok_ref, &len_ref, lp_ref) == GKD_OK);
    gkd_backend_set_precision(be, was, NULL);
    CHECK(len_bf == 12 && len_ref == 12 && memcmp(tok_bf, tok_ref, sizeof tok_bf) == 0);
    for (int i = 0; i < 12; i++)
        CHECKF(fabsf(lp_bf[i] - lp_ref[i]) < 1e-3f, "log-prob %d: %g vs %g", i, lp_bf[i], lp_ref[i]);
    double lp_a[TL - 1], lp_b[TL - 1];
    CHECK(gkd_model_logprobs(bf, tokens, TL, lp_a) == GKD_OK);
    gkd_backend_set_precision(be, GKD_PRECISION_BF16, NULL);
    CHECK(gkd_model_logprobs(fp, tokens, TL, lp_b) == GKD_OK);
    gkd_backend_set_precision(be, was, NULL);
    for (int i = 0; i < TL - 1; i++)
        CHECKF(fabs(lp_a[i] - lp_b[i]) < 1e-3, "score %d: %g vs %g", i, lp_a[i], lp_b[i]);

    /* refusals */
    CHECK(gkd_model_set_weight_format(bf, GKD_WEIGHTS_BF16) == GKD_OK); /* already: nothing to do */
    CHECK(gkd_model_set_weight_format(bf, GKD_WEIGHTS_FP32) == GKD_ERR_ARG &&
          strstr(gkd_error_message(), "already bf16"));
    CHECK(gkd_model_set_weight_format(bf, GKD_WEIGHTS_Q8_0) == GKD_ERR_ARG);
    CHECK(gkd_model_set_weight_format(fp, GKD_WEIGHTS_Q8_0) == GKD_ERR_ARG &&
          strstr(gkd_error_message(), "dim = 24 must be a multiple of 32"));
    CHECK(gkd_model_weight_format(fp) == GKD_WEIGHTS_FP32 && gkd_model_params(fp) != NULL);
    gkd_model *tr = NULL;
    if (gkd_model_create(&cfg, be, &tr)) die("create");
    CHECK(gkd_model_set_weight_format(tr, GKD_WEIGHTS_BF16) == GKD_ERR_ARG &&
          strstr(gkd_error_message(), "inference model"));
    gkd_model_free(tr);
    gkd_model *sim = NULL;
    if (gkd_model_create_ex(&cfg, gkd_backend_sim(), GKD_MODEL_INFERENCE, &sim)) die("create sim");
    CHECK(gkd_model_set_weight_format(sim, GKD_WEIGHTS_BF16) == GKD_ERR_ARG &&
          strstr(gkd_error_message(), "sim backend") && strstr(gkd_error_message(), "bf16"));
    gkd_model_free(sim);
    gkd_weight_format f;
    CHECK(gkd_weight_format_parse("bf16", "--weights", &f) == GKD_OK && f == GKD_WEIGHTS_BF16);
    CHECK(gkd_weight_format_parse("int8", "--weights", &f) == GKD_ERR_ARG &&
          strstr(gkd_error_message(), "--weights") && strstr(gkd_error_message(), "q8_0"));
    gkd_model_free(fp);
    gkd_model_free(bf);

    /* q8_0 (rows a multiple of 32), against exact fp32 logits */
    gkd_model_config qc = small_config(97, 64, 96);
    fp = make(&qc, GKD_MODEL_INFERENCE, GKD_WEIGHTS_FP32, 6);
    gkd_model *q8 = make(&qc, GKD_MODEL_INFERENCE, GKD_WEIGHTS_Q8_0, 6);
    logits_of(fp, tokens, exact);
    for (int portable = 0; portable <= 1; portable++) {
        gkd_packed_cpu_force_portable(portable);
        logits_of(q8, tokens, got);
        d = max_abs_diff(got, exact, VL, &scale);
        printf("q8_0 vs exact fp32 logits (portable %d): max |diff| %.3g (max |logit| %.3g)\n", portable, d,
               scale);
        /* 8 bits per weight against the block's largest: about 0.4 % per weight, less than bf16's worst case
         */
        CHECKF(d <= 0.05 * scale && d > 0.0, "q8_0 vs exact logits: %g of %g", d, scale);
    }
    gkd_packed_cpu_force_portable(0);
    gkd_model_memory_usage(fp, &mem_fp);
    gkd_model_memory mem_q;
    gkd_model_memory_usage(q8, &mem_q);
    CHECKF(mem_q.params * 3 < mem_fp.params, "parameter bytes: q8_0 %zu, fp32 %zu", mem_q.params,
           mem_fp.params);
    gkd_model_free(fp);
    gkd_model_free(q8);
    free(exact), free(ref), free(got);
}

int main(void) {
    const gkd_backend *be = gkd_backend_cpu();
    test_bf16_rounding(be);
    const int rows[] = {1, 2, 5, 15, 16, 40};
    for (int i = 0; i < (int)(sizeof rows / sizeof rows[0]); i++) {
        test_product(be, GKD_WEIGHTS_BF16, rows[i], 37, 45); /* tails everywhere */
        test_product(be, GKD_WEIGHTS_BF16, rows[i], 70, 576);
        test_product(be, GKD_WEIGHTS_Q8_0, rows[i], 37, 64);
        test_product(be, GKD_WEIGHTS_Q8_0, rows[i], 70, 576);
    }
    CHECK(be->packed_bytes(GKD_WEIGHTS_Q8_0, 4, 48) == 0);
    test_models();
    return check_exit();
}
