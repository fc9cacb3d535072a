/* Reports over the run store (core/report/report.h; what each table and plot shows: docs/reports.md).
 * Rules:
 * - Only read-only SQL through gkd_store_query. Every query that touches runs selects them with
 *   REPORT_SELECTED, whose ?1 and ?2 are the sweep and status filters (NULL: no filter), so the tables,
 *   the CSV and the plots all see the same runs.
 * - Aggregates are computed here in C (two passes: mean, then squared deviations from it), not in SQL,
 *   so tests/test_report.c can check them against plain SQL written independently.
 * - Tables are built once as cells (report_table) and rendered as text or as HTML, so the terminal and
 *   the page never disagree.
 * - The HTML page holds no script and loads nothing: styles and plots (SVG) are inline. Every plotted
 *   element carries its data in data-* attributes, numbers written with %.17g so they read back exactly. */
#include "core/report/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/json.h"

#define REPORT_SELECTED                                                                                      \
    "(SELECT r.id FROM runs r LEFT JOIN sweeps s ON s.id = r.sweep_id "                                      \
    "WHERE (?1 IS NULL OR s.name = ?1) AND (?2 IS NULL OR r.status = ?2))"

/* ---------------------------------------------------------------------------------------------------- */
/* small helpers */

static char *report_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int report_streq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static gkd_status report_nomem(const char *what) {
    return gkd_error_set(GKD_ERR_NOMEM, "report: out of memory (%s)", what);
}

/* "%.6g", or "-" for a missing value. */
static const char *fmt_num(char *buf, size_t cap, double x) {
    if (isnan(x))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.6g", x);
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

static void html_put(gkd_buf *b, const char *s) {
    if (!s) return;
    for (; *s; s++) {
        switch (*s) {
        case '&':
            gkd_buf_puts(b, "&amp;");
            break;
        case '<':
            gkd_buf_puts(b, "&lt;");
            break;
        case '>':
            gkd_buf_puts(b, "&gt;");
            break;
        case '"':
            gkd_buf_puts(b, "&quot;");
            break;
        case '\'':
            gkd_buf_puts(b, "&#39;");
            break;
        default:
            gkd_buf_put(b, s, 1);
        }
    }
}

/* A number for a data-* attribute: reads back as the same double; empty for NaN. */
static void attr_num(gkd_buf *b, double x) {
    if (!isnan(x)) gkd_buf_printf(b, "%.17g", x);
}

/* ---------------------------------------------------------------------------------------------------- */
/* config numbers */

static int json_number_of(const gkd_json *v, double *out) {
    if (!v) return 0;
    if (v->type == GKD_JSON_NUMBER) {
        *out = v->number;
        return 1;
    }
    if (v->type != GKD_JSON_OBJECT) return 0;
    /* A schedule stored as a table: its constant value, else where it starts. */
    const gkd_json *x = gkd_json_get(v, "value");
    if (!x || x->type != GKD_JSON_NUMBER) x = gkd_json_get(v, "start");
    if (!x || x->type != GKD_JSON_NUMBER) return 0;
    *out = x->number;
    return 1;
}

int gkd_report_config_number(const char *config_json, const char *key, double *out) {
    if (!config_json || !key || !out) return 0;
    gkd_json *root = NULL;
    if (gkd_json_parse(config_json, strlen(config_json), "run config", &root) != GKD_OK) {
        gkd_error_clear();
        return 0;
    }
    const gkd_json *v = root;
    char part[256];
    for (const char *p = key; v && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof part) {
            v = NULL;
            break;
        }
        memcpy(part, p, n);
        part[n] = '\0';
        v = gkd_json_get(v, part);
        p += n + (dot ? 1 : 0);
    }
    int found = json_number_of(v, out);
    gkd_json_free(root);
    return found;
}

/* ---------------------------------------------------------------------------------------------------- */
/* loading runs */

typedef struct {
    gkd_report *r;
    int cap;
    int nomem;
} runs_ctx;

static int read_run(const gkd_store_row *row, void *vctx) {
    runs_ctx *c = vctx;
    gkd_report *r = c->r;
    if (r->n_runs == c->cap) {
        int ncap = c->cap ? 2 * c->cap : 16;
        gkd_report_run *nr = realloc(r->runs, (size_t)ncap * sizeof *nr);
        if (!nr) {
            c->nomem = 1;
            return 1;
        }
        r->runs = nr;
        c->cap = ncap;
    }
    gkd_report_run *run = &r->runs[r->n_runs];
    memset(run, 0, sizeof *run);
    r->n_runs++;
    run->id = gkd_store_row_int(row, 0);
    run->name = report_strdup(gkd_store_row_text(row, 1));
    run->sweep = report_strdup(gkd_store_row_text(row, 2));
    run->status = report_strdup(gkd_store_row_text(row, 3));
    run->seed = gkd_store_row_int(row, 4);
    run->config = report_strdup(gkd_store_row_text(row, 5) ? gkd_store_row_text(row, 5) : "{}");
    run->started_at = report_strdup(gkd_store_row_text(row, 6));
    run->finished_at = report_strdup(gkd_store_row_text(row, 7));
    run->last_step = gkd_store_row_is_null(row, 8) ? -1 : gkd_store_row_int(row, 8);
    run->last_loss = gkd_store_row_double(row, 9);
    run->duration_s = gkd_store_row_double(row, 10);
    run->group = -1;
    double steps;
    run->total_steps = gkd_report_config_number(run->config, "steps", &steps) && steps >= 0 && steps < 9e18
                           ? (int64_t)steps
                           : -1;
    if (!run->name || !run->status || !run->config || (gkd_store_row_text(row, 2) && !run->sweep) ||
        (gkd_store_row_text(row, 6) && !run->started_at) ||
        (gkd_store_row_text(row, 7) && !run->finished_at)) {
        c->nomem = 1;
        return 1;
    }
    return 0;
}

static int key_ignored(const char *key, const char *const *ignore, int n_ignore) {
    for (int i = 0; i < n_ignore; i++)
        if (strcmp(key, ignore[i]) == 0) return 1;
    return 0;
}

/* The config minus the ignored top-level keys, as compact JSON. A config that is not an object is its
 * own setting. */
