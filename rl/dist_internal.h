/* The backend tables of rl/dist.h, shared between its files. Not part of the public API. */
#ifndef GKD_DIST_INTERNAL_H
#define GKD_DIST_INTERNAL_H

#include "rl/dist.h"

/* rl/dist_mpi.c: starts MPI (once) and fills d: rank, size, local rank, the table (nccl when built with it);
 * or sets the last error. Without MPI (rl/dist.c): GKD_ERR_ARG. */
gkd_status gkd_dist_mpi_start(gkd_dist *d);
/* rl/dist_mpi.c: host collectives over MPI_COMM_WORLD; gradients of a device backend staged through the
 * host. */
extern const gkd_dist_i gkd_dist_mpi;
/* Its entries, which the NCCL table shares (host sums; gradients in host memory). */
gkd_status gkd_dist_mpi_allreduce_f64(gkd_dist *d, double *buf, size_t n);
gkd_status gkd_dist_mpi_allreduce_f32(gkd_dist *d, const gkd_backend *be, float *buf, size_t n);
gkd_status gkd_dist_mpi_broadcast(gkd_dist *d, void *buf, size_t bytes);
gkd_status gkd_dist_mpi_allgather_f64(gkd_dist *d, const double *local, size_t n, double *all);
void gkd_dist_mpi_abort(gkd_dist *d, int code);
/* rl/dist_nccl.c (built with CUDA and NCCL): the MPI table with the device gradient all-reduce on NCCL. */
extern const gkd_dist_i gkd_dist_nccl;

#endif
