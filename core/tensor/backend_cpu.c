/* The CPU backend, the reference for the others: matrix products through OpenBLAS cblas_sgemm,
 * everything else plain C loops parallelised with OpenMP. See backend.h for the op contracts.
 * Rules: OpenMP is the only source of threads. OpenBLAS is set to one thread and large products are split
 * across the OpenMP team by rows or columns, each thread running sgemm on its own block: Debian's
 * OpenBLAS has its own pthread pool, and its spinning workers and OpenMP's would otherwise fight over
 * the cores between every op. No atomics: reductions that cross rows are split by column so every thread
 * owns what it writes, and every sum has a fixed order, so runs repeat bit for bit.
 * Precision (core/tensor/precision.h): fp32 is the plain sgemm path; bf16 rounds copies of the two operands and
 * runs that same path on them, so it equals fp32 products of pre-rounded operands bit for bit. The copies
 * are made per product (the one place this backend allocates): if that fails, c is filled with NaN, the
 * error is set and printed, and the NaN loss stops training. tf32 is refused: cuBLAS's TF32 rounding is a
 * tensor-core detail that a CPU copy could not promise to match. */
#include "core/tensor/backend.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/tensor/packed_cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

void openblas_set_num_threads(int num_threads);

/* Below this many floats an elementwise loop is not worth waking the OpenMP team. */
enum { PAR_MIN = 1 << 14 };

static void *cpu_alloc(size_t bytes) {
    /* 64-byte alignment: whole cache lines, and full AVX-512 vectors. */
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_free(void *p) {
    free(p);
}

static void cpu_zero(void *p, size_t bytes) {
    memset(p, 0, bytes);
}

static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (dst != src) memmove(dst, src, bytes);
}

static void cpu_copy_2d(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        memmove(dst + (size_t)r * ld_dst, src + (size_t)r * ld_src, (size_t)cols * sizeof(float));
}

static void cpu_kv_write(float *k_cache, float *v_cache, const float *k, const float *v, int ld_src,
                         const int *pos, int B, int T, int KVD, size_t bs_cache) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t, dst = (size_t)b * bs_cache + (size_t)pos[n] * KVD;
            memcpy(k_cache + dst, k + n * ld_src, (size_t)KVD * sizeof(float));
            memcpy(v_cache + dst, v + n * ld_src, (size_t)KVD * sizeof(float));
        }
}

