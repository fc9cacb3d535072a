/* The per-entry math of the token divergences (divergence.h), shared by the CPU rows (divergence.c) and
 * the CUDA kernels (divergence_cuda.cu), so both evaluate the very same formulas; docs/divergences.md
 * explains them.
 * Rules:
 * - Everything here is `static inline` and marked GKD_HD (__host__ __device__ under nvcc), over scalars
 *   only: no allocation, no libc beyond <math.h>.
 * - An entry is (a, b, p, q) = (log P_j, log Q_j, P_j, Q_j): logs <= 0 or -inf, probabilities their exps.
 * - Every term is >= 0 and computed without internal cancellation; accumulators are updated in a fixed
 *   order (the `_add` functions), so a sum over entries in the same order is the same to the bit. */
#ifndef GKD_DIVERGENCE_TERMS_H
#define GKD_DIVERGENCE_TERMS_H

#include "rl/divergence.h"

#include <float.h>
#include <math.h>

#ifdef __CUDACC__
#define GKD_HD __host__ __device__
#else
#define GKD_HD
#endif

/* u - log1p(u) >= 0 for u > -1, given log1p(u) computed by the caller (often from a better-conditioned
 * expression than log1p of the rounded u). Near 0 both parts are ~u and their difference ~u^2/2, so
 * there it is a series in w = u/(2+u): log1p(u) = 2 atanh(w) and u = 2w/(1-w) give
 * u - log1p(u) = 2w^2/(1-w) - 2w^3 (1/3 + w^2/5 + w^4/7 + ...), whose two parts do not cancel. */
GKD_HD static inline double gkd_div_u_minus_log1p(double u, double log1p_u) {
    if (fabs(u) >= 0.1) return u - log1p_u;
    double w = u / (2.0 + u), w2 = w * w;
    /* |w| < 0.053, so w^16 < 1e-20 of the leading term: 8 terms reach double precision (Horner). */
    double series = 1.0 / 17;
    for (int k = 6; k >= 0; k--) series = 1.0 / (2 * k + 3) + w2 * series;
    return 2.0 * w2 / (1.0 - w) - 2.0 * w * w2 * series;
}

/* P log(P/Q) - P + Q >= 0 (p = P = e^a, q = Q = e^b): the forward-KL term plus a zero-sum linear part
 * that makes it non-negative. It is P h(b - a) with h(x) = e^x - 1 - x = u - log1p(u) at u = expm1(x);
 * away from x = 0 the plain form loses at most a few bits (h(0.5) = 0.15). */
GKD_HD static inline double gkd_div_kl_term(double a, double b, double p, double q) {
    if (a == -INFINITY) return q;
    if (b == -INFINITY) return INFINITY;
    double x = b - a;
    if (fabs(x) < 0.5) return p * gkd_div_u_minus_log1p(expm1(x), x);
    return q - p * (1.0 + x);
}

/* Both KL terms of one entry at once: *fwd = kl_term(a, b, p, q), *rev = kl_term(b, a, q, p), computed
 * with one expm1 instead of two where |x| < 0.5 (x = b - a, u = expm1(x), h = h(x) = u - x):
 * Q h(-x) = P e^x (e^-x - 1 + x) = P (x u - h). x u and h are both >= 0 and h <= 0.6 x u for
 * |x| < 0.5, so the difference keeps all but ~1.3 bits of their relative accuracy (a few ulp, where the
 * tests ask for 1e-5). Elsewhere both are the plain forms of kl_term, bit for bit. */
GKD_HD static inline void gkd_div_kl_terms(double a, double b, double p, double q, double *fwd, double *rev) {
    if (a == -INFINITY || b == -INFINITY) {
        *fwd = gkd_div_kl_term(a, b, p, q);
        *rev = gkd_div_kl_term(b, a, q, p);
        return;
    }
    double x = b - a;
    if (fabs(x) < 0.5) {
        double u = expm1(x), h = gkd_div_u_minus_log1p(u, x);
        *fwd = p * h;
        *rev = p * (x * u - h);
        return;
    }
    *fwd = q - p * (1.0 + x);
    *rev = p - q * (1.0 + -x);
}

/* kl_term(b, a, q, p), the reverse-KL term, as gkd_div_kl_terms gives it. */
GKD_HD static inline double gkd_div_kl_rev_term(double a, double b, double p, double q) {
    double fwd, rev;
    gkd_div_kl_terms(a, b, p, q, &fwd, &rev);
    return rev;
}

/* For the mixture M = wp P + wq Q (wp, wq > 0): the non-negative terms of KL(P||M) and KL(Q||M),
 * kl_pm = P log(P/M) - P + M and kl_qm = Q log(Q/M) - Q + M, and lmp = log(M/P), lmq = log(M/Q)
 * (+inf where P or Q is 0) for the gradients. */
