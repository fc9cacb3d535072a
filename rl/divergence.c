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
 *   approximation reuses it with the tail bucket's G for every entry outside the kept set.
 * - The per-entry formulas live in divergence_terms.h, shared with the CUDA kernels; this file owns the
 *   rows: log-softmax, top-k, the gradient assembly, threads and fault reporting. The fused pass
 *   (gkd_divergence_rows_ex) evaluates the metrics' terms and the divergence's in the same loop over
 *   entries, sharing the terms they have in common. */
#include "rl/divergence.h"
#include "rl/divergence_fast.h"
#include "rl/divergence_terms.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------- */
/* Names and settings */

/* One row per name. `param` is the scalar setting the kind reads (the one a "beta" schedule drives);
 * the first row of a kind and convention gives its canonical name. Parsing, naming, checking and the
 * parameter accessors read this table only: a new kind is a row here, its value in divergence.h and its
 * case in gkd_div_resolve (divergence_terms.h). */
typedef enum { PARAM_NONE, PARAM_BETA, PARAM_SKEW } divergence_param;
static const struct {
    const char *name;
    gkd_divergence_kind kind;
    gkd_jsd_convention convention;
    divergence_param param;
} divergence_names[] = {
    {"forward_kl", GKD_DIV_FORWARD_KL, GKD_JSD_PAPER, PARAM_NONE},
    {"reverse_kl", GKD_DIV_REVERSE_KL, GKD_JSD_PAPER, PARAM_NONE},
    {"jsd", GKD_DIV_JSD, GKD_JSD_PAPER, PARAM_BETA},
    {"jsd_paper", GKD_DIV_JSD, GKD_JSD_PAPER, PARAM_BETA},
    {"jsd_trl", GKD_DIV_JSD, GKD_JSD_TRL, PARAM_BETA},
    {"jsd_scaled", GKD_DIV_JSD, GKD_JSD_SCALED, PARAM_BETA},
    {"tv", GKD_DIV_TV, GKD_JSD_PAPER, PARAM_NONE},
    {"skew_kl", GKD_DIV_SKEW_KL, GKD_JSD_PAPER, PARAM_SKEW},
    {"skew_reverse_kl", GKD_DIV_SKEW_REVERSE_KL, GKD_JSD_PAPER, PARAM_SKEW},
};
enum { DIVERGENCE_NAME_COUNT = sizeof divergence_names / sizeof divergence_names[0] };

/* The row of d's kind and convention, else the first of its kind (conventions other than JSD's mean
 * nothing); -1 for a kind with no row. */
static int row_of(const gkd_divergence *d) {
    int first = -1;
    for (int i = 0; i < DIVERGENCE_NAME_COUNT; i++) {
        if (divergence_names[i].kind != d->kind) continue;
        if (divergence_names[i].convention == d->convention) return i;
        if (first < 0) first = i;
    }
    return first;
}

static divergence_param param_of(const gkd_divergence *d) {
    int i = row_of(d);
    return i < 0 ? PARAM_NONE : divergence_names[i].param;
}

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

double gkd_divergence_param(const gkd_divergence *d) {
    return param_of(d) == PARAM_BETA ? d->beta : d->skew;
}

const char *gkd_divergence_param_name(const gkd_divergence *d) {
    divergence_param p = param_of(d);
    return p == PARAM_BETA ? "beta" : p == PARAM_SKEW ? "skew" : NULL;
}

void gkd_divergence_set_param(gkd_divergence *d, double value) {
    divergence_param p = param_of(d);
    if (p == PARAM_BETA) d->beta = value;
    if (p == PARAM_SKEW) d->skew = value;
}

const char *gkd_divergence_name(const gkd_divergence *d) {
    int i = row_of(d);
    return i < 0 ? "unknown" : divergence_names[i].name;
}

gkd_status gkd_divergence_check(const gkd_divergence *d) {
    if (!d) return gkd_error_set(GKD_ERR_ARG, "divergence settings are NULL");
    if (row_of(d) < 0)
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
    if (d->precision != GKD_DIV_EXACT && d->precision != GKD_DIV_FLOAT32)
        return gkd_error_set(GKD_ERR_ARG, "divergence precision = %d: not exact or float32", (int)d->precision);
    return GKD_OK;
}

/* Two distributions over the same n entries or buckets: logs and probabilities of each. */
typedef struct {
    double *lp, *lq, *p, *q;
} dists;

