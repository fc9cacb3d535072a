// ctest-labels: cpu
/* Hugging Face Llama directories read as transformers reads them (tests/fixtures/make_hf_llama_fixtures.py
 * made the fixtures with torch and transformers; this test needs neither):
 * - four tiny random models (grouped-query attention; untied and tied; rope_theta 5e5 in transformers 5's
 *   rope_parameters and in the old top-level key; llama3 rope scaling; linear rope scaling in the old
 *   rope_scaling key; F32 and BF16 weights) give transformers' logits for an 80-token sequence within 1e-4,
 *   through gkd_model_logits, and their log-probabilities through gkd_model_logprobs and the cross-entropy;
 *   the same model with plain rope (theta 10000, or its theta without the scaling) is off by more than 0.1,
 *   so the fixtures tell a wrong rope from the right one;
 * - linear.gguf (the linear model as llama.cpp's converter writes it) gives the same logits;
 * - a model saved by gkd (Hugging Face directory and gkd .safetensors) reads back with the same
 * configuration, rope scaling included, and the same logits;
 * - configurations gkd cannot compute (biases, yarn and dynamic rope, gelu, sliding window, mistral, a
 * head_dim of its own, conflicting rope_theta, partial rotary, an attention factor, sizes past the bounds)
 * are refused with a message naming the key; so are a tensor gkd has no place for and a non-finite weight
 * (safetensors from transformers, a gkd checkpoint, GGUF), named by the tensor. */
#include "core/tensor/backend.h"
#include "core/format/checkpoint.h"
#include "core/format/gguf_model.h"
#include "core/base/json.h"
#include "tests/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HF GKD_SOURCE_DIR "/tests/fixtures/hf/"

/* float32 against transformers' float32 over 2 layers, logits up to about 7: measured max error 2e-5; a
 * wrong rope frequency is off by more than 0.1 (checked below), a wrong weight by ~1. */
static const double TOL = 1e-4;

typedef struct {
    int T, V;
    int *tokens;   /* (T) */
    float *logits; /* (T,V) transformers' */
    double *lp;    /* (T-1) log p(tokens[i] | tokens[<i]) from those logits, in double */
} reference;

static int read_reference(const char *dir, reference *r) {
    char path[4096];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    gkd_json *j = NULL;
    if (gkd_json_parse_file(path, &j) != GKD_OK) {
        CHECKF(0, "%s", gkd_error_message());
        return 0;
    }
    const gkd_json *toks = gkd_json_get(j, "tokens");
    r->T = toks ? (int)toks->len : 0;
    r->V = (int)gkd_json_get_number(j, "vocab_size", 0);
    r->tokens = malloc(((size_t)r->T + 1) * sizeof *r->tokens);
    for (int i = 0; i < r->T; i++) r->tokens[i] = (int)toks->items[i]->number;
    gkd_json_free(j);
    size_t n = (size_t)r->T * r->V;
    r->logits = malloc((n + 1) * sizeof *r->logits);
    snprintf(path, sizeof path, "%s/logits.f32", dir);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(r->logits, sizeof *r->logits, n, f) : 0;
    int extra = f ? fgetc(f) != EOF : 0;
    if (f) fclose(f);
    CHECKF(r->T > 1 && r->V > 0 && got == n && !extra, "%s: %zu of %zu floats", path, got, n);
    r->lp = malloc(((size_t)r->T + 1) * sizeof *r->lp);
    for (int t = 0; t + 1 < r->T; t++) {
        const float *row = r->logits + (size_t)t * r->V;
        double mx = row[0], sum = 0.0;
        for (int v = 1; v < r->V; v++) mx = fmax(mx, row[v]);
        for (int v = 0; v < r->V; v++) sum += exp(row[v] - mx);
        r->lp[t] = row[r->tokens[t + 1]] - mx - log(sum);
    }
    return got == n && !extra && r->T > 1;
}

