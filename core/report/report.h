/* Reports over the run store: the runs table, each run's final metric values, a sweep's settings with
 * mean +- std over seeds, the best setting per metric, a tidy CSV, one self-contained HTML page
 * with inline SVG plots. docs/reports.md describes what each table and plot shows.
 * Rules:
 * - Everything is read through gkd_store_query (read-only SQL); a report never writes to the store.
 * - A run's final value of a metric is its value at the largest step logged for that metric (evals:
 *   for the report's split). A NaN (stored NULL) final value counts as missing in aggregates.
 * - A metric is read from evals (the report's split) when any selected run has it there, otherwise
 *   from the training metrics table; one metric never mixes the two.
 * - A setting is the run config minus the per-run identity keys (name, sweep, any seed or init_seed,
 *   script, warnings, checkpoint.dir) and the caller's ignored keys; runs of one sweep with equal
 *   settings form a group, aggregated over its runs (the seeds). std is the sample standard deviation
 *   (n - 1), NaN for fewer than two values.
 * - A hyperparameter is a setting leaf (dotted path) that varies between groups, each shown once: a copy
 *   of one under "resolved" or a text naming its value (divergence "jsd(beta=0.1)") is left out
 *   (report_setting.c says exactly which).
 * - gkd_report and gkd_report_heatmap own all their memory; their free functions accept NULL. */
#ifndef GKD_REPORT_H
#define GKD_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/base/error.h"
#include "core/store/store.h"

typedef enum {
    GKD_REPORT_FROM_EVALS,   /* evals table, the report's split */
    GKD_REPORT_FROM_METRICS, /* training metrics table */
} gkd_report_source;

typedef struct {
    const char *sweep;  /* only this sweep's runs; NULL: every run */
    const char *status; /* only runs in this status ("finished", ...); NULL: any */
    const char *split;  /* eval split; NULL: "held_out" if the runs have it, else their first split */
    /* the metrics to report; NULL/0: every eval metric of the split, then "loss" */
    const char *const *metrics;
    int n_metrics;
    /* config keys that are not part of a setting, besides the identity keys: a dotted path from the top
     * ("resolved.beta") or "*.KEY" for KEY at any depth */
    const char *const *ignore_keys;
    int n_ignore_keys;
    /* Which way each metric is better: 1 higher, 0 lower. The report sits below reward/, so the caller
     * passes the registry's rule (gkd_metric_higher_is_better, reward/registry.h). NULL: higher is
     * better for every metric not in `minimize`. */
    int (*higher_is_better)(const char *metric);
    const char *const *maximize; /* override the direction (higher_is_better) per metric */
    int n_maximize;
    const char *const *minimize;
    int n_minimize;
    int no_metrics; /* 1: runs and settings only, no final values (the runs table needs none) */
} gkd_report_options;

typedef struct {
    char *name;
    gkd_report_source source;
    int maximize;   /* 1: higher is better */
    int best_group; /* the group with the best mean; -1 when no group has a value */
} gkd_report_metric;

typedef struct {
    int64_t id;
    char *name;
    char *sweep; /* NULL: not part of a sweep */
    char *status;
    char *config;                   /* the run's config JSON as stored */
    char *setting;                  /* compact JSON of config minus the ignored keys: the grouping key */
    char *started_at, *finished_at; /* UTC text as stored; finished_at NULL while running */
    int64_t seed;
    int64_t last_step;   /* largest step with a training metric; -1 if none */
    int64_t total_steps; /* the config's "steps", -1 when absent */
    double last_loss;    /* "loss" at its largest step; NaN if none */
    double duration_s;   /* finish (or now, while running) minus start */
    int group;           /* index into gkd_report.groups */
    char *error;         /* a failed run's stored message; NULL when none */
    char *warnings;      /* the stored warnings, a JSON array of strings ("[]": none) */
    int n_warnings;      /* how many */
    double *final;       /* (n_metrics): final value per metric, NaN when missing */
    int64_t *final_step; /* (n_metrics): the step it is from, -1 when missing */
} gkd_report_run;

typedef struct {
    char *sweep;   /* NULL: runs outside any sweep */
    char *setting; /* the shared setting JSON */
    char *label;   /* the setting keys that differ between groups, "lambda=0.5 beta=0.1" */
    int n_runs;
    int *runs;    /* (n_runs): indexes into gkd_report.runs */
    double *mean; /* (n_metrics) over the runs with a value */
    double *std;  /* (n_metrics) sample std, NaN when count < 2 */
    int *count;   /* (n_metrics) runs with a value */
    char **param_values; /* (gkd_report.n_params) each hyperparameter's value as text; NULL: absent */
} gkd_report_group;

typedef struct {
    char *sweep_filter, *status_filter; /* the selection, kept for later queries; NULL: none */
    char *split;                        /* the eval split used; NULL when the runs have no evals */
    int n_runs;
    gkd_report_run *runs; /* ordered by id */
    int n_metrics;
    gkd_report_metric *metrics;
    int n_groups;
    gkd_report_group *groups; /* in order of their first run */
    int n_params;
    char **params; /* (n_params) the hyperparameters: dotted paths, in config order */
    int (*higher_is_better)(const char *metric); /* the options' direction, for metrics added later */
} gkd_report;

