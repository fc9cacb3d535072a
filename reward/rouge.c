/* ROUGE-N and ROUGE-L as rouge-score 0.1.2 computes them (RougeScorer with its default tokenizer).
 * Its tokenizer lowercases with Python's str.lower(), turns every run of characters outside
 * [a-z0-9] into a space and splits; with use_stemmer, tokens longer than 3 characters go through
 * NLTK's Porter stemmer. Only two non-ASCII characters lowercase to something with ASCII letters in
 * it, and both are handled: U+0130 (-> "i" + U+0307, so the token ends after the i) and U+212A
 * KELVIN SIGN (-> "k", inside the token). Every other non-ASCII character separates tokens.
 * Rules: arithmetic follows rouge-score's expression order (P = hits / max(hyp n-grams, 1),
 * F = 2 * P * R / (P + R)) so results agree to the last bit; bytes of invalid UTF-8 separate tokens
 * (Python would have refused the text). */
#include "reward/metrics.h"
#include "reward/text.h"

#include <stdlib.h>
#include <string.h>

static gkd_status flush_token(gkd_textbuf *cur, int use_stemmer, gkd_textbuf *stem, gkd_toklist *out) {
    gkd_status st = GKD_OK;
    if (cur->len == 0) return GKD_OK;
    if (use_stemmer && cur->len > 3) {
        stem->len = 0;
        st = gkd_textbuf_append(stem, cur->data, cur->len); /* sizes the buffer for the stem */
        size_t n = 0;
        if (st == GKD_OK) st = gkd_porter_stem(cur->data, cur->len, stem->data, stem->cap, &n);
        if (st == GKD_OK && n > 0) st = gkd_toklist_push(out, stem->data, n);
    } else {
        st = gkd_toklist_push(out, cur->data, cur->len);
    }
    cur->len = 0;
    return st;
}

static gkd_status rouge_tokens(const char *text, int use_stemmer, gkd_toklist *out) {
    gkd_textbuf cur = {0}, stem = {0};
    gkd_status st = GKD_OK;
    const unsigned char *u = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n && st == GKD_OK;) {
        unsigned char c = u[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            st = gkd_textbuf_putc(&cur, (char)c);
            i++;
        } else if (c >= 'A' && c <= 'Z') {
            st = gkd_textbuf_putc(&cur, (char)(c - 'A' + 'a'));
            i++;
        } else if (c == 0xc4 && i + 1 < n && u[i + 1] == 0xb0) { /* U+0130 */
            st = gkd_textbuf_putc(&cur, 'i');
            if (st == GKD_OK) st = flush_token(&cur, use_stemmer, &stem, out);
            i += 2;
        } else if (c == 0xe2 && i + 2 < n && u[i + 1] == 0x84 && u[i + 2] == 0xaa) { /* U+212A */
            st = gkd_textbuf_putc(&cur, 'k');
            i += 3;
        } else {
            st = flush_token(&cur, use_stemmer, &stem, out);
            i++;
        }
    }
    if (st == GKD_OK) st = flush_token(&cur, use_stemmer, &stem, out);
    gkd_textbuf_free(&cur);
    gkd_textbuf_free(&stem);
    return st;
}

static gkd_prf prf_from_counts(long hits, long hyp_units, long ref_units) {
    gkd_prf s;
    s.precision = (double)hits / (double)(hyp_units > 1 ? hyp_units : 1);
    s.recall = (double)hits / (double)(ref_units > 1 ? ref_units : 1);
    s.f = s.precision + s.recall > 0 ? 2 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
    return s;
}

/* Sequence 0 of s is the hypothesis, sequence 1 the reference. */
static gkd_status rouge_n_ids(const gkd_seqset *s, int n, gkd_prf *out) {
    int total = s->offset[2], len_h = s->offset[1], len_r = total - len_h;
    if (n > len_h || n > len_r) { /* one side has no n-gram: nothing to match, skip building them */
        *out =
            prf_from_counts(0, len_h - n + 1 > 0 ? len_h - n + 1 : 0, len_r - n + 1 > 0 ? len_r - n + 1 : 0);
        return GKD_OK;
    }
    int *grams = malloc((size_t)(2 * total + 1) * sizeof *grams);
    if (!grams) return gkd_error_set(GKD_ERR_NOMEM, "rouge-%d on %d tokens", n, total);
    int *next = grams + total;
    memcpy(grams, s->ids, (size_t)total * sizeof *grams);
    gkd_status st = GKD_OK;
    for (int order = 2; order <= n && st == GKD_OK; order++) {
        int n_ids;
        st = gkd_ngram_extend(s, grams, order, next, &n_ids);
        if (st == GKD_OK) memcpy(grams, next, (size_t)total * sizeof *grams);
    }
    long hits = 0;
    if (st == GKD_OK) st = gkd_ngram_overlap(grams, len_h, grams + len_h, len_r, &hits);
    free(grams);
    if (st != GKD_OK) return st;
    long hyp_grams = len_h - n + 1 > 0 ? len_h - n + 1 : 0, ref_grams = len_r - n + 1 > 0 ? len_r - n + 1 : 0;
    *out = prf_from_counts(hits, hyp_grams, ref_grams);
    return GKD_OK;
}

