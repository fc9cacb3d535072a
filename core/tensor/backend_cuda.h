/* The CUDA backend: the backend table of core/tensor/backend.h on one NVIDIA GPU (cuBLAS for matrix products,
 * own kernels for the rest), plus what a caller needs around it: device info, memory accounting, the
 * sticky error state and the TF32 switch (the older name of the tf32 precision, core/tensor/precision.h).
 * Rules:
 * - Everything runs in order on the legacy default stream; copy_out and sumsq wait for the device,
 *   copy_in returns once the host buffer may be reused, the other ops return once their work is queued.
 * - Ops return void, so a failing CUDA or cuBLAS call is recorded in a sticky per-process error (the
 *   first failure is kept until gkd_backend_cuda_clear_error) and printed to stderr. A failed alloc is
 *   not sticky (the caller may retry smaller): it prints, sets the thread-local gkd error naming the size
 *   and the free memory, and returns NULL. A kernel that faults is reported by the next call that waits
 *   for the device; set GKD_CUDA_SYNC=1 to wait after every op and name the culprit.
 * - Matrix products are exact fp32 by default. Precision tf32 (gkd_backend_set_precision, GKD_PRECISION=tf32,
 *   or the older gkd_backend_cuda_set_tf32(1) and GKD_CUDA_TF32=1) trades precision (10-bit mantissa
 *   inputs) for tensor-core speed; bf16 rounds the operands of the table's matmul and matmul_batched to
 *   bfloat16 into a workspace of the backend and multiplies them with fp32 accumulation. */
#ifndef GKD_BACKEND_CUDA_H
#define GKD_BACKEND_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/tensor/backend.h"
#include "core/base/error.h"

/* The CUDA backend table on the current device (0 unless cudaSetDevice was called first), initialised
 * on the first call; NULL when no device is usable, with the reason in gkd_error_message() and
 * gkd_backend_cuda_last_error(). Static: never freed. */
const gkd_backend *gkd_backend_cuda(void);

/* 1 when be is the CUDA backend's table, for the layers above that pick their own kernels for a table
 * (rl/divergence_device.c). Never initialises CUDA, so asking about another backend costs nothing. */
int gkd_backend_is_cuda(const gkd_backend *be);

/* Number of CUDA devices, 0 when the driver or the device is missing. Does not initialise the backend. */
int gkd_backend_cuda_device_count(void);

typedef struct {
    char name[256];         /* e.g. "NVIDIA H100 80GB HBM3" */
    int device;             /* ordinal */
    int cc_major, cc_minor; /* compute capability */
    int multiprocessors;
    size_t total_bytes; /* device memory, as cudaMemGetInfo reports */
    size_t free_bytes;
    size_t in_use_bytes; /* allocated through the backend table (alloc minus free), workspace included */
    size_t peak_bytes;   /* the largest in_use_bytes so far */
    int runtime_version, driver_version; /* e.g. 13000 */
    int tf32;                            /* 1 when matrix products use TF32 tensor cores */
    int precision;                       /* the gkd_precision of matrix products */
    size_t bf16_workspace_bytes;         /* the bf16 operand workspace, part of in_use_bytes */
} gkd_cuda_info;

/* Fills *out; GKD_ERR_DEVICE (message set) when the backend is unusable. */
gkd_status gkd_backend_cuda_info(gkd_cuda_info *out);

/* Bytes currently allocated through the table (and the backend's own workspace): the memory-leak check. */
size_t gkd_backend_cuda_memory_in_use(void);
/* GKD_CUDA_PROFILE=1: forgets the per-op device time gathered so far (after waiting for the queued work);
 * no-op otherwise. The report is printed to stderr at exit (core/tensor/cuda_profile.cu). */
void gkd_backend_cuda_profile_reset(void);
size_t gkd_backend_cuda_memory_peak(void);

/* 1: precision tf32, cuBLAS may use TF32 tensor cores for fp32 products; 0: precision fp32 (the default;
 * this leaves bf16 too). Returns 1 when the precision was tf32. gkd_backend_set_precision says more. */
int gkd_backend_cuda_set_tf32(int on);

/* Frees the backend's workspaces, the bf16 operands and attention's pointer arrays (each grows again at
 * its next use): for memory-leak checks that compare gkd_backend_cuda_memory_in_use() before and after
 * such work, and to give memory back. */
void gkd_backend_cuda_free_workspace(void);

/* The first CUDA/cuBLAS failure since start or the last clear, naming the operation and its sizes;
 * NULL when there has been none. */
const char *gkd_backend_cuda_last_error(void);
void gkd_backend_cuda_clear_error(void);

/* Waits for all queued work; GKD_OK or GKD_ERR_DEVICE with the failure recorded (and set as the
 * thread-local gkd error). */
gkd_status gkd_backend_cuda_sync(void);

#ifdef __cplusplus
}
#endif

#endif
