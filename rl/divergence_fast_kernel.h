/* The float32 divergence row (divergence_fast.h), written once over a small vector vocabulary and
 * instantiated per instruction set: divergence_fast_avx512.c (16 lanes) and divergence_fast_avx2.c (8), each
 * defining the V_* macros and KFN(name) before including this file.
 * Rules:
 * - Per entry everything is float32 (own inline exp and log1p forms; SLEEF's vector expm1, log1p and log for
 *   the general mixtures and TV); per row the sums (value,
 *   metrics, the gradient's mean) are accumulated in double, and the row's normalisers are double.
 * - The terms are the exact path's non-negative, cancellation-free forms (divergence_terms.h), with the
 *   series in float: h(x) = e^x - 1 - x by its Taylor polynomial for |x| < 0.5, u - log1p(u) by its series
 *   for |u| < 0.1. The log ratio x = log Q - log P is formed as (s - t/T) - c with c one double constant,
 *   so it carries one rounding of the logits' difference, not of two log-probabilities.
 * - A row with a logit that is not finite (-inf masks, NaN, +inf) is not handled here (return 1): the
 *   caller takes the exact path for it. */

/* V_W lanes; VF a float vector, VM a lane mask. Required macros: V_LOAD, V_STORE, V_SET1, V_ADD, V_SUB,
 * V_MUL, V_DIV, V_FMA(a, b, c) = a*b + c, V_FNMA(a, b, c) = c - a*b, V_MAX, V_MIN, V_ABS, V_LT, V_GE, V_GT, V_SEL(m, yes, no),
 * V_EXP, V_EXPM1, V_LOG1P, V_LOG, V_NONFINITE(v) -> int (any lane not finite), V_MASK_FIRST(n) -> the
 * first n lanes; VD a vector of V_W / 2 doubles with VD_ADD, VD_SUB, VD_MUL, VD_FMA, VD_MAX, VD_SET1,
 * VD_HSUM(v) -> double, and V_TO_D_LO / V_TO_D_HI / V_FROM_D between a float vector and two double halves. */


/* e^(x + lo) for x up to 88 (x = -inf gives 0; the normalisers' arguments reach 60) and a small correction
 * lo (|lo| <= ulp(x)), inline: n = round(x / ln 2), r = x - n ln 2 + lo (ln 2 in two parts, so r is exact to
 * about one rounding), e^r by its Taylor polynomial to r^7 (|r| <= ln2/2: the rest is below 1e-8 of the
 * value), times 2^n by V_SCALE2 (which rounds once into the subnormals). Within 2 ulp of e^(x + lo)
 * (tests/test_divergence_fast.c checks every consumer against the exact path). Inline, unlike a library
 * call, so the registers live across it are not spilled. With lo, an argument that is a difference of two
 * logits keeps its accuracy: rounding x = a - b alone would cost |x| 6e-8 of the result's relative accuracy,
 * 1.2e-6 at x = -20. */
static inline VF KFN(exp_neg_lo)(VF x, VF lo) {
    x = V_MAX(x, V_SET1(-110.0f)); /* e^-110 is below the smallest subnormal */
    VF n = V_ROUND(V_MUL(x, V_SET1(1.44269504f)));
    VF r = V_FMA(n, V_SET1(-0.693359375f), x);
    r = V_ADD(V_FMA(n, V_SET1(2.12194440e-4f), r), lo);
    VF p = V_SET1(1.0f / 5040.0f);
    p = V_FMA(p, r, V_SET1(1.0f / 720.0f));
    p = V_FMA(p, r, V_SET1(1.0f / 120.0f));
    p = V_FMA(p, r, V_SET1(1.0f / 24.0f));
    p = V_FMA(p, r, V_SET1(1.0f / 6.0f));
    p = V_FMA(p, r, V_SET1(0.5f));
    p = V_FMA(p, r, V_SET1(1.0f));
    p = V_FMA(p, r, V_SET1(1.0f));
    return V_SCALE2(p, n);
}

/* e^x: exp_neg_lo without a correction (r + 0 is r, but for -0 becoming +0, whose e^r is the same 1). */
static inline VF KFN(exp_neg)(VF x) {
    return KFN(exp_neg_lo)(x, V_SET1(0.0f));
}

/* e^(a - b + lo), as exp_neg_lo: a - b by TwoSum, its rounding error added to lo. */
static inline VF KFN(exp_diff)(VF a, VF b, VF lo) {
    VF d = V_SUB(a, b), bb = V_SUB(d, a);
    VF e = V_SUB(V_SUB(a, V_SUB(d, bb)), V_ADD(b, bb));
    return KFN(exp_neg_lo)(d, V_ADD(e, lo));
}

/* log(1 + e) for 0 <= e <= 1, inline: log(1 + f) = 2 atanh(f / (2 + f)) with f = e below 1/2, and with
 * f = (e - 1)/2 (exact) plus log 2 from 1/2 on, so |f/(2+f)| < 0.2 and the odd series to s^9 leaves < 1e-8;
 * relative accuracy is kept for small e. */
static inline VF KFN(log1p_unit)(VF e) {
    VM big = V_GE(e, V_SET1(0.5f));
    VF f = V_SEL(big, V_MUL(V_SUB(e, V_SET1(1.0f)), V_SET1(0.5f)), e);
    VF s = V_DIV(f, V_ADD(V_SET1(2.0f), f)), z = V_MUL(s, s);
    VF p = V_SET1(1.0f / 9.0f);
    p = V_FMA(p, z, V_SET1(1.0f / 7.0f));
    p = V_FMA(p, z, V_SET1(1.0f / 5.0f));
    p = V_FMA(p, z, V_SET1(1.0f / 3.0f));
    VF res = V_FMA(V_MUL(s, z), p, s);
    return V_FMA(res, V_SET1(2.0f), V_SEL(big, V_SET1(0.69314718f), V_SET1(0.0f)));
}

/* log(1 + e^-|x|) = log((P + Q) / max(P, Q)) from the probabilities, without an exponential: 2 atanh(s) with
 * s = min/(2 max + min) = e/(2 + e) in [0, 1/3], by its odd series to s^13 (the rest is below 2e-8 of the
 * value). Its relative error is about that of e = min/max, i.e. P's and Q's (a few ulp each); where both
 * are 0 it gives 0 (the terms it enters are multiplied by P or Q). */
