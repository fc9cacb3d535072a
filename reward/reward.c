/* Built-in rewards (the registry's, reward/registry.h) and composition (see reward.h). */
#include "reward/reward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reward/metrics.h"
#include "reward/registry.h"

typedef struct {
    int min_words, max_words;
    double scale;
} length_ctx;

/* A built-in reward: the registry entry's reward function on each sample (ctx: the entry). */
static gkd_status builtin_score(gkd_reward *r, const gkd_reward_sample *s, int n, double *scores) {
    const gkd_metric *m = r->ctx;
    for (int i = 0; i < n; i++) {
        gkd_status st = m->reward(m, &s[i], &scores[i]);
        if (st != GKD_OK) return st;
    }
    return GKD_OK;
}

static gkd_status length_score(gkd_reward *r, const gkd_reward_sample *s, int n, double *scores) {
    const length_ctx *c = r->ctx;
    for (int i = 0; i < n; i++) {
        double penalty;
        gkd_status st = gkd_length_penalty(gkd_word_count(s[i].output), c->min_words, c->max_words, c->scale, &penalty);
        if (st != GKD_OK) return st;
        scores[i] = -penalty;
    }
    return GKD_OK;
}

static gkd_status sum_score(gkd_reward *r, const gkd_reward_sample *s, int n, double *scores) {
    double *part = malloc((size_t)(n > 0 ? n : 1) * sizeof *part);
    if (!part) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) scores[i] = 0.0;
    for (int k = 0; k < r->n_parts; k++) {
        gkd_status st = gkd_reward_score(r->parts[k], s, n, part);
        if (st != GKD_OK) {
            free(part);
            return st;
        }
        for (int i = 0; i < n; i++) scores[i] += r->weights[k] * part[i];
    }
    for (int i = 0; i < n; i++) {
        if (scores[i] < r->clip_lo) scores[i] = r->clip_lo;
        if (scores[i] > r->clip_hi) scores[i] = r->clip_hi;
    }
    free(part);
    return GKD_OK;
}

gkd_status gkd_reward_custom(const char *name,
                             gkd_status (*score)(gkd_reward *r, const gkd_reward_sample *samples, int n, double *scores),
                             void *ctx, void (*free_ctx)(void *), gkd_reward **out) {
    gkd_reward *r = calloc(1, sizeof *r);
    if (!r) {
        if (free_ctx) free_ctx(ctx);
        return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    }
    snprintf(r->name, sizeof r->name, "%s", name);
    r->score = score;
    r->ctx = ctx;
    r->free_ctx = free_ctx;
    r->clip_lo = -INFINITY;
    r->clip_hi = INFINITY;
    *out = r;
    return GKD_OK;
}

gkd_status gkd_reward_builtin(const char *name, gkd_reward **out) {
    const gkd_metric *m = gkd_metric_find(name, GKD_METRIC_USE_REWARD);
    if (!m) return GKD_ERR_ARG;
    /* The entry is static, so the reward borrows it (no free_ctx). */
    return gkd_reward_custom(name, builtin_score, (void *)m, NULL, out);
}

gkd_status gkd_reward_length(int min_words, int max_words, double scale, gkd_reward **out) {
    if (min_words < 0 || max_words < min_words || !(scale > 0))
        return gkd_error_set(GKD_ERR_ARG, "length reward: need 0 <= min <= max and scale > 0");
    length_ctx *c = malloc(sizeof *c);
    if (!c) return gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    *c = (length_ctx){min_words, max_words, scale};
    return gkd_reward_custom("length", length_score, c, free, out);
}

gkd_status gkd_reward_sum(gkd_reward **parts, const double *weights, int n, double lo, double hi, gkd_reward **out) {
    if (n < 1 || !(lo <= hi)) {
        for (int i = 0; i < n; i++) gkd_reward_free(parts[i]);
        return gkd_error_set(GKD_ERR_ARG, "reward sum: need at least one part and lo <= hi");
    }
    gkd_reward *r = NULL;
    gkd_status st = gkd_reward_custom("sum", sum_score, NULL, NULL, &r);
    if (st == GKD_OK) {
        r->parts = malloc((size_t)n * sizeof *r->parts);
        r->weights = malloc((size_t)n * sizeof *r->weights);
        if (!r->parts || !r->weights) st = gkd_error_set(GKD_ERR_NOMEM, "out of memory");
    }
    if (st != GKD_OK) {
        for (int i = 0; i < n; i++) gkd_reward_free(parts[i]);
        gkd_reward_free(r);
        return st;
    }
    r->n_parts = n;
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        r->parts[i] = parts[i];
        r->weights[i] = weights[i];
        if (used < sizeof r->name - 1)
            used += (size_t)snprintf(r->name + used, sizeof r->name - used, "%s%g*%s", i ? "+" : "", weights[i],
                                     parts[i]->name);
    }
    r->clip_lo = lo;
    r->clip_hi = hi;
    *out = r;
    return GKD_OK;
}

void gkd_reward_free(gkd_reward *r) {
    if (!r) return;
    for (int i = 0; i < r->n_parts; i++) gkd_reward_free(r->parts[i]);
    free(r->parts);
    free(r->weights);
    if (r->free_ctx) r->free_ctx(r->ctx);
    free(r);
}

gkd_status gkd_reward_score(gkd_reward *r, const gkd_reward_sample *samples, int n, double *scores) {
    gkd_status st = r->score(r, samples, n, scores);
    if (st != GKD_OK) return gkd_error_prefix(st, "reward %s", r->name);
    for (int i = 0; i < n; i++)
        if (!isfinite(scores[i]))
            return gkd_error_set(GKD_ERR_CALLBACK, "reward %s returned %g for sample %d (output \"%.60s\")", r->name,
                                 scores[i], i + 1, samples[i].output);
    return GKD_OK;
}
