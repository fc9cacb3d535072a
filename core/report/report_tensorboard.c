/* TensorBoard export (core/report/tensorboard.h): the run selection, the run folders, and the Event,
 * Summary, text-plugin and HParams-plugin messages of each run.
 * Rules:
 * - Field numbers are those of TensorBoard's protos (event.proto, summary.proto, tensor.proto,
 *   tensor_shape.proto; hparams api.proto and plugin_data.proto; protobuf's struct.proto), named in the
 *   enums below so each message can be read against its .proto.
 * - A run's events go in step order within each tag: file_version first, the HParams session start,
 *   the scalars of each step in one event, the text of each (step, split), the session end.
 * - Each event file is written under a temporary name and renamed when complete, so TensorBoard never
 *   reads half a file and a failed export leaves the previous file in place. */
#include "core/report/tensorboard.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/base/json.h"
#include "core/report/tfevent.h"

/* event.proto, summary.proto */
enum { EVENT_WALL_TIME = 1, EVENT_STEP = 2, EVENT_FILE_VERSION = 3, EVENT_SUMMARY = 5 };
enum { SUMMARY_VALUE = 1 };
enum { VALUE_TAG = 1, VALUE_SIMPLE_VALUE = 2, VALUE_TENSOR = 8, VALUE_METADATA = 9 };
enum { METADATA_PLUGIN_DATA = 1, PLUGIN_DATA_NAME = 1, PLUGIN_DATA_CONTENT = 2 };
/* tensor.proto, tensor_shape.proto, types.proto */
enum { TENSOR_DTYPE = 1, TENSOR_SHAPE = 2, TENSOR_STRING_VAL = 8, SHAPE_DIM = 2, DIM_SIZE = 1 };
enum { DT_STRING = 7 };
/* hparams plugin_data.proto and api.proto */
enum { HP_EXPERIMENT = 2, HP_SESSION_START = 3, HP_SESSION_END = 4 };
enum { START_HPARAMS = 1, START_TIME_SECS = 5, END_STATUS = 1, END_TIME_SECS = 2 };
enum { STATUS_UNKNOWN = 0, STATUS_SUCCESS = 1, STATUS_FAILURE = 2, STATUS_RUNNING = 3 };
enum { EXPERIMENT_TIME_CREATED = 3, EXPERIMENT_HPARAM_INFOS = 4, EXPERIMENT_METRIC_INFOS = 5 };
enum { HPARAM_NAME = 1, HPARAM_TYPE = 4, HPARAM_DIFFERS = 7 };
enum { TYPE_UNSET = 0, TYPE_STRING = 1, TYPE_BOOL = 2, TYPE_FLOAT64 = 3 };
enum { METRIC_NAME = 1, METRIC_DATASET_TYPE = 5, METRIC_NAME_TAG = 2, DATASET_TRAINING = 1 };
/* struct.proto: a map<string, Value> entry, and Value */
enum { ENTRY_KEY = 1, ENTRY_VALUE = 2, VALUE_NUMBER = 2, VALUE_STRING = 3, VALUE_BOOL = 4 };

typedef struct {
    int64_t id;
    char *name, *status, *config;
    double start, end; /* Unix seconds; NaN when not recorded */
    char *dir;         /* the run's folder, relative to the export folder */
} tb_run;

/* A hyperparameter key over all exported runs, for the experiment summary. */
typedef struct {
    char *key;
    int type;    /* TYPE_*: TYPE_UNSET when runs disagree on it */
    char *value; /* the first run's value as compact JSON: the runs differ when another one's is not it */
    int n_runs;  /* runs that have the key */
    int differs;
} tb_hparam;

typedef struct {
    gkd_store *store;
    const char *dir;
    int n_runs, cap_runs;
    tb_run *runs;
    int n_hparams, cap_hparams;
    tb_hparam *hparams;
    int n_tags, cap_tags;
    char **tags; /* every scalar tag, in the order first written */
    gkd_report_tensorboard_counts counts;
    int nomem; /* reading the runs ran out of memory */
} tb_export;

