/* Merging run stores: gkd_store_merge() copies the runs of another store (a Slurm array task's own
 * database, docs/cluster.md) into this one, with everything each run owns.
 * Rules:
 * - A run is identified by its uuid, never by its id: the first merge gives it a new id in the target,
 *   later merges of the same file update that row. Rows a run owns are matched on their keys (metrics:
 *   name, step; evals: split, metric, step; checkpoints: step, path; samples: step, split and their order
 *   within those), updated in place when they changed, added when new and deleted when the source no
 *   longer has them (a resumed run truncates its rows after its checkpoint). So merging twice changes
 *   nothing, and no id of the target is ever renumbered.
 * - The source is opened read-only (gkd_store_open_readonly) and read in one read transaction, so a
 *   point still being written is merged as one consistent snapshot. Its rows are staged in TEMP tables
 *   of the target's connection; the merge into the target is one BEGIN IMMEDIATE transaction per
 *   source file, rolled back whole on any failure, so a failed merge leaves the target as it was.
 * - A file that holds no store yet (empty, or created but not yet given its schema: a task that has
 *   just started) is skipped, not an error; a file that is not a gkd store is an error naming it. */
#include "core/store/store.h"
#include "core/store/store_internal.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum { MERGE_SOURCE_BUSY_MS = 5000 };

/* The staged copy of each source table: the target's columns, in the target's schema. */
static const struct {
    const char *table, *columns;
} merge_tables[] = {
    {"runs",
     "id, name, status, config, seed, code_version, started_at, finished_at, sweep_id, host, pid, error, "
     "uuid, config_hash, warnings"},
    {"sweeps", "id, name, config, created_at"},
    {"metrics", "run_id, step, name, value"},
    {"evals", "run_id, step, split, metric, value"},
    {"samples",
     "id, run_id, step, split, prompt, output, reward, n_tokens, student_logprobs, teacher_logprobs"},
    {"checkpoints", "id, run_id, step, path, hash, created_at"},
};
enum { MERGE_N_TABLES = sizeof merge_tables / sizeof merge_tables[0] };

/* Applied in order inside the target's transaction, after staging. merge_map pairs each source run id
 * with its target id; ranks number samples within (run, step, split) in id order. */
