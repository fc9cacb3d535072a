/* Token divergences on the CUDA backend (divergence_cuda.h): one thread block per row, the CPU's
 * per-entry formulas (divergence_terms.h) in double.
 * Rules:
 * - A row is four passes over its V entries inside one kernel, separated by block reductions: (1) bad
 *   logits, max and arg max of both sides; (2) the normalisers, the top entry set aside as on the CPU
 *   (log_norm = log1p(rest)); (3) values, metrics, Gbar = sum QG and sum_{v != top} QG; (4) the
 *   gradient. Pass 4 recomputes each entry's QG rather than storing (N,V) doubles: the same code on the
 *   same inputs, so the very numbers pass 3 summed.
 * - Reductions are a fixed tree in shared memory over the threads' strided partial sums: the summation
 *   order depends on V and the block size only, so a row repeats bit for bit; no atomics.
 * - The file is compiled with --fmad=false (cmake/cuda.cmake): nvcc would otherwise fuse multiply-adds
 *   where gcc does not, and could fuse pass 3's and pass 4's copies of a formula differently.
 * - Faults go to a per-row (code, entry) pair copied back with the values; the host names the first
 *   failing row with the CPU's message (gkd_div_report_fault). */
#include "rl/divergence_cuda.h"

#include "core/tensor/backend_cuda.h"
#include "core/tensor/cuda_reduce.cuh"
#include "rl/divergence_terms.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