/* One open event file. */
typedef struct {
    FILE *f;
    char *path; /* the temporary name it is written under */
    double wall;
    gkd_status st; /* the first failure inside a store callback */
} tb_file;

static char *tb_strdup(const char *s) {
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s ? s : "", n);
    return d;
}

static gkd_status tb_nomem(const char *what) {
    return gkd_error_set(GKD_ERR_NOMEM, "tensorboard export: out of memory (%s)", what);
}

/* Grows *items (of `size` bytes each) to hold one more; 0 when out of memory. */
static int tb_reserve(void **items, int n, int *cap, size_t size) {
    if (n < *cap) return 1;
    int c = *cap ? 2 * *cap : 16;
    void *p = realloc(*items, (size_t)c * size);
    if (!p) return 0;
    *items = p;
    *cap = c;
    return 1;
}

/* ---- events ---- */

static gkd_status tb_event(tb_file *f, int64_t step, const gkd_buf *summary, const char *file_version) {
    gkd_buf ev = {0};
    gkd_pb_double(&ev, EVENT_WALL_TIME, f->wall);
    gkd_pb_varint(&ev, EVENT_STEP, (uint64_t)step);
    if (file_version) gkd_pb_string(&ev, EVENT_FILE_VERSION, file_version);
    if (summary) gkd_pb_message(&ev, EVENT_SUMMARY, summary);
    gkd_status st = gkd_buf_check(&ev, "event");
    if (st == GKD_OK) st = gkd_tfrecord_write(f->f, f->path, ev.data, ev.len);
    gkd_buf_free(&ev);
    return st;
}

/* Appends to `summary` a Summary.Value of plugin `plugin` with the given plugin content and tensor. */
static void tb_plugin_value(gkd_buf *summary, const char *tag, const char *plugin, const gkd_buf *content,
                            const gkd_buf *tensor) {
    gkd_buf data = {0}, meta = {0}, value = {0};
    gkd_pb_string(&data, PLUGIN_DATA_NAME, plugin);
    gkd_pb_message(&data, PLUGIN_DATA_CONTENT, content); /* bytes holding a serialized message */
    gkd_pb_message(&meta, METADATA_PLUGIN_DATA, &data);
    gkd_pb_string(&value, VALUE_TAG, tag);
    gkd_pb_message(&value, VALUE_METADATA, &meta);
    gkd_pb_message(&value, VALUE_TENSOR, tensor);
    gkd_pb_message(summary, SUMMARY_VALUE, &value);
    gkd_buf_free(&data);
    gkd_buf_free(&meta);
    gkd_buf_free(&value);
}

/* The head of a DT_STRING tensor of the given shape; its string_val fields follow. */
static void tb_string_tensor(gkd_buf *t, int rank, const int64_t *dims) {
    gkd_buf shape = {0};
    gkd_pb_varint(t, TENSOR_DTYPE, DT_STRING);
    for (int i = 0; i < rank; i++) {
        gkd_buf dim = {0};
        gkd_pb_varint(&dim, DIM_SIZE, (uint64_t)dims[i]);
        gkd_pb_message(&shape, SHAPE_DIM, &dim);
        gkd_buf_free(&dim);
    }
    gkd_pb_message(t, TENSOR_SHAPE, &shape);
    gkd_buf_free(&shape);
}

/* One event holding an HParamsPluginData whose field `kind` is the message `msg`. TensorBoard lists a
 * plugin's series from their tensors, so the value carries an empty string scalar as TensorFlow's
 * writer does. */
static gkd_status tb_hparams_event(tb_file *f, const char *tag, int kind, const gkd_buf *msg) {
    gkd_buf content = {0}, tensor = {0}, summary = {0};
    gkd_pb_message(&content, kind, msg); /* version 0, proto3's default, is not written */
    tb_string_tensor(&tensor, 0, NULL);
    gkd_pb_bytes(&tensor, TENSOR_STRING_VAL, "", 0);
    tb_plugin_value(&summary, tag, "hparams", &content, &tensor);
    gkd_status st = gkd_buf_check(&summary, "hparams summary");
    if (st == GKD_OK) st = tb_event(f, 0, &summary, NULL);
    gkd_buf_free(&content);
    gkd_buf_free(&tensor);
    gkd_buf_free(&summary);
    return st;
}

