/* Recursive-descent JSON parser and writer. Depth is bounded so that a hostile file cannot exhaust the
 * stack; every error carries offset, line and column. */
#include "core/base/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/utf8.h"

enum { JSON_MAX_DEPTH = 256 };

typedef struct {
    const char *p, *start, *end;
    const char *where;
    int depth;
} parser;

static gkd_status parse_error(parser *ps, const char *what) {
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    const char *where = ps->where ? ps->where : "json";
    size_t offset = (size_t)(ps->p - ps->start);
    if (line == 1) /* one-line texts (a JSONL record, a safetensors header): the column says it all */
        return gkd_error_set(GKD_ERR_FORMAT, "%s: offset %zu (column %zu): %s", where, offset, col, what);
    return gkd_error_set(GKD_ERR_FORMAT, "%s: offset %zu (line %zu, column %zu): %s", where, offset, line, col, what);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static gkd_json *new_value(gkd_json_type type) {
    gkd_json *v = calloc(1, sizeof *v);
    if (v) v->type = type;
    return v;
}

void gkd_json_free(gkd_json *v) {
    if (!v) return;
    for (size_t i = 0; i < v->len && v->items; i++) {
        gkd_json_free(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
    free(v);
}

static int hex4(const char *p, unsigned *out) {
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') x |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = x;
    return 1;
}

/* Parses a string at ps->p (which points at the opening quote) into a fresh buffer. */
static gkd_status parse_string_raw(parser *ps, char **out, size_t *out_len) {
    ps->p++; /* opening quote */
    const char *q = ps->p;
    size_t cap = 0;
    while (q < ps->end && *q != '"') { /* upper bound of the decoded size */
        if (*q == '\\') q++;
        q++;
        cap++;
    }
    char *buf = malloc(cap * 4 + 1);
    if (!buf) return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing a JSON string");
    size_t n = 0;
    for (;;) {
        if (ps->p >= ps->end) {
            free(buf);
            return parse_error(ps, "unterminated string");
        }
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) {
            free(buf);
            return parse_error(ps, "control character in string");
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            ps->p++;
            continue;
        }
        if (ps->p + 1 >= ps->end) {
            free(buf);
            return parse_error(ps, "unterminated escape");
        }
        char e = ps->p[1];
        ps->p += 2;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (ps->end - ps->p < 4 || !hex4(ps->p, &cp)) {
                free(buf);
                return parse_error(ps, "bad \\u escape");
            }
            ps->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u' && hex4(ps->p + 2, &lo) &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    ps->p += 6;
                } else {
                    cp = 0xFFFD; /* lone surrogate: replacement character, as most decoders do */
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            n += gkd_utf8_encode(cp, buf + n);
            break;
        }
        default:
            free(buf);
            ps->p -= 2;
            return parse_error(ps, "unknown escape");
        }
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return GKD_OK;
}

static gkd_status parse_value(parser *ps, gkd_json **out);

static gkd_status push_item(gkd_json *v, size_t *cap, gkd_json *item, char *key) {
    if (v->len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        gkd_json **items = realloc(v->items, ncap * sizeof *items);
        if (!items) return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing JSON");
        v->items = items;
        if (v->type == GKD_JSON_OBJECT) {
            char **keys = realloc(v->keys, ncap * sizeof *keys);
            if (!keys) return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing JSON");
            v->keys = keys;
        }
        *cap = ncap;
    }
    v->items[v->len] = item;
    if (v->keys) v->keys[v->len] = key;
    v->len++;
    return GKD_OK;
}

static gkd_status parse_container(parser *ps, gkd_json **out, int is_object) {
    if (++ps->depth > JSON_MAX_DEPTH) return parse_error(ps, "nesting too deep");
    gkd_json *v = new_value(is_object ? GKD_JSON_OBJECT : GKD_JSON_ARRAY);
    if (!v) return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing JSON");
    size_t cap = 0;
    char close = is_object ? '}' : ']';
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        *out = v;
        return GKD_OK;
    }
    for (;;) {
        char *key = NULL;
        size_t key_len;
        gkd_status st;
        skip_ws(ps);
        if (is_object) {
            if (ps->p >= ps->end || *ps->p != '"') {
                gkd_json_free(v);
                return parse_error(ps, "expected a string key");
            }
            const char *key_at = ps->p;
            if ((st = parse_string_raw(ps, &key, &key_len)) != GKD_OK) {
                gkd_json_free(v);
                return st;
            }
            if (strlen(key) != key_len) { /* keys are C strings: a NUL would cut the key silently */
                free(key);
                gkd_json_free(v);
                ps->p = key_at;
                return parse_error(ps, "\\u0000 (NUL) in an object key is not supported");
            }
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(key);
                gkd_json_free(v);
                return parse_error(ps, "expected ':'");
            }
            ps->p++;
        }
        gkd_json *item = NULL;
        if ((st = parse_value(ps, &item)) != GKD_OK) {
            free(key);
            gkd_json_free(v);
            return st;
        }
        if ((st = push_item(v, &cap, item, key)) != GKD_OK) {
            free(key);
            gkd_json_free(item);
            gkd_json_free(v);
            return st;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        gkd_json_free(v);
        return parse_error(ps, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    ps->depth--;
    *out = v;
    return GKD_OK;
}

static gkd_status parse_number(parser *ps, gkd_json **out) {
    const char *q = ps->p;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || !(*q >= '0' && *q <= '9')) return parse_error(ps, "invalid number");
    if (*q == '0') q++;
    else
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9')) return parse_error(ps, "invalid number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9')) return parse_error(ps, "invalid number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    char tmp[64];
    size_t n = (size_t)(q - ps->p);
    char *text = n < sizeof tmp ? tmp : malloc(n + 1);
    if (!text) return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing JSON");
    memcpy(text, ps->p, n);
    text[n] = '\0';
    gkd_json *v = new_value(GKD_JSON_NUMBER);
    if (!v) {
        if (text != tmp) free(text);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing JSON");
    }
    v->number = strtod(text, NULL);
    if (text != tmp) free(text);
    if (isinf(v->number)) { /* e.g. 1e999: no consumer has a use for it, and it would pass as infinity */
        free(v);
        return parse_error(ps, "number out of the range of a double");
    }
    ps->p = q;
    *out = v;
    return GKD_OK;
}

