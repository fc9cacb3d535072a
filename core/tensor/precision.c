/* The precision setting's names and its backend-independent entry points; see precision.h. The
 * arithmetic lives in each backend. */
#include "core/tensor/precision.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/tensor/backend.h"

static const char *const names[] = {
    [GKD_PRECISION_FP32] = "fp32",
    [GKD_PRECISION_TF32] = "tf32",
    [GKD_PRECISION_BF16] = "bf16",
};
enum { N_PRECISIONS = sizeof names / sizeof names[0] };

gkd_status gkd_precision_parse(const char *name, gkd_precision *out) {
    for (int i = 0; name && i < N_PRECISIONS; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (gkd_precision)i;
            return GKD_OK;
        }
    return gkd_error_set(GKD_ERR_ARG, "unknown precision '%s' (fp32, tf32 or bf16)", name ? name : "(null)");
}

const char *gkd_precision_name(gkd_precision p) {
    return (unsigned)p < N_PRECISIONS ? names[p] : "?";
}

gkd_precision gkd_backend_precision(const gkd_backend *be) {
    return be && be->precision ? be->precision() : GKD_PRECISION_FP32;
}

gkd_status gkd_backend_set_precision(const gkd_backend *be, gkd_precision p, gkd_precision *previous) {
    if (!be) return gkd_error_set(GKD_ERR_ARG, "gkd_backend_set_precision: backend is NULL");
    if ((unsigned)p >= N_PRECISIONS)
        return gkd_error_set(GKD_ERR_ARG, "precision %d is not a gkd_precision", (int)p);
    gkd_precision was = gkd_backend_precision(be);
    if (be->set_precision) {
        gkd_status st = be->set_precision(p);
        if (st != GKD_OK) return st;
    } else if (p != GKD_PRECISION_FP32) {
        return gkd_error_set(GKD_ERR_ARG, "the %s backend offers fp32 matrix products only, not %s", be->name,
                             names[p]);
    }
    if (previous) *previous = was;
    return GKD_OK;
}

int gkd_precision_from_env(const char *backend, gkd_precision *out) {
    const char *s = getenv("GKD_PRECISION");
    if (!s || !s[0]) return 0;
    if (gkd_precision_parse(s, out) == GKD_OK) return 1;
    fprintf(stderr, "gkd %s: GKD_PRECISION=%s is not fp32, tf32 or bf16; matrix products stay fp32\n",
            backend, s);
    gkd_error_clear();
    return 0;
}
