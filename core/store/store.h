/* The run store: one SQLite database per project directory (default runs.db) that every run writes
 * its configuration, metrics, evaluations, samples and checkpoints through. docs/schema.md describes
 * the tables, the samples BLOB format and example queries.
 * Rules:
 * - A gkd_store is one connection: use it from one thread, and never across fork() (open a new one in
 *   the child). Several processes may write one database at once; WAL, a 60 s busy timeout, BEGIN
 *   IMMEDIATE transactions and a retry on SQLITE_BUSY make that safe.
 * - Metrics are buffered in memory and written in one transaction by gkd_store_flush(), which runs by
 *   itself every `rows` rows or `seconds` seconds (gkd_store_set_flush), before a query, a truncation
 *   or a run's finish, and at close. Everything else is written when called.
 * - Re-writing a row with the same key replaces it (metrics: run, step, name; evals: run, step, split,
 *   metric; checkpoints: run, step, path): the last write wins. A resumed run first calls
 *   gkd_store_truncate_after() with the step it resumes from, so its rows continue without gaps or
 *   duplicates.
 * - The schema is versioned with PRAGMA user_version and migrated forward on open, one transaction per
 *   version; a database newer than this binary, a file that is not SQLite, and a SQLite database that
 *   is not a gkd run store are refused with a message naming the file.
 * - A NaN value is stored as SQL NULL and reads back as NaN. */
#ifndef GKD_STORE_H
#define GKD_STORE_H

#include "core/base/error.h"

#include <stdint.h>

/* The schema version this binary writes (PRAGMA user_version); see docs/schema.md. */
#define GKD_STORE_SCHEMA_VERSION 3
/* PRAGMA application_id of every gkd run store: "GKDs". */
#define GKD_STORE_APPLICATION_ID 0x474B4473

typedef struct gkd_store gkd_store;

typedef enum {
    GKD_RUN_STATUS_RUNNING = 0,
    GKD_RUN_STATUS_FINISHED,
    GKD_RUN_STATUS_FAILED,
    GKD_RUN_STATUS_INTERRUPTED,
} gkd_run_status;

/* "running", "finished", "failed", "interrupted": the spelling in the runs.status column. */
const char *gkd_run_status_name(gkd_run_status status);

/* Opens (creating if absent) the run store at `path` and migrates it to GKD_STORE_SCHEMA_VERSION;
 * ":memory:" gives a private in-memory store (tests). On success *out is a new store the caller owns
 * (gkd_store_close); on failure *out is NULL. */
gkd_status gkd_store_open(const char *path, gkd_store **out);
/* Opens an existing store for reading only (reports): never creates or migrates, so a store older
 * than this binary is refused too. Every write call on it fails, and SQL cannot write through it
 * (PRAGMA query_only). In a folder where the WAL's -shm file cannot be created (read-only), it reads
 * the database file alone (immutable), unless a non-empty -wal or -journal holds commits not in it:
 * then it is refused naming that file. */
gkd_status gkd_store_open_readonly(const char *path, gkd_store **out);
/* Flushes buffered metrics, finalizes every statement and closes. Returns the flush's status; the
 * store is freed either way. Accepts NULL. */
gkd_status gkd_store_close(gkd_store *store);

/* Automatic flushing: after `rows` buffered metric rows (>= 1), or when the oldest buffered row is
 * `seconds` old (checked at each gkd_store_metric; <= 0 turns the timer off). Defaults: 512, 2.0. */
gkd_status gkd_store_set_flush(gkd_store *store, int rows, double seconds);

/* --- sweeps --- */

/* Records a sweep (its name unique in the store; config_json NULL means "{}") in *sweep_id. */
gkd_status gkd_store_sweep_create(gkd_store *store, const char *name, const char *config_json,
                                  int64_t *sweep_id);
/* GKD_ERR_NOT_FOUND when no sweep has that name. */
gkd_status gkd_store_sweep_find(gkd_store *store, const char *name, int64_t *sweep_id);

