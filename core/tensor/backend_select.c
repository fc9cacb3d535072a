/* Backend selection by name; see backend_select.h. The CUDA symbols are referenced only when the CUDA
 * backend is compiled in (GKD_HAVE_CUDA), so a CPU-only build links without the CUDA libraries. */
#include "core/tensor/backend_select.h"

#include <string.h>

#include "core/tensor/backend_sim.h"

#ifdef GKD_HAVE_CUDA
#include "core/tensor/backend_cuda.h"
#endif

int gkd_backend_cuda_compiled(void) {
#ifdef GKD_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

void gkd_backend_profile_reset(const gkd_backend *be) {
#ifdef GKD_HAVE_CUDA
    if (be && gkd_backend_is_cuda(be)) gkd_backend_cuda_profile_reset();
#else
    (void)be;
#endif
}

const gkd_backend *gkd_backend_by_name(const char *name) {
    if (!name || strcmp(name, "auto") == 0) {
#ifdef GKD_HAVE_CUDA
        if (gkd_backend_cuda_device_count() > 0) {
            const gkd_backend *be = gkd_backend_cuda();
            /* a GPU that is present but fails to initialise is an error, not a reason to run slowly */
            if (!be)
                gkd_error_prefix(GKD_ERR_DEVICE, "backend \"auto\": a CUDA device is present but unusable");
            return be;
        }
#endif
        return gkd_backend_cpu();
    }
    if (strcmp(name, "cpu") == 0) return gkd_backend_cpu();
    if (strcmp(name, "sim") == 0) return gkd_backend_sim();
    if (strcmp(name, "cuda") == 0) {
#ifdef GKD_HAVE_CUDA
        const gkd_backend *be = gkd_backend_cuda();
        if (!be) gkd_error_prefix(GKD_ERR_DEVICE, "backend \"cuda\" is unavailable");
        return be;
#else
        gkd_error_set(GKD_ERR_DEVICE, "backend \"cuda\" is unavailable: this gkd was built without CUDA "
                                      "(configure with -DGKD_CUDA=ON on a machine with the CUDA toolkit)");
        return NULL;
#endif
    }
    gkd_error_set(GKD_ERR_ARG, "unknown backend \"%s\" (expected cpu, cuda, auto or sim)", name);
    return NULL;
}
