/* The float32 divergence row for AVX-512 (16 lanes), from divergence_fast_kernel.h. Compiled with
 * -mavx512f -mavx512dq (CMakeLists.txt) and called only after a CPU check (divergence_fast.c). */
#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <sleef.h>
#include <string.h>

#include "rl/divergence_fast.h"

#define V_W 16
#define VF __m512
#define VM __mmask16
#define KFN(name) avx512_##name
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_DIV _mm512_div_ps
#define V_FMA _mm512_fmadd_ps
#define V_FNMA _mm512_fnmadd_ps
#define V_MAX _mm512_max_ps
#define V_MIN _mm512_min_ps
#define V_ABS _mm512_abs_ps
#define V_LT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define V_GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define V_GE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define V_SEL(m, yes, no) _mm512_mask_blend_ps(m, no, yes)
#define V_EXP Sleef_expf16_u10avx512f
#define V_EXPM1 Sleef_expm1f16_u10avx512f
#define V_LOG1P Sleef_log1pf16_u10avx512f
#define V_LOG Sleef_logf16_u10avx512f
#define V_ROUND(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_SCALE2(p, n) _mm512_scalef_ps(p, n)
#define V_ANY(m) ((m) != 0)
#define V_MASK_FIRST(n) ((__mmask16)((1u << (n)) - 1u))

#define VD __m512d
#define VD_ADD _mm512_add_pd
#define VD_SUB _mm512_sub_pd
#define VD_MUL _mm512_mul_pd
#define VD_FMA _mm512_fmadd_pd
#define VD_MAX _mm512_max_pd
#define VD_SET1 _mm512_set1_pd
#define VD_HSUM _mm512_reduce_add_pd
#define V_TO_D_LO(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define V_TO_D_HI(v) _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
#define V_FROM_D(lo, hi) \
    _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(lo))), \
                                        _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1))
/* x - x is 0 for a finite x, NaN for +-inf and NaN */
#define V_NONFINITE(v) (_mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0)

#include "rl/divergence_fast_kernel.h"

int gkd_div_fast_row_avx512(const gkd_div_fast_row *r, const float *t, const float *s, int V, float *scratch,
                            double *value, float *dst, double scale, gkd_token_metrics *metrics) {
    return avx512_row(r, t, s, V, scratch, value, dst, scale, metrics);
}
