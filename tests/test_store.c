/* The run store (core/store/store.h): every table written and read back exactly, metric buffering and the
 * last-write-wins rule, truncation for resume, migration of a committed version-1 database
 * (tests/fixtures/store-v1.db, made by make_old_store.sql) with its data kept, a failed migration
 * rolled back, and the refusals: a newer schema, a file that is not SQLite, a foreign SQLite
 * database, a missing directory, writes through a read-only store, and queries that would write or
 * change the connection (ATTACH, PRAGMA writable_schema). Raw SQLite inspects and forges files behind
 * the store's back. (A store in a read-only folder: tests/test_store_readonly_dir.sh.) */
// ctest-labels: cpu
#include "core/store/store.h"
#include "tests/check.h"

#include <dirent.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/gkd-test-store-XXXXXX";

static void path_in_tmp(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        path_in_tmp(path, sizeof path, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok;
}

/* Raw SQLite helpers for looking at a store from outside. */
static int64_t raw_int(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    int64_t v = INT64_MIN;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

static int raw_text_is(const char *path, const char *sql, const char *want) {
    sqlite3 *db = NULL;
    int same = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            same = t && strcmp((const char *)t, want) == 0;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return same;
}

/* The whole schema as text, to compare stores made by different paths. */
static char *raw_schema(const char *path) {
    sqlite3 *db = NULL;
    char *out = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(
                db,
                "SELECT group_concat(type || ' ' || name || ': ' || coalesce(sql, ''), char(10)) "
                "FROM (SELECT * FROM sqlite_master ORDER BY name)",
                -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            out = strdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return out;
}

static int raw_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static int contains(const char *haystack, const char *needle) {
    return strstr(haystack, needle) != NULL;
}

static int64_t count(gkd_store *s, const char *sql) {
    int64_t n = -1;
    gkd_status st = gkd_store_query_int(s, &n, sql, NULL);
    CHECKF(st == GKD_OK, "%s: %s", sql, gkd_error_message());
    return n;
}

static double metric_value(gkd_store *s, int64_t run, int64_t step, const char *name) {
    double v = -12345;
    gkd_status st =
        gkd_store_query_double(s, &v, "SELECT value FROM metrics WHERE run_id = ? AND step = ? AND name = ?",
                               "iis", run, step, name);
    CHECKF(st == GKD_OK, "metric %s@%lld: %s", name, (long long)step, gkd_error_message());
    return v;
}

typedef struct {
    int rows;
    char name[64], status[32], config[256], code_version[32], host[256], started[64], uuid[64];
    int64_t seed, sweep_id, pid;
    int finished_null;
    char error[128];
} run_row;

static int read_run(const gkd_store_row *row, void *ctx) {
    run_row *r = ctx;
    r->rows++;
    CHECK(gkd_store_row_columns(row) == 12);
    CHECK(strcmp(gkd_store_row_name(row, 0), "name") == 0);
    const char *text[] = {gkd_store_row_text(row, 0), gkd_store_row_text(row, 1), gkd_store_row_text(row, 2),
                          gkd_store_row_text(row, 4), gkd_store_row_text(row, 5), gkd_store_row_text(row, 6)};
    snprintf(r->name, sizeof r->name, "%s", text[0] ? text[0] : "(null)");
    snprintf(r->status, sizeof r->status, "%s", text[1] ? text[1] : "(null)");
    snprintf(r->config, sizeof r->config, "%s", text[2] ? text[2] : "(null)");
    snprintf(r->code_version, sizeof r->code_version, "%s", text[3] ? text[3] : "(null)");
    snprintf(r->host, sizeof r->host, "%s", text[4] ? text[4] : "(null)");
    snprintf(r->started, sizeof r->started, "%s", text[5] ? text[5] : "(null)");
    r->seed = gkd_store_row_int(row, 3);
    r->finished_null = gkd_store_row_is_null(row, 7);
    r->sweep_id = gkd_store_row_is_null(row, 8) ? 0 : gkd_store_row_int(row, 8);
    r->pid = gkd_store_row_int(row, 9);
    const char *err = gkd_store_row_text(row, 10), *uuid = gkd_store_row_text(row, 11);
    snprintf(r->error, sizeof r->error, "%s", err ? err : "(null)");
    snprintf(r->uuid, sizeof r->uuid, "%s", uuid ? uuid : "(null)");
    return 0;
}

static run_row get_run(gkd_store *s, int64_t id) {
    run_row r = {0};
    gkd_status st = gkd_store_query(s, read_run, &r,
                                    "SELECT name, status, config, seed, code_version, host, started_at, "
                                    "finished_at, sweep_id, pid, error, uuid FROM runs WHERE id = ?",
                                    "i", id);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    CHECK(r.rows == 1);
    return r;
}

typedef struct {
    int rows;
    int64_t step[4];
    char split[4][16], prompt[4][64], output[4][64];
    double reward[4];
    int n_student[4], n_teacher[4];
    float student[4][8], teacher[4][8];
} sample_rows;

static int read_sample(const gkd_store_row *row, void *ctx) {
    sample_rows *r = ctx;
    if (r->rows >= 4) return 1;
    int i = r->rows++;
    r->step[i] = gkd_store_row_int(row, 0);
    snprintf(r->split[i], sizeof r->split[i], "%s", gkd_store_row_text(row, 1));
    snprintf(r->prompt[i], sizeof r->prompt[i], "%s", gkd_store_row_text(row, 2));
    snprintf(r->output[i], sizeof r->output[i], "%s", gkd_store_row_text(row, 3));
    r->reward[i] = gkd_store_row_double(row, 4);
    r->n_student[i] = gkd_store_row_floats(row, 5, r->student[i], 8);
    r->n_teacher[i] = gkd_store_row_floats(row, 6, r->teacher[i], 8);
    return 0;
}

static int first_row_only(const gkd_store_row *row, void *ctx) {
    (void)row;
    ++*(int *)ctx;
    return 1;
}

static void test_fresh_store(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "runs.db");
    gkd_store *s = NULL;
    gkd_status st = gkd_store_open(path, &s);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (!s) return;
    CHECK(raw_int(path, "PRAGMA user_version") == GKD_STORE_SCHEMA_VERSION);
    CHECK(raw_int(path, "PRAGMA application_id") == GKD_STORE_APPLICATION_ID);
    CHECK(raw_text_is(path, "PRAGMA journal_mode", "wal"));
    CHECK(count(s, "SELECT count(*) FROM sqlite_master WHERE name = 'runs_name'") == 1);
    gkd_store_set_flush(s, 100000, 0);

    /* Sweeps. */
    int64_t sweep = 0, sweep_again = 0;
    CHECK(gkd_store_sweep_create(s, "beta-grid", "{\"beta\":[0.1,0.5,0.9]}", &sweep) == GKD_OK);
    CHECK(sweep > 0);
    CHECK(gkd_store_sweep_find(s, "beta-grid", &sweep_again) == GKD_OK && sweep_again == sweep);
    CHECK(gkd_store_sweep_create(s, "beta-grid", NULL, &sweep_again) == GKD_ERR_ARG);
    CHECK(contains(gkd_error_message(), "exists already"));
    CHECK(gkd_store_sweep_find(s, "no-such-sweep", &sweep_again) == GKD_ERR_NOT_FOUND);
    CHECK(gkd_store_sweep_create(s, "bad", "{not json", &sweep_again) == GKD_ERR_ARG);

    /* Runs: everything run_begin records. */
    const char *config = "{\"lambda\":1,\"beta\":0.5,\"divergence\":\"jsd\",\"note\":\"caf\\u00e9 'q'\"}";
    int64_t run = 0, run2 = 0, other = 0;
    st = gkd_store_run_begin(s, "jsd0.5/seed1", sweep, config, 1234567890123ULL, &run);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    CHECK(gkd_store_run_begin(s, "jsd0.5/seed2", sweep, NULL, 2, &run2) == GKD_OK);
    CHECK(gkd_store_run_begin(s, "solo", 0, "{}", 0, &other) == GKD_OK);
    CHECK(run > 0 && run2 > run && other > run2);
    CHECK(gkd_store_run_begin(s, "bad-config", 0, "{\"a\":", 1, &other) == GKD_ERR_ARG);
    CHECK(contains(gkd_error_message(), "not valid JSON"));
    CHECK(gkd_store_run_begin(s, "bad-sweep", 999, NULL, 1, &other) == GKD_ERR_NOT_FOUND);
    CHECK(gkd_store_run_begin(s, "big-seed", 0, NULL, UINT64_MAX, &other) == GKD_ERR_ARG);
    run_row r = get_run(s, run);
    CHECK(strcmp(r.name, "jsd0.5/seed1") == 0);
    CHECK(strcmp(r.status, "running") == 0);
    CHECK(strcmp(r.config, config) == 0);
    CHECK(r.seed == 1234567890123LL);
    CHECK(strcmp(r.code_version, GKD_VERSION) == 0);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    CHECKF(strcmp(r.host, host) == 0, "host '%s' vs '%s'", r.host, host);
    CHECK(r.pid == (int64_t)getpid());
    CHECK(r.sweep_id == sweep);
    CHECK(r.finished_null);
    CHECKF(strlen(r.started) == 24 && r.started[10] == 'T' && r.started[23] == 'Z', "started_at '%s'",
           r.started);
    CHECK(strlen(r.uuid) == 32);
    CHECK(count(s, "SELECT count(DISTINCT uuid) FROM runs") == 3);
    CHECK(strcmp(get_run(s, run2).config, "{}") == 0);

    /* Metrics: buffered until flushed, then exact; NaN reads back as NaN. */
    const double values[] = {0.1, -2.5e-300, 1e300, 3.0, NAN, INFINITY, -0.0};
    const int n_values = (int)(sizeof values / sizeof values[0]);
    for (int i = 0; i < n_values; i++) CHECK(gkd_store_metric(s, run, i, "loss", values[i]) == GKD_OK);
    CHECK(gkd_store_metric(s, run, 0, "lr", 3e-4) == GKD_OK);
    CHECK(gkd_store_metric(s, run2, 0, "loss", 7.0) == GKD_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics") == 0); /* still buffered */
    CHECK(gkd_store_flush(s) == GKD_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics") == n_values + 2);
    for (int i = 0; i < n_values; i++) {
        double v = metric_value(s, run, i, "loss");
        CHECKF(isnan(values[i]) ? isnan(v) : v == values[i], "loss@%d: %.17g vs %.17g", i, v, values[i]);
    }
    CHECK(raw_int(path, "SELECT count(*) FROM metrics WHERE value IS NULL") == 1);
    CHECK(metric_value(s, run, 0, "lr") == 3e-4);
    CHECK(gkd_store_metric(s, run, -1, "loss", 1) == GKD_ERR_ARG);
    CHECK(gkd_store_metric(s, run, 1, "", 1) == GKD_ERR_ARG);

    /* The last write of a (run, step, name) wins, within one flush and across flushes. */
    CHECK(gkd_store_metric(s, run, 100, "kl", 1.0) == GKD_OK);
    CHECK(gkd_store_metric(s, run, 100, "kl", 2.0) == GKD_OK);
    CHECK(gkd_store_flush(s) == GKD_OK);
    CHECK(gkd_store_metric(s, run, 100, "kl", 3.0) == GKD_OK);
    CHECK(count(s, "SELECT count(*) FROM metrics WHERE name = 'kl'") == 1); /* a query flushes first */
    CHECK(metric_value(s, run, 100, "kl") == 3.0);

    /* Automatic flush by row count and by age. */
    CHECK(gkd_store_set_flush(s, 3, 0) == GKD_OK);
    CHECK(gkd_store_set_flush(s, 0, 0) == GKD_ERR_ARG);
    for (int i = 0; i < 2; i++) CHECK(gkd_store_metric(s, run2, 10 + i, "auto", i) == GKD_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics WHERE name = 'auto'") == 0);
    CHECK(gkd_store_metric(s, run2, 12, "auto", 2) == GKD_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics WHERE name = 'auto'") == 3);
    CHECK(gkd_store_set_flush(s, 100000, 0.05) == GKD_OK);
    CHECK(gkd_store_metric(s, run2, 13, "auto", 3) == GKD_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics WHERE name = 'auto'") == 3);
    nanosleep(&(struct timespec){0, 80 * 1000000L}, NULL);
    CHECK(gkd_store_metric(s, run2, 14, "auto", 4) == GKD_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics WHERE name = 'auto'") == 5);
    CHECK(gkd_store_set_flush(s, 100000, 0) == GKD_OK);

    /* Evals. */
    CHECK(gkd_store_eval(s, run, 200, "validation", "rougeL", 0.3125) == GKD_OK);
    CHECK(gkd_store_eval(s, run, 200, "validation", "rougeL", 0.375) == GKD_OK); /* replaces */
    CHECK(gkd_store_eval(s, run, 200, "test", "rougeL", 0.25) == GKD_OK);
    CHECK(gkd_store_eval(s, run, 400, "validation", "rougeL", NAN) == GKD_OK);
    CHECK(count(s, "SELECT count(*) FROM evals") == 3);
    double v = 0;
    CHECK(gkd_store_query_double(s, &v,
                                 "SELECT value FROM evals WHERE run_id = ? AND step = 200 AND split = ?",
                                 "is", run, "validation") == GKD_OK &&
          v == 0.375);
    CHECK(gkd_store_query_double(s, &v, "SELECT value FROM evals WHERE step = 400", NULL) == GKD_OK &&
          isnan(v));

    /* Samples: texts, reward and float32 log-probs read back bit for bit. */
    const float student[5] = {-0.125f, -1.0e-8f, -3.4028235e38f, -0.6931472f, 0.0f};
    const float teacher[5] = {-0.25f, -2.5f, -1e-30f, -7.0f, -0.0f};
    gkd_store_sample_row rows[2] = {
        {run, 3, NULL, "Summarize: \"gkd\" \xC3\xA9t\xC3\xA9", "a distiller's tool", 0.75, 5, student,
         teacher},
        {run, 8, "validation", "p2", "", NAN, 3, student, NULL},
    };
    st = gkd_store_samples(s, rows, 2);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    CHECK(gkd_store_sample(s, &(gkd_store_sample_row){run, 9, "train", "p3", "o3", 1.0, 0, NULL, NULL}) ==
          GKD_OK);
    gkd_store_sample_row bad = {run, 9, NULL, NULL, "o", 0, 0, NULL, NULL};
    CHECK(gkd_store_samples(s, &bad, 1) == GKD_ERR_ARG);
    sample_rows sr = {0};
    st = gkd_store_query(s, read_sample, &sr,
                         "SELECT step, split, prompt, output, reward, student_logprobs, teacher_logprobs "
                         "FROM samples WHERE run_id = ? ORDER BY id",
                         "i", run);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    CHECK(sr.rows == 3);
    CHECK(sr.step[0] == 3 && strcmp(sr.split[0], "train") == 0);
    CHECK(strcmp(sr.prompt[0], rows[0].prompt) == 0 && strcmp(sr.output[0], rows[0].output) == 0);
    CHECK(sr.reward[0] == 0.75 && isnan(sr.reward[1]));
    CHECK(sr.n_student[0] == 5 && sr.n_teacher[0] == 5);
    CHECK(memcmp(sr.student[0], student, sizeof student) == 0);
    CHECK(memcmp(sr.teacher[0], teacher, sizeof teacher) == 0);
    CHECK(strcmp(sr.split[1], "validation") == 0 && strcmp(sr.output[1], "") == 0);
    CHECK(sr.n_student[1] == 3 && sr.n_teacher[1] == 0 &&
          memcmp(sr.student[1], student, 3 * sizeof(float)) == 0);
    CHECK(sr.n_student[2] == 0);
    /* The BLOB is little-endian float32: -0.125f is 0xBE000000. */
    CHECK(count(s,
                "SELECT hex(substr(student_logprobs, 1, 4)) = '000000BE' FROM samples ORDER BY id LIMIT 1") ==
          1);

    /* Checkpoints. */
    CHECK(gkd_store_checkpoint(s, run, 100, "ckpt/step100.safetensors", "sha256:aa") == GKD_OK);
    CHECK(gkd_store_checkpoint(s, run, 200, "ckpt/step200.safetensors", NULL) == GKD_OK);
    CHECK(gkd_store_checkpoint(s, run, 200, "ckpt/step200.safetensors", "sha256:bb") ==
          GKD_OK); /* replaces */
    CHECK(count(s, "SELECT count(*) FROM checkpoints") == 2);
    int64_t ck_step = 0;
    char *ck_path = NULL;
    CHECK(gkd_store_checkpoint_latest(s, run, &ck_step, &ck_path) == GKD_OK);
    CHECK(ck_step == 200 && ck_path && strcmp(ck_path, "ckpt/step200.safetensors") == 0);
    free(ck_path);
    CHECK(count(s, "SELECT hash = 'sha256:bb' FROM checkpoints WHERE step = 200") == 1);
    CHECK(gkd_store_checkpoint_latest(s, run2, &ck_step, &ck_path) == GKD_ERR_NOT_FOUND && ck_path == NULL);

    /* Finding runs, finishing and resuming them. */
    gkd_store_run_info info;
    CHECK(gkd_store_run_find(s, "jsd0.5/seed1", 0, &info) == GKD_OK);
    CHECK(info.id == run && info.sweep_id == sweep && info.seed == 1234567890123ULL);
    CHECK(info.status == GKD_RUN_STATUS_RUNNING && info.last_step == 100);
    CHECK(gkd_store_run_find(s, "jsd0.5/seed1", sweep + 1, &info) == GKD_ERR_NOT_FOUND);
    CHECK(gkd_store_run_find(s, "nobody", 0, &info) == GKD_ERR_NOT_FOUND);
    CHECK(contains(gkd_error_message(), "nobody"));
    CHECK(gkd_store_run_finish(s, run, GKD_RUN_STATUS_RUNNING, NULL) == GKD_ERR_ARG);
    CHECK(gkd_store_run_finish(s, 9999, GKD_RUN_STATUS_FINISHED, NULL) == GKD_ERR_NOT_FOUND);
    CHECK(gkd_store_metric(s, run2, 15, "loss", 6.5) == GKD_OK);
    CHECK(gkd_store_run_finish(s, run2, GKD_RUN_STATUS_FAILED, "NaN loss at step 15") == GKD_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics WHERE step = 15") == 1); /* finish flushed */
    r = get_run(s, run2);
    CHECK(strcmp(r.status, "failed") == 0 && !r.finished_null && strcmp(r.error, "NaN loss at step 15") == 0);
    CHECK(gkd_store_run_find(s, "jsd0.5/seed2", sweep, &info) == GKD_OK &&
          info.status == GKD_RUN_STATUS_FAILED);
    CHECK(gkd_store_run_resume(s, run2) == GKD_OK);
    r = get_run(s, run2);
    CHECK(strcmp(r.status, "running") == 0 && r.finished_null && strcmp(r.error, "(null)") == 0);
    CHECK(gkd_store_run_resume(s, 9999) == GKD_ERR_NOT_FOUND);
    int64_t again = 0;
    CHECK(gkd_store_run_begin(s, "jsd0.5/seed1", sweep, NULL, 1, &again) == GKD_OK);
    CHECK(gkd_store_run_find(s, "jsd0.5/seed1", 0, &info) == GKD_OK && info.id == again &&
          info.last_step == -1);

    /* Truncation for resume: rows after step 5 go, the rest stay, and logging continues. */
    for (int step = 0; step < 10; step++)
        CHECK(gkd_store_metric(s, again, step, "loss", 10.0 - step) == GKD_OK);
    CHECK(gkd_store_eval(s, again, 5, "validation", "rougeL", 0.5) == GKD_OK);
    CHECK(gkd_store_eval(s, again, 9, "validation", "rougeL", 0.625) == GKD_OK);
    gkd_store_sample_row early = {again, 3, NULL, "p", "o", 0, 0, NULL, NULL}, late = early;
    late.step = 8;
    CHECK(gkd_store_sample(s, &early) == GKD_OK && gkd_store_sample(s, &late) == GKD_OK);
    CHECK(gkd_store_checkpoint(s, again, 8, "ckpt/again8", NULL) == GKD_OK);
    CHECK(gkd_store_metric(s, again, 7, "buffered", 1.0) == GKD_OK); /* flushed, then truncated */
    CHECK(gkd_store_truncate_after(s, again, 5) == GKD_OK);
    int64_t n = 0;
    CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM metrics WHERE run_id = ?", "i", again) == GKD_OK &&
          n == 6);
    CHECK(gkd_store_query_int(s, &n, "SELECT max(step) FROM metrics WHERE run_id = ?", "i", again) ==
              GKD_OK &&
          n == 5);
    CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM evals WHERE run_id = ?", "i", again) == GKD_OK &&
          n == 1);
    CHECK(gkd_store_query_int(s, &n, "SELECT max(step) FROM samples WHERE run_id = ?", "i", again) ==
              GKD_OK &&
          n == 3);
    CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM checkpoints WHERE run_id = ?", "i", again) ==
              GKD_OK &&
          n == 1);
    CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM metrics WHERE run_id = ?", "i", run) == GKD_OK &&
          n == n_values + 2); /* other runs untouched */
    for (int step = 6; step < 10; step++)
        CHECK(gkd_store_metric(s, again, step, "loss", 20.0 + step) == GKD_OK);
    CHECK(gkd_store_query_int(
              s, &n,
              "SELECT count(*) = max(step) + 1 AND count(DISTINCT step) = count(*) FROM metrics "
              "WHERE run_id = ? AND name = 'loss'",
              "i", again) == GKD_OK &&
          n == 1);
    CHECK(metric_value(s, again, 5, "loss") == 5.0 && metric_value(s, again, 6, "loss") == 26.0);

    /* The query helper reads only, one statement, with matching parameters. */
    CHECK(gkd_store_query_int(s, &n, "DELETE FROM metrics", NULL) == GKD_ERR_ARG);
    CHECK(contains(gkd_error_message(), "would write"));
    CHECK(gkd_store_query_int(s, &n, "SELECT 1; SELECT 2", NULL) == GKD_ERR_ARG);
    CHECK(gkd_store_query_int(s, &n, "SELECT ?", NULL) == GKD_ERR_ARG);
    CHECK(gkd_store_query_int(s, &n, "SELECT ?", "x", (int64_t)1) == GKD_ERR_ARG);
    CHECK(gkd_store_query_int(s, &n, "SELECT nothing FROM nowhere", NULL) != GKD_OK);
    CHECK(gkd_store_query_int(s, &n, "SELECT 1 WHERE 0", NULL) == GKD_ERR_NOT_FOUND);
    int seen = 0;
    CHECK(gkd_store_query(s, first_row_only, &seen, "SELECT step FROM metrics", NULL) == GKD_OK && seen == 1);

    /* A metric for a run that does not exist fails its flush, which writes nothing. */
    CHECK(gkd_store_metric(s, again, 50, "loss", 1.0) == GKD_OK);
    CHECK(gkd_store_metric(s, 424242, 1, "orphan", 1.0) == GKD_OK);
    CHECK(gkd_store_flush(s) == GKD_ERR_DB);
    CHECKF(contains(gkd_error_message(), "424242") && contains(gkd_error_message(), path), "%s",
           gkd_error_message());
    CHECK(raw_int(path, "SELECT count(*) FROM metrics WHERE step = 50") == 0);
    CHECK(gkd_store_close(s) == GKD_ERR_DB); /* the close's flush fails the same way, and still frees */

    /* Read-only: reads work, writes are refused. */
    gkd_store *ro = NULL;
    st = gkd_store_open_readonly(path, &ro);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (ro) {
        CHECK(count(ro, "SELECT count(*) FROM runs") == 4);
        CHECK(gkd_store_metric(ro, run, 1, "loss", 1) == GKD_ERR_ARG);
        CHECK(gkd_store_run_begin(ro, "x", 0, NULL, 1, &other) == GKD_ERR_ARG);
        CHECK(contains(gkd_error_message(), "read-only"));
        CHECK(gkd_store_close(ro) == GKD_OK);
    }
}

static void test_migration(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "old.db");
    CHECK(copy_file(GKD_SOURCE_DIR "/tests/fixtures/store-v1.db", path));
    CHECK(raw_int(path, "PRAGMA user_version") == 1);

    /* A v1 store cannot be read by a report: it has to be migrated by a writer first. */
    gkd_store *s = NULL;
    CHECK(gkd_store_open_readonly(path, &s) == GKD_ERR_FORMAT && s == NULL);
    CHECK(contains(gkd_error_message(), "older"));

    gkd_status st = gkd_store_open(path, &s);
    CHECKF(st == GKD_OK, "%s", gkd_error_message());
    if (!s) return;
    CHECK(raw_int(path, "PRAGMA user_version") == GKD_STORE_SCHEMA_VERSION);
    /* The fixture's version 1 is the binary's, so migrating it gives exactly a fresh store's schema. */
    char fresh[512];
    path_in_tmp(fresh, sizeof fresh, "runs.db");
    char *migrated_schema = raw_schema(path), *fresh_schema = raw_schema(fresh);
    CHECKF(migrated_schema && fresh_schema && strcmp(migrated_schema, fresh_schema) == 0,
           "schemas differ:\nmigrated:\n%s\nfresh:\n%s", migrated_schema, fresh_schema);
    free(migrated_schema);
    free(fresh_schema);
    CHECK(count(s, "SELECT count(*) FROM runs") == 2);
    CHECK(count(s, "SELECT count(*) FROM metrics") == 15);
    run_row r = get_run(s, 1);
    CHECK(strcmp(r.name, "supervised-kd") == 0 && strcmp(r.status, "finished") == 0);
    CHECK(strcmp(r.config, "{\"lambda\":0,\"beta\":0,\"divergence\":\"fkl\"}") == 0);
    CHECK(r.seed == 1 && strcmp(r.code_version, "0.0.9") == 0);
    CHECK(strcmp(r.started, "2024-01-02T03:04:05.000Z") == 0 && !r.finished_null);
    CHECK(r.sweep_id == 0 && strcmp(r.host, "(null)") == 0 && strcmp(r.error, "(null)") == 0);
    CHECK(strlen(r.uuid) == 32);
    CHECK(count(s, "SELECT count(DISTINCT uuid) FROM runs") == 2);
    CHECK(metric_value(s, 1, 3, "loss") == 3.125);
    CHECK(metric_value(s, 1, 0, "lr") == 0.0001);
    CHECK(isnan(metric_value(s, 2, 4, "loss")));
    gkd_store_run_info info;
    CHECK(gkd_store_run_find(s, "onpolicy-jsd0.9", 0, &info) == GKD_OK);
    CHECK(info.id == 2 && info.status == GKD_RUN_STATUS_INTERRUPTED && info.last_step == 4 && info.seed == 2);

    /* The migrated store takes everything version 2 added, and an old run resumes in it. */
    int64_t sweep = 0, run = 0;
    CHECK(gkd_store_sweep_create(s, "after-migration", NULL, &sweep) == GKD_OK);
    CHECK(gkd_store_run_begin(s, "new", sweep, NULL, 3, &run) == GKD_OK && run == 3);
    CHECK(gkd_store_eval(s, 1, 4, "validation", "rougeL", 0.5) == GKD_OK);
    CHECK(gkd_store_checkpoint(s, 2, 3, "ckpt/3", NULL) == GKD_OK);
    CHECK(gkd_store_run_resume(s, 2) == GKD_OK && gkd_store_truncate_after(s, 2, 3) == GKD_OK);
    CHECK(gkd_store_metric(s, 2, 4, "loss", 4.0625) == GKD_OK);
    CHECK(metric_value(s, 2, 4, "loss") == 4.0625);
    CHECK(gkd_store_close(s) == GKD_OK);

    /* Opening again finds nothing to do. */
    s = NULL;
    CHECK(gkd_store_open(path, &s) == GKD_OK && s);
    if (s) CHECK(count(s, "SELECT count(*) FROM runs") == 3);
    gkd_store_close(s);
}

/* Version 3: a run's config hash and its warnings (settings that have no effect), also on a migrated
 * version 1 store; a warning recorded twice (a resumed run checks its settings again) is kept once. */
static void test_config_hash_and_warnings(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "v3.db");
    CHECK(copy_file(GKD_SOURCE_DIR "/tests/fixtures/store-v1.db", path));
    gkd_store *s = NULL;
    CHECKF(gkd_store_open(path, &s) == GKD_OK, "%s", gkd_error_message());
    if (!s) return;
    CHECK(count(s, "SELECT count(*) FROM runs WHERE config_hash IS NULL AND warnings = '[]'") ==
          count(s, "SELECT count(*) FROM runs"));
    int64_t run = 0;
    CHECK(gkd_store_run_begin(s, "hashed", 0, "{}", 1, &run) == GKD_OK);
    CHECK(gkd_store_run_set_config_hash(s, run, "fnv1a64:0123456789abcdef") == GKD_OK);
    CHECK(count(s, "SELECT count(*) FROM runs WHERE config_hash = 'fnv1a64:0123456789abcdef'") == 1);
    CHECK(gkd_store_run_set_config_hash(s, run + 100, "x") == GKD_ERR_NOT_FOUND);
    CHECK(gkd_store_run_warning(s, run, "lambda has no effect") == GKD_OK);
    CHECK(gkd_store_run_warning(s, run, "beta has no effect") == GKD_OK);
    CHECK(gkd_store_run_warning(s, run, "lambda has no effect") == GKD_OK);
    CHECK(count(s, "SELECT json_array_length(warnings) FROM runs WHERE name = 'hashed'") == 2);
    CHECK(count(s, "SELECT count(*) FROM runs r, json_each(r.warnings) w WHERE w.value = 'beta has no effect'") == 1);
    CHECK(gkd_store_close(s) == GKD_OK);
}

static void test_failed_migration_rolls_back(void) {
    char path[512];
    path_in_tmp(path, sizeof path, "conflict.db");
    CHECK(copy_file(GKD_SOURCE_DIR "/tests/fixtures/store-v1.db", path));
    /* Something made a table that version 2 wants to create, so step 2 fails half-way. */
    CHECK(raw_exec(path, "CREATE TABLE checkpoints (x)") == SQLITE_OK);
    gkd_store *s = NULL;
    CHECK(gkd_store_open(path, &s) == GKD_ERR_DB && s == NULL);
    const char *msg = gkd_error_message();
    CHECKF(contains(msg, path) && contains(msg, "from schema version 1 to 2") && contains(msg, "rolled back"),
           "%s", msg);
    CHECK(raw_int(path, "PRAGMA user_version") == 1);
    CHECK(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('sweeps', 'evals', 'samples')") ==
          0);
    CHECK(raw_int(path, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'sweep_id'") == 0);
    CHECK(raw_int(path, "SELECT count(*) FROM metrics") == 15);
}

static void test_refusals(void) {
    char path[512];
    gkd_store *s = NULL;

    /* Newer than this binary. */
    path_in_tmp(path, sizeof path, "newer.db");
    CHECK(raw_exec(path, "PRAGMA application_id = 1196115059; CREATE TABLE runs (id INTEGER PRIMARY KEY); "
                         "PRAGMA user_version = 99;") == SQLITE_OK);
    CHECK(gkd_store_open(path, &s) == GKD_ERR_FORMAT && s == NULL);
    const char *msg = gkd_error_message();
    CHECKF(contains(msg, path) && contains(msg, "version 99") && contains(msg, "version 3"), "%s", msg);
    CHECK(gkd_store_open_readonly(path, &s) == GKD_ERR_FORMAT && s == NULL);
    CHECK(raw_int(path, "PRAGMA user_version") == 99);

    /* Not SQLite at all; the file is left as it was. */
    path_in_tmp(path, sizeof path, "notes.txt");
    const char text[] =
        "These are my notes, not a database. They run over one hundred bytes so that SQLite reads "
        "a whole header before it gives up.\n";
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(text, 1, sizeof text - 1, f) == sizeof text - 1);
    if (f) fclose(f);
    CHECK(gkd_store_open(path, &s) == GKD_ERR_FORMAT && s == NULL);
    msg = gkd_error_message();
    CHECKF(contains(msg, path) && contains(msg, "not a SQLite database"), "%s", msg);
    char back[sizeof text] = "";
    f = fopen(path, "rb");
    CHECK(f && fread(back, 1, sizeof back, f) == sizeof text - 1);
    if (f) fclose(f);
    CHECK(memcmp(back, text, sizeof text - 1) == 0);

    /* A SQLite database of someone else: refused and not switched to WAL. */
    path_in_tmp(path, sizeof path, "foreign.db");
    CHECK(raw_exec(path, "CREATE TABLE recipes (name TEXT)") == SQLITE_OK);
    CHECK(gkd_store_open(path, &s) == GKD_ERR_FORMAT && s == NULL);
    msg = gkd_error_message();
    CHECKF(contains(msg, path) && contains(msg, "not a gkd run store"), "%s", msg);
    CHECK(raw_text_is(path, "PRAGMA journal_mode", "delete"));
    path_in_tmp(path, sizeof path, "other-app.db");
    CHECK(raw_exec(path, "PRAGMA application_id = 42") == SQLITE_OK);
    CHECK(gkd_store_open(path, &s) == GKD_ERR_FORMAT && contains(gkd_error_message(), "another application"));

    /* Nowhere to create it; nothing to read. */
    path_in_tmp(path, sizeof path, "no/such/dir/runs.db");
    CHECK(gkd_store_open(path, &s) == GKD_ERR_IO && s == NULL);
    CHECK(contains(gkd_error_message(), path));
    path_in_tmp(path, sizeof path, "absent.db");
    CHECK(gkd_store_open_readonly(path, &s) == GKD_ERR_IO && s == NULL);
    CHECK(gkd_store_open(NULL, &s) == GKD_ERR_ARG);

    /* Not a refusal: an in-memory store for other modules' tests. */
    CHECK(gkd_store_open(":memory:", &s) == GKD_OK && s);
    int64_t run = 0;
    if (s)
        CHECK(gkd_store_run_begin(s, "mem", 0, NULL, 1, &run) == GKD_OK &&
              count(s, "SELECT count(*) FROM runs") == 1);
    CHECK(gkd_store_close(s) == GKD_OK);
    s = NULL;
    CHECK(gkd_store_close(NULL) == GKD_OK);
}

/* Queries only read, on a read-write store as on a read-only one: ATTACH (which created the file it
 * named), PRAGMA writable_schema and other setting changes, transactions and writes are refused with a
 * message naming what was refused; SELECT, views of pragmas and reading pragmas work, and the store's
 * own writes work after a refusal. */
static void test_query_guard(void) {
    char path[512], attached[512], sql[1200];
    path_in_tmp(path, sizeof path, "guard.db");
    path_in_tmp(attached, sizeof attached, "attached.db");
    gkd_store *rw = NULL, *ro = NULL;
    int64_t run = 0, n = 0;
    CHECK(gkd_store_open(path, &rw) == GKD_OK && rw);
    if (!rw) return;
    CHECK(gkd_store_run_begin(rw, "guarded", 0, NULL, 1, &run) == GKD_OK);
    CHECK(gkd_store_open_readonly(path, &ro) == GKD_OK && ro);
    gkd_store *stores[] = {rw, ro};
    for (int i = 0; i < 2 && ro; i++) {
        gkd_store *s = stores[i];
        snprintf(sql, sizeof sql, "ATTACH '%s' AS other", attached);
        const struct {
            const char *sql, *names;
        } refused[] = {
            {sql, "ATTACH"},
            {"PRAGMA writable_schema = 1", "PRAGMA writable_schema = 1"},
            {"PRAGMA writable_schema", "PRAGMA writable_schema"},
            {"PRAGMA user_version = 7", "PRAGMA user_version = 7"},
            {"PRAGMA query_only = 0", "PRAGMA query_only = 0"},
            {"PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA wal_checkpoint"},
            {"INSERT INTO sweeps (name, created_at) VALUES ('x', 'y')", "would write"},
            {"UPDATE runs SET name = 'renamed'", "would write"},
            {"DELETE FROM runs", "would write"},
            {"CREATE TABLE mine (x)", "would write"},
            {"BEGIN IMMEDIATE", "transaction BEGIN"},
            {"SAVEPOINT sp", "SAVEPOINT"},
            {"DETACH main", "DETACH"},
            {"VACUUM", "would write"},
        };
        for (size_t q = 0; q < sizeof refused / sizeof refused[0]; q++) {
            gkd_status st = gkd_store_query_int(s, &n, refused[q].sql, NULL);
            CHECKF(st == GKD_ERR_ARG && contains(gkd_error_message(), refused[q].names) &&
                       contains(gkd_error_message(), path),
                   "%s store, '%s': status %d: %s", i ? "read-only" : "read-write", refused[q].sql, (int)st,
                   gkd_error_message());
        }
        CHECKF(access(attached, F_OK) != 0, "ATTACH created %s", attached);
        CHECK(count(s, "SELECT count(*) FROM runs WHERE name = 'guarded'") == 1);
        CHECK(count(s, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'status'") == 1);
        CHECK(gkd_store_query_int(s, &n, "PRAGMA user_version", NULL) == GKD_OK &&
              n == GKD_STORE_SCHEMA_VERSION);
        CHECK(gkd_store_query_int(s, &n, "PRAGMA query_only", NULL) == GKD_OK &&
              n == i); /* the read-only one */
        CHECK(gkd_store_query_int(s, &n,
                                  "WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c "
                                  "WHERE k < 4) SELECT sum(k) FROM c",
                                  NULL) == GKD_OK &&
              n == 10);
    }
    /* the refusals changed nothing, and the store's own writes still work */
    int64_t other = 0;
    CHECK(gkd_store_run_begin(rw, "after", 0, NULL, 2, &other) == GKD_OK && other > run);
    CHECK(gkd_store_metric(rw, other, 1, "loss", 0.5) == GKD_OK && gkd_store_flush(rw) == GKD_OK);
    CHECK(raw_int(path, "PRAGMA user_version") == GKD_STORE_SCHEMA_VERSION);
    CHECK(raw_int(path, "SELECT count(*) FROM runs WHERE name = 'renamed'") == 0);
    CHECK(raw_int(path, "SELECT count(*) FROM sweeps") == 0);
    CHECK(gkd_store_close(ro) == GKD_OK);
    CHECK(gkd_store_close(rw) == GKD_OK);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_fresh_store();
    test_migration();
    test_config_hash_and_warnings();
    test_failed_migration_rolls_back();
    test_refusals();
    test_query_guard();
    remove_tmpdir();
    return check_exit();
}
