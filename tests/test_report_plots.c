/* The HTML report's plots over a store built to break them (core/report/report_svg.c): two sweeps and a
 * teacher run outside any sweep, fifteen settings in all, run names longer than any legend box.
 * Checked in the page's text: the training loss gets one plot per quantity (the teacher's cross-entropy
 * never shares an axis with the students' JSD); every setting's legend name is there in full; fifteen
 * settings get fifteen colours; each setting's mean and standard deviation over its seeds, as the script
 * reads them (data-mean, data-std), match the values written; the lambda x beta heatmap is drawn per sweep
 * (a cell that both sweeps have is not pooled across them). report_svg_colour's first 200 colours differ,
 * the first 40 clearly.
 * A run of 10,000 steps keeps its spike and its gap in the script's data, at most four points a column.
 * With `--write-html DIR` it only writes DIR/plots.html and DIR/legend.txt (one full legend name a line)
 * for tests/test_report_html.sh. */
// ctest-labels: cpu
#include "core/report/report.h"
#include "core/report/report_internal.h"
#include "core/store/store.h"
#include "tests/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const double lambdas[] = {0, 0.25, 0.5, 1}, betas[] = {0.1, 0.5, 0.9};
enum { N_STEPS = 10 };
static const char teacher[] = "teacher-smollm2-1.7b-instruct-sft-on-debian-package-descriptions";

/* A student's loss: its setting, then 0.1 per seed, so the seeds' mean and std are known exactly. */
static double student_loss(double lambda, double beta, int seed, int step) {
    return 1 + lambda + beta + 0.1 * seed + 0.01 * step;
}

static int add_run(gkd_store *s, const char *name, int64_t sweep, const char *config, int seed, double loss0,
                   double slope, double rouge) {
    int64_t run;
    int ok = gkd_store_run_begin(s, name, sweep, config, (uint64_t)seed, &run) == GKD_OK;
    for (int step = 0; ok && step < N_STEPS; step++)
        ok = gkd_store_metric(s, run, step, "loss", loss0 + slope * step) == GKD_OK;
    ok = ok && gkd_store_eval(s, run, N_STEPS - 1, "held_out", "rougeL", rouge) == GKD_OK;
    return ok && gkd_store_run_finish(s, run, GKD_RUN_STATUS_FINISHED, NULL) == GKD_OK;
}

static int build_store(const char *path) {
    gkd_store *s = NULL;
    if (gkd_store_open(path, &s) != GKD_OK) return 0;
    int64_t wide, narrow;
    int ok = gkd_store_sweep_create(s, "wide", NULL, &wide) == GKD_OK &&
             gkd_store_sweep_create(s, "narrow", NULL, &narrow) == GKD_OK;
    static const char student[] = "{\"name\":\"%s\",\"lambda\":%g,\"beta\":%g,\"seed\":%d,\"method\":\"gkd\","
                                  "\"resolved\":{\"cross_entropy\":false,\"divergence\":\"jsd\"}}";
    char name[128], config[512];
    for (int li = 0; li < 4; li++)
        for (int bi = 0; bi < 3; bi++)
            for (int seed = 1; ok && seed <= 2; seed++) {
                snprintf(name, sizeof name, "student-smollm2-135m-from-smollm2-1.7b-instruct-l%g-b%g-seed%d",
                         lambdas[li], betas[bi], seed);
                snprintf(config, sizeof config, student, name, lambdas[li], betas[bi], seed);
                ok = add_run(s, name, wide, config, seed, student_loss(lambdas[li], betas[bi], seed, 0), 0.01,
                             0.1 * lambdas[li] + betas[bi] + 0.01 * seed);
            }
    for (int li = 0; ok && li < 2; li++) {
        snprintf(name, sizeof name, "narrow-l%d", li);
        snprintf(config, sizeof config, student, name, (double)li, 0.5, 1);
        ok = add_run(s, name, narrow, config, 1, 3, -0.1, 5 + li);
    }
    ok = ok && add_run(s, teacher, 0, "{\"method\":\"sft\",\"resolved\":{\"cross_entropy\":true}}", 1, 2,
                       -0.1, 0.9);
    return gkd_store_close(s) == GKD_OK && ok;
}