static gkd_status parse_literal(parser *ps, const char *word, gkd_json_type type, int boolean, gkd_json **out) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return parse_error(ps, "unexpected token");
    gkd_json *v = new_value(type);
    if (!v) return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing JSON");
    v->boolean = boolean;
    ps->p += n;
    *out = v;
    return GKD_OK;
}

static gkd_status parse_value(parser *ps, gkd_json **out) {
    skip_ws(ps);
    if (ps->p >= ps->end) return parse_error(ps, "unexpected end of input");
    switch (*ps->p) {
    case '{': return parse_container(ps, out, 1);
    case '[': return parse_container(ps, out, 0);
    case '"': {
        gkd_json *v = new_value(GKD_JSON_STRING);
        if (!v) return gkd_error_set(GKD_ERR_NOMEM, "out of memory parsing JSON");
        gkd_status st = parse_string_raw(ps, &v->string, &v->len);
        if (st != GKD_OK) {
            free(v);
            return st;
        }
        *out = v;
        return GKD_OK;
    }
    case 't': return parse_literal(ps, "true", GKD_JSON_BOOL, 1, out);
    case 'f': return parse_literal(ps, "false", GKD_JSON_BOOL, 0, out);
    case 'n': return parse_literal(ps, "null", GKD_JSON_NULL, 0, out);
    default: return parse_number(ps, out);
    }
}

gkd_status gkd_json_parse(const char *text, size_t len, const char *where, gkd_json **out) {
    parser ps = {text, text, text + len, where, 0};
    /* RFC 8259 lets a parser ignore a leading byte order mark; editors on Windows write one. Offsets
     * still count from the first byte of the text. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ps.p += 3;
    gkd_json *v = NULL;
    gkd_status st = parse_value(&ps, &v);
    if (st != GKD_OK) return st;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        gkd_json_free(v);
        return parse_error(&ps, "trailing characters after the JSON value");
    }
    *out = v;
    return GKD_OK;
}

gkd_status gkd_read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return gkd_error_set(GKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 16 };
    gkd_buf b = {0};
    for (;;) {
        char *at = gkd_buf_space(&b, CHUNK);
        if (!at) {
            fclose(f);
            gkd_buf_free(&b);
            return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory reading", path);
        }
        size_t got = fread(at, 1, CHUNK, f);
        b.len += got;
        b.data[b.len] = '\0';
        if (got < CHUNK) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        gkd_buf_free(&b);
        return gkd_error_set(GKD_ERR_IO, "%s: read error", path);
    }
    *data = b.data;
    *len = b.len;
    return GKD_OK;
}

gkd_status gkd_json_parse_file(const char *path, gkd_json **out) {
    char *text;
    size_t len;
    gkd_status st = gkd_read_file(path, &text, &len);
    if (st != GKD_OK) return st;
    st = gkd_json_parse(text, len, path, out);
    free(text);
    return st;
}

const gkd_json *gkd_json_get(const gkd_json *v, const char *key) {
    if (!v || v->type != GKD_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < v->len; i++)
        if (strcmp(v->keys[i], key) == 0) return v->items[i];
    return NULL;
}

int gkd_json_integer(const gkd_json *v, int64_t min, int64_t max, int64_t *out) {
    if (!v || v->type != GKD_JSON_NUMBER) return 0;
    double x = v->number;
    /* [-2^63, 2^63) converts to int64_t exactly; anything else (NaN included) fails here, before a cast */
    if (!(x >= -0x1p63 && x < 0x1p63) || x != floor(x)) return 0;
    int64_t i = (int64_t)x;
    if (i < min || i > max) return 0;
    *out = i;
    return 1;
}

