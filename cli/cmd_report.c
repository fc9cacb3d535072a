/* `gkd runs` and `gkd report`: tables, CSV and an HTML page over a run store (core/report/report.h; the
 * commands and what they show: docs/reports.md).
 * Rules: the store is opened read-only, so a report can run beside live runs and never changes the
 * file. Exit status: 0 ok; 2 bad usage or input (unknown option, sweep, status, metric or ignored key);
 * 1 a failure at run time (the store cannot be read, a file cannot be written). List options (--metric,
 * --maximize, --minimize, --ignore, --curve) take comma-separated names and may also be repeated. The
 * tables go to stdout only when no file is asked for; each file written gets one line saying where. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/report/report.h"
#include "core/store/store.h"
#include "reward/registry.h"

enum { REPORT_MAX_LIST = 64 };

/* Names from every occurrence of a list option, split at commas. The parser keeps each occurrence in
 * a->names/values, so they are read here directly and marked used. Owns its strings. */
typedef struct {
    int n;
    char *items[REPORT_MAX_LIST];
} name_list;

static int option_is(const char *stored, const char *name) {
    while (*stored == '-') stored++;
    return strcmp(stored, name) == 0;
}

/* 0, or 2 after printing why (too many names, an empty name, no value). */
static int collect_list(gkd_cli_args *a, const char *name, name_list *out) {
    for (int i = 0; i < a->n_options; i++) {
        if (!option_is(a->names[i], name)) continue;
        a->used[i] = 1;
        const char *v = a->values[i];
        if (!v) {
            gkd_cli_error(a->command, "--%s needs a value", name);
            return 2;
        }
        for (const char *p = v;;) {
            size_t len = strcspn(p, ",");
            if (len == 0) {
                gkd_cli_error(a->command, "--%s '%s': empty name", name, v);
                return 2;
            }
            if (out->n == REPORT_MAX_LIST) {
                gkd_cli_error(a->command, "--%s: more than %d names", name, REPORT_MAX_LIST);
                return 2;
            }
            char *item = malloc(len + 1);
            if (!item) {
                gkd_cli_error(a->command, "out of memory");
                return 1;
            }
            memcpy(item, p, len);
            item[len] = '\0';
            out->items[out->n++] = item;
            if (!p[len]) break;
            p += len + 1;
        }
    }
    return 0;
}

static void name_list_free(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    l->n = 0;
}

/* The store: the one positional argument, or --db, or runs.db. */
static const char *store_path(gkd_cli_args *a, int *bad) {
    const char *db = gkd_cli_str(a, "db", NULL);
    if (a->n_positional > 1 || (a->n_positional == 1 && db)) {
        gkd_cli_error(a->command, "give the store once, as --db PATH or as the one argument");
        *bad = 1;
        return NULL;
    }
    return a->n_positional == 1 ? a->positional[0] : db ? db : "runs.db";
}

/* Bad input the user can fix is 2; anything else that failed is 1. */
static int status_exit(gkd_status st) {
    return st == GKD_ERR_ARG || st == GKD_ERR_NOT_FOUND ? 2 : 1;
}

static int open_store(const char *command, const char *path, gkd_store **store) {
    gkd_status st = gkd_store_open_readonly(path, store);
    if (st == GKD_OK) return 0;
    gkd_cli_error(command, "%s", gkd_error_message());
    return 1;
}

int gkd_cmd_runs(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "runs", argc, argv, 2, "") != 0) return 2;
    int bad = 0;
    const char *path = store_path(&a, &bad);
    gkd_report_options opt = {
        .sweep = gkd_cli_str(&a, "sweep", NULL),
        .status = gkd_cli_str(&a, "status", NULL),
        .no_metrics = 1,
    };
    if (bad || gkd_cli_check_unused(&a) != 0) return 2;
    gkd_store *store = NULL;
    if (open_store("runs", path, &store) != 0) return 1;
    gkd_report *r = NULL;
    gkd_status st = gkd_report_load(store, &opt, &r);
    if (st == GKD_OK) st = gkd_report_print_runs(r, stdout);
    if (st != GKD_OK) gkd_cli_error("runs", "%s", gkd_error_message());
    gkd_report_free(r);
    gkd_store_close(store);
    return st == GKD_OK ? 0 : status_exit(st);
}