static char *write_page(gkd_store *store, gkd_report *r, const char *path) {
    FILE *f = fopen(path, "w+");
    if (!f) return NULL;
    gkd_report_html_options o = {.title = "two sweeps and a teacher", .heatmap_metric = "rougeL"};
    char *html = NULL;
    if (gkd_report_write_html(store, r, &o, f) == GKD_OK) {
        long n = ftell(f);
        rewind(f);
        html = calloc((size_t)n + 1, 1);
        if (html && fread(html, 1, (size_t)n, f) != (size_t)n) html[0] = '\0';
    }
    fclose(f);
    return html;
}

/* The <svg> element whose start tag holds every marker, as [start, end); NULL when none. */
static const char *find_svg(const char *html, const char *m1, const char *m2, const char **end) {
    for (const char *p = strstr(html, "<svg"); p; p = strstr(p + 4, "<svg")) {
        const char *gt = strchr(p, '>'), *a = strstr(p, m1), *b = strstr(p, m2);
        if (gt && a && b && a < gt && b < gt) {
            *end = strstr(p, "</svg>");
            return *end ? p : NULL;
        }
    }
    return NULL;
}

static int count_in(const char *start, const char *end, const char *needle) {
    int n = 0;
    for (const char *p = strstr(start, needle); p && p < end; p = strstr(p + 1, needle)) n++;
    return n;
}

/* The numbers of attribute `name` in the tag at `tag`; returns how many were read into v[0..cap). */
static int attr_numbers(const char *tag, const char *name, double *v, int cap) {
    char key[64];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(tag, key), *gt = strchr(tag, '>');
    if (!p || p > gt) return 0;
    p += strlen(key);
    int n = 0;
    while (*p != '"' && n < cap) {
        char *e;
        v[n++] = strtod(p, &e);
        if (e == p) return -1;
        p = e + (*e == ' ');
    }
    return n;
}

/* The full legend name of group g, as the page writes it (text escaping aside: these names need none). */
static void legend_name(const gkd_report *r, int g, char *out, size_t cap) {
    const gkd_report_group *grp = &r->groups[g];
    if (grp->n_runs == 1 && !grp->sweep)
        snprintf(out, cap, "(no sweep): %s", r->runs[grp->runs[0]].name);
    else if (grp->n_runs == 1)
        snprintf(out, cap, "%s: %s (%s)", grp->sweep, r->runs[grp->runs[0]].name, grp->label);
    else
        snprintf(out, cap, "%s: %s", grp->sweep, grp->label);
}

static void check_loss_plots(const gkd_report *r, const char *html) {
    const char *end, *jsd = find_svg(html, "data-metric=\"loss\"", "data-quantity=\"jsd\"", &end);
    CHECK(jsd != NULL);
    if (jsd) {
        CHECK(count_in(jsd, end, "<path class=\"series\"") == 26);
        CHECK(count_in(jsd, end, "<path class=\"mean\"") == 14);
        CHECK(count_in(jsd, end, teacher) == 0);
        /* each wide setting: the mean and sample std of its two seeds at every step */
        int checked = 0;
        for (const char *p = strstr(jsd, "<path class=\"mean\""); p && p < end; p = strstr(p + 1, "<path class=\"mean\"")) {
            int g = atoi(strstr(p, "data-group=\"") + 12);
            const gkd_report_run *run = &r->runs[r->groups[g].runs[0]];
            double lambda, beta, steps[N_STEPS + 1], mean[N_STEPS + 1], sd[N_STEPS + 1];
            if (!run->sweep || strcmp(run->sweep, "wide") != 0) continue;
            CHECK(gkd_report_config_number(run->config, "lambda", &lambda) &&
                  gkd_report_config_number(run->config, "beta", &beta));
            CHECK(attr_numbers(p, "data-steps", steps, N_STEPS + 1) == N_STEPS &&
                  attr_numbers(p, "data-mean", mean, N_STEPS + 1) == N_STEPS &&
                  attr_numbers(p, "data-std", sd, N_STEPS + 1) == N_STEPS);
            for (int t = 0; t < N_STEPS; t++) {
                double want = (student_loss(lambda, beta, 1, t) + student_loss(lambda, beta, 2, t)) / 2;
                CHECKF(steps[t] == t && fabs(mean[t] - want) < 1e-9 && fabs(sd[t] - sqrt(0.005)) < 1e-9,
                       "group %d step %d: mean %.10g (want %.10g), std %.10g", g, t, mean[t], want, sd[t]);
            }
            checked++;
        }
        CHECK(checked == 12);
    }
    const char *ce = find_svg(html, "data-metric=\"loss\"", "data-quantity=\"cross-entropy\"", &end);
    CHECK(ce != NULL);
    if (ce) {
        CHECK(count_in(ce, end, "<path class=\"series\"") == 1);
        CHECK(count_in(ce, end, teacher) >= 1 && count_in(ce, end, "student-") == 0);
    }
}

