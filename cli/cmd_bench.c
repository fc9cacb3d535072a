/* gkd bench: speed and memory figures, printed as JSON (--json) or as a table.
 * Sections: sgemm (the machine's matrix-product rate, measured in the same run as the reference for the
 * others), train (one training step of the benchmark shape), generate (batched sampling with the
 * KV cache), distill (the chunked divergence loss: time and peak extra memory against materialising both
 * models' logits), gkd_step (a whole on-policy GKD step split by phase, and the share of the step spent
 * writing metrics to the run store), lua (the share spent in Lua schedules and callbacks), teacher_score (the
 * forward and logits of a SmolLM2-shaped inference model over 64 x 96 tokens with fp32, bf16 and q8_0_a8
 * weights, core/tensor/weights.h); generate also samples at batch 1 from that shape with fp32, bf16, q8_0 and
 * q8_0_a8 weights.
 * data_parallel (only when named in --only: it launches mpirun) times one training workload on 1 and 2 ranks
 * (docs/data-parallel.md), or says why it is skipped (no mpirun, a build without MPI).
 * --precision fp32|tf32|bf16 sets the backend's matrix-product precision (core/tensor/precision.h) for the whole
 * run, sgemm included; the JSON names the precision in effect. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/tensor/backend_select.h"
#include "core/base/json.h"
#include "core/tensor/model.h"
#include "core/tensor/optim.h"
#include "core/tensor/packed_cpu.h"
#include "core/tensor/precision.h"
#include "core/base/rng.h"
#include "core/tensor/sample.h"
#include "bindings/gkd_lua.h"
#include "core/text/data.h"
#include "core/store/store.h"
#include "core/text/tokenizer.h"
#include "rl/dist.h"
#include "rl/distill.h"
#include "rl/divergence_fast.h"
#include "rl/trainer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long max_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void cpu_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            if (colon) {
                snprintf(out, cap, "%s", colon + 2);
                out[strcspn(out, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
}

static float *device_random(const gkd_backend *be, size_t n, uint64_t seed, float scale) {
    float *host = malloc(n * sizeof *host);
    float *dev = be->alloc(n * sizeof *dev);
    if (!host || !dev) {
        free(host);
        be->free(dev);
        return NULL;
    }
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_USER);
    for (size_t i = 0; i < n; i++) host[i] = scale * (2.0f * gkd_rng_uniform(&rng) - 1.0f);
    be->copy_in(dev, host, n * sizeof *dev);
    free(host);
    return dev;
}

/* Best of `reps` runs of a square sgemm of size n. */
static double bench_sgemm(const gkd_backend *be, int n, int reps) {
    float *a = device_random(be, (size_t)n * n, 1, 1.0f), *b = device_random(be, (size_t)n * n, 2, 1.0f);
    float *c = be->alloc((size_t)n * n * sizeof(float));
    double best = 1e30;
    if (a && b && c) {
        be->matmul(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            be->matmul(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            float probe;
            be->copy_out(&probe, c, sizeof probe); /* waits for an asynchronous device */
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
    }
    be->free(a);
    be->free(b);
    be->free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}

typedef struct {
    double tokens_per_s, gflops, step_s;
    size_t params;
} train_result;

static gkd_status bench_train(const gkd_backend *be, const gkd_model_config *cfg, int B, int T, int reps,
                              train_result *out) {
    gkd_model *m = NULL;
    gkd_status st = gkd_model_create(cfg, be, &m);
    if (st != GKD_OK) return st;
    gkd_model_init_weights(m, 1);
    gkd_optim_config oc = gkd_optim_config_default();
    gkd_optim *opt = NULL;
    if ((st = gkd_optim_create(&oc, m, &opt)) != GKD_OK) {
        gkd_model_free(m);
        return st;
    }
    int *tokens = malloc((size_t)B * T * sizeof *tokens), *targets = malloc((size_t)B * T * sizeof *targets);
    float *mask = malloc((size_t)B * T * sizeof *mask);
    float *dh = be->alloc((size_t)B * T * cfg->dim * sizeof(float));
    gkd_rng rng;
    gkd_rng_init(&rng, 3, GKD_RNG_STREAM_USER);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (int)gkd_rng_below(&rng, (uint32_t)cfg->vocab_size);
        targets[i] = (int)gkd_rng_below(&rng, (uint32_t)cfg->vocab_size);
        mask[i] = 1.0f;
    }
    double best = 1e30;
    for (int r = 0; r <= reps && st == GKD_OK; r++) {
        double t0 = now();
        const float *h;
        float loss;
        gkd_model_zero_grad(m);
        st = gkd_model_forward(m, tokens, B, T, &h);
        if (st == GKD_OK) st = gkd_model_ce_loss(m, h, targets, mask, B, T, GKD_NORM_TOKEN, &loss, dh);
        if (st == GKD_OK) st = gkd_model_backward(m, dh);
        if (st == GKD_OK) st = gkd_optim_step(opt, NULL);
        float probe;
        be->copy_out(&probe, gkd_model_params(m), sizeof probe);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt; /* the first step warms up allocations */
        if (r == 0) gkd_backend_profile_reset(be); /* GKD_CUDA_PROFILE: the timed steps only */
    }
    out->step_s = best;
    out->tokens_per_s = B * T / best;
    out->gflops = gkd_model_flops(m, B, T, 1) / best / 1e9;
    out->params = gkd_model_num_params(m);
    free(tokens);
    free(targets);
    free(mask);
    be->free(dh);
    gkd_optim_free(opt);
    gkd_model_free(m);
    return st;
}

static gkd_status bench_generate(const gkd_backend *be, const gkd_model_config *cfg, int B, int prompt_len,
                                 int max_new, double *tokens_per_s) {
    gkd_model *m = NULL;
    gkd_status st = gkd_model_create_ex(cfg, be, GKD_MODEL_INFERENCE, &m);
    if (st != GKD_OK) return st;
    gkd_model_init_weights(m, 1);
    int *prompts = malloc((size_t)B * prompt_len * sizeof *prompts), *lens = malloc((size_t)B * sizeof *lens);
    int *out = malloc((size_t)B * max_new * sizeof *out), *out_lens = malloc((size_t)B * sizeof *out_lens);
    float *lp = malloc((size_t)B * max_new * sizeof *lp);
    gkd_rng rng;
    gkd_rng_init(&rng, 4, GKD_RNG_STREAM_USER);
    for (int i = 0; i < B * prompt_len; i++) prompts[i] = (int)gkd_rng_below(&rng, (uint32_t)cfg->vocab_size);
    for (int b = 0; b < B; b++) lens[b] = prompt_len - (b % 4);
    gkd_sample_config sc = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = max_new, .eos_id = -1};
    gkd_rng srng;
    gkd_rng_init(&srng, 5, GKD_RNG_STREAM_SAMPLE);
    double t0 = now();
    st = gkd_sample_generate(m, prompts, lens, B, prompt_len, &sc, &srng, out, out_lens, lp);
    double dt = now() - t0;
    long total = 0;
    for (int b = 0; b < B; b++) total += out_lens[b];
    *tokens_per_s = total / dt;
    free(prompts);
    free(lens);
    free(out);
    free(out_lens);
    free(lp);
    gkd_model_free(m);
    return st;
}

