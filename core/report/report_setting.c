/* Settings (core/report/report.h): a run's grouping key (its config minus the per-run identity keys and
 * the caller's ignored keys), the labels that tell one sweep's settings apart, and the report's
 * hyperparameters (the CSV's columns).
 * Rules:
 * - An ignore pattern is a dotted path from the top of the config ("resolved.seed"), or "*." and a key,
 *   which matches that key at any depth ("*.seed" is seed, resolved.seed, student.seed). Arrays are
 *   values: nothing inside one is ignored.
 * - The identity keys (report_identity_keys) are always ignored: they differ between the seeds of one
 *   setting or between copies of one script, never between settings. The caller's patterns add to them.
 * - Each hyperparameter is shown once. Of the leaves that vary between settings, one is left out when
 *   it varies in lockstep with a leaf already kept (the same settings share a value in both) and is the
 *   same hyperparameter spelled again: it ends in the same key (resolved.lambda beside lambda), or its
 *   text names the other one's value (divergence "jsd(beta=0.1)" beside beta = 0.1). Leaves outside
 *   "resolved" are kept first, then shallower ones, then in config order. Leaves that merely covary
 *   (alpha set from lambda) are both kept. */
#include "core/report/report_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

const char *const report_identity_keys[] = {
    "name",           /* the run's name, which carries its seed */
    "sweep",          /* the sweep's name: a column and a grouping of its own */
    "*.seed",         /* the run's seed, resolved.seed, a data seed */
    "*.init_seed",    /* a model built per seed (gkd.model.new{seed = p.seed}) records it */
    "script",         /* the script's path and arguments: where it was started from */
    "warnings",       /* messages stored with the run */
    "checkpoint.dir", /* a per-run folder */
};
const int report_n_identity_keys = (int)(sizeof report_identity_keys / sizeof report_identity_keys[0]);

/* ---------------------------------------------------------------------------------------------------- */
/* the grouping key */

typedef struct {
    const char *const *user;
    int n_user;
    int *hits; /* (n_user) or NULL: counts what each user pattern left out */
} ignore_set;

static int pattern_matches(const char *pattern, const char *path, const char *key) {
    if (pattern[0] == '*' && pattern[1] == '.') return strcmp(pattern + 2, key) == 0;
    return strcmp(pattern, path) == 0;
}

static int path_ignored(const ignore_set *ig, const char *path, const char *key) {
    int found = 0;
    for (int i = 0; i < ig->n_user; i++) /* counted first: a user pattern may name an identity key */
        if (pattern_matches(ig->user[i], path, key)) {
            if (ig->hits) ig->hits[i]++;
            found = 1;
        }
    for (int i = 0; i < report_n_identity_keys && !found; i++)
        found = pattern_matches(report_identity_keys[i], path, key);
    return found;
}

/* Appends v as compact JSON without the members whose path is ignored; path holds v's own path. */
static void put_setting(gkd_buf *b, const gkd_json *v, gkd_buf *path, const ignore_set *ig) {
    if (v->type != GKD_JSON_OBJECT) {
        gkd_buf_json_value(b, v);
        return;
    }
    gkd_buf_puts(b, "{");
    size_t keep = path->len;
    int first = 1;
    for (size_t i = 0; i < v->len; i++) {
        if (keep) gkd_buf_puts(path, ".");
        gkd_buf_puts(path, v->keys[i]);
        if (!path_ignored(ig, path->data ? path->data : "", v->keys[i])) {
            if (!first) gkd_buf_puts(b, ",");
            first = 0;
            gkd_buf_json_string(b, v->keys[i], strlen(v->keys[i]));
            gkd_buf_puts(b, ":");
            put_setting(b, v->items[i], path, ig);
        }
        path->len = keep;
        if (path->data) path->data[keep] = '\0';
    }
    gkd_buf_puts(b, "}");
}

