/* Training a byte-level BPE vocabulary on a corpus (gkd_tokenizer_train).
 * Rules: ids 0..255 are the bytes, then one id per merge in rank order, then the specials; ties between
 * pairs of equal count go to the smaller left id, then the smaller right id, so training is deterministic. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tokenizer_internal.h"

/* ---------------------------------------------------------------------------------------------------
 * Training. Pair counts are kept over the unique pre-token words (weighted by how often each occurs)
 * and updated incrementally: a merge touches only the words that hold its pair (each pair lists them),
 * and a max-queue of (count, pair) entries finds the next merge. A pair's count only falls once the pair
 * exists (new pairs contain the new token), so stale entries are re-queued with their current count when
 * they surface, and the first entry whose count is current is the true maximum. */

typedef struct {
    size_t start; /* its symbols in the arena */
    int len;
    int64_t count;
} train_word;

typedef struct {
    int a, b;
    int64_t count;
    int *words; /* words that hold or held the pair; may repeat */
    int n_words, cap_words;
    int fresh_at; /* the merge step that last listed it as fresh */
} train_pair;

typedef struct {
    train_word *words;
    int n_words;
    int *arena;
    size_t n_symbols; /* in all words, before any merge */
    int *seen;        /* per word: the last merge step that visited it */
    train_pair *pairs;
    int n_pairs, cap_pairs;
    pair_map pair_index;
    tok_heap queue; /* (-count, left, right), item = the pair */
    int *fresh;     /* pairs holding the new token, to queue after a merge */
    int n_fresh, cap_fresh;
} trainer;

static void trainer_free(trainer *tr) {
    for (int i = 0; i < tr->n_pairs; i++) free(tr->pairs[i].words);
    free(tr->pairs);
    free(tr->words);
    free(tr->arena);
    free(tr->seen);
    gkd_tok_pair_map_free(&tr->pair_index);
    free(tr->queue.v);
    free(tr->fresh);
}

/* Adds delta occurrences of (a, b) in word w, creating the pair when new and listing w in it when
 * `list_word`; returns the pair's index or -1 when out of memory. */
static int pair_add(trainer *tr, int a, int b, int64_t delta, int w, int list_word) {
    uint64_t key = gkd_tok_pair_key(a, b);
    int p = gkd_tok_pair_map_get(&tr->pair_index, key);
    if (p < 0) {
        size_t cap = (size_t)tr->cap_pairs;
        if (!gkd_tok_reserve((void **)&tr->pairs, &cap, (size_t)tr->n_pairs + 1, sizeof *tr->pairs))
            return -1;
        tr->cap_pairs = (int)cap;
        p = tr->n_pairs;
        if (!gkd_tok_pair_map_put(&tr->pair_index, key, p)) return -1;
        tr->pairs[tr->n_pairs++] = (train_pair){.a = a, .b = b, .fresh_at = -1};
    }
    train_pair *pr = &tr->pairs[p];
    pr->count += delta;
    if (list_word && (pr->n_words == 0 || pr->words[pr->n_words - 1] != w)) {
        size_t cap = (size_t)pr->cap_words;
        if (!gkd_tok_reserve((void **)&pr->words, &cap, (size_t)pr->n_words + 1, sizeof *pr->words))
            return -1;
        pr->cap_words = (int)cap;
        pr->words[pr->n_words++] = w;
    }
    return p;
}

/* Queues pair at its current count. The queue is a min-heap, so the count goes in negated: the higher
 * count comes first, then the smaller left id, then the smaller right id. */
static int queue_push(trainer *tr, int pair) {
    const train_pair *p = &tr->pairs[pair];
    return gkd_tok_heap_push(&tr->queue, (heap_entry){-p->count, p->a, p->b, pair});
}

