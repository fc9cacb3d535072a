/* Packed weights on the CPU (weights.h, packed_cpu.h): layouts, packing, and the products of inference
 * models in bf16 and q8_0.
 * Layouts (row-major, Hugging Face's (out, in) order): bf16 is (rows, cols) uint16, the upper half of each
 * rounded float's bits; q8_0 is (rows, cols) int8 followed by (rows, cols/32) fp32 scales.
 * Paths, chosen per product from the CPU's features (checked once):
 * - bf16, many rows (>= ONEDNN_MIN_ROWS), built with oneDNN: the rows are rounded to bf16 into scratch and
 *   oneDNN's matmul multiplies them (its AVX512_BF16 brgemm kernels on a CPU that has them; oneDNN picks).
 *   A well-kept library beats a hand-written GEMM here: scoring is bound by compute, and oneDNN's blocking
 *   reaches about twice OpenBLAS's fp32 sgemm rate on this kind of CPU (docs/inference-precision.md).
 * - bf16, few rows, on an AVX512_BF16 CPU: own dot products (packed_cpu_avx512.c). Decoding is bound by
 *   memory, where a matrix-vector loop that reads each weight once is what matters.
 * - q8_0 on an AVX-512 CPU: own kernel for few rows; many rows take the portable path.
 * - portable: tiles of the weights widened to fp32 (exactly the stored values) into per-thread scratch,
 *   activations rounded to bf16 for the bf16 format, then OpenBLAS sgemm on the tile.
 * Rules: OpenMP is the only source of threads (as in backend_cpu.c); each thread writes its own output
 * features, so no sums cross threads. The products never allocate: the caller passes scratch. */
#include "core/tensor/packed_cpu.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/tensor/precision.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef GKD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

enum {
    TILE_ROWS = 64,       /* output features widened per tile on the portable path */
    ONEDNN_MIN_ROWS = 16, /* fewer rows than this are decoding: own kernels */
    /* Products of at least 2^19 multiply-adds split their output features across the team: a decoding step's
     * larger layer products (SmolLM2's q/k/v, gate/up, down) are split, which on two idle cores decodes 1.5x
     * faster than keeping them on one thread (q8_0: 55 against 36 tokens/s); smaller ones stay on the calling
     * thread. On a machine whose other cores are busy each parallel region waits a scheduler slice for its
     * other thread (13-16 against 27-28 tokens/s with one core busy): run such a machine with
     * OMP_NUM_THREADS=1 (docs/inference-precision.md). */
    PAR_MIN_MACS = 1 << 19,
};

static struct {
    int avx512_bf16, avx512;
    int force_portable;
} cpu;

static void detect_cpu(void) {
    __builtin_cpu_init();
    cpu.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl");
    cpu.avx512_bf16 = cpu.avx512 && __builtin_cpu_supports("avx512bf16");
}