/* ---- hyperparameters: the config's leaves under dotted keys ---- */

static int tb_hparam_type(const gkd_json *v) {
    return v->type == GKD_JSON_NUMBER ? TYPE_FLOAT64 : v->type == GKD_JSON_BOOL ? TYPE_BOOL : TYPE_STRING;
}

/* Records the key's value of one run in the experiment's list. */
static gkd_status tb_note_hparam(tb_export *x, const char *key, const gkd_json *v) {
    gkd_buf repr = {0};
    gkd_buf_json_value(&repr, v);
    gkd_status st = gkd_buf_check(&repr, "hparam value");
    if (st != GKD_OK) return st;
    for (int i = 0; i < x->n_hparams; i++) {
        tb_hparam *h = &x->hparams[i];
        if (strcmp(h->key, key) != 0) continue;
        if (strcmp(h->value, repr.data) != 0) h->differs = 1;
        if (h->type != tb_hparam_type(v)) h->type = TYPE_UNSET;
        h->n_runs++;
        gkd_buf_free(&repr);
        return GKD_OK;
    }
    if (!tb_reserve((void **)&x->hparams, x->n_hparams, &x->cap_hparams, sizeof *x->hparams)) {
        gkd_buf_free(&repr);
        return tb_nomem("hparams");
    }
    tb_hparam *h = &x->hparams[x->n_hparams];
    *h = (tb_hparam){.key = tb_strdup(key), .type = tb_hparam_type(v), .value = repr.data, .n_runs = 1};
    if (!h->key) {
        gkd_buf_free(&repr);
        return tb_nomem("hparams");
    }
    x->n_hparams++;
    return GKD_OK;
}

/* Appends a SessionStartInfo.hparams map entry: a number, bool or string as such, an array as its
 * compact JSON text. */
static void tb_put_hparam(gkd_buf *start, const char *key, const gkd_json *v) {
    gkd_buf value = {0}, entry = {0};
    if (v->type == GKD_JSON_NUMBER) {
        gkd_pb_double(&value, VALUE_NUMBER, v->number);
    } else if (v->type == GKD_JSON_BOOL) {
        gkd_pb_varint(&value, VALUE_BOOL, (uint64_t)(v->boolean != 0));
    } else if (v->type == GKD_JSON_STRING) {
        gkd_pb_bytes(&value, VALUE_STRING, v->string, v->len);
    } else {
        gkd_buf text = {0};
        gkd_buf_json_value(&text, v);
        gkd_pb_bytes(&value, VALUE_STRING, text.data, text.len);
        value.failed |= text.failed;
        gkd_buf_free(&text);
    }
    gkd_pb_string(&entry, ENTRY_KEY, key);
    gkd_pb_message(&entry, ENTRY_VALUE, &value);
    gkd_pb_message(start, START_HPARAMS, &entry);
    gkd_buf_free(&value);
    gkd_buf_free(&entry);
}

/* Every leaf under v, keyed `key` (the dotted path so far, restored on return); nulls and empty
 * objects are left out. */
static gkd_status tb_walk_config(tb_export *x, gkd_buf *start, gkd_buf *key, const gkd_json *v) {
    /* a null has nothing to show, and a config that is not an object has no keys */
    if (v->type == GKD_JSON_NULL || (v->type != GKD_JSON_OBJECT && !key->len)) return GKD_OK;
    if (v->type != GKD_JSON_OBJECT) {
        gkd_status st = gkd_buf_check(key, "hparam key");
        if (st != GKD_OK) return st;
        tb_put_hparam(start, key->data, v);
        return tb_note_hparam(x, key->data, v);
    }
    size_t at = key->len;
    for (size_t i = 0; i < v->len; i++) {
        if (at) gkd_buf_puts(key, ".");
        gkd_buf_puts(key, v->keys[i]);
        gkd_status st = tb_walk_config(x, start, key, v->items[i]);
        key->len = at;
        if (key->data) key->data[at] = '\0';
        if (st != GKD_OK) return st;
    }
    return GKD_OK;
}

