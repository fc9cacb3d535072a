/* Loading a report (core/report/report.h): the selected runs, their settings and group labels, each
 * metric's source, final values, group aggregates and best group; and numbers read from run configs
 * (settings, labels and hyperparameters: report_setting.c).
 * Rules:
 * - Only read-only SQL through gkd_store_query, every query selecting runs with REPORT_SELECTED.
 * - Aggregates are computed here in C (two passes: mean, then squared deviations from it), not in SQL,
 *   so tests/test_report.c can check them against plain SQL written independently.
 * - A metric's direction comes from the caller (gkd_report_options.higher_is_better): the report sits
 *   below reward/, which owns the registry that knows it. */
#include "core/report/report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

char *report_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int report_streq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

gkd_status report_nomem(const char *what) {
    return gkd_error_set(GKD_ERR_NOMEM, "report: out of memory (%s)", what);
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
    run->error = report_strdup(gkd_store_row_text(row, 11));
    run->warnings = report_strdup(gkd_store_row_text(row, 12) ? gkd_store_row_text(row, 12) : "[]");
    run->n_warnings = (int)gkd_store_row_int(row, 13);
    run->group = -1;
    double steps;
    run->total_steps = gkd_report_config_number(run->config, "steps", &steps) && steps >= 0 && steps < 9e18
                           ? (int64_t)steps
                           : -1;
    if (!run->name || !run->status || !run->config || (gkd_store_row_text(row, 2) && !run->sweep) ||
        (gkd_store_row_text(row, 6) && !run->started_at) ||
        (gkd_store_row_text(row, 7) && !run->finished_at) || (gkd_store_row_text(row, 11) && !run->error) ||
        !run->warnings) {
        c->nomem = 1;
        return 1;
    }
    return 0;
}

/* Every run's setting; an ignored key that no selected run's config has is refused (a typo would
 * otherwise change nothing, silently). */
static gkd_status settings_of_runs(gkd_report *r, const gkd_report_options *o) {
    int n = o->n_ignore_keys > 0 ? o->n_ignore_keys : 0;
    int *hits = calloc((size_t)(n ? n : 1), sizeof *hits);
    if (!hits) return report_nomem("settings");
    gkd_status st = GKD_OK;
    for (int i = 0; st == GKD_OK && i < r->n_runs; i++)
        st = report_setting_of(r->runs[i].config, o->ignore_keys, n, hits, &r->runs[i].setting);
    for (int k = 0; st == GKD_OK && r->n_runs > 0 && k < n; k++)
        if (!hits[k])
            st = gkd_error_set(GKD_ERR_NOT_FOUND,
                               "ignore key '%s': no selected run's config has it (a dotted path from the "
                               "top, e.g. resolved.beta, or *.KEY for KEY at any depth)",
                               o->ignore_keys[k]);
    free(hits);
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
    return report_label_groups(r);
}

/* ---------------------------------------------------------------------------------------------------- */
/* metrics: source, final values, aggregates, best group */

int report_run_index(const gkd_report *r, int64_t id) {
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
    int i = report_run_index(c->r, gkd_store_row_int(row, 0));
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
            "(julianday(coalesce(r.finished_at, 'now')) - julianday(r.started_at)) * 86400.0, "
            "r.error, r.warnings, json_array_length(r.warnings) "
            "FROM runs r LEFT JOIN sweeps s ON s.id = r.sweep_id "
            "WHERE (?1 IS NULL OR s.name = ?1) AND (?2 IS NULL OR r.status = ?2) ORDER BY r.id",
            "ss", o.sweep, o.status);
    if (st == GKD_OK && rc.nomem) st = report_nomem("runs");

    if (st == GKD_OK) st = settings_of_runs(r, &o);
    if (st == GKD_OK) st = group_runs(r);
    if (st == GKD_OK) st = report_find_params(r);
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
        free(run->error);
        free(run->warnings);
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
        for (int p = 0; grp->param_values && p < r->n_params; p++) free(grp->param_values[p]);
        free(grp->param_values);
    }
    for (int p = 0; p < r->n_params; p++) free(r->params[p]);
    free(r->params);
    for (int k = 0; k < r->n_metrics; k++) free(r->metrics[k].name);
    free(r->runs);
    free(r->groups);
    free(r->metrics);
    free(r->sweep_filter);
    free(r->status_filter);
    free(r->split);
    free(r);
}
