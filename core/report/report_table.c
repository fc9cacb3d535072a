/* The report's tables (core/report/report.h): built once as cells (report_table) and rendered as text
 * for a terminal or as HTML for the page, so the two never disagree; and the long-format CSV.
 * Rules: terminal output escapes control characters of stored texts; HTML and CSV keep them as stored
 * (escaped for HTML, quoted for CSV). */
#include "core/report/report_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* "%.6g", or "-" for a missing value. */
const char *report_fmt_num(char *buf, size_t cap, double x) {
    if (isnan(x))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.6g", x);
    return buf;
}

const char *report_fmt_exact(char *buf, size_t cap, double x) {
    buf[0] = '\0';
    if (isnan(x)) return buf;
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) break;
    }
    return buf;
}

const char *gkd_report_format_duration(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, cap, "-");
    } else if (s < 60) {
        snprintf(buf, cap, "%.1fs", s);
    } else {
        long long t = (long long)(s + 0.5);
        if (t < 3600)
            snprintf(buf, cap, "%lldm%02llds", t / 60, t % 60);
        else if (t < 86400)
            snprintf(buf, cap, "%lldh%02lldm%02llds", t / 3600, t / 60 % 60, t % 60);
        else
            snprintf(buf, cap, "%lldd%02lldh%02lldm", t / 86400, t / 3600 % 24, t / 60 % 60);
    }
    return buf;
}

/* The stored "2024-05-01T12:00:00.123Z" shown as "2024-05-01 12:00:00". */
static const char *fmt_time(char *buf, size_t cap, const char *iso) {
    if (!iso) {
        snprintf(buf, cap, "-");
        return buf;
    }
    snprintf(buf, cap, "%.19s", iso);
    char *t = strchr(buf, 'T');
    if (t) *t = ' ';
    return buf;
}

/* ---------------------------------------------------------------------------------------------------- */
/* tables: cells first, then text or HTML */

static void table_init(report_table *t, int n_cols) {
    memset(t, 0, sizeof *t);
    t->n_cols = n_cols;
    t->head = calloc((size_t)n_cols, sizeof *t->head);
    t->right = calloc((size_t)n_cols, sizeof *t->right);
    if (!t->head || !t->right) t->nomem = 1;
}

static void table_head(report_table *t, int col, const char *name, int right) {
    if (t->nomem) return;
    t->head[col] = name;
    t->right[col] = right;
}

static int table_row(report_table *t) {
    if (t->nomem) return -1;
    if (t->n_rows == t->cap_rows) {
        int ncap = t->cap_rows ? 2 * t->cap_rows : 16;
        char **nc = realloc(t->cells, (size_t)ncap * (size_t)t->n_cols * sizeof *nc);
        if (!nc) {
            t->nomem = 1;
            return -1;
        }
        t->cells = nc;
        t->cap_rows = ncap;
    }
    for (int c = 0; c < t->n_cols; c++) t->cells[(size_t)t->n_rows * t->n_cols + c] = NULL;
    return t->n_rows++;
}

