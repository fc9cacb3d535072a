/* The reward model's text side (see reward_model.h): the words it reads (gkd_reward_model_normalize,
 * gkd_word_key) and its training pairs (gkd_reward_model_make_pairs: real summaries and
 * one-word corruptions).
 * Rules: words are split as reward/factual.c splits them, so "a word absent from the source" means the
 * same thing here and in gkd_factual_score; every random draw comes from the seed's GKD_RNG_STREAM_USER
 * stream. */
#include "reward/reward_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"
#include "reward/metrics.h"
#include "reward/text.h"

/* ---------- words ---------- */

/* Words are split and keyed as gkd_factual_score splits and keys them: gkd_words_split and gkd_word_key
 * (reward/words.c). */

gkd_status gkd_reward_model_normalize(const char *text, char **out, int *n_words) {
    *out = NULL;
    if (!text) return gkd_error_set(GKD_ERR_ARG, "reward model normalize: NULL text");
    size_t n = strlen(text);
    gkd_word_list words = {0};
    gkd_status st = gkd_words_split(text, n, &words);
    char *s = st == GKD_OK ? malloc(2 * n + 1) : NULL;
    if (st == GKD_OK && !s) st = gkd_error_set(GKD_ERR_NOMEM, "reward model normalize: %zu bytes", n);
    if (st != GKD_OK) {
        free(words.v);
        return st;
    }
    size_t used = 0;
    for (int w = 0; w < words.n; w++) {
        s[used++] = ' ';
        used += gkd_word_key(text + words.v[w].start, words.v[w].len, s + used);
    }
    s[used] = '\0';
    if (n_words) *n_words = words.n;
    free(words.v);
    *out = s;
    return GKD_OK;
}

/* ---------- key sets: the normalised words of a text, sorted for lookup ---------- */

typedef struct {
    char *text; /* the normalised text the views point into */
    gkd_key_view *keys;
    int n;
} key_set;

static void key_set_free(key_set *k) {
    free(k->text);
    free(k->keys);
    *k = (key_set){0};
}

/* The keys of text's words; with_parts adds each joiner-separated part of a word that has joiners. */
static gkd_status key_set_build(const char *text, int with_parts, key_set *out) {
    *out = (key_set){0};
    gkd_status st = gkd_reward_model_normalize(text, &out->text, NULL);
    if (st != GKD_OK) return st;
    size_t len = strlen(out->text);
    out->keys = malloc((len + 1) * sizeof *out->keys);
    if (!out->keys) {
        key_set_free(out);
        return gkd_error_set(GKD_ERR_NOMEM, "reward model: key set of %zu bytes", len);
    }
    const char *t = out->text;
    for (size_t i = 0; i < len;) {
        size_t j = ++i; /* every word follows one space */
        while (j < len && t[j] != ' ') j++;
        out->keys[out->n++] = (gkd_key_view){t + i, (int)(j - i)};
        int has_joiner = 0;
        for (size_t k = i; k < j; k++) has_joiner |= gkd_word_is_joiner(t[k]);
        for (size_t k = i, part = i; with_parts && has_joiner && k <= j; k++) {
            if (k == j || gkd_word_is_joiner(t[k])) {
                if (k > part) out->keys[out->n++] = (gkd_key_view){t + part, (int)(k - part)};
                part = k + 1;
            }
        }
        i = j;
    }
    qsort(out->keys, (size_t)out->n, sizeof *out->keys, gkd_key_view_cmp);
    return GKD_OK;
}

static int key_set_has(const key_set *k, const char *s, size_t len) {
    gkd_key_view v = {s, (int)len};
    return k->n && bsearch(&v, k->keys, (size_t)k->n, sizeof *k->keys, gkd_key_view_cmp) != NULL;
}

/* ---------- pairs ---------- */

gkd_reward_model_pair_config gkd_reward_model_pair_config_default(void) {
    return (gkd_reward_model_pair_config){
        .seed = 1, .rounds = 1, .max_source_words = 64, .require_grounded = 1};
}

void gkd_reward_model_pairs_free(gkd_reward_model_pairs *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        free(p->items[i].source);
        free(p->items[i].summary);
        free(p->items[i].original);
        free(p->items[i].replacement);
    }
    free(p->items);
    p->items = NULL;
    p->n = 0;
}

