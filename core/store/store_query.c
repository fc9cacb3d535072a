/* The run store's read-only queries (gkd_store_query and its helpers, core/store/store.h): SQL that
 * only reads, checked by SQLite's authorizer while it is prepared, with its rows handed to a callback.
 * Rules: buffered metric rows are flushed before a query, so it sees every row written; a read that hits
 * SQLITE_BUSY starts over only if it has handed out no row yet. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/store/store.h"
#include "core/store/store_internal.h"

/* What a query may do, checked by SQLite's authorizer while it is prepared: read tables and views, call
 * functions, recurse, and read the pragmas below. Anything else, ATTACH, DETACH, transactions and pragmas
 * that change a setting (writable_schema) included, is refused, whatever sqlite3_stmt_readonly says of it
 * (it calls ATTACH and BEGIN read-only). `denied` keeps the first refusal for the message. */
typedef struct {
    char denied[160];
} store_query_guard;

static int store_pragma_allowed(const char *name, const char *value) {
    static const char *const inspect[] = {
        "table_info",     "table_xinfo",      "table_list",      "index_list",  "index_info",
        "index_xinfo",    "foreign_key_list", "integrity_check", "quick_check", "compile_options",
        "database_list",  "collation_list",   "function_list",   "module_list", "pragma_list",
        "freelist_count", "page_count",       "data_version",    NULL};
    static const char *const settings[] = {"user_version", "application_id", "schema_version",
                                           "page_size",    "journal_mode",   "encoding",
                                           "foreign_keys", "query_only",     NULL};
    for (int i = 0; inspect[i]; i++)
        if (sqlite3_stricmp(name, inspect[i]) == 0) return 1;
    for (int i = 0; settings[i]; i++) /* read only: no value given */
        if (sqlite3_stricmp(name, settings[i]) == 0) return value == NULL;
    return 0;
}

static int store_query_authorize(void *ctx, int action, const char *a, const char *b, const char *db,
                                 const char *view) {
    (void)db, (void)view;
    store_query_guard *g = ctx;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_PRAGMA:
        if (store_pragma_allowed(a, b)) return SQLITE_OK;
        break;
    case SQLITE_UPDATE:
        /* a pragma table-valued function declares its table once, which SQLite checks as an update of
         * sqlite_master that never runs; a real UPDATE is refused as a write (sqlite3_stmt_readonly) */
        if (a && (sqlite3_stricmp(a, "sqlite_master") == 0 || sqlite3_stricmp(a, "sqlite_schema") == 0))
            return SQLITE_OK;
        break;
    default:
        break;
    }
    if (!g->denied[0]) {
        static const struct {
            int action;
            const char *what;
        } names[] = {{SQLITE_ATTACH, "ATTACH"},       {SQLITE_DETACH, "DETACH"},
                     {SQLITE_PRAGMA, "PRAGMA"},       {SQLITE_TRANSACTION, "transaction"},
                     {SQLITE_SAVEPOINT, "SAVEPOINT"}, {SQLITE_INSERT, "INSERT into"},
                     {SQLITE_UPDATE, "UPDATE of"},    {SQLITE_DELETE, "DELETE from"}};
        const char *what = "schema change on";
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (names[i].action == action) what = names[i].what;
        snprintf(g->denied, sizeof g->denied, "%s %s%s%s", what, a ? a : "",
                 b ? (action == SQLITE_PRAGMA ? " = " : " ") : "", b ? b : "");
    }
    return SQLITE_DENY;
}

/* Prepares one reading statement with its parameters bound; the caller finalizes *out. */
static gkd_status store_prepare_query(gkd_store *s, const char *sql, const char *types, va_list ap,
                                      sqlite3_stmt **out) {
    *out = NULL;
    if (!sql) return gkd_error_set(GKD_ERR_ARG, "gkd_store_query: sql is NULL");
    gkd_status st = s->n_pending ? gkd_store_flush(s) : GKD_OK;
    if (st != GKD_OK) return st;
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    store_query_guard guard = {{0}};
    /* the authorizer is consulted while preparing only, so it is set for that call alone */
    sqlite3_set_authorizer(s->db, store_query_authorize, &guard);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &stmt, &tail);
    sqlite3_set_authorizer(s->db, NULL, NULL);
    if (rc != SQLITE_OK && guard.denied[0])
        return gkd_error_set(GKD_ERR_ARG,
                             "run store '%s': query '%s' would write or change the connection (%s): queries "
                             "only read; writes go through the gkd_store calls",
                             s->path, sql, guard.denied);
    if (rc != SQLITE_OK)
        return gkd_error_set(GKD_ERR_ARG, "run store '%s': query '%s': %s", s->path, sql,
                             sqlite3_errmsg(s->db));
    if (!stmt)
        return gkd_error_set(GKD_ERR_ARG, "run store '%s': query '%s' holds no statement", s->path, sql);
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';')) tail++;
    if (tail && *tail)
        st = gkd_error_set(GKD_ERR_ARG, "run store '%s': query '%s': one statement only", s->path, sql);
    else if (!sqlite3_stmt_readonly(stmt))
        st = gkd_error_set(GKD_ERR_ARG,
                           "run store '%s': query '%s' would write; writes go through the gkd_store calls",
                           s->path, sql);
    size_t n_types = types ? strlen(types) : 0;
    if (st == GKD_OK && (int)n_types != sqlite3_bind_parameter_count(stmt))
        st = gkd_error_set(GKD_ERR_ARG, "run store '%s': query '%s' has %d parameters but %zu types given",
                           s->path, sql, sqlite3_bind_parameter_count(stmt), n_types);
    for (size_t i = 0; st == GKD_OK && i < n_types; i++) {
        int col = (int)i + 1;
        switch (types[i]) {
        case 'i':
            sqlite3_bind_int64(stmt, col, va_arg(ap, int64_t));
            break;
        case 'd':
            gkd_store_bind_double(stmt, col, va_arg(ap, double));
            break;
        case 's':
            sqlite3_bind_text(stmt, col, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
            break;
        default:
            st = gkd_error_set(GKD_ERR_ARG, "gkd_store_query: parameter type '%c' is not one of i, d, s",
                               types[i]);
        }
    }
    if (st != GKD_OK) {
        sqlite3_finalize(stmt);
        return st;
    }
    *out = stmt;
    return GKD_OK;
}