namespace {

enum {
    THREADS = 256, /* threads per row: a power of two (the reduction tree halves it) */
    ROW_SUMS = 8,  /* pass 3 sums: value, 5 metrics, Gbar, sum of QG off the student's top entry */
    METRIC_FIELDS = 5,
};

/* Per-row results copied back to the host in one transfer. */
struct row_out {
    double value;
    double metrics[METRIC_FIELDS]; /* gkd_token_metrics' fields, in order */
    int fault, entry;
};

struct rows_args {
    gkd_div_resolved r;
    double temperature;
    int V, want_metrics;
    const float *teacher, *student; /* (N,V) */
    const float *grad_scale;        /* (N) device or NULL */
    float *dstudent;                /* (N,V) or NULL */
    row_out *out;                   /* (N) */
};

/* ---------- fixed-order block reductions ---------- */

/* K sums at once (core/tensor/cuda_reduce.cuh's halving tree over this file's THREADS). */
template <int K> __device__ void block_sums(double *v, double *sh) {
    gkd_cuda_block_tree_sums<K, THREADS>(v, sh);
}


/* The largest value and its lowest index (the CPU's strict '>' keeps the first maximum), and the lowest
 * bad index; per side (2). sh_val: (2, THREADS), sh_idx: (4, THREADS). */
struct side_scan {
    double max;
    int arg, bad;
};

__device__ void block_scan(side_scan *s, double *sh_val, int *sh_idx) {
    int tid = threadIdx.x;
    __syncthreads();
    for (int k = 0; k < 2; k++) {
        sh_val[k * THREADS + tid] = s[k].max;
        sh_idx[k * THREADS + tid] = s[k].arg;
        sh_idx[(2 + k) * THREADS + tid] = s[k].bad;
    }
    __syncthreads();
    for (int st = THREADS / 2; st > 0; st >>= 1) {
        if (tid < st) {
            for (int k = 0; k < 2; k++) {
                int i = k * THREADS + tid, j = i + st;
                double a = sh_val[i], b = sh_val[j];
                if (b > a || (b == a && sh_idx[j] < sh_idx[i])) {
                    sh_val[i] = b;
                    sh_idx[i] = sh_idx[j];
                }
                int bi = (2 + k) * THREADS + tid;
                if (sh_idx[bi + st] < sh_idx[bi]) sh_idx[bi] = sh_idx[bi + st];
            }
        }
        __syncthreads();
    }
    for (int k = 0; k < 2; k++) {
        s[k].max = sh_val[k * THREADS];
        s[k].arg = sh_idx[k * THREADS];
        s[k].bad = sh_idx[(2 + k) * THREADS];
    }
}

/* One side's log-softmax constants: entry v has log-probability (x/T - max) - log_norm and probability
 * exp(x/T - max) / norm, the CPU's operations in the CPU's order. */
struct side_norm {
    double temperature, max, log_norm, norm;
};

__device__ void entry_logs(const side_norm &n, float x, double *l, double *prob) {
    double o = (double)x / n.temperature - n.max;
    *prob = exp(o) / n.norm;
    *l = o - n.log_norm;
}

__global__ void __launch_bounds__(THREADS) divergence_rows_kernel(rows_args a) {
    __shared__ double sh[ROW_SUMS * THREADS];
    __shared__ int sh_idx[4 * THREADS];
    __shared__ double qg_top;
    int row = blockIdx.x, tid = threadIdx.x, V = a.V;
    const float *t = a.teacher + (size_t)row * V, *s = a.student + (size_t)row * V;
    float *dst = a.dstudent ? a.dstudent + (size_t)row * V : NULL;
    row_out *out = a.out + row;

    /* pass 1 */
    side_scan scan[2] = {{-INFINITY, V, V}, {-INFINITY, V, V}};
    double temps[2] = {a.temperature, 1.0};
    const float *sides[2] = {t, s};
    for (int k = 0; k < 2; k++) {
        for (int v = tid; v < V; v += THREADS) {
            float x = sides[k][v];
            if (isnan(x) || x == INFINITY) {
                if (v < scan[k].bad) scan[k].bad = v;
                continue;
            }
            double o = (double)x / temps[k];
            if (o > scan[k].max) {
                scan[k].max = o;
                scan[k].arg = v;
            }
        }
    }
    block_scan(scan, sh, sh_idx);
    gkd_div_fault fault = GKD_DIV_FAULT_NONE;
    int entry = -1;
    if (scan[0].bad < V) {
        fault = GKD_DIV_FAULT_TEACHER_LOGIT;
        entry = scan[0].bad;
    } else if (scan[0].max == -INFINITY) {
        fault = GKD_DIV_FAULT_TEACHER_MASKED;
    } else if (scan[1].bad < V) {
        fault = GKD_DIV_FAULT_STUDENT_LOGIT;
        entry = scan[1].bad;
    } else if (scan[1].max == -INFINITY) {
        fault = GKD_DIV_FAULT_STUDENT_MASKED;
    }
    if (fault != GKD_DIV_FAULT_NONE) {
        if (dst)
            for (int v = tid; v < V; v += THREADS) dst[v] = 0.0f;
        if (tid == 0) {
            out->value = NAN;
            for (int k = 0; k < METRIC_FIELDS; k++) out->metrics[k] = NAN;
            out->fault = fault;
            out->entry = entry;
        }
        return; /* the whole block returns: no barrier is left waiting */
    }

    /* pass 2 */
    double rest[2] = {0.0, 0.0};
    for (int k = 0; k < 2; k++)
        for (int v = tid; v < V; v += THREADS)
            if (v != scan[k].arg) rest[k] += exp((double)sides[k][v] / temps[k] - scan[k].max);
    block_sums<2>(rest, sh);
    side_norm pn = {a.temperature, scan[0].max, log1p(rest[0]), 1.0 + rest[0]};
    side_norm qn = {1.0, scan[1].max, log1p(rest[1]), 1.0 + rest[1]};
    int s_top = scan[1].arg;

    /* pass 3 */
    double scale = a.grad_scale ? (double)a.grad_scale[row] : 1.0;
    int want_grad = dst && scale != 0.0;
    int need = gkd_div_mix_need(&a.r, want_grad), shared_need = gkd_div_uses_half(&a.r) ? need : 0;
    double sums[ROW_SUMS] = {0.0};
    gkd_token_metrics m = {0.0, 0.0, 0.0, 0.0, 0.0};
    for (int v = tid; v < V; v += THREADS) {
        double lp, p, lq, q, g;
        entry_logs(pn, t[v], &lp, &p);
        entry_logs(qn, s[v], &lq, &q);
        if (a.want_metrics) {
            gkd_div_shared sh_terms = gkd_div_shared_eval(lp, lq, p, q, shared_need);
            gkd_div_metrics_add(&sh_terms, lp, lq, p, q, &m);
            g = gkd_div_entry_add(&a.r, need, &sh_terms, lp, lq, p, q, &sums[0]);
        } else {
            g = gkd_div_entry_add(&a.r, need, NULL, lp, lq, p, q, &sums[0]);
        }
        sums[6] += g;
        if (v == s_top)
            qg_top = g;
        else
            sums[7] += g;
    }
    sums[1] = m.forward_kl;
    sums[2] = m.reverse_kl;
    sums[3] = m.jsd;
    sums[4] = m.teacher_entropy;
    sums[5] = m.student_entropy;
    block_sums<ROW_SUMS>(sums, sh); /* its barriers also publish qg_top */
    double gbar = sums[6], qg_rest = sums[7];
    if (tid == 0) {
        out->value = sums[0];
        for (int k = 0; k < METRIC_FIELDS; k++) out->metrics[k] = a.want_metrics ? sums[1 + k] : 0.0;
        out->fault = GKD_DIV_FAULT_NONE;
        out->entry = -1;
    }
    if (!dst) return;
    if (!want_grad || !isfinite(gbar)) {
        for (int v = tid; v < V; v += THREADS) dst[v] = 0.0f;
        if (want_grad && tid == 0) out->fault = GKD_DIV_FAULT_INFINITE_GRADIENT;
        return;
    }

    /* pass 4 */
    for (int v = tid; v < V; v += THREADS) {
        double lp, p, lq, q;
        entry_logs(pn, t[v], &lp, &p);
        entry_logs(qn, s[v], &lq, &q);
        if (v == s_top) {
            dst[v] = gkd_div_grad_top(scale, qg_top, lq, q, qg_rest);
            continue;
        }
        double g = gkd_div_entry_add(&a.r, need, NULL, lp, lq, p, q, NULL);
        dst[v] = gkd_div_grad_entry(scale, g, lq, q, gbar);
    }
}

/* Policy-gradient rows: the CPU's pg_row (distill.c) with the sums as block reductions. */
__global__ void __launch_bounds__(THREADS) pg_rows_kernel(const float *logits, int V, const int *targets,
                                                          const float *weights, float *grad, double *nll) {
    __shared__ double sh[2 * THREADS];
    __shared__ int sh_idx[4 * THREADS];
    int row = blockIdx.x, tid = threadIdx.x, y = targets[row];
    const float *z = logits + (size_t)row * V;
    side_scan scan[2] = {{-INFINITY, V, V}, {-INFINITY, V, V}};
    for (int v = tid; v < V; v += THREADS)
        if ((double)z[v] > scan[0].max) scan[0].max = z[v];
    block_scan(scan, sh, sh_idx);
    double mx = scan[0].max, sum[1] = {0.0};
    for (int v = tid; v < V; v += THREADS) sum[0] += exp((double)z[v] - mx);
    block_sums<1>(sum, sh);
    double lse = mx + log(sum[0]);
    float w = weights[row];
    if (grad && w != 0.0f) {
        float *g = grad + (size_t)row * V;
        for (int v = tid; v < V; v += THREADS) {
            g[v] += (float)(w * exp((double)z[v] - lse));
            if (v == y) g[v] -= w;
        }
    }
    if (tid == 0) nll[row] = lse - (double)z[y];
}

gkd_status device_failed(cudaError_t e, const char *what) {
    cudaGetLastError(); /* clear it, so the backend's next launch check does not blame itself */
    return gkd_error_set(GKD_ERR_DEVICE, "divergence rows: %s failed: %s (%s)", what, cudaGetErrorString(e),
                         cudaGetErrorName(e));
}

} // namespace

