/* What the report's files share (core/report/report.h is the public side): the run selection every
 * query uses, the cell tables the text and HTML outputs render, and the helpers of more than one file.
 * Rules: private to core/report/; names start with report_. Files: report_load.c (runs, groups, final
 * values, aggregates), report_setting.c (settings, labels, hyperparameters), report_table.c (cell tables,
 * text output, CSV), report_svg.c (heatmap cells and the SVG plots), report_js.c (the page's script),
 * report_html.c (the page). */
#ifndef GKD_REPORT_INTERNAL_H
#define GKD_REPORT_INTERNAL_H

#include <stdio.h>

#include "core/base/json.h"
#include "core/report/report.h"

/* The selected runs' ids. ?1 and ?2 are the sweep and status filters (NULL: no filter), so the
 * tables, the CSV and the plots all see the same runs. */
#define REPORT_SELECTED                                                                                      \
    "(SELECT r.id FROM runs r LEFT JOIN sweeps s ON s.id = r.sweep_id "                                      \
    "WHERE (?1 IS NULL OR s.name = ?1) AND (?2 IS NULL OR r.status = ?2))"

/* ---- report_load.c ---- */

/* A copy the caller frees; NULL for NULL (or out of memory). */
char *report_strdup(const char *s);
/* Sets the last error to GKD_ERR_NOMEM naming `what` and returns that status. */
gkd_status report_nomem(const char *what);
/* The index in r->runs of run `id` (runs are ordered by id), -1 if absent. */
int report_run_index(const gkd_report *r, int64_t id);
/* Equal strings, or both NULL. */
int report_streq(const char *a, const char *b);

/* ---- report_setting.c ---- */

/* The config keys that identify a run rather than its setting (ignore patterns, see report_setting.c),
 * always left out of settings. */
extern const char *const report_identity_keys[];
extern const int report_n_identity_keys;
/* *out: config (JSON) as compact JSON without the identity keys and the patterns ignore[0..n_ignore);
 * a config that is not a JSON object is its own setting. hits (NULL, or n_ignore counters) counts
 * the keys each pattern left out. The caller frees *out. */
gkd_status report_setting_of(const char *config, const char *const *ignore, int n_ignore, int *hits,
                             char **out);
/* Sets every group's label: the hyperparameters that vary between the settings of its sweep. */
gkd_status report_label_groups(gkd_report *r);
/* Sets r->params and every group's param_values: the hyperparameters that vary between all groups. */
gkd_status report_find_params(gkd_report *r);

/* ---- report_table.c ---- */

typedef struct {
    int n_cols;
    const char **head;
    int *right; /* numeric column: right-aligned */
    char **cells;
    int n_rows, cap_rows;
    int nomem;
} report_table;

/* "%.6g", or "-" for a missing value; writes buf[0..cap) and returns buf. */
const char *report_fmt_num(char *buf, size_t cap, double x);
/* x in the fewest significant digits (15 to 17) that read back as x; "" for NaN. cap >= 32. */
const char *report_fmt_exact(char *buf, size_t cap, double x);
/* GKD_OK, or GKD_ERR_IO when writing `out` failed. */
gkd_status report_check_written(FILE *out);
/* The tables of the text output and the page, as cells; t->nomem reports a failed allocation. pm is
 * the plus-minus sign ("+-" on a terminal, "\xc2\xb1" in HTML). */
void report_table_runs(const gkd_report *r, report_table *t);
void report_table_finals(const gkd_report *r, report_table *t);
void report_table_grid(const gkd_report *r, report_table *t, const char *pm);
void report_table_best(const gkd_report *r, report_table *t, const char *pm);
/* Appends the table as HTML, class `cls`, every text escaped. */
void report_table_put_html(const report_table *t, gkd_buf *b, const char *cls);
void report_table_free(report_table *t);

/* ---- report_svg.c: each plot appended to b as one inline <svg> ---- */

/* Metric k against step, one series per run. */
gkd_status report_svg_curves(gkd_store *store, const gkd_report *r, int k, gkd_buf *b);
/* Metric k's mean over the cells of config keys xk x yk. */
gkd_status report_svg_heatmap(const gkd_report *r, int k, const char *xk, const char *yk, gkd_buf *b);
/* One point per run: metric kx against metric ky, labelled by the config key label_key. */
gkd_status report_svg_scatter(const gkd_report *r, int kx, int ky, const char *label_key, gkd_buf *b);

/* The colour of series i (a setting's index): Tableau's ten, thirty more chosen to stay apart from
 * them and each other, then golden-angle hues, so that colours do not repeat after ten. out: "#rrggbb". */
void report_svg_colour(int i, char out[8]);

/* ---- report_js.c ---- */

/* The page's script: hover values, legend toggles, log scale and smoothing of the learning curves. */
extern const char report_js[];

/* ---- report_html.c ---- */

/* Appends s with &, <, >, " and ' escaped; NULL appends nothing. */
void report_html_put(gkd_buf *b, const char *s);

#endif
