/* The CUDA backend's kernels for every op but the matrix products (backend_cuda.cu): embedding, rmsnorm,
 * rope, the KV-cache write, attention, swiglu, residual, cross-entropy, AdamW and sumsq. The rules of
 * backend_cuda.cu hold here: one block per row for row reductions, one thread per element for elementwise
 * ops; every reduction a fixed tree (core/tensor/cuda_reduce.cuh), no atomics; every launch checked. */
#include "core/tensor/backend_cuda.h"
#include "core/tensor/backend_cuda_impl.cuh"
#include "core/tensor/backend_cuda_internal.h"
#include "core/tensor/cuda_reduce.cuh"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace gkd_cuda {
namespace {

enum {
    EMB_BUCKETS = 64,   /* embedding_backward: token ids are split over this many blocks by id mod 64 */
    ROW_ATTN_MAX_T = 8, /* attention_forward with T up to this (decoding) uses the fused row kernel */
    ROW_ATTN_THREADS = 128,
};
static_assert(ROW_ATTN_THREADS % 32 == 0 && ROW_ATTN_THREADS <= 1024, "ROW_ATTN_THREADS must be whole warps");

/* ---------- block reductions (core/tensor/cuda_reduce.cuh's shuffle tree: deterministic) ---------- */

/* Every thread of the block gets the total; sh: 32 slots. */
template <typename T> __device__ T block_sum(T v, T *sh) {
    return gkd_cuda_block_reduce(v, gkd_cuda_add(), (T)0, sh);
}

__device__ float block_max(float v, float *sh) {
    return gkd_cuda_block_reduce(v, gkd_cuda_fmax(), -INFINITY, sh);
}

/* ---------- embedding ---------- */

__global__ void embedding_forward_kernel(float *out, const int *tokens, const float *wte, int N, int C) {
    size_t total = (size_t)N * C;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / C, c = i % C;
        out[i] = wte[(size_t)tokens[n] * C + c];
    }
}

/* Thread (column c, bucket k) owns column c of every token id = k mod EMB_BUCKETS and walks the rows in
 * order: no two threads write the same float, and each float sums its rows in the CPU's order. */
__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int *tokens, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int bucket = blockIdx.y;
    if (c >= C) return;
    for (int n = 0; n < N; n++) {
        int tok = tokens[n];
        if (tok % EMB_BUCKETS != bucket) continue;
        dwte[(size_t)tok * C + c] += dout[(size_t)n * C + c];
    }
}

void cuda_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
    if (N <= 0 || C <= 0) return;
    embedding_forward_kernel<<<grid_for((size_t)N * C), THREADS>>>(out, tokens, wte, N, C);
    launched("embedding_forward N=%d C=%d", N, C);
}

void cuda_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
    if (N <= 0 || C <= 0) return;
    dim3 grid((C + 127) / 128, EMB_BUCKETS);
    embedding_backward_kernel<<<grid, 128>>>(dwte, dout, tokens, N, C);
    launched("embedding_backward N=%d C=%d", N, C);
}

/* ---------- rmsnorm ---------- */

__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *weight, int C,
                                       float eps) {
    __shared__ float sh[32];
    size_t n = blockIdx.x;
    const float *x = inp + n * C;
    float *y = out + n * C;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
    ss = block_sum(ss, sh);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] * r * weight[c];
    if (threadIdx.x == 0) rstd[n] = r;
}

/* dx = r (dy w) - r^3 x mean(dy w x), one block per row. */
__global__ void rmsnorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                             const float *weight, const float *rstd, int C) {
    __shared__ float sh[32];
    size_t n = blockIdx.x;
    const float *x = inp + n * C, *dy = dout + n * C;
    float *dx = dinp + n * C;
    float r = rstd[n], dot = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dot += dy[c] * weight[c] * x[c];
    dot = block_sum(dot, sh);
    float k = r * r * r * dot / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) dx[c] += r * dy[c] * weight[c] - k * x[c];
}

