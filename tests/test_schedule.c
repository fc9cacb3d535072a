/* Schedules against their closed forms, computed here independently. */
#include "rl/schedule.h"
#include "tests/check.h"

static double at(const gkd_schedule *s, int64_t step) {
    double v = NAN;
    CHECK(gkd_schedule_value(s, step, &v) == GKD_OK);
    return v;
}

static double square_of_step(void *ctx, int64_t step, int *failed) {
    (void)ctx;
    if (step < 0) {
        *failed = 1;
        return NAN;
    }
    return (double)step * (double)step;
}

int main(void) {
    gkd_schedule c = gkd_schedule_constant(0.3);
    CHECK(at(&c, 0) == 0.3 && at(&c, 1000) == 0.3);

    gkd_schedule lin = gkd_schedule_linear(0.0, 1.0, 500);
    for (int64_t s = 0; s <= 700; s += 50) {
        double want = s >= 500 ? 1.0 : s / 500.0;
        CHECKF(fabs(at(&lin, s) - want) < 1e-15, "linear at %lld", (long long)s);
    }
    gkd_schedule cosine = gkd_schedule_cosine(1.0, 0.1, 100);
    for (int64_t s = 0; s <= 150; s += 10) {
        double f = s >= 100 ? 1.0 : s / 100.0;
        double want = 0.1 + 0.9 * (1 + cos(3.14159265358979323846 * f)) / 2;
        CHECKF(fabs(at(&cosine, s) - want) < 1e-12, "cosine at %lld", (long long)s);
    }
    CHECK(fabs(at(&cosine, 50) - 0.55) < 1e-12);
    gkd_schedule st = gkd_schedule_step(1.0, 0.5, 10);
    CHECK(at(&st, 9) == 1.0 && at(&st, 10) == 0.5 && at(&st, 25) == 0.25);
    gkd_schedule w = gkd_schedule_warmup(2.0, 4);
    CHECK(at(&w, 0) == 0.0 && at(&w, 1) == 0.5 && at(&w, 4) == 2.0 && at(&w, 99) == 2.0);

    gkd_schedule wc = gkd_schedule_warmup_cosine(1e-3, 1e-4, 10, 110);
    CHECK(fabs(at(&wc, 0) - 1e-4) < 1e-15 && fabs(at(&wc, 9) - 1e-3) < 1e-15);
    CHECK(fabs(at(&wc, 60) - 5.5e-4) < 1e-15 && fabs(at(&wc, 110) - 1e-4) < 1e-15 && fabs(at(&wc, 500) - 1e-4) < 1e-15);
    gkd_schedule pw;
    int64_t pts[] = {10, 20, 40};
    double vals[] = {0.0, 1.0, 0.5};
    CHECK(gkd_schedule_piecewise(pts, vals, 3, &pw) == GKD_OK);
    CHECK(at(&pw, 0) == 0.0 && at(&pw, 15) == 0.5 && at(&pw, 30) == 0.75 && at(&pw, 100) == 0.5);
    int64_t bad_pts[] = {10, 10};
    CHECK(gkd_schedule_piecewise(bad_pts, vals, 2, &pw) == GKD_ERR_ARG);

    gkd_schedule cb = {.kind = GKD_SCHEDULE_CALLBACK, .fn = square_of_step};
    CHECK(at(&cb, 7) == 49.0);
    double v;
    CHECK(gkd_schedule_value(&cb, -1, &v) == GKD_ERR_CALLBACK);

    CHECK(gkd_schedule_check_range(&lin, "lambda", 0, 1) == GKD_OK);
    gkd_schedule too_far = gkd_schedule_linear(0.0, 1.5, 10);
    CHECK(gkd_schedule_check_range(&too_far, "lambda", 0, 1) == GKD_ERR_ARG);
    return check_exit();
}
