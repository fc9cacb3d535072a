/* KV-cached decoding and scoring (model.c holds the layout and memory, model_forward.c the layer forward):
 * KV caches, the model's own cache for the sampler, the cached forward that keeps only the logits asked
 * for, and the log-probabilities of a sequence.
 * Rules: those of model.c; a cache keeps one layer's activations, reused layer after layer, and grows,
 * never shrinks. */
#include "core/tensor/model.h"
#include "core/tensor/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- KV cache ---------- */

void gkd_kv_cache_free(gkd_kv_cache *c) {
    if (!c) return;
    c->be->free(c->k);
    c->be->free(c->v);
    c->be->free(c->logits);
    gkd_model_act_set_free(c->be, &c->acts);
    free(c);
}

gkd_status gkd_kv_cache_create(const gkd_model *m, int B, int max_T, gkd_kv_cache **out) {
    const char *fn = "gkd_kv_cache_create";
    if (!out) return gkd_error_set(GKD_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!m) return gkd_error_set(GKD_ERR_ARG, "%s: model is NULL", fn);
    if (B <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: B = %d must be > 0", fn, B);
    if (max_T <= 0 || max_T > m->cfg.max_seq_len)
        return gkd_error_set(GKD_ERR_ARG, "%s: max_T = %d must be in [1, max_seq_len = %d]", fn, max_T,
                             m->cfg.max_seq_len);
    gkd_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", fn);
    c->be = m->be;
    c->B = B;
    c->max_T = max_T;
    c->n_layers = m->cfg.n_layers;
    c->kv_dim = m->kv_dim;
    size_t bytes = (size_t)m->cfg.n_layers * B * max_T * m->kv_dim * sizeof(float);
    gkd_status st = gkd_model_device_alloc(m->be, (void **)&c->k, bytes, "kv cache");
    if (!st) st = gkd_model_device_alloc(m->be, (void **)&c->v, bytes, "kv cache");
    if (st) {
        gkd_kv_cache_free(c);
        return st;
    }
    /* Unwritten entries are never read (attention stops at each row's position), but zeros keep a bug
     * that reads them deterministic. */
    m->be->zero(c->k, bytes);
    m->be->zero(c->v, bytes);
    *out = c;
    return GKD_OK;
}

int gkd_kv_cache_batch(const gkd_kv_cache *c) {
    return c ? c->B : 0;
}

int gkd_kv_cache_max_len(const gkd_kv_cache *c) {
    return c ? c->max_T : 0;
}

gkd_status gkd_model_kv_cache(gkd_model *m, int B, int max_T, gkd_kv_cache **out) {
    const char *fn = "gkd_model_kv_cache";
    if (!m || !out) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    *out = NULL;
    if (B <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: B = %d must be > 0", fn, B);
    if (max_T <= 0 || max_T > m->cfg.max_seq_len)
        return gkd_error_set(GKD_ERR_ARG, "%s: max_T = %d must be in [1, max_seq_len = %d]", fn, max_T,
                             m->cfg.max_seq_len);
    gkd_kv_cache *c = m->cache;
    if (c && B <= c->B && max_T <= c->max_T) {
        *out = c;
        return GKD_OK;
    }
    int rows = c && c->B > B ? c->B : B;
    int len = c && c->max_T > max_T ? c->max_T : max_T;
    gkd_kv_cache_free(c); /* first, so the old and the new never hold device memory together */
    m->cache = NULL;
    gkd_status st = gkd_kv_cache_create(m, rows, len, &m->cache);
    if (st) return gkd_error_prefix(st, "%s", fn);
    *out = m->cache;
    return GKD_OK;
}

gkd_status gkd_model_workspace(gkd_model *m, size_t bytes, void **out) {
    if (!m || !out) return gkd_error_set(GKD_ERR_ARG, "gkd_model_workspace: NULL argument");
    *out = NULL;
    if (bytes > m->workspace_bytes) {
        m->be->free(m->workspace);
        m->workspace = NULL;
        m->workspace_bytes = 0;
        gkd_status st = gkd_model_device_alloc(m->be, &m->workspace, bytes, "model workspace");
        if (st) return st;
        m->workspace_bytes = bytes;
    }
    *out = m->workspace;
    return GKD_OK;
}

/* Runs the cached forward and leaves the logits in c->logits: (B,V) device when `at` is given, else
 * (B,T,V). */
static gkd_status forward_cached(gkd_model *m, gkd_kv_cache *c, const int *tokens, const int *pos0, int B,
                                 int T, const int *at, const char *fn) {
    if (!m || !c || !tokens || !pos0) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    if (B <= 0 || B > c->B)
        return gkd_error_set(GKD_ERR_ARG, "%s: B = %d must be in [1, the cache's %d rows]", fn, B, c->B);
    if (c->kv_dim != m->kv_dim || c->n_layers != m->cfg.n_layers)
        return gkd_error_set(GKD_ERR_ARG, "%s: the cache was made for another model", fn);
    if (T <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: T = %d must be > 0", fn, T);
    for (int b = 0; b < B; b++) {
        if (pos0[b] < 0 || pos0[b] + T > c->max_T)
            return gkd_error_set(GKD_ERR_ARG,
                                 "%s: pos0[%d] = %d with T = %d overruns the cache's %d positions", fn, b,
                                 pos0[b], T, c->max_T);
        if (at && (at[b] < 0 || at[b] >= T))
            return gkd_error_set(GKD_ERR_ARG, "%s: at[%d] = %d is outside [0, T = %d)", fn, b, at[b], T);
    }
    gkd_status st = gkd_model_check_tokens(m, tokens, B, T, fn);
    if (!st) st = gkd_model_act_set_ensure(m, &c->acts, B, T, c->max_T, 1, 0);
    if (st) return st;
    const gkd_backend *be = m->be;
    const int C = m->cfg.dim, V = m->cfg.vocab_size;
    const int rows = at ? B : B * T;
    if ((size_t)rows * V > c->logits_cap) {
        be->free(c->logits);
        c->logits = NULL;
        c->logits_cap = 0;
        st = gkd_model_device_alloc(be, (void **)&c->logits, (size_t)rows * V * sizeof(float), "logits");
        if (st) return st;
        c->logits_cap = (size_t)rows * V;
    }
    act_set *s = &c->acts;
    gkd_model_forward_layers(m, s, tokens, pos0, at, B, T, 0, c);
    const float *res = s->slots[0].res;
    if (at && T > 1) { /* with T = 1 every at[b] is 0 and the rows are already in place */
        be->embedding_forward(s->proj, s->rows, res, B, C); /* a row gather: proj[b] = res[rows[b]] */
        res = s->proj;
    }
    be->rmsnorm_forward(s->hidden, s->hidden_rstd, res, m->w.final_norm, rows, C, m->cfg.norm_eps);
    gkd_model_output_rows(m, s->hidden, rows, c->logits);
    return GKD_OK;
}

gkd_status gkd_model_forward_cached(gkd_model *m, gkd_kv_cache *c, const int *tokens, const int *pos0, int B,
                                    int T, float *logits) {
    const char *fn = "gkd_model_forward_cached";
    if (!logits) return gkd_error_set(GKD_ERR_ARG, "%s: logits is NULL", fn);
    gkd_status st = forward_cached(m, c, tokens, pos0, B, T, NULL, fn);
    if (!st) m->be->copy_out(logits, c->logits, (size_t)B * T * m->cfg.vocab_size * sizeof(float));
    return st;
}

gkd_status gkd_model_forward_cached_at(gkd_model *m, gkd_kv_cache *c, const int *tokens, const int *pos0,
                                       int B, int T, const int *at, float *logits) {
    const char *fn = "gkd_model_forward_cached_at";
    if (!at || !logits) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    gkd_status st = forward_cached(m, c, tokens, pos0, B, T, at, fn);
    if (!st) m->be->copy_out(logits, c->logits, (size_t)B * m->cfg.vocab_size * sizeof(float));
    return st;
}

gkd_status gkd_model_forward_cached_at_device(gkd_model *m, gkd_kv_cache *c, const int *tokens,
                                              const int *pos0, int B, int T, const int *at,
                                              const float **logits) {
    const char *fn = "gkd_model_forward_cached_at_device";
    if (!at || !logits) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    *logits = NULL;
    gkd_status st = forward_cached(m, c, tokens, pos0, B, T, at, fn);
    if (!st) *logits = c->logits;
    return st;
}

/* ---------- scoring a sequence ---------- */

/* GKD_ERR_ARG naming the first non-finite logit of rows (R,V), which hold positions pos0 .. pos0+R-1. */
static gkd_status check_finite_logits(const float *logits, int R, int V, int pos0, const char *fn) {
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            if (!isfinite(logits[(size_t)r * V + v]))
                return gkd_error_set(GKD_ERR_ARG,
                                     "%s: the logit of token %d at position %d is %g (non-finite weights or "
                                     "activations)",
                                     fn, v, pos0 + r, logits[(size_t)r * V + v]);
    return GKD_OK;
}

gkd_status gkd_model_logits(gkd_model *m, const int *tokens, int T, float *logits) {
    const char *fn = "gkd_model_logits";
    if (!m || !tokens || !logits) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    gkd_kv_cache *c = NULL;
    const int pos0 = 0;
    gkd_status st = gkd_model_check_batch(m, 1, T, fn);
    if (!st) st = gkd_model_kv_cache(m, 1, T, &c);
    if (!st) st = gkd_model_forward_cached(m, c, tokens, &pos0, 1, T, logits);
    if (!st) st = check_finite_logits(logits, T, m->cfg.vocab_size, 0, fn);
    return st;
}

gkd_status gkd_model_logprobs(gkd_model *m, const int *tokens, int T, double *out) {
    const char *fn = "gkd_model_logprobs";
    if (!m || !tokens || !out) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    if (T < 2)
        return gkd_error_set(GKD_ERR_ARG, "%s: T = %d: a sequence of at least 2 tokens is needed", fn, T);
    gkd_status st = gkd_model_check_batch(m, 1, T, fn);
    if (!st) st = gkd_model_check_tokens(m, tokens, 1, T, fn); /* the last token is scored, never fed */
    if (st) return st;
    const int V = m->cfg.vocab_size, fed = T - 1;
    const int R = gkd_model_ce_chunk_rows(m) < fed ? gkd_model_ce_chunk_rows(m) : fed;
    gkd_kv_cache *c = NULL;
    if ((st = gkd_model_kv_cache(m, 1, fed, &c)) != GKD_OK) return st;
    float *logits = malloc((size_t)R * V * sizeof *logits);
    if (!logits) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory for %d rows of logits", fn, R);
    for (int p0 = 0; p0 < fed && !st; p0 += R) {
        const int n = fed - p0 < R ? fed - p0 : R;
        st = gkd_model_forward_cached(m, c, tokens + p0, &p0, 1, n, logits);
        if (!st) st = check_finite_logits(logits, n, V, p0, fn);
        for (int r = 0; r < n && !st; r++) {
            const float *row = logits + (size_t)r * V;
            double mx = row[0], sum = 0.0;
            for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
            out[p0 + r] = row[tokens[p0 + r + 1]] - mx - log(sum);
        }
    }
    free(logits);
    return st;
}
