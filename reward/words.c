/* Words as the factual-consistency metric sees them (see text.h): one splitter for the metric
 * (reward/factual.c) and the learned reward model's data (reward/reward_model.c), so both agree on what
 * a word is. */
#include "reward/text.h"

#include "core/base/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int is_ascii_alnum(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Letters and digits; outside ASCII, everything but the punctuation and symbol blocks a package
 * description is likely to contain (Latin-1 signs, general punctuation, arrows to dingbats, CJK
 * punctuation, fullwidth ASCII punctuation). */
static int is_word_char(uint32_t c) {
    if (c < 0x80) return is_ascii_alnum(c);
    if (c <= 0xbf || c == 0xd7 || c == 0xf7) return 0;
    if (c >= 0x2000 && c <= 0x2bff) return 0;
    if (c >= 0x3000 && c <= 0x303f) return 0;
    if (c >= 0xfe30 && c <= 0xfe6f) return 0;
    if (c >= 0xff00 && c <= 0xff20) return 0;
    return c != 0xfffd;
}

int gkd_word_is_joiner(char c) {
    return c == '.' || c == '-' || c == '_' || c == '\'';
}

static gkd_status word_list_push(gkd_word_list *w, gkd_word x) {
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 32;
        gkd_word *v = realloc(w->v, (size_t)cap * sizeof *v);
        if (!v) return gkd_error_set(GKD_ERR_NOMEM, "factual: word list of %d words", cap);
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = x;
    return GKD_OK;
}

static int word_char_at(const char *text, size_t n, size_t i, int *len) {
    if (i >= n) return 0;
    /* Malformed UTF-8 (core/base/utf8.h's strict decoder: overlong forms and surrogates included) is one
     * byte of U+FFFD, which is not a word character. */
    uint32_t cp;
    *len = (int)gkd_utf8_decode(text + i, n - i, &cp);
    return is_word_char(cp == GKD_UTF8_INVALID ? 0xfffd : cp);
}

gkd_status gkd_words_split(const char *text, size_t n, gkd_word_list *out) {
    size_t i = 0;
    out->n = 0;
    int at_start = 1, len;
    while (i < n) {
        if (!word_char_at(text, n, i, &len)) {
            if (text[i] == '.' || text[i] == '!' || text[i] == '?') at_start = 1;
            i += (size_t)len;
            continue;
        }
        size_t start = i;
        i += (size_t)len;
        for (;;) {
            if (word_char_at(text, n, i, &len))
                i += (size_t)len;
            else if (i < n && gkd_word_is_joiner(text[i]) && word_char_at(text, n, i + 1, &len))
                i += 1 + (size_t)len;
            else
                break;
        }
        size_t j = i;
        while (j < n && (text[j] == '+' || text[j] == '#')) j++;
        if (j > i && !word_char_at(text, n, j, &len)) i = j;
        gkd_status st = word_list_push(out, (gkd_word){start, i - start, at_start});
        if (st != GKD_OK) return st;
        at_start = 0;
    }
    return GKD_OK;
}

static int is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

size_t gkd_word_lower(const char *s, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    return len;
}

size_t gkd_word_fold(char *w, size_t len) {
    if (len > 2 && w[len - 2] == '\'' && w[len - 1] == 's') len -= 2;
    if (len > 4 && memcmp(w + len - 3, "ies", 3) == 0 && is_letter(w[len - 4])) {
        w[len - 3] = 'y';
        return len - 2;
    }
    if (len > 3 && w[len - 1] == 's' && is_letter(w[len - 2]) && w[len - 2] != 's' && w[len - 2] != 'u' &&
        w[len - 2] != 'i')
        return len - 1;
    return len;
}

size_t gkd_word_key(const char *s, size_t len, char *out) {
    len = gkd_word_fold(out, gkd_word_lower(s, len, out));
    out[len] = '\0';
    return len;
}

int gkd_key_view_cmp(const void *pa, const void *pb) {
    const gkd_key_view *a = pa, *b = pb;
    int n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, (size_t)n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

void gkd_word_list_free(gkd_word_list *w) {
    if (!w) return;
    free(w->v);
    w->v = NULL;
    w->n = w->cap = 0;
}