static inline VF KFN(log1p_ratio)(VF p, VF q) {
    VF mn = V_MIN(p, q), den = V_FMA(V_SET1(2.0f), V_MAX(p, q), mn);
    VF s = V_DIV(mn, V_MAX(den, V_SET1(FLT_MIN))), z = V_MUL(s, s);
    VF c = V_SET1(1.0f / 13.0f);
    c = V_FMA(c, z, V_SET1(1.0f / 11.0f));
    c = V_FMA(c, z, V_SET1(1.0f / 9.0f));
    c = V_FMA(c, z, V_SET1(1.0f / 7.0f));
    c = V_FMA(c, z, V_SET1(1.0f / 5.0f));
    c = V_FMA(c, z, V_SET1(1.0f / 3.0f));
    VF s2 = V_ADD(s, s);
    return V_FMA(V_MUL(s2, z), c, s2);
}

/* e^x - 1 - x for |x| < 0.5 (terms to x^9: the rest is < 3e-9 of the value). */
static inline VF KFN(h_poly)(VF x) {
    VF r = V_SET1(1.0f / 362880.0f);
    r = V_FMA(r, x, V_SET1(1.0f / 40320.0f));
    r = V_FMA(r, x, V_SET1(1.0f / 5040.0f));
    r = V_FMA(r, x, V_SET1(1.0f / 720.0f));
    r = V_FMA(r, x, V_SET1(1.0f / 120.0f));
    r = V_FMA(r, x, V_SET1(1.0f / 24.0f));
    r = V_FMA(r, x, V_SET1(1.0f / 6.0f));
    r = V_FMA(r, x, V_SET1(0.5f));
    return V_MUL(r, V_MUL(x, x));
}

/* u - log1p(u) >= 0, given l = log1p(u): the series u^2/2 - u^3/3 + ... for |u| < 0.1, else u - l. */
static inline VF KFN(u_minus_log1p)(VF u, VF l) {
    VF r = V_SET1(-1.0f / 9.0f);
    r = V_FMA(r, u, V_SET1(1.0f / 8.0f));
    r = V_FMA(r, u, V_SET1(-1.0f / 7.0f));
    r = V_FMA(r, u, V_SET1(1.0f / 6.0f));
    r = V_FMA(r, u, V_SET1(-1.0f / 5.0f));
    r = V_FMA(r, u, V_SET1(1.0f / 4.0f));
    r = V_FMA(r, u, V_SET1(-1.0f / 3.0f));
    r = V_FMA(r, u, V_SET1(0.5f));
    VF series = V_MUL(r, V_MUL(u, u));
    return V_SEL(V_LT(V_ABS(u), V_SET1(0.1f)), series, V_SUB(u, l));
}

/* The mixture M = wp P + wq Q of one vector of entries (a, b log-probabilities, p, q probabilities,
 * x = b - a): the terms P log(P/M) - P + M and Q log(Q/M) - Q + M, and log(M/P), log(M/Q), as
 * gkd_div_mix_larger_first does it (the larger side X first, rho = Y/X). */
static inline void KFN(mixture)(VF a, VF b, VF p, VF q, VF x, float wp, float wq, VF *kl_pm, VF *kl_qm, VF *lmp,
                                VF *lmq) {
    VM p_larger = V_GE(a, b);
    VF big = V_SEL(p_larger, p, q), small = V_SEL(p_larger, q, p);
    VF wx = V_SEL(p_larger, V_SET1(wp), V_SET1(wq)), wy = V_SEL(p_larger, V_SET1(wq), V_SET1(wp));
    VF d = V_SUB(V_SET1(0.0f), V_ABS(x)); /* log(Y/X) <= 0 */
    VF rho_m1 = V_EXPM1(d);
    VF rho = KFN(exp_neg)(d); /* Y/X from the log ratio: no 0/0 where both underflow */
    VF ux = V_MUL(wy, rho_m1); /* in [-wy, 0] */
    VF lmx = V_LOG1P(ux);
    if (wp > 0.5f || wq > 0.5f) /* 1 + ux can near 0 only when wy > 1/2: there log(wx + wy rho) */
        lmx = V_SEL(V_GT(ux, V_SET1(-0.5f)), lmx, V_LOG(V_FMA(wy, rho, wx)));
    VF kl_x = V_MUL(big, KFN(u_minus_log1p)(ux, lmx));
    VF uy = V_DIV(V_MUL(wx, V_SUB(V_SET1(0.0f), rho_m1)), rho); /* M/Y - 1, +inf when rho is 0 */
    VM y_small = V_LT(uy, V_SET1(1.0f));
    VF uy_c = V_MIN(uy, V_SET1(1.0f));
    VF lmy_a = V_LOG1P(uy_c);
    VF kl_y_a = V_MUL(small, KFN(u_minus_log1p)(uy_c, lmy_a));
    VF lmy_b = V_SUB(lmx, d);
    VF kl_y_b = V_SUB(V_MUL(V_MUL(wx, big), V_SUB(V_SET1(0.0f), rho_m1)), V_MUL(small, lmy_b));
    VF lmy = V_SEL(y_small, lmy_a, lmy_b), kl_y = V_SEL(y_small, kl_y_a, kl_y_b);
    *kl_pm = V_SEL(p_larger, kl_x, kl_y);
    *kl_qm = V_SEL(p_larger, kl_y, kl_x);
    *lmp = V_SEL(p_larger, lmx, lmy);
    *lmq = V_SEL(p_larger, lmy, lmx);
}