static const char *const merge_sql[] = {
    "INSERT INTO main.sweeps (name, config, created_at) SELECT name, config, created_at FROM "
    "temp.merge_sweeps "
    "WHERE id IN (SELECT sweep_id FROM temp.merge_runs) ORDER BY id ON CONFLICT (name) DO NOTHING",

    "INSERT INTO main.runs (name, status, config, seed, code_version, started_at, finished_at, sweep_id, "
    "host, pid, "
    "error, uuid, config_hash, warnings) "
    "SELECT r.name, r.status, r.config, r.seed, r.code_version, r.started_at, r.finished_at, "
    "(SELECT m.id FROM main.sweeps m JOIN temp.merge_sweeps s ON s.name = m.name WHERE s.id = r.sweep_id), "
    "r.host, r.pid, r.error, r.uuid, r.config_hash, r.warnings FROM temp.merge_runs r WHERE r.uuid IS NOT "
    "NULL "
    "ORDER BY r.id ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, status = excluded.status, "
    "config = excluded.config, seed = excluded.seed, code_version = excluded.code_version, "
    "started_at = excluded.started_at, finished_at = excluded.finished_at, sweep_id = excluded.sweep_id, "
    "host = excluded.host, pid = excluded.pid, error = excluded.error, config_hash = excluded.config_hash, "
    "warnings = excluded.warnings",

    "DELETE FROM temp.merge_map",
    "INSERT INTO temp.merge_map (src, dst) SELECT r.id, m.id FROM temp.merge_runs r JOIN main.runs m ON "
    "m.uuid = r.uuid",

    "DELETE FROM main.metrics WHERE run_id IN (SELECT dst FROM temp.merge_map) AND NOT EXISTS (SELECT 1 FROM "
    "temp.merge_metrics s JOIN temp.merge_map p ON p.src = s.run_id WHERE p.dst = metrics.run_id AND "
    "s.name = metrics.name AND s.step = metrics.step)",
    "INSERT INTO main.metrics (run_id, step, name, value) SELECT p.dst, s.step, s.name, s.value FROM "
    "temp.merge_metrics s JOIN temp.merge_map p ON p.src = s.run_id WHERE true ON CONFLICT (run_id, name, "
    "step) "
    "DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value",

    "DELETE FROM main.evals WHERE run_id IN (SELECT dst FROM temp.merge_map) AND NOT EXISTS (SELECT 1 FROM "
    "temp.merge_evals s JOIN temp.merge_map p ON p.src = s.run_id WHERE p.dst = evals.run_id AND "
    "s.split = evals.split AND s.metric = evals.metric AND s.step = evals.step)",
    "INSERT INTO main.evals (run_id, step, split, metric, value) SELECT p.dst, s.step, s.split, s.metric, "
    "s.value "
    "FROM temp.merge_evals s JOIN temp.merge_map p ON p.src = s.run_id WHERE true "
    "ON CONFLICT (run_id, split, metric, step) DO UPDATE SET value = excluded.value WHERE value IS NOT "
    "excluded.value",

    "DELETE FROM main.checkpoints WHERE run_id IN (SELECT dst FROM temp.merge_map) AND NOT EXISTS (SELECT 1 "
    "FROM "
    "temp.merge_checkpoints s JOIN temp.merge_map p ON p.src = s.run_id WHERE p.dst = checkpoints.run_id AND "
    "s.step = checkpoints.step AND s.path = checkpoints.path)",
    "INSERT INTO main.checkpoints (run_id, step, path, hash, created_at) SELECT p.dst, s.step, s.path, "
    "s.hash, "
    "s.created_at FROM temp.merge_checkpoints s JOIN temp.merge_map p ON p.src = s.run_id WHERE true ORDER "
    "BY s.id "
    "ON CONFLICT (run_id, step, path) DO UPDATE SET hash = excluded.hash, created_at = excluded.created_at "
    "WHERE hash IS NOT excluded.hash OR created_at IS NOT excluded.created_at",

    /* Samples have no natural key: the k-th sample of (step, split) in the source is the k-th in the target.
     */
    "DELETE FROM temp.merge_sample_src",
    "INSERT INTO temp.merge_sample_src SELECT p.dst, s.step, s.split, row_number() OVER (PARTITION BY "
    "s.run_id, "
    "s.step, s.split ORDER BY s.id), s.id FROM temp.merge_samples s JOIN temp.merge_map p ON p.src = "
    "s.run_id",
    "DELETE FROM temp.merge_sample_dst",
    "INSERT INTO temp.merge_sample_dst SELECT run_id, step, split, row_number() OVER (PARTITION BY run_id, "
    "step, "
    "split ORDER BY id), id FROM main.samples WHERE run_id IN (SELECT dst FROM temp.merge_map)",
    "DELETE FROM main.samples WHERE id IN (SELECT d.id FROM temp.merge_sample_dst d WHERE NOT EXISTS (SELECT "
    "1 FROM "
    "temp.merge_sample_src s WHERE s.run_id = d.run_id AND s.step = d.step AND s.split = d.split AND s.k = "
    "d.k))",
    "UPDATE main.samples SET prompt = v.prompt, output = v.output, reward = v.reward, n_tokens = v.n_tokens, "
    "student_logprobs = v.student_logprobs, teacher_logprobs = v.teacher_logprobs FROM (SELECT d.id AS "
    "target, "
    "x.* FROM temp.merge_sample_dst d JOIN temp.merge_sample_src s USING (run_id, step, split, k) "
    "JOIN temp.merge_samples x ON x.id = s.id) AS v WHERE samples.id = v.target AND (samples.prompt IS NOT "
    "v.prompt OR samples.output IS NOT v.output OR samples.reward IS NOT v.reward OR samples.n_tokens IS NOT "
    "v.n_tokens OR samples.student_logprobs IS NOT v.student_logprobs OR samples.teacher_logprobs IS NOT "
    "v.teacher_logprobs)",
    "INSERT INTO main.samples (run_id, step, split, prompt, output, reward, n_tokens, student_logprobs, "
    "teacher_logprobs) SELECT s.run_id, x.step, x.split, x.prompt, x.output, x.reward, x.n_tokens, "
    "x.student_logprobs, x.teacher_logprobs FROM temp.merge_sample_src s JOIN temp.merge_samples x ON x.id = "
    "s.id "
    "WHERE NOT EXISTS (SELECT 1 FROM temp.merge_sample_dst d WHERE d.run_id = s.run_id AND d.step = s.step "
    "AND "
    "d.split = s.split AND d.k = s.k) ORDER BY x.id",
};

