/* Fuzz harness: a tiny model with hostile weights run through the sampler (core/tensor/sample.c, core/tensor/model.c).
 * Input: 16 bytes of settings (sampling temperature, top-k, top-p, EOS, batch and prompt shape, model
 * shape), then one byte per weight, repeated when the input is shorter than the model. A weight byte maps to
 * a small value or, for the top 16 codes, to NaN, an infinity, 1e14, FLT_MAX, a denormal and the like, so
 * that diverged checkpoints are common. Generation must succeed with tokens inside the vocabulary or fail
 * with an error; it must never crash or read outside its buffers. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "core/base/rng.h"
#include "core/tensor/sample.h"
#include "tests/fuzz/fuzz.h"

int gkd_fuzz_sample(const uint8_t *data, size_t size);

enum { V = 13, MAX_B = 3, MAX_P = 4, MAX_NEW = 6, N_SETTINGS = 16 };

static float hostile(uint8_t b) {
    static const float special[16] = {NAN,     -NAN,   INFINITY, -INFINITY, 1e14f, -1e14f, FLT_MAX,  -FLT_MAX,
                                      FLT_MIN, 1e-45f, 1e30f,    -1e30f,    0.0f,  -0.0f,  65504.0f, 1e7f};
    return b >= 240 ? special[b - 240] : (float)(b - 120) / 16.0f;
}

int gkd_fuzz_sample(const uint8_t *data, size_t size) {
    uint8_t s[N_SETTINGS] = {0};
    memcpy(s, data, size < N_SETTINGS ? size : N_SETTINGS);
    const uint8_t *w = size > N_SETTINGS ? data + N_SETTINGS : NULL;
    size_t n_w = size > N_SETTINGS ? size - N_SETTINGS : 0;

    static const float eps[4] = {1e-5f, 1e-6f, FLT_MIN, 1e-45f};
    gkd_model_config cfg = {.vocab_size = V,
                            .dim = 8,
                            .n_layers = 1 + (s[7] & 1),
                            .n_heads = 2,
                            .n_kv_heads = 1 + ((s[7] >> 1) & 1),
                            .hidden_dim = 12,
                            .max_seq_len = MAX_P + MAX_NEW,
                            .rope_theta = (s[7] >> 2) & 1 ? 1e30f : 10000.0f,
                            .norm_eps = eps[(s[7] >> 3) & 3],
                            .tied_embeddings = (s[7] >> 5) & 1};
    gkd_model *m = NULL;
    if (gkd_model_create_ex(&cfg, gkd_backend_cpu(), GKD_MODEL_INFERENCE, &m) != GKD_OK) abort();
    float *p = gkd_model_params(m);
    size_t n_params = gkd_model_num_params(m);
    for (size_t i = 0; i < n_params; i++) p[i] = n_w ? hostile(w[i % n_w]) : 0.0f;

    gkd_sample_config sc = {
        .temperature = s[0] < 240 ? (float)s[0] / 64.0f : hostile(s[0]),
        .top_k = s[1] % (V + 3),
        .top_p = s[2] == 0    ? 1.0f
                 : s[2] < 240 ? (float)s[2] / 239.0f
                              : hostile(s[2]),
        .max_new_tokens = s[3] % (MAX_NEW + 1),
        .eos_id = s[4] % (V + 1) - 1,
    };
    int B = 1 + s[5] % MAX_B, P = 1 + (s[5] >> 2) % MAX_P;
    int prompts[MAX_B * MAX_P], prompt_lens[MAX_B];
    for (int b = 0; b < B; b++) {
        prompt_lens[b] = 1 + (s[6] >> (2 * b)) % P;
        for (int t = 0; t < P; t++) prompts[b * P + t] = s[(8 + b * P + t) % N_SETTINGS] % V;
    }
    gkd_rng rng;
    gkd_rng_init(&rng, s[15], GKD_RNG_STREAM_USER);
    int out_tokens[MAX_B * MAX_NEW], out_lens[MAX_B];
    float out_logprobs[MAX_B * MAX_NEW];
    /* twice: the second call decodes through the KV cache the first one left */
    for (int round = 0; round < 2; round++) {
        if (gkd_sample_generate(m, prompts, prompt_lens, B, P, &sc, &rng, out_tokens, out_lens,
                                out_logprobs) != GKD_OK)
            break;
        for (int b = 0; b < B; b++) {
            if (out_lens[b] < 0 || out_lens[b] > sc.max_new_tokens) abort();
            for (int t = 0; t < out_lens[b]; t++)
                if (out_tokens[b * sc.max_new_tokens + t] < 0 || out_tokens[b * sc.max_new_tokens + t] >= V)
                    abort();
        }
        sc.temperature = 0.0f;
    }
    gkd_model_free(m);
    return 0;
}

GKD_FUZZ_ENTRY(sample)