static gkd_status tb_session_start(tb_export *x, tb_file *f, const tb_run *r) {
    gkd_json *config = NULL;
    gkd_status st = gkd_json_parse(r->config, strlen(r->config), "run config", &config);
    if (st != GKD_OK) return gkd_error_prefix(st, "run '%s'", r->name);
    gkd_buf start = {0}, key = {0};
    st = tb_walk_config(x, &start, &key, config);
    if (isfinite(r->start)) gkd_pb_double(&start, START_TIME_SECS, r->start);
    if (st == GKD_OK) st = tb_hparams_event(f, "_hparams_/session_start_info", HP_SESSION_START, &start);
    gkd_json_free(config);
    gkd_buf_free(&start);
    gkd_buf_free(&key);
    return st;
}

static gkd_status tb_session_end(tb_file *f, const tb_run *r) {
    static const struct {
        const char *status;
        int code;
    } codes[] = {{"finished", STATUS_SUCCESS}, {"failed", STATUS_FAILURE}, {"running", STATUS_RUNNING}};
    int code = STATUS_UNKNOWN;
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(r->status, codes[i].status) == 0) code = codes[i].code;
    gkd_buf end = {0};
    gkd_pb_varint(&end, END_STATUS, (uint64_t)code);
    if (isfinite(r->end)) gkd_pb_double(&end, END_TIME_SECS, r->end);
    gkd_status st = tb_hparams_event(f, "_hparams_/session_end_info", HP_SESSION_END, &end);
    gkd_buf_free(&end);
    return st;
}

/* ---- scalars: training metrics as train/NAME, evaluations as SPLIT/METRIC ---- */

typedef struct {
    tb_export *x;
    tb_file *f;
    int64_t step;
    gkd_buf summary; /* the values of `step` so far */
} tb_scalars;

static gkd_status tb_note_tag(tb_export *x, const char *tag) {
    for (int i = x->n_tags - 1; i >= 0; i--)
        if (strcmp(x->tags[i], tag) == 0) return GKD_OK;
    if (!tb_reserve((void **)&x->tags, x->n_tags, &x->cap_tags, sizeof *x->tags)) return tb_nomem("tags");
    if (!(x->tags[x->n_tags] = tb_strdup(tag))) return tb_nomem("tags");
    x->n_tags++;
    return GKD_OK;
}

/* The nearest float; beyond float's range an infinity of that sign, where a plain cast would be
 * undefined. */
static float tb_to_float(double v) {
    if (v > FLT_MAX) return INFINITY;
    if (v < -FLT_MAX) return -INFINITY;
    return (float)v;
}

static gkd_status tb_scalars_flush(void *ctx) {
    tb_scalars *s = ctx;
    if (!s->summary.len) return GKD_OK;
    gkd_status st = gkd_buf_check(&s->summary, "scalars");
    if (st == GKD_OK) st = tb_event(s->f, s->step, &s->summary, NULL);
    s->summary.len = 0;
    return st;
}

static int tb_scalar_row(const gkd_store_row *row, void *ctx) {
    tb_scalars *s = ctx;
    int64_t step = gkd_store_row_int(row, 0);
    const char *tag = gkd_store_row_text(row, 1);
    if (step != s->step) s->f->st = tb_scalars_flush(s);
    s->step = step;
    if (s->f->st == GKD_OK) s->f->st = tb_note_tag(s->x, tag);
    if (s->f->st != GKD_OK) return 1;
    gkd_buf value = {0};
    gkd_pb_string(&value, VALUE_TAG, tag);
    gkd_pb_float(&value, VALUE_SIMPLE_VALUE, tb_to_float(gkd_store_row_double(row, 2)));
    gkd_pb_message(&s->summary, SUMMARY_VALUE, &value);
    gkd_buf_free(&value);
    s->x->counts.scalars++;
    return 0;
}

