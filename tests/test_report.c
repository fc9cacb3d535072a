/* Reports (core/report/report.h) against plain SQL: a synthetic sweep (lambda in {0, 0.5, 1} x beta in {0.1,
 * 0.9} x 2 seeds, training metrics over steps, held-out evals) is written through core/store/store.h, and
 * every number of the report -- final values, each setting's mean, std and count, the best setting,
 * the runs table, the CSV's row count, the HTML's curves, heatmap cells and scatter points -- is
 * compared with the same quantity computed by SQL written here, independently, over the database
 * file. Also: the direction rule and its overrides, config numbers (schedules, dotted keys), the
 * filters and their refusals. (The progress line is cli/progress.c's: tests/test_progress.c.)
 * With `--write-html DIR` it only writes DIR/runs.db, DIR/report.html and DIR/expected.txt (one line
 * "series NAME" per run of the loss curves, then "cells N") for tests/test_report_html.sh. */
// ctest-labels: cpu
#include "core/report/report.h"
#include "core/store/store.h"
#include "reward/registry.h"
#include "tests/check.h"

#include <dirent.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const double lambdas[] = {0, 0.5, 1};
static const double betas[] = {0.1, 0.9};
enum { N_SEEDS = 2, N_STEPS = 20, N_GRID = 3 * 2 * N_SEEDS };

static sqlite3 *db; /* the independent reader */

/* A deterministic value in [0, 1) from a few integers. */
static double noise(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
                 c * 0x94D049BB133111EBull;
    x ^= x >> 31;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 29;
    return (double)(x >> 11) / 9007199254740992.0;
}

/* Writes the store: the sweep "grid" (12 runs), a run outside any sweep with a schedule for lambda and a
 * name that needs escaping, and a running run of another sweep. */
static int build_store(const char *path) {
    gkd_store *s = NULL;
    if (gkd_store_open(path, &s) != GKD_OK) {
        fprintf(stderr, "store: %s\n", gkd_error_message());
        return 0;
    }
    int64_t grid, other;
    int ok =
        gkd_store_sweep_create(s, "grid", "{\"lambda\":[0,0.5,1],\"beta\":[0.1,0.9]}", &grid) == GKD_OK &&
        gkd_store_sweep_create(s, "other", NULL, &other) == GKD_OK;
    int idx = 0;
    for (int li = 0; li < 3; li++)
        for (int bi = 0; bi < 2; bi++)
            for (int seed = 1; seed <= N_SEEDS; seed++, idx++) {
                char name[64], config[256];
                snprintf(name, sizeof name, "l%g-b%g-s%d", lambdas[li], betas[bi], seed);
                /* alpha follows lambda, so it labels the scatter without adding settings */
                snprintf(config, sizeof config,
                         "{\"name\":\"%s\",\"lambda\":%g,\"beta\":%g,\"alpha\":%g,\"seed\":%d,\"steps\":%d,"
                         "\"divergence\":{\"kind\":\"jsd\",\"convention\":\"paper\"}}",
                         name, lambdas[li], betas[bi], 0.1 * li, seed, N_STEPS);
                int64_t run;
                ok = ok && gkd_store_run_begin(s, name, grid, config, (uint64_t)seed, &run) == GKD_OK;
                for (int step = 0; ok && step < N_STEPS; step++) {
                    double loss =
                        3.0 / (1 + step) + lambdas[li] * 0.2 + betas[bi] * 0.1 + 0.05 * noise(idx, step, 1);
                    /* one run's last loss is NaN: its setting then has one value, not two */
                    if (idx == 3 && step == N_STEPS - 1) loss = NAN;
                    ok = gkd_store_metric(s, run, step, "loss", loss) == GKD_OK &&
                         gkd_store_metric(s, run, step, "reward",
                                          0.2 + 0.5 * lambdas[li] + 0.1 * noise(idx, step, 2)) == GKD_OK;
                }
                for (int e = 0; ok && e < 3; e++) {
                    int step = e == 2 ? N_STEPS - 1 : 10 * e;
                    double rouge =
                        0.2 + 0.1 * lambdas[li] - 0.05 * betas[bi] + 0.03 * e + 0.02 * noise(idx, step, 3);
                    /* one run's rougeL stops at step 10: its final value is from there */
                    if (!(idx == 5 && e == 2))
                        ok = gkd_store_eval(s, run, step, "held_out", "rougeL", rouge) == GKD_OK;
                    ok = ok && gkd_store_eval(s, run, step, "held_out", "divergence",
                                              1.0 - 0.3 * e + noise(idx, step, 4)) == GKD_OK;
                }
                ok = ok &&
                     gkd_store_eval(s, run, N_STEPS - 1, "validation", "rougeL", noise(idx, 0, 5)) == GKD_OK;
                ok = ok && gkd_store_run_finish(s, run, GKD_RUN_STATUS_FINISHED, NULL) == GKD_OK;
            }
    int64_t solo, live;
    ok = ok && gkd_store_run_begin(
                   s, "solo <&>", 0,
                   "{\"lambda\":{\"kind\":\"linear\",\"start\":0.25,\"end\":1},\"beta\":0.5,\"seed\":7}", 7,
                   &solo) == GKD_OK;
    for (int step = 0; ok && step < 5; step++)
        ok = gkd_store_metric(s, solo, step, "loss", 1.0 / (step + 1)) == GKD_OK;
    ok = ok && gkd_store_eval(s, solo, 4, "held_out", "rougeL", 0.5) == GKD_OK;
    ok = ok && gkd_store_run_finish(s, solo, GKD_RUN_STATUS_FAILED, "diverged") == GKD_OK;
    ok = ok && gkd_store_run_begin(s, "live", other, "{\"lambda\":1,\"beta\":0.5,\"seed\":3,\"steps\":100}",
                                   3, &live) == GKD_OK;
    for (int step = 0; ok && step < 7; step++)
        ok = gkd_store_metric(s, live, step, "loss", 2.0 - 0.1 * step) == GKD_OK;
    if (!ok) fprintf(stderr, "store: %s\n", gkd_error_message());
    return gkd_store_close(s) == GKD_OK && ok;
}

