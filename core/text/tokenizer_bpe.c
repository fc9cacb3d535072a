/* Encoding (added tokens, then BPE on each pre-tokenized piece) and decoding.
 * Rules: merges apply lowest rank first, the leftmost of equals (Hugging Face's order); a byte with no
 * token is dropped; all working memory belongs to the call. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tokenizer_internal.h"

static int push_id(scratch *sc, int id) {
    if (!gkd_tok_reserve((void **)&sc->ids, &sc->cap_ids, sc->n_ids + 1, sizeof *sc->ids)) return 0;
    sc->ids[sc->n_ids++] = id;
    return 1;
}

static int merge_rank_of(const gkd_tokenizer *tok, int left, int right) {
    return gkd_tok_pair_map_get(&tok->merge_rank, gkd_tok_pair_key(left, right));
}

/* Queues the merge of the symbol at pos with the next one, if there is one; returns 0 when out of memory. */
static int push_candidate(const gkd_tokenizer *tok, scratch *sc, int pos) {
    int next = sc->sym[pos].next;
    if (next < 0) return 1;
    int rank = merge_rank_of(tok, sc->sym[pos].id, sc->sym[next].id);
    return rank < 0 || gkd_tok_heap_push(&sc->heap, (heap_entry){rank, pos, 0, pos});
}

/* BPE on one piece: repeatedly merges the adjacent pair of lowest rank, the leftmost of equals, which is
 * the order Hugging Face applies merges in. Candidates whose symbols changed since they were queued are
 * dropped when they surface. */
static gkd_status bpe_piece(const gkd_tokenizer *tok, const unsigned char *s, size_t len, scratch *sc) {
    if (tok->ignore_merges) {
        sc->piece_str.len = 0;
        gkd_tok_bytes_to_str(s, len, &sc->piece_str);
        if (sc->piece_str.failed) return gkd_tok_out_of_memory("encoding");
        int id = gkd_tok_str_map_get(&tok->by_str, sc->piece_str.data, sc->piece_str.len);
        if (id >= 0 && tok->tokens[id].in_vocab)
            return push_id(sc, id) ? GKD_OK : gkd_tok_out_of_memory("encoding");
    }
    if (!gkd_tok_reserve((void **)&sc->sym, &sc->cap_sym, len, sizeof *sc->sym))
        return gkd_tok_out_of_memory("encoding");
    /* A byte the vocabulary has no token for is dropped and its neighbours become adjacent, as Hugging
     * Face's BPE does with a character outside its vocabulary when it has no unk_token. */
    size_t n = 0;
    for (size_t k = 0; k < len; k++) {
        if (tok->byte_id[s[k]] < 0) continue;
        sc->sym[n] = (bpe_sym){tok->byte_id[s[k]], (int)n - 1, -1};
        if (n) sc->sym[n - 1].next = (int)n;
        n++;
    }
    sc->heap.n = 0;
    for (size_t k = 0; k + 1 < n; k++)
        if (!push_candidate(tok, sc, (int)k)) return gkd_tok_out_of_memory("encoding");
    while (sc->heap.n) {
        heap_entry c = gkd_tok_heap_pop(&sc->heap);
        int rank = (int)c.key, pos = c.item;
        bpe_sym *a = &sc->sym[pos];
        if (a->id < 0 || a->next < 0 || merge_rank_of(tok, a->id, sc->sym[a->next].id) != rank) continue;
        bpe_sym *b = &sc->sym[a->next];
        a->id = tok->merges[rank].result;
        b->id = -1;
        a->next = b->next;
        if (a->next >= 0) sc->sym[a->next].prev = pos;
        if ((a->prev >= 0 && !push_candidate(tok, sc, a->prev)) || !push_candidate(tok, sc, pos))
            return gkd_tok_out_of_memory("encoding");
    }
    for (int k = n ? 0 : -1; k >= 0; k = sc->sym[k].next)
        if (!push_id(sc, sc->sym[k].id)) return gkd_tok_out_of_memory("encoding");
    return GKD_OK;
}