/* Counts the unique pre-token words of the corpus and lays their bytes out as symbols. */
static gkd_status collect_words(trainer *tr, const gkd_tokenizer *splitter, const char *const *texts, int n) {
    str_map seen_words = {0};
    scratch sc = {0};
    size_t cap_words = 0, n_symbols = 0;
    const char **word_text = NULL;
    size_t cap_text = 0;
    gkd_status st = GKD_OK;
    for (int i = 0; i < n && st == GKD_OK; i++) {
        const char *text = texts[i] ? texts[i] : "";
        st = gkd_tok_split(splitter, (const unsigned char *)text, strlen(text), &sc);
        size_t start = 0;
        for (size_t c = 0; c < sc.n_cuts && st == GKD_OK; c++) {
            size_t end = sc.off[sc.cuts[c]];
            int w = gkd_tok_str_map_intern(&seen_words, text + start, end - start, tr->n_words);
            if (w == -2 ||
                (w == tr->n_words &&
                 (!gkd_tok_reserve((void **)&tr->words, &cap_words, (size_t)w + 1, sizeof *tr->words) ||
                  !gkd_tok_reserve((void **)&word_text, &cap_text, (size_t)w + 1, sizeof *word_text)))) {
                st = gkd_tok_out_of_memory("counting words");
                break;
            }
            if (w == tr->n_words) {
                tr->words[w] = (train_word){n_symbols, (int)(end - start), 0};
                word_text[w] = text + start;
                n_symbols += end - start;
                tr->n_words++;
            }
            tr->words[w].count++;
            start = end;
        }
    }
    tr->n_symbols = n_symbols;
    if (st == GKD_OK) {
        tr->arena = malloc((n_symbols + 1) * sizeof *tr->arena);
        tr->seen = malloc(((size_t)tr->n_words + 1) * sizeof *tr->seen);
        if (!tr->arena || !tr->seen) st = gkd_tok_out_of_memory("counting words");
    }
    for (int w = 0; w < tr->n_words && st == GKD_OK; w++) {
        tr->seen[w] = -1;
        for (int k = 0; k < tr->words[w].len; k++)
            tr->arena[tr->words[w].start + (size_t)k] = (unsigned char)word_text[w][k]; /* byte b is id b */
    }
    free(word_text);
    gkd_tok_scratch_free(&sc);
    gkd_tok_str_map_free(&seen_words);
    return st;
}

/* Replaces every (a, b) in word w by c, moving the word's pair counts along. */
static gkd_status merge_word(trainer *tr, int w, int a, int b, int c, int step) {
    train_word *wd = &tr->words[w];
    int *sym = tr->arena + wd->start;
    int has = 0;
    for (int k = 0; k + 1 < wd->len && !has; k++) has = sym[k] == a && sym[k + 1] == b;
    if (!has) return GKD_OK;
    for (int k = 0; k + 1 < wd->len; k++)
        if (pair_add(tr, sym[k], sym[k + 1], -wd->count, w, 0) < 0) return gkd_tok_out_of_memory("training");
    int m = 0;
    for (int k = 0; k < wd->len;) {
        if (k + 1 < wd->len && sym[k] == a && sym[k + 1] == b) {
            sym[m++] = c;
            k += 2;
        } else {
            sym[m++] = sym[k++];
        }
    }
    wd->len = m;
    for (int k = 0; k + 1 < m; k++) {
        int is_new = sym[k] == c || sym[k + 1] == c;
        int p = pair_add(tr, sym[k], sym[k + 1], wd->count, w, is_new);
        if (p < 0) return gkd_tok_out_of_memory("training");
        if (is_new && tr->pairs[p].fresh_at != step) {
            size_t cap = (size_t)tr->cap_fresh;
            if (!gkd_tok_reserve((void **)&tr->fresh, &cap, (size_t)tr->n_fresh + 1, sizeof *tr->fresh))
                return gkd_tok_out_of_memory("training");
            tr->cap_fresh = (int)cap;
            tr->pairs[p].fresh_at = step;
            tr->fresh[tr->n_fresh++] = p;
        }
    }
    return GKD_OK;
}

