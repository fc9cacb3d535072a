/* The CUDA backend: the table of core/tensor/backend.h on one GPU. This file holds the state, the sticky
 * error, the memory accounting, the table and the matrix products, which go to cuBLAS (row-major products
 * computed as the column-major product of the transposes); every other op is a kernel in
 * backend_cuda_ops.cu (what the two share: backend_cuda_impl.cuh), written to be plainly right first:
 * one block per row for row reductions, one thread per element for elementwise ops. The CPU backend
 * (backend_cpu.c) is the reference; tests/cuda/test_cuda_ops.c compares the two op by op.
 * Rules:
 * - Everything is queued on the legacy default stream, so ops run in call order with no extra syncs;
 *   host-side arguments (pos0, attention dims) are read before the op returns.
 * - Deterministic: no atomics and no reduction whose order depends on scheduling, so a run repeats bit
 *   for bit on the same GPU. Gradient scatters (embedding) give each thread a column it owns; block
 *   reductions use a fixed shuffle tree; sumsq reduces fixed blocks in a fixed order.
 * - Every CUDA and cuBLAS call is checked. Ops return void, so a failure is recorded in the sticky error
 *   (first failure kept, see backend_cuda.h) and printed; alloc returns NULL on failure.
 * - Ops never allocate, with one exception: in bf16 precision (core/tensor/precision.h) the products round their
 *   operands into a bf16 workspace owned by the backend, which grows to the largest product seen (counted
 *   in the memory accounting; gkd_backend_cuda_free_workspace gives it back). A growth that fails is a
 *   sticky error, as the op cannot return one. sumsq's partial sums are made once at initialisation.
 * - Attention's products call the fp32 path directly: they stay fp32 (tf32 when on) in bf16 precision,
 *   as on the CPU, whose attention does not go through matmul. */
#include "core/tensor/backend_cuda.h"
#include "core/tensor/backend_cuda_impl.cuh"
#include "core/tensor/backend_cuda_internal.h"
#include "core/tensor/sample_cuda.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace gkd_cuda {

enum { MAX_PRINTED_ERRORS = 20 };

/* ---------- state, errors, memory accounting ---------- */

struct alloc_entry {
    void *p;
    size_t bytes;
};

struct cuda_state {
    int ok;           /* initialised and usable */
    char reason[512]; /* why gkd_backend_cuda() returns NULL */
    cublasHandle_t blas;
    int precision;          /* a gkd_precision; tf32 is also the handle's math mode */
    __nv_bfloat16 *bf16_ws; /* bf16 operands of the current product, grown on demand */
    size_t bf16_ws_elems;
    const float **grid_ptrs; /* attention's pointer-array batches (sgemm_grid): 3 x grid_cap pointers */
    size_t grid_cap;
    int sync_each_op; /* GKD_CUDA_SYNC=1 */
    int device;
    double *sumsq_ws; /* (SUMSQ_BLOCKS + 1) doubles */
    char error[1024];
    int has_error, n_errors;
    alloc_entry *allocs;
    size_t n_allocs, cap_allocs;
    size_t in_use, peak;
    gkd_backend table;
};

cuda_state S;
pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* guards S's error and allocation list */

void record_error_v(const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    pthread_mutex_lock(&lock);
    if (!S.has_error) {
        snprintf(S.error, sizeof S.error, "%s", msg);
        S.has_error = 1;
    }
    int n = ++S.n_errors;
    pthread_mutex_unlock(&lock);
    if (n <= MAX_PRINTED_ERRORS) fprintf(stderr, "gkd cuda: %s\n", msg);
    if (n == MAX_PRINTED_ERRORS) fprintf(stderr, "gkd cuda: further errors are not printed\n");
}

__attribute__((format(printf, 1, 2))) void record_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    record_error_v(fmt, ap);
    va_end(ap);
}

