/* The progress line of a training run (bindings/progress.h). */
#include "bindings/progress.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/report/report.h"

void gkd_progress_init(gkd_progress *p, int64_t total_steps, FILE *out, double now_s) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->out = out ? out : stderr;
    p->total = total_steps;
    p->tty = isatty(fileno(p->out));
    p->interval_s = GKD_PROGRESS_DEFAULT_SECONDS;
    p->min_interval_s = 0.1;
    p->start_s = p->last_draw_s = now_s;
    p->first_step = -1;
}

double gkd_progress_interval_from_env(void) {
    const char *v = getenv("GKD_PROGRESS_SECONDS");
    if (!v || !*v) return GKD_PROGRESS_DEFAULT_SECONDS;
    char *end;
    errno = 0;
    double s = strtod(v, &end);
    if (errno || *end || !(s >= 0) || isinf(s)) {
        static int warned;
        if (!warned++)
            fprintf(stderr, "gkd: GKD_PROGRESS_SECONDS must be a number of seconds >= 0, got '%s'; using %g\n", v,
                    GKD_PROGRESS_DEFAULT_SECONDS);
        return GKD_PROGRESS_DEFAULT_SECONDS;
    }
    return s;
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

int gkd_progress_due(gkd_progress *p, int64_t step, double now_s) {
    if (!p || !p->out) return 0;
    if (p->first_step < 0) p->first_step = step;
    if (p->total > 0 && step + 1 >= p->total) return 1;
    double since = now_s - p->last_draw_s;
    return p->tty ? since >= p->min_interval_s : since >= p->interval_s;
}

void gkd_progress_print(gkd_progress *p, int64_t step, double now_s, const char *prefix, double loss,
                        double tokens_per_s, const char *suffix) {
    if (!p || !p->out) return;
    if (p->first_step < 0) p->first_step = step;
    char line[256];
    gkd_progress_format(line, sizeof line, step, p->total, loss, tokens_per_s, now_s - p->start_s,
                        step - p->first_step + 1);
    const char *sep = prefix && *prefix ? " " : "";
    if (p->tty) {
        fprintf(p->out, "\r%s%s%s%s\033[K", prefix ? prefix : "", sep, line, suffix ? suffix : "");
        p->drawn = 1;
    } else {
        fprintf(p->out, "%s%s%s%s\n", prefix ? prefix : "", sep, line, suffix ? suffix : "");
    }
    fflush(p->out);
    p->last_draw_s = now_s;
}

void gkd_progress_finish(gkd_progress *p) {
    if (!p || !p->out || !p->tty || !p->drawn) return;
    fputc('\n', p->out);
    fflush(p->out);
    p->drawn = 0;
}
