/* Status codes and the thread-local last error shared by every fallible gkd call.
 * Rules: a failing call records a message naming the file, line, field or tensor at fault with
 * gkd_error_set() and returns the status; callers that add context use gkd_error_prefix(). The
 * library never exits and never aborts on bad input. */
#ifndef GKD_ERROR_H
#define GKD_ERROR_H

typedef enum {
    GKD_OK = 0,
    GKD_ERR_IO,      /* a file could not be opened, read or written */
    GKD_ERR_FORMAT,  /* malformed input: checkpoint, JSON, dataset, tokenizer */
    GKD_ERR_SHAPE,   /* a tensor has the wrong shape or dtype */
    GKD_ERR_ARG,     /* a bad setting or argument */
    GKD_ERR_NOMEM,   /* an allocation failed */
    GKD_ERR_DB,      /* SQLite failed */
    GKD_ERR_DEVICE,  /* the accelerator failed (CUDA) */
    GKD_ERR_CALLBACK, /* a caller-supplied function failed: a reward, metric, schedule or hook (in C or a script) */
    GKD_ERR_NOT_FOUND,
} gkd_status;

/* Records a printf-style message as the calling thread's last error and returns `status`. */
gkd_status gkd_error_set(gkd_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "<context>: " to the last error message; returns `status` unchanged. */
gkd_status gkd_error_prefix(gkd_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last error message ("" if none). Valid until the next gkd call. */
const char *gkd_error_message(void);
void gkd_error_clear(void);
const char *gkd_status_name(gkd_status status);

#endif