typedef enum { KIND_WORD, KIND_NAME, KIND_NUMBER, KIND_COUNT } word_kind;

static word_kind kind_of(const char *s, size_t len, int first_in_text) {
    for (size_t i = 0; i < len; i++)
        if (s[i] >= '0' && s[i] <= '9') return KIND_NUMBER;
    for (size_t i = first_in_text ? 1 : 0; i < len; i++)
        if (s[i] >= 'A' && s[i] <= 'Z') return KIND_NAME;
    return KIND_WORD;
}

/* A content word in gkd_factual_score's sense: a word that is not one of its stopwords. */
static gkd_status is_content_word(const char *s, size_t len, int *content) {
    *content = 0;
    char *w = strndup(s, len);
    if (!w) return gkd_error_set(GKD_ERR_NOMEM, "reward model: word of %zu bytes", len);
    gkd_factual_parts p;
    gkd_status st = gkd_factual_score(w, "", NULL, &p);
    *content = p.n_content > 0;
    free(w);
    return st;
}

/* Content words of all summaries, by kind; an entry is drawn as often as its word occurs. */
typedef struct {
    char **surface; /* (n) the word as written */
    char **key;     /* (n) its normalised key */
    int *example;   /* (n) the example it comes from */
    int n, cap;
    int *by_kind[KIND_COUNT];
    int n_kind[KIND_COUNT];
} word_pool;

static void word_pool_free(word_pool *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->surface[i]);
        free(p->key[i]);
    }
    free(p->surface);
    free(p->key);
    free(p->example);
    for (int k = 0; k < KIND_COUNT; k++) free(p->by_kind[k]);
    *p = (word_pool){0};
}

static gkd_status word_pool_add(word_pool *p, const char *s, size_t len, int example, word_kind kind) {
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 1024, ok = 1;
        char **surface = realloc(p->surface, (size_t)cap * sizeof *surface);
        ok &= surface != NULL;
        if (surface) p->surface = surface;
        char **key = realloc(p->key, (size_t)cap * sizeof *key);
        ok &= key != NULL;
        if (key) p->key = key;
        int *ex = realloc(p->example, (size_t)cap * sizeof *ex);
        ok &= ex != NULL;
        if (ex) p->example = ex;
        for (int k = 0; k < KIND_COUNT; k++) {
            int *v = realloc(p->by_kind[k], (size_t)cap * sizeof *v);
            ok &= v != NULL;
            if (v) p->by_kind[k] = v;
        }
        if (!ok) return gkd_error_set(GKD_ERR_NOMEM, "reward model: word pool of %d", cap);
        p->cap = cap;
    }
    char *w = strndup(s, len), *k = malloc(len + 1);
    if (!w || !k) {
        free(w);
        free(k);
        return gkd_error_set(GKD_ERR_NOMEM, "reward model: word of %zu bytes", len);
    }
    gkd_word_key(s, len, k);
    p->surface[p->n] = w;
    p->key[p->n] = k;
    p->example[p->n] = example;
    p->by_kind[kind][p->n_kind[kind]++] = p->n;
    p->n++;
    return GKD_OK;
}

static gkd_status word_pool_build(const gkd_dataset *d, word_pool *p) {
    gkd_word_list words = {0};
    gkd_status st = GKD_OK;
    for (int e = 0; e < d->n && st == GKD_OK; e++) {
        const char *sum = d->items[e].target;
        st = gkd_words_split(sum, strlen(sum), &words);
        for (int w = 0; w < words.n && st == GKD_OK; w++) {
            const char *s = sum + words.v[w].start;
            size_t len = words.v[w].len;
            int content;
            st = is_content_word(s, len, &content);
            if (st == GKD_OK && content) st = word_pool_add(p, s, len, e, kind_of(s, len, w == 0));
        }
    }
    free(words.v);
    return st;
}

