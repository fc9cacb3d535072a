/* The progress line of a long run on a terminal: "step 120/500  loss 2.346  12.3k tok/s  elapsed 1m02s
 * ETA 3m10s", redrawn in place on a terminal, a plain line every few steps otherwise (a log file).
 * Rules: it only writes to its FILE; durations read as the runs table's (gkd_report_format_duration).
 * The terminal belongs to the CLI, so this lives in cli/ and not in the report library. */
#ifndef GKD_CLI_PROGRESS_H
#define GKD_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *out;
    int64_t total;         /* steps in the run */
    int tty;               /* 1: one line redrawn in place; 0: a plain line every `every` steps */
    int64_t every;         /* plain lines: steps between lines (default: total / 20, at least 1) */
    double min_interval_s; /* terminal: redraw at most this often (default 0.1 s) */
    double start_s, last_draw_s;
    int64_t first_step; /* the first step reported here: a resumed run's rate counts from it */
    int drawn;          /* terminal: a line is showing, so finish ends it */
} gkd_progress;

/* Starts the clock. out NULL means stderr; tty is isatty(fileno(out)). Fields may be changed after init. */
void gkd_progress_init(gkd_progress *p, int64_t total_steps, FILE *out);
/* Reports that optimizer step `step` (counted from 0) is done; loss and tokens_per_s may be NaN. The
 * last step is always shown. */
void gkd_progress_update(gkd_progress *p, int64_t step, double loss, double tokens_per_s);
/* Ends a terminal line with a newline (plain mode: nothing). Accepts NULL. */
void gkd_progress_finish(gkd_progress *p);
/* The line itself, "step 120/500  loss 2.346  12.3k tok/s  elapsed 1m02s  ETA 3m10s", written to
 * buf[0..cap) (truncated, always terminated). done_here: steps completed since timing began (0: no
 * ETA). Returns the untruncated length, as snprintf does. */
int gkd_progress_format(char *buf, size_t cap, int64_t step, int64_t total, double loss, double tokens_per_s,
                        double elapsed_s, int64_t done_here);

#endif
