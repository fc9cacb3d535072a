/* The divergence rows run on a backend's own memory: the fused operation of the distillation loss
 * (rl/distill.c), so that its (chunk, V) logits never cross to the host.
 * Why here and not in the backend table: the rows are rl's (rl/divergence.h types, divergence_terms.h
 * formulas) and core/tensor, which holds the table, cannot see rl. So rl keeps its own small table of
 * operations per backend and picks it once per backend table, in gkd_divergence_device_for, the one place
 * that knows which backends have device rows (as core/tensor/backend_select.c is for the backends
 * themselves). Callers never ask which backend they hold; a new backend with its own rows adds its
 * implementation and one line there.
 * Rules: the same contract as gkd_divergence_rows_ex (rl/divergence.h), the logits and the gradient in
 * backend memory, the other arrays on the host; each implementation states its numerics against the CPU's
 * (rl/divergence_cuda.h). */
#ifndef GKD_DIVERGENCE_DEVICE_H
#define GKD_DIVERGENCE_DEVICE_H

#include "core/tensor/backend.h"
#include "rl/divergence.h"

typedef struct {
    /* Scratch for rows of up to max_rows positions; freed by free_scratch (which accepts NULL).
     * GKD_ERR_DEVICE when the device is unusable, GKD_ERR_NOMEM when its memory is short. */
    gkd_status (*create)(int max_rows, void **scratch);
    void (*free_scratch)(void *scratch);
    /* gkd_divergence_rows_ex with teacher, student: (N,V) and dstudent: (N,V) or NULL (overwritten) in
     * backend memory; value, grad_scale, metrics: (N) host or NULL. N <= max_rows. */
    gkd_status (*rows)(void *scratch, const gkd_divergence *d, const float *teacher, const float *student,
                       int N, int V, double *value, float *dstudent, const float *grad_scale,
                       gkd_token_metrics *metrics);
    /* The policy-gradient rows: nll[n] = -log softmax(logits[n])[targets[n]] and, when grad is given,
     * grad[n] += weights[n] * (softmax(logits[n]) - onehot(targets[n])). logits, grad: (N,V) backend
     * memory; targets, weights, nll: (N) host. */
    gkd_status (*pg_rows)(void *scratch, const float *logits, int N, int V, const int *targets,
                          const float *weights, float *grad, double *nll);
} gkd_divergence_device;

/* The device rows of backend be, or NULL when it has none (the CPU, whose buffers are host memory, and the
 * sim backend): the caller then runs gkd_divergence_rows_ex on host rows. Static: never freed. Asking
 * never initialises a device. */
const gkd_divergence_device *gkd_divergence_device_for(const gkd_backend *be);

#endif