/* The divergence between d's two distributions (n entries). qg (n) or NULL receives
 * QG_j = Q_j dD/dQ_j up to a shared constant; *gbar = sum_j QG_j (+inf when a gradient is infinite).
 * metrics (or NULL) receives the logged metrics of the same entries, their shared terms computed once. */
static double eval_entries(const gkd_div_resolved *r, const dists *d, int n, double *qg, double *gbar,
                           gkd_token_metrics *metrics) {
    double value = 0.0, qg_sum = 0.0;
    int need = gkd_div_mix_need(r, qg != NULL);
    if (metrics) *metrics = (gkd_token_metrics){0};
    for (int j = 0; j < n; j++) {
        double a = d->lp[j], b = d->lq[j], p = d->p[j], q = d->q[j], g;
        if (metrics) {
            gkd_div_shared s = gkd_div_shared_eval(a, b, p, q, gkd_div_uses_half(r) ? need : 0);
            gkd_div_metrics_add(&s, a, b, p, q, metrics);
            g = gkd_div_entry_add(r, need, &s, a, b, p, q, &value);
        } else {
            g = gkd_div_entry_add(r, need, NULL, a, b, p, q, &value);
        }
        if (qg) qg[j] = g;
        qg_sum += g;
    }
    *gbar = qg_sum;
    return value;
}

/* ---------------------------------------------------------------------------------------------- */
/* Rows */

/* log-softmax of x / temperature into out (n) and softmax into prob (n), in double; *top receives the
 * index of the largest entry. The largest entry adds exactly 1 to the normaliser, so its log is log1p of
 * the rest: a peaked row's top log-probability, -log1p(rest), then keeps its digits where log(1 + rest)
 * would round rest away. */
