/* The growable byte buffer: JSON, tokenizer.json, reports and metric text are all built in one.
 * Rules: a zeroed gkd_buf is empty and ready; the contents stay NUL-terminated once anything (even zero
 * bytes) was appended; an allocation failure sets `failed`, after which appends do nothing, so a writer
 * checks once at the end (gkd_buf_check) instead of after every append. gkd_buf_free accepts NULL. */
#ifndef GKD_BUF_H
#define GKD_BUF_H

#include <stddef.h>

#include "core/base/error.h"

typedef struct {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: the contents are incomplete */
} gkd_buf;

void gkd_buf_free(gkd_buf *b);
void gkd_buf_put(gkd_buf *b, const char *s, size_t n);
void gkd_buf_puts(gkd_buf *b, const char *s);
void gkd_buf_printf(gkd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Room for n more bytes (plus the terminating NUL) at the end: returns where they go, or NULL once an
 * allocation failed. The caller adds what it wrote to b->len and terminates it. For readers (fread). */
char *gkd_buf_space(gkd_buf *b, size_t n);
/* GKD_OK, or GKD_ERR_NOMEM with the last error naming `what` when an append failed. */
gkd_status gkd_buf_check(const gkd_buf *b, const char *what);

#endif
