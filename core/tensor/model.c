/* The Llama-family transformer over a backend table, in three files: this one holds the configuration,
 * the parameter layout, the activation memory, create/free and the accessors; model_forward.c the training
 * and inference forward, the backward and the chunked cross-entropy; model_decode.c the KV caches, the
 * cached forward and scoring. Their shared private parts are in model_internal.h.
 * Rules:
 * - Each tensor is declared once, in the X-macros of model_internal.h; names, shapes, offsets and the
 *   pointer structs are generated from them. q,k,v and gate,up are adjacent in the block, so each group
 *   is multiplied as one fused matrix ((QD+2 KVD) x C and 2F x C): fewer, bigger sgemms.
 * - Activations live in preallocated blocks (act_set) sized for (B,T) and grown, never shrunk, when a
 *   bigger batch arrives; no op allocates. The training set keeps every layer's activations for the
 *   backward, the inference set and each KV cache keep one layer's worth, reused layer after layer.
 * - Parameter gradients accumulate (+=); a model is not safe to use from two threads at once.
 * - An inference model has no gradient block (grads and every dw/dlw pointer are NULL) and never makes the
 *   training activation set: every path that would write a gradient checks m->inference first. */
#include "core/tensor/model.h"
#include "core/tensor/model_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"

/* ---------- configuration and layout ---------- */

/* a * b into *out; 0 when it overflows 64 bits. */
static int mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* The parameter count of a configuration whose sizes are each within their bounds, computed without overflow;
 * 0 when it does not fit 64 bits. */
static uint64_t config_num_params(const gkd_model_config *c) {
    const uint64_t V = (uint64_t)c->vocab_size, C = (uint64_t)c->dim, F = (uint64_t)c->hidden_dim;
    const uint64_t head_dim = C / (uint64_t)c->n_heads, KVD = (uint64_t)c->n_kv_heads * head_dim;
    uint64_t embed, layer, mlp, qkvo, layers, total;
    if (!mul_u64(V, C, &embed) || !mul_u64(C, 2 * C + 2 * KVD, &qkvo) || !mul_u64(3 * C, F, &mlp)) return 0;
    layer = qkvo + mlp + 2 * C; /* each term < 2^60 under the bounds: the sum cannot wrap */
    if (!mul_u64(layer, (uint64_t)c->n_layers, &layers)) return 0;
    total = embed * (c->tied_embeddings ? 1 : 2) + C;
    if (__builtin_add_overflow(total, layers, &total)) return 0;
    return total;
}

