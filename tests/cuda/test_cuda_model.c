/* The whole model on the CUDA backend against the same model on the CPU backend (itself checked against
 * a double-precision reference and finite differences in tests/test_model_grad.c and test_kvcache.c):
 * - initialisation: the same seed gives the same parameters, bit for bit (both draw on the host);
 * - training: hidden states, loss, dL/dhidden and every parameter gradient, for a grouped-query untied
 *   model and a tied multi-head one;
 * - KV-cache decoding: prefill of right-padded prompts, then steps at each row's own position, logits
 *   compared at every step, and the GPU's cached logits against a fresh full-prefix pass on the GPU;
 * - sampling: the same seed draws the same first 16 tokens on both backends, greedy, at temperature 1 and
 *   with top-k / top-p; on the GPU the draws go through the device sampler (core/tensor/sample_cuda.h), whose
 *   workspace the model then holds;
 * - memory: 1000 training steps (with generation in between) leave device memory in use unchanged;
 * - errors: an impossible model fails with GKD_ERR_NOMEM and a message naming the size.
 * Weights have std 0.2 (norm weights 1 +- 0.1) so attention, SiLU and the norms work in their non-linear
 * range and logits are far from uniform: a wrong index shows as O(1) errors, and sampled tokens are rarely
 * near a tie. Thresholds are next to each check. Exits 77 (skipped) without a CUDA device. */
// ctest-labels: cuda
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_cuda.h"
#include "core/tensor/backend_select.h"
#include "core/tensor/model.h"
#include "core/tensor/optim.h"
#include "core/base/rng.h"
#include "core/tensor/sample.h"
#include "core/tensor/sample_cuda.h"
#include "tests/check.h"

static const gkd_backend *cpu, *gpu;

/* Forward quantities pass through ~15 ops per layer, each a few float roundings apart between the two
 * backends (different summation orders, expf within 2 ulp): ~1e-6 relative, 1e-4 leaves a wide margin. */
static const double FWD_MAX = 1e-4, FWD_NMSE = 1e-9;
/* Gradients add the backward's cancellations (softmax and rmsnorm backward subtract row means), which lift
 * the relative error of small entries; a wrong term still gives nmse ~1. */
static const double GRAD_MAX = 1e-3, GRAD_NMSE = 1e-8;
/* Log-probabilities of the sampled tokens: log-softmax of logits that agree to ~1e-6 relative. */
static const double LOGPROB_ABS = 1e-4;

static void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, gkd_error_message());
    exit(1);
}

static void compare(const char *what, const float *got, const float *want, size_t n, double max_tol,
                    double nmse_tol) {
    double err = 0, scale = 0, se = 0, sw = 0;
    size_t at = 0, bad = n;
    for (size_t i = 0; i < n; i++) {
        if ((!isfinite(got[i]) || !isfinite(want[i])) && bad == n) bad = i;
        double e = fabs((double)got[i] - want[i]);
        if (e > err) err = e, at = i;
        scale = fmax(scale, fabs((double)want[i]));
        se += e * e;
        sw += (double)want[i] * want[i];
    }
    double nmse = sw > 0 ? se / sw : se;
    CHECKF(bad == n, "%s: non-finite value at %zu", what, bad);
    CHECKF(err <= max_tol * scale && nmse <= nmse_tol,
           "%s: max error %.3g at %zu (gpu %.9g cpu %.9g), scale %.3g (max_rel %.3g), nmse %.3g", what, err,
           at, got[at], want[at], scale, scale > 0 ? err / scale : err, nmse);
}

static float *from_gpu(const float *dev, size_t n) {
    float *h = malloc(n * sizeof(float));
    gpu->copy_out(h, dev, n * sizeof(float));
    return h;
}

static gkd_model_config small_config(int tied, int n_kv_heads) {
    gkd_model_config cfg = {.vocab_size = 53,
                            .dim = 32,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = n_kv_heads,
                            .hidden_dim = 48,
                            .max_seq_len = 64,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f,
                            .tied_embeddings = tied};
    return cfg;
}

/* The same model on both backends, parameters drawn on the host and copied into each. */
static void make_pair(const gkd_model_config *cfg, uint64_t seed, gkd_model **mc, gkd_model **mg) {
    if (gkd_model_create(cfg, cpu, mc)) die("create (cpu)");
    if (gkd_model_create(cfg, gpu, mg)) die("create (cuda)");
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_USER);
    float *p = gkd_model_params(*mc);
    for (int i = 0; i < gkd_model_num_tensors(*mc); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(*mc, i);
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] = t->is_norm ? 1.0f + 0.1f * gkd_rng_normal(&rng) : 0.2f * gkd_rng_normal(&rng);
    }
    gpu->copy_in(gkd_model_params(*mg), p, gkd_model_num_params(*mc) * sizeof(float));
}

