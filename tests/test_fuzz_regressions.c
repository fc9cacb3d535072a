/* Replays saved inputs through the fuzz harnesses (tests/fuzz/fuzz_<target>.c) without libFuzzer, so every
 * build, gcc's included, runs them: the seed corpora (tests/fuzz/corpus/<target>/) and the reproducers of
 * crashes found and fixed (tests/fuzz/regressions/<target>/). A harness crashes, aborts or trips a sanitizer
 * on a bad input, so reaching the end is the test; each target must have a non-empty corpus.
 * Reproducers of crashes not fixed yet wait in tests/fuzz/regressions/pending/, which is not replayed.
 * `test_fuzz_regressions <target> <file>...` replays the given files only. */
// ctest-labels: cpu
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "tests/check.h"

int gkd_fuzz_data(const uint8_t *data, size_t size);
int gkd_fuzz_gguf(const uint8_t *data, size_t size);
int gkd_fuzz_json(const uint8_t *data, size_t size);
int gkd_fuzz_safetensors(const uint8_t *data, size_t size);
int gkd_fuzz_sample(const uint8_t *data, size_t size);
int gkd_fuzz_tokenizer(const uint8_t *data, size_t size);

static const struct {
    const char *name;
    int (*run)(const uint8_t *, size_t);
} targets[] = {
    {"data", gkd_fuzz_data},     {"gguf", gkd_fuzz_gguf},
    {"json", gkd_fuzz_json},     {"safetensors", gkd_fuzz_safetensors},
    {"sample", gkd_fuzz_sample}, {"tokenizer", gkd_fuzz_tokenizer},
};
enum { N_TARGETS = sizeof targets / sizeof *targets };

static int replay_file(int target, const char *path) {
    char *data = NULL;
    size_t len = 0;
    if (gkd_read_file(path, &data, &len) != GKD_OK) {
        fprintf(stderr, "%s: %s\n", path, gkd_error_message());
        return 0;
    }
    /* a copy of exactly len bytes, so that ASan sees a read past the input */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) abort();
    memcpy(copy, data, len);
    free(data);
    targets[target].run(copy, len);
    free(copy);
    return 1;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every file of dir in name order; returns how many, or -1 when dir cannot be opened. */
static int replay_dir(int target, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names))) abort();
        if (!(names[n++] = strdup(e->d_name))) abort();
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int replayed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        CHECKF(replay_file(target, path), "%s: unreadable", path);
        replayed++;
        free(names[i]);
    }
    free(names);
    return replayed;
}

int main(int argc, char **argv) {
    if (argc >= 3) {
        for (int t = 0; t < N_TARGETS; t++)
            if (strcmp(argv[1], targets[t].name) == 0) {
                for (int i = 2; i < argc; i++) CHECKF(replay_file(t, argv[i]), "%s: unreadable", argv[i]);
                return check_exit();
            }
        fprintf(stderr, "unknown target %s\n", argv[1]);
        return 2;
    }
    for (int t = 0; t < N_TARGETS; t++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", GKD_SOURCE_DIR, targets[t].name);
        int seeds = replay_dir(t, dir);
        CHECKF(seeds > 0, "%s: no seed corpus", dir);
        snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions/%s", GKD_SOURCE_DIR, targets[t].name);
        int regressions = replay_dir(t, dir);
        fprintf(stderr, "%s: %d seeds, %d regressions replayed\n", targets[t].name, seeds,
                regressions < 0 ? 0 : regressions);
    }
    return check_exit();
}
