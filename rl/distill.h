/* The distillation loss of the GKD trainer, computed in chunks of output positions from hidden states
 * and output matrices, so that neither model's (B*T, V) logits exist at once: per chunk of at most
 * `chunk` masked positions, the student and teacher logits (chunk, V) are formed by one matrix product
 * each, the divergence and its gradient w.r.t. the student logits are taken row by row, and the gradient
 * flows back to the student's hidden states and output matrix.
 * Rules: only positions with mask = 1 are computed; the per-position weight implements the sequence
 * normalisation (GKD_NORM_SEQUENCE: 1 / (outputs-in-row * rows-with-outputs), the paper's; GKD_NORM_TOKEN:
 * 1 / masked-positions, TRL's); dhidden is overwritten (zero on unmasked positions), dW accumulates (+=).
 * The monitoring metrics (forward KL, reverse KL, JSD(0.5), entropies) are computed from the same logits
 * with the same weights, whatever the training divergence, in the same pass (gkd_divergence_rows_ex).
 * On a backend with device rows (rl/divergence_device.h: CUDA's) the rows and the policy-gradient term
 * run on the device: no (chunk, V) logits are copied to the host. The policy-gradient term at a sampling temperature T != 1
 * costs one more product per chunk (the logits at 1/T; the divergence keeps the temperature-1 logits). */
#ifndef GKD_DISTILL_H
#define GKD_DISTILL_H

#include "core/tensor/backend.h"
#include "core/tensor/model.h"
#include "rl/divergence.h"



typedef struct {
    double loss;            /* the training divergence, normalised (times div_scale), plus the PG surrogate */
    double divergence;      /* the training divergence alone, normalised */
    double forward_kl;      /* monitoring, same normalisation */
    double reverse_kl;
    double jsd_half;
    double teacher_entropy;
    double student_entropy;
    int positions;          /* masked positions */
} gkd_distill_stats;

typedef struct gkd_distill_workspace gkd_distill_workspace;

/* Scratch for chunks of `chunk` positions over vocabulary V (3 * chunk * V floats plus gathers);
 * caller frees with gkd_distill_workspace_free. */
gkd_status gkd_distill_workspace_create(const gkd_backend *be, int chunk, int V, int C_student, int C_teacher,
                                        gkd_distill_workspace **out);
void gkd_distill_workspace_free(gkd_distill_workspace *ws);
/* Makes the teacher's logits come from gkd_model_project(teacher, ...) in the teacher's own weight format
 * (core/tensor/weights.h) instead of a product with the Wt argument, which is then not read (it may be NULL,
 * as gkd_model_output_weight is for packed weights). teacher NULL restores the product with Wt. The workspace
 * does not own the model. */
void gkd_distill_workspace_set_teacher(gkd_distill_workspace *ws, gkd_model *teacher);
/* Peak bytes of scratch the workspace holds (for the memory benchmark). */
size_t gkd_distill_workspace_bytes(const gkd_distill_workspace *ws);

/* Optional terms of the loss for GKD + RL (rl/policy_gradient.h). */
typedef struct {
    float div_scale;        /* multiplies the divergence term and its gradient (alpha); 1 for plain GKD */
    const int *targets;     /* (B*T) host: the token at each position's next step (the sampled token) */
    const float *pg_weight; /* (B*T) host or NULL: adds pg_weight[n] * (-log q(targets[n])) to the loss, i.e.
                               the REINFORCE surrogate with pg_weight from gkd_pg_weights, whose gradient is
                               -pg_weight grad log q */
    float pg_temperature;   /* q = softmax(student logits / pg_temperature), the distribution the targets
                               were sampled from; 0 is read as 1 (a zero-initialised extra) */
    double *row_values;     /* (B) host or NULL, out: each row's mean divergence over its masked positions */
} gkd_distill_extra;

/* Computes the loss over rows of B x T positions.
 * hs: (B*T, Cs) student hidden states (after final norm); Ws: (V, Cs) student output matrix.
 * ht: (B*T, Ct) teacher hidden states; Wt: (V, Ct) teacher output matrix.
 * mask: (B*T) 1 on output positions whose next token is an output token, else 0.
 * dhs: (B*T, Cs) or NULL (no gradient): d loss / d hs, scaled by `scale` (e.g. 1 / grad_accum).
 * dWs: (V, Cs) or NULL: += d loss / d Ws, scaled by `scale`. */
gkd_status gkd_distill_loss(gkd_distill_workspace *ws, const gkd_divergence *div, gkd_loss_norm norm, const float *hs,
                            const float *Ws, const float *ht, const float *Wt, const float *mask, int B, int T,
                            float scale, float *dhs, float *dWs, gkd_distill_stats *stats);
/* The same with the optional terms of `extra` (may be NULL: then identical to gkd_distill_loss). */
gkd_status gkd_distill_loss_ex(gkd_distill_workspace *ws, const gkd_divergence *div, gkd_loss_norm norm,
                               const float *hs, const float *Ws, const float *ht, const float *Wt, const float *mask,
                               int B, int T, float scale, const gkd_distill_extra *extra, float *dhs, float *dWs,
                               gkd_distill_stats *stats);

/* Backend rows by position, one copy per run of consecutive positions (shared with rl/policy_logprob.c):
 * gather: dst (n, C) <- the rows pos[0..n) of src (*, C); scatter: the rows pos[0..n) of dst (*, C) <- src
 * (n, C). */
void gkd_distill_gather_rows(const gkd_backend *be, float *dst, const float *src, const int *pos, int n, int C);
void gkd_distill_scatter_rows(const gkd_backend *be, float *dst, const float *src, const int *pos, int n, int C);

#endif
