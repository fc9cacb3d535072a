/* The progress line of a training run: "NAME step 120/500  loss 2.346  12.3k tok/s  elapsed 1m02s  ETA 3m16s
 * ...", redrawn in place on a terminal, a plain line every few seconds otherwise (a Slurm log, `> file`).
 * gkd.run (bindings/lua_train.c) prints it; it lives here, below the CLI, because the bindings print it and
 * cannot include cli/.
 * Rules: it only writes to its FILE; the caller passes the clock (monotonic seconds), so the tests drive
 * it; durations read as the runs table's (gkd_report_format_duration); the last step is always shown; the
 * rate counts from the first step reported here, so a resumed run's ETA is not skewed by the steps done
 * before it. */
#ifndef GKD_BINDINGS_PROGRESS_H
#define GKD_BINDINGS_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The default seconds between lines when the stream is not a terminal; GKD_PROGRESS_SECONDS overrides it. */
#define GKD_PROGRESS_DEFAULT_SECONDS 30.0

typedef struct {
    FILE *out;
    int64_t total;         /* steps in the run */
    int tty;               /* 1: one line redrawn in place; 0: a plain line every interval_s */
    double interval_s;     /* plain lines: seconds between lines; 0: every step */
    double min_interval_s; /* terminal: redraw at most this often (default 0.1 s) */
    double start_s, last_draw_s;
    int64_t first_step; /* the first step reported here: a resumed run's rate counts from it */
    int drawn;          /* terminal: a line is showing, so finish ends it */
} gkd_progress;

/* Starts the clock at now_s. tty is isatty(fileno(out)); interval_s is GKD_PROGRESS_DEFAULT_SECONDS. Fields
 * may be changed after init. */
void gkd_progress_init(gkd_progress *p, int64_t total_steps, FILE *out, double now_s);
/* The seconds between plain lines that GKD_PROGRESS_SECONDS asks for (a number >= 0), else the default.
 * A malformed value is reported on stderr once and the default used: a progress setting never fails a run. */
double gkd_progress_interval_from_env(void);
/* Whether a line is due for optimizer step `step` (counted from 0, just done) at now_s: the last step,
 * a terminal's redraw interval, or a log's interval_s since the last line. */
int gkd_progress_due(gkd_progress *p, int64_t step, double now_s);
/* Writes "PREFIX step ...  ETA ..SUFFIX" (prefix and suffix may be NULL; loss and tokens_per_s may be NaN,
 * shown as "-") and notes the time. */
void gkd_progress_print(gkd_progress *p, int64_t step, double now_s, const char *prefix, double loss,
                        double tokens_per_s, const char *suffix);
/* Ends a terminal line with a newline (plain mode: nothing). Accepts NULL. */
void gkd_progress_finish(gkd_progress *p);
/* The line itself, "step 120/500  loss 2.346  12.3k tok/s  elapsed 1m02s  ETA 3m16s", written to
 * buf[0..cap) (truncated, always terminated). done_here: steps completed since timing began (0: no
 * ETA). Returns the untruncated length, as snprintf does. */
int gkd_progress_format(char *buf, size_t cap, int64_t step, int64_t total, double loss, double tokens_per_s,
                        double elapsed_s, int64_t done_here);

#endif