gkd_status gkd_model_config_check(const gkd_model_config *c) {
    if (!c) return gkd_error_set(GKD_ERR_ARG, "gkd_model_config: NULL");
#define REQUIRE(cond, ...)                                                                                   \
    do {                                                                                                     \
        if (!(cond)) return gkd_error_set(GKD_ERR_ARG, "gkd_model_config: " __VA_ARGS__);                    \
    } while (0)
/* `names` adds the field's names in config.json and GGUF, so that every source of a config reads its own. */
#define REQUIRE_RANGE(field, names, max)                                                                     \
    REQUIRE(c->field > 0 && c->field <= (max), #field " (" names ") = %d must be in [1, %d]", c->field, (max))
    REQUIRE_RANGE(vocab_size, "vocab_size", GKD_MODEL_MAX_VOCAB);
    REQUIRE_RANGE(dim, "hidden_size, embedding_length", GKD_MODEL_MAX_DIM);
    REQUIRE_RANGE(n_layers, "num_hidden_layers, block_count", GKD_MODEL_MAX_LAYERS);
    REQUIRE(c->n_heads > 0, "n_heads = %d must be > 0", c->n_heads);
    REQUIRE(c->dim % c->n_heads == 0, "dim = %d is not a multiple of n_heads = %d", c->dim, c->n_heads);
    REQUIRE((c->dim / c->n_heads) % 2 == 0, "head_dim = dim / n_heads = %d must be even (rotary pairs)",
            c->dim / c->n_heads);
    REQUIRE(c->n_kv_heads > 0 && c->n_kv_heads <= c->n_heads, "n_kv_heads = %d must be in [1, n_heads = %d]",
            c->n_kv_heads, c->n_heads);
    REQUIRE(c->n_heads % c->n_kv_heads == 0, "n_heads = %d is not a multiple of n_kv_heads = %d", c->n_heads,
            c->n_kv_heads);
    REQUIRE_RANGE(hidden_dim, "intermediate_size, feed_forward_length", GKD_MODEL_MAX_HIDDEN);
    REQUIRE_RANGE(max_seq_len, "max_position_embeddings, context_length", GKD_MODEL_MAX_SEQ_LEN);
    REQUIRE((uint64_t)c->max_seq_len * (uint64_t)(c->dim / c->n_heads) <= GKD_MODEL_MAX_ROPE_TABLE,
            "max_seq_len = %d x head_dim = %d exceeds the rotary tables' bound of 2^32 floats",
            c->max_seq_len, c->dim / c->n_heads);
    uint64_t params = config_num_params(c);
    REQUIRE(
        params > 0 && params <= GKD_MODEL_MAX_PARAMS,
        "the parameter count (%llu) exceeds the bound of 2^40 floats (vocab_size %d, dim %d, n_layers %d, "
        "hidden_dim %d)",
        (unsigned long long)params, c->vocab_size, c->dim, c->n_layers, c->hidden_dim);
    REQUIRE(isfinite(c->rope_theta) && c->rope_theta > 0.0f, "rope_theta = %g must be > 0", c->rope_theta);
    REQUIRE(isfinite(c->norm_eps) && c->norm_eps > 0.0f, "norm_eps = %g must be > 0", c->norm_eps);
    REQUIRE(c->tied_embeddings == 0 || c->tied_embeddings == 1, "tied_embeddings = %d must be 0 or 1",
            c->tied_embeddings);
    REQUIRE(c->rope_type == GKD_ROPE_DEFAULT || c->rope_type == GKD_ROPE_LINEAR ||
                c->rope_type == GKD_ROPE_LLAMA3,
            "rope_type = %d is not a gkd_rope_type", c->rope_type);
    if (c->rope_type != GKD_ROPE_DEFAULT)
        REQUIRE(isfinite(c->rope_factor) && c->rope_factor > 0.0f, "rope_factor = %g must be > 0",
                c->rope_factor);
    if (c->rope_type == GKD_ROPE_LLAMA3) {
        REQUIRE(isfinite(c->rope_low_freq_factor) && c->rope_low_freq_factor > 0.0f,
                "rope_low_freq_factor = %g must be > 0", c->rope_low_freq_factor);
        REQUIRE(isfinite(c->rope_high_freq_factor) && c->rope_high_freq_factor > c->rope_low_freq_factor,
                "rope_high_freq_factor = %g must be > rope_low_freq_factor = %g", c->rope_high_freq_factor,
                c->rope_low_freq_factor);
        REQUIRE_RANGE(rope_original_max_seq_len, "original_max_position_embeddings", GKD_MODEL_MAX_SEQ_LEN);
    }
#undef REQUIRE_RANGE
#undef REQUIRE
    return GKD_OK;
}

int gkd_model_config_equal(const gkd_model_config *a, const gkd_model_config *b) {
    int same = a->vocab_size == b->vocab_size && a->dim == b->dim && a->n_layers == b->n_layers &&
               a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads && a->hidden_dim == b->hidden_dim &&
               a->max_seq_len == b->max_seq_len && a->rope_theta == b->rope_theta &&
               a->norm_eps == b->norm_eps && a->tied_embeddings == b->tied_embeddings &&
               a->rope_type == b->rope_type;
    if (same && a->rope_type != GKD_ROPE_DEFAULT) same = a->rope_factor == b->rope_factor;
    if (same && a->rope_type == GKD_ROPE_LLAMA3)
        same = a->rope_low_freq_factor == b->rope_low_freq_factor &&
               a->rope_high_freq_factor == b->rope_high_freq_factor &&
               a->rope_original_max_seq_len == b->rope_original_max_seq_len;
    return same;
}

double gkd_model_rope_inv_freq(const gkd_model_config *c, int head_dim, int i) {
    double f = pow((double)c->rope_theta, -2.0 * i / head_dim);
    if (c->rope_type == GKD_ROPE_LINEAR) return f / c->rope_factor;
    if (c->rope_type != GKD_ROPE_LLAMA3) return f;
    const double L = c->rope_original_max_seq_len, low = c->rope_low_freq_factor,
                 high = c->rope_high_freq_factor;
    const double wavelen = 2.0 * M_PI / f;
    if (wavelen < L / high) return f;
    if (wavelen > L / low) return f / c->rope_factor;
    double s = (L / wavelen - low) / (high - low);
    return (1.0 - s) * f / c->rope_factor + s * f;
}

/* Walks the tensor declarations in block order. With fill, records each tensor's info and points the
 * weight and gradient structs into the blocks; returns the total number of floats. */
static size_t layout_tensors(gkd_model *m, int fill) {
    const gkd_model_config *cfg = &m->cfg;
    const size_t V = (size_t)cfg->vocab_size, C = (size_t)cfg->dim, F = (size_t)cfg->hidden_dim;
    const size_t QD = (size_t)m->q_dim, KVD = (size_t)m->kv_dim;
    const int tied = cfg->tied_embeddings;
    size_t off = 0;
    int n = 0;
    (void)tied;
#define GKD_PLACE(field, hf_name, rows, cols, norm, present, prefix, wstruct, gstruct)                       \
    if (present) {                                                                                           \
        size_t numel = (size_t)(rows) * ((cols) ? (size_t)(cols) : 1);                                       \
        if (fill) {                                                                                          \
            gkd_tensor_info *ti = &m->tensors[n];                                                            \
            char *name = m->names + (size_t)n * TENSOR_NAME_CAP;                                             \
            snprintf(name, TENSOR_NAME_CAP, "%s%s", prefix, hf_name);                                        \
            ti->name = name;                                                                                 \
            ti->ndim = (cols) ? 2 : 1;                                                                       \
            ti->shape[0] = (int64_t)(rows);                                                                  \
            ti->shape[1] = (cols) ? (int64_t)(cols) : 0;                                                     \
            ti->offset = off;                                                                                \
            ti->numel = numel;                                                                               \
            ti->is_norm = norm;                                                                              \
            (wstruct).field = m->params + off;                                                               \
            (gstruct).field = m->grads ? m->grads + off : NULL;                                              \
        }                                                                                                    \
        off += numel;                                                                                        \
        n++;                                                                                                 \
    }
#define GKD_PLACE_GLOBAL(field, hf_name, rows, cols, norm, present)                                          \
    GKD_PLACE(field, hf_name, rows, cols, norm, present, "", m->w, m->dw)
    GKD_HEAD_TENSORS(GKD_PLACE_GLOBAL)
    for (int l = 0; l < cfg->n_layers; l++) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "model.layers.%d.", l);
#define GKD_PLACE_LAYER(field, hf_name, rows, cols, norm, present)                                           \
    GKD_PLACE(field, hf_name, rows, cols, norm, present, prefix, m->lw[l], m->dlw[l])
        GKD_LAYER_TENSORS(GKD_PLACE_LAYER)
#undef GKD_PLACE_LAYER
    }
    GKD_TAIL_TENSORS(GKD_PLACE_GLOBAL)