/* ---------- initialisation ---------- */

static void test_init(void) {
    gkd_model_config cfg = small_config(0, 2);
    gkd_model *mc, *mg;
    if (gkd_model_create(&cfg, cpu, &mc)) die("create (cpu)");
    if (gkd_model_create(&cfg, gpu, &mg)) die("create (cuda)");
    gkd_model_init_weights(mc, 42);
    gkd_model_init_weights(mg, 42);
    size_t n = gkd_model_num_params(mc);
    float *pg = from_gpu(gkd_model_params(mg), n);
    CHECKF(memcmp(pg, gkd_model_params(mc), n * sizeof(float)) == 0,
           "init_weights: the same seed gives different parameters on the two backends");
    free(pg);
    gkd_model_free(mc);
    gkd_model_free(mg);
}

/* ---------- training forward and backward ---------- */

static void test_training(const char *label, gkd_model_config cfg) {
    enum { B = 3, T = 20 }; /* T above the attention row kernel's limit: the batched-GEMM path */
    const int N = B * T, C = cfg.dim;
    gkd_model *mc, *mg;
    make_pair(&cfg, 7, &mc, &mg);
    int tokens[B * T], targets[B * T];
    float mask[B * T];
    for (int n = 0; n < N; n++) {
        tokens[n] = (n * 7 + 3) % cfg.vocab_size;
        targets[n] = (n * 5 + 1) % cfg.vocab_size;
        mask[n] = 1.0f;
    }
    for (int t = 12; t < T; t++) mask[t] = 0.0f, targets[t] = -1; /* row 0 padded: targets never read */
    mask[T] = mask[T + 1] = 0.0f;                                 /* row 1 starts with a prompt */

    const float *hc = NULL, *hg = NULL;
    float loss_c = 0, loss_g = 0;
    float *dh_c = malloc(sizeof(float) * N * C), *dh_g = gpu->alloc(sizeof(float) * N * C);
    gkd_model_zero_grad(mc);
    gkd_model_zero_grad(mg);
    gkd_status st = gkd_model_forward(mc, tokens, B, T, &hc);
    if (!st) st = gkd_model_ce_loss(mc, hc, targets, mask, B, T, GKD_NORM_TOKEN, &loss_c, dh_c);
    if (!st) st = gkd_model_backward(mc, dh_c);
    if (st) die("cpu forward/backward");
    st = gkd_model_forward(mg, tokens, B, T, &hg);
    if (!st) st = gkd_model_ce_loss(mg, hg, targets, mask, B, T, GKD_NORM_TOKEN, &loss_g, dh_g);
    if (!st) st = gkd_model_backward(mg, dh_g);
    if (st) die("cuda forward/backward");

    char what[192];
    float *h = from_gpu(hg, (size_t)N * C);
    snprintf(what, sizeof what, "%s: hidden", label);
    compare(what, h, hc, (size_t)N * C, FWD_MAX, FWD_NMSE);
    free(h);
    CHECKF(fabs(loss_g - loss_c) <= FWD_MAX * fabs(loss_c), "%s: loss gpu %.9g cpu %.9g", label, loss_g,
           loss_c);
    h = from_gpu(dh_g, (size_t)N * C);
    snprintf(what, sizeof what, "%s: dL/dhidden", label);
    compare(what, h, dh_c, (size_t)N * C, GRAD_MAX, GRAD_NMSE);
    free(h);

    size_t P = gkd_model_num_params(mc);
    float *gg = from_gpu(gkd_model_grads(mg), P);
    const float *gc = gkd_model_grads(mc);
    for (int i = 0; i < gkd_model_num_tensors(mc); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(mc, i);
        snprintf(what, sizeof what, "%s: grad %s", label, t->name);
        compare(what, gg + t->offset, gc + t->offset, t->numel, GRAD_MAX, GRAD_NMSE);
    }
    free(gg);

    /* the inference forward on the GPU gives the training forward's hidden states */
    const float *hn = NULL;
    if (gkd_model_forward_nograd(mg, tokens, B, T, &hn)) die("cuda forward_nograd");
    h = from_gpu(hn, (size_t)N * C);
    snprintf(what, sizeof what, "%s: nograd hidden", label);
    compare(what, h, hc, (size_t)N * C, FWD_MAX, FWD_NMSE);
    free(h);

    free(dh_c);
    gpu->free(dh_g);
    gkd_model_free(mc);
    gkd_model_free(mg);
}

