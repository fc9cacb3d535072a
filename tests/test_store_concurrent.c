/* Several processes writing one run store at once, as sweep workers do: four forked writers start
 * together on a database that does not exist yet (so they also race to create and migrate it), each
 * logs 20,000 metric rows at full speed in batches plus evals and samples, while the parent reads.
 * Afterwards every row must be there with its exact value, every run finished, and no call may have
 * failed, SQLITE_BUSY included. */
// ctest-labels: cpu
#include "core/store/store.h"
#include "tests/check.h"

#include <dirent.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { WORKERS = 4, STEPS = 10000, NAMES = 2, ROWS_PER_WORKER = STEPS * NAMES, EVAL_EVERY = 1000 };

static char tmpdir[] = "/tmp/gkd-test-store-concurrent-XXXXXX";

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* Each worker's values are distinct integers, so sums identify lost or duplicated rows exactly. */
static double value_of(int worker, int step, int name) {
    return (double)worker * 1e6 + (double)step * NAMES + name;
}

static int worker_fail(int worker, const char *what, gkd_status st) {
    fprintf(stderr, "worker %d: %s failed (%s): %s\n", worker, what, gkd_status_name(st),
            gkd_error_message());
    return 1;
}

static int worker_main(int worker, const char *path, int barrier) {
    char go;
    if (read(barrier, &go, 1) != 0) return 2; /* EOF: the parent let everyone go */
    gkd_store *s = NULL;
    gkd_status st = gkd_store_open(path, &s);
    if (st != GKD_OK) return worker_fail(worker, "open", st);
    char name[32], config[64];
    snprintf(name, sizeof name, "worker-%d", worker);
    snprintf(config, sizeof config, "{\"worker\":%d}", worker);
    int64_t run = 0;
    if ((st = gkd_store_set_flush(s, 200, 0)) != GKD_OK ||
        (st = gkd_store_run_begin(s, name, 0, config, (uint64_t)worker, &run)) != GKD_OK)
        return worker_fail(worker, "run_begin", st);
    static const char *const names[NAMES] = {"loss", "kl"};
    const float logprobs[4] = {-0.5f, -1.5f, -2.5f, -3.5f};
    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < NAMES; k++)
            if ((st = gkd_store_metric(s, run, step, names[k], value_of(worker, step, k))) != GKD_OK)
                return worker_fail(worker, "metric", st);
        if (step % EVAL_EVERY == EVAL_EVERY - 1) {
            gkd_store_sample_row sample = {run, step, NULL, "prompt", "output", 0.5, 4, logprobs, logprobs};
            if ((st = gkd_store_eval(s, run, step, "validation", "rougeL", step)) != GKD_OK)
                return worker_fail(worker, "eval", st);
            if ((st = gkd_store_sample(s, &sample)) != GKD_OK) return worker_fail(worker, "sample", st);
        }
    }
    if ((st = gkd_store_run_finish(s, run, GKD_RUN_STATUS_FINISHED, NULL)) != GKD_OK)
        return worker_fail(worker, "run_finish", st);
    if ((st = gkd_store_close(s)) != GKD_OK) return worker_fail(worker, "close", st);
    return 0;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/runs.db", tmpdir);
    int barrier[2];
    if (pipe(barrier) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        if (pids[w] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[w] == 0) {
            close(barrier[1]);
            _exit(worker_main(w, path, barrier[0]));
        }
    }
    close(barrier[0]);
    double t0 = seconds_now();
    close(barrier[1]);

    /* The parent opens too (a fifth migrator) and reads while the workers write: the row count may
     * only grow, and no read may fail. */
    gkd_store *s = NULL;
    gkd_status st = gkd_store_open(path, &s);
    CHECKF(st == GKD_OK, "parent open: %s", gkd_error_message());
    int running = WORKERS, statuses[WORKERS] = {0}, reads = 0;
    int64_t last_count = 0;
    while (running > 0) {
        for (int w = 0; w < WORKERS; w++) {
            int status;
            if (pids[w] > 0 && waitpid(pids[w], &status, WNOHANG) == pids[w]) {
                statuses[w] = status;
                pids[w] = 0;
                running--;
            }
        }
        if (s) {
            int64_t n = -1;
            st = gkd_store_query_int(s, &n, "SELECT count(*) FROM metrics", NULL);
            CHECKF(st == GKD_OK, "parent read: %s", gkd_error_message());
            CHECKF(n >= last_count, "metric count went from %lld down to %lld", (long long)last_count,
                   (long long)n);
            last_count = n;
            reads++;
        }
        nanosleep(&(struct timespec){0, 5 * 1000000L}, NULL);
    }
    double elapsed = seconds_now() - t0;
    for (int w = 0; w < WORKERS; w++)
        CHECKF(WIFEXITED(statuses[w]) && WEXITSTATUS(statuses[w]) == 0, "worker %d ended with status 0x%x", w,
               statuses[w]);
    if (!s) {
        remove_tmpdir();
        return check_exit();
    }

    int64_t n = 0;
    CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM metrics", NULL) == GKD_OK);
    CHECKF(n == (int64_t)WORKERS * ROWS_PER_WORKER, "%lld metric rows, expected %d", (long long)n,
           WORKERS * ROWS_PER_WORKER);
    CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM runs WHERE status = 'finished'", NULL) == GKD_OK &&
          n == WORKERS);
    CHECK(gkd_store_query_int(s, &n, "SELECT user_version FROM pragma_user_version", NULL) == GKD_OK &&
          n == GKD_STORE_SCHEMA_VERSION);
    for (int w = 0; w < WORKERS; w++) {
        char name[32];
        snprintf(name, sizeof name, "worker-%d", w);
        gkd_store_run_info info;
        st = gkd_store_run_find(s, name, 0, &info);
        CHECKF(st == GKD_OK, "%s", gkd_error_message());
        if (st != GKD_OK) continue;
        CHECK(info.seed == (uint64_t)w && info.last_step == STEPS - 1 &&
              info.status == GKD_RUN_STATUS_FINISHED);
        double expected = 0;
        for (int step = 0; step < STEPS; step++)
            for (int k = 0; k < NAMES; k++) expected += value_of(w, step, k);
        double sum = 0;
        CHECK(gkd_store_query_int(s, &n, "SELECT count(DISTINCT step) FROM metrics WHERE run_id = ?", "i",
                                  info.id) == GKD_OK &&
              n == STEPS);
        CHECK(gkd_store_query_double(s, &sum, "SELECT sum(value) FROM metrics WHERE run_id = ?", "i",
                                     info.id) == GKD_OK);
        CHECKF(sum == expected, "worker %d: sum %.17g, expected %.17g", w, sum, expected);
        CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM evals WHERE run_id = ?", "i", info.id) ==
                  GKD_OK &&
              n == STEPS / EVAL_EVERY);
        CHECK(gkd_store_query_int(s, &n, "SELECT count(*) FROM samples WHERE run_id = ?", "i", info.id) ==
                  GKD_OK &&
              n == STEPS / EVAL_EVERY);
    }
    fprintf(stderr, "%d workers x %d rows in %.2f s (%.0f rows/s), %d concurrent reads\n", WORKERS,
            ROWS_PER_WORKER, elapsed, WORKERS * ROWS_PER_WORKER / elapsed, reads);
    CHECK(gkd_store_close(s) == GKD_OK);
    remove_tmpdir();
    return check_exit();
}
