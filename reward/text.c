/* Text plumbing for the metrics (see text.h). Ids come from sorting rather than hashing: the
 * texts a metric sees are short, sorting is exact, and no hash quality question arises. */
#include "reward/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

gkd_status gkd_textbuf_append(gkd_textbuf *b, const char *s, size_t n) {
    gkd_buf_put(b, s, n);
    return gkd_buf_check(b, "building metric text");
}

gkd_status gkd_textbuf_putc(gkd_textbuf *b, char c) {
    return gkd_textbuf_append(b, &c, 1);
}

void gkd_textbuf_free(gkd_textbuf *b) {
    gkd_buf_free(b);
}

gkd_status gkd_toklist_push(gkd_toklist *t, const char *s, size_t len) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 32;
        size_t *start = realloc(t->start, (size_t)cap * sizeof *start);
        if (start) t->start = start;
        int *lens = start ? realloc(t->len, (size_t)cap * sizeof *lens) : NULL;
        if (!lens) return gkd_error_set(GKD_ERR_NOMEM, "token list of %d tokens", cap);
        t->len = lens;
        t->cap = cap;
    }
    size_t at = t->text.len;
    gkd_status st = gkd_textbuf_append(&t->text, s, len);
    if (st != GKD_OK) return st;
    t->start[t->n] = at;
    t->len[t->n] = (int)len;
    t->n++;
    return GKD_OK;
}

gkd_status gkd_toklist_split(gkd_toklist *t, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int w = gkd_utf8_space_len(s + i, n - i);
        if (w) {
            i += (size_t)w;
            continue;
        }
        size_t j = i + 1;
        while (j < n && !gkd_utf8_space_len(s + j, n - j)) j++;
        gkd_status st = gkd_toklist_push(t, s + i, j - i);
        if (st != GKD_OK) return st;
        i = j;
    }
    return GKD_OK;
}

gkd_status gkd_toklist_join(const gkd_toklist *t, char **joined) {
    *joined = NULL;
    gkd_textbuf b = {0};
    gkd_status st = gkd_textbuf_append(&b, "", 0);
    for (int i = 0; i < t->n && st == GKD_OK; i++) {
        if (i) st = gkd_textbuf_putc(&b, ' ');
        if (st == GKD_OK) st = gkd_textbuf_append(&b, t->text.data + t->start[i], (size_t)t->len[i]);
    }
    if (st != GKD_OK) {
        gkd_textbuf_free(&b);
        return st;
    }
    *joined = b.data;
    return GKD_OK;
}

void gkd_toklist_free(gkd_toklist *t) {
    if (!t) return;
    gkd_textbuf_free(&t->text);
    free(t->start);
    free(t->len);
    t->start = NULL;
    t->len = NULL;
    t->n = t->cap = 0;
}

typedef struct {
    const char *s;
    int len;
    int pos;
} token_ref;

static int token_ref_cmp(const void *pa, const void *pb) {
    const token_ref *a = pa, *b = pb;
    int n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, (size_t)n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

gkd_status gkd_seqset_build(const gkd_toklist *const *lists, int nlists, gkd_seqset *out) {
    memset(out, 0, sizeof *out);
    int total = 0;
    for (int l = 0; l < nlists; l++) total += lists[l]->n;
    out->nseq = nlists;
    out->offset = malloc((size_t)(nlists + 1) * sizeof *out->offset);
    out->ids = malloc((size_t)(total ? total : 1) * sizeof *out->ids);
    token_ref *refs = malloc((size_t)(total ? total : 1) * sizeof *refs);
    if (!out->offset || !out->ids || !refs) {
        free(refs);
        gkd_seqset_free(out);
        return gkd_error_set(GKD_ERR_NOMEM, "token ids for %d tokens", total);
    }
    int k = 0;
    for (int l = 0; l < nlists; l++) {
        out->offset[l] = k;
        for (int i = 0; i < lists[l]->n; i++, k++)
            refs[k] = (token_ref){lists[l]->text.data + lists[l]->start[i], lists[l]->len[i], k};
    }
    out->offset[nlists] = total;
    qsort(refs, (size_t)total, sizeof *refs, token_ref_cmp);
    int id = -1;
    for (int i = 0; i < total; i++) {
        if (i == 0 || token_ref_cmp(&refs[i - 1], &refs[i]) != 0) id++;
        out->ids[refs[i].pos] = id;
    }
    out->vocab = id + 1;
    free(refs);
    return GKD_OK;
}

void gkd_seqset_free(gkd_seqset *s) {
    if (!s) return;
    free(s->offset);
    free(s->ids);
    memset(s, 0, sizeof *s);
}

typedef struct {
    int64_t key;
    int pos;
} gram_key;

static int gram_key_cmp(const void *pa, const void *pb) {
    const gram_key *a = pa, *b = pb;
    return (a->key > b->key) - (a->key < b->key);
}

gkd_status gkd_ngram_extend(const gkd_seqset *s, const int *prev, int order, int *grams, int *n_ids) {
    int total = s->offset[s->nseq];
    gram_key *keys = malloc((size_t)(total ? total : 1) * sizeof *keys);
    if (!keys) return gkd_error_set(GKD_ERR_NOMEM, "%d-gram ids for %d tokens", order, total);
    /* An n-gram is its (n-1)-gram prefix plus its last token; prefix ids are < total and token ids
     * < vocab, so prefix * vocab + token is a unique key that fits in 64 bits. */
    int nkeys = 0;
    for (int q = 0; q < s->nseq; q++) {
        for (int i = s->offset[q]; i < s->offset[q + 1]; i++) {
            grams[i] = -1;
            int last = i + order - 1;
            if (last < s->offset[q + 1] && prev[i] >= 0)
                keys[nkeys++] = (gram_key){(int64_t)prev[i] * s->vocab + s->ids[last], i};
        }
    }
    qsort(keys, (size_t)nkeys, sizeof *keys, gram_key_cmp);
    int id = -1;
    for (int k = 0; k < nkeys; k++) {
        if (k == 0 || keys[k].key != keys[k - 1].key) id++;
        grams[keys[k].pos] = id;
    }
    *n_ids = id + 1;
    free(keys);
    return GKD_OK;
}

static int int_cmp(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    return (a > b) - (a < b);
}

/* Copies the valid ids of src into dst, sorted; returns how many. */
static int sorted_valid(const int *src, int n, int *dst) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (src[i] >= 0) dst[m++] = src[i];
    qsort(dst, (size_t)m, sizeof *dst, int_cmp);
    return m;
}

gkd_status gkd_ngram_overlap(const int *a, int na, const int *b, int nb, long *matched) {
    *matched = 0;
    int *sa = malloc((size_t)(na + nb + 1) * sizeof *sa);
    if (!sa) return gkd_error_set(GKD_ERR_NOMEM, "n-gram overlap of %d and %d n-grams", na, nb);
    int *sb = sa + na;
    int ma = sorted_valid(a, na, sa), mb = sorted_valid(b, nb, sb);
    /* On sorted bags, walking both in step and taking each common element once per pairing is
     * exactly sum over ids of min(count_a, count_b). */
    long m = 0;
    for (int i = 0, j = 0; i < ma && j < mb;) {
        if (sa[i] < sb[j])
            i++;
        else if (sa[i] > sb[j])
            j++;
        else
            m++, i++, j++;
    }
    free(sa);
    *matched = m;
    return GKD_OK;
}
