/* Token draws on the CUDA device: the CUDA table's sample_draw and sample_workspace_bytes (backend.h), which
 * gkd_sample_generate calls on a model of that backend. The logits of a step stay on the device, one block
 * per row draws that row's token, and only the tokens and their log-probabilities come back to the host.
 * Rules:
 * - The same draw as gkd_sample_token on the CPU (core/tensor/sample.h): greedy takes the first largest logit;
 *   otherwise the weights exp((logit - max) / temperature) are computed in double and rounded to float as
 *   the CPU rounds them, top-k and top-p rank by weight with ties to the smaller token id, and the token
 *   is the first one, in token-id order, whose running sum of kept weights (double) reaches u times their
 *   total. The log-probability is log_softmax at temperature 1.
 * - Sums in double run in a fixed tree, not the CPU's left-to-right order, so they can differ from it in
 *   their last bits: the token can differ only when such a bit decides, i.e. when u lands within ~1e-15
 *   relative of a boundary of the inverse CDF or the top-p mass lands on its limit to ~1e-15. Sums of
 *   weights that are exact in double (few distinct exponents, as with tied logits) agree exactly.
 * - The uniform of row b is curand_uniform after curand_init(seed, subsequence = stream, offset + b) on a
 *   Philox4_32_10 state, drawn in the kernel. That is gkd_rng_uniform_from_word(gkd_rng_word(seed, stream,
 *   offset + b)) on the host: curand_init sets the counter to (0, 0, stream low, stream high) and the key
 *   to the seed, and skipahead(offset) adds offset / 4 to the counter's low 64 bits and starts at word
 *   offset % 4 of that block (curand_kernel.h, curand_philox4x32_x.h), which is core/base/rng.h's layout.
 * - Deterministic: no atomics; every reduction has a fixed order. Errors come back as GKD_ERR_DEVICE with
 *   the CUDA message set. */
#ifndef GKD_SAMPLE_CUDA_H
#define GKD_SAMPLE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/base/error.h"
#include "core/tensor/sample.h"

/* Bytes of device scratch gkd_sample_cuda_draw needs for B rows of V logits. */
size_t gkd_sample_cuda_workspace_bytes(int B, int V);

/* One draw per row of logits: (B,V) device. Row b uses the uniform at word offset + b of (seed, stream)
 * (none when greedy: temperature 0 or top_k 1). workspace: device, gkd_sample_cuda_workspace_bytes(B, V).
 * tokens, logprobs: (B) host; a row holding a NaN or infinite logit gets token -1 and log-probability NaN,
 * as gkd_sample_token returns on the CPU. Waits for the device. */
gkd_status gkd_sample_cuda_draw(const float *logits, int B, int V, const gkd_sample_config *cfg,
                                uint64_t seed, uint64_t stream, uint64_t offset, void *workspace, int *tokens,
                                float *logprobs);

/* The uniforms the draws use, for checking them against the host's: out[i] = curand_uniform of a
 * Philox4_32_10 state after curand_init(seed, stream, offsets[i]), drawn on the device. offsets, out: (n)
 * host. */
gkd_status gkd_sample_cuda_uniforms(uint64_t seed, uint64_t stream, const uint64_t *offsets, int n,
                                    float *out);

#ifdef __cplusplus
}
#endif

#endif