typedef struct {
    double kl_pm, kl_qm, lmp, lmq;
} gkd_div_mix;

/* Which of mix_eval's logs the caller uses (the gradients do; the values only where the formulas below
 * need them): the others are skipped, left NaN, and the outputs that are computed do not change. */
enum { GKD_DIV_NEED_LMP = 1, GKD_DIV_NEED_LMQ = 2 };

/* The larger side X (lx >= ly, lx finite; x = e^lx, y = e^ly) and the smaller Y, M = wx X + wy Y. With
 * rho = Y/X in [0, 1]: M/X - 1 = wy (rho - 1) lies in [-wy, 0], safe for log1p. M/Y - 1 =
 * uy = wx (1/rho - 1) may be huge; from uy >= 1 on, Y (uy - log1p(uy)) is written as
 * wx (X - Y) - Y log(M/Y), whose parts cannot cancel (log1p(uy) <= 0.7 uy there) and which needs
 * neither 1/rho nor Y to be representable. u_minus_log1p reads its log1p only where |u| >= 0.1, so a log
 * that no output needs is not taken (need_x, need_y: the caller uses lmx, lmy). */
GKD_HD static inline void gkd_div_mix_larger_first(double lx, double ly, double x, double y, double wx,
                                                   double wy, int need_x, int need_y, double *kl_x,
                                                   double *kl_y, double *lmx, double *lmy) {
    double d = ly - lx, rho_m1 = expm1(d);
    double rho = y >= DBL_MIN ? y / x : exp(d);
    double ux = wy * rho_m1;
    double uy = ly == -INFINITY ? INFINITY : wx * (-rho_m1 / rho);
    *lmx = NAN;
    /* log1p loses accuracy as 1 + ux -> 0, where the sum wx + wy rho has none to lose. */
    if (need_x || fabs(ux) >= 0.1 || (ly != -INFINITY && uy >= 1.0))
        *lmx = ux > -0.5 ? log1p(ux) : log(wx + wy * rho);
    *kl_x = x * gkd_div_u_minus_log1p(ux, *lmx);
    if (ly == -INFINITY) {
        *kl_y = wx * x; /* Y log(Y/M) - Y + M with Y = 0 */
        *lmy = INFINITY;
        return;
    }
    if (uy < 1.0) {
        *lmy = need_y || fabs(uy) >= 0.1 ? log1p(uy) : NAN;
        *kl_y = y * gkd_div_u_minus_log1p(uy, *lmy);
    } else {
        *lmy = *lmx - d;
        *kl_y = wx * x * -rho_m1 - y * *lmy;
    }
}

/* need: GKD_DIV_NEED_* bits. */
GKD_HD static inline gkd_div_mix gkd_div_mix_eval(double a, double b, double p, double q, double wp,
                                                  double wq, int need) {
    gkd_div_mix m = {0.0, 0.0, INFINITY, INFINITY};
    if (a == -INFINITY && b == -INFINITY) return m;
    int lmp = (need & GKD_DIV_NEED_LMP) != 0, lmq = (need & GKD_DIV_NEED_LMQ) != 0;
    if (a >= b)
        gkd_div_mix_larger_first(a, b, p, q, wp, wq, lmp, lmq, &m.kl_pm, &m.kl_qm, &m.lmp, &m.lmq);
    else
        gkd_div_mix_larger_first(b, a, q, p, wq, wp, lmq, lmp, &m.kl_qm, &m.kl_pm, &m.lmq, &m.lmp);
    return m;
}

/* |P - Q| as the larger times -expm1(log ratio): a product, not a cancellation. */
GKD_HD static inline double gkd_div_abs_diff(double a, double b, double p, double q) {
    if (a == -INFINITY && b == -INFINITY) return 0.0;
    return a >= b ? -p * expm1(b - a) : -q * expm1(a - b);
}

/* ---------------------------------------------------------------------------------------------- */
/* A divergence setting resolved to the computation it needs: endpoints routed to their limits. */

typedef enum {
    GKD_DIV_FORM_ZERO,
    GKD_DIV_FORM_FORWARD_KL,
    GKD_DIV_FORM_REVERSE_KL,
    GKD_DIV_FORM_MIX,
    GKD_DIV_FORM_TV
} gkd_div_form;
typedef enum { GKD_DIV_SELECT_TEACHER, GKD_DIV_SELECT_STUDENT, GKD_DIV_SELECT_UNION } gkd_div_select;

typedef struct {
    gkd_div_form form;
    gkd_div_select select; /* which top-k entries the approximation keeps */
    /* GKD_DIV_FORM_MIX: M = wp P + wq Q, value = ca KL(P||M) + cb KL(Q||M). */
    double wp, wq, ca, cb;
    /* GKD_DIV_FORM_MIX: when ca/cb = wp/wq (a JSD) dD/dQ_j reduces to cb log(Q_j/M_j), which avoids
     * summing O(1) parts into an O(beta) gradient. */
    int jsd_gradient;
} gkd_div_resolved;

