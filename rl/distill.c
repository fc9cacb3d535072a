/* Chunked distillation loss (see distill.h).
 * Rules:
 * - On the CPU backend the divergence rows run in place on the chunk's logits. On a backend with device
 *   rows (rl/divergence_device.h, chosen once when the workspace is made) they run there: only per-row
 *   numbers cross to the host, never (chunk, V) logits. Another device backend (sim,
 *   core/tensor/backend_sim.h) gets host copies of the logits (host_ls, host_lt, host_grad).
 * - Hidden rows are gathered and scattered one copy per run of consecutive positions (an output span
 *   of a sequence is one run). */
#include "rl/distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rl/divergence_device.h"

struct gkd_distill_workspace {
    const gkd_backend *be;
    int chunk, V, Cs, Ct;
    float *hs_rows; /* (chunk, Cs) gathered student hidden rows */
    float *ht_rows; /* (chunk, Ct) */
    float *ls;      /* (chunk, V) student logits */
    float *lt;      /* (chunk, V) teacher logits */
    float *grad;    /* (chunk, V) d loss / d student logits */
    /* On a device backend without device divergence rows, the logits of a chunk are copied into these
     * host rows and the gradient copied back (NULL on the CPU backend, whose buffers are host memory). */
    float *host_ls, *host_lt, *host_grad;
    gkd_model *teacher;                  /* set: teacher logits by gkd_model_project, Wt unread */
    const gkd_divergence_device *device; /* the backend's own divergence rows, else NULL */
    void *dev;                           /* their scratch */
    int *targets;                        /* (chunk) host: the policy-gradient rows' targets (device rows) */
    float *pg_w;                         /* (chunk) host: their weights */
    double *nll;                         /* (chunk) host: their -log q(target) */
    float *dhs_rows;            /* (chunk, Cs) */
    double *values;             /* (chunk) host */
    gkd_token_metrics *metrics; /* (chunk) host */
    float *weights;             /* (chunk) host */
    int *positions;             /* (B*T) host, grown */
    double *pos_weight;         /* (B*T) host: the normalisation weight of each listed position */
    int cap_positions;
};

void gkd_distill_workspace_free(gkd_distill_workspace *ws) {
    if (!ws) return;
    const gkd_backend *be = ws->be;
    be->free(ws->hs_rows);
    be->free(ws->ht_rows);
    be->free(ws->ls);
    be->free(ws->lt);
    be->free(ws->grad);
    free(ws->host_ls);
    free(ws->host_lt);
    free(ws->host_grad);
    if (ws->device) ws->device->free_scratch(ws->dev);
    free(ws->targets);
    free(ws->pg_w);
    free(ws->nll);
    be->free(ws->dhs_rows);
    free(ws->values);
    free(ws->metrics);
    free(ws->weights);
    free(ws->positions);
    free(ws->pos_weight);
    free(ws);
}

gkd_status gkd_distill_workspace_create(const gkd_backend *be, int chunk, int V, int Cs, int Ct,
                                        gkd_distill_workspace **out) {
    if (chunk < 1 || V < 1 || Cs < 1 || Ct < 1)
        return gkd_error_set(GKD_ERR_ARG, "distillation workspace: chunk, V and widths must be positive");
    gkd_distill_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    ws->be = be;
    ws->chunk = chunk;
    ws->V = V;
    ws->Cs = Cs;
    ws->Ct = Ct;
    size_t cv = (size_t)chunk * (size_t)V * sizeof(float);
    ws->hs_rows = be->alloc((size_t)chunk * Cs * sizeof(float));
    ws->ht_rows = be->alloc((size_t)chunk * Ct * sizeof(float));
    ws->dhs_rows = be->alloc((size_t)chunk * Cs * sizeof(float));
    ws->ls = be->alloc(cv);
    ws->lt = be->alloc(cv);
    ws->grad = be->alloc(cv);
    int rows_on_host = be != gkd_backend_cpu();
    if (rows_on_host && (ws->device = gkd_divergence_device_for(be))) {
        gkd_status st = ws->device->create(chunk, &ws->dev);
        ws->targets = malloc((size_t)chunk * sizeof(int));
        ws->pg_w = malloc((size_t)chunk * sizeof(float));
        ws->nll = malloc((size_t)chunk * sizeof(double));
        if (st != GKD_OK || !ws->targets || !ws->pg_w || !ws->nll) {
            gkd_distill_workspace_free(ws);
            return st != GKD_OK ? st : gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        }
        rows_on_host = 0;
    }
    if (rows_on_host) {
        ws->host_ls = malloc(cv);
        ws->host_lt = malloc(cv);
        ws->host_grad = malloc(cv);
        if (!ws->host_ls || !ws->host_lt || !ws->host_grad) {
            gkd_distill_workspace_free(ws);
            return gkd_error_set(GKD_ERR_NOMEM, "out of memory: host rows for %d x %d logits", chunk, V);
        }
    }
    ws->values = malloc((size_t)chunk * sizeof(double));
    ws->metrics = malloc((size_t)chunk * sizeof *ws->metrics);
    ws->weights = malloc((size_t)chunk * sizeof(float));
    if (!ws->hs_rows || !ws->ht_rows || !ws->dhs_rows || !ws->ls || !ws->lt || !ws->grad || !ws->values ||
        !ws->metrics || !ws->weights) {
        gkd_distill_workspace_free(ws);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory: distillation workspace of %d x %d logits", chunk,
                             V);
    }
    *out = ws;
    return GKD_OK;
}

