/* Text metrics and rewards on UTF-8 strings: ROUGE-1/2/L (rouge-score compatible), BLEU (sacreBLEU
 * compatible), a factual-consistency reward for summaries, exact match of a final numeric answer, a
 * length penalty and distinct-n. docs/metrics.md says what each computes and how far it matches the
 * Python packages.
 * Rules: `hyp` is the system output and `ref` the reference, always in that order (rouge-score's
 * score() takes them the other way round). Calls that allocate return a gkd_status and write their
 * result through the last argument; on failure the output is zeroed and gkd_error_message() says why.
 * A NULL text is an argument error, an empty text is valid input. Nothing here keeps state between
 * calls, so every function may be called from several threads at once. */
#ifndef GKD_REWARD_METRICS_H
#define GKD_REWARD_METRICS_H

#include "core/base/error.h"

#include <stddef.h>

/* ---- ROUGE (rouge-score 0.1.2, RougeScorer(..., use_stemmer=False or True)) ---- */

typedef struct {
    double precision; /* matches / hypothesis units */
    double recall;    /* matches / reference units */
    double f;         /* 2PR / (P + R), 0 when P + R = 0 */
} gkd_prf;

typedef struct {
    gkd_prf rouge1, rouge2, rougeL;
} gkd_rouge_scores;

/* ROUGE-N for n >= 1: clipped n-gram overlap of rouge-score's tokens (lowercased ASCII [a-z0-9]
 * runs; use_stemmer applies NLTK's Porter stemmer to tokens longer than 3 characters). */
gkd_status gkd_rouge_n(const char *hyp, const char *ref, int n, int use_stemmer, gkd_prf *out);
/* ROUGE-L: longest common subsequence of the same tokens; 0 when either side has no token. */
gkd_status gkd_rouge_l(const char *hyp, const char *ref, int use_stemmer, gkd_prf *out);
/* ROUGE-1, ROUGE-2 and ROUGE-L from one tokenisation. */
gkd_status gkd_rouge_all(const char *hyp, const char *ref, int use_stemmer, gkd_rouge_scores *out);
/* Arithmetic mean over `n` pairs of each precision, recall and F, summed in pair order and divided
 * by n (rouge-score's BootstrapAggregator reports the median of resampled means instead, which is
 * close to but not equal to this). n = 0 gives zeros. */
gkd_status gkd_rouge_corpus_mean(const char *const *hyps, const char *const *refs, int n, int use_stemmer,
                                 gkd_rouge_scores *mean);
/* rouge-score's tokens of `text` joined by single spaces, into a new string the caller frees with
 * free(). For inspecting why two texts score as they do. */
gkd_status gkd_rouge_tokenize(const char *text, int use_stemmer, char **tokens);
/* NLTK's PorterStemmer (mode NLTK_EXTENSIONS) on a lowercase ASCII word of `len` bytes, written with
 * a terminating NUL to `out` (cap bytes; a stem is never longer than its word, so cap = len + 1
 * suffices). Returns the stem's length. rouge-score stems only words longer than 3 characters;
 * this function stems whatever it is given, as nltk's stem() does. */
gkd_status gkd_porter_stem(const char *word, size_t len, char *out, size_t cap, size_t *stem_len);

/* ---- BLEU (sacreBLEU 2.x, tokenize='13a', one reference per hypothesis, case-sensitive) ---- */

enum { GKD_BLEU_MAX_ORDER = 4 };

typedef enum {
    GKD_BLEU_SMOOTH_EXP = 0, /* sacreBLEU 'exp' (mteval-v13a): the k-th zero-match order counts 1/2^k */
    GKD_BLEU_SMOOTH_NONE,    /* a zero-match order makes the score 0 */
    GKD_BLEU_SMOOTH_FLOOR,   /* a zero-match order counts smooth_value matches (default 0.1) */
    GKD_BLEU_SMOOTH_ADD_K,   /* orders 2..4 add smooth_value (default 1) to matches and totals */
} gkd_bleu_smooth;

typedef struct {
    gkd_bleu_smooth smooth;
    double smooth_value; /* < 0: the method's default, as sacreBLEU's None */
    int effective_order; /* 1: average only over the orders the hypothesis has n-grams of */
} gkd_bleu_options;

