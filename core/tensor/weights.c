/* The weight formats' names (weights.h); the packing and the products live in each backend. */
#include "core/tensor/weights.h"

#include <string.h>

static const char *const names[] = {
    [GKD_WEIGHTS_FP32] = "fp32",
    [GKD_WEIGHTS_BF16] = "bf16",
    [GKD_WEIGHTS_Q8_0] = "q8_0",
    [GKD_WEIGHTS_Q8_0_A8] = "q8_0_a8",
};
enum { N_FORMATS = sizeof names / sizeof names[0] };

gkd_status gkd_weight_format_parse(const char *name, const char *setting, gkd_weight_format *out) {
    for (int i = 0; name && i < N_FORMATS; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (gkd_weight_format)i;
            return GKD_OK;
        }
    return gkd_error_set(GKD_ERR_ARG, "%s: unknown weight format '%s' (fp32, bf16, q8_0 or q8_0_a8)",
                         setting ? setting : "weight format", name ? name : "(null)");
}

const char *gkd_weight_format_name(gkd_weight_format f) {
    return (unsigned)f < N_FORMATS ? names[f] : "?";
}