gkd_status report_setting_of(const char *config, const char *const *ignore, int n_ignore, int *hits,
                             char **out) {
    *out = NULL;
    gkd_json *root = NULL;
    if (gkd_json_parse(config, strlen(config), "run config", &root) != GKD_OK ||
        root->type != GKD_JSON_OBJECT) {
        gkd_error_clear();
        gkd_json_free(root);
        *out = report_strdup(config); /* not an object: its own setting */
        return *out ? GKD_OK : report_nomem("setting");
    }
    ignore_set ig = {ignore, n_ignore, hits};
    gkd_buf b = {0}, path = {0};
    put_setting(&b, root, &path, &ig);
    gkd_json_free(root);
    int failed = b.failed || path.failed;
    gkd_buf_free(&path);
    if (failed) {
        gkd_buf_free(&b);
        return report_nomem("setting");
    }
    *out = b.data;
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------- */
/* leaves: the dotted paths of a set of settings and each setting's value there */

typedef struct {
    char **paths;
    char **values; /* (n_paths, n_groups) path-major, NULL where a setting lacks the path */
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
    /* path-major, so that growing the path count keeps earlier rows in place */
    t->paths[t->n_paths] = report_strdup(path);
    if (!t->paths[t->n_paths]) return -1;
    for (int g = 0; g < t->n_groups; g++) t->values[(size_t)t->n_paths * t->n_groups + g] = NULL;
    return t->n_paths++;
}

/* A leaf as text: a string as it is, a number in the fewest digits that read back exactly, anything
 * else as JSON. */
static void leaf_text(gkd_buf *b, const gkd_json *v) {
    char num[40];
    if (v->type == GKD_JSON_NUMBER)
        gkd_buf_puts(b, report_fmt_exact(num, sizeof num, v->number));
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
    gkd_buf_puts(&text, ""); /* an empty string still gets its terminating NUL */
    int i = path->failed || text.failed ? -1 : leaf_path_index(t, path->data ? path->data : "");
    if (i < 0) {
        t->nomem = 1;
        gkd_buf_free(&text);
        return;
    }
    char **slot = &t->values[(size_t)i * t->n_groups + group];
    free(*slot);
    *slot = text.data;
}

/* The leaves of the settings of groups members[0..n). */
static void leaf_table_build(leaf_table *t, const gkd_report *r, const int *members, int n) {
    memset(t, 0, sizeof *t);
    t->n_groups = n;
    for (int j = 0; j < n && !t->nomem; j++) {
        gkd_json *root = NULL;
        const char *s = r->groups[members[j]].setting;
        if (gkd_json_parse(s, strlen(s), "setting", &root) != GKD_OK) {
            gkd_error_clear();
            continue;
        }
        gkd_buf path = {0};
        collect_leaves(t, j, root, &path);
        gkd_buf_free(&path);
        gkd_json_free(root);
    }
}

static void leaf_table_free(leaf_table *t) {
    for (int i = 0; i < t->n_paths; i++) {
        free(t->paths[i]);
        for (int j = 0; j < t->n_groups; j++) free(t->values[(size_t)i * t->n_groups + j]);
    }
    free(t->paths);
    free(t->values);
}

static const char *leaf_value(const leaf_table *t, int path, int group) {
    return t->values[(size_t)path * t->n_groups + group];
}

static int leaf_varies(const leaf_table *t, int i) {
    for (int g = 1; g < t->n_groups; g++)
        if (!report_streq(leaf_value(t, i, 0), leaf_value(t, i, g))) return 1;
    return 0;
}

static const char *last_key(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* part[g]: the first setting whose value of leaf i equals setting g's. Two leaves split the settings
 * the same way (vary in lockstep) exactly when their arrays are equal. */
static void leaf_partition(const leaf_table *t, int i, int *part) {
    for (int g = 0; g < t->n_groups; g++) {
        int h = 0;
        while (!report_streq(leaf_value(t, i, h), leaf_value(t, i, g))) h++;
        part[g] = h;
    }
}

/* Whether `text` contains "key=value" standing alone (not inside a longer name or number). */
static int names_value(const char *text, const char *key, const char *value) {
    size_t nk = strlen(key), nv = strlen(value);
    for (const char *p = strstr(text, key); p; p = strstr(p + 1, key)) {
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.')) continue;
        if (p[nk] != '=' || strncmp(p + nk + 1, value, nv) != 0) continue;
        char after = p[nk + 1 + nv];
        if (!isalnum((unsigned char)after) && after != '.' && after != '_') return 1;
    }
    return 0;
}

/* Whether leaf j's every value names leaf i's value of the same setting. */
static int text_names_leaf(const leaf_table *t, int j, int i) {
    const char *key = last_key(t->paths[i]);
    for (int g = 0; g < t->n_groups; g++) {
        const char *vi = leaf_value(t, i, g), *vj = leaf_value(t, j, g);
        if (!vi || !vj || !names_value(vj, key, vi)) return 0;
    }
    return 1;
}

static int same_hyperparameter(const leaf_table *t, int i, int j, const int *part_i, const int *part_j) {
    if (memcmp(part_i, part_j, (size_t)t->n_groups * sizeof *part_i) != 0) return 0;
    if (strcmp(last_key(t->paths[i]), last_key(t->paths[j])) == 0) return 1;
    return text_names_leaf(t, j, i) || text_names_leaf(t, i, j);
}

/* Lower ranks are kept first: outside "resolved", then shallower, then config order. */
static int leaf_rank(const leaf_table *t, int i) {
    int depth = 0;
    for (const char *p = t->paths[i]; *p; p++) depth += *p == '.';
    int resolved = strncmp(t->paths[i], "resolved.", 9) == 0;
    return (resolved * 64 + (depth < 63 ? depth : 63)) * (t->n_paths + 1) + i;
}

/* keep[i] = 1 for the leaves shown: those that vary, each hyperparameter once. */
static void leaf_select(const leaf_table *t, int *keep) {
    int n = 0;
    for (int i = 0; i < t->n_paths; i++) n += keep[i] = leaf_varies(t, i);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    int *part = malloc((size_t)(n ? n : 1) * (size_t)t->n_groups * sizeof *part);
    if (!order || !part) { /* out of memory: every varying leaf shown, rather than none */
        free(order);
        free(part);
        return;
    }
    n = 0;
    for (int i = 0; i < t->n_paths; i++)
        if (keep[i]) order[n++] = i;
    for (int a = 1; a < n; a++) /* insertion sort by rank: a handful of leaves */
        for (int b = a; b > 0 && leaf_rank(t, order[b]) < leaf_rank(t, order[b - 1]); b--) {
            int x = order[b];
            order[b] = order[b - 1];
            order[b - 1] = x;
        }
    for (int a = 0; a < n; a++) {
        int *pa = part + (size_t)a * t->n_groups;
        leaf_partition(t, order[a], pa);
        for (int b = 0; b < a && keep[order[a]]; b++)
            if (keep[order[b]] &&
                same_hyperparameter(t, order[b], order[a], part + (size_t)b * t->n_groups, pa))
                keep[order[a]] = 0;
    }
    free(order);
    free(part);
}

/* ---------------------------------------------------------------------------------------------------- */
/* labels and hyperparameters */

/* Labels the groups members[0..n) (one sweep's) by the leaves shown. */
static gkd_status label_sweep(gkd_report *r, const int *members, int n) {
    leaf_table t;
    leaf_table_build(&t, r, members, n);
    int *keep = t.nomem ? NULL : malloc((size_t)(t.n_paths ? t.n_paths : 1) * sizeof *keep);
    if (keep) leaf_select(&t, keep);
    int nomem = !keep;
    for (int j = 0; j < n && !nomem; j++) {
        gkd_buf b = {0};
        for (int i = 0; i < t.n_paths; i++) {
            if (!keep[i]) continue;
            if (b.len) gkd_buf_puts(&b, " ");
            gkd_buf_printf(&b, "%s=%s", t.paths[i], leaf_value(&t, i, j) ? leaf_value(&t, i, j) : "-");
        }
        if (!b.len) gkd_buf_puts(&b, "(one setting)");
        if (b.failed) {
            gkd_buf_free(&b);
            nomem = 1;
            break;
        }
        r->groups[members[j]].label = b.data;
    }
    free(keep);
    leaf_table_free(&t);
    return nomem ? report_nomem("setting labels") : GKD_OK;
}

/* Settings are told apart within their sweep: keys that differ only between sweeps are not shown. */
gkd_status report_label_groups(gkd_report *r) {
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

/* Moves the shown leaves of every group out of t into r->params and each group's param_values. */
static void take_params(gkd_report *r, leaf_table *t, const int *keep) {
    for (int i = 0; i < t->n_paths; i++) {
        if (!keep[i]) continue;
        int p = r->n_params++;
        r->params[p] = t->paths[i];
        t->paths[i] = NULL;
        for (int g = 0; g < r->n_groups; g++) {
            char **slot = &t->values[(size_t)i * t->n_groups + g];
            r->groups[g].param_values[p] = *slot;
            *slot = NULL;
        }
    }
}

gkd_status report_find_params(gkd_report *r) {
    int *all = malloc((size_t)(r->n_groups ? r->n_groups : 1) * sizeof *all);
    if (!all) return report_nomem("hyperparameters");
    for (int g = 0; g < r->n_groups; g++) all[g] = g;
    leaf_table t;
    leaf_table_build(&t, r, all, r->n_groups);
    free(all);
    size_t n = (size_t)(t.n_paths ? t.n_paths : 1);
    int *keep = t.nomem ? NULL : malloc(n * sizeof *keep);
    int ok = keep && (r->params = calloc(n, sizeof *r->params)) != NULL;
    for (int g = 0; ok && g < r->n_groups; g++)
        ok = (r->groups[g].param_values = calloc(n, sizeof *r->groups[g].param_values)) != NULL;
    if (ok) {
        leaf_select(&t, keep);
        take_params(r, &t, keep);
    }
    free(keep);
    leaf_table_free(&t);
    return ok ? GKD_OK : report_nomem("hyperparameters");
}