/* Records "<prefix><what, formatted> failed: <detail>"; detail NULL: the CUDA error e's string and name. */
void record_failure(const char *prefix, const char *detail, cudaError_t e, const char *what, va_list ap) {
    char head[512];
    vsnprintf(head, sizeof head, what, ap);
    if (detail)
        record_error("%s%s failed: %s", prefix, head, detail);
    else
        record_error("%s%s failed: %s (%s)", prefix, head, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* A failed runtime call leaves its code as the thread's "last error"; clearing it keeps the next kernel
 * launch check from blaming itself for an earlier failure. */
bool cuda_ok(cudaError_t e, const char *what, ...) {
    if (e == cudaSuccess) return true;
    cudaGetLastError();
    va_list ap;
    va_start(ap, what);
    record_failure("", NULL, e, what, ap);
    va_end(ap);
    return false;
}

bool blas_ok(cublasStatus_t st, const char *what, ...) __attribute__((format(printf, 2, 3)));
bool blas_ok(cublasStatus_t st, const char *what, ...) {
    if (st == CUBLAS_STATUS_SUCCESS) return true;
    cudaGetLastError();
    va_list ap;
    va_start(ap, what);
    record_failure("", cublasGetStatusString(st), cudaSuccess, what, ap);
    va_end(ap);
    return false;
}

void launched(const char *what, ...) {
    if (profile_on()) {
        va_list pp;
        va_start(pp, what);
        profile_mark_v(what, pp);
        va_end(pp);
    }
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && S.sync_each_op) e = cudaDeviceSynchronize();
    if (e == cudaSuccess) return;
    va_list ap;
    va_start(ap, what);
    record_failure("kernel ", NULL, e, what, ap);
    va_end(ap);
}

void track_alloc(void *p, size_t bytes) {
    pthread_mutex_lock(&lock);
    if (S.n_allocs == S.cap_allocs) {
        size_t cap = S.cap_allocs ? 2 * S.cap_allocs : 64;
        alloc_entry *grown = (alloc_entry *)realloc(S.allocs, cap * sizeof *grown);
        if (!grown) {
            /* accounting only: losing it must not lose the allocation */
            pthread_mutex_unlock(&lock);
            return;
        }
        S.allocs = grown;
        S.cap_allocs = cap;
    }
    S.allocs[S.n_allocs++] = {p, bytes};
    S.in_use += bytes;
    if (S.in_use > S.peak) S.peak = S.in_use;
    pthread_mutex_unlock(&lock);
}

void untrack_alloc(void *p) {
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < S.n_allocs; i++) {
        if (S.allocs[i].p != p) continue;
        S.in_use -= S.allocs[i].bytes;
        S.allocs[i] = S.allocs[--S.n_allocs];
        break;
    }
    pthread_mutex_unlock(&lock);
}

/* ---------- memory ---------- */

void *cuda_alloc(size_t bytes) {
    /* cudaMalloc(0) may hand back NULL, which callers read as out of memory */
    size_t rounded = bytes ? bytes : 256;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, rounded);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cudaGetLastError();
        char want[32], fb[32], tb[32], held[32];
        gkd_cuda_format_bytes(want, sizeof want, rounded);
        gkd_cuda_format_bytes(fb, sizeof fb, free_b);
        gkd_cuda_format_bytes(tb, sizeof tb, total_b);
        gkd_cuda_format_bytes(held, sizeof held, gkd_backend_cuda_memory_in_use());
        gkd_error_set(e == cudaErrorMemoryAllocation ? GKD_ERR_NOMEM : GKD_ERR_DEVICE,
                      "cudaMalloc of %s failed: %s (%s free of %s; gkd holds %s)", want,
                      cudaGetErrorString(e), fb, tb, held);
        if (e == cudaErrorMemoryAllocation)
            fprintf(stderr, "gkd cuda: %s\n", gkd_error_message());
        else /* not a lack of memory but a broken device (often an earlier kernel's fault): sticky */
            record_error("%s", gkd_error_message());
        return NULL;
    }
    track_alloc(p, rounded);
    return p;
}

