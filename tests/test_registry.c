/* The registry of rewards and metrics (reward/registry.h): every name resolves, with the corpus flag,
 * direction and uses docs/metrics.md gives it; the eval names keep gkd.run's order; each function
 * returns exactly what the metric function it wraps does; an unknown name is an error naming it; and
 * the direction rule for names outside the registry. */
// ctest-labels: cpu
#include "reward/metrics.h"
#include "reward/registry.h"
#include "reward/reward.h"
#include "tests/check.h"

#include <string.h>

/* docs/metrics.md's table: name, corpus, higher is better, reward, eval. */
static const struct {
    const char *name;
    int corpus, higher, reward, eval;
} DOCUMENTED[] = {
    {"rouge1", 0, 1, 1, 1},    {"rouge2", 0, 1, 1, 1},      {"rougeL", 0, 1, 1, 1},
    {"factual", 0, 1, 1, 1},   {"exact_match", 0, 1, 1, 1}, {"length", 0, 1, 1, 1},
    {"bleu", 1, 1, 1, 1},      {"distinct1", 1, 1, 0, 1},   {"distinct2", 1, 1, 0, 1},
    {"distinct3", 1, 1, 0, 1}, {"divergence", 0, 0, 0, 1},
};
enum { N_DOCUMENTED = (int)(sizeof DOCUMENTED / sizeof DOCUMENTED[0]) };

static void check_table(void) {
    CHECK(gkd_metric_count() == N_DOCUMENTED);
    CHECK(gkd_metric_at(-1) == NULL && gkd_metric_at(N_DOCUMENTED) == NULL);
    for (int i = 0; i < N_DOCUMENTED; i++) {
        const gkd_metric *m = gkd_metric_find(DOCUMENTED[i].name, GKD_METRIC_USE_ANY);
        CHECKF(m && m == gkd_metric_at(i), "%s", DOCUMENTED[i].name);
        if (!m) continue;
        CHECKF(m->corpus == DOCUMENTED[i].corpus && m->higher_is_better == DOCUMENTED[i].higher, "%s",
               m->name);
        CHECKF(gkd_metric_usable(m, GKD_METRIC_USE_REWARD) == DOCUMENTED[i].reward, "%s", m->name);
        CHECKF(gkd_metric_usable(m, GKD_METRIC_USE_EVAL) == DOCUMENTED[i].eval, "%s", m->name);
        CHECKF(gkd_metric_higher_is_better(m->name) == m->higher_is_better, "%s", m->name);
        /* a corpus metric has a corpus function and no per-sample one */
        CHECKF(m->corpus ? m->corpus_value && !m->eval : !m->corpus_value, "%s", m->name);
        CHECK((gkd_metric_find(m->name, GKD_METRIC_USE_REWARD) != NULL) == DOCUMENTED[i].reward);
    }
}

static void check_names(void) {
    /* the order gkd.run has always listed (and suggested) its eval metrics in */
    static const char *const eval[] = {"rouge1",      "rouge2",    "rougeL",    "factual",
                                       "exact_match", "length",    "bleu",      "distinct1",
                                       "distinct2",   "distinct3", "divergence"};
    const char *names[16];
    int n = gkd_metric_names(GKD_METRIC_USE_EVAL, names, 16);
    CHECK(n == 11 && names[n] == NULL);
    for (int i = 0; i < n && i < 11; i++) CHECKF(strcmp(names[i], eval[i]) == 0, "%s", names[i]);
    CHECK(gkd_metric_names(GKD_METRIC_USE_REWARD, names, 16) == 7 && names[7] == NULL);
    /* too small a buffer: the count, and as many names as fit before the NULL */
    CHECK(gkd_metric_names(GKD_METRIC_USE_ANY, names, 3) == N_DOCUMENTED && names[2] == NULL);
}

static void check_unknown(void) {
    CHECK(gkd_metric_find("rogueL", GKD_METRIC_USE_ANY) == NULL && strstr(gkd_error_message(), "\"rogueL\""));
    CHECK(gkd_metric_find("distinct2", GKD_METRIC_USE_REWARD) == NULL &&
          strstr(gkd_error_message(), "unknown reward \"distinct2\"") &&
          strstr(gkd_error_message(), "length"));
    CHECK(gkd_metric_find("rougel", GKD_METRIC_USE_EVAL) == NULL); /* names are case-sensitive */
    gkd_reward *r = NULL;
    CHECK(gkd_reward_builtin("nope", &r) == GKD_ERR_ARG && r == NULL &&
          strstr(gkd_error_message(), "\"nope\""));
}