static int write_file(const char *command, const char *path, gkd_store *store, gkd_report *r, int csv,
                      int only_report_metrics, const gkd_report_html_options *html, int csv_on_stdout) {
    int to_stdout = csv && strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f) {
        gkd_cli_error(command, "cannot write '%s'", path);
        return 1;
    }
    int64_t rows = 0;
    gkd_status st = csv ? gkd_report_write_csv(store, r, only_report_metrics, f, &rows)
                        : gkd_report_write_html(store, r, html, f);
    if (!to_stdout && fclose(f) != 0 && st == GKD_OK)
        st = gkd_error_set(GKD_ERR_IO, "closing '%s' failed", path);
    if (st != GKD_OK) {
        gkd_cli_error(command, "%s", gkd_error_message());
        return status_exit(st);
    }
    if (!to_stdout) {
        /* the one line of a file-writing report: stdout, unless it carries the CSV */
        FILE *say = csv_on_stdout ? stderr : stdout;
        if (csv)
            fprintf(say, "gkd report: wrote %s (%lld rows)\n", path, (long long)rows);
        else
            fprintf(say, "gkd report: wrote %s (%d runs, %d settings)\n", path, r->n_runs, r->n_groups);
    }
    return 0;
}

int gkd_cmd_report(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "report", argc, argv, 2, "") != 0) return 2;
    int bad = 0;
    const char *path = store_path(&a, &bad);
    name_list metrics = {0}, maximize = {0}, minimize = {0}, ignore = {0}, curves = {0};
    int rc = collect_list(&a, "metric", &metrics);
    if (!rc) rc = collect_list(&a, "maximize", &maximize);
    if (!rc) rc = collect_list(&a, "minimize", &minimize);
    if (!rc) rc = collect_list(&a, "ignore", &ignore);
    if (!rc) rc = collect_list(&a, "curve", &curves);
    gkd_report_options opt = {
        .sweep = gkd_cli_str(&a, "sweep", NULL),
        .status = gkd_cli_str(&a, "status", NULL),
        .split = gkd_cli_str(&a, "split", NULL),
        .metrics = (const char *const *)metrics.items,
        .n_metrics = metrics.n,
        .ignore_keys = (const char *const *)ignore.items,
        .n_ignore_keys = ignore.n,
        .higher_is_better = gkd_metric_higher_is_better,
        .maximize = (const char *const *)maximize.items,
        .n_maximize = maximize.n,
        .minimize = (const char *const *)minimize.items,
        .n_minimize = minimize.n,
    };
    gkd_report_html_options html = {
        .title = gkd_cli_str(&a, "title", NULL),
        .curves = (const char *const *)curves.items,
        .n_curves = curves.n,
        .heatmap_metric = gkd_cli_str(&a, "heatmap", NULL),
        .heatmap_x = gkd_cli_str(&a, "heatmap-x", NULL),
        .heatmap_y = gkd_cli_str(&a, "heatmap-y", NULL),
        .reward_metric = gkd_cli_str(&a, "reward", NULL),
        .task_metric = gkd_cli_str(&a, "task", NULL),
        .label_key = gkd_cli_str(&a, "label", NULL),
    };
    const char *html_path = gkd_cli_str(&a, "html", NULL);
    const char *csv_path = gkd_cli_str(&a, "csv", NULL);
    if (!rc && (bad || gkd_cli_check_unused(&a) != 0)) rc = 2;
    for (int i = 0; !rc && i < maximize.n; i++)
        for (int j = 0; j < minimize.n; j++)
            if (strcmp(maximize.items[i], minimize.items[j]) == 0) {
                gkd_cli_error("report", "metric '%s' given to both --maximize and --minimize",
                              maximize.items[i]);
                rc = 2;
            }

    gkd_store *store = NULL;
    gkd_report *r = NULL;
    if (!rc) rc = open_store("report", path, &store);
    if (!rc) {
        gkd_status st = gkd_report_load(store, &opt, &r);
        if (st != GKD_OK) {
            gkd_cli_error("report", "%s", gkd_error_message());
            rc = status_exit(st);
        }
    }
    /* The tables are the report when no file is asked for; with --html or --csv the files are, and
     * CSV on stdout is for another program: nothing else goes there. */
    int csv_to_stdout = csv_path && strcmp(csv_path, "-") == 0;
    if (!rc && !csv_path && !html_path) {
        gkd_status st = gkd_report_print_tables(r, stdout);
        if (st != GKD_OK) {
            gkd_cli_error("report", "%s", gkd_error_message());
            rc = 1;
        }
    }
    if (!rc && csv_path) rc = write_file("report", csv_path, store, r, 1, metrics.n > 0, NULL, csv_to_stdout);
    if (!rc && html_path) rc = write_file("report", html_path, store, r, 0, 0, &html, csv_to_stdout);
    gkd_report_free(r);
    gkd_store_close(store);
    name_list_free(&metrics);
    name_list_free(&maximize);
    name_list_free(&minimize);
    name_list_free(&ignore);
    name_list_free(&curves);
    return rc;
}
