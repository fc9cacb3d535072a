/* Batched generation with a KV cache: prompts of different lengths in one batch, temperature (0: greedy),
 * top-k, top-p, stop at EOS per row or after max_new_tokens; returns per-token log-probabilities of the
 * sampled tokens under the model at temperature 1 (they feed the policy gradient).
 * Rules:
 * - Draws are reproducible on any backend: the uniform for row b at generation step t is
 *   gkd_rng_uniform_from_word(gkd_rng_word(seed, stream, offset + t*S + b)) with S the row stride (B unless
 *   the config sets one), and every call that gets past its argument checks advances rng->offset by
 *   max_new_tokens*S, however many tokens it drew. Greedy draws nothing. A stride lets a call generate rows
 *   [r0, r0 + B) of a larger batch of S rows (offset advanced by r0) with exactly the draws the whole batch
 *   would give them: data-parallel ranks sample their shards so (rl/dist.h).
 * - A token is drawn by inverse CDF over the filtered distribution in increasing token-id order; the
 *   filters rank tokens by probability, ties broken by the smaller token id. Greedy takes the first
 *   largest logit. Weights and sums are in double; top-k selects its k tokens without sorting the row,
 *   top-p ranks only as many tokens as the mass needs.
 * - Generation decodes through the model's own KV cache (gkd_model_kv_cache): kept between calls, grown
 *   when a call needs more rows or positions, freed with the model. So a model must not generate from two
 *   threads at once (as for every model call).
 * - On a backend with its own draw (the table's sample_draw: CUDA's, core/tensor/sample_cuda.h) the logits
 *   stay on the device and a kernel draws each row: the same uniforms, the same rules; only B tokens and B
 *   log-probabilities per step reach the host. */
#ifndef GKD_SAMPLE_H
#define GKD_SAMPLE_H

#include "core/base/error.h"
#include "core/tensor/model.h"
#include "core/base/rng.h"

typedef struct gkd_sample_config {
    float temperature; /* softmax temperature of the draw; 0: greedy */
    int top_k;         /* keep the k most probable tokens; 0: all */
    float top_p;       /* keep the most probable tokens until their mass reaches top_p; 1: all */
    int max_new_tokens;
    int eos_id; /* a row stops after emitting it; -1: no EOS */
    int row_stride; /* rows of the whole batch these rows belong to (>= B); 0: B */
} gkd_sample_config;

/* GKD_OK, or GKD_ERR_ARG naming the first bad field (eos_id is checked against vocab_size). */
gkd_status gkd_sample_config_check(const gkd_sample_config *cfg, int vocab_size);

/* One draw from one row of logits (V) with uniform u in (0, 1] (not read when greedy). probs: (V) and
 * order: (V) are scratch.
 * Returns the token and writes its log-probability under softmax(logits) (temperature 1) to *logprob; or
 * returns -1 and writes NaN when a logit of the row is NaN or infinite (nothing is drawn). */
int gkd_sample_token(const float *logits, int V, const gkd_sample_config *cfg, float u, float *probs,
                     int *order, float *logprob);

/* Generates up to cfg->max_new_tokens tokens after each prompt. prompts: (B,P) host, right-padded (the
 * padding is not read); prompt_lens: (B) host, each in [1, P]; P + max_new_tokens - 1 must not exceed the
 * model's max_seq_len. Writes (host, caller-allocated): out_tokens (B, max_new_tokens), the generated tokens,
 * EOS included, then eos_id (or 0 without EOS) as padding; out_lens (B), the number generated per row;
 * out_logprobs (B, max_new_tokens), log p(token) at temperature 1, 0 after a row's end.
 * A step whose logits hold NaN or infinity in a row still generating (a diverged model) stops generation
 * with GKD_ERR_FORMAT naming the batch row, the new token's index and its sequence position; the outputs
 * then hold the tokens drawn before that step. */
gkd_status gkd_sample_generate(gkd_model *m, const int *prompts, const int *prompt_lens, int B, int P,
                               const gkd_sample_config *cfg, gkd_rng *rng, int *out_tokens, int *out_lens,
                               float *out_logprobs);

#endif
