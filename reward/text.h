/* Text plumbing shared by the metrics in reward/: status-returning byte-buffer appenders, token lists,
 * dense token ids shared across several sequences, and n-gram ids built order by order. Private to
 * reward/.
 * Rules: tokens are compared as bytes (the tokenisers decide case and normalisation); an n-gram never
 * crosses the end of its sequence; ids are dense from 0 so they index arrays; every free accepts NULL
 * and leaves the object empty. Nothing here uses hashing, so results never depend on collisions. */
#ifndef GKD_REWARD_TEXT_H
#define GKD_REWARD_TEXT_H

#include "core/base/buf.h"
#include "core/base/error.h"
#include "core/base/utf8.h"

#include <stddef.h>

/* The metrics build text in gkd_bufs; these appenders return a status, so that a metric stops at the
 * first allocation failure. */
typedef gkd_buf gkd_textbuf;

gkd_status gkd_textbuf_append(gkd_textbuf *b, const char *s, size_t n);
gkd_status gkd_textbuf_putc(gkd_textbuf *b, char c);
void gkd_textbuf_free(gkd_textbuf *b);

typedef struct {
    gkd_textbuf text; /* token bytes back to back */
    size_t *start;    /* (n) offset of each token in text */
    int *len;         /* (n) byte length of each token */
    int n, cap;
} gkd_toklist;

/* Appends a copy of s[0..len) as the next token. */
gkd_status gkd_toklist_push(gkd_toklist *t, const char *s, size_t len);
/* Splits s on Unicode whitespace and appends every piece. */
gkd_status gkd_toklist_split(gkd_toklist *t, const char *s, size_t n);
/* The tokens joined by single spaces, as a new string the caller frees with free(). */
gkd_status gkd_toklist_join(const gkd_toklist *t, char **joined);
void gkd_toklist_free(gkd_toklist *t);

/* Several token sequences laid end to end, each token replaced by an id shared across all of them:
 * equal tokens get equal ids. */
typedef struct {
    int nseq;
    int *offset; /* (nseq+1) sequence s is ids[offset[s] .. offset[s+1]) */
    int *ids;    /* (offset[nseq]) in [0, vocab) */
    int vocab;
} gkd_seqset;

gkd_status gkd_seqset_build(const gkd_toklist *const *lists, int nlists, gkd_seqset *out);
void gkd_seqset_free(gkd_seqset *s);

/* Ids of the n-grams of order `order` >= 2 from those of order - 1:
 * grams[i] is the id of the n-gram starting at position i, -1 where it would run past its
 * sequence's end; prev: (offset[nseq]) ids of order - 1 (s->ids for order 2), -1 where invalid.
 * Equal n-grams get equal ids across all sequences; *n_ids receives how many distinct ones exist. */
gkd_status gkd_ngram_extend(const gkd_seqset *s, const int *prev, int order, int *grams, int *n_ids);

/* Clipped overlap of two bags of n-gram ids (entries < 0 are skipped):
 * sum over ids of min(count in a, count in b). */
gkd_status gkd_ngram_overlap(const int *a, int na, const int *b, int nb, long *matched);

/* A word as the factual-consistency metric splits a text: a run of letters and digits (outside ASCII,
 * everything but punctuation and symbol blocks), joined across an inner '.', '-', '_' or apostrophe,
 * plus a trailing run of '+' or '#' ("c++"). sentence_start marks the first word after . ! ? or the
 * start. */
typedef struct {
    size_t start, len;
    int sentence_start;
} gkd_word;

typedef struct {
    gkd_word *v;
    int n, cap;
} gkd_word_list;

/* Replaces out's words with those of text[0..n). */
gkd_status gkd_words_split(const char *text, size_t n, gkd_word_list *out);
void gkd_word_list_free(gkd_word_list *w);
int gkd_word_is_joiner(char c);

/* The key a word is matched by (the factual metric's support test, the reward model's corruptions):
 * ASCII lowercased, a trailing "'s" dropped and a plural folded ("libraries" -> "library", "tools" ->
 * "tool"; not after s, u or i: "class", "bus", "apis"). gkd_word_lower copies s[0..len) lowercased into
 * out and returns len; gkd_word_fold folds a lowercased word in place and returns its new length;
 * gkd_word_key does both into out (len + 1 bytes) and NUL-terminates it. */
size_t gkd_word_lower(const char *s, size_t len, char *out);
size_t gkd_word_fold(char *w, size_t len);
size_t gkd_word_key(const char *s, size_t len, char *out);

/* A key in a sorted table of keys, and the order the table is sorted and searched in (qsort, bsearch). */
typedef struct {
    const char *s;
    int len;
} gkd_key_view;
int gkd_key_view_cmp(const void *a, const void *b);

#endif
