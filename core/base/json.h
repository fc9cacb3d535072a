/* A small JSON reader (DOM) and writer used for config.json, tokenizer.json, safetensors headers, JSONL
 * datasets and the configs stored in the run database.
 * Rules: the parser accepts RFC 8259 JSON only (no comments, no trailing commas), after an optional UTF-8
 * byte order mark at the start of the text; a failure reports the byte offset, line and column; string
 * values are UTF-8 with their byte length kept (they may contain NUL: a caller that needs a C string checks
 * strlen against len); object keys are C strings, so a key holding \u0000 is refused; numbers are doubles,
 * converted to integers only through gkd_json_integer (a cast of a double out of range is undefined).
 * A gkd_json tree owns all its memory; gkd_json_free accepts NULL. */
#ifndef GKD_JSON_H
#define GKD_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/buf.h"
#include "core/base/error.h"

typedef enum {
    GKD_JSON_NULL,
    GKD_JSON_BOOL,
    GKD_JSON_NUMBER,
    GKD_JSON_STRING,
    GKD_JSON_ARRAY,
    GKD_JSON_OBJECT,
} gkd_json_type;

typedef struct gkd_json gkd_json;
struct gkd_json {
    gkd_json_type type;
    int boolean;
    double number;
    char *string;     /* STRING: NUL-terminated bytes */
    size_t len;       /* STRING: byte length; ARRAY/OBJECT: number of items */
    gkd_json **items; /* ARRAY/OBJECT: the values */
    char **keys;      /* OBJECT: the keys, in file order */
};

/* Parses text[0..len). On success *out owns the tree (free with gkd_json_free). On failure the last error
 * reads "<where>: offset N (line L, column C): what" with `where` naming the source (may be NULL). */
gkd_status gkd_json_parse(const char *text, size_t len, const char *where, gkd_json **out);
/* Reads and parses a whole file. */
gkd_status gkd_json_parse_file(const char *path, gkd_json **out);
void gkd_json_free(gkd_json *v);

/* Object member by key (first match), or NULL when v is not an object or has no such key. */
const gkd_json *gkd_json_get(const gkd_json *v, const char *key);
/* Typed getters: return `fallback` when the member is missing or of another type. */
double gkd_json_get_number(const gkd_json *v, const char *key, double fallback);
/* 1 and *out set when v is a number holding an integer in [min, max]; else 0 (not a number, a fraction, out
 * of range, beyond int64_t), *out untouched. The range is checked in double before any conversion. */
int gkd_json_integer(const gkd_json *v, int64_t min, int64_t max, int64_t *out);
const char *gkd_json_get_string(const gkd_json *v, const char *key, const char *fallback);

/* Appends s[0..n) as a quoted JSON string with escapes. */
void gkd_buf_json_string(gkd_buf *b, const char *s, size_t n);
/* Appends s[0..n) for a terminal: control characters (C0, DEL, and C1 encoded in UTF-8), which could move
 * the cursor, retitle the window or worse, are written as \xNN; newline and tab stay when keep_lines.
 * Everything else is copied as is. For stored or generated text printed to a user. */
void gkd_buf_put_printable(gkd_buf *b, const char *s, size_t n, int keep_lines);
/* Appends a number so that it reads back as the same double (or null for NaN/inf). */
void gkd_buf_json_number(gkd_buf *b, double x);
/* Appends v serialised compactly. */
void gkd_buf_json_value(gkd_buf *b, const gkd_json *v);

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
gkd_status gkd_read_file(const char *path, char **data, size_t *len);

#endif