/* Layers of the SmolLM2-shaped model (--smol-layers; 30 is SmolLM2-135M): fewer only to exercise the sections
 * quickly (tests/test_bench_smoke.sh), and the JSON's shape says so. */
static int smol_layers = 30;

static const char *smol_name(void) {
    return smol_layers == 30 ? "SmolLM2-135M " : "SmolLM2-135M with fewer layers ";
}

/* The SmolLM2-135M shape (random weights: speed does not depend on their values). */
static gkd_model_config smollm2_config(int max_seq_len) {
    gkd_model_config c = {.vocab_size = 49152,
                          .dim = 576,
                          .n_layers = smol_layers,
                          .n_heads = 9,
                          .n_kv_heads = 3,
                          .hidden_dim = 1536,
                          .max_seq_len = max_seq_len,
                          .rope_theta = 100000.0f,
                          .norm_eps = 1e-5f,
                          .tied_embeddings = 1};
    return c;
}

/* Inference models of one configuration and seed, one per weight format in fmts. */
static gkd_status make_format_models(const gkd_backend *be, const gkd_model_config *cfg, const gkd_weight_format *fmts,
                                     int n, gkd_model **models) {
    gkd_status st = GKD_OK;
    for (int i = 0; i < n; i++) models[i] = NULL;
    for (int i = 0; i < n && st == GKD_OK; i++) {
        st = gkd_model_create_ex(cfg, be, GKD_MODEL_INFERENCE, &models[i]);
        if (st == GKD_OK) gkd_model_init_weights(models[i], 1);
        if (st == GKD_OK) st = gkd_model_set_weight_format(models[i], fmts[i]);
    }
    return st;
}

static double median(double *x, int n);

/* Teacher scoring: the forward of B rows of T tokens and the logits of every position (projected a chunk of
 * rows at a time, as distillation does), per weight format, the formats alternated A B A B; median tokens/s
 * and parameter memory. */
enum { MAX_FORMATS = 4 };
typedef struct {
    int n;
    gkd_weight_format fmt[MAX_FORMATS];
    double tokens_per_s[MAX_FORMATS];
    double prefill_ms[MAX_FORMATS]; /* batch-1 sampling: the prompt and the first token; 0 elsewhere */
    size_t param_bytes[MAX_FORMATS];
} format_result;

static gkd_status bench_teacher_score(const gkd_backend *be, int B, int T, int reps, format_result *r) {
    gkd_model_config cfg = smollm2_config(T);
    gkd_model *models[MAX_FORMATS];
    gkd_status st = make_format_models(be, &cfg, r->fmt, r->n, models);
    enum { CHUNK = 512 };
    int *tokens = malloc((size_t)B * T * sizeof *tokens);
    float *logits = be->alloc((size_t)CHUNK * cfg.vocab_size * sizeof(float));
    double *times = calloc((size_t)MAX_FORMATS * (reps + 1), sizeof *times);
    if (st == GKD_OK && (!tokens || !logits || !times)) st = gkd_error_set(GKD_ERR_NOMEM, "teacher_score: out of memory");
    gkd_rng rng;
    gkd_rng_init(&rng, 6, GKD_RNG_STREAM_USER);
    for (int i = 0; st == GKD_OK && i < B * T; i++) tokens[i] = (int)gkd_rng_below(&rng, (uint32_t)cfg.vocab_size);
    for (int rep = 0; rep <= reps && st == GKD_OK; rep++) /* round 0 warms up */
        for (int i = 0; i < r->n && st == GKD_OK; i++) {
            double t0 = now();
            const float *h = NULL;
            st = gkd_model_forward_nograd(models[i], tokens, B, T, &h);
            for (int r0 = 0; r0 < B * T && st == GKD_OK; r0 += CHUNK) {
                int rows = B * T - r0 < CHUNK ? B * T - r0 : CHUNK;
                st = gkd_model_project(models[i], h + (size_t)r0 * cfg.dim, rows, logits);
            }
            if (rep > 0) times[i * reps + rep - 1] = now() - t0;
        }
    for (int i = 0; i < r->n && st == GKD_OK; i++) {
        r->tokens_per_s[i] = B * T / median(times + i * reps, reps);
        gkd_model_memory mem;
        gkd_model_memory_usage(models[i], &mem);
        r->param_bytes[i] = mem.params;
    }
    for (int i = 0; i < r->n; i++) gkd_model_free(models[i]);
    free(tokens);
    be->free(logits);
    free(times);
    return st;
}

/* Batch-1 sampling (temperature 1, no EOS) of the SmolLM2 shape per weight format, alternated A B C A B C.
 * Each round times a call that prefills and draws one token, then one that goes on for max_new more: their
 * difference is the decoding alone. Medians of the decoding rate (tokens/s) and of the first call (ms). */
