/* Batched sampling over the model's own KV cache (kept between calls, see gkd_model_kv_cache); see
 * sample.h for the contract on draws. The prefill runs every prompt right-padded in one pass and keeps only
 * the logits at each prompt's last token; each later step feeds one token per row at that row's own
 * position. On a backend with its own draw (the table's sample_draw, e.g. CUDA's core/tensor/sample_cuda.h)
 * the logits stay in backend memory and only the B tokens and log-probabilities of a step come back to
 * the host. On any other backend the step's (B,V) logits are copied to the host (on the CPU a copy between
 * host buffers) and rows are drawn in parallel, each from its own scratch. */
#include "core/tensor/sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* One cached forward, leaving *logits: (B,V) where the step draws from them: in backend memory when
 * host_logits is NULL (the backend draws), else copied into host_logits, since another backend's buffers
 * need not be host memory. */
static gkd_status forward_step(gkd_model *m, gkd_kv_cache *c, const int *tokens, const int *pos0, int B,
                               int T, const int *at, float *host_logits, const float **logits) {
    if (!host_logits) return gkd_model_forward_cached_at_device(m, c, tokens, pos0, B, T, at, logits);
    *logits = host_logits;
    return gkd_model_forward_cached_at(m, c, tokens, pos0, B, T, at, host_logits);
}

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

/* Rank order of the filters: a before b when it is more probable, or as probable with a smaller id. */
static inline int ranks_before(const float *p, int a, int b) {
    return p[a] > p[b] || (p[a] == p[b] && a < b);
}

/* Restores the heap property below slot i of heap h: (n) token ids. worst_on_top: the root is the last in
 * rank order (selecting the k best: a newcomer only has to beat the root), else the first (popping the
 * best one at a time). */
static void sift_down(int *h, int n, int i, const float *p, int worst_on_top) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, top = i;
        if (l < n && (worst_on_top ? ranks_before(p, h[top], h[l]) : ranks_before(p, h[l], h[top]))) top = l;
        if (r < n && (worst_on_top ? ranks_before(p, h[top], h[r]) : ranks_before(p, h[r], h[top]))) top = r;
        if (top == i) return;
        int t = h[i];
        h[i] = h[top];
        h[top] = t;
        i = top;
    }
}

/* The last token, in rank order, that the filters keep. top-k: the k best by a heap of k (O(V log k) at
 * worst, O(V) when the row is not adversarial), sorted; top-p alone: a heap over the row, popped best first
 * only as far as the mass needs. Both sum in double as the full sort did: the kept mass of top-k in rank
 * order, the whole row's mass in token order. */
static int filter_last_kept(const float *probs, int V, int keep_k, float top_p, int *order) {
    if (keep_k < V) {
        for (int i = 0; i < keep_k; i++) order[i] = i;
        for (int i = keep_k / 2 - 1; i >= 0; i--) sift_down(order, keep_k, i, probs, 1);
        for (int v = keep_k; v < V; v++)
            if (ranks_before(probs, v, order[0])) {
                order[0] = v;
                sift_down(order, keep_k, 0, probs, 1);
            }
        for (int n = keep_k; n > 1; n--) { /* heapsort: the worst goes last, leaving the best first */
            int t = order[0];
            order[0] = order[n - 1];
            order[n - 1] = t;
            sift_down(order, n - 1, 0, probs, 1);
        }
        double total = 0.0;
        for (int i = 0; i < keep_k; i++) total += probs[order[i]];
        /* top-p: the most probable tokens whose mass before them is still below top_p of the kept mass */
        double mass = 0.0, limit = top_p * total;
        int kept = 0;
        do /* the best token is kept whatever the limit */
            mass += probs[order[kept++]];
        while (kept < keep_k && mass < limit);
        return order[kept - 1];
    }
    double total = 0.0;
    for (int v = 0; v < V; v++) total += probs[v], order[v] = v;
    for (int i = V / 2 - 1; i >= 0; i--) sift_down(order, V, i, probs, 0);
    double mass = 0.0, limit = top_p * total;
    int n = V, last = order[0];
    while (n > 0 && mass < limit) {
        last = order[0];
        mass += probs[last];
        order[0] = order[--n];
        sift_down(order, n, 0, probs, 0);
    }
    return last;
}

/* The first token of a row whose logit is NaN or infinite, or -1 when every logit is finite. */
static int first_nonfinite(const float *logits, int V) {
    for (int v = 0; v < V; v++)
        if (!isfinite(logits[v])) return v;
    return -1;
}

