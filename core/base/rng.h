/* Counter-based random numbers: Philox4x32-10, the generator cuRAND calls PHILOX4_32_10.
 * A draw is a pure function of (seed, stream, offset): the 128-bit counter is
 * (offset/4 low, offset/4 high, stream low, stream high) and the key is the 64-bit seed, which is
 * exactly what cuRAND's device API gives after curand_init(seed, subsequence = stream, offset), and
 * what its host generator gives (its output block b is subsequence b % 65536 at counter b / 65536;
 * tests/test_rng.c checks both layouts against libcurand when it is present). So the CPU and CUDA
 * backends draw the same numbers from the same seed, and a run resumes by restoring the offset.
 * Rules: streams separate the uses of randomness of one run (GKD_RNG_STREAM_*); a stream's offset
 * counts 32-bit words and only grows. */
#ifndef GKD_RNG_H
#define GKD_RNG_H

#include <stdint.h>

typedef enum {
    GKD_RNG_STREAM_INIT = 1,   /* parameter initialisation */
    GKD_RNG_STREAM_DATA = 2,   /* data order (shuffles) */
    GKD_RNG_STREAM_LAMBDA = 3, /* the on-policy coin of the GKD step */
    GKD_RNG_STREAM_SAMPLE = 4, /* token sampling */
    GKD_RNG_STREAM_USER = 5,   /* first stream free for other uses (dropout, RL groups, ...) */
} gkd_rng_stream;

typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t offset; /* next 32-bit word of this stream */
} gkd_rng;

/* One Philox4x32-10 block: out = philox(counter, key). */
void gkd_philox4x32_10(const uint32_t counter[4], uint64_t key, uint32_t out[4]);

void gkd_rng_init(gkd_rng *rng, uint64_t seed, uint64_t stream);
/* The 32-bit word at `offset` of (seed, stream), without state. */
uint32_t gkd_rng_word(uint64_t seed, uint64_t stream, uint64_t offset);
uint32_t gkd_rng_u32(gkd_rng *rng);
/* Uniform in (0, 1], as curand_uniform: word * 2^-32 + 2^-33. */
float gkd_rng_uniform(gkd_rng *rng);
float gkd_rng_uniform_from_word(uint32_t word);
/* Standard normal (Box-Muller on two consecutive words). */
float gkd_rng_normal(gkd_rng *rng);
/* Uniform integer in [0, n) (n > 0), by rejection, so no modulo bias. */
uint32_t gkd_rng_below(gkd_rng *rng, uint32_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void gkd_rng_shuffle(gkd_rng *rng, int *idx, int n);

#endif