/* The half mixture M = (P + Q)/2 from the log ratio x: with s(x) = log((1 + e^x)/2) =
 * max(x, 0) + log1p(e^-|x|) - log 2, KL(P||M)'s term is P phi(x) = (Q - P)/2 - P s(x) and KL(Q||M)'s is
 * Q phi(-x) = (P - Q)/2 - Q s(-x), phi(x) = (e^x - 1)/2 - log((1 + e^x)/2) >= 0; lz = log1p(e^-|x|) from P
 * and Q (log1p_ratio). Near x = 0 those differences cancel; there (|x| < 0.5) s(x) = x/2 + log cosh(x/2)
 * gives phi(x) = h(x)/2 - log cosh(x/2) and phi(-x) = h(-x)/2 - log cosh(x/2), from the KL terms' P h(x)
 * and Q h(-x) (fwd_near, rev_near) and log cosh(x/2) by its series to x^10 (the rest is below 3e-9 of it):
 * differences of two positive terms in the ratio 2 : 1 at most, so a few ulp. */
static inline void KFN(half_mixture)(VF p, VF q, VF x, VM near, VF fwd_near, VF rev_near, VF *kl_pm, VF *kl_qm,
                                     VF *lz) {
    VF zero = V_SET1(0.0f);
    *lz = KFN(log1p_ratio)(p, q);
    VF l = V_SUB(*lz, V_SET1(0.69314718f)); /* log1p(e^-|x|) - log 2 */
    VF sx = V_ADD(V_MAX(x, zero), l), smx = V_ADD(V_MAX(V_SUB(zero, x), zero), l); /* s(x), s(-x) */
    VF half_d = V_MUL(V_SET1(0.5f), V_SUB(q, p));
    VF y2 = V_MUL(x, x), lc = V_SET1(31.0f / 14515200.0f);
    lc = V_FMA(lc, y2, V_SET1(-17.0f / 645120.0f));
    lc = V_FMA(lc, y2, V_SET1(1.0f / 2880.0f));
    lc = V_FMA(lc, y2, V_SET1(-1.0f / 192.0f));
    lc = V_FMA(lc, y2, V_SET1(1.0f / 8.0f));
    lc = V_MUL(lc, y2); /* log cosh(x/2) */
    VF half = V_SET1(0.5f);
    *kl_pm = V_SEL(near, V_FNMA(p, lc, V_MUL(half, fwd_near)), V_FNMA(p, sx, half_d));
    *kl_qm = V_SEL(near, V_FNMA(q, lc, V_MUL(half, rev_near)), V_FNMA(q, smx, V_SUB(zero, half_d)));
}

/* The teacher's scaled logit t/T as hi + *lo: the product with T's reciprocal, exact, and its low part. */
static inline VF KFN(teacher_scaled)(const gkd_div_fast_row *r, VF tv, VF *lo) {
    VF ih = V_SET1(r->ih), p1 = V_MUL(tv, ih);
    *lo = V_ADD(V_FMA(tv, ih, V_SUB(V_SET1(0.0f), p1)), V_MUL(tv, V_SET1(r->il)));
    return p1;
}

/* The teacher's scaled logit t/T - ref_t/T (its log-probability plus Lt) and the log ratio x = log Q -
 * log P of one vector, each to about one rounding of the result: t/T is carried as p1 + e1 + tl (an exact
 * product with T's reciprocal split in two floats), s - p1 as d + e2 (TwoSum), and the constants in two
 * floats, so that large logits (30 and more) lose nothing to their differences. */
static inline void KFN(logits)(const gkd_div_fast_row *r, VF tv, VF sv, VF *ta, VF *x, const int unit_t) {
    VF p1 = tv, low = V_SET1(0.0f); /* unit_t (T = 1, a constant where inlined): t/T is t, exactly */
    if (!unit_t) p1 = KFN(teacher_scaled)(r, tv, &low);
    *ta = V_ADD(V_SUB(p1, V_SET1(r->m_hi)), V_SUB(low, V_SET1(r->m_lo)));
    VF mp1 = V_SUB(V_SET1(0.0f), p1), d = V_ADD(sv, mp1), bb = V_SUB(d, sv);
    VF e2 = V_ADD(V_SUB(sv, V_SUB(d, bb)), V_SUB(mp1, bb));
    *x = V_ADD(V_SUB(d, V_SET1(r->c_hi)), V_SUB(V_SUB(e2, low), V_SET1(r->c_lo)));
}

/* A sum in double of float lanes (each vector added as two halves of double lanes). */
typedef struct {
    VD lo, hi;
} KFN(dsum);

static inline void KFN(dadd)(KFN(dsum) *d, VF v) {
    d->lo = VD_ADD(d->lo, V_TO_D_LO(v));
    d->hi = VD_ADD(d->hi, V_TO_D_HI(v));
}

static inline double KFN(dtotal)(const KFN(dsum) *d) {
    return VD_HSUM(VD_ADD(d->lo, d->hi));
}

/* Per-row accumulators: the value and the metrics in float lanes over blocks of FBLOCK vectors (each term is
 * >= 0 or of one sign, so a block's float sum keeps ~1e-6 of its value), then in double; the gradient's mean
 * in double lanes throughout. */
enum { KFN(FBLOCK) = 16 };
typedef struct {
    KFN(dsum) value, fwd, rev, jsd, ht, hs;
    VF f[6];
    VF babs_max, babs_sum; /* max |B|'s bound and sum Q |B|'s bound, for the gradient's error bound */
    VF qm_max, qm_sum;     /* the half mixture's max and sum of Q max(-x, 0), for the same */
    VF gl;                 /* sum q Yl over the block (the half mixture's low parts), then into g_lo */
    int in_block;
    VD g_lo, g_hi; /* sum q (B + Gd - K): the gradient's mean, less K */
} KFN(sums);

static inline void KFN(flush)(KFN(sums) *acc) {
    KFN(dsum) *d[6] = {&acc->value, &acc->fwd, &acc->rev, &acc->jsd, &acc->ht, &acc->hs};
    for (int i = 0; i < 6; i++) {
        KFN(dadd)(d[i], acc->f[i]);
        acc->f[i] = V_SET1(0.0f);
    }
    acc->g_lo = VD_ADD(acc->g_lo, V_TO_D_LO(acc->gl));
    acc->g_hi = VD_ADD(acc->g_hi, V_TO_D_HI(acc->gl));
    acc->gl = V_SET1(0.0f);
    acc->in_block = 0;
}

