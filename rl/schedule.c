/* Closed-form schedules (see schedule.h). */
#include "rl/schedule.h"

#include "core/tensor/optim.h"

#include <math.h>
#include <string.h>

/* Every closed form is a handful of these fields; the rest stay zero. */
static gkd_schedule closed_form(gkd_schedule_kind kind, double start, double end, double factor,
                                int64_t steps, int64_t warmup) {
    gkd_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.start = start;
    s.end = end;
    s.factor = factor;
    s.steps = steps;
    s.warmup = warmup;
    return s;
}

gkd_schedule gkd_schedule_constant(double value) {
    return closed_form(GKD_SCHEDULE_CONSTANT, value, value, 0.0, 0, 0);
}

gkd_schedule gkd_schedule_linear(double start, double end, int64_t steps) {
    return closed_form(GKD_SCHEDULE_LINEAR, start, end, 0.0, steps, 0);
}

gkd_schedule gkd_schedule_cosine(double start, double end, int64_t steps) {
    return closed_form(GKD_SCHEDULE_COSINE, start, end, 0.0, steps, 0);
}

gkd_schedule gkd_schedule_step(double start, double factor, int64_t every) {
    return closed_form(GKD_SCHEDULE_STEP, start, start, factor, every, 0);
}

gkd_schedule gkd_schedule_warmup(double value, int64_t steps) {
    return closed_form(GKD_SCHEDULE_WARMUP, value, value, 0.0, steps, 0);
}

gkd_schedule gkd_schedule_warmup_cosine(double peak, double min, int64_t warmup, int64_t total) {
    return closed_form(GKD_SCHEDULE_WARMUP_COSINE, peak, min, 0.0, total, warmup);
}

gkd_status gkd_schedule_piecewise(const int64_t *points, const double *values, int n, gkd_schedule *out) {
    if (n < 1 || n > GKD_SCHEDULE_MAX_POINTS)
        return gkd_error_set(GKD_ERR_ARG, "piecewise schedule: %d points (allowed 1..%d)", n, GKD_SCHEDULE_MAX_POINTS);
    for (int i = 1; i < n; i++)
        if (points[i] <= points[i - 1])
            return gkd_error_set(GKD_ERR_ARG, "piecewise schedule: points must increase (point %d)", i + 1);
    *out = gkd_schedule_constant(values[0]);
    out->kind = GKD_SCHEDULE_PIECEWISE;
    out->n_points = n;
    memcpy(out->points, points, (size_t)n * sizeof *points);
    memcpy(out->values, values, (size_t)n * sizeof *values);
    return GKD_OK;
}

gkd_status gkd_schedule_value(const gkd_schedule *s, int64_t step, double *value) {
    double frac = s->steps > 0 ? (double)step / (double)s->steps : 1.0;
    if (frac > 1.0) frac = 1.0;
    if (frac < 0.0) frac = 0.0;
    switch (s->kind) {
    case GKD_SCHEDULE_CONSTANT: *value = s->start; break;
    case GKD_SCHEDULE_LINEAR: *value = s->start + (s->end - s->start) * frac; break;
    case GKD_SCHEDULE_COSINE: *value = s->end + (s->start - s->end) * 0.5 * (1.0 + cos(M_PI * frac)); break;
    case GKD_SCHEDULE_STEP:
        *value = s->start * pow(s->factor, s->steps > 0 ? (double)(step / s->steps) : 0.0);
        break;
    case GKD_SCHEDULE_WARMUP: *value = s->start * frac; break;
    case GKD_SCHEDULE_WARMUP_COSINE:
        *value = gkd_optim_warmup_cosine(s->start, s->end, s->warmup, s->steps, step);
        break;
    case GKD_SCHEDULE_PIECEWISE: {
        int n = s->n_points;
        if (step <= s->points[0]) {
            *value = s->values[0];
        } else if (step >= s->points[n - 1]) {
            *value = s->values[n - 1];
        } else {
            int i = 1;
            while (s->points[i] < step) i++;
            double f = (double)(step - s->points[i - 1]) / (double)(s->points[i] - s->points[i - 1]);
            *value = s->values[i - 1] + (s->values[i] - s->values[i - 1]) * f;
        }
        break;
    }
    case GKD_SCHEDULE_CALLBACK: {
        int failed = 0;
        *value = s->fn(s->ctx, step, &failed);
        if (failed) return GKD_ERR_CALLBACK;
        break;
    }
    }
    return GKD_OK;
}

static int outside(double x, double lo, double hi) {
    return !(x >= lo && x <= hi);
}

gkd_status gkd_schedule_check_range(const gkd_schedule *s, const char *name, double lo, double hi) {
    double probe[GKD_SCHEDULE_MAX_POINTS + 2];
    int n = 0;
    switch (s->kind) {
    case GKD_SCHEDULE_CALLBACK: return GKD_OK;
    case GKD_SCHEDULE_PIECEWISE:
        for (int i = 0; i < s->n_points; i++) probe[n++] = s->values[i];
        break;
    case GKD_SCHEDULE_STEP:
        probe[n++] = s->start;
        if (fabs(s->factor) > 1.0) probe[n++] = INFINITY; /* grows without bound */
        break;
    default:
        probe[n++] = s->start;
        probe[n++] = s->end;
    }
    for (int i = 0; i < n; i++)
        if (outside(probe[i], lo, hi))
            return gkd_error_set(GKD_ERR_ARG, "%s: schedule reaches %g, outside [%g, %g]", name, probe[i], lo, hi);
    return GKD_OK;
}
