/* Data-parallel communication: the process group a training run is launched in (mpirun, srun), and the
 * few collectives the trainer needs. A backend is a table (gkd_dist_i): "none" (one process), "mpi"
 * (MPI_Allreduce on host buffers; gradients of a device backend are staged through the host) and "nccl"
 * (ncclAllReduce on the device gradient block, its ncclUniqueId broadcast over MPI; host sums over MPI).
 * docs/data-parallel.md says how to run, what is sharded and what each collective costs.
 * Rules:
 * - MPI starts only when a launcher started this process with more than one rank: its environment says so
 *   (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, or srun's SLURM_STEP_NUM_TASKS with SLURM_PROCID). A plain
 *   run never calls MPI_Init (no start-up cost, no MPI warnings). MPI is finalised at exit (atexit).
 * - A binary built without MPI that finds itself launched as one of several ranks refuses (GKD_ERR_ARG):
 *   N independent copies of one run would write N copies of its results.
 * - Every collective is called by every rank in the same order; the sums are over ranks in rank order, so
 *   every rank gets the same bits.
 * - Rank 0 is the one that writes: the run store, checkpoints, the progress line.
 * - A rank that fails ends the whole job (gkd_dist_abort): the others would wait for it forever. */
#ifndef GKD_DIST_H
#define GKD_DIST_H

#include <stddef.h>

#include "core/base/error.h"
#include "core/tensor/backend.h"

typedef struct gkd_dist gkd_dist;

/* The backend's entries; each may assume size > 1 (the "none" table is used otherwise). */
typedef struct {
    const char *name;
    /* buf: (n) host, summed over ranks in place. */
    gkd_status (*allreduce_f64)(gkd_dist *d, double *buf, size_t n);
    /* buf: (n) memory of backend `be` (the gradient block), summed over ranks in place. */
    gkd_status (*allreduce_f32)(gkd_dist *d, const gkd_backend *be, float *buf, size_t n);
    /* buf: (bytes) host, rank 0's copy given to every rank. */
    gkd_status (*broadcast)(gkd_dist *d, void *buf, size_t bytes);
    /* local: (n) host from each rank; all: (size * n) host out, rank r's values at r * n. */
    gkd_status (*allgather_f64)(gkd_dist *d, const double *local, size_t n, double *all);
    /* Ends every rank of the job with `code`; does not return. */
    void (*abort)(gkd_dist *d, int code);
} gkd_dist_i;

struct gkd_dist {
    const gkd_dist_i *iface;
    int rank, size;
    int local_rank; /* rank among the processes of this node (GPU binding) */
    void *impl;     /* the backend's own state */
};

/* The process group of this process, started on first call and kept until exit (the caller does not
 * free it). A process not launched as one of several ranks gets the "none" group: rank 0 of 1.
 * GKD_ERR_ARG when launched as one of several ranks by a binary built without MPI, or when MPI fails to
 * start. */
gkd_status gkd_dist_world(gkd_dist **out);
/* The group if gkd_dist_world has started it, else NULL (starts nothing). */
gkd_dist *gkd_dist_started(void);
/* Ends the whole job (MPI_Abort) when d has several ranks, after the caller has printed why; returns at once
 * otherwise. For a rank that fails: exiting normally would hang the job, since MPI_Finalize at exit waits
 * for ranks that wait in turn for this one in a collective. The bindings call it when a script fails. */
void gkd_dist_abort(gkd_dist *d, int code);
/* The number of ranks the launcher's environment announces (1 when there is none), and whether one was
 * found; read without starting MPI. */
int gkd_dist_launched_size(int *found);
/* 1 when this binary was built with MPI (and 2 with NCCL as well), else 0. */
int gkd_dist_compiled(void);

/* The collectives of d->iface; with d NULL or d->size == 1 they do nothing and succeed. */
gkd_status gkd_dist_allreduce_f64(gkd_dist *d, double *buf, size_t n);
gkd_status gkd_dist_allreduce_f32(gkd_dist *d, const gkd_backend *be, float *buf, size_t n);
gkd_status gkd_dist_broadcast(gkd_dist *d, void *buf, size_t bytes);
gkd_status gkd_dist_allgather_f64(gkd_dist *d, const double *local, size_t n, double *all);
int gkd_dist_rank(const gkd_dist *d); /* 0 for NULL */
int gkd_dist_size(const gkd_dist *d); /* 1 for NULL */

#endif