static void cpu_features(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, detect_cpu);
}

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int team_size(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

static inline uint16_t bf16_bits(float x) {
    float r = gkd_bf16_round(x);
    uint32_t u;
    memcpy(&u, &r, sizeof u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_widen(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

size_t gkd_packed_cpu_bytes(gkd_weight_format format, int rows, int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    if (format == GKD_WEIGHTS_BF16) return n * sizeof(uint16_t);
    if (format == GKD_WEIGHTS_Q8_0 && cols % GKD_Q8_0_BLOCK == 0)
        return n + n / GKD_Q8_0_BLOCK * sizeof(float);
    return 0;
}

/* Round half away from zero, as GGUF's Q8_0 quantiser does. */
static void q8_0_pack_row(int8_t *q, float *d, const float *w, int cols) {
    for (int b = 0; b < cols / GKD_Q8_0_BLOCK; b++) {
        const float *wb = w + b * GKD_Q8_0_BLOCK;
        float amax = 0.0f;
        for (int k = 0; k < GKD_Q8_0_BLOCK; k++) amax = fabsf(wb[k]) > amax ? fabsf(wb[k]) : amax;
        float scale = amax / 127.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        d[b] = scale;
        for (int k = 0; k < GKD_Q8_0_BLOCK; k++) {
            float v = roundf(wb[k] * inv);
            q[b * GKD_Q8_0_BLOCK + k] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
}

void gkd_packed_cpu_pack(void *dst, const float *w, gkd_weight_format format, int rows, int cols) {
    if (format == GKD_WEIGHTS_BF16) {
        uint16_t *b = dst;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > PAR_MIN_MACS)
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < cols; k++) b[(size_t)r * cols + k] = bf16_bits(w[(size_t)r * cols + k]);
    } else if (format == GKD_WEIGHTS_Q8_0) {
        int8_t *q = dst;
        float *d = (float *)(q + (size_t)rows * cols);
        const int nb = cols / GKD_Q8_0_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > PAR_MIN_MACS)
        for (int r = 0; r < rows; r++)
            q8_0_pack_row(q + (size_t)r * cols, d + (size_t)r * nb, w + (size_t)r * cols, cols);
    }
}

/* Scratch: (N, in) activations (rounded bf16 as uint16, or as floats on the portable path) then one tile of
 * TILE_ROWS widened weight rows per thread. */
static size_t act_bytes(int N, int in) {
    return ((size_t)N * in * sizeof(float) + 63) / 64 * 64;
}

size_t gkd_packed_cpu_scratch_bytes(gkd_weight_format format, int N, int in) {
    (void)format;
    return act_bytes(N, in) + (size_t)max_threads() * TILE_ROWS * (size_t)in * sizeof(float);
}

/* Row r of a packed matrix widened to fp32: exactly the values the format's product uses. */
static void widen_row(float *dst, const void *w, gkd_weight_format format, int rows, int cols, int r) {
    if (format == GKD_WEIGHTS_BF16) {
        const uint16_t *b = (const uint16_t *)w + (size_t)r * cols;
        for (int k = 0; k < cols; k++) dst[k] = bf16_widen(b[k]);
    } else {
        const int8_t *q = (const int8_t *)w + (size_t)r * cols;
        const float *d =
            (const float *)((const int8_t *)w + (size_t)rows * cols) + (size_t)r * (cols / GKD_Q8_0_BLOCK);
        for (int k = 0; k < cols; k++) dst[k] = d[k / GKD_Q8_0_BLOCK] * (float)q[k];
    }
}

void gkd_packed_cpu_rows(float *out, const int *tokens, const void *w, gkd_weight_format format, int N, int V,
                         int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C > PAR_MIN_MACS)
    for (int n = 0; n < N; n++) widen_row(out + (size_t)n * C, w, format, V, C, tokens[n]);
}

/* The portable product: per thread, tiles of output features widened into its scratch, then sgemm. */
static void matmul_portable(float *y, int ldy, const float *x, int ldx, const void *w,
                            gkd_weight_format format, int N, int out, int in, void *scratch) {
    const float *xs = x;
    int ld = ldx;
    if (format == GKD_WEIGHTS_BF16) {
        float *xr = scratch;
#pragma omp parallel for schedule(static) if ((size_t)N * in > PAR_MIN_MACS)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < in; k++) xr[(size_t)n * in + k] = gkd_bf16_round(x[(size_t)n * ldx + k]);
        xs = xr;
        ld = in;
    }
    float *tiles = (float *)((char *)scratch + act_bytes(N, in));
    const int n_tiles = (out + TILE_ROWS - 1) / TILE_ROWS;
#pragma omp parallel for schedule(static) num_threads(team_size()) if ((double)N * out * in > PAR_MIN_MACS)
    for (int t = 0; t < n_tiles; t++) {
#ifdef _OPENMP
        float *tile = tiles + (size_t)omp_get_thread_num() * TILE_ROWS * in;
#else
        float *tile = tiles;
#endif
        const int o0 = t * TILE_ROWS, rows = out - o0 < TILE_ROWS ? out - o0 : TILE_ROWS;
        /* q8_0 needs the matrix's row count to find its scales */
        for (int r = 0; r < rows; r++) widen_row(tile + (size_t)r * in, w, format, out, in, o0 + r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, rows, in, 1.0f, xs, ld, tile, in, 0.0f,
                    y + o0, ldy);
    }
}

/* Splits output features [0, out) across the team, in multiples of 16 so each block keeps whole vectors. */
#define FOR_OUTPUT_BLOCKS(out, macs, body)                                                                   \
    do {                                                                                                     \
        const int nt_ = (macs) > PAR_MIN_MACS ? team_size() : 1;                                             \
        _Pragma("omp parallel num_threads(nt_) if (nt_ > 1)") {                                              \
            int id_ = 0, n_ = 1;                                                                             \
            GKD_TEAM_RANK(id_, n_);                                                                          \
            const int per_ = (((out) + n_ - 1) / n_ + 15) / 16 * 16;                                         \
            const int o0 = id_ * per_ < (out) ? id_ * per_ : (out);                                          \
            const int o1 = o0 + per_ < (out) ? o0 + per_ : (out);                                            \
            if (o0 < o1) body;                                                                               \
        }                                                                                                    \
    } while (0)
#ifdef _OPENMP
#define GKD_TEAM_RANK(id, n) (id = omp_get_thread_num(), n = omp_get_num_threads())
#else
#define GKD_TEAM_RANK(id, n) ((void)0)
#endif

static void round_rows_bf16(uint16_t *dst, const float *x, int ldx, int N, int in) {
#pragma omp parallel for schedule(static) num_threads(team_size()) if ((size_t)N * in > PAR_MIN_MACS)
    for (int n = 0; n < N; n++) {
        if (cpu.avx512) {
            gkd_packed_avx512_round_bf16(dst + (size_t)n * in, x + (size_t)n * ldx, (size_t)in);
        } else {
            for (int k = 0; k < in; k++) dst[(size_t)n * in + k] = bf16_bits(x[(size_t)n * ldx + k]);
        }
    }
}

#ifdef GKD_HAVE_DNNL
static struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int ok;
} dnnl;

static void dnnl_init(void) {
    dnnl.ok = dnnl_engine_create(&dnnl.engine, dnnl_cpu, 0) == dnnl_success &&
              dnnl_stream_create(&dnnl.stream, dnnl.engine, dnnl_stream_default_flags) == dnnl_success;
}

/* y = xb wᵀ through oneDNN; 0 when oneDNN refused (the caller then takes another path). oneDNN's own
 * primitive cache makes the repeated creation of the same shape cheap. */
static int matmul_onednn(float *y, int ldy, const uint16_t *xb, const uint16_t *w, int N, int out, int in) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, dnnl_init);
    if (!dnnl.ok) return 0;
    dnnl_memory_desc_t src_md, wei_md, dst_md;
    dnnl_dims_t src_dims = {N, in}, src_strides = {in, 1};
    dnnl_dims_t wei_dims = {in, out}, wei_strides = {1, in}; /* W: (out, in) row-major is Wᵀ: (in, out) */
    dnnl_dims_t dst_dims = {N, out}, dst_strides = {ldy, 1};
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t src = NULL, wei = NULL, dst = NULL;
    int ok = dnnl_memory_desc_init_by_strides(&src_md, 2, src_dims, dnnl_bf16, src_strides) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&wei_md, 2, wei_dims, dnnl_bf16, wei_strides) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&dst_md, 2, dst_dims, dnnl_f32, dst_strides) == dnnl_success &&
             dnnl_matmul_desc_init(&desc, &src_md, &wei_md, NULL, &dst_md) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &desc, NULL, dnnl.engine, NULL) == dnnl_success &&
             dnnl_primitive_create(&prim, pd) == dnnl_success &&
             dnnl_memory_create(&src, &src_md, dnnl.engine, (void *)xb) == dnnl_success &&
             dnnl_memory_create(&wei, &wei_md, dnnl.engine, (void *)w) == dnnl_success &&
             dnnl_memory_create(&dst, &dst_md, dnnl.engine, y) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
        ok = dnnl_primitive_execute(prim, dnnl.stream, 3, args) == dnnl_success &&
             dnnl_stream_wait(dnnl.stream) == dnnl_success;
    }
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(wei);
    dnnl_memory_destroy(dst);
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
    return ok;
}
#endif

