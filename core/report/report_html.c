/* The report's HTML page (core/report/report.h): the plots, then the tables, in one self-contained file.
 * Rules: the page loads nothing: styles, plots (SVG) and its one script (report_js.c) are inline, and
 * every plot reads fully without the script; every text from the store goes through report_html_put. */
#include "core/report/report_internal.h"

#include <stdlib.h>
#include <string.h>

void report_html_put(gkd_buf *b, const char *s) {
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

/* ---------------------------------------------------------------------------------------------------- */
/* the HTML page */

static const char html_style[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#222;max-width:1200px}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
    "th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}"
    "th{background:#f4f4f4}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    "svg{display:block;margin:0.5em 0;font-size:11px}svg text{fill:#222}svg text.title{font-size:12px}"
    "svg .grid{stroke:#eee}svg .frame{fill:none;stroke:#999}svg path.series{fill:none}"
    "svg rect.cell{stroke:#fff}svg text.label{font-size:10px}"
    "svg text.on-dark{fill:#fff}svg text.on-light{fill:#000}h3{font-size:1em;margin-bottom:0}"
    ".note{color:#666;font-style:italic}.wide{overflow-x:auto}"
    "figure.curves{position:relative;margin:0.5em 0 1.5em}svg path.band{stroke:none;fill-opacity:0.18}"
    "svg path.mean{fill:none;stroke-width:2.2;stroke-linecap:round}"
    "svg path.series{stroke-opacity:0.35;stroke-width:1;stroke-linecap:round}"
    "svg line.cursor{stroke:#888;stroke-dasharray:3 3}.controls{font-size:13px;margin:0.3em 0}"
    ".controls label{margin-right:1.5em}.controls input[type=range]{vertical-align:middle;width:10em}"
    "ul.legend{list-style:none;padding:0;margin:0.3em 0;font-size:13px;columns:2 28em}"
    "ul.legend li{cursor:pointer;padding:1px 0;break-inside:avoid}ul.legend li.off{opacity:0.35}"
    ".swatch{display:inline-block;width:1.6em;height:0.7em;margin-right:0.5em;vertical-align:middle}"
    "ul.legend .count{color:#666}.tip{position:absolute;display:none;pointer-events:none;background:#fff;"
    "border:1px solid #999;padding:4px 8px;font-size:12px;box-shadow:1px 1px 4px #0003;z-index:2;"
    "max-width:40em}.tip .run{padding-left:2.1em;color:#555}";

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
    report_html_put(b, name ? name : "");
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
                st = report_svg_curves(store, r, k, b);
        }
    } else {
        int loss;
        if ((st = plot_metric(store, r, "loss", &loss)) == GKD_OK && loss >= 0)
            st = report_svg_curves(store, r, loss, b);
        for (int k = 0; st == GKD_OK && k < n_table_metrics; k++)
            if (k != loss) st = report_svg_curves(store, r, k, b);
    }
    if (st != GKD_OK) return st;

    const char *xk = o->heatmap_x ? o->heatmap_x : "lambda", *yk = o->heatmap_y ? o->heatmap_y : "beta";
    const char *hm = o->heatmap_metric ? o->heatmap_metric : n_table_metrics > 0 ? r->metrics[0].name : NULL;
    gkd_buf_puts(b, "<h2>");
    report_html_put(b, xk);
    gkd_buf_puts(b, " &#215; ");
    report_html_put(b, yk);
    gkd_buf_puts(b, "</h2>\n");
    int k;
    if ((st = plot_metric(store, r, hm, &k)) != GKD_OK) return st;
    if (k < 0)
        html_missing(b, "heatmap", hm);
    else if ((st = report_svg_heatmap(r, k, xk, yk, b)) != GKD_OK)
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
        st = report_svg_scatter(r, kx, ky, label, b);
    return st;
}

/* The four tables, each in a box that scrolls sideways when wide; returns 1 when out of memory. */
static int html_tables(gkd_report *r, int n_metrics, gkd_buf *b) {
    static const char *const classes[] = {"runs", "finals", "grid", "best"};
    static const char *const heads[] = {
        "<h2>Runs</h2>\n",
        "<h2>Final values</h2>\n<p>Each run's value at the last step it logged the metric.</p>\n",
        /* one element, two lines (parenthesised so that clang's -Wstring-concatenation sees it is meant) */
        ("<h2>Settings</h2>\n<p>Runs of a sweep whose configs differ only in the seed (and other ignored "
         "keys): mean &#177; sample standard deviation.</p>\n"),
        "<h2>Best setting per metric</h2>\n"};
    /* the tables show the metrics asked for, not those the plots added */
    int all = r->n_metrics, nomem = 0;
    r->n_metrics = n_metrics;
    for (int i = 0; i < 4 && !nomem; i++) {
        report_table t;
        if (i == 0)
            report_table_runs(r, &t);
        else if (i == 1)
            report_table_finals(r, &t);
        else if (i == 2)
            report_table_grid(r, &t, "\xc2\xb1");
        else
            report_table_best(r, &t, "\xc2\xb1");
        gkd_buf_puts(b, heads[i]);
        gkd_buf_puts(b, "<div class=\"wide\">");
        if (!t.nomem) report_table_put_html(&t, b, classes[i]);
        gkd_buf_puts(b, "</div>\n");
        nomem = t.nomem;
        report_table_free(&t);
    }
    r->n_metrics = all;
    return nomem;
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
    report_html_put(&b, title);
    gkd_buf_printf(&b, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", html_style);
    report_html_put(&b, title);
    gkd_buf_puts(&b, "</h1>\n<p>");
    gkd_buf_printf(&b, "%d run(s)", r->n_runs);
    if (r->sweep_filter) {
        gkd_buf_puts(&b, " of sweep <b>");
        report_html_put(&b, r->sweep_filter);
        gkd_buf_puts(&b, "</b>");
    }
    if (r->status_filter) {
        gkd_buf_puts(&b, " with status ");
        report_html_put(&b, r->status_filter);
    }
    gkd_buf_puts(&b, "; evals split: ");
    report_html_put(&b, r->split ? r->split : "-");
    gkd_buf_puts(&b, ".</p>\n");

    int n_table_metrics = r->n_metrics;
    gkd_status st = html_plots(store, r, &o, n_table_metrics, &b);
    if (st == GKD_OK && html_tables(r, n_table_metrics, &b)) st = report_nomem("html tables");
    gkd_buf_printf(&b, "<script>\n%s</script>\n", report_js);
    gkd_buf_puts(&b, "</body>\n</html>\n");
    if (st == GKD_OK && b.failed) st = report_nomem("html");
    if (st == GKD_OK && fwrite(b.data, 1, b.len, out) != b.len)
        st = gkd_error_set(GKD_ERR_IO, "writing the html failed");
    gkd_buf_free(&b);
    return st != GKD_OK ? st : report_check_written(out);
}
