/* Shared by the fuzz harnesses (tests/fuzz/fuzz_<target>.c, docs/fuzzing.md).
 * Rules:
 * - A harness is `int gkd_fuzz_<target>(const uint8_t *data, size_t size)`: it feeds the bytes to the reader
 *   under test, checks nothing but the absence of crashes, leaks and undefined behaviour (the sanitizers
 *   report those), always returns 0, and frees everything it made.
 * - Built with GKD_FUZZ_LIBFUZZER it also defines LLVMFuzzerTestOneInput (GKD_FUZZ_ENTRY); without it the
 *   harnesses are linked into tests/test_fuzz_regressions.c, which replays saved inputs.
 * - Readers that only take a path read the input from a memfd through /proc/self/fd, so no file is
 *   written to disk per execution. */
#ifndef GKD_TESTS_FUZZ_H
#define GKD_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/tensor/model.h"

#ifdef GKD_FUZZ_LIBFUZZER
#define GKD_FUZZ_ENTRY(target)                                                                               \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                                            \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {                                           \
        return gkd_fuzz_##target(data, size);                                                                \
    }
#else
#define GKD_FUZZ_ENTRY(target)
#endif

/* Replaces the contents of a per-harness memfd with data[0..size) and returns a path that opens it
 * ("/proc/self/fd/N", static storage). A failure here is the machine's, not the input's: it aborts. */
static inline const char *gkd_fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create(name, MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) abort();
    for (size_t done = 0; done < size;) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n <= 0) abort();
        done += (size_t)n;
    }
    return path;
}

/* 1 when a model of configuration c is small enough to create per execution (4M floats of parameters and as
 * many of rotary tables). A file may declare any size up to GKD_MODEL_MAX_*; creating a model that big is
 * allowed and would only exhaust the fuzzer's memory limit. Counted in double, so no product wraps. */
static inline int gkd_fuzz_model_is_small(const gkd_model_config *c) {
    double C = c->dim, F = c->hidden_dim, V = c->vocab_size;
    double kv = c->n_heads > 0 ? C * c->n_kv_heads / c->n_heads : 0;
    double params =
        V * C * (c->tied_embeddings ? 1 : 2) + c->n_layers * (2 * C * C + 2 * C * kv + 3 * C * F + 2 * C);
    return params <= (double)(1 << 22) && (double)c->max_seq_len * C <= (double)(1 << 22);
}

#endif
