/* The compute backend: a table of function pointers over raw device buffers, one table per backend
 * (CPU here, CUDA later with the same signatures). The model calls the table, never a backend directly.
 * Rules:
 * - Buffers are device memory of the backend (plain host memory on the CPU); "host" marks the pointer
 *   arguments that are always host memory.
 * - Ops never allocate: what they need beyond their inputs and outputs is passed in as scratch.
 * - Shapes are written next to each pointer, row-major, last index fastest: `// out: (N,C)`. N counts
 *   rows (B*T positions); "ld" is the number of floats between consecutive rows of a strided matrix.
 * - Backward ops are named <op>_backward and take gradients named d<thing>. They accumulate (+=) into
 *   every gradient they produce, parameters and inputs alike, so the caller zeroes what must start at 0;
 *   the exceptions (rope_backward, crossentropy_backward) say so.
 * - The CPU backend is the reference that other backends are tested against. */
#ifndef GKD_BACKEND_H
#define GKD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor/precision.h"
#include "core/tensor/weights.h"

struct gkd_sample_config; /* core/tensor/sample.h, which includes this header */

/* Geometry of causal grouped-query attention. Query head h of sequence b reads key/value head
 * h / (n_heads / n_kv_heads). Position t of q row b is at q + b*bs_q + t*ld_q + h*head_dim; keys and
 * values at k + b*bs_kv + j*ld_kv + g*head_dim (same for v); outputs like queries with ld_out, bs_out.
 * The t-th query of sequence b sits at absolute position pos0[b] + t (pos0 NULL: 0) and sees the keys
 * j <= pos0[b] + t, which must be < Tk. att rows are Tk long. */
typedef struct {
    int B, T;
    int n_heads, n_kv_heads, head_dim;
    int Tk;
    int ld_q, ld_kv, ld_out;
    size_t bs_q, bs_kv, bs_out;
} gkd_attn_dims;

typedef struct gkd_backend gkd_backend;
struct gkd_backend {
    const char *name;
    /* Logit bytes per chunk of a model's chunked cross-entropy when the model sets no chunk size
     * (gkd_model_set_loss_chunk); 0: about 8 MB, sized for a CPU's caches. A GPU wants far larger chunks:
     * many small products leave it idle. */
    size_t loss_chunk_bytes;

    /* Device memory. alloc returns NULL when out of memory; free accepts NULL. copy_in: host -> device,
     * copy_out: device -> host, copy: device -> device; sizes in bytes. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*copy_in)(void *dst, const void *host_src, size_t bytes);
    void (*copy_out)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    /* dst: (rows, ld_dst) <- src: (rows, ld_src), the first `cols` floats of each row. */
    void (*copy_2d)(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols);