static gkd_status encode_text(const gkd_tokenizer *tok, const unsigned char *s, size_t len, scratch *sc) {
    gkd_status st = gkd_tok_split(tok, s, len, sc);
    if (st != GKD_OK) return st;
    /* bpe_piece reuses no splitting arrays, so the cuts stay valid while pieces are encoded. */
    size_t start = 0;
    for (size_t c = 0; c < sc->n_cuts && st == GKD_OK; c++) {
        size_t end = sc->off[sc->cuts[c]];
        st = bpe_piece(tok, s + start, end - start, sc);
        start = end;
    }
    return st;
}

/* Hugging Face matches the added tokens that are not "normalized" first, then the normalized ones in the
 * text between; pass 0 and 1 mirror that, pass 2 is plain text. */
static gkd_status encode_added(const gkd_tokenizer *tok, const unsigned char *s, size_t len, int pass,
                               scratch *sc) {
    if (pass == 2) return encode_text(tok, s, len, sc);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (!(tok->added_first[s[i]] & (1u << pass))) continue;
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; k < tok->n_added; k++) {
            const token *t = &tok->tokens[tok->added[k]];
            if ((int)t->normalized == pass && t->len > best_len && t->len <= len - i &&
                memcmp(t->bytes, s + i, t->len) == 0)
                best = tok->added[k], best_len = t->len;
        }
        if (best < 0) continue;
        gkd_status st = encode_added(tok, s + start, i - start, pass + 1, sc);
        if (st != GKD_OK) return st;
        if (!push_id(sc, best)) return gkd_tok_out_of_memory("encoding");
        i += best_len - 1;
        start = i + 1;
    }
    return encode_added(tok, s + start, len - start, pass + 1, sc);
}

static gkd_status encode(const gkd_tokenizer *tok, const char *text, size_t len, int pass, int **ids,
                         int *n) {
    if (!tok || (!text && len) || !ids || !n)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer encode: NULL argument");
    scratch sc = {0};
    gkd_status st =
        push_id(&sc, 0) ? GKD_OK : gkd_tok_out_of_memory("encoding"); /* so that *ids is never NULL */
    sc.n_ids = 0;
    if (st == GKD_OK && len) st = encode_added(tok, (const unsigned char *)text, len, pass, &sc);
    if (st == GKD_OK && sc.n_ids > (size_t)INT32_MAX)
        st = gkd_error_set(GKD_ERR_ARG, "tokenizer encode: more than 2^31 tokens");
    if (st == GKD_OK) {
        *ids = sc.ids;
        *n = (int)sc.n_ids;
        sc.ids = NULL;
    }
    gkd_tok_scratch_free(&sc);
    return st;
}

gkd_status gkd_tokenizer_encode(const gkd_tokenizer *tok, const char *text, size_t len, int **ids, int *n) {
    return encode(tok, text, len, 2, ids, n);
}

gkd_status gkd_tokenizer_encode_special(const gkd_tokenizer *tok, const char *text, size_t len, int **ids,
                                        int *n) {
    return encode(tok, text, len, 0, ids, n);
}

gkd_status gkd_tokenizer_decode(const gkd_tokenizer *tok, const int *ids, int n, char **text, size_t *len) {
    if (!tok || (!ids && n > 0) || n < 0 || !text || !len)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer decode: bad argument");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_tokens)
            return gkd_error_set(GKD_ERR_ARG,
                                 "tokenizer decode: id %d at position %d is outside the vocabulary (%d)",
                                 ids[i], i, tok->n_tokens);
        total += tok->tokens[ids[i]].len;
    }
    char *out = malloc(total + 1);
    if (!out) return gkd_tok_out_of_memory("decoding");
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + at, tok->tokens[ids[i]].bytes, tok->tokens[ids[i]].len);
        at += tok->tokens[ids[i]].len;
    }
    out[at] = '\0';
    *text = out;
    *len = at;
    return GKD_OK;
}