/* ---------- KV-cache decoding ---------- */

static void test_kv_cache(void) {
    enum { B = 3, P = 9, STEPS = 10, MAX_T = 24 };
    gkd_model_config cfg = small_config(0, 2);
    const int V = cfg.vocab_size;
    gkd_model *mc, *mg;
    make_pair(&cfg, 8, &mc, &mg);
    const int lens[B] = {5, 2, 9};
    int seqs[B][MAX_T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < MAX_T; t++) seqs[b][t] = (b * 11 + t * 7 + 1) % V;
    int prompts[B * P];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++) prompts[b * P + t] = t < lens[b] ? seqs[b][t] : (t * 13 + b) % V;

    gkd_kv_cache *cc, *cg, *fresh;
    if (gkd_kv_cache_create(mc, B, MAX_T, &cc) || gkd_kv_cache_create(mg, B, MAX_T, &cg) ||
        gkd_kv_cache_create(mg, 1, MAX_T, &fresh))
        die("kv cache");
    float *lc = malloc(sizeof(float) * B * P * V), *lg = malloc(sizeof(float) * B * P * V);
    float *lf = malloc(sizeof(float) * V);
    int pos0[B] = {0, 0, 0};
    /* prefill: T = P above the row kernel's limit (GEMM path) */
    if (gkd_model_forward_cached(mc, cc, prompts, pos0, B, P, lc) ||
        gkd_model_forward_cached(mg, cg, prompts, pos0, B, P, lg))
        die("prefill");
    compare("kv cache: prefill logits", lg, lc, (size_t)B * P * V, FWD_MAX, FWD_NMSE);
    /* then one token per row at its own position (row kernel), overwriting the padding's entries */
    for (int s = 0; s < STEPS; s++) {
        int tok[B];
        for (int b = 0; b < B; b++) pos0[b] = lens[b] + s, tok[b] = seqs[b][pos0[b]];
        if (gkd_model_forward_cached(mc, cc, tok, pos0, B, 1, lc) ||
            gkd_model_forward_cached(mg, cg, tok, pos0, B, 1, lg))
            die("decode step");
        char what[96];
        snprintf(what, sizeof what, "kv cache: step %d logits", s);
        compare(what, lg, lc, (size_t)B * V, FWD_MAX, FWD_NMSE);
        /* the GPU's incremental logits of row 0 equal a fresh full-prefix pass on the GPU */
        int zero = 0, last = pos0[0];
        if (gkd_model_forward_cached_at(mg, fresh, seqs[0], &zero, 1, pos0[0] + 1, &last, lf))
            die("fresh full-prefix pass");
        snprintf(what, sizeof what, "kv cache: step %d, incremental vs full prefix (gpu)", s);
        compare(what, lg, lf, (size_t)V, FWD_MAX, FWD_NMSE);
    }
    free(lc), free(lg), free(lf);
    gkd_kv_cache_free(cc);
    gkd_kv_cache_free(cg);
    gkd_kv_cache_free(fresh);
    gkd_model_free(mc);
    gkd_model_free(mg);
}

/* ---------- sampling ---------- */

