/* The divergence rows in float32 SIMD (issue 12): the value, the gradient and the logged metrics of
 * gkd_divergence_rows_ex in three vectorised passes per row, for d->precision = GKD_DIV_FLOAT32. The exact
 * double path (divergence.c) stays the reference; tests/test_divergence_fast.c holds the two within 1e-5
 * relative (1e-7 absolute near zero) on every divergence and JSD convention.
 * Rules:
 * - The instruction set is chosen at each call from the CPU: AVX-512 (16 lanes), else AVX2 + FMA (8);
 *   a CPU with neither falls back to the exact path (a plain-C float instance was tried and left out: on
 *   jsd_scaled at beta = 1 - 1e-6 it missed the tolerance by 2x, and the exact path is the reference).
 *   GKD_DIVERGENCE_ISA=avx512|avx2|exact overrides the choice (tests, benchmarks); an unknown value, or
 *   one this CPU cannot run, is refused.
 * - Rows the float path does not cover are computed by the exact path, whole: rows with a logit that is
 *   not finite (masked -inf entries, and the NaN / +inf faults the exact path reports), every row of a
 *   top-k divergence, and rows whose gradient the kernel cannot promise to the tolerance: it bounds each
 *   entry's error from its float parts' accuracy (G - Gbar cancels where G is large and nearly constant,
 *   e.g. a scaled JSD at beta near 0 on nearly equal rows) and hands a row over when a bound exceeds
 *   1e-5 of the entry or 1e-7. Nothing is approximated silently: the float path's accuracy is the tested
 *   one, and gkd_div_fast_counts tells how many rows went to the exact path. */
#ifndef GKD_DIVERGENCE_FAST_H
#define GKD_DIVERGENCE_FAST_H

#include "rl/divergence.h"
#include "rl/divergence_terms.h"

/* What a float row needs of the divergence, and its per-row normalisers (set by the row itself). */
typedef struct {
    gkd_div_form form;
    float wp, wq, ca, cb;
    int jsd_gradient;
    int half; /* the training mixture is the metrics' (wp = wq = 1/2) */
    double inv_t;   /* 1 / teacher temperature */
    float ih, il;   /* inv_t as float hi + lo */
    /* per row, set by the row: ref_t / T as m_hi + m_lo, with ref_t and ref_s (in max_s) the row's reference
     * logits (within 60 of its largest, divergence_fast_kernel.h); the logs of the normalisers lt, ls (over
     * exp(t/T - ref_t/T) and exp(s - ref_s)); c = (ref_s + ls) - (ref_t/T + lt) as c_hi + c_lo */
    float m_hi, m_lo, lt, ls, max_s, c_hi, c_lo, inv_zt, inv_zs, q_top;
    double c;
    /* G = dD/dQ (up to a constant) is B + g_alpha x + g_beta max(g_c0 - x, 0), with x = log Q - log P and
     * B computed per entry in float: the large parts in double. g_k: their value at the student's top entry */
    double g_alpha, g_beta, g_c0, g_k;
    float k_hi, k_lo, beta_f; /* g_k as two floats and g_beta as a float: the half mixture's float large part */
} gkd_div_fast_row;

/* One row at V entries. Returns 1 when a logit is not finite or the gradient's error bound exceeds the
 * tolerance (the caller then computes the row by the exact path, which overwrites whatever was written),
 * else 0. scratch: 2 V + 80 floats. */
typedef int (*gkd_div_fast_row_fn)(const gkd_div_fast_row *r, const float *t, const float *s, int V, float *scratch,
                                   double *value, float *dst, double scale, gkd_token_metrics *metrics);

int gkd_div_fast_row_avx512(const gkd_div_fast_row *r, const float *t, const float *s, int V, float *scratch,
                            double *value, float *dst, double scale, gkd_token_metrics *metrics);
int gkd_div_fast_row_avx2(const gkd_div_fast_row *r, const float *t, const float *s, int V, float *scratch,
                          double *value, float *dst, double scale, gkd_token_metrics *metrics);

/* The row function for this CPU (or GKD_DIVERGENCE_ISA), and its name ("avx512", "avx2"; "exact" with
 * *fn NULL: use the exact path).
 * GKD_ERR_ARG for a GKD_DIVERGENCE_ISA this CPU cannot run or that names nothing. */
gkd_status gkd_div_fast_select(gkd_div_fast_row_fn *fn, const char **name);

/* Rows the float path has run in this process (*rows) and how many of them it handed to the exact path
 * (*exact); either may be NULL. Process-wide counters, for tests and benchmarks. */
void gkd_div_fast_counts(unsigned long long *rows, unsigned long long *exact);

#endif
