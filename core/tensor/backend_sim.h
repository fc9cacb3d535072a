/* The simulated-device backend "sim": a debugging aid that checks host code's device-memory discipline
 * on a machine without a GPU. It does the CPU backend's arithmetic, op for op (so every result is the
 * CPU's bit for bit), but the buffers it hands out cannot be read or written by the host: alloc returns
 * the real host allocation shifted by GKD_SIM_OFFSET, which makes the address non-canonical on x86-64,
 * so a direct dereference faults at once (SIGSEGV) while pointer arithmetic (buf + offset) still works.
 * Every op, copy and zero shifts its device pointers back and calls the CPU backend.
 * Rules:
 * - A difference between a run on "sim" and the same run on "cpu", or a crash on "sim", is a bug in the
 *   host code: it touched a backend buffer with the CPU, or took a path that special-cases the CPU
 *   backend.
 * - The pointer arguments that core/tensor/backend.h marks as device must be sim buffers, those marked host
 *   must not be; a swap is reported on stderr naming the op and aborts (on a GPU it would fault or read
 *   garbage).
 * - Its matmul precision (core/tensor/precision.h) is the CPU backend's setting, shared: setting either sets both.
 * - x86-64 only in its guarantee: elsewhere the shifted address may happen to be mapped. */
#ifndef GKD_BACKEND_SIM_H
#define GKD_BACKEND_SIM_H

#include <stdint.h>

#include "core/tensor/backend.h"

/* Added to every host allocation: bit 62 set leaves x86-64's canonical address range (48 or 57 bits). */
#define GKD_SIM_OFFSET ((uintptr_t)1 << 62)

/* The sim backend table, also reached as gkd_backend_by_name("sim"). Static: never freed. */
const gkd_backend *gkd_backend_sim(void);

/* 1 when p lies in the sim backend's address range (a sim device pointer), else 0. */
int gkd_backend_sim_owns(const void *p);

#endif
