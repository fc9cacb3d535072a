/* Token draws on the CUDA device; see sample_cuda.h for the contract and why the uniforms equal the host's.
 * One block per row. The filters never sort: a token's rank key is (its weight's float bits, descending;
 * its id, ascending), and the last kept token is found by binary search over weight levels with block-wide
 * counts (top-k) or masses (top-p), then over ids only when tied weights straddle the cut.
 * Rules:
 * - Deterministic: no atomics. Every reduction is a fixed shuffle tree over a fixed assignment of tokens
 *   to threads, so a row's result never depends on scheduling.
 * - A block-wide mass is a fixed-order sum in which excluded tokens count as +0, so it can only shrink
 *   when the set shrinks: the binary searches over it are searches over a monotone function. */
#include "core/tensor/sample_cuda.h"

#include "core/tensor/cuda_reduce.cuh"

#include <cuda_runtime.h>
#include <curand_kernel.h>
#include <math.h>
#include <stdint.h>

namespace {

enum {
    THREADS = 512,   /* per row: 16 warps */
    LEVEL_BITS = 30, /* weights are in [0, 1], so their float bits are below 2^30 */
    WS_ALIGN = 256,  /* bytes: alignment of the workspace's parts */
};

/* ---------- block scan (a fixed shuffle tree; the reductions are core/tensor/cuda_reduce.cuh) ---------- */

/* Sum of x over the threads before this one (thread order), in a fixed order. sh: 32 slots. */
__device__ double block_exclusive_sum(double x, double *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    double incl = x;
    for (int o = 1; o < 32; o <<= 1) {
        double y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    double excl = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) excl = 0.0;
    __syncthreads();
    if (lane == 31) sh[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        double t = lane < n_warps ? sh[lane] : 0.0;
        for (int o = 1; o < 32; o <<= 1) {
            double y = __shfl_up_sync(0xffffffffu, t, o);
            if (lane >= o) t += y;
        }
        double before = __shfl_up_sync(0xffffffffu, t, 1);
        __syncwarp();
        if (lane < n_warps) sh[lane] = lane == 0 ? 0.0 : before;
    }
    __syncthreads();
    return sh[warp] + excl;
}

/* ---------- the rank order ---------- */

__device__ __forceinline__ unsigned level_of(float w) {
    return __float_as_uint(w);
}

/* A token is kept by a cut (level, id) when it ranks at or before the cut's token: a higher level, or the
 * same level and an id no larger. */
struct cut_t {
    unsigned level;
    int id;
};

__device__ __forceinline__ bool within(cut_t c, int v, unsigned lvl) {
    return lvl > c.level || (lvl == c.level && v <= c.id);
}

template <typename Pred> __device__ int block_count(const float *w, int V, Pred pred, int *sh) {
    int n = 0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) n += pred(v, level_of(w[v])) ? 1 : 0;
    return gkd_cuda_block_reduce(n, gkd_cuda_add(), 0, sh);
}

template <typename Pred> __device__ double block_mass(const float *w, int V, Pred pred, double *sh) {
    double s = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float x = w[v];
        if (pred(v, level_of(x))) s += x;
    }
    return gkd_cuda_block_reduce(s, gkd_cuda_add(), 0.0, sh);
}

/* The r-th smallest id (r >= 1) among the tokens at `level` that `keep` admits: binary lifting for the
 * largest id t with fewer than r of them at ids <= t. */
template <typename Pred>
__device__ int nth_id_at_level(const float *w, int V, unsigned level, int r, Pred keep, int *sh) {
    int ans = -1, step = 1;
    while (step < V) step <<= 1;
    for (; step > 0; step >>= 1) {
        int cand = ans + step;
        if (cand >= V) continue;
        int n = block_count(
            w, V, [&](int v, unsigned l) { return l == level && v <= cand && keep(v, l); }, sh);
        if (n < r) ans = cand;
    }
    return ans + 1;
}

struct draw_params {
    int V;
    int draw; /* 0: greedy */
    double inv_t;
    int keep_k; /* V: no top-k */
    float top_p;
    unsigned long long seed, stream, offset;
};

