/* The model's private parts, shared by its three files: core/tensor/model.c (configuration, parameter
 * layout, activation memory, create/free), core/tensor/model_forward.c (training and inference forward,
 * backward, chunked cross-entropy) and core/tensor/model_decode.c (KV caches, cached forward, scoring).
 * Rules: the rules of model.c's header block hold for all three; nothing here is API (callers use
 * core/tensor/model.h). */
#ifndef GKD_MODEL_INTERNAL_H
#define GKD_MODEL_INTERNAL_H

#include <stddef.h>

#include "core/tensor/model.h"

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

/* Scratch of the chunked cross-entropy: `block` sized for `rows` rows per chunk; `rowdata` holds every row
 * of weight's target, weight and loss (rowdata_cap rows), moved in one copy each way per call so that the
 * chunks queue without waiting for the host. */
typedef struct {
    void *block;
    int rows;
    float *h, *dh, *logits, *lse;
    void *rowdata;
    size_t rowdata_cap;
    int *targets;          /* (rowdata_cap) device */
    float *weights, *loss; /* (rowdata_cap) device */
    float *host_w;     /* (N) host: every row's weight */
    int *host_rows;    /* (N) host: the rows of nonzero weight */
    float *host_chunk; /* (N) host: the weights of those rows on the way in, their losses on the way out */
    int *host_targets; /* (N) host: the targets of those rows */
    size_t host_cap;
} ce_scratch;

/* One layer's matrices in a packed weight format (core/tensor/weights.h): q,k,v and gate,up fused as in
 * the fp32 block. */
typedef struct {
    const void *wqkv, *wo, *wgu, *wdown;
} packed_layer;

struct gkd_model {
    gkd_model_config cfg;
    const gkd_backend *be;
    int head_dim, q_dim, kv_dim, qkv_dim;
    size_t num_params;
    float *params, *grads; /* grads: NULL for an inference model; params: NULL once packed */
    /* Packed weights (gkd_model_set_weight_format): the matrices in one device block, the norm weights in
     * an fp32 block of their own (the norm pointers of w and lw point into it), scratch for the products. */
    gkd_weight_format weight_format;
    void *packed;
    size_t packed_bytes;
    float *norms;
    size_t norms_floats;
    packed_layer *pl;
    const void *p_embed, *p_out; /* p_out == p_embed when tied */
    void *packed_scratch;
    size_t packed_scratch_bytes;
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

/* *p = be->alloc(bytes), or GKD_ERR_NOMEM naming `what`. */
gkd_status gkd_model_device_alloc(const gkd_backend *be, void **p, size_t bytes, const char *what);
/* Frees a set's buffers; be NULL: host parts only. */
void gkd_model_act_set_free(const gkd_backend *be, act_set *s);
/* GKD_ERR_ARG unless the activations of (B,T,Tk) fit the ops' int rows and size_t buffers. */
gkd_status gkd_model_check_activations(const gkd_model *m, int B, int T, int Tk, const char *fn);
/* Makes the set's buffers fit (B,T,Tk), reallocating only when they do not. */
gkd_status gkd_model_act_set_ensure(gkd_model *m, act_set *s, int B, int T, int Tk, int n_slots,
                                    int with_grads);
/* GKD_ERR_ARG naming the first token outside [0, vocab_size). tokens: (B,T) host. */
gkd_status gkd_model_check_tokens(const gkd_model *m, const int *tokens, int B, int T, const char *fn);
/* GKD_ERR_ARG unless B, T > 0, T <= max_seq_len and the activations fit. */
gkd_status gkd_model_check_batch(const gkd_model *m, int B, int T, const char *fn);
/* Embedding and all layers (model_forward.c says more); c: the KV cache to write and read, or NULL. */
void gkd_model_forward_layers(const gkd_model *m, act_set *s, const int *tokens, const int *pos0,
                              const int *at, int B, int T, int keep_all, gkd_kv_cache *c);
/* Rows per chunk of the cross-entropy and of scoring. */
int gkd_model_ce_chunk_rows(const gkd_model *m);
/* Makes the packed products' scratch fit N rows (nothing to do for fp32 weights). */
gkd_status gkd_model_packed_scratch_ensure(gkd_model *m, int N);
/* y: (N, out) = x: (N, in) W^T in the model's weight format: wf the fp32 matrix, wp the packed one (the
 * one that is not NULL is used). The packed scratch must fit N rows. */
void gkd_model_linear(const gkd_model *m, const float *wf, const void *wp, const float *x, int N, int out,
                      int in, float *y);
/* logits: (N, V) = hidden: (N, C) W_out^T, in the model's weight format; the packed scratch must fit N. */
void gkd_model_output_rows(const gkd_model *m, const float *hidden, int N, float *logits);

#endif
