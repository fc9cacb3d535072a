/* The float32 divergence row for AVX2 + FMA (8 lanes), from divergence_fast_kernel.h. Compiled with
 * -mavx2 -mfma (CMakeLists.txt) and called only after a CPU check (divergence_fast.c). */
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <sleef.h>
#include <string.h>

#include "rl/divergence_fast.h"

#define V_W 8
#define VF __m256
#define VM __m256
#define KFN(name) avx2_##name
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_DIV _mm256_div_ps
#define V_FMA _mm256_fmadd_ps
#define V_FNMA _mm256_fnmadd_ps
#define V_MAX _mm256_max_ps
#define V_MIN _mm256_min_ps
#define V_ABS(v) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v)
#define V_LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define V_GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define V_GE(a, b) _mm256_cmp_ps(a, b, _CMP_GE_OQ)
#define V_SEL(m, yes, no) _mm256_blendv_ps(no, yes, m)
#define V_EXP Sleef_expf8_u10avx2
#define V_EXPM1 Sleef_expm1f8_u10avx2
#define V_LOG1P Sleef_log1pf8_u10avx2
#define V_LOG Sleef_logf8_u10avx2
#define V_ROUND(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* p 2^n for integral n in [-160, 0] (exp_neg's range): two exact power-of-two factors, each a normal float,
 * so the product rounds once, into the subnormals where it lands there */
static inline __m256 avx2_scale2(__m256 p, __m256 n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}
#define V_SCALE2 avx2_scale2
#define V_ANY(m) (_mm256_movemask_ps(m) != 0)

static inline __m256 avx2_first(int n) {
    static const int lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(lanes + 8 - n)));
}
#define V_MASK_FIRST(n) avx2_first(n)

#define VD __m256d
#define VD_ADD _mm256_add_pd
#define VD_SUB _mm256_sub_pd
#define VD_MUL _mm256_mul_pd
#define VD_FMA _mm256_fmadd_pd
#define VD_MAX _mm256_max_pd
#define VD_SET1 _mm256_set1_pd
static inline double avx2_hsum_d(__m256d s) {
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}
#define VD_HSUM avx2_hsum_d
#define V_TO_D_LO(v) _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define V_TO_D_HI(v) _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))
#define V_FROM_D(lo, hi) _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1)
#define V_NONFINITE(v) (_mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ)) != 0)

#include "rl/divergence_fast_kernel.h"

int gkd_div_fast_row_avx2(const gkd_div_fast_row *r, const float *t, const float *s, int V, float *scratch,
                          double *value, float *dst, double scale, gkd_token_metrics *metrics) {
    return avx2_row(r, t, s, V, scratch, value, dst, scale, metrics);
}
