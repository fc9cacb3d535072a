/* The Llama-family transformer over a backend table: parameter layout, training forward/backward,
 * inference forward, chunked cross-entropy and KV-cached decoding.
 * Rules:
 * - Each tensor is declared once, in the X-macros below; names, shapes, offsets and the pointer structs
 *   are generated from them. q,k,v and gate,up are adjacent in the block, so each group is multiplied as
 *   one fused matrix ((QD+2 KVD) x C and 2F x C): fewer, bigger sgemms.
 * - Activations live in preallocated blocks (act_set) sized for (B,T) and grown, never shrunk, when a
 *   bigger batch arrives; no op allocates. The training set keeps every layer's activations for the
 *   backward, the inference set and each KV cache keep one layer's worth, reused layer after layer.
 * - Parameter gradients accumulate (+=); a model is not safe to use from two threads at once.
 * - An inference model has no gradient block (grads and every dw/dlw pointer are NULL) and never makes the
 *   training activation set: every path that would write a gradient checks m->inference first. */
#include "core/tensor/model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/rng.h"

/* X(field, Hugging Face name, rows, cols (0 for a vector), is_norm, present). Shapes are expressions in
 * V (vocab), C (dim), QD (n_heads*head_dim), KVD (n_kv_heads*head_dim), F (hidden_dim). */
#define GKD_HEAD_TENSORS(X) X(embed, "model.embed_tokens.weight", V, C, 0, 1)
#define GKD_LAYER_TENSORS(X)                                                                                 \
    X(attn_norm, "input_layernorm.weight", C, 0, 1, 1)                                                       \
    X(wq, "self_attn.q_proj.weight", QD, C, 0, 1)                                                            \
    X(wk, "self_attn.k_proj.weight", KVD, C, 0, 1)                                                           \
    X(wv, "self_attn.v_proj.weight", KVD, C, 0, 1)                                                           \
    X(wo, "self_attn.o_proj.weight", C, QD, 0, 1)                                                            \
    X(mlp_norm, "post_attention_layernorm.weight", C, 0, 1, 1)                                               \
    X(wgate, "mlp.gate_proj.weight", F, C, 0, 1)                                                             \
    X(wup, "mlp.up_proj.weight", F, C, 0, 1)                                                                 \
    X(wdown, "mlp.down_proj.weight", C, F, 0, 1)
#define GKD_TAIL_TENSORS(X)                                                                                  \
    X(final_norm, "model.norm.weight", C, 0, 1, 1)                                                           \
    X(lm_head, "lm_head.weight", V, C, 0, !tied)

#define GKD_DECLARE_PTR(field, ...) float *field;
typedef struct {
    GKD_HEAD_TENSORS(GKD_DECLARE_PTR)
    GKD_TAIL_TENSORS(GKD_DECLARE_PTR)
} global_tensors;
typedef struct {
    GKD_LAYER_TENSORS(GKD_DECLARE_PTR)
} layer_tensors;

/* clang-format would read the products below as pointer declarations */
// clang-format off
/* One layer's activations. The training set keeps one slot per layer; X(field, floats). */
#define GKD_SLOT_ACTS(X)                                                                                     \
    X(res, N * C)             /* layer input, the residual stream */                                        \
    X(ln1, N * C)             /* input_layernorm output */                                                  \
    X(ln1_rstd, N)                                                                                           \
    X(qkv, N * W)             /* fused q,k,v projections, q and k rotated */                                \
    X(att, B * H * T * Tk)    /* attention probabilities */                                                 \
    X(atty, N * QD)           /* attention output, o_proj input */                                          \
    X(res_mid, N * C)         /* residual stream after attention */                                         \
    X(ln2, N * C)             /* post_attention_layernorm output */                                         \
    X(ln2_rstd, N)                                                                                           \
    X(gu, N * 2 * F)          /* fused gate, up projections */                                              \
    X(swi, N * F)             /* silu(gate) * up, down_proj input */
/* Buffers shared by all layers: X(field, floats). */
#define GKD_SHARED_ACTS(X)                                                                                   \
    X(out_res, N * C)         /* residual stream after the last layer */                                    \
    X(hidden, N * C)          /* final norm output */                                                       \
    X(hidden_rstd, N)                                                                                        \
    X(proj, N * C)            /* o_proj / down_proj output before its residual add */
