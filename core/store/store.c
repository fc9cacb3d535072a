/* The SQLite run store (core/store/store.h; tables and rules in docs/schema.md).
 * Rules:
 * - Schema changes are steps in store_migrations, appended, never edited: version N's SQL is what a
 *   binary of version N created, and tests/fixtures/make_old_store.sql repeats version 1 verbatim.
 * - Every write runs inside BEGIN IMMEDIATE ... COMMIT (store_begin/store_commit), so a writer takes
 *   the write lock before reading and can never deadlock with another; SQLITE_BUSY that outlasts the
 *   busy timeout is retried a bounded number of times.
 * - Statements used more than once live in s->stmts, prepared on first use and finalized at close;
 *   every use ends with store_stmt_done(), so no statement keeps a read transaction open.
 * - Nothing touches a file until it is known to be empty or a gkd store: a foreign database is not
 *   switched to WAL or migrated. */
#include "core/store/store.h"
#include "core/store/store_internal.h"

#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef GKD_VERSION
#define GKD_VERSION "unknown"
#endif

enum {
    STORE_BUSY_TIMEOUT_MS = 60000,
    STORE_DEFAULT_FLUSH_ROWS = 512,
};
static const double store_default_flush_seconds = 2.0;

#define STORE_NOW "strftime('%Y-%m-%dT%H:%M:%fZ','now')"

static const struct {
    int version;
    const char *sql;
} store_migrations[] = {
    {1, "PRAGMA application_id = 1196115059;\n" /* GKD_STORE_APPLICATION_ID */
        "CREATE TABLE runs (\n"
        "  id INTEGER PRIMARY KEY,\n"
        "  name TEXT NOT NULL,\n"
        "  status TEXT NOT NULL DEFAULT 'running'\n"
        "    CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),\n"
        "  config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),\n"
        "  seed INTEGER NOT NULL,\n"
        "  code_version TEXT NOT NULL,\n"
        "  started_at TEXT NOT NULL,\n"
        "  finished_at TEXT\n"
        ");\n"
        "CREATE INDEX runs_name ON runs(name);\n"
        "CREATE TABLE metrics (\n"
        "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
        "  step INTEGER NOT NULL,\n"
        "  name TEXT NOT NULL,\n"
        "  value REAL,\n"
        "  PRIMARY KEY (run_id, name, step)\n"
        ") WITHOUT ROWID;\n"},
    {2, "CREATE TABLE sweeps (\n"
        "  id INTEGER PRIMARY KEY,\n"
        "  name TEXT NOT NULL UNIQUE,\n"
        "  config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),\n"
        "  created_at TEXT NOT NULL\n"
        ");\n"
        "ALTER TABLE runs ADD COLUMN sweep_id INTEGER REFERENCES sweeps(id) ON DELETE SET NULL;\n"
        "ALTER TABLE runs ADD COLUMN host TEXT;\n"
        "ALTER TABLE runs ADD COLUMN pid INTEGER;\n"
        "ALTER TABLE runs ADD COLUMN error TEXT;\n"
        "ALTER TABLE runs ADD COLUMN uuid TEXT;\n"
        "UPDATE runs SET uuid = lower(hex(randomblob(16)));\n"
        "CREATE UNIQUE INDEX runs_uuid ON runs(uuid);\n"
        "CREATE INDEX runs_sweep ON runs(sweep_id, name);\n"
        "CREATE TABLE evals (\n"
        "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
        "  step INTEGER NOT NULL,\n"
        "  split TEXT NOT NULL,\n"
        "  metric TEXT NOT NULL,\n"
        "  value REAL,\n"
        "  PRIMARY KEY (run_id, split, metric, step)\n"
        ") WITHOUT ROWID;\n"
        "CREATE TABLE samples (\n"
        "  id INTEGER PRIMARY KEY,\n"
        "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
        "  step INTEGER NOT NULL,\n"
        "  split TEXT NOT NULL DEFAULT 'train',\n"
        "  prompt TEXT NOT NULL,\n"
        "  output TEXT NOT NULL,\n"
        "  reward REAL,\n"
        "  n_tokens INTEGER NOT NULL DEFAULT 0 CHECK (n_tokens >= 0),\n"
        "  student_logprobs BLOB\n"
        "    CHECK (student_logprobs IS NULL OR length(student_logprobs) = 4 * n_tokens),\n"
        "  teacher_logprobs BLOB\n"
        "    CHECK (teacher_logprobs IS NULL OR length(teacher_logprobs) = 4 * n_tokens)\n"
        ");\n"
        "CREATE INDEX samples_run_step ON samples(run_id, step);\n"
        "CREATE TABLE checkpoints (\n"
        "  id INTEGER PRIMARY KEY,\n"
        "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
        "  step INTEGER NOT NULL,\n"
        "  path TEXT NOT NULL,\n"
        "  hash TEXT,\n"
        "  created_at TEXT NOT NULL,\n"
        "  UNIQUE (run_id, step, path)\n"
        ");\n"},
    {3, "ALTER TABLE runs ADD COLUMN config_hash TEXT;\n"
        "ALTER TABLE runs ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(warnings));\n"
        "CREATE INDEX runs_config_hash ON runs(config_hash);\n"},
};
_Static_assert(sizeof store_migrations / sizeof store_migrations[0] == GKD_STORE_SCHEMA_VERSION,
               "one migration step per schema version");

