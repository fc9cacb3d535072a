/* Picks a backend table by name, for the CLI and the Lua layer: "cpu", "cuda", or "auto" (CUDA when a
 * usable GPU is present and the CUDA backend is compiled in, else CPU); and "sim", a debugging aid
 * (core/tensor/backend_sim.h): the CPU's arithmetic behind device pointers the host cannot dereference, so host
 * code that touches a backend buffer directly crashes on a machine without a GPU instead of on one.
 * Rules: asking for "cuda" never falls back silently; it fails with a message saying why (not compiled
 * in, no device, initialisation failed). Builds with and without GKD_HAVE_CUDA. */
#ifndef GKD_BACKEND_SELECT_H
#define GKD_BACKEND_SELECT_H

#include "core/tensor/backend.h"
#include "core/base/error.h"

/* The backend named `name` (NULL means "auto"); NULL with GKD_ERR_ARG (unknown name) or GKD_ERR_DEVICE
 * (CUDA unavailable) in gkd_error_message(). The tables are static: never freed. */
const gkd_backend *gkd_backend_by_name(const char *name);

/* 1 when this build includes the CUDA backend. */
int gkd_backend_cuda_compiled(void);

/* Forgets the device-time profile gathered so far (GKD_CUDA_PROFILE=1, docs/gpu.md), e.g. after a
 * warm-up step whose one-time costs (allocation, lazily loaded kernels, cuBLAS's first calls) would
 * otherwise be charged to the ops they precede. Does nothing on another backend or without profiling. */
void gkd_backend_profile_reset(const gkd_backend *be);

#endif