static gkd_status setting_of(const char *config, const char *const *ignore, int n_ignore, char **out) {
    *out = NULL;
    gkd_json *root = NULL;
    if (gkd_json_parse(config, strlen(config), "run config", &root) != GKD_OK ||
        root->type != GKD_JSON_OBJECT) {
        gkd_error_clear();
        gkd_json_free(root);
        *out = report_strdup(config);
        return *out ? GKD_OK : report_nomem("setting");
    }
    gkd_buf b = {0};
    gkd_buf_puts(&b, "{");
    int first = 1;
    for (size_t i = 0; i < root->len; i++) {
        if (key_ignored(root->keys[i], ignore, n_ignore)) continue;
        if (!first) gkd_buf_puts(&b, ",");
        first = 0;
        gkd_buf_json_string(&b, root->keys[i], strlen(root->keys[i]));
        gkd_buf_puts(&b, ":");
        gkd_buf_json_value(&b, root->items[i]);
    }
    gkd_buf_puts(&b, "}");
    gkd_json_free(root);
    if (b.failed) {
        gkd_buf_free(&b);
        return report_nomem("setting");
    }
    *out = b.data;
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------- */
/* setting labels: the leaves (dotted paths) whose values differ between groups */

typedef struct {
    char **paths;
    char **values; /* (n_groups * n_paths), NULL where a group lacks the path */
    int n_paths, cap_paths;
    int n_groups;
    int nomem;
} leaf_table;

static int leaf_path_index(leaf_table *t, const char *path) {
    for (int i = 0; i < t->n_paths; i++)
        if (strcmp(t->paths[i], path) == 0) return i;
    if (t->n_paths == t->cap_paths) {
        int ncap = t->cap_paths ? 2 * t->cap_paths : 16;
        char **np = realloc(t->paths, (size_t)ncap * sizeof *np);
        if (!np) return -1;
        t->paths = np;
        char **nv = realloc(t->values, (size_t)ncap * (size_t)t->n_groups * sizeof *nv);
        if (!nv) return -1;
        t->values = nv;
        t->cap_paths = ncap;
    }
    /* values are stored path-major so that growing the path count keeps earlier rows in place */
    t->paths[t->n_paths] = report_strdup(path);
    if (!t->paths[t->n_paths]) return -1;
    for (int g = 0; g < t->n_groups; g++) t->values[(size_t)t->n_paths * t->n_groups + g] = NULL;
    return t->n_paths++;
}

static void leaf_text(gkd_buf *b, const gkd_json *v) {
    if (v->type == GKD_JSON_NUMBER)
        gkd_buf_printf(b, "%.6g", v->number);
    else if (v->type == GKD_JSON_STRING)
        gkd_buf_put(b, v->string, v->len);
    else
        gkd_buf_json_value(b, v);
}

static void collect_leaves(leaf_table *t, int group, const gkd_json *v, gkd_buf *path) {
    if (t->nomem) return;
    if (v->type == GKD_JSON_OBJECT && v->len > 0) {
        size_t keep = path->len;
        for (size_t i = 0; i < v->len; i++) {
            if (keep) gkd_buf_puts(path, ".");
            gkd_buf_puts(path, v->keys[i]);
            collect_leaves(t, group, v->items[i], path);
            path->len = keep;
            if (path->data) path->data[keep] = '\0';
        }
        return;
    }
    gkd_buf text = {0};
    leaf_text(&text, v);
    int i = path->failed || text.failed ? -1 : leaf_path_index(t, path->data ? path->data : "");
    if (i < 0) {
        t->nomem = 1;
        gkd_buf_free(&text);
        return;
    }
    char **slot = &t->values[(size_t)i * t->n_groups + group];
    free(*slot);
    *slot = text.data ? text.data : report_strdup("");
    if (!*slot) t->nomem = 1;
}

/* Labels the groups members[0..n) (one sweep's) by the leaves that differ between them. */
static gkd_status label_sweep(gkd_report *r, const int *members, int n) {
    leaf_table t = {0};
    t.n_groups = n;
    for (int j = 0; j < n && !t.nomem; j++) {
        gkd_json *root = NULL;
        const char *s = r->groups[members[j]].setting;
        if (gkd_json_parse(s, strlen(s), "setting", &root) != GKD_OK) {
            gkd_error_clear();
            continue;
        }
        gkd_buf path = {0};
        collect_leaves(&t, j, root, &path);
        gkd_buf_free(&path);
        gkd_json_free(root);
    }
    for (int j = 0; j < n && !t.nomem; j++) {
        gkd_buf b = {0};
        for (int i = 0; i < t.n_paths; i++) {
            char **row = &t.values[(size_t)i * t.n_groups];
            int varies = 0;
            for (int h = 1; h < t.n_groups && !varies; h++) varies = !report_streq(row[0], row[h]);
            if (!varies) continue;
            if (b.len) gkd_buf_puts(&b, " ");
            gkd_buf_printf(&b, "%s=%s", t.paths[i], row[j] ? row[j] : "-");
        }
        if (!b.len) gkd_buf_puts(&b, "(one setting)");
        if (b.failed) {
            gkd_buf_free(&b);
            t.nomem = 1;
            break;
        }
        r->groups[members[j]].label = b.data;
    }
    for (int i = 0; i < t.n_paths; i++) {
        free(t.paths[i]);
        for (int j = 0; j < t.n_groups; j++) free(t.values[(size_t)i * t.n_groups + j]);
    }
    free(t.paths);
    free(t.values);
    return t.nomem ? report_nomem("setting labels") : GKD_OK;
}

/* Settings are told apart within their sweep: keys that differ only between sweeps are not shown. */
static gkd_status label_groups(gkd_report *r) {
    int *members = malloc((size_t)(r->n_groups ? r->n_groups : 1) * sizeof *members);
    if (!members) return report_nomem("setting labels");
    gkd_status st = GKD_OK;
    for (int g = 0; st == GKD_OK && g < r->n_groups; g++) {
        if (r->groups[g].label) continue;
        int n = 0;
        for (int h = g; h < r->n_groups; h++)
            if (report_streq(r->groups[h].sweep, r->groups[g].sweep)) members[n++] = h;
        st = label_sweep(r, members, n);
    }
    free(members);
    return st;
}

static gkd_status group_runs(gkd_report *r) {
    r->groups = calloc((size_t)(r->n_runs ? r->n_runs : 1), sizeof *r->groups);
    if (!r->groups) return report_nomem("groups");
    for (int i = 0; i < r->n_runs; i++) {
        gkd_report_run *run = &r->runs[i];
        int g = 0;
        while (g < r->n_groups && !(report_streq(r->groups[g].sweep, run->sweep) &&
                                    strcmp(r->groups[g].setting, run->setting) == 0))
            g++;
        if (g == r->n_groups) {
            gkd_report_group *grp = &r->groups[r->n_groups++];
            grp->sweep = report_strdup(run->sweep);
            grp->setting = report_strdup(run->setting);
            if ((run->sweep && !grp->sweep) || !grp->setting) return report_nomem("groups");
        }
        r->groups[g].n_runs++;
        run->group = g;
    }
    for (int g = 0; g < r->n_groups; g++) {
        r->groups[g].runs = malloc((size_t)r->groups[g].n_runs * sizeof *r->groups[g].runs);
        if (!r->groups[g].runs) return report_nomem("groups");
        r->groups[g].n_runs = 0;
    }
    for (int i = 0; i < r->n_runs; i++) {
        gkd_report_group *grp = &r->groups[r->runs[i].group];
        grp->runs[grp->n_runs++] = i;
    }
    return label_groups(r);
}

/* ---------------------------------------------------------------------------------------------------- */
/* metrics: source, final values, aggregates, best group */

static int run_index(const gkd_report *r, int64_t id) {
    int lo = 0, hi = r->n_runs - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (r->runs[mid].id == id) return mid;
        if (r->runs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int gkd_report_metric_index(const gkd_report *r, const char *name) {
    if (!r || !name) return -1;
    for (int k = 0; k < r->n_metrics; k++)
        if (strcmp(r->metrics[k].name, name) == 0) return k;
    return -1;
}

/* 1 when the query gives a row, 0 when none, -1 on failure (last error set). */
static int query_has_row(gkd_store *store, const gkd_report *r, const char *sql, const char *a,
                         const char *b) {
    int64_t one;
    gkd_status st = b ? gkd_store_query_int(store, &one, sql, "ssss", r->sweep_filter, r->status_filter, a, b)
                      : gkd_store_query_int(store, &one, sql, "sss", r->sweep_filter, r->status_filter, a);
    if (st == GKD_OK) return 1;
    if (st == GKD_ERR_NOT_FOUND) {
        gkd_error_clear();
        return 0;
    }
    return -1;
}

static const char SQL_EVAL_EXISTS[] =
    "SELECT 1 FROM evals WHERE split = ?3 AND metric = ?4 AND run_id IN " REPORT_SELECTED " LIMIT 1";
static const char SQL_METRIC_EXISTS[] =
    "SELECT 1 FROM metrics WHERE name = ?3 AND run_id IN " REPORT_SELECTED " LIMIT 1";

static gkd_status metric_source(gkd_store *store, const gkd_report *r, const char *name,
                                gkd_report_source *source) {
    if (r->split) {
        int has = query_has_row(store, r, SQL_EVAL_EXISTS, r->split, name);
        if (has < 0) return gkd_error_prefix(GKD_ERR_DB, "metric '%s'", name);
        if (has) {
            *source = GKD_REPORT_FROM_EVALS;
            return GKD_OK;
        }
    }
    int has = query_has_row(store, r, SQL_METRIC_EXISTS, name, NULL);
    if (has < 0) return gkd_error_prefix(GKD_ERR_DB, "metric '%s'", name);
    if (!has)
        return gkd_error_set(GKD_ERR_NOT_FOUND,
                             "no selected run has metric '%s' (evals split '%s' or "
                             "training metrics)",
                             name, r->split ? r->split : "-");
    *source = GKD_REPORT_FROM_METRICS;
    return GKD_OK;
}

typedef struct {
    gkd_report *r;
    int metric;
} finals_ctx;

static int read_final(const gkd_store_row *row, void *vctx) {
    finals_ctx *c = vctx;
    int i = run_index(c->r, gkd_store_row_int(row, 0));
    if (i >= 0) {
        c->r->runs[i].final_step[c->metric] = gkd_store_row_int(row, 1);
        c->r->runs[i].final[c->metric] = gkd_store_row_double(row, 2);
    }
    return 0;
}

static void aggregate(gkd_report *r, int k) {
    gkd_report_metric *m = &r->metrics[k];
    m->best_group = -1;
    for (int g = 0; g < r->n_groups; g++) {
        gkd_report_group *grp = &r->groups[g];
        double sum = 0;
        int n = 0;
        for (int j = 0; j < grp->n_runs; j++) {
            double v = r->runs[grp->runs[j]].final[k];
            if (isnan(v)) continue;
            sum += v;
            n++;
        }
        double mean = n ? sum / n : NAN, ss = 0;
        for (int j = 0; j < grp->n_runs; j++) {
            double v = r->runs[grp->runs[j]].final[k];
            if (!isnan(v)) ss += (v - mean) * (v - mean);
        }
        grp->count[k] = n;
        grp->mean[k] = mean;
        grp->std[k] = n >= 2 ? sqrt(ss / (n - 1)) : NAN;
        if (n == 0) continue;
        if (m->best_group < 0) {
            m->best_group = g;
            continue;
        }
        double best = r->groups[m->best_group].mean[k];
        if (m->maximize ? mean > best : mean < best) m->best_group = g;
    }
}

/* Makes room for metric index n_metrics in every per-metric array; n_metrics itself is left alone, so
 * a failure leaves the report consistent. */
static gkd_status grow_metric_arrays(gkd_report *r) {
    size_t n = (size_t)r->n_metrics + 1;
    gkd_report_metric *nm = realloc(r->metrics, n * sizeof *nm);
    if (!nm) return report_nomem("metrics");
    r->metrics = nm;
    for (int i = 0; i < r->n_runs; i++) {
        double *f = realloc(r->runs[i].final, n * sizeof *f);
        if (!f) return report_nomem("metrics");
        r->runs[i].final = f;
        int64_t *fs = realloc(r->runs[i].final_step, n * sizeof *fs);
        if (!fs) return report_nomem("metrics");
        r->runs[i].final_step = fs;
    }
    for (int g = 0; g < r->n_groups; g++) {
        gkd_report_group *grp = &r->groups[g];
        double *mean = realloc(grp->mean, n * sizeof *mean);
        if (!mean) return report_nomem("metrics");
        grp->mean = mean;
        double *sd = realloc(grp->std, n * sizeof *sd);
        if (!sd) return report_nomem("metrics");
        grp->std = sd;
        int *count = realloc(grp->count, n * sizeof *count);
        if (!count) return report_nomem("metrics");
        grp->count = count;
    }
    return GKD_OK;
}

static const char SQL_FINAL_EVALS[] =
    "SELECT e.run_id, e.step, e.value FROM evals e WHERE e.split = ?3 AND e.metric = ?4 AND e.run_id "
    "IN " REPORT_SELECTED " AND e.step = (SELECT max(x.step) FROM evals x WHERE x.run_id = e.run_id AND "
    "x.split = ?3 AND x.metric = ?4)";
static const char SQL_FINAL_METRICS[] =
    "SELECT m.run_id, m.step, m.value FROM metrics m WHERE m.name = ?3 AND m.run_id IN " REPORT_SELECTED
    " AND m.step = (SELECT max(x.step) FROM metrics x WHERE x.run_id = m.run_id AND x.name = ?3)";

gkd_status gkd_report_add_metric(gkd_store *store, gkd_report *r, const char *name, int maximize,
                                 int *index) {
    if (!store || !r || !name)
        return gkd_error_set(GKD_ERR_ARG, "gkd_report_add_metric: need a store, report, name");
    int k = gkd_report_metric_index(r, name);
    if (k >= 0) {
        if (index) *index = k;
        return GKD_OK;
    }
    gkd_report_source source = GKD_REPORT_FROM_METRICS;
    gkd_status st = metric_source(store, r, name, &source);
    if (st != GKD_OK) return st;
    if ((st = grow_metric_arrays(r)) != GKD_OK) return st;
    k = r->n_metrics;
    gkd_report_metric *m = &r->metrics[k];
    m->name = report_strdup(name);
    if (!m->name) return report_nomem("metrics");
    m->source = source;
    m->maximize = maximize >= 0 ? (maximize != 0) : r->higher_is_better ? r->higher_is_better(name) != 0 : 1;
    m->best_group = -1;
    for (int i = 0; i < r->n_runs; i++) {
        r->runs[i].final[k] = NAN;
        r->runs[i].final_step[k] = -1;
    }
    finals_ctx c = {r, k};
    st = source == GKD_REPORT_FROM_EVALS ? gkd_store_query(store, read_final, &c, SQL_FINAL_EVALS, "ssss",
                                                           r->sweep_filter, r->status_filter, r->split, name)
                                         : gkd_store_query(store, read_final, &c, SQL_FINAL_METRICS, "sss",
                                                           r->sweep_filter, r->status_filter, name);
    if (st != GKD_OK) {
        free(m->name);
        return gkd_error_prefix(st, "final values of '%s'", name);
    }
    r->n_metrics++;
    aggregate(r, k);
    if (index) *index = k;
    return GKD_OK;
}

typedef struct {
    char **names;
    int n, cap;
    int nomem;
} name_list;

static int read_name(const gkd_store_row *row, void *vctx) {
    name_list *l = vctx;
    if (l->n == l->cap) {
        int ncap = l->cap ? 2 * l->cap : 16;
        char **nn = realloc(l->names, (size_t)ncap * sizeof *nn);
        if (!nn) {
            l->nomem = 1;
            return 1;
        }
        l->names = nn;
        l->cap = ncap;
    }
    const char *s = gkd_store_row_text(row, 0);
    l->names[l->n] = report_strdup(s ? s : "");
    if (!l->names[l->n]) {
        l->nomem = 1;
        return 1;
    }
    l->n++;
    return 0;
}

static void name_list_free(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
}

/* --split, or held_out when the selected runs have it, else their alphabetically first split. */
static gkd_status choose_split(gkd_store *store, gkd_report *r, const char *wanted) {
    if (wanted) {
        r->split = report_strdup(wanted);
        return r->split ? GKD_OK : report_nomem("split");
    }
    name_list l = {0};
    gkd_status st = gkd_store_query(store, read_name, &l,
                                    "SELECT split FROM evals WHERE run_id IN " REPORT_SELECTED
                                    " GROUP BY split ORDER BY split = 'held_out' DESC, split LIMIT 1",
                                    "ss", r->sweep_filter, r->status_filter);
    if (st == GKD_OK && l.nomem) st = report_nomem("split");
    if (st == GKD_OK && l.n) {
        r->split = l.names[0];
        l.names[0] = NULL;
    }
    name_list_free(&l);
    return st;
}

static gkd_status default_metrics(gkd_store *store, gkd_report *r, name_list *l) {
    gkd_status st = GKD_OK;
    if (r->split)
        st = gkd_store_query(
            store, read_name, l,
            "SELECT DISTINCT metric FROM evals WHERE split = ?3 AND run_id IN " REPORT_SELECTED
            " ORDER BY metric",
            "sss", r->sweep_filter, r->status_filter, r->split);
    if (st == GKD_OK && !l->nomem) {
        int has_loss = query_has_row(store, r, SQL_METRIC_EXISTS, "loss", NULL);
        if (has_loss < 0) return GKD_ERR_DB;
        int listed = 0;
        for (int i = 0; i < l->n; i++) listed |= strcmp(l->names[i], "loss") == 0;
        if (has_loss && !listed) {
            char *loss = report_strdup("loss");
            char **nn = loss ? realloc(l->names, (size_t)(l->n + 1) * sizeof *nn) : NULL;
            if (!nn) {
                free(loss);
                return report_nomem("metrics");
            }
            l->names = nn;
            l->names[l->n++] = loss;
            l->cap = l->n;
        }
    }
    if (st == GKD_OK && l->nomem) st = report_nomem("metrics");
    return st;
}

static int direction_of(const gkd_report_options *o, const char *name) {
    for (int i = 0; i < o->n_maximize; i++)
        if (strcmp(o->maximize[i], name) == 0) return 1;
    for (int i = 0; i < o->n_minimize; i++)
        if (strcmp(o->minimize[i], name) == 0) return 0;
    return -1;
}

static const char *const default_ignore[] = {"seed", "name"};

gkd_status gkd_report_load(gkd_store *store, const gkd_report_options *opt, gkd_report **out) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_report_load: out is NULL");
    *out = NULL;
    if (!store) return gkd_error_set(GKD_ERR_ARG, "gkd_report_load: store is NULL");
    gkd_report_options o = {0};
    if (opt) o = *opt;
    if (o.status && !report_streq(o.status, "running") && !report_streq(o.status, "finished") &&
        !report_streq(o.status, "failed") && !report_streq(o.status, "interrupted"))
        return gkd_error_set(GKD_ERR_ARG,
                             "status '%s' is not one of running, finished, failed, "
                             "interrupted",
                             o.status);
    if (o.sweep) {
        int64_t n = 0;
        gkd_status st =
            gkd_store_query_int(store, &n, "SELECT count(*) FROM sweeps WHERE name = ?1", "s", o.sweep);
        if (st != GKD_OK) return st;
        if (n == 0) return gkd_error_set(GKD_ERR_NOT_FOUND, "the run store has no sweep named '%s'", o.sweep);
    }
    gkd_report *r = calloc(1, sizeof *r);
    if (!r) return report_nomem("report");
    gkd_status st = GKD_OK;
    r->sweep_filter = report_strdup(o.sweep);
    r->status_filter = report_strdup(o.status);
    r->higher_is_better = o.higher_is_better;
    if ((o.sweep && !r->sweep_filter) || (o.status && !r->status_filter)) st = report_nomem("report");

    runs_ctx rc = {r, 0, 0};
    if (st == GKD_OK)
        st = gkd_store_query(
            store, read_run, &rc,
            "SELECT r.id, r.name, s.name, r.status, r.seed, r.config, r.started_at, r.finished_at, "
            "(SELECT max(m.step) FROM metrics m WHERE m.run_id = r.id), "
            "(SELECT m.value FROM metrics m WHERE m.run_id = r.id AND m.name = 'loss' ORDER BY m.step DESC "
            "LIMIT 1), "
            "(julianday(coalesce(r.finished_at, 'now')) - julianday(r.started_at)) * 86400.0 "
            "FROM runs r LEFT JOIN sweeps s ON s.id = r.sweep_id "
            "WHERE (?1 IS NULL OR s.name = ?1) AND (?2 IS NULL OR r.status = ?2) ORDER BY r.id",
            "ss", o.sweep, o.status);
    if (st == GKD_OK && rc.nomem) st = report_nomem("runs");

    const char *const *ignore = o.n_ignore_keys > 0 ? o.ignore_keys : default_ignore;
    int n_ignore = o.n_ignore_keys > 0 ? o.n_ignore_keys : 2;
    for (int i = 0; st == GKD_OK && i < r->n_runs; i++)
        st = setting_of(r->runs[i].config, ignore, n_ignore, &r->runs[i].setting);
    if (st == GKD_OK) st = group_runs(r);
    if (st == GKD_OK) st = choose_split(store, r, o.split);

    name_list defaults = {0};
    const char *const *names = o.metrics;
    int n_names = o.n_metrics;
    if (o.no_metrics) {
        n_names = 0;
    } else if (st == GKD_OK && (!names || n_names <= 0)) {
        st = default_metrics(store, r, &defaults);
        names = (const char *const *)defaults.names;
        n_names = defaults.n;
    }
    for (int k = 0; st == GKD_OK && k < n_names; k++)
        st = gkd_report_add_metric(store, r, names[k], direction_of(&o, names[k]), NULL);
    name_list_free(&defaults);
    if (st != GKD_OK) {
        gkd_report_free(r);
        return st;
    }
    *out = r;
    return GKD_OK;
}

void gkd_report_free(gkd_report *r) {
    if (!r) return;
    for (int i = 0; i < r->n_runs; i++) {
        gkd_report_run *run = &r->runs[i];
        free(run->name);
        free(run->sweep);
        free(run->status);
        free(run->config);
        free(run->setting);
        free(run->started_at);
        free(run->finished_at);
        free(run->final);
        free(run->final_step);
    }
    for (int g = 0; g < r->n_groups; g++) {
        gkd_report_group *grp = &r->groups[g];
        free(grp->sweep);
        free(grp->setting);
        free(grp->label);
        free(grp->runs);
        free(grp->mean);
        free(grp->std);
        free(grp->count);
    }
    for (int k = 0; k < r->n_metrics; k++) free(r->metrics[k].name);
    free(r->runs);
    free(r->groups);
    free(r->metrics);
    free(r->sweep_filter);
    free(r->status_filter);
    free(r->split);
    free(r);
}

/* ---------------------------------------------------------------------------------------------------- */
/* tables: cells first, then text or HTML */

typedef struct {
    int n_cols;
    const char **head;
    int *right; /* numeric column: right-aligned */
    char **cells;
    int n_rows, cap_rows;
    int nomem;
} report_table;

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

static void table_free(report_table *t) {
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
            if (b->failed) failed = 1;
            else if (text_width(b->data) > w[c]) w[c] = text_width(b->data);
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

static void table_put_html(const report_table *t, gkd_buf *b, const char *cls) {
    gkd_buf_printf(b, "<table class=\"%s\">\n<thead><tr>", cls);
    for (int c = 0; c < t->n_cols; c++) {
        gkd_buf_puts(b, t->right[c] ? "<th class=\"num\">" : "<th>");
        html_put(b, t->head[c]);
        gkd_buf_puts(b, "</th>");
    }
    gkd_buf_puts(b, "</tr></thead>\n<tbody>\n");
    for (int r = 0; r < t->n_rows; r++) {
        gkd_buf_puts(b, "<tr>");
        for (int c = 0; c < t->n_cols; c++) {
            gkd_buf_puts(b, t->right[c] ? "<td class=\"num\">" : "<td>");
            html_put(b, table_get(t, r, c));
            gkd_buf_puts(b, "</td>");
        }
        gkd_buf_puts(b, "</tr>\n");
    }
    gkd_buf_puts(b, "</tbody></table>\n");
}

static void table_runs(const gkd_report *r, report_table *t) {
    static const char *const head[] = {"id",    "name",      "sweep",   "status",   "seed",
                                       "steps", "last loss", "started", "finished", "duration"};
    static const int right[] = {1, 0, 0, 0, 1, 1, 1, 0, 0, 1};
    table_init(t, 10);
    for (int c = 0; c < 10; c++) table_head(t, c, head[c], right[c]);
    char a[64], b[64];
    for (int i = 0; i < r->n_runs; i++) {
        const gkd_report_run *run = &r->runs[i];
        int row = table_row(t);
        table_cell(t, row, 0, "%lld", (long long)run->id);
        table_cell(t, row, 1, "%s", run->name);
        table_cell(t, row, 2, "%s", run->sweep ? run->sweep : "-");
        table_cell(t, row, 3, "%s", run->status);
        table_cell(t, row, 4, "%lld", (long long)run->seed);
        if (run->total_steps >= 0)
            table_cell(t, row, 5, "%lld/%lld", (long long)run->last_step, (long long)run->total_steps);
        else
            table_cell(t, row, 5, "%lld", (long long)run->last_step);
        table_cell(t, row, 6, "%s", fmt_num(a, sizeof a, run->last_loss));
        table_cell(t, row, 7, "%s", fmt_time(a, sizeof a, run->started_at));
        table_cell(t, row, 8, "%s", fmt_time(b, sizeof b, run->finished_at));
        table_cell(t, row, 9, "%s", gkd_report_format_duration(a, sizeof a, run->duration_s));
    }
}

static void table_finals(const gkd_report *r, report_table *t) {
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
        int row = table_row(t);
        table_cell(t, row, 0, "%lld", (long long)run->id);
        table_cell(t, row, 1, "%s", run->name);
        table_cell(t, row, 2, "%s", run->sweep ? run->sweep : "-");
        table_cell(t, row, 3, "%s", r->groups[run->group].label);
        table_cell(t, row, 4, "%lld", (long long)run->seed);
        for (int k = 0; k < r->n_metrics; k++)
            table_cell(t, row, 5 + k, "%s", fmt_num(a, sizeof a, run->final[k]));
    }
}

/* "mean pm std", the std left out when undefined, "(n=K)" added when not every run of the group has a
 * value. */
static void mean_std_cell(report_table *t, int row, int col, const gkd_report_group *grp, int k,
                          const char *pm) {
    char m[64], s[64], n[32] = "";
    fmt_num(m, sizeof m, grp->mean[k]);
    if (grp->count[k] != grp->n_runs) snprintf(n, sizeof n, " (n=%d)", grp->count[k]);
    if (isnan(grp->std[k]))
        table_cell(t, row, col, "%s%s", m, n);
    else
        table_cell(t, row, col, "%s %s %s%s", m, pm, fmt_num(s, sizeof s, grp->std[k]), n);
}

static void table_grid(const gkd_report *r, report_table *t, const char *pm) {
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

static void table_best(const gkd_report *r, report_table *t, const char *pm) {
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
    table_free(t);
    return st;
}

static gkd_status check_written(FILE *out) {
    if (fflush(out) != 0 || ferror(out)) return gkd_error_set(GKD_ERR_IO, "writing the report failed");
    return GKD_OK;
}

gkd_status gkd_report_print_runs(const gkd_report *r, FILE *out) {
    if (!r || !out) return gkd_error_set(GKD_ERR_ARG, "gkd_report_print_runs: need a report and a stream");
    report_table t;
    table_runs(r, &t);
    gkd_status st = print_table(&t, out, NULL);
    return st != GKD_OK ? st : check_written(out);
}

gkd_status gkd_report_print_tables(const gkd_report *r, FILE *out) {
    if (!r || !out) return gkd_error_set(GKD_ERR_ARG, "gkd_report_print_tables: need a report and a stream");
    char title[512];
    report_table t;
    table_finals(r, &t);
    snprintf(title, sizeof title, "Final values (last logged step; evals split: %s)",
             r->split ? r->split : "-");
    gkd_status st = print_table(&t, out, title);
    if (st != GKD_OK) return st;
    fputc('\n', out);
    table_grid(r, &t, "+-");
    if ((st = print_table(&t, out, "Settings (mean +- sample std over runs)")) != GKD_OK) return st;
    fputc('\n', out);
    table_best(r, &t, "+-");
    if ((st = print_table(&t, out, "Best setting per metric")) != GKD_OK) return st;
    return check_written(out);
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
    int64_t rows;
} csv_ctx;

static int write_csv_row(const gkd_store_row *row, void *vctx) {
    csv_ctx *c = vctx;
    fprintf(c->out, "%lld,", (long long)gkd_store_row_int(row, 0));
    csv_field(c->out, gkd_store_row_text(row, 1));
    fputc(',', c->out);
    csv_field(c->out, gkd_store_row_text(row, 2));
    fprintf(c->out, ",%lld,", (long long)gkd_store_row_int(row, 3));
    csv_field(c->out, gkd_store_row_text(row, 4));
    fputc(',', c->out);
    csv_field(c->out, gkd_store_row_text(row, 5));
    fputc(',', c->out);
    if (!gkd_store_row_is_null(row, 6)) fprintf(c->out, "%.17g", gkd_store_row_double(row, 6));
    fputc('\n', c->out);
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
    fputs("run_id,run,sweep,step,split,metric,value\n", out);
    csv_ctx c = {out, 0};
    gkd_status st =
        gkd_store_query(store, write_csv_row, &c,
                        "SELECT m.run_id, r.name, s.name, m.step, 'train', m.name, m.value FROM metrics m "
                        "JOIN runs r ON r.id = m.run_id LEFT JOIN sweeps s ON s.id = r.sweep_id "
                        "WHERE m.run_id IN " REPORT_SELECTED
                        " AND (?3 IS NULL OR m.name IN (SELECT value FROM json_each(?3))) "
                        "UNION ALL "
                        "SELECT e.run_id, r.name, s.name, e.step, e.split, e.metric, e.value FROM evals e "
                        "JOIN runs r ON r.id = e.run_id LEFT JOIN sweeps s ON s.id = r.sweep_id "
                        "WHERE e.run_id IN " REPORT_SELECTED
                        " AND (?3 IS NULL OR e.metric IN (SELECT value FROM json_each(?3))) "
                        "ORDER BY 1, 5, 6, 4",
                        "sss", r->sweep_filter, r->status_filter, names.data);
    gkd_buf_free(&names);
    if (rows) *rows = c.rows;
    if (st != GKD_OK) return gkd_error_prefix(st, "writing the csv");
    return check_written(out);
}

/* ---------------------------------------------------------------------------------------------------- */
/* heatmap */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) and drops repeats; returns the new count. */
static int sort_unique(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || v[i] != v[m - 1]) v[m++] = v[i];
    return m;
}

static int find_value(const double *v, int n, double x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return i;
    return -1;
}

void gkd_report_heatmap_free(gkd_report_heatmap *h) {
    if (!h) return;
    free(h->xs);
    free(h->ys);
    free(h->mean);
    free(h->count);
    memset(h, 0, sizeof *h);
}

gkd_status gkd_report_heatmap_build(const gkd_report *r, int metric, const char *x_key, const char *y_key,
                                    gkd_report_heatmap *out) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_report_heatmap_build: out is NULL");
    memset(out, 0, sizeof *out);
    if (!r || metric < 0 || metric >= r->n_metrics || !x_key || !y_key)
        return gkd_error_set(GKD_ERR_ARG,
                             "gkd_report_heatmap_build: need a report, a metric index and two keys");
    int n = r->n_runs;
    double *rx = malloc((size_t)(n ? n : 1) * sizeof *rx), *ry = malloc((size_t)(n ? n : 1) * sizeof *ry);
    int *has = malloc((size_t)(n ? n : 1) * sizeof *has);
    out->xs = malloc((size_t)(n ? n : 1) * sizeof *out->xs);
    out->ys = malloc((size_t)(n ? n : 1) * sizeof *out->ys);
    if (!rx || !ry || !has || !out->xs || !out->ys) {
        free(rx), free(ry), free(has);
        gkd_report_heatmap_free(out);
        return report_nomem("heatmap");
    }
    for (int i = 0; i < n; i++) {
        has[i] = gkd_report_config_number(r->runs[i].config, x_key, &rx[i]) &&
                 gkd_report_config_number(r->runs[i].config, y_key, &ry[i]) && !isnan(rx[i]) && !isnan(ry[i]);
        if (!has[i]) continue;
        out->xs[out->nx++] = rx[i];
        out->ys[out->ny++] = ry[i];
    }
    out->nx = sort_unique(out->xs, out->nx);
    out->ny = sort_unique(out->ys, out->ny);
    size_t cells = (size_t)out->nx * (size_t)out->ny;
    out->mean = calloc(cells ? cells : 1, sizeof *out->mean);
    out->count = calloc(cells ? cells : 1, sizeof *out->count);
    if (!out->mean || !out->count) {
        free(rx), free(ry), free(has);
        gkd_report_heatmap_free(out);
        return report_nomem("heatmap");
    }
    for (int i = 0; i < n; i++) {
        double v = r->runs[i].final[metric];
        if (!has[i] || isnan(v)) continue;
        size_t c = (size_t)find_value(out->ys, out->ny, ry[i]) * out->nx +
                   (size_t)find_value(out->xs, out->nx, rx[i]);
        out->mean[c] += v;
        out->count[c]++;
    }
    for (size_t c = 0; c < cells; c++) out->mean[c] = out->count[c] ? out->mean[c] / out->count[c] : NAN;
    free(rx), free(ry), free(has);
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------- */
/* SVG plots */

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
enum { PALETTE_N = 10 };

/* Data range -> pixel box; the ranges are widened to whole tick steps. */
typedef struct {
    double x0, x1, y0, y1, x_tick, y_tick;
    double left, top, width, height;
} plot_frame;

static double nice_step(double span, int target) {
    double raw = span / target;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void nice_range(double *lo, double *hi, double *tick) {
    if (!isfinite(*lo) || !isfinite(*hi)) *lo = 0, *hi = 1;
    if (*hi == *lo) {
        double d = *lo != 0 ? fabs(*lo) * 0.05 : 0.5;
        *lo -= d;
        *hi += d;
    }
    *tick = nice_step(*hi - *lo, 5);
    *lo = floor(*lo / *tick) * *tick;
    *hi = ceil(*hi / *tick) * *tick;
}

static double plot_x(const plot_frame *f, double x) {
    return f->left + (x - f->x0) / (f->x1 - f->x0) * f->width;
}

static double plot_y(const plot_frame *f, double y) {
    return f->top + f->height - (y - f->y0) / (f->y1 - f->y0) * f->height;
}

static void svg_axes(gkd_buf *b, const plot_frame *f, const char *x_title, const char *y_title) {
    gkd_buf_puts(b, "<g class=\"axes\">\n");
    for (double y = f->y0; y <= f->y1 + f->y_tick * 1e-9; y += f->y_tick) {
        double py = plot_y(f, y);
        gkd_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", f->left,
                       py, f->left + f->width, py);
        gkd_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.6g</text>\n", f->left - 6,
                       py + 4, fabs(y) < f->y_tick * 1e-9 ? 0.0 : y);
    }
    for (double x = f->x0; x <= f->x1 + f->x_tick * 1e-9; x += f->x_tick) {
        double px = plot_x(f, x);
        gkd_buf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", px,
                       f->top, px, f->top + f->height);
        gkd_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.6g</text>\n", px,
                       f->top + f->height + 16, fabs(x) < f->x_tick * 1e-9 ? 0.0 : x);
    }
    gkd_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"frame\"/>\n",
                   f->left, f->top, f->width, f->height);
    gkd_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"title\">",
                   f->left + f->width / 2, f->top + f->height + 36);
    html_put(b, x_title);
    gkd_buf_printf(b,
                   "</text>\n<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\" "
                   "class=\"title\">",
                   f->top + f->height / 2);
    html_put(b, y_title);
    gkd_buf_puts(b, "</text>\n</g>\n");
}