/* dweight[c] += sum_n dy x r: a 32x32 block per 32 columns; the 32 lanes of a column stride over the
 * rows, then lane sums are added in lane order. Warps run along columns, so loads are coalesced. */
__global__ void rmsnorm_backward_dweight_kernel(float *dweight, const float *dout, const float *inp,
                                                const float *rstd, int N, int C) {
    __shared__ float part[32][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < C)
        for (int n = threadIdx.y; n < N; n += 32)
            acc += dout[(size_t)n * C + c] * inp[(size_t)n * C + c] * rstd[n];
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float s = 0.0f;
        for (int i = 0; i < 32; i++) s += part[i][threadIdx.x];
        dweight[c] += s;
    }
}

void cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                          float eps) {
    if (N <= 0 || C <= 0) return;
    rmsnorm_forward_kernel<<<N, THREADS>>>(out, rstd, inp, weight, C, eps);
    launched("rmsnorm_forward N=%d C=%d", N, C);
}

void cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    rmsnorm_backward_dinp_kernel<<<N, THREADS>>>(dinp, dout, inp, weight, rstd, C);
    launched("rmsnorm_backward (dinp) N=%d C=%d", N, C);
    rmsnorm_backward_dweight_kernel<<<(C + 31) / 32, dim3(32, 32)>>>(dweight, dout, inp, rstd, N, C);
    launched("rmsnorm_backward (dweight) N=%d C=%d", N, C);
}

/* ---------- rope ---------- */

/* One thread per rotated pair (row n, head h, index i < half); inverse = 1 rotates by -angle. */
__global__ void rope_kernel(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                            int n_heads, int head_dim, int ld, int inverse) {
    int half = head_dim / 2;
    size_t total = (size_t)N * n_heads * half;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t rest = idx / half;
        int h = (int)(rest % n_heads);
        size_t n = rest / n_heads;
        size_t t = (size_t)pos[n] * half + i;
        float cs = cos_tab[t], sn = sin_tab[t];
        float *v = x + n * ld + (size_t)h * head_dim;
        float a = v[i], b = v[i + half];
        if (inverse) {
            v[i] = a * cs + b * sn;
            v[i + half] = b * cs - a * sn;
        } else {
            v[i] = a * cs - b * sn;
            v[i + half] = b * cs + a * sn;
        }
    }
}

void rope_launch(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int N, int n_heads,
                 int head_dim, int ld, int inverse) {
    size_t total = (size_t)N * n_heads * (head_dim / 2);
    if (N <= 0 || total == 0) return;
    rope_kernel<<<grid_for(total), THREADS>>>(x, pos, cos_tab, sin_tab, N, n_heads, head_dim, ld, inverse);
    launched("rope_%s N=%d n_heads=%d head_dim=%d ld=%d", inverse ? "backward" : "forward", N, n_heads,
             head_dim, ld);
}

void cuda_rope_forward(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                       int n_heads, int head_dim, int ld) {
    rope_launch(x, pos, cos_tab, sin_tab, N, n_heads, head_dim, ld, 0);
}

void cuda_rope_backward(float *dx, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                        int n_heads, int head_dim, int ld) {
    rope_launch(dx, pos, cos_tab, sin_tab, N, n_heads, head_dim, ld, 1);
}

/* ---------- KV cache ---------- */

/* One thread per (row n, float c) moves that float of both the key and the value: consecutive threads
 * read and write consecutive floats of a row. */
__global__ void kv_write_kernel(float *k_cache, float *v_cache, const float *k, const float *v, int ld_src,
                                const int *pos, int T, int KVD, size_t bs_cache, size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / KVD, c = i % KVD;
        size_t dst = (n / T) * bs_cache + (size_t)pos[n] * KVD + c, src = n * ld_src + c;
        k_cache[dst] = k[src];
        v_cache[dst] = v[src];
    }
}