static gkd_status store_vquery(gkd_store *s, gkd_store_row_fn fn, void *ctx, const char *sql,
                               const char *types, va_list ap) {
    if (!s || !fn) return gkd_error_set(GKD_ERR_ARG, "gkd_store_query: need a store and a row function");
    sqlite3_stmt *stmt;
    gkd_status st = store_prepare_query(s, sql, types, ap, &stmt);
    if (st != GKD_OK) return st;
    gkd_store_row row = {stmt};
    long rows = 0;
    for (int attempt = 0;;) {
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            rows++;
            if (fn(&row, ctx) != 0) break;
            continue;
        }
        if (rc == SQLITE_DONE) break;
        /* A read starts over only if it has handed out nothing yet. */
        if (gkd_store_busy(rc) && rows == 0 && attempt < STORE_BUSY_RETRIES) {
            sqlite3_reset(stmt);
            gkd_store_backoff(attempt++);
            continue;
        }
        st = gkd_error_set(GKD_ERR_DB, "run store '%s': query '%s': %s", s->path, sql, sqlite3_errmsg(s->db));
        break;
    }
    sqlite3_finalize(stmt);
    return st;
}

gkd_status gkd_store_query(gkd_store *s, gkd_store_row_fn fn, void *ctx, const char *sql, const char *types,
                           ...) {
    va_list ap;
    va_start(ap, types);
    gkd_status st = store_vquery(s, fn, ctx, sql, types, ap);
    va_end(ap);
    return st;
}

typedef struct {
    int found;
    int is_null;
    double d;
    int64_t i;
} store_first;

static int store_read_first(const gkd_store_row *row, void *ctx) {
    store_first *f = ctx;
    f->found = 1;
    f->is_null = gkd_store_row_is_null(row, 0);
    f->d = gkd_store_row_double(row, 0);
    f->i = gkd_store_row_int(row, 0);
    return 1;
}

/* The first column of the query's first row into *f; GKD_ERR_NOT_FOUND when there is no row, or when
 * the value is NULL and null_is_missing. */
static gkd_status store_vquery_first(gkd_store *s, store_first *f, int null_is_missing, const char *sql,
                                     const char *types, va_list ap) {
    gkd_status st = store_vquery(s, store_read_first, f, sql, types, ap);
    if (st != GKD_OK) return st;
    if (!f->found || (null_is_missing && f->is_null))
        return gkd_error_set(GKD_ERR_NOT_FOUND, "run store '%s': query '%s' gave %s", s->path, sql,
                             f->found ? "NULL" : "no row");
    return GKD_OK;
}

gkd_status gkd_store_query_double(gkd_store *s, double *out, const char *sql, const char *types, ...) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_store_query_double: out is NULL");
    store_first f = {0};
    va_list ap;
    va_start(ap, types);
    gkd_status st = store_vquery_first(s, &f, 0, sql, types, ap);
    va_end(ap);
    if (st != GKD_OK) return st;
    *out = f.d;
    return GKD_OK;
}

gkd_status gkd_store_query_int(gkd_store *s, int64_t *out, const char *sql, const char *types, ...) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_store_query_int: out is NULL");
    store_first f = {0};
    va_list ap;
    va_start(ap, types);
    gkd_status st = store_vquery_first(s, &f, 1, sql, types, ap);
    va_end(ap);
    if (st != GKD_OK) return st;
    *out = f.i;
    return GKD_OK;
}

int gkd_store_row_columns(const gkd_store_row *row) {
    return sqlite3_column_count(row->stmt);
}

const char *gkd_store_row_name(const gkd_store_row *row, int col) {
    return sqlite3_column_name(row->stmt, col);
}

int gkd_store_row_is_null(const gkd_store_row *row, int col) {
    return sqlite3_column_type(row->stmt, col) == SQLITE_NULL;
}

int64_t gkd_store_row_int(const gkd_store_row *row, int col) {
    return sqlite3_column_int64(row->stmt, col);
}

double gkd_store_row_double(const gkd_store_row *row, int col) {
    if (sqlite3_column_type(row->stmt, col) == SQLITE_NULL) return NAN;
    return sqlite3_column_double(row->stmt, col);
}

const char *gkd_store_row_text(const gkd_store_row *row, int col) {
    return (const char *)sqlite3_column_text(row->stmt, col);
}

int gkd_store_row_floats(const gkd_store_row *row, int col, float *out, int cap) {
    if (sqlite3_column_type(row->stmt, col) == SQLITE_NULL) return 0;
    const unsigned char *b = sqlite3_column_blob(row->stmt, col);
    int bytes = sqlite3_column_bytes(row->stmt, col);
    if (bytes % 4 != 0 || (bytes > 0 && !b)) return -1;
    int count = bytes / 4;
    for (int i = 0; i < count && i < cap; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                     (uint32_t)b[4 * i + 3] << 24;
        memcpy(&out[i], &u, 4);
    }
    return count;
}
