/* UTF-8: the one decoder and encoder of the code base, and the whitespace sets built on them.
 * Rules: decoding is strict (shortest form, scalar values only, no surrogates, at most U+10FFFF); a byte
 * that does not start a valid sequence stands alone as GKD_UTF8_INVALID, so a decoder loop always moves
 * forward and never reads past the given length. */
#ifndef GKD_UTF8_H
#define GKD_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* What gkd_utf8_decode reports for a byte that does not start a valid sequence: not a code point. */
#define GKD_UTF8_INVALID 0xFFFFFFFFu

/* Decodes the character at s[0..n) (n >= 1) into *cp and returns its byte length (1 to 4); a malformed or
 * truncated sequence gives *cp = GKD_UTF8_INVALID and length 1. */
size_t gkd_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Writes the UTF-8 form of cp (at most U+10FFFF) to out[0..4) and returns its length. */
size_t gkd_utf8_encode(uint32_t cp, char *out);

/* Unicode's White_Space property (what Oniguruma's \s matches). Inline: the tokenizer asks it per
 * character. */
static inline int gkd_utf8_is_white_space(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
/* Byte length of the whitespace character at s[0..n) as Python's str.split() and str.rstrip() see it
 * (White_Space plus the separators U+001C..U+001F), or 0 when s does not start with one. */
int gkd_utf8_space_len(const char *s, size_t n);

#endif
