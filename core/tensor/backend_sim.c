/* The simulated-device backend; see backend_sim.h. Each op translates its device pointers back to the
 * host allocation and calls the CPU backend's op, so the arithmetic is the CPU's by construction.
 * Rules: a device argument that is not a sim pointer, or a host argument that is one, aborts with the
 * op's name: that is the bug this backend exists to find, and continuing would hide it. */
#include "core/tensor/backend_sim.h"

#include <stdio.h>
#include <stdlib.h>

/* Through the CPU table's accessor every time: its first call sets OpenBLAS to one thread, which the sim's
 * arithmetic must share to be the CPU's bit for bit. */
static const gkd_backend *cpu(void) {
    return gkd_backend_cpu();
}

int gkd_backend_sim_owns(const void *p) {
    return (uintptr_t)p >= GKD_SIM_OFFSET;
}

static void misuse(const char *op, const char *arg, const char *what) {
    fprintf(stderr, "gkd sim backend: %s: argument %s is %s\n", op, arg, what);
    abort();
}

/* Device pointer -> host allocation; NULL stays NULL (optional outputs). */
static void *dev(const void *p, const char *op, const char *arg) {
    if (!p) return NULL;
    if (!gkd_backend_sim_owns(p)) misuse(op, arg, "host memory where device memory is expected");
    return (void *)((uintptr_t)p - GKD_SIM_OFFSET);
}

static const void *host(const void *p, const char *op, const char *arg) {
    if (p && gkd_backend_sim_owns(p)) misuse(op, arg, "device memory where host memory is expected");
    return p;
}

#define D(p) dev((p), __func__, #p)
#define H(p) host((p), __func__, #p)

static void *sim_alloc(size_t bytes) {
    void *p = cpu()->alloc(bytes);
    return p ? (void *)((uintptr_t)p + GKD_SIM_OFFSET) : NULL;
}

static void sim_free(void *p) {
    cpu()->free(D(p));
}

static void sim_zero(void *p, size_t bytes) {
    cpu()->zero(D(p), bytes);
}

static void sim_copy_in(void *dst, const void *host_src, size_t bytes) {
    cpu()->copy_in(D(dst), H(host_src), bytes);
}

static void sim_copy_out(void *host_dst, const void *src, size_t bytes) {
    cpu()->copy_out((void *)H(host_dst), D(src), bytes);
}

static void sim_copy(void *dst, const void *src, size_t bytes) {
    cpu()->copy(D(dst), D(src), bytes);
}

static void sim_copy_2d(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols) {
    cpu()->copy_2d(D(dst), ld_dst, D(src), ld_src, rows, cols);
}

static void sim_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc) {
    cpu()->matmul(trans_a, trans_b, M, N, K, alpha, D(a), lda, D(b), ldb, beta, D(c), ldc);
}

static void sim_matmul_batched(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a,
                               int lda, size_t stride_a, const float *b, int ldb, size_t stride_b, float beta,
                               float *c, int ldc, size_t stride_c, int batch) {
    cpu()->matmul_batched(trans_a, trans_b, M, N, K, alpha, D(a), lda, stride_a, D(b), ldb, stride_b, beta,
                          D(c), ldc, stride_c, batch);
}

static void sim_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
    cpu()->embedding_forward(D(out), D(tokens), D(wte), N, C);
}

static void sim_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
    cpu()->embedding_backward(D(dwte), D(dout), D(tokens), N, C);
}

static void sim_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                                float eps) {
    cpu()->rmsnorm_forward(D(out), D(rstd), D(inp), D(weight), N, C, eps);
}

static void sim_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                                 const float *weight, const float *rstd, int N, int C) {
    cpu()->rmsnorm_backward(D(dinp), D(dweight), D(dout), D(inp), D(weight), D(rstd), N, C);
}

static void sim_rope_forward(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                             int n_heads, int head_dim, int ld) {
    cpu()->rope_forward(D(x), D(pos), D(cos_tab), D(sin_tab), N, n_heads, head_dim, ld);
}

static void sim_rope_backward(float *dx, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                              int n_heads, int head_dim, int ld) {
    cpu()->rope_backward(D(dx), D(pos), D(cos_tab), D(sin_tab), N, n_heads, head_dim, ld);
}

static void sim_kv_write(float *k_cache, float *v_cache, const float *k, const float *v, int ld_src,
                         const int *pos, int B, int T, int KVD, size_t bs_cache) {
    cpu()->kv_write(D(k_cache), D(v_cache), D(k), D(v), ld_src, D(pos), B, T, KVD, bs_cache);
}

static void sim_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                                  const int *pos0, const gkd_attn_dims *d) {
    cpu()->attention_forward(D(out), D(att), D(q), D(k), D(v), H(pos0), H(d));
}

static void sim_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                                   const float *att, const float *q, const float *k, const float *v,
                                   const int *pos0, const gkd_attn_dims *d) {
    cpu()->attention_backward(D(dq), D(dk), D(dv), D(datt), D(dout), D(att), D(q), D(k), D(v), H(pos0), H(d));
}

static void sim_swiglu_forward(float *out, const float *gate, const float *up, int N, int F, int ld_in) {
    cpu()->swiglu_forward(D(out), D(gate), D(up), N, F, ld_in);
}

static void sim_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                                const float *up, int N, int F, int ld_in) {
    cpu()->swiglu_backward(D(dgate), D(dup), D(dout), D(gate), D(up), N, F, ld_in);
}

static void sim_residual_forward(float *out, const float *a, const float *b, size_t n) {
    cpu()->residual_forward(D(out), D(a), D(b), n);
}

static void sim_residual_backward(float *da, float *db, const float *dout, size_t n) {
    cpu()->residual_backward(D(da), D(db), D(dout), n);
}

static void sim_crossentropy_forward(float *loss, float *lse, const float *logits, const int *targets,
                                     const float *weights, int N, int V) {
    cpu()->crossentropy_forward(D(loss), D(lse), D(logits), D(targets), D(weights), N, V);
}

static void sim_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                                      const int *targets, const float *weights, int N, int V) {
    cpu()->crossentropy_backward(D(dlogits), D(logits), D(lse), D(targets), D(weights), N, V);
}

static void sim_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             int64_t t) {
    cpu()->adamw_update(D(param), D(grad), D(m), D(v), n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
}

static double sim_sumsq(const float *x, size_t n) {
    return cpu()->sumsq(D(x), n);
}

/* The precision is the CPU table's own setting: one switch, so "sim" keeps computing what "cpu" does. */
static gkd_precision sim_precision(void) {
    return gkd_backend_precision(cpu());
}

static gkd_status sim_set_precision(gkd_precision p) {
    return gkd_backend_set_precision(cpu(), p, NULL);
}

#define SIM_OP(op) .op = sim_##op,
static const gkd_backend sim_backend = {
    .name = "sim",
    GKD_BACKEND_MEMORY_OPS(SIM_OP)
    GKD_BACKEND_COMPUTE_OPS(SIM_OP)
    .precision = sim_precision,
    .set_precision = sim_set_precision,
};
#undef SIM_OP

const gkd_backend *gkd_backend_sim(void) {
    cpu();
    return &sim_backend;
}