#undef GKD_PLACE_GLOBAL
#undef GKD_PLACE
    m->n_tensors = n;
    return off;
}

gkd_status gkd_model_device_alloc(const gkd_backend *be, void **p, size_t bytes, const char *what) {
    *p = be->alloc(bytes);
    if (!*p)
        return gkd_error_set(GKD_ERR_NOMEM, "%s: cannot allocate %zu bytes on %s", what, bytes, be->name);
    return GKD_OK;
}

void gkd_model_act_set_free(const gkd_backend *be, act_set *s) {
    if (!s) return;
    if (be) be->free(s->block);
    free(s->slots);
    free(s->host_ints);
    memset(s, 0, sizeof *s);
}

/* Carves the set's buffers for (B,T) with att rows of Tk from `base` (NULL: only counts); returns the
 * floats used. */
static size_t act_set_carve(const gkd_model *m, act_set *s, float *base, int B, int T, int Tk, int n_slots,
                            int with_grads) {
    const size_t N = (size_t)B * T, C = (size_t)m->cfg.dim, F = (size_t)m->cfg.hidden_dim;
    const size_t H = (size_t)m->cfg.n_heads, QD = (size_t)m->q_dim, W = (size_t)m->qkv_dim;
    size_t off = 0;
#define GKD_CARVE(ptr, floats)                                                                               \
    do {                                                                                                     \
        if (base) ptr = base + off;                                                                          \
        off += ((size_t)(floats) + ACT_ALIGN - 1) / ACT_ALIGN * ACT_ALIGN;                                   \
    } while (0)
    for (int l = 0; l < n_slots; l++) {
        act_slot *slot = &s->slots[l];
        (void)slot;
#define GKD_CARVE_SLOT(field, floats) GKD_CARVE(slot->field, floats);
        GKD_SLOT_ACTS(GKD_CARVE_SLOT)
#undef GKD_CARVE_SLOT
    }
#define GKD_CARVE_SET(field, floats) GKD_CARVE(s->field, floats);
    GKD_SHARED_ACTS(GKD_CARVE_SET)
    if (with_grads) {
        GKD_GRAD_ACTS(GKD_CARVE_SET)
    }
#undef GKD_CARVE_SET
    float *ints = NULL;
    GKD_CARVE(ints, 2 * N + (size_t)B);
    if (base) {
        s->tokens = (int *)ints;
        s->pos = s->tokens + N;
        s->rows = s->pos + N;
    }
#undef GKD_CARVE
    return off;
}