/* cudaFree waits for the device first, so freeing a buffer that queued kernels still use is safe. */
void cuda_free(void *p) {
    if (!p) return;
    untrack_alloc(p);
    cuda_ok(cudaFree(p), "cudaFree(%p)", p);
}

void cuda_zero(void *p, size_t bytes) {
    if (!bytes) return;
    cuda_ok(cudaMemset(p, 0, bytes), "cudaMemset of %zu bytes", bytes);
    profile_mark("cudaMemset bytes=%zu", bytes);
}

void cuda_copy_in(void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    cuda_ok(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host->device of %zu bytes",
            bytes);
    profile_mark("cudaMemcpy host->device bytes=%zu", bytes);
}

void cuda_copy_out(void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cuda_ok(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost),
            "cudaMemcpy device->host of %zu bytes (a fault here may come from an earlier kernel; rerun with "
            "GKD_CUDA_SYNC=1 to find it)",
            bytes);
    profile_mark("cudaMemcpy device->host bytes=%zu", bytes);
}

void cuda_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    cuda_ok(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy device->device of %zu bytes",
            bytes);
    profile_mark("cudaMemcpy device->device bytes=%zu", bytes);
}

void cuda_copy_2d(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols) {
    if (rows <= 0 || cols <= 0) return;
    cuda_ok(cudaMemcpy2D(dst, (size_t)ld_dst * sizeof(float), src, (size_t)ld_src * sizeof(float),
                         (size_t)cols * sizeof(float), (size_t)rows, cudaMemcpyDeviceToDevice),
            "cudaMemcpy2D of %d rows x %d floats (ld_dst %d, ld_src %d)", rows, cols, ld_dst, ld_src);
    profile_mark("cudaMemcpy2D rows=%d cols=%d", rows, cols);
}

/* ---------- matrix products ---------- */

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a row-major matrix read as
 * column-major is its transpose: so cuBLAS gets B first, A second, with their own transpose flags and
 * the dimensions (N, M, K). */
void sgemm_batched(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                   size_t stride_a, const float *b, int ldb, size_t stride_b, float beta, float *c, int ldc,
                   size_t stride_c, int batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* batches split at GKD_CUDA_MAX_BATCH: some cuBLAS versions put the batch on gridDim.z (<= 65535) */
    for (int i0 = 0; i0 < batch; i0 += GKD_CUDA_MAX_BATCH) {
        int n = batch - i0 < GKD_CUDA_MAX_BATCH ? batch - i0 : GKD_CUDA_MAX_BATCH;
        const float *ai = a + (size_t)i0 * stride_a, *bi = b + (size_t)i0 * stride_b;
        float *ci = c + (size_t)i0 * stride_c;
        cublasStatus_t st;
        if (n == 1)
            st = cublasSgemm(S.blas, op_b, op_a, N, M, K, &alpha, bi, ldb, ai, lda, &beta, ci, ldc);
        else
            st = cublasSgemmStridedBatched(S.blas, op_b, op_a, N, M, K, &alpha, bi, ldb, (long long)stride_b,
                                           ai, lda, (long long)stride_a, &beta, ci, ldc, (long long)stride_c,
                                           n);
        if (!blas_ok(st, "cublasSgemm%s ta=%d tb=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d batch=%d",
                     n == 1 ? "" : "StridedBatched", trans_a, trans_b, M, N, K, lda, ldb, ldc, batch))
            return;
        launched("cublasSgemm M=%d N=%d K=%d batch=%d", M, N, K, batch);
    }
}

/* Pointer arrays of sgemm_grid: entry i = b*H + h of operand X is X + b*bs + (h/div)*hs. */
__global__ void grid_ptrs_kernel(const float **pa, const float **pb, float **pc, gkd_cuda_attn_operand A,
                                 gkd_cuda_attn_operand B, gkd_cuda_attn_operand C, int i0, int n, int H,
                                 int group) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    int i = i0 + j, b = i / H, h = i % H;
    pa[j] = A.base + (size_t)b * A.bs + (size_t)(A.kv ? h / group : h) * A.hs;
    pb[j] = B.base + (size_t)b * B.bs + (size_t)(B.kv ? h / group : h) * B.hs;
    pc[j] = (float *)C.base + (size_t)b * C.bs + (size_t)(C.kv ? h / group : h) * C.hs;
}