struct gkd_divergence_cuda {
    const gkd_backend *be;
    int max_rows;
    row_out *out_dev, *out_host; /* (max_rows) */
    float *scale_dev;            /* (max_rows) */
    int *targets_dev;            /* (max_rows) */
    float *weights_dev;          /* (max_rows) */
    double *nll_dev;             /* (max_rows) */
};

extern "C" {

void gkd_divergence_cuda_free(gkd_divergence_cuda *w) {
    if (!w) return;
    w->be->free(w->out_dev);
    w->be->free(w->scale_dev);
    w->be->free(w->targets_dev);
    w->be->free(w->weights_dev);
    w->be->free(w->nll_dev);
    free(w->out_host);
    free(w);
}

gkd_status gkd_divergence_cuda_create(int max_rows, gkd_divergence_cuda **out) {
    *out = NULL;
    if (max_rows < 1)
        return gkd_error_set(GKD_ERR_ARG, "divergence rows on the device: max_rows = %d", max_rows);
    const gkd_backend *be = gkd_backend_cuda();
    if (!be) return GKD_ERR_DEVICE;
    gkd_divergence_cuda *w = (gkd_divergence_cuda *)calloc(1, sizeof *w);
    if (!w) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    w->be = be;
    w->max_rows = max_rows;
    size_t n = (size_t)max_rows;
    w->out_dev = (row_out *)be->alloc(n * sizeof(row_out));
    w->scale_dev = (float *)be->alloc(n * sizeof(float));
    w->targets_dev = (int *)be->alloc(n * sizeof(int));
    w->weights_dev = (float *)be->alloc(n * sizeof(float));
    w->nll_dev = (double *)be->alloc(n * sizeof(double));
    w->out_host = (row_out *)malloc(n * sizeof(row_out));
    if (!w->out_dev || !w->scale_dev || !w->targets_dev || !w->weights_dev || !w->nll_dev || !w->out_host) {
        gkd_divergence_cuda_free(w);
        return gkd_error_set(GKD_ERR_NOMEM, "divergence rows on the device: scratch for %d rows", max_rows);
    }
    *out = w;
    return GKD_OK;
}

/* top_k > 0: on the host (see the header). */
static gkd_status rows_on_host(gkd_divergence_cuda *w, const gkd_divergence *d, const float *teacher,
                               const float *student, int N, int V, double *value, float *dstudent,
                               const float *grad_scale, gkd_token_metrics *metrics) {
    size_t bytes = (size_t)N * V * sizeof(float);
    float *t = (float *)malloc(bytes), *s = (float *)malloc(bytes),
          *g = dstudent ? (float *)malloc(bytes) : NULL;
    gkd_status st = GKD_OK;
    if (!t || !s || (dstudent && !g)) {
        st = gkd_error_set(GKD_ERR_NOMEM, "divergence rows: host copies of %d x %d logits for top_k", N, V);
    } else {
        w->be->copy_out(t, teacher, bytes);
        w->be->copy_out(s, student, bytes);
        st = gkd_divergence_rows_ex(d, t, s, N, V, value, g, grad_scale, metrics);
        /* the rows' outputs are written even when a row fails, as on the CPU */
        if (g) w->be->copy_in(dstudent, g, bytes);
        gkd_status dev = gkd_backend_cuda_sync();
        if (st == GKD_OK) st = dev;
    }
    free(t);
    free(s);
    free(g);
    return st;
}

gkd_status gkd_divergence_cuda_rows(gkd_divergence_cuda *w, const gkd_divergence *d, const float *teacher,
                                    const float *student, int N, int V, double *value, float *dstudent,
                                    const float *grad_scale, gkd_token_metrics *metrics) {
    gkd_status st = gkd_divergence_check(d);
    if (st != GKD_OK) return st;
    if (N < 0 || V < 1 || N > w->max_rows)
        return gkd_error_set(GKD_ERR_SHAPE, "divergence rows on the device: N = %d (at most %d), V = %d", N,
                             w->max_rows, V);
    if (N > 0 && (!teacher || !student)) return gkd_error_set(GKD_ERR_ARG, "divergence rows: NULL logits");
    if (N == 0) return GKD_OK;
    if (d->top_k > 0 && d->top_k < V)
        return rows_on_host(w, d, teacher, student, N, V, value, dstudent, grad_scale, metrics);
    cudaError_t e;
    if (grad_scale) {
        e = cudaMemcpy(w->scale_dev, grad_scale, (size_t)N * sizeof(float), cudaMemcpyHostToDevice);
        if (e != cudaSuccess) return device_failed(e, "copying grad_scale");
    }
    rows_args a;
    a.r = gkd_div_resolve(d); /* top_k >= V keeps every entry: the exact divergence */
    a.temperature = d->teacher_temperature;
    a.V = V;
    a.want_metrics = metrics != NULL;
    a.teacher = teacher;
    a.student = student;
    a.grad_scale = grad_scale ? w->scale_dev : NULL;
    a.dstudent = dstudent;
    a.out = w->out_dev;
    divergence_rows_kernel<<<N, THREADS>>>(a);
    e = cudaGetLastError();
    if (e != cudaSuccess) return device_failed(e, "the rows kernel");
    e = cudaMemcpy(w->out_host, w->out_dev, (size_t)N * sizeof(row_out), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return device_failed(e, "the rows kernel or its copy back");
    int first = -1;
    for (int n = 0; n < N; n++) {
        const row_out *o = &w->out_host[n];
        if (value) value[n] = o->value;
        if (metrics) {
            gkd_token_metrics m = {o->metrics[0], o->metrics[1], o->metrics[2], o->metrics[3], o->metrics[4]};
            metrics[n] = m;
        }
        if (first < 0 && o->fault != GKD_DIV_FAULT_NONE) first = n;
    }
    if (first < 0) return GKD_OK;
    const row_out *o = &w->out_host[first];
    return gkd_div_report_fault((gkd_div_fault)o->fault, first, o->entry, gkd_divergence_name(d));
}

gkd_status gkd_divergence_cuda_pg_rows(gkd_divergence_cuda *w, const float *logits, int N, int V,
                                       const int *targets, const float *weights, float *grad, double *nll) {
    if (N < 0 || V < 1 || N > w->max_rows)
        return gkd_error_set(GKD_ERR_SHAPE, "policy-gradient rows on the device: N = %d (at most %d), V = %d",
                             N, w->max_rows, V);
    if (N == 0) return GKD_OK;
    for (int n = 0; n < N; n++)
        if (targets[n] < 0 || targets[n] >= V)
            return gkd_error_set(GKD_ERR_ARG, "policy-gradient row %d: target %d outside [0, %d)", n,
                                 targets[n], V);
    cudaError_t e = cudaMemcpy(w->targets_dev, targets, (size_t)N * sizeof(int), cudaMemcpyHostToDevice);
    if (e == cudaSuccess)
        e = cudaMemcpy(w->weights_dev, weights, (size_t)N * sizeof(float), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return device_failed(e, "copying targets and weights");
    pg_rows_kernel<<<N, THREADS>>>(logits, V, w->targets_dev, w->weights_dev, grad, w->nll_dev);
    e = cudaGetLastError();
    if (e != cudaSuccess) return device_failed(e, "the policy-gradient kernel");
    e = cudaMemcpy(nll, w->nll_dev, (size_t)N * sizeof(double), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return device_failed(e, "the policy-gradient kernel or its copy back");
    return GKD_OK;
}

} // extern "C"

namespace {

gkd_status device_create(int max_rows, void **scratch) {
    return gkd_divergence_cuda_create(max_rows, (gkd_divergence_cuda **)scratch);
}

void device_free(void *scratch) {
    gkd_divergence_cuda_free((gkd_divergence_cuda *)scratch);
}

gkd_status device_rows(void *scratch, const gkd_divergence *d, const float *teacher, const float *student,
                       int N, int V, double *value, float *dstudent, const float *grad_scale,
                       gkd_token_metrics *metrics) {
    return gkd_divergence_cuda_rows((gkd_divergence_cuda *)scratch, d, teacher, student, N, V, value,
                                    dstudent, grad_scale, metrics);
}

gkd_status device_pg_rows(void *scratch, const float *logits, int N, int V, const int *targets,
                          const float *weights, float *grad, double *nll) {
    return gkd_divergence_cuda_pg_rows((gkd_divergence_cuda *)scratch, logits, N, V, targets, weights, grad,
                                       nll);
}

} // namespace

extern "C" const gkd_divergence_device gkd_divergence_cuda_device = {device_create, device_free, device_rows,
                                                                     device_pg_rows};