static gkd_status merge_fail(sqlite3 *db, const char *path, const char *what) {
    return gkd_error_set(GKD_ERR_DB, "merging '%s': %s: %s", path, what, sqlite3_errmsg(db));
}

/* Runs one statement (no rows) with a bounded retry on SQLITE_BUSY. */
static gkd_status merge_exec(sqlite3 *db, const char *sql, const char *path, const char *what) {
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK) return GKD_OK;
        if (!gkd_store_busy(rc) || attempt >= STORE_BUSY_RETRIES) return merge_fail(db, path, what);
        gkd_store_backoff(attempt);
    }
}

/* The staging tables: created once per connection (TEMP), emptied before each source. */
static gkd_status merge_stage_tables(gkd_store *s, const char *path) {
    char sql[512];
    for (int t = 0; t < MERGE_N_TABLES; t++) {
        snprintf(sql, sizeof sql,
                 "CREATE TEMP TABLE IF NOT EXISTS merge_%s AS SELECT %s FROM main.%s WHERE 0",
                 merge_tables[t].table, merge_tables[t].columns, merge_tables[t].table);
        gkd_status st = merge_exec(s->db, sql, path, "creating the staging tables");
        if (st != GKD_OK) return st;
        snprintf(sql, sizeof sql, "DELETE FROM temp.merge_%s", merge_tables[t].table);
        if ((st = merge_exec(s->db, sql, path, "emptying the staging tables")) != GKD_OK) return st;
    }
    static const char *const extra =
        "CREATE TEMP TABLE IF NOT EXISTS merge_map (src INTEGER PRIMARY KEY, dst INTEGER NOT NULL);"
        "CREATE TEMP TABLE IF NOT EXISTS merge_sample_src (run_id, step, split, k, id);"
        "CREATE TEMP TABLE IF NOT EXISTS merge_sample_dst (run_id, step, split, k, id);"
        "CREATE INDEX IF NOT EXISTS temp.merge_metrics_key ON merge_metrics (run_id, name, step);"
        "CREATE INDEX IF NOT EXISTS temp.merge_evals_key ON merge_evals (run_id, split, metric, step);"
        "CREATE INDEX IF NOT EXISTS temp.merge_checkpoints_key ON merge_checkpoints (run_id, step, path);"
        "CREATE INDEX IF NOT EXISTS temp.merge_samples_id ON merge_samples (id);"
        "CREATE INDEX IF NOT EXISTS temp.merge_sample_src_key ON merge_sample_src (run_id, step, split, k);"
        "CREATE INDEX IF NOT EXISTS temp.merge_sample_dst_key ON merge_sample_dst (run_id, step, split, k);";
    return merge_exec(s->db, extra, path, "creating the staging tables");
}

/* Copies every row of one source table into its staging table; the values cross connections through
 * sqlite3_bind_value, which copies them. */
static gkd_status merge_stage(gkd_store *target, sqlite3 *src, int t, const char *path, int64_t *rows) {
    char select[512], insert[512];
    int n_cols = 1;
    for (const char *c = merge_tables[t].columns; *c; c++) n_cols += *c == ',';
    snprintf(select, sizeof select, "SELECT %s FROM main.%s", merge_tables[t].columns, merge_tables[t].table);
    int k = snprintf(insert, sizeof insert, "INSERT INTO temp.merge_%s (%s) VALUES (?", merge_tables[t].table,
                     merge_tables[t].columns);
    for (int i = 1; i < n_cols; i++) k += snprintf(insert + k, sizeof insert - (size_t)k, ", ?");
    snprintf(insert + k, sizeof insert - (size_t)k, ")");
    sqlite3_stmt *read = NULL, *write = NULL;
    gkd_status st = GKD_OK;
    if (sqlite3_prepare_v2(src, select, -1, &read, NULL) != SQLITE_OK) {
        st = gkd_error_set(GKD_ERR_FORMAT, "merging '%s': reading its %s table: %s", path,
                           merge_tables[t].table, sqlite3_errmsg(src));
    } else if (sqlite3_prepare_v2(target->db, insert, -1, &write, NULL) != SQLITE_OK) {
        st = merge_fail(target->db, path, "staging rows");
    }
    int rc = SQLITE_ROW;
    while (st == GKD_OK && (rc = sqlite3_step(read)) == SQLITE_ROW) {
        for (int i = 0; i < n_cols; i++) sqlite3_bind_value(write, i + 1, sqlite3_column_value(read, i));
        if (sqlite3_step(write) != SQLITE_DONE) st = merge_fail(target->db, path, "staging rows");
        sqlite3_reset(write);
        (*rows)++;
    }
    if (st == GKD_OK && rc != SQLITE_DONE)
        st = gkd_error_set(gkd_store_busy(rc) ? GKD_ERR_DB : GKD_ERR_FORMAT,
                           "merging '%s': reading its %s table: %s%s", path, merge_tables[t].table,
                           sqlite3_errmsg(src), gkd_store_busy(rc) ? " (busy: merge again later)" : "");
    sqlite3_finalize(read);
    sqlite3_finalize(write);
    return st;
}