static const char *const store_stmt_sql[STMT_COUNT] = {
    [STMT_METRIC_INSERT] =
        "INSERT OR REPLACE INTO metrics (run_id, step, name, value) VALUES (?1, ?2, ?3, ?4)",
    [STMT_EVAL_INSERT] = "INSERT OR REPLACE INTO evals (run_id, step, split, metric, value) "
                         "VALUES (?1, ?2, ?3, ?4, ?5)",
    [STMT_SAMPLE_INSERT] = "INSERT INTO samples (run_id, step, split, prompt, output, reward, n_tokens, "
                           "student_logprobs, teacher_logprobs) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [STMT_CHECKPOINT_INSERT] = "INSERT OR REPLACE INTO checkpoints (run_id, step, path, hash, created_at) "
                               "VALUES (?1, ?2, ?3, ?4, " STORE_NOW ")",
    [STMT_CHECKPOINT_LATEST] = "SELECT step, path FROM checkpoints WHERE run_id = ?1 "
                               "ORDER BY step DESC, id DESC LIMIT 1",
    [STMT_RUN_INSERT] = "INSERT INTO runs (name, sweep_id, status, config, seed, code_version, host, pid, "
                        "started_at, uuid) VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, " STORE_NOW
                        ", lower(hex(randomblob(16))))",
    [STMT_RUN_FINISH] = "UPDATE runs SET status = ?2, error = ?3, finished_at = " STORE_NOW " WHERE id = ?1",
    [STMT_RUN_RESUME] = "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, host = ?2, "
                        "pid = ?3 WHERE id = ?1",
    [STMT_RUN_SET_HASH] = "UPDATE runs SET config_hash = ?2 WHERE id = ?1",
    /* A warning already there is not added again: a resumed run checks its settings again. */
    [STMT_RUN_WARNING] = "UPDATE runs SET warnings = CASE WHEN EXISTS (SELECT 1 FROM json_each(runs.warnings) WHERE "
                         "value = ?2) THEN warnings ELSE json_insert(warnings, '$[#]', ?2) END WHERE id = ?1",
    [STMT_RUN_FIND] = "SELECT id, coalesce(sweep_id, 0), seed, status, "
                      "coalesce((SELECT max(step) FROM metrics WHERE run_id = runs.id), -1) "
                      "FROM runs WHERE name = ?1 AND (?2 = 0 OR sweep_id = ?2) ORDER BY id DESC LIMIT 1",
    [STMT_SWEEP_INSERT] = "INSERT INTO sweeps (name, config, created_at) VALUES (?1, ?2, " STORE_NOW ")",
    [STMT_SWEEP_FIND] = "SELECT id FROM sweeps WHERE name = ?1",
    [STMT_JSON_VALID] = "SELECT json_valid(?1)",
    [STMT_TRUNCATE_METRICS] = "DELETE FROM metrics WHERE run_id = ?1 AND step > ?2",
    [STMT_TRUNCATE_EVALS] = "DELETE FROM evals WHERE run_id = ?1 AND step > ?2",
    [STMT_TRUNCATE_SAMPLES] = "DELETE FROM samples WHERE run_id = ?1 AND step > ?2",
};

