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

gkd_status report_svg_curves(gkd_store *store, const gkd_report *r, int k, gkd_buf *b) {
    const gkd_report_metric *m = &r->metrics[k];
    gkd_buf_puts(b, "<h3>");
    report_html_put(b, m->name);
    if (m->source == GKD_REPORT_FROM_EVALS) {
        gkd_buf_puts(b, " (");
        report_html_put(b, r->split);
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
    report_html_put(b, m->name);
    gkd_buf_printf(b, "\" data-source=\"%s\"", m->source == GKD_REPORT_FROM_EVALS ? "evals" : "metrics");
    if (m->source == GKD_REPORT_FROM_EVALS) {
        gkd_buf_puts(b, " data-split=\"");
        report_html_put(b, r->split);
        gkd_buf_puts(b, "\"");
    }
    gkd_buf_puts(b, ">\n<title>");
    report_html_put(b, m->name);
    gkd_buf_puts(b, " against step, one line per run</title>\n");
    svg_axes(b, &f, "step", m->name);
    for (int i = 0; i < c.n; i++) {
        const curve_series *s = &c.series[i];
        const gkd_report_run *run = &r->runs[s->run];
        const char *colour = palette[i % PALETTE_N];
        gkd_buf_puts(b, "<path class=\"series\" data-series=\"");
        report_html_put(b, run->name);
        gkd_buf_printf(b, "\" data-run-id=\"%lld\" data-points=\"%d\" stroke=\"%s\"%s d=\"",
                       (long long)run->id, s->n, colour,
                       (i / PALETTE_N) % 2 ? " stroke-dasharray=\"5 3\"" : "");
        series_path(b, &f, s);
        gkd_buf_puts(b, "\"><title>");
        report_html_put(b, run->name);
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
        report_html_put(b, shown);
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

gkd_status report_svg_heatmap(const gkd_report *r, int k, const char *xk, const char *yk, gkd_buf *b) {
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
    svg_open(b, w < 320 ? 320 : w, ht);
    gkd_buf_puts(b, " class=\"plot\" data-plot=\"heatmap\" data-metric=\"");
    report_html_put(b, m->name);
    gkd_buf_puts(b, "\" data-x-key=\"");
    report_html_put(b, xk);
    gkd_buf_puts(b, "\" data-y-key=\"");
    report_html_put(b, yk);
    gkd_buf_printf(b, "\" data-nx=\"%d\" data-ny=\"%d\">\n<title>", h.nx, h.ny);
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
        const char *colour = li >= 0 ? palette[li % PALETTE_N] : "#444444";
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
        gkd_buf_puts(b, "</title></circle><text x=\"");
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
        gkd_buf_printf(b, "<circle cx=\"660\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/><text x=\"670\" y=\"%.1f\">",
                       ly - 4, palette[l % PALETTE_N], ly);
        report_html_put(b, label_key);
        gkd_buf_printf(b, " = %g</text>\n", labels[l]);
    }
    gkd_buf_puts(b, "</svg>\n");
    free(labels);
    return GKD_OK;
}
