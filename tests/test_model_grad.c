/* Whole-model gradients against central finite differences. The reference is a separate, naive
 * double-precision Llama forward written from Hugging Face's formulas (rotate_half, repeat_kv, RMSNorm,
 * SwiGLU), reading the weights by their Hugging Face names. It checks the float forward's loss, and its
 * central differences (h = 1e-5 in double: truncation ~h^2 ~ 1e-10, rounding ~1e-16/h ~ 1e-11) give the
 * gradient to compare with the float backward: of every parameter of two tiny configs (GQA with an
 * untied lm_head and per-sequence loss; tied embeddings with per-token loss), and of a sample of each
 * tensor's entries in a medium config big enough to take the threaded paths. */
// ctest-labels: cpu
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/base/rng.h"
#include "tests/check.h"

typedef struct {
    const gkd_model *m;
    const gkd_model_config *cfg;
    double *p; /* the parameter block in double */
    const int *tokens, *targets;
    const float *mask;
    int B, T, norm;
} ref_ctx;

static const double *ref_w(const ref_ctx *r, const char *fmt, int layer) {
    char name[128];
    snprintf(name, sizeof name, fmt, layer);
    int i = gkd_model_tensor_find(r->m, name);
    if (i < 0) {
        fprintf(stderr, "missing tensor %s\n", name);
        exit(1);
    }
    return r->p + gkd_model_tensor(r->m, i)->offset;
}

/* y: (N,out) = x: (N,in) W^T with W: (out,in) */
static void ref_linear(double *y, const double *x, const double *w, int N, int in, int out) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < in; i++) s += x[n * in + i] * w[o * in + i];
            y[n * out + o] = s;
        }
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int c = 0; c < C; c++) ms += x[n * C + c] * x[n * C + c];
        double r = 1.0 / sqrt(ms / C + eps);
        for (int c = 0; c < C; c++) y[n * C + c] = w[c] * (x[n * C + c] * r);
    }
}

/* HF apply_rotary_pos_emb: x * cos + rotate_half(x) * sin with cos = cat(cos(t f), cos(t f)). */
static void ref_rope(double *x, int n_heads, int D, int t, double theta) {
    int half = D / 2;
    for (int h = 0; h < n_heads; h++) {
        double *v = x + h * D, rot[256], out[256];
        for (int j = 0; j < D; j++) rot[j] = j < half ? -v[j + half] : v[j - half];
        for (int j = 0; j < D; j++) {
            double f = pow(theta, -2.0 * (j % half) / D);
            out[j] = v[j] * cos(t * f) + rot[j] * sin(t * f);
        }
        memcpy(v, out, sizeof(double) * D);
    }
}