static void sampling_case(gkd_model *mc, gkd_model *mg, float temperature, int top_k, float top_p) {
    enum { B = 4, P = 6, NEW = 16 };
    const int V = gkd_model_get_config(mc)->vocab_size;
    const int lens[B] = {3, 6, 1, 4};
    int prompts[B * P];
    for (int i = 0; i < B * P; i++) prompts[i] = (i * 17 + 5) % V;
    gkd_sample_config sc = {
        .temperature = temperature, .top_k = top_k, .top_p = top_p, .max_new_tokens = NEW, .eos_id = -1};
    int tok_c[B * NEW], tok_g[B * NEW], len_c[B], len_g[B];
    float lp_c[B * NEW], lp_g[B * NEW];
    gkd_rng rc, rg;
    gkd_rng_init(&rc, 99, GKD_RNG_STREAM_SAMPLE);
    gkd_rng_init(&rg, 99, GKD_RNG_STREAM_SAMPLE);
    if (gkd_sample_generate(mc, prompts, lens, B, P, &sc, &rc, tok_c, len_c, lp_c)) die("generate (cpu)");
    if (gkd_sample_generate(mg, prompts, lens, B, P, &sc, &rg, tok_g, len_g, lp_g)) die("generate (cuda)");
    CHECK(rc.offset == rg.offset);
    /* the device sampler ran: its workspace for (B,V) is the model's */
    gkd_model_memory mem;
    gkd_model_memory_usage(mg, &mem);
    CHECKF(mem.kv_cache >= gkd_sample_cuda_workspace_bytes(B, V),
           "GPU model holds %zu bytes of cache and workspace", mem.kv_cache);
    for (int b = 0; b < B; b++) {
        CHECKF(len_c[b] == NEW && len_g[b] == NEW, "temperature %g row %d: lengths cpu %d gpu %d",
               temperature, b, len_c[b], len_g[b]);
        int t = 0;
        while (t < NEW && tok_c[b * NEW + t] == tok_g[b * NEW + t]) t++;
        /* a mismatch is either a bug or a draw within ~1e-6 of a tie; the log-probs tell which */
        CHECKF(t == NEW,
               "temperature %g row %d: first different token at step %d: cpu %d (logp %.7f), gpu %d "
               "(logp %.7f)",
               temperature, b, t, t < NEW ? tok_c[b * NEW + t] : -1, t < NEW ? lp_c[b * NEW + t] : 0.0f,
               t < NEW ? tok_g[b * NEW + t] : -1, t < NEW ? lp_g[b * NEW + t] : 0.0f);
        for (int i = 0; i < t; i++)
            CHECKF(fabs(lp_c[b * NEW + i] - lp_g[b * NEW + i]) <= LOGPROB_ABS,
                   "temperature %g row %d step %d: logprob cpu %.7f gpu %.7f", temperature, b, i,
                   lp_c[b * NEW + i], lp_g[b * NEW + i]);
    }
}

static void test_sampling(void) {
    gkd_model_config cfg = small_config(1, 4);
    gkd_model *mc, *mg;
    make_pair(&cfg, 9, &mc, &mg);
    sampling_case(mc, mg, 0.0f, 0, 1.0f);
    sampling_case(mc, mg, 1.0f, 0, 1.0f);
    sampling_case(mc, mg, 1.0f, 5, 1.0f);
    sampling_case(mc, mg, 0.8f, 0, 0.9f);
    sampling_case(mc, mg, 1.0f, 10, 0.7f);
    gkd_model_free(mc);
    gkd_model_free(mg);
}

/* ---------- memory stability ---------- */

