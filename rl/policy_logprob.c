/* The policy's token log-probabilities and their gradient (see policy_logprob.h). */
#include "rl/policy_logprob.h"

#include "rl/distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct gkd_policy_workspace {
    const gkd_backend *be;
    int chunk, V, C;
    float *h_rows;    /* (chunk, C) backend */
    float *dh_rows;   /* (chunk, C) backend */
    float *logits;    /* (chunk, V) backend */
    float *host;      /* (chunk, V) host copy on a device backend, else NULL */
    double *lse;      /* (chunk) */
    double *g;        /* (chunk) dL/dlogp */
    int *positions;   /* (B*T), grown */
    int cap;
};

void gkd_policy_workspace_free(gkd_policy_workspace *ws) {
    if (!ws) return;
    ws->be->free(ws->h_rows);
    ws->be->free(ws->dh_rows);
    ws->be->free(ws->logits);
    free(ws->host);
    free(ws->lse);
    free(ws->g);
    free(ws->positions);
    free(ws);
}

gkd_status gkd_policy_workspace_create(const gkd_backend *be, int chunk, int V, int C, gkd_policy_workspace **out) {
    if (chunk < 1 || V < 1 || C < 1) return gkd_error_set(GKD_ERR_ARG, "policy workspace: sizes must be positive");
    gkd_policy_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    ws->be = be;
    ws->chunk = chunk;
    ws->V = V;
    ws->C = C;
    ws->h_rows = be->alloc((size_t)chunk * C * sizeof(float));
    ws->dh_rows = be->alloc((size_t)chunk * C * sizeof(float));
    ws->logits = be->alloc((size_t)chunk * V * sizeof(float));
    if (be != gkd_backend_cpu()) ws->host = malloc((size_t)chunk * V * sizeof(float));
    ws->lse = malloc((size_t)chunk * sizeof(double));
    ws->g = malloc((size_t)chunk * sizeof(double));
    if (!ws->h_rows || !ws->dh_rows || !ws->logits || (be != gkd_backend_cpu() && !ws->host) || !ws->lse || !ws->g) {
        gkd_policy_workspace_free(ws);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory: policy workspace of %d x %d logits", chunk, V);
    }
    *out = ws;
    return GKD_OK;
}

gkd_status gkd_policy_logprobs(gkd_policy_workspace *ws, const float *h, const float *W, const int *targets,
                               const float *mask, int B, int T, double temperature, gkd_logprob_weight_fn fn,
                               void *ctx, float scale, double *logp, double *entropy, float *dh, float *dW) {
    const gkd_backend *be = ws->be;
    int V = ws->V, C = ws->C, N = B * T;
    if (!(temperature > 0 && isfinite(temperature)))
        return gkd_error_set(GKD_ERR_ARG, "policy log-probs: the temperature must be > 0, got %g", temperature);
    if (N > ws->cap) {
        int *p = realloc(ws->positions, (size_t)N * sizeof *p);
        if (!p) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        ws->positions = p;
        ws->cap = N;
    }
    int n_pos = 0;
    for (int i = 0; i < N; i++) {
        if (logp) logp[i] = 0.0;
        if (entropy) entropy[i] = 0.0;
        if (mask[i] == 0.0f) continue;
        if (targets[i] < 0 || targets[i] >= V)
            return gkd_error_set(GKD_ERR_ARG, "policy log-probs: target %d at position %d is outside the vocabulary (%d)",
                                 targets[i], i, V);
        ws->positions[n_pos++] = i;
    }
    float inv_t = (float)(1.0 / temperature);
    for (int start = 0; start < n_pos; start += ws->chunk) {
        int n = n_pos - start < ws->chunk ? n_pos - start : ws->chunk;
        const int *pos = ws->positions + start;
        gkd_distill_gather_rows(be, ws->h_rows, h, pos, n, C);
        be->matmul(0, 1, n, V, C, inv_t, ws->h_rows, C, W, C, 0.0f, ws->logits, V);
        float *z = ws->logits;
        if (ws->host) {
            be->copy_out(ws->host, ws->logits, (size_t)n * V * sizeof(float));
            z = ws->host;
        }
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            const float *zi = z + (size_t)i * V;
            double mx = -INFINITY;
            for (int v = 0; v < V; v++)
                if (zi[v] > mx) mx = zi[v];
            double sum = 0, sz = 0;
            for (int v = 0; v < V; v++) {
                double e = exp((double)zi[v] - mx);
                sum += e;
                sz += e * zi[v];
            }
            double lse = mx + log(sum);
            ws->lse[i] = lse;
            if (logp) logp[pos[i]] = (double)zi[targets[pos[i]]] - lse;
            if (entropy) entropy[pos[i]] = lse - sz / sum;
        }
        if (!fn) continue;
        for (int i = 0; i < n; i++) {
            int failed = 0;
            ws->g[i] = fn(ctx, pos[i], (double)z[(size_t)i * V + targets[pos[i]]] - ws->lse[i], &failed) * scale;
            if (failed) return GKD_ERR_CALLBACK;
        }
        if (!dh && !dW) continue;
        /* d logp_y / d z_v = onehot_y(v) - softmax(z)_v, and z = (h W^T) / temperature. */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            float *zi = z + (size_t)i * V;
            double g = ws->g[i], lse = ws->lse[i];
            for (int v = 0; v < V; v++) zi[v] = (float)(-g * exp((double)zi[v] - lse));
            zi[targets[pos[i]]] += (float)g;
        }
        if (ws->host) be->copy_in(ws->logits, ws->host, (size_t)n * V * sizeof(float));
        if (dh) {
            gkd_distill_gather_rows(be, ws->dh_rows, dh, pos, n, C);
            be->matmul(0, 0, n, C, V, inv_t, ws->logits, V, W, C, 1.0f, ws->dh_rows, C);
            gkd_distill_scatter_rows(be, dh, ws->dh_rows, pos, n, C);
        }
        if (dW) be->matmul(1, 0, V, C, n, inv_t, ws->logits, V, ws->h_rows, C, 1.0f, dW, C);
    }
    return GKD_OK;
}