void cuda_kv_write(float *k_cache, float *v_cache, const float *k, const float *v, int ld_src, const int *pos,
                   int B, int T, int KVD, size_t bs_cache) {
    size_t total = (size_t)B * T * KVD;
    if (total == 0) return;
    kv_write_kernel<<<grid_for(total), THREADS>>>(k_cache, v_cache, k, v, ld_src, pos, T, KVD, bs_cache,
                                                  total);
    launched("kv_write B=%d T=%d KVD=%d ld_src=%d", B, T, KVD, ld_src);
}

/* ---------- attention ---------- */

/* The rows of sequences b0 .. b0+nb-1 with their start positions, passed by value: pos0 is host memory,
 * and a kernel argument needs neither a copy nor a sync. Uniform: p0[0] is every sequence's start. */
struct attn_rows {
    int b0, nb;
    int H, T, Tk;
    int uniform;
    int p0[GKD_CUDA_POS_CHUNK];
};

/* Row r of a launch is (sequence b0 + r / (H T), head (r / T) % H, query t = r % T). */
__device__ void row_coords(const attn_rows &rows, size_t r, int *b, int *h, int *t) {
    *t = (int)(r % rows.T);
    size_t bh = r / rows.T;
    *h = (int)(bh % rows.H);
    *b = rows.b0 + (int)(bh / rows.H);
}

__device__ int row_p0(const attn_rows &rows, int b) {
    return rows.uniform ? rows.p0[0] : rows.p0[b - rows.b0];
}

/* In place: softmax over a[0, n_seen), zeros over [n_seen, n_keys). Each thread revisits the same j in
 * every pass, so no barrier is needed between them beyond those in the reductions. */
__device__ void softmax_row(float *a, int n_seen, int n_keys, float *sh) {
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n_seen; j += blockDim.x) mx = fmaxf(mx, a[j]);
    mx = block_max(mx, sh);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n_seen; j += blockDim.x) {
        float e = expf(a[j] - mx);
        a[j] = e;
        sum += e;
    }
    sum = block_sum(sum, sh);
    float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < n_seen; j += blockDim.x) a[j] *= inv;
    for (int j = n_seen + threadIdx.x; j < n_keys; j += blockDim.x) a[j] = 0.0f;
}

/* softmax_row for n_keys <= PER * blockDim.x: the row is read once into registers and written once,
 * where the loops above make five passes over memory. */
template <int PER> __device__ void softmax_row_cached(float *a, int n_seen, int n_keys, float *sh) {
    float x[PER];
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int j = threadIdx.x + i * blockDim.x;
        x[i] = j < n_seen ? a[j] : -INFINITY;
        mx = fmaxf(mx, x[i]);
    }
    mx = block_max(mx, sh);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int j = threadIdx.x + i * blockDim.x;
        x[i] = j < n_seen ? expf(x[i] - mx) : 0.0f;
        sum += x[i];
    }
    sum = block_sum(sum, sh);
    float inv = 1.0f / sum;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < n_keys) a[j] = x[i] * inv; /* masked: 0 * inv */
    }
}

/* ds_j = a_j (da_j - sum_i a_i da_i) in place on da; masked a_j = 0 gives 0. */
__device__ void softmax_backward_row(float *da, const float *a, int n_seen, int n_keys, float *sh) {
    float dot = 0.0f;
    for (int j = threadIdx.x; j < n_seen; j += blockDim.x) dot += a[j] * da[j];
    dot = block_sum(dot, sh);
    for (int j = threadIdx.x; j < n_seen; j += blockDim.x) da[j] = a[j] * (da[j] - dot);
    for (int j = n_seen + threadIdx.x; j < n_keys; j += blockDim.x) da[j] = 0.0f;
}

template <int PER>
__device__ void softmax_backward_row_cached(float *da, const float *a, int n_seen, int n_keys, float *sh) {
    float av[PER], dv[PER], dot = 0.0f;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int j = threadIdx.x + i * blockDim.x;
        av[i] = j < n_seen ? a[j] : 0.0f;
        dv[i] = j < n_seen ? da[j] : 0.0f;
        dot += av[i] * dv[i];
    }
    dot = block_sum(dot, sh);
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < n_keys) da[j] = av[i] * (dv[i] - dot); /* masked: 0 * (0 - dot) */
    }
}

