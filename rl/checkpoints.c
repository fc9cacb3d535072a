/* A run's checkpoint folder (see checkpoints.h). */
#include "rl/checkpoints.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static gkd_status make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return gkd_error_set(GKD_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return GKD_OK;
}

/* The step of a folder named as gkd_checkpoints_save names them ("step-%08lld", with ".tmp" when `tmp`), or -1. */
static int64_t checkpoint_step(const char *name, int tmp) {
    if (strncmp(name, "step-", 5) != 0) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(name + 5, &end, 10);
    if (errno || v < 0 || end == name + 5 || strcmp(end, tmp ? ".tmp" : "") != 0) return -1;
    char canon[64];
    snprintf(canon, sizeof canon, tmp ? "step-%08lld.tmp" : "step-%08lld", v);
    return strcmp(canon, name) == 0 ? v : -1;
}

static int step_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

void gkd_checkpoints_rotate(const char *dir, int64_t step, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    int64_t *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)) != NULL) {
        int64_t v = checkpoint_step(e->d_name, 1);
        if (v >= 0 && v < step) { /* a save that was killed half-way */
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove_dir(path);
            continue;
        }
        v = checkpoint_step(e->d_name, 0);
        if (v < 0 || v > step) continue;
        if (n == cap) {
            size_t c = cap ? 2 * cap : 16;
            int64_t *grown = realloc(steps, c * sizeof *grown);
            if (!grown) break; /* rotation is housekeeping: the next save tries again */
            steps = grown;
            cap = c;
        }
        steps[n++] = v;
    }
    closedir(d);
    if (n > 0) qsort(steps, n, sizeof *steps, step_desc);
    for (size_t i = (size_t)keep; i < n; i++) {
        if (steps[i] == step) continue;
        snprintf(path, sizeof path, "%s/step-%08lld", dir, (long long)steps[i]);
        remove_dir(path);
    }
    free(steps);
}

gkd_status gkd_checkpoints_save(const gkd_run_target *target, const char *dir, int64_t step, char *path, size_t cap) {
    char tmp[4200];
    snprintf(path, cap, "%s/step-%08lld", dir, (long long)step);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    gkd_status st = make_dirs(dir);
    if (st != GKD_OK) return st;
    remove_dir(tmp);
    if ((st = target->save(target->self, tmp)) != GKD_OK) return st;
    remove_dir(path);
    if (rename(tmp, path) != 0) return gkd_error_set(GKD_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    return GKD_OK;
}