/* gkd_cuda_matmul_grid_fn: attention's products for every (sequence, head) in one cuBLAS call (pointer
 * arrays made on the device, so nothing waits for the host), fp32 (tf32 when on) whatever the precision,
 * like sgemm_batched. At issue 3's shape (B=16, H=12) one call of 192 products instead of 12 of 16. */
void sgemm_grid(int trans_a, int trans_b, int M, int N, int K, float alpha, gkd_cuda_attn_operand A,
                gkd_cuda_attn_operand B, float beta, gkd_cuda_attn_operand C, int n_seqs, int n_heads,
                int group) {
    long long total = (long long)n_seqs * n_heads;
    if (M <= 0 || N <= 0 || total <= 0) return;
    size_t per = total < GKD_CUDA_MAX_BATCH ? (size_t)total : (size_t)GKD_CUDA_MAX_BATCH;
    if (per > S.grid_cap) {
        cuda_free(S.grid_ptrs); /* waits for queued products still reading it */
        S.grid_cap = 0;
        S.grid_ptrs = (const float **)cuda_alloc(3 * per * sizeof(float *));
        if (!S.grid_ptrs) {
            record_error("attention: cannot allocate %zu pointers for a batched product: %s", 3 * per,
                         gkd_error_message());
            return;
        }
        S.grid_cap = per;
    }
    const float **pa = S.grid_ptrs, **pb = S.grid_ptrs + per;
    float **pc = (float **)(S.grid_ptrs + 2 * per);
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    for (long long i0 = 0; i0 < total; i0 += (long long)per) {
        int n = (int)(total - i0 < (long long)per ? total - i0 : (long long)per);
        grid_ptrs_kernel<<<(n + THREADS - 1) / THREADS, THREADS>>>(pa, pb, pc, A, B, C, (int)i0, n, n_heads,
                                                                   group);
        launched("attention pointer arrays n=%d", n);
        cublasStatus_t st =
            cublasSgemmBatched(S.blas, op_b, op_a, N, M, K, &alpha, pb, B.ld, pa, A.ld, &beta, pc, C.ld, n);
        if (!blas_ok(st, "cublasSgemmBatched ta=%d tb=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d batch=%d",
                     trans_a, trans_b, M, N, K, A.ld, B.ld, C.ld, n))
            return;
        launched("cublasSgemmBatched M=%d N=%d K=%d batch=%d", M, N, K, n);
    }
}

/* Packs `batch` matrices of rows x cols floats (rows ld apart, matrices stride apart) as bf16, rounded to
 * nearest even: element (i, r, j) goes to i*dst_stride + r*cols + j. */
__global__ void bf16_pack_kernel(__nv_bfloat16 *dst, size_t dst_stride, const float *src, int rows, int cols,
                                 int ld, size_t stride, size_t total) {
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        size_t j = idx % cols, rest = idx / cols;
        size_t r = rest % rows, i = rest / rows;
        dst[i * dst_stride + r * cols + j] = __float2bfloat16_rn(src[i * stride + r * ld + j]);
    }
}

void bf16_pack(__nv_bfloat16 *dst, size_t dst_stride, const float *src, int rows, int cols, int ld,
               size_t stride, int batch) {
    size_t total = (size_t)rows * cols * batch;
    if (!total) return;
    bf16_pack_kernel<<<grid_for(total), THREADS>>>(dst, dst_stride, src, rows, cols, ld, stride, total);
    launched("bf16 operand cast rows=%d cols=%d ld=%d batch=%d", rows, cols, ld, batch);
}