static void svg_open(gkd_buf *b, int w, int h) {
    gkd_buf_printf(
        b,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
        "role=\"img\"",
        w, h, w, h);
}

/* One run's series of one metric, in step order. */
typedef struct {
    int run; /* index into gkd_report.runs */
    int n, cap;
    double *step, *value;
} curve_series;

typedef struct {
    const gkd_report *r;
    curve_series *series;
    int n;
    int nomem;
} curves_ctx;

static int read_curve_point(const gkd_store_row *row, void *vctx) {
    curves_ctx *c = vctx;
    int run = run_index(c->r, gkd_store_row_int(row, 0));
    if (run < 0) return 0;
    if (c->n == 0 || c->series[c->n - 1].run != run) {
        /* rows come ordered by run, so each run's points are contiguous; at most one series per run */
        memset(&c->series[c->n], 0, sizeof c->series[c->n]);
        c->series[c->n++].run = run;
    }
    curve_series *s = &c->series[c->n - 1];
    if (s->n == s->cap) {
        int ncap = s->cap ? 2 * s->cap : 64;
        double *ns = realloc(s->step, (size_t)ncap * sizeof *ns);
        if (ns) s->step = ns;
        double *nv = ns ? realloc(s->value, (size_t)ncap * sizeof *nv) : NULL;
        if (!nv) {
            c->nomem = 1;
            return 1;
        }
        s->value = nv;
        s->cap = ncap;
    }
    s->step[s->n] = (double)gkd_store_row_int(row, 1);
    s->value[s->n] = gkd_store_row_double(row, 2);
    s->n++;
    return 0;
}