/* The masked cross-entropy the model is asked for, in double. If logits_out, also stores logits. */
static double ref_loss(const ref_ctx *r, double *logits_out) {
    const gkd_model_config *c = r->cfg;
    int B = r->B, T = r->T, N = B * T, C = c->dim, H = c->n_heads, KV = c->n_kv_heads, D = C / H;
    int F = c->hidden_dim, V = c->vocab_size;
    double *x = calloc((size_t)N * C, 8), *h = calloc((size_t)N * C, 8), *q = calloc((size_t)N * H * D, 8);
    double *k = calloc((size_t)N * KV * D, 8), *v = calloc((size_t)N * KV * D, 8);
    double *o = calloc((size_t)N * H * D, 8), *tmp = calloc((size_t)N * C, 8);
    double *g = calloc((size_t)N * F, 8), *u = calloc((size_t)N * F, 8), *lg = calloc((size_t)N * V, 8);
    const double *emb = ref_w(r, "model.embed_tokens.weight", 0);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) x[n * C + i] = emb[r->tokens[n] * C + i];
    for (int l = 0; l < c->n_layers; l++) {
        ref_rmsnorm(h, x, ref_w(r, "model.layers.%d.input_layernorm.weight", l), N, C, c->norm_eps);
        ref_linear(q, h, ref_w(r, "model.layers.%d.self_attn.q_proj.weight", l), N, C, H * D);
        ref_linear(k, h, ref_w(r, "model.layers.%d.self_attn.k_proj.weight", l), N, C, KV * D);
        ref_linear(v, h, ref_w(r, "model.layers.%d.self_attn.v_proj.weight", l), N, C, KV * D);
        for (int n = 0; n < N; n++) {
            ref_rope(q + n * H * D, H, D, n % T, c->rope_theta);
            ref_rope(k + n * KV * D, KV, D, n % T, c->rope_theta);
        }
        for (int b = 0; b < B; b++)
            for (int hh = 0; hh < H; hh++) {
                int kvh = hh / (H / KV); /* repeat_kv */
                for (int t = 0; t < T; t++) {
                    double s[512], mx = -1e300, sum = 0;
                    const double *qt = q + (b * T + t) * H * D + hh * D;
                    for (int j = 0; j <= t; j++) {
                        const double *kj = k + (b * T + j) * KV * D + kvh * D;
                        double d = 0;
                        for (int i = 0; i < D; i++) d += qt[i] * kj[i];
                        s[j] = d / sqrt((double)D);
                        mx = fmax(mx, s[j]);
                    }
                    for (int j = 0; j <= t; j++) sum += (s[j] = exp(s[j] - mx));
                    double *ot = o + (b * T + t) * H * D + hh * D;
                    for (int i = 0; i < D; i++) {
                        double acc = 0;
                        for (int j = 0; j <= t; j++)
                            acc += s[j] / sum * v[(b * T + j) * KV * D + kvh * D + i];
                        ot[i] = acc;
                    }
                }
            }
        ref_linear(tmp, o, ref_w(r, "model.layers.%d.self_attn.o_proj.weight", l), N, H * D, C);
        for (int i = 0; i < N * C; i++) x[i] += tmp[i];
        ref_rmsnorm(h, x, ref_w(r, "model.layers.%d.post_attention_layernorm.weight", l), N, C, c->norm_eps);
        ref_linear(g, h, ref_w(r, "model.layers.%d.mlp.gate_proj.weight", l), N, C, F);
        ref_linear(u, h, ref_w(r, "model.layers.%d.mlp.up_proj.weight", l), N, C, F);
        for (int i = 0; i < N * F; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        ref_linear(tmp, g, ref_w(r, "model.layers.%d.mlp.down_proj.weight", l), N, F, C);
        for (int i = 0; i < N * C; i++) x[i] += tmp[i];
    }
    ref_rmsnorm(h, x, ref_w(r, "model.norm.weight", 0), N, C, c->norm_eps);
    const double *wout = c->tied_embeddings ? emb : ref_w(r, "lm_head.weight", 0);
    ref_linear(lg, h, wout, N, C, V);
    if (logits_out) memcpy(logits_out, lg, sizeof(double) * N * V);
    double total = 0, loss = 0;
    int n_seq = 0;
    for (int b = 0; b < B; b++) {
        double cnt = 0, seq = 0;
        for (int t = 0; t < T; t++) {
            int n = b * T + t;
            if (r->mask[n] == 0.0f) continue;
            double mx = -1e300, s = 0;
            for (int i = 0; i < V; i++) mx = fmax(mx, lg[n * V + i]);
            for (int i = 0; i < V; i++) s += exp(lg[n * V + i] - mx);
            seq += r->mask[n] * (mx + log(s) - lg[n * V + r->targets[n]]);
            cnt += r->mask[n];
        }
        total += cnt;
        if (cnt > 0) {
            n_seq++;
            loss += r->norm == GKD_NORM_SEQUENCE ? seq / cnt : seq;
        }
    }
    loss = r->norm == GKD_NORM_SEQUENCE ? loss / n_seq : loss / total;
    free(x), free(h), free(q), free(k), free(v), free(o), free(tmp), free(g), free(u), free(lg);
    return loss;
}

/* Weights big enough that softmax, SiLU and the norms work in their non-linear range. */
static void fill_params(gkd_model *m, uint64_t seed) {
    gkd_rng rng;
    gkd_rng_init(&rng, seed, GKD_RNG_STREAM_USER);
    float *p = gkd_model_params(m);
    for (int i = 0; i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(m, i);
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] = t->is_norm ? 1.0f + 0.3f * gkd_rng_normal(&rng) : 0.35f * gkd_rng_normal(&rng);
    }
}

