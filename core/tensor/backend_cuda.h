/* The CUDA backend: the backend table of core/tensor/backend.h on one NVIDIA GPU (cuBLAS for matrix products,
 * own kernels for the rest), plus what a caller needs around it: device info, memory accounting, the
 * sticky error state and the TF32 switch (the older name of the tf32 precision, core/tensor/precision.h).
 * Rules:
 * - Everything runs in order on the legacy default stream; copy_out and sumsq wait for the device,
 *   copy_in returns once the host buffer may be reused, the other ops return once their work is queued.
 * - Ops return void, so a failing CUDA or cuBLAS call is recorded in a sticky per-process error (the
 *   first failure is kept until gkd_backend_cuda_clear_error) and printed to stderr. A failed alloc is
 *   not sticky (the caller may retry smaller): it prints, sets the thread-local gkd error naming the size
 *   and the free memory, and returns NULL. A kernel that faults is reported by the next call that waits
 *   for the device; set GKD_CUDA_SYNC=1 to wait after every op and name the culprit.
 * - Matrix products are exact fp32 by default. Precision tf32 (gkd_backend_set_precision, GKD_PRECISION=tf32,
 *   or the older gkd_backend_cuda_set_tf32(1) and GKD_CUDA_TF32=1) trades precision (10-bit mantissa
 *   inputs) for tensor-core speed; bf16 rounds the operands of the table's matmul and matmul_batched to
 *   bfloat16 into a workspace of the backend and multiplies them with fp32 accumulation. */
#ifndef GKD_BACKEND_CUDA_H
#define GKD_BACKEND_CUDA_H

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/tensor/backend.h"
#include "core/base/error.h"

/* The CUDA backend table on the current device (0 unless cudaSetDevice was called first), initialised
 * on the first call; NULL when no device is usable, with the reason in gkd_error_message() and
 * gkd_backend_cuda_last_error(). Static: never freed. */
const gkd_backend *gkd_backend_cuda(void);

/* Number of CUDA devices, 0 when the driver or the device is missing. Does not initialise the backend. */
int gkd_backend_cuda_device_count(void);

typedef struct {
    char name[256];         /* e.g. "NVIDIA H100 80GB HBM3" */
    int device;             /* ordinal */
    int cc_major, cc_minor; /* compute capability */
    int multiprocessors;
    size_t total_bytes; /* device memory, as cudaMemGetInfo reports */
    size_t free_bytes;
    size_t in_use_bytes; /* allocated through the backend table (alloc minus free), workspace included */
    size_t peak_bytes;   /* the largest in_use_bytes so far */
    int runtime_version, driver_version; /* e.g. 13000 */
    int tf32;                            /* 1 when matrix products use TF32 tensor cores */
    int precision;                       /* the gkd_precision of matrix products */
    size_t bf16_workspace_bytes;         /* the bf16 operand workspace, part of in_use_bytes */
} gkd_cuda_info;

/* Fills *out; GKD_ERR_DEVICE (message set) when the backend is unusable. */
gkd_status gkd_backend_cuda_info(gkd_cuda_info *out);

/* Bytes currently allocated through the table (and the backend's own workspace): the memory-leak check. */
size_t gkd_backend_cuda_memory_in_use(void);
size_t gkd_backend_cuda_memory_peak(void);

/* 1: precision tf32, cuBLAS may use TF32 tensor cores for fp32 products; 0: precision fp32 (the default;
 * this leaves bf16 too). Returns 1 when the precision was tf32. gkd_backend_set_precision says more. */
int gkd_backend_cuda_set_tf32(int on);

/* Frees the bf16 operand workspace (it grows again at the next bf16 product): for memory-leak checks
 * that compare gkd_backend_cuda_memory_in_use() before and after bf16 work, and to give memory back. */
void gkd_backend_cuda_free_workspace(void);

/* The first CUDA/cuBLAS failure since start or the last clear, naming the operation and its sizes;
 * NULL when there has been none. */
const char *gkd_backend_cuda_last_error(void);
void gkd_backend_cuda_clear_error(void);

/* Waits for all queued work; GKD_OK or GKD_ERR_DEVICE with the failure recorded (and set as the
 * thread-local gkd error). */
gkd_status gkd_backend_cuda_sync(void);

/* ---------- host-side planning (internal) ----------
 * Pure functions of sizes that shape the backend's launches, inline here so that a CPU test
 * (tests/test_cuda_plan.c) checks them on machines without a GPU. Not an API for other callers. */

enum {
    GKD_CUDA_POS_CHUNK = 128,   /* attention row kernels take up to this many distinct pos0 values by value */
    GKD_CUDA_MAX_BATCH = 32768, /* products per cuBLAS batched call: some cuBLAS versions fail above 65535 */
};

/* "1.50 GiB", "3.00 MiB", "512 bytes": for messages about memory. */
static inline void gkd_cuda_format_bytes(char *buf, size_t cap, size_t bytes) {
    if (bytes >= ((size_t)1 << 30))
        snprintf(buf, cap, "%.2f GiB", (double)bytes / (double)((size_t)1 << 30));
    else if (bytes >= ((size_t)1 << 20))
        snprintf(buf, cap, "%.2f MiB", (double)bytes / (double)((size_t)1 << 20));
    else
        snprintf(buf, cap, "%zu bytes", bytes);
}