__global__ void __launch_bounds__(THREADS)
    draw_kernel(const float *logits, float *weights, draw_params prm, int *out_tok, float *out_lp) {
    __shared__ double sh_d[32];
    __shared__ float sh_f[32];
    __shared__ int sh_i[32];
    __shared__ int sh_kept;
    const int b = blockIdx.x, V = prm.V;
    const float *x = logits + (size_t)b * V;
    float *w = weights + (size_t)b * V;

    /* NaN or infinity: fmaxf skips a NaN, so no logit might equal the maximum and the draw would index
     * past the row; such a row is refused as the CPU refuses it. */
    int nonfinite = 0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) nonfinite |= !isfinite(x[v]);
    if (gkd_cuda_block_reduce(nonfinite, gkd_cuda_max(), 0, sh_i)) {
        if (threadIdx.x == 0) {
            out_tok[b] = -1;
            out_lp[b] = NAN;
        }
        return;
    }
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, x[v]);
    mx = gkd_cuda_block_reduce(mx, gkd_cuda_max(), -INFINITY, sh_f);
    int first = V;
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        if (x[v] == mx) {
            first = v;
            break;
        }
    first = gkd_cuda_block_reduce(first, gkd_cuda_min(), V, sh_i);
    double s = 0.0;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += exp((double)x[v] - (double)mx);
    s = gkd_cuda_block_reduce(s, gkd_cuda_add(), 0.0, sh_d);
    const double lse = (double)mx + log(s);
    int tok = first;

    if (prm.draw) {
        /* as the CPU: the largest logit weighs 1 exactly, whatever inv_t */
        for (int v = threadIdx.x; v < V; v += blockDim.x)
            w[v] = x[v] == mx ? 1.0f : (float)exp(((double)x[v] - (double)mx) * prm.inv_t);
        __syncthreads();
        cut_t cut = {0u, V - 1}; /* keeps every token */
        if (prm.keep_k < V) {
            const int k = prm.keep_k;
            unsigned lv = 0; /* the largest level with at least k tokens at or above it */
            for (int bit = LEVEL_BITS - 1; bit >= 0; bit--) {
                unsigned cand = lv | (1u << bit);
                if (block_count(
                        w, V, [&](int, unsigned l) { return l >= cand; }, sh_i) >= k)
                    lv = cand;
            }
            int above = block_count(
                w, V, [&](int, unsigned l) { return l > lv; }, sh_i);
            int at = block_count(
                w, V, [&](int, unsigned l) { return l == lv; }, sh_i);
            int need = k - above;
            cut.level = lv;
            cut.id = need < at ? nth_id_at_level(
                                     w, V, lv, need, [](int, unsigned) { return true; }, sh_i)
                               : V - 1;
        }
        if (prm.top_p < 1.0f) {
            const cut_t ck = cut;
            auto in_k = [&](int v, unsigned l) { return within(ck, v, l); };
            double total = block_mass(w, V, in_k, sh_d);
            double limit = prm.top_p * total;
            /* the largest level t whose mass strictly above it still reaches the limit: the kept tokens stop
             * at level t + 1 */
            unsigned t = 0;
            for (int bit = LEVEL_BITS - 1; bit >= 0; bit--) {
                unsigned cand = t | (1u << bit);
                double above = block_mass(
                    w, V, [&](int v, unsigned l) { return l > cand && in_k(v, l); }, sh_d);
                if (above >= limit) t = cand;
            }
            const unsigned q = t + 1;
            double mass = block_mass(
                w, V, [&](int v, unsigned l) { return l > q && in_k(v, l); }, sh_d);
            auto in_group = [&](int v, unsigned l) { return l == q && in_k(v, l); };
            int at = block_count(w, V, in_group, sh_i);
            /* the tied tokens at level q enter in id order while the mass before each is below the limit,
             * adding their weight one by one as the CPU does */
            if (threadIdx.x == 0) {
                const float wq = __uint_as_float(q);
                int n = 0;
                while (n < at && mass < limit) mass += wq, n++;
                sh_kept = n;
            }
            __syncthreads();
            const int n = sh_kept;
            cut.level = q;
            if (n < at)
                cut.id = nth_id_at_level(w, V, q, n, in_k, sh_i);
            else
                cut.id = q == ck.level ? ck.id : V - 1;
        }

        auto kept = [&](int v, unsigned l) { return l != 0u && within(cut, v, l); };
        const double total = block_mass(w, V, kept, sh_d);
        curandStatePhilox4_32_10_t state;
        curand_init(prm.seed, prm.stream, prm.offset + (unsigned long long)b, &state);
        const double target = (double)curand_uniform(&state) * total;
        /* inverse CDF in token order: each thread owns a contiguous run of ids */
        const int chunk = (V + blockDim.x - 1) / blockDim.x;
        const int lo = min(V, (int)threadIdx.x * chunk), hi = min(V, lo + chunk);
        double local = 0.0;
        for (int v = lo; v < hi; v++)
            if (kept(v, level_of(w[v]))) local += w[v];
        double acc = block_exclusive_sum(local, sh_d);
        int found = V, last = -1;
        for (int v = lo; v < hi; v++) {
            if (!kept(v, level_of(w[v]))) continue;
            acc += w[v];
            last = v;
            if (acc >= target) {
                found = v;
                break;
            }
        }
        found = gkd_cuda_block_reduce(found, gkd_cuda_min(), V, sh_i);
        last = gkd_cuda_block_reduce(last, gkd_cuda_max(), -1, sh_i);
        tok = found < V ? found : last; /* past the end only by rounding: the CPU then keeps the last token */
    }
    if (threadIdx.x == 0) {
        out_tok[b] = tok;
        out_lp[b] = (float)((double)x[tok] - lse);
    }
}