size_t gkd_distill_workspace_bytes(const gkd_distill_workspace *ws) {
    size_t f = sizeof(float);
    return (size_t)ws->chunk * ((size_t)3 * ws->V * f + (size_t)(2 * ws->Cs + ws->Ct) * f + sizeof(double) +
                                sizeof(gkd_token_metrics) + f) +
           (size_t)ws->cap_positions * (sizeof(int) + sizeof(double));
}

/* Lists the masked positions and their normalisation weights. */
static gkd_status collect_positions(gkd_distill_workspace *ws, const float *mask, int B, int T,
                                    gkd_loss_norm norm, int *count) {
    int N = B * T;
    if (N > ws->cap_positions) {
        int *p = realloc(ws->positions, (size_t)N * sizeof *p);
        if (p) ws->positions = p;
        double *w = realloc(ws->pos_weight, (size_t)N * sizeof *w);
        if (w) ws->pos_weight = w;
        if (!p || !w) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
        ws->cap_positions = N;
    }
    int n = 0, rows_with_outputs = 0, total = 0;
    for (int b = 0; b < B; b++) {
        int in_row = 0;
        for (int t = 0; t < T; t++) in_row += mask[b * T + t] != 0.0f;
        rows_with_outputs += in_row > 0;
        total += in_row;
    }
    for (int b = 0; b < B; b++) {
        int in_row = 0;
        for (int t = 0; t < T; t++) in_row += mask[b * T + t] != 0.0f;
        for (int t = 0; t < T; t++) {
            if (mask[b * T + t] == 0.0f) continue;
            ws->positions[n] = b * T + t;
            ws->pos_weight[n] =
                norm == GKD_NORM_SEQUENCE ? 1.0 / ((double)in_row * rows_with_outputs) : 1.0 / (double)total;
            n++;
        }
    }
    *count = n;
    return GKD_OK;
}

void gkd_distill_gather_rows(const gkd_backend *be, float *dst, const float *src, const int *pos, int n, int C) {
    for (int i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && pos[j] == pos[j - 1] + 1; j++) {
        }
        be->copy(dst + (size_t)i * C, src + (size_t)pos[i] * C, (size_t)(j - i) * C * sizeof(float));
    }
}

void gkd_distill_scatter_rows(const gkd_backend *be, float *dst, const float *src, const int *pos, int n, int C) {
    for (int i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && pos[j] == pos[j - 1] + 1; j++) {
        }
        be->copy(dst + (size_t)pos[i] * C, src + (size_t)i * C, (size_t)(j - i) * C * sizeof(float));
    }
}

/* Adds w * (softmax(z) - onehot(y)) to the gradient row g and returns -log softmax(z)[y]. */
static double pg_row(const float *z, int V, int y, float w, float *g) {
    double mx = -INFINITY;
    for (int v = 0; v < V; v++)
        if (z[v] > mx) mx = z[v];
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)z[v] - mx);
    double lse = mx + log(sum);
    if (g && w != 0.0f) {
        for (int v = 0; v < V; v++) g[v] += (float)(w * exp((double)z[v] - lse));
        g[y] -= w;
    }
    return lse - (double)z[y];
}

