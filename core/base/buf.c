/* The growable byte buffer (see buf.h). Capacity doubles, so n appends cost O(n) copies in all. */
#include "core/base/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gkd_buf_free(gkd_buf *b) {
    if (!b) return;
    free(b->data);
    *b = (gkd_buf){0};
}

static int buf_reserve(gkd_buf *b, size_t extra) {
    if (b->failed) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra + 1) ncap *= 2;
    char *d = realloc(b->data, ncap);
    if (!d) {
        b->failed = 1;
        return 0;
    }
    b->data = d;
    b->cap = ncap;
    return 1;
}

char *gkd_buf_space(gkd_buf *b, size_t n) {
    return buf_reserve(b, n) ? b->data + b->len : NULL;
}

void gkd_buf_put(gkd_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void gkd_buf_puts(gkd_buf *b, const char *s) {
    gkd_buf_put(b, s, strlen(s));
}

void gkd_buf_printf(gkd_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && buf_reserve(b, (size_t)n)) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

gkd_status gkd_buf_check(const gkd_buf *b, const char *what) {
    return b->failed ? gkd_error_set(GKD_ERR_NOMEM, "out of memory %s", what) : GKD_OK;
}