static gkd_status bench_generate_formats(const gkd_backend *be, int prompt_len, int max_new, int reps,
                                         format_result *r) {
    gkd_model_config cfg = smollm2_config(prompt_len + max_new);
    gkd_model *models[MAX_FORMATS];
    gkd_status st = make_format_models(be, &cfg, r->fmt, r->n, models);
    int *prompt = malloc((size_t)prompt_len * sizeof *prompt), *out = malloc((size_t)(max_new + 1) * sizeof *out);
    float *lp = malloc((size_t)(max_new + 1) * sizeof *lp);
    double *times = calloc((size_t)MAX_FORMATS * (reps + 1), sizeof *times);
    double *first = calloc((size_t)MAX_FORMATS * (reps + 1), sizeof *first);
    if (st == GKD_OK && (!prompt || !out || !lp || !times || !first))
        st = gkd_error_set(GKD_ERR_NOMEM, "generate: out of memory");
    gkd_rng rng;
    gkd_rng_init(&rng, 4, GKD_RNG_STREAM_USER);
    for (int i = 0; st == GKD_OK && i < prompt_len; i++) prompt[i] = (int)gkd_rng_below(&rng, (uint32_t)cfg.vocab_size);
    gkd_sample_config sc = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = max_new, .eos_id = -1};
    for (int rep = 0; rep <= reps && st == GKD_OK; rep++)
        for (int i = 0; i < r->n && st == GKD_OK; i++) {
            gkd_rng srng;
            gkd_rng_init(&srng, 5, GKD_RNG_STREAM_SAMPLE);
            int len = 0;
            sc.max_new_tokens = 1;
            double t0 = now();
            st = gkd_sample_generate(models[i], prompt, &prompt_len, 1, prompt_len, &sc, &srng, out, &len, lp);
            double t1 = now();
            sc.max_new_tokens = max_new + 1;
            if (st == GKD_OK)
                st = gkd_sample_generate(models[i], prompt, &prompt_len, 1, prompt_len, &sc, &srng, out, &len, lp);
            double t2 = now();
            if (rep > 0) {
                times[i * reps + rep - 1] = ((t2 - t1) - (t1 - t0)) / max_new;
                first[i * reps + rep - 1] = t1 - t0;
            }
        }
    for (int i = 0; i < r->n && st == GKD_OK; i++) {
        r->tokens_per_s[i] = 1.0 / median(times + i * reps, reps);
        r->prefill_ms[i] = 1e3 * median(first + i * reps, reps);
        gkd_model_memory mem;
        gkd_model_memory_usage(models[i], &mem);
        r->param_bytes[i] = mem.params;
    }
    for (int i = 0; i < r->n; i++) gkd_model_free(models[i]);
    free(prompt), free(out), free(lp), free(times), free(first);
    return st;
}

/* ,"<format>": {"tokens_per_s": .., "param_bytes": ..} for each format, then the ratios to the first. */
static void format_json(gkd_buf *out, const format_result *r) {
    for (int i = 0; i < r->n; i++) {
        gkd_buf_printf(out, ", \"%s\": {\"tokens_per_s\": %.2f, ", gkd_weight_format_name(r->fmt[i]), r->tokens_per_s[i]);
        if (r->prefill_ms[i] > 0) gkd_buf_printf(out, "\"prefill_and_first_token_ms\": %.1f, ", r->prefill_ms[i]);
        gkd_buf_printf(out, "\"param_bytes\": %zu}", r->param_bytes[i]);
    }
    for (int i = 1; i < r->n; i++)
        gkd_buf_printf(out, ", \"speedup_%s\": %.2f, \"memory_ratio_%s\": %.2f", gkd_weight_format_name(r->fmt[i]),
                       r->tokens_per_s[i] / r->tokens_per_s[0], gkd_weight_format_name(r->fmt[i]),
                       (double)r->param_bytes[0] / (double)r->param_bytes[i]);
}

/* The "batch1_smollm2" object of the generate section; GKD_ERR_* with the error printed. */
static gkd_status section_generate_batch1(const gkd_backend *be, int new_tokens, int reps, gkd_buf *out) {
    format_result r = {.n = 4, .fmt = {GKD_WEIGHTS_FP32, GKD_WEIGHTS_BF16, GKD_WEIGHTS_Q8_0, GKD_WEIGHTS_Q8_0_A8}};
    gkd_status st = bench_generate_formats(be, 16, new_tokens, reps, &r);
    if (st != GKD_OK) {
        gkd_cli_error("bench", "generate (batch 1): %s", gkd_error_message());
        return st;
    }
    gkd_buf_printf(
        out,
        ",\n    \"batch1_smollm2\": {\"shape\": \"%s(L=%d C=576 H=9 KV=3 F=1536 V=49152 tied), "
        "random weights\", \"prompt\": 16, \"new_tokens\": %d, \"reps\": %d, \"bf16_path\": \"%s\", "
        "\"q8_0_path\": \"%s\", \"q8_0_a8_path\": \"%s\", \"note\": \"tokens_per_s: decoding alone (prefill "
        "excluded); medians\"",
        smol_name(), smol_layers, new_tokens, reps, gkd_packed_cpu_path(GKD_WEIGHTS_BF16, 1),
        gkd_packed_cpu_path(GKD_WEIGHTS_Q8_0, 1), gkd_packed_cpu_path(GKD_WEIGHTS_Q8_0_A8, 1));
    format_json(out, &r);
    gkd_buf_puts(out, "}");
    return GKD_OK;
}

/* The "teacher_score" section; GKD_ERR_* with the error printed. */
static gkd_status section_teacher_score(const gkd_backend *be, int B, int T, int reps, gkd_buf *out) {
    format_result r = {.n = 3, .fmt = {GKD_WEIGHTS_FP32, GKD_WEIGHTS_BF16, GKD_WEIGHTS_Q8_0_A8}};
    if (!be->packed_matmul) {
        gkd_cli_error("bench", "teacher_score: the %s backend has no reduced-precision weights (fp32 only)", be->name);
        return GKD_ERR_ARG;
    }
    gkd_status st = bench_teacher_score(be, B, T, reps, &r);
    if (st != GKD_OK) {
        gkd_cli_error("bench", "teacher_score: %s", gkd_error_message());
        return st;
    }
    gkd_buf_printf(
        out,
        ",\n  \"teacher_score\": {\"shape\": \"%s(L=%d C=576 H=9 KV=3 F=1536 V=49152 tied), "
        "random weights\", \"batch\": %d, \"seq\": %d, \"reps\": %d, \"bf16_path\": \"%s\", "
        "\"q8_0_a8_path\": \"%s\", \"note\": \"forward and logits of every position; A B C A B C medians\"",
        smol_name(), smol_layers, B, T, reps, gkd_packed_cpu_path(GKD_WEIGHTS_BF16, B * T),
        gkd_packed_cpu_path(GKD_WEIGHTS_Q8_0_A8, B * T));
    format_json(out, &r);
    gkd_buf_puts(out, "}");
    return GKD_OK;
}