/* One block per row of att (B,H,T,Tk) holding raw scores; PER > 0 when every row of the launch has at
 * most PER * blockDim.x keys, 0 for any length. */
template <int PER> __global__ void causal_softmax_kernel(float *att, attn_rows rows) {
    __shared__ float sh[32];
    int b, h, t;
    row_coords(rows, blockIdx.x, &b, &h, &t);
    int p0 = row_p0(rows, b), n_seen = p0 + t + 1, n_keys = p0 + rows.T;
    float *a = att + (((size_t)b * rows.H + h) * rows.T + t) * rows.Tk;
    if constexpr (PER > 0)
        softmax_row_cached<PER>(a, n_seen, n_keys, sh);
    else
        softmax_row(a, n_seen, n_keys, sh);
}

/* The softmax backward in place on datt, rows and PER as in the forward. */
template <int PER>
__global__ void causal_softmax_backward_kernel(float *datt, const float *att, attn_rows rows) {
    __shared__ float sh[32];
    int b, h, t;
    row_coords(rows, blockIdx.x, &b, &h, &t);
    int p0 = row_p0(rows, b), n_seen = p0 + t + 1, n_keys = p0 + rows.T;
    size_t off = (((size_t)b * rows.H + h) * rows.T + t) * rows.Tk;
    if constexpr (PER > 0)
        softmax_backward_row_cached<PER>(datt + off, att + off, n_seen, n_keys, sh);
    else
        softmax_backward_row(datt + off, att + off, n_seen, n_keys, sh);
}

/* The whole attention of one query row in one block, for few queries per sequence (decoding): scores
 * into att, softmax in place, then the weighted sum of values, one output float per thread. Dynamic
 * shared memory: head_dim floats of the query. */
__global__ void attention_row_kernel(float *out, float *att, const float *q, const float *k, const float *v,
                                     attn_rows rows, gkd_attn_dims d) {
    extern __shared__ float qs[];
    __shared__ float sh[32];
    int b, h, t;
    row_coords(rows, blockIdx.x, &b, &h, &t);
    const int D = d.head_dim, group = d.n_heads / d.n_kv_heads;
    int p0 = row_p0(rows, b), n_seen = p0 + t + 1, n_keys = p0 + rows.T;
    const float scale = 1.0f / sqrtf((float)D);
    const float *qr = q + b * d.bs_q + (size_t)t * d.ld_q + (size_t)h * D;
    size_t kv_off = b * d.bs_kv + (size_t)(h / group) * D;
    const float *kb = k + kv_off, *vb = v + kv_off;
    float *a = att + (((size_t)b * rows.H + h) * rows.T + t) * rows.Tk;
    for (int i = threadIdx.x; i < D; i += blockDim.x) qs[i] = qr[i];
    __syncthreads();
    for (int j = threadIdx.x; j < n_seen; j += blockDim.x) {
        const float *kj = kb + (size_t)j * d.ld_kv;
        float s = 0.0f;
        for (int i = 0; i < D; i++) s += qs[i] * kj[i];
        a[j] = scale * s;
    }
    softmax_row(a, n_seen, n_keys, sh);
    __syncthreads(); /* every probability written above is read by every thread below */
    float *o = out + b * d.bs_out + (size_t)t * d.ld_out + (size_t)h * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < n_seen; j++) acc += a[j] * vb[(size_t)j * d.ld_kv + i];
        o[i] = acc;
    }
}

enum attn_row_op { ROW_SOFTMAX, ROW_SOFTMAX_BACKWARD, ROW_ATTENTION };