/* The workspace holds at least `elems` bf16 values afterwards, or the failure is recorded and false
 * returned. Sizes are rounded up to 4 MiB so that a model's products settle on one size quickly. */
bool bf16_ws_reserve(size_t elems) {
    if (elems <= S.bf16_ws_elems) return true;
    const size_t quantum = ((size_t)4 << 20) / sizeof(__nv_bfloat16);
    size_t want = (elems + quantum - 1) / quantum * quantum;
    cuda_free(S.bf16_ws); /* waits for queued products still reading it */
    S.bf16_ws = NULL;
    S.bf16_ws_elems = 0;
    S.bf16_ws = (__nv_bfloat16 *)cuda_alloc(want * sizeof(__nv_bfloat16));
    if (!S.bf16_ws) {
        char b[32];
        gkd_cuda_format_bytes(b, sizeof b, want * sizeof(__nv_bfloat16));
        record_error("bf16 matmul: cannot grow the operand workspace to %s: %s", b, gkd_error_message());
        return false;
    }
    S.bf16_ws_elems = want;
    return true;
}

/* Like sgemm_batched with both operands rounded to bf16 first (packed into the workspace), multiplied by
 * cuBLAS with fp32 accumulation into the fp32 c: the arithmetic of the CPU's bf16 products. */