/* 1 when the byte-level string of bytes equals one of the specials, which would give two vocabulary
 * entries the same string. */
static int collides_with_special(const char *bytes, size_t len, const char *const *specials, int n_specials) {
    gkd_buf s = {0};
    gkd_tok_bytes_to_str((const unsigned char *)bytes, len, &s);
    int hit = 0;
    for (int k = 0; k < n_specials && !hit && !s.failed; k++)
        hit = strlen(specials[k]) == s.len && memcmp(specials[k], s.data, s.len) == 0;
    gkd_buf_free(&s);
    return hit;
}

/* Runs merges until tok holds max_tokens tokens or nothing is left to merge. */
static gkd_status learn_merges(trainer *tr, gkd_tokenizer *tok, int max_tokens, const char *const *specials,
                               int n_specials) {
    for (int w = 0; w < tr->n_words; w++) {
        const int *sym = tr->arena + tr->words[w].start;
        for (int k = 0; k + 1 < tr->words[w].len; k++)
            if (pair_add(tr, sym[k], sym[k + 1], tr->words[w].count, w, 1) < 0)
                return gkd_tok_out_of_memory("training");
    }
    for (int p = 0; p < tr->n_pairs; p++)
        if (!queue_push(tr, p)) return gkd_tok_out_of_memory("training");
    while (tok->n_tokens < max_tokens && tr->queue.n) {
        heap_entry e = gkd_tok_heap_pop(&tr->queue);
        int pair = e.item;
        int64_t now = tr->pairs[pair].count;
        if (now != -e.key) {
            if (now > 0 && !queue_push(tr, pair)) return gkd_tok_out_of_memory("training");
            continue;
        }
        int a = tr->pairs[pair].a, b = tr->pairs[pair].b, c = tok->n_tokens, step = tok->n_merges;
        const token *ta = &tok->tokens[a], *tb = &tok->tokens[b];
        size_t len = ta->len + tb->len;
        char *bytes = malloc(len + 1);
        if (!bytes) return gkd_tok_out_of_memory("training");
        memcpy(bytes, ta->bytes, ta->len);
        memcpy(bytes + ta->len, tb->bytes, tb->len);
        if (collides_with_special(bytes, len, specials, n_specials)) {
            free(bytes); /* never merged: the pair is dropped from the queue for good */
            continue;
        }
        gkd_buf str = {0};
        gkd_tok_bytes_to_str((const unsigned char *)bytes, len, &str);
        tok->n_tokens++; /* counted before filling, so that a half-made token is still freed */
        int ok = !str.failed && gkd_tok_set_token(&tok->tokens[c], bytes, len, str.data, str.len);
        free(bytes);
        gkd_buf_free(&str);
        if (!ok) return gkd_tok_out_of_memory("training");
        tok->tokens[c].in_vocab = 1;
        tok->merges[tok->n_merges++] = (merge){a, b, c};
        tr->n_fresh = 0;
        for (int i = 0; i < tr->pairs[pair].n_words; i++) {
            int w = tr->pairs[pair].words[i];
            if (tr->seen[w] == step) continue;
            tr->seen[w] = step;
            gkd_status st = merge_word(tr, w, a, b, c, step);
            if (st != GKD_OK) return st;
        }
        for (int i = 0; i < tr->n_fresh; i++)
            if (tr->pairs[tr->fresh[i]].count > 0 && !queue_push(tr, tr->fresh[i]))
                return gkd_tok_out_of_memory("training");
    }
    return GKD_OK;
}

static gkd_tokenizer *new_tokenizer(int cap_tokens, int cap_merges) {
    gkd_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->tokens = calloc((size_t)cap_tokens + 1, sizeof *tok->tokens);
    tok->merges = malloc(((size_t)cap_merges + 1) * sizeof *tok->merges);
    if (!tok->tokens || !tok->merges) {
        gkd_tokenizer_free(tok);
        return NULL;
    }
    for (int r = 0; r < GKD_TOKEN_ROLE_COUNT; r++) tok->role[r] = -1;
    return tok;
}