template <int PER>
void softmax_launch(attn_row_op op, unsigned n_rows, float *att, float *datt, attn_rows rows) {
    if (op == ROW_SOFTMAX)
        causal_softmax_kernel<PER><<<n_rows, THREADS>>>(att, rows);
    else
        causal_softmax_backward_kernel<PER><<<n_rows, THREADS>>>(datt, att, rows);
}

/* Launches one row kernel over every row of every sequence, plan.seqs_per_launch sequences per launch. */
void attn_rows_launch(attn_row_op op, const gkd_cuda_attn_plan &plan, float *att, float *datt, float *out,
                      const float *q, const float *k, const float *v, const int *pos0,
                      const gkd_attn_dims *d) {
    for (int b0 = 0; b0 < d->B; b0 += plan.seqs_per_launch) {
        attn_rows rows;
        memset(&rows, 0, sizeof rows);
        rows.b0 = b0;
        rows.nb = d->B - b0 < plan.seqs_per_launch ? d->B - b0 : plan.seqs_per_launch;
        rows.H = d->n_heads;
        rows.T = d->T;
        rows.Tk = d->Tk;
        rows.uniform = plan.uniform;
        int max_keys = 0;
        if (plan.uniform) {
            rows.p0[0] = plan.p0;
            max_keys = plan.p0 + d->T;
        } else {
            for (int i = 0; i < rows.nb; i++) {
                rows.p0[i] = pos0[b0 + i];
                if (rows.p0[i] + d->T > max_keys) max_keys = rows.p0[i] + d->T;
            }
        }
        unsigned n_rows = (unsigned)((size_t)rows.nb * rows.H * rows.T);
        if (op == ROW_ATTENTION) {
            attention_row_kernel<<<n_rows, ROW_ATTN_THREADS, (size_t)d->head_dim * sizeof(float)>>>(
                out, att, q, k, v, rows, *d);
            launched("attention (row kernel) B=%d H=%d T=%d Tk=%d head_dim=%d", d->B, d->n_heads, d->T, d->Tk,
                     d->head_dim);
            continue;
        }
        if (max_keys <= 4 * THREADS)
            softmax_launch<4>(op, n_rows, att, datt, rows);
        else if (max_keys <= 16 * THREADS)
            softmax_launch<16>(op, n_rows, att, datt, rows);
        else
            softmax_launch<0>(op, n_rows, att, datt, rows);
        launched("attention softmax%s B=%d H=%d T=%d Tk=%d", op == ROW_SOFTMAX ? "" : " backward", d->B,
                 d->n_heads, d->T, d->Tk);
    }
}

/* The row passes of the GEMM path (gkd_cuda_attention_gemm_forward/_backward call them between products). */
struct attn_rows_ctx {
    const gkd_cuda_attn_plan *plan;
    float *att, *datt;
    const int *pos0;
    const gkd_attn_dims *d;
};

void attn_rows_cb(int backward, void *user) {
    const attn_rows_ctx *c = (const attn_rows_ctx *)user;
    attn_rows_launch(backward ? ROW_SOFTMAX_BACKWARD : ROW_SOFTMAX, *c->plan, c->att, c->datt, NULL, NULL, NULL, NULL,
                     c->pos0, c->d);
}

/* sgemm_grid, or NULL (the per-head or per-sequence strided calls) with GKD_CUDA_ATTN_GRID=0, kept to
 * compare the two on a GPU. */
gkd_cuda_matmul_grid_fn attn_grid(void) {
    static int off = -1;
    if (off < 0) {
        const char *e = getenv("GKD_CUDA_ATTN_GRID");
        off = e && strcmp(e, "0") == 0;
    }
    return off ? NULL : sgemm_grid;
}

/* Scores q k^T / sqrt(head_dim) into att (cuBLAS), the causal softmax in place (a row kernel), out = att v
 * (cuBLAS), each product on exactly the pos0[b] + T keys its sequence sees, batched as
 * gkd_cuda_attn_plan_make decides (backend_cuda_internal.h). With at most ROW_ATTN_MAX_T
 * queries per sequence (decoding), one fused row kernel does all three instead. */
