/* Words as the factual-consistency metric sees them (see text.h): one splitter for the metric
 * (reward/factual.c) and the learned reward model's data (reward/reward_model.c), so both agree on what
 * a word is. */
#include "reward/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Decodes one UTF-8 character; a malformed byte decodes as U+FFFD of length 1. */
static uint32_t utf8_decode(const unsigned char *s, size_t n, int *len) {
    *len = 1;
    if (s[0] < 0x80) return s[0];
    int k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (k == 0 || (size_t)k > n) return 0xfffd;
    uint32_t cp = s[0] & (0x7f >> k);
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0xfffd;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    *len = k;
    return cp;
}

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
    return is_word_char(utf8_decode((const unsigned char *)text + i, n - i, len));
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

void gkd_word_list_free(gkd_word_list *w) {
    if (!w) return;
    free(w->v);
    w->v = NULL;
    w->n = w->cap = 0;
}
