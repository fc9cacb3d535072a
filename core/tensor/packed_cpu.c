/* Packed weights on the CPU (weights.h, packed_cpu.h): layouts, packing, and the products of inference
 * models in bf16, q8_0 and q8_0_a8.
 * Layouts (row-major, Hugging Face's (out, in) order): bf16 is (rows, cols) uint16, the upper half of each
 * rounded float's bits; q8_0 is (rows, cols) int8 followed by (rows, cols/32) fp32 scales. q8_0_a8 holds
 * the same blocks in panels of 16 rows (the last padded with zero rows), laid out for the VNNI kernel:
 * with P = ceil(rows/16) and nb = cols/32, q: (P, nb, 8, 16, 4) int8 (panel p, block b, group g, feature j,
 * byte i is the weight of row 16p+j, column 32b+4g+i), then d: (P, nb, 16) fp32 scales, then
 * c: (P, nb, 16) int32 = -128 x the block's sum of q (packed_cpu_vnni.c says why).
 * Paths, chosen per product from the CPU's features (checked once):
 * - bf16, many rows (>= ONEDNN_MIN_ROWS), built with oneDNN: the rows are rounded to bf16 into scratch and
 *   oneDNN's matmul multiplies them (its AVX512_BF16 brgemm kernels on a CPU that has them; oneDNN picks).
 *   A well-kept library beats a hand-written GEMM here: scoring is bound by compute, and oneDNN's blocking
 *   reaches about twice OpenBLAS's fp32 sgemm rate on this kind of CPU (docs/inference-precision.md).
 * - bf16, few rows, on an AVX512_BF16 CPU: own dot products (packed_cpu_avx512.c). Decoding is bound by
 *   memory, where a matrix-vector loop that reads each weight once is what matters.
 * - q8_0 on an AVX-512 CPU: own kernel for few rows; many rows take the portable path.
 * - q8_0_a8 on an AVX-512 VNNI CPU: the activation rows are quantised once per product, then own integer
 *   kernel for any row count (packed_cpu_vnni.c). oneDNN 2.6's int8 matmul has one scale per tensor or per
 *   output feature, not per block of 32 inputs, so it cannot compute this format. Elsewhere: plain C with
 *   the same exact int32 block sums (slow; it is the reference the tests compare with).
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
    A8_PANEL = 16, /* output features per panel of the q8_0_a8 layout */
};

static struct {
    int avx512_bf16, avx512, avx512_vnni;
    int force_portable;
} cpu;

static void detect_cpu(void) {
    __builtin_cpu_init();
    cpu.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl");
    cpu.avx512_bf16 = cpu.avx512 && __builtin_cpu_supports("avx512bf16");
    cpu.avx512_vnni = cpu.avx512 && __builtin_cpu_supports("avx512vnni");
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
    if (format == GKD_WEIGHTS_Q8_0_A8 && cols % GKD_Q8_0_BLOCK == 0) {
        size_t padded = (size_t)(rows + A8_PANEL - 1) / A8_PANEL * A8_PANEL * (size_t)cols;
        return padded + padded / GKD_Q8_0_BLOCK * (sizeof(float) + sizeof(int32_t));
    }
    return 0;
}

/* The q8_0_a8 layout's three parts (see the top of the file) for a (rows, cols) matrix. */
typedef struct {
    int8_t *q;
    float *d;
    int32_t *c;
} a8_parts;

static a8_parts a8_split(const void *w, int rows, int cols) {
    const size_t padded = (size_t)(rows + A8_PANEL - 1) / A8_PANEL * A8_PANEL * (size_t)cols;
    a8_parts p;
    p.q = (int8_t *)w;
    p.d = (float *)(p.q + padded);
    p.c = (int32_t *)(p.d + padded / GKD_Q8_0_BLOCK);
    return p;
}

/* Offsets of weight (r, k) and of its block's scale in the q8_0_a8 layout. */
static inline size_t a8_q_at(int r, int k, int cols) {
    return (size_t)(r / A8_PANEL) * A8_PANEL * cols +
           (size_t)(k / GKD_Q8_0_BLOCK) * GKD_Q8_0_BLOCK * A8_PANEL +
           (size_t)(k % GKD_Q8_0_BLOCK / 4) * 4 * A8_PANEL + (size_t)(r % A8_PANEL) * 4 + (size_t)(k % 4);
}

static inline size_t a8_d_at(int r, int b, int cols) {
    return ((size_t)(r / A8_PANEL) * (cols / GKD_Q8_0_BLOCK) + (size_t)b) * A8_PANEL + (size_t)(r % A8_PANEL);
}

/* One block of 32: d = max|w| / 127, q = round(w / d) computed as w * (1/d), half away from zero, as GGUF's
 * Q8_0 quantiser does. Weights and (q8_0_a8) activations both go through it or through its AVX-512 twin. */
static float q8_0_block(int8_t *q, const float *w) {
    float amax = 0.0f;
    for (int k = 0; k < GKD_Q8_0_BLOCK; k++) amax = fabsf(w[k]) > amax ? fabsf(w[k]) : amax;
    float scale = amax / 127.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int k = 0; k < GKD_Q8_0_BLOCK; k++) {
        float v = roundf(w[k] * inv);
        q[k] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
    }
    return scale;
}

static void q8_0_pack_row(int8_t *q, float *d, const float *w, int cols) {
    for (int b = 0; b < cols / GKD_Q8_0_BLOCK; b++)
        d[b] = q8_0_block(q + b * GKD_Q8_0_BLOCK, w + b * GKD_Q8_0_BLOCK);
}

