/* Which backends have device divergence rows; see divergence_device.h. The CUDA symbols are referenced
 * only when the CUDA backend is compiled in (GKD_HAVE_CUDA), so a CPU-only build links without them. */
#include "rl/divergence_device.h"

#include <stddef.h>

#ifdef GKD_HAVE_CUDA
#include "core/tensor/backend_cuda.h"
#include "rl/divergence_cuda.h"
#endif

const gkd_divergence_device *gkd_divergence_device_for(const gkd_backend *be) {
#ifdef GKD_HAVE_CUDA
    if (gkd_backend_is_cuda(be)) return &gkd_divergence_cuda_device;
#else
    (void)be;
#endif
    return NULL;
}