static double store_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Backoff before retrying a surfaced SQLITE_BUSY: 10 ms doubling to 640 ms. */
void gkd_store_backoff(int attempt) {
    long ms = 10L << (attempt < 6 ? attempt : 6);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int gkd_store_busy(int rc) {
    return (rc & 0xff) == SQLITE_BUSY;
}

/* Records SQLite's current error for `what`; read it before any rollback, which resets it. */
static gkd_status store_fail(gkd_store *s, const char *what) {
    return gkd_error_set(GKD_ERR_DB, "run store '%s': %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

static gkd_status store_check_writable(gkd_store *s, const char *what) {
    if (s->readonly)
        return gkd_error_set(GKD_ERR_ARG, "run store '%s' is open read-only: cannot %s", s->path, what);
    return GKD_OK;
}

static sqlite3_stmt *store_stmt(gkd_store *s, store_stmt_id id) {
    if (!s->stmts[id] && sqlite3_prepare_v3(s->db, store_stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                            &s->stmts[id], NULL) != SQLITE_OK) {
        store_fail(s, "preparing a statement");
        s->stmts[id] = NULL;
    }
    return s->stmts[id];
}

static void store_stmt_done(sqlite3_stmt *stmt) {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

static void store_bind_text(sqlite3_stmt *stmt, int i, const char *text) {
    if (text)
        sqlite3_bind_text(stmt, i, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, i);
}

void gkd_store_bind_double(sqlite3_stmt *stmt, int i, double v) {
    if (isnan(v))
        sqlite3_bind_null(stmt, i);
    else
        sqlite3_bind_double(stmt, i, v);
}

static gkd_status store_exec(gkd_store *s, const char *sql, const char *what) {
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK) return GKD_OK;
        if (!gkd_store_busy(rc) || attempt >= STORE_BUSY_RETRIES) return store_fail(s, what);
        gkd_store_backoff(attempt);
    }
}

static void store_rollback(gkd_store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static gkd_status store_begin(gkd_store *s) {
    return store_exec(s, "BEGIN IMMEDIATE", "starting a write transaction");
}

/* Commits, or rolls back and reports when the commit fails for good. */
static gkd_status store_commit(gkd_store *s) {
    gkd_status st = store_exec(s, "COMMIT", "committing");
    if (st != GKD_OK) store_rollback(s);
    return st;
}

/* Rolls back the open transaction, keeping the error already recorded. */
static gkd_status store_abort(gkd_store *s, gkd_status st) {
    store_rollback(s);
    return st;
}

/* Steps a cached statement expected to finish without rows (an insert, update or delete). */
static gkd_status store_step_done(gkd_store *s, sqlite3_stmt *stmt, const char *what) {
    int rc = sqlite3_step(stmt);
    gkd_status st = rc == SQLITE_DONE ? GKD_OK : store_fail(s, what);
    store_stmt_done(stmt);
    return st;
}

/* Reads one integer PRAGMA (application_id, user_version). */
static int store_pragma_int(gkd_store *s, const char *pragma, int64_t *out) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA %s", pragma);
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(stmt, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(stmt);
    return rc;
}

static gkd_status store_identify_error(gkd_store *s, int rc) {
    if ((rc & 0xff) == SQLITE_NOTADB)
        return gkd_error_set(GKD_ERR_FORMAT, "'%s' is not a SQLite database, so not a gkd run store (%s)",
                             s->path, sqlite3_errmsg(s->db));
    return store_fail(s, "reading the database header");
}

/* Decides, without writing, whether the file is a gkd store this binary may use (or an empty file
 * that becomes one), and returns its schema version. One statement reads the three facts, so they
 * come from one snapshot even while another process is migrating the file. */
static gkd_status store_identify(gkd_store *s, int64_t *version) {
    int64_t app_id = 0, objects = 0;
    for (int attempt = 0;; attempt++) {
        sqlite3_stmt *stmt = NULL;
        int rc = sqlite3_prepare_v2(s->db,
                                    "SELECT (SELECT application_id FROM pragma_application_id), "
                                    "(SELECT user_version FROM pragma_user_version), "
                                    "(SELECT count(*) FROM sqlite_master)",
                                    -1, &stmt, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            app_id = sqlite3_column_int64(stmt, 0);
            *version = sqlite3_column_int64(stmt, 1);
            objects = sqlite3_column_int64(stmt, 2);
            rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK && (!gkd_store_busy(rc) || attempt >= STORE_BUSY_RETRIES)) {
            gkd_status st = store_identify_error(s, rc);
            sqlite3_finalize(stmt);
            return st;
        }
        sqlite3_finalize(stmt);
        if (rc == SQLITE_OK) break;
        gkd_store_backoff(attempt);
    }
    if (app_id != GKD_STORE_APPLICATION_ID) {
        if (app_id != 0)
            return gkd_error_set(
                GKD_ERR_FORMAT,
                "'%s' is a SQLite database of another application (application_id 0x%08llx), "
                "not a gkd run store",
                s->path, (unsigned long long)(uint32_t)app_id);
        if (objects > 0 || *version != 0)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "'%s' is a SQLite database but not a gkd run store (%lld schema objects, "
                                 "user_version %lld, no gkd application_id)",
                                 s->path, (long long)objects, (long long)*version);
    }
    if (*version > GKD_STORE_SCHEMA_VERSION)
        return gkd_error_set(
            GKD_ERR_FORMAT,
            "run store '%s' has schema version %lld, newer than version %d that this gkd (%s) "
            "knows; use a newer gkd",
            s->path, (long long)*version, GKD_STORE_SCHEMA_VERSION, GKD_VERSION);
    return GKD_OK;
}

static gkd_status store_enable_wal(gkd_store *s) {
    for (int attempt = 0;; attempt++) {
        sqlite3_stmt *stmt = NULL;
        char mode[16] = "";
        int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &stmt, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            const unsigned char *m = sqlite3_column_text(stmt, 0);
            snprintf(mode, sizeof mode, "%s", m ? (const char *)m : "");
            rc = SQLITE_OK;
        }
        if (rc != SQLITE_OK) store_fail(s, "switching to WAL");
        sqlite3_finalize(stmt);
        if (rc == SQLITE_OK) {
            /* An in-memory store (":memory:", for tests) has no other process to share with. */
            if (strcmp(mode, "wal") == 0 || strcmp(mode, "memory") == 0) return GKD_OK;
            /* Without WAL, concurrent writers would block readers; better to say so than to run. */
            return gkd_error_set(GKD_ERR_DB,
                                 "run store '%s': the file system refused WAL mode (journal mode is '%s'); "
                                 "put the store on a local disk",
                                 s->path, mode);
        }
        if (!gkd_store_busy(rc) || attempt >= STORE_BUSY_RETRIES) return GKD_ERR_DB;
        gkd_store_backoff(attempt);
    }
}

/* Applies each missing step in its own BEGIN IMMEDIATE transaction. The version is re-read inside
 * the transaction, so processes opening a store together each apply a step at most once between
 * them. */
static gkd_status store_migrate(gkd_store *s) {
    for (size_t i = 0; i < sizeof store_migrations / sizeof store_migrations[0]; i++) {
        int target = store_migrations[i].version;
        gkd_status st = store_begin(s);
        if (st != GKD_OK) return gkd_error_prefix(st, "migrating to schema version %d", target);
        int64_t version = 0;
        if (store_pragma_int(s, "user_version", &version) != SQLITE_OK)
            return store_abort(s, store_fail(s, "reading the schema version"));
        if (version > GKD_STORE_SCHEMA_VERSION)
            return store_abort(
                s, gkd_error_set(GKD_ERR_FORMAT,
                                 "run store '%s' was migrated to schema version %lld, newer than "
                                 "version %d that this gkd (%s) knows, while opening it",
                                 s->path, (long long)version, GKD_STORE_SCHEMA_VERSION, GKD_VERSION));
        if (version >= target) {
            if ((st = store_commit(s)) != GKD_OK) return st;
            continue;
        }
        char set_version[48];
        snprintf(set_version, sizeof set_version, "PRAGMA user_version = %d", target);
        if (sqlite3_exec(s->db, store_migrations[i].sql, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, set_version, NULL, NULL, NULL) != SQLITE_OK) {
            gkd_error_set(GKD_ERR_DB,
                          "run store '%s': migrating from schema version %lld to %d failed (%s); "
                          "rolled back, the database is unchanged",
                          s->path, (long long)version, target, sqlite3_errmsg(s->db));
            return store_abort(s, GKD_ERR_DB);
        }
        if ((st = store_commit(s)) != GKD_OK)
            return gkd_error_prefix(st, "migrating to schema version %d", target);
    }
    return GKD_OK;
}

/* Opens s->db on path with flags; the handle is kept even on failure, for its message. */
static gkd_status store_connect(gkd_store *s, const char *path, int flags) {
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK)
        return gkd_error_set(GKD_ERR_IO, "cannot open run store '%s': %s", s->path,
                             s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    /* gkd never attaches a database; a query that tries (store:query) fails here too */
    sqlite3_limit(s->db, SQLITE_LIMIT_ATTACHED, 0);
    return GKD_OK;
}

/* A store in WAL mode needs its -shm (and -wal) file beside it even to be read; in a read-only directory
 * SQLite cannot create them and the first read fails with SQLITE_CANTOPEN (root, a chattr +i folder) or a
 * SQLITE_READONLY code (READONLY_DIRECTORY for a user without write permission, READONLY_CANTINIT, or
 * READONLY_RECOVERY / ROLLBACK when a log would need replaying, which store_reopen_immutable refuses). */
static int store_wal_unreachable(gkd_store *s) {
    int ec = sqlite3_extended_errcode(s->db) & 0xff;
    return ec == SQLITE_CANTOPEN || ec == SQLITE_READONLY;
}

/* Reading a store whose WAL files cannot be created: "immutable" makes SQLite read the database file
 * alone, with no locks and no WAL. That is the whole store only when no write-ahead log holds commits
 * that are not in the file yet, which is checked first. In a directory where no -shm can be created no
 * writer can open the store in WAL mode either, so the file does not change under the reader. */
static gkd_status store_reopen_immutable(gkd_store *s) {
    const char *why = sqlite3_errmsg(s->db);
    size_t n = strlen(s->path);
    char *log = malloc(n + 9), *uri = malloc(3 * n + 32);
    gkd_status st =
        log && uri ? GKD_OK : gkd_error_set(GKD_ERR_NOMEM, "run store '%s': out of memory", s->path);
    static const char *const logs[] = {"-wal", "-journal"}; /* a write-ahead log, or a hot rollback journal */
    for (int i = 0; st == GKD_OK && i < 2; i++) {
        struct stat sb;
        snprintf(log, n + 9, "%s%s", s->path, logs[i]);
        if (stat(log, &sb) == 0 && sb.st_size > 0)
            st = gkd_error_set(GKD_ERR_DB,
                               "cannot read run store '%s' (%s): '%s' holds commits not yet in the database "
                               "file, which SQLite cannot read without writing beside it; copy the folder "
                               "somewhere writable, or open the store once where its folder is writable",
                               s->path, why, log);
    }
    if (st == GKD_OK) {
        /* a URI, so the characters URIs reserve are escaped */
        size_t k = (size_t)sprintf(uri, "file:");
        for (const unsigned char *c = (const unsigned char *)s->path; *c; c++) {
            if (*c == '%' || *c == '?' || *c == '#' || *c <= ' ' || *c >= 0x7f)
                k += (size_t)sprintf(uri + k, "%%%02X", *c);
            else
                uri[k++] = (char)*c;
        }
        strcpy(uri + k, "?immutable=1");
        sqlite3_close(s->db);
        s->db = NULL;
        st = store_connect(s, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
    }
    free(log);
    free(uri);
    return st;
}

static gkd_status store_open(const char *path, int readonly, gkd_store **out) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_store_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return gkd_error_set(GKD_ERR_ARG, "gkd_store_open: empty path");
    gkd_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return gkd_error_set(GKD_ERR_NOMEM, "run store '%s': out of memory", path);
    }
    s->readonly = readonly;
    s->flush_rows = STORE_DEFAULT_FLUSH_ROWS;
    s->flush_seconds = store_default_flush_seconds;
    if (gethostname(s->host, sizeof s->host - 1) != 0) snprintf(s->host, sizeof s->host, "unknown");

    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    gkd_status st = store_connect(s, path, flags);
    if (st != GKD_OK) {
        gkd_store_close(s);
        return st;
    }

    int64_t version = 0;
    st = store_identify(s, &version);
    if (st != GKD_OK && readonly && store_wal_unreachable(s)) {
        st = store_reopen_immutable(s);
        if (st == GKD_OK) st = store_identify(s, &version);
    } else if (st != GKD_OK && store_wal_unreachable(s)) {
        char why[1024];
        snprintf(why, sizeof why, "%s", gkd_error_message());
        gkd_error_set(st,
                      "%s (a store that cannot be written here, as in a read-only folder, can only be opened "
                      "read-only)",
                      why);
    }
    /* a read-only store refuses writes in SQLite as well, whatever a statement tries */
    if (st == GKD_OK && readonly)
        st = store_exec(s, "PRAGMA query_only = 1", "making the connection read-only");
    if (st == GKD_OK && readonly && version < GKD_STORE_SCHEMA_VERSION)
        st = gkd_error_set(GKD_ERR_FORMAT,
                           "run store '%s' has schema version %lld, older than version %d; open it once for "
                           "writing (any gkd run) to migrate it",
                           path, (long long)version, GKD_STORE_SCHEMA_VERSION);
    if (st == GKD_OK && !readonly) st = store_enable_wal(s);
    if (st == GKD_OK) st = store_exec(s, "PRAGMA foreign_keys = ON", "enabling foreign keys");
    /* In WAL mode NORMAL stays consistent after a crash; it may lose the last commits on power loss. */
    if (st == GKD_OK && !readonly) st = store_exec(s, "PRAGMA synchronous = NORMAL", "setting synchronous");
    if (st == GKD_OK && !readonly) st = store_migrate(s);
    if (st != GKD_OK) {
        gkd_store_close(s);
        return st;
    }
    *out = s;
    return GKD_OK;
}