/* Runs the query `sql` over run r (?1), whose rows `row` gathers into events, then writes the event
 * the last rows left pending (`flush`). */
static gkd_status tb_query_events(tb_export *x, tb_file *f, const tb_run *r, const char *sql,
                                  gkd_store_row_fn row, gkd_status (*flush)(void *ctx), void *ctx) {
    gkd_status st = gkd_store_query(x->store, row, ctx, sql, "i", r->id);
    if (st == GKD_OK) st = f->st;
    if (st == GKD_OK) st = flush(ctx);
    return st;
}

static gkd_status tb_write_scalars(tb_export *x, tb_file *f, const tb_run *r) {
    tb_scalars s = {.x = x, .f = f, .step = INT64_MIN};
    gkd_status st = tb_query_events(x, f, r,
                                    "SELECT step, 'train/' || name, value FROM metrics WHERE run_id = ?1 "
                                    "UNION ALL SELECT step, split || '/' || metric, value FROM evals "
                                    "WHERE run_id = ?1 ORDER BY 1, 2",
                                    tb_scalar_row, tb_scalars_flush, &s);
    gkd_buf_free(&s.summary);
    return st;
}

/* ---- text: the samples of one (step, split) as a [n, 2] table of prompt and output ---- */

typedef struct {
    tb_export *x;
    tb_file *f;
    int64_t step;
    char *split;
    int64_t n;
    gkd_buf cells; /* string_val fields, row-major */
} tb_texts;

static gkd_status tb_texts_flush(void *ctx) {
    tb_texts *t = ctx;
    if (!t->n) return GKD_OK;
    gkd_buf tensor = {0}, content = {0}, summary = {0}, tag = {0};
    int64_t dims[2] = {t->n, 2};
    tb_string_tensor(&tensor, 2, dims);
    gkd_buf_put(&tensor, t->cells.data, t->cells.len);
    tensor.failed |= t->cells.failed;
    /* content stays empty: TextPluginData of version 0 has no field to write */
    gkd_buf_printf(&tag, "samples/%s", t->split);
    tb_plugin_value(&summary, tag.data ? tag.data : "", "text", &content, &tensor);
    summary.failed |= tag.failed;
    gkd_status st = gkd_buf_check(&summary, "text summary");
    if (st == GKD_OK) st = tb_event(t->f, t->step, &summary, NULL);
    gkd_buf_free(&tensor);
    gkd_buf_free(&content);
    gkd_buf_free(&summary);
    gkd_buf_free(&tag);
    t->cells.len = 0;
    t->n = 0;
    return st;
}

static int tb_sample_row(const gkd_store_row *row, void *ctx) {
    tb_texts *t = ctx;
    int64_t step = gkd_store_row_int(row, 0);
    const char *split = gkd_store_row_text(row, 1);
    if (!split) split = "train";
    if (step != t->step || !t->split || strcmp(split, t->split) != 0) {
        t->f->st = tb_texts_flush(t);
        free(t->split);
        t->split = tb_strdup(split);
        t->step = step;
        if (t->f->st == GKD_OK && !t->split) t->f->st = tb_nomem("samples");
        if (t->f->st != GKD_OK) return 1;
    }
    for (int col = 2; col <= 3; col++)
        gkd_pb_string(&t->cells, TENSOR_STRING_VAL, gkd_store_row_text(row, col));
    t->n++;
    t->x->counts.samples++;
    return 0;
}

static gkd_status tb_write_texts(tb_export *x, tb_file *f, const tb_run *r) {
    tb_texts t = {.x = x, .f = f, .step = INT64_MIN};
    gkd_status st = tb_query_events(x, f, r,
                                    "SELECT step, split, prompt, output FROM samples WHERE run_id = ?1 "
                                    "ORDER BY step, split, id",
                                    tb_sample_row, tb_texts_flush, &t);
    free(t.split);
    gkd_buf_free(&t.cells);
    return st;
}

