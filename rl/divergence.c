/* Token-level divergences and their gradients with respect to the student logits (divergence.h).
 * Rules:
 * - Each row is turned once into log-probabilities and probabilities in double (log P, log Q, P, Q);
 *   the formulas take ratios from the logs, so masked (-inf) entries and probabilities below
 *   double's range stay exact, and the probabilities spare recomputing exp.
 * - Every divergence is summed as per-entry terms that are each >= 0 and computed without internal
 *   cancellation (u - log1p(u) by a series near 0, log1p/expm1 elsewhere). A sum of non-negative terms
 *   keeps the terms' relative accuracy, which is what makes JSD(beta) accurate at beta = 1e-6, where it
 *   is ~1e-6 of its parts.
 * - Gradients go through one formula: with Q = softmax(s) and G_j = dD/dQ_j,
 *   dD/ds_u = Q_u (G_u - sum_j Q_j G_j). Each divergence only supplies QG_j = Q_j G_j (finite where G_j
 *   is not: forward KL's G = -P/Q), up to a constant added to every G_j, which cancels. The top-k
 *   approximation reuses it with the tail bucket's G for every entry outside the kept set. */
#include "rl/divergence.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* Names and settings */

static const struct {
    const char *name;
    gkd_divergence_kind kind;
    gkd_jsd_convention convention;
} divergence_names[] = {
    {"forward_kl", GKD_DIV_FORWARD_KL, GKD_JSD_PAPER},
    {"reverse_kl", GKD_DIV_REVERSE_KL, GKD_JSD_PAPER},
    {"jsd", GKD_DIV_JSD, GKD_JSD_PAPER},
    {"jsd_paper", GKD_DIV_JSD, GKD_JSD_PAPER},
    {"jsd_trl", GKD_DIV_JSD, GKD_JSD_TRL},
    {"jsd_scaled", GKD_DIV_JSD, GKD_JSD_SCALED},
    {"tv", GKD_DIV_TV, GKD_JSD_PAPER},
    {"skew_kl", GKD_DIV_SKEW_KL, GKD_JSD_PAPER},
    {"skew_reverse_kl", GKD_DIV_SKEW_REVERSE_KL, GKD_JSD_PAPER},
};
enum { DIVERGENCE_NAME_COUNT = sizeof divergence_names / sizeof divergence_names[0] };

gkd_status gkd_divergence_parse(const char *name, gkd_divergence *out) {
    if (!name) return gkd_error_set(GKD_ERR_ARG, "divergence name is NULL");
    for (int i = 0; i < DIVERGENCE_NAME_COUNT; i++) {
        if (strcmp(name, divergence_names[i].name) != 0) continue;
        *out = (gkd_divergence){
            .kind = divergence_names[i].kind,
            .beta = 0.5,
            .convention = divergence_names[i].convention,
            .skew = 0.1,
            .teacher_temperature = 1.0,
            .top_k = 0,
        };
        return GKD_OK;
    }
    char valid[256] = "";
    for (int i = 0; i < DIVERGENCE_NAME_COUNT; i++) {
        if (i) strcat(valid, ", ");
        strcat(valid, divergence_names[i].name);
    }
    return gkd_error_set(GKD_ERR_ARG, "unknown divergence '%s' (valid: %s)", name, valid);
}

const char *gkd_divergence_name(const gkd_divergence *d) {
    switch (d->kind) {
    case GKD_DIV_FORWARD_KL:
        return "forward_kl";
    case GKD_DIV_REVERSE_KL:
        return "reverse_kl";
    case GKD_DIV_JSD:
        return d->convention == GKD_JSD_TRL      ? "jsd_trl"
               : d->convention == GKD_JSD_SCALED ? "jsd_scaled"
                                                 : "jsd";
    case GKD_DIV_TV:
        return "tv";
    case GKD_DIV_SKEW_KL:
        return "skew_kl";
    case GKD_DIV_SKEW_REVERSE_KL:
        return "skew_reverse_kl";
    }
    return "unknown";
}