/* The log ratio in double, (s - t/T) - C, for the halves of a vector: exact but for the final rounding. */
static inline void KFN(x_double)(const gkd_div_fast_row *r, VF tv, VF sv, VD *lo, VD *hi) {
    VD it = VD_SET1(r->inv_t), c = VD_SET1(r->c);
    *lo = VD_SUB(VD_SUB(V_TO_D_LO(sv), VD_MUL(V_TO_D_LO(tv), it)), c);
    *hi = VD_SUB(VD_SUB(V_TO_D_HI(sv), VD_MUL(V_TO_D_HI(tv), it)), c);
}

/* The large part of G = dD/dQ in double: alpha x + beta max(c0 - x, 0), less K. */
static inline VD KFN(g_large)(const gkd_div_fast_row *r, VD x) {
    VD neg = VD_SUB(VD_SET1(r->g_c0), x);
    return VD_SUB(VD_FMA(VD_SET1(r->g_alpha), x, VD_MUL(VD_SET1(r->g_beta), VD_MAX(neg, VD_SET1(0.0)))),
                  VD_SET1(r->g_k));
}

/* One vector of entries (n valid lanes: V_W, or fewer at the row's end, read from padded copies); et, es:
 * the stored exp(t/T - ref_t/T), exp(s - ref_s), overwritten (with a gradient) by B and Q (FWD: P and Q).
 * G = B + alpha x + beta max(-x, 0) is dD/dQ up to a constant, with B small where G is large. */
static inline __attribute__((always_inline)) void KFN(entries)(const gkd_div_fast_row *r, const float *t,
                                                               const float *s, float *et, float *es, float *el,
                                                               int n, int grad_, KFN(sums) *acc, const int half_jsd,
                                                               const int unit_t) {
    /* half_jsd (a constant where inlined): the row is JSD's half mixture with a gradient, the usual training row */
    const int form = half_jsd ? GKD_DIV_FORM_MIX : r->form, half = half_jsd || r->half;
    const int grad = half_jsd || grad_, jsd_gradient = half_jsd || r->jsd_gradient;
    VM valid = V_MASK_FIRST(n);
    VF zero = V_SET1(0.0f);
    VF sv = V_LOAD(s), tv = V_LOAD(t), ta, x;
    KFN(logits)(r, tv, sv, &ta, &x, unit_t);
    VF a = V_SUB(ta, V_SET1(r->lt)), b = V_SUB(V_SUB(sv, V_SET1(r->max_s)), V_SET1(r->ls));
    VF p = V_MUL(V_LOAD(et), V_SET1(r->inv_zt)), q = V_MUL(V_LOAD(es), V_SET1(r->inv_zs));
    VM near = V_LT(V_ABS(x), V_SET1(0.5f));
    VF one = V_SET1(1.0f);
    VF hx = KFN(h_poly)(x), fwd_near = V_MUL(p, hx);
    VF fwd = V_SEL(near, fwd_near, V_SUB(q, V_MUL(p, V_ADD(one, x))));
    /* Q h(-x) = P (x^2 + (x - 1) h(x)) (Q = P e^x, e^x = 1 + x + h): a factor-2 difference at most near 0 */
    VF rev_near = V_MUL(p, V_FMA(V_SUB(x, one), hx, V_MUL(x, x)));
    VF rev = V_SEL(near, rev_near, V_SUB(p, V_MUL(q, V_SUB(one, x))));
    VF hpm, hqm, hlz;
    KFN(half_mixture)(p, q, x, near, fwd_near, rev_near, &hpm, &hqm, &hlz);
    VD xl = VD_SET1(0.0), xh = xl; /* the log ratio in double, where the gradient's large part needs it */
    if (grad && !half && (r->g_alpha != 0.0 || r->g_beta != 0.0)) KFN(x_double)(r, tv, sv, &xl, &xh);
    VF value = zero, B = zero, babs = zero; /* babs: the sum of B's parts' magnitudes (TV's B is exact) */
    switch (form) {
    case GKD_DIV_FORM_ZERO:
        break;
    case GKD_DIV_FORM_FORWARD_KL:
        value = fwd;
        B = p; /* QG = -P */
        break;
    case GKD_DIV_FORM_REVERSE_KL:
        value = rev; /* G = x */
        break;
    case GKD_DIV_FORM_MIX: {
        VF kpm = hpm, kqm = hqm;
        if (!half) {
            VF lmp, lmq; /* not needed here */
            KFN(mixture)(a, b, p, q, x, r->wp, r->wq, &kpm, &kqm, &lmp, &lmq);
        }
        value = V_FMA(V_SET1(r->ca), kpm, V_MUL(V_SET1(r->cb), kqm));
        if (!grad) break;
        /* JSD: G = -cb log(M/Q); else -ca wq P/M - cb (log(M/Q) + wq Q/M). log(M/Q) = log wq + softplus(c0 - x)
         * with c0 = log(wp/wq): the constant drops out of G - Gbar, softplus(z) = max(z, 0) + log1p(e^-|z|), and
         * its large part -cb max(c0 - x, 0) is added in double (g_large). It is large where Q << P, and for a
         * small wq (beta near 1) wherever x < c0, large Q included. z comes from the double log ratio. */
        VF lz = hlz;
        if (!half) {
            VD c0 = VD_SET1(r->g_c0);
            VF z = V_FROM_D(VD_SUB(c0, xl), VD_SUB(c0, xh));
            lz = KFN(log1p_unit)(KFN(exp_neg)(V_SUB(zero, V_ABS(z))));
        }
        B = V_MUL(V_SET1(-r->cb), lz);
        /* the half mixture's lz comes from P and Q (log1p_ratio), each within 3.6e-7: lz within 1.1e-6, plus one
         * rounding of B in Y (pass 2's FMA), which the bound's 4e-7 per unit of |B| covers at 2.9 units */
        babs = V_MUL(V_SET1(fabsf(r->cb) * (half ? 2.9f : 1.0f)), lz);
        if (!jsd_gradient) {
            VF m = V_FMA(V_SET1(r->wp), p, V_MUL(V_SET1(r->wq), q));
            /* m under the smallest normal float only where P and Q both are: the quotient is then multiplied
             * by such a Q, and the floor only keeps 0/0 out */
            VF ratio = V_DIV(V_FMA(V_SET1(r->ca * r->wq), p, V_MUL(V_SET1(r->cb * r->wq), q)),
                             V_MAX(m, V_SET1(FLT_MIN)));
            B = V_SUB(B, ratio);
            babs = V_ADD(babs, V_ABS(ratio));
        }
        break;
    }
    case GKD_DIV_FORM_TV: {
        VF big = V_MAX(p, q);
        value = V_MUL(V_SET1(-0.5f), V_MUL(big, V_EXPM1(V_SUB(zero, V_ABS(x)))));
        B = V_SEL(V_GT(x, zero), V_SET1(0.5f), V_SEL(V_LT(x, zero), V_SET1(-0.5f), zero));
        break;
    }
    }
    VF jsd = V_MUL(V_SET1(0.5f), V_ADD(hpm, hqm)), pa = V_MUL(p, a), qb = V_MUL(q, b);
    if (n < V_W) { /* the row's last, padded vector */
        value = V_SEL(valid, value, zero), fwd = V_SEL(valid, fwd, zero), rev = V_SEL(valid, rev, zero);
        jsd = V_SEL(valid, jsd, zero), pa = V_SEL(valid, pa, zero), qb = V_SEL(valid, qb, zero);
        q = V_SEL(valid, q, zero), B = V_SEL(valid, B, zero), babs = V_SEL(valid, babs, zero);
    }
    acc->f[0] = V_ADD(acc->f[0], value);
    acc->f[1] = V_ADD(acc->f[1], fwd);
    acc->f[2] = V_ADD(acc->f[2], rev);
    acc->f[3] = V_ADD(acc->f[3], jsd);
    acc->f[4] = V_ADD(acc->f[4], pa);
    acc->f[5] = V_ADD(acc->f[5], qb);
    if (++acc->in_block == KFN(FBLOCK)) KFN(flush)(acc);
    if (!grad) return;
    V_STORE(es, q);
    if (form == GKD_DIV_FORM_FORWARD_KL) { /* its mean is -sum P, summed in the gradient pass */
        V_STORE(et, B);
        return;
    }
    acc->babs_max = V_MAX(acc->babs_max, babs);
    acc->babs_sum = V_FMA(q, babs, acc->babs_sum);
    if (half) {
        /* The half mixture's large part beta max(-x, 0) in float: where it is large (Q << P), Q max(-x, 0) <=
         * Q |log Q| <= 1/e, so its float rounding, about 3 ulp of beta max(-x, 0), moves the entry by at most
         * 3 ulp of |beta| Q max(-x, 0) (qm_max bounds it) and Gbar by 3 ulp of |beta| sum Q max(-x, 0) (qm_sum).
         * Y = (B + beta max(-x, 0)) - K, the last difference by TwoSum: Yh + Yl. */
        VF m = V_MAX(V_SUB(zero, x), zero), qm = V_MUL(q, m);
        acc->qm_max = V_MAX(acc->qm_max, qm);
        acc->qm_sum = V_ADD(acc->qm_sum, qm);
        VF y0 = V_FMA(V_SET1(r->beta_f), m, B), kh = V_SET1(r->k_hi);
        VF yh = V_SUB(y0, kh), bb = V_SUB(yh, y0);
        VF yl = V_SUB(V_SUB(V_SUB(y0, V_SUB(yh, bb)), V_ADD(kh, bb)), V_SET1(r->k_lo));
        V_STORE(et, yh);
        V_STORE(el, yl);
        acc->g_lo = VD_FMA(V_TO_D_LO(q), V_TO_D_LO(yh), acc->g_lo);
        acc->g_hi = VD_FMA(V_TO_D_HI(q), V_TO_D_HI(yh), acc->g_hi);
        acc->gl = V_FMA(q, yl, acc->gl);
        return;
    }
    VD ql = V_TO_D_LO(q), qh = V_TO_D_HI(q), bl = V_TO_D_LO(B), bh = V_TO_D_HI(B);
    if (r->g_alpha != 0.0 || r->g_beta != 0.0) {
        bl = VD_ADD(bl, KFN(g_large)(r, xl));
        bh = VD_ADD(bh, KFN(g_large)(r, xh));
        /* Y = B + G's large part, less K, kept as two floats for the gradient pass */
        VF yh = V_FROM_D(bl, bh);
        V_STORE(et, yh);
        V_STORE(el, V_FROM_D(VD_SUB(bl, V_TO_D_LO(yh)), VD_SUB(bh, V_TO_D_HI(yh))));
    } else {
        V_STORE(et, B);
        V_STORE(el, V_SET1(0.0f));
    }
    acc->g_lo = VD_FMA(ql, bl, acc->g_lo);
    acc->g_hi = VD_FMA(qh, bh, acc->g_hi);
}