double gkd_json_get_number(const gkd_json *v, const char *key, double fallback) {
    const gkd_json *x = gkd_json_get(v, key);
    return x && x->type == GKD_JSON_NUMBER ? x->number : fallback;
}

const char *gkd_json_get_string(const gkd_json *v, const char *key, const char *fallback) {
    const gkd_json *x = gkd_json_get(v, key);
    return x && x->type == GKD_JSON_STRING ? x->string : fallback;
}

void gkd_buf_json_string(gkd_buf *b, const char *s, size_t n) {
    gkd_buf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        gkd_buf_put(b, s + i - run, run);
        run = 0;
        switch (c) {
        case '"': gkd_buf_puts(b, "\\\""); break;
        case '\\': gkd_buf_puts(b, "\\\\"); break;
        case '\n': gkd_buf_puts(b, "\\n"); break;
        case '\r': gkd_buf_puts(b, "\\r"); break;
        case '\t': gkd_buf_puts(b, "\\t"); break;
        default: gkd_buf_printf(b, "\\u%04x", c);
        }
    }
    gkd_buf_put(b, s + n - run, run);
    gkd_buf_put(b, "\"", 1);
}

void gkd_buf_put_printable(gkd_buf *b, const char *s, size_t n, int keep_lines) {
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* C1 controls (U+0080..U+009F, bytes C2 80..C2 9F) start escape sequences on some terminals too */
        uint32_t cp;
        int c1 = c == 0xC2 && gkd_utf8_decode(s + i, n - i, &cp) == 2 && cp <= 0x9F;
        if (!c1 && (c >= 0x20 || (keep_lines && (c == '\n' || c == '\t'))) && c != 0x7F) {
            run++;
            continue;
        }
        gkd_buf_put(b, s + i - run, run);
        run = 0;
        gkd_buf_printf(b, "\\x%02x", c);
        if (c1) gkd_buf_printf(b, "\\x%02x", (unsigned char)s[++i]);
    }
    gkd_buf_put(b, s + n - run, run);
}

void gkd_buf_json_number(gkd_buf *b, double x) {
    if (!isfinite(x)) {
        gkd_buf_puts(b, "null");
    } else if (fabs(x) < 1e15 && x == (double)(long long)x) { /* range first: the cast is UB beyond 2^63 */
        gkd_buf_printf(b, "%lld", (long long)x);
    } else {
        gkd_buf_printf(b, "%.17g", x);
    }
}

void gkd_buf_json_value(gkd_buf *b, const gkd_json *v) {
    switch (v->type) {
    case GKD_JSON_NULL: gkd_buf_puts(b, "null"); break;
    case GKD_JSON_BOOL: gkd_buf_puts(b, v->boolean ? "true" : "false"); break;
    case GKD_JSON_NUMBER: gkd_buf_json_number(b, v->number); break;
    case GKD_JSON_STRING: gkd_buf_json_string(b, v->string, v->len); break;
    case GKD_JSON_ARRAY:
    case GKD_JSON_OBJECT:
        gkd_buf_put(b, v->type == GKD_JSON_ARRAY ? "[" : "{", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) gkd_buf_put(b, ",", 1);
            if (v->type == GKD_JSON_OBJECT) {
                gkd_buf_json_string(b, v->keys[i], strlen(v->keys[i]));
                gkd_buf_put(b, ":", 1);
            }
            gkd_buf_json_value(b, v->items[i]);
        }
        gkd_buf_put(b, v->type == GKD_JSON_ARRAY ? "]" : "}", 1);
        break;
    }
}
