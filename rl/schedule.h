/* Schedules: a numeric setting of a run (lambda, beta, alpha, temperatures, learning rate) as a function
 * of the step. Built-in closed forms, or a callback (the Lua binding uses it for Lua functions, which may
 * also read the latest metrics).
 * Rules: value(step) is a pure function of the step for the built-ins, so a resumed run sees the same
 * values; `steps` arguments count optimizer steps from 0. */
#ifndef GKD_SCHEDULE_H
#define GKD_SCHEDULE_H

#include <stdint.h>

#include "core/base/error.h"

typedef enum {
    GKD_SCHEDULE_CONSTANT,  /* start */
    GKD_SCHEDULE_LINEAR,    /* start -> end over [0, steps], then end */
    GKD_SCHEDULE_COSINE,    /* start -> end along half a cosine over [0, steps], then end */
    GKD_SCHEDULE_STEP,      /* start * factor^(floor(step / steps)) */
    GKD_SCHEDULE_PIECEWISE, /* linear between (points[i], values[i]); constant outside */
    GKD_SCHEDULE_WARMUP,    /* 0 -> start linearly over [0, steps], then start */
    GKD_SCHEDULE_WARMUP_COSINE, /* start * (step+1)/warmup during warmup, then cosine start -> end by `steps` */
    GKD_SCHEDULE_CALLBACK,  /* fn(ctx, step) */
} gkd_schedule_kind;

enum { GKD_SCHEDULE_MAX_POINTS = 32 };

/* Returns the value at `step`; on failure sets *failed (with the last error) and returns NaN. */
typedef double (*gkd_schedule_fn)(void *ctx, int64_t step, int *failed);

typedef struct {
    gkd_schedule_kind kind;
    double start, end, factor;
    int64_t steps;
    int64_t warmup;
    int n_points;
    int64_t points[GKD_SCHEDULE_MAX_POINTS];
    double values[GKD_SCHEDULE_MAX_POINTS];
    gkd_schedule_fn fn;
    void *ctx;
} gkd_schedule;

gkd_schedule gkd_schedule_constant(double value);
gkd_schedule gkd_schedule_linear(double start, double end, int64_t steps);
gkd_schedule gkd_schedule_cosine(double start, double end, int64_t steps);
gkd_schedule gkd_schedule_step(double start, double factor, int64_t every);
gkd_schedule gkd_schedule_warmup(double value, int64_t steps);
/* The usual learning-rate shape: linear warmup to `peak` over `warmup` steps, then half a cosine down to
 * `min` at step `total` (gkd_optim_warmup_cosine, the curve of gkd_optim_lr_at). */
gkd_schedule gkd_schedule_warmup_cosine(double peak, double min, int64_t warmup, int64_t total);
/* Points must increase; n in [1, GKD_SCHEDULE_MAX_POINTS]. */
gkd_status gkd_schedule_piecewise(const int64_t *points, const double *values, int n, gkd_schedule *out);

/* The value at `step`. GKD_OK, or the callback's failure (the last error says why). */
gkd_status gkd_schedule_value(const gkd_schedule *s, int64_t step, double *value);
/* Checks that the built-in schedule stays within [lo, hi] (endpoints and points); `name` is used in the
 * error message. Callbacks are checked at each use instead. */
gkd_status gkd_schedule_check_range(const gkd_schedule *s, const char *name, double lo, double hi);

#endif