/* --- runs --- */

typedef struct {
    int64_t id;
    int64_t sweep_id; /* 0: not part of a sweep */
    uint64_t seed;
    gkd_run_status status;
    int64_t last_step; /* largest step with a metric, -1 if none */
} gkd_store_run_info;

/* Starts a run in status "running", recording its name, sweep (0 for none), full resolved config
 * (JSON; NULL means "{}"), seed (< 2^63), host, process id, GKD_VERSION and the start time. */
gkd_status gkd_store_run_begin(gkd_store *store, const char *name, int64_t sweep_id, const char *config_json,
                               uint64_t seed, int64_t *run_id);
/* Ends a run: flushes its metrics, sets its status (anything but RUNNING), finish time and error
 * message (NULL for none). */
gkd_status gkd_store_run_finish(gkd_store *store, int64_t run_id, gkd_run_status status,
                                const char *error_message);
/* Marks a stopped run running again (this host and process), for resuming it; clears its finish time
 * and error. Pair with gkd_store_truncate_after(). */
gkd_status gkd_store_run_resume(gkd_store *store, int64_t run_id);
/* Records what identifies the run's settings: a hash of its resolved configuration (the prelude's
 * "fnv1a64:<hex>"; NULL clears it), compared when a run of the same name would be reused. */
gkd_status gkd_store_run_set_config_hash(gkd_store *store, int64_t run_id, const char *config_hash);
/* Appends `message` to the run's warnings (a JSON array of strings, e.g. a setting that has no effect),
 * unless the same message is there already. */
gkd_status gkd_store_run_warning(gkd_store *store, int64_t run_id, const char *message);
/* The most recent run named `name` (largest id); sweep_id 0 searches every run, otherwise only that
 * sweep's. GKD_ERR_NOT_FOUND when there is none. */
gkd_status gkd_store_run_find(gkd_store *store, const char *name, int64_t sweep_id, gkd_store_run_info *out);

/* --- per-step rows --- */

/* Buffers one metric row; written at the next flush (see the rules above). */
gkd_status gkd_store_metric(gkd_store *store, int64_t run_id, int64_t step, const char *name, double value);
/* Writes buffered metric rows in one BEGIN IMMEDIATE transaction. On failure nothing is written and
 * the rows stay buffered, so a later flush can retry them. */
gkd_status gkd_store_flush(gkd_store *store);

/* One evaluation result, e.g. (step 200, "validation", "rougeL", 0.31). Written at once. */
gkd_status gkd_store_eval(gkd_store *store, int64_t run_id, int64_t step, const char *split,
                          const char *metric, double value);

/* Where gkd_store_metric_sink writes: one run of a store (store NULL: nowhere). Borrowed. */
typedef struct {
    gkd_store *store;
    int64_t run_id;
} gkd_store_sink;

/* A metric sink of the trainer's kind (gkd_metric_fn, rl/trainer.h) with ctx a gkd_store_sink: split
 * "train" goes to gkd_store_metric (buffered), any other split to gkd_store_eval. Returns non-zero on
 * failure, with the last error set. */
int gkd_store_metric_sink(void *ctx, const char *split, int64_t step, const char *name, double value);

/* One generated sample. Log-probabilities are per output token, natural log; either array may be
 * NULL (not computed). They are stored as little-endian float32 BLOBs of 4 * n_tokens bytes. */
typedef struct {
    int64_t run_id;
    int64_t step;
    const char *split; /* "train" (on-policy samples) or an eval split; NULL means "train" */
    const char *prompt;
    const char *output;
    double reward; /* NaN: none */
    int n_tokens;
    const float *student_logprobs; /* (n_tokens) or NULL */
    const float *teacher_logprobs; /* (n_tokens) or NULL */
} gkd_store_sample_row;

gkd_status gkd_store_sample(gkd_store *store, const gkd_store_sample_row *row);
/* n rows in one transaction (a batch's samples). */
gkd_status gkd_store_samples(gkd_store *store, const gkd_store_sample_row *rows, int n);