/* The byte length of text up to the first space after its first max_words words (max_words 0: all). */
static size_t cut_after_words(const char *text, int max_words, gkd_word_list *scratch, gkd_status *st) {
    size_t n = strlen(text);
    *st = GKD_OK;
    if (max_words <= 0) return n;
    *st = gkd_words_split(text, n, scratch);
    if (*st != GKD_OK || scratch->n <= max_words) return n;
    size_t end = scratch->v[max_words - 1].start + scratch->v[max_words - 1].len;
    while (end < n && text[end] != ' ') end++;
    return end;
}

/* Draws a replacement for word `orig_key` in source `src` from pool entries of `kind`: not from example
 * `example`, a different key, absent from the source's words and word parts, and unsupported in
 * gkd_factual_score's sense. Returns the pool index or -1 after `tries` failed draws. */
static int draw_replacement(const word_pool *pool, word_kind kind, int example, const char *orig_key,
                            const char *src, const key_set *parts, gkd_rng *rng, int tries, gkd_status *st) {
    *st = GKD_OK;
    if (pool->n_kind[kind] == 0) return -1;
    for (int t = 0; t < tries; t++) {
        int j = pool->by_kind[kind][gkd_rng_below(rng, (uint32_t)pool->n_kind[kind])];
        const char *key = pool->key[j];
        if (pool->example[j] == example || strcmp(key, orig_key) == 0 || key_set_has(parts, key, strlen(key)))
            continue;
        gkd_factual_parts fp;
        *st = gkd_factual_score(pool->surface[j], src, NULL, &fp);
        if (*st != GKD_OK) return -1;
        if (fp.n_content > 0 && fp.n_content_supported == 0) return j;
    }
    return -1;
}

typedef struct {
    gkd_reward_model_pair *items;
    int n, cap;
} pair_vec;

static gkd_status pair_push(pair_vec *v, const char *src, size_t src_len, char *summary, int label,
                            const char *original, const char *replacement, int example) {
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 256;
        gkd_reward_model_pair *items = realloc(v->items, (size_t)cap * sizeof *items);
        if (!items) {
            free(summary);
            return gkd_error_set(GKD_ERR_NOMEM, "reward model: %d pairs", cap);
        }
        v->items = items;
        v->cap = cap;
    }
    gkd_reward_model_pair p = {strndup(src, src_len),
                               summary,
                               label,
                               original ? strdup(original) : NULL,
                               replacement ? strdup(replacement) : NULL,
                               example,
                               0.0,
                               0};
    v->items[v->n++] = p;
    if (!p.source || !p.summary || (original && !p.original) || (replacement && !p.replacement))
        return gkd_error_set(GKD_ERR_NOMEM, "reward model: pair %d", v->n - 1);
    return GKD_OK;
}

/* c in the case of `like` when both are ASCII letters, so that a plain word taken from the start of a
 * summary reads naturally elsewhere, and the other way round. */
static char case_like(char c, char like) {
    if (like >= 'A' && like <= 'Z' && c >= 'a' && c <= 'z') return (char)(c - 'a' + 'A');
    if (like >= 'a' && like <= 'z' && c >= 'A' && c <= 'Z') return (char)(c - 'A' + 'a');
    return c;
}

/* The summary with bytes [at, at + len) replaced by `word`, as a new string. */
static char *splice(const char *summary, size_t at, size_t len, const char *word) {
    size_t n = strlen(summary), wl = strlen(word);
    char *s = malloc(n - len + wl + 1);
    if (!s) return NULL;
    memcpy(s, summary, at);
    memcpy(s + at, word, wl);
    memcpy(s + at + wl, summary + at + len, n - at - len + 1);
    return s;
}

