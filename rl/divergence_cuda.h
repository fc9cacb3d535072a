/* Token divergences on the CUDA backend: gkd_divergence_rows_ex (divergence.h) over device logits, and
 * the policy-gradient rows of the GKD + RL loss, for the distillation loss (distill.c) to keep its
 * (chunk, V) logits on the device; rl/divergence_device.c hands them to it as gkd_divergence_cuda_device.
 * Rules:
 * - The same per-entry formulas as the CPU (divergence_terms.h), in double; one thread block per row,
 *   every sum a fixed-order block reduction (no atomics), so results repeat bit for bit on one GPU. They
 *   differ from the CPU's by the order of the row sums and the GPU's libm (within 2 ulp), i.e. at ~1e-13
 *   relative for values, float rounding for gradients (tests/cuda/test_cuda_divergence.c).
 * - Logits and gradients are device buffers (the CUDA backend's memory); grad_scale, values, metrics,
 *   targets and weights are host arrays, copied in and out by the call, which waits for the device.
 * - top_k > 0 is not computed on the device: the rows are copied to the host, computed by
 *   gkd_divergence_rows_ex, and the gradient copied back (host buffers allocated per call).
 * - A bad logit, a masked row or an infinite gradient is reported exactly as the CPU reports it (the
 *   first failing row and entry, the same message); a CUDA failure is GKD_ERR_DEVICE. */
#ifndef GKD_DIVERGENCE_CUDA_H
#define GKD_DIVERGENCE_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/base/error.h"
#include "rl/divergence.h"
#include "rl/divergence_device.h"

/* Device scratch for rows of up to max_rows positions (a few hundred bytes per row, allocated through
 * the CUDA backend's table). */
typedef struct gkd_divergence_cuda gkd_divergence_cuda;

/* Creates the scratch; the caller frees it with gkd_divergence_cuda_free. GKD_ERR_DEVICE without a
 * usable CUDA backend, GKD_ERR_NOMEM when device memory is short. */
gkd_status gkd_divergence_cuda_create(int max_rows, gkd_divergence_cuda **out);
void gkd_divergence_cuda_free(gkd_divergence_cuda *w);

/* gkd_divergence_rows_ex on the device, N <= max_rows. */
gkd_status gkd_divergence_cuda_rows(gkd_divergence_cuda *w, const gkd_divergence *d,
                                    const float *teacher,        /* (N,V) device */
                                    const float *student,        /* (N,V) device */
                                    int N, int V, double *value, /* (N) host or NULL */
                                    float *dstudent,             /* (N,V) device or NULL, overwritten */
                                    const float *grad_scale,     /* (N) host or NULL (1) */
                                    gkd_token_metrics *metrics /* (N) host or NULL */);

/* The policy-gradient rows: nll[n] = -log softmax(logits[n])[targets[n]], and when grad is given,
 * grad[n] += weights[n] * (softmax(logits[n]) - onehot(targets[n])) (rows of weight 0 untouched).
 * N <= max_rows; targets in [0, V). */
gkd_status gkd_divergence_cuda_pg_rows(gkd_divergence_cuda *w, const float *logits, /* (N,V) device */
                                       int N, int V, const int *targets,            /* (N) host */
                                       const float *weights,                        /* (N) host */
                                       float *grad, /* (N,V) device or NULL, += */
                                       double *nll /* (N) host */);

/* These rows as rl/divergence_device.h's table, the CUDA backend's entry there. */
extern const gkd_divergence_device gkd_divergence_cuda_device;

#ifdef __cplusplus
}
#endif

#endif