void bf16_gemm_batched(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                       size_t stride_a, const float *b, int ldb, size_t stride_b, float beta, float *c,
                       int ldc, size_t stride_c, int batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    /* packed matrices start on 16-byte boundaries, which cuBLAS's tensor-core kernels want */
    const size_t a_per = ((size_t)a_rows * a_cols + 7) / 8 * 8, b_per = ((size_t)b_rows * b_cols + 7) / 8 * 8;
    /* packed leading dimensions: a row's length, at least 1 as cuBLAS requires even when K = 0 */
    const int pa = a_cols > 0 ? a_cols : 1, pb = b_cols > 0 ? b_cols : 1;
    for (int i0 = 0; i0 < batch; i0 += GKD_CUDA_MAX_BATCH) {
        int n = batch - i0 < GKD_CUDA_MAX_BATCH ? batch - i0 : GKD_CUDA_MAX_BATCH;
        int na = stride_a ? n : 1, nb = stride_b ? n : 1; /* a shared operand is packed once */
        if (!bf16_ws_reserve(a_per * na + b_per * nb)) return;
        __nv_bfloat16 *wa = S.bf16_ws, *wb = S.bf16_ws + a_per * na;
        bf16_pack(wa, a_per, a + (size_t)i0 * stride_a, a_rows, a_cols, lda, stride_a, na);
        bf16_pack(wb, b_per, b + (size_t)i0 * stride_b, b_rows, b_cols, ldb, stride_b, nb);
        float *ci = c + (size_t)i0 * stride_c;
        cublasStatus_t st;
        if (n == 1)
            st = cublasGemmEx(S.blas, op_b, op_a, N, M, K, &alpha, wb, CUDA_R_16BF, pb, wa, CUDA_R_16BF, pa,
                              &beta, ci, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        else
            st = cublasGemmStridedBatchedEx(S.blas, op_b, op_a, N, M, K, &alpha, wb, CUDA_R_16BF, pb,
                                            stride_b ? (long long)b_per : 0, wa, CUDA_R_16BF, pa,
                                            stride_a ? (long long)a_per : 0, &beta, ci, CUDA_R_32F, ldc,
                                            (long long)stride_c, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (!blas_ok(st, "cublasGemm%sEx (bf16) ta=%d tb=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d batch=%d",
                     n == 1 ? "" : "StridedBatched", trans_a, trans_b, M, N, K, lda, ldb, ldc, batch))
            return;
        launched("cublasGemmEx (bf16) M=%d N=%d K=%d batch=%d", M, N, K, batch);
    }
}

void cuda_matmul_batched(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                         size_t stride_a, const float *b, int ldb, size_t stride_b, float beta, float *c,
                         int ldc, size_t stride_c, int batch) {
    if (S.precision == GKD_PRECISION_BF16)
        bf16_gemm_batched(trans_a, trans_b, M, N, K, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                          stride_c, batch);
    else
        sgemm_batched(trans_a, trans_b, M, N, K, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                      stride_c, batch);
}

void cuda_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    cuda_matmul_batched(trans_a, trans_b, M, N, K, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

/* ---------- initialisation ---------- */

/* Called from init_once too, so it must not go through gkd_backend_cuda() (pthread_once would deadlock).
 * The handle's math mode is TF32 exactly in tf32 precision; bf16 products name their own types. */
gkd_status set_precision(gkd_precision p) {
    if (p != GKD_PRECISION_FP32 && p != GKD_PRECISION_TF32 && p != GKD_PRECISION_BF16)
        return gkd_error_set(GKD_ERR_ARG, "precision %d is not a gkd_precision", (int)p);
    int tf32 = p == GKD_PRECISION_TF32;
    cublasStatus_t st = cublasSetMathMode(S.blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    if (!blas_ok(st, "cublasSetMathMode(%s)", tf32 ? "TF32" : "default"))
        return gkd_error_set(GKD_ERR_DEVICE, "cannot set precision %s: cublasSetMathMode failed: %s",
                             gkd_precision_name(p), cublasGetStatusString(st));
    S.precision = p;
    return GKD_OK;
}

double *sumsq_workspace(void) {
    return S.sumsq_ws;
}

gkd_precision cuda_get_precision(void) {
    return (gkd_precision)S.precision;
}

void fill_table(gkd_backend *t) {
    memset(t, 0, sizeof *t);
    t->name = "cuda";
    /* 256 MiB of logits per chunk (2048 rows at V = 32768): at 8 MB (64 rows) the H200 spent ~80 ms a step
     * at issue 3's shape on the LM head's products and cross-entropy, against ~51 ms at full size */
    t->loss_chunk_bytes = (size_t)256 << 20;
#define CUDA_OP(op) t->op = cuda_##op;
    GKD_BACKEND_MEMORY_OPS(CUDA_OP)
#undef CUDA_OP
    fill_ops(t);
    t->precision = cuda_get_precision;
    t->set_precision = set_precision;
    t->sample_workspace_bytes = gkd_sample_cuda_workspace_bytes;
    t->sample_draw = gkd_sample_cuda_draw;
}

int env_flag(const char *name) {
    const char *s = getenv(name);
    return s && s[0] && strcmp(s, "0") != 0;
}

void init_once(void) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        snprintf(S.reason, sizeof S.reason, "no usable CUDA device (cudaGetDeviceCount: %s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return;
    }
    if ((e = cudaGetDevice(&S.device)) != cudaSuccess || (e = cudaFree(0)) != cudaSuccess) {
        cudaGetLastError();
        snprintf(S.reason, sizeof S.reason, "cannot create a CUDA context on device %d: %s", S.device,
                 cudaGetErrorString(e));
        return;
    }
    cublasStatus_t st = cublasCreate(&S.blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        snprintf(S.reason, sizeof S.reason, "cublasCreate failed: %s", cublasGetStatusString(st));
        return;
    }
    S.sumsq_ws = (double *)cuda_alloc((SUMSQ_BLOCKS + 1) * sizeof(double));
    if (!S.sumsq_ws) {
        snprintf(S.reason, sizeof S.reason, "cannot allocate the backend's workspace: %s",
                 gkd_error_message());
        cublasDestroy(S.blas);
        return;
    }
    S.sync_each_op = env_flag("GKD_CUDA_SYNC");
    gkd_precision p = GKD_PRECISION_FP32;
    /* GKD_CUDA_TF32=1 is the older name of GKD_PRECISION=tf32; GKD_PRECISION wins when both are set */
    if (!gkd_precision_from_env("cuda", &p) && env_flag("GKD_CUDA_TF32")) p = GKD_PRECISION_TF32;
    if (p != GKD_PRECISION_FP32 && set_precision(p) != GKD_OK) {
        fprintf(stderr, "gkd cuda: %s; matrix products stay fp32\n", gkd_error_message());
        gkd_error_clear();
    }
    fill_table(&S.table);
    S.ok = 1;
    profile_init();
}

pthread_once_t init_flag = PTHREAD_ONCE_INIT;

} // namespace gkd_cuda

using namespace gkd_cuda;

extern "C" {

const gkd_backend *gkd_backend_cuda(void) {
    pthread_once(&init_flag, init_once);
    if (!S.ok) {
        gkd_error_set(GKD_ERR_DEVICE, "%s", S.reason);
        return NULL;
    }
    return &S.table;
}

int gkd_backend_is_cuda(const gkd_backend *be) {
    return be == &S.table;
}

int gkd_backend_cuda_device_count(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count;
}

gkd_status gkd_backend_cuda_info(gkd_cuda_info *out) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_backend_cuda_info: out is NULL");
    memset(out, 0, sizeof *out);
    if (!gkd_backend_cuda()) return GKD_ERR_DEVICE;
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, S.device);
    if (e == cudaSuccess) e = cudaMemGetInfo(&out->free_bytes, &out->total_bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return gkd_error_set(GKD_ERR_DEVICE, "gkd_backend_cuda_info: %s", cudaGetErrorString(e));
    }
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->device = S.device;
    out->cc_major = prop.major;
    out->cc_minor = prop.minor;
    out->multiprocessors = prop.multiProcessorCount;
    out->in_use_bytes = gkd_backend_cuda_memory_in_use();
    out->peak_bytes = gkd_backend_cuda_memory_peak();
    cudaRuntimeGetVersion(&out->runtime_version);
    cudaDriverGetVersion(&out->driver_version);
    out->tf32 = S.precision == GKD_PRECISION_TF32;
    out->precision = S.precision;
    out->bf16_workspace_bytes = S.bf16_ws_elems * sizeof(__nv_bfloat16);
    return GKD_OK;
}

size_t gkd_backend_cuda_memory_in_use(void) {
    pthread_mutex_lock(&lock);
    size_t n = S.in_use;
    pthread_mutex_unlock(&lock);
    return n;
}

size_t gkd_backend_cuda_memory_peak(void) {
    pthread_mutex_lock(&lock);
    size_t n = S.peak;
    pthread_mutex_unlock(&lock);
    return n;
}

int gkd_backend_cuda_set_tf32(int on) {
    int was = S.precision == GKD_PRECISION_TF32;
    if (gkd_backend_cuda()) set_precision(on ? GKD_PRECISION_TF32 : GKD_PRECISION_FP32);
    return was;
}

void gkd_backend_cuda_free_workspace(void) {
    if (!gkd_backend_cuda()) return;
    cuda_free(S.bf16_ws);
    cuda_free(S.grid_ptrs);
    S.grid_ptrs = NULL;
    S.grid_cap = 0;
    S.bf16_ws = NULL;
    S.bf16_ws_elems = 0;
}

const char *gkd_backend_cuda_last_error(void) {
    pthread_mutex_lock(&lock);
    const char *msg = S.has_error ? S.error : NULL;
    pthread_mutex_unlock(&lock);
    return msg;
}

void gkd_backend_cuda_clear_error(void) {
    pthread_mutex_lock(&lock);
    S.has_error = 0;
    S.n_errors = 0;
    S.error[0] = '\0';
    pthread_mutex_unlock(&lock);
}

gkd_status gkd_backend_cuda_sync(void) {
    if (!gkd_backend_cuda()) return GKD_ERR_DEVICE;
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) return GKD_OK;
    cuda_ok(e, "cudaDeviceSynchronize");
    return gkd_error_set(GKD_ERR_DEVICE, "CUDA device failed: %s", cudaGetErrorString(e));
}

} // extern "C"