/* Rows of one panel (a zero row past the matrix's end) into the q8_0_a8 layout. */
static void q8_0_a8_pack_panel(a8_parts p, const float *w, int rows, int cols, int panel) {
    for (int j = 0; j < A8_PANEL; j++) {
        const int r = panel * A8_PANEL + j;
        for (int b = 0; b < cols / GKD_Q8_0_BLOCK; b++) {
            int8_t q[GKD_Q8_0_BLOCK] = {0};
            float d = r < rows ? q8_0_block(q, w + (size_t)r * cols + b * GKD_Q8_0_BLOCK) : 0.0f;
            int32_t sum = 0;
            for (int k = 0; k < GKD_Q8_0_BLOCK; k++) {
                p.q[a8_q_at(r, b * GKD_Q8_0_BLOCK + k, cols)] = q[k];
                sum += q[k];
            }
            p.d[a8_d_at(r, b, cols)] = d;
            p.c[a8_d_at(r, b, cols)] = -128 * sum;
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
    } else if (format == GKD_WEIGHTS_Q8_0_A8) {
        const a8_parts p = a8_split(dst, rows, cols);
        const int n_panels = (rows + A8_PANEL - 1) / A8_PANEL;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > PAR_MIN_MACS)
        for (int t = 0; t < n_panels; t++) q8_0_a8_pack_panel(p, w, rows, cols, t);
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
    } else if (format == GKD_WEIGHTS_Q8_0_A8) {
        const a8_parts p = a8_split(w, rows, cols);
        for (int k = 0; k < cols; k++)
            dst[k] = p.d[a8_d_at(r, k / GKD_Q8_0_BLOCK, cols)] * (float)p.q[a8_q_at(r, k, cols)];
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
    if (format == GKD_WEIGHTS_Q8_0_A8 && cpu.avx512_vnni) return "avx512_vnni";
    return "portable";
}

void gkd_packed_cpu_force_portable(int on) {
    cpu_features();
    cpu.force_portable = on != 0;
}

/* One activation row quantised as q8_0_a8 defines (xq: qx + 128), the AVX-512 quantiser's plain twin. */
static void quantize_a8_row(uint8_t *xq, float *dx, const float *x, int in) {
    for (int b = 0; b < in / GKD_Q8_0_BLOCK; b++) {
        int8_t q[GKD_Q8_0_BLOCK];
        dx[b] = q8_0_block(q, x + b * GKD_Q8_0_BLOCK);
        for (int k = 0; k < GKD_Q8_0_BLOCK; k++) xq[b * GKD_Q8_0_BLOCK + k] = (uint8_t)(q[k] + 128);
    }
}

/* The q8_0_a8 product in plain C: exact int32 block sums, scaled and summed over blocks in fp32. */
static void q8_0_a8_rows_portable(float *y, int ldy, const uint8_t *xq, const float *dx, const void *w,
                                  int out, int N, int in, int o0, int o1) {
    const a8_parts p = a8_split(w, out, in);
    const int nb = in / GKD_Q8_0_BLOCK;
    for (int n = 0; n < N; n++)
        for (int o = o0; o < o1; o++) {
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                int32_t s = 0;
                for (int k = b * GKD_Q8_0_BLOCK; k < (b + 1) * GKD_Q8_0_BLOCK; k++)
                    s += ((int32_t)xq[(size_t)n * in + k] - 128) * p.q[a8_q_at(o, k, in)];
                acc += dx[(size_t)n * nb + b] * p.d[a8_d_at(o, b, in)] * (float)s;
            }
            y[(size_t)n * ldy + o] = acc;
        }
}

/* q8_0_a8: one parallel region quantises the rows (split by rows), then multiplies (split by output
 * features, in multiples of 16, so results do not depend on the team's size). */
static void matmul_q8_0_a8(float *y, int ldy, const float *x, int ldx, const void *w, int N, int out, int in,
                           void *scratch, int vnni) {
    uint8_t *xq = scratch;
    float *dx = (float *)((char *)scratch + ((size_t)N * in + 63) / 64 * 64);
    const int nb = in / GKD_Q8_0_BLOCK;
    const int nt = (double)N * out * in > PAR_MIN_MACS ? team_size() : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            if (vnni)
                gkd_packed_vnni_quantize_a8(xq + (size_t)n * in, dx + (size_t)n * nb, x + (size_t)n * ldx,
                                            in);
            else
                quantize_a8_row(xq + (size_t)n * in, dx + (size_t)n * nb, x + (size_t)n * ldx, in);
        }
        int id = 0, n_threads = 1;
        GKD_TEAM_RANK(id, n_threads);
        const int per = ((out + n_threads - 1) / n_threads + A8_PANEL - 1) / A8_PANEL * A8_PANEL;
        const int o0 = id * per < out ? id * per : out, o1 = o0 + per < out ? o0 + per : out;
        if (o0 < o1) {
            if (vnni) {
                const a8_parts p = a8_split(w, out, in);
                gkd_packed_vnni_q8_0_a8_rows(y, ldy, xq, dx, p.q, p.d, p.c, N, in, o0, o1);
            }
            else
                q8_0_a8_rows_portable(y, ldy, xq, dx, w, out, N, in, o0, o1);
        }
    }
}

void gkd_packed_cpu_matmul(float *y, int ldy, const float *x, int ldx, const void *w,
                           gkd_weight_format format, int N, int out, int in, void *scratch) {
    if (N <= 0 || out <= 0) return;
    const char *path = gkd_packed_cpu_path(format, N);
    const double macs = (double)N * out * in;
    if (format == GKD_WEIGHTS_Q8_0_A8) {
        matmul_q8_0_a8(y, ldy, x, ldx, w, N, out, in, scratch, strcmp(path, "avx512_vnni") == 0);
        return;
    }
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