/* Skew KL, KL(P || skew P + (1-skew) Q), on the teacher's side; with student set, skew reverse KL, the same
 * with P and Q swapped. skew 1 leaves the zero form; skew 0 is the plain KL of that side. */
GKD_HD static inline void gkd_div_resolve_skew(gkd_div_resolved *r, double skew, int student) {
    r->select = student ? GKD_DIV_SELECT_STUDENT : GKD_DIV_SELECT_TEACHER;
    if (skew == 1.0) return;
    if (skew == 0.0) {
        r->form = student ? GKD_DIV_FORM_REVERSE_KL : GKD_DIV_FORM_FORWARD_KL;
        return;
    }
    r->form = GKD_DIV_FORM_MIX;
    r->wp = student ? 1.0 - skew : skew;
    r->wq = student ? skew : 1.0 - skew;
    if (student)
        r->cb = 1.0;
    else
        r->ca = 1.0;
}

/* d must have passed gkd_divergence_check. */
GKD_HD static inline gkd_div_resolved gkd_div_resolve(const gkd_divergence *d) {
    gkd_div_resolved r = {GKD_DIV_FORM_ZERO, GKD_DIV_SELECT_UNION, 0.0, 0.0, 0.0, 0.0, 0};
    switch (d->kind) {
    case GKD_DIV_FORWARD_KL:
        r.form = GKD_DIV_FORM_FORWARD_KL;
        r.select = GKD_DIV_SELECT_TEACHER;
        break;
    case GKD_DIV_REVERSE_KL:
        r.form = GKD_DIV_FORM_REVERSE_KL;
        r.select = GKD_DIV_SELECT_STUDENT;
        break;
    case GKD_DIV_JSD: {
        double beta = d->beta;
        if (beta == 0.0 || beta == 1.0) {
            if (d->convention == GKD_JSD_PAPER)
                r.form = GKD_DIV_FORM_ZERO;
            else
                r.form = beta == 0.0 ? GKD_DIV_FORM_FORWARD_KL : GKD_DIV_FORM_REVERSE_KL;
            break;
        }
        r.form = GKD_DIV_FORM_MIX;
        r.wp = beta;
        r.wq = 1.0 - beta;
        if (d->convention == GKD_JSD_SCALED) {
            r.ca = 1.0 / (1.0 - beta);
            r.cb = 1.0 / beta;
        } else {
            r.ca = beta;
            r.cb = 1.0 - beta;
        }
        r.jsd_gradient = 1;
        break;
    }
    case GKD_DIV_TV:
        r.form = GKD_DIV_FORM_TV;
        break;
    case GKD_DIV_SKEW_KL:
        gkd_div_resolve_skew(&r, d->skew, 0);
        break;
    case GKD_DIV_SKEW_REVERSE_KL:
        gkd_div_resolve_skew(&r, d->skew, 1);
        break;
    }
    return r;
}

/* The logs of the mixture that r's gradient needs (0 when no gradient is taken). */
GKD_HD static inline int gkd_div_mix_need(const gkd_div_resolved *r, int want_grad) {
    if (!want_grad || r->form != GKD_DIV_FORM_MIX) return 0;
    return r->jsd_gradient ? GKD_DIV_NEED_LMQ : GKD_DIV_NEED_LMP | GKD_DIV_NEED_LMQ;
}

/* r's form uses the shared half mixture (so its gradient's logs are taken there). */
GKD_HD static inline int gkd_div_uses_half(const gkd_div_resolved *r) {
    return r->form == GKD_DIV_FORM_MIX && r->wp == 0.5 && r->wq == 0.5;
}

/* The terms of one entry that the logged metrics and a training divergence may share: computed once
 * when the divergence needs the same ones (forward KL, reverse KL, the mixture at weights 1/2). */
typedef struct {
    double kl_fwd, kl_rev; /* kl_term of P against Q and of Q against P */
    gkd_div_mix half;      /* mix_eval at wp = wq = 1/2 */
} gkd_div_shared;

/* need: the logs of the half mixture that the training divergence's gradient uses (gkd_div_mix_need where
 * gkd_div_uses_half, else 0). */
GKD_HD static inline gkd_div_shared gkd_div_shared_eval(double a, double b, double p, double q, int need) {
    gkd_div_shared s;
    gkd_div_kl_terms(a, b, p, q, &s.kl_fwd, &s.kl_rev);
    s.half = gkd_div_mix_eval(a, b, p, q, 0.5, 0.5, need);
    return s;
}