gkd_status gkd_store_open(const char *path, gkd_store **out) {
    return store_open(path, 0, out);
}

gkd_status gkd_store_open_readonly(const char *path, gkd_store **out) {
    return store_open(path, 1, out);
}

gkd_status gkd_store_close(gkd_store *s) {
    if (!s) return GKD_OK;
    gkd_status st = GKD_OK;
    if (s->db && s->n_pending > 0) st = gkd_store_flush(s);
    if (s->db) {
        for (int i = 0; i < STMT_COUNT; i++) sqlite3_finalize(s->stmts[i]);
        sqlite3_stmt *stray;
        while ((stray = sqlite3_next_stmt(s->db, NULL)) != NULL) sqlite3_finalize(stray);
        if (sqlite3_close(s->db) != SQLITE_OK && st == GKD_OK) st = store_fail(s, "closing");
    }
    free(s->pending);
    free(s->names);
    free(s->scratch);
    free(s->path);
    free(s);
    return st;
}

gkd_status gkd_store_set_flush(gkd_store *s, int rows, double seconds) {
    if (!s || rows < 1) return gkd_error_set(GKD_ERR_ARG, "gkd_store_set_flush: need a store and rows >= 1");
    s->flush_rows = rows;
    s->flush_seconds = seconds;
    return GKD_OK;
}

