/* Pre-tokenizers: the hand-written scanners for the GPT-2, Llama-3 and Qwen2 split patterns, the Digits
 * and ByteLevel steps, and the pipeline that runs them over a stretch of text.
 * Rules: each scanner follows its regex's leftmost-alternative, greedy-with-backtracking semantics over one
 * piece (the regex never sees past the piece); a match is never empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tokenizer_internal.h"

void gkd_tok_scratch_free(scratch *sc) {
    free(sc->cp);
    free(sc->cls);
    free(sc->off);
    free(sc->cuts);
    free(sc->cuts_next);
    free(sc->sym);
    free(sc->heap.v);
    free(sc->ids);
    gkd_buf_free(&sc->piece_str);
}

/* --- Scanners: each returns the end of the regex match that starts at code point i (< n), where n is
 * the end of the piece being split, as the regex sees only that piece. Every alternative of these
 * patterns together matches any character, so a match is never empty. */

static size_t run_of(const unsigned char *cls, size_t n, size_t i, char_class c) {
    while (i < n && cls[i] == c) i++;
    return i;
}

static int is_newline(uint32_t cp) {
    return cp == '\r' || cp == '\n';
}

/* 's|'t|'re|'ve|'m|'ll|'d, case-insensitive when fold is set; returns the match length or 0. Under
 * Unicode case folding the only non-ASCII character equal to one of these letters is U+017F (long s). */