/* One vector of pass 1 (n valid lanes; unit_t: the teacher at temperature 1, a constant where inlined). */
typedef struct {
    KFN(dsum) zt, zs;
    VF mt, ms, at, top_at;
} KFN(norm_acc);

static inline __attribute__((always_inline)) void KFN(norm_vector)(const gkd_div_fast_row *r, VF tv, VF sv, VF mss,
                                                                    int n, float *et, float *es, KFN(norm_acc) *a,
                                                                    const int unit_t) {
    a->mt = V_MAX(a->mt, tv);
    a->top_at = V_SEL(V_GT(sv, a->ms), a->at, a->top_at);
    a->ms = V_MAX(a->ms, sv);
    a->at = V_ADD(a->at, V_SET1((float)V_W));
    VF tl = V_SET1(0.0f), th = tv;
    if (!unit_t) th = KFN(teacher_scaled)(r, tv, &tl);
    VF e_t = KFN(exp_diff)(th, V_SET1(r->m_hi), V_SUB(tl, V_SET1(r->m_lo)));
    VF e_s = KFN(exp_diff)(sv, mss, V_SET1(0.0f));
    if (n < V_W) { /* the padded last vector */
        VM valid = V_MASK_FIRST(n);
        e_t = V_SEL(valid, e_t, V_SET1(0.0f));
        e_s = V_SEL(valid, e_s, V_SET1(0.0f));
    }
    V_STORE(et, e_t);
    V_STORE(es, e_s);
    KFN(dadd)(&a->zt, e_t);
    KFN(dadd)(&a->zs, e_s);
}