const char *gkd_run_status_name(gkd_run_status status) {
    switch (status) {
    case GKD_RUN_STATUS_RUNNING:
        return "running";
    case GKD_RUN_STATUS_FINISHED:
        return "finished";
    case GKD_RUN_STATUS_FAILED:
        return "failed";
    case GKD_RUN_STATUS_INTERRUPTED:
        return "interrupted";
    }
    return NULL;
}

static int store_status_parse(const char *name, gkd_run_status *out) {
    for (int i = GKD_RUN_STATUS_RUNNING; i <= GKD_RUN_STATUS_INTERRUPTED; i++) {
        if (name && strcmp(name, gkd_run_status_name((gkd_run_status)i)) == 0) {
            *out = (gkd_run_status)i;
            return 1;
        }
    }
    return 0;
}

static gkd_status store_check_json(gkd_store *s, const char *json, const char *what, const char *name) {
    sqlite3_stmt *stmt = store_stmt(s, STMT_JSON_VALID);
    if (!stmt) return GKD_ERR_DB;
    store_bind_text(stmt, 1, json);
    int rc = sqlite3_step(stmt);
    int valid = rc == SQLITE_ROW && sqlite3_column_int(stmt, 0) == 1;
    gkd_status st = rc == SQLITE_ROW ? GKD_OK : store_fail(s, "checking JSON");
    store_stmt_done(stmt);
    if (st == GKD_OK && !valid)
        st = gkd_error_set(GKD_ERR_ARG, "run store '%s': the config of %s '%s' is not valid JSON", s->path,
                           what, name);
    return st;
}

/* Runs a single-row lookup through a cached statement already bound; *found says whether it had a
 * row, whose columns read_row copies out before the statement is reset. */
typedef void (*store_read_fn)(sqlite3_stmt *stmt, void *ctx);

static gkd_status store_lookup(gkd_store *s, sqlite3_stmt *stmt, store_read_fn read_row, void *ctx,
                               int *found, const char *what) {
    *found = 0;
    for (int attempt = 0;; attempt++) {
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            read_row(stmt, ctx);
            *found = 1;
            break;
        }
        if (rc == SQLITE_DONE) break;
        if (!gkd_store_busy(rc) || attempt >= STORE_BUSY_RETRIES) {
            gkd_status st = store_fail(s, what);
            store_stmt_done(stmt);
            return st;
        }
        sqlite3_reset(stmt);
        gkd_store_backoff(attempt);
    }
    store_stmt_done(stmt);
    return GKD_OK;
}

static void store_read_id(sqlite3_stmt *stmt, void *ctx) {
    *(int64_t *)ctx = sqlite3_column_int64(stmt, 0);
}

gkd_status gkd_store_sweep_create(gkd_store *s, const char *name, const char *config_json,
                                  int64_t *sweep_id) {
    if (!s || !name || !*name || !sweep_id)
        return gkd_error_set(GKD_ERR_ARG, "gkd_store_sweep_create: need a store, a name and sweep_id");
    gkd_status st = store_check_writable(s, "create a sweep");
    if (st != GKD_OK) return st;
    if (!config_json) config_json = "{}";
    if ((st = store_check_json(s, config_json, "sweep", name)) != GKD_OK) return st;
    if ((st = store_begin(s)) != GKD_OK) return st;
    sqlite3_stmt *stmt = store_stmt(s, STMT_SWEEP_INSERT);
    if (!stmt) return store_abort(s, GKD_ERR_DB);
    store_bind_text(stmt, 1, name);
    store_bind_text(stmt, 2, config_json);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_CONSTRAINT_UNIQUE)
            st = gkd_error_set(GKD_ERR_ARG, "run store '%s': a sweep named '%s' exists already", s->path,
                               name);
        else
            st = store_fail(s, "creating a sweep");
        store_stmt_done(stmt);
        return store_abort(s, st);
    }
    store_stmt_done(stmt);
    *sweep_id = sqlite3_last_insert_rowid(s->db);
    return store_commit(s);
}

gkd_status gkd_store_sweep_find(gkd_store *s, const char *name, int64_t *sweep_id) {
    if (!s || !name || !sweep_id) return gkd_error_set(GKD_ERR_ARG, "gkd_store_sweep_find: NULL argument");
    sqlite3_stmt *stmt = store_stmt(s, STMT_SWEEP_FIND);
    if (!stmt) return GKD_ERR_DB;
    store_bind_text(stmt, 1, name);
    int found;
    gkd_status st = store_lookup(s, stmt, store_read_id, sweep_id, &found, "finding a sweep");
    if (st == GKD_OK && !found)
        st = gkd_error_set(GKD_ERR_NOT_FOUND, "run store '%s': no sweep named '%s'", s->path, name);
    return st;
}

gkd_status gkd_store_run_begin(gkd_store *s, const char *name, int64_t sweep_id, const char *config_json,
                               uint64_t seed, int64_t *run_id) {
    if (!s || !name || !*name || !run_id)
        return gkd_error_set(GKD_ERR_ARG, "gkd_store_run_begin: need a store, a name and run_id");
    gkd_status st = store_check_writable(s, "begin a run");
    if (st != GKD_OK) return st;
    if (seed > (uint64_t)INT64_MAX)
        return gkd_error_set(GKD_ERR_ARG, "run '%s': seed %llu does not fit SQLite's signed 64-bit integers",
                             name, (unsigned long long)seed);
    if (!config_json) config_json = "{}";
    if ((st = store_check_json(s, config_json, "run", name)) != GKD_OK) return st;
    if ((st = store_begin(s)) != GKD_OK) return st;
    sqlite3_stmt *stmt = store_stmt(s, STMT_RUN_INSERT);
    if (!stmt) return store_abort(s, GKD_ERR_DB);
    store_bind_text(stmt, 1, name);
    if (sweep_id > 0)
        sqlite3_bind_int64(stmt, 2, sweep_id);
    else
        sqlite3_bind_null(stmt, 2);
    store_bind_text(stmt, 3, config_json);
    sqlite3_bind_int64(stmt, 4, (int64_t)seed);
    store_bind_text(stmt, 5, GKD_VERSION);
    store_bind_text(stmt, 6, s->host);
    sqlite3_bind_int64(stmt, 7, (int64_t)getpid());
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) {
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            st = gkd_error_set(GKD_ERR_NOT_FOUND,
                               "run store '%s': run '%s' names sweep %lld, which does not exist", s->path,
                               name, (long long)sweep_id);
        else
            st = store_fail(s, "beginning a run");
        store_stmt_done(stmt);
        return store_abort(s, st);
    }
    store_stmt_done(stmt);
    *run_id = sqlite3_last_insert_rowid(s->db);
    return store_commit(s);
}

