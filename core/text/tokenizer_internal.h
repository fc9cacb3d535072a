/* Private to the tokenizer files (tokenizer*.c): the tokenizer's tables, one encode call's scratch memory,
 * and the functions the parts share. Nothing outside core/text includes this.
 * Rules: a gkd_tokenizer is read-only once built (scratch memory belongs to one call); the maps do not own
 * their string keys, which point into the token table; the functions that allocate and return int return
 * 0 when out of memory (gkd_tok_str_map_intern: -2), leaving what they had intact for its owner to free. */
#ifndef GKD_TOKENIZER_INTERNAL_H
#define GKD_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/buf.h"
#include "core/base/utf8.h"
#include "core/text/tokenizer.h"

/* Makes *p hold at least `need` elements of `size` bytes; returns 0 when out of memory. */
int gkd_tok_reserve(void **p, size_t *cap, size_t need, size_t size);
gkd_status gkd_tok_out_of_memory(const char *what);

/* The classes the pre-tokenizer regexes need: \s, \p{L}, \p{N}, and everything else. */
typedef enum {
    CLS_OTHER,
    CLS_LETTER,
    CLS_NUMBER,
    CLS_SPACE,
} char_class;

/* The class of a code point >= 0x80 (GKD_UTF8_INVALID, a byte outside valid UTF-8, is "other"). */
char_class gkd_tok_classify_wide(uint32_t cp);

/* The class of a code point; ASCII inline, as nearly every character of most text is. */
static inline char_class gkd_tok_classify(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CLS_LETTER;
        if (cp >= '0' && cp <= '9') return CLS_NUMBER;
        return gkd_utf8_is_white_space(cp) ? CLS_SPACE : CLS_OTHER;
    }
    return gkd_tok_classify_wide(cp);
}
/* Appends the byte-level form of bytes[0..len) (each byte becomes a 1- or 2-byte UTF-8 sequence). */
void gkd_tok_bytes_to_str(const unsigned char *bytes, size_t len, gkd_buf *out);
/* Decodes a byte-level string into bytes (out needs strlen(s) bytes); returns the length, or -1 when a
 * character is outside the alphabet. */
long gkd_tok_str_to_bytes(const char *s, size_t len, unsigned char *out);

/* Hash maps (tokenizer.c): token pairs -> int, and byte strings -> int. */

/* A pair of token ids as one map key. */
static inline uint64_t gkd_tok_pair_key(int a, int b) {
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}

enum { PAIR_EMPTY = -1 };

typedef struct {
    uint64_t *keys;
    int *vals; /* PAIR_EMPTY marks a free slot */
    size_t cap, n;
} pair_map;

typedef struct {
    const char *key;
    size_t len;
    int val; /* -1 marks a free slot */
} str_slot;

typedef struct {
    str_slot *slots;
    size_t cap, n;
} str_map;

/* The hash of a pair key (and, after FNV-1a, of a string): MurmurHash3's finalizer. */
static inline uint64_t gkd_tok_mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

void gkd_tok_pair_map_free(pair_map *m);
/* The value of key, or -1. Inline: it is BPE's innermost lookup. */
static inline int gkd_tok_pair_map_get(const pair_map *m, uint64_t key) {
    if (!m->cap) return -1;
    for (size_t j = gkd_tok_mix64(key) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        if (m->vals[j] == PAIR_EMPTY) return -1;
        if (m->keys[j] == key) return m->vals[j];
    }
}
/* Inserts or overwrites; returns 0 when out of memory. val must be >= 0. */
int gkd_tok_pair_map_put(pair_map *m, uint64_t key, int val);
void gkd_tok_str_map_free(str_map *m);
/* The value of key[0..len), or -1. */
int gkd_tok_str_map_get(const str_map *m, const char *key, size_t len);
/* Finds key, inserting it with `val` when absent; returns its value, or -2 when out of memory. */
int gkd_tok_str_map_intern(str_map *m, const char *key, size_t len, int val);

/* A binary min-heap of entries ordered by (key, a, b), each carrying an item: BPE's merge candidates and
 * training's queue of pairs share it. */
typedef struct {
    int64_t key;
    int a, b;
    int item;
} heap_entry;

typedef struct {
    heap_entry *v;
    size_t n, cap;
} tok_heap;

/* Inline, as BPE pushes and pops once per merge. */
static inline int gkd_tok_entry_less(heap_entry x, heap_entry y) {
    if (x.key != y.key) return x.key < y.key;
    return x.a != y.a ? x.a < y.a : x.b < y.b;
}

