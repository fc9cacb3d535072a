/* The registry of rewards and evaluation metrics: one table from a name ("rougeL", "bleu",
 * "distinct2", ...) to the functions computing it, with its corpus flag and its direction. Every
 * place that turns a name into a number (built-in rewards, gkd.run's eval.metrics, the report's
 * "which way is better") reads this table; docs/metrics.md lists it.
 * Rules:
 * - A name may be a reward, an evaluation metric or both; `reward` and `eval`/`corpus` say which. The
 *   two uses of one name may differ in scale when the corpus form differs ("bleu": sentence BLEU / 100
 *   as a reward, corpus BLEU 0-100 as a metric; "length": minus the length penalty as a reward, the
 *   word count as a metric).
 * - A corpus metric has one value per evaluation, computed from all its outputs at once (it replaces
 *   the mean of per-sample values); a per-sample metric is averaged by the trainer.
 * - An evaluation metric with neither `eval` nor `corpus` is one the trainer records by itself.
 * - The table is static and read-only: every function here may be called from several threads. */
#ifndef GKD_REWARD_REGISTRY_H
#define GKD_REWARD_REGISTRY_H

#include "core/base/error.h"
#include "reward/reward.h"

typedef struct gkd_metric gkd_metric;
struct gkd_metric {
    const char *name;
    int corpus;           /* 1: one value over a whole evaluation (corpus BLEU, distinct-n) */
    int higher_is_better; /* the direction reports rank by */
    int arg;              /* the n of ROUGE-n (0: ROUGE-L), the order of distinct-n; else 0 */
    /* The metric's value on one sample; NULL for corpus metrics and those the trainer records. */
    gkd_status (*eval)(const gkd_metric *m, const gkd_reward_sample *s, double *value);
    /* The corpus value of n outputs against their references (refs may be NULL when the metric reads
     * none: distinct-n); NULL for per-sample metrics. */
    gkd_status (*corpus_value)(const gkd_metric *m, const char *const *outputs, const char *const *refs,
                               int n, double *value);
    /* The score of one sample as a training reward; NULL when the name is no reward. */
    gkd_status (*reward)(const gkd_metric *m, const gkd_reward_sample *s, double *score);
};

typedef enum {
    GKD_METRIC_USE_ANY,    /* every entry */
    GKD_METRIC_USE_REWARD, /* entries with a reward function */
    GKD_METRIC_USE_EVAL,   /* evaluation metrics: per sample, corpus or recorded by the trainer */
} gkd_metric_use;

/* The entry called `name` (exact, case-sensitive) usable as `use`; NULL when there is none, with the
 * last error naming it and listing the names that are ("unknown reward "x" (built-in: ...)"). */
const gkd_metric *gkd_metric_find(const char *name, gkd_metric_use use);
/* The number of entries, and entry i of them (0 <= i < count), in table order. */
int gkd_metric_count(void);
const gkd_metric *gkd_metric_at(int i);
/* Whether entry m can serve as `use`. */
int gkd_metric_usable(const gkd_metric *m, gkd_metric_use use);
/* Writes the names usable as `use`, in table order, to names[0..cap-1) followed by a NULL (the shape
 * gkd_lua_closest takes); returns how many there are (more than written when cap is too small). */
int gkd_metric_names(gkd_metric_use use, const char **names, int cap);
/* 1 when a higher value of the metric is better, 0 when lower is. A registry entry gives its own
 * direction. Any other name (the trainer's loss, divergences, rates, a Lua metric) falls back to a rule
 * on the name: lower is better when its lowercased form contains loss, kl, jsd, tvd, diverg, perplex,
 * ppl, nll, error or penalty; higher otherwise (rewards, accuracies). */
int gkd_metric_higher_is_better(const char *name);

#endif