/* Whether the file holds no store yet: empty, or a SQLite database without application id, schema
 * version or any table (the moment between its creation and its first migration). */
static int merge_not_started(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size == 0) return 1;
    sqlite3 *db = NULL;
    int empty = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, MERGE_SOURCE_BUSY_MS);
        sqlite3_stmt *stmt = NULL;
        if (sqlite3_prepare_v2(db,
                               "SELECT (SELECT application_id FROM pragma_application_id) = 0 AND "
                               "(SELECT user_version FROM pragma_user_version) = 0 AND "
                               "(SELECT count(*) FROM sqlite_master) = 0",
                               -1, &stmt, NULL) == SQLITE_OK &&
            sqlite3_step(stmt) == SQLITE_ROW)
            empty = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
    }
    sqlite3_close(db);
    return empty;
}

gkd_status gkd_store_merge(gkd_store *s, const char *path, gkd_store_merge_stats *stats) {
    if (!s || !path || !stats)
        return gkd_error_set(GKD_ERR_ARG, "gkd_store_merge: need a store, a path and stats");
    memset(stats, 0, sizeof *stats);
    if (s->readonly)
        return gkd_error_set(GKD_ERR_ARG, "run store '%s' is open read-only: cannot merge into it", s->path);
    struct stat sb;
    if (stat(path, &sb) != 0) return gkd_error_set(GKD_ERR_IO, "merging '%s': no such file", path);
    if (merge_not_started(path)) {
        stats->skipped = 1;
        return GKD_OK;
    }
    gkd_status st = gkd_store_flush(s);
    if (st != GKD_OK) return st;
    gkd_store *src = NULL;
    if ((st = gkd_store_open_readonly(path, &src)) != GKD_OK)
        return gkd_error_prefix(st, "merging '%s'", path);
    sqlite3_busy_timeout(src->db, MERGE_SOURCE_BUSY_MS);

    if ((st = merge_exec(s->db, "BEGIN IMMEDIATE", s->path, "starting the merge transaction")) != GKD_OK) {
        gkd_store_close(src);
        return st;
    }
    /* one snapshot of the source for all its tables */
    st = merge_exec(src->db, "BEGIN", path, "starting a read transaction");
    if (st == GKD_OK) st = merge_stage_tables(s, path);
    for (int t = 0; st == GKD_OK && t < MERGE_N_TABLES; t++)
        st = merge_stage(s, src->db, t, path, &stats->rows_read);
    sqlite3_exec(src->db, "COMMIT", NULL, NULL, NULL);
    gkd_store_close(src);

    int64_t before = 0;
    sqlite3_stmt *count = NULL;
    if (st == GKD_OK) {
        if (sqlite3_prepare_v2(
                s->db,
                "SELECT count(*) FROM temp.merge_runs r WHERE EXISTS (SELECT 1 FROM main.runs m "
                "WHERE m.uuid = r.uuid)",
                -1, &count, NULL) == SQLITE_OK &&
            sqlite3_step(count) == SQLITE_ROW)
            before = sqlite3_column_int64(count, 0);
        else
            st = merge_fail(s->db, path, "matching runs");
        sqlite3_finalize(count);
    }
    for (size_t i = 0; st == GKD_OK && i < sizeof merge_sql / sizeof merge_sql[0]; i++)
        st = merge_exec(s->db, merge_sql[i], path, "merging its rows");
    if (st == GKD_OK) {
        int64_t total = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM temp.merge_map", -1, &count, NULL) == SQLITE_OK &&
            sqlite3_step(count) == SQLITE_ROW)
            total = sqlite3_column_int64(count, 0);
        sqlite3_finalize(count);
        stats->runs_updated = (int)before;
        stats->runs_added = (int)(total - before);
        st = merge_exec(s->db, "COMMIT", s->path, "committing the merge");
    }
    if (st != GKD_OK && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}
