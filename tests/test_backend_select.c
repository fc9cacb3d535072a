/* gkd_backend_by_name: the names it knows, its refusal of others, and that asking for "cuda" where it
 * cannot be had fails with a message saying why instead of falling back to the CPU. Runs with and
 * without the CUDA backend compiled in, GPU or not. */
// ctest-labels: cpu
#include <stdio.h>
#include <string.h>

#include "core/tensor/backend.h"
#include "core/tensor/backend_select.h"
#include "tests/check.h"

int main(void) {
    CHECK(gkd_backend_by_name("cpu") == gkd_backend_cpu());
    CHECK(strcmp(gkd_backend_by_name("cpu")->name, "cpu") == 0);

    gkd_error_clear();
    CHECK(gkd_backend_by_name("tpu") == NULL);
    CHECKF(strstr(gkd_error_message(), "unknown backend \"tpu\""), "message: %s", gkd_error_message());

    const gkd_backend *cuda = gkd_backend_by_name("cuda");
    if (cuda) {
        CHECK(gkd_backend_cuda_compiled());
        CHECK(strcmp(cuda->name, "cuda") == 0);
    } else {
        CHECKF(strstr(gkd_error_message(), "backend \"cuda\" is unavailable"), "message: %s",
               gkd_error_message());
        fprintf(stderr, "cuda unavailable here, as expected without a GPU: %s\n", gkd_error_message());
    }

    /* auto: the GPU when there is a usable one, else the CPU; never NULL on a machine without a GPU */
    const gkd_backend *any = gkd_backend_by_name("auto");
    CHECK(any == (cuda ? cuda : gkd_backend_cpu()));
    CHECK(gkd_backend_by_name(NULL) == any);
    return check_exit();
}