    /* c: (M,N) = alpha * op(a) op(b) + beta * c, row-major; op(a): (M,K), op(b): (K,N); trans_a means
     * a is stored (K,M). beta = 0 ignores what c held. */
    void (*matmul)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc);
    /* `batch` independent matmuls, the i-th on a + i*stride_a, b + i*stride_b, c + i*stride_c (a stride
     * may be 0 to share an operand). */
    void (*matmul_batched)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a,
                           int lda, size_t stride_a, const float *b, int ldb, size_t stride_b, float beta,
                           float *c, int ldc, size_t stride_c, int batch);

    /* out: (N,C) = wte[tokens[n]]; tokens: (N) in [0,V); wte: (V,C). */
    void (*embedding_forward)(float *out, const int *tokens, const float *wte, int N, int C);
    /* dwte: (V,C) += dout rows scattered by token. */
    void (*embedding_backward)(float *dwte, const float *dout, const int *tokens, int N, int C);

    /* out: (N,C) = inp / sqrt(mean(inp^2) + eps) * weight; rstd: (N) keeps 1/sqrt(mean + eps). */
    void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                            float eps);
    /* dinp: (N,C) +=, dweight: (C) +=, from dout: (N,C), inp: (N,C), weight: (C), rstd: (N). */
    void (*rmsnorm_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int N, int C);

    /* Rotary embedding, Hugging Face "rotate_half" pairing (i with i + head_dim/2), in place on the
     * n_heads heads of head_dim floats at the start of each row of x: (N, ld); pos: (N) positions;
     * cos_tab, sin_tab: (max_pos, head_dim/2) with entry [p][i] = cos/sin(p * theta^(-2i/head_dim)). */
    void (*rope_forward)(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                         int n_heads, int head_dim, int ld);
    /* The transpose rotation, in place on dx: turns the gradient of rotated x into that of unrotated x
     * (it overwrites rather than accumulates: the rotation is its own buffer's last consumer). */
    void (*rope_backward)(float *dx, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                          int n_heads, int head_dim, int ld);

    /* The KV-cache write of one layer and step, for every sequence in one call (a copy per row would cost a
     * launch each on a GPU): row n = b*T + t of k and of v goes to row pos[n] of sequence b's cache, at
     * k_cache + b*bs_cache + pos[n]*KVD (the same in v_cache). k, v: (B*T, ld_src), the first KVD floats of
     * each row; pos: (B*T) the rows' positions, device memory like the rope's (so no host array has to
     * travel with the launch), each in [0, bs_cache / KVD) and distinct within a sequence;
     * k_cache, v_cache: (B, bs_cache) holding rows of KVD floats. */
    void (*kv_write)(float *k_cache, float *v_cache, const float *k, const float *v, int ld_src,
                     const int *pos, int B, int T, int KVD, size_t bs_cache);

    /* Causal softmax(q k^T / sqrt(head_dim)) v per (sequence, head), geometry in d (host).
     * out: (B,T,n_heads*head_dim) strided by d; att: (B,n_heads,T,Tk) the probabilities, 0 where masked,
     * kept for the backward; q, k, v strided by d; pos0: (B) host, or NULL. */
    void (*attention_forward)(float *out, float *att, const float *q, const float *k, const float *v,
                              const int *pos0, const gkd_attn_dims *d);
    /* dq, dk, dv += (strided like q, k, v); datt: (B,n_heads,T,Tk) scratch; dout like out. */
    void (*attention_backward)(float *dq, float *dk, float *dv, float *datt, const float *dout,
                               const float *att, const float *q, const float *k, const float *v,
                               const int *pos0, const gkd_attn_dims *d);

    /* out: (N,F) = silu(gate) * up; gate, up: (N, ld_in) (the halves of one fused projection). */
    void (*swiglu_forward)(float *out, const float *gate, const float *up, int N, int F, int ld_in);
    /* dgate, dup: (N, ld_in) += from dout: (N,F). */
    void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                            int N, int F, int ld_in);

    /* out: (n) = a + b; out may alias a or b. */
    void (*residual_forward)(float *out, const float *a, const float *b, size_t n);
    /* da, db: (n) += dout. */
    void (*residual_backward)(float *da, float *db, const float *dout, size_t n);

    /* Weighted softmax cross-entropy per row: loss[n] = weights[n] * (lse[n] - logits[n, targets[n]])
     * with lse the row's log-sum-exp. Rows of weight 0 are skipped (loss 0, their target unread); the
     * others need targets in [0,V). loss, lse: (N); logits: (N,V); targets: (N); weights: (N). */
    void (*crossentropy_forward)(float *loss, float *lse, const float *logits, const int *targets,
                                 const float *weights, int N, int V);
    /* dlogits: (N,V) = weights[n] * (softmax(logits[n]) - onehot(targets[n])). It overwrites rather than
     * accumulates, and may alias logits, so one chunk buffer serves both. */
    void (*crossentropy_backward)(float *dlogits, const float *logits, const float *lse, const int *targets,
                                  const float *weights, int N, int V);

    /* AdamW (decoupled weight decay, Loshchilov & Hutter) on n parameters; g = grad * grad_scale;
     * step t >= 1 sets the bias corrections 1 - beta^t. param, grad, m, v: (n). */
    void (*adamw_update)(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, float grad_scale, int64_t t);
    /* sum of x[i]^2, accumulated in double. x: (n). */
    double (*sumsq)(const float *x, size_t n);

    /* The precision of matmul and matmul_batched (core/tensor/precision.h), process-wide for this backend.
     * set_precision returns GKD_ERR_ARG (message set) for a precision the backend does not offer and then
     * changes nothing. Both NULL: fp32 only. Callers use gkd_backend_precision/_set_precision. */
    gkd_precision (*precision)(void);
    gkd_status (*set_precision)(gkd_precision p);

    /* Optional fused operations: NULL where the backend has none, and the caller then takes its generic
     * path. A backend that runs one natively fills its entry; no caller asks which backend it holds.
     * (The divergence rows of the distillation loss are fused too, but their types and formulas are rl's,
     * which this layer cannot see, so rl picks them per table: rl/divergence_device.h.) */
    /* Bytes of device scratch sample_draw needs for B rows of V logits; set with sample_draw. */
    size_t (*sample_workspace_bytes)(int B, int V);
    /* The draw of gkd_sample_token (core/tensor/sample.h) for every row of logits: (B,V) in backend memory,
     * so only tokens and log-probabilities reach the host. Row b uses the uniform at word offset + b of
     * (seed, stream), none when greedy. workspace: sample_workspace_bytes(B, V) bytes of backend memory.
     * tokens, logprobs: (B) host; a row holding a NaN or infinite logit gets -1 and NaN. Waits for the
     * device. */
    gkd_status (*sample_draw)(const float *logits, int B, int V, const struct gkd_sample_config *cfg,
                              uint64_t seed, uint64_t stream, uint64_t offset, void *workspace, int *tokens,
                              float *logprobs);

    /* Optional: packed weights of inference models (core/tensor/weights.h), all five set or all NULL. NULL:
     * the backend keeps fp32 weights only, and gkd_model_set_weight_format refuses other formats. */
    /* Bytes of a (rows, cols) matrix packed in `format`; 0 when the backend cannot pack that matrix (q8_0
     * needs cols a multiple of 32). */
    size_t (*packed_bytes)(gkd_weight_format format, int rows, int cols);
    /* dst: packed_bytes(format, rows, cols) bytes <- w: (rows, cols) fp32. */
    void (*pack)(void *dst, const float *w, gkd_weight_format format, int rows, int cols);
    /* Bytes of scratch packed_matmul needs for N rows of `in` inputs. */
    size_t (*packed_scratch_bytes)(gkd_weight_format format, int N, int in);
    /* y: (N, ldy) = x: (N, ldx) W^T, W: (out, in) packed, as weights.h defines the format's product;
     * scratch: packed_scratch_bytes(format, N, in) bytes. */
    void (*packed_matmul)(float *y, int ldy, const float *x, int ldx, const void *w, gkd_weight_format format,
                          int N, int out, int in, void *scratch);
    /* out: (N, C) = rows tokens[n] of w: (V, C) packed, widened to fp32; tokens: (N) device. */
    void (*packed_rows)(float *out, const int *tokens, const void *w, gkd_weight_format format, int N, int V,
                        int C);
};

/* The table's entries in order, for a backend that names its functions <prefix>_<entry>: with
 * `#define CPU_OP(op) .op = cpu_##op,` a table lists GKD_BACKEND_MEMORY_OPS(CPU_OP) and
 * GKD_BACKEND_COMPUTE_OPS(CPU_OP) instead of every entry by hand. */
#define GKD_BACKEND_MEMORY_OPS(X) X(alloc) X(free) X(zero) X(copy_in) X(copy_out) X(copy) X(copy_2d)
#define GKD_BACKEND_COMPUTE_OPS(X)                                                                           \
    X(matmul) X(matmul_batched) X(embedding_forward) X(embedding_backward) X(rmsnorm_forward)                \
    X(rmsnorm_backward) X(rope_forward) X(rope_backward) X(kv_write) X(attention_forward)                    \
    X(attention_backward) X(swiglu_forward) X(swiglu_backward) X(residual_forward) X(residual_backward)      \
    X(crossentropy_forward) X(crossentropy_backward) X(adamw_update) X(sumsq)

/* The CPU backend: OpenBLAS sgemm for matrix products, OpenMP loops for the rest. Static table. */
const gkd_backend *gkd_backend_cpu(void);

#endif