/* samples: how many entries of each tensor to check by differences, 0 for all of them. */
/* chunk: rows per loss chunk (0: default); full_mask: every position counts (else padding and a prompt) */
static void run_config(const char *label, gkd_model_config cfg, int norm, int B, int T, int samples,
                       int chunk, int full_mask) {
    gkd_model *m = NULL;
    gkd_status st = gkd_model_create(&cfg, gkd_backend_cpu(), &m);
    CHECKF(st == GKD_OK, "%s: create: %s", label, gkd_error_message());
    if (st) return;
    fill_params(m, 11);
    CHECK(gkd_model_set_loss_chunk(m, chunk) == GKD_OK);
    /* Unless full_mask, row 0 is right-padded after 5 tokens (mask 0, target -1 never read) and row 1 has
     * its first two positions masked, like a prompt. */
    int *tokens = malloc(sizeof(int) * B * T), *targets = malloc(sizeof(int) * B * T);
    float *mask = malloc(sizeof(float) * B * T);
    for (int n = 0; n < B * T; n++) {
        tokens[n] = (n * 7 + 3) % cfg.vocab_size;
        targets[n] = (n * 5 + 1) % cfg.vocab_size;
        mask[n] = 1.0f;
    }
    if (!full_mask) {
        for (int t = 5; t < T; t++) mask[t] = 0.0f, targets[t] = -1;
        mask[T + 0] = mask[T + 1] = 0.0f;
    }

    const int N = B * T, C = cfg.dim;
    float *dhidden = malloc(sizeof(float) * N * C);
    const float *hidden = NULL;
    float loss = 0.0f;
    gkd_model_zero_grad(m);
    st = gkd_model_forward(m, tokens, B, T, &hidden);
    if (!st) st = gkd_model_ce_loss(m, hidden, targets, mask, B, T, norm, &loss, dhidden);
    if (!st) st = gkd_model_backward(m, dhidden);
    CHECKF(st == GKD_OK, "%s: forward/backward: %s", label, gkd_error_message());

    size_t P = gkd_model_num_params(m);
    ref_ctx r = {.m = m,
                 .cfg = &cfg,
                 .tokens = tokens,
                 .targets = targets,
                 .mask = mask,
                 .B = B,
                 .T = T,
                 .norm = norm};
    r.p = malloc(sizeof(double) * P);
    const float *pf = gkd_model_params(m);
    for (size_t i = 0; i < P; i++) r.p[i] = pf[i];
    double ref = ref_loss(&r, NULL);
    /* float forward vs double reference: relative 1e-5 allows float rounding through ~10 layers of
     * sums of <= 37 terms (each ~1e-7 relative), far below what any formula error would give. */
    CHECKF(fabs(loss - ref) <= 1e-5 * fabs(ref), "%s: loss %.9g vs reference %.9g", label, loss, ref);

    /* No-grad forward gives the same hidden states as the training forward. */
    float *hid_copy = malloc(sizeof(float) * N * C);
    memcpy(hid_copy, hidden, sizeof(float) * N * C);
    const float *hidden2 = NULL;
    st = gkd_model_forward_nograd(m, tokens, B, T, &hidden2);
    double dmax = 0;
    for (int i = 0; i < N * C && !st; i++) dmax = fmax(dmax, fabs(hidden2[i] - hid_copy[i]));
    CHECKF(st == GKD_OK && dmax == 0.0, "%s: nograd hidden differs by %g (same ops, same order: exact)",
           label, dmax);

    const float *g = gkd_model_grads(m);
    const double h = 1e-5;
    double worst_ratio = 0;
    gkd_rng pick;
    gkd_rng_init(&pick, 3, GKD_RNG_STREAM_USER);
    for (int ti = 0; ti < gkd_model_num_tensors(m); ti++) {
        const gkd_tensor_info *t = gkd_model_tensor(m, ti);
        double worst = 0, gmax = 0, worst_fd = 0;
        size_t worst_j = 0;
        for (size_t j = 0; j < t->numel; j++) gmax = fmax(gmax, fabs(g[t->offset + j]));
        size_t n_checks = samples ? (size_t)samples : t->numel;
        for (size_t k = 0; k < n_checks; k++) {
            size_t j = samples ? gkd_rng_below(&pick, (uint32_t)t->numel) : k;
            double *x = &r.p[t->offset + j], x0 = *x;
            *x = x0 + h;
            double lp = ref_loss(&r, NULL);
            *x = x0 - h;
            double lm = ref_loss(&r, NULL);
            *x = x0;
            double fd = (lp - lm) / (2 * h), e = fabs(g[t->offset + j] - fd);
            if (e >= worst) worst = e, worst_j = j, worst_fd = fd;
        }
        worst_ratio = fmax(worst_ratio, gmax > 0 ? worst / gmax : 1.0);
        /* 1e-4 of the tensor's largest gradient: the float backward carries ~1e-6 relative rounding and
         * the double differences ~1e-9; a wrong term (a missing factor, a transposed index) is O(1). */
        CHECKF(gmax > 0 && worst <= 1e-4 * gmax,
               "%s: %s: max |grad - fd| = %.3g at %zu (grad %.6g fd %.6g), max |grad| %.3g", label, t->name,
               worst, worst_j, g[t->offset + worst_j], worst_fd, gmax);
    }
    fprintf(stderr, "%s: loss %.7f, reference %.7f, worst |grad - fd| / max|grad| over tensors %.2g\n", label,
            loss, ref, worst_ratio);

    /* Gradients accumulate: a second identical pass doubles them. */
    float *g1 = malloc(sizeof(float) * P);
    memcpy(g1, g, sizeof(float) * P);
    st = gkd_model_forward(m, tokens, B, T, &hidden);
    if (!st) st = gkd_model_ce_loss(m, hidden, targets, mask, B, T, norm, &loss, dhidden);
    if (!st) st = gkd_model_backward(m, dhidden);
    double acc_err = 0, acc_max = 0;
    for (size_t i = 0; i < P; i++) {
        acc_err = fmax(acc_err, fabs(g[i] - 2.0 * g1[i]));
        acc_max = fmax(acc_max, fabs(g1[i]));
    }
    CHECKF(st == GKD_OK && acc_err <= 1e-6 * acc_max, "%s: second pass: grads != 2x first (err %g)", label,
           acc_err);

    free(g1);
    free(tokens), free(targets), free(mask);
    free(hid_copy);
    free(r.p);
    free(dhidden);
    gkd_model_free(m);
}

