/* The process group and its collectives (see dist.h): launcher detection, the "none" table, the wrappers.
 * Rules: launcher detection reads the environment only; nothing here starts MPI except gkd_dist_world
 * under a launcher that announced more than one rank. */
#include "rl/dist.h"
#include "rl/dist_internal.h"

#include <stdlib.h>
#include <string.h>

static gkd_status none_f64(gkd_dist *d, double *buf, size_t n) {
    (void)d, (void)buf, (void)n;
    return GKD_OK;
}

static gkd_status none_f32(gkd_dist *d, const gkd_backend *be, float *buf, size_t n) {
    (void)d, (void)be, (void)buf, (void)n;
    return GKD_OK;
}

static gkd_status none_broadcast(gkd_dist *d, void *buf, size_t bytes) {
    (void)d, (void)buf, (void)bytes;
    return GKD_OK;
}

static gkd_status none_allgather(gkd_dist *d, const double *local, size_t n, double *all) {
    (void)d;
    if (all != local) memcpy(all, local, n * sizeof *all);
    return GKD_OK;
}

static void none_abort(gkd_dist *d, int code) {
    (void)d, (void)code;
}

static const gkd_dist_i dist_none = {"none", none_f64, none_f32, none_broadcast, none_allgather, none_abort};

/* A positive integer from the environment, or 0. */
static int env_int(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    return *end == '\0' && x > 0 && x < 1 << 24 ? (int)x : 0;
}

int gkd_dist_launched_size(int *found) {
    /* OpenMPI's mpirun, MPICH/Intel MPI (PMI), srun's job step (SLURM_STEP_NUM_TASKS is the step's, not the
     * allocation's: a batch script run without srun is one process however many tasks it holds). */
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int n = env_int(sizes[i]);
        if (n > 0 && (i < 2 || getenv("SLURM_PROCID"))) {
            if (found) *found = 1;
            return n;
        }
    }
    /* PMIx launchers (prterun, srun --mpi=pmix) name the rank but not the size: only MPI can tell. */
    if (found) *found = getenv("PMIX_RANK") != NULL;
    return getenv("PMIX_RANK") ? 0 : 1;
}

int gkd_dist_compiled(void) {
#if defined(GKD_HAVE_MPI) && defined(GKD_HAVE_NCCL)
    return 2;
#elif defined(GKD_HAVE_MPI)
    return 1;
#else
    return 0;
#endif
}

static gkd_dist world;
static int started;

gkd_dist *gkd_dist_started(void) {
    return started ? &world : NULL;
}

void gkd_dist_abort(gkd_dist *d, int code) {
    if (d && d->size > 1) d->iface->abort(d, code);
}

gkd_status gkd_dist_world(gkd_dist **out) {
    if (started) {
        *out = &world;
        return GKD_OK;
    }
    int found = 0;
    int size = gkd_dist_launched_size(&found);
    if (found && size != 1) {
        if (!gkd_dist_compiled())
            return gkd_error_set(
                GKD_ERR_ARG,
                "launched as one of %s ranks (mpirun/srun), but this gkd was built without MPI: "
                "the ranks would train %s independent copies of the run; rebuild with MPI "
                "(libopenmpi-dev; docs/data-parallel.md) or run one process",
                size > 1 ? "several" : "an unknown number of", size > 1 ? "as many" : "several");
        gkd_status st = gkd_dist_mpi_start(&world);
        if (st != GKD_OK) return st;
    } else {
        world = (gkd_dist){&dist_none, 0, 1, 0, NULL};
    }
    started = 1;
    *out = &world;
    return GKD_OK;
}

gkd_status gkd_dist_allreduce_f64(gkd_dist *d, double *buf, size_t n) {
    return d && d->size > 1 && n > 0 ? d->iface->allreduce_f64(d, buf, n) : GKD_OK;
}

gkd_status gkd_dist_allreduce_f32(gkd_dist *d, const gkd_backend *be, float *buf, size_t n) {
    return d && d->size > 1 && n > 0 ? d->iface->allreduce_f32(d, be, buf, n) : GKD_OK;
}

gkd_status gkd_dist_broadcast(gkd_dist *d, void *buf, size_t bytes) {
    return d && d->size > 1 && bytes > 0 ? d->iface->broadcast(d, buf, bytes) : GKD_OK;
}

gkd_status gkd_dist_allgather_f64(gkd_dist *d, const double *local, size_t n, double *all) {
    if (d && d->size > 1) return d->iface->allgather_f64(d, local, n, all);
    return none_allgather(d, local, n, all);
}

int gkd_dist_rank(const gkd_dist *d) {
    return d ? d->rank : 0;
}

int gkd_dist_size(const gkd_dist *d) {
    return d ? d->size : 1;
}

#ifndef GKD_HAVE_MPI
gkd_status gkd_dist_mpi_start(gkd_dist *d) {
    (void)d;
    return gkd_error_set(GKD_ERR_ARG, "this gkd was built without MPI");
}
#endif
