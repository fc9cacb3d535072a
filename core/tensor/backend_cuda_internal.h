/* The CUDA backend's host-side planning, private to core/tensor/backend_cuda*.cu: pure functions of sizes
 * that shape the backend's launches (how attention is cut into cuBLAS calls and row-kernel launches, and
 * the byte counts of its messages). Inline in a header of their own so that a CPU test
 * (tests/test_cuda_plan.c) checks them on machines without a GPU. Not an API: other callers use
 * core/tensor/backend_cuda.h.
 * Rules: nothing here touches the GPU or holds state; the products go through the matmul function handed
 * in, the row passes through the callback. */
#ifndef GKD_BACKEND_CUDA_INTERNAL_H
#define GKD_BACKEND_CUDA_INTERNAL_H

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "core/tensor/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* One call for every (sequence b, query head h) at once, batch entry i = b*n_heads + h: operand X's matrix
 * at X.base + b*X.bs + (X.kv ? h/group : h)*X.hs (two strides, so a pointer-array batch on the GPU). */
typedef void (*gkd_cuda_matmul_grid_fn)(int trans_a, int trans_b, int M, int N, int K, float alpha,
                                        gkd_cuda_attn_operand A, gkd_cuda_attn_operand B, float beta,
                                        gkd_cuda_attn_operand C, int n_seqs, int n_heads, int group);
/* For every (sequence b, query head h): C = alpha op(A) op(B) + beta C (C's base is written), through mm,
 * or through grid (when not NULL) in one call where every sequence sees the same keys and no two heads of
 * the call add into the same C (C per query head, or one query head per key/value head).
 * The query heads h = g*group + r of one sequence and one r are evenly strided in every operand (key/value
 * ones by hs, the others by group*hs), and with a uniform pos0 so are the sequences of one head (by bs):
 * plan->per_head picks whichever takes fewer calls. Heads of a group that add into the same dk, dv
 * (beta = 1) are never in one call: they run in order, h ascending, on either path. */
static inline void gkd_cuda_attn_product(gkd_cuda_matmul_batched_fn mm, gkd_cuda_matmul_grid_fn grid,
                                         const gkd_attn_dims *d, const int *pos0,
                                         const gkd_cuda_attn_plan *plan, int ta, int tb, int M, int N, int K,
                                         float alpha, gkd_cuda_attn_operand A, gkd_cuda_attn_operand B,
                                         float beta, gkd_cuda_attn_operand C) {
    const int H = d->n_heads, KV = d->n_kv_heads, group = H / KV;
    float *c_base = (float *)C.base;
    /* every sequence sees the same keys (both paths below need it: per_head implies uniform) */
    const int keys = plan->p0 + d->T;
    const int m = M == GKD_CUDA_KEYS ? keys : M, n = N == GKD_CUDA_KEYS ? keys : N,
              k = K == GKD_CUDA_KEYS ? keys : K;
    if (grid && plan->uniform && !(C.kv && group > 1)) {
        grid(ta, tb, m, n, k, alpha, A, B, beta, C, d->B, H, group);
        return;
    }
    if (plan->per_head) {
        for (int h = 0; h < H; h++) {
            size_t ha = (size_t)(A.kv ? h / group : h) * A.hs, hb = (size_t)(B.kv ? h / group : h) * B.hs;
            size_t hc = (size_t)(C.kv ? h / group : h) * C.hs;
            mm(ta, tb, m, n, k, alpha, A.base + ha, A.ld, A.bs, B.base + hb, B.ld, B.bs, beta, c_base + hc,
               C.ld, C.bs, d->B);
        }
        return;
    }
    for (int b = 0; b < d->B; b++) {
        const int keys_b = (pos0 ? pos0[b] : 0) + d->T; /* this sequence's keys */
        const int mb = M == GKD_CUDA_KEYS ? keys_b : M, nb = N == GKD_CUDA_KEYS ? keys_b : N,
                  kb = K == GKD_CUDA_KEYS ? keys_b : K;
        for (int r = 0; r < group; r++) { /* batch entry g is head h = g*group + r */
            size_t oa = b * A.bs + (A.kv ? 0 : (size_t)r * A.hs), sa = A.kv ? A.hs : (size_t)group * A.hs;
            size_t ob = b * B.bs + (B.kv ? 0 : (size_t)r * B.hs), sb = B.kv ? B.hs : (size_t)group * B.hs;
            size_t oc = b * C.bs + (C.kv ? 0 : (size_t)r * C.hs), sc = C.kv ? C.hs : (size_t)group * C.hs;
            mm(ta, tb, mb, nb, kb, alpha, A.base + oa, A.ld, sa, B.base + ob, B.ld, sb, beta, c_base + oc,
               C.ld, sc, KV);
        }
    }
}