static gkd_div_fault log_softmax(const float *x, int n, double temperature, double *out, double *prob,
                                 gkd_div_fault bad_logit, gkd_div_fault all_masked, int *bad_entry,
                                 int *top) {
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
    return GKD_DIV_FAULT_NONE;
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
static int select_kept(const gkd_div_resolved *r, const float *t, const float *s, int V, int k, scratch *w) {
    int n = 0;
    if (r->select != GKD_DIV_SELECT_STUDENT) {
        select_top_k(t, V, k, w->heap);
        memcpy(w->kept, w->heap, (size_t)k * sizeof(int));
        n = k;
    }
    if (r->select != GKD_DIV_SELECT_TEACHER) {
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

/* One row: value, and when dst is given, scale * dD/ds into dst (V); when metrics is given, the logged
 * metrics (exact whatever k) from the same log-probabilities. */
static gkd_div_fault divergence_row(const gkd_div_resolved *r, int k, const float *t, const float *s, int V,
                                    double temperature, scratch *w, double *value, float *dst, double scale,
                                    gkd_token_metrics *metrics, int *bad_entry) {
    dists *row = &w->row;
    int t_top, s_top;
    gkd_div_fault fault = log_softmax(t, V, temperature, row->lp, row->p, GKD_DIV_FAULT_TEACHER_LOGIT,
                                      GKD_DIV_FAULT_TEACHER_MASKED, bad_entry, &t_top);
    if (fault == GKD_DIV_FAULT_NONE)
        fault = log_softmax(s, V, 1.0, row->lq, row->q, GKD_DIV_FAULT_STUDENT_LOGIT,
                            GKD_DIV_FAULT_STUDENT_MASKED, bad_entry, &s_top);
    if (fault != GKD_DIV_FAULT_NONE) {
        *value = NAN;
        if (metrics) *metrics = (gkd_token_metrics){NAN, NAN, NAN, NAN, NAN};
        if (dst) memset(dst, 0, (size_t)V * sizeof(float));
        return fault;
    }
    int want_grad = dst && scale != 0.0;
    double gbar;
    if (k == 0) {
        *value = eval_entries(r, row, V, want_grad ? w->qg : NULL, &gbar, metrics);
    } else {
        if (metrics) {
            gkd_div_resolved none = {.form = GKD_DIV_FORM_ZERO};
            eval_entries(&none, row, V, NULL, &gbar, metrics);
        }
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
        *value = eval_entries(r, b, n_kept + 1, want_grad ? w->bqg : NULL, &gbar, NULL);
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
    if (!dst) return GKD_DIV_FAULT_NONE;
    if (!want_grad) {
        memset(dst, 0, (size_t)V * sizeof(float));
        return GKD_DIV_FAULT_NONE;
    }
    if (!isfinite(gbar)) {
        memset(dst, 0, (size_t)V * sizeof(float));
        return GKD_DIV_FAULT_INFINITE_GRADIENT;
    }
    double qg_rest = 0.0; /* sum of QG_v over v != s_top */
    for (int v = 0; v < V; v++) {
        dst[v] = gkd_div_grad_entry(scale, w->qg[v], row->lq[v], row->q[v], gbar);
        if (v != s_top) qg_rest += w->qg[v];
    }
    dst[s_top] = gkd_div_grad_top(scale, w->qg[s_top], row->lq[s_top], row->q[s_top], qg_rest);
    return GKD_DIV_FAULT_NONE;
}

gkd_status gkd_div_report_fault(gkd_div_fault fault, int row, int entry, const char *name) {
    switch (fault) {
    case GKD_DIV_FAULT_NONE:
        return GKD_OK;
    case GKD_DIV_FAULT_TEACHER_LOGIT:
    case GKD_DIV_FAULT_STUDENT_LOGIT:
        return gkd_error_set(GKD_ERR_ARG, "row %d, entry %d: %s logit is not finite or -inf", row, entry,
                             fault == GKD_DIV_FAULT_TEACHER_LOGIT ? "teacher" : "student");
    case GKD_DIV_FAULT_TEACHER_MASKED:
    case GKD_DIV_FAULT_STUDENT_MASKED:
        return gkd_error_set(GKD_ERR_ARG, "row %d: every %s logit is -inf", row,
                             fault == GKD_DIV_FAULT_TEACHER_MASKED ? "teacher" : "student");
    case GKD_DIV_FAULT_INFINITE_GRADIENT:
        return gkd_error_set(GKD_ERR_ARG,
                             "row %d: %s has an infinite gradient: the student gives probability to "
                             "entries the teacher masks (-inf)",
                             row, name);
    case GKD_DIV_FAULT_NOMEM:
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
    gkd_div_fault fault;
} first_fault;

static void note_fault(first_fault *f, int row, int entry, gkd_div_fault fault) {
#pragma omp critical(gkd_divergence_fault)
    if (row < f->row) *f = (first_fault){row, entry, fault};
}

/* The rows of r (k kept entries, 0: exact) with optional value, gradient and metrics; faults are reported
 * under `name`. */
static gkd_status run_rows(const gkd_div_resolved *r, int k, double temperature, const char *name,
                           const float *teacher, const float *student, int N, int V, double *value,
                           float *dstudent, const float *grad_scale, gkd_token_metrics *metrics) {
    first_fault fault = {N, -1, GKD_DIV_FAULT_NONE};
#pragma omp parallel if (N > 1) /* one row gains nothing from a thread team */
    {
        scratch w;
        int ok = scratch_init(&w, V, k);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            size_t off = (size_t)n * V;
            double row_value, scale = grad_scale ? grad_scale[n] : 1.0;
            float *dst = dstudent ? dstudent + off : NULL;
            gkd_token_metrics *m = metrics ? metrics + n : NULL;
            int entry = -1;
            gkd_div_fault f = GKD_DIV_FAULT_NOMEM;
            if (ok)
                f = divergence_row(r, k, teacher + off, student + off, V, temperature, &w, &row_value, dst,
                                   scale, m, &entry);
            else if (m)
                *m = (gkd_token_metrics){NAN, NAN, NAN, NAN, NAN};
            if (value) value[n] = ok ? row_value : NAN;
            if (f != GKD_DIV_FAULT_NONE) note_fault(&fault, n, entry, f);
        }
        scratch_free(&w);
    }
    return gkd_div_report_fault(fault.fault, fault.row, fault.entry, name);
}

/* Rows the float path has run, and of those the ones it handed to the exact row (divergence_fast.h). */
static atomic_ullong fast_rows, fast_rows_exact;

void gkd_div_fast_counts(unsigned long long *rows, unsigned long long *exact) {
    if (rows) *rows = atomic_load(&fast_rows);
    if (exact) *exact = atomic_load(&fast_rows_exact);
}

/* run_rows for GKD_DIV_FLOAT32 (k = 0): each row by the float kernel of this CPU, or, when it has a logit
 * that is not finite or the kernel cannot promise its tolerance, by the exact row (which handles masked
 * entries and reports faults). */
static gkd_status run_rows_fast(const gkd_div_resolved *r, double temperature, const char *name, const float *teacher,
                                const float *student, int N, int V, double *value, float *dstudent,
                                const float *grad_scale, gkd_token_metrics *metrics) {
    gkd_div_fast_row_fn fn;
    const char *isa;
    gkd_status st = gkd_div_fast_select(&fn, &isa);
    if (st != GKD_OK) return st;
    if (!fn) /* no AVX2: the exact path */
        return run_rows(r, 0, temperature, name, teacher, student, N, V, value, dstudent, grad_scale, metrics);
    gkd_div_fast_row fr = {.form = r->form, .wp = (float)r->wp, .wq = (float)r->wq, .ca = (float)r->ca,
                           .cb = (float)r->cb, .jsd_gradient = r->jsd_gradient, .half = gkd_div_uses_half(r),
                           .inv_t = 1.0 / temperature};
    fr.g_alpha = r->form == GKD_DIV_FORM_REVERSE_KL ? 1.0 : 0.0;
    fr.g_beta = r->form == GKD_DIV_FORM_MIX ? -r->cb : 0.0;
    fr.g_c0 = r->form == GKD_DIV_FORM_MIX ? log(r->wp / r->wq) : 0.0;
    fr.ih = (float)fr.inv_t;
    fr.il = (float)(fr.inv_t - (double)fr.ih);
    first_fault fault = {N, -1, GKD_DIV_FAULT_NONE};
#pragma omp parallel if (N > 1)
    {
        float *fs = malloc((2 * (size_t)V + 80) * sizeof *fs);
        scratch w = {0};
        int have_exact = 0;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            size_t off = (size_t)n * V;
            double row_value = NAN, scale = grad_scale ? grad_scale[n] : 1.0;
            float *dst = dstudent ? dstudent + off : NULL;
            gkd_token_metrics *m = metrics ? metrics + n : NULL;
            atomic_fetch_add_explicit(&fast_rows, 1, memory_order_relaxed);
            if (fs && fn(&fr, teacher + off, student + off, V, fs, &row_value, dst, scale, m) == 0) {
                if (value) value[n] = row_value;
                continue;
            }
            atomic_fetch_add_explicit(&fast_rows_exact, 1, memory_order_relaxed);
            gkd_div_fault f = GKD_DIV_FAULT_NOMEM;
            int entry = -1;
            if (!have_exact) have_exact = scratch_init(&w, V, 0) ? 1 : -1;
            if (fs && have_exact > 0)
                f = divergence_row(r, 0, teacher + off, student + off, V, temperature, &w, &row_value, dst, scale,
                                   m, &entry);
            else if (m)
                *m = (gkd_token_metrics){NAN, NAN, NAN, NAN, NAN};
            if (value) value[n] = row_value;
            if (f != GKD_DIV_FAULT_NONE) note_fault(&fault, n, entry, f);
        }
        if (have_exact > 0) scratch_free(&w);
        free(fs);
    }
    return gkd_div_report_fault(fault.fault, fault.row, fault.entry, name);
}

gkd_status gkd_divergence_rows_ex(const gkd_divergence *d, const float *teacher, const float *student, int N,
                                  int V, double *value, float *dstudent, const float *grad_scale,
                                  gkd_token_metrics *metrics) {
    gkd_status st = gkd_divergence_check(d);
    if (st == GKD_OK) st = check_rows(teacher, student, N, V);
    if (st != GKD_OK) return st;
    gkd_div_resolved r = gkd_div_resolve(d);
    int k = d->top_k < V ? d->top_k : V;
    if (d->precision == GKD_DIV_FLOAT32 && k == 0)
        return run_rows_fast(&r, d->teacher_temperature, gkd_divergence_name(d), teacher, student, N, V, value,
                             dstudent, grad_scale, metrics);
    return run_rows(&r, k, d->teacher_temperature, gkd_divergence_name(d), teacher, student, N, V, value,
                    dstudent, grad_scale, metrics);
}

gkd_status gkd_divergence_rows(const gkd_divergence *d, const float *teacher, const float *student, int N,
                               int V, double *value, float *dstudent, const float *grad_scale) {
    return gkd_divergence_rows_ex(d, teacher, student, N, V, value, dstudent, grad_scale, NULL);
}

gkd_status gkd_divergence_metrics(const float *teacher, const float *student, int N, int V,
                                  double teacher_temperature, gkd_token_metrics *out) {
    gkd_status st = check_rows(teacher, student, N, V);
    if (st != GKD_OK) return st;
    if (!(teacher_temperature > 0.0 && isfinite(teacher_temperature)))
        return gkd_error_set(GKD_ERR_ARG, "metrics teacher_temperature = %g: must be finite and > 0",
                             teacher_temperature);
    gkd_div_resolved none = {.form = GKD_DIV_FORM_ZERO};
    return run_rows(&none, 0, teacher_temperature, "metrics", teacher, student, N, V, NULL, NULL, NULL, out);
}