/* ---- files and folders ---- */

/* Creates `path` and its missing parents, like mkdir -p. */
static gkd_status tb_make_dirs(const char *path) {
    char *p = tb_strdup(path);
    if (!p) return tb_nomem("path");
    gkd_status st = GKD_OK;
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q) continue;
        char c = *q;
        *q = '\0';
        struct stat sb;
        if (mkdir(p, 0777) != 0) {
            int err = errno; /* an existing folder may answer EACCES as well as EEXIST */
            if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
                st = gkd_error_set(GKD_ERR_IO, "cannot create folder '%s': %s", p,
                                   err == EEXIST ? "a file of that name is in the way" : strerror(err));
        }
        *q = c;
        if (st != GKD_OK || !c) break;
    }
    free(p);
    return st;
}

/* Opens `folder`/partial for the events of a file that will be `folder`/`name`, and writes the
 * file_version event. */
static gkd_status tb_file_open(tb_file *f, const char *folder, double wall) {
    gkd_buf path = {0};
    gkd_buf_printf(&path, "%s/.gkd-export.partial", folder);
    gkd_status st = gkd_buf_check(&path, "path");
    *f = (tb_file){.path = path.data, .wall = wall};
    if (st != GKD_OK) return st;
    f->f = fopen(f->path, "wb");
    if (!f->f) return gkd_error_set(GKD_ERR_IO, "cannot write '%s': %s", f->path, strerror(errno));
    return tb_event(f, 0, NULL, "brain.Event:2");
}

/* Closes f and, when everything was written (st GKD_OK), renames it to `folder`/`name`; otherwise
 * removes it. Returns st or the failure to close or rename. */
static gkd_status tb_file_close(tb_file *f, const char *folder, const char *name, gkd_status st) {
    if (f->f && fclose(f->f) != 0 && st == GKD_OK)
        st = gkd_error_set(GKD_ERR_IO, "writing '%s' failed: %s", f->path, strerror(errno));
    gkd_buf final = {0};
    gkd_buf_printf(&final, "%s/%s", folder, name);
    if (st == GKD_OK) st = gkd_buf_check(&final, "path");
    if (st == GKD_OK && rename(f->path, final.data) != 0)
        st =
            gkd_error_set(GKD_ERR_IO, "cannot rename '%s' to '%s': %s", f->path, final.data, strerror(errno));
    if (st != GKD_OK && f->path) remove(f->path);
    free(f->path);
    gkd_buf_free(&final);
    return st;
}

/* The run's folder from its name: each '/'-separated part made safe, empty parts dropped. */
static char *tb_safe_dir(const char *name) {
    gkd_buf d = {0};
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        if (n) {
            if (d.len) gkd_buf_put(&d, "/", 1);
            for (size_t i = 0; i < n && i < 120; i++) {
                unsigned char c = (unsigned char)p[i];
                int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                           (c && strchr("._,=+-", c) && !(i == 0 && c == '.'));
                gkd_buf_put(&d, keep ? (const char *)&p[i] : "_", 1);
            }
        }
        p += n + (p[n] == '/');
    }
    if (!d.len) gkd_buf_puts(&d, "run");
    if (d.failed) {
        gkd_buf_free(&d);
        return NULL;
    }
    return d.data;
}

/* Letters compared without case: on a case-insensitive file system "Run" and "run" are one folder. */
static int tb_dir_taken(const tb_export *x, int upto, const char *dir) {
    for (int i = 0; i < upto; i++)
        if (strcasecmp(x->runs[i].dir, dir) == 0) return 1;
    return 0;
}

