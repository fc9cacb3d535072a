/* The registry of rewards and evaluation metrics (reward/registry.h): the table and its look-ups.
 * Rules: the table is in the order gkd.run has always listed its eval metrics, so a misspelt name gets
 * the same "did you mean" suggestion as before (gkd_lua_closest takes the first of equally close
 * names). A missing source or reference reads as "", as the trainer's examples may lack one. */
#include "reward/registry.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "reward/metrics.h"

/* The built-in "length" reward's range and scale (reward.h, gkd_reward_builtin). */
enum { LENGTH_MIN_WORDS = 5, LENGTH_MAX_WORDS = 20 };
#define LENGTH_SCALE 10.0

static const char *text_or_empty(const char *s) {
    return s ? s : "";
}

/* The ROUGE F-measure: ROUGE-n for arg n >= 1, ROUGE-L for arg 0. */
static gkd_status rouge_f(const gkd_metric *m, const gkd_reward_sample *s, double *value) {
    gkd_prf prf;
    const char *ref = text_or_empty(s->reference);
    gkd_status st =
        m->arg > 0 ? gkd_rouge_n(s->output, ref, m->arg, 0, &prf) : gkd_rouge_l(s->output, ref, 0, &prf);
    *value = prf.f;
    return st;
}

static gkd_status factual(const gkd_metric *m, const gkd_reward_sample *s, double *value) {
    gkd_factual_parts p;
    (void)m;
    gkd_status st = gkd_factual_score(s->output, text_or_empty(s->source), NULL, &p);
    *value = p.score;
    return st;
}

static gkd_status exact_match(const gkd_metric *m, const gkd_reward_sample *s, double *value) {
    (void)m;
    *value = gkd_exact_match_number(s->output, text_or_empty(s->reference));
    return GKD_OK;
}

static gkd_status word_count(const gkd_metric *m, const gkd_reward_sample *s, double *value) {
    (void)m;
    *value = gkd_word_count(s->output);
    return GKD_OK;
}

static gkd_status length_reward(const gkd_metric *m, const gkd_reward_sample *s, double *score) {
    (void)m;
    double penalty;
    gkd_status st = gkd_length_penalty(gkd_word_count(s->output), LENGTH_MIN_WORDS, LENGTH_MAX_WORDS,
                                       LENGTH_SCALE, &penalty);
    *score = -penalty;
    return st;
}

/* Sentence BLEU on a 0-1 scale, so it weighs like the other rewards in a sum. */
static gkd_status sentence_bleu(const gkd_metric *m, const gkd_reward_sample *s, double *score) {
    (void)m;
    gkd_bleu_result b;
    gkd_status st = gkd_bleu_sentence(s->output, text_or_empty(s->reference), NULL, &b);
    *score = b.score / 100.0;
    return st;
}

static gkd_status corpus_bleu(const gkd_metric *m, const char *const *outputs, const char *const *refs, int n,
                              double *value) {
    (void)m;
    gkd_bleu_result b;
    gkd_status st = gkd_bleu_corpus(outputs, refs, n, NULL, &b);
    *value = b.score;
    return st;
}

static gkd_status distinct_n(const gkd_metric *m, const char *const *outputs, const char *const *refs, int n,
                             double *value) {
    (void)refs;
    return gkd_distinct_n(outputs, n, m->arg, value);
}

/* name, corpus, higher_is_better, arg, eval, corpus_value, reward */
static const gkd_metric TABLE[] = {
    {"rouge1", 0, 1, 1, rouge_f, NULL, rouge_f},
    {"rouge2", 0, 1, 2, rouge_f, NULL, rouge_f},
    {"rougeL", 0, 1, 0, rouge_f, NULL, rouge_f},
    {"factual", 0, 1, 0, factual, NULL, factual},
    {"exact_match", 0, 1, 0, exact_match, NULL, exact_match},
    {"length", 0, 1, 0, word_count, NULL, length_reward},
    {"bleu", 1, 1, 0, NULL, corpus_bleu, sentence_bleu},
    {"distinct1", 1, 1, 1, NULL, distinct_n, NULL},
    {"distinct2", 1, 1, 2, NULL, distinct_n, NULL},
    {"distinct3", 1, 1, 3, NULL, distinct_n, NULL},
    {"divergence", 0, 0, 0, NULL, NULL, NULL}, /* the trainer's divergences, recorded by the trainer */
};
enum { N_TABLE = (int)(sizeof TABLE / sizeof TABLE[0]) };

int gkd_metric_count(void) {
    return N_TABLE;
}

const gkd_metric *gkd_metric_at(int i) {
    return i >= 0 && i < N_TABLE ? &TABLE[i] : NULL;
}

int gkd_metric_usable(const gkd_metric *m, gkd_metric_use use) {
    switch (use) {
    case GKD_METRIC_USE_REWARD:
        return m->reward != NULL;
    case GKD_METRIC_USE_EVAL:
        return m->eval || m->corpus_value || !m->reward;
    case GKD_METRIC_USE_ANY:
        break;
    }
    return 1;
}

int gkd_metric_names(gkd_metric_use use, const char **names, int cap) {
    int n = 0;
    for (int i = 0; i < N_TABLE; i++)
        if (gkd_metric_usable(&TABLE[i], use)) {
            if (n < cap - 1) names[n] = TABLE[i].name;
            n++;
        }
    if (cap > 0) names[n < cap - 1 ? n : cap - 1] = NULL;
    return n;
}

const gkd_metric *gkd_metric_find(const char *name, gkd_metric_use use) {
    for (int i = 0; name && i < N_TABLE; i++)
        if (strcmp(TABLE[i].name, name) == 0 && gkd_metric_usable(&TABLE[i], use)) return &TABLE[i];
    char list[256];
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; i < N_TABLE; i++)
        if (gkd_metric_usable(&TABLE[i], use) && used < sizeof list)
            used +=
                (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", TABLE[i].name);
    const char *what = use == GKD_METRIC_USE_REWARD ? "reward"
                       : use == GKD_METRIC_USE_EVAL ? "eval metric"
                                                    : "metric";
    gkd_error_set(GKD_ERR_ARG, "unknown %s \"%s\" (built-in: %s)", what, name ? name : "(null)", list);
    return NULL;
}

int gkd_metric_higher_is_better(const char *name) {
    static const char *const lower_is_better[] = {"loss",    "kl",  "jsd", "tvd",   "diverg",
                                                  "perplex", "ppl", "nll", "error", "penalty"};
    if (!name) return 1;
    for (int i = 0; i < N_TABLE; i++)
        if (strcmp(TABLE[i].name, name) == 0) return TABLE[i].higher_is_better;
    char low[256];
    size_t n = 0;
    for (; name[n] && n + 1 < sizeof low; n++) low[n] = (char)tolower((unsigned char)name[n]);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof lower_is_better / sizeof lower_is_better[0]; i++)
        if (strstr(low, lower_is_better[i])) return 0;
    return 1;
}
