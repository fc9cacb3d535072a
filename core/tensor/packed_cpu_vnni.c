/* The q8_0_a8 product with AVX-512 VNNI (packed_cpu.h, weights.h): int8 weights in q8_0 blocks times
 * activation rows quantised to q8_0 blocks, each block's dot product an exact int32 sum. Compiled for
 * AVX512F/BW/VL/VNNI (CMakeLists.txt) and called only on a CPU that reports them.
 * How: VPDPBUSD multiplies unsigned by signed bytes, so activations are stored as qx + 128 (0..254) and
 * each block's sum starts from -128 sum_k qw, precomputed at pack time: sum (qx + 128) qw - 128 sum qw =
 * sum qx qw, exactly, in int32 (|sum| <= 32 * 254 * 127 fits). The weights sit in panels of 16 output
 * features laid out so that one 64-byte load is 4 consecutive inputs of 16 features (packed_cpu.c, the
 * q8_0_a8 layout). A tile is R rows x P panels (up to 4 x 3: 48 features): per block, R x P int32 sums and
 * R x P fp32 sums live in registers; each block's int32 sum is converted and added as fp32 with the scale
 * dx dw.
 * Rules: an output feature's fp32 sum runs over blocks in order, whatever the tile, row count or thread
 * split, so the many-row and one-row paths give the same bits; the kernels never start threads. */
#include <immintrin.h>
#include <stdint.h>

#include "core/tensor/packed_cpu.h"

enum {
    PANEL = 16,            /* output features per panel: one zmm of int32 or fp32 */
    GROUPS = 8,            /* 4-byte groups per block of 32 inputs */
    MAX_R = 4,             /* rows per tile */
    MAX_P = 3,             /* panels per tile */
    CHUNK_BYTES = 1 << 18, /* quantised activation rows kept hot (L2) while the panels go by */
};

static inline __m512 abs_ps(__m512 v) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)));
}

void gkd_packed_vnni_quantize_a8(uint8_t *xq, float *dx, const float *x, int in) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 lim = _mm512_set1_ps(127.0f);
    for (int b = 0; b < in / GKD_Q8_0_BLOCK; b++) {
        const float *xb = x + b * GKD_Q8_0_BLOCK;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        __m512 a = _mm512_max_ps(abs_ps(v0), abs_ps(v1));
        const float amax = _mm512_reduce_max_ps(a), d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        dx[b] = d;
        __m512 s = _mm512_set1_ps(id);
        __m512i q[2];
        for (int h = 0; h < 2; h++) {
            /* roundf: t - trunc(t) is exact, so a fraction of at least one half rounds away from zero */
            __m512 t = _mm512_mul_ps(h ? v1 : v0, s);
            __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m512 f = abs_ps(_mm512_sub_ps(t, r));
            __mmask16 up = _mm512_cmp_ps_mask(f, half, _CMP_GE_OQ);
            __m512 away = _mm512_castsi512_ps(
                _mm512_or_si512(_mm512_castps_si512(one), _mm512_and_si512(sign, _mm512_castps_si512(t))));
            r = _mm512_mask_add_ps(r, up, r, away);
            r = _mm512_min_ps(_mm512_max_ps(r, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
            q[h] = _mm512_add_epi32(_mm512_cvtps_epi32(r), _mm512_set1_epi32(128));
        }
        _mm_storeu_si128((__m128i *)(xq + b * GKD_Q8_0_BLOCK), _mm512_cvtepi32_epi8(q[0]));
        _mm_storeu_si128((__m128i *)(xq + b * GKD_Q8_0_BLOCK + 16), _mm512_cvtepi32_epi8(q[1]));
    }
}

typedef struct {
    const int8_t *q;  /* (P, nb, 8, 16, 4) */
    const float *d;   /* (P, nb, 16) */
    const int32_t *c; /* (P, nb, 16): -128 sum_k qw */
    int nb;
} panels;

/* y[r][o + 16 p + j] for r < R, p < P; o_end: the matrix's last feature + 1 (a partial panel is masked). */
static inline __attribute__((always_inline)) void tile(float *y, int ldy, const uint8_t *xq, const float *dx,
                                                       int in, const panels *w, int p0, int o_end,
                                                       const int R, const int P) {
    const int nb = w->nb;
    const size_t qs = (size_t)nb * GROUPS * 64, ss = (size_t)nb * PANEL;
    const int8_t *q = w->q + (size_t)p0 * qs;
    const float *d = w->d + (size_t)p0 * ss;
    const int32_t *c = w->c + (size_t)p0 * ss;
    __m512 acc[MAX_R][MAX_P];
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) acc[r][p] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m512i s[MAX_R][MAX_P];
        for (int p = 0; p < P; p++) {
            __m512i c0 = _mm512_loadu_si512(c + p * ss + (size_t)b * PANEL);
            for (int r = 0; r < R; r++) s[r][p] = c0;
        }
        const int8_t *qb = q + (size_t)b * GROUPS * 64;
        const uint8_t *xb = xq + b * GKD_Q8_0_BLOCK;
        for (int g = 0; g < GROUPS; g++) {
            __m512i wv[MAX_P];
            for (int p = 0; p < P; p++) wv[p] = _mm512_loadu_si512(qb + p * qs + g * 64);
            for (int r = 0; r < R; r++) {
                int32_t x4;
                __builtin_memcpy(&x4, xb + (size_t)r * in + 4 * g, 4);
                __m512i xv = _mm512_set1_epi32(x4);
                for (int p = 0; p < P; p++) s[r][p] = _mm512_dpbusd_epi32(s[r][p], xv, wv[p]);
            }
        }
        __m512 dw[MAX_P];
        for (int p = 0; p < P; p++) dw[p] = _mm512_loadu_ps(d + p * ss + (size_t)b * PANEL);
        for (int r = 0; r < R; r++) {
            __m512 dxr = _mm512_set1_ps(dx[(size_t)r * nb + b]);
            for (int p = 0; p < P; p++)
                acc[r][p] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][p]), _mm512_mul_ps(dxr, dw[p]), acc[r][p]);
        }
    }
    for (int p = 0; p < P; p++) {
        const int o = (p0 + p) * PANEL;
        const int n = o_end - o < PANEL ? o_end - o : PANEL;
        for (int r = 0; r < R; r++) {
            if (n == PANEL)
                _mm512_storeu_ps(y + (size_t)r * ldy + o, acc[r][p]);
            else
                _mm512_mask_storeu_ps(y + (size_t)r * ldy + o, (__mmask16)((1u << n) - 1u), acc[r][p]);
        }
    }
}