/* ---- independent SQL ---- */

static sqlite3_stmt *sql_prepare(const char *sql, const char *types, va_list ap) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "sql: %s: %s\n", sqlite3_errmsg(db), sql);
        return NULL;
    }
    for (int i = 0; types && types[i]; i++) {
        if (types[i] == 'i')
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        else if (types[i] == 'd')
            sqlite3_bind_double(st, i + 1, va_arg(ap, double));
        else
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
    }
    return st;
}

/* Columns of the first row as doubles (NULL or no row: NaN); returns the number of rows. */
static int sql_row(double *out, int n_out, const char *sql, const char *types, ...) {
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = sql_prepare(sql, types, ap);
    va_end(ap);
    for (int i = 0; i < n_out; i++) out[i] = NAN;
    int rows = 0;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        if (rows++ == 0)
            for (int i = 0; i < n_out; i++)
                if (sqlite3_column_type(st, i) != SQLITE_NULL) out[i] = sqlite3_column_double(st, i);
    }
    sqlite3_finalize(st);
    return rows;
}

static double sql_d(const char *sql, const char *types, ...) {
    va_list ap;
    va_start(ap, types);
    sqlite3_stmt *st = sql_prepare(sql, types, ap);
    va_end(ap);
    double v = NAN;
    if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int same(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= 1e-12 * fmax(1.0, fmax(fabs(a), fabs(b)));
}

/* A run's final value of a metric, by SQL: the value at its largest step. */
static const char *final_sql(const gkd_report_metric *m) {
    return m->source == GKD_REPORT_FROM_EVALS ? "(SELECT e.value FROM evals e WHERE e.run_id = r.id AND "
                                                "e.split = 'held_out' AND e.metric = ?1 "
                                                "ORDER BY e.step DESC LIMIT 1)"
                                              : "(SELECT m.value FROM metrics m WHERE m.run_id = r.id AND "
                                                "m.name = ?1 ORDER BY m.step DESC LIMIT 1)";
}

/* ---- the checks ---- */

static void check_runs(const gkd_report *r) {
    CHECK(r->n_runs ==
          (int)sql_d("SELECT count(*) FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid'",
                     NULL));
    CHECK(r->n_runs == N_GRID);
    for (int i = 0; i < r->n_runs; i++) {
        const gkd_report_run *run = &r->runs[i];
        double v[4];
        CHECK(sql_row(v, 4,
                      "SELECT (SELECT max(step) FROM metrics WHERE run_id = r.id), "
                      "(SELECT value FROM metrics WHERE run_id = r.id AND name = 'loss' ORDER BY step DESC "
                      "LIMIT 1), "
                      "r.seed, (julianday(r.finished_at) - julianday(r.started_at)) * 86400 FROM runs r "
                      "WHERE r.id = ?1",
                      "i", run->id) == 1);
        CHECKF(run->last_step == (int64_t)v[0], "run %lld last step %lld", (long long)run->id,
               (long long)run->last_step);
        CHECKF(same(run->last_loss, v[1]), "run %lld last loss %g vs %g", (long long)run->id, run->last_loss,
               v[1]);
        CHECK(run->seed == (int64_t)v[2]);
        CHECK(same(run->duration_s, v[3]));
        CHECK(run->total_steps == N_STEPS);
        CHECK(strcmp(run->status, "finished") == 0 && run->sweep && strcmp(run->sweep, "grid") == 0);
    }
    CHECK(isnan(r->runs[3].last_loss)); /* the NaN written last */
}

static void check_finals(const gkd_report *r) {
    char sql[512];
    for (int k = 0; k < r->n_metrics; k++)
        for (int i = 0; i < r->n_runs; i++) {
            snprintf(sql, sizeof sql, "SELECT %s FROM runs r WHERE r.id = ?2", final_sql(&r->metrics[k]));
            double v = sql_d(sql, "si", r->metrics[k].name, r->runs[i].id);
            CHECKF(same(r->runs[i].final[k], v), "run %lld %s: %.17g vs SQL %.17g", (long long)r->runs[i].id,
                   r->metrics[k].name, r->runs[i].final[k], v);
        }
    int rouge = gkd_report_metric_index(r, "rougeL");
    CHECK(rouge >= 0 && r->runs[5].final_step[rouge] == 10); /* its step-19 eval was never written */
}

static void check_groups(const gkd_report *r) {
    CHECK(r->n_groups ==
          (int)sql_d("SELECT count(DISTINCT json_remove(r.config, '$.seed', '$.name')) FROM runs r "
                     "JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid'",
                     NULL));
    CHECK(r->n_groups == 6);
    /* same group exactly when SQL finds the same config minus seed and name */
    for (int i = 0; i < r->n_runs; i++)
        for (int j = 0; j < r->n_runs; j++) {
            double eq =
                sql_d("SELECT json_remove(a.config, '$.seed', '$.name') = json_remove(b.config, '$.seed', "
                      "'$.name') FROM runs a, runs b WHERE a.id = ?1 AND b.id = ?2",
                      "ii", r->runs[i].id, r->runs[j].id);
            CHECK((r->runs[i].group == r->runs[j].group) == (eq == 1));
        }
    char sql[2048];
    for (int k = 0; k < r->n_metrics; k++) {
        const gkd_report_metric *m = &r->metrics[k];
        for (int g = 0; g < r->n_groups; g++) {
            const gkd_report_group *grp = &r->groups[g];
            snprintf(
                sql, sizeof sql,
                "WITH fin AS (SELECT r.id, json_remove(r.config, '$.seed', '$.name') AS setting, %s AS v "
                "FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid'), "
                "grp AS (SELECT * FROM fin WHERE setting = (SELECT setting FROM fin WHERE id = ?2)), "
                "agg AS (SELECT count(v) AS n, avg(v) AS mean, count(*) AS runs FROM grp) "
                "SELECT n, mean, (SELECT sum((v - mean) * (v - mean)) FROM grp WHERE v IS NOT NULL) / (n - "
                "1), runs "
                "FROM agg",
                final_sql(m));
            double v[4];
            sql_row(v, 4, sql, "si", m->name, r->runs[grp->runs[0]].id);
            CHECK(grp->n_runs == (int)v[3]);
            CHECKF(grp->count[k] == (int)v[0], "%s group %d count %d vs %g", m->name, g, grp->count[k], v[0]);
            CHECKF(same(grp->mean[k], v[1]), "%s group %d mean %.17g vs %.17g", m->name, g, grp->mean[k],
                   v[1]);
            CHECKF(same(grp->std[k], sqrt(v[2])), "%s group %d std %.17g vs %.17g", m->name, g, grp->std[k],
                   sqrt(v[2]));
        }
        /* the best setting: min or max mean, ties to the setting seen first */
        snprintf(sql, sizeof sql,
                 "WITH fin AS (SELECT r.id, json_remove(r.config, '$.seed', '$.name') AS setting, %s AS v "
                 "FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid') "
                 "SELECT min(id) AS first FROM fin GROUP BY setting HAVING count(v) > 0 ORDER BY avg(v) %s, "
                 "first LIMIT 1",
                 final_sql(m), m->maximize ? "DESC" : "ASC");
        double first = sql_d(sql, "s", m->name);
        CHECKF(m->best_group >= 0 && r->runs[r->groups[m->best_group].runs[0]].id == (int64_t)first,
               "%s best group %d vs SQL run %g", m->name, m->best_group, first);
    }
    int loss = gkd_report_metric_index(r, "loss");
    CHECK(loss >= 0 && r->groups[r->runs[3].group].count[loss] == 1 &&
          isnan(r->groups[r->runs[3].group].std[loss]));
    /* labels name what differs between settings, and only that */
    CHECK(strcmp(r->groups[r->runs[0].group].label, "lambda=0 beta=0.1 alpha=0") == 0);
    CHECK(strcmp(r->groups[r->runs[N_GRID - 1].group].label, "lambda=1 beta=0.9 alpha=0.2") == 0);
}

/* The text tables show each setting's numbers as %.6g. */
static void check_printed(const gkd_report *r, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/tables.txt", dir);
    FILE *f = fopen(path, "w+");
    CHECK(f && gkd_report_print_tables(r, f) == GKD_OK);
    if (!f) return;
    long size = ftell(f);
    char *text = calloc((size_t)size + 1, 1);
    rewind(f);
    CHECK(text && fread(text, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    if (!text) return;
    const char *grid = strstr(text, "Settings (");
    CHECK(grid != NULL);
    for (int g = 0; grid && g < r->n_groups; g++) {
        const char *line = strstr(grid, r->groups[g].label);
        CHECKF(line != NULL, "no line for %s", r->groups[g].label);
        if (!line) continue;
        const char *eol = strchr(line, '\n');
        for (int k = 0; k < r->n_metrics; k++) {
            char want[96], s[32];
            snprintf(want, sizeof want, "%.6g", r->groups[g].mean[k]);
            if (!isnan(r->groups[g].std[k])) {
                snprintf(s, sizeof s, " +- %.6g", r->groups[g].std[k]);
                strcat(want, s);
            }
            const char *at = strstr(line, want);
            CHECKF(at && at < eol, "'%s' not on the line of %s", want, r->groups[g].label);
        }
    }
    free(text);
}

static long count_lines(FILE *f) {
    rewind(f);
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    return n;
}

/* Every row of the tidy CSV (after its header) against SQL: the run's hyperparameters and seed from its
 * config, the value stored at (run, split, step, metric). */
static void check_csv_rows(FILE *f) {
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char *field[16];
        int nf = 0;
        for (char *p = line; nf < 16;) {
            field[nf++] = p;
            p = strpbrk(p, ",\n");
            if (!p || *p == '\n') {
                if (p) *p = '\0';
                break;
            }
            *p++ = '\0';
        }
        CHECKF(nf == 12, "csv row %d: %d fields", n, nf);
        if (nf != 12) continue;
        int64_t id = atoll(field[0]);
        double cfg[4];
        sql_row(cfg, 4,
                "SELECT json_extract(config, '$.lambda'), json_extract(config, '$.beta'), "
                "json_extract(config, '$.alpha'), seed FROM runs WHERE id = ?1",
                "i", id);
        CHECK(same(strtod(field[5], NULL), cfg[0]) && same(strtod(field[6], NULL), cfg[1]) &&
              same(strtod(field[7], NULL), cfg[2]) && atoll(field[4]) == (int64_t)cfg[3]);
        int train = strcmp(field[8], "train") == 0;
        double want =
            train ? sql_d("SELECT value FROM metrics WHERE run_id = ?1 AND step = ?2 AND name = ?3", "iis",
                          id, (int64_t)atoll(field[9]), field[10])
                  : sql_d("SELECT value FROM evals WHERE run_id = ?1 AND step = ?2 AND split = ?3 AND "
                          "metric = ?4",
                          "iiss", id, (int64_t)atoll(field[9]), field[8], field[10]);
        double got = field[11][0] ? strtod(field[11], NULL) : NAN;
        CHECKF(got == want || (isnan(got) && isnan(want)), "csv row %d: %s vs SQL %.17g", n, field[11], want);
        n++;
    }
    CHECK(n > 0);
}

static void check_csv(gkd_store *store, const gkd_report *r) {
    FILE *f = tmpfile();
    int64_t rows = -1;
    CHECK(f && gkd_report_write_csv(store, r, 0, f, &rows) == GKD_OK);
    double want =
        sql_d("SELECT (SELECT count(*) FROM metrics WHERE run_id IN (SELECT r.id FROM runs r JOIN sweeps s "
              "ON s.id = r.sweep_id WHERE s.name = 'grid')) + (SELECT count(*) FROM evals WHERE run_id IN "
              "(SELECT r.id FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid'))",
              NULL);
    CHECKF(rows == (int64_t)want, "csv rows %lld, SQL %g", (long long)rows, want);
    if (f) {
        CHECK(count_lines(f) == rows + 1);
        char head[128] = "";
        rewind(f);
        CHECK(fgets(head, sizeof head, f) &&
              strcmp(head, "run_id,run,sweep,setting,seed,lambda,beta,alpha,split,step,metric,value\n") == 0);
        check_csv_rows(f);
        fclose(f);
    }
    f = tmpfile();
    CHECK(f && gkd_report_write_csv(store, r, 1, f, &rows) == GKD_OK);
    if (f) fclose(f);
    double want_named = sql_d(
        "SELECT (SELECT count(*) FROM metrics WHERE name IN ('loss', 'rougeL', 'divergence') AND run_id IN "
        "(SELECT r.id FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid')) + "
        "(SELECT count(*) FROM evals WHERE metric IN ('loss', 'rougeL', 'divergence') AND run_id IN "
        "(SELECT r.id FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid'))",
        NULL);
    CHECKF(rows == (int64_t)want_named, "csv of the report's metrics: %lld rows, SQL %g", (long long)rows,
           want_named);
}

/* ---- reading the HTML back ---- */

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    fclose(f);
    return s;
}

/* The <svg ...> element whose start tag contains `marker`, as [*start, *end). */
static int find_svg(const char *html, const char *marker, const char **start, const char **end) {
    for (const char *p = strstr(html, "<svg"); p; p = strstr(p + 4, "<svg")) {
        const char *gt = strchr(p, '>');
        const char *m = strstr(p, marker);
        if (gt && m && m < gt) {
            *start = p;
            *end = strstr(p, "</svg>");
            return *end != NULL;
        }
    }
    return 0;
}

/* The value of attribute `name` inside the tag starting at `tag`, copied to out. */
static int attr(const char *tag, const char *name, char *out, size_t cap) {
    const char *gt = strchr(tag, '>');
    char key[64];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(tag, key);
    if (!p || (gt && p > gt)) return 0;
    p += strlen(key);
    const char *q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= cap) return 0;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return 1;
}

