/* What store.c and store_query.c share inside core/store: the store's handle and the statement ids it
 * caches. Private to core/store; nothing outside includes it.
 * Rules: see store.c's. */
#ifndef GKD_STORE_INTERNAL_H
#define GKD_STORE_INTERNAL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "core/store/store.h"

enum {
    /* Retries after SQLITE_BUSY surfaced despite the busy handler (it returns at once for some
     * conditions, e.g. another connection recovering the WAL). */
    STORE_BUSY_RETRIES = 50,
};

typedef enum {
    STMT_METRIC_INSERT,
    STMT_EVAL_INSERT,
    STMT_SAMPLE_INSERT,
    STMT_CHECKPOINT_INSERT,
    STMT_CHECKPOINT_LATEST,
    STMT_RUN_INSERT,
    STMT_RUN_FINISH,
    STMT_RUN_RESUME,
    STMT_RUN_SET_HASH,
    STMT_RUN_WARNING,
    STMT_RUN_FIND,
    STMT_SWEEP_INSERT,
    STMT_SWEEP_FIND,
    STMT_JSON_VALID,
    STMT_TRUNCATE_METRICS,
    STMT_TRUNCATE_EVALS,
    STMT_TRUNCATE_SAMPLES,
    STMT_COUNT,
} store_stmt_id;

typedef struct {
    int64_t run_id, step;
    double value;
    size_t name_at; /* offset of the name in names */
} store_metric_row;

struct gkd_store {
    sqlite3 *db;
    char *path;
    int readonly;
    sqlite3_stmt *stmts[STMT_COUNT];
    char host[256];

    store_metric_row *pending; /* buffered metric rows, in call order */
    int n_pending, cap_pending;
    char *names; /* their names, NUL-terminated, back to back */
    size_t names_len, names_cap;
    int flush_rows;
    double flush_seconds;
    double pending_since; /* monotonic seconds of the oldest buffered row */

    unsigned char *scratch; /* encoded log-prob BLOBs of the sample being written */
    size_t scratch_cap;
};

struct gkd_store_row {
    sqlite3_stmt *stmt;
};

/* Whether an SQLite result code is SQLITE_BUSY (extended codes included). */
int gkd_store_busy(int rc);
/* Backoff before retrying a surfaced SQLITE_BUSY: 10 ms doubling to 640 ms. */
void gkd_store_backoff(int attempt);
/* Binds v, or NULL for a NaN. */
void gkd_store_bind_double(sqlite3_stmt *stmt, int i, double v);

#endif