typedef struct {
    double seconds, max_abs_diff;
    size_t workspace_bytes, both_logits_bytes;
    long rss_increase_kib;
    const char *precision; /* of the divergence rows: "float32" (CPU, as training) or "exact" */
} distill_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of x: (n), which it sorts. */
static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Milliseconds per position of the divergence rows alone (value, gradient and metrics of JSD(0.5) at
 * V = 49,152 over N positions) and of the whole chunked loss (its logit products included), exact and
 * float32 alternated A B A B over `reps` rounds; medians. The loss is also timed with the teacher's output
 * product in bf16 (teacher_precision = "bf16": an inference model whose output matrix is Wt, packed), the
 * rows float32. */
typedef struct {
    double rows_exact, rows_float, loss_exact, loss_float, loss_float_bf16;
    const char *isa;
    unsigned long long float_rows, handed_to_exact; /* rows the float runs computed, and handed over */
} precision_result;

static gkd_status bench_precision(const gkd_backend *be, int N, int reps, precision_result *out) {
    int V = 49152, Cs = 64, Ct = 128;
    float *t = device_random(be, (size_t)N * V, 21, 3.0f), *s = device_random(be, (size_t)N * V, 22, 3.0f);
    float *g = malloc((size_t)N * V * sizeof *g);
    double *val = malloc((size_t)N * sizeof *val);
    gkd_token_metrics *met = malloc((size_t)N * sizeof *met);
    float *hs = device_random(be, (size_t)N * Cs, 11, 1.0f), *ht = device_random(be, (size_t)N * Ct, 12, 1.0f);
    float *Ws = device_random(be, (size_t)V * Cs, 13, 0.05f), *Wt = device_random(be, (size_t)V * Ct, 14, 0.05f);
    float *dhs = be->alloc((size_t)N * Cs * sizeof(float)), *dWs = be->alloc((size_t)V * Cs * sizeof(float));
    float *mask = malloc((size_t)N * sizeof *mask);
    gkd_distill_workspace *ws = NULL;
    gkd_status st = t && s && g && val && met && hs && ht && Ws && Wt && dhs && dWs && mask
                        ? gkd_distill_workspace_create(be, 128, V, Cs, Ct, &ws)
                        : gkd_error_set(GKD_ERR_NOMEM, "bench: out of memory");
    /* the bf16 teacher: one layer (never run: only its output product is), output matrix Wt */
    gkd_model_config tcfg = {.vocab_size = V, .dim = Ct, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2,
                             .hidden_dim = 2 * Ct, .max_seq_len = 16, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    gkd_model *teacher = NULL;
    if (st == GKD_OK) st = gkd_model_create_ex(&tcfg, be, GKD_MODEL_INFERENCE, &teacher);
    if (st == GKD_OK) {
        be->copy((float *)gkd_model_output_weight(teacher), Wt, (size_t)V * Ct * sizeof(float));
        st = gkd_model_set_weight_format(teacher, GKD_WEIGHTS_BF16);
    }
    enum { KINDS = 5 };
    double *times = calloc((size_t)KINDS * reps, sizeof *times);
    if (st == GKD_OK && !times) st = gkd_error_set(GKD_ERR_NOMEM, "bench: out of memory");
    gkd_div_fast_row_fn fn;
    if (st == GKD_OK) st = gkd_div_fast_select(&fn, &out->isa);
    for (int i = 0; i < N && mask; i++) mask[i] = 1.0f;
    gkd_divergence div;
    gkd_divergence_parse("jsd", &div);
    gkd_distill_stats stats;
    unsigned long long rows0, exact0;
    gkd_div_fast_counts(&rows0, &exact0);
    for (int r = 0; r < reps && st == GKD_OK; r++)
        for (int k = 0; k < KINDS && st == GKD_OK; k++) {
            /* rows exact, rows float, loss exact, loss float, loss float with the bf16 teacher */
            div.precision = k % 2 || k == 4 ? GKD_DIV_FLOAT32 : GKD_DIV_EXACT;
            gkd_distill_workspace_set_teacher(ws, k == 4 ? teacher : NULL);
            double t0 = now();
            if (k < 2)
                st = gkd_divergence_rows_ex(&div, t, s, N, V, val, g, NULL, met);
            else
                st = gkd_distill_loss(ws, &div, GKD_NORM_TOKEN, hs, Ws, ht, Wt, mask, 1, N, 1.0f, dhs, dWs, &stats);
            times[k * reps + r] = 1e3 * (now() - t0) / N;
        }
    unsigned long long rows1, exact1;
    gkd_div_fast_counts(&rows1, &exact1);
    out->float_rows = rows1 - rows0;
    out->handed_to_exact = exact1 - exact0;
    double *med[KINDS] = {&out->rows_exact, &out->rows_float, &out->loss_exact, &out->loss_float,
                          &out->loss_float_bf16};
    for (int k = 0; k < KINDS && st == GKD_OK; k++) {
        qsort(times + k * reps, (size_t)reps, sizeof *times, cmp_double);
        *med[k] = times[k * reps + reps / 2];
    }
    gkd_distill_workspace_free(ws);
    gkd_model_free(teacher);
    free(times), free(g), free(val), free(met), free(mask);
    be->free(t), be->free(s), be->free(hs), be->free(ht), be->free(Ws), be->free(Wt), be->free(dhs), be->free(dWs);
    return st;
}

/* The chunked loss at V=49152 over N positions, and its peak extra memory. Run first, while the process's
 * peak resident size is still that of the inputs, so the increase is the loss's own. */
static gkd_status bench_distill(const gkd_backend *be, int N, int V, int Cs, int Ct, int chunk,
                                distill_result *out) {
    float *hs = device_random(be, (size_t)N * Cs, 11, 1.0f), *ht = device_random(be, (size_t)N * Ct, 12, 1.0f);
    float *Ws = device_random(be, (size_t)V * Cs, 13, 0.05f), *Wt = device_random(be, (size_t)V * Ct, 14, 0.05f);
    float *dhs = be->alloc((size_t)N * Cs * sizeof(float)), *dWs = be->alloc((size_t)V * Cs * sizeof(float));
    float *mask = malloc((size_t)N * sizeof *mask);
    if (!hs || !ht || !Ws || !Wt || !dhs || !dWs || !mask) return gkd_error_set(GKD_ERR_NOMEM, "bench: out of memory");
    for (int i = 0; i < N; i++) mask[i] = 1.0f;
    be->zero(dWs, (size_t)V * Cs * sizeof(float));
    be->zero(dhs, (size_t)N * Cs * sizeof(float));
    long rss_before = max_rss_kib();
    gkd_distill_workspace *ws = NULL;
    gkd_status st = gkd_distill_workspace_create(be, chunk, V, Cs, Ct, &ws);
    gkd_divergence div;
    gkd_divergence_parse("jsd", &div);
    div.beta = 0.5;
    /* what training uses: the float rows on the CPU (the CUDA rows are double either way) */
    div.precision = be == gkd_backend_cpu() ? GKD_DIV_FLOAT32 : GKD_DIV_EXACT;
    out->precision = be == gkd_backend_cpu() ? "float32" : "exact";
    gkd_distill_stats stats;
    double t0 = now();
    if (st == GKD_OK)
        st = gkd_distill_loss(ws, &div, GKD_NORM_TOKEN, hs, Ws, ht, Wt, mask, 1, N, 1.0f, dhs, dWs, &stats);
    out->seconds = now() - t0;
    out->rss_increase_kib = max_rss_kib() - rss_before;
    out->workspace_bytes = ws ? gkd_distill_workspace_bytes(ws) : 0;
    out->both_logits_bytes = (size_t)2 * N * V * sizeof(float);
    gkd_distill_workspace_free(ws);
    be->free(hs);
    be->free(ht);
    be->free(Ws);
    be->free(Wt);
    be->free(dhs);
    be->free(dWs);
    free(mask);
    return st;
}


typedef struct {
    gkd_store_sink sink;
    double seconds; /* spent in the sink, i.e. logging */
} logging_ctx;

static int logging_sink(void *ctx, const char *split, int64_t step, const char *name, double value) {
    logging_ctx *l = ctx;
    double t0 = now();
    int failed = gkd_store_metric_sink(&l->sink, split, step, name, value);
    l->seconds += now() - t0;
    return failed;
}

typedef struct {
    int steps;
    double step_s, generate_s, teacher_s, student_s, optimizer_s, tokens_per_s, logging_fraction;
} gkd_step_result;

/* On-policy GKD (lambda 1, JSD(0.9)) of a small student from a larger teacher on the built-in arithmetic
 * task, metrics written to a run store in a temporary file. */
static gkd_status bench_gkd_step(const gkd_backend *be, int steps, gkd_step_result *out) {
    gkd_dataset train_text = {0};
    gkd_token_dataset train = {0};
    gkd_tokenizer *tok = NULL;
    gkd_model *teacher = NULL, *student = NULL;
    gkd_trainer *t = NULL;
    gkd_store *store = NULL;
    char db[64];
    snprintf(db, sizeof db, "/tmp/gkd-bench-%d.db", (int)getpid());
    gkd_status st = gkd_dataset_arithmetic(1, 256, &train_text);
    const char **texts = malloc(256 * sizeof *texts);
    for (int i = 0; st == GKD_OK && i < 256; i++) texts[i] = train_text.items[i].prompt;
    const char *specials[] = {"<|endoftext|>", "<|pad|>"};
    if (st == GKD_OK) st = gkd_tokenizer_train(texts, 256, 512, specials, 2, &tok);
    free(texts);
    if (st == GKD_OK) st = gkd_dataset_tokenize(&train_text, tok, 64, 32, &train);
    gkd_model_config tc = {.vocab_size = tok ? gkd_tokenizer_vocab_size(tok) : 1, .dim = 256, .n_layers = 4,
                           .n_heads = 8, .n_kv_heads = 4, .hidden_dim = 768, .max_seq_len = 128,
                           .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    gkd_model_config sc = tc;
    sc.dim = 128;
    sc.n_layers = 2;
    sc.n_heads = 4;
    sc.n_kv_heads = 2;
    sc.hidden_dim = 384;
    if (st == GKD_OK) st = gkd_model_create_ex(&tc, be, GKD_MODEL_INFERENCE, &teacher);
    if (st == GKD_OK) st = gkd_model_create(&sc, be, &student);
    if (st == GKD_OK) st = gkd_store_open(db, &store);
    logging_ctx log = {{store, 0}, 0.0};
    if (st == GKD_OK) st = gkd_store_run_begin(store, "bench/gkd_step", 0, "{}", 1, &log.sink.run_id);
    if (st == GKD_OK) {
        gkd_model_init_weights(teacher, 1);
        gkd_model_init_weights(student, 2);
        gkd_train_config c;
        gkd_train_config_default(&c);
        gkd_train_config_preset(&c, "gkd");
        c.divergence.kind = GKD_DIV_JSD;
        c.beta = gkd_schedule_constant(0.9);
        c.batch_size = 8;
        c.max_new_tokens = 32;
        c.steps = steps + 1;
        c.on_metric = logging_sink;
        c.metric_ctx = &log;
        st = gkd_trainer_create(&c, student, teacher, tok, &train_text, &train, NULL, NULL, &t);
    }
    memset(out, 0, sizeof *out);
    gkd_step_stats s;
    if (st == GKD_OK) st = gkd_trainer_step(t, &s); /* warm-up */
    log.seconds = 0;
    double total = 0;
    for (int i = 0; st == GKD_OK && i < steps; i++) {
        double t0 = now();
        st = gkd_trainer_step(t, &s);
        total += now() - t0;
        out->generate_s += s.t_generate / steps;
        out->teacher_s += s.t_teacher / steps;
        out->student_s += s.t_student / steps;
        out->optimizer_s += s.t_optimizer / steps;
        out->tokens_per_s += s.tokens_per_s / steps;
    }
    if (st == GKD_OK) { /* the buffered rows are written at the flush: part of the logging cost */
        double t0 = now();
        st = gkd_store_flush(store);
        log.seconds += now() - t0;
    }
    out->steps = steps;
    out->step_s = total / steps;
    out->logging_fraction = total > 0 ? log.seconds / total : 0;
    gkd_trainer_free(t);
    gkd_store_close(store);
    unlink(db);
    char wal[80];
    snprintf(wal, sizeof wal, "%s-wal", db);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", db);
    unlink(wal);
    gkd_model_free(teacher);
    gkd_model_free(student);
    gkd_tokenizer_free(tok);
    gkd_token_dataset_free(&train);
    gkd_dataset_free(&train_text);
    return st;
}

/* "distill" (the chunked loss's memory and time) and, on the CPU, "divergence_rows" (exact against float32
 * rows, and the whole loss): appended to out. Returns 1 when one failed (reported), else 0. */
static int bench_distill_sections(const gkd_backend *be, int quick, gkd_buf *out) {
    int rc = 0;
    {
        distill_result d = {0};
        int N = quick ? 512 : 4096;
        if (bench_distill(be, N, 49152, 64, 128, 128, &d) != GKD_OK) {
            gkd_cli_error("bench", "distill: %s", gkd_error_message());
            rc = 1;
        } else {
            gkd_buf_printf(out,
                           ",\n  \"distill\": {\"positions\": %d, \"vocab\": 49152, \"chunk\": 128, "
                           "\"divergence_precision\": \"%s\", \"seconds\": %.4f, "
                           "\"workspace_bytes\": %zu, \"both_logits_bytes\": %zu, \"workspace_fraction\": %.5f, "
                           "\"peak_rss_increase_bytes\": %ld, \"peak_rss_fraction\": %.5f}",
                           N, d.precision, d.seconds, d.workspace_bytes, d.both_logits_bytes,
                           (double)d.workspace_bytes / (double)d.both_logits_bytes, d.rss_increase_kib * 1024L,
                           (double)d.rss_increase_kib * 1024.0 / (double)d.both_logits_bytes);
        }
    }
    if (be == gkd_backend_cpu()) {
        precision_result p = {0};
        int N = quick ? 16 : 64;
        if (bench_precision(be, N, quick ? 3 : 5, &p) != GKD_OK) {
            gkd_cli_error("bench", "divergence precision: %s", gkd_error_message());
            rc = 1;
        } else {
            gkd_buf_printf(out,
                           ",\n  \"divergence_rows\": {\"positions\": %d, \"vocab\": 49152, \"isa\": \"%s\", "
                           "\"rows_ms_per_position\": {\"exact\": %.4f, \"float32\": %.4f, \"ratio\": %.2f}, "
                           "\"loss_ms_per_position\": {\"exact\": %.4f, \"float32\": %.4f, \"ratio\": %.2f, "
                           "\"float32_bf16_teacher\": %.4f, \"ratio_bf16_teacher\": %.2f}, "
                           "\"targets_ms_per_position\": {\"rows\": 0.15, \"loss\": 0.6}, "
                           "\"bf16_teacher_path\": \"%s\", "
                           "\"float_rows\": %llu, \"float_rows_handed_to_exact\": %llu, "
                           "\"note\": \"JSD(0.5) value, gradient and metrics; loss = rows + the logit products "
                           "(student 64, teacher 128 wide; float32_bf16_teacher: the teacher's product from bf16 "
                           "weights, as teacher_precision = bf16 trains); A B A B medians\"}",
                           N, p.isa, p.rows_exact, p.rows_float, p.rows_exact / p.rows_float, p.loss_exact,
                           p.loss_float, p.loss_exact / p.loss_float, p.loss_float_bf16,
                           p.loss_exact / p.loss_float_bf16, gkd_packed_cpu_path(GKD_WEIGHTS_BF16, N),
                           p.float_rows, p.handed_to_exact);
        }
    }
    return rc;
}

/* The "data_parallel" section: strong scaling of one training workload (on-policy GKD, global batch 16) over
 * 1 and 2 ranks, each run launched by mpirun (found on PATH) with one thread per rank, alternated A B A B;
 * the medians of seconds per step (the training loop, gkd.run's `seconds` / steps) and their ratio. The load
 * average before and after is reported: the ranks share the machine's cores with whatever else runs. */
static const char dp_script[] =
    "local task = gkd.task.arithmetic{n = 256, seed = 1}\n"
    "local tok = gkd.tokenizer.train{task = task, vocab = 512}\n"
    "local function model(layers, dim, seed)\n"
    "  return gkd.model.new{layers = layers, dim = dim, heads = 4, tokenizer = tok, max_seq_len = 128, seed = seed}\n"
    "end\n"
    "local r = gkd.run{name = 'bench', db = ':memory:', task = task, teacher = model(4, 256, 7),\n"
    "  student = model(2, 128, 1), method = 'gkd', divergence = 'jsd', steps = 8, batch = 16,\n"
    "  max_new_tokens = 32, eval = false, checkpoint = false, quiet = true}\n"
    "if gkd.dist.rank() == 0 then io.write(string.format('seconds_per_step %.6f\\n', r.seconds / r.steps_run)) end\n";

/* The first executable `name` on PATH into out; 0 when there is none. */
static int find_on_path(const char *name, char *out, size_t cap) {
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)len, path, name) < cap && access(out, X_OK) == 0)
            return 1;
        path = end ? end + 1 : NULL;
    }
    return 0;
}