static void reference_free(reference *r) {
    free(r->tokens);
    free(r->logits);
    free(r->lp);
}

/* max |logits(m) - ref| over the sequence; -1 when the forward fails. */
static double logits_diff(gkd_model *m, const reference *r) {
    float *got = malloc((size_t)r->T * r->V * sizeof *got);
    double worst = -1.0;
    if (gkd_model_logits(m, r->tokens, r->T, got) == GKD_OK) {
        worst = 0.0;
        for (size_t i = 0; i < (size_t)r->T * r->V; i++)
            worst = fmax(worst, fabs(got[i] - (double)r->logits[i]));
    } else {
        CHECKF(0, "gkd_model_logits: %s", gkd_error_message());
    }
    free(got);
    return worst;
}

/* The same weights under another configuration (a wrong rope): must miss the reference by far. */
static void check_wrong_rope_misses(gkd_model *m, const reference *r, const gkd_model_config *wrong,
                                    const char *what) {
    gkd_model *w = NULL;
    CHECKF(gkd_model_create_ex(wrong, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &w) == GKD_OK, "%s",
           gkd_error_message());
    if (!w) return;
    memcpy(gkd_model_params(w), gkd_model_params(m), gkd_model_num_params(m) * sizeof(float));
    double d = logits_diff(w, r);
    CHECKF(d > 0.1, "%s: the fixture does not tell it from the right rope (max diff %g)", what, d);
    gkd_model_free(w);
}

static void check_parity(const char *name, gkd_rope_type want_type, float want_theta, int want_tied) {
    char dir[4096];
    snprintf(dir, sizeof dir, HF "%s", name);
    reference r;
    if (!read_reference(dir, &r)) return;
    gkd_model *m = NULL;
    CHECKF(gkd_checkpoint_load_model_ex(dir, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m) == GKD_OK, "%s: %s",
           name, gkd_error_message());
    if (!m) {
        reference_free(&r);
        return;
    }
    const gkd_model_config *c = gkd_model_get_config(m);
    CHECKF(c->rope_type == (int)want_type && c->rope_theta == want_theta && c->tied_embeddings == want_tied &&
               c->vocab_size == r.V && c->n_kv_heads * 2 == c->n_heads,
           "%s: read rope_type %d theta %g tied %d", name, c->rope_type, c->rope_theta, c->tied_embeddings);
    double d = logits_diff(m, &r);
    CHECKF(d >= 0 && d <= TOL, "%s: logits differ from transformers' by %g", name, d);
    printf("%-20s max |logit diff| %.2e\n", name, d);

    double *lp = malloc((size_t)r.T * sizeof *lp);
    CHECKF(gkd_model_logprobs(m, r.tokens, r.T, lp) == GKD_OK, "%s", gkd_error_message());
    double lp_worst = 0.0, nll = 0.0;
    for (int t = 0; t + 1 < r.T; t++) {
        lp_worst = fmax(lp_worst, fabs(lp[t] - r.lp[t]));
        nll -= r.lp[t];
    }
    CHECKF(lp_worst <= TOL, "%s: log-probs differ by %g", name, lp_worst);
    /* The training path (forward without a cache, chunked cross-entropy) agrees on the mean NLL. */
    const float *hidden = NULL;
    float *mask = malloc((size_t)r.T * sizeof *mask), loss = 0.0f;
    int *targets = malloc((size_t)r.T * sizeof *targets);
    for (int t = 0; t < r.T; t++) {
        targets[t] = t + 1 < r.T ? r.tokens[t + 1] : -1;
        mask[t] = t + 1 < r.T ? 1.0f : 0.0f;
    }
    CHECK(gkd_model_forward_nograd(m, r.tokens, 1, r.T, &hidden) == GKD_OK);
    CHECK(gkd_model_ce_loss(m, hidden, targets, mask, 1, r.T, GKD_NORM_TOKEN, &loss, NULL) == GKD_OK);
    CHECKF(fabs(loss - nll / (r.T - 1)) <= TOL, "%s: cross-entropy %g, reference %g", name, loss,
           nll / (r.T - 1));

    gkd_model_config wrong = *c;
    wrong.rope_type = GKD_ROPE_DEFAULT;
    wrong.rope_theta = 10000.0f;
    check_wrong_rope_misses(m, &r, &wrong, "theta 10000");
    if (want_type != GKD_ROPE_DEFAULT) {
        wrong = *c;
        wrong.rope_type = GKD_ROPE_DEFAULT;
        check_wrong_rope_misses(m, &r, &wrong, "no scaling");
    }
    free(lp);
    free(mask);
    free(targets);
    gkd_model_free(m);
    reference_free(&r);
}