static size_t contraction(const uint32_t *cp, size_t n, size_t i, int fold) {
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
    if (fold) {
        a = a == 0x17F ? 's' : a < 0x80 && (a | 0x20) >= 'a' && (a | 0x20) <= 'z' ? a | 0x20 : a;
        b = b < 0x80 && (b | 0x20) >= 'a' && (b | 0x20) <= 'z' ? b | 0x20 : b;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at a space: a run of spaces followed by a non-space leaves its last space to start the
 * next piece (so " word" stays together), unless the run is a single space. */
static size_t trailing_space(const unsigned char *cls, size_t n, size_t i) {
    size_t e = run_of(cls, n, i, CLS_SPACE);
    return (e < n && e - i > 1) ? e - 1 : e;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t scan_gpt2(const uint32_t *cp, const unsigned char *cls, size_t n, size_t i) {
    size_t k = contraction(cp, n, i, 0);
    if (k) return i + k;
    if (cp[i] == ' ' && i + 1 < n && cls[i + 1] != CLS_SPACE) return run_of(cls, n, i + 1, cls[i + 1]);
    if (cls[i] != CLS_SPACE) return run_of(cls, n, i, cls[i]);
    return trailing_space(cls, n, i);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
 * \s+(?!\S)|\s+ with D = max_digits (3 for Llama-3, 1 for Qwen2). */
static size_t scan_llama3(const uint32_t *cp, const unsigned char *cls, size_t n, size_t i,
                          size_t max_digits) {
    size_t k = contraction(cp, n, i, 1);
    if (k) return i + k;
    if (cls[i] == CLS_LETTER) return run_of(cls, n, i, CLS_LETTER);
    if (cls[i] != CLS_NUMBER && !is_newline(cp[i]) && i + 1 < n && cls[i + 1] == CLS_LETTER)
        return run_of(cls, n, i + 1, CLS_LETTER);
    if (cls[i] == CLS_NUMBER) {
        size_t e = i;
        while (e < n && e - i < max_digits && cls[e] == CLS_NUMBER) e++;
        return e;
    }
    size_t p = cp[i] == ' ' && i + 1 < n && cls[i + 1] == CLS_OTHER ? i + 1 : i;
    if (cls[p] == CLS_OTHER) {
        size_t e = run_of(cls, n, p, CLS_OTHER);
        while (e < n && is_newline(cp[e])) e++;
        return e;
    }
    /* \s*[\r\n]+ backtracks to the last line break of the run of spaces. */
    size_t e = run_of(cls, n, i, CLS_SPACE);
    for (size_t j = e; j > i; j--)
        if (is_newline(cp[j - 1])) return j;
    return trailing_space(cls, n, i);
}

static size_t scan(step_kind kind, const uint32_t *cp, const unsigned char *cls, size_t n, size_t i) {
    switch (kind) {
    case STEP_SPLIT_LLAMA3:
        return scan_llama3(cp, cls, n, i, 3);
    case STEP_SPLIT_QWEN2:
        return scan_llama3(cp, cls, n, i, 1);
    default:
        return scan_gpt2(cp, cls, n, i);
    }
}

/* Splits the piece [start, end) of code points with one step, appending piece ends to out[*n...]. */
static void split_piece(const pre_step *step, const scratch *sc, size_t start, size_t end, size_t *out,
                        size_t *n) {
    if (step->kind == STEP_BYTE_LEVEL && !step->flag) {
        out[(*n)++] = end;
    } else if (step->kind == STEP_DIGITS) {
        for (size_t i = start; i < end;) {
            size_t e = i + 1;
            if (sc->cls[i] != CLS_NUMBER || !step->flag)
                while (e < end && (sc->cls[e] == CLS_NUMBER) == (sc->cls[i] == CLS_NUMBER)) e++;
            out[(*n)++] = e;
            i = e;
        }
    } else {
        for (size_t i = start; i < end;) {
            i = scan(step->kind, sc->cp, sc->cls, end, i);
            out[(*n)++] = i;
        }
    }
}

static int reserve_text(scratch *sc, size_t need) {
    if (need <= sc->cap_text) return 1;
    size_t cap = sc->cap_text ? sc->cap_text : 64;
    while (cap < need) cap *= 2;
    /* An array grown before a later one fails is merely larger than cap_text says. */
    void *p;
    if (!(p = realloc(sc->cp, cap * sizeof *sc->cp))) return 0;
    sc->cp = p;
    if (!(p = realloc(sc->cls, cap * sizeof *sc->cls))) return 0;
    sc->cls = p;
    if (!(p = realloc(sc->off, cap * sizeof *sc->off))) return 0;
    sc->off = p;
    if (!(p = realloc(sc->cuts, cap * sizeof *sc->cuts))) return 0;
    sc->cuts = p;
    if (!(p = realloc(sc->cuts_next, cap * sizeof *sc->cuts_next))) return 0;
    sc->cuts_next = p;
    sc->cap_text = cap;
    return 1;
}

/* Runs the pre-tokenizer over s[0..len): sc->cuts[0..n_cuts) are the piece ends in code points and
 * sc->off maps them to bytes. */
gkd_status gkd_tok_split(const gkd_tokenizer *tok, const unsigned char *s, size_t len, scratch *sc) {
    if (!reserve_text(sc, len + 1)) return gkd_tok_out_of_memory("splitting text");
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        sc->off[n] = i;
        i += gkd_utf8_decode((const char *)s + i, len - i, &sc->cp[n]);
        sc->cls[n] = (unsigned char)gkd_tok_classify(sc->cp[n]);
    }
    sc->off[n] = len;
    sc->n_cuts = 0;
    if (n) sc->cuts[sc->n_cuts++] = n;
    for (int k = 0; k < tok->n_steps; k++) {
        size_t n_next = 0, start = 0;
        for (size_t c = 0; c < sc->n_cuts; c++) {
            split_piece(&tok->steps[k], sc, start, sc->cuts[c], sc->cuts_next, &n_next);
            start = sc->cuts[c];
        }
        size_t *t = sc->cuts;
        sc->cuts = sc->cuts_next;
        sc->cuts_next = t;
        sc->n_cuts = n_next;
    }
    return GKD_OK;
}

gkd_status gkd_tokenizer_pretokenize(const gkd_tokenizer *tok, const char *text, size_t len, size_t **ends,
                                     int *n) {
    if (!tok || (!text && len) || !ends || !n)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer pretokenize: NULL argument");
    scratch sc = {0};
    gkd_status st = gkd_tok_split(tok, (const unsigned char *)text, len, &sc);
    size_t *out = NULL;
    if (st == GKD_OK) {
        out = malloc((sc.n_cuts + 1) * sizeof *out);
        if (!out) st = gkd_tok_out_of_memory("splitting text");
    }
    if (st == GKD_OK) {
        for (size_t c = 0; c < sc.n_cuts; c++) out[c] = sc.off[sc.cuts[c]];
        *ends = out;
        *n = (int)sc.n_cuts;
    }
    gkd_tok_scratch_free(&sc);
    return st;
}
