/* Byte-level BPE: the tokenizer's tables (hash maps, token table, indexes), its lifetime and lookups.
 * The parts live beside it: tokenizer_unicode.c (classes, byte-level alphabet), tokenizer_pretok.c
 * (pre-tokenizer scanners), tokenizer_bpe.c (encode, decode), tokenizer_train.c, tokenizer_json.c
 * (tokenizer.json and GGUF vocabularies).
 * Rules: pre-tokenizer regexes are not interpreted; each supported pattern has a hand-written scanner that
 * follows the regex's leftmost-alternative, greedy-with-backtracking semantics, and a file with any other
 * pattern is refused. Bytes that are not part of valid UTF-8 are classified one by one as "other"
 * (neither space, letter nor number). Scratch memory for encoding belongs to one call, never to the
 * tokenizer, which stays read-only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tokenizer_internal.h"

/* ---------------------------------------------------------------------------------------------------
 * Hash maps (open addressing, linear probing, at most half full): token pairs -> int, and byte strings
 * -> int. A string map does not own its keys. */

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return gkd_tok_mix64(h);
}

void gkd_tok_pair_map_free(pair_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int pair_map_grow(pair_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return 0;
    }
    for (size_t i = 0; i < cap; i++) vals[i] = PAIR_EMPTY;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->vals[i] == PAIR_EMPTY) continue;
        size_t j = gkd_tok_mix64(m->keys[i]) & (cap - 1);
        while (vals[j] != PAIR_EMPTY) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys, m->vals = vals, m->cap = cap;
    return 1;
}

/* Inserts or overwrites; returns 0 when out of memory. val must be >= 0. */
int gkd_tok_pair_map_put(pair_map *m, uint64_t key, int val) {
    if (2 * (m->n + 1) > m->cap && !pair_map_grow(m)) return 0;
    size_t j = gkd_tok_mix64(key) & (m->cap - 1);
    while (m->vals[j] != PAIR_EMPTY && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->vals[j] == PAIR_EMPTY) m->n++;
    m->keys[j] = key;
    m->vals[j] = val;
    return 1;
}

void gkd_tok_str_map_free(str_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int str_map_grow(str_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    str_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return 0;
    for (size_t i = 0; i < cap; i++) slots[i].val = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].val < 0) continue;
        size_t j = hash_bytes(m->slots[i].key, m->slots[i].len) & (cap - 1);
        while (slots[j].val >= 0) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots, m->cap = cap;
    return 1;
}

int gkd_tok_str_map_get(const str_map *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    for (size_t j = hash_bytes(key, len) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        const str_slot *s = &m->slots[j];
        if (s->val < 0) return -1;
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->val;
    }
}

/* Finds key, inserting it with `val` when absent; returns its value, or -2 when out of memory. */
int gkd_tok_str_map_intern(str_map *m, const char *key, size_t len, int val) {
    if (2 * (m->n + 1) > m->cap && !str_map_grow(m)) return -2;
    size_t j = hash_bytes(key, len) & (m->cap - 1);
    for (;; j = (j + 1) & (m->cap - 1)) {
        str_slot *s = &m->slots[j];
        if (s->val < 0) break;
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->val;
    }
    m->slots[j] = (str_slot){key, len, val};
    m->n++;
    return val;
}

void gkd_tokenizer_free(gkd_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->n_tokens; i++) {
        free(tok->tokens[i].bytes);
        free(tok->tokens[i].str);
    }
    free(tok->tokens);
    free(tok->merges);
    gkd_tok_pair_map_free(&tok->merge_rank);
    gkd_tok_str_map_free(&tok->by_str);
    free(tok->added);
    free(tok);
}

static const char *const role_names[GKD_TOKEN_ROLE_COUNT][5] = {
    [GKD_TOKEN_ROLE_EOS] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", NULL},
    [GKD_TOKEN_ROLE_BOS] = {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", NULL},
    [GKD_TOKEN_ROLE_PAD] = {"<|pad|>", "<pad>", "<|finetune_right_pad_id|>", NULL, NULL},
};

static void find_roles(gkd_tokenizer *tok) {
    for (int r = 0; r < GKD_TOKEN_ROLE_COUNT; r++) {
        tok->role[r] = -1;
        for (int k = 0; role_names[r][k] && tok->role[r] < 0; k++) {
            int id = gkd_tokenizer_token_id(tok, role_names[r][k]);
            if (id >= 0 && tok->tokens[id].added) tok->role[r] = id;
        }
    }
}

/* Makes *p hold at least `need` elements of `size` bytes; returns 0 when out of memory. */
int gkd_tok_reserve(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 1;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(*p, cap2 * size);
    if (!q) return 0;
    *p = q;
    *cap = cap2;
    return 1;
}

gkd_status gkd_tok_out_of_memory(const char *what) {
    return gkd_error_set(GKD_ERR_NOMEM, "tokenizer: out of memory %s", what);
}

/* ---------------------------------------------------------------------------------------------------
 * Building a tokenizer's indexes from its tokens and merges (shared by training and loading). */

/* Fills by_str and byte_id; `where` prefixes errors. */
gkd_status gkd_tok_index_tokens(gkd_tokenizer *tok, const char *where) {
    for (int id = 0; id < tok->n_tokens; id++) {
        const token *t = &tok->tokens[id];
        int got = gkd_tok_str_map_intern(&tok->by_str, t->str, t->str_len, id);
        if (got == -2) return gkd_tok_out_of_memory("indexing the vocabulary");
        if (got != id)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: ids %d and %d have the same string \"%s\"", where, got,
                                 id, t->str);
    }
    for (int b = 0; b < 256; b++) {
        gkd_buf s = {0};
        unsigned char byte = (unsigned char)b;
        gkd_tok_bytes_to_str(&byte, 1, &s);
        if (s.failed) return gkd_tok_out_of_memory("indexing the vocabulary");
        int id = gkd_tok_str_map_get(&tok->by_str, s.data, s.len);
        gkd_buf_free(&s);
        /* Real vocabularies may lack bytes no training text had (SmolLM2 lacks 0xC0, 0xC1, 0xF5-0xFF and a
         * few controls); bpe_piece drops such bytes. */
        tok->byte_id[b] = id >= 0 && tok->tokens[id].in_vocab ? id : -1;
    }
    return GKD_OK;
}