static int team_size(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

static int team_rank(int *n_threads) {
#ifdef _OPENMP
    *n_threads = omp_get_num_threads();
    return omp_get_thread_num();
#else
    *n_threads = 1;
    return 0;
#endif
}

static void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Products under ~4 MFLOP run on the calling thread: splitting them costs more than it saves. */
static void matmul_fp32(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    if (M <= 0 || N <= 0) return;
    int nt = team_size();
    if (nt == 1 || (double)M * N * K < (1 << 21)) {
        sgemm(trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int split_rows = M >= N;
#pragma omp parallel num_threads(nt)
    {
        int n_threads, id = team_rank(&n_threads);
        int len = split_rows ? M : N;
        /* block edges on multiples of 16 keep the kernels' vector tiles whole */
        int per = ((len + n_threads - 1) / n_threads + 15) / 16 * 16;
        int lo = id * per, hi = lo + per < len ? lo + per : len;
        if (lo < hi) {
            if (split_rows)
                sgemm(trans_a, trans_b, hi - lo, N, K, alpha, trans_a ? a + lo : a + (size_t)lo * lda, lda, b,
                      ldb, beta, c + (size_t)lo * ldc, ldc);
            else
                sgemm(trans_a, trans_b, M, hi - lo, K, alpha, a, lda, trans_b ? b + (size_t)lo * ldb : b + lo,
                      ldb, beta, c + lo, ldc);
        }
    }
}

static void matmul_batched_fp32(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a,
                                int lda, size_t stride_a, const float *b, int ldb, size_t stride_b,
                                float beta, float *c, int ldc, size_t stride_c, int batch) {
    if (M <= 0 || N <= 0) return;
    if (batch < team_size()) {
        for (int i = 0; i < batch; i++)
            matmul_fp32(trans_a, trans_b, M, N, K, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                        c + i * stride_c, ldc);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < batch; i++)
        sgemm(trans_a, trans_b, M, N, K, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
              c + i * stride_c, ldc);
}

static _Atomic int cpu_precision = GKD_PRECISION_FP32;

static gkd_precision cpu_get_precision(void) {
    return (gkd_precision)atomic_load_explicit(&cpu_precision, memory_order_relaxed);
}

static gkd_status cpu_set_precision(gkd_precision p) {
    if (p == GKD_PRECISION_TF32)
        return gkd_error_set(GKD_ERR_ARG,
                             "precision tf32 is a CUDA tensor-core mode; the cpu backend offers fp32 "
                             "and bf16 (its bf16 is the reference for CUDA's)");
    if (p != GKD_PRECISION_FP32 && p != GKD_PRECISION_BF16)
        return gkd_error_set(GKD_ERR_ARG, "precision %d is not a gkd_precision", (int)p);
    atomic_store_explicit(&cpu_precision, (int)p, memory_order_relaxed);
    return GKD_OK;
}

/* The `rows` x `cols` matrices (rows ld floats apart) of `batch` operands stride apart, rounded to bf16
 * and packed densely: row r of matrix i lands at i*rows*cols + r*cols (a shared operand, stride 0, is
 * packed once). NULL when out of memory. */
static float *bf16_pack(const float *x, int rows, int cols, int ld, size_t stride, int batch) {
    size_t per = (size_t)rows * cols, n = per * (size_t)(stride ? batch : 1);
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) return NULL;
    size_t n_rows = n / (cols ? (size_t)cols : 1);
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t r = 0; r < n_rows; r++) {
        const float *src = x + (r / rows) * stride + (r % rows) * (size_t)ld;
        float *dst = p + r * cols;
        for (int j = 0; j < cols; j++) dst[j] = gkd_bf16_round(src[j]);
    }
    return p;
}

/* What an op that cannot report does when its operand copies cannot be made: NaN in every output, so the
 * loss shows it, and the reason in the thread's error and on stderr. */
static void bf16_out_of_memory(int M, int N, int K, float *c, int ldc, size_t stride_c, int batch) {
    gkd_error_set(GKD_ERR_NOMEM,
                  "bf16 matmul M=%d N=%d K=%d batch=%d: no memory for the rounded operand copies", M, N, K,
                  batch);
    fprintf(stderr, "gkd cpu: %s; its output is NaN\n", gkd_error_message());
    for (int i = 0; i < batch; i++)
        for (int r = 0; r < M; r++)
            for (int j = 0; j < N; j++) c[i * stride_c + (size_t)r * ldc + j] = NAN;
}

static void cpu_matmul_batched(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a,
                               int lda, size_t stride_a, const float *b, int ldb, size_t stride_b, float beta,
                               float *c, int ldc, size_t stride_c, int batch) {
    if (cpu_get_precision() != GKD_PRECISION_BF16 || M <= 0 || N <= 0 || batch <= 0) {
        matmul_batched_fp32(trans_a, trans_b, M, N, K, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c,
                            ldc, stride_c, batch);
        return;
    }
    int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    float *ra = bf16_pack(a, a_rows, a_cols, lda, stride_a, batch);
    float *rb = bf16_pack(b, b_rows, b_cols, ldb, stride_b, batch);
    if (!ra || !rb) {
        bf16_out_of_memory(M, N, K, c, ldc, stride_c, batch);
    } else {
        /* a dense matrix's ld is its row length, which must be at least 1 even when K = 0 */
        int pa = a_cols > 0 ? a_cols : 1, pb = b_cols > 0 ? b_cols : 1;
        size_t sa = stride_a ? (size_t)a_rows * a_cols : 0, sb = stride_b ? (size_t)b_rows * b_cols : 0;
        if (batch == 1)
            matmul_fp32(trans_a, trans_b, M, N, K, alpha, ra, pa, rb, pb, beta, c, ldc);
        else
            matmul_batched_fp32(trans_a, trans_b, M, N, K, alpha, ra, pa, sa, rb, pb, sb, beta, c, ldc,
                                stride_c, batch);
    }
    free(ra);
    free(rb);
}

static void cpu_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc) {
    if (cpu_get_precision() == GKD_PRECISION_BF16)
        cpu_matmul_batched(trans_a, trans_b, M, N, K, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
    else
        matmul_fp32(trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C > PAR_MIN)
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, (size_t)C * sizeof(float));
}