static void check_bad_input(void) {
    gkd_model_config cfg = {.vocab_size = 37,
                            .dim = 16,
                            .n_layers = 1,
                            .n_heads = 4,
                            .n_kv_heads = 3,
                            .hidden_dim = 24,
                            .max_seq_len = 16,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    CHECK(gkd_model_create(&cfg, gkd_backend_cpu(), &m) == GKD_ERR_ARG && m == NULL);
    CHECKF(strstr(gkd_error_message(), "n_kv_heads") != NULL, "message: %s", gkd_error_message());
    cfg.n_kv_heads = 2;
    cfg.dim = 18;
    CHECK(gkd_model_config_check(&cfg) == GKD_ERR_ARG && strstr(gkd_error_message(), "dim"));
    cfg.dim = 16;
    CHECK(gkd_model_create(&cfg, gkd_backend_cpu(), &m) == GKD_OK);
    int tokens[4] = {1, 2, 40, 3};
    const float *hidden;
    CHECK(gkd_model_forward(m, tokens, 1, 4, &hidden) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "tokens[0][2]") != NULL, "message: %s", gkd_error_message());
    CHECK(gkd_model_forward(m, tokens, 1, 17, &hidden) == GKD_ERR_ARG);
    float dh[64] = {0};
    CHECK(gkd_model_backward(m, dh) == GKD_ERR_ARG); /* no forward to differentiate yet */
    tokens[2] = 4;
    CHECK(gkd_model_forward(m, tokens, 1, 4, &hidden) == GKD_OK);
    int targets[4] = {1, 99, 2, 3};
    float mask[4] = {1, 1, 1, 1}, loss;
    CHECK(gkd_model_ce_loss(m, hidden, targets, mask, 1, 4, GKD_NORM_TOKEN, &loss, NULL) == GKD_ERR_ARG);
    CHECKF(strstr(gkd_error_message(), "targets[0][1]") != NULL, "message: %s", gkd_error_message());
    mask[1] = 0;
    CHECK(gkd_model_ce_loss(m, hidden, targets, mask, 1, 4, GKD_NORM_TOKEN, &loss, NULL) == GKD_OK);
    mask[1] = -1;
    CHECK(gkd_model_ce_loss(m, hidden, targets, mask, 1, 4, GKD_NORM_TOKEN, &loss, NULL) == GKD_ERR_ARG);
    CHECK(gkd_model_ce_loss(m, hidden, targets, mask, 1, 4, 7, &loss, NULL) == GKD_ERR_ARG);
    /* Names and layout: the Hugging Face set, contiguous, with no lm_head when tied. */
    CHECK(gkd_model_tensor_find(m, "model.layers.0.mlp.down_proj.weight") >= 0);
    CHECK(gkd_model_tensor_find(m, "lm_head.weight") >= 0);
    size_t off = 0;
    for (int i = 0; i < gkd_model_num_tensors(m); i++) {
        CHECK(gkd_model_tensor(m, i)->offset == off);
        off += gkd_model_tensor(m, i)->numel;
    }
    CHECK(off == gkd_model_num_params(m));
    gkd_model_free(m);
    cfg.tied_embeddings = 1;
    CHECK(gkd_model_create(&cfg, gkd_backend_cpu(), &m) == GKD_OK);
    CHECK(gkd_model_tensor_find(m, "lm_head.weight") < 0);
    CHECK(gkd_model_output_weight(m) == gkd_model_params(m));
    gkd_model_free(m);
    gkd_model_free(NULL);
}

