/* BLEU as sacreBLEU 2.x computes it with its defaults: 13a tokenisation (mteval-v13a), case kept,
 * n-grams of orders 1..4, clipped counts, the brevity penalty exp(1 - r/c), and the smoothing
 * methods of its compute_bleu(). corpus_bleu() and sentence_bleu() differ only in their defaults:
 * both smooth with 'exp', only sentence_bleu() uses the effective order.
 * The 13a tokeniser is a chain of regular-expression substitutions in sacreBLEU; each one has a
 * fixed-length pattern, so a left-to-right scan that copies a byte when the pattern does not match
 * at it and emits the replacement and skips the match when it does reproduces Python's re.sub
 * exactly. The scan works on UTF-8 bytes: every pattern that can match a non-ASCII character is a
 * negated class ([^0-9]), and a match on a multibyte character's last byte (or first, for the class
 * in second position) copies the same bytes Python copies, so the output is the same.
 * Rules: one reference per hypothesis; arithmetic follows sacreBLEU's expression order so scores
 * agree to the last bit; invalid UTF-8 passes through as bytes. */
#include "reward/metrics.h"
#include "reward/text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Python's str.rstrip(): strips trailing Unicode whitespace. */
static size_t rstrip_len(const char *s, size_t n) {
    for (;;) {
        if (n >= 1 && gkd_utf8_space_len(s + n - 1, 1) == 1)
            n -= 1;
        else if (n >= 2 && gkd_utf8_space_len(s + n - 2, 2) == 2)
            n -= 2;
        else if (n >= 3 && gkd_utf8_space_len(s + n - 3, 3) == 3)
            n -= 3;
        else
            return n;
    }
}

