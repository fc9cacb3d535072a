/* UTF-8 decoding and encoding (see utf8.h). */
#include "core/base/utf8.h"

size_t gkd_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = GKD_UTF8_INVALID;
        return 1;
    }
    if (len > n) {
        *cp = GKD_UTF8_INVALID;
        return 1;
    }
    for (size_t k = 1; k < len; k++) {
        if ((u[k] & 0xC0) != 0x80) {
            *cp = GKD_UTF8_INVALID;
            return 1;
        }
        v = (v << 6) | (u[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = GKD_UTF8_INVALID;
        return 1;
    }
    *cp = v;
    return len;
}

size_t gkd_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int gkd_utf8_space_len(const char *s, size_t n) {
    if (n == 0) return 0;
    uint32_t cp;
    size_t len = gkd_utf8_decode(s, n, &cp);
    /* Strict decoding gives each of these characters exactly one byte form, so matching the code point is
     * matching the bytes. */
    return gkd_utf8_is_white_space(cp) || (cp >= 0x1C && cp <= 0x1F) ? (int)len : 0;
}