void cuda_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                            const int *pos0, const gkd_attn_dims *d) {
    const int H = d->n_heads, D = d->head_dim, T = d->T;
    if (d->B <= 0 || T <= 0 || H <= 0 || D <= 0) return;
    const gkd_cuda_attn_plan plan = gkd_cuda_attn_plan_make(d, pos0);
    if (T <= ROW_ATTN_MAX_T) {
        attn_rows_launch(ROW_ATTENTION, plan, att, NULL, out, q, k, v, pos0, d);
        return;
    }
    attn_rows_ctx ctx = {&plan, att, NULL, pos0, d};
    gkd_cuda_attention_gemm_forward(sgemm_batched, attn_grid(), attn_rows_cb, &ctx, out, att, q, k, v, pos0,
                                    d, &plan);
}

void cuda_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                             const float *att, const float *q, const float *k, const float *v,
                             const int *pos0, const gkd_attn_dims *d) {
    const int H = d->n_heads, D = d->head_dim, T = d->T;
    if (d->B <= 0 || T <= 0 || H <= 0 || D <= 0) return;
    const gkd_cuda_attn_plan plan = gkd_cuda_attn_plan_make(d, pos0);
    attn_rows_ctx ctx = {&plan, const_cast<float *>(att), datt, pos0, d};
    gkd_cuda_attention_gemm_backward(sgemm_batched, attn_grid(), attn_rows_cb, &ctx, dq, dk, dv, datt, dout,
                                     att, q, k, v, pos0, d, &plan);
}

/* ---------- swiglu, residual ---------- */

__global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, int N, int F,
                                      int ld_in) {
    size_t total = (size_t)N * F;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t in = (i / F) * ld_in + i % F;
        float g = gate[in];
        out[i] = g / (1.0f + expf(-g)) * up[in];
    }
}

/* silu(g) = g s(g), silu'(g) = s(g) (1 + g (1 - s(g))) with s the logistic sigmoid. */
__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                       const float *up, int N, int F, int ld_in) {
    size_t total = (size_t)N * F;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t in = (i / F) * ld_in + i % F;
        float g = gate[in], u = up[in], dy = dout[i];
        float s = 1.0f / (1.0f + expf(-g));
        dgate[in] += dy * u * s * (1.0f + g * (1.0f - s));
        dup[in] += dy * g * s;
    }
}

void cuda_swiglu_forward(float *out, const float *gate, const float *up, int N, int F, int ld_in) {
    if (N <= 0 || F <= 0) return;
    swiglu_forward_kernel<<<grid_for((size_t)N * F), THREADS>>>(out, gate, up, N, F, ld_in);
    launched("swiglu_forward N=%d F=%d", N, F);
}

void cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                          int N, int F, int ld_in) {
    if (N <= 0 || F <= 0) return;
    swiglu_backward_kernel<<<grid_for((size_t)N * F), THREADS>>>(dgate, dup, dout, gate, up, N, F, ld_in);
    launched("swiglu_backward N=%d F=%d", N, F);
}