/* Pass 1 over a row (row's comment): et, es, the normalisers' sums, the maxima and the student's top entry.
 * Returns 1 at a logit that is not finite (the sums are NaN); a sum of +inf is an overflow against the
 * reference, which the caller's check of the maxima repeats. Its own function, as entries_loop. */
static __attribute__((noinline)) int KFN(normalisers)(const gkd_div_fast_row *rp, const float *t, const float *s,
                                                      int V, const float *tpad, const float *spad, float ref_s,
                                                      float *et, float *es, double *zt_sum, double *zs_sum,
                                                      float *max_t, float *max_s, int *top) {
    const gkd_div_fast_row r = *rp;
    KFN(norm_acc) a;
    a.zt.lo = a.zt.hi = VD_SET1(0.0);
    a.zs = a.zt;
    a.mt = a.ms = V_SET1(-INFINITY);
    VF mss = V_SET1(ref_s);
    float lanes[V_W], idx[V_W];
    for (int i = 0; i < V_W; i++) lanes[i] = (float)i;
    a.at = a.top_at = V_LOAD(lanes);
    /* A logit that is not finite makes its exponential NaN (the TwoSums below take inf - inf), and so the sums. */
    int full = V / V_W * V_W;
    if (r.ih == 1.0f && r.il == 0.0f)
        for (int v = 0; v < full; v += V_W) KFN(norm_vector)(&r, V_LOAD(t + v), V_LOAD(s + v), mss, V_W, et + v, es + v, &a, 1);
    else
        for (int v = 0; v < full; v += V_W) KFN(norm_vector)(&r, V_LOAD(t + v), V_LOAD(s + v), mss, V_W, et + v, es + v, &a, 0);
    if (full < V) KFN(norm_vector)(&r, V_LOAD(tpad), V_LOAD(spad), mss, V - full, et + full, es + full, &a, 0);
    *zt_sum = KFN(dtotal)(&a.zt);
    *zs_sum = KFN(dtotal)(&a.zs);
    if (isnan(*zt_sum) || isnan(*zs_sum)) return 1; /* +inf: an exponential overflowed (the caller repeats) */
    float mx_t = -INFINITY, mx_s = -INFINITY;
    int tp = -1;
    V_STORE(lanes, a.mt);
    for (int i = 0; i < V_W; i++) mx_t = lanes[i] > mx_t ? lanes[i] : mx_t;
    V_STORE(lanes, a.ms);
    V_STORE(idx, a.top_at);
    for (int i = 0; i < V_W; i++) mx_s = lanes[i] > mx_s ? lanes[i] : mx_s;
    for (int i = 0; i < V_W; i++) /* the pad lanes hold s[0] <= max_s at indices >= V: never the first */
        if (lanes[i] == mx_s && (tp < 0 || (int)idx[i] < tp)) tp = (int)idx[i];
    *max_t = mx_t;
    *max_s = mx_s;
    *top = tp;
    return 0;
}

/* Pass 2 over a row. Its own function, so that its registers are allocated apart from the rest of the row;
 * the sums and the row's constants are local copies (through pointers the compiler must assume the row's
 * stores may change them, and reloads and stores them per vector); the usual training row (JSD's half
 * mixture with a gradient) has a loop of its own, with the divergence's branches folded. About 1.4x the
 * speed of one inlined generic loop (rows-only A/B on one core, session 12). */
static __attribute__((noinline)) void KFN(entries_loop)(const gkd_div_fast_row *rp, const float *t, const float *s,
                                                        int V, float *et, float *es, const float *tpad,
                                                        const float *spad, float *dpad, float *dst, int grad,
                                                        KFN(sums) *out) {
    KFN(sums) acc = *out;
    gkd_div_fast_row r = *rp;
    int full = V / V_W * V_W;
    int half_jsd = grad && r.form == GKD_DIV_FORM_MIX && r.half && r.jsd_gradient;
    if (half_jsd && r.ih == 1.0f && r.il == 0.0f) { /* and the teacher at temperature 1 */
        for (int v = 0; v < full; v += V_W)
            KFN(entries)(&r, t + v, s + v, et + v, es + v, dst + v, V_W, 1, &acc, 1, 1);
    } else if (half_jsd) {
        for (int v = 0; v < full; v += V_W)
            KFN(entries)(&r, t + v, s + v, et + v, es + v, dst + v, V_W, 1, &acc, 1, 0);
    } else {
        for (int v = 0; v < full; v += V_W)
            KFN(entries)(&r, t + v, s + v, et + v, es + v, grad ? dst + v : dpad, V_W, grad, &acc, 0, 0);
    }
    if (full < V) { /* the row's last vector, from the padded copies */
        KFN(entries)(&r, tpad, spad, et + full, es + full, dpad, V - full, grad, &acc, 0, 0);
        if (grad) memcpy(dst + full, dpad, (size_t)(V - full) * sizeof *dst);
    }
    *out = acc;
}

/* 1 when an error bound exceeds the tolerance the float path promises, 1e-5 of the value or 1e-7 */
static inline int KFN(beyond)(VF bound, VF value) {
    return V_ANY(V_GT(bound, V_MAX(V_MUL(V_ABS(value), V_SET1(1e-5f)), V_SET1(1e-7f))));
}

/* Pass 3 over one vector: dst = scale Q (G - Gbar), and the top entry's sum of Q_v (G_top - G_v). Yh, Yl: G
 * less K as two floats (Yh + Yl, from pass 2; FWD: P in Yh); gh + gl: Gbar less K as two floats. dst may be
 * yl itself (pass 2 keeps Yl in the output row). */