typedef struct {
    double score;                          /* 0-100, as sacreBLEU's .score */
    double precisions[GKD_BLEU_MAX_ORDER]; /* 0-100, after smoothing */
    double bp;                             /* brevity penalty */
    long correct[GKD_BLEU_MAX_ORDER];      /* clipped matches per order (before add-k) */
    long total[GKD_BLEU_MAX_ORDER];        /* hypothesis n-grams per order */
    long sys_len, ref_len;                 /* tokens after 13a tokenisation */
} gkd_bleu_result;

/* The options sacrebleu.corpus_bleu() uses by default: exp smoothing, no effective order. */
gkd_bleu_options gkd_bleu_corpus_defaults(void);
/* The options sacrebleu.sentence_bleu() uses by default: exp smoothing, effective order. */
gkd_bleu_options gkd_bleu_sentence_defaults(void);

/* Corpus BLEU of n hypotheses against their references: n-gram statistics summed over segments,
 * then one score. opt NULL means gkd_bleu_corpus_defaults(). */
gkd_status gkd_bleu_corpus(const char *const *hyps, const char *const *refs, int n,
                           const gkd_bleu_options *opt, gkd_bleu_result *out);
/* Sentence BLEU of one hypothesis. opt NULL means gkd_bleu_sentence_defaults(). */
gkd_status gkd_bleu_sentence(const char *hyp, const char *ref, const gkd_bleu_options *opt,
                             gkd_bleu_result *out);
/* sacreBLEU's 13a tokenisation of `text` (after its rstrip), tokens joined by single spaces, into a
 * new string the caller frees with free(). */
gkd_status gkd_bleu_tokenize_13a(const char *text, char **tokens);

/* ---- Factual consistency of a summary against its source ---- */

/* Weight of entity precision in the combined score when the summary has entity-like tokens;
 * content-word precision gets the rest. */
#define GKD_FACTUAL_ENTITY_WEIGHT 0.5

typedef struct {
    double score;             /* combined reward in [0, 1] (see gkd_factual_score) */
    double content_precision; /* supported content words / content words (1 when there are none) */
    double entity_precision;  /* supported entity-like tokens / entity-like tokens (1 when none) */
    int n_content, n_content_supported;
    int n_entities, n_entities_supported;
} gkd_factual_parts;

/* Precision of the summary's words against the source (`document`, plus the package name when
 * `package` is not NULL). Content words are the summary's tokens, lowercased, minus English
 * stopwords; entity-like tokens are those with a digit, an inner '.', '-' or '_', a trailing '+'
 * or '#' ("c++"), two or more capitals, or a leading capital away from a sentence start. score =
 * content_precision when the summary has no entity-like token, else (1 - w) content_precision + w
 * entity_precision with w = GKD_FACTUAL_ENTITY_WEIGHT; a summary with no content word and no entity (empty,
 * punctuation, only stopwords) scores 0. */
gkd_status gkd_factual_score(const char *summary, const char *document, const char *package,
                             gkd_factual_parts *out);

/* ---- Answers, length, diversity ---- */

/* Finds the last number in `text`: an optional '-' not glued to a preceding letter or digit, digits
 * with optional ",ddd" thousands groups, and an optional ".d+" fraction. Returns 1 and writes the
 * value when there is one, else 0. NULL text has no number. */
int gkd_number_last(const char *text, double *value);
/* 1.0 when both texts have a last number and they agree within 1e-9 times the larger magnitude
 * (at least 1e-9 absolute), so "1,000", "1000" and "1000.0" agree; else 0.0. */
double gkd_exact_match_number(const char *output, const char *reference);

/* Number of whitespace-separated words (Unicode whitespace, as Python's str.split()). 0 for NULL. */
int gkd_word_count(const char *text);
/* Penalty in [0, 1] for a length outside [min_len, max_len]: 0 inside, else the distance to the
 * nearest end divided by `scale`, capped at 1. Requires 0 <= min_len <= max_len and scale > 0. */
gkd_status gkd_length_penalty(int length, int min_len, int max_len, double scale, double *penalty);

/* distinct-n (Li et al. 2016): distinct n-grams of the given order over all outputs divided by the
 * total number of n-grams; tokens split on whitespace, case-sensitive; 0 when there are no n-grams.
 * n-grams never span two outputs. */
gkd_status gkd_distinct_n(const char *const *outputs, int n_outputs, int order, double *distinct);

#endif
