/* The CPU backend's packed weights (weights.h): the entries backend_cpu.c puts in its table, the
 * instruction-set kernels of packed_cpu_avx512.c, and two hooks for tests and benchmarks.
 * Rules: the kernels are called only when the CPU reports their instruction sets (checked once, at the
 * first call); every path computes the format's product as weights.h defines it, so paths differ only in
 * the order of fp32 sums. */
#ifndef GKD_PACKED_CPU_H
#define GKD_PACKED_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor/weights.h"

size_t gkd_packed_cpu_bytes(gkd_weight_format format, int rows, int cols);
void gkd_packed_cpu_pack(void *dst, const float *w, gkd_weight_format format, int rows, int cols);
size_t gkd_packed_cpu_scratch_bytes(gkd_weight_format format, int N, int in);
void gkd_packed_cpu_matmul(float *y, int ldy, const float *x, int ldx, const void *w,
                           gkd_weight_format format, int N, int out, int in, void *scratch);
void gkd_packed_cpu_rows(float *out, const int *tokens, const void *w, gkd_weight_format format, int N, int V,
                         int C);

/* Which path a product of N rows takes now: "onednn" (bf16 through oneDNN's matmul), "avx512_bf16" (own
 * AVX512_BF16 dot products), "avx512" (own AVX-512 q8_0 kernel), "avx512_vnni" (own q8_0_a8 kernel) or
 * "portable" (weights widened to fp32 a tile at a time, then sgemm; for q8_0_a8, plain C integer block sums).
 * Static string. */
const char *gkd_packed_cpu_path(gkd_weight_format format, int N);
/* on = 1: every product takes the portable path (tests compare it with the others); 0: the fastest the CPU
 * offers. Not thread-safe: set it while no product runs. */
void gkd_packed_cpu_force_portable(int on);

/* packed_cpu_avx512.c, compiled for AVX512F/BW/VL/BF16; called only on a CPU that has them.
 * xb: (N, in) bf16 rows; w: (out, in) bf16; y: (N, ldy). Output rows [o0, o1) only. */
void gkd_packed_avx512_bf16_rows(float *y, int ldy, const uint16_t *xb, const uint16_t *w, int N, int in,
                                 int o0, int o1);
/* dst: (n) bf16 <- src: (n) fp32, rounded as gkd_bf16_round does (ties to even, subnormals kept). */
void gkd_packed_avx512_round_bf16(uint16_t *dst, const float *src, size_t n);
/* q: (out, in) int8, d: (out, in/32) scales; x: (N, ldx) fp32; y: (N, ldy). Output rows [o0, o1) only. */
void gkd_packed_avx512_q8_0_rows(float *y, int ldy, const float *x, int ldx, const int8_t *q, const float *d,
                                 int N, int in, int o0, int o1);

/* packed_cpu_vnni.c, compiled for AVX512F/BW/VL/VNNI; called only on a CPU that has them.
 * xq: (in) activations of one row quantised as weights.h's q8_0_a8 says, stored qx + 128; dx: (in/32)
 * their scales; x: (in) fp32, in a multiple of 32. */
void gkd_packed_vnni_quantize_a8(uint8_t *xq, float *dx, const float *x, int in);
/* xq: (N, in) quantised rows (qx + 128), dx: (N, in/32); q, d, c: the three parts of an (out, in) matrix
 * packed as q8_0_a8 (packed_cpu.c's layout); y: (N, ldy). Output features [o0, o1) only; o0 a multiple of 16,
 * o1 at most out. */
void gkd_packed_vnni_q8_0_a8_rows(float *y, int ldy, const uint8_t *xq, const float *dx, const int8_t *q,
                                  const float *d, const int32_t *c, int N, int in, int o0, int o1);

#endif