static void check_legends_and_colours(const gkd_report *r, const char *html) {
    CHECK(r->n_groups == 15);
    char name[256], want[300], colour[8], seen[200][8];
    for (int g = 0; g < r->n_groups; g++) {
        legend_name(r, g, name, sizeof name);
        snprintf(want, sizeof want, "<span class=\"name\">%s</span>", name);
        CHECKF(strstr(html, want) != NULL, "no full legend name '%s'", name);
        report_svg_colour(g, colour);
        snprintf(want, sizeof want, "data-colour=\"%s\"", colour);
        CHECKF(strstr(html, want) != NULL, "no legend entry coloured %s", colour);
    }
    CHECK(strstr(html, "...<") == NULL);
    int rgb[200][3];
    for (int i = 0; i < 200; i++) {
        report_svg_colour(i, seen[i]);
        CHECK(seen[i][0] == '#' && strlen(seen[i]) == 7 &&
              sscanf(seen[i] + 1, "%2x%2x%2x", &rgb[i][0], &rgb[i][1], &rgb[i][2]) == 3);
        for (int j = 0; j < i; j++) {
            CHECKF(strcmp(seen[i], seen[j]) != 0, "colours %d and %d: %s", j, i, seen[i]);
            /* the first forty are told apart at a glance: at least 30 apart in 0..255 RGB */
            double d = 0;
            for (int k = 0; k < 3; k++) d += (rgb[i][k] - rgb[j][k]) * (double)(rgb[i][k] - rgb[j][k]);
            if (i < 40) CHECKF(sqrt(d) >= 30, "colours %d %s and %d %s are %.1f apart", j, seen[j], i, seen[i], sqrt(d));
        }
    }
}

static void check_heatmaps(const char *html) {
    const char *end, *wide = find_svg(html, "data-plot=\"heatmap\"", "data-sweep=\"wide\"", &end);
    CHECK(wide != NULL);
    if (wide) {
        CHECK(strstr(wide, "data-nx=\"4\" data-ny=\"3\"") && count_in(wide, end, "data-count=\"2\"") == 12);
        /* lambda 0, beta 0.5: the two wide seeds only, not the narrow run with the same values */
        const char *cell = strstr(wide, "data-x=\"0\" data-y=\"0.5\" data-value=\"");
        CHECK(cell && cell < end && fabs(strtod(cell + 37, NULL) - 0.515) < 1e-12);
    }
    const char *narrow = find_svg(html, "data-plot=\"heatmap\"", "data-sweep=\"narrow\"", &end);
    CHECK(narrow != NULL);
    if (narrow) {
        CHECK(strstr(narrow, "data-nx=\"2\" data-ny=\"1\"") && count_in(narrow, end, "data-count=\"1\"") == 2);
        CHECK(strstr(narrow, "data-x=\"0\" data-y=\"0.5\" data-value=\"5\""));
    }
}

