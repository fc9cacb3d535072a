/* Thread-local last error: one fixed buffer per thread, so recording an error never allocates. */
#include "core/base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { GKD_ERROR_CAP = 2048 };
static _Thread_local char last_error[GKD_ERROR_CAP];

gkd_status gkd_error_set(gkd_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

gkd_status gkd_error_prefix(gkd_status status, const char *fmt, ...) {
    char old[GKD_ERROR_CAP];
    memcpy(old, last_error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* Append ": old", truncated to what fits (copied by hand: snprintf would warn of the truncation). */
    size_t used = n < 0 ? 0 : (size_t)n < sizeof last_error ? (size_t)n : sizeof last_error - 1;
    const char *sep = ": ";
    for (const char *p = sep; *p && used + 1 < sizeof last_error; p++) last_error[used++] = *p;
    for (const char *p = old; *p && used + 1 < sizeof last_error; p++) last_error[used++] = *p;
    last_error[used] = '\0';
    return status;
}

const char *gkd_error_message(void) {
    return last_error;
}

void gkd_error_clear(void) {
    last_error[0] = '\0';
}

const char *gkd_status_name(gkd_status status) {
    switch (status) {
    case GKD_OK: return "ok";
    case GKD_ERR_IO: return "io error";
    case GKD_ERR_FORMAT: return "format error";
    case GKD_ERR_SHAPE: return "shape error";
    case GKD_ERR_ARG: return "invalid argument";
    case GKD_ERR_NOMEM: return "out of memory";
    case GKD_ERR_DB: return "database error";
    case GKD_ERR_DEVICE: return "device error";
    case GKD_ERR_CALLBACK: return "callback error";
    case GKD_ERR_NOT_FOUND: return "not found";
    }
    return "unknown error";
}
