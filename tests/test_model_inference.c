/* Inference models (GKD_MODEL_INFERENCE): no gradient block (gkd_model_memory_usage reports 0 bytes of
 * gradients and exactly one parameter block less in total than a trainable twin that ran the same calls),
 * the same results bit for bit as a trainable model with the same weights (hidden states, cached logits,
 * cross-entropy value, sampled tokens and log-probabilities), a clear GKD_ERR_ARG from every call that would
 * write gradients, and the loaders' _ex variants making inference models from checkpoints and GGUF. */
// ctest-labels: cpu
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tensor/backend.h"
#include "core/format/checkpoint.h"
#include "core/format/gguf_model.h"
#include "core/tensor/model.h"
#include "core/tensor/optim.h"
#include "core/base/rng.h"
#include "core/tensor/sample.h"
#include "tests/check.h"

#define FIXTURES GKD_SOURCE_DIR "/tests/fixtures/"

enum { V = 41, C = 24, B = 3, T = 7, NEW = 6 };

static gkd_model_config config(void) {
    gkd_model_config cfg = {.vocab_size = V,
                            .dim = C,
                            .n_layers = 2,
                            .n_heads = 4,
                            .n_kv_heads = 2,
                            .hidden_dim = 40,
                            .max_seq_len = 32,
                            .rope_theta = 10000.0f,
                            .norm_eps = 1e-5f,
                            .tied_embeddings = 0};
    return cfg;
}

static void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, gkd_error_message());
    exit(1);
}

static int mentions_inference(void) {
    return strstr(gkd_error_message(), "inference") != NULL;
}

