/* Minimal test harness: CHECK records a failure (with file:line) and continues; check_exit() returns
 * the process status (1 if any check failed). A test that cannot run here calls check_skip(), which
 * exits 77 so CTest reports it skipped. */
#ifndef GKD_TESTS_CHECK_H
#define GKD_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                   \
    do {                                                                                              \
        check_count++;                                                                                \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                   \
            check_failures++;                                                                         \
        }                                                                                             \
    } while (0)

#define CHECKF(cond, ...)                                                                             \
    do {                                                                                              \
        check_count++;                                                                                \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                  \
            fprintf(stderr, __VA_ARGS__);                                                             \
            fputc('\n', stderr);                                                                      \
            check_failures++;                                                                         \
        }                                                                                             \
    } while (0)

static inline int check_exit(void) {
    fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures);
    if (check_count == 0) return 1; /* a test that checked nothing has shown nothing */
    return check_failures ? 1 : 0;
}

static inline void check_skip(const char *why) {
    fprintf(stderr, "SKIPPED: %s\n", why);
    exit(77);
}

#endif
