/* The choice of instruction set for the float32 divergence rows (divergence_fast.h). */
#include "rl/divergence_fast.h"

#include <stdlib.h>
#include <string.h>

gkd_status gkd_div_fast_select(gkd_div_fast_row_fn *fn, const char **name) {
    static const struct {
        const char *name;
        gkd_div_fast_row_fn fn;
    } isa[] = {{"avx512", gkd_div_fast_row_avx512}, {"avx2", gkd_div_fast_row_avx2}, {"exact", NULL}};
    __builtin_cpu_init();
    int has[3] = {__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"),
                  __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), 1};
    const char *want = getenv("GKD_DIVERGENCE_ISA");
    for (int i = 0; i < 3; i++) {
        if (want && *want ? strcmp(want, isa[i].name) != 0 : !has[i]) continue;
        if (!has[i])
            return gkd_error_set(GKD_ERR_ARG, "GKD_DIVERGENCE_ISA=%s: this CPU cannot run it", want);
        *fn = isa[i].fn;
        *name = isa[i].name;
        return GKD_OK;
    }
    return gkd_error_set(GKD_ERR_ARG, "GKD_DIVERGENCE_ISA=%s is not one of avx512, avx2, exact", want);
}