/* Records a checkpoint file written at `step` (hash: e.g. "sha256:<hex>", NULL if not computed). */
gkd_status gkd_store_checkpoint(gkd_store *store, int64_t run_id, int64_t step, const char *path,
                                const char *hash);
/* The run's checkpoint with the largest step (ties: the latest recorded). *path is a new string the
 * caller frees. GKD_ERR_NOT_FOUND when the run has none. */
gkd_status gkd_store_checkpoint_latest(gkd_store *store, int64_t run_id, int64_t *step, char **path);

/* Deletes the run's metrics, evals and samples with step > `step` (after flushing), in one
 * transaction. Checkpoint rows are kept: they describe files that still exist. */
gkd_status gkd_store_truncate_after(gkd_store *store, int64_t run_id, int64_t step);

/* --- merging (core/store/store_merge.c) --- */

typedef struct {
    int runs_added;   /* runs new to the target */
    int runs_updated; /* runs the target had from an earlier merge (same uuid), brought up to date */
    int64_t rows_read; /* rows read from the source, all tables */
    int skipped;      /* 1: the file holds no store yet (a task that has not started); nothing was merged */
} gkd_store_merge_stats;

/* Copies the runs of the store at `path` (opened read-only) into `store`, with their metrics, evals,
 * samples, checkpoints, warnings and sweeps, in one transaction: runs are matched by uuid, so merging
 * the same file again updates rows in place and never duplicates or renumbers them (store_merge.c's
 * rules). On failure `store` is unchanged and the message names the file. */
gkd_status gkd_store_merge(gkd_store *store, const char *path, gkd_store_merge_stats *stats);

/* --- reading --- */

/* One result row, valid only inside the callback. Columns count from 0. */
typedef struct gkd_store_row gkd_store_row;
/* Called once per row; return 0 to go on, anything else to stop early (not an error). */
typedef int (*gkd_store_row_fn)(const gkd_store_row *row, void *ctx);

/* Runs one reading SQL statement after flushing buffered metrics, and calls fn per row. Only reads are
 * allowed (SQLite's authorizer, while preparing): tables, views, functions, recursive CTEs, pragma
 * table-valued functions and pragmas that only report; writes (they go through the calls above),
 * ATTACH/DETACH, pragmas that set a value (writable_schema) and transactions are refused with
 * GKD_ERR_ARG naming what was refused (docs/schema.md, "Reading"). `types` names the bound parameters,
 * one letter each: 'i' int64_t (cast literals), 'd' double, 's' const char * (NULL binds SQL NULL); ""
 * or NULL for none. */
gkd_status gkd_store_query(gkd_store *store, gkd_store_row_fn fn, void *ctx, const char *sql,
                           const char *types, ...);
/* The first column of the first row; GKD_ERR_NOT_FOUND when there is no row. NULL reads as NaN. */
gkd_status gkd_store_query_double(gkd_store *store, double *out, const char *sql, const char *types, ...);
/* The first column of the first row; GKD_ERR_NOT_FOUND when there is no row or it is NULL. */
gkd_status gkd_store_query_int(gkd_store *store, int64_t *out, const char *sql, const char *types, ...);

int gkd_store_row_columns(const gkd_store_row *row);
const char *gkd_store_row_name(const gkd_store_row *row, int col);
int gkd_store_row_is_null(const gkd_store_row *row, int col);
int64_t gkd_store_row_int(const gkd_store_row *row, int col);
/* NaN for NULL. */
double gkd_store_row_double(const gkd_store_row *row, int col);
/* NULL for SQL NULL. */
const char *gkd_store_row_text(const gkd_store_row *row, int col);
/* Decodes a float32 BLOB (the samples format) into out[0 .. min(count, cap)) and returns count, the
 * number of floats it holds; 0 for NULL, -1 when the column is not a whole number of floats. */
int gkd_store_row_floats(const gkd_store_row *row, int col, float *out, int cap);

#endif