/* How attention covers its (sequence, head) products and its rows. */
typedef struct {
    int uniform; /* every sequence starts at p0 (pos0 NULL: 0), so every one sees the same p0 + T keys */
    int p0;
    /* 1: each product is one cuBLAS call per query head, batched over the sequences (needs uniform);
     * 0: one call per (sequence, head within its group), batched over the key/value heads. */
    int per_head;
    int calls;           /* cuBLAS calls per product, counting batches split at GKD_CUDA_MAX_BATCH */
    int seqs_per_launch; /* sequences per row-kernel launch: one block per row, at most INT_MAX blocks */
} gkd_cuda_attn_plan;

static inline int gkd_cuda_batch_calls(int batch) {
    return (batch + GKD_CUDA_MAX_BATCH - 1) / GKD_CUDA_MAX_BATCH;
}

/* d's B, T and heads must be >= 1; pos0: (B) host, or NULL. */
static inline gkd_cuda_attn_plan gkd_cuda_attn_plan_make(const gkd_attn_dims *d, const int *pos0) {
    gkd_cuda_attn_plan p;
    int group = d->n_heads / d->n_kv_heads;
    p.uniform = 1;
    p.p0 = pos0 ? pos0[0] : 0;
    for (int b = 1; pos0 && b < d->B; b++)
        if (pos0[b] != p.p0) p.uniform = 0;
    long long per_head_calls = (long long)d->n_heads * gkd_cuda_batch_calls(d->B);
    long long per_seq_calls = (long long)d->B * group * gkd_cuda_batch_calls(d->n_kv_heads);
    p.per_head = p.uniform && per_head_calls <= per_seq_calls;
    p.calls = (int)(p.per_head ? per_head_calls : per_seq_calls);
    long long rows_per_seq = (long long)d->n_heads * d->T;
    long long seqs = rows_per_seq <= INT_MAX ? INT_MAX / rows_per_seq : 1;
    if (!p.uniform && seqs > GKD_CUDA_POS_CHUNK) seqs = GKD_CUDA_POS_CHUNK;
    if (seqs > d->B) seqs = d->B;
    p.seqs_per_launch = (int)seqs;
    return p;
}

/* One operand of an attention product, for sequence b and query head h: the matrix at
 * base + b*bs + head*hs with rows ld floats apart, where head is h, or h's key/value head when kv. */
typedef struct {
    const float *base;
    int ld;
    size_t bs, hs;
    int kv;
} gkd_cuda_attn_operand;

enum { GKD_CUDA_KEYS = -1 }; /* a product dimension that is the sequence's key count, pos0[b] + T */

typedef void (*gkd_cuda_matmul_batched_fn)(int trans_a, int trans_b, int M, int N, int K, float alpha,
                                           const float *a, int lda, size_t stride_a, const float *b, int ldb,
                                           size_t stride_b, float beta, float *c, int ldc, size_t stride_c,
                                           int batch);

/* For every (sequence b, query head h): C = alpha op(A) op(B) + beta C (C's base is written), through mm.
 * The query heads h = g*group + r of one sequence and one r are evenly strided in every operand (key/value
 * ones by hs, the others by group*hs), and with a uniform pos0 so are the sequences of one head (by bs):
 * plan->per_head picks whichever takes fewer calls. Heads of a group that add into the same dk, dv
 * (beta = 1) are never in one call: they run in order, h ascending, on either path. */
static inline void gkd_cuda_attn_product(gkd_cuda_matmul_batched_fn mm, const gkd_attn_dims *d,
                                         const int *pos0, const gkd_cuda_attn_plan *plan, int ta, int tb,
                                         int M, int N, int K, float alpha, gkd_cuda_attn_operand A,
                                         gkd_cuda_attn_operand B, float beta, gkd_cuda_attn_operand C) {
    const int H = d->n_heads, KV = d->n_kv_heads, group = H / KV;
    float *c_base = (float *)C.base;
    if (plan->per_head) {
        int keys = plan->p0 + d->T;
        int m = M == GKD_CUDA_KEYS ? keys : M, n = N == GKD_CUDA_KEYS ? keys : N,
            k = K == GKD_CUDA_KEYS ? keys : K;
        for (int h = 0; h < H; h++) {
            size_t ha = (size_t)(A.kv ? h / group : h) * A.hs, hb = (size_t)(B.kv ? h / group : h) * B.hs;
            size_t hc = (size_t)(C.kv ? h / group : h) * C.hs;
            mm(ta, tb, m, n, k, alpha, A.base + ha, A.ld, A.bs, B.base + hb, B.ld, B.bs, beta, c_base + hc,
               C.ld, C.bs, d->B);
        }
        return;
    }
    for (int b = 0; b < d->B; b++) {
        int keys = (pos0 ? pos0[b] : 0) + d->T;
        int m = M == GKD_CUDA_KEYS ? keys : M, n = N == GKD_CUDA_KEYS ? keys : N,
            k = K == GKD_CUDA_KEYS ? keys : K;
        for (int r = 0; r < group; r++) { /* batch entry g is head h = g*group + r */
            size_t oa = b * A.bs + (A.kv ? 0 : (size_t)r * A.hs), sa = A.kv ? A.hs : (size_t)group * A.hs;
            size_t ob = b * B.bs + (B.kv ? 0 : (size_t)r * B.hs), sb = B.kv ? B.hs : (size_t)group * B.hs;
            size_t oc = b * C.bs + (C.kv ? 0 : (size_t)r * C.hs), sc = C.kv ? C.hs : (size_t)group * C.hs;
            mm(ta, tb, m, n, k, alpha, A.base + oa, A.ld, sa, B.base + ob, B.ld, sb, beta, c_base + oc, C.ld,
               sc, KV);
        }
    }
}

