/* The progress line of a long run (cli/progress.h).
 * Rules: the rate counts from the first step reported here, so a resumed run's ETA is not skewed by the
 * steps done before it; the last step is always shown. */
#include "cli/progress.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/report/report.h"
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void gkd_progress_init(gkd_progress *p, int64_t total_steps, FILE *out) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->out = out ? out : stderr;
    p->total = total_steps;
    p->tty = isatty(fileno(p->out));
    p->every = total_steps >= 20 ? total_steps / 20 : 1;
    p->min_interval_s = 0.1;
    p->start_s = now_s();
    p->last_draw_s = -INFINITY;
    p->first_step = -1;
}

static const char *fmt_rate(char *buf, size_t cap, double x) {
    if (x >= 1e6)
        snprintf(buf, cap, "%.3gM", x / 1e6);
    else if (x >= 1e3)
        snprintf(buf, cap, "%.3gk", x / 1e3);
    else
        snprintf(buf, cap, "%.3g", x);
    return buf;
}

int gkd_progress_format(char *buf, size_t cap, int64_t step, int64_t total, double loss, double tokens_per_s,
                        double elapsed_s, int64_t done_here) {
    char l[32] = "-", e[32], eta[32] = "-", rate[32] = "-";
    int64_t done = step + 1;
    if (done_here > 0 && elapsed_s > 0 && total > done)
        gkd_report_format_duration(eta, sizeof eta, elapsed_s / (double)done_here * (double)(total - done));
    else if (total > 0 && done >= total)
        snprintf(eta, sizeof eta, "0s");
    int n = total > 0 ? snprintf(buf, cap, "step %lld/%lld", (long long)done, (long long)total)
                      : snprintf(buf, cap, "step %lld", (long long)done);
    size_t used = buf && n > 0 && (size_t)n < cap ? (size_t)n : cap;
    if (!isnan(loss)) snprintf(l, sizeof l, "%.4g", loss);
    if (!isnan(tokens_per_s)) fmt_rate(rate, sizeof rate, tokens_per_s);
    int m = snprintf(buf ? buf + used : NULL, buf ? cap - used : 0, "  loss %s  %s tok/s  elapsed %s  ETA %s",
                     l, rate, gkd_report_format_duration(e, sizeof e, elapsed_s), eta);
    return n + m;
}

void gkd_progress_update(gkd_progress *p, int64_t step, double loss, double tokens_per_s) {
    if (!p || !p->out) return;
    if (p->first_step < 0) p->first_step = step;
    int last = p->total > 0 && step + 1 >= p->total;
    double t = now_s();
    if (p->tty) {
        if (!last && t - p->last_draw_s < p->min_interval_s) return;
    } else if (!last && (p->every <= 0 || (step + 1) % p->every != 0)) {
        return;
    }
    char line[256];
    gkd_progress_format(line, sizeof line, step, p->total, loss, tokens_per_s, t - p->start_s,
                        step - p->first_step + 1);
    if (p->tty) {
        fprintf(p->out, "\r%s\033[K", line);
        p->drawn = 1;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    p->last_draw_s = t;
}

void gkd_progress_finish(gkd_progress *p) {
    if (!p || !p->out || !p->tty || !p->drawn) return;
    fputc('\n', p->out);
    fflush(p->out);
    p->drawn = 0;
}