static void check_linear_gguf(void) {
    reference r;
    if (!read_reference(HF "linear-old-keys", &r)) return;
    gkd_model *m = NULL;
    CHECKF(gkd_gguf_model_load_ex(HF "linear.gguf", gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m, NULL) ==
               GKD_OK,
           "%s", gkd_error_message());
    if (m) {
        const gkd_model_config *c = gkd_model_get_config(m);
        CHECKF(c->rope_type == GKD_ROPE_LINEAR && c->rope_factor == 4.0f,
               "linear.gguf: rope_type %d factor %g", c->rope_type, c->rope_factor);
        double d = logits_diff(m, &r);
        CHECKF(d >= 0 && d <= TOL, "linear.gguf: logits differ from transformers' by %g", d);
    }
    gkd_model_free(m);
    reference_free(&r);
}

/* gkd's own writers keep the rope scaling: a Hugging Face directory and a .safetensors file read back as the
 * same configuration and the same logits. */
static void check_save_round_trip(const char *tmp) {
    reference r;
    if (!read_reference(HF "llama3", &r)) return;
    gkd_model *m = NULL;
    CHECK(gkd_checkpoint_load_model(HF "llama3", gkd_backend_cpu(), &m) == GKD_OK);
    if (!m) {
        reference_free(&r);
        return;
    }
    char dir[4096], file[4096];
    snprintf(dir, sizeof dir, "%s/saved-hf", tmp);
    snprintf(file, sizeof file, "%s/saved.safetensors", tmp);
    CHECKF(gkd_checkpoint_save_hf_dir(m, dir) == GKD_OK, "%s", gkd_error_message());
    CHECKF(gkd_checkpoint_save_model(m, file, NULL, NULL, 0) == GKD_OK, "%s", gkd_error_message());
    const char *paths[] = {dir, file};
    for (int i = 0; i < 2; i++) {
        gkd_model *back = NULL;
        CHECKF(gkd_checkpoint_load_model(paths[i], gkd_backend_cpu(), &back) == GKD_OK, "%s: %s", paths[i],
               gkd_error_message());
        if (!back) continue;
        const gkd_model_config *c = gkd_model_get_config(back);
        CHECKF(gkd_model_config_equal(c, gkd_model_get_config(m)) && c->rope_type == GKD_ROPE_LLAMA3 &&
                   c->rope_original_max_seq_len == 64 && c->rope_factor == 8.0f,
               "%s: configuration changed on the way (rope_type %d)", paths[i], c->rope_type);
        double d = logits_diff(back, &r);
        CHECKF(d >= 0 && d <= TOL, "%s: logits differ by %g", paths[i], d);
        gkd_model_free(back);
    }
    gkd_model_free(m);
    reference_free(&r);
}