/* Runs an UPDATE of one run by id in its own transaction; NOT_FOUND when no row changed. */
static gkd_status store_run_update(gkd_store *s, sqlite3_stmt *stmt, int64_t run_id, const char *what) {
    gkd_status st = store_begin(s);
    if (st != GKD_OK) {
        store_stmt_done(stmt);
        return st;
    }
    if ((st = store_step_done(s, stmt, what)) != GKD_OK) return store_abort(s, st);
    if (sqlite3_changes(s->db) != 1)
        return store_abort(s, gkd_error_set(GKD_ERR_NOT_FOUND, "run store '%s': %s: no run with id %lld",
                                            s->path, what, (long long)run_id));
    return store_commit(s);
}

gkd_status gkd_store_run_finish(gkd_store *s, int64_t run_id, gkd_run_status status,
                                const char *error_message) {
    if (!s) return gkd_error_set(GKD_ERR_ARG, "gkd_store_run_finish: store is NULL");
    const char *status_name = gkd_run_status_name(status);
    if (!status_name || status == GKD_RUN_STATUS_RUNNING)
        return gkd_error_set(GKD_ERR_ARG,
                             "gkd_store_run_finish: run %lld: a finished run needs status finished, "
                             "failed or interrupted",
                             (long long)run_id);
    gkd_status st = store_check_writable(s, "finish a run");
    if (st != GKD_OK) return st;
    /* The status is recorded even when the flush fails, so a failed run never stays "running". */
    gkd_status flushed = gkd_store_flush(s);
    char flush_error[512] = "";
    if (flushed != GKD_OK) snprintf(flush_error, sizeof flush_error, "%s", gkd_error_message());
    sqlite3_stmt *stmt = store_stmt(s, STMT_RUN_FINISH);
    if (!stmt) return GKD_ERR_DB;
    sqlite3_bind_int64(stmt, 1, run_id);
    store_bind_text(stmt, 2, status_name);
    store_bind_text(stmt, 3, error_message);
    st = store_run_update(s, stmt, run_id, "finishing a run");
    if (st == GKD_OK && flushed != GKD_OK) return gkd_error_set(flushed, "%s", flush_error);
    return st;
}

gkd_status gkd_store_run_resume(gkd_store *s, int64_t run_id) {
    if (!s) return gkd_error_set(GKD_ERR_ARG, "gkd_store_run_resume: store is NULL");
    gkd_status st = store_check_writable(s, "resume a run");
    if (st != GKD_OK) return st;
    sqlite3_stmt *stmt = store_stmt(s, STMT_RUN_RESUME);
    if (!stmt) return GKD_ERR_DB;
    sqlite3_bind_int64(stmt, 1, run_id);
    store_bind_text(stmt, 2, s->host);
    sqlite3_bind_int64(stmt, 3, (int64_t)getpid());
    return store_run_update(s, stmt, run_id, "resuming a run");
}

/* Sets one run's value through a cached UPDATE of (id ?1, text ?2) that changes exactly its row. */
static gkd_status store_run_set(gkd_store *s, store_stmt_id id, int64_t run_id, const char *text, const char *what) {
    gkd_status st = store_check_writable(s, what);
    if (st != GKD_OK) return st;
    sqlite3_stmt *stmt = store_stmt(s, id);
    if (!stmt) return GKD_ERR_DB;
    sqlite3_bind_int64(stmt, 1, run_id);
    store_bind_text(stmt, 2, text);
    return store_run_update(s, stmt, run_id, what);
}

gkd_status gkd_store_run_set_config_hash(gkd_store *s, int64_t run_id, const char *config_hash) {
    if (!s) return gkd_error_set(GKD_ERR_ARG, "gkd_store_run_set_config_hash: store is NULL");
    return store_run_set(s, STMT_RUN_SET_HASH, run_id, config_hash, "record a run's config hash");
}

gkd_status gkd_store_run_warning(gkd_store *s, int64_t run_id, const char *message) {
    if (!s || !message) return gkd_error_set(GKD_ERR_ARG, "gkd_store_run_warning: store or message is NULL");
    return store_run_set(s, STMT_RUN_WARNING, run_id, message, "record a run's warning");
}

typedef struct {
    gkd_store_run_info *info;
    int bad_status;
} store_run_read;

static void store_read_run(sqlite3_stmt *stmt, void *ctx) {
    store_run_read *r = ctx;
    r->info->id = sqlite3_column_int64(stmt, 0);
    r->info->sweep_id = sqlite3_column_int64(stmt, 1);
    r->info->seed = (uint64_t)sqlite3_column_int64(stmt, 2);
    r->bad_status = !store_status_parse((const char *)sqlite3_column_text(stmt, 3), &r->info->status);
    r->info->last_step = sqlite3_column_int64(stmt, 4);
}

gkd_status gkd_store_run_find(gkd_store *s, const char *name, int64_t sweep_id, gkd_store_run_info *out) {
    if (!s || !name || !out) return gkd_error_set(GKD_ERR_ARG, "gkd_store_run_find: NULL argument");
    /* last_step must count metrics still in the buffer. */
    gkd_status st = s->n_pending ? gkd_store_flush(s) : GKD_OK;
    if (st != GKD_OK) return st;
    sqlite3_stmt *stmt = store_stmt(s, STMT_RUN_FIND);
    if (!stmt) return GKD_ERR_DB;
    store_bind_text(stmt, 1, name);
    sqlite3_bind_int64(stmt, 2, sweep_id);
    store_run_read r = {out, 0};
    int found;
    st = store_lookup(s, stmt, store_read_run, &r, &found, "finding a run");
    if (st != GKD_OK) return st;
    if (!found) return gkd_error_set(GKD_ERR_NOT_FOUND, "run store '%s': no run named '%s'", s->path, name);
    if (r.bad_status)
        return gkd_error_set(GKD_ERR_FORMAT, "run store '%s': run '%s' has an unknown status", s->path, name);
    return GKD_OK;
}

