/* Factual-consistency reward for a summary against its source (Debian package descriptions: long
 * description + package name). It rewards summaries that say only what the source supports: the
 * share of the summary's content words found in the source, and the share of its entity-like tokens
 * (names, versions, identifiers, numbers) found there, since an invented name or number is the
 * error that matters most in a package summary.
 * Words: maximal runs of letters and digits (any non-ASCII character that is not punctuation or a
 * symbol counts as a letter), joined across an inner '.', '-', '_' or apostrophe ("v1.2",
 * "libfoo-dev", "x86_64", "don't"), plus a trailing run of '+' or '#' ("c++", "C#"). A sentence
 * starts at the beginning of the text and after '.', '!' or '?' between words.
 * Matching: lowercase ASCII, a trailing "'s" dropped, a plural folded ("libraries" -> "library",
 * "tools" -> "tool", but not "class" or "status"); a source word with inner joiners also counts
 * each of its parts, and a summary word with inner '-' or '_' is supported when all its parts are.
 * Rules: stopwords (the list below) are neither content words nor entities; entities are a subset of
 * content words, so an unsupported entity lowers both precisions. */
#include "reward/metrics.h"
#include "reward/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Function words and contractions that carry no claim a source could contradict. */
static const char *const stopwords[] = {
    "a",       "about",      "above",     "after",   "again",   "against",   "all",       "also",
    "am",      "an",         "and",       "any",     "are",     "aren't",    "as",        "at",
    "be",      "because",    "been",      "before",  "being",   "below",     "between",   "both",
    "but",     "by",         "can",       "can't",   "cannot",  "could",     "couldn't",  "did",
    "didn't",  "do",         "does",      "doesn't", "doing",   "don't",     "down",      "during",
    "e.g",     "each",       "either",    "etc",     "few",     "for",       "from",      "further",
    "had",     "hadn't",     "has",       "hasn't",  "have",    "haven't",   "having",    "he",
    "her",     "here",       "hers",      "herself", "him",     "himself",   "his",       "how",
    "however", "i",          "i.e",       "if",      "in",      "into",      "is",        "isn't",
    "it",      "it's",       "its",       "itself",  "just",    "let's",     "may",       "me",
    "might",   "more",       "most",      "must",    "my",      "myself",    "neither",   "no",
    "nor",     "not",        "now",       "of",      "off",     "on",        "once",      "only",
    "or",      "other",      "otherwise", "our",     "ours",    "ourselves", "out",       "over",
    "own",     "per",        "same",      "shall",   "she",     "should",    "shouldn't", "so",
    "some",    "such",       "than",      "that",    "that's",  "the",       "their",     "theirs",
    "them",    "themselves", "then",      "there",   "there's", "these",     "they",      "this",
    "those",   "through",    "thus",      "to",      "too",     "under",     "until",     "up",
    "upon",    "us",         "very",      "via",     "was",     "wasn't",    "we",        "were",
    "weren't", "what",       "when",      "where",   "whether", "which",     "while",     "who",
    "whom",    "whose",      "why",       "will",    "with",    "within",    "without",   "won't",
    "would",   "wouldn't",   "yet",       "you",     "your",    "yours",     "yourself",  "yourselves",
};

static int is_stopword(const char *lower, size_t len) {
    for (size_t k = 0; k < sizeof stopwords / sizeof stopwords[0]; k++)
        if (strlen(stopwords[k]) == len && memcmp(stopwords[k], lower, len) == 0) return 1;
    return 0;
}

/* Grows the buffer that holds one word's key. */
static gkd_status reserve_scratch(char **scratch, size_t *cap, size_t len) {
    if (len + 1 <= *cap) return GKD_OK;
    char *p = realloc(*scratch, len + 1);
    if (!p) return gkd_error_set(GKD_ERR_NOMEM, "factual: word of %zu bytes", len);
    *scratch = p;
    *cap = len + 1;
    return GKD_OK;
}

static gkd_status add_key(gkd_toklist *keys, const char *s, size_t len, char *scratch) {
    size_t k = gkd_word_fold(scratch, gkd_word_lower(s, len, scratch));
    return k ? gkd_toklist_push(keys, scratch, k) : GKD_OK;
}

