/* Batched sampling over a KV cache; see sample.h for the contract on draws. The prefill runs every prompt
 * right-padded in one pass and keeps only the logits at each prompt's last token; each later step feeds one
 * token per row at that row's own position. Rows are drawn in parallel, each from its own scratch. */
#include "core/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

gkd_status gkd_sample_config_check(const gkd_sample_config *c, int V) {
    if (!c) return gkd_error_set(GKD_ERR_ARG, "gkd_sample_config: NULL");
    if (!isfinite(c->temperature) || c->temperature < 0.0f)
        return gkd_error_set(GKD_ERR_ARG, "gkd_sample_config: temperature = %g must be >= 0", c->temperature);
    if (c->top_k < 0)
        return gkd_error_set(GKD_ERR_ARG, "gkd_sample_config: top_k = %d must be >= 0", c->top_k);
    if (!(c->top_p > 0.0f && c->top_p <= 1.0f))
        return gkd_error_set(GKD_ERR_ARG, "gkd_sample_config: top_p = %g must be in (0, 1]", c->top_p);
    if (c->max_new_tokens < 0)
        return gkd_error_set(GKD_ERR_ARG, "gkd_sample_config: max_new_tokens = %d must be >= 0",
                             c->max_new_tokens);
    if (c->eos_id < -1 || c->eos_id >= V)
        return gkd_error_set(GKD_ERR_ARG,
                             "gkd_sample_config: eos_id = %d must be -1 or in [0, vocab_size = %d)",
                             c->eos_id, V);
    return GKD_OK;
}

/* Sorting key of the filters: probability descending, then token id ascending. */
static _Thread_local const float *sort_probs;

static int by_prob_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_probs[i] != sort_probs[j]) return sort_probs[i] > sort_probs[j] ? -1 : 1;
    return i - j;
}

int gkd_sample_token(const float *logits, int V, const gkd_sample_config *cfg, float u, float *probs,
                     int *order, float *logprob) {
    float mx = logits[0];
    int argmax = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > mx) mx = logits[v], argmax = v;
    double sum1 = 0.0;
    for (int v = 0; v < V; v++) sum1 += exp((double)logits[v] - mx);
    double lse = mx + log(sum1);
    int tok = argmax;
    if (cfg->temperature > 0.0f && cfg->top_k != 1) {
        double inv_t = 1.0 / cfg->temperature;
        /* the largest logit gets weight 1 exactly, even when a tiny temperature makes inv_t infinite */
        for (int v = 0; v < V; v++)
            probs[v] = logits[v] == mx ? 1.0f : (float)exp(((double)logits[v] - mx) * inv_t);
        int keep_k = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
        if (keep_k < V || cfg->top_p < 1.0f) {
            for (int v = 0; v < V; v++) order[v] = v;
            sort_probs = probs;
            qsort(order, (size_t)V, sizeof *order, by_prob_desc);
            double total = 0.0;
            for (int i = 0; i < keep_k; i++) total += probs[order[i]];
            /* top-p: the most probable tokens whose mass before them is still below top_p of the kept mass */
            double mass = 0.0, limit = cfg->top_p * total;
            int kept = 0;
            while (kept < keep_k && mass < limit) mass += probs[order[kept++]];
            for (int i = kept; i < V; i++) probs[order[i]] = 0.0f;
        }
        double total = 0.0;
        for (int v = 0; v < V; v++) total += probs[v];
        double target = (double)u * total, acc = 0.0;
        tok = -1;
        for (int v = 0; v < V; v++) {
            if (probs[v] == 0.0f) continue;
            acc += probs[v];
            tok = v;
            if (acc >= target) break;
        }
    }
    *logprob = (float)(logits[tok] - lse);
    return tok;
}