static void table_cell(report_table *t, int row, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void table_cell(report_table *t, int row, int col, const char *fmt, ...) {
    if (t->nomem || row < 0) return;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    if (!s) {
        t->nomem = 1;
        return;
    }
    char **slot = &t->cells[(size_t)row * t->n_cols + col];
    free(*slot);
    *slot = s;
}

void report_table_free(report_table *t) {
    for (size_t i = 0; t->cells && i < (size_t)t->n_rows * t->n_cols; i++) free(t->cells[i]);
    free(t->cells);
    free(t->head);
    free(t->right);
}

static const char *table_get(const report_table *t, int row, int col) {
    const char *s = t->cells[(size_t)row * t->n_cols + col];
    return s ? s : "";
}

/* Display width: UTF-8 code points, so "±" counts as one column. */
static int text_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Prints the table for a terminal. Cells hold texts from the store, which any script may have written (a run
 * name with escape codes or a line break): each is printed with its control characters escaped
 * (gkd_buf_put_printable), widths measured on what is printed, so the columns stay aligned and the terminal
 * receives no control sequence. The HTML and CSV outputs keep the texts as stored. */
static void table_print_text(const report_table *t, FILE *out) {
    const size_t n = (size_t)(t->n_rows + 1) * t->n_cols; /* row 0: the header */
    gkd_buf *shown = calloc(n, sizeof *shown);
    int *w = calloc((size_t)t->n_cols, sizeof *w);
    int failed = !shown || !w;
    for (int r = -1; !failed && r < t->n_rows; r++)
        for (int c = 0; c < t->n_cols; c++) {
            const char *s = r < 0 ? t->head[c] : table_get(t, r, c);
            gkd_buf *b = &shown[(size_t)(r + 1) * t->n_cols + c];
            gkd_buf_put_printable(b, s, strlen(s), 0);
            gkd_buf_puts(b, ""); /* an empty cell still gets its terminating NUL */
            if (b->failed)
                failed = 1;
            else if (text_width(b->data) > w[c])
                w[c] = text_width(b->data);
        }
    for (int r = -1; !failed && r < t->n_rows; r++) {
        for (int c = 0; c < t->n_cols; c++) {
            const char *s = shown[(size_t)(r + 1) * t->n_cols + c].data;
            int pad = w[c] - text_width(s);
            if (c) fputs("  ", out);
            if (t->right[c]) fprintf(out, "%*s", pad, "");
            fputs(s, out);
            if (!t->right[c] && c + 1 < t->n_cols) fprintf(out, "%*s", pad, "");
        }
        fputc('\n', out);
        if (r < 0) {
            for (int c = 0; c < t->n_cols; c++) {
                if (c) fputs("  ", out);
                for (int i = 0; i < w[c]; i++) fputc('-', out);
            }
            fputc('\n', out);
        }
    }
    for (size_t i = 0; shown && i < n; i++) gkd_buf_free(&shown[i]);
    free(shown);
    free(w);
}

void report_table_put_html(const report_table *t, gkd_buf *b, const char *cls) {
    gkd_buf_printf(b, "<table class=\"%s\">\n<thead><tr>", cls);
    for (int c = 0; c < t->n_cols; c++) {
        gkd_buf_puts(b, t->right[c] ? "<th class=\"num\">" : "<th>");
        report_html_put(b, t->head[c]);
        gkd_buf_puts(b, "</th>");
    }
    gkd_buf_puts(b, "</tr></thead>\n<tbody>\n");
    for (int r = 0; r < t->n_rows; r++) {
        gkd_buf_puts(b, "<tr>");
        for (int c = 0; c < t->n_cols; c++) {
            gkd_buf_puts(b, t->right[c] ? "<td class=\"num\">" : "<td>");
            report_html_put(b, table_get(t, r, c));
            gkd_buf_puts(b, "</td>");
        }
        gkd_buf_puts(b, "</tr>\n");
    }
    gkd_buf_puts(b, "</tbody></table>\n");
}

/* A new row with the five columns the runs and finals tables share: id, run name, sweep, `what` (the
 * status or the setting), seed. Returns the row (-1 after a failed allocation, which cells ignore). */
static int run_row(report_table *t, const gkd_report_run *run, const char *what) {
    int row = table_row(t);
    table_cell(t, row, 0, "%lld", (long long)run->id);
    table_cell(t, row, 1, "%s", run->name);
    table_cell(t, row, 2, "%s", run->sweep ? run->sweep : "-");
    table_cell(t, row, 3, "%s", what);
    table_cell(t, row, 4, "%lld", (long long)run->seed);
    return row;
}

void report_table_runs(const gkd_report *r, report_table *t) {
    static const char *const head[] = {"id",        "name",    "sweep",    "status",   "seed",    "steps",
                                       "last loss", "started", "finished", "duration", "warnings"};
    static const int right[] = {1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1};
    table_init(t, 11);
    for (int c = 0; c < 11; c++) table_head(t, c, head[c], right[c]);
    char a[64], b[64];
    for (int i = 0; i < r->n_runs; i++) {
        const gkd_report_run *run = &r->runs[i];
        int row = run_row(t, run, run->status);
        /* no training metric yet: no step done (last_step is -1 then) */
        long long done = run->last_step < 0 ? 0 : (long long)run->last_step;
        if (run->total_steps >= 0)
            table_cell(t, row, 5, "%lld/%lld", done, (long long)run->total_steps);
        else
            table_cell(t, row, 5, "%lld", done);
        table_cell(t, row, 6, "%s", report_fmt_num(a, sizeof a, run->last_loss));
        table_cell(t, row, 7, "%s", fmt_time(a, sizeof a, run->started_at));
        table_cell(t, row, 8, "%s", fmt_time(b, sizeof b, run->finished_at));
        table_cell(t, row, 9, "%s", gkd_report_format_duration(a, sizeof a, run->duration_s));
        table_cell(t, row, 10, "%d", run->n_warnings);
    }
}

void report_table_finals(const gkd_report *r, report_table *t) {
    table_init(t, 5 + r->n_metrics);
    table_head(t, 0, "id", 1);
    table_head(t, 1, "run", 0);
    table_head(t, 2, "sweep", 0);
    table_head(t, 3, "setting", 0);
    table_head(t, 4, "seed", 1);
    for (int k = 0; k < r->n_metrics; k++) table_head(t, 5 + k, r->metrics[k].name, 1);
    char a[64];
    for (int i = 0; i < r->n_runs; i++) {
        const gkd_report_run *run = &r->runs[i];
        int row = run_row(t, run, r->groups[run->group].label);
        for (int k = 0; k < r->n_metrics; k++)
            table_cell(t, row, 5 + k, "%s", report_fmt_num(a, sizeof a, run->final[k]));
    }
}

/* "mean pm std", the std left out when undefined, "(n=K)" added when not every run of the group has a
 * value. */
static void mean_std_cell(report_table *t, int row, int col, const gkd_report_group *grp, int k,
                          const char *pm) {
    char m[64], s[64], n[32] = "";
    report_fmt_num(m, sizeof m, grp->mean[k]);
    if (grp->count[k] != grp->n_runs) snprintf(n, sizeof n, " (n=%d)", grp->count[k]);
    if (isnan(grp->std[k]))
        table_cell(t, row, col, "%s%s", m, n);
    else
        table_cell(t, row, col, "%s %s %s%s", m, pm, report_fmt_num(s, sizeof s, grp->std[k]), n);
}

void report_table_grid(const gkd_report *r, report_table *t, const char *pm) {
    table_init(t, 3 + r->n_metrics);
    table_head(t, 0, "sweep", 0);
    table_head(t, 1, "setting", 0);
    table_head(t, 2, "runs", 1);
    for (int k = 0; k < r->n_metrics; k++) table_head(t, 3 + k, r->metrics[k].name, 1);
    for (int g = 0; g < r->n_groups; g++) {
        const gkd_report_group *grp = &r->groups[g];
        int row = table_row(t);
        table_cell(t, row, 0, "%s", grp->sweep ? grp->sweep : "-");
        table_cell(t, row, 1, "%s", grp->label);
        table_cell(t, row, 2, "%d", grp->n_runs);
        for (int k = 0; k < r->n_metrics; k++) mean_std_cell(t, row, 3 + k, grp, k, pm);
    }
}

void report_table_best(const gkd_report *r, report_table *t, const char *pm) {
    table_init(t, 6);
    table_head(t, 0, "metric", 0);
    table_head(t, 1, "best", 0);
    table_head(t, 2, "sweep", 0);
    table_head(t, 3, "setting", 0);
    table_head(t, 4, "mean", 1);
    table_head(t, 5, "runs", 1);
    for (int k = 0; k < r->n_metrics; k++) {
        const gkd_report_metric *m = &r->metrics[k];
        int row = table_row(t);
        table_cell(t, row, 0, "%s", m->name);
        table_cell(t, row, 1, "%s", m->maximize ? "max" : "min");
        if (m->best_group < 0) {
            table_cell(t, row, 2, "-");
            table_cell(t, row, 3, "(no values)");
            continue;
        }
        const gkd_report_group *grp = &r->groups[m->best_group];
        table_cell(t, row, 2, "%s", grp->sweep ? grp->sweep : "-");
        table_cell(t, row, 3, "%s", grp->label);
        mean_std_cell(t, row, 4, grp, k, pm);
        table_cell(t, row, 5, "%d", grp->n_runs);
    }
}

static gkd_status print_table(report_table *t, FILE *out, const char *title) {
    gkd_status st = t->nomem ? report_nomem("table") : GKD_OK;
    if (st == GKD_OK) {
        if (title) fprintf(out, "%s\n", title);
        table_print_text(t, out);
    }
    report_table_free(t);
    return st;
}

gkd_status report_check_written(FILE *out) {
    if (fflush(out) != 0 || ferror(out)) return gkd_error_set(GKD_ERR_IO, "writing the report failed");
    return GKD_OK;
}

/* Below the runs table: each failed run's message and each stored warning, one line each, with control
 * characters escaped as in the table. */
static gkd_status print_run_notes(const gkd_report *r, FILE *out) {
    gkd_buf b = {0};
    gkd_status st = GKD_OK;
    for (int i = 0; st == GKD_OK && i < r->n_runs; i++) {
        const gkd_report_run *run = &r->runs[i];
        gkd_json *w = NULL;
        if (run->n_warnings > 0 && gkd_json_parse(run->warnings, strlen(run->warnings), NULL, &w) != GKD_OK) {
            st = gkd_error_prefix(GKD_ERR_DB, "the warnings of run %lld", (long long)run->id);
            break;
        }
        const int n = w && w->type == GKD_JSON_ARRAY ? (int)w->len : 0;
        for (int k = -1; k < n; k++) { /* k = -1: the failure */
            const char *text = k < 0 ? (report_streq(run->status, "failed") ? run->error : NULL)
                                     : (w->items[k]->type == GKD_JSON_STRING ? w->items[k]->string : NULL);
            if (!text) continue;
            gkd_buf_printf(&b, "run %lld (", (long long)run->id);
            gkd_buf_put_printable(&b, run->name, strlen(run->name), 0);
            gkd_buf_puts(&b, k < 0 ? ") failed: " : ") warning: ");
            gkd_buf_put_printable(&b, text, strlen(text), 0);
            gkd_buf_puts(&b, "\n");
        }
        gkd_json_free(w);
    }
    if (st == GKD_OK) st = gkd_buf_check(&b, "the runs' notes");
    if (st == GKD_OK && b.len) fputs(b.data, out);
    gkd_buf_free(&b);
    return st;
}

gkd_status gkd_report_print_runs(const gkd_report *r, FILE *out) {
    if (!r || !out) return gkd_error_set(GKD_ERR_ARG, "gkd_report_print_runs: need a report and a stream");
    report_table t;
    report_table_runs(r, &t);
    gkd_status st = print_table(&t, out, NULL);
    if (st == GKD_OK) st = print_run_notes(r, out);
    return st != GKD_OK ? st : report_check_written(out);
}

gkd_status gkd_report_print_tables(const gkd_report *r, FILE *out) {
    if (!r || !out) return gkd_error_set(GKD_ERR_ARG, "gkd_report_print_tables: need a report and a stream");
    char title[512];
    report_table t;
    report_table_finals(r, &t);
    snprintf(title, sizeof title, "Final values (last logged step; evals split: %s)",
             r->split ? r->split : "-");
    gkd_status st = print_table(&t, out, title);
    if (st != GKD_OK) return st;
    fputc('\n', out);
    report_table_grid(r, &t, "+-");
    if ((st = print_table(&t, out, "Settings (mean +- sample std over runs)")) != GKD_OK) return st;
    fputc('\n', out);
    report_table_best(r, &t, "+-");
    if ((st = print_table(&t, out, "Best setting per metric")) != GKD_OK) return st;
    return report_check_written(out);
}

/* ---------------------------------------------------------------------------------------------------- */
/* CSV */

static void csv_field(FILE *out, const char *s) {
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

typedef struct {
    FILE *out;
    const gkd_report *r;
    int64_t rows;
} csv_ctx;

/* The columns before and after the hyperparameters; a hyperparameter named like one of them is written
 * "config.NAME". */
static const char *const csv_fixed[] = {"run_id", "run",  "sweep",  "setting", "seed",
                                        "split",  "step", "metric", "value"};

static void csv_header(FILE *out, const gkd_report *r) {
    fputs("run_id,run,sweep,setting,seed", out);
    for (int p = 0; p < r->n_params; p++) {
        int clash = 0;
        for (size_t c = 0; c < sizeof csv_fixed / sizeof *csv_fixed; c++)
            clash |= strcmp(r->params[p], csv_fixed[c]) == 0;
        fputs(clash ? ",config." : ",", out);
        csv_field(out, r->params[p]);
    }
    fputs(",split,step,metric,value\n", out);
}

/* One stored value: run_id, split, step, metric, value; the run's columns come from the report. */
static int write_csv_row(const gkd_store_row *row, void *vctx) {
    csv_ctx *c = vctx;
    int i = report_run_index(c->r, gkd_store_row_int(row, 0));
    if (i < 0) return 0; /* a run begun after the report was loaded */
    const gkd_report_run *run = &c->r->runs[i];
    const gkd_report_group *grp = &c->r->groups[run->group];
    fprintf(c->out, "%lld,", (long long)run->id);
    csv_field(c->out, run->name);
    fputc(',', c->out);
    csv_field(c->out, run->sweep);
    fputc(',', c->out);
    csv_field(c->out, grp->label);
    fprintf(c->out, ",%lld", (long long)run->seed);
    for (int p = 0; p < c->r->n_params; p++) {
        fputc(',', c->out);
        csv_field(c->out, grp->param_values[p]);
    }
    fputc(',', c->out);
    csv_field(c->out, gkd_store_row_text(row, 1));
    fprintf(c->out, ",%lld,", (long long)gkd_store_row_int(row, 2));
    csv_field(c->out, gkd_store_row_text(row, 3));
    char num[40];
    fprintf(c->out, ",%s\n",
            gkd_store_row_is_null(row, 4) ? ""
                                          : report_fmt_exact(num, sizeof num, gkd_store_row_double(row, 4)));
    c->rows++;
    return 0;
}

gkd_status gkd_report_write_csv(gkd_store *store, const gkd_report *r, int only_report_metrics, FILE *out,
                                int64_t *rows) {
    if (!store || !r || !out)
        return gkd_error_set(GKD_ERR_ARG, "gkd_report_write_csv: need a store, report, stream");
    gkd_buf names = {0};
    if (only_report_metrics) {
        gkd_buf_puts(&names, "[");
        for (int k = 0; k < r->n_metrics; k++) {
            if (k) gkd_buf_puts(&names, ",");
            gkd_buf_json_string(&names, r->metrics[k].name, strlen(r->metrics[k].name));
        }
        gkd_buf_puts(&names, "]");
        if (names.failed) {
            gkd_buf_free(&names);
            return report_nomem("csv");
        }
    }
    csv_header(out, r);
    csv_ctx c = {out, r, 0};
    gkd_status st = gkd_store_query(store, write_csv_row, &c,
                                    "SELECT m.run_id, 'train', m.step, m.name, m.value FROM metrics m "
                                    "WHERE m.run_id IN " REPORT_SELECTED
                                    " AND (?3 IS NULL OR m.name IN (SELECT value FROM json_each(?3))) "
                                    "UNION ALL "
                                    "SELECT e.run_id, e.split, e.step, e.metric, e.value FROM evals e "
                                    "WHERE e.run_id IN " REPORT_SELECTED
                                    " AND (?3 IS NULL OR e.metric IN (SELECT value FROM json_each(?3))) "
                                    "ORDER BY 1, 2, 4, 3",
                                    "sss", r->sweep_filter, r->status_filter, names.data);
    gkd_buf_free(&names);
    if (rows) *rows = c.rows;
    if (st != GKD_OK) return gkd_error_prefix(st, "writing the csv");
    return report_check_written(out);
}
