/* Philox4x32-10: the C generator against cuRAND's host generator (when libcurand is linked) in both
 * counter layouts it promises (rng.h), plus statistical sanity of the derived draws. */
#include "core/base/rng.h"
#include "tests/check.h"

#include <stdint.h>
#include <string.h>

#ifdef GKD_HAVE_CURAND
#include <curand.h>

static void check_against_curand(uint64_t seed) {
    curandGenerator_t gen;
    if (curandCreateGeneratorHost(&gen, CURAND_RNG_PSEUDO_PHILOX4_32_10) != CURAND_STATUS_SUCCESS) {
        fprintf(stderr, "cuRAND host generator unavailable; cross-check not run\n");
        return;
    }
    curandSetPseudoRandomGeneratorSeed(gen, seed);
    /* The host generator lays out 65536 subsequences side by side: block b is subsequence b % 65536
     * at counter b / 65536. Reading past 65536 blocks exercises both counter words. */
    const size_t n = (size_t)4 * 65536 * 3;
    uint32_t *words = malloc(n * sizeof *words);
    CHECK(curandGenerate(gen, words, n) == CURAND_STATUS_SUCCESS);
    int mismatches = 0;
    for (size_t i = 0; i < n; i += 4099) {
        size_t block = i / 4;
        uint64_t stream = block % 65536, offset = 4 * (block / 65536) + i % 4;
        if (gkd_rng_word(seed, stream, offset) != words[i]) mismatches++;
    }
    CHECKF(mismatches == 0, "%d words differ from cuRAND (seed %llu)", mismatches, (unsigned long long)seed);
    float uniform[8];
    curandSetGeneratorOffset(gen, 0);
    CHECK(curandGenerateUniform(gen, uniform, 8) == CURAND_STATUS_SUCCESS);
    gkd_rng rng;
    gkd_rng_init(&rng, seed, 0);
    for (int i = 0; i < 4; i++) {
        float u = gkd_rng_uniform(&rng);
        CHECKF(u == uniform[i], "uniform %d: %.9g vs cuRAND %.9g", i, u, uniform[i]);
    }
    free(words);
    curandDestroyGenerator(gen);
}
#endif

int main(void) {
    /* Known-answer: the stream/offset layout must not depend on how words are drawn. */
    gkd_rng a;
    gkd_rng_init(&a, 42, GKD_RNG_STREAM_SAMPLE);
    for (uint64_t i = 0; i < 100; i++) CHECK(gkd_rng_u32(&a) == gkd_rng_word(42, GKD_RNG_STREAM_SAMPLE, i));
    CHECK(gkd_rng_word(42, 1, 0) != gkd_rng_word(42, 2, 0));
    CHECK(gkd_rng_word(42, 1, 0) != gkd_rng_word(43, 1, 0));

    /* Moments of uniform and normal draws: 1e5 draws, tolerances ~5 standard errors. */
    gkd_rng r;
    gkd_rng_init(&r, 7, GKD_RNG_STREAM_USER);
    double su = 0, su2 = 0, sn = 0, sn2 = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = gkd_rng_uniform(&r);
        CHECK(u > 0.0 && u <= 1.0);
        su += u;
        su2 += u * u;
        double z = gkd_rng_normal(&r);
        sn += z;
        sn2 += z * z;
    }
    CHECKF(fabs(su / n - 0.5) < 5 * 0.2887 / sqrt(n), "uniform mean %g", su / n);
    CHECKF(fabs(su2 / n - 1.0 / 3.0) < 0.005, "uniform E[u^2] %g", su2 / n);
    CHECKF(fabs(sn / n) < 5.0 / sqrt(n), "normal mean %g", sn / n);
    CHECKF(fabs(sn2 / n - 1.0) < 5 * sqrt(2.0 / n), "normal variance %g", sn2 / n);

    int idx[10], seen[10] = {0};
    for (int i = 0; i < 10; i++) idx[i] = i;
    gkd_rng_shuffle(&r, idx, 10);
    for (int i = 0; i < 10; i++) seen[idx[i]]++;
    for (int i = 0; i < 10; i++) CHECK(seen[i] == 1);

#ifdef GKD_HAVE_CURAND
    check_against_curand(1234);
    check_against_curand(0x123456789abcdefULL);
#else
    fprintf(stderr, "libcurand not found at build time: cuRAND cross-check not run\n");
#endif
    return check_exit();
}
