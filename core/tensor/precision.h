/* The precision of matrix products, a setting of each backend (the precision entries of backend.h):
 * - fp32 (the default): exact fp32 products. A CPU backend in fp32 gives the same bits as before this
 *   setting existed.
 * - tf32 (CUDA only): cuBLAS may run fp32 products on TF32 tensor cores, inputs with a 10-bit mantissa.
 * - bf16: both operands of every product made through the table's matmul and matmul_batched (weights
 *   and activations alike) are rounded to bfloat16, round to nearest even, then multiplied with fp32
 *   accumulation into an fp32 result. Parameters, gradients, optimizer moments, activations in memory and
 *   every other op stay fp32: the parameters are the fp32 master weights and only the products' inputs
 *   lose precision. The products inside attention stay fp32 on every backend (the CPU's attention does
 *   not go through matmul, and the CUDA one follows it so the two agree).
 * On the CPU, bf16 rounds copies of the operands (still stored as floats) and calls the same sgemm path:
 * the reference the CUDA bf16 products (cuBLAS, bf16 inputs, fp32 compute) are tested against; the
 * products of bf16 values are exact in fp32, so the two differ only in the order of accumulation.
 * Rules: the setting is per backend and process-wide. Change it between steps, never while another
 * thread runs ops on that backend. GKD_PRECISION=fp32|tf32|bf16 in the environment sets it when a
 * backend initialises; an unknown value, or tf32 on the CPU, is reported on stderr and leaves fp32. */
#ifndef GKD_PRECISION_H
#define GKD_PRECISION_H

#include <stdint.h>
#include <string.h>

#include "core/base/error.h"

typedef struct gkd_backend gkd_backend;

typedef enum {
    GKD_PRECISION_FP32 = 0,
    GKD_PRECISION_TF32,
    GKD_PRECISION_BF16,
} gkd_precision;

/* "fp32", "tf32" or "bf16" -> *out; GKD_ERR_ARG (message lists the names) for anything else. */
gkd_status gkd_precision_parse(const char *name, gkd_precision *out);
/* "fp32", "tf32", "bf16"; "?" for a value outside the enum. Static string. */
const char *gkd_precision_name(gkd_precision p);

/* be's current setting; fp32 for a backend without precision entries. */
gkd_precision gkd_backend_precision(const gkd_backend *be);
/* Sets be's precision. GKD_ERR_ARG (message set) when be does not offer p (tf32 on the CPU; anything but
 * fp32 on a backend without precision entries), leaving the setting as it was. *previous (may be NULL)
 * receives the setting before the call. */
gkd_status gkd_backend_set_precision(const gkd_backend *be, gkd_precision p, gkd_precision *previous);

/* GKD_PRECISION from the environment, for a backend's initialisation: 1 with *out set when it names a
 * precision; 0 when it is unset or empty; 0 with a note on stderr, naming `backend`, when it is not a
 * precision name. */
int gkd_precision_from_env(const char *backend, gkd_precision *out);

/* x rounded to the nearest bfloat16, ties to even, returned as a float holding that value (the upper 16
 * bits of the bit pattern, the lower 16 zero). Subnormals round like any other value (no flush to zero);
 * a finite x beyond the largest bfloat16 by half an ulp or more becomes infinity; infinities stay; a NaN
 * stays a NaN of the same sign (made quiet, so dropping low payload bits cannot turn it into infinity). */
static inline float gkd_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        u = (u | 0x00400000u) & 0xffff0000u;
    } else {
        /* adding just under half an ulp, plus one when the kept part is odd, carries exactly when the
         * dropped part is above half, or equal to half with an odd kept part */
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
    }
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

#endif