int gkd_sample_token(const float *logits, int V, const gkd_sample_config *cfg, float u, float *probs,
                     int *order, float *logprob) {
    /* A NaN compares false with everything and an infinity makes every weight NaN: the filters and the
     * inverse CDF would then keep nothing, so such a row is refused before anything is ranked. */
    if (first_nonfinite(logits, V) >= 0) {
        *logprob = NAN;
        return -1;
    }
    float mx = logits[0];
    int argmax = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > mx) mx = logits[v], argmax = v;
    const int draw = cfg->temperature > 0.0f && cfg->top_k != 1;
    const double inv_t = draw ? 1.0 / cfg->temperature : 1.0;
    double sum1 = 0.0;
    if (draw && inv_t == 1.0) { /* temperature 1: the draw's weights are the log-sum-exp's terms */
        for (int v = 0; v < V; v++) {
            double e = exp((double)logits[v] - mx);
            sum1 += e;
            probs[v] = logits[v] == mx ? 1.0f : (float)e;
        }
    } else {
        for (int v = 0; v < V; v++) sum1 += exp((double)logits[v] - mx);
        /* the largest logit gets weight 1 exactly, even when a tiny temperature makes inv_t infinite */
        if (draw)
            for (int v = 0; v < V; v++)
                probs[v] = logits[v] == mx ? 1.0f : (float)exp(((double)logits[v] - mx) * inv_t);
    }
    double lse = mx + log(sum1);
    int tok = argmax;
    if (draw) {
        int keep_k = cfg->top_k > 0 && cfg->top_k < V ? cfg->top_k : V;
        if (keep_k < V || cfg->top_p < 1.0f) {
            int last = filter_last_kept(probs, V, keep_k, cfg->top_p, order);
            for (int v = 0; v < V; v++)
                if (ranks_before(probs, last, v)) probs[v] = 0.0f;
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

/* Names the row and position whose logits are not finite. row: that row's host logits (V), or NULL when
 * they are on the device. */
static gkd_status nonfinite_error(const float *row, int V, int b, int t, int pos) {
    char which[96] = "";
    if (row) {
        int v = first_nonfinite(row, V);
        snprintf(which, sizeof which, " (the logit of token %d is %s)", v,
                 isnan(row[v]) ? "NaN"
                 : row[v] > 0  ? "+infinity"
                               : "-infinity");
    }
    return gkd_error_set(GKD_ERR_FORMAT,
                         "gkd_sample_generate: non-finite logits at batch row %d, new token %d (sequence "
                         "position %d)%s: the model's weights or activations hold NaN or infinity",
                         b, t, pos, which);
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
    if (cfg->row_stride != 0 && cfg->row_stride < B)
        return gkd_error_set(GKD_ERR_ARG, "%s: row_stride = %d must be 0 or >= B = %d", fn, cfg->row_stride, B);
    const uint64_t S = cfg->row_stride > 0 ? (uint64_t)cfg->row_stride : (uint64_t)B;
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

    const gkd_backend *be = gkd_model_backend(m);
    const int device = be->sample_draw != NULL;
    gkd_kv_cache *cache = NULL;
    const float *logits = NULL; /* (B,V): backend memory when the backend draws, else host_logits */
    void *ws = NULL;
    float *probs = NULL, *host_logits = NULL, *step_lp = malloc((size_t)B * sizeof(float));
    int *order = NULL, *ints = malloc(((size_t)5 * B + (size_t)B * P) * sizeof(int));
    if (!device) {
        probs = malloc((size_t)B * V * sizeof(float));
        order = malloc((size_t)B * V * sizeof(int));
        host_logits = malloc((size_t)B * V * sizeof(float));
    }
    if (!ints || !step_lp || (!device && (!probs || !order || !host_logits))) {
        st = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    int *pos = ints, *at = ints + B, *feed = ints + 2 * B, *done = ints + 3 * B, *step_tok = ints + 4 * B;
    int *prefill = ints + 5 * B;
    /* whatever the caller padded with becomes token 0: padding is never attended to, but must be a valid id
     */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < P; t++)
            prefill[(size_t)b * P + t] = t < prompt_lens[b] ? prompts[(size_t)b * P + t] : 0;
    st = gkd_model_kv_cache(m, B, max_T, &cache);
    if (!st && device) st = gkd_model_workspace(m, be->sample_workspace_bytes(B, V), &ws);
    if (st) goto done;
    for (int b = 0; b < B; b++) pos[b] = 0, at[b] = prompt_lens[b] - 1, done[b] = 0;
    st = forward_step(m, cache, prefill, pos, B, P, at, host_logits, &logits);
    for (int b = 0; b < B; b++) at[b] = 0; /* decoding feeds one token per row */
    const int draws = cfg->temperature > 0.0f && cfg->top_k != 1;
    for (int t = 0; !st && t < max_new; t++) {
        if (device) {
            st = be->sample_draw(logits, B, V, cfg, rng->seed, rng->stream, rng->offset + (uint64_t)t * S, ws,
                                 step_tok, step_lp);
            if (st) break;
        } else {
#pragma omp parallel for schedule(dynamic, 1) if (B > 1 && (size_t)B * V > 4096)
            for (int b = 0; b < B; b++) {
                if (done[b]) continue;
                float u = draws ? gkd_rng_uniform_from_word(
                                      gkd_rng_word(rng->seed, rng->stream, rng->offset + (uint64_t)t * S + b))
                                : 1.0f;
                step_tok[b] = gkd_sample_token(logits + (size_t)b * V, V, cfg, u, probs + (size_t)b * V,
                                               order + (size_t)b * V, &step_lp[b]);
            }
        }
        for (int b = 0; b < B && !st; b++)
            if (!done[b] && step_tok[b] < 0)
                st = nonfinite_error(device ? NULL : logits + (size_t)b * V, V, b, t, prompt_lens[b] + t);
        if (st) break;
        for (int b = 0; b < B; b++) {
            if (done[b]) continue;
            out_tokens[(size_t)b * max_new + t] = step_tok[b];
            out_logprobs[(size_t)b * max_new + t] = step_lp[b];
            out_lens[b] = t + 1;
            done[b] = step_tok[b] == cfg->eos_id;
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
        st = forward_step(m, cache, feed, pos, B, 1, at, host_logits, &logits);
    }
done:
    rng->offset += (uint64_t)max_new * S;
    free(probs), free(order), free(host_logits), free(ints), free(step_lp);
    return st;
}