__global__ void residual_forward_kernel(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void residual_backward_kernel(float *da, float *db, const float *dout, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

void cuda_residual_forward(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    residual_forward_kernel<<<grid_for(n), THREADS>>>(out, a, b, n);
    launched("residual_forward n=%zu", n);
}

void cuda_residual_backward(float *da, float *db, const float *dout, size_t n) {
    if (!n) return;
    residual_backward_kernel<<<grid_for(n), THREADS>>>(da, db, dout, n);
    launched("residual_backward n=%zu", n);
}

/* ---------- cross-entropy ---------- */

__global__ void crossentropy_forward_kernel(float *loss, float *lse, const float *logits, const int *targets,
                                            const float *weights, int V) {
    __shared__ float sh[32];
    size_t n = blockIdx.x;
    float w = weights[n];
    if (w == 0.0f) { /* the whole block takes this branch: no barrier is skipped by some threads only */
        if (threadIdx.x == 0) loss[n] = 0.0f, lse[n] = 0.0f;
        return;
    }
    const float *x = logits + n * V;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, x[i]);
    mx = block_max(mx, sh);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += expf(x[i] - mx);
    sum = block_sum(sum, sh);
    if (threadIdx.x == 0) {
        float l = mx + logf(sum);
        lse[n] = l;
        loss[n] = w * (l - x[targets[n]]);
    }
}

/* dlogits may alias logits: each element is read and written by the same thread. */
__global__ void crossentropy_backward_kernel(float *dlogits, const float *logits, const float *lse,
                                             const int *targets, const float *weights, int V) {
    size_t n = blockIdx.x;
    float w = weights[n];
    const float *x = logits + n * V;
    float *dx = dlogits + n * V;
    if (w == 0.0f) {
        for (int i = threadIdx.x; i < V; i += blockDim.x) dx[i] = 0.0f;
        return;
    }
    float l = lse[n];
    int target = targets[n];
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float g = w * expf(x[i] - l);
        if (i == target) g -= w;
        dx[i] = g;
    }
}

void cuda_crossentropy_forward(float *loss, float *lse, const float *logits, const int *targets,
                               const float *weights, int N, int V) {
    if (N <= 0 || V <= 0) return;
    crossentropy_forward_kernel<<<N, THREADS>>>(loss, lse, logits, targets, weights, V);
    launched("crossentropy_forward N=%d V=%d", N, V);
}

void cuda_crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int *targets,
                                const float *weights, int N, int V) {
    if (N <= 0 || V <= 0) return;
    crossentropy_backward_kernel<<<N, THREADS>>>(dlogits, logits, lse, targets, weights, V);
    launched("crossentropy_backward N=%d V=%d", N, V);
}

/* ---------- optimizer, norms ---------- */

__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             float bc1, float bc2) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1, vhat = vi / bc2;
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
    }
}

void cuda_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                       float beta2, float eps, float weight_decay, float grad_scale, int64_t t) {
    if (!n) return;
    /* bias corrections on the host in double, as the CPU backend computes them */
    float bc1 = (float)(1.0 - pow(beta1, (double)t));
    float bc2 = (float)(1.0 - pow(beta2, (double)t));
    adamw_kernel<<<grid_for(n), THREADS>>>(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                           grad_scale, bc1, bc2);
    launched("adamw_update n=%zu", n);
}

/* Pass 1: block k sums the squares of a fixed grid-strided set of elements; pass 2 adds the block sums in
 * block order. Neither order depends on scheduling. */
__global__ void sumsq_partial_kernel(double *part, const float *x, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sumsq_final_kernel(double *out, const double *part, int n_parts) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < n_parts; i += blockDim.x) s += part[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) *out = s;
}

double cuda_sumsq(const float *x, size_t n) {
    if (!n) return 0.0;
    sumsq_partial_kernel<<<SUMSQ_BLOCKS, THREADS>>>(sumsq_workspace(), x, n);
    launched("sumsq (partial sums) n=%zu", n);
    sumsq_final_kernel<<<1, THREADS>>>(sumsq_workspace() + SUMSQ_BLOCKS, sumsq_workspace(), SUMSQ_BLOCKS);
    launched("sumsq (final sum) n=%zu", n);
    double s = NAN; /* what a failed copy reports: a NaN norm stops the optimizer */
    if (!cuda_ok(cudaMemcpy(&s, sumsq_workspace() + SUMSQ_BLOCKS, sizeof s, cudaMemcpyDeviceToHost),
                 "sumsq: cudaMemcpy device->host of the result (n=%zu)", n))
        return NAN;
    return s;
}

} // namespace

void fill_ops(gkd_backend *t) {
#define CUDA_OP(op) t->op = cuda_##op;
    GKD_BACKEND_COMPUTE_OPS(CUDA_OP)
#undef CUDA_OP
}

} // namespace gkd_cuda
