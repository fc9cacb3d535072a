/* The reward interface: a batch of samples (source, prompt, output, reference) in, one score each out.
 * Rewards written in C (the built-ins below), in Lua (the binding wraps a Lua function in this same
 * interface) and learned reward models all look alike to the trainer, and compose: a weighted sum of
 * rewards, clipped to a range.
 * Rules: a reward returns GKD_OK with every score finite, or a failure with the last error naming the
 * reward; gkd_reward_score checks finiteness itself, so a reward returning NaN stops the run with a
 * message naming it. A reward object owns its ctx when it has a free function. */
#ifndef GKD_REWARD_H
#define GKD_REWARD_H

#include "core/base/error.h"

typedef struct {
    const char *source;    /* what the output must be faithful to (a summary's document) */
    const char *prompt;    /* the model's input text */
    const char *output;    /* the model's output, detokenised, without EOS */
    const char *reference; /* the dataset's reference output (may be "") */
} gkd_reward_sample;

typedef struct gkd_reward gkd_reward;
struct gkd_reward {
    char name[64];
    /* Writes scores[0..n). */
    gkd_status (*score)(gkd_reward *r, const gkd_reward_sample *samples, int n, double *scores);
    void (*free_ctx)(void *ctx); /* may be NULL */
    void *ctx;
    /* Composition (kind "sum"): parts with weights, then clipping to [clip_lo, clip_hi]. */
    int n_parts;
    gkd_reward **parts;
    double *weights;
    double clip_lo, clip_hi;
};

/* A built-in reward by name: an entry of the registry (reward/registry.h, listed in docs/metrics.md)
 * with a reward function: "factual" (gkd_factual_score of output vs source), "rouge1", "rouge2",
 * "rougeL" (F-measure vs reference), "bleu" (sentence BLEU / 100 vs reference), "exact_match" (final
 * number), "length" (minus the length penalty: 0 inside [min_words, max_words], -min(1, distance/scale) outside;
 * 5..20 words, scale 10; see gkd_reward_length). An unknown name is GKD_ERR_ARG naming it and listing
 * the built-ins. The caller owns *out (gkd_reward_free). */
gkd_status gkd_reward_builtin(const char *name, gkd_reward **out);
gkd_status gkd_reward_length(int min_words, int max_words, double scale, gkd_reward **out);
/* A weighted sum of parts (taking ownership of them), clipped to [lo, hi] (use -INFINITY/INFINITY for
 * none). */
gkd_status gkd_reward_sum(gkd_reward **parts, const double *weights, int n, double lo, double hi, gkd_reward **out);
/* A reward calling fn (a Lua function, a learned model...); takes ownership of ctx if free_ctx. */
gkd_status gkd_reward_custom(const char *name,
                             gkd_status (*score)(gkd_reward *r, const gkd_reward_sample *samples, int n, double *scores),
                             void *ctx, void (*free_ctx)(void *), gkd_reward **out);
void gkd_reward_free(gkd_reward *r);

/* Scores a batch; a non-finite score is an error naming the reward and the sample. */
gkd_status gkd_reward_score(gkd_reward *r, const gkd_reward_sample *samples, int n, double *scores);

#endif