/* Backward scratch (training set only): X(field, floats). */
#define GKD_GRAD_ACTS(X)                                                                                     \
    X(dres, N * C)            /* dL/d residual stream, carried down through the layers */                   \
    X(dln, N * C)                                                                                            \
    X(datty, N * QD)                                                                                         \
    X(dqkv, N * W)                                                                                           \
    X(dswi, N * F)                                                                                           \
    X(dgu, N * 2 * F)                                                                                        \
    X(datt, B * H * T * Tk)
// clang-format on

typedef struct {
    GKD_SLOT_ACTS(GKD_DECLARE_PTR)
} act_slot;

typedef struct {
    void *block;
    size_t cap_floats;
    int B, T, Tk;
    act_slot *slots;
    GKD_SHARED_ACTS(GKD_DECLARE_PTR)
    GKD_GRAD_ACTS(GKD_DECLARE_PTR)
    /* One device block of ints, so a forward sends them in one copy: tokens (N), pos (N) each row's position,
     * rows (B) the rows that forward_cached_at keeps. host_ints: their host mirror, (2N + B). */
    int *tokens, *pos, *rows;
    int *host_ints;
    size_t host_cap;
} act_set;

/* Scratch of the chunked cross-entropy, sized for `rows` rows. */
typedef struct {
    void *block;
    int rows;
    float *h, *dh, *logits, *lse, *loss, *weights;
    int *targets;
    float *host_w;     /* (N) host: every row's weight */
    int *host_rows;    /* (N) host: the rows of nonzero weight */
    float *host_chunk; /* (N) host: a chunk's weights on the way in, its losses on the way out */
    int *host_targets; /* (N) host: a chunk's targets */
    size_t host_cap;
} ce_scratch;

struct gkd_model {
    gkd_model_config cfg;
    const gkd_backend *be;
    int head_dim, q_dim, kv_dim, qkv_dim;
    size_t num_params;
    float *params, *grads; /* grads: NULL for an inference model */
    int inference;
    int n_tensors;
    gkd_tensor_info *tensors;
    char *names;
    global_tensors w, dw;
    layer_tensors *lw, *dlw;
    float *rope_cos, *rope_sin; /* (max_seq_len, head_dim/2) device */
    act_set train, infer;
    int backward_ready; /* the training set holds a forward that gkd_model_backward may differentiate */
    ce_scratch ce;
    int ce_chunk_rows;   /* 0: chosen from the vocabulary size */
    gkd_kv_cache *cache; /* the sampler's, see gkd_model_kv_cache */
    void *workspace;     /* see gkd_model_workspace */
    size_t workspace_bytes;
};

struct gkd_kv_cache {
    const gkd_backend *be;
    int B, max_T, n_layers, kv_dim;
    float *k, *v; /* (L, B, max_T, KVD) device */
    act_set acts;
    float *logits; /* (rows, V) device */
    size_t logits_cap;
};

enum {
    ACT_ALIGN = 16,       /* floats: 64-byte alignment of each carved buffer */
    TENSOR_NAME_CAP = 96, /* bytes per tensor name, "model.layers.<i>.self_attn.q_proj.weight" and the like */
};

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

static gkd_status alloc_device(const gkd_backend *be, void **p, size_t bytes, const char *what) {
    *p = be->alloc(bytes);
    if (!*p)
        return gkd_error_set(GKD_ERR_NOMEM, "%s: cannot allocate %zu bytes on %s", what, bytes, be->name);
    return GKD_OK;
}

