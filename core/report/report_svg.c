/* The report's plots (core/report/report.h): the lambda x beta heatmap's cells, and the learning
 * curves, heatmap and reward/task scatter as inline SVG.
 * Rules: no script and no external resource; every plotted element carries its data in data-*
 * attributes, numbers written with %.17g so they read back exactly. */
#include "core/report/report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A number for a data-* attribute: reads back as the same double; empty for NaN. */
static void attr_num(gkd_buf *b, double x) {
    if (!isnan(x)) gkd_buf_printf(b, "%.17g", x);
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

void report_svg_colour(int i, char out[8]) {
    /* Tableau's ten, then thirty picked one by one from a grid of hues, lightnesses and saturations as
     * the one farthest (in CIELAB) from all before it: any two of the forty differ by Delta E >= 23. */
    static const char *const table[40] = {
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
        "#17becf", "#1212e2", "#e212e2", "#39efb8", "#170b84", "#676f20", "#12e212", "#0b8460", "#840b54",
        "#e21266", "#be7a37", "#395def", "#20306f", "#e212a4", "#a6ef39", "#840b23", "#9537be", "#e2a412",
        "#3982ef", "#39ef82", "#0b7884", "#cf5971", "#206f20", "#843b0b", "#5f206f", "#94cf59", "#9439ef",
        "#cfb759", "#39b8ef", "#204f6f", "#59cfb7"};
    if (i >= 0 && i < 40) {
        memcpy(out, table[i], 8);
        return;
    }
    /* Past forty, hues a golden angle apart never come back to the same hue; three lightnesses in turn
     * keep neighbours in the sequence apart where two hues come close. */
    int j = i < 0 ? 0 : i - 40;
    double h = fmod(j * 137.50776405003785 + 15, 360) / 60, s = 0.7, l = (double[]){0.45, 0.32, 0.6}[j % 3];
    double c = (1 - fabs(2 * l - 1)) * s, x = c * (1 - fabs(fmod(h, 2) - 1)), m = l - c / 2;
    double rgb[6][3] = {{c, x, 0}, {x, c, 0}, {0, c, x}, {0, x, c}, {x, 0, c}, {c, 0, x}};
    const double *p = rgb[(int)h % 6];
    snprintf(out, 8, "#%02x%02x%02x", (int)((p[0] + m) * 255 + 0.5), (int)((p[1] + m) * 255 + 0.5),
             (int)((p[2] + m) * 255 + 0.5));
}

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
    report_html_put(b, x_title);
    gkd_buf_printf(b,
                   "</text>\n<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\" "
                   "class=\"title\">",
                   f->top + f->height / 2);
    report_html_put(b, y_title);
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
    int run = report_run_index(c->r, gkd_store_row_int(row, 0));
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

/* Each line starts with a zero-length segment: with round caps, a point that has no neighbour (an eval
 * logged once) still shows as a dot. */
static void path_point(gkd_buf *b, int *pen_down, double x, double y) {
    gkd_buf_printf(b, *pen_down ? "L%.1f %.1f " : "M%.1f %.1f l0 0 ", x, y);
    *pen_down = 1;
}

/* The path of one series. Past four points per pixel column only each column's first, lowest, highest
 * and last points are drawn: the same picture (spikes kept) in a bounded size. NaN breaks the line.
 * join: continue the path drawn before (a band's second edge) instead of starting a new one.
 * keep (NULL, or s->n flags): set for each point drawn and each NaN, so that the data the script redraws
 * from (attr_list) is as bounded as the path and keeps its gaps. */
static void series_path(gkd_buf *b, const plot_frame *f, const curve_series *s, int join, char *keep) {
    int thin = s->n > 4 * (int)f->width;
    int pen_down = join;
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
            for (int a = 0; a < 4; a++) {
                if (a > 0 && idx[a] == idx[a - 1]) continue;
                path_point(b, &pen_down, plot_x(f, s->step[idx[a]]), plot_y(f, s->value[idx[a]]));
                if (keep) keep[idx[a]] = 1;
            }
            first = -1;
        }
        if (end) break;
        if (gap || !thin) {
            if (keep) keep[i] = 1;
            if (gap)
                pen_down = 0;
            else
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

/* What a run's "loss" measures, so that runs whose losses are different quantities (the teacher's
 * cross-entropy, a student's JSD) never share an axis: "cross-entropy", the divergence's name, or ""
 * when the config does not say. Read from the stored config's resolved settings, else its own. */
static void loss_quantity(const char *config, char *out, size_t cap) {
    out[0] = '\0';
    gkd_json *v = NULL;
    if (!config || gkd_json_parse(config, strlen(config), "config", &v) != GKD_OK) {
        gkd_error_clear();
        return;
    }
    const gkd_json *resolved = gkd_json_get(v, "resolved");
    const gkd_json *src = resolved ? resolved : v;
    const gkd_json *ce = gkd_json_get(src, "cross_entropy"), *div = gkd_json_get(src, "divergence");
    const char *method = gkd_json_get_string(src, "method", "");
    const char *name = NULL;
    if (ce ? ce->type == GKD_JSON_BOOL && ce->boolean : !strcmp(method, "sft") || !strcmp(method, "seqkd"))
        name = "cross-entropy";
    else if (div && div->type == GKD_JSON_STRING)
        name = div->string;
    else if (div)
        name = gkd_json_get_string(div, "kind", NULL);
    snprintf(out, cap, "%s", name ? name : "");
    gkd_json_free(v);
}

/* One group's mean and sample std over its runs in a plot, at each step where any has a finite value. */
typedef struct {
    int n;                     /* 0: the group has no run in the plot */
    double *step, *mean, *std; /* (n); std NaN where fewer than two runs have a value */
} curve_mean;

/* A curves plot: the series of c whose flag in[] is set. */
typedef struct {
    const gkd_report *r;
    const gkd_report_metric *m;
    const curves_ctx *c;
    const int *in;         /* (c->n) */
    const char *quantity;  /* what the metric measures in this plot; "" unknown */
    curve_mean *means;     /* (r->n_groups) */
    char (*colour)[8];     /* (r->n_groups): a setting keeps its colour in every plot */
    char *keep;            /* scratch: the points a line draws (line_with_data) */
    int several_sweeps;    /* legend names carry their sweep */
} curves_plot;

static int plot_member(const curves_plot *p, int series, int group) {
    return p->in[series] && p->r->runs[p->c->series[series].run].group == group;
}

/* The index of `step` in s (steps ascending), -1 when absent. */
static int step_index(const curve_series *s, double step) {
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (s->step[mid] == step) return mid;
        if (s->step[mid] < step)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static void curve_mean_free(curve_mean *cm) {
    free(cm->step);
    free(cm->mean);
    free(cm->std);
    memset(cm, 0, sizeof *cm);
}

static gkd_status group_mean(const curves_plot *p, int g, curve_mean *out) {
    const curves_ctx *c = p->c;
    size_t total = 1;
    for (int i = 0; i < c->n; i++)
        if (plot_member(p, i, g)) total += (size_t)c->series[i].n;
    out->n = 0;
    out->step = malloc(total * sizeof *out->step);
    out->mean = malloc(total * sizeof *out->mean);
    out->std = malloc(total * sizeof *out->std);
    if (!out->step || !out->mean || !out->std) {
        curve_mean_free(out);
        return report_nomem("curve means");
    }
    for (int i = 0; i < c->n; i++)
        for (int j = 0; plot_member(p, i, g) && j < c->series[i].n; j++)
            if (isfinite(c->series[i].value[j])) out->step[out->n++] = c->series[i].step[j];
    out->n = sort_unique(out->step, out->n);
    for (int k = 0; k < out->n; k++) {
        double sum = 0, sq = 0;
        int count = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < c->n; i++) {
                int j = plot_member(p, i, g) ? step_index(&c->series[i], out->step[k]) : -1;
                double v = j >= 0 ? c->series[i].value[j] : NAN;
                if (!isfinite(v)) continue;
                if (pass == 0)
                    sum += v, count++;
                else
                    sq += (v - sum / count) * (v - sum / count);
            }
        out->mean[k] = sum / count;
        out->std[k] = count > 1 ? sqrt(sq / (count - 1)) : NAN;
    }
    return GKD_OK;
}

/* A band's edge: mean + sign * std (std 0 where it is NaN), in the given direction. */
static void band_edge(const curve_mean *cm, double sign, int reverse, curve_series *edge) {
    for (int k = 0; k < cm->n; k++) {
        int src = reverse ? cm->n - 1 - k : k;
        edge->step[k] = cm->step[src];
        edge->value[k] = cm->mean[src] + sign * (isnan(cm->std[src]) ? 0 : cm->std[src]);
    }
    edge->n = cm->n;
}

/* The band as one closed outline: the upper edge forward, the lower one back. */
static gkd_status band_path(gkd_buf *b, const plot_frame *f, const curve_mean *cm) {
    curve_series edge = {0, 0, 0, malloc((size_t)cm->n * sizeof(double) + 1), malloc((size_t)cm->n * sizeof(double) + 1)};
    if (!edge.step || !edge.value) {
        free(edge.step), free(edge.value);
        return report_nomem("curve bands");
    }
    band_edge(cm, 1, 0, &edge);
    series_path(b, f, &edge, 0, NULL);
    band_edge(cm, -1, 1, &edge);
    series_path(b, f, &edge, 1, NULL);
    if (cm->n) gkd_buf_puts(b, "Z");
    free(edge.step), free(edge.value);
    return GKD_OK;
}

/* Numbers for the script (report_js.c) to redraw from: those of v[0..n) flagged in keep, 10 significant
 * digits, spelled as JavaScript reads them back (NaN, Infinity). */
static void attr_list(gkd_buf *b, const char *name, const double *v, int n, const char *keep) {
    gkd_buf_printf(b, " %s=\"", name);
    for (int i = 0, sep = 0; i < n; i++) {
        if (!keep[i]) continue;
        if (sep++) gkd_buf_puts(b, " ");
        if (isfinite(v[i]))
            gkd_buf_printf(b, "%.10g", v[i]);
        else
            gkd_buf_puts(b, isnan(v[i]) ? "NaN" : v[i] > 0 ? "Infinity" : "-Infinity");
    }
    gkd_buf_puts(b, "\"");
}

/* A group's full legend name: its setting (the keys that tell it apart), its run when it has one. */
static void group_name(gkd_buf *b, const gkd_report *r, int g, int several_sweeps) {
    const gkd_report_group *grp = &r->groups[g];
    int labelled = grp->label && strcmp(grp->label, "(one setting)") != 0;
    if (several_sweeps) {
        report_html_put(b, grp->sweep ? grp->sweep : "(no sweep)");
        gkd_buf_puts(b, ": ");
    }
    if (grp->n_runs == 1) {
        report_html_put(b, r->runs[grp->runs[0]].name);
        if (labelled) gkd_buf_puts(b, " (");
    }
    if (labelled || grp->n_runs > 1) report_html_put(b, labelled ? grp->label : "all runs");
    if (grp->n_runs == 1 && labelled) gkd_buf_puts(b, ")");
}

static void curves_open(gkd_buf *b, const curves_plot *p, const plot_frame *f) {
    const gkd_report_metric *m = p->m;
    svg_open(b, (int)(f->left + f->width + 20), (int)(f->top + f->height + 50));
    gkd_buf_puts(b, " class=\"plot\" data-plot=\"curves\" data-metric=\"");
    report_html_put(b, m->name);
    gkd_buf_printf(b, "\" data-source=\"%s\"", m->source == GKD_REPORT_FROM_EVALS ? "evals" : "metrics");
    if (m->source == GKD_REPORT_FROM_EVALS) {
        gkd_buf_puts(b, " data-split=\"");
        report_html_put(b, p->r->split);
        gkd_buf_puts(b, "\"");
    }
    gkd_buf_puts(b, " data-quantity=\"");
    report_html_put(b, p->quantity);
    gkd_buf_printf(b, "\" data-box=\"%g %g %g %g\">\n<title>", f->left, f->top, f->width, f->height);
    report_html_put(b, m->name);
    gkd_buf_puts(b, " against step: each setting's mean over its runs, a band of one standard deviation, "
                    "and each run</title>\n");
    svg_axes(b, f, "step", m->name);
}

/* A line's path, then the data of the points it draws (d first: drawing picks the points). lists are
 * parallel to s's points; keep is scratch of s->n flags. */
static void line_with_data(gkd_buf *b, const plot_frame *f, const curve_series *s, char *keep,
                           const char *const *names, const double *const *lists, int n_lists) {
    memset(keep, 0, (size_t)s->n);
    gkd_buf_puts(b, " d=\"");
    series_path(b, f, s, 0, keep);
    gkd_buf_puts(b, "\"");
    for (int l = 0; l < n_lists; l++) attr_list(b, names[l], lists[l], s->n, keep);
}

static gkd_status curves_bands_and_runs(gkd_buf *b, const curves_plot *p, const plot_frame *f) {
    const gkd_report *r = p->r;
    gkd_buf_puts(b, "<g class=\"bands\">\n");
    for (int g = 0; g < r->n_groups; g++) {
        if (!p->means[g].n) continue;
        const char *colour = p->colour[g];
        gkd_buf_printf(b, "<path class=\"band\" data-group=\"%d\" fill=\"%s\" d=\"", g, colour);
        gkd_status st = band_path(b, f, &p->means[g]);
        if (st != GKD_OK) return st;
        gkd_buf_puts(b, "\"/>\n");
    }
    gkd_buf_puts(b, "</g>\n<g class=\"runs\">\n");
    for (int i = 0; i < p->c->n; i++) {
        if (!p->in[i]) continue;
        const curve_series *s = &p->c->series[i];
        const gkd_report_run *run = &r->runs[s->run];
        const char *colour = p->colour[run->group];
        gkd_buf_puts(b, "<path class=\"series\" data-series=\"");
        report_html_put(b, run->name);
        gkd_buf_printf(b, "\" data-run-id=\"%lld\" data-points=\"%d\" data-group=\"%d\"", (long long)run->id,
                       s->n, run->group);
        gkd_buf_printf(b, " stroke=\"%s\"", colour);
        const char *names[] = {"data-steps", "data-values"};
        const double *lists[] = {s->step, s->value};
        line_with_data(b, f, s, p->keep, names, lists, 2);
        gkd_buf_puts(b, "><title>");
        report_html_put(b, run->name);
        gkd_buf_puts(b, "</title></path>\n");
    }
    gkd_buf_puts(b, "</g>\n");
    return GKD_OK;
}

static void curves_means_and_legend(gkd_buf *b, const curves_plot *p, const plot_frame *f) {
    const gkd_report *r = p->r;
    gkd_buf_puts(b, "<g class=\"means\">\n");
    for (int g = 0; g < r->n_groups; g++) {
        const curve_mean *cm = &p->means[g];
        if (!cm->n) continue;
        const char *colour = p->colour[g];
        gkd_buf_printf(b, "<path class=\"mean\" data-group=\"%d\" data-runs=\"%d\"", g, r->groups[g].n_runs);
        gkd_buf_printf(b, " stroke=\"%s\"", colour);
        curve_series line = {0, cm->n, cm->n, cm->step, cm->mean};
        const char *names[] = {"data-steps", "data-mean", "data-std"};
        const double *lists[] = {cm->step, cm->mean, cm->std};
        line_with_data(b, f, &line, p->keep, names, lists, 3);
        gkd_buf_puts(b, "><title>");
        group_name(b, r, g, p->several_sweeps);
        gkd_buf_puts(b, "</title></path>\n");
    }
    gkd_buf_puts(b, "</g>\n</svg>\n<ul class=\"legend\">\n");
    for (int g = 0; g < r->n_groups; g++) {
        if (!p->means[g].n) continue;
        const char *colour = p->colour[g];
        gkd_buf_printf(b, "<li data-group=\"%d\" data-colour=\"%s\" title=\"", g, colour);
        for (int j = 0; j < r->groups[g].n_runs; j++) {
            if (j) gkd_buf_puts(b, ", ");
            report_html_put(b, r->runs[r->groups[g].runs[j]].name);
        }
        gkd_buf_printf(b, "\"><span class=\"swatch\" style=\"background:%s\"></span><span class=\"name\">", colour);
        group_name(b, r, g, p->several_sweeps);
        gkd_buf_puts(b, "</span>");
        if (r->groups[g].n_runs > 1)
            gkd_buf_printf(b, " <span class=\"count\">mean &#177; std of %d runs</span>", r->groups[g].n_runs);
        gkd_buf_puts(b, "</li>\n");
    }
    gkd_buf_puts(b, "</ul>\n");
}

/* One <figure>: the plot of the series flagged in p->in, then its legend (one entry per setting). */
static gkd_status curves_figure(gkd_buf *b, curves_plot *p) {
    const gkd_report *r = p->r;
    gkd_status st = GKD_OK;
    for (int g = 0; st == GKD_OK && g < r->n_groups; g++) st = group_mean(p, g, &p->means[g]);
    plot_frame f = {INFINITY, -INFINITY, INFINITY, -INFINITY, 0, 0, 70, 20, 760, 300};
    for (int g = 0; st == GKD_OK && g < r->n_groups; g++) {
        const curve_mean *cm = &p->means[g];
        for (int k = 0; k < cm->n; k++) {
            double sd = isnan(cm->std[k]) ? 0 : cm->std[k];
            f.x0 = fmin(f.x0, cm->step[k]), f.x1 = fmax(f.x1, cm->step[k]);
            f.y0 = fmin(f.y0, cm->mean[k] - sd), f.y1 = fmax(f.y1, cm->mean[k] + sd);
        }
    }
    for (int i = 0; st == GKD_OK && i < p->c->n; i++)
        for (int j = 0; p->in[i] && j < p->c->series[i].n; j++)
            if (isfinite(p->c->series[i].value[j]))
                f.y0 = fmin(f.y0, p->c->series[i].value[j]), f.y1 = fmax(f.y1, p->c->series[i].value[j]);
    if (st == GKD_OK) {
        nice_range(&f.x0, &f.x1, &f.x_tick);
        nice_range(&f.y0, &f.y1, &f.y_tick);
        gkd_buf_puts(b, "<figure class=\"curves\">\n");
        curves_open(b, p, &f);
        st = curves_bands_and_runs(b, p, &f);
    }
    if (st == GKD_OK) {
        curves_means_and_legend(b, p, &f);
        gkd_buf_puts(b, "</figure>\n");
    }
    for (int g = 0; g < r->n_groups; g++) curve_mean_free(&p->means[g]);
    return st;
}

static const char SQL_CURVE_EVALS[] =
    "SELECT run_id, step, value FROM evals WHERE split = ?3 AND metric = ?4 AND "
    "run_id IN " REPORT_SELECTED " ORDER BY run_id, step";
static const char SQL_CURVE_METRICS[] = "SELECT run_id, step, value FROM metrics WHERE name = ?3 AND "
                                        "run_id IN " REPORT_SELECTED " ORDER BY run_id, step";

static int same_sweep(const char *a, const char *b) {
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int sweeps_differ(const gkd_report *r) {
    for (int g = 1; g < r->n_groups; g++)
        if (!same_sweep(r->groups[g].sweep, r->groups[0].sweep)) return 1;
    return 0;
}

gkd_status report_svg_curves(gkd_store *store, const gkd_report *r, int k, gkd_buf *b) {
    const gkd_report_metric *m = &r->metrics[k];
    curves_ctx c = {r, calloc((size_t)(r->n_runs ? r->n_runs : 1), sizeof *c.series), 0, 0};
    int *in = calloc(2 * (size_t)(r->n_runs ? r->n_runs : 1), sizeof *in); /* in[], then plotted[] */
    char(*quantity)[64] = calloc((size_t)(r->n_runs ? r->n_runs : 1), sizeof *quantity);
    size_t n_groups = (size_t)(r->n_groups ? r->n_groups : 1);
    curves_plot p = {r, m, &c, in, "", calloc(n_groups, sizeof *p.means), calloc(n_groups, sizeof *p.colour),
                     NULL, sweeps_differ(r)};
    gkd_status st = c.series && in && quantity && p.means && p.colour ? GKD_OK : report_nomem("curves");
    for (int g = 0; st == GKD_OK && g < r->n_groups; g++) report_svg_colour(g, p.colour[g]);
    if (st == GKD_OK)
        st = m->source == GKD_REPORT_FROM_EVALS
                 ? gkd_store_query(store, read_curve_point, &c, SQL_CURVE_EVALS, "ssss", r->sweep_filter,
                                   r->status_filter, r->split, m->name)
                 : gkd_store_query(store, read_curve_point, &c, SQL_CURVE_METRICS, "sss", r->sweep_filter,
                                   r->status_filter, m->name);
    if (st == GKD_OK && c.nomem) st = report_nomem("curves");
    /* a mean has at most as many points as its runs together */
    size_t points = 1;
    for (int i = 0; i < c.n; i++) points += (size_t)c.series[i].n;
    if (st == GKD_OK && !(p.keep = malloc(points))) st = report_nomem("curves");
    /* the training loss is a different quantity per method: one plot per quantity, in order of first run */
    int split = m->source == GKD_REPORT_FROM_METRICS && strcmp(m->name, "loss") == 0;
    for (int i = 0; st == GKD_OK && i < c.n; i++)
        if (split) loss_quantity(r->runs[c.series[i].run].config, quantity[i], sizeof quantity[i]);
    int *plotted = in ? in + (r->n_runs ? r->n_runs : 1) : NULL;
    for (int first = 0, drawn = 0; st == GKD_OK; drawn = 1) {
        while (first < c.n && plotted[first]) first++;
        if (first == c.n && drawn) break;
        p.quantity = first < c.n ? quantity[first] : "";
        for (int i = 0; i < c.n; i++) {
            in[i] = !plotted[i] && strcmp(quantity[i], p.quantity) == 0;
            plotted[i] |= in[i];
        }
        gkd_buf_puts(b, "<h3>");
        report_html_put(b, m->name);
        if (m->source == GKD_REPORT_FROM_EVALS || p.quantity[0]) {
            gkd_buf_puts(b, " (");
            report_html_put(b, m->source == GKD_REPORT_FROM_EVALS ? r->split : p.quantity);
            gkd_buf_puts(b, ")");
        }
        gkd_buf_puts(b, "</h3>\n");
        st = curves_figure(b, &p);
    }
    curves_free(&c);
    free(in), free(quantity), free(p.means), free(p.colour), free(p.keep);
    return st;
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

/* One heatmap over the runs of r (one sweep's); `sweep` names it in the plot's data (NULL: none). */
static gkd_status heatmap_svg(const gkd_report *r, int k, const char *xk, const char *yk, const char *sweep,
                              gkd_buf *b) {
    gkd_report_heatmap h;
    gkd_status st = gkd_report_heatmap_build(r, k, xk, yk, &h);
    if (st != GKD_OK) return st;
    const gkd_report_metric *m = &r->metrics[k];
    if (h.nx == 0) {
        gkd_buf_puts(b, "<p class=\"note\">No heatmap: no run config has both numbers '");
        report_html_put(b, xk);
        gkd_buf_puts(b, "' and '");
        report_html_put(b, yk);
        gkd_buf_puts(b, "'.</p>\n");
        gkd_report_heatmap_free(&h);
        return GKD_OK;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (int c = 0; c < h.nx * h.ny; c++)
        if (h.count[c]) lo = fmin(lo, h.mean[c]), hi = fmax(hi, h.mean[c]);
    const int cw = 90, ch = 44, left = 90, top = 30;
    int w = left + cw * h.nx + 20, ht = top + ch * h.ny + 60;
    svg_open(b, w < 440 ? 440 : w, ht); /* room for the caption */
    gkd_buf_puts(b, " class=\"plot\" data-plot=\"heatmap\" data-metric=\"");
    report_html_put(b, m->name);
    gkd_buf_puts(b, "\" data-x-key=\"");
    report_html_put(b, xk);
    gkd_buf_puts(b, "\" data-y-key=\"");
    report_html_put(b, yk);
    gkd_buf_printf(b, "\" data-nx=\"%d\" data-ny=\"%d\" data-sweep=\"", h.nx, h.ny);
    report_html_put(b, sweep);
    gkd_buf_puts(b, "\">\n<title>");
    report_html_put(b, m->name);
    gkd_buf_puts(b, " by ");
    report_html_put(b, xk);
    gkd_buf_puts(b, " and ");
    report_html_put(b, yk);
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
            report_html_put(b, xk);
            gkd_buf_printf(b, "=%g ", h.xs[ix]);
            report_html_put(b, yk);
            gkd_buf_printf(b, "=%g: %s over %d run(s)</title></rect>", h.ys[iy],
                           report_fmt_num(num, sizeof num, h.mean[c]), h.count[c]);
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
    report_html_put(b, xk);
    gkd_buf_printf(b,
                   "</text>\n<text transform=\"translate(16 %.0f) rotate(-90)\" text-anchor=\"middle\" "
                   "class=\"title\">",
                   top + ch * h.ny / 2.0);
    report_html_put(b, yk);
    gkd_buf_printf(b, "</text>\n<text x=\"%d\" y=\"18\">", left);
    report_html_put(b, m->name);
    gkd_buf_printf(b, ": dark = low, light = high; %s is better</text>\n</svg>\n",
                   m->maximize ? "higher" : "lower");
    gkd_report_heatmap_free(&h);
    return GKD_OK;
}

gkd_status report_svg_heatmap(const gkd_report *r, int k, const char *xk, const char *yk, gkd_buf *b) {
    if (!sweeps_differ(r)) return heatmap_svg(r, k, xk, yk, r->n_groups ? r->groups[0].sweep : NULL, b);
    /* a cell pools seeds, never sweeps: one heatmap per sweep, over a view of that sweep's runs */
    gkd_report view = *r;
    view.runs = malloc((size_t)r->n_runs * sizeof *view.runs);
    if (!view.runs) return report_nomem("heatmaps");
    gkd_status st = GKD_OK;
    for (int g = 0; st == GKD_OK && g < r->n_groups; g++) {
        const char *sweep = r->groups[g].sweep;
        int seen = 0;
        for (int h = 0; h < g; h++) seen |= same_sweep(r->groups[h].sweep, sweep);
        if (seen) continue;
        view.n_runs = 0;
        for (int i = 0; i < r->n_runs; i++)
            if (same_sweep(r->runs[i].sweep, sweep)) view.runs[view.n_runs++] = r->runs[i];
        gkd_buf_puts(b, "<h3>");
        if (sweep) {
            gkd_buf_puts(b, "sweep ");
            report_html_put(b, sweep);
        } else {
            gkd_buf_puts(b, "runs outside any sweep");
        }
        gkd_buf_puts(b, "</h3>\n");
        st = heatmap_svg(&view, k, xk, yk, sweep, b);
    }
    free(view.runs);
    return st;
}

gkd_status report_svg_scatter(const gkd_report *r, int kx, int ky, const char *label_key, gkd_buf *b) {
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
        report_html_put(b, xname);
        gkd_buf_puts(b, "' and '");
        report_html_put(b, yname);
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
    report_html_put(b, xname);
    gkd_buf_puts(b, "\" data-y-metric=\"");
    report_html_put(b, yname);
    gkd_buf_puts(b, "\" data-label-key=\"");
    report_html_put(b, label_key);
    gkd_buf_puts(b, "\">\n<title>");
    report_html_put(b, yname);
    gkd_buf_puts(b, " against ");
    report_html_put(b, xname);
    gkd_buf_puts(b, ", one point per run</title>\n");
    svg_axes(b, &f, xname, yname);
    for (int i = 0; i < r->n_runs; i++) {
        const gkd_report_run *run = &r->runs[i];
        double x = run->final[kx], y = run->final[ky], a;
        if (!isfinite(x) || !isfinite(y)) continue;
        int has_label = gkd_report_config_number(run->config, label_key, &a);
        int li = has_label ? find_value(labels, n_labels, a) : -1;
        char colour[8] = "#444444";
        if (li >= 0) report_svg_colour(li, colour);
        double px = plot_x(&f, x), py = plot_y(&f, y);
        gkd_buf_puts(b, "<g class=\"point\"><circle class=\"point\" data-series=\"");
        report_html_put(b, run->name);
        gkd_buf_printf(b, "\" data-run-id=\"%lld\" data-x=\"", (long long)run->id);
        attr_num(b, x);
        gkd_buf_puts(b, "\" data-y=\"");
        attr_num(b, y);
        gkd_buf_puts(b, "\" data-label=\"");
        if (has_label) attr_num(b, a);
        gkd_buf_printf(b, "\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>", px, py, colour);
        report_html_put(b, run->name);
        /* the hover value: the point's two numbers */
        gkd_buf_puts(b, ": ");
        report_html_put(b, xname);
        gkd_buf_printf(b, " %.6g, ", x);
        report_html_put(b, yname);
        gkd_buf_printf(b, " %.6g</title></circle><text x=\"", y);
        gkd_buf_printf(b, "%.1f\" y=\"%.1f\" class=\"label\">", px + 6, py - 6);
        if (has_label) {
            report_html_put(b, label_key);
            gkd_buf_printf(b, "=%g", a);
        } else {
            report_html_put(b, run->name);
        }
        gkd_buf_puts(b, "</text></g>\n");
    }
    for (int l = 0; l < n_labels; l++) {
        double ly = 30 + 16 * l;
        char colour[8];
        report_svg_colour(l, colour);
        gkd_buf_printf(b, "<circle cx=\"660\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/><text x=\"670\" y=\"%.1f\">",
                       ly - 4, colour, ly);
        report_html_put(b, label_key);
        gkd_buf_printf(b, " = %g</text>\n", labels[l]);
    }
    gkd_buf_puts(b, "</svg>\n");
    free(labels);
    return GKD_OK;
}