static void curves_free(curves_ctx *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->series[i].step);
        free(c->series[i].value);
    }
    free(c->series);
}

static void path_point(gkd_buf *b, int *pen_down, double x, double y) {
    gkd_buf_printf(b, "%c%.1f %.1f ", *pen_down ? 'L' : 'M', x, y);
    *pen_down = 1;
}

/* The path of one series. Past four points per pixel column only each column's first, lowest, highest
 * and last points are drawn: the same picture (spikes kept) in a bounded size. NaN breaks the line. */
static void series_path(gkd_buf *b, const plot_frame *f, const curve_series *s) {
    int thin = s->n > 4 * (int)f->width;
    int pen_down = 0;
    long col = -1;
    int first = -1, lo = -1, hi = -1, last = -1;
    for (int i = 0; i <= s->n; i++) {
        int end = i == s->n;
        int gap = !end && !isfinite(s->value[i]);
        long c = end || gap ? -2 : (long)floor(plot_x(f, s->step[i]));
        if (thin && first >= 0 && (c != col || gap || end)) {
            int idx[4] = {first, lo, hi, last};
            for (int a = 1; a < 4; a++)
                for (int z = a; z > 0 && idx[z] < idx[z - 1]; z--) {
                    int t = idx[z];
                    idx[z] = idx[z - 1];
                    idx[z - 1] = t;
                }
            for (int a = 0; a < 4; a++)
                if (a == 0 || idx[a] != idx[a - 1])
                    path_point(b, &pen_down, plot_x(f, s->step[idx[a]]), plot_y(f, s->value[idx[a]]));
            first = -1;
        }
        if (end) break;
        if (gap) {
            pen_down = 0;
            continue;
        }
        if (!thin) {
            path_point(b, &pen_down, plot_x(f, s->step[i]), plot_y(f, s->value[i]));
            continue;
        }
        if (first < 0) {
            first = lo = hi = i;
            col = c;
        }
        if (s->value[i] < s->value[lo]) lo = i;
        if (s->value[i] > s->value[hi]) hi = i;
        last = i;
    }
}