static void act_set_free(const gkd_backend *be, act_set *s) {
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
static gkd_status check_activations(const gkd_model *m, int B, int T, int Tk, const char *fn) {
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
static gkd_status act_set_ensure(const gkd_model *m, act_set *s, int B, int T, int Tk, int n_slots,
                                 int with_grads) {
    const gkd_backend *be = m->be;
    gkd_status st = check_activations(m, B, T, Tk, "activations");
    if (st) return st;
    if (!s->slots) {
        s->slots = calloc((size_t)n_slots, sizeof *s->slots);
        if (!s->slots) return gkd_error_set(GKD_ERR_NOMEM, "activations: out of host memory");
    }
    size_t need = act_set_carve(m, s, NULL, B, T, Tk, n_slots, with_grads);
    if (need > s->cap_floats) {
        be->free(s->block);
        s->block = NULL;
        s->cap_floats = 0;
        st = alloc_device(be, &s->block, need * sizeof(float), "activations");
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
    gkd_status st = alloc_device(m->be, (void **)&m->rope_cos, n * sizeof(float), "rope tables");
    if (!st) st = alloc_device(m->be, (void **)&m->rope_sin, n * sizeof(float), "rope tables");
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
    st = alloc_device(be, (void **)&m->params, bytes, "parameters");
    if (!st && !m->inference) st = alloc_device(be, (void **)&m->grads, bytes, "gradients");
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
    free(ce->host_w);
    free(ce->host_chunk);
    free(ce->host_rows);
    free(ce->host_targets);
    memset(ce, 0, sizeof *ce);
}

void gkd_model_free(gkd_model *m) {
    if (!m) return;
    const gkd_backend *be = m->be;
    be->free(m->params);
    be->free(m->grads);
    be->free(m->rope_cos);
    be->free(m->rope_sin);
    act_set_free(be, &m->train);
    act_set_free(be, &m->infer);
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
    if (!m) return;
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
    out->params = m->num_params * sizeof(float);
    out->grads = m->grads ? m->num_params * sizeof(float) : 0;
    size_t rope = 2 * (size_t)m->cfg.max_seq_len * (size_t)(m->head_dim / 2) * sizeof(float);
    size_t ce = 0;
    if (m->ce.block) {
        size_t R = (size_t)m->ce.rows, C = (size_t)m->cfg.dim, V = (size_t)m->cfg.vocab_size;
        ce = (2 * R * C + R * V + 4 * R) * sizeof(float);
    }
    out->activations = (m->train.cap_floats + m->infer.cap_floats) * sizeof(float) + ce + rope;
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
    if (!m) return NULL;
    return m->cfg.tied_embeddings ? m->w.embed : m->w.lm_head;
}

float *gkd_model_output_weight_grad(gkd_model *m) {
    if (!m || m->inference) return NULL;
    return m->cfg.tied_embeddings ? m->dw.embed : m->dw.lm_head;
}

/* ---------- forward ---------- */

/* Where one layer reads and writes. Training points these into the layer's own slot; inference points
 * res_in, res_mid and res_out at one buffer and updates the residual stream in place. k_cache, v_cache, when
 * set, receive the new keys and values (the KV cache) and the attention reads keys and values from them. */
typedef struct {
    float *res_in, *ln1, *ln1_rstd, *qkv, *att, *atty, *res_mid, *ln2, *ln2_rstd, *gu, *swi, *res_out;
    float *proj;
    const int *pos;           /* (N) device */
    const int *pos0;          /* (B) host, NULL for training */
    float *k_cache, *v_cache; /* (B, Tk, KVD) device, or NULL */
} layer_io;

static gkd_status check_tokens(const gkd_model *m, const int *tokens, int B, int T, const char *fn) {
    int V = m->cfg.vocab_size;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int tok = tokens[(size_t)b * T + t];
            if (tok < 0 || tok >= V)
                return gkd_error_set(GKD_ERR_ARG, "%s: tokens[%d][%d] = %d is outside [0, vocab_size = %d)",
                                     fn, b, t, tok, V);
        }
    return GKD_OK;
}

static gkd_attn_dims attn_dims(const gkd_model *m, int B, int T, int Tk, int cached) {
    gkd_attn_dims d = {
        .B = B,
        .T = T,
        .n_heads = m->cfg.n_heads,
        .n_kv_heads = m->cfg.n_kv_heads,
        .head_dim = m->head_dim,
        .Tk = Tk,
        .ld_q = m->qkv_dim,
        .ld_kv = cached ? m->kv_dim : m->qkv_dim,
        .ld_out = m->q_dim,
        .bs_q = (size_t)T * m->qkv_dim,
        .bs_kv = cached ? (size_t)Tk * m->kv_dim : (size_t)T * m->qkv_dim,
        .bs_out = (size_t)T * m->q_dim,
    };
    return d;
}

static void layer_forward(const gkd_model *m, int l, const layer_io *io, int B, int T, int Tk) {
    const gkd_backend *be = m->be;
    const layer_tensors *w = &m->lw[l];
    const int N = B * T, C = m->cfg.dim, F = m->cfg.hidden_dim, QD = m->q_dim, KVD = m->kv_dim;
    const int W = m->qkv_dim;
    const float eps = m->cfg.norm_eps;

    be->rmsnorm_forward(io->ln1, io->ln1_rstd, io->res_in, w->attn_norm, N, C, eps);
    be->matmul(0, 1, N, W, C, 1.0f, io->ln1, C, w->wq, C, 0.0f, io->qkv, W); /* rows of [wq; wk; wv] */
    be->rope_forward(io->qkv, io->pos, m->rope_cos, m->rope_sin, N, m->cfg.n_heads + m->cfg.n_kv_heads,
                     m->head_dim, W); /* q heads then k heads: adjacent, one pass */
    const float *k = io->qkv + QD, *v = io->qkv + QD + KVD;
    gkd_attn_dims d = attn_dims(m, B, T, Tk, io->k_cache != NULL);
    if (io->k_cache) {
        be->kv_write(io->k_cache, io->v_cache, k, v, W, io->pos, B, T, KVD, (size_t)Tk * KVD);
        k = io->k_cache;
        v = io->v_cache;
    }
    be->attention_forward(io->atty, io->att, io->qkv, k, v, io->pos0, &d);
    be->matmul(0, 1, N, C, QD, 1.0f, io->atty, QD, w->wo, QD, 0.0f, io->proj, C);
    be->residual_forward(io->res_mid, io->res_in, io->proj, (size_t)N * C);

    be->rmsnorm_forward(io->ln2, io->ln2_rstd, io->res_mid, w->mlp_norm, N, C, eps);
    be->matmul(0, 1, N, 2 * F, C, 1.0f, io->ln2, C, w->wgate, C, 0.0f, io->gu, 2 * F); /* [wgate; wup] */
    be->swiglu_forward(io->swi, io->gu, io->gu + F, N, F, 2 * F);
    be->matmul(0, 1, N, C, F, 1.0f, io->swi, F, w->wdown, F, 0.0f, io->proj, C);
    be->residual_forward(io->res_out, io->res_mid, io->proj, (size_t)N * C);
}

/* Layer l's io for a set: its own slot when the set keeps every layer, else slot 0 updated in place. */
static layer_io set_layer_io(const gkd_model *m, act_set *s, int l, int keep_all) {
    act_slot *a = &s->slots[keep_all ? l : 0];
    layer_io io = {
        .res_in = a->res,
        .ln1 = a->ln1,
        .ln1_rstd = a->ln1_rstd,
        .qkv = a->qkv,
        .att = a->att,
        .atty = a->atty,
        .res_mid = keep_all ? a->res_mid : a->res,
        .ln2 = a->ln2,
        .ln2_rstd = a->ln2_rstd,
        .gu = a->gu,
        .swi = a->swi,
        .res_out = keep_all ? (l + 1 < m->cfg.n_layers ? s->slots[l + 1].res : s->out_res) : a->res,
        .proj = s->proj,
        .pos = s->pos,
    };
    return io;
}

/* Embedding and all layers over tokens (B,T) at positions pos0[b] + t; leaves the last residual stream in
 * s->out_res (training) or slot 0's res (inference). With `at`, s->rows receives the rows b*T + at[b] in
 * the same copy as the tokens and positions. */
static void forward_layers(const gkd_model *m, act_set *s, const int *tokens, const int *pos0, const int *at,
                           int B, int T, int keep_all, gkd_kv_cache *c) {
    const gkd_backend *be = m->be;
    const int N = B * T;
    int *host_pos = s->host_ints + N, *host_rows = host_pos + N;
    memcpy(s->host_ints, tokens, (size_t)N * sizeof(int));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) host_pos[(size_t)b * T + t] = (pos0 ? pos0[b] : 0) + t;
    for (int b = 0; at && b < B; b++) host_rows[b] = b * T + at[b];
    be->copy_in(s->tokens, s->host_ints, ((size_t)2 * N + (at ? (size_t)B : 0)) * sizeof(int));
    be->embedding_forward(s->slots[0].res, s->tokens, m->w.embed, N, m->cfg.dim);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_io io = set_layer_io(m, s, l, keep_all);
        if (c) {
            size_t layer_off = (size_t)l * c->B * c->max_T * c->kv_dim;
            io.k_cache = c->k + layer_off;
            io.v_cache = c->v + layer_off;
            io.pos0 = pos0;
        }
        layer_forward(m, l, &io, B, T, s->Tk);
    }
}