/* The divergence rows of a chunk: values, metrics, and the gradient into grad (or NULL), on the device
 * where the workspace has device rows. */
static gkd_status chunk_divergence(gkd_distill_workspace *ws, const gkd_divergence *div, const float *lt,
                                   const float *ls, int n, float *grad) {
    if (ws->device)
        return ws->device->rows(ws->dev, div, lt, ls, n, ws->V, ws->values, grad, ws->weights, ws->metrics);
    return gkd_divergence_rows_ex(div, lt, ls, n, ws->V, ws->values, grad, ws->weights, ws->metrics);
}

/* The policy-gradient rows of a chunk: *pg_loss += sum_i pg_weight * (-log q(target)), and their
 * gradient added into grad (or NULL). */
static gkd_status chunk_policy_gradient(gkd_distill_workspace *ws, const float *ls, int n, const int *pos,
                                        const gkd_distill_extra *extra, float scale, float *grad,
                                        double *pg_loss) {
    int V = ws->V;
    const float *pg_weight = extra->pg_weight;
    if (ws->device) {
        for (int i = 0; i < n; i++) {
            ws->targets[i] = extra->targets[pos[i]];
            ws->pg_w[i] = pg_weight[pos[i]] * scale;
        }
        gkd_status st = ws->device->pg_rows(ws->dev, ls, n, V, ws->targets, ws->pg_w, grad, ws->nll);
        if (st != GKD_OK) return st;
        for (int i = 0; i < n; i++) *pg_loss += pg_weight[pos[i]] * ws->nll[i];
        return GKD_OK;
    }
    for (int i = 0; i < n; i++)
        *pg_loss += pg_weight[pos[i]] * pg_row(ls + (size_t)i * V, V, extra->targets[pos[i]],
                                               pg_weight[pos[i]] * scale, grad ? grad + (size_t)i * V : NULL);
    return GKD_OK;
}

void gkd_distill_workspace_set_teacher(gkd_distill_workspace *ws, gkd_model *teacher) {
    if (ws) ws->teacher = teacher;
}

gkd_status gkd_distill_loss(gkd_distill_workspace *ws, const gkd_divergence *div, gkd_loss_norm norm,
                            const float *hs, const float *Ws, const float *ht, const float *Wt,
                            const float *mask, int B, int T, float scale, float *dhs, float *dWs,
                            gkd_distill_stats *stats) {
    return gkd_distill_loss_ex(ws, div, norm, hs, Ws, ht, Wt, mask, B, T, scale, NULL, dhs, dWs, stats);
}