/* Folders for every run: the safe name, with -ID (and -ID-K) when another run already has it. */
static gkd_status tb_assign_dirs(tb_export *x) {
    for (int i = 0; i < x->n_runs; i++) {
        tb_run *r = &x->runs[i];
        char *base = tb_safe_dir(r->name);
        if (!base) return tb_nomem("folder name");
        gkd_buf d = {0};
        gkd_buf_puts(&d, base);
        for (int k = 1; !d.failed && tb_dir_taken(x, i, d.data); k++) {
            d.len = 0;
            gkd_buf_printf(&d, k == 1 ? "%s-%lld" : "%s-%lld-%d", base, (long long)r->id, k);
        }
        free(base);
        if (d.failed) {
            gkd_buf_free(&d);
            return tb_nomem("folder name");
        }
        r->dir = d.data;
    }
    return GKD_OK;
}

/* ---- the export ---- */

static gkd_status tb_write_run(tb_export *x, tb_run *r) {
    gkd_buf folder = {0}, name = {0};
    gkd_buf_printf(&folder, "%s/%s", x->dir, r->dir);
    gkd_buf_printf(&name, "events.out.tfevents.%lld.gkd", isfinite(r->start) ? (long long)r->start : 0LL);
    gkd_status st = gkd_buf_check(&folder, "path");
    if (st == GKD_OK) st = gkd_buf_check(&name, "path");
    if (st == GKD_OK) st = tb_make_dirs(folder.data);
    if (st == GKD_OK) {
        tb_file f;
        st = tb_file_open(&f, folder.data, isfinite(r->start) ? r->start : 0);
        if (st == GKD_OK) st = tb_session_start(x, &f, r);
        if (st == GKD_OK) st = tb_write_scalars(x, &f, r);
        if (st == GKD_OK) st = tb_write_texts(x, &f, r);
        if (st == GKD_OK) st = tb_session_end(&f, r);
        st = tb_file_close(&f, folder.data, name.data, st);
    }
    gkd_buf_free(&folder);
    gkd_buf_free(&name);
    return st;
}

/* The HParams experiment: every key (those whose value differs between runs first) and every scalar
 * tag, in an event file of the export folder itself, where TensorBoard looks for it. */
static gkd_status tb_write_experiment(tb_export *x, double created) {
    gkd_buf exp = {0};
    gkd_pb_double(&exp, EXPERIMENT_TIME_CREATED, created);
    for (int pass = 1; pass >= 0; pass--)
        for (int i = 0; i < x->n_hparams; i++) {
            tb_hparam *h = &x->hparams[i];
            int differs = h->differs || h->n_runs < x->n_runs;
            if (differs != pass) continue;
            gkd_buf info = {0};
            gkd_pb_string(&info, HPARAM_NAME, h->key);
            if (h->type != TYPE_UNSET) gkd_pb_varint(&info, HPARAM_TYPE, (uint64_t)h->type);
            if (differs) gkd_pb_varint(&info, HPARAM_DIFFERS, 1);
            gkd_pb_message(&exp, EXPERIMENT_HPARAM_INFOS, &info);
            gkd_buf_free(&info);
        }
    for (int i = 0; i < x->n_tags; i++) {
        gkd_buf metric = {0}, mname = {0};
        gkd_pb_string(&mname, METRIC_NAME_TAG, x->tags[i]);
        gkd_pb_message(&metric, METRIC_NAME, &mname);
        if (strncmp(x->tags[i], "train/", 6) == 0)
            gkd_pb_varint(&metric, METRIC_DATASET_TYPE, DATASET_TRAINING);
        gkd_pb_message(&exp, EXPERIMENT_METRIC_INFOS, &metric);
        gkd_buf_free(&metric);
        gkd_buf_free(&mname);
    }
    tb_file f;
    gkd_status st = tb_file_open(&f, x->dir, created);
    if (st == GKD_OK) st = tb_hparams_event(&f, "_hparams_/experiment", HP_EXPERIMENT, &exp);
    st = tb_file_close(&f, x->dir, "events.out.tfevents.0.gkd-experiment", st);
    gkd_buf_free(&exp);
    return st;
}