static gkd_status check_batch(const gkd_model *m, int B, int T, const char *fn) {
    if (B <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: B = %d must be > 0", fn, B);
    if (T <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: T = %d must be > 0", fn, T);
    if (T > m->cfg.max_seq_len)
        return gkd_error_set(GKD_ERR_ARG, "%s: T = %d exceeds max_seq_len = %d", fn, T, m->cfg.max_seq_len);
    return check_activations(m, B, T, T, fn);
}

/* The refusal of every call that would write gradients on an inference model. */
static gkd_status refuse_inference(const char *fn) {
    return gkd_error_set(
        GKD_ERR_ARG,
        "%s: the model was created for inference (GKD_MODEL_INFERENCE) and has no gradients; "
        "use gkd_model_forward_nograd, or create it with gkd_model_create to train it",
        fn);
}

gkd_status gkd_model_forward(gkd_model *m, const int *tokens, int B, int T, const float **hidden) {
    const char *fn = "gkd_model_forward";
    if (!m || !tokens || !hidden) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    if (m->inference) return refuse_inference(fn);
    gkd_status st = check_batch(m, B, T, fn);
    if (!st) st = check_tokens(m, tokens, B, T, fn);
    if (st) return st;
    m->backward_ready = 0;
    st = act_set_ensure(m, &m->train, B, T, T, m->cfg.n_layers, 1);
    if (st) return st;
    act_set *s = &m->train;
    forward_layers(m, s, tokens, NULL, NULL, B, T, 1, NULL);
    m->be->rmsnorm_forward(s->hidden, s->hidden_rstd, s->out_res, m->w.final_norm, B * T, m->cfg.dim,
                           m->cfg.norm_eps);
    m->backward_ready = 1;
    *hidden = s->hidden;
    return GKD_OK;
}

gkd_status gkd_model_forward_nograd(gkd_model *m, const int *tokens, int B, int T, const float **hidden) {
    const char *fn = "gkd_model_forward_nograd";
    if (!m || !tokens || !hidden) return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    gkd_status st = check_batch(m, B, T, fn);
    if (!st) st = check_tokens(m, tokens, B, T, fn);
    if (!st) st = act_set_ensure(m, &m->infer, B, T, T, 1, 0);
    if (st) return st;
    act_set *s = &m->infer;
    forward_layers(m, s, tokens, NULL, NULL, B, T, 0, NULL);
    m->be->rmsnorm_forward(s->hidden, s->hidden_rstd, s->slots[0].res, m->w.final_norm, B * T, m->cfg.dim,
                           m->cfg.norm_eps);
    *hidden = s->hidden;
    return GKD_OK;
}

/* ---------- backward ---------- */

static void layer_backward(gkd_model *m, int l, act_set *s) {
    const gkd_backend *be = m->be;
    const layer_tensors *w = &m->lw[l];
    const layer_tensors *dw = &m->dlw[l];
    const int B = s->B, T = s->T, N = B * T, C = m->cfg.dim, F = m->cfg.hidden_dim;
    const int QD = m->q_dim, KVD = m->kv_dim, W = m->qkv_dim;
    layer_io io = set_layer_io(m, s, l, 1);

    /* MLP branch: s->dres holds dL/d(res_out), which is also dL/d(down_proj output). */
    be->matmul(0, 0, N, F, C, 1.0f, s->dres, C, w->wdown, F, 0.0f, s->dswi, F);
    be->matmul(1, 0, C, F, N, 1.0f, s->dres, C, io.swi, F, 1.0f, dw->wdown, F);
    be->zero(s->dgu, (size_t)N * 2 * F * sizeof(float));
    be->swiglu_backward(s->dgu, s->dgu + F, s->dswi, io.gu, io.gu + F, N, F, 2 * F);
    be->matmul(0, 0, N, C, 2 * F, 1.0f, s->dgu, 2 * F, w->wgate, C, 0.0f, s->dln, C);
    be->matmul(1, 0, 2 * F, C, N, 1.0f, s->dgu, 2 * F, io.ln2, C, 1.0f, dw->wgate, C);
    be->rmsnorm_backward(s->dres, dw->mlp_norm, s->dln, io.res_mid, w->mlp_norm, io.ln2_rstd, N, C);

    /* Attention branch: s->dres now holds dL/d(res_mid). */
    be->matmul(0, 0, N, QD, C, 1.0f, s->dres, C, w->wo, QD, 0.0f, s->datty, QD);
    be->matmul(1, 0, C, QD, N, 1.0f, s->dres, C, io.atty, QD, 1.0f, dw->wo, QD);
    be->zero(s->dqkv, (size_t)N * W * sizeof(float));
    gkd_attn_dims d = attn_dims(m, B, T, T, 0);
    be->attention_backward(s->dqkv, s->dqkv + QD, s->dqkv + QD + KVD, s->datt, s->datty, io.att, io.qkv,
                           io.qkv + QD, io.qkv + QD + KVD, NULL, &d);
    be->rope_backward(s->dqkv, s->pos, m->rope_cos, m->rope_sin, N, m->cfg.n_heads + m->cfg.n_kv_heads,
                      m->head_dim, W);
    be->matmul(0, 0, N, C, W, 1.0f, s->dqkv, W, w->wq, C, 0.0f, s->dln, C);
    be->matmul(1, 0, W, C, N, 1.0f, s->dqkv, W, io.ln1, C, 1.0f, dw->wq, C);
    be->rmsnorm_backward(s->dres, dw->attn_norm, s->dln, io.res_in, w->attn_norm, io.ln1_rstd, N, C);
}

gkd_status gkd_model_backward(gkd_model *m, const float *dhidden) {
    if (!m || !dhidden) return gkd_error_set(GKD_ERR_ARG, "gkd_model_backward: NULL argument");
    if (m->inference) return refuse_inference("gkd_model_backward");
    if (!m->backward_ready)
        return gkd_error_set(GKD_ERR_ARG, "gkd_model_backward: no gkd_model_forward to differentiate");
    const gkd_backend *be = m->be;
    act_set *s = &m->train;
    const int N = s->B * s->T, C = m->cfg.dim;
    be->zero(s->dres, (size_t)N * C * sizeof(float));
    be->rmsnorm_backward(s->dres, m->dw.final_norm, dhidden, s->out_res, m->w.final_norm, s->hidden_rstd, N,
                         C);
    for (int l = m->cfg.n_layers - 1; l >= 0; l--) layer_backward(m, l, s);
    be->embedding_backward(m->dw.embed, s->dres, s->tokens, N, C);
    return GKD_OK;
}

/* ---------- chunked cross-entropy ---------- */

/* Rows per chunk: as set, else about 8 MB of logits and at least 32 rows so the sgemms keep their shape. */
static int ce_chunk_rows(const gkd_model *m) {
    if (m->ce_chunk_rows > 0) return m->ce_chunk_rows;
    int rows = (1 << 21) / m->cfg.vocab_size;
    return rows < 32 ? 32 : rows;
}

gkd_status gkd_model_set_loss_chunk(gkd_model *m, int rows) {
    if (!m) return gkd_error_set(GKD_ERR_ARG, "gkd_model_set_loss_chunk: model is NULL");
    if (rows < 0) return gkd_error_set(GKD_ERR_ARG, "gkd_model_set_loss_chunk: rows = %d must be >= 0", rows);
    m->ce_chunk_rows = rows;
    m->be->free(m->ce.block); /* re-made at the new size on next use */
    m->ce.block = NULL;
    return GKD_OK;
}

static gkd_status ce_scratch_ensure(gkd_model *m, int N) {
    ce_scratch *ce = &m->ce;
    const size_t C = (size_t)m->cfg.dim, V = (size_t)m->cfg.vocab_size;
    if (!ce->block) {
        size_t R = (size_t)ce_chunk_rows(m);
        size_t floats = 2 * R * C + R * V + 4 * R;
        gkd_status st = alloc_device(m->be, &ce->block, floats * sizeof(float), "cross-entropy scratch");
        if (st) return st;
        float *p = ce->block;
        ce->h = p;
        ce->dh = p + R * C;
        ce->logits = p + 2 * R * C;
        ce->lse = ce->logits + R * V;
        ce->loss = ce->lse + R;
        ce->weights = ce->loss + R;
        ce->targets = (int *)(ce->weights + R);
        ce->rows = (int)R;
    }
    if ((size_t)N > ce->host_cap) {
        free(ce->host_w);
        free(ce->host_chunk);
        free(ce->host_rows);
        free(ce->host_targets);
        ce->host_w = malloc((size_t)N * sizeof(float));
        ce->host_chunk = malloc((size_t)N * sizeof(float));
        ce->host_rows = malloc((size_t)N * sizeof(int));
        ce->host_targets = malloc((size_t)N * sizeof(int));
        ce->host_cap = (size_t)N;
        if (!ce->host_w || !ce->host_chunk || !ce->host_rows || !ce->host_targets) {
            ce->host_cap = 0;
            return gkd_error_set(GKD_ERR_NOMEM, "cross-entropy: out of host memory");
        }
    }
    return GKD_OK;
}

/* Per-row weights w[n] with sum_n w[n] nll[n] the normalised loss; returns the number of rows of
 * non-zero weight, listed in rows[]. */
static gkd_status ce_weights(const gkd_model *m, const int *targets, const float *mask, int B, int T,
                             int norm, float *w, int *rows, int *n_rows) {
    const char *fn = "gkd_model_ce_loss";
    double total = 0.0;
    int n_seq = 0;
    for (int b = 0; b < B; b++) {
        double seq = 0.0;
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            float x = mask[n];
            if (!(x >= 0.0f) || !isfinite(x))
                return gkd_error_set(GKD_ERR_ARG,
                                     "%s: mask[%d][%d] = %g must be a finite weight >= 0 (0 or 1 for a mask)",
                                     fn, b, t, x);
            if (x != 0.0f && (targets[n] < 0 || targets[n] >= m->cfg.vocab_size))
                return gkd_error_set(GKD_ERR_ARG, "%s: targets[%d][%d] = %d is outside [0, vocab_size = %d)",
                                     fn, b, t, targets[n], m->cfg.vocab_size);
            seq += x;
        }
        total += seq;
        n_seq += seq > 0.0;
    }
    int k = 0;
    for (int b = 0; b < B; b++) {
        double seq = 0.0;
        for (int t = 0; t < T; t++) seq += mask[(size_t)b * T + t];
        double denom = norm == GKD_NORM_TOKEN ? total : seq * n_seq;
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            w[n] = mask[n] != 0.0f ? (float)(mask[n] / denom) : 0.0f;
            if (w[n] != 0.0f) rows[k++] = (int)n;
        }
    }
    *n_rows = k;
    return GKD_OK;
}