/* The operands of attention's products, from its buffers: q, out (or dout) and att per query head, k and
 * v per key/value head. The gradients (dq, dk, dv, datt) are laid out like them. */
typedef struct {
    gkd_cuda_attn_operand q, k, v, att, out;
} gkd_cuda_attn_operands;

static inline gkd_cuda_attn_operands gkd_cuda_attn_operands_make(const float *q, const float *k,
                                                                 const float *v, const float *att,
                                                                 const float *out, const gkd_attn_dims *d) {
    const size_t D = (size_t)d->head_dim, head_att = (size_t)d->T * d->Tk;
    gkd_cuda_attn_operands o = {{q, d->ld_q, d->bs_q, D, 0},
                                {k, d->ld_kv, d->bs_kv, D, 1},
                                {v, d->ld_kv, d->bs_kv, D, 1},
                                {att, d->Tk, (size_t)d->n_heads * head_att, head_att, 0},
                                {out, d->ld_out, d->bs_out, D, 0}};
    return o;
}

/* The attention's GEMM path as the CUDA backend runs it (attention_forward / _backward for more than a few
 * queries per sequence): the products through mm, the causal softmax and its backward through
 * rows(backward, user) over att (and datt); grid may be NULL (gkd_cuda_attn_product). Shared with
 * tests/test_cuda_plan.c, which drives it with the CPU's products and a host replay of the row kernels, so
 * the test checks this very sequence. */
typedef void (*gkd_cuda_attn_rows_fn)(int backward, void *user);

static inline void gkd_cuda_attention_gemm_forward(gkd_cuda_matmul_batched_fn mm,
                                                   gkd_cuda_matmul_grid_fn grid, gkd_cuda_attn_rows_fn rows,
                                                   void *user, float *out, float *att, const float *q,
                                                   const float *k, const float *v, const int *pos0,
                                                   const gkd_attn_dims *d, const gkd_cuda_attn_plan *plan) {
    const int D = d->head_dim, T = d->T;
    const float scale = 1.0f / sqrtf((float)D);
    const gkd_cuda_attn_operands o = gkd_cuda_attn_operands_make(q, k, v, att, out, d);
    /* att = softmax(s q k^T), out = att v */
    gkd_cuda_attn_product(mm, grid, d, pos0, plan, 0, 1, T, GKD_CUDA_KEYS, D, scale, o.q, o.k, 0.0f, o.att);
    rows(0, user);
    gkd_cuda_attn_product(mm, grid, d, pos0, plan, 0, 0, T, D, GKD_CUDA_KEYS, 1.0f, o.att, o.v, 0.0f, o.out);
}

static inline void gkd_cuda_attention_gemm_backward(gkd_cuda_matmul_batched_fn mm,
                                                    gkd_cuda_matmul_grid_fn grid, gkd_cuda_attn_rows_fn rows,
                                                    void *user, float *dq, float *dk, float *dv, float *datt,
                                                    const float *dout, const float *att, const float *q,
                                                    const float *k, const float *v, const int *pos0,
                                                    const gkd_attn_dims *d, const gkd_cuda_attn_plan *plan) {
    const int D = d->head_dim, T = d->T;
    const float scale = 1.0f / sqrtf((float)D);
    const gkd_cuda_attn_operands o = gkd_cuda_attn_operands_make(q, k, v, att, dout, d);
    const gkd_cuda_attn_operands g = gkd_cuda_attn_operands_make(dq, dk, dv, datt, NULL, d); /* gradients */
    /* dv += att^T dout; datt = dout v^T, then the softmax backward in place on datt; dq += s datt k;
     * dk += s datt^T q */
    gkd_cuda_attn_product(mm, grid, d, pos0, plan, 1, 0, GKD_CUDA_KEYS, D, T, 1.0f, o.att, o.out, 1.0f, g.v);
    gkd_cuda_attn_product(mm, grid, d, pos0, plan, 0, 1, T, GKD_CUDA_KEYS, D, 1.0f, o.out, o.v, 0.0f, g.att);
    rows(1, user);
    gkd_cuda_attn_product(mm, grid, d, pos0, plan, 0, 0, T, D, GKD_CUDA_KEYS, scale, g.att, o.k, 1.0f, g.q);
    gkd_cuda_attn_product(mm, grid, d, pos0, plan, 1, 0, GKD_CUDA_KEYS, D, T, scale, g.att, o.q, 1.0f, g.k);
}

#ifdef __cplusplus
}
#endif

#endif