/* Adds e; returns 0 when out of memory. */
static inline int gkd_tok_heap_push(tok_heap *h, heap_entry e) {
    if (h->n == h->cap && !gkd_tok_reserve((void **)&h->v, &h->cap, h->n + 1, sizeof *h->v)) return 0;
    size_t i = h->n++;
    while (i > 0 && gkd_tok_entry_less(e, h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
    return 1;
}

/* Removes and returns the least entry; h->n must be > 0. */
static inline heap_entry gkd_tok_heap_pop(tok_heap *h) {
    heap_entry top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && gkd_tok_entry_less(h->v[c + 1], h->v[c])) c++;
        if (!gkd_tok_entry_less(h->v[c], last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* One pre-tokenizer step of a Hugging Face pipeline; each refines the pieces of the step before. */
typedef enum {
    STEP_BYTE_LEVEL,   /* ByteLevel; with use_regex it splits with the GPT-2 pattern first */
    STEP_SPLIT_GPT2,   /* Split with the GPT-2 pattern */
    STEP_SPLIT_LLAMA3, /* Split with the Llama-3 pattern (digits in groups of up to 3) */
    STEP_SPLIT_QWEN2,  /* Split with the Llama-3 pattern but one digit per piece (Qwen2) */
    STEP_DIGITS,       /* Digits: runs of numbers, or each number alone when individual */
} step_kind;

typedef struct {
    step_kind kind;
    int flag; /* BYTE_LEVEL: use_regex; DIGITS: individual_digits */
} pre_step;

enum { MAX_PRE_STEPS = 8 };

typedef struct {
    char *bytes; /* what the token decodes to (NUL-terminated) */
    char *str;   /* its tokenizer.json string: byte-level form, or an added token's content */
    size_t len, str_len;
    unsigned in_vocab : 1;   /* listed in model.vocab */
    unsigned added : 1;      /* listed in added_tokens */
    unsigned special : 1;    /* added token with "special": true */
    unsigned normalized : 1; /* added token with "normalized": true */
} token;

typedef struct {
    int left, right, result;
} merge;

struct gkd_tokenizer {
    token *tokens;
    int n_tokens;
    int byte_id[256];
    merge *merges; /* by rank */
    int n_merges;
    pair_map merge_rank; /* (left, right) -> rank */
    str_map by_str;      /* tokenizer.json string -> id */
    int *added;          /* ids of added tokens in added_tokens order */
    int n_added;
    unsigned char added_first[256]; /* first bytes of added tokens: a cheap filter while matching */
    pre_step steps[MAX_PRE_STEPS];
    int n_steps;
    int steps_in_sequence; /* the file wrote the pre-tokenizer as a Sequence */
    int ignore_merges;     /* a piece that is a whole vocabulary token is not merged (Llama-3) */
    int role[GKD_TOKEN_ROLE_COUNT];
};

/* Fills by_str and byte_id; `where` prefixes errors. */
gkd_status gkd_tok_index_tokens(gkd_tokenizer *tok, const char *where);
/* Fills merge_rank (a later duplicate of a pair wins, as in Hugging Face), added_first and the roles. */
gkd_status gkd_tok_index_merges_and_added(gkd_tokenizer *tok);
/* Sets a token's bytes and string (copied); returns 0 when out of memory. */
int gkd_tok_set_token(token *t, const char *bytes, size_t len, const char *str, size_t str_len);

/* Working memory of one encode call; every array grows on demand. */
typedef struct {
    int id, prev, next; /* id < 0: merged into the symbol on its left */
} bpe_sym;

typedef struct {
    /* Per code point of the stretch being split; these five share cap_text and grow together. */
    uint32_t *cp;
    unsigned char *cls;
    size_t *off;              /* byte offsets, plus one past the end */
    size_t *cuts, *cuts_next; /* piece ends, in code points: the current and the next step's */
    size_t cap_text, n_cuts;
    bpe_sym *sym;
    size_t cap_sym;
    tok_heap heap; /* merge candidates: (rank, position, 0), item = position */
    int *ids;
    size_t n_ids, cap_ids;
    gkd_buf piece_str; /* the piece in byte-level form, for ignore_merges */
} scratch;

void gkd_tok_scratch_free(scratch *sc);
/* Runs the pre-tokenizer over s[0..len): sc->cuts[0..n_cuts) are the piece ends in code points and
 * sc->off maps them to bytes. */
gkd_status gkd_tok_split(const gkd_tokenizer *tok, const unsigned char *s, size_t len, scratch *sc);

#endif
