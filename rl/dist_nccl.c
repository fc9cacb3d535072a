/* The "nccl" backend of rl/dist.h: the device gradient block summed by ncclAllReduce, everything else over
 * MPI (rl/dist_mpi.c). Built only with CUDA, NCCL and MPI (GKD_HAVE_NCCL); this machine has no GPU, so
 * it is compiled here and run on GPU machines (docs/data-parallel.md).
 * Rules: the communicator is made on the first device all-reduce, on the device current then (bind one
 * GPU per rank before the models are created: docs/data-parallel.md), from an ncclUniqueId that rank 0
 * makes and broadcasts over MPI; gradients of the CPU backend (host memory) take MPI's path. The call
 * waits for the reduction to finish, so the optimizer reads summed gradients. */
#include "rl/dist.h"
#include "rl/dist_internal.h"

#if defined(GKD_HAVE_NCCL) && defined(GKD_HAVE_MPI)
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>
#include <stdlib.h>

static ncclComm_t comm;
static int comm_ready;

static gkd_status nccl_failed(ncclResult_t r, const char *what) {
    return gkd_error_set(GKD_ERR_DEVICE, "%s: %s", what, ncclGetErrorString(r));
}

static void nccl_finish(void) {
    if (comm_ready) ncclCommDestroy(comm);
    comm_ready = 0;
}

static gkd_status nccl_comm(gkd_dist *d) {
    if (comm_ready) return GKD_OK;
    ncclUniqueId id;
    ncclResult_t r;
    if (d->rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) return nccl_failed(r, "ncclGetUniqueId");
    gkd_status st = gkd_dist_mpi_broadcast(d, &id, sizeof id);
    if (st != GKD_OK) return gkd_error_prefix(st, "broadcasting the ncclUniqueId");
    if ((r = ncclCommInitRank(&comm, d->size, id, d->rank)) != ncclSuccess)
        return nccl_failed(r, "ncclCommInitRank");
    comm_ready = 1;
    /* registered after MPI's finaliser, so it runs first (atexit is last in, first out) */
    atexit(nccl_finish);
    return GKD_OK;
}

static gkd_status nccl_allreduce_f32(gkd_dist *d, const gkd_backend *be, float *buf, size_t n) {
    if (be == gkd_backend_cpu()) return gkd_dist_mpi_allreduce_f32(d, be, buf, n);
    gkd_status st = nccl_comm(d);
    if (st != GKD_OK) return st;
    /* the default stream: the backend's kernels run on it, so the gradients are complete when it starts */
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, comm, 0);
    if (r != ncclSuccess) return nccl_failed(r, "ncclAllReduce (gradients)");
    cudaError_t e = cudaStreamSynchronize(0);
    if (e != cudaSuccess) return gkd_error_set(GKD_ERR_DEVICE, "ncclAllReduce: %s", cudaGetErrorString(e));
    return GKD_OK;
}

const gkd_dist_i gkd_dist_nccl = {"nccl",
                                  gkd_dist_mpi_allreduce_f64,
                                  nccl_allreduce_f32,
                                  gkd_dist_mpi_broadcast,
                                  gkd_dist_mpi_allgather_f64,
                                  gkd_dist_mpi_abort};
#endif