static inline void KFN(gradient)(const gkd_div_fast_row *r, const float *Yh, const float *Yl, const float *qv,
                                 float *dst, double gbar, float gh, float gl, float yth, float ytl, float scale,
                                 float err, float err_abs, KFN(dsum) *top, int *inexact) {
    VF q = V_LOAD(qv), B = V_LOAD(Yh);
    if (r->form == GKD_DIV_FORM_FORWARD_KL) { /* Gbar = -sum P: dst = scale (Q sum P - P) */
        VF d = V_MUL(V_SET1(scale), V_SUB(V_MUL(q, V_SET1((float)-gbar)), B));
        V_STORE(dst, d);
        *inexact |= KFN(beyond)(V_MUL(V_SET1(err), V_ADD(q, B)), d);
        /* top: scale (Q_top sum_{v != top} P_v - P_top sum_{v != top} Q_v), summed as Q_top P_v - P_top Q_v */
        VD tl = VD_SUB(VD_MUL(VD_SET1(r->q_top), V_TO_D_LO(B)), VD_MUL(VD_SET1(yth), V_TO_D_LO(q)));
        VD th = VD_SUB(VD_MUL(VD_SET1(r->q_top), V_TO_D_HI(B)), VD_MUL(VD_SET1(yth), V_TO_D_HI(q)));
        top->lo = VD_ADD(top->lo, tl);
        top->hi = VD_ADD(top->hi, th);
        return;
    }
    VF L = V_LOAD(Yl);
    /* (Yh - gh) is exact where the two are close (Sterbenz), so y keeps its accuracy when G nears Gbar */
    VF y = V_ADD(V_SUB(B, V_SET1(gh)), V_SUB(L, V_SET1(gl)));
    VF out = V_MUL(V_SET1(scale), V_MUL(q, y));
    V_STORE(dst, out);
    *inexact |= KFN(beyond)(V_FMA(V_SET1(err), q, V_SET1(err_abs)), out);
    VF d = V_ADD(V_SUB(V_SET1(yth), B), V_SUB(V_SET1(ytl), L)); /* G_top - G_v */
    KFN(dadd)(top, V_MUL(q, d));
}

/* Pass 3 over a row (row's comment): the gradient; returns the top entry's sum. Its own function, as
 * entries_loop. */
static __attribute__((noinline)) double KFN(gradient_loop)(const gkd_div_fast_row *rp, int V, const float *et,
                                                           const float *es, float *dst, float *dpad, double gbar,
                                                           float gh, float gl, float yth, float ytl, float scale,
                                                           float err, float err_abs, int *inexact_out) {
    const gkd_div_fast_row r = *rp;
    KFN(dsum) tops = {VD_SET1(0.0), VD_SET1(0.0)};
    int inexact = 0;
    for (int v = 0; v < V; v += V_W) {
        int n = V - v < V_W ? V - v : V_W;
        if (n < V_W) memcpy(dpad, dst + v, (size_t)n * sizeof *dst);
        KFN(gradient)(&r, et + v, n < V_W ? dpad : dst + v, es + v, n < V_W ? dpad : dst + v, gbar, gh, gl, yth,
                      ytl, scale, err, err_abs, &tops, &inexact);
        if (n < V_W) memcpy(dst + v, dpad, (size_t)n * sizeof *dst);
    }
    *inexact_out = inexact;
    return KFN(dtotal)(&tops);
}

/* The row (divergence_fast.h): value, metrics, and with dst the gradient. scratch: 2 V + 5 V_W floats.
 * Returns 1 when a logit is not finite (nothing written) or when the gradient's error bound exceeds the
 * tolerance (written, to be overwritten by the exact path). dst's row holds Yl between passes 2 and 3. */
