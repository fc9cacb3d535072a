/* The "mpi" backend of rl/dist.h: MPI_COMM_WORLD, started on first use under a launcher.
 * Rules: MPI_Init_thread asks for MPI_THREAD_FUNNELED (only the thread that trains calls MPI; OpenMP teams
 * never do); MPI_Finalize runs at exit. Gradients in host memory are reduced in place; gradients of a
 * device backend go through one host buffer kept for the run (this backend has no device path: that is
 * NCCL's, rl/dist_nccl.c). */
#include "rl/dist.h"
#include "rl/dist_internal.h"

#ifdef GKD_HAVE_MPI
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

/* MPI counts are int: larger buffers go in pieces of at most this many elements. */
enum { MPI_PIECE = 1 << 30 };

typedef struct {
    float *host; /* (cap) staging for device gradients */
    size_t cap;
} mpi_state;

static mpi_state state;

static gkd_status mpi_failed(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return gkd_error_set(GKD_ERR_IO, "%s: %.*s", what, len, msg);
}

gkd_status gkd_dist_mpi_allreduce_f64(gkd_dist *d, double *buf, size_t n) {
    (void)d;
    for (size_t at = 0; at < n; at += MPI_PIECE) {
        int count = n - at < MPI_PIECE ? (int)(n - at) : MPI_PIECE;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Allreduce (sums)");
    }
    return GKD_OK;
}

static gkd_status host_allreduce_f32(float *buf, size_t n) {
    for (size_t at = 0; at < n; at += MPI_PIECE) {
        int count = n - at < MPI_PIECE ? (int)(n - at) : MPI_PIECE;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Allreduce (gradients)");
    }
    return GKD_OK;
}

gkd_status gkd_dist_mpi_allreduce_f32(gkd_dist *d, const gkd_backend *be, float *buf, size_t n) {
    (void)d;
    if (be == gkd_backend_cpu()) return host_allreduce_f32(buf, n);
    if (n > state.cap) {
        float *p = realloc(state.host, n * sizeof *p);
        if (!p)
            return gkd_error_set(GKD_ERR_NOMEM, "out of memory (%zu bytes to stage gradients)",
                                 n * sizeof *p);
        state.host = p;
        state.cap = n;
    }
    be->copy_out(state.host, buf, n * sizeof *buf);
    gkd_status st = host_allreduce_f32(state.host, n);
    if (st == GKD_OK) be->copy_in(buf, state.host, n * sizeof *buf);
    return st;
}

gkd_status gkd_dist_mpi_broadcast(gkd_dist *d, void *buf, size_t bytes) {
    (void)d;
    for (size_t at = 0; at < bytes; at += MPI_PIECE) {
        int count = bytes - at < MPI_PIECE ? (int)(bytes - at) : MPI_PIECE;
        int rc = MPI_Bcast((char *)buf + at, count, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Bcast");
    }
    return GKD_OK;
}

gkd_status gkd_dist_mpi_allgather_f64(gkd_dist *d, const double *local, size_t n, double *all) {
    (void)d;
    if (n > INT_MAX) return gkd_error_set(GKD_ERR_ARG, "MPI_Allgather: %zu values per rank is too many", n);
    int rc = MPI_Allgather(local, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? GKD_OK : mpi_failed(rc, "MPI_Allgather");
}

void gkd_dist_mpi_abort(gkd_dist *d, int code) {
    (void)d;
    MPI_Abort(MPI_COMM_WORLD, code);
}

const gkd_dist_i gkd_dist_mpi = {"mpi",
                                 gkd_dist_mpi_allreduce_f64,
                                 gkd_dist_mpi_allreduce_f32,
                                 gkd_dist_mpi_broadcast,
                                 gkd_dist_mpi_allgather_f64,
                                 gkd_dist_mpi_abort};

static void mpi_finish(void) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
    free(state.host);
    state.host = NULL;
    state.cap = 0;
}

gkd_status gkd_dist_mpi_start(gkd_dist *d) {
    int started = 0, provided = 0;
    MPI_Initialized(&started);
    if (!started) {
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "MPI_Init_thread");
        atexit(mpi_finish);
    }
    /* Errors come back as codes (and become gkd statuses) instead of aborting the job. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm node;
    d->local_rank = d->rank;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_rank(node, &d->local_rank);
        MPI_Comm_free(&node);
    }
#ifdef GKD_HAVE_NCCL
    d->iface = &gkd_dist_nccl;
#else
    d->iface = &gkd_dist_mpi;
#endif
    d->impl = &state;
    return GKD_OK;
}
#endif