/* Adds the rounds of pairs of example e; leaves them out when the example has no usable summary. */
static gkd_status example_pairs(const gkd_dataset *d, int e, const gkd_reward_model_pair_config *cfg,
                                const word_pool *pool, gkd_rng *rng, gkd_word_list *words, pair_vec *out) {
    const char *summary = d->items[e].target, *source = d->items[e].source ? d->items[e].source : "";
    gkd_status st;
    size_t src_len = cut_after_words(source, cfg->max_source_words, words, &st);
    char *src = st == GKD_OK ? strndup(source, src_len) : NULL;
    if (st == GKD_OK && !src) st = gkd_error_set(GKD_ERR_NOMEM, "reward model: source of %zu bytes", src_len);
    key_set exact = {0}, parts = {0};
    if (st == GKD_OK) st = key_set_build(src, 0, &exact);
    if (st == GKD_OK) st = key_set_build(src, 1, &parts);
    if (st == GKD_OK) st = gkd_words_split(summary, strlen(summary), words);
    int *content = st == GKD_OK ? calloc((size_t)words->n + 1, sizeof *content) : NULL;
    if (st == GKD_OK && !content)
        st = gkd_error_set(GKD_ERR_NOMEM, "reward model: %d summary words", words->n);
    char key[256];
    int n_content = 0, grounded = 1;
    for (int w = 0; w < words->n && st == GKD_OK; w++) {
        const char *s = summary + words->v[w].start;
        size_t len = words->v[w].len;
        st = is_content_word(s, len, &content[w]);
        if (st != GKD_OK || !content[w]) continue;
        if (len >= sizeof key) { /* no word to swap, and no word of a package description either */
            content[w] = 0;
            grounded = 0;
            continue;
        }
        n_content++;
        grounded &= key_set_has(&exact, key, gkd_word_key(s, len, key));
    }
    int usable = st == GKD_OK && n_content > 0 && (grounded || !cfg->require_grounded);
    for (int r = 0; usable && r < cfg->rounds && st == GKD_OK; r++) {
        int pick = (int)gkd_rng_below(rng, (uint32_t)n_content), w = 0;
        for (;; w++)
            if (content[w] && pick-- == 0) break;
        const char *s = summary + words->v[w].start;
        size_t len = words->v[w].len;
        gkd_word_key(s, len, key);
        word_kind kind = kind_of(s, len, w == 0);
        int j = draw_replacement(pool, kind, e, key, src, &parts, rng, 64, &st);
        if (j < 0 && st == GKD_OK && kind != KIND_WORD)
            j = draw_replacement(pool, KIND_WORD, e, key, src, &parts, rng, 64, &st);
        if (j < 0) continue;
        char *orig = strndup(s, len), *kept = strdup(summary), *repl = strdup(pool->surface[j]);
        if (repl && kind_of(repl, strlen(repl), 1) == KIND_WORD) repl[0] = case_like(repl[0], s[0]);
        char *corrupted = repl ? splice(summary, words->v[w].start, len, repl) : NULL;
        if (!orig || !kept || !repl || !corrupted) {
            free(orig);
            free(kept);
            free(repl);
            free(corrupted);
            st = gkd_error_set(GKD_ERR_NOMEM, "reward model: pairs of example %d", e);
            break;
        }
        st = pair_push(out, src, src_len, kept, 1, NULL, NULL, e);
        if (st == GKD_OK)
            st = pair_push(out, src, src_len, corrupted, 0, orig, repl, e);
        else
            free(corrupted);
        free(orig);
        free(repl);
    }
    free(content);
    free(src);
    key_set_free(&exact);
    key_set_free(&parts);
    return st;
}

gkd_status gkd_reward_model_make_pairs(const gkd_dataset *d, const gkd_reward_model_pair_config *cfg,
                                       gkd_reward_model_pairs *out) {
    *out = (gkd_reward_model_pairs){0};
    if (!d || !cfg) return gkd_error_set(GKD_ERR_ARG, "reward model pairs: NULL argument");
    if (cfg->rounds < 1 || cfg->max_source_words < 0)
        return gkd_error_set(GKD_ERR_ARG, "reward model pairs: need rounds >= 1 and max_source_words >= 0");
    for (int e = 0; e < d->n; e++)
        if (!d->items[e].target)
            return gkd_error_set(GKD_ERR_ARG, "reward model pairs: example %d has no target", e);
    word_pool pool = {0};
    gkd_status st = word_pool_build(d, &pool);
    gkd_rng rng;
    gkd_rng_init(&rng, cfg->seed, GKD_RNG_STREAM_USER);
    gkd_word_list words = {0};
    pair_vec v = {0};
    for (int e = 0; e < d->n && st == GKD_OK; e++) st = example_pairs(d, e, cfg, &pool, &rng, &words, &v);
    free(words.v);
    word_pool_free(&pool);
    out->items = v.items;
    out->n = v.n;
    if (st != GKD_OK) gkd_reward_model_pairs_free(out);
    return st;
}