/* A run of 10,000 steps: the data the script redraws from is bounded as the path is (at most four points
 * per pixel column), and keeps the spike and the NaN gap. */
static void check_long_run(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/long.db", dir);
    gkd_store *s = NULL;
    int64_t run;
    int ok = gkd_store_open(path, &s) == GKD_OK && gkd_store_run_begin(s, "long", 0, "{}", 1, &run) == GKD_OK;
    for (int step = 0; ok && step < 10000; step++)
        ok = gkd_store_metric(s, run, step, "loss", step == 5003 ? 100 : step == 7000 ? NAN : 1 + (step % 7) * 0.01) ==
             GKD_OK;
    ok = ok && gkd_store_run_finish(s, run, GKD_RUN_STATUS_FINISHED, NULL) == GKD_OK;
    CHECK(gkd_store_close(s) == GKD_OK && ok);
    gkd_report *r = NULL;
    gkd_report_options o = {0};
    CHECK(gkd_store_open_readonly(path, &s) == GKD_OK && gkd_report_load(s, &o, &r) == GKD_OK);
    snprintf(path, sizeof path, "%s/long.html", dir);
    char *html = r ? write_page(s, r, path) : NULL;
    const char *end, *svg = html ? find_svg(html, "data-metric=\"loss\"", "data-plot=\"curves\"", &end) : NULL;
    const char *series = svg ? strstr(svg, "<path class=\"series\"") : NULL;
    CHECK(series && strstr(series, "data-points=\"10000\""));
    if (series) {
        static double steps[10001], values[10001];
        int n = attr_numbers(series, "data-steps", steps, 10001), nv = attr_numbers(series, "data-values", values, 10001);
        CHECKF(n == nv && n > 760 && n <= 4 * 760 + 1, "%d steps, %d values kept of 10000", n, nv);
        int spike = 0, gap = 0;
        for (int i = 0; i < nv; i++) spike |= values[i] == 100 && steps[i] == 5003, gap |= isnan(values[i]) && steps[i] == 7000;
        CHECK(spike && gap);
    }
    free(html);
    gkd_report_free(r);
    gkd_store_close(s);
    const char *files[] = {"long.db", "long.db-wal", "long.db-shm", "long.html"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
}

int main(int argc, char **argv) {
    int browser = argc == 3 && strcmp(argv[1], "--write-html") == 0;
    char dir[] = "/tmp/gkd-test-report-plots-XXXXXX", path[600];
    if (!browser && !mkdtemp(dir)) check_skip("no temporary directory");
    const char *out = browser ? argv[2] : dir;
    snprintf(path, sizeof path, "%s/runs.db", out);
    CHECK(build_store(path));
    gkd_store *store = NULL;
    gkd_report *r = NULL;
    gkd_report_options o = {0};
    CHECK(gkd_store_open_readonly(path, &store) == GKD_OK && gkd_report_load(store, &o, &r) == GKD_OK);
    snprintf(path, sizeof path, "%s/plots.html", out);
    char *html = r ? write_page(store, r, path) : NULL;
    CHECK(html != NULL);
    if (html && browser) {
        snprintf(path, sizeof path, "%s/legend.txt", out);
        FILE *f = fopen(path, "w");
        char name[256];
        for (int g = 0; f && g < r->n_groups; g++) legend_name(r, g, name, sizeof name), fprintf(f, "%s\n", name);
        CHECK(f && fclose(f) == 0);
    } else if (html) {
        check_loss_plots(r, html);
        check_legends_and_colours(r, html);
        check_heatmaps(html);
        check_long_run(dir);
    }
    free(html);
    gkd_report_free(r);
    gkd_store_close(store);
    if (!browser) {
        const char *files[] = {"runs.db", "runs.db-wal", "runs.db-shm", "plots.html"};
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            unlink(path);
        }
        rmdir(dir);
    }
    return check_exit();
}