static int count_in(const char *start, const char *end, const char *needle) {
    int n = 0;
    for (const char *p = strstr(start, needle); p && p < end; p = strstr(p + 1, needle)) n++;
    return n;
}

static gkd_status write_html(gkd_store *store, gkd_report *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return GKD_ERR_IO;
    gkd_report_html_options o = {.title = "synthetic sweep", .heatmap_metric = "rougeL"};
    gkd_status st = gkd_report_write_html(store, r, &o, f);
    fclose(f);
    return st;
}

static void check_html(gkd_store *store, gkd_report *r, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/report.html", dir);
    int n_table_metrics = r->n_metrics;
    CHECK(write_html(store, r, path) == GKD_OK);
    char *html = read_all(path);
    CHECK(html != NULL);
    if (!html) return;
    /* self-contained: the one script is inline, nothing is loaded */
    CHECK(strstr(html, "<script>") != NULL && strstr(html, " src=") == NULL && strstr(html, "https://") == NULL &&
          strstr(html, "http://") == strstr(html, "http://www.w3.org/2000/svg"));
    CHECK(strstr(html, "<h2>Settings</h2>") != NULL);
    /* the reward is plotted but not tabled */
    CHECK(gkd_report_metric_index(r, "reward") >= n_table_metrics);

    const char *s = NULL, *e = NULL;
    int found;
    /* learning curves: one series per run, each named after it, with all its points */
    found = find_svg(html, "data-plot=\"curves\" data-metric=\"loss\"", &s, &e);
    CHECK(found);
    if (found) {
        CHECK(count_in(s, e, "<path class=\"series\"") == N_GRID);
        for (int i = 0; i < r->n_runs; i++) {
            char want[128];
            snprintf(want, sizeof want, "data-series=\"%s\" data-run-id=\"%lld\" data-points=\"%d\"",
                     r->runs[i].name, (long long)r->runs[i].id, N_STEPS);
            CHECKF(count_in(s, e, want) == 1, "curve %s", want);
        }
    }
    found = find_svg(html, "data-plot=\"curves\" data-metric=\"rougeL\" data-source=\"evals\"", &s, &e);
    CHECK(found);
    if (found) CHECK(count_in(s, e, "<path class=\"series\"") == N_GRID);

    /* the heatmap: 3 x 2 cells, each the mean final rougeL of its two seeds */
    found = find_svg(html, "data-plot=\"heatmap\" data-metric=\"rougeL\"", &s, &e);
    CHECK(found);
    if (found) {
        char v[64];
        CHECK(attr(s, "data-nx", v, sizeof v) && strcmp(v, "3") == 0);
        CHECK(attr(s, "data-ny", v, sizeof v) && strcmp(v, "2") == 0);
        CHECK(count_in(s, e, "<rect class=\"cell\"") == 6);
        int seen = 0;
        for (const char *p = strstr(s, "<rect class=\"cell\""); p && p < e;
             p = strstr(p + 1, "<rect class=\"cell\"")) {
            char xs[64], ys[64], vs[64], cs[64];
            if (!(attr(p, "data-x", xs, sizeof xs) && attr(p, "data-y", ys, sizeof ys) &&
                  attr(p, "data-value", vs, sizeof vs) && attr(p, "data-count", cs, sizeof cs))) {
                CHECK(!"cell attributes");
                continue;
            }
            double want[2];
            sql_row(want, 2,
                    "SELECT avg(v), count(v) FROM (SELECT json_extract(r.config, '$.lambda') AS x, "
                    "json_extract(r.config, '$.beta') AS y, (SELECT e.value FROM evals e WHERE e.run_id = "
                    "r.id AND "
                    "e.split = 'held_out' AND e.metric = 'rougeL' ORDER BY e.step DESC LIMIT 1) AS v "
                    "FROM runs r JOIN sweeps s ON s.id = r.sweep_id WHERE s.name = 'grid') WHERE x = ?1 AND "
                    "y = ?2",
                    "dd", strtod(xs, NULL), strtod(ys, NULL));
            CHECKF(same(strtod(vs, NULL), want[0]), "cell %s,%s: %s vs SQL %.17g", xs, ys, vs, want[0]);
            CHECK(atoi(cs) == (int)want[1] && want[1] == N_SEEDS);
            seen++;
        }
        CHECK(seen == 6);
    }

    /* the scatter: one point per run at (final reward, final rougeL), labelled by alpha */
    /* the task metric by default: the first tabled one where higher is better */
    found = find_svg(html, "data-plot=\"scatter\" data-x-metric=\"reward\" data-y-metric=\"rougeL\"", &s, &e);
    CHECK(found);
    if (found) {
        CHECK(count_in(s, e, "<circle class=\"point\"") == N_GRID);
        char ym[64];
        CHECK(attr(s, "data-y-metric", ym, sizeof ym));
        for (const char *p = strstr(s, "<circle class=\"point\""); p && p < e;
             p = strstr(p + 1, "<circle class=\"point\"")) {
            char id[32], xs[64], ys[64], label[64];
            CHECK(attr(p, "data-run-id", id, sizeof id) && attr(p, "data-x", xs, sizeof xs) &&
                  attr(p, "data-y", ys, sizeof ys) && attr(p, "data-label", label, sizeof label));
            int64_t run = atoll(id);
            double want_x =
                sql_d("SELECT value FROM metrics WHERE run_id = ?1 AND name = 'reward' ORDER BY step DESC "
                      "LIMIT 1",
                      "i", run);
            double want_y =
                sql_d("SELECT value FROM evals WHERE run_id = ?1 AND split = 'held_out' AND metric = ?2 "
                      "ORDER BY step DESC LIMIT 1",
                      "is", run, ym);
            double alpha = sql_d("SELECT json_extract(config, '$.alpha') FROM runs WHERE id = ?1", "i", run);
            CHECK(same(strtod(xs, NULL), want_x) && same(strtod(ys, NULL), want_y));
            CHECK(same(strtod(label, NULL), alpha));
        }
    }
    free(html);
}