gkd_status gkd_store_metric(gkd_store *s, int64_t run_id, int64_t step, const char *name, double value) {
    if (!s || !name || !*name)
        return gkd_error_set(GKD_ERR_ARG, "gkd_store_metric: need a store and a metric name");
    if (step < 0) return gkd_error_set(GKD_ERR_ARG, "metric '%s': negative step %lld", name, (long long)step);
    gkd_status st = store_check_writable(s, "log a metric");
    if (st != GKD_OK) return st;
    size_t len = strlen(name) + 1;
    if (s->n_pending == s->cap_pending) {
        int cap = s->cap_pending ? 2 * s->cap_pending : 256;
        store_metric_row *p = realloc(s->pending, (size_t)cap * sizeof *p);
        if (!p)
            return gkd_error_set(GKD_ERR_NOMEM, "run store '%s': out of memory buffering metrics", s->path);
        s->pending = p;
        s->cap_pending = cap;
    }
    if (s->names_len + len > s->names_cap) {
        size_t cap = s->names_cap ? 2 * s->names_cap : 4096;
        while (cap < s->names_len + len) cap *= 2;
        char *p = realloc(s->names, cap);
        if (!p)
            return gkd_error_set(GKD_ERR_NOMEM, "run store '%s': out of memory buffering metrics", s->path);
        s->names = p;
        s->names_cap = cap;
    }
    memcpy(s->names + s->names_len, name, len);
    double now = store_now();
    if (s->n_pending == 0) s->pending_since = now;
    s->pending[s->n_pending++] = (store_metric_row){run_id, step, value, s->names_len};
    s->names_len += len;
    if (s->n_pending >= s->flush_rows || (s->flush_seconds > 0 && now - s->pending_since >= s->flush_seconds))
        return gkd_store_flush(s);
    return GKD_OK;
}

gkd_status gkd_store_flush(gkd_store *s) {
    if (!s) return gkd_error_set(GKD_ERR_ARG, "gkd_store_flush: store is NULL");
    if (s->n_pending == 0) return GKD_OK;
    gkd_status st = store_begin(s);
    if (st != GKD_OK) return gkd_error_prefix(st, "flushing %d metric rows", s->n_pending);
    sqlite3_stmt *stmt = store_stmt(s, STMT_METRIC_INSERT);
    if (!stmt) return store_abort(s, GKD_ERR_DB);
    for (int i = 0; i < s->n_pending; i++) {
        const store_metric_row *m = &s->pending[i];
        sqlite3_bind_int64(stmt, 1, m->run_id);
        sqlite3_bind_int64(stmt, 2, m->step);
        store_bind_text(stmt, 3, s->names + m->name_at);
        gkd_store_bind_double(stmt, 4, m->value);
        int rc = sqlite3_step(stmt);
        if (rc != SQLITE_DONE) {
            gkd_error_set(
                GKD_ERR_DB,
                "run store '%s': flushing %d metric rows failed at run %lld, step %lld, '%s'%s: %s; "
                "none written",
                s->path, s->n_pending, (long long)m->run_id, (long long)m->step, s->names + m->name_at,
                rc == SQLITE_CONSTRAINT_FOREIGNKEY ? " (no such run)" : "", sqlite3_errmsg(s->db));
            store_stmt_done(stmt);
            return store_abort(s, GKD_ERR_DB);
        }
        sqlite3_reset(stmt);
    }
    store_stmt_done(stmt);
    if ((st = store_commit(s)) != GKD_OK) return st;
    s->n_pending = 0;
    s->names_len = 0;
    return GKD_OK;
}

gkd_status gkd_store_eval(gkd_store *s, int64_t run_id, int64_t step, const char *split, const char *metric,
                          double value) {
    if (!s || !split || !*split || !metric || !*metric)
        return gkd_error_set(GKD_ERR_ARG, "gkd_store_eval: need a store, a split and a metric name");
    gkd_status st = store_check_writable(s, "record an eval");
    if (st != GKD_OK) return st;
    if ((st = store_begin(s)) != GKD_OK) return st;
    sqlite3_stmt *stmt = store_stmt(s, STMT_EVAL_INSERT);
    if (!stmt) return store_abort(s, GKD_ERR_DB);
    sqlite3_bind_int64(stmt, 1, run_id);
    sqlite3_bind_int64(stmt, 2, step);
    store_bind_text(stmt, 3, split);
    store_bind_text(stmt, 4, metric);
    gkd_store_bind_double(stmt, 5, value);
    if ((st = store_step_done(s, stmt, "recording an eval")) != GKD_OK) return store_abort(s, st);
    return store_commit(s);
}

int gkd_store_metric_sink(void *ctx, const char *split, int64_t step, const char *name, double value) {
    const gkd_store_sink *sink = ctx;
    if (!sink->store) return 0;
    gkd_status st = strcmp(split, "train") == 0 ? gkd_store_metric(sink->store, sink->run_id, step, name, value)
                                                : gkd_store_eval(sink->store, sink->run_id, step, split, name, value);
    return st != GKD_OK;
}

/* Little-endian float32, whatever the host's byte order, so a store moves between machines. */
static void store_floats_encode(unsigned char *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        dst[4 * i + 0] = (unsigned char)u;
        dst[4 * i + 1] = (unsigned char)(u >> 8);
        dst[4 * i + 2] = (unsigned char)(u >> 16);
        dst[4 * i + 3] = (unsigned char)(u >> 24);
    }
}

