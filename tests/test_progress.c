/* The progress line of a training run (bindings/progress.h): its text, then both modes, a log file (a
 * line every interval_s seconds, every step at 0, and always at the last) and a terminal (one line redrawn,
 * ended by finish), driven by a fake clock; and GKD_PROGRESS_SECONDS. */
// ctest-labels: cpu
#include "bindings/progress.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The lines written to f (a terminal line of redraws is one line). */
static int count_lines(FILE *f) {
    char buf[4096];
    int n = 0;
    rewind(f);
    while (fgets(buf, sizeof buf, f)) n++;
    return n;
}

/* Runs `steps` steps of `seconds_per_step` each through a plain (log file) progress with the given
 * interval, the way gkd.run does, and returns the file (caller closes). */
static FILE *log_run(int steps, double seconds_per_step, double interval_s) {
    FILE *f = tmpfile();
    gkd_progress p;
    gkd_progress_init(&p, steps, f, 100.0);
    p.interval_s = interval_s;
    for (int step = 0; step < steps; step++) {
        double now = 100.0 + (step + 1) * seconds_per_step;
        if (gkd_progress_due(&p, step, now)) gkd_progress_print(&p, step, now, "run/a", 1.0 / (step + 1), 100, " | x");
    }
    gkd_progress_finish(&p);
    return f;
}

static void check_format(void) {
    char line[256];
    gkd_progress_format(line, sizeof line, 119, 500, 2.3456, 12345, 62, 120);
    CHECKF(strstr(line, "step 120/500") && strstr(line, "loss 2.346") && strstr(line, "12.3k tok/s") &&
               strstr(line, "elapsed 1m02s") && strstr(line, "ETA 3m16s"),
           "%s", line);
    char tiny[8];
    int n = gkd_progress_format(tiny, sizeof tiny, 0, 10, NAN, NAN, 0, 0);
    CHECK(n > 7 && strlen(tiny) == 7);
    gkd_progress_format(line, sizeof line, 0, 10, NAN, NAN, 0, 0);
    CHECK(strstr(line, "loss -") && strstr(line, "- tok/s") && strstr(line, "ETA -"));
}

static void check_log_file(void) {
    char line[256];
    /* 10 steps of 4 s, a line every 10 s: after steps 3 (12 s), 6 (24 s), 9 (36 s), and the last */
    FILE *f = log_run(10, 4.0, 10.0);
    CHECK(count_lines(f) == 4);
    rewind(f);
    int lines_ok = 1;
    const char *want[] = {"run/a step 3/10", "run/a step 6/10", "run/a step 9/10", "run/a step 10/10"};
    for (int i = 0; i < 4; i++) {
        lines_ok &= fgets(line, sizeof line, f) && strncmp(line, want[i], strlen(want[i])) == 0;
        lines_ok &= strstr(line, "tok/s") && strstr(line, "ETA") && strstr(line, " | x\n");
    }
    CHECKF(lines_ok, "%s", line);
    fclose(f);
    /* interval 0: every step */
    f = log_run(7, 0.5, 0);
    CHECK(count_lines(f) == 7);
    fclose(f);
    /* a run shorter than the interval: its last line only */
    f = log_run(5, 1.0, 30.0);
    CHECK(count_lines(f) == 1);
    fclose(f);
}

static void check_terminal(void) {
    FILE *f = tmpfile();
    gkd_progress p;
    gkd_progress_init(&p, 5, f, 0);
    p.tty = 1;
    p.min_interval_s = 0;
    for (int step = 0; step < 5; step++)
        if (gkd_progress_due(&p, step, step + 1.0)) gkd_progress_print(&p, step, step + 1.0, NULL, 1.0, 100, NULL);
    gkd_progress_finish(&p);
    gkd_progress_finish(NULL);
    CHECK(count_lines(f) == 1);
    rewind(f);
    int cr = 0, c;
    while ((c = fgetc(f)) != EOF) cr += c == '\r';
    CHECK(cr == 5);
    fclose(f);
}

static void check_env(void) {
    setenv("GKD_PROGRESS_SECONDS", "0", 1);
    CHECK(gkd_progress_interval_from_env() == 0);
    setenv("GKD_PROGRESS_SECONDS", "2.5", 1);
    CHECK(gkd_progress_interval_from_env() == 2.5);
    setenv("GKD_PROGRESS_SECONDS", "-1", 1);
    CHECK(gkd_progress_interval_from_env() == GKD_PROGRESS_DEFAULT_SECONDS);
    setenv("GKD_PROGRESS_SECONDS", "soon", 1);
    CHECK(gkd_progress_interval_from_env() == GKD_PROGRESS_DEFAULT_SECONDS);
    unsetenv("GKD_PROGRESS_SECONDS");
    CHECK(gkd_progress_interval_from_env() == GKD_PROGRESS_DEFAULT_SECONDS);
}

int main(void) {
    check_format();
    check_log_file();
    check_terminal();
    check_env();
    return check_exit();
}