const char *gkd_packed_cpu_path(gkd_weight_format format, int N) {
    cpu_features();
    if (cpu.force_portable) return "portable";
    if (format == GKD_WEIGHTS_BF16) {
#ifdef GKD_HAVE_DNNL
        if (N >= ONEDNN_MIN_ROWS) return "onednn";
#endif
        if (cpu.avx512_bf16 && N < ONEDNN_MIN_ROWS) return "avx512_bf16";
    }
    if (format == GKD_WEIGHTS_Q8_0 && cpu.avx512 && N < ONEDNN_MIN_ROWS) return "avx512";
    return "portable";
}

void gkd_packed_cpu_force_portable(int on) {
    cpu_features();
    cpu.force_portable = on != 0;
}

void gkd_packed_cpu_matmul(float *y, int ldy, const float *x, int ldx, const void *w,
                           gkd_weight_format format, int N, int out, int in, void *scratch) {
    if (N <= 0 || out <= 0) return;
    const char *path = gkd_packed_cpu_path(format, N);
    const double macs = (double)N * out * in;
    if (path[0] == 'o' || (path[0] == 'a' && format == GKD_WEIGHTS_BF16)) {
        uint16_t *xb = scratch;
        round_rows_bf16(xb, x, ldx, N, in);
#ifdef GKD_HAVE_DNNL
        if (path[0] == 'o' && matmul_onednn(y, ldy, xb, w, N, out, in)) return;
#endif
        if (cpu.avx512_bf16) {
            FOR_OUTPUT_BLOCKS(out, macs, gkd_packed_avx512_bf16_rows(y, ldy, xb, w, N, in, o0, o1));
            return;
        }
    } else if (path[0] == 'a') {
        const int8_t *q = w;
        const float *d = (const float *)(q + (size_t)out * in);
        FOR_OUTPUT_BLOCKS(out, macs, gkd_packed_avx512_q8_0_rows(y, ldy, x, ldx, q, d, N, in, o0, o1));
        return;
    }
    matmul_portable(y, ldy, x, ldx, w, format, N, out, in, scratch);
}