static void test_memory_stability(void) {
    enum { B = 4, T = 16, STEPS = 1000, GEN_EVERY = 100 };
    gkd_model_config cfg = small_config(0, 2);
    const int C = cfg.dim, V = cfg.vocab_size;
    gkd_backend_cuda_free_workspace(); /* earlier tests' workspaces: freed at the end too, so not in base */
    size_t base = gkd_backend_cuda_memory_in_use();
    gkd_model *m;
    if (gkd_model_create(&cfg, gpu, &m)) die("create (cuda)");
    gkd_model_init_weights(m, 5);
    gkd_optim_config oc = gkd_optim_config_default();
    oc.lr = 1e-2f;
    gkd_optim *opt;
    if (gkd_optim_create(&oc, m, &opt)) die("optim");
    int tokens[B * T], targets[B * T], prompts[B * 4], lens[B] = {4, 2, 3, 1};
    float mask[B * T];
    for (int n = 0; n < B * T; n++) tokens[n] = (n * 3 + 1) % V, targets[n] = (n * 3 + 4) % V, mask[n] = 1.0f;
    for (int i = 0; i < B * 4; i++) prompts[i] = (i * 5 + 2) % V;
    float *dh = gpu->alloc(sizeof(float) * B * T * C);
    gkd_sample_config sc = {
        .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = 8, .eos_id = -1};
    gkd_rng rng;
    gkd_rng_init(&rng, 3, GKD_RNG_STREAM_SAMPLE);
    int out_tok[B * 8], out_len[B];
    float out_lp[B * 8], first_loss = 0, loss = 0;
    size_t in_use_warm = 0, free_warm = 0;
    gkd_cuda_info info;
    for (int step = 0; step < STEPS; step++) {
        const float *hidden;
        gkd_model_zero_grad(m);
        gkd_status st = gkd_model_forward(m, tokens, B, T, &hidden);
        if (!st) st = gkd_model_ce_loss(m, hidden, targets, mask, B, T, GKD_NORM_TOKEN, &loss, dh);
        if (!st) st = gkd_model_backward(m, dh);
        if (!st) st = gkd_optim_step(opt, NULL);
        if (!st && step % GEN_EVERY == 0)
            st = gkd_sample_generate(m, prompts, lens, B, 4, &sc, &rng, out_tok, out_len, out_lp);
        if (st) die("training step");
        if (step == 0) first_loss = loss;
        /* after one step and one generation every buffer has its final size */
        if (step == 1) {
            CHECK(gkd_backend_cuda_info(&info) == GKD_OK);
            in_use_warm = gkd_backend_cuda_memory_in_use();
            free_warm = info.free_bytes;
        }
        if (step > 1 && step % GEN_EVERY == 1)
            CHECKF(gkd_backend_cuda_memory_in_use() == in_use_warm,
                   "step %d: %zu bytes in use, %zu after warm-up", step, gkd_backend_cuda_memory_in_use(),
                   in_use_warm);
    }
    CHECK(gkd_backend_cuda_info(&info) == GKD_OK);
    /* the driver's free figure also counts cuBLAS's and the runtime's own memory: allow 16 MiB of slack for
     * their one-time growth, far below a leak of one activation block per step */
    CHECKF(info.free_bytes + ((size_t)16 << 20) >= free_warm, "device free memory fell from %zu to %zu bytes",
           free_warm, info.free_bytes);
    CHECKF(loss < first_loss, "1000 steps on one batch did not lower the loss (%g -> %g)", first_loss, loss);
    fprintf(stderr, "memory: %zu bytes in use by gkd after warm-up and after %d steps; loss %g -> %g\n",
            in_use_warm, STEPS, first_loss, loss);
    gpu->free(dh);
    gkd_optim_free(opt);
    gkd_model_free(m);
    gkd_backend_cuda_free_workspace(); /* attention's pointer arrays: backend workspace, not the model's */
    CHECKF(gkd_backend_cuda_memory_in_use() == base, "%zu bytes still held after freeing everything",
           gkd_backend_cuda_memory_in_use() - base);
}

/* ---------- errors ---------- */

static void test_errors(void) {
    /* 2^20 x 2^15 floats of embedding alone: 128 GiB, more than any one GPU here */
    gkd_model_config cfg = {.vocab_size = 1 << 20,
                            .dim = 1 << 15,
                            .n_layers = 1,
                            .n_heads = 256,
                            .n_kv_heads = 256,
                            .hidden_dim = 64,
                            .max_seq_len = 8,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f,
                            .tied_embeddings = 1};
    size_t base = gkd_backend_cuda_memory_in_use();
    gkd_model *m = NULL;
    gkd_status st = gkd_model_create(&cfg, gpu, &m);
    CHECKF(st == GKD_ERR_NOMEM && m == NULL, "an impossible model: status %d (%s)", st, gkd_error_message());
    CHECK(gkd_backend_cuda_memory_in_use() == base);

    CHECK(gkd_backend_by_name("cuda") == gpu);
    CHECK(gkd_backend_by_name("auto") == gpu);
    CHECK(gkd_backend_by_name("cpu") == cpu);
    CHECK(gkd_backend_by_name("tpu") == NULL && strstr(gkd_error_message(), "unknown backend"));
}

int main(void) {
    if (gkd_backend_cuda_device_count() == 0) check_skip("no CUDA device");
    gpu = gkd_backend_cuda();
    if (!gpu) {
        fprintf(stderr, "a CUDA device is present but the backend failed: %s\n", gkd_error_message());
        return 1;
    }
    cpu = gkd_backend_cpu();
    gkd_cuda_info info;
    if (gkd_backend_cuda_info(&info) == GKD_OK)
        fprintf(stderr, "device %d: %s, compute %d.%d, %d SMs, %.1f GiB, runtime %d, driver %d\n",
                info.device, info.name, info.cc_major, info.cc_minor, info.multiprocessors,
                (double)info.total_bytes / (1 << 30), info.runtime_version, info.driver_version);
    test_init();
    test_training("untied, grouped-query", small_config(0, 2));
    test_training("tied, multi-head", small_config(1, 4));
    test_kv_cache();
    test_sampling();
    test_memory_stability();
    test_errors();
    CHECK(gkd_backend_cuda_sync() == GKD_OK);
    const char *e = gkd_backend_cuda_last_error();
    CHECKF(e == NULL, "CUDA error during the test: %s", e ? e : "");
    return check_exit();
}