/* The ops index rows with int (N = B*T) and activation buffers are sized in size_t: refuses shapes that
 * overflow either, before anything reads the tokens or allocates. The largest buffers are the attention
 * probabilities (B*H*T*Tk) and the widest projection (N * max(qkv_dim, 2F)). */
gkd_status gkd_model_check_activations(const gkd_model *m, int B, int T, int Tk, const char *fn) {
    uint64_t N = (uint64_t)B * (uint64_t)T, att, wide;
    uint64_t width = (uint64_t)(m->qkv_dim > 2 * m->cfg.hidden_dim ? m->qkv_dim : 2 * m->cfg.hidden_dim);
    if (N > INT_MAX || !mul_u64(N * (uint64_t)m->cfg.n_heads, (uint64_t)Tk, &att) ||
        !mul_u64(N, width, &wide) || att > GKD_MODEL_MAX_ACTIVATIONS || wide > GKD_MODEL_MAX_ACTIVATIONS)
        return gkd_error_set(
            GKD_ERR_ARG,
            "%s: the activations of B = %d rows of T = %d positions (attending to %d) exceed the "
            "bound of 2^40 floats per buffer",
            fn, B, T, Tk);
    return GKD_OK;
}

/* Makes the set's buffers fit (B,T,Tk), reallocating only when they do not. */
gkd_status gkd_model_act_set_ensure(gkd_model *m, act_set *s, int B, int T, int Tk, int n_slots,
                                    int with_grads) {
    const gkd_backend *be = m->be;
    gkd_status st = gkd_model_check_activations(m, B, T, Tk, "activations");
    if (st) return st;
    if (!s->slots) {
        s->slots = calloc((size_t)n_slots, sizeof *s->slots);
        if (!s->slots) return gkd_error_set(GKD_ERR_NOMEM, "activations: out of host memory");
    }
    if ((st = gkd_model_packed_scratch_ensure(m, B * T)) != GKD_OK) return st;
    size_t need = act_set_carve(m, s, NULL, B, T, Tk, n_slots, with_grads);
    if (need > s->cap_floats) {
        be->free(s->block);
        s->block = NULL;
        s->cap_floats = 0;
        st = gkd_model_device_alloc(be, &s->block, need * sizeof(float), "activations");
        if (st) return st;
        s->cap_floats = need;
    }
    size_t n_ints = 2 * (size_t)B * T + (size_t)B;
    if (n_ints > s->host_cap) {
        free(s->host_ints);
        s->host_ints = malloc(n_ints * sizeof(int));
        s->host_cap = s->host_ints ? n_ints : 0;
        if (!s->host_ints) return gkd_error_set(GKD_ERR_NOMEM, "activations: out of host memory");
    }
    act_set_carve(m, s, s->block, B, T, Tk, n_slots, with_grads);
    s->B = B;
    s->T = T;
    s->Tk = Tk;
    return GKD_OK;
}

/* Rotary tables in double precision, then rounded once: entry [p][i] = cos/sin(p * f_i), f_i the pair's
 * inverse frequency after rope scaling (gkd_model_rope_inv_freq). */