/* Threads split the columns, so two rows with the same token never race. */
static void cpu_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
#pragma omp parallel if ((size_t)N * C > PAR_MIN)
    {
        int nt, id = team_rank(&nt);
        int c0 = (int)((long)C * id / nt), c1 = (int)((long)C * (id + 1) / nt);
        for (int n = 0; n < N; n++) {
            float *dst = dwte + (size_t)tokens[n] * C;
            const float *src = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

static void cpu_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                                float eps) {
#pragma omp parallel for schedule(static) if ((size_t)N * C > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int c = 0; c < C; c++) y[c] = x[c] * r * weight[c];
        rstd[n] = r;
    }
}

static void cpu_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                                 const float *weight, const float *rstd, int N, int C) {
    /* y = x r w with r = (mean(x^2) + eps)^-1/2, so dx = r (dy w) - r^3 x mean(dy w x). */
#pragma omp parallel if ((size_t)N * C > PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            const float *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float r = rstd[n], dot = 0.0f;
            for (int c = 0; c < C; c++) dot += dy[c] * weight[c] * x[c];
            float k = r * r * r * dot / (float)C;
            for (int c = 0; c < C; c++) dx[c] += r * dy[c] * weight[c] - k * x[c];
        }
        int nt, id = team_rank(&nt);
        int c0 = (int)((long)C * id / nt), c1 = (int)((long)C * (id + 1) / nt);
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            const float *dy = dout + (size_t)n * C;
            float r = rstd[n];
            for (int c = c0; c < c1; c++) dweight[c] += dy[c] * x[c] * r;
        }
    }
}

/* The rotation of x's head pairs by the angles of pos; sign +1 turns by +angle (the forward), -1 by -angle
 * (its transpose, the backward). Multiplying by sign is exact, so each direction computes what its own
 * formula would. */
static void rope_rotate(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                        int n_heads, int head_dim, int ld, float sign) {
    int half = head_dim / 2;
#pragma omp parallel for schedule(static) if ((size_t)N * n_heads * head_dim > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *cs = cos_tab + (size_t)pos[n] * half;
        const float *sn = sin_tab + (size_t)pos[n] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)n * ld + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - (sign * b) * sn[i];
                v[i + half] = b * cs[i] + (sign * a) * sn[i];
            }
        }
    }
}

static void cpu_rope_forward(float *x, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                             int n_heads, int head_dim, int ld) {
    rope_rotate(x, pos, cos_tab, sin_tab, N, n_heads, head_dim, ld, 1.0f);
}

static void cpu_rope_backward(float *dx, const int *pos, const float *cos_tab, const float *sin_tab, int N,
                              int n_heads, int head_dim, int ld) {
    rope_rotate(dx, pos, cos_tab, sin_tab, N, n_heads, head_dim, ld, -1.0f);
}

/* e^x for SwiGLU (forward and backward) and the attention softmax, in a form the compiler vectorises (libm's
 * expf is a call per element: 13 % of a q8_0_a8 scoring forward in SwiGLU, about 8 % in the softmax): x = n ln2
 * + r with |r| <= ln2/2 (ln2 in two parts, so r is exact to fp32), e^r by its degree-7 Taylor polynomial
 * (truncation < 2^-27 relative), 2^n by the exponent bits. Measured over every 1e-6-relative step of [-87, 88]
 * against double exp: max relative error 7.8e-8 (1.3 x 2^-24; libm's expf is within 0.5 ulp); silu(g) = g / (1 +
 * e^-g) from it is within 1.7e-7 relative. Inputs are clamped to [-87, 88], where e^x stays a normal float:
 * silu's value is then g (e^-g < 1.7e-38 next to 1) or below 1e-36 in magnitude, as with exact exp; a softmax
 * score more than 87 below its row's maximum gets e^-87 = 1.6e-38 instead of less, a probability change below
 * 2e-38. */