/* The attention's GEMM path as the CUDA backend runs it (attention_forward / _backward for more than a few
 * queries per sequence): the products through mm, the causal softmax and its backward through
 * rows(backward, user) over att (and datt). Shared with tests/test_cuda_plan.c, which drives it with the
 * CPU's products and a host replay of the row kernels, so the test checks this very sequence. */
typedef void (*gkd_cuda_attn_rows_fn)(int backward, void *user);

static inline void gkd_cuda_attention_gemm_forward(gkd_cuda_matmul_batched_fn mm, gkd_cuda_attn_rows_fn rows,
                                                   void *user, float *out, float *att, const float *q,
                                                   const float *k, const float *v, const int *pos0,
                                                   const gkd_attn_dims *d, const gkd_cuda_attn_plan *plan) {
    const int H = d->n_heads, D = d->head_dim, T = d->T, Tk = d->Tk;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t head_att = (size_t)T * Tk;
    const gkd_cuda_attn_operand Q = {q, d->ld_q, d->bs_q, (size_t)D, 0},
                                K = {k, d->ld_kv, d->bs_kv, (size_t)D, 1},
                                V = {v, d->ld_kv, d->bs_kv, (size_t)D, 1},
                                ATT = {att, Tk, (size_t)H * head_att, head_att, 0},
                                OUT = {out, d->ld_out, d->bs_out, (size_t)D, 0};
    gkd_cuda_attn_product(mm, d, pos0, plan, 0, 1, T, GKD_CUDA_KEYS, D, scale, Q, K, 0.0f, ATT); /* q k^T */
    rows(0, user);                                                                                 /* softmax */
    gkd_cuda_attn_product(mm, d, pos0, plan, 0, 0, T, D, GKD_CUDA_KEYS, 1.0f, ATT, V, 0.0f, OUT); /* att v */
}

static inline void gkd_cuda_attention_gemm_backward(gkd_cuda_matmul_batched_fn mm, gkd_cuda_attn_rows_fn rows,
                                                    void *user, float *dq, float *dk, float *dv, float *datt,
                                                    const float *dout, const float *att, const float *q,
                                                    const float *k, const float *v, const int *pos0,
                                                    const gkd_attn_dims *d, const gkd_cuda_attn_plan *plan) {
    const int H = d->n_heads, D = d->head_dim, T = d->T, Tk = d->Tk;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t head_att = (size_t)T * Tk;
    const gkd_cuda_attn_operand Q = {q, d->ld_q, d->bs_q, (size_t)D, 0},
                                K = {k, d->ld_kv, d->bs_kv, (size_t)D, 1},
                                V = {v, d->ld_kv, d->bs_kv, (size_t)D, 1},
                                ATT = {att, Tk, (size_t)H * head_att, head_att, 0},
                                DATT = {datt, Tk, (size_t)H * head_att, head_att, 0},
                                DOUT = {dout, d->ld_out, d->bs_out, (size_t)D, 0},
                                DQ = {dq, d->ld_q, d->bs_q, (size_t)D, 0},
                                DK = {dk, d->ld_kv, d->bs_kv, (size_t)D, 1},
                                DV = {dv, d->ld_kv, d->bs_kv, (size_t)D, 1};
    gkd_cuda_attn_product(mm, d, pos0, plan, 1, 0, GKD_CUDA_KEYS, D, T, 1.0f, ATT, DOUT, 1.0f, DV); /* dv += att^T dout */
    gkd_cuda_attn_product(mm, d, pos0, plan, 0, 1, T, GKD_CUDA_KEYS, D, 1.0f, DOUT, V, 0.0f, DATT); /* datt = dout v^T */
    rows(1, user); /* softmax backward, in place on datt */
    gkd_cuda_attn_product(mm, d, pos0, plan, 0, 0, T, D, GKD_CUDA_KEYS, scale, DATT, K, 1.0f, DQ); /* dq += s datt k */
    gkd_cuda_attn_product(mm, d, pos0, plan, 1, 0, GKD_CUDA_KEYS, D, T, scale, DATT, Q, 1.0f, DK); /* dk += s datt^T q */
}

#ifdef __cplusplus
}
#endif

#endif