int main(void) {
    gkd_model_config cfg = config();
    gkd_model *full = NULL, *inf = NULL;
    if (gkd_model_create(&cfg, gkd_backend_cpu(), &full)) die("create");
    if (gkd_model_create_ex(&cfg, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &inf)) die("create_ex");
    gkd_model_init_weights(full, 3);
    size_t P = gkd_model_num_params(full);
    memcpy(gkd_model_params(inf), gkd_model_params(full), P * sizeof(float));

    CHECK(!gkd_model_is_inference(full) && gkd_model_is_inference(inf));
    CHECK(gkd_model_grads(inf) == NULL && gkd_model_output_weight_grad(inf) == NULL);
    CHECK(gkd_model_grads(full) != NULL && gkd_model_output_weight_grad(full) != NULL);
    gkd_model_memory mf, mi;
    gkd_model_memory_usage(full, &mf);
    gkd_model_memory_usage(inf, &mi);
    CHECKF(mi.grads == 0 && mf.grads == P * sizeof(float), "gradient bytes: inference %zu, trainable %zu",
           mi.grads, mf.grads);
    CHECK(mi.params == mf.params && mi.params == P * sizeof(float));

    /* the same calls on both, bit for bit */
    int tokens[B * T], targets[B * T];
    float mask[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 7 + 2) % V, targets[i] = (i * 5 + 1) % V, mask[i] = 1.0f;
    const float *hf = NULL, *hi = NULL;
    if (gkd_model_forward_nograd(full, tokens, B, T, &hf) || gkd_model_forward_nograd(inf, tokens, B, T, &hi))
        die("forward_nograd");
    CHECK(memcmp(hf, hi, sizeof(float) * B * T * C) == 0);
    float loss_f = 0, loss_i = 0;
    if (gkd_model_ce_loss(full, hf, targets, mask, B, T, GKD_NORM_TOKEN, &loss_f, NULL) ||
        gkd_model_ce_loss(inf, hi, targets, mask, B, T, GKD_NORM_TOKEN, &loss_i, NULL))
        die("ce_loss");
    CHECK(memcmp(&loss_f, &loss_i, sizeof loss_f) == 0 && loss_f > 0);

    gkd_kv_cache *cf = NULL, *ci = NULL;
    float lf[B * T * V], li[B * T * V];
    int pos0[B] = {0, 0, 0};
    if (gkd_kv_cache_create(full, B, 16, &cf) || gkd_kv_cache_create(inf, B, 16, &ci)) die("kv cache");
    if (gkd_model_forward_cached(full, cf, tokens, pos0, B, T, lf) ||
        gkd_model_forward_cached(inf, ci, tokens, pos0, B, T, li))
        die("forward_cached");
    CHECK(memcmp(lf, li, sizeof lf) == 0);
    gkd_kv_cache_free(cf);
    gkd_kv_cache_free(ci);

    int lens[B] = {T, 3, 5}, out_f[B * NEW], out_i[B * NEW], len_f[B], len_i[B];
    float lp_f[B * NEW], lp_i[B * NEW];
    gkd_sample_config sc = {
        .temperature = 1.0f, .top_k = 9, .top_p = 0.95f, .max_new_tokens = NEW, .eos_id = -1};
    gkd_rng rf = {5, GKD_RNG_STREAM_SAMPLE, 0}, ri = rf;
    if (gkd_sample_generate(full, tokens, lens, B, T, &sc, &rf, out_f, len_f, lp_f) ||
        gkd_sample_generate(inf, tokens, lens, B, T, &sc, &ri, out_i, len_i, lp_i))
        die("generate");
    CHECK(memcmp(out_f, out_i, sizeof out_f) == 0 && memcmp(lp_f, lp_i, sizeof lp_f) == 0);

    /* after the same calls the two differ by the gradient block alone */
    gkd_model_memory_usage(full, &mf);
    gkd_model_memory_usage(inf, &mi);
    CHECKF(mf.total - mi.total == P * sizeof(float) && mi.activations == mf.activations && mi.kv_cache > 0,
           "totals: trainable %zu, inference %zu (activations %zu / %zu)", mf.total, mi.total, mf.activations,
           mi.activations);
    fprintf(stderr,
            "bytes: trainable %zu (params %zu, grads %zu, activations %zu, kv cache %zu), inference %zu\n",
            mf.total, mf.params, mf.grads, mf.activations, mf.kv_cache, mi.total);

    /* every call that would write gradients refuses, naming the reason */
    const float *h = NULL;
    float loss = 0, *dh = malloc(sizeof(float) * B * T * C);
    CHECK(gkd_model_forward(inf, tokens, B, T, &h) == GKD_ERR_ARG && mentions_inference());
    CHECK(gkd_model_backward(inf, dh) == GKD_ERR_ARG && mentions_inference());
    CHECK(gkd_model_ce_loss(inf, hi, targets, mask, B, T, GKD_NORM_TOKEN, &loss, dh) == GKD_ERR_ARG &&
          mentions_inference());
    gkd_model_zero_grad(inf); /* nothing to zero */
    gkd_optim_config oc = gkd_optim_config_default();
    gkd_optim *opt = NULL;
    CHECK(gkd_optim_create(&oc, inf, &opt) == GKD_ERR_ARG && opt == NULL && mentions_inference());
    /* the trainable model still trains */
    CHECK(gkd_model_forward(full, tokens, B, T, &h) == GKD_OK &&
          gkd_model_ce_loss(full, h, targets, mask, B, T, GKD_NORM_TOKEN, &loss, dh) == GKD_OK &&
          gkd_model_backward(full, dh) == GKD_OK);
    free(dh);
    gkd_model *bad = NULL;
    CHECK(gkd_model_create_ex(&cfg, gkd_backend_cpu(), 2, &bad) == GKD_ERR_ARG && bad == NULL);

    /* loaders: a checkpoint and a GGUF file as inference models */
    char path[256];
    snprintf(path, sizeof path, "test_model_inference.%ld.safetensors", (long)getpid());
    gkd_model *loaded = NULL;
    CHECK(gkd_checkpoint_save_model(full, path, NULL, NULL, 0) == GKD_OK);
    CHECK(gkd_checkpoint_load_model_ex(path, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &loaded) == GKD_OK);
    CHECK(loaded && gkd_model_is_inference(loaded) && gkd_model_grads(loaded) == NULL &&
          memcmp(gkd_model_params(loaded), gkd_model_params(full), P * sizeof(float)) == 0);
    gkd_model_free(loaded);
    unlink(path);
    gkd_model *gguf = NULL;
    CHECKF(gkd_gguf_model_load_ex(FIXTURES "tiny-llama-q.gguf", gkd_backend_cpu(), GKD_MODEL_INFERENCE, &gguf,
                                  NULL) == GKD_OK,
           "%s", gkd_error_message());
    CHECK(gguf && gkd_model_is_inference(gguf) && gkd_model_grads(gguf) == NULL);
    gkd_model_free(gguf);

    gkd_model_free(full);
    gkd_model_free(inf);
    return check_exit();
}