static gkd_status rouge_l_ids(const gkd_seqset *s, gkd_prf *out) {
    const int *h = s->ids, *r = s->ids + s->offset[1];
    int len_h = s->offset[1], len_r = s->offset[2] - len_h;
    memset(out, 0, sizeof *out);
    if (len_h == 0 || len_r == 0) return GKD_OK;
    /* Two rows of the LCS table over hypothesis positions; the table is never needed whole. */
    int *row = calloc((size_t)(2 * (len_h + 1)), sizeof *row);
    if (!row) return gkd_error_set(GKD_ERR_NOMEM, "rouge-L table for %d x %d tokens", len_r, len_h);
    int *prev = row, *cur = row + len_h + 1;
    for (int i = 1; i <= len_r; i++) {
        cur[0] = 0;
        for (int j = 1; j <= len_h; j++)
            cur[j] = r[i - 1] == h[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
        int *t = prev;
        prev = cur;
        cur = t;
    }
    long lcs = prev[len_h];
    free(row);
    *out = prf_from_counts(lcs, len_h, len_r);
    return GKD_OK;
}

/* Tokenises both texts and lays them out as one seqset (hypothesis first). */
static gkd_status rouge_prepare(const char *hyp, const char *ref, int use_stemmer, gkd_seqset *s) {
    memset(s, 0, sizeof *s);
    if (!hyp || !ref)
        return gkd_error_set(GKD_ERR_ARG, "rouge: NULL %s text", hyp ? "reference" : "hypothesis");
    gkd_toklist th = {0}, tr = {0};
    gkd_status st = rouge_tokens(hyp, use_stemmer, &th);
    if (st == GKD_OK) st = rouge_tokens(ref, use_stemmer, &tr);
    const gkd_toklist *lists[2] = {&th, &tr};
    if (st == GKD_OK) st = gkd_seqset_build(lists, 2, s);
    gkd_toklist_free(&th);
    gkd_toklist_free(&tr);
    return st;
}

gkd_status gkd_rouge_n(const char *hyp, const char *ref, int n, int use_stemmer, gkd_prf *out) {
    memset(out, 0, sizeof *out);
    if (n < 1) return gkd_error_set(GKD_ERR_ARG, "rouge-n: n = %d, must be >= 1", n);
    gkd_seqset s;
    gkd_status st = rouge_prepare(hyp, ref, use_stemmer, &s);
    if (st == GKD_OK) st = rouge_n_ids(&s, n, out);
    gkd_seqset_free(&s);
    return st;
}

gkd_status gkd_rouge_l(const char *hyp, const char *ref, int use_stemmer, gkd_prf *out) {
    memset(out, 0, sizeof *out);
    gkd_seqset s;
    gkd_status st = rouge_prepare(hyp, ref, use_stemmer, &s);
    if (st == GKD_OK) st = rouge_l_ids(&s, out);
    gkd_seqset_free(&s);
    return st;
}

gkd_status gkd_rouge_all(const char *hyp, const char *ref, int use_stemmer, gkd_rouge_scores *out) {
    memset(out, 0, sizeof *out);
    gkd_seqset s;
    gkd_status st = rouge_prepare(hyp, ref, use_stemmer, &s);
    if (st == GKD_OK) st = rouge_n_ids(&s, 1, &out->rouge1);
    if (st == GKD_OK) st = rouge_n_ids(&s, 2, &out->rouge2);
    if (st == GKD_OK) st = rouge_l_ids(&s, &out->rougeL);
    gkd_seqset_free(&s);
    if (st != GKD_OK) memset(out, 0, sizeof *out);
    return st;
}

static void prf_add(gkd_prf *sum, const gkd_prf *x) {
    sum->precision += x->precision;
    sum->recall += x->recall;
    sum->f += x->f;
}

static void prf_divide(gkd_prf *x, int n) {
    x->precision /= n;
    x->recall /= n;
    x->f /= n;
}

gkd_status gkd_rouge_corpus_mean(const char *const *hyps, const char *const *refs, int n, int use_stemmer,
                                 gkd_rouge_scores *mean) {
    memset(mean, 0, sizeof *mean);
    if (n < 0 || (n > 0 && (!hyps || !refs)))
        return gkd_error_set(GKD_ERR_ARG, "rouge corpus mean: %d pairs with NULL arrays", n);
    gkd_rouge_scores sum = {0};
    for (int i = 0; i < n; i++) {
        gkd_rouge_scores one;
        gkd_status st = gkd_rouge_all(hyps[i], refs[i], use_stemmer, &one);
        if (st != GKD_OK) return gkd_error_prefix(st, "rouge corpus mean, pair %d", i);
        prf_add(&sum.rouge1, &one.rouge1);
        prf_add(&sum.rouge2, &one.rouge2);
        prf_add(&sum.rougeL, &one.rougeL);
    }
    if (n > 0) {
        prf_divide(&sum.rouge1, n);
        prf_divide(&sum.rouge2, n);
        prf_divide(&sum.rougeL, n);
    }
    *mean = sum;
    return GKD_OK;
}

gkd_status gkd_rouge_tokenize(const char *text, int use_stemmer, char **tokens) {
    *tokens = NULL;
    if (!text) return gkd_error_set(GKD_ERR_ARG, "rouge tokenize: NULL text");
    gkd_toklist t = {0};
    gkd_status st = rouge_tokens(text, use_stemmer, &t);
    if (st == GKD_OK) st = gkd_toklist_join(&t, tokens);
    gkd_toklist_free(&t);
    return st;
}