static inline float exp_vec(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    const float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.428606765330187e-06f, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    /* a NaN x stays NaN through r and p; the exponent is built from 0 then (converting NaN to an integer is
     * undefined behaviour) */
    const int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline int attn_pos0(const int *pos0, int b) {
    return pos0 ? pos0[b] : 0;
}

/* Rows of one (sequence, head): row t holds scores for keys [0, n_keys) of which those after p0 + t
 * are masked; turns them into probabilities in place. */
static void causal_softmax(float *att, int T, int Tk, int p0, int n_keys) {
    for (int t = 0; t < T; t++) {
        float *a = att + (size_t)t * Tk;
        int n_seen = p0 + t + 1;
        float mx = -INFINITY;
        for (int j = 0; j < n_seen; j++) mx = a[j] > mx ? a[j] : mx;
        for (int j = 0; j < n_seen; j++) a[j] = exp_vec(a[j] - mx); /* vectorised; the sum keeps its order */
        float sum = 0.0f;
        for (int j = 0; j < n_seen; j++) sum += a[j];
        float inv = 1.0f / sum;
        for (int j = 0; j < n_seen; j++) a[j] *= inv;
        for (int j = n_seen; j < n_keys; j++) a[j] = 0.0f;
    }
}

/* One (sequence, head) per work item: its scores, softmax and weighted sum stay in cache together. */
static void cpu_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                                  const int *pos0, const gkd_attn_dims *d) {
    const int H = d->n_heads, D = d->head_dim, T = d->T, group = d->n_heads / d->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)D);
    const int items = d->B * H;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1 && (size_t)T * T * D * items > PAR_MIN)
    for (int item = 0; item < items; item++) {
        int b = item / H, h = item % H;
        int p0 = attn_pos0(pos0, b), n_keys = p0 + T;
        size_t kv_off = b * d->bs_kv + (size_t)(h / group) * D;
        float *ah = att + (size_t)item * T * d->Tk;
        sgemm(0, 1, T, n_keys, D, scale, q + b * d->bs_q + (size_t)h * D, d->ld_q, k + kv_off, d->ld_kv, 0.0f,
              ah, d->Tk);
        causal_softmax(ah, T, d->Tk, p0, n_keys);
        sgemm(0, 0, T, D, n_keys, 1.0f, ah, d->Tk, v + kv_off, d->ld_kv, 0.0f,
              out + b * d->bs_out + (size_t)h * D, d->ld_out);
    }
}

/* One (sequence, key/value head) per work item, its query heads in turn: the heads of a group all add
 * into the same dk, dv, so they must not run concurrently. */
static void cpu_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                                   const float *att, const float *q, const float *k, const float *v,
                                   const int *pos0, const gkd_attn_dims *d) {
    const int H = d->n_heads, KV = d->n_kv_heads, D = d->head_dim, T = d->T, group = H / KV;
    const float scale = 1.0f / sqrtf((float)D);
    const int items = d->B * KV;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1 && (size_t)T * T * D * items > PAR_MIN)
    for (int item = 0; item < items; item++) {
        int b = item / KV, g = item % KV;
        int p0 = attn_pos0(pos0, b), n_keys = p0 + T;
        size_t kv_off = b * d->bs_kv + (size_t)g * D;
        for (int h = g * group; h < (g + 1) * group; h++) {
            size_t q_off = b * d->bs_q + (size_t)h * D;
            const float *doh = dout + b * d->bs_out + (size_t)h * D;
            const float *ah = att + ((size_t)b * H + h) * T * d->Tk;
            float *dah = datt + ((size_t)b * H + h) * T * d->Tk;
            sgemm(1, 0, n_keys, D, T, 1.0f, ah, d->Tk, doh, d->ld_out, 1.0f, dv + kv_off, d->ld_kv);
            sgemm(0, 1, T, n_keys, D, 1.0f, doh, d->ld_out, v + kv_off, d->ld_kv, 0.0f, dah, d->Tk);
            /* softmax backward in place: ds_j = a_j (da_j - sum_i a_i da_i); masked a_j = 0 gives 0 */
            for (int t = 0; t < T; t++) {
                const float *a = ah + (size_t)t * d->Tk;
                float *da = dah + (size_t)t * d->Tk;
                int n_seen = p0 + t + 1;
                float dot = 0.0f;
                for (int j = 0; j < n_seen; j++) dot += a[j] * da[j];
                for (int j = 0; j < n_seen; j++) da[j] = a[j] * (da[j] - dot);
                for (int j = n_seen; j < n_keys; j++) da[j] = 0.0f;
            }
            sgemm(0, 0, T, D, n_keys, scale, dah, d->Tk, k + kv_off, d->ld_kv, 1.0f, dq + q_off, d->ld_q);
            sgemm(1, 0, n_keys, D, T, scale, dah, d->Tk, q + q_off, d->ld_q, 1.0f, dk + kv_off, d->ld_kv);
        }
    }
}