typedef void (*tile_fn)(float *, int, const uint8_t *, const float *, int, const panels *, int, int);
#define TILE(R, P)                                                                                           \
    static void tile_##R##_##P(float *y, int ldy, const uint8_t *xq, const float *dx, int in,                \
                               const panels *w, int p0, int o_end) {                                         \
        tile(y, ldy, xq, dx, in, w, p0, o_end, R, P);                                                        \
    }
#define TILES_P(R) TILE(R, 1) TILE(R, 2) TILE(R, 3)
TILES_P(1)
TILES_P(2)
TILES_P(3)
TILES_P(4)
#define ROW(R)                                                                                               \
    { tile_##R##_1, tile_##R##_2, tile_##R##_3 }
static const tile_fn tiles[MAX_R][MAX_P] = {ROW(1), ROW(2), ROW(3), ROW(4)};

void gkd_packed_vnni_q8_0_a8_rows(float *y, int ldy, const uint8_t *xq, const float *dx, const int8_t *q,
                                  const float *d, const int32_t *c, int N, int in, int o0, int o1) {
    const int nb = in / GKD_Q8_0_BLOCK;
    const panels pw = {q, d, c, nb};
    const int pa = o0 / PANEL, pb = (o1 + PANEL - 1) / PANEL;
    int chunk = CHUNK_BYTES / in / MAX_R * MAX_R;
    chunk = chunk < MAX_R ? MAX_R : chunk;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int n1 = N - n0 < chunk ? N : n0 + chunk;
        for (int p = pa; p < pb; p += MAX_P) {
            const int P = pb - p < MAX_P ? pb - p : MAX_P;
            for (int n = n0; n < n1; n += MAX_R) {
                const int R = n1 - n < MAX_R ? n1 - n : MAX_R;
                tiles[R - 1][P - 1](y + (size_t)n * ldy, ldy, xq + (size_t)n * in, dx + (size_t)n * nb, in,
                                    &pw, p, o1);
            }
        }
    }
}
