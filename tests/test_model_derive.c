/* Students made of a teacher's layers (core/tensor/model_derive.h). Independent reference: a Llama layer whose
 * o_proj and down_proj are zero adds exactly 0 to the residual stream, so the source model with layers 1
 * and 2 so silenced must give bit for bit the hidden states of the model derived from layers {0, 3}. Also:
 * all layers in order reproduce the source exactly; every derived tensor is its source tensor; layers
 * spread evenly; bad layer lists are refused with a message naming the entry. */
// ctest-labels: cpu
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/tensor/model_derive.h"
#include "core/base/rng.h"
#include "tests/check.h"

enum { V = 41, B = 2, T = 9 };

static gkd_model *make_source(int n_layers, int tied) {
    gkd_model_config cfg = {.vocab_size = V, .dim = 16, .n_layers = n_layers, .n_heads = 4, .n_kv_heads = 2,
                            .hidden_dim = 24, .max_seq_len = 32, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                            .tied_embeddings = tied};
    gkd_model *m = NULL;
    if (gkd_model_create(&cfg, gkd_backend_cpu(), &m) != GKD_OK) {
        fprintf(stderr, "create: %s\n", gkd_error_message());
        exit(1);
    }
    gkd_rng rng;
    gkd_rng_init(&rng, 5, GKD_RNG_STREAM_USER);
    float *p = gkd_model_params(m);
    for (int i = 0; i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *t = gkd_model_tensor(m, i);
        for (size_t j = 0; j < t->numel; j++)
            p[t->offset + j] = t->is_norm ? 1.0f + 0.1f * gkd_rng_normal(&rng) : 0.2f * gkd_rng_normal(&rng);
    }
    return m;
}

/* Hidden states (B,T,C) of an inference forward, copied. */
static float *hidden_of(gkd_model *m, const int *tokens) {
    const float *h = NULL;
    if (gkd_model_forward_nograd(m, tokens, B, T, &h) != GKD_OK) {
        fprintf(stderr, "forward: %s\n", gkd_error_message());
        exit(1);
    }
    size_t n = (size_t)B * T * gkd_model_get_config(m)->dim;
    float *out = malloc(n * sizeof *out);
    memcpy(out, h, n * sizeof *out);
    return out;
}

static void zero_tensor(gkd_model *m, const char *name) {
    int i = gkd_model_tensor_find(m, name);
    CHECKF(i >= 0, "no tensor %s", name);
    if (i < 0) return;
    const gkd_tensor_info *t = gkd_model_tensor(m, i);
    memset(gkd_model_params(m) + t->offset, 0, t->numel * sizeof(float));
}

static void check_derived(int tied) {
    gkd_model *src = make_source(4, tied);
    int tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 7 + 3) % V;
    size_t n = (size_t)B * T * 16;

    /* all layers, in order: the same model */
    gkd_model *same = NULL;
    CHECK(gkd_model_from_layers(src, (const int[]){0, 1, 2, 3}, 4, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &same) ==
          GKD_OK);
    float *h_src = hidden_of(src, tokens), *h_same = hidden_of(same, tokens);
    CHECKF(memcmp(h_src, h_same, n * sizeof(float)) == 0, "tied %d: all layers differ from the source", tied);
    CHECK(gkd_model_grads(same) == NULL && gkd_model_is_inference(same));

    /* layers {0, 3}: each tensor is its source's, and the forward is the source's with layers 1, 2 silenced */
    gkd_model *sub = NULL;
    CHECK(gkd_model_from_layers(src, (const int[]){0, 3}, 2, gkd_backend_cpu(), GKD_MODEL_TRAINABLE, &sub) == GKD_OK);
    if (sub) {
        CHECK(gkd_model_get_config(sub)->n_layers == 2 && gkd_model_grads(sub) != NULL);
        int matched = 0;
        for (int i = 0; i < gkd_model_num_tensors(sub); i++) {
            const gkd_tensor_info *t = gkd_model_tensor(sub, i);
            char name[128];
            if (strncmp(t->name, "model.layers.1.", 15) == 0)
                snprintf(name, sizeof name, "model.layers.3.%s", t->name + 15);
            else
                snprintf(name, sizeof name, "%s", t->name);
            const gkd_tensor_info *s = gkd_model_tensor(src, gkd_model_tensor_find(src, name));
            matched += s && s->numel == t->numel &&
                       memcmp(gkd_model_params(sub) + t->offset, gkd_model_params(src) + s->offset,
                              t->numel * sizeof(float)) == 0;
        }
        CHECKF(matched == gkd_model_num_tensors(sub), "tied %d: %d of %d tensors equal their source", tied, matched,
               gkd_model_num_tensors(sub));
        for (int l = 1; l <= 2; l++) {
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.weight", l);
            zero_tensor(src, name);
            snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
            zero_tensor(src, name);
        }
        float *h_silenced = hidden_of(src, tokens), *h_sub = hidden_of(sub, tokens);
        double max_diff = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)h_silenced[i] - h_sub[i]);
            if (d > max_diff) max_diff = d;
        }
        CHECKF(max_diff == 0.0, "tied %d: layers {0,3} differ from the silenced source by %g", tied, max_diff);
        /* and the silencing mattered: the intact source differs */
        CHECK(memcmp(h_src, h_sub, n * sizeof(float)) != 0);
        free(h_silenced);
        free(h_sub);
    }
    free(h_src);
    free(h_same);
    gkd_model_free(same);
    gkd_model_free(sub);
    gkd_model_free(src);
}

int main(void) {
    check_derived(0);
    check_derived(1);

    int layers[30];
    CHECK(gkd_model_spread_layers(30, 4, layers) == GKD_OK);
    CHECKF(layers[0] == 0 && layers[1] == 10 && layers[2] == 19 && layers[3] == 29, "spread 30 -> 4: %d %d %d %d",
           layers[0], layers[1], layers[2], layers[3]);
    CHECK(gkd_model_spread_layers(30, 1, layers) == GKD_OK && layers[0] == 29);
    CHECK(gkd_model_spread_layers(4, 4, layers) == GKD_OK && layers[0] == 0 && layers[1] == 1 && layers[2] == 2 &&
          layers[3] == 3);
    CHECK(gkd_model_spread_layers(4, 5, layers) == GKD_ERR_ARG);
    CHECK(gkd_model_spread_layers(4, 0, layers) == GKD_ERR_ARG);

    gkd_model *src = make_source(3, 0), *bad = NULL;
    CHECK(gkd_model_from_layers(src, (const int[]){0, 3}, 2, gkd_backend_cpu(), 0, &bad) == GKD_ERR_ARG && !bad);
    CHECKF(strstr(gkd_error_message(), "layers[1] = 3") != NULL, "message: %s", gkd_error_message());
    CHECK(gkd_model_from_layers(src, (const int[]){-1}, 1, gkd_backend_cpu(), 0, &bad) == GKD_ERR_ARG && !bad);
    CHECK(gkd_model_from_layers(src, (const int[]){0}, 0, gkd_backend_cpu(), 0, &bad) == GKD_ERR_ARG && !bad);
    /* repeats are allowed: layer 2 twice */
    CHECK(gkd_model_from_layers(src, (const int[]){2, 2}, 2, gkd_backend_cpu(), 0, &bad) == GKD_OK && bad);
    gkd_model_free(bad);
    gkd_model_free(src);
    return check_exit();
}