__global__ void uniforms_kernel(unsigned long long seed, unsigned long long stream,
                                const unsigned long long *offsets, int n, float *out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    curandStatePhilox4_32_10_t state;
    curand_init(seed, stream, offsets[i], &state);
    out[i] = curand_uniform(&state);
}

size_t align_up(size_t n) {
    return (n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
}

gkd_status cuda_status(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return GKD_OK;
    cudaGetLastError();
    return gkd_error_set(GKD_ERR_DEVICE, "%s failed: %s (%s)", what, cudaGetErrorString(e),
                         cudaGetErrorName(e));
}

} // namespace

extern "C" size_t gkd_sample_cuda_workspace_bytes(int B, int V) {
    return align_up((size_t)B * V * sizeof(float)) + 2 * (size_t)B * sizeof(int);
}

extern "C" gkd_status gkd_sample_cuda_draw(const float *logits, int B, int V, const gkd_sample_config *cfg,
                                           uint64_t seed, uint64_t stream, uint64_t offset, void *workspace,
                                           int *tokens, float *logprobs) {
    if (!logits || !cfg || !workspace || !tokens || !logprobs || B <= 0 || V <= 0)
        return gkd_error_set(GKD_ERR_ARG, "gkd_sample_cuda_draw: bad argument");
    draw_params prm;
    prm.V = V;
    prm.draw = cfg->temperature > 0.0f && cfg->top_k != 1;
    prm.inv_t = prm.draw ? 1.0 / cfg->temperature : 1.0;
    prm.keep_k = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
    prm.top_p = cfg->top_p;
    prm.seed = seed;
    prm.stream = stream;
    prm.offset = offset;
    float *weights = (float *)workspace;
    int *out = (int *)((char *)workspace + align_up((size_t)B * V * sizeof(float)));
    draw_kernel<<<B, THREADS>>>(logits, weights, prm, out, (float *)(out + B));
    gkd_status st = cuda_status(cudaGetLastError(), "kernel draw (sampling)");
    if (!st)
        st = cuda_status(cudaMemcpy(tokens, out, (size_t)B * sizeof(int), cudaMemcpyDeviceToHost),
                         "copying sampled tokens to the host");
    if (!st)
        st = cuda_status(cudaMemcpy(logprobs, out + B, (size_t)B * sizeof(float), cudaMemcpyDeviceToHost),
                         "copying sampled log-probabilities to the host");
    return st;
}

extern "C" gkd_status gkd_sample_cuda_uniforms(uint64_t seed, uint64_t stream, const uint64_t *offsets, int n,
                                               float *out) {
    if (!offsets || !out || n <= 0)
        return gkd_error_set(GKD_ERR_ARG, "gkd_sample_cuda_uniforms: bad argument");
    unsigned long long *d_off = NULL;
    float *d_out = NULL;
    gkd_status st = cuda_status(cudaMalloc(&d_off, (size_t)n * sizeof *d_off), "cudaMalloc (uniforms)");
    if (!st) st = cuda_status(cudaMalloc(&d_out, (size_t)n * sizeof *d_out), "cudaMalloc (uniforms)");
    if (!st)
        st = cuda_status(cudaMemcpy(d_off, offsets, (size_t)n * sizeof *d_off, cudaMemcpyHostToDevice),
                         "copying offsets to the device");
    if (!st) {
        uniforms_kernel<<<(n + 255) / 256, 256>>>(seed, stream, d_off, n, d_out);
        st = cuda_status(cudaGetLastError(), "kernel uniforms");
    }
    if (!st)
        st = cuda_status(cudaMemcpy(out, d_out, (size_t)n * sizeof *out, cudaMemcpyDeviceToHost),
                         "copying uniforms to the host");
    cudaFree(d_off);
    cudaFree(d_out);
    return st;
}