static const char SQL_CURVE_EVALS[] =
    "SELECT run_id, step, value FROM evals WHERE split = ?3 AND metric = ?4 AND "
    "run_id IN " REPORT_SELECTED " ORDER BY run_id, step";
static const char SQL_CURVE_METRICS[] = "SELECT run_id, step, value FROM metrics WHERE name = ?3 AND "
                                        "run_id IN " REPORT_SELECTED " ORDER BY run_id, step";

static gkd_status svg_curves(gkd_store *store, const gkd_report *r, int k, gkd_buf *b) {
    const gkd_report_metric *m = &r->metrics[k];
    gkd_buf_puts(b, "<h3>");
    html_put(b, m->name);
    if (m->source == GKD_REPORT_FROM_EVALS) {
        gkd_buf_puts(b, " (");
        html_put(b, r->split);
        gkd_buf_puts(b, ")");
    }
    gkd_buf_puts(b, "</h3>\n");
    curves_ctx c = {r, calloc((size_t)(r->n_runs ? r->n_runs : 1), sizeof *c.series), 0, 0};
    if (!c.series) return report_nomem("curves");
    gkd_status st = m->source == GKD_REPORT_FROM_EVALS
                        ? gkd_store_query(store, read_curve_point, &c, SQL_CURVE_EVALS, "ssss",
                                          r->sweep_filter, r->status_filter, r->split, m->name)
                        : gkd_store_query(store, read_curve_point, &c, SQL_CURVE_METRICS, "sss",
                                          r->sweep_filter, r->status_filter, m->name);
    if (st == GKD_OK && c.nomem) st = report_nomem("curves");
    if (st != GKD_OK) {
        curves_free(&c);
        return st;
    }
    plot_frame f = {INFINITY, -INFINITY, INFINITY, -INFINITY, 0, 0, 70, 20, 560, 300};
    for (int i = 0; i < c.n; i++)
        for (int j = 0; j < c.series[i].n; j++) {
            double x = c.series[i].step[j], y = c.series[i].value[j];
            if (!isfinite(y)) continue;
            f.x0 = fmin(f.x0, x), f.x1 = fmax(f.x1, x);
            f.y0 = fmin(f.y0, y), f.y1 = fmax(f.y1, y);
        }
    nice_range(&f.x0, &f.x1, &f.x_tick);
    nice_range(&f.y0, &f.y1, &f.y_tick);
    int legend_h = 30 + 16 * c.n;
    int h = (int)(f.top + f.height + 50);
    if (legend_h > h) h = legend_h;
    svg_open(b, 900, h);
    gkd_buf_printf(b, " class=\"plot\" data-plot=\"curves\" data-metric=\"");
    html_put(b, m->name);
    gkd_buf_printf(b, "\" data-source=\"%s\"", m->source == GKD_REPORT_FROM_EVALS ? "evals" : "metrics");
    if (m->source == GKD_REPORT_FROM_EVALS) {
        gkd_buf_puts(b, " data-split=\"");
        html_put(b, r->split);
        gkd_buf_puts(b, "\"");
    }
    gkd_buf_puts(b, ">\n<title>");
    html_put(b, m->name);
    gkd_buf_puts(b, " against step, one line per run</title>\n");
    svg_axes(b, &f, "step", m->name);
    for (int i = 0; i < c.n; i++) {
        const curve_series *s = &c.series[i];
        const gkd_report_run *run = &r->runs[s->run];
        const char *colour = palette[i % PALETTE_N];
        gkd_buf_puts(b, "<path class=\"series\" data-series=\"");
        html_put(b, run->name);
        gkd_buf_printf(b, "\" data-run-id=\"%lld\" data-points=\"%d\" stroke=\"%s\"%s d=\"",
                       (long long)run->id, s->n, colour,
                       (i / PALETTE_N) % 2 ? " stroke-dasharray=\"5 3\"" : "");
        series_path(b, &f, s);
        gkd_buf_puts(b, "\"><title>");
        html_put(b, run->name);
        gkd_buf_puts(b, "</title></path>\n");
        double ly = 30 + 16 * i;
        gkd_buf_printf(b, "<line x1=\"650\" y1=\"%.1f\" x2=\"670\" y2=\"%.1f\" stroke=\"%s\" class=\"key\"/>",
                       ly - 4, ly - 4, colour);
        gkd_buf_printf(b, "<text x=\"676\" y=\"%.1f\">", ly);
        char shown[40];
        size_t cut = strlen(run->name);
        if (cut > 30) {
            /* shorten at a character boundary; the full name is the series' title */
            for (cut = 27; cut > 0 && ((unsigned char)run->name[cut] & 0xC0) == 0x80; cut--) {
            }
            snprintf(shown, sizeof shown, "%.*s...", (int)cut, run->name);
        } else {
            snprintf(shown, sizeof shown, "%s", run->name);
        }
        html_put(b, shown);
        gkd_buf_puts(b, "</text>\n");
    }
    gkd_buf_puts(b, "</svg>\n");
    curves_free(&c);
    return GKD_OK;
}

