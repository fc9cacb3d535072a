/* gkd merge: gathers run stores (the per-point databases of a sweep run on Slurm, docs/cluster.md) into
 * one, by gkd_store_merge.
 * Rules: a folder stands for its *.db files and those of its points/ folder, merged in name order; the
 * target itself is never a source. Each file is merged in its own transaction: one that fails (not a
 * gkd store, busy) is reported by name and leaves the target as it was, the others are still merged,
 * and the exit status is 1. A file that holds no store yet is skipped with a note (merge again later).
 * Merging is idempotent: the same files again change nothing. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/store/store.h"

typedef struct {
    char **paths;
    int n, cap;
} path_list;

static int path_add(path_list *l, const char *dir, const char *name) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **p = realloc(l->paths, sizeof *p * (size_t)cap);
        if (!p) return 0;
        l->paths = p;
        l->cap = cap;
    }
    size_t n = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;
    char *s = malloc(n);
    if (!s) return 0;
    if (dir)
        snprintf(s, n, "%s/%s", dir, name);
    else
        snprintf(s, n, "%s", name);
    l->paths[l->n++] = s;
    return 1;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.db files of dir, in name order; 0 when it cannot be read. */
static int list_dir(path_list *l, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int first = l->n;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 3 && strcmp(e->d_name + n - 3, ".db") == 0 && !path_add(l, dir, e->d_name)) break;
    }
    closedir(d);
    qsort(l->paths + first, (size_t)(l->n - first), sizeof *l->paths, by_name);
    return 1;
}

int gkd_cmd_merge(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "merge", argc, argv, 2, "quiet") != 0) return 2;
    const char *db = gkd_cli_str(&a, "db", "runs.db");
    int quiet = gkd_cli_flag(&a, "quiet");
    int rc = gkd_cli_check_unused(&a);
    if (rc) return rc;
    if (a.n_positional < 1) {
        gkd_cli_usage(stderr, "merge");
        return 2;
    }
    path_list files = {0};
    for (int i = 0; i < a.n_positional && rc == 0; i++) {
        const char *p = a.positional[i];
        struct stat sb;
        if (stat(p, &sb) != 0) {
            gkd_cli_error("merge", "%s: no such file or folder", p);
            rc = 2;
        } else if (S_ISDIR(sb.st_mode)) {
            char points[PATH_MAX];
            snprintf(points, sizeof points, "%s/points", p);
            int before = files.n;
            list_dir(&files, p);
            if (stat(points, &sb) == 0 && S_ISDIR(sb.st_mode)) list_dir(&files, points);
            if (files.n == before && !quiet) fprintf(stderr, "gkd merge: %s holds no .db file yet\n", p);
        } else if (!path_add(&files, NULL, p)) {
            rc = 1;
        }
    }
    gkd_store *target = NULL;
    if (rc == 0 && gkd_store_open(db, &target) != GKD_OK) {
        gkd_cli_error("merge", "%s", gkd_error_message());
        rc = 1;
    }
    char self[PATH_MAX], other[PATH_MAX];
    int have_self = rc == 0 && realpath(db, self) != NULL;
    int merged = 0, failed = 0, skipped = 0, added = 0, updated = 0;
    for (int i = 0; rc == 0 && i < files.n; i++) {
        if (have_self && realpath(files.paths[i], other) && strcmp(self, other) == 0) continue;
        gkd_store_merge_stats st;
        if (gkd_store_merge(target, files.paths[i], &st) != GKD_OK) {
            gkd_cli_error("merge", "%s; %s is unchanged by it", gkd_error_message(), db);
            failed++;
        } else if (st.skipped) {
            skipped++;
            if (!quiet)
                printf(
                    "skipped %s: it holds no run store yet (its task has not started); merge again later\n",
                    files.paths[i]);
        } else {
            merged++;
            added += st.runs_added;
            updated += st.runs_updated;
            if (!quiet)
                printf("merged %s: %d run%s added, %d updated\n", files.paths[i], st.runs_added,
                       st.runs_added == 1 ? "" : "s", st.runs_updated);
        }
    }
    if (rc == 0 && gkd_store_close(target) != GKD_OK) {
        gkd_cli_error("merge", "%s", gkd_error_message());
        rc = 1;
    }
    if (rc == 0 && !quiet)
        printf("%s: %d file%s merged (%d runs added, %d updated), %d skipped, %d failed\n", db, merged,
               merged == 1 ? "" : "s", added, updated, skipped, failed);
    for (int i = 0; i < files.n; i++) free(files.paths[i]);
    free(files.paths);
    if (rc == 0 && failed) rc = 1;
    return rc;
}
