/* The AVX-512 kernels of the CPU's packed weights (packed_cpu.h): bf16 dot products with AVX512_BF16 and
 * the q8_0 product with AVX-512F. Compiled for those instruction sets (CMakeLists.txt) and called only on a
 * CPU that reports them.
 * Rules: one output feature of one row is one fp32 sum; the kernels run on the range of output features
 * their caller gives them and never start threads. They serve products of few rows (decoding), which read
 * each weight once and are bound by memory: the loops keep several sums in flight so loads, not adds, set
 * the pace. */
#include "core/tensor/packed_cpu.h"

#include <immintrin.h>
#include <string.h>

#include "core/tensor/precision.h"

/* Lanes of one 512-bit load: 32 bf16 values, or 16 floats. */
enum { BF16_LANES = 32, F32_LANES = 16 };

static inline __m512bh load_bh(const uint16_t *p) {
    return (__m512bh)_mm512_loadu_si512(p);
}

static inline __m512bh load_bh_tail(const uint16_t *p, __mmask32 m) {
    return (__m512bh)_mm512_maskz_loadu_epi16(m, p);
}

void gkd_packed_avx512_bf16_rows(float *y, int ldy, const uint16_t *xb, const uint16_t *w, int N, int in,
                                 int o0, int o1) {
    const int full = in / BF16_LANES * BF16_LANES;
    const __mmask32 tail = (__mmask32)((1ull << (in - full)) - 1u);
    int o = o0;
    /* four output features at a time: four independent sums, and the row's activations loaded once for them
     */
    for (; o + 4 <= o1; o += 4) {
        const uint16_t *w0 = w + (size_t)o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
        for (int n = 0; n < N; n++) {
            const uint16_t *xr = xb + (size_t)n * in;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int k = 0; k < full; k += BF16_LANES) {
                __m512bh xv = load_bh(xr + k);
                a0 = _mm512_dpbf16_ps(a0, xv, load_bh(w0 + k));
                a1 = _mm512_dpbf16_ps(a1, xv, load_bh(w1 + k));
                a2 = _mm512_dpbf16_ps(a2, xv, load_bh(w2 + k));
                a3 = _mm512_dpbf16_ps(a3, xv, load_bh(w3 + k));
            }
            if (tail) {
                __m512bh xv = load_bh_tail(xr + full, tail);
                a0 = _mm512_dpbf16_ps(a0, xv, load_bh_tail(w0 + full, tail));
                a1 = _mm512_dpbf16_ps(a1, xv, load_bh_tail(w1 + full, tail));
                a2 = _mm512_dpbf16_ps(a2, xv, load_bh_tail(w2 + full, tail));
                a3 = _mm512_dpbf16_ps(a3, xv, load_bh_tail(w3 + full, tail));
            }
            float *yr = y + (size_t)n * ldy + o;
            yr[0] = _mm512_reduce_add_ps(a0);
            yr[1] = _mm512_reduce_add_ps(a1);
            yr[2] = _mm512_reduce_add_ps(a2);
            yr[3] = _mm512_reduce_add_ps(a3);
        }
    }
    for (; o < o1; o++) {
        const uint16_t *wo = w + (size_t)o * in;
        for (int n = 0; n < N; n++) {
            const uint16_t *xr = xb + (size_t)n * in;
            __m512 a = _mm512_setzero_ps();
            for (int k = 0; k < full; k += BF16_LANES)
                a = _mm512_dpbf16_ps(a, load_bh(xr + k), load_bh(wo + k));
            if (tail) a = _mm512_dpbf16_ps(a, load_bh_tail(xr + full, tail), load_bh_tail(wo + full, tail));
            y[(size_t)n * ldy + o] = _mm512_reduce_add_ps(a);
        }
    }
}

void gkd_packed_avx512_round_bf16(uint16_t *dst, const float *src, size_t n) {
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff);
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x00400000);
    size_t i = 0;
    for (; i + F32_LANES <= n; i += F32_LANES) {
        __m512i u = _mm512_loadu_si512(src + i);
        /* gkd_bf16_round's integer rounding, lane by lane: exact ties to even, subnormals kept */
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(half, lsb)), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_srli_epi32(_mm512_or_si512(u, quiet), 16));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < n; i++) {
        float r = gkd_bf16_round(src[i]);
        uint32_t u;
        memcpy(&u, &r, sizeof u);
        dst[i] = (uint16_t)(u >> 16);
    }
}