/* Each entry's function gives the bits of the metric function it stands for. */
static void check_values(void) {
    const char *outs[] = {"the cat sat on the mat", "The answer is 1,000", "a a a b"};
    const char *refs[] = {"a cat sat on a mat", "so it is 1000.0", "a b c"};
    const char *srcs[] = {"The cat sat on the mat all day", "", "b a"};
    double v;
    for (int i = 0; i < 3; i++) {
        gkd_reward_sample s = {srcs[i], "p", outs[i], refs[i]};
        gkd_rouge_scores rs;
        gkd_factual_parts fp;
        gkd_bleu_result br;
        double pen;
        CHECK(gkd_rouge_all(outs[i], refs[i], 0, &rs) == GKD_OK);
        CHECK(gkd_factual_score(outs[i], srcs[i], NULL, &fp) == GKD_OK);
        CHECK(gkd_bleu_sentence(outs[i], refs[i], NULL, &br) == GKD_OK);
        CHECK(gkd_length_penalty(gkd_word_count(outs[i]), 5, 20, 10.0, &pen) == GKD_OK);
        const struct {
            const char *name;
            int as_reward;
            double want;
        } cases[] = {
            {"rouge1", 0, rs.rouge1.f},
            {"rouge2", 0, rs.rouge2.f},
            {"rougeL", 1, rs.rougeL.f},
            {"factual", 1, fp.score},
            {"exact_match", 1, gkd_exact_match_number(outs[i], refs[i])},
            {"length", 0, gkd_word_count(outs[i])},
            {"length", 1, -pen},
            {"bleu", 1, br.score / 100.0},
        };
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const gkd_metric *m = gkd_metric_find(cases[c].name, GKD_METRIC_USE_ANY);
            gkd_status st = cases[c].as_reward ? m->reward(m, &s, &v) : m->eval(m, &s, &v);
            CHECKF(st == GKD_OK && memcmp(&v, &cases[c].want, sizeof v) == 0, "%s on %d: %.17g vs %.17g",
                   cases[c].name, i, v, cases[c].want);
        }
        /* the built-in reward of that name is the entry's reward */
        gkd_reward *r = NULL;
        double score = 0;
        CHECK(gkd_reward_builtin("bleu", &r) == GKD_OK && gkd_reward_score(r, &s, 1, &score) == GKD_OK);
        CHECK(score == br.score / 100.0 && strcmp(r->name, "bleu") == 0);
        gkd_reward_free(r);
    }
    gkd_bleu_result corpus;
    CHECK(gkd_bleu_corpus(outs, refs, 3, NULL, &corpus) == GKD_OK);
    const gkd_metric *bleu = gkd_metric_find("bleu", GKD_METRIC_USE_EVAL);
    CHECK(bleu->corpus_value(bleu, outs, refs, 3, &v) == GKD_OK && v == corpus.score);
    for (int order = 1; order <= 3; order++) {
        char name[16];
        snprintf(name, sizeof name, "distinct%d", order);
        const gkd_metric *m = gkd_metric_find(name, GKD_METRIC_USE_EVAL);
        double want;
        CHECK(gkd_distinct_n(outs, 3, order, &want) == GKD_OK);
        CHECK(m->corpus_value(m, outs, NULL, 3, &v) == GKD_OK && v == want);
    }
}

/* Names outside the registry: lower is better for losses, divergences and penalties. */
static void check_fallback(void) {
    CHECK(gkd_metric_higher_is_better("loss") == 0 && gkd_metric_higher_is_better("ce_loss") == 0);
    CHECK(gkd_metric_higher_is_better("forward_kl") == 0 && gkd_metric_higher_is_better("jsd_0.5") == 0);
    CHECK(gkd_metric_higher_is_better("Perplexity") == 0 && gkd_metric_higher_is_better("own_tvd") == 0);
    CHECK(gkd_metric_higher_is_better("reward") == 1 && gkd_metric_higher_is_better("exact") == 1);
    CHECK(gkd_metric_higher_is_better(NULL) == 1);
}

int main(void) {
    check_table();
    check_names();
    check_unknown();
    check_values();
    check_fallback();
    return check_exit();
}
