/* The progress line of a long run (cli/progress.h): its text, then both modes, a log file (a line
 * every `every` steps and at the last) and a terminal (one line redrawn, ended by finish). */
// ctest-labels: cpu
#include "cli/progress.h"
#include "tests/check.h"

#include <math.h>
#include <string.h>

/* The lines written to f (a terminal line of redraws is one line). */
static int count_lines(FILE *f) {
    char buf[4096];
    int n = 0;
    rewind(f);
    while (fgets(buf, sizeof buf, f)) n++;
    return n;
}

static void check_progress(void) {
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

    /* not a terminal: a line every `every` steps and at the last one */
    FILE *f = tmpfile();
    gkd_progress p;
    gkd_progress_init(&p, 10, f);
    CHECK(p.tty == 0 && p.every == 1);
    p.every = 3;
    for (int step = 0; step < 10; step++) gkd_progress_update(&p, step, 1.0 / (step + 1), 100);
    gkd_progress_finish(&p);
    CHECK(count_lines(f) == 4);
    rewind(f);
    int lines_ok = 1;
    const char *want[] = {"step 3/10", "step 6/10", "step 9/10", "step 10/10"};
    for (int i = 0; i < 4; i++)
        lines_ok &= fgets(line, sizeof line, f) && strncmp(line, want[i], strlen(want[i])) == 0;
    CHECK(lines_ok);
    fclose(f);

    /* a terminal: one line redrawn, ended by finish */
    f = tmpfile();
    gkd_progress_init(&p, 5, f);
    p.tty = 1;
    p.min_interval_s = 0;
    for (int step = 0; step < 5; step++) gkd_progress_update(&p, step, 1.0, 100);
    gkd_progress_finish(&p);
    gkd_progress_finish(NULL);
    CHECK(count_lines(f) == 1);
    rewind(f);
    int cr = 0, c;
    while ((c = fgetc(f)) != EOF) cr += c == '\r';
    CHECK(cr == 5);
    fclose(f);
}

int main(void) {
    check_progress();
    return check_exit();
}