gkd_status gkd_model_ce_loss(gkd_model *m, const float *hidden, const int *targets, const float *mask, int B,
                             int T, int norm, float *loss, float *dhidden) {
    const char *fn = "gkd_model_ce_loss";
    if (!m || !hidden || !targets || !mask || !loss)
        return gkd_error_set(GKD_ERR_ARG, "%s: NULL argument", fn);
    if (B <= 0 || T <= 0) return gkd_error_set(GKD_ERR_ARG, "%s: B = %d, T = %d must be > 0", fn, B, T);
    if (norm != GKD_NORM_TOKEN && norm != GKD_NORM_SEQUENCE)
        return gkd_error_set(GKD_ERR_ARG, "%s: norm = %d is neither GKD_NORM_TOKEN nor GKD_NORM_SEQUENCE", fn,
                             norm);
    if (dhidden && dhidden == hidden)
        return gkd_error_set(GKD_ERR_ARG, "%s: dhidden must not be the hidden buffer itself", fn);
    if (dhidden && m->inference) return refuse_inference(fn);
    const gkd_backend *be = m->be;
    const int N = B * T, C = m->cfg.dim, V = m->cfg.vocab_size;
    gkd_status st = ce_scratch_ensure(m, N);
    if (st) return st;
    ce_scratch *ce = &m->ce;
    int n_rows = 0;
    st = ce_weights(m, targets, mask, B, T, norm, ce->host_w, ce->host_rows, &n_rows);
    if (st) return st;
    const float *wout = gkd_model_output_weight(m);
    float *dwout = gkd_model_output_weight_grad(m);
    if (dhidden) be->zero(dhidden, (size_t)N * C * sizeof(float));
    double sum = 0.0;
    for (int s0 = 0; s0 < n_rows; s0 += ce->rows) {
        int R = n_rows - s0 < ce->rows ? n_rows - s0 : ce->rows;
        const int *rows = ce->host_rows + s0;
        /* Only rows with weight enter the product; one contiguous run is used where it lies. */
        int contiguous = rows[R - 1] - rows[0] == R - 1;
        const float *h = contiguous ? hidden + (size_t)rows[0] * C : ce->h;
        if (!contiguous) {
            for (int i = 0, run; i < R; i += run) {
                for (run = 1; i + run < R && rows[i + run] == rows[i] + run; run++) {
                }
                be->copy_2d(ce->h + (size_t)i * C, C, hidden + (size_t)rows[i] * C, C, run, C);
            }
        }
        for (int i = 0; i < R; i++) {
            ce->host_targets[i] = targets[rows[i]];
            ce->host_chunk[i] = ce->host_w[rows[i]];
        }
        be->copy_in(ce->targets, ce->host_targets, (size_t)R * sizeof(int));
        be->copy_in(ce->weights, ce->host_chunk, (size_t)R * sizeof(float));
        be->matmul(0, 1, R, V, C, 1.0f, h, C, wout, C, 0.0f, ce->logits, V);
        be->crossentropy_forward(ce->loss, ce->lse, ce->logits, ce->targets, ce->weights, R, V);
        be->copy_out(ce->host_chunk, ce->loss, (size_t)R * sizeof(float));
        for (int i = 0; i < R; i++) sum += ce->host_chunk[i];
        if (!dhidden) continue;
        be->crossentropy_backward(ce->logits, ce->logits, ce->lse, ce->targets, ce->weights, R, V);
        float *dh = contiguous ? dhidden + (size_t)rows[0] * C : ce->dh;
        be->matmul(0, 0, R, C, V, 1.0f, ce->logits, V, wout, C, 0.0f, dh, C);
        be->matmul(1, 0, V, C, R, 1.0f, ce->logits, V, h, C, 1.0f, dwout, C);
        if (!contiguous) {
            for (int i = 0, run; i < R; i += run) {
                for (run = 1; i + run < R && rows[i + run] == rows[i] + run; run++) {
                }
                be->copy_2d(dhidden + (size_t)rows[i] * C, C, ce->dh + (size_t)i * C, C, run, C);
            }
        }
    }
    *loss = (float)sum;
    return GKD_OK;
}

