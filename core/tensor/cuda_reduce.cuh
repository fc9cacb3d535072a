/* The block-wide reductions of the CUDA kernels (core/tensor/backend_cuda*.cu, core/tensor/sample_cuda.cu,
 * rl/divergence_cuda.cu), in one place so that every kernel sums in an order written down once.
 * Rules:
 * - Deterministic: a fixed tree, no atomics, so a result depends on the block size and the values only,
 *   never on scheduling; every thread of the block gets the same bits.
 * - Two trees, and a kernel keeps the one it was written with (their orders differ, so their last bits
 *   do): gkd_cuda_block_reduce, a warp-shuffle butterfly then one across the warps' results (blockDim.x a
 *   multiple of 32, at most 1024); gkd_cuda_block_tree_sums, a halving tree over shared memory (the block
 *   size a power of two, given as a template argument), for several sums at once.
 * - Each call begins with a barrier, so the shared scratch of the previous call may be reused. */
#ifndef GKD_CUDA_REDUCE_CUH
#define GKD_CUDA_REDUCE_CUH

#include <math.h>

struct gkd_cuda_add {
    template <typename T> __device__ T operator()(T a, T b) const {
        return a + b;
    }
};
struct gkd_cuda_min {
    template <typename T> __device__ T operator()(T a, T b) const {
        return a < b ? a : b;
    }
};
struct gkd_cuda_max {
    template <typename T> __device__ T operator()(T a, T b) const {
        return a > b ? a : b;
    }
};
/* fmaxf: a NaN loses to a number, where gkd_cuda_max would keep whichever side the NaN is on. */
struct gkd_cuda_fmax {
    __device__ float operator()(float a, float b) const {
        return fmaxf(a, b);
    }
};

/* op over the block, in every thread. The butterfly hands each lane op(a, b) or op(b, a), equal because
 * every op here is commutative, so all threads hold the same bits. identity fills the lanes past the last
 * warp. sh: 32 slots of shared memory. */
template <typename T, typename Op> __device__ T gkd_cuda_block_reduce(T v, Op op, T identity, T *sh) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    __syncthreads(); /* sh may still be read by the previous reduction */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < n_warps ? sh[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* K sums at once over a block of THREADS threads (a power of two): every thread gets the totals in v.
 * sh: (K, THREADS) doubles of shared memory. */
template <int K, int THREADS> __device__ void gkd_cuda_block_tree_sums(double *v, double *sh) {
    int tid = threadIdx.x;
    __syncthreads(); /* sh may still be read by the previous reduction */
    for (int k = 0; k < K; k++) sh[k * THREADS + tid] = v[k];
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (tid < s)
            for (int k = 0; k < K; k++) sh[k * THREADS + tid] += sh[k * THREADS + tid + s];
        __syncthreads();
    }
    for (int k = 0; k < K; k++) v[k] = sh[k * THREADS];
}

#endif