/* Python's str.replace(from, to): non-overlapping occurrences, left to right, one pass. */
static gkd_status replace_all(const gkd_textbuf *src, const char *from, const char *to, gkd_textbuf *dst) {
    size_t nf = strlen(from), nt = strlen(to);
    dst->len = 0;
    gkd_status st = gkd_textbuf_append(dst, "", 0);
    for (size_t i = 0; i < src->len && st == GKD_OK;) {
        if (i + nf <= src->len && memcmp(src->data + i, from, nf) == 0) {
            st = gkd_textbuf_append(dst, to, nt);
            i += nf;
        } else {
            st = gkd_textbuf_putc(dst, src->data[i]);
            i++;
        }
    }
    return st;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* sacreBLEU's class [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII punctuation and symbols except ' , - . */
static int is_13a_symbol(char c) {
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

/* The four substitutions of sacreBLEU's TokenizerRegexp, in its order, on one buffer each. */
static gkd_status regexp_passes(gkd_textbuf *a, gkd_textbuf *b) {
    gkd_status st = GKD_OK;
    /* ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 " */
    b->len = 0;
    for (size_t i = 0; i < a->len && st == GKD_OK; i++) {
        char c = a->data[i];
        st = is_13a_symbol(c) ? gkd_textbuf_append(b, (char[]){' ', c, ' '}, 3) : gkd_textbuf_putc(b, c);
    }
    /* ([^0-9])([\.,]) -> "\1 \2 ": a period or comma after a non-digit */
    a->len = 0;
    for (size_t i = 0; i < b->len && st == GKD_OK;) {
        char c = b->data[i];
        if (i + 1 < b->len && !is_digit(c) && (b->data[i + 1] == '.' || b->data[i + 1] == ',')) {
            st = gkd_textbuf_append(a, (char[]){c, ' ', b->data[i + 1], ' '}, 4);
            i += 2;
        } else {
            st = gkd_textbuf_putc(a, c);
            i++;
        }
    }
    /* ([\.,])([^0-9]) -> " \1 \2": a period or comma before a non-digit */
    b->len = 0;
    for (size_t i = 0; i < a->len && st == GKD_OK;) {
        char c = a->data[i];
        if (i + 1 < a->len && (c == '.' || c == ',') && !is_digit(a->data[i + 1])) {
            st = gkd_textbuf_append(b, (char[]){' ', c, ' ', a->data[i + 1]}, 4);
            i += 2;
        } else {
            st = gkd_textbuf_putc(b, c);
            i++;
        }
    }
    /* ([0-9])(-) -> "\1 \2 ": a dash after a digit */
    a->len = 0;
    for (size_t i = 0; i < b->len && st == GKD_OK;) {
        char c = b->data[i];
        if (i + 1 < b->len && is_digit(c) && b->data[i + 1] == '-') {
            st = gkd_textbuf_append(a, (char[]){c, ' ', '-', ' '}, 4);
            i += 2;
        } else {
            st = gkd_textbuf_putc(a, c);
            i++;
        }
    }
    return st;
}

static gkd_status tokenize_13a(const char *text, gkd_toklist *out) {
    gkd_textbuf a = {0}, b = {0};
    size_t n = rstrip_len(text, strlen(text));
    gkd_status st = gkd_textbuf_append(&a, text, n);
    static const char *const plain[][2] = {{"<skipped>", ""}, {"-\n", ""}, {"\n", " "}};
    static const char *const entities[][2] = {{"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}};
    for (int k = 0; k < 3 && st == GKD_OK; k++) {
        st = replace_all(&a, plain[k][0], plain[k][1], &b);
        gkd_textbuf t = a;
        a = b;
        b = t;
    }
    if (st == GKD_OK && memchr(a.data, '&', a.len)) {
        for (int k = 0; k < 4 && st == GKD_OK; k++) {
            st = replace_all(&a, entities[k][0], entities[k][1], &b);
            gkd_textbuf t = a;
            a = b;
            b = t;
        }
    }
    /* sacreBLEU pads the line with a space on each side before the substitutions, which lets the
     * first and last characters match patterns that need a neighbour. */
    if (st == GKD_OK) {
        b.len = 0;
        st = gkd_textbuf_putc(&b, ' ');
        if (st == GKD_OK) st = gkd_textbuf_append(&b, a.data, a.len);
        if (st == GKD_OK) st = gkd_textbuf_putc(&b, ' ');
        gkd_textbuf t = a;
        a = b;
        b = t;
    }
    if (st == GKD_OK) st = regexp_passes(&a, &b);
    if (st == GKD_OK) st = gkd_toklist_split(out, a.data, a.len);
    gkd_textbuf_free(&a);
    gkd_textbuf_free(&b);
    return st;
}

gkd_status gkd_bleu_tokenize_13a(const char *text, char **tokens) {
    *tokens = NULL;
    if (!text) return gkd_error_set(GKD_ERR_ARG, "bleu tokenize: NULL text");
    gkd_toklist t = {0};
    gkd_status st = tokenize_13a(text, &t);
    if (st == GKD_OK) st = gkd_toklist_join(&t, tokens);
    gkd_toklist_free(&t);
    return st;
}

gkd_bleu_options gkd_bleu_corpus_defaults(void) {
    return (gkd_bleu_options){.smooth = GKD_BLEU_SMOOTH_EXP, .smooth_value = -1, .effective_order = 0};
}

gkd_bleu_options gkd_bleu_sentence_defaults(void) {
    return (gkd_bleu_options){.smooth = GKD_BLEU_SMOOTH_EXP, .smooth_value = -1, .effective_order = 1};
}

/* One segment's sufficient statistics: lengths and per-order clipped matches and totals. */
typedef struct {
    long sys_len, ref_len;
    long correct[GKD_BLEU_MAX_ORDER], total[GKD_BLEU_MAX_ORDER];
} bleu_stats;

static gkd_status segment_stats(const char *hyp, const char *ref, bleu_stats *out) {
    memset(out, 0, sizeof *out);
    gkd_toklist th = {0}, tr = {0};
    gkd_seqset s = {0};
    int *grams = NULL;
    gkd_status st = tokenize_13a(hyp, &th);
    if (st == GKD_OK) st = tokenize_13a(ref, &tr);
    const gkd_toklist *lists[2] = {&th, &tr};
    if (st == GKD_OK) st = gkd_seqset_build(lists, 2, &s);
    int total = s.offset ? s.offset[2] : 0, len_h = th.n, len_r = tr.n;
    if (st == GKD_OK) {
        grams = malloc((size_t)(2 * total + 1) * sizeof *grams);
        if (!grams)
            st = gkd_error_set(GKD_ERR_NOMEM, "bleu n-grams of %d tokens", total);
        else
            memcpy(grams, s.ids, (size_t)total * sizeof *grams);
    }
    for (int order = 1; order <= GKD_BLEU_MAX_ORDER && st == GKD_OK; order++) {
        if (order > 1) {
            int n_ids;
            st = gkd_ngram_extend(&s, grams, order, grams + total, &n_ids);
            if (st != GKD_OK) break;
            memcpy(grams, grams + total, (size_t)total * sizeof *grams);
        }
        st = gkd_ngram_overlap(grams, len_h, grams + len_h, len_r, &out->correct[order - 1]);
        out->total[order - 1] = len_h - order + 1 > 0 ? len_h - order + 1 : 0;
    }
    out->sys_len = len_h;
    out->ref_len = len_r;
    free(grams);
    gkd_seqset_free(&s);
    gkd_toklist_free(&th);
    gkd_toklist_free(&tr);
    return st;
}

/* sacreBLEU's my_log(): log with log(0) floored, so an unsmoothed zero precision gives score 0. */
static double floored_log(double x) {
    return x == 0.0 ? -9999999999.0 : log(x);
}

/* sacreBLEU's BLEU.compute_bleu() on summed statistics. */
static void bleu_from_stats(const bleu_stats *s, const gkd_bleu_options *o, gkd_bleu_result *out) {
    memset(out, 0, sizeof *out);
    out->sys_len = s->sys_len;
    out->ref_len = s->ref_len;
    memcpy(out->correct, s->correct, sizeof out->correct);
    memcpy(out->total, s->total, sizeof out->total);
    out->bp = 1.0;
    if (s->sys_len < s->ref_len)
        out->bp = s->sys_len > 0 ? exp(1.0 - (double)s->ref_len / (double)s->sys_len) : 0.0;

    int any_match = 0;
    for (int k = 0; k < GKD_BLEU_MAX_ORDER; k++) any_match |= s->correct[k] != 0;
    if (!any_match) return;

    double value = o->smooth_value;
    if (value < 0) value = o->smooth == GKD_BLEU_SMOOTH_FLOOR ? 0.1 : 1.0;
    double mteval = 1.0;
    int eff_order = GKD_BLEU_MAX_ORDER;
    for (int n = 1; n <= GKD_BLEU_MAX_ORDER; n++) {
        double correct = (double)s->correct[n - 1], total = (double)s->total[n - 1];
        if (o->smooth == GKD_BLEU_SMOOTH_ADD_K && n > 1) {
            correct += value;
            total += value;
        }
        if (total == 0) break;
        if (o->effective_order) eff_order = n;
        if (correct == 0) {
            if (o->smooth == GKD_BLEU_SMOOTH_EXP) {
                mteval *= 2;
                out->precisions[n - 1] = 100. / (mteval * total);
            } else if (o->smooth == GKD_BLEU_SMOOTH_FLOOR) {
                out->precisions[n - 1] = 100. * value / total;
            }
        } else {
            out->precisions[n - 1] = 100. * correct / total;
        }
    }
    double sum = 0;
    for (int n = 0; n < eff_order; n++) sum += floored_log(out->precisions[n]);
    out->score = out->bp * exp(sum / eff_order);
}

static gkd_status check_options(const gkd_bleu_options *o) {
    if (o->smooth < GKD_BLEU_SMOOTH_EXP || o->smooth > GKD_BLEU_SMOOTH_ADD_K)
        return gkd_error_set(GKD_ERR_ARG, "bleu: unknown smoothing method %d", (int)o->smooth);
    return GKD_OK;
}

gkd_status gkd_bleu_corpus(const char *const *hyps, const char *const *refs, int n,
                           const gkd_bleu_options *opt, gkd_bleu_result *out) {
    memset(out, 0, sizeof *out);
    gkd_bleu_options o = opt ? *opt : gkd_bleu_corpus_defaults();
    gkd_status st = check_options(&o);
    if (st != GKD_OK) return st;
    if (n < 0 || (n > 0 && (!hyps || !refs)))
        return gkd_error_set(GKD_ERR_ARG, "bleu corpus: %d segments, NULL arrays", n);
    bleu_stats sum = {0};
    for (int i = 0; i < n; i++) {
        if (!hyps[i] || !refs[i])
            return gkd_error_set(GKD_ERR_ARG, "bleu corpus: segment %d has a NULL %s", i,
                                 hyps[i] ? "reference" : "hypothesis");
        bleu_stats one;
        st = segment_stats(hyps[i], refs[i], &one);
        if (st != GKD_OK) return gkd_error_prefix(st, "bleu corpus, segment %d", i);
        sum.sys_len += one.sys_len;
        sum.ref_len += one.ref_len;
        for (int k = 0; k < GKD_BLEU_MAX_ORDER; k++) {
            sum.correct[k] += one.correct[k];
            sum.total[k] += one.total[k];
        }
    }
    bleu_from_stats(&sum, &o, out);
    return GKD_OK;
}

gkd_status gkd_bleu_sentence(const char *hyp, const char *ref, const gkd_bleu_options *opt,
                             gkd_bleu_result *out) {
    memset(out, 0, sizeof *out);
    gkd_bleu_options o = opt ? *opt : gkd_bleu_sentence_defaults();
    gkd_status st = check_options(&o);
    if (st != GKD_OK) return st;
    if (!hyp || !ref)
        return gkd_error_set(GKD_ERR_ARG, "bleu sentence: NULL %s", hyp ? "reference" : "hypothesis");
    bleu_stats s;
    st = segment_stats(hyp, ref, &s);
    if (st != GKD_OK) return st;
    bleu_from_stats(&s, &o, out);
    return GKD_OK;
}