/* ---------- KV cache ---------- */

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
    gkd_status st = alloc_device(m->be, (void **)&c->k, bytes, "kv cache");
    if (!st) st = alloc_device(m->be, (void **)&c->v, bytes, "kv cache");
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

void gkd_kv_cache_free(gkd_kv_cache *c) {
    if (!c) return;
    c->be->free(c->k);
    c->be->free(c->v);
    c->be->free(c->logits);
    act_set_free(c->be, &c->acts);
    free(c);
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
        gkd_status st = alloc_device(m->be, &m->workspace, bytes, "model workspace");
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
    gkd_status st = check_tokens(m, tokens, B, T, fn);
    if (!st) st = act_set_ensure(m, &c->acts, B, T, c->max_T, 1, 0);
    if (st) return st;
    const gkd_backend *be = m->be;
    const int C = m->cfg.dim, V = m->cfg.vocab_size;
    const int rows = at ? B : B * T;
    if ((size_t)rows * V > c->logits_cap) {
        be->free(c->logits);
        c->logits = NULL;
        c->logits_cap = 0;
        st = alloc_device(be, (void **)&c->logits, (size_t)rows * V * sizeof(float), "logits");
        if (st) return st;
        c->logits_cap = (size_t)rows * V;
    }
    act_set *s = &c->acts;
    forward_layers(m, s, tokens, pos0, at, B, T, 0, c);
    const float *res = s->slots[0].res;
    if (at && T > 1) { /* with T = 1 every at[b] is 0 and the rows are already in place */
        be->embedding_forward(s->proj, s->rows, res, B, C); /* a row gather: proj[b] = res[rows[b]] */
        res = s->proj;
    }
    be->rmsnorm_forward(s->hidden, s->hidden_rstd, res, m->w.final_norm, rows, C, m->cfg.norm_eps);
    be->matmul(0, 1, rows, V, C, 1.0f, s->hidden, C, gkd_model_output_weight(m), C, 0.0f, c->logits, V);
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
    gkd_status st = check_batch(m, 1, T, fn);
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
    gkd_status st = check_batch(m, 1, T, fn);
    if (!st) st = check_tokens(m, tokens, 1, T, fn); /* the last token is scored, never fed */
    if (st) return st;
    const int V = m->cfg.vocab_size, fed = T - 1;
    const int R = ce_chunk_rows(m) < fed ? ce_chunk_rows(m) : fed;
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

double gkd_model_flops(const gkd_model *m, int B, int T, int with_backward) {
    if (!m) return 0.0;
    const double C = m->cfg.dim, F = m->cfg.hidden_dim, V = m->cfg.vocab_size;
    const double per_layer = C * m->qkv_dim + (double)m->q_dim * C + 3.0 * C * F;
    const double tokens = (double)B * T;
    double fwd = 2.0 * tokens * (m->cfg.n_layers * per_layer + V * C);
    fwd += m->cfg.n_layers * 4.0 * B * (double)m->cfg.n_heads * T * T * m->head_dim; /* QK^T and AV */
    return with_backward ? 3.0 * fwd : fwd;
}