static int KFN(row)(const gkd_div_fast_row *rs, const float *t, const float *s, int V, float *scratch,
                    double *value, float *dst, double scale, gkd_token_metrics *metrics) {
    gkd_div_fast_row r = *rs;
    int full = V / V_W * V_W, tail = V - full;
    /* 1. The normalisers, in double: Lt = log sum exp(t/T - ref_t/T), Ls = log sum exp(s - ref_s), in one pass
     * over the logits that also finds the maxima, the student's top entry (the first where s is largest; each
     * lane keeps the index of its first maximum, as a float: exact below 2^24 entries) and any logit that is
     * not finite. The references are the largest of up to 64 logits spread over the row, not the row's
     * largest (that would take a pass of its own): exp(l - ref) then reaches at most e^60 (checked after the
     * pass; beyond, and so also where an exponential overflowed, the pass is repeated with the row's maxima
     * as references), so the sums and their inverses stay well
     * inside float's range for V < 2^24, and an entry's exponential is subnormal only where its probability
     * is below e^-87 anyway. */
    float ref_t = -INFINITY, ref_s = -INFINITY;
    for (int v = 0, stride = V > 64 ? V / 64 : 1; v < V; v += stride) {
        if (!isfinite(t[v]) || !isfinite(s[v])) return 1;
        ref_t = t[v] > ref_t ? t[v] : ref_t;
        ref_s = s[v] > ref_s ? s[v] : ref_s;
    }
    /* scratch: et (V + V_W), es (V + V_W), then the padded tail of t and s (padded with a logit of the row, so
     * the maxima stay the row's), and of dst */
    float *et = scratch, *es = scratch + V + V_W, *tpad = es + V + V_W, *spad = tpad + V_W, *dpad = spad + V_W;
    if (tail) {
        for (int i = 0; i < V_W; i++) {
            tpad[i] = i < tail ? t[full + i] : t[0];
            spad[i] = i < tail ? s[full + i] : s[0];
        }
    }
    r.c_hi = r.c_lo = 0.0f;
    double zt_sum, zs_sum, mtt;
    float max_t, max_s;
    int top;
    for (int pass = 0;; pass++) {
        mtt = (double)ref_t * r.inv_t;
        r.m_hi = (float)mtt;
        r.m_lo = (float)(mtt - (double)r.m_hi);
        if (KFN(normalisers)(&r, t, s, V, tpad, spad, ref_s, et, es, &zt_sum, &zs_sum, &max_t, &max_s, &top))
            return 1;
        if (((double)max_t - (double)ref_t) * r.inv_t <= 60.0 && (double)max_s - (double)ref_s <= 60.0) break;
        if (pass) return 1; /* not reached: with the maxima as references nothing exceeds them */
        ref_t = max_t;
        ref_s = max_s;
    }
    if (!isfinite(zt_sum) || !isfinite(zs_sum)) return 1;
    double lt = log(zt_sum), ls = log(zs_sum), c = ((double)ref_s + ls) - (mtt + lt);
    r.lt = (float)lt;
    r.ls = (float)ls;
    r.max_s = ref_s;
    r.c = c;
    r.c_hi = (float)c;
    r.c_lo = (float)(c - (double)r.c_hi);
    r.inv_zt = (float)(1.0 / zt_sum);
    r.inv_zs = (float)(1.0 / zs_sum);
    /* at the student's top entry: K = the large part of G there (the gradient's sums are taken about it) */
    double x_top = ((double)s[top] - (double)t[top] * r.inv_t) - c;
    r.g_k = r.g_alpha * x_top + r.g_beta * (r.g_c0 - x_top > 0 ? r.g_c0 - x_top : 0.0);
    r.k_hi = (float)r.g_k;
    r.k_lo = (float)(r.g_k - (double)r.k_hi);
    r.beta_f = (float)r.g_beta;
    /* 2. the entries */
    int grad = dst && scale != 0.0;
    KFN(sums) acc;
    memset(&acc, 0, sizeof acc);
    for (int i = 0; i < 6; i++) acc.f[i] = V_SET1(0.0f);
    acc.babs_max = acc.babs_sum = acc.qm_max = acc.qm_sum = acc.gl = V_SET1(0.0f);
    acc.value.lo = acc.value.hi = VD_SET1(0.0);
    acc.fwd = acc.rev = acc.jsd = acc.ht = acc.hs = acc.value;
    acc.g_lo = acc.g_hi = VD_SET1(0.0);
    KFN(entries_loop)(&r, t, s, V, et, es, tpad, spad, dpad, dst, grad, &acc);
    KFN(flush)(&acc);
    *value = KFN(dtotal)(&acc.value);
    if (metrics)
        *metrics = (gkd_token_metrics){KFN(dtotal)(&acc.fwd), KFN(dtotal)(&acc.rev), KFN(dtotal)(&acc.jsd),
                                       -KFN(dtotal)(&acc.ht), -KFN(dtotal)(&acc.hs)};
    if (!dst) return 0;
    if (!grad) {
        memset(dst, 0, (size_t)V * sizeof *dst);
        return 0;
    }
    /* 3. the gradient: scale Q_v (G_v - Gbar); the student's top entry as scale Q_u sum_{v != u} Q_v (G_u - G_v),
     * which keeps its accuracy when Q saturates (gkd_div_grad_top) */
    double gbar;
    if (r.form == GKD_DIV_FORM_FORWARD_KL) {
        KFN(dsum) sp = {VD_SET1(0.0), VD_SET1(0.0)};
        for (int v = 0; v < V; v += V_W) KFN(dadd)(&sp, V_LOAD(et + v));
        gbar = -KFN(dtotal)(&sp);
    } else {
        gbar = r.g_k + VD_HSUM(VD_ADD(acc.g_lo, acc.g_hi));
    }
    r.q_top = es[top];
    float yth = et[top], ytl = r.form == GKD_DIV_FORM_FORWARD_KL ? 0.0f : dst[top];
    double gk = gbar - r.g_k; /* Gbar less K */
    float gh = (float)gk, gl = (float)(gk - (double)gh);
    /* The gradient's error bound, a multiple of scale Q_v: B's float parts are within 4e-7 of their magnitude,
     * plus (mixtures) an absolute 6e-8 |cb| from the log ratio's rounding in log1p(e^-|z|) <= |z| e^-|z| eps;
     * G - Gbar then errs by 4e-7 (|B|max + sum Q|B|) + that. Forward KL: 4e-7 (Q + P). A row where it could
     * exceed the tolerance goes to the exact path whole (returns 1). */
    float lanes_b[V_W], babs_max = 0.0f, babs_sum = 0.0f;
    V_STORE(lanes_b, acc.babs_max);
    for (int i = 0; i < V_W; i++) babs_max = lanes_b[i] > babs_max ? lanes_b[i] : babs_max;
    V_STORE(lanes_b, acc.babs_sum);
    for (int i = 0; i < V_W; i++) babs_sum += lanes_b[i];
    /* The half mixture's large part in float (pass 2): 4 roundings of |beta| max(-x, 0) at most (x's two, beta's,
     * the FMA's), in Gbar through sum Q max(-x, 0) (a multiple of Q_v) and in the entry itself through at most
     * max Q max(-x, 0) (absolute: err_abs). */
    float qm_lanes[V_W], qm_max = 0.0f, qm_sum = 0.0f;
    V_STORE(qm_lanes, acc.qm_max);
    for (int i = 0; i < V_W; i++) qm_max = qm_lanes[i] > qm_max ? qm_lanes[i] : qm_max;
    V_STORE(qm_lanes, acc.qm_sum);
    for (int i = 0; i < V_W; i++) qm_sum += qm_lanes[i];
    double large_ulp = r.half ? 4 * 6e-8 * 1.01 * fabs(r.g_beta) : 0.0;
    float err = r.form == GKD_DIV_FORM_FORWARD_KL
                    ? (float)(fabs(scale) * 4e-7)
                    : (float)(fabs(scale) * (4e-7 * 1.01 * (babs_max + babs_sum) + large_ulp * qm_sum +
                                             (r.form == GKD_DIV_FORM_MIX ? 6e-8 * fabs(r.cb) : 0.0)));
    float err_abs = (float)(fabs(scale) * large_ulp * qm_max);
    int inexact = 0;
    double top_sum = KFN(gradient_loop)(&r, V, et, es, dst, dpad, gbar, gh, gl, yth, ytl, (float)scale, err, err_abs,
                                        &inexact);
    dst[top] = (float)(scale * (r.form == GKD_DIV_FORM_FORWARD_KL ? top_sum : (double)r.q_top * top_sum));
    float top_bound = err * (r.q_top + (r.form == GKD_DIV_FORM_FORWARD_KL ? yth : 0.0f)) + err_abs;
    if (inexact || top_bound > fmaxf(1e-5f * fabsf(dst[top]), 1e-7f)) return 1;
    return 0;
}