static gkd_status rope_tables_create(gkd_model *m) {
    int half = m->head_dim / 2, P = m->cfg.max_seq_len;
    size_t n = (size_t)P * half;
    float *host = malloc(2 * n * sizeof(float));
    if (!host) return gkd_error_set(GKD_ERR_NOMEM, "rope tables: out of host memory");
    for (int i = 0; i < half; i++) {
        double inv_freq = gkd_model_rope_inv_freq(&m->cfg, m->head_dim, i);
        for (int p = 0; p < P; p++) {
            host[(size_t)p * half + i] = (float)cos(p * inv_freq);
            host[n + (size_t)p * half + i] = (float)sin(p * inv_freq);
        }
    }
    gkd_status st = gkd_model_device_alloc(m->be, (void **)&m->rope_cos, n * sizeof(float), "rope tables");
    if (!st) st = gkd_model_device_alloc(m->be, (void **)&m->rope_sin, n * sizeof(float), "rope tables");
    if (!st) {
        m->be->copy_in(m->rope_cos, host, n * sizeof(float));
        m->be->copy_in(m->rope_sin, host + n, n * sizeof(float));
    }
    free(host);
    return st;
}

gkd_status gkd_model_create(const gkd_model_config *cfg, const gkd_backend *be, gkd_model **out) {
    return gkd_model_create_ex(cfg, be, GKD_MODEL_TRAINABLE, out);
}

gkd_status gkd_model_create_ex(const gkd_model_config *cfg, const gkd_backend *be, unsigned flags,
                               gkd_model **out) {
    if (!out) return gkd_error_set(GKD_ERR_ARG, "gkd_model_create: out is NULL");
    *out = NULL;
    if (!be) return gkd_error_set(GKD_ERR_ARG, "gkd_model_create: backend is NULL");
    if (flags & ~(unsigned)GKD_MODEL_INFERENCE)
        return gkd_error_set(GKD_ERR_ARG, "gkd_model_create: unknown flags 0x%x",
                             flags & ~(unsigned)GKD_MODEL_INFERENCE);
    gkd_status st = gkd_model_config_check(cfg);
    if (st) return st;
    gkd_model *m = calloc(1, sizeof *m);
    if (!m) return gkd_error_set(GKD_ERR_NOMEM, "gkd_model_create: out of memory");
    m->cfg = *cfg;
    m->be = be;
    m->inference = (flags & GKD_MODEL_INFERENCE) != 0;
    m->head_dim = cfg->dim / cfg->n_heads;
    m->q_dim = cfg->n_heads * m->head_dim;
    m->kv_dim = cfg->n_kv_heads * m->head_dim;
    m->qkv_dim = m->q_dim + 2 * m->kv_dim;
    m->lw = calloc((size_t)cfg->n_layers, sizeof *m->lw);
    m->dlw = calloc((size_t)cfg->n_layers, sizeof *m->dlw); /* pointers stay NULL without gradients */
    if (!m->lw || !m->dlw) {
        gkd_model_free(m);
        return gkd_error_set(GKD_ERR_NOMEM, "gkd_model_create: out of memory");
    }
    m->num_params = layout_tensors(m, 0);
    m->tensors = calloc((size_t)m->n_tensors, sizeof *m->tensors);
    m->names = calloc((size_t)m->n_tensors, TENSOR_NAME_CAP);
    if (!m->tensors || !m->names) {
        gkd_model_free(m);
        return gkd_error_set(GKD_ERR_NOMEM, "gkd_model_create: out of memory");
    }
    size_t bytes = m->num_params * sizeof(float);
    st = gkd_model_device_alloc(be, (void **)&m->params, bytes, "parameters");
    if (!st && !m->inference) st = gkd_model_device_alloc(be, (void **)&m->grads, bytes, "gradients");
    if (!st) st = rope_tables_create(m);
    if (st) {
        gkd_model_free(m);
        return st;
    }
    layout_tensors(m, 1);
    be->zero(m->params, bytes);
    if (m->grads) be->zero(m->grads, bytes);
    /* The fused projections rely on these adjacencies, which the declaration order guarantees. */
    for (int l = 0; l < cfg->n_layers; l++) {
        const layer_tensors *w = &m->lw[l];
        if (w->wk != w->wq + (size_t)m->q_dim * cfg->dim || w->wv != w->wk + (size_t)m->kv_dim * cfg->dim ||
            w->wup != w->wgate + (size_t)cfg->hidden_dim * cfg->dim)
            abort();
    }
    *out = m;
    return GKD_OK;
}

static void ce_scratch_free(const gkd_backend *be, ce_scratch *ce) {
    be->free(ce->block);
    be->free(ce->rowdata);
    free(ce->host_w);
    free(ce->host_chunk);
    free(ce->host_rows);
    free(ce->host_targets);
    memset(ce, 0, sizeof *ce);
}