/* Adds every word of `text`, and every joiner-separated part of a word that has joiners. */
static gkd_status add_source_words(gkd_toklist *keys, const char *text, char **scratch, size_t *scratch_cap) {
    gkd_word_list words = {0};
    gkd_status st = gkd_words_split(text, strlen(text), &words);
    for (int w = 0; w < words.n && st == GKD_OK; w++) {
        const char *s = text + words.v[w].start;
        size_t len = words.v[w].len;
        st = reserve_scratch(scratch, scratch_cap, len);
        if (st == GKD_OK) st = add_key(keys, s, len, *scratch);
        size_t part = 0;
        int has_joiner = 0;
        for (size_t i = 0; i < len; i++) has_joiner |= gkd_word_is_joiner(s[i]);
        for (size_t i = 0; has_joiner && i <= len && st == GKD_OK; i++) {
            if (i == len || gkd_word_is_joiner(s[i])) {
                if (i > part) st = add_key(keys, s + part, i - part, *scratch);
                part = i + 1;
            }
        }
    }
    free(words.v);
    return st;
}

static int key_set_has(const gkd_key_view *set, int n, const char *s, size_t len) {
    gkd_key_view k = {s, (int)len};
    return bsearch(&k, set, (size_t)n, sizeof *set, gkd_key_view_cmp) != NULL;
}

/* A summary word is supported when its key is a source key, or, for a word joined by '-' or '_',
 * when every part's key is. */
static int word_supported(const gkd_key_view *set, int n, const char *s, size_t len, char *scratch) {
    size_t k = gkd_word_fold(scratch, gkd_word_lower(s, len, scratch));
    if (key_set_has(set, n, scratch, k)) return 1;
    int compound = 0;
    for (size_t i = 0; i < len; i++) compound |= s[i] == '-' || s[i] == '_';
    if (!compound) return 0;
    size_t part = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '-' || s[i] == '_') {
            if (i > part) {
                size_t pk = gkd_word_fold(scratch, gkd_word_lower(s + part, i - part, scratch));
                if (!key_set_has(set, n, scratch, pk)) return 0;
            }
            part = i + 1;
        }
    }
    return 1;
}

static int is_entity(const char *s, size_t len, int sentence_start) {
    int uppers = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if ((c >= '0' && c <= '9') || c == '+' || c == '#') return 1;
        if ((c == '.' || c == '-' || c == '_') && i > 0 && i + 1 < len) return 1;
        uppers += c >= 'A' && c <= 'Z';
    }
    return uppers >= 2 || (!sentence_start && s[0] >= 'A' && s[0] <= 'Z');
}

gkd_status gkd_factual_score(const char *summary, const char *document, const char *package,
                             gkd_factual_parts *out) {
    memset(out, 0, sizeof *out);
    if (!summary || !document)
        return gkd_error_set(GKD_ERR_ARG, "factual score: NULL %s", summary ? "document" : "summary");
    gkd_toklist keys = {0};
    gkd_key_view *set = NULL;
    gkd_word_list words = {0};
    char *scratch = NULL;
    size_t scratch_cap = 0;
    gkd_status st = add_source_words(&keys, document, &scratch, &scratch_cap);
    if (st == GKD_OK && package) st = add_source_words(&keys, package, &scratch, &scratch_cap);
    if (st == GKD_OK) {
        set = malloc((size_t)(keys.n + 1) * sizeof *set);
        if (!set) st = gkd_error_set(GKD_ERR_NOMEM, "factual: %d source words", keys.n);
    }
    if (st == GKD_OK) {
        for (int i = 0; i < keys.n; i++) set[i] = (gkd_key_view){keys.text.data + keys.start[i], keys.len[i]};
        qsort(set, (size_t)keys.n, sizeof *set, gkd_key_view_cmp);
        st = gkd_words_split(summary, strlen(summary), &words);
    }
    gkd_factual_parts p = {0};
    for (int w = 0; w < words.n && st == GKD_OK; w++) {
        const char *s = summary + words.v[w].start;
        size_t len = words.v[w].len;
        st = reserve_scratch(&scratch, &scratch_cap, len);
        if (st != GKD_OK) break;
        if (is_stopword(scratch, gkd_word_lower(s, len, scratch))) continue;
        int supported = word_supported(set, keys.n, s, len, scratch);
        p.n_content++;
        p.n_content_supported += supported;
        if (is_entity(s, len, words.v[w].sentence_start)) {
            p.n_entities++;
            p.n_entities_supported += supported;
        }
    }
    free(words.v);
    free(set);
    free(scratch);
    gkd_toklist_free(&keys);
    if (st != GKD_OK) return st;
    p.content_precision = p.n_content ? (double)p.n_content_supported / p.n_content : 1.0;
    p.entity_precision = p.n_entities ? (double)p.n_entities_supported / p.n_entities : 1.0;
    if (p.n_content == 0)
        p.score = 0.0;
    else if (p.n_entities == 0)
        p.score = p.content_precision;
    else
        p.score = (1 - GKD_FACTUAL_ENTITY_WEIGHT) * p.content_precision +
                  GKD_FACTUAL_ENTITY_WEIGHT * p.entity_precision;
    *out = p;
    return GKD_OK;
}