/* The report over every run: the schedule's start is its lambda, names are escaped. */
static void check_unfiltered(gkd_store *store, const char *dir) {
    gkd_report *r = NULL;
    gkd_report_options all = {.higher_is_better = gkd_metric_higher_is_better};
    CHECK(gkd_report_load(store, &all, &r) == GKD_OK);
    if (!r) return;
    CHECK(r->n_runs == N_GRID + 2);
    CHECK(r->n_groups == 6 + 2);
    int rouge = gkd_report_metric_index(r, "rougeL");
    gkd_report_heatmap h;
    CHECK(rouge >= 0 && gkd_report_heatmap_build(r, rouge, "lambda", "beta", &h) == GKD_OK);
    if (rouge >= 0) {
        CHECK(h.nx == 4 && h.ny == 3 && h.xs[0] == 0 && h.xs[1] == 0.25 && h.ys[1] == 0.5);
        CHECK(h.count[1 * h.nx + 1] == 1 && h.mean[1 * h.nx + 1] == 0.5); /* solo: lambda 0.25, beta 0.5 */
        CHECK(h.count[1 * h.nx + 3] == 0 && isnan(h.mean[1 * h.nx + 3])); /* live: no rougeL */
        CHECK(h.count[0] == 2);
    }
    gkd_report_heatmap_free(&h);
    gkd_report_heatmap_free(NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/all.html", dir);
    CHECK(write_html(store, r, path) == GKD_OK);
    char *html = read_all(path);
    CHECK(html && strstr(html, "solo &lt;&amp;&gt;") && !strstr(html, "solo <&>"));
    free(html);
    int64_t live = r->runs[r->n_runs - 1].id;
    CHECK(strcmp(r->runs[r->n_runs - 1].status, "running") == 0 && r->runs[r->n_runs - 1].last_step == 6);
    CHECK(r->runs[r->n_runs - 1].duration_s >= 0 && !r->runs[r->n_runs - 1].finished_at);
    gkd_report_free(r);

    gkd_report_options o = {.status = "finished", .higher_is_better = gkd_metric_higher_is_better};
    CHECK(gkd_report_load(store, &o, &r) == GKD_OK);
    if (r) {
        CHECK(r->n_runs == N_GRID);
        for (int i = 0; i < r->n_runs; i++) CHECK(r->runs[i].id != live);
        gkd_report_free(r);
    }
    gkd_report_options bad = {.status = "done"};
    CHECK(gkd_report_load(store, &bad, &r) == GKD_ERR_ARG && r == NULL);
    gkd_report_options nosweep = {.sweep = "nope"};
    CHECK(gkd_report_load(store, &nosweep, &r) == GKD_ERR_NOT_FOUND && strstr(gkd_error_message(), "nope"));
    const char *typo[] = {"rogueL"};
    gkd_report_options nometric = {.metrics = typo, .n_metrics = 1};
    CHECK(gkd_report_load(store, &nometric, &r) == GKD_ERR_NOT_FOUND &&
          strstr(gkd_error_message(), "rogueL"));
}

static void check_options(gkd_store *store) {
    const char *metrics[] = {"loss", "rougeL"}, *maximize[] = {"loss"}, *ignore[] = {"seed", "name", "beta"};
    gkd_report_options o = {.sweep = "grid",
                            .split = "validation",
                            .higher_is_better = gkd_metric_higher_is_better,
                            .metrics = metrics,
                            .n_metrics = 2,
                            .maximize = maximize,
                            .n_maximize = 1,
                            .ignore_keys = ignore,
                            .n_ignore_keys = 3};
    gkd_report *r = NULL;
    CHECK(gkd_report_load(store, &o, &r) == GKD_OK);
    if (!r) return;
    CHECK(r->n_metrics == 2 && r->metrics[0].maximize == 1 && r->metrics[1].maximize == 1);
    CHECK(strcmp(r->split, "validation") == 0 && r->metrics[1].source == GKD_REPORT_FROM_EVALS);
    CHECK(r->metrics[0].source == GKD_REPORT_FROM_METRICS);
    /* beta ignored: settings by lambda (and alpha) only, four runs each */
    CHECK(r->n_groups == 3 && r->groups[0].n_runs == 4);
    CHECK(strcmp(r->groups[0].label, "lambda=0 alpha=0") == 0);
    for (int i = 0; i < r->n_runs; i++)
        CHECK(same(r->runs[i].final[1],
                   sql_d("SELECT value FROM evals WHERE run_id = ?1 AND split = 'validation' AND "
                         "metric = 'rougeL'",
                         "i", r->runs[i].id)));
    /* loss maximised: the best setting has the largest mean */
    int best = r->metrics[0].best_group;
    for (int g = 0; g < r->n_groups; g++) CHECK(r->groups[g].mean[0] <= r->groups[best].mean[0]);
    gkd_report_free(r);
    gkd_report_free(NULL);
}

/* The direction the caller passes (the registry's: its entries, else the rule on the name), and the
 * report's own default without one: higher is better for every metric not in `minimize`. */
static void check_rules(gkd_store *store) {
    CHECK(gkd_metric_higher_is_better("loss") == 0 && gkd_metric_higher_is_better("eval_loss") == 0);
    CHECK(gkd_metric_higher_is_better("divergence") == 0 && gkd_metric_higher_is_better("KL_forward") == 0);
    CHECK(gkd_metric_higher_is_better("length_penalty") == 0 &&
          gkd_metric_higher_is_better("perplexity") == 0);
    CHECK(gkd_metric_higher_is_better("rougeL") == 1 && gkd_metric_higher_is_better("bleu") == 1);
    CHECK(gkd_metric_higher_is_better("reward") == 1 && gkd_metric_higher_is_better("factual") == 1);
    const char *metrics[] = {"loss", "rougeL"}, *minimize[] = {"rougeL"};
    gkd_report_options o = {
        .sweep = "grid", .metrics = metrics, .n_metrics = 2, .minimize = minimize, .n_minimize = 1};
    gkd_report *r = NULL;
    CHECK(gkd_report_load(store, &o, &r) == GKD_OK);
    if (r) CHECK(r->metrics[0].maximize == 1 && r->metrics[1].maximize == 0);
    gkd_report_free(r);
    double v = 0;
    CHECK(gkd_report_config_number("{\"lambda\":0.5}", "lambda", &v) && v == 0.5);
    CHECK(gkd_report_config_number("{\"lambda\":{\"kind\":\"linear\",\"start\":0.1,\"end\":1}}", "lambda",
                                   &v) &&
          v == 0.1);
    CHECK(gkd_report_config_number("{\"beta\":{\"value\":0.7,\"start\":0.1}}", "beta", &v) && v == 0.7);
    CHECK(gkd_report_config_number("{\"divergence\":{\"beta\":0.9}}", "divergence.beta", &v) && v == 0.9);
    CHECK(!gkd_report_config_number("{\"lambda\":\"high\"}", "lambda", &v));
    CHECK(!gkd_report_config_number("{\"beta\":1}", "lambda", &v));
    CHECK(!gkd_report_config_number("{not json", "lambda", &v));
}

/* Settings as gkd.run stores them: per-seed identity keys (seed, resolved.seed, student.init_seed, the
 * script's path) pooled; each hyperparameter labelled once (not its resolved copy, nor the divergence's
 * text naming it), but a text that only resembles it ("beta=0.10") and a covarying key (alpha) kept;
 * --ignore patterns by path and by "*.KEY". */
static void check_settings(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/settings.db", dir);
    gkd_store *s = NULL;
    int64_t sweep = 0, run = 0;
    int ok = gkd_store_open(path, &s) == GKD_OK && gkd_store_sweep_create(s, "d", NULL, &sweep) == GKD_OK;
    for (int i = 0; ok && i < 8; i++) {
        int lambda = i / 4, seed = 1 + i % 2;
        const char *beta = i / 2 % 2 ? "0.15" : "0.1";
        char config[512];
        snprintf(config, sizeof config,
                 "{\"name\":\"r%d\",\"lambda\":%d,\"beta\":%s,\"alpha\":%d,\"divergence\":\"jsd(beta=%s)\","
                 "\"note\":\"beta=%s0\",\"step\":%d,\"seed\":%d,\"student\":{\"init_seed\":%d,\"dim\":16},"
                 "\"resolved\":{\"lambda\":%d,\"beta\":%s,\"seed\":%d},\"script\":{\"path\":\"/w%d/s.lua\"}}",
                 i, lambda, beta, 2 * lambda, beta, beta, 10 * lambda, seed, seed, lambda, beta, seed, seed);
        char name[16];
        snprintf(name, sizeof name, "r%d", i);
        ok = gkd_store_run_begin(s, name, sweep, config, (uint64_t)seed, &run) == GKD_OK &&
             gkd_store_metric(s, run, 1, "loss", i) == GKD_OK;
    }
    CHECK(gkd_store_close(s) == GKD_OK && ok);
    CHECK(gkd_store_open_readonly(path, &s) == GKD_OK);
    gkd_report *r = NULL;
    gkd_report_options o = {0};
    CHECK(gkd_report_load(s, &o, &r) == GKD_OK);
    if (r) {
        CHECK(r->n_groups == 4 && r->groups[0].n_runs == 2 && r->groups[3].n_runs == 2);
        CHECKF(strcmp(r->groups[0].label, "lambda=0 beta=0.1 alpha=0 note=beta=0.10 step=0") == 0,
               "label '%s'", r->groups[0].label);
        CHECKF(strcmp(r->groups[3].label, "lambda=1 beta=0.15 alpha=2 note=beta=0.150 step=10") == 0,
               "label '%s'", r->groups[3].label);
        CHECK(r->n_params == 5 && strcmp(r->params[0], "lambda") == 0 && strcmp(r->params[3], "note") == 0);
        CHECK(r->n_params == 5 && strcmp(r->groups[1].param_values[1], "0.15") == 0);
        /* a hyperparameter named like a CSV column is written config.NAME */
        FILE *f = tmpfile();
        char head[256] = "";
        CHECK(f && gkd_report_write_csv(s, r, 0, f, NULL) == GKD_OK);
        if (f) {
            rewind(f);
            CHECK(fgets(head, sizeof head, f) &&
                  strcmp(head, "run_id,run,sweep,setting,seed,lambda,beta,alpha,note,config.step,split,step,"
                               "metric,value\n") == 0);
            fclose(f);
        }
    }
    gkd_report_free(r);
    const char *pool[] = {"*.lambda", "alpha", "step"};
    gkd_report_options pooled = {.ignore_keys = pool, .n_ignore_keys = 3};
    CHECK(gkd_report_load(s, &pooled, &r) == GKD_OK);
    if (r) {
        CHECK(r->n_groups == 2 && r->groups[0].n_runs == 4);
        CHECKF(strcmp(r->groups[0].label, "beta=0.1 note=beta=0.10") == 0, "label '%s'", r->groups[0].label);
    }
    gkd_report_free(r);
    const char *typo[] = {"seed", "resolved.lamda"};
    gkd_report_options bad = {.ignore_keys = typo, .n_ignore_keys = 2};
    CHECK(gkd_report_load(s, &bad, &r) == GKD_ERR_NOT_FOUND && !r &&
          strstr(gkd_error_message(), "'resolved.lamda'"));
    const char *nested[] = {"resolved.lambda", "lambda", "alpha", "step"};
    gkd_report_options by_path = {.ignore_keys = nested, .n_ignore_keys = 4};
    CHECK(gkd_report_load(s, &by_path, &r) == GKD_OK && r && r->n_groups == 2);
    gkd_report_free(r);
    gkd_store_close(s);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* --write-html DIR: the inputs of tests/test_report_html.sh. */
static int write_for_browser(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/runs.db", dir);
    gkd_store *store = NULL;
    gkd_report *r = NULL;
    gkd_report_options o = {.sweep = "grid", .higher_is_better = gkd_metric_higher_is_better};
    if (!build_store(path) || gkd_store_open_readonly(path, &store) != GKD_OK ||
        gkd_report_load(store, &o, &r) != GKD_OK) {
        fprintf(stderr, "%s\n", gkd_error_message());
        return 1;
    }
    snprintf(path, sizeof path, "%s/report.html", dir);
    int ok = write_html(store, r, path) == GKD_OK;
    snprintf(path, sizeof path, "%s/expected.txt", dir);
    FILE *f = fopen(path, "w");
    ok = ok && f;
    for (int i = 0; ok && i < r->n_runs; i++) fprintf(f, "series %s\n", r->runs[i].name);
    if (f) {
        fprintf(f, "cells 6\n");
        ok = fclose(f) == 0 && ok;
    }
    gkd_report_free(r);
    gkd_store_close(store);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-html") == 0) return write_for_browser(argv[2]);
    char dir[] = "/tmp/gkd-test-report-XXXXXX";
    if (!mkdtemp(dir)) check_skip("no temporary directory");
    char path[512];
    snprintf(path, sizeof path, "%s/runs.db", dir);
    CHECK(build_store(path));
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);

    gkd_store *store = NULL;
    CHECK(gkd_store_open_readonly(path, &store) == GKD_OK);
    gkd_report_options o = {.sweep = "grid", .higher_is_better = gkd_metric_higher_is_better};
    gkd_report *r = NULL;
    CHECK(gkd_report_load(store, &o, &r) == GKD_OK);
    if (r) {
        CHECK(r->split && strcmp(r->split, "held_out") == 0);
        /* defaults: the split's eval metrics in name order, then the training loss */
        CHECK(r->n_metrics == 3 && strcmp(r->metrics[0].name, "divergence") == 0 &&
              strcmp(r->metrics[1].name, "rougeL") == 0 && strcmp(r->metrics[2].name, "loss") == 0);
        CHECK(r->n_metrics == 3 && r->metrics[2].source == GKD_REPORT_FROM_METRICS &&
              !r->metrics[2].maximize && r->metrics[1].maximize);
        check_runs(r);
        check_finals(r);
        check_groups(r);
        check_printed(r, dir);
        check_csv(store, r);
        check_html(store, r, dir);
        FILE *f = tmpfile();
        CHECK(f && gkd_report_print_runs(r, f) == GKD_OK && count_lines(f) == 2 + N_GRID);
        if (f) fclose(f);
    }
    gkd_report_free(r);
    check_unfiltered(store, dir);
    check_options(store);
    check_rules(store);
    check_settings(dir);
    gkd_store_close(store);
    sqlite3_close(db);
    remove_dir(dir);
    return check_exit();
}
