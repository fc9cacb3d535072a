/* The policy's log-probabilities of given tokens, log softmax(h W^T / temperature)[target], computed in
 * chunks of masked positions like the distillation loss (rl/distill.h), with the entropy of each
 * position's distribution and an optional gradient. PPO and GRPO (rl/trainer_ppo.c) use it for the
 * rollout's old log-probs, the reference policy's and the teacher's log-probs, and the clipped surrogate,
 * whose per-token weight depends on the new log-prob itself: the weight callback is given each
 * position's log-prob in the same pass that forms its logits, so the logits are made once.
 * Rules:
 * - Only masked positions are computed; logp and entropy are 0 elsewhere.
 * - The callback returns dL/dlogp of one position; it is called once per masked position, in position
 *   order, from one thread. The gradient dL/dh is ADDED into dh and dL/dW into dW (both optional), times
 *   `scale`.
 * - Rows are evaluated in double on the host: on a device backend the chunk's logits are copied out and
 *   the gradient copied back (correct, not fast: the device rows of rl/divergence_device.h do not cover
 *   this term yet). */
#ifndef GKD_POLICY_LOGPROB_H
#define GKD_POLICY_LOGPROB_H

#include "core/base/error.h"
#include "core/tensor/backend.h"

typedef struct gkd_policy_workspace gkd_policy_workspace;

gkd_status gkd_policy_workspace_create(const gkd_backend *be, int chunk, int V, int C, gkd_policy_workspace **out);
void gkd_policy_workspace_free(gkd_policy_workspace *ws);

/* dL/dlogp of the token at position pos (an index into the B*T layout), given its log-prob. Sets *failed
 * (and the last error) to stop the pass. */
typedef double (*gkd_logprob_weight_fn)(void *ctx, int pos, double logp, int *failed);

/* h: (B*T, C) hidden states (after the final norm); W: (V, C) output matrix; targets: (B*T) host, the
 * token whose log-prob each position scores; mask: (B*T) host. temperature > 0.
 * logp: (B*T) host out, or NULL; entropy: (B*T) host out, or NULL (the entropy of softmax at the
 * temperature). fn: NULL for no gradient; else dh: (B*T, C) or NULL, dW: (V, C) or NULL, both += . */
gkd_status gkd_policy_logprobs(gkd_policy_workspace *ws, const float *h, const float *W, const int *targets,
                               const float *mask, int B, int T, double temperature, gkd_logprob_weight_fn fn,
                               void *ctx, float scale, double *logp, double *entropy, float *dh, float *dW);

#endif