void gkd_model_free(gkd_model *m) {
    if (!m) return;
    const gkd_backend *be = m->be;
    be->free(m->packed);
    be->free(m->norms);
    be->free(m->packed_scratch);
    free(m->pl);
    be->free(m->params);
    be->free(m->grads);
    be->free(m->rope_cos);
    be->free(m->rope_sin);
    gkd_model_act_set_free(be, &m->train);
    gkd_model_act_set_free(be, &m->infer);
    ce_scratch_free(be, &m->ce);
    gkd_kv_cache_free(m->cache);
    be->free(m->workspace);
    free(m->tensors);
    free(m->names);
    free(m->lw);
    free(m->dlw);
    free(m);
}

void gkd_model_init_weights(gkd_model *m, uint64_t seed) {
    if (!m || !m->params) return;
    enum { STAGE = 1 << 14 }; /* floats staged on the host per copy to the device */
    float stage[STAGE];
    const float residual_scale = 1.0f / sqrtf(2.0f * m->cfg.n_layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const gkd_tensor_info *t = &m->tensors[i];
        int residual_out = strstr(t->name, "o_proj.") || strstr(t->name, "down_proj.");
        float std = 0.02f * (residual_out ? residual_scale : 1.0f);
        for (size_t j0 = 0; j0 < t->numel; j0 += STAGE) {
            int len = (int)(t->numel - j0 < STAGE ? t->numel - j0 : STAGE);
#pragma omp parallel for schedule(static) if (len > 4096)
            for (int j = 0; j < len; j++) {
                gkd_rng r = {seed, GKD_RNG_STREAM_INIT, 2 * (uint64_t)(t->offset + j0 + (size_t)j)};
                stage[j] = t->is_norm ? 1.0f : std * gkd_rng_normal(&r);
            }
            m->be->copy_in(m->params + t->offset + j0, stage, (size_t)len * sizeof(float));
        }
    }
}

size_t gkd_model_num_params(const gkd_model *m) {
    return m ? m->num_params : 0;
}

float *gkd_model_params(gkd_model *m) {
    return m ? m->params : NULL;
}

float *gkd_model_grads(gkd_model *m) {
    return m ? m->grads : NULL;
}

void gkd_model_zero_grad(gkd_model *m) {
    if (m && m->grads) m->be->zero(m->grads, m->num_params * sizeof(float));
}

int gkd_model_is_inference(const gkd_model *m) {
    return m ? m->inference : 0;
}

void gkd_model_memory_usage(const gkd_model *m, gkd_model_memory *out) {
    memset(out, 0, sizeof *out);
    if (!m) return;
    out->params =
        m->params ? m->num_params * sizeof(float) : m->packed_bytes + m->norms_floats * sizeof(float);
    out->grads = m->grads ? m->num_params * sizeof(float) : 0;
    size_t rope = 2 * (size_t)m->cfg.max_seq_len * (size_t)(m->head_dim / 2) * sizeof(float);
    size_t ce = 0;
    if (m->ce.block) {
        size_t R = (size_t)m->ce.rows, C = (size_t)m->cfg.dim, V = (size_t)m->cfg.vocab_size;
        ce = (2 * R * C + R * V + R) * sizeof(float);
    }
    ce += m->ce.rowdata_cap * 3 * sizeof(float);
    out->activations =
        (m->train.cap_floats + m->infer.cap_floats) * sizeof(float) + ce + rope + m->packed_scratch_bytes;
    const gkd_kv_cache *c = m->cache;
    if (c)
        out->kv_cache = 2 * (size_t)c->n_layers * c->B * c->max_T * c->kv_dim * sizeof(float) +
                        (c->acts.cap_floats + c->logits_cap) * sizeof(float);
    out->kv_cache += m->workspace_bytes;
    out->total = out->params + out->grads + out->activations + out->kv_cache;
}

int gkd_model_num_tensors(const gkd_model *m) {
    return m ? m->n_tensors : 0;
}

const gkd_tensor_info *gkd_model_tensor(const gkd_model *m, int i) {
    if (!m || i < 0 || i >= m->n_tensors) return NULL;
    return &m->tensors[i];
}

int gkd_model_tensor_find(const gkd_model *m, const char *name) {
    if (!m || !name) return -1;
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}

const gkd_model_config *gkd_model_get_config(const gkd_model *m) {
    return m ? &m->cfg : NULL;
}