gkd_status gkd_divergence_check(const gkd_divergence *d) {
    if (!d) return gkd_error_set(GKD_ERR_ARG, "divergence settings are NULL");
    if ((unsigned)d->kind > GKD_DIV_SKEW_REVERSE_KL)
        return gkd_error_set(GKD_ERR_ARG, "divergence kind = %d: not a gkd_divergence_kind", (int)d->kind);
    if ((unsigned)d->convention > GKD_JSD_SCALED)
        return gkd_error_set(GKD_ERR_ARG, "divergence convention = %d: not a gkd_jsd_convention",
                             (int)d->convention);
    /* Written as !(in range) so that NaN fails too. */
    if (!(d->beta >= 0.0 && d->beta <= 1.0))
        return gkd_error_set(GKD_ERR_ARG, "divergence beta = %g: must lie in [0, 1]", d->beta);
    if (!(d->skew >= 0.0 && d->skew <= 1.0))
        return gkd_error_set(GKD_ERR_ARG, "divergence skew = %g: must lie in [0, 1]", d->skew);
    if (!(d->teacher_temperature > 0.0 && isfinite(d->teacher_temperature)))
        return gkd_error_set(GKD_ERR_ARG, "divergence teacher_temperature = %g: must be finite and > 0",
                             d->teacher_temperature);
    if (d->top_k < 0) return gkd_error_set(GKD_ERR_ARG, "divergence top_k = %d: must be >= 0", d->top_k);
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Per-entry terms. a = log P_j, b = log Q_j; both <= 0 or -inf. */

/* u - log1p(u) >= 0 for u > -1, given log1p(u) computed by the caller (often from a better-conditioned
 * expression than log1p of the rounded u). Near 0 both parts are ~u and their difference ~u^2/2, so
 * there it is a series in w = u/(2+u): log1p(u) = 2 atanh(w) and u = 2w/(1-w) give
 * u - log1p(u) = 2w^2/(1-w) - 2w^3 (1/3 + w^2/5 + w^4/7 + ...), whose two parts do not cancel. */
static double u_minus_log1p(double u, double log1p_u) {
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
static double kl_term(double a, double b, double p, double q) {
    if (a == -INFINITY) return q;
    if (b == -INFINITY) return INFINITY;
    double x = b - a;
    if (fabs(x) < 0.5) return p * u_minus_log1p(expm1(x), x);
    return q - p * (1.0 + x);
}

/* For the mixture M = wp P + wq Q (wp, wq > 0): the non-negative terms of KL(P||M) and KL(Q||M),
 * kl_pm = P log(P/M) - P + M and kl_qm = Q log(Q/M) - Q + M, and lmp = log(M/P), lmq = log(M/Q)
 * (+inf where P or Q is 0) for the gradients. */
typedef struct {
    double kl_pm, kl_qm, lmp, lmq;
} mix_term;

/* The larger side X (lx >= ly, lx finite; x = e^lx, y = e^ly) and the smaller Y, M = wx X + wy Y. With
 * rho = Y/X in [0, 1]: M/X - 1 = wy (rho - 1) lies in [-wy, 0], safe for log1p. M/Y - 1 =
 * uy = wx (1/rho - 1) may be huge; from uy >= 1 on, Y (uy - log1p(uy)) is written as
 * wx (X - Y) - Y log(M/Y), whose parts cannot cancel (log1p(uy) <= 0.7 uy there) and which needs
 * neither 1/rho nor Y to be representable. */
static void mix_larger_first(double lx, double ly, double x, double y, double wx, double wy, double *kl_x,
                             double *kl_y, double *lmx, double *lmy) {
    double d = ly - lx, rho_m1 = expm1(d);
    double rho = y >= DBL_MIN ? y / x : exp(d);
    double ux = wy * rho_m1;
    /* log1p loses accuracy as 1 + ux -> 0, where the sum wx + wy rho has none to lose. */
    *lmx = ux > -0.5 ? log1p(ux) : log(wx + wy * rho);
    *kl_x = x * u_minus_log1p(ux, *lmx);
    if (ly == -INFINITY) {
        *kl_y = wx * x; /* Y log(Y/M) - Y + M with Y = 0 */
        *lmy = INFINITY;
        return;
    }
    double uy = wx * (-rho_m1 / rho);
    if (uy < 1.0) {
        *lmy = log1p(uy);
        *kl_y = y * u_minus_log1p(uy, *lmy);
    } else {
        *lmy = *lmx - d;
        *kl_y = wx * x * -rho_m1 - y * *lmy;
    }
}

static mix_term mix_eval(double a, double b, double p, double q, double wp, double wq) {
    mix_term m = {0.0, 0.0, INFINITY, INFINITY};
    if (a == -INFINITY && b == -INFINITY) return m;
    if (a >= b)
        mix_larger_first(a, b, p, q, wp, wq, &m.kl_pm, &m.kl_qm, &m.lmp, &m.lmq);
    else
        mix_larger_first(b, a, q, p, wq, wp, &m.kl_qm, &m.kl_pm, &m.lmq, &m.lmp);
    return m;
}

/* |P - Q| as the larger times -expm1(log ratio): a product, not a cancellation. */
static double abs_diff(double a, double b, double p, double q) {
    if (a == -INFINITY && b == -INFINITY) return 0.0;
    return a >= b ? -p * expm1(b - a) : -q * expm1(a - b);
}

/* ---------------------------------------------------------------------------------------------- */
/* A divergence setting resolved to the computation it needs: endpoints routed to their limits. */

typedef enum { FORM_ZERO, FORM_FORWARD_KL, FORM_REVERSE_KL, FORM_MIX, FORM_TV } form_kind;
typedef enum { SELECT_TEACHER, SELECT_STUDENT, SELECT_UNION } select_kind;

typedef struct {
    form_kind form;
    select_kind select; /* which top-k entries the approximation keeps */
    /* FORM_MIX: M = wp P + wq Q, value = ca KL(P||M) + cb KL(Q||M). */
    double wp, wq, ca, cb;
    /* FORM_MIX: when ca/cb = wp/wq (a JSD) dD/dQ_j reduces to cb log(Q_j/M_j), which avoids summing
     * O(1) parts into an O(beta) gradient. */
    int jsd_gradient;
} resolved;

static resolved resolve(const gkd_divergence *d) {
    resolved r = {.form = FORM_ZERO, .select = SELECT_UNION};
    switch (d->kind) {
    case GKD_DIV_FORWARD_KL:
        r.form = FORM_FORWARD_KL;
        r.select = SELECT_TEACHER;
        break;
    case GKD_DIV_REVERSE_KL:
        r.form = FORM_REVERSE_KL;
        r.select = SELECT_STUDENT;
        break;
    case GKD_DIV_JSD: {
        double beta = d->beta;
        if (beta == 0.0 || beta == 1.0) {
            if (d->convention == GKD_JSD_PAPER)
                r.form = FORM_ZERO;
            else
                r.form = beta == 0.0 ? FORM_FORWARD_KL : FORM_REVERSE_KL;
            break;
        }
        r.form = FORM_MIX;
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
        r.form = FORM_TV;
        break;
    case GKD_DIV_SKEW_KL:
        r.select = SELECT_TEACHER;
        if (d->skew == 1.0) break;
        if (d->skew == 0.0) {
            r.form = FORM_FORWARD_KL;
            break;
        }
        r.form = FORM_MIX;
        r.wp = d->skew;
        r.wq = 1.0 - d->skew;
        r.ca = 1.0;
        break;
    case GKD_DIV_SKEW_REVERSE_KL:
        r.select = SELECT_STUDENT;
        if (d->skew == 1.0) break;
        if (d->skew == 0.0) {
            r.form = FORM_REVERSE_KL;
            break;
        }
        r.form = FORM_MIX;
        r.wp = 1.0 - d->skew;
        r.wq = d->skew;
        r.cb = 1.0;
        break;
    }
    return r;
}

/* Two distributions over the same n entries or buckets: logs and probabilities of each. */
typedef struct {
    double *lp, *lq, *p, *q;
} dists;

/* The divergence between d's two distributions (n entries). qg (n) or NULL receives
 * QG_j = Q_j dD/dQ_j up to a shared constant; *gbar = sum_j QG_j (+inf when a gradient is infinite). */
static double eval_entries(const resolved *r, const dists *d, int n, double *qg, double *gbar) {
    double value = 0.0, qg_sum = 0.0;
    for (int j = 0; j < n; j++) {
        double a = d->lp[j], b = d->lq[j], p = d->p[j], q = d->q[j], g = 0.0;
        switch (r->form) {
        case FORM_ZERO:
            break;
        case FORM_FORWARD_KL:
            value += kl_term(a, b, p, q);
            g = -p;
            break;
        case FORM_REVERSE_KL:
            value += kl_term(b, a, q, p);
            /* dKL(Q||P)/dQ = log Q - log P + 1; the 1 is a shared constant. */
            if (b != -INFINITY) g = a == -INFINITY ? INFINITY : q * (b - a);
            break;
        case FORM_MIX: {
            mix_term m = mix_eval(a, b, p, q, r->wp, r->wq);
            if (r->ca != 0.0) value += r->ca * m.kl_pm;
            if (r->cb != 0.0) value += r->cb * m.kl_qm;
            if (b == -INFINITY) break;
            /* d/dQ [ca KL(P||M) + cb KL(Q||M)] = -ca wq P/M + cb (log(Q/M) + 1 - wq Q/M). */
            if (r->jsd_gradient)
                g = -r->cb * q * m.lmq;
            else
                g = q * (-r->ca * r->wq * exp(-m.lmp) - r->cb * (m.lmq + r->wq * exp(-m.lmq)));
            break;
        }
        case FORM_TV: {
            value += 0.5 * abs_diff(a, b, p, q);
            g = b > a ? 0.5 * q : b < a ? -0.5 * q : 0.0;
            break;
        }
        }
        if (qg) qg[j] = g;
        qg_sum += g;
    }
    *gbar = qg_sum;
    return value;
}

/* ---------------------------------------------------------------------------------------------- */
/* Rows */

typedef enum {
    FAULT_NONE,
    FAULT_TEACHER_LOGIT, /* NaN or +inf */
    FAULT_STUDENT_LOGIT,
    FAULT_TEACHER_MASKED, /* every logit -inf */
    FAULT_STUDENT_MASKED,
    FAULT_INFINITE_GRADIENT,
    FAULT_NOMEM,
} row_fault;

/* log-softmax of x / temperature into out (n) and softmax into prob (n), in double; *top receives the
 * index of the largest entry. The largest entry adds exactly 1 to the normaliser, so its log is log1p of
 * the rest: a peaked row's top log-probability, -log1p(rest), then keeps its digits where log(1 + rest)
 * would round rest away. */
static row_fault log_softmax(const float *x, int n, double temperature, double *out, double *prob,
                             row_fault bad_logit, row_fault all_masked, int *bad_entry, int *top) {
    double max = -INFINITY;
    int arg = 0;
    for (int v = 0; v < n; v++) {
        if (isnan(x[v]) || x[v] == INFINITY) {
            *bad_entry = v;
            return bad_logit;
        }
        out[v] = (double)x[v] / temperature;
        if (out[v] > max) {
            max = out[v];
            arg = v;
        }
    }
    if (max == -INFINITY) return all_masked;
    double rest = 0.0;
    for (int v = 0; v < n; v++) {
        out[v] -= max;
        prob[v] = exp(out[v]);
        if (v != arg) rest += prob[v];
    }
    /* Subtracting max and log1p(rest) one after the other: their sum, rounded, would bury rest. */
    double log_norm = log1p(rest), norm = 1.0 + rest;
    for (int v = 0; v < n; v++) {
        out[v] -= log_norm;
        prob[v] /= norm;
    }
    *top = arg;
    return FAULT_NONE;
}

/* Per-thread scratch, allocated once per call: one block of doubles, one of ints. */
typedef struct {
    dists row;     /* (V) each */
    double *qg;    /* (V) */
    dists buckets; /* (2k+1) each: the kept entries and the tail bucket */
    double *bqg;   /* (2k+1) */
    int *heap;     /* (k) */
    int *kept;     /* (2k) */
    double *block;
} scratch;

static int scratch_init(scratch *w, int V, int k) {
    memset(w, 0, sizeof *w);
    size_t nv = (size_t)V, nb = k > 0 ? (size_t)2 * k + 1 : 0;
    w->block = malloc((5 * nv + 5 * nb) * sizeof(double));
    w->heap = k > 0 ? malloc((size_t)3 * k * sizeof(int)) : NULL;
    if (!w->block || (k > 0 && !w->heap)) return 0;
    double *b = w->block;
    double **slots[] = {&w->row.lp, &w->row.lq, &w->row.p, &w->row.q, &w->qg};
    for (int i = 0; i < 5; i++, b += nv) *slots[i] = b;
    double **bslots[] = {&w->buckets.lp, &w->buckets.lq, &w->buckets.p, &w->buckets.q, &w->bqg};
    for (int i = 0; i < 5; i++, b += nb) *bslots[i] = b;
    w->kept = k > 0 ? w->heap + k : NULL;
    return 1;
}

static void scratch_free(scratch *w) {
    free(w->block);
    free(w->heap);
}

/* Entry i ranks above entry j: larger logit, ties to the lower index (so the kept set is a function
 * of the logits alone). */
static int ranks_above(const float *x, int i, int j) {
    return x[i] > x[j] || (x[i] == x[j] && i < j);
}

static void heap_sift_down(const float *x, int *heap, int k, int i) {
    for (;;) {
        int worst = i, l = 2 * i + 1, r = l + 1;
        if (l < k && ranks_above(x, heap[worst], heap[l])) worst = l;
        if (r < k && ranks_above(x, heap[worst], heap[r])) worst = r;
        if (worst == i) return;
        int tmp = heap[i];
        heap[i] = heap[worst];
        heap[worst] = tmp;
        i = worst;
    }
}

/* The k (<= n) top-ranked entries of x into heap (k), in no order: a heap whose root is the lowest
 * ranked of those kept, so most entries cost one comparison. */
static void select_top_k(const float *x, int n, int k, int *heap) {
    for (int i = 0; i < k; i++) heap[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(x, heap, k, i);
    for (int v = k; v < n; v++) {
        if (!ranks_above(x, v, heap[0])) continue;
        heap[0] = v;
        heap_sift_down(x, heap, k, 0);
    }
}

static int compare_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The kept entries for the top-k approximation, sorted by index, without repeats; returns their count. */
static int select_kept(const resolved *r, const float *t, const float *s, int V, int k, scratch *w) {
    int n = 0;
    if (r->select != SELECT_STUDENT) {
        select_top_k(t, V, k, w->heap);
        memcpy(w->kept, w->heap, (size_t)k * sizeof(int));
        n = k;
    }
    if (r->select != SELECT_TEACHER) {
        select_top_k(s, V, k, w->heap);
        memcpy(w->kept + n, w->heap, (size_t)k * sizeof(int));
        n += k;
    }
    qsort(w->kept, (size_t)n, sizeof(int), compare_int);
    int unique = 0;
    for (int i = 0; i < n; i++)
        if (unique == 0 || w->kept[i] != w->kept[unique - 1]) w->kept[unique++] = w->kept[i];
    return unique;
}

/* log of the mass outside the kept entries (sorted indices kept[0..n_kept)), summed directly rather
 * than as 1 - kept mass, which would cancel when the tail is small; in log space only when the tail's
 * probabilities are below double's range, where a zero sum would read as a masked bucket. */
static double tail_log_mass(const double *l, const double *prob, int V, const int *kept, int n_kept) {
    double mass = 0.0;
    for (int v = 0, j = 0; v < V; v++) {
        if (j < n_kept && kept[j] == v) {
            j++;
            continue;
        }
        mass += prob[v];
    }
    if (mass >= 1e-290) return log(mass);
    double max = -INFINITY;
    for (int v = 0, j = 0; v < V; v++) {
        if (j < n_kept && kept[j] == v) {
            j++;
            continue;
        }
        if (l[v] > max) max = l[v];
    }
    if (max == -INFINITY) return -INFINITY;
    double sum = 0.0;
    for (int v = 0, j = 0; v < V; v++) {
        if (j < n_kept && kept[j] == v) {
            j++;
            continue;
        }
        sum += exp(l[v] - max);
    }
    return max + log(sum);
}

/* One row: value, and when dst is given, scale * dD/ds into dst (V). */
static row_fault divergence_row(const resolved *r, int k, const float *t, const float *s, int V,
                                double temperature, scratch *w, double *value, float *dst, double scale,
                                int *bad_entry) {
    dists *row = &w->row;
    int t_top, s_top;
    row_fault fault = log_softmax(t, V, temperature, row->lp, row->p, FAULT_TEACHER_LOGIT,
                                  FAULT_TEACHER_MASKED, bad_entry, &t_top);
    if (fault == FAULT_NONE)
        fault = log_softmax(s, V, 1.0, row->lq, row->q, FAULT_STUDENT_LOGIT, FAULT_STUDENT_MASKED, bad_entry,
                            &s_top);
    if (fault != FAULT_NONE) {
        *value = NAN;
        if (dst) memset(dst, 0, (size_t)V * sizeof(float));
        return fault;
    }
    int want_grad = dst && scale != 0.0;
    double gbar;
    if (k == 0) {
        *value = eval_entries(r, row, V, want_grad ? w->qg : NULL, &gbar);
    } else {
        dists *b = &w->buckets;
        int n_kept = select_kept(r, t, s, V, k, w);
        for (int j = 0; j < n_kept; j++) {
            int v = w->kept[j];
            b->lp[j] = row->lp[v];
            b->lq[j] = row->lq[v];
            b->p[j] = row->p[v];
            b->q[j] = row->q[v];
        }
        b->lp[n_kept] = tail_log_mass(row->lp, row->p, V, w->kept, n_kept);
        b->lq[n_kept] = tail_log_mass(row->lq, row->q, V, w->kept, n_kept);
        b->p[n_kept] = exp(b->lp[n_kept]);
        b->q[n_kept] = exp(b->lq[n_kept]);
        *value = eval_entries(r, b, n_kept + 1, want_grad ? w->bqg : NULL, &gbar);
        if (want_grad) {
            /* Entry v's own QG_v where it is kept; outside, its share of the tail bucket's,
             * Q_v G_tail = (Q_v / Q_tail) QG_tail. */
            double tail_lq = b->lq[n_kept], tail_q = b->q[n_kept], tail_qg = w->bqg[n_kept];
            for (int v = 0, j = 0; v < V; v++) {
                if (j < n_kept && w->kept[j] == v)
                    w->qg[v] = w->bqg[j++];
                else if (row->lq[v] == -INFINITY)
                    w->qg[v] = 0.0;
                else
                    w->qg[v] = (tail_q >= DBL_MIN ? row->q[v] / tail_q : exp(row->lq[v] - tail_lq)) * tail_qg;
            }
        }
    }
    if (!dst) return FAULT_NONE;
    if (!want_grad) {
        memset(dst, 0, (size_t)V * sizeof(float));
        return FAULT_NONE;
    }
    if (!isfinite(gbar)) {
        memset(dst, 0, (size_t)V * sizeof(float));
        return FAULT_INFINITE_GRADIENT;
    }
    double qg_rest = 0.0; /* sum of QG_v over v != s_top */
    for (int v = 0; v < V; v++) {
        /* A masked student logit is a constant, not a free variable: no gradient. */
        dst[v] = row->lq[v] == -INFINITY ? 0.0f : (float)(scale * (w->qg[v] - row->q[v] * gbar));
        if (v != s_top) qg_rest += w->qg[v];
    }
    /* At the student's top entry Q_u (G_u - Gbar) cancels when Q saturates (Q_u -> 1, G_u -> Gbar).
     * Written as QG_u (1 - Q_u) - Q_u sum_{v != u} QG_v, with 1 - Q_u = -expm1(log Q_u), it keeps its
     * relative accuracy. */
    double lq_top = row->lq[s_top];
    dst[s_top] = (float)(scale * (w->qg[s_top] * -expm1(lq_top) - row->q[s_top] * qg_rest));
    return FAULT_NONE;
}

static gkd_status report_fault(row_fault fault, int row, int entry, const char *name) {
    switch (fault) {
    case FAULT_NONE:
        return GKD_OK;
    case FAULT_TEACHER_LOGIT:
    case FAULT_STUDENT_LOGIT:
        return gkd_error_set(GKD_ERR_ARG, "row %d, entry %d: %s logit is not finite or -inf", row, entry,
                             fault == FAULT_TEACHER_LOGIT ? "teacher" : "student");
    case FAULT_TEACHER_MASKED:
    case FAULT_STUDENT_MASKED:
        return gkd_error_set(GKD_ERR_ARG, "row %d: every %s logit is -inf", row,
                             fault == FAULT_TEACHER_MASKED ? "teacher" : "student");
    case FAULT_INFINITE_GRADIENT:
        return gkd_error_set(GKD_ERR_ARG,
                             "row %d: %s has an infinite gradient: the student gives probability to "
                             "entries the teacher masks (-inf)",
                             row, name);
    case FAULT_NOMEM:
        return gkd_error_set(GKD_ERR_NOMEM, "divergence scratch for a row");
    }
    return gkd_error_set(GKD_ERR_ARG, "row %d: unknown fault", row);
}

static gkd_status check_rows(const float *teacher, const float *student, int N, int V) {
    if (N < 0 || V < 1) return gkd_error_set(GKD_ERR_SHAPE, "divergence rows: N = %d, V = %d", N, V);
    if (N > 0 && (!teacher || !student)) return gkd_error_set(GKD_ERR_ARG, "divergence rows: NULL logits");
    return GKD_OK;
}

/* The first failing row (lowest index), whatever the thread schedule, so the message is reproducible. */
typedef struct {
    int row, entry;
    row_fault fault;
} first_fault;

static void note_fault(first_fault *f, int row, int entry, row_fault fault) {
#pragma omp critical(gkd_divergence_fault)
    if (row < f->row) *f = (first_fault){row, entry, fault};
}

gkd_status gkd_divergence_rows(const gkd_divergence *d, const float *teacher, const float *student, int N,
                               int V, double *value, float *dstudent, const float *grad_scale) {
    gkd_status st = gkd_divergence_check(d);
    if (st == GKD_OK) st = check_rows(teacher, student, N, V);
    if (st != GKD_OK) return st;
    resolved r = resolve(d);
    int k = d->top_k < V ? d->top_k : V;
    first_fault fault = {N, -1, FAULT_NONE};
#pragma omp parallel if (N > 1) /* one row gains nothing from a thread team */
    {
        scratch w;
        int ok = scratch_init(&w, V, k);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            size_t off = (size_t)n * V;
            double row_value, scale = grad_scale ? grad_scale[n] : 1.0;
            float *dst = dstudent ? dstudent + off : NULL;
            int entry = -1;
            row_fault f = ok ? divergence_row(&r, k, teacher + off, student + off, V, d->teacher_temperature,
                                              &w, &row_value, dst, scale, &entry)
                             : FAULT_NOMEM;
            if (value) value[n] = ok ? row_value : NAN;
            if (f != FAULT_NONE) note_fault(&fault, n, entry, f);
        }
        scratch_free(&w);
    }
    if (fault.fault != FAULT_NONE)
        return report_fault(fault.fault, fault.row, fault.entry, gkd_divergence_name(d));
    return GKD_OK;
}

gkd_status gkd_divergence_metrics(const float *teacher, const float *student, int N, int V,
                                  double teacher_temperature, gkd_token_metrics *out) {
    gkd_status st = check_rows(teacher, student, N, V);
    if (st != GKD_OK) return st;
    if (!(teacher_temperature > 0.0 && isfinite(teacher_temperature)))
        return gkd_error_set(GKD_ERR_ARG, "metrics teacher_temperature = %g: must be finite and > 0",
                             teacher_temperature);
    first_fault fault = {N, -1, FAULT_NONE};
#pragma omp parallel if (N > 1)
    {
        scratch w;
        int ok = scratch_init(&w, V, 0);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            size_t off = (size_t)n * V;
            gkd_token_metrics m = {NAN, NAN, NAN, NAN, NAN};
            int entry = -1;
            row_fault f = FAULT_NOMEM;
            int top;
            dists *row = &w.row;
            if (ok)
                f = log_softmax(teacher + off, V, teacher_temperature, row->lp, row->p, FAULT_TEACHER_LOGIT,
                                FAULT_TEACHER_MASKED, &entry, &top);
            if (f == FAULT_NONE)
                f = log_softmax(student + off, V, 1.0, row->lq, row->q, FAULT_STUDENT_LOGIT,
                                FAULT_STUDENT_MASKED, &entry, &top);
            if (f == FAULT_NONE) {
                m = (gkd_token_metrics){0};
                for (int v = 0; v < V; v++) {
                    double a = row->lp[v], b = row->lq[v], p = row->p[v], q = row->q[v];
                    m.forward_kl += kl_term(a, b, p, q);
                    m.reverse_kl += kl_term(b, a, q, p);
                    mix_term t = mix_eval(a, b, p, q, 0.5, 0.5);
                    m.jsd += 0.5 * (t.kl_pm + t.kl_qm);
                    if (a != -INFINITY) m.teacher_entropy -= p * a;
                    if (b != -INFINITY) m.student_entropy -= q * b;
                }
            }
            out[n] = m;
            if (f != FAULT_NONE) note_fault(&fault, n, entry, f);
        }
        scratch_free(&w);
    }
    if (fault.fault != FAULT_NONE) return report_fault(fault.fault, fault.row, fault.entry, "metrics");
    return GKD_OK;
}