/* Adds one entry's metric terms to m (all fields start at 0). */
GKD_HD static inline void gkd_div_metrics_add(const gkd_div_shared *s, double a, double b, double p, double q,
                                              gkd_token_metrics *m) {
    m->forward_kl += s->kl_fwd;
    m->reverse_kl += s->kl_rev;
    m->jsd += 0.5 * (s->half.kl_pm + s->half.kl_qm);
    if (a != -INFINITY) m->teacher_entropy -= p * a;
    if (b != -INFINITY) m->student_entropy -= q * b;
}

/* Adds one entry's term of r's divergence to *value (value NULL: none) and returns its
 * QG_j = Q_j dD/dQ_j (up to a constant shared by all entries; +inf where the gradient is infinite); need
 * is gkd_div_mix_need(r, want_grad), and without a gradient the return value is meaningless. shared
 * (NULL: compute what is needed) holds this entry's shared terms, evaluated with the same need, which
 * the forms reuse where they coincide. */
GKD_HD static inline double gkd_div_entry_add(const gkd_div_resolved *r, int need,
                                              const gkd_div_shared *shared, double a, double b, double p,
                                              double q, double *value) {
    double g = 0.0;
    double unused, *sum = value ? value : &unused;
    switch (r->form) {
    case GKD_DIV_FORM_ZERO:
        break;
    case GKD_DIV_FORM_FORWARD_KL:
        *sum += shared ? shared->kl_fwd : gkd_div_kl_term(a, b, p, q);
        g = -p;
        break;
    case GKD_DIV_FORM_REVERSE_KL:
        *sum += shared ? shared->kl_rev : gkd_div_kl_rev_term(a, b, p, q);
        /* dKL(Q||P)/dQ = log Q - log P + 1; the 1 is a shared constant. */
        if (b != -INFINITY) g = a == -INFINITY ? INFINITY : q * (b - a);
        break;
    case GKD_DIV_FORM_MIX: {
        gkd_div_mix m =
            shared && gkd_div_uses_half(r) ? shared->half : gkd_div_mix_eval(a, b, p, q, r->wp, r->wq, need);
        if (r->ca != 0.0) *sum += r->ca * m.kl_pm;
        if (r->cb != 0.0) *sum += r->cb * m.kl_qm;
        if (b == -INFINITY || !need) break;
        /* d/dQ [ca KL(P||M) + cb KL(Q||M)] = -ca wq P/M + cb (log(Q/M) + 1 - wq Q/M). */
        if (r->jsd_gradient)
            g = -r->cb * q * m.lmq;
        else
            g = q * (-r->ca * r->wq * exp(-m.lmp) - r->cb * (m.lmq + r->wq * exp(-m.lmq)));
        break;
    }
    case GKD_DIV_FORM_TV:
        *sum += 0.5 * gkd_div_abs_diff(a, b, p, q);
        g = b > a ? 0.5 * q : b < a ? -0.5 * q : 0.0;
        break;
    }
    return g;
}

/* The gradient written at student entry v, scale * (QG_v - Q_v Gbar), 0 at a masked student logit (a
 * constant, not a free variable). */
GKD_HD static inline float gkd_div_grad_entry(double scale, double qg, double b, double q, double gbar) {
    return b == -INFINITY ? 0.0f : (float)(scale * (qg - q * gbar));
}

/* The gradient at the student's top entry u, where Q_u (G_u - Gbar) cancels when Q saturates
 * (Q_u -> 1, G_u -> Gbar): written as QG_u (1 - Q_u) - Q_u sum_{v != u} QG_v, with
 * 1 - Q_u = -expm1(log Q_u), it keeps its relative accuracy. qg_rest = sum_{v != u} QG_v. */
GKD_HD static inline float gkd_div_grad_top(double scale, double qg_top, double lq_top, double q_top,
                                            double qg_rest) {
    return (float)(scale * (qg_top * -expm1(lq_top) - q_top * qg_rest));
}

/* ---------------------------------------------------------------------------------------------- */
/* Row faults, shared so that the CUDA rows report exactly what the CPU rows do. */

typedef enum {
    GKD_DIV_FAULT_NONE,
    GKD_DIV_FAULT_TEACHER_LOGIT, /* NaN or +inf */
    GKD_DIV_FAULT_STUDENT_LOGIT,
    GKD_DIV_FAULT_TEACHER_MASKED, /* every logit -inf */
    GKD_DIV_FAULT_STUDENT_MASKED,
    GKD_DIV_FAULT_INFINITE_GRADIENT,
    GKD_DIV_FAULT_NOMEM,
} gkd_div_fault;

#ifdef __cplusplus
extern "C" {
#endif
/* Sets the error for `fault` at row `row` (entry `entry` for a bad logit) of the divergence named `name`
 * and returns its status (GKD_OK for GKD_DIV_FAULT_NONE). Defined in divergence.c. */
gkd_status gkd_div_report_fault(gkd_div_fault fault, int row, int entry, const char *name);
#ifdef __cplusplus
}
#endif

#endif