/* One launch of the workload on `ranks` ranks: seconds per step, or a negative value (error printed). */
static double dp_run(const char *mpirun, const char *self, const char *script, int ranks) {
    char cmd[3 * 4200 + 128]; /* three paths of at most 4200 bytes and the options */
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 '%s' %s--oversubscribe -np %d '%s' run '%s' 2>&1", mpirun,
             geteuid() == 0 ? "--allow-run-as-root " : "", ranks, self, script);
    FILE *p = popen(cmd, "r");
    if (!p) {
        gkd_cli_error("bench", "data_parallel: cannot start %s", mpirun);
        return -1;
    }
    char line[1024];
    double s = -1;
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "seconds_per_step %lf", &s) != 1) fputs(line, stderr);
    int status = pclose(p);
    if (status != 0 || !(s > 0)) {
        gkd_cli_error("bench", "data_parallel: %d-rank run failed (status %d)", ranks, status);
        return -1;
    }
    return s;
}

static int section_data_parallel(int reps, gkd_buf *out) {
    char mpirun[4096], self[4096], dir[] = "/tmp/gkd-bench-dp-XXXXXX", script[4200];
    const char *skip = NULL;
    if (!gkd_dist_compiled()) skip = "this gkd was built without MPI";
    else if (!find_on_path("mpirun", mpirun, sizeof mpirun)) skip = "no mpirun on PATH (install openmpi-bin)";
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (!skip && (n <= 0 || (size_t)n >= sizeof self - 1)) skip = "cannot find this program (/proc/self/exe)";
    if (skip) {
        gkd_buf_printf(out, ",\n  \"data_parallel\": {\"skipped\": \"%s\"}", skip);
        return 0;
    }
    self[n] = '\0';
    if (strchr(self, '\'') || strchr(mpirun, '\'') || !mkdtemp(dir)) {
        gkd_cli_error("bench", "data_parallel: no scratch folder, or a quote in a path");
        return 1;
    }
    snprintf(script, sizeof script, "%s/bench.lua", dir);
    FILE *f = fopen(script, "w");
    int ok = f && fputs(dp_script, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    double load[2][3] = {{0}};
    getloadavg(load[0], 3);
    if (reps < 2) reps = 2;
    double times[2][16];
    if (reps > 16) reps = 16;
    for (int r = 0; ok && r < reps; r++)
        for (int k = 0; ok && k < 2; k++) ok = (times[k][r] = dp_run(mpirun, self, script, k + 1)) > 0;
    getloadavg(load[1], 3);
    remove(script);
    rmdir(dir);
    if (!ok) return 1;
    gkd_buf_printf(out,
                   ",\n  \"data_parallel\": {\"setup\": \"on-policy GKD JSD, teacher L=4 C=256, student L=2 C=128, "
                   "global batch 16, 32 new tokens, arithmetic task, 8 steps, 1 thread per rank, %s\", \"reps\": %d, "
                   "\"step_s\": {\"ranks_1\": [",
                   gkd_dist_compiled() == 2 ? "MPI (NCCL built)" : "MPI", reps);
    for (int k = 0; k < 2; k++) {
        for (int r = 0; r < reps; r++) gkd_buf_printf(out, "%s%.4f", r ? ", " : "", times[k][r]);
        gkd_buf_puts(out, k == 0 ? "], \"ranks_2\": [" : "]}");
    }
    double m1 = median(times[0], reps), m2 = median(times[1], reps);
    gkd_buf_printf(out,
                   ", \"median_step_s\": {\"ranks_1\": %.4f, \"ranks_2\": %.4f}, \"speedup\": %.3f, "
                   "\"efficiency\": %.3f, \"load_before\": [%.2f, %.2f, %.2f], \"load_after\": [%.2f, %.2f, %.2f], "
                   "\"note\": \"runs alternated 1 2 1 2; speedup = median 1-rank step / median 2-rank step at the "
                   "same global batch\"}",
                   m1, m2, m1 / m2, m1 / m2 / 2, load[0][0], load[0][1], load[0][2], load[1][0], load[1][1],
                   load[1][2]);
    return 0;
}

int gkd_cmd_bench(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "bench", argc, argv, 2, "json,quick") != 0) return 2;
    int json = gkd_cli_flag(&a, "json"), quick = gkd_cli_flag(&a, "quick"), bad = 0;
    const char *device = gkd_cli_str(&a, "device", "cpu");
    const char *precision = gkd_cli_str(&a, "precision", NULL); /* fp32|tf32|bf16; NULL: the backend's */
    int only_given = gkd_cli_str(&a, "only", NULL) != NULL;
    const char *only = gkd_cli_str(&a, "only", "distill,sgemm,train,generate,teacher_score,gkd_step,lua");
    int reps = gkd_cli_size(&a, "reps", quick ? 1 : 3, &bad);
    gkd_model_config cfg = {.vocab_size = gkd_cli_size(&a, "vocab", 8192, &bad),
                            .dim = gkd_cli_size(&a, "dim", 384, &bad),
                            .n_layers = gkd_cli_size(&a, "layers", 6, &bad),
                            .n_heads = gkd_cli_size(&a, "heads", 6, &bad),
                            .n_kv_heads = gkd_cli_size(&a, "kv-heads", 2, &bad),
                            .hidden_dim = gkd_cli_size(&a, "ffn", 1024, &bad),
                            .max_seq_len = 0,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f,
                            .tied_embeddings = 0};
    int train_batch = gkd_cli_size(&a, "batch", 4, &bad);
    int train_seq = gkd_cli_size(&a, "seq", quick ? 64 : 256, &bad);
    int gen_batch = gkd_cli_size(&a, "gen-batch", quick ? 4 : 32, &bad);
    int gen_new = gkd_cli_size(&a, "gen-new", quick ? 8 : 64, &bad);
    int gen_prompt = 16, score_seq = gkd_cli_size(&a, "score-seq", 96, &bad);
    int score_batch = gkd_cli_size(&a, "score-batch", quick ? 8 : 64, &bad);
    smol_layers = gkd_cli_size(&a, "smol-layers", 30, &bad);
    cfg.max_seq_len = train_seq > gen_prompt + gen_new ? train_seq : gen_prompt + gen_new;
    if (bad || gkd_cli_check_unused(&a)) return 2;
    const gkd_backend *be = gkd_backend_by_name(device);
    if (!be) {
        gkd_cli_error("bench", "%s", gkd_error_message());
        return 2;
    }
    gkd_precision prec;
    if (precision && (gkd_precision_parse(precision, &prec) != GKD_OK ||
                      gkd_backend_set_precision(be, prec, NULL) != GKD_OK)) {
        gkd_cli_error("bench", "--precision: %s", gkd_error_message());
        return 2;
    }
    char cpu[256], host[256] = "unknown";
    cpu_name(cpu, sizeof cpu);
    gethostname(host, sizeof host);
    gkd_buf out = {0};
    gkd_buf_printf(&out, "{\n  \"device\": \"%s\",\n  \"precision\": \"%s\",\n  \"cpu\": ", be->name,
                   gkd_precision_name(gkd_backend_precision(be)));
    gkd_buf_json_string(&out, cpu, strlen(cpu));
    gkd_buf_printf(&out, ",\n  \"cores\": %ld", sysconf(_SC_NPROCESSORS_ONLN));
    int rc = 0;
    double sgemm = 0;
    if (strstr(only, "distill") && bench_distill_sections(be, quick, &out) != 0) rc = 1;
    if (strstr(only, "sgemm")) {
        sgemm = bench_sgemm(be, quick ? 512 : 2048, reps + 2);
        gkd_buf_printf(&out, ",\n  \"sgemm\": {\"n\": %d, \"gflops\": %.2f}", quick ? 512 : 2048, sgemm);
    }
    if (strstr(only, "train")) {
        train_result tr;
        int T = train_seq;
        if (bench_train(be, &cfg, train_batch, T, reps, &tr) != GKD_OK) {
            gkd_cli_error("bench", "train: %s", gkd_error_message());
            rc = 1;
        } else {
            gkd_buf_printf(&out,
                           ",\n  \"train\": {\"shape\": \"L=%d C=%d H=%d KV=%d F=%d V=%d B=%d T=%d\", \"params\": %zu, "
                           "\"step_s\": %.4f, \"tokens_per_s\": %.1f, \"gflops\": %.2f",
                           cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.hidden_dim, cfg.vocab_size,
                           train_batch, T, tr.params, tr.step_s, tr.tokens_per_s, tr.gflops);
            if (sgemm > 0) gkd_buf_printf(&out, ", \"fraction_of_sgemm\": %.3f", tr.gflops / sgemm);
            gkd_buf_puts(&out, "}");
        }
    }
    if (strstr(only, "generate")) {
        double tps;
        if (bench_generate(be, &cfg, gen_batch, gen_prompt, gen_new, &tps) != GKD_OK) {
            gkd_cli_error("bench", "generate: %s", gkd_error_message());
            rc = 1;
        } else {
            gkd_buf_printf(&out, ",\n  \"generate\": {\"batch\": %d, \"new_tokens\": %d, \"tokens_per_s\": %.1f",
                           gen_batch, gen_new, tps);
            if (be->packed_matmul && section_generate_batch1(be, quick ? 16 : 64, reps, &out) != GKD_OK) rc = 1;
            gkd_buf_puts(&out, "}");
        }
    }
    if (strstr(only, "teacher_score")) {
        if (!be->packed_matmul && !only_given) {
            /* the default list on a backend without packed weights (cuda): recorded as not measured, not an
             * error; asked for by --only, it is one (section_teacher_score) */
            gkd_buf_printf(&out,
                           ",\n  \"teacher_score\": {\"skipped\": \"the %s backend has no reduced-precision "
                           "weights (fp32 only)\"}",
                           be->name);
            if (!json)
                fprintf(stderr,
                        "gkd bench: teacher_score skipped: the %s backend has no reduced-precision "
                        "weights\n",
                        be->name);
        } else if (section_teacher_score(be, score_batch, score_seq, reps, &out) != GKD_OK) {
            rc = 1;
        }
    }
    if (strstr(only, "gkd_step")) {
        gkd_step_result g;
        if (bench_gkd_step(be, quick ? 2 : 5, &g) != GKD_OK) {
            gkd_cli_error("bench", "gkd_step: %s", gkd_error_message());
            rc = 1;
        } else {
            gkd_buf_printf(&out,
                           ",\n  \"gkd_step\": {\"setup\": \"on-policy JSD(0.9), teacher L=4 C=256, student L=2 C=128, "
                           "B=8, 32 new tokens, arithmetic task\", \"steps\": %d, \"step_s\": %.4f, "
                           "\"generate_s\": %.4f, \"teacher_forward_s\": %.4f, \"student_forward_backward_s\": %.4f, "
                           "\"optimizer_s\": %.4f, \"tokens_per_s\": %.1f, \"logging_fraction\": %.5f}",
                           g.steps, g.step_s, g.generate_s, g.teacher_s, g.student_s, g.optimizer_s, g.tokens_per_s,
                           g.logging_fraction);
        }
    }
    if (strstr(only, "data_parallel") && section_data_parallel(reps, &out) != 0) rc = 1;
    if (strstr(only, "lua")) {
        gkd_lua_overhead lo;
        if (gkd_lua_bench_overhead(quick ? 3 : 10, &lo) != GKD_OK) {
            gkd_cli_error("bench", "lua: %s", gkd_error_message());
            rc = 1;
        } else {
            gkd_buf_printf(&out,
                           ",\n  \"lua\": {\"steps\": %d, \"lua_s_per_step\": %.6f, \"step_s\": %.5f, "
                           "\"fraction\": %.5f}",
                           lo.steps, lo.lua_seconds_per_step, lo.total_seconds_per_step, lo.fraction);
        }
    }
    gkd_buf_puts(&out, "\n}\n");
    if (json) {
        fputs(out.data, stdout);
    } else {
        printf("gkd bench on %s (%s)\n%s", be->name, cpu, out.data);
    }
    gkd_buf_free(&out);
    return rc;
}
