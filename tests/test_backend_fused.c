/* Fused operations behind the backend table: a backend that runs one fills its table entry and no caller
 * changes. A copy of the CPU table given its own sample_draw (the host draw of gkd_sample_token, counted)
 * must be the draw gkd_sample_generate calls, with the CPU's tokens, lengths and log-probabilities bit for
 * bit; the tables without one (cpu, sim) leave the entries NULL. The divergence rows, which are rl's
 * (rl/divergence_device.h), are found for no table but CUDA's: the CPU and sim take the host rows. */
// ctest-labels: cpu
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/base/rng.h"
#include "core/tensor/backend.h"
#include "core/tensor/backend_sim.h"
#include "core/tensor/model.h"
#include "core/tensor/sample.h"
#include "rl/divergence_device.h"
#include "tests/check.h"

enum { BATCH = 3, PROMPT = 5, NEW_TOKENS = 7 };

static int draw_calls;

static size_t fused_workspace_bytes(int B, int V) {
    return (size_t)B * V * (sizeof(float) + sizeof(int));
}

/* The CPU's draw, row by row, from the backend's logits (host memory here, as the table is the CPU's). */
static gkd_status fused_draw(const float *logits, int B, int V, const struct gkd_sample_config *cfg,
                             uint64_t seed, uint64_t stream, uint64_t offset, void *workspace, int *tokens,
                             float *logprobs) {
    draw_calls++;
    float *probs = workspace;
    int *order = (int *)(probs + (size_t)B * V);
    const int draws = cfg->temperature > 0.0f && cfg->top_k != 1;
    for (int b = 0; b < B; b++) {
        float u = draws ? gkd_rng_uniform_from_word(gkd_rng_word(seed, stream, offset + (uint64_t)b)) : 1.0f;
        tokens[b] = gkd_sample_token(logits + (size_t)b * V, V, cfg, u, probs + (size_t)b * V,
                                     order + (size_t)b * V, &logprobs[b]);
    }
    return GKD_OK;
}

/* Generates from the same prompts with the same rng state on both models and compares everything. */
static void compare_generation(gkd_model *ref, gkd_model *fused, const gkd_sample_config *cfg) {
    static const int prompts[BATCH * PROMPT] = {1, 4, 9, 16, 25, 2, 3, 0, 0, 0, 7, 11, 13, 17, 0};
    static const int lens[BATCH] = {5, 2, 4};
    int tok[2][BATCH * NEW_TOKENS], out_lens[2][BATCH];
    float lp[2][BATCH * NEW_TOKENS];
    gkd_model *models[2] = {ref, fused};
    int calls_before = draw_calls;
    for (int i = 0; i < 2; i++) {
        gkd_rng rng;
        gkd_rng_init(&rng, 2024, GKD_RNG_STREAM_SAMPLE);
        CHECKF(gkd_sample_generate(models[i], prompts, lens, BATCH, PROMPT, cfg, &rng, tok[i], out_lens[i],
                                   lp[i]) == GKD_OK,
               "%s", gkd_error_message());
    }
    CHECKF(draw_calls > calls_before, "temperature %g: the table's sample_draw was not called",
           (double)cfg->temperature);
    CHECK(memcmp(tok[0], tok[1], sizeof tok[0]) == 0);
    CHECK(memcmp(out_lens[0], out_lens[1], sizeof out_lens[0]) == 0);
    CHECK(memcmp(lp[0], lp[1], sizeof lp[0]) == 0);
}

int main(void) {
    const gkd_backend *cpu = gkd_backend_cpu();
    CHECK(cpu->sample_draw == NULL && cpu->sample_workspace_bytes == NULL);
    CHECK(gkd_backend_sim()->sample_draw == NULL);
    CHECK(gkd_divergence_device_for(cpu) == NULL);
    CHECK(gkd_divergence_device_for(gkd_backend_sim()) == NULL);

    gkd_backend fused_table = *cpu;
    fused_table.name = "cpu with a fused draw";
    fused_table.sample_workspace_bytes = fused_workspace_bytes;
    fused_table.sample_draw = fused_draw;
    gkd_model_config cfg = {.vocab_size = 29, .dim = 12, .n_layers = 2, .n_heads = 3, .n_kv_heads = 1,
                            .hidden_dim = 20, .max_seq_len = 16, .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    gkd_model *ref = NULL, *fused = NULL;
    CHECKF(gkd_model_create(&cfg, cpu, &ref) == GKD_OK, "%s", gkd_error_message());
    CHECKF(gkd_model_create(&cfg, &fused_table, &fused) == GKD_OK, "%s", gkd_error_message());
    if (!ref || !fused) return check_exit();
    gkd_model_init_weights(ref, 11);
    memcpy(gkd_model_params(fused), gkd_model_params(ref), gkd_model_num_params(ref) * sizeof(float));

    const gkd_sample_config settings[] = {
        {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = NEW_TOKENS, .eos_id = -1},
        {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .max_new_tokens = NEW_TOKENS, .eos_id = 3},
        {.temperature = 0.7f, .top_k = 5, .top_p = 0.9f, .max_new_tokens = NEW_TOKENS, .eos_id = -1},
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++)
        compare_generation(ref, fused, &settings[i]);

    gkd_model_free(ref);
    gkd_model_free(fused);
    return check_exit();
}