/* A dark-to-light colour ramp (viridis' ends and three stops between) at t in [0, 1]. */
static void ramp_colour(double t, char out[8], int *dark) {
    static const unsigned char stops[5][3] = {
        {0x44, 0x01, 0x54}, {0x3b, 0x52, 0x8b}, {0x21, 0x91, 0x8c}, {0x5e, 0xc9, 0x62}, {0xfd, 0xe7, 0x25}};
    if (!isfinite(t)) t = 0.5;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double p = t * 4;
    int i = p >= 4 ? 3 : (int)p;
    double u = p - i;
    int rgb[3];
    for (int c = 0; c < 3; c++) rgb[c] = (int)(stops[i][c] + u * (stops[i + 1][c] - stops[i][c]) + 0.5);
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    *dark = t < 0.55;
}

static gkd_status svg_heatmap(const gkd_report *r, int k, const char *xk, const char *yk, gkd_buf *b) {
    gkd_report_heatmap h;
    gkd_status st = gkd_report_heatmap_build(r, k, xk, yk, &h);
    if (st != GKD_OK) return st;
    const gkd_report_metric *m = &r->metrics[k];
    if (h.nx == 0) {
        gkd_buf_puts(b, "<p class=\"note\">No heatmap: no run config has both numbers '");
        html_put(b, xk);
        gkd_buf_puts(b, "' and '");
        html_put(b, yk);
        gkd_buf_puts(b, "'.</p>\n");
        gkd_report_heatmap_free(&h);
        return GKD_OK;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (int c = 0; c < h.nx * h.ny; c++)
        if (h.count[c]) lo = fmin(lo, h.mean[c]), hi = fmax(hi, h.mean[c]);
    const int cw = 90, ch = 44, left = 90, top = 30;
    int w = left + cw * h.nx + 20, ht = top + ch * h.ny + 60;
    svg_open(b, w < 320 ? 320 : w, ht);
    gkd_buf_puts(b, " class=\"plot\" data-plot=\"heatmap\" data-metric=\"");
    html_put(b, m->name);
    gkd_buf_puts(b, "\" data-x-key=\"");
    html_put(b, xk);
    gkd_buf_puts(b, "\" data-y-key=\"");
    html_put(b, yk);
    gkd_buf_printf(b, "\" data-nx=\"%d\" data-ny=\"%d\">\n<title>", h.nx, h.ny);
    html_put(b, m->name);
    gkd_buf_puts(b, " by ");
    html_put(b, xk);
    gkd_buf_puts(b, " and ");
    html_put(b, yk);
    gkd_buf_puts(b, "</title>\n");
    for (int iy = 0; iy < h.ny; iy++) {
        /* the largest y on top, as on a plot's axis */
        double y = top + ch * (h.ny - 1 - iy);
        for (int ix = 0; ix < h.nx; ix++) {
            int c = iy * h.nx + ix;
            double x = left + cw * ix;
            char fill[8] = "#eeeeee", num[64];
            int dark = 0;
            if (h.count[c]) ramp_colour(hi > lo ? (h.mean[c] - lo) / (hi - lo) : 0.5, fill, &dark);
            gkd_buf_puts(b, "<g class=\"cell\"><rect class=\"cell\" data-x=\"");
            attr_num(b, h.xs[ix]);
            gkd_buf_puts(b, "\" data-y=\"");
            attr_num(b, h.ys[iy]);
            gkd_buf_puts(b, "\" data-value=\"");
            attr_num(b, h.mean[c]);
            gkd_buf_printf(
                b, "\" data-count=\"%d\" x=\"%.0f\" y=\"%.0f\" width=\"%d\" height=\"%d\" fill=\"%s\">",
                h.count[c], x, y, cw - 2, ch - 2, fill);
            gkd_buf_puts(b, "<title>");
            html_put(b, xk);
            gkd_buf_printf(b, "=%g ", h.xs[ix]);
            html_put(b, yk);
            gkd_buf_printf(b, "=%g: %s over %d run(s)</title></rect>", h.ys[iy],
                           fmt_num(num, sizeof num, h.mean[c]), h.count[c]);
            gkd_buf_printf(b,
                           "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" class=\"%s\">%s</text></g>\n",
                           x + (cw - 2) / 2.0, y + ch / 2.0 + 3, dark ? "on-dark" : "on-light", num);
        }
        gkd_buf_printf(b, "<text x=\"%d\" y=\"%.0f\" text-anchor=\"end\">%g</text>\n", left - 8,
                       y + ch / 2.0 + 3, h.ys[iy]);
    }
    for (int ix = 0; ix < h.nx; ix++)
        gkd_buf_printf(b, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                       left + cw * ix + (cw - 2) / 2.0, top + ch * h.ny + 16, h.xs[ix]);
    gkd_buf_printf(b, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\" class=\"title\">",
                   left + cw * h.nx / 2.0, top + ch * h.ny + 36);
    html_put(b, xk);
    gkd_buf_printf(b,
                   "</text>\n<text transform=\"translate(16 %.0f) rotate(-90)\" text-anchor=\"middle\" "
                   "class=\"title\">",
                   top + ch * h.ny / 2.0);
    html_put(b, yk);
    gkd_buf_printf(b, "</text>\n<text x=\"%d\" y=\"18\">", left);
    html_put(b, m->name);
    gkd_buf_printf(b, ": dark = low, light = high; %s is better</text>\n</svg>\n",
                   m->maximize ? "higher" : "lower");
    gkd_report_heatmap_free(&h);
    return GKD_OK;
}

static gkd_status svg_scatter(const gkd_report *r, int kx, int ky, const char *label_key, gkd_buf *b) {
    int n = 0;
    plot_frame f = {INFINITY, -INFINITY, INFINITY, -INFINITY, 0, 0, 70, 20, 560, 300};
    double *labels = malloc((size_t)(r->n_runs ? r->n_runs : 1) * sizeof *labels);
    if (!labels) return report_nomem("scatter");
    int n_labels = 0;
    for (int i = 0; i < r->n_runs; i++) {
        double x = r->runs[i].final[kx], y = r->runs[i].final[ky], a;
        if (!isfinite(x) || !isfinite(y)) continue;
        n++;
        f.x0 = fmin(f.x0, x), f.x1 = fmax(f.x1, x);
        f.y0 = fmin(f.y0, y), f.y1 = fmax(f.y1, y);
        if (gkd_report_config_number(r->runs[i].config, label_key, &a)) labels[n_labels++] = a;
    }
    n_labels = sort_unique(labels, n_labels);
    const char *xname = r->metrics[kx].name, *yname = r->metrics[ky].name;
    if (n == 0) {
        gkd_buf_puts(b, "<p class=\"note\">No scatter: no run has final values of both '");
        html_put(b, xname);
        gkd_buf_puts(b, "' and '");
        html_put(b, yname);
        gkd_buf_puts(b, "'.</p>\n");
        free(labels);
        return GKD_OK;
    }
    /* a margin, so that no point or its label sits on the frame */
    double mx = (f.x1 - f.x0) * 0.05, my = (f.y1 - f.y0) * 0.05;
    f.x0 -= mx, f.x1 += mx, f.y0 -= my, f.y1 += my;
    nice_range(&f.x0, &f.x1, &f.x_tick);
    nice_range(&f.y0, &f.y1, &f.y_tick);
    svg_open(b, 900, (int)(f.top + f.height + 50));
    gkd_buf_puts(b, " class=\"plot\" data-plot=\"scatter\" data-x-metric=\"");
    html_put(b, xname);
    gkd_buf_puts(b, "\" data-y-metric=\"");
    html_put(b, yname);
    gkd_buf_puts(b, "\" data-label-key=\"");
    html_put(b, label_key);
    gkd_buf_puts(b, "\">\n<title>");
    html_put(b, yname);
    gkd_buf_puts(b, " against ");
    html_put(b, xname);
    gkd_buf_puts(b, ", one point per run</title>\n");
    svg_axes(b, &f, xname, yname);
    for (int i = 0; i < r->n_runs; i++) {
        const gkd_report_run *run = &r->runs[i];
        double x = run->final[kx], y = run->final[ky], a;
        if (!isfinite(x) || !isfinite(y)) continue;
        int has_label = gkd_report_config_number(run->config, label_key, &a);
        int li = has_label ? find_value(labels, n_labels, a) : -1;
        const char *colour = li >= 0 ? palette[li % PALETTE_N] : "#444444";
        double px = plot_x(&f, x), py = plot_y(&f, y);
        gkd_buf_puts(b, "<g class=\"point\"><circle class=\"point\" data-series=\"");
        html_put(b, run->name);
        gkd_buf_printf(b, "\" data-run-id=\"%lld\" data-x=\"", (long long)run->id);
        attr_num(b, x);
        gkd_buf_puts(b, "\" data-y=\"");
        attr_num(b, y);
        gkd_buf_puts(b, "\" data-label=\"");
        if (has_label) attr_num(b, a);
        gkd_buf_printf(b, "\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>", px, py, colour);
        html_put(b, run->name);
        gkd_buf_puts(b, "</title></circle><text x=\"");
        gkd_buf_printf(b, "%.1f\" y=\"%.1f\" class=\"label\">", px + 6, py - 6);
        if (has_label) {
            html_put(b, label_key);
            gkd_buf_printf(b, "=%g", a);
        } else {
            html_put(b, run->name);
        }
        gkd_buf_puts(b, "</text></g>\n");
    }
    for (int l = 0; l < n_labels; l++) {
        double ly = 30 + 16 * l;
        gkd_buf_printf(b, "<circle cx=\"660\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/><text x=\"670\" y=\"%.1f\">",
                       ly - 4, palette[l % PALETTE_N], ly);
        html_put(b, label_key);
        gkd_buf_printf(b, " = %g</text>\n", labels[l]);
    }
    gkd_buf_puts(b, "</svg>\n");
    free(labels);
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------- */
/* the HTML page */

static const char html_style[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#222;max-width:1200px}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
    "th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}"
    "th{background:#f4f4f4}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    "svg{display:block;margin:0.5em 0;font-size:11px}svg text{fill:#222}svg text.title{font-size:12px}"
    "svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#999}svg path.series{fill:none;stroke-width:1.5}"
    "svg .key{stroke-width:2}svg rect.cell{stroke:#fff}svg text.label{font-size:10px}"
    "svg text.on-dark{fill:#fff}svg text.on-light{fill:#000}h3{font-size:1em;margin-bottom:0}"
    ".note{color:#666;font-style:italic}";

/* Adds a plot metric to the report; NOT_FOUND is no error here (the plot says the data is absent). */
static gkd_status plot_metric(gkd_store *store, gkd_report *r, const char *name, int *index) {
    *index = -1;
    if (!name) return GKD_OK;
    gkd_status st = gkd_report_add_metric(store, r, name, -1, index);
    if (st == GKD_ERR_NOT_FOUND) {
        gkd_error_clear();
        *index = -1;
        return GKD_OK;
    }
    return st;
}

static void html_missing(gkd_buf *b, const char *what, const char *name) {
    gkd_buf_printf(b, "<p class=\"note\">No %s: no selected run has metric '", what);
    html_put(b, name ? name : "");
    gkd_buf_puts(b, "'.</p>\n");
}

static gkd_status html_plots(gkd_store *store, gkd_report *r, const gkd_report_html_options *o,
                             int n_table_metrics, gkd_buf *b) {
    gkd_status st = GKD_OK;
    gkd_buf_puts(b, "<h2>Learning curves</h2>\n");
    if (o->curves && o->n_curves > 0) {
        for (int i = 0; st == GKD_OK && i < o->n_curves; i++) {
            int k;
            if ((st = plot_metric(store, r, o->curves[i], &k)) != GKD_OK) break;
            if (k < 0)
                html_missing(b, "curve", o->curves[i]);
            else
                st = svg_curves(store, r, k, b);
        }
    } else {
        int loss;
        if ((st = plot_metric(store, r, "loss", &loss)) == GKD_OK && loss >= 0)
            st = svg_curves(store, r, loss, b);
        for (int k = 0; st == GKD_OK && k < n_table_metrics; k++)
            if (k != loss) st = svg_curves(store, r, k, b);
    }
    if (st != GKD_OK) return st;

    const char *xk = o->heatmap_x ? o->heatmap_x : "lambda", *yk = o->heatmap_y ? o->heatmap_y : "beta";
    const char *hm = o->heatmap_metric ? o->heatmap_metric : n_table_metrics > 0 ? r->metrics[0].name : NULL;
    gkd_buf_puts(b, "<h2>");
    html_put(b, xk);
    gkd_buf_puts(b, " &#215; ");
    html_put(b, yk);
    gkd_buf_puts(b, "</h2>\n");
    int k;
    if ((st = plot_metric(store, r, hm, &k)) != GKD_OK) return st;
    if (k < 0)
        html_missing(b, "heatmap", hm);
    else if ((st = svg_heatmap(r, k, xk, yk, b)) != GKD_OK)
        return st;

    const char *reward = o->reward_metric ? o->reward_metric : "reward";
    const char *label = o->label_key ? o->label_key : "alpha";
    gkd_buf_puts(b, "<h2>Reward against task metric</h2>\n");
    int kx, ky = -1;
    if ((st = plot_metric(store, r, reward, &kx)) != GKD_OK) return st;
    if (o->task_metric) {
        if ((st = plot_metric(store, r, o->task_metric, &ky)) != GKD_OK) return st;
    } else {
        /* a task metric is a quality score: prefer one where higher is better */
        for (int pass = 0; pass < 2 && ky < 0; pass++)
            for (int j = 0; j < n_table_metrics && ky < 0; j++)
                if (strcmp(r->metrics[j].name, reward) != 0 && strcmp(r->metrics[j].name, "loss") != 0 &&
                    (pass || r->metrics[j].maximize))
                    ky = j;
    }
    if (kx < 0)
        html_missing(b, "scatter", reward);
    else if (ky < 0)
        html_missing(b, "scatter", o->task_metric ? o->task_metric : "(a task metric)");
    else
        st = svg_scatter(r, kx, ky, label, b);
    return st;
}

gkd_status gkd_report_write_html(gkd_store *store, gkd_report *r, const gkd_report_html_options *opt,
                                 FILE *out) {
    if (!store || !r || !out)
        return gkd_error_set(GKD_ERR_ARG, "gkd_report_write_html: need a store, report, stream");
    gkd_report_html_options o = {0};
    if (opt) o = *opt;
    const char *title = o.title ? o.title : "gkd report";
    gkd_buf b = {0};
    gkd_buf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    html_put(&b, title);
    gkd_buf_printf(&b, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", html_style);
    html_put(&b, title);
    gkd_buf_puts(&b, "</h1>\n<p>");
    gkd_buf_printf(&b, "%d run(s)", r->n_runs);
    if (r->sweep_filter) {
        gkd_buf_puts(&b, " of sweep <b>");
        html_put(&b, r->sweep_filter);
        gkd_buf_puts(&b, "</b>");
    }
    if (r->status_filter) {
        gkd_buf_puts(&b, " with status ");
        html_put(&b, r->status_filter);
    }
    gkd_buf_puts(&b, "; evals split: ");
    html_put(&b, r->split ? r->split : "-");
    gkd_buf_puts(&b, ".</p>\n");

    /* The tables show the metrics asked for; plot metrics added below stay out of them. */
    int n_table_metrics = r->n_metrics;
    report_table t;
    table_runs(r, &t);
    gkd_buf_puts(&b, "<h2>Runs</h2>\n");
    if (!t.nomem) table_put_html(&t, &b, "runs");
    int nomem = t.nomem;
    table_free(&t);
    table_finals(r, &t);
    gkd_buf_puts(&b,
                 "<h2>Final values</h2>\n<p>Each run's value at the last step it logged the metric.</p>\n");
    if (!t.nomem) table_put_html(&t, &b, "finals");
    nomem |= t.nomem;
    table_free(&t);
    table_grid(r, &t, "\xc2\xb1");
    gkd_buf_puts(
        &b, "<h2>Settings</h2>\n<p>Runs of a sweep whose configs differ only in the seed (and other ignored "
            "keys): mean &#177; sample standard deviation.</p>\n");
    if (!t.nomem) table_put_html(&t, &b, "grid");
    nomem |= t.nomem;
    table_free(&t);
    table_best(r, &t, "\xc2\xb1");
    gkd_buf_puts(&b, "<h2>Best setting per metric</h2>\n");
    if (!t.nomem) table_put_html(&t, &b, "best");
    nomem |= t.nomem;
    table_free(&t);

    gkd_status st = nomem ? report_nomem("html tables") : html_plots(store, r, &o, n_table_metrics, &b);
    gkd_buf_puts(&b, "</body>\n</html>\n");
    if (st == GKD_OK && b.failed) st = report_nomem("html");
    if (st == GKD_OK && fwrite(b.data, 1, b.len, out) != b.len)
        st = gkd_error_set(GKD_ERR_IO, "writing the html failed");
    gkd_buf_free(&b);
    return st != GKD_OK ? st : check_written(out);
}