/* Weights of one output feature widened a chunk at a time, then reused by every row. */
enum { Q8_CHUNK = 512 };

/* 16 weights of a block widened to fp32. */
static inline __m512 q8_widen(const int8_t *q) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
}

/* One row (decoding): no staging, two output features at a time so two chains of sums are in flight. Each
 * block's dot product is summed in a vector of its own, then scaled into the feature's sum. */
static void q8_0_one_row(float *y, const float *x, const int8_t *q, const float *d, int in, int o0, int o1) {
    const int nb = in / GKD_Q8_0_BLOCK;
    int o = o0;
    for (; o + 2 <= o1; o += 2) {
        const int8_t *qa = q + (size_t)o * in, *qb = qa + in;
        const float *da = d + (size_t)o * nb, *db = da + nb;
        __m512 sa = _mm512_setzero_ps(), sb = sa;
        for (int b = 0; b < nb; b++) {
            const int k = b * GKD_Q8_0_BLOCK;
            __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
            __m512 pa = _mm512_fmadd_ps(q8_widen(qa + k + 16), x1, _mm512_mul_ps(q8_widen(qa + k), x0));
            __m512 pb = _mm512_fmadd_ps(q8_widen(qb + k + 16), x1, _mm512_mul_ps(q8_widen(qb + k), x0));
            sa = _mm512_fmadd_ps(pa, _mm512_set1_ps(da[b]), sa);
            sb = _mm512_fmadd_ps(pb, _mm512_set1_ps(db[b]), sb);
        }
        y[o] = _mm512_reduce_add_ps(sa);
        y[o + 1] = _mm512_reduce_add_ps(sb);
    }
    for (; o < o1; o++) {
        const int8_t *qa = q + (size_t)o * in;
        const float *da = d + (size_t)o * nb;
        __m512 sa = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const int k = b * GKD_Q8_0_BLOCK;
            __m512 pa = _mm512_fmadd_ps(q8_widen(qa + k + 16), _mm512_loadu_ps(x + k + 16),
                                        _mm512_mul_ps(q8_widen(qa + k), _mm512_loadu_ps(x + k)));
            sa = _mm512_fmadd_ps(pa, _mm512_set1_ps(da[b]), sa);
        }
        y[o] = _mm512_reduce_add_ps(sa);
    }
}

void gkd_packed_avx512_q8_0_rows(float *y, int ldy, const float *x, int ldx, const int8_t *q, const float *d,
                                 int N, int in, int o0, int o1) {
    if (N == 1) {
        q8_0_one_row(y, x, q, d, in, o0, o1);
        return;
    }
    const int nb = in / GKD_Q8_0_BLOCK;
    float wbuf[Q8_CHUNK] __attribute__((aligned(64)));
    for (int o = o0; o < o1; o++) {
        const int8_t *qo = q + (size_t)o * in;
        const float *dO = d + (size_t)o * nb;
        for (int n = 0; n < N; n++) y[(size_t)n * ldy + o] = 0.0f;
        for (int k0 = 0; k0 < in; k0 += Q8_CHUNK) {
            const int len = in - k0 < Q8_CHUNK ? in - k0 : Q8_CHUNK; /* a multiple of 32 */
            for (int k = 0; k < len; k += GKD_Q8_0_BLOCK) {
                __m512 s = _mm512_set1_ps(dO[(k0 + k) / GKD_Q8_0_BLOCK]);
                __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qo + k0 + k)));
                __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qo + k0 + k + 16)));
                _mm512_store_ps(wbuf + k, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), s));
                _mm512_store_ps(wbuf + k + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), s));
            }
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * ldx + k0;
                __m512 a0 = _mm512_setzero_ps(), a1 = a0;
                for (int k = 0; k < len; k += GKD_Q8_0_BLOCK) {
                    a0 = _mm512_fmadd_ps(_mm512_load_ps(wbuf + k), _mm512_loadu_ps(xr + k), a0);
                    a1 = _mm512_fmadd_ps(_mm512_load_ps(wbuf + k + 16), _mm512_loadu_ps(xr + k + 16), a1);
                }
                y[(size_t)n * ldy + o] += _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
            }
        }
    }
}