gkd_status gkd_distill_loss_ex(gkd_distill_workspace *ws, const gkd_divergence *div, gkd_loss_norm norm,
                               const float *hs, const float *Ws, const float *ht, const float *Wt,
                               const float *mask, int B, int T, float scale, const gkd_distill_extra *extra,
                               float *dhs, float *dWs, gkd_distill_stats *stats) {
    const gkd_backend *be = ws->be;
    int V = ws->V, Cs = ws->Cs, Ct = ws->Ct;
    float div_scale = extra ? extra->div_scale : 1.0f;
    const float *pg_weight = extra ? extra->pg_weight : NULL;
    double *row_values = extra ? extra->row_values : NULL;
    memset(stats, 0, sizeof *stats);
    float pg_temperature = extra && extra->pg_temperature != 0.0f ? extra->pg_temperature : 1.0f;
    if (pg_weight && !(pg_temperature > 0.0f && isfinite(pg_temperature)))
        return gkd_error_set(GKD_ERR_ARG, "policy gradient: the sampling temperature must be > 0, got %g",
                             (double)pg_temperature);
    int n_pos = 0;
    gkd_status st = collect_positions(ws, mask, B, T, norm, &n_pos);
    if (st != GKD_OK) return st;
    stats->positions = n_pos;
    if (row_values)
        for (int b = 0; b < B; b++) row_values[b] = 0.0;
    if (dhs) be->zero(dhs, (size_t)B * T * Cs * sizeof(float));
    double sums[5] = {0}, pg_loss = 0;
    for (int start = 0; start < n_pos; start += ws->chunk) {
        int n = n_pos - start < ws->chunk ? n_pos - start : ws->chunk;
        const int *pos = ws->positions + start;
        gkd_distill_gather_rows(be, ws->hs_rows, hs, pos, n, Cs);
        gkd_distill_gather_rows(be, ws->ht_rows, ht, pos, n, Ct);
        /* logits (n,V) = rows (n,C) x W^T, W: (V,C) */
        be->matmul(0, 1, n, V, Cs, 1.0f, ws->hs_rows, Cs, Ws, Cs, 0.0f, ws->ls, V);
        if (ws->teacher) {
            if ((st = gkd_model_project(ws->teacher, ws->ht_rows, n, ws->lt)) != GKD_OK) return st;
        } else {
            be->matmul(0, 1, n, V, Ct, 1.0f, ws->ht_rows, Ct, Wt, Ct, 0.0f, ws->lt, V);
        }
        for (int i = 0; i < n; i++) ws->weights[i] = (float)(ws->pos_weight[start + i] * scale * div_scale);
        const float *ls = ws->ls, *lt = ws->lt;
        float *grad = ws->grad;
        if (ws->host_ls) {
            be->copy_out(ws->host_ls, ws->ls, (size_t)n * V * sizeof(float));
            be->copy_out(ws->host_lt, ws->lt, (size_t)n * V * sizeof(float));
            ls = ws->host_ls;
            lt = ws->host_lt;
            grad = ws->host_grad;
        }
        st = chunk_divergence(ws, div, lt, ls, n, dhs ? grad : NULL);
        if (st != GKD_OK) return st;
        for (int i = 0; i < n; i++) {
            double w = ws->pos_weight[start + i];
            const gkd_token_metrics *m = &ws->metrics[i];
            stats->divergence += w * ws->values[i];
            sums[0] += w * m->forward_kl;
            sums[1] += w * m->reverse_kl;
            sums[2] += w * m->jsd;
            sums[3] += w * m->teacher_entropy;
            sums[4] += w * m->student_entropy;
            if (row_values) row_values[pos[i] / T] += ws->values[i];
        }
        if (pg_weight) {
            /* The targets were drawn from softmax(logits / T): the surrogate takes the logits at that
             * temperature, and its gradient with respect to the logits gains the factor 1 / T. */
            float inv_t = 1.0f / pg_temperature;
            if (inv_t != 1.0f) {
                be->matmul(0, 1, n, V, Cs, inv_t, ws->hs_rows, Cs, Ws, Cs, 0.0f, ws->ls, V);
                if (ws->host_ls) be->copy_out(ws->host_ls, ws->ls, (size_t)n * V * sizeof(float));
            }
            st = chunk_policy_gradient(ws, ls, n, pos, extra, scale * inv_t, dhs ? grad : NULL, &pg_loss);
            if (st != GKD_OK) return st;
        }
        if (!dhs) continue;
        if (ws->host_grad) be->copy_in(ws->grad, ws->host_grad, (size_t)n * V * sizeof(float));
        /* grad holds d loss / d logits (n,V): back to the hidden rows and the output matrix. */
        be->matmul(0, 0, n, Cs, V, 1.0f, ws->grad, V, Ws, Cs, 0.0f, ws->dhs_rows, Cs);
        if (dWs) be->matmul(1, 0, V, Cs, n, 1.0f, ws->grad, V, ws->hs_rows, Cs, 1.0f, dWs, Cs);
        gkd_distill_scatter_rows(be, dhs, ws->dhs_rows, pos, n, Cs);
    }
    if (row_values) {
        for (int b = 0; b < B; b++) {
            int in_row = 0;
            for (int t = 0; t < T; t++) in_row += mask[b * T + t] != 0.0f;
            if (in_row) row_values[b] /= in_row;
        }
    }
    stats->loss = div_scale * stats->divergence + pg_loss;
    stats->forward_kl = sums[0];
    stats->reverse_kl = sums[1];
    stats->jsd_half = sums[2];
    stats->teacher_entropy = sums[3];
    stats->student_entropy = sums[4];
    return GKD_OK;
}