static void cpu_swiglu_forward(float *out, const float *gate, const float *up, int N, int F, int ld_in) {
#pragma omp parallel for schedule(static) if ((size_t)N * F > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *g = gate + (size_t)n * ld_in, *u = up + (size_t)n * ld_in;
        float *o = out + (size_t)n * F;
        for (int i = 0; i < F; i++) o[i] = g[i] / (1.0f + exp_vec(-g[i])) * u[i];
    }
}

static void cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                                const float *up, int N, int F, int ld_in) {
    /* silu(g) = g s(g), silu'(g) = s(g) (1 + g (1 - s(g))) with s the logistic sigmoid. */
#pragma omp parallel for schedule(static) if ((size_t)N * F > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *g = gate + (size_t)n * ld_in, *u = up + (size_t)n * ld_in;
        const float *dy = dout + (size_t)n * F;
        float *dg = dgate + (size_t)n * ld_in, *du = dup + (size_t)n * ld_in;
        for (int i = 0; i < F; i++) {
            float s = 1.0f / (1.0f + exp_vec(-g[i])); /* the forward's sigmoid */
            dg[i] += dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
            du[i] += dy[i] * g[i] * s;
        }
    }
}

static void cpu_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void cpu_residual_backward(float *da, float *db, const float *dout, size_t n) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

static void cpu_crossentropy_forward(float *loss, float *lse, const float *logits, const int *targets,
                                     const float *weights, int N, int V) {
#pragma omp parallel for schedule(static) if ((size_t)N * V > PAR_MIN)
    for (int n = 0; n < N; n++) {
        loss[n] = 0.0f;
        lse[n] = 0.0f;
        if (weights[n] == 0.0f) continue;
        const float *x = logits + (size_t)n * V;
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        float sum = 0.0f;
        for (int i = 0; i < V; i++) sum += expf(x[i] - mx);
        lse[n] = mx + logf(sum);
        loss[n] = weights[n] * (lse[n] - x[targets[n]]);
    }
}

static void cpu_crossentropy_backward(float *dlogits, const float *logits, const float *lse,
                                      const int *targets, const float *weights, int N, int V) {
#pragma omp parallel for schedule(static) if ((size_t)N * V > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *dx = dlogits + (size_t)n * V;
        float w = weights[n];
        if (w == 0.0f) {
            memset(dx, 0, (size_t)V * sizeof(float));
            continue;
        }
        for (int i = 0; i < V; i++) dx[i] = w * expf(x[i] - lse[n]);
        dx[targets[n]] -= w;
    }
}

static void cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             int64_t t) {
    float bc1 = (float)(1.0 - pow(beta1, (double)t));
    float bc2 = (float)(1.0 - pow(beta2, (double)t));
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        param[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * param[i]);
    }
}

/* Fixed blocks summed in a fixed order, so the result does not depend on the threads. */
static double cpu_sumsq(const float *x, size_t n) {
    enum { BLOCKS = 64 };
    double part[BLOCKS];
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int k = 0; k < BLOCKS; k++) {
        size_t lo = n * k / BLOCKS, hi = n * (k + 1) / BLOCKS;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
        part[k] = s;
    }
    double s = 0.0;
    for (int k = 0; k < BLOCKS; k++) s += part[k];
    return s;
}

#define CPU_OP(op) .op = cpu_##op,
static const gkd_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy_in = cpu_copy, /* host memory: every direction is one memcpy */
    .copy_out = cpu_copy,
    .copy = cpu_copy,
    .copy_2d = cpu_copy_2d,
    GKD_BACKEND_COMPUTE_OPS(CPU_OP)
    .precision = cpu_get_precision,
    .set_precision = cpu_set_precision,
    .packed_bytes = gkd_packed_cpu_bytes,
    .pack = gkd_packed_cpu_pack,
    .packed_scratch_bytes = gkd_packed_cpu_scratch_bytes,
    .packed_matmul = gkd_packed_cpu_matmul,
    .packed_rows = gkd_packed_cpu_rows,
};
#undef CPU_OP

static void cpu_init(void) {
    openblas_set_num_threads(1);
    gkd_precision p;
    if (gkd_precision_from_env("cpu", &p)) {
        if (cpu_set_precision(p) != GKD_OK) {
            fprintf(stderr, "gkd cpu: GKD_PRECISION=%s: %s; matrix products stay fp32\n",
                    gkd_precision_name(p), gkd_error_message());
            gkd_error_clear();
        }
    }
}

const gkd_backend *gkd_backend_cpu(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, cpu_init);
    return &cpu_backend;
}