const gkd_backend *gkd_model_backend(const gkd_model *m) {
    return m ? m->be : NULL;
}

const float *gkd_model_output_weight(const gkd_model *m) {
    if (!m || m->packed) return NULL;
    return m->cfg.tied_embeddings ? m->w.embed : m->w.lm_head;
}

float *gkd_model_output_weight_grad(gkd_model *m) {
    if (!m || m->inference) return NULL;
    return m->cfg.tied_embeddings ? m->dw.embed : m->dw.lm_head;
}

double gkd_model_flops(const gkd_model *m, int B, int T, int with_backward) {
    if (!m) return 0.0;
    const double C = m->cfg.dim, F = m->cfg.hidden_dim, V = m->cfg.vocab_size;
    const double per_layer = C * m->qkv_dim + (double)m->q_dim * C + 3.0 * C * F;
    const double tokens = (double)B * T;
    double fwd = 2.0 * tokens * (m->cfg.n_layers * per_layer + V * C);
    fwd += m->cfg.n_layers * 4.0 * B * (double)m->cfg.n_heads * T * T * m->head_dim; /* QK^T and AV */
    return with_backward ? 3.0 * fwd : fwd;
}

/* ---------- packed weights ---------- */

gkd_weight_format gkd_model_weight_format(const gkd_model *m) {
    return m ? m->weight_format : GKD_WEIGHTS_FP32;
}

/* Packs one (rows, cols) fp32 matrix of the parameter block at *off in the packed block (NULL: only
 * counts), 64-byte aligned; returns where it went. */
static const void *pack_matrix(gkd_model *m, gkd_weight_format f, const float *w, int rows, int cols,
                               char *block, size_t *off) {
    size_t bytes = m->be->packed_bytes(f, rows, cols);
    const void *at = block ? block + *off : NULL;
    if (block) m->be->pack(block + *off, w, f, rows, cols);
    *off += (bytes + 63) / 64 * 64;
    return at;
}

/* Packs every matrix (block NULL: only sizes them). */
static size_t pack_all(gkd_model *m, gkd_weight_format f, char *block) {
    const int C = m->cfg.dim, F = m->cfg.hidden_dim, V = m->cfg.vocab_size;
    size_t off = 0;
    m->p_embed = pack_matrix(m, f, m->w.embed, V, C, block, &off);
    m->p_out = m->cfg.tied_embeddings ? m->p_embed : pack_matrix(m, f, m->w.lm_head, V, C, block, &off);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_tensors *w = &m->lw[l];
        packed_layer *p = &m->pl[l];
        p->wqkv = pack_matrix(m, f, w->wq, m->qkv_dim, C, block, &off);
        p->wo = pack_matrix(m, f, w->wo, C, m->q_dim, block, &off);
        p->wgu = pack_matrix(m, f, w->wgate, 2 * F, C, block, &off);
        p->wdown = pack_matrix(m, f, w->wdown, C, F, block, &off);
    }
    return off;
}

