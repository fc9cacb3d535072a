/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) with cuRAND's
 * counter layout; see rng.h. */
#include "core/base/rng.h"

#include <math.h>

enum {
    PHILOX_M0 = 0xD2511F53u,
    PHILOX_M1 = 0xCD9E8D57u,
    PHILOX_W0 = 0x9E3779B9u,
    PHILOX_W1 = 0xBB67AE85u,
};

void gkd_philox4x32_10(const uint32_t counter[4], uint64_t key, uint32_t out[4]) {
    uint32_t x0 = counter[0], x1 = counter[1], x2 = counter[2], x3 = counter[3];
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * x0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * x2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1;
        x0 = n0;
        x1 = (uint32_t)p1;
        x2 = n2;
        x3 = (uint32_t)p0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = x0;
    out[1] = x1;
    out[2] = x2;
    out[3] = x3;
}

void gkd_rng_init(gkd_rng *rng, uint64_t seed, uint64_t stream) {
    rng->seed = seed;
    rng->stream = stream;
    rng->offset = 0;
}

uint32_t gkd_rng_word(uint64_t seed, uint64_t stream, uint64_t offset) {
    uint64_t block = offset >> 2;
    uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t out[4];
    gkd_philox4x32_10(counter, seed, out);
    return out[offset & 3];
}

uint32_t gkd_rng_u32(gkd_rng *rng) {
    return gkd_rng_word(rng->seed, rng->stream, rng->offset++);
}

float gkd_rng_uniform_from_word(uint32_t word) {
    const float two_pow_minus_32 = 2.3283064e-10f;
    return (float)word * two_pow_minus_32 + two_pow_minus_32 / 2.0f;
}

float gkd_rng_uniform(gkd_rng *rng) {
    return gkd_rng_uniform_from_word(gkd_rng_u32(rng));
}

float gkd_rng_normal(gkd_rng *rng) {
    double u1 = gkd_rng_uniform(rng);
    double u2 = gkd_rng_uniform(rng);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint32_t gkd_rng_below(gkd_rng *rng, uint32_t n) {
    uint32_t limit = UINT32_MAX - (UINT32_MAX % n + 1) % n; /* largest multiple of n, minus 1 */
    for (;;) {
        uint32_t w = gkd_rng_u32(rng);
        if (w <= limit) return w % n;
    }
}

void gkd_rng_shuffle(gkd_rng *rng, int *idx, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)gkd_rng_below(rng, (uint32_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