static int tb_run_row(const gkd_store_row *row, void *ctx) {
    tb_export *x = ctx;
    if (!tb_reserve((void **)&x->runs, x->n_runs, &x->cap_runs, sizeof *x->runs)) return x->nomem = 1;
    tb_run *r = &x->runs[x->n_runs++];
    *r = (tb_run){
        .id = gkd_store_row_int(row, 0),
        .name = tb_strdup(gkd_store_row_text(row, 1)),
        .status = tb_strdup(gkd_store_row_text(row, 2)),
        .config = tb_strdup(gkd_store_row_text(row, 3)),
        .start = gkd_store_row_double(row, 4),
        .end = gkd_store_row_double(row, 5),
    };
    return x->nomem = !r->name || !r->status || !r->config;
}

static gkd_status tb_select(tb_export *x, const gkd_report_tensorboard_options *opt) {
    const char *sweep = opt ? opt->sweep : NULL, *run = opt ? opt->run : NULL;
    int64_t sweep_id = 0;
    gkd_status st = sweep ? gkd_store_sweep_find(x->store, sweep, &sweep_id) : GKD_OK;
    if (st == GKD_ERR_NOT_FOUND) return gkd_error_set(st, "no sweep named '%s'", sweep);
    if (st != GKD_OK) return st;
    /* julianday(...) - 2440587.5 days is the time since the Unix epoch */
    st = gkd_store_query(
        x->store, tb_run_row, x,
        "SELECT r.id, r.name, r.status, r.config, (julianday(r.started_at) - 2440587.5) * 86400.0, "
        "(julianday(r.finished_at) - 2440587.5) * 86400.0 "
        "FROM runs r LEFT JOIN sweeps s ON s.id = r.sweep_id WHERE (?1 IS NULL OR s.name = ?1) AND (?2 IS "
        "NULL OR r.name = ?2) ORDER BY r.id",
        "ss", sweep, run);
    if (st != GKD_OK) return st;
    if (x->nomem) return tb_nomem("runs");
    if (x->n_runs > 0) return GKD_OK;
    if (run && sweep) return gkd_error_set(GKD_ERR_NOT_FOUND, "no run named '%s' in sweep '%s'", run, sweep);
    if (run) return gkd_error_set(GKD_ERR_NOT_FOUND, "no run named '%s'", run);
    if (sweep) return gkd_error_set(GKD_ERR_NOT_FOUND, "sweep '%s' has no runs", sweep);
    return gkd_error_set(GKD_ERR_NOT_FOUND, "no runs to export");
}

static void tb_export_free(tb_export *x) {
    for (int i = 0; i < x->n_runs; i++) {
        free(x->runs[i].name);
        free(x->runs[i].status);
        free(x->runs[i].config);
        free(x->runs[i].dir);
    }
    for (int i = 0; i < x->n_hparams; i++) {
        free(x->hparams[i].key);
        free(x->hparams[i].value);
    }
    for (int i = 0; i < x->n_tags; i++) free(x->tags[i]);
    free(x->runs);
    free(x->hparams);
    free(x->tags);
}

gkd_status gkd_report_write_tensorboard(gkd_store *store, const char *dir,
                                        const gkd_report_tensorboard_options *opt,
                                        gkd_report_tensorboard_counts *counts) {
    if (!store || !dir || !*dir) return gkd_error_set(GKD_ERR_ARG, "tensorboard export: no store or folder");
    tb_export x = {.store = store, .dir = dir};
    gkd_status st = tb_select(&x, opt);
    if (st == GKD_OK) st = tb_assign_dirs(&x);
    if (st == GKD_OK) st = tb_make_dirs(dir);
    double created = INFINITY;
    for (int i = 0; st == GKD_OK && i < x.n_runs; i++) {
        st = tb_write_run(&x, &x.runs[i]);
        if (isfinite(x.runs[i].start) && x.runs[i].start < created) created = x.runs[i].start;
        if (st == GKD_OK) x.counts.runs++;
    }
    if (st == GKD_OK) st = tb_write_experiment(&x, isfinite(created) ? created : 0);
    x.counts.hparams = x.n_hparams;
    if (counts) *counts = x.counts;
    tb_export_free(&x);
    return st;
}
