/* What the two files of the CUDA backend share, private to them: backend_cuda.cu (state, errors, memory,
 * matrix products, the table) and backend_cuda_ops.cu (the kernels of the other ops).
 * Rules: C++ in namespace gkd_cuda, never included from C; block sizes are whole warps, since the block
 * reductions (core/tensor/cuda_reduce.cuh) shuffle with a full-warp mask. */
#ifndef GKD_BACKEND_CUDA_IMPL_CUH
#define GKD_BACKEND_CUDA_IMPL_CUH

#include <cuda_runtime.h>
#include <stdarg.h>
#include <stddef.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_cuda_internal.h"

namespace gkd_cuda {

enum {
    THREADS = 256,       /* block size of elementwise and row kernels */
    MAX_GRID = 1 << 20,  /* elementwise kernels stride over the rest */
    SUMSQ_BLOCKS = 1024, /* sumsq's first pass: fixed, so its summation order never changes */
};
static_assert(THREADS % 32 == 0 && THREADS <= 1024, "THREADS must be whole warps");

inline int grid_for(size_t n) {
    size_t blocks = (n + THREADS - 1) / THREADS;
    return (int)(blocks < (size_t)MAX_GRID ? blocks : (size_t)MAX_GRID);
}

/* false after recording a failed runtime call in the sticky error (backend_cuda.h), what naming it. */
bool cuda_ok(cudaError_t e, const char *what, ...) __attribute__((format(printf, 2, 3)));
/* After each kernel launch: records a bad launch at once, a fault while running at the next waiting call
 * (or here with GKD_CUDA_SYNC=1). */
void launched(const char *what, ...) __attribute__((format(printf, 1, 2)));
/* GKD_CUDA_PROFILE=1: device time per op, printed at exit (cuda_profile.cu). profile_mark records that
 * the work queued since the previous mark was `what` (formatted); launched() and the copies call it. */
void profile_init(void);
void profile_reset(void);
int profile_on(void);
void profile_mark(const char *what, ...) __attribute__((format(printf, 1, 2)));
void profile_mark_v(const char *what, va_list ap);
/* The table's matmul and matmul_batched (backend_cuda.cu), for fill_ops. */
void cuda_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
void cuda_matmul_batched(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                         size_t stride_a, const float *b, int ldb, size_t stride_b, float beta, float *c,
                         int ldc, size_t stride_c, int batch);
/* The table's matmul_batched in fp32 (tf32 when on) whatever the precision: attention's products. */
void sgemm_batched(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *a, int lda,
                   size_t stride_a, const float *b, int ldb, size_t stride_b, float beta, float *c, int ldc,
                   size_t stride_c, int batch);
/* attention's products for every (sequence, head) in one call (gkd_cuda_matmul_grid_fn) */
void sgemm_grid(int trans_a, int trans_b, int M, int N, int K, float alpha, gkd_cuda_attn_operand A,
                gkd_cuda_attn_operand B, float beta, gkd_cuda_attn_operand C, int n_seqs, int n_heads, int group);
/* sumsq's partial sums: (SUMSQ_BLOCKS + 1) doubles of device memory, made at initialisation. */
double *sumsq_workspace(void);
/* Fills the compute entries (GKD_BACKEND_COMPUTE_OPS): the kernels of backend_cuda_ops.cu, the products. */
void fill_ops(gkd_backend *t);

} // namespace gkd_cuda

#endif