gkd_status gkd_model_set_weight_format(gkd_model *m, gkd_weight_format f) {
    const char *fn = "gkd_model_set_weight_format";
    if (!m) return gkd_error_set(GKD_ERR_ARG, "%s: model is NULL", fn);
    const char *name = gkd_weight_format_name(f);
    if (f != GKD_WEIGHTS_FP32 && f != GKD_WEIGHTS_BF16 && f != GKD_WEIGHTS_Q8_0 &&
        f != GKD_WEIGHTS_Q8_0_A8)
        return gkd_error_set(GKD_ERR_ARG, "%s: %d is not a gkd_weight_format", fn, (int)f);
    if (f == m->weight_format) return GKD_OK;
    if (m->weight_format != GKD_WEIGHTS_FP32)
        return gkd_error_set(
            GKD_ERR_ARG,
            "%s: weights are already %s and their fp32 values are gone; load the model again "
            "to use %s weights",
            fn, gkd_weight_format_name(m->weight_format), name);
    if (!m->inference)
        return gkd_error_set(
            GKD_ERR_ARG,
            "%s: weights %s need an inference model (GKD_MODEL_INFERENCE); a trainable model "
            "keeps fp32 weights",
            fn, name);
    const gkd_backend *be = m->be;
    if (!be->packed_matmul || !be->pack || !be->packed_bytes || !be->packed_rows || !be->packed_scratch_bytes)
        return gkd_error_set(GKD_ERR_ARG,
                             "%s: weights %s: the %s backend has no reduced-precision weights; its inference "
                             "models keep fp32 weights (weights fp32)",
                             fn, name, be->name);
    const int dims[] = {m->cfg.dim, m->q_dim, m->cfg.hidden_dim};
    const char *dim_names[] = {"dim", "n_heads x head_dim", "hidden_dim"};
    for (int i = 0; i < 3; i++)
        if (be->packed_bytes(f, 1, dims[i]) == 0)
            return gkd_error_set(GKD_ERR_ARG, "%s: weights %s: %s = %d must be a multiple of %d", fn, name,
                                 dim_names[i], dims[i], GKD_Q8_0_BLOCK);
    const int C = m->cfg.dim, L = m->cfg.n_layers;
    m->pl = calloc((size_t)L, sizeof *m->pl);
    if (!m->pl) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", fn);
    size_t bytes = pack_all(m, f, NULL);
    size_t n_norms = (size_t)(2 * L + 1) * C;
    gkd_status st = gkd_model_device_alloc(be, &m->packed, bytes, "packed weights");
    if (!st) st = gkd_model_device_alloc(be, (void **)&m->norms, n_norms * sizeof(float), "norm weights");
    if (st) {
        be->free(m->packed);
        m->packed = NULL;
        free(m->pl);
        m->pl = NULL;
        return st;
    }
    pack_all(m, f, m->packed);
    /* the norms move to their own block; every pointer into the fp32 block is cleared with it */
    for (int l = 0; l < L; l++) {
        layer_tensors *w = &m->lw[l];
        be->copy(m->norms + (size_t)2 * l * C, w->attn_norm, (size_t)C * sizeof(float));
        be->copy(m->norms + (size_t)(2 * l + 1) * C, w->mlp_norm, (size_t)C * sizeof(float));
        memset(w, 0, sizeof *w);
        w->attn_norm = m->norms + (size_t)2 * l * C;
        w->mlp_norm = m->norms + (size_t)(2 * l + 1) * C;
    }
    be->copy(m->norms + (size_t)2 * L * C, m->w.final_norm, (size_t)C * sizeof(float));
    memset(&m->w, 0, sizeof m->w);
    m->w.final_norm = m->norms + (size_t)2 * L * C;
    be->free(m->params);
    m->params = NULL;
    m->packed_bytes = bytes;
    m->norms_floats = n_norms;
    m->weight_format = f;
    return GKD_OK;
}

gkd_status gkd_model_packed_scratch_ensure(gkd_model *m, int N) {
    if (!m->packed) return GKD_OK;
    int in = m->cfg.dim > m->q_dim ? m->cfg.dim : m->q_dim;
    in = in > m->cfg.hidden_dim ? in : m->cfg.hidden_dim;
    size_t need = m->be->packed_scratch_bytes(m->weight_format, N, in);
    if (need <= m->packed_scratch_bytes) return GKD_OK;
    m->be->free(m->packed_scratch);
    m->packed_scratch = NULL;
    m->packed_scratch_bytes = 0;
    gkd_status st = gkd_model_device_alloc(m->be, &m->packed_scratch, need, "packed product scratch");
    if (!st) m->packed_scratch_bytes = need;
    return st;
}

void gkd_model_linear(const gkd_model *m, const float *wf, const void *wp, const float *x, int N, int out,
                      int in, float *y) {
    if (wp)
        m->be->packed_matmul(y, out, x, in, wp, m->weight_format, N, out, in, m->packed_scratch);
    else
        m->be->matmul(0, 1, N, out, in, 1.0f, x, in, wf, in, 0.0f, y, out);
}

void gkd_model_output_rows(const gkd_model *m, const float *hidden, int N, float *logits) {
    gkd_model_linear(m, gkd_model_output_weight(m), m->p_out, hidden, N, m->cfg.vocab_size, m->cfg.dim,
                     logits);
}

gkd_status gkd_model_project(gkd_model *m, const float *hidden, int N, float *logits) {
    if (!m || !hidden || !logits) return gkd_error_set(GKD_ERR_ARG, "gkd_model_project: NULL argument");
    if (N <= 0) return gkd_error_set(GKD_ERR_ARG, "gkd_model_project: N = %d must be > 0", N);
    gkd_status st = gkd_model_packed_scratch_ensure(m, N);
    if (st) return st;
    gkd_model_output_rows(m, hidden, N, logits);
    return GKD_OK;
}