static gkd_status store_sample_insert(gkd_store *s, const gkd_store_sample_row *r) {
    if (!r->prompt || !r->output || r->n_tokens < 0)
        return gkd_error_set(GKD_ERR_ARG,
                             "run store '%s': a sample needs a prompt, an output and n_tokens >= 0", s->path);
    size_t bytes = (size_t)r->n_tokens * 4;
    if (2 * bytes > s->scratch_cap) {
        unsigned char *p = realloc(s->scratch, 2 * bytes);
        if (!p)
            return gkd_error_set(GKD_ERR_NOMEM, "run store '%s': out of memory encoding a sample", s->path);
        s->scratch = p;
        s->scratch_cap = 2 * bytes;
    }
    sqlite3_stmt *stmt = store_stmt(s, STMT_SAMPLE_INSERT);
    if (!stmt) return GKD_ERR_DB;
    sqlite3_bind_int64(stmt, 1, r->run_id);
    sqlite3_bind_int64(stmt, 2, r->step);
    store_bind_text(stmt, 3, r->split ? r->split : "train");
    store_bind_text(stmt, 4, r->prompt);
    store_bind_text(stmt, 5, r->output);
    gkd_store_bind_double(stmt, 6, r->reward);
    sqlite3_bind_int(stmt, 7, r->n_tokens);
    const float *logprobs[2] = {r->student_logprobs, r->teacher_logprobs};
    for (int k = 0; k < 2; k++) {
        if (!logprobs[k]) {
            sqlite3_bind_null(stmt, 8 + k);
            continue;
        }
        store_floats_encode(s->scratch + k * bytes, logprobs[k], r->n_tokens);
        sqlite3_bind_blob(stmt, 8 + k, s->scratch + k * bytes, (int)bytes, SQLITE_STATIC);
    }
    return store_step_done(s, stmt, "recording a sample");
}

gkd_status gkd_store_samples(gkd_store *s, const gkd_store_sample_row *rows, int n) {
    if (!s || (n > 0 && !rows) || n < 0)
        return gkd_error_set(GKD_ERR_ARG, "gkd_store_samples: bad arguments");
    gkd_status st = store_check_writable(s, "record samples");
    if (st != GKD_OK || n == 0) return st;
    if ((st = store_begin(s)) != GKD_OK) return st;
    for (int i = 0; i < n; i++)
        if ((st = store_sample_insert(s, &rows[i])) != GKD_OK)
            return store_abort(s, gkd_error_prefix(st, "sample %d of %d", i, n));
    return store_commit(s);
}

gkd_status gkd_store_sample(gkd_store *s, const gkd_store_sample_row *row) {
    if (!row) return gkd_error_set(GKD_ERR_ARG, "gkd_store_sample: row is NULL");
    return gkd_store_samples(s, row, 1);
}

gkd_status gkd_store_checkpoint(gkd_store *s, int64_t run_id, int64_t step, const char *path,
                                const char *hash) {
    if (!s || !path || !*path)
        return gkd_error_set(GKD_ERR_ARG, "gkd_store_checkpoint: need a store and a path");
    gkd_status st = store_check_writable(s, "record a checkpoint");
    if (st != GKD_OK) return st;
    if ((st = store_begin(s)) != GKD_OK) return st;
    sqlite3_stmt *stmt = store_stmt(s, STMT_CHECKPOINT_INSERT);
    if (!stmt) return store_abort(s, GKD_ERR_DB);
    sqlite3_bind_int64(stmt, 1, run_id);
    sqlite3_bind_int64(stmt, 2, step);
    store_bind_text(stmt, 3, path);
    store_bind_text(stmt, 4, hash);
    if ((st = store_step_done(s, stmt, "recording a checkpoint")) != GKD_OK) return store_abort(s, st);
    return store_commit(s);
}

typedef struct {
    int64_t step;
    char *path;
} store_checkpoint_read;

static void store_read_checkpoint(sqlite3_stmt *stmt, void *ctx) {
    store_checkpoint_read *r = ctx;
    r->step = sqlite3_column_int64(stmt, 0);
    const unsigned char *path = sqlite3_column_text(stmt, 1);
    r->path = strdup(path ? (const char *)path : "");
}

gkd_status gkd_store_checkpoint_latest(gkd_store *s, int64_t run_id, int64_t *step, char **path) {
    if (!s || !step || !path) return gkd_error_set(GKD_ERR_ARG, "gkd_store_checkpoint_latest: NULL argument");
    *path = NULL;
    sqlite3_stmt *stmt = store_stmt(s, STMT_CHECKPOINT_LATEST);
    if (!stmt) return GKD_ERR_DB;
    sqlite3_bind_int64(stmt, 1, run_id);
    store_checkpoint_read r = {0, NULL};
    int found;
    gkd_status st = store_lookup(s, stmt, store_read_checkpoint, &r, &found, "finding a checkpoint");
    if (st != GKD_OK) return st;
    if (!found)
        return gkd_error_set(GKD_ERR_NOT_FOUND, "run store '%s': run %lld has no checkpoint", s->path,
                             (long long)run_id);
    if (!r.path) return gkd_error_set(GKD_ERR_NOMEM, "run store '%s': out of memory", s->path);
    *step = r.step;
    *path = r.path;
    return GKD_OK;
}

gkd_status gkd_store_truncate_after(gkd_store *s, int64_t run_id, int64_t step) {
    if (!s) return gkd_error_set(GKD_ERR_ARG, "gkd_store_truncate_after: store is NULL");
    gkd_status st = store_check_writable(s, "truncate a run");
    if (st != GKD_OK) return st;
    if ((st = gkd_store_flush(s)) != GKD_OK) return st;
    if ((st = store_begin(s)) != GKD_OK) return st;
    static const store_stmt_id deletes[] = {STMT_TRUNCATE_METRICS, STMT_TRUNCATE_EVALS,
                                            STMT_TRUNCATE_SAMPLES};
    for (size_t i = 0; i < sizeof deletes / sizeof deletes[0]; i++) {
        sqlite3_stmt *stmt = store_stmt(s, deletes[i]);
        if (!stmt) return store_abort(s, GKD_ERR_DB);
        sqlite3_bind_int64(stmt, 1, run_id);
        sqlite3_bind_int64(stmt, 2, step);
        if ((st = store_step_done(s, stmt, "truncating a run")) != GKD_OK) return store_abort(s, st);
    }
    return store_commit(s);
}