/* Fills merge_rank (a later duplicate of a pair wins, as in Hugging Face), added_first and the roles. */
gkd_status gkd_tok_index_merges_and_added(gkd_tokenizer *tok) {
    for (int r = 0; r < tok->n_merges; r++)
        if (!gkd_tok_pair_map_put(&tok->merge_rank,
                                  gkd_tok_pair_key(tok->merges[r].left, tok->merges[r].right), r))
            return gkd_tok_out_of_memory("indexing merges");
    memset(tok->added_first, 0, sizeof tok->added_first);
    for (int k = 0; k < tok->n_added; k++) {
        const token *t = &tok->tokens[tok->added[k]];
        tok->added_first[(unsigned char)t->bytes[0]] |= (unsigned char)(1u << t->normalized);
    }
    find_roles(tok);
    return GKD_OK;
}

/* Sets a token's bytes and string (copied); returns 0 when out of memory. */
int gkd_tok_set_token(token *t, const char *bytes, size_t len, const char *str, size_t str_len) {
    t->bytes = malloc(len + 1);
    t->str = malloc(str_len + 1);
    if (!t->bytes || !t->str) return 0;
    memcpy(t->bytes, bytes, len);
    t->bytes[len] = '\0';
    memcpy(t->str, str, str_len);
    t->str[str_len] = '\0';
    t->len = len;
    t->str_len = str_len;
    return 1;
}

gkd_status gkd_tokenizer_add_specials(gkd_tokenizer *tok, const char *const *specials, int n) {
    if (n < 0 || (n > 0 && !specials)) return gkd_error_set(GKD_ERR_ARG, "add specials: bad arguments");
    for (int k = 0; k < n; k++)
        if (!specials[k] || !specials[k][0]) return gkd_error_set(GKD_ERR_ARG, "add specials: special %d is empty", k);
    token *tokens = realloc(tok->tokens, ((size_t)tok->n_tokens + (size_t)n) * sizeof *tokens);
    if (!tokens) return gkd_tok_out_of_memory("adding special tokens");
    tok->tokens = tokens;
    int *added = realloc(tok->added, ((size_t)tok->n_added + (size_t)n + 1) * sizeof *added);
    if (!added) return gkd_tok_out_of_memory("adding special tokens");
    tok->added = added;
    for (int k = 0; k < n; k++) {
        size_t len = strlen(specials[k]);
        if (gkd_tok_str_map_get(&tok->by_str, specials[k], len) >= 0) continue; /* present: keeps its id */
        token *t = &tok->tokens[tok->n_tokens];
        memset(t, 0, sizeof *t);
        if (!gkd_tok_set_token(t, specials[k], len, specials[k], len)) {
            free(t->bytes);
            free(t->str);
            return gkd_tok_out_of_memory("adding special tokens");
        }
        t->in_vocab = t->added = t->special = 1;
        if (gkd_tok_str_map_intern(&tok->by_str, t->str, t->str_len, tok->n_tokens) == -2) {
            free(t->bytes);
            free(t->str);
            return gkd_tok_out_of_memory("adding special tokens");
        }
        tok->added[tok->n_added++] = tok->n_tokens++;
    }
    return gkd_tok_index_merges_and_added(tok);
}

/* ---------------------------------------------------------------------------------------------------
 * Lookups. */

int gkd_tokenizer_vocab_size(const gkd_tokenizer *tok) {
    return tok ? tok->n_tokens : 0;
}

int gkd_tokenizer_token_id(const gkd_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    return gkd_tok_str_map_get(&tok->by_str, token, strlen(token));
}

const char *gkd_tokenizer_token_str(const gkd_tokenizer *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_tokens) return NULL;
    return tok->tokens[id].str;
}

const char *gkd_tokenizer_token_bytes(const gkd_tokenizer *tok, int id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_tokens) return NULL;
    if (len) *len = tok->tokens[id].len;
    return tok->tokens[id].bytes;
}

int gkd_tokenizer_is_special(const gkd_tokenizer *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_tokens) return 0;
    return tok->tokens[id].special;
}

int gkd_tokenizer_role_id(const gkd_tokenizer *tok, gkd_token_role role) {
    if (!tok || role < 0 || role >= GKD_TOKEN_ROLE_COUNT) return -1;
    return tok->role[role];
}

gkd_status gkd_tokenizer_set_role(gkd_tokenizer *tok, gkd_token_role role, int id) {
    if (!tok || role < 0 || role >= GKD_TOKEN_ROLE_COUNT)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer set_role: bad tokenizer or role");
    if (id < -1 || id >= tok->n_tokens)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer set_role: id %d is outside the vocabulary (%d)", id,
                             tok->n_tokens);
    tok->role[role] = id;
    return GKD_OK;
}