static void check_init(void) {
    gkd_model_config cfg = {.vocab_size = 37,
                            .dim = 16,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = 2,
                            .hidden_dim = 24,
                            .max_seq_len = 16,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f};
    gkd_model *a = NULL, *b = NULL;
    CHECK(gkd_model_create(&cfg, gkd_backend_cpu(), &a) == GKD_OK);
    CHECK(gkd_model_create(&cfg, gkd_backend_cpu(), &b) == GKD_OK);
    gkd_model_init_weights(a, 5);
    gkd_model_init_weights(b, 5);
    size_t P = gkd_model_num_params(a);
    CHECK(memcmp(gkd_model_params(a), gkd_model_params(b), P * sizeof(float)) == 0);
    const gkd_tensor_info *emb = gkd_model_tensor(a, 0);
    double s2 = 0;
    for (size_t j = 0; j < emb->numel; j++) s2 += (double)gkd_model_params(a)[j] * gkd_model_params(a)[j];
    double sd = sqrt(s2 / emb->numel);
    /* 592 draws: the sample std is within ~3% of 0.02 with high probability; 15% catches a wrong scale. */
    CHECKF(fabs(sd - 0.02) < 0.003, "embedding std %g", sd);
    const gkd_tensor_info *norm = gkd_model_tensor(a, gkd_model_tensor_find(a, "model.norm.weight"));
    CHECK(norm->is_norm && gkd_model_params(a)[norm->offset] == 1.0f);
    gkd_rng r = {5, GKD_RNG_STREAM_INIT, 2 * 3};
    CHECK(gkd_model_params(a)[3] == 0.02f * gkd_rng_normal(&r));
    gkd_model_free(a);
    gkd_model_free(b);
}

int main(void) {
    gkd_model_config untied = {.vocab_size = 37,
                               .dim = 16,
                               .n_layers = 2,
                               .n_heads = 4,
                               .n_kv_heads = 2,
                               .hidden_dim = 24,
                               .max_seq_len = 32,
                               .rope_theta = 10000.0f,
                               .norm_eps = 1e-5f,
                               .tied_embeddings = 0};
    run_config("untied GQA, sequence norm", untied, GKD_NORM_SEQUENCE, 2, 7, 0, 3,
               0); /* chunks of 3 rows, gathered */
    gkd_model_config tied = untied;
    tied.tied_embeddings = 1;
    tied.n_kv_heads = 4;
    tied.rope_theta = 500.0f;
    run_config("tied MHA, token norm", tied, GKD_NORM_TOKEN, 2, 7, 0, 0, 0);
    /* Big enough for the threaded paths (split products, attention work items); 4 entries per tensor. */
    gkd_model_config medium = {.vocab_size = 300,
                               .dim = 64,
                               .n_layers = 2,
                               .n_heads = 4,
                               .n_kv_heads = 2,
                               .hidden_dim = 160,
                               .max_seq_len = 64,
                               .rope_theta = 10000.0f,
                               .norm_eps = 1e-5f};
    run_config("medium untied GQA, token norm", medium, GKD_NORM_TOKEN, 2, 64, 4, 40,
               1); /* contiguous chunks */
    check_bad_input();
    check_init();
    return check_exit();
}