/* Reads the selected runs, their final values and the group aggregates. On success *out is a new
 * report the caller frees with gkd_report_free; on failure *out is NULL. Fails with GKD_ERR_NOT_FOUND
 * for an unknown sweep or a requested metric no selected run has, GKD_ERR_ARG for an unknown status. */
gkd_status gkd_report_load(gkd_store *store, const gkd_report_options *opt, gkd_report **out);
void gkd_report_free(gkd_report *r);

/* Adds one metric (final values, aggregates, best group) to a loaded report and sets *index to it; a
 * metric already there just gives its index. `maximize` < 0 applies the options' higher_is_better. */
gkd_status gkd_report_add_metric(gkd_store *store, gkd_report *r, const char *name, int maximize, int *index);
/* Index of a metric in r->metrics, -1 if absent. */
int gkd_report_metric_index(const gkd_report *r, const char *name);

/* A number read from a run's config by key; a dotted key walks nested objects ("divergence.beta").
 * A number is taken as is; an object (a schedule) gives its "value" member, else its "start". Returns
 * 1 and sets *out when found, 0 otherwise (also for malformed JSON). */
int gkd_report_config_number(const char *config_json, const char *key, double *out);

/* --- text tables --- (for a terminal: stored texts are printed with control characters escaped as \xNN) */

/* id, name, sweep, status, seed, steps done/total, last loss, start, finish, duration. */
gkd_status gkd_report_print_runs(const gkd_report *r, FILE *out);
/* Three tables: each run's final values; each group's mean +- std and count; the best group per metric. */
gkd_status gkd_report_print_tables(const gkd_report *r, FILE *out);

/* --- CSV --- */

/* A tidy table, one row per stored value of the selected runs: run_id,run,sweep,setting,seed, one column
 * per r->params (named by its path; "config.NAME" when NAME is another column's), split,step,metric,value
 * (training metrics have split "train"; numbers in the fewest digits that read back exactly; NaN is an
 * empty field; RFC 4180 quoting). only_report_metrics: keep only the names in r->metrics. *rows (may be
 * NULL) receives the number of data rows. */
gkd_status gkd_report_write_csv(gkd_store *store, const gkd_report *r, int only_report_metrics, FILE *out,
                                int64_t *rows);

/* --- the lambda x beta heatmap --- */

typedef struct {
    int nx, ny;
    double *xs, *ys; /* (nx), (ny): the distinct config values, ascending */
    double *mean;    /* (ny, nx) row-major: the metric's mean final value over the cell's runs; NaN if none */
    int *count;      /* (ny, nx): runs with a value in the cell */
} gkd_report_heatmap;

/* Cells keyed by the numbers x_key and y_key read from each run's config (gkd_report_config_number);
 * a cell averages every run with those values (over seeds and any other key). Runs without both keys
 * are left out. On success *out owns its arrays (gkd_report_heatmap_free). */
gkd_status gkd_report_heatmap_build(const gkd_report *r, int metric, const char *x_key, const char *y_key,
                                    gkd_report_heatmap *out);
void gkd_report_heatmap_free(gkd_report_heatmap *h);

/* --- HTML --- */

typedef struct {
    const char *title;         /* NULL: "gkd report" */
    const char *const *curves; /* metrics plotted against step; NULL/0: "loss" then the report's metrics */
    int n_curves;
    const char *heatmap_metric; /* NULL: the report's first metric */
    const char *heatmap_x;      /* config keys of the heatmap axes; NULL: "lambda", "beta" */
    const char *heatmap_y;
    const char *reward_metric; /* scatter x; NULL: "reward" */
    const char *task_metric;   /* scatter y; NULL: the first tabled quality metric (docs/reports.md) */
    const char *label_key;     /* config key labelling scatter points; NULL: "alpha" */
} gkd_report_html_options;

/* Writes one self-contained HTML page (nothing loaded; one inline script of gkd's own, report_js.c): the
 * learning curves (each setting's mean and std band over its runs; the loss one plot per quantity), the
 * heatmap per sweep and the reward/task scatter as inline SVG whose elements carry data-* attributes
 * (docs/reports.md), then the tables. Plot metrics missing from r are added to it (gkd_report_add_metric); a plot whose
 * data is absent is replaced by a sentence saying so. */
gkd_status gkd_report_write_html(gkd_store *store, gkd_report *r, const gkd_report_html_options *opt,
                                 FILE *out);

/* --- formatting shared with the CLI --- */

/* A duration as the runs table shows it: "12.3s", "4m05s", "2h03m07s", "3d04h05m", "-" when negative
 * or not finite. Writes buf[0..cap) and returns buf. */
const char *gkd_report_format_duration(char *buf, size_t cap, double seconds);

#endif
