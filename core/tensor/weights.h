/* Weight formats of inference models (gkd_model_set_weight_format): how the matrices of a model that is
 * only run (a teacher, a frozen reference, a reward model, a sampled model) are stored, and so what its
 * products compute. The format is a setting of the model, never of the backend.
 * - fp32 (the default): the parameter block as loaded; products are the backend's matmul, bit for bit
 *   what a model without this setting computes.
 * - bf16: every matrix is stored rounded to bfloat16 (gkd_bf16_round: nearest, ties to even), 2 bytes a
 *   weight. A product rounds its activation rows to bfloat16 too and accumulates the exact products of
 *   the two in fp32: y[n][o] = sum_k bf16(x[n][k]) bf16(W[o][k]) (what AVX512_BF16 dot products compute;
 *   the core/tensor/precision.h bf16 setting means the same for training products). Only the order of
 *   the fp32 sums differs between paths and thread counts.
 * - q8_0: every matrix is stored as blocks of 32 consecutive weights of a row (GGUF's Q8_0 blocking) with
 *   one fp32 scale d = max|w| / 127 per block and 32 signed bytes q = round(w / d) (half away from zero),
 *   1.125 bytes a weight. Activations stay fp32: y[n][o] = sum over blocks of d_block sum_k q[o][k] x[n][k],
 *   in fp32 (paths group it differently: d q first, or the block's sum first). Rows must be a multiple of 32
 *   long. The integer products of VNNI would need the activations quantised too; q8_0 does not use them.
 * - q8_0_a8: the weights exactly as q8_0 (same blocks, scales and rounding), and each product quantises its
 *   activation rows the same way: per block b of 32 consecutive inputs of row n, dx[n][b] = max|x| / 127
 *   and qx = round(x / dx) half away from zero (computed as x * (1/dx); a block of zeros has dx = 0, qx = 0).
 *   y[n][o] = sum over blocks b of (dx[n][b] dw[o][b]) * S[n][o][b], accumulated in fp32, where
 *   S = sum_k qx qw is an exact int32 sum (what llama.cpp's CPU backend computes for Q8_0 models; AVX-512
 *   VNNI dot products on this kind of CPU). Only the order of the fp32 sums over blocks differs between
 *   paths and thread counts. A second approximation on top of q8_0's: the activations lose precision too.
 * Norm weights, rotary tables, attention and the KV cache stay fp32 in every format; the embedding rows are
 * read from the stored matrix (exactly its stored values, widened to fp32).
 * Rules: a format other than fp32 is an approximation of the checkpoint and must be chosen explicitly;
 * runs record it with their settings. */
#ifndef GKD_WEIGHTS_H
#define GKD_WEIGHTS_H

#include "core/base/error.h"

typedef enum {
    GKD_WEIGHTS_FP32 = 0,
    GKD_WEIGHTS_BF16 = 1,
    GKD_WEIGHTS_Q8_0 = 2,
    GKD_WEIGHTS_Q8_0_A8 = 3,
} gkd_weight_format;

enum { GKD_Q8_0_BLOCK = 32 }; /* weights (and, for q8_0_a8, activations) per q8_0 block */

/* "fp32", "bf16", "q8_0" or "q8_0_a8" -> *out; GKD_ERR_ARG for anything else, the message naming `setting`
 * (the option or key that carried the value, e.g. "--weights") and the names it accepts. */
gkd_status gkd_weight_format_parse(const char *name, const char *setting, gkd_weight_format *out);
/* "fp32", "bf16", "q8_0", "q8_0_a8"; "?" for a value outside the enum. Static string. */
const char *gkd_weight_format_name(gkd_weight_format f);

#endif