gkd_status gkd_sample_generate(gkd_model *m, const int *prompts, const int *prompt_lens, int B, int P,
                               const gkd_sample_config *cfg, gkd_rng *rng, int *out_tokens, int *out_lens,
                               float *out_logprobs) {
    const char *fn = "gkd_sample_generate";
    if (!m || !prompts || !prompt_lens || !cfg || !rng || !out_tokens || !out_lens || !out_logprobs)
        return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    const int V = gkd_model_get_config(m)->vocab_size, max_len = gkd_model_get_config(m)->max_seq_len;
    gkd_status st = gkd_sample_config_check(cfg, V);
    if (st) return st;
    if (B <= 0 || P <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: B = %d, P = %d must be > 0", fn, B, P);
    for (int b = 0; b < B; b++)
        if (prompt_lens[b] < 1 || prompt_lens[b] > P)
            return gkd_error_set(GKD_ERR_ARG, "%s: prompt_lens[%d] = %d must be in [1, P = %d]", fn, b,
                                 prompt_lens[b], P);
    const int max_new = cfg->max_new_tokens;
    /* the last token is never fed, so a row needs at most P + max_new - 1 positions */
    const int max_T = max_new > 1 ? P + max_new - 1 : P;
    if (max_T > max_len)
        return gkd_error_set(GKD_ERR_ARG, "%s: P + max_new_tokens - 1 = %d exceeds max_seq_len = %d", fn,
                             max_T, max_len);
    const int pad = cfg->eos_id >= 0 ? cfg->eos_id : 0;
    for (size_t i = 0; i < (size_t)B * max_new; i++) out_tokens[i] = pad, out_logprobs[i] = 0.0f;
    for (int b = 0; b < B; b++) out_lens[b] = 0;
    if (max_new == 0) return GKD_OK;

    gkd_kv_cache *cache = NULL;
    float *logits = malloc((size_t)B * V * sizeof(float));
    float *probs = malloc((size_t)B * V * sizeof(float));
    int *order = malloc((size_t)B * V * sizeof(int));
    int *ints = malloc(((size_t)4 * B + (size_t)B * P) * sizeof(int));
    if (!logits || !probs || !order || !ints) {
        st = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    int *pos = ints, *at = ints + B, *feed = ints + 2 * B, *done = ints + 3 * B, *prefill = ints + 4 * B;
    /* whatever the caller padded with becomes token 0: padding is never attended to, but must be a valid id
     */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++)
            prefill[(size_t)b * P + t] = t < prompt_lens[b] ? prompts[(size_t)b * P + t] : 0;
    st = gkd_kv_cache_create(m, B, max_T, &cache);
    if (st) goto done;
    for (int b = 0; b < B; b++) pos[b] = 0, at[b] = prompt_lens[b] - 1, done[b] = 0;
    st = gkd_model_forward_cached_at(m, cache, prefill, pos, B, P, at, logits);
    for (int t = 0; !st && t < max_new; t++) {
#pragma omp parallel for schedule(dynamic, 1) if (B > 1 && (size_t)B * V > 4096)
        for (int b = 0; b < B; b++) {
            if (done[b]) continue;
            float u = cfg->temperature > 0.0f && cfg->top_k != 1
                          ? gkd_rng_uniform_from_word(
                                gkd_rng_word(rng->seed, rng->stream, rng->offset + (uint64_t)t * B + b))
                          : 1.0f;
            float lp;
            int tok = gkd_sample_token(logits + (size_t)b * V, V, cfg, u, probs + (size_t)b * V,
                                       order + (size_t)b * V, &lp);
            out_tokens[(size_t)b * max_new + t] = tok;
            out_logprobs[(size_t)b * max_new + t] = lp;
            out_lens[b] = t + 1;
            done[b] = tok == cfg->eos_id;
        }
        int live = 0;
        for (int b = 0; b < B; b++) live += !done[b];
        if (!live || t + 1 == max_new) break;
        /* finished rows keep being fed (their own last token, at their next position) so the batch keeps
         * its shape; what they compute is ignored */
        for (int b = 0; b < B; b++) {
            feed[b] = out_tokens[(size_t)b * max_new + (out_lens[b] - 1)];
            pos[b] = prompt_lens[b] + t;
        }
        st = gkd_model_forward_cached(m, cache, feed, pos, B, 1, logits);
    }
done:
    rng->offset += (uint64_t)max_new * B;
    gkd_kv_cache_free(cache);
    free(logits), free(probs), free(order), free(ints);
    return st;
}
