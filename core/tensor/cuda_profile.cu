/* GKD_CUDA_PROFILE=1: device time per op of the CUDA backend, printed to stderr when the process exits.
 *
 * Every op of the backend already reports each launch to launched() (backend_cuda.cu) with a message that
 * names it and its sizes; with profiling on, launched() and the copies also call profile_mark(), which
 * records a CUDA event on the (single, in-order) stream. The time between two consecutive events is the
 * device time of the work queued between them, charged to the later mark's label: the op and its sizes
 * (e.g. "cublasSgemm M=16384 N=2304 K=768 batch=1"), so each call site and shape gets its own line. Idle
 * time while the device waits for the host is charged to the next op too; at the shapes worth profiling
 * the host runs ahead and such gaps are small, and the report prints the sum of all lines against the
 * wall time between the first and last event so that any gap shows.
 *
 * Events are harvested (one wait for the newest, then cudaEventElapsedTime over the pending pairs) when
 * the pending list is full and at exit, so profiling adds no wait per op. Resolution is that of CUDA
 * events (about 0.5 us). Not thread-safe beyond what the backend is (one stream, one thread issuing). */
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor/backend_cuda.h"
#include "core/tensor/backend_cuda_impl.cuh"

namespace gkd_cuda {
namespace {

enum { PENDING = 4096, SLOTS = 8192, LABEL = 96 };

struct label_stat {
    char label[LABEL];
    double ms, max_ms;
    long calls;
    int used;
};

struct profile_state {
    int on;
    cudaEvent_t ev[PENDING];
    int key[PENDING]; /* slot of the label charged with the time up to ev[i] */
    int n;            /* events pending; ev[0] is the last harvested one */
    label_stat *slots;
    int n_labels;
    double total_ms; /* first event to last */
};

profile_state P;

uint64_t hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot of label, made on first sight; -1 if the table is full (charged to an "(other)" line). */
int slot_of(const char *label) {
    uint64_t h = hash(label);
    for (int probe = 0; probe < SLOTS; probe++) {
        int i = (int)((h + probe) % SLOTS);
        if (!P.slots[i].used) {
            if (P.n_labels >= SLOTS - 2) return -1;
            P.slots[i].used = 1;
            snprintf(P.slots[i].label, LABEL, "%s", label);
            P.n_labels++;
            return i;
        }
        if (strcmp(P.slots[i].label, label) == 0) return i;
    }
    return -1;
}

void harvest(void) {
    if (P.n < 2) return;
    if (cudaEventSynchronize(P.ev[P.n - 1]) != cudaSuccess) {
        cudaGetLastError();
        P.on = 0; /* a broken device: the error is the backend's to report */
        return;
    }
    for (int i = 1; i < P.n; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, P.ev[i - 1], P.ev[i]) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        P.total_ms += ms;
        int k = P.key[i] >= 0 ? P.key[i] : slot_of("(other)");
        if (k < 0) continue;
        P.slots[k].ms += ms;
        if (ms > P.slots[k].max_ms) P.slots[k].max_ms = ms;
        P.slots[k].calls++;
    }
    cudaEvent_t last = P.ev[P.n - 1];
    P.ev[P.n - 1] = P.ev[0];
    P.ev[0] = last;
    P.n = 1;
}

int by_time(const void *a, const void *b) {
    double x = ((const label_stat *)a)->ms, y = ((const label_stat *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The op's name: the label up to its first " M=", " N=", " rows=" ... (the first word with '=' in it). */
void group_of(const char *label, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = label; *p && n + 1 < cap; p++) {
        if (*p == ' ') {
            const char *q = p + 1;
            while (*q && *q != ' ' && *q != '=') q++;
            if (*q == '=') break;
        }
        out[n++] = *p;
    }
    out[n] = 0;
}

void report(void) {
    if (!P.on) return;
    harvest();
    label_stat *rows = (label_stat *)malloc(SLOTS * sizeof *rows);
    label_stat *groups = (label_stat *)calloc(SLOTS, sizeof *groups);
    if (!rows || !groups) {
        free(rows);
        free(groups);
        return;
    }
    int n = 0, ng = 0;
    double sum = 0;
    for (int i = 0; i < SLOTS; i++) {
        if (!P.slots[i].used) continue;
        rows[n++] = P.slots[i];
        sum += P.slots[i].ms;
        char g[LABEL];
        group_of(P.slots[i].label, g, sizeof g);
        int j = 0;
        while (j < ng && strcmp(groups[j].label, g) != 0) j++;
        if (j == ng) snprintf(groups[ng++].label, LABEL, "%s", g);
        groups[j].ms += P.slots[i].ms;
        groups[j].calls += P.slots[i].calls;
    }
    qsort(rows, n, sizeof *rows, by_time);
    qsort(groups, ng, sizeof *groups, by_time);
    fprintf(stderr, "gkd cuda profile: %.3f ms of device time between the first and last op (%d labels)\n",
            P.total_ms, n);
    fprintf(stderr, "gkd cuda profile, by op:\n%10s %8s %10s %6s  %s\n", "ms", "calls", "us/call", "share",
            "op");
    for (int i = 0; i < ng; i++)
        fprintf(stderr, "%10.3f %8ld %10.2f %5.1f%%  %s\n", groups[i].ms, groups[i].calls,
                1e3 * groups[i].ms / (groups[i].calls ? groups[i].calls : 1), 100 * groups[i].ms / sum,
                groups[i].label);
    fprintf(stderr, "gkd cuda profile, by op and shape (the 40 largest):\n%10s %8s %10s %10s %6s  %s\n", "ms",
            "calls", "us/call", "max us", "share", "op");
    for (int i = 0; i < n && i < 40; i++)
        fprintf(stderr, "%10.3f %8ld %10.2f %10.2f %5.1f%%  %s\n", rows[i].ms, rows[i].calls,
                1e3 * rows[i].ms / (rows[i].calls ? rows[i].calls : 1), 1e3 * rows[i].max_ms,
                100 * rows[i].ms / sum, rows[i].label);
    free(rows);
    free(groups);
}

} // namespace

void profile_init(void) {
    const char *s = getenv("GKD_CUDA_PROFILE");
    if (!s || !s[0] || strcmp(s, "0") == 0) return;
    P.slots = (label_stat *)calloc(SLOTS, sizeof *P.slots);
    if (!P.slots) return;
    for (int i = 0; i < PENDING; i++) {
        if (cudaEventCreate(&P.ev[i]) != cudaSuccess) {
            cudaGetLastError();
            fprintf(stderr, "gkd cuda: GKD_CUDA_PROFILE: cannot create CUDA events; not profiling\n");
            return;
        }
    }
    cudaEventRecord(P.ev[0], 0);
    P.key[0] = -1;
    P.n = 1;
    P.on = 1;
    atexit(report);
    fprintf(stderr, "gkd cuda: GKD_CUDA_PROFILE=1: device time per op goes to stderr at exit\n");
}

void profile_reset(void) {
    if (!P.on) return;
    harvest();
    if (!P.on) return;
    for (int i = 0; i < SLOTS; i++) P.slots[i] = label_stat{};
    P.n_labels = 0;
    P.total_ms = 0;
}

int profile_on(void) {
    return P.on;
}

} // namespace gkd_cuda

extern "C" void gkd_backend_cuda_profile_reset(void) {
    gkd_cuda::profile_reset();
}

namespace gkd_cuda {

void profile_mark_v(const char *what, va_list ap) {
    if (!P.on) return;
    char label[LABEL];
    vsnprintf(label, sizeof label, what, ap);
    if (P.n == PENDING) harvest();
    if (!P.on) return;
    if (cudaEventRecord(P.ev[P.n], 0) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    P.key[P.n++] = slot_of(label);
}

void profile_mark(const char *what, ...) {
    if (!P.on) return;
    va_list ap;
    va_start(ap, what);
    profile_mark_v(what, ap);
    va_end(ap);
}

} // namespace gkd_cuda