/* Loading `path` fails with a message that names `name` after the path (which may itself contain it). */
static void check_refused(const char *path, const char *name) {
    gkd_model *m = NULL;
    gkd_status st = gkd_gguf_file_is_gguf(path)
                        ? gkd_gguf_model_load_ex(path, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m, NULL)
                        : gkd_checkpoint_load_model_ex(path, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m);
    CHECKF(st != GKD_OK && m == NULL, "%s was loaded; it must be refused naming %s", path, name);
    const char *msg = gkd_error_message(), *after_path = strstr(msg, path);
    after_path = after_path ? after_path + strlen(path) : msg;
    CHECKF(st == GKD_OK || strstr(after_path, name) != NULL, "%s: the message does not name %s: %s", path,
           name, msg);
    if (st != GKD_OK) printf("refused: %s\n", gkd_error_message());
    gkd_model_free(m);
}

/* A gkd checkpoint whose training diverged: one NaN weight. */
static void check_nan_checkpoint(const char *tmp) {
    gkd_model_config cfg = {.vocab_size = 16,
                            .dim = 8,
                            .n_layers = 1,
                            .n_heads = 2,
                            .n_kv_heads = 1,
                            .hidden_dim = 16,
                            .max_seq_len = 16,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f};
    gkd_model *m = NULL;
    CHECK(gkd_model_create(&cfg, gkd_backend_cpu(), &m) == GKD_OK);
    if (!m) return;
    gkd_model_init_weights(m, 1);
    int i = gkd_model_tensor_find(m, "model.layers.0.self_attn.v_proj.weight");
    CHECK(i >= 0);
    gkd_model_params(m)[gkd_model_tensor(m, i)->offset + 3] = NAN;
    char path[4096];
    snprintf(path, sizeof path, "%s/diverged.safetensors", tmp);
    CHECK(gkd_checkpoint_save_model(m, path, NULL, NULL, 0) == GKD_OK);
    check_refused(path, "model.layers.0.self_attn.v_proj.weight");
    CHECKF(gkd_checkpoint_load_into(m, path) != GKD_OK, "load_into took a NaN weight");
    gkd_model_free(m);
}

int main(void) {
    setenv("OMP_NUM_THREADS", "1", 0);
    char tmp[] = "/tmp/gkd-test-hf-XXXXXX";
    if (!mkdtemp(tmp)) check_skip("cannot create a temporary directory");

    check_parity("gqa-untied", GKD_ROPE_DEFAULT, 5e5f, 0);
    check_parity("gqa-tied-old-keys", GKD_ROPE_DEFAULT, 5e5f, 1);
    check_parity("llama3", GKD_ROPE_LLAMA3, 5e5f, 0);
    check_parity("linear-old-keys", GKD_ROPE_LINEAR, 2e5f, 1);
    check_linear_gguf();
    check_save_round_trip(tmp);

    static const struct {
        const char *path, *name;
    } refusals[] = {
        {HF "refuse-attention-bias", "attention_bias"},
        {HF "refuse-mlp-bias", "mlp_bias"},
        {HF "refuse-yarn", "yarn"},
        {HF "refuse-dynamic-old-key", "rope_scaling.type = \"dynamic\""},
        {HF "refuse-gelu", "hidden_act"},
        {HF "refuse-sliding-window", "sliding_window"},
        {HF "refuse-mistral", "model_type"},
        {HF "refuse-head-dim", "head_dim"},
        {HF "refuse-theta-conflict", "rope_parameters.rope_theta"},
        {HF "refuse-partial-rotary", "partial_rotary_factor"},
        {HF "refuse-attention-factor", "rope_parameters.attention_factor"},
        {HF "refuse-huge-layers", "hidden_size"},
        {HF "refuse-extra-tensor", "model.layers.0.self_attn.q_proj.bias"},
        {HF "refuse-nan-weight", "model.layers.0.mlp.up_proj.weight"},
        {HF "inf-weight.gguf", "blk.0.ffn_down.weight"},
        {HF "huge-config.gguf", "embedding_length"},
    };
    for (size_t i = 0; i < sizeof refusals / sizeof *refusals; i++)
        check_refused(refusals[i].path, refusals[i].name);
    check_nan_checkpoint(tmp);

    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return check_exit();
}