gkd_status gkd_tokenizer_train(const char *const *texts, int n, int vocab_size, const char *const *specials,
                               int n_specials, gkd_tokenizer **out) {
    if ((!texts && n > 0) || n < 0 || (!specials && n_specials > 0) || n_specials < 0 || !out)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer train: bad argument");
    if (vocab_size < 256 + n_specials)
        return gkd_error_set(GKD_ERR_ARG,
                             "tokenizer train: vocab_size %d is below 256 bytes + %d special tokens",
                             vocab_size, n_specials);
    for (int k = 0; k < n_specials; k++) {
        if (!specials[k] || !specials[k][0])
            return gkd_error_set(GKD_ERR_ARG, "tokenizer train: special token %d is empty", k);
        unsigned char byte[2];
        size_t len = strlen(specials[k]);
        if (len <= 2 && gkd_tok_str_to_bytes(specials[k], len, byte) == 1)
            return gkd_error_set(GKD_ERR_ARG,
                                 "tokenizer train: special token \"%s\" is the string of byte 0x%02x",
                                 specials[k], byte[0]);
        for (int j = 0; j < k; j++)
            if (strcmp(specials[j], specials[k]) == 0)
                return gkd_error_set(GKD_ERR_ARG, "tokenizer train: special token \"%s\" is listed twice",
                                     specials[k]);
    }
    /* Words first: each merge removes at least one symbol, which bounds the tables for any vocab_size. */
    gkd_tokenizer splitter = {.steps = {{STEP_BYTE_LEVEL, 1}}, .n_steps = 1};
    trainer tr = {0};
    gkd_status st = collect_words(&tr, &splitter, texts, n);
    int max_merges = vocab_size - 256 - n_specials;
    if ((size_t)max_merges > tr.n_symbols) max_merges = (int)tr.n_symbols;
    gkd_tokenizer *tok = st == GKD_OK ? new_tokenizer(256 + max_merges + n_specials, max_merges) : NULL;
    if (!tok) {
        trainer_free(&tr);
        return st == GKD_OK ? gkd_tok_out_of_memory("training") : st;
    }
    tok->steps[0] = splitter.steps[0];
    tok->n_steps = 1;
    for (int b = 0; b < 256 && st == GKD_OK; b++) {
        char byte = (char)b;
        gkd_buf str = {0};
        gkd_tok_bytes_to_str((const unsigned char *)&byte, 1, &str);
        if (str.failed || !gkd_tok_set_token(&tok->tokens[b], &byte, 1, str.data, str.len))
            st = gkd_tok_out_of_memory("training");
        tok->tokens[b].in_vocab = 1;
        tok->n_tokens++;
        gkd_buf_free(&str);
    }
    if (st == GKD_OK) st = learn_merges(&tr, tok, 256 + max_merges, specials, n_specials);
    trainer_free(&tr);
    if (st == GKD_OK) {
        tok->added = malloc(((size_t)n_specials + 1) * sizeof *tok->added);
        if (!tok->added) st = gkd_tok_out_of_memory("training");
    }
    for (int k = 0; k < n_specials && st == GKD_OK; k++) {
        token *t = &tok->tokens[tok->n_tokens];
        size_t len = strlen(specials[k]);
        if (!gkd_tok_set_token(t, specials[k], len, specials[k], len)) st = gkd_tok_out_of_memory("training");
        t->in_vocab = t->added = t->special = 1;
        tok->added[tok->n_added++] = tok->n_tokens++;
    }
    if (st == GKD_OK) st = gkd_tok_index_tokens(tok, "tokenizer train");
    if (st == GKD_OK) st = gkd_tok_index_merges_and_added(tok);
    if (st != GKD_OK) {
        gkd_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return GKD_OK;
}
