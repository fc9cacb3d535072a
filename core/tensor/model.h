/* The transformer: a decoder-only model of the Llama family (RMSNorm, rotary positions with Hugging Face's
 * rotate_half pairing, grouped-query attention, SwiGLU MLP, tied or untied output projection), trained
 * and run through a backend table (core/tensor/backend.h).
 * Rules:
 * - Weights use Hugging Face's names and layout: (out_features, in_features) row-major, y = x W^T.
 * - All parameters live in one contiguous block and their gradients in another of the same layout (so
 *   one all-reduce or one file write covers them); gkd_model_tensor() describes each tensor's slice.
 *   An inference model (GKD_MODEL_INFERENCE: a teacher, a frozen reference, a model only sampled) has no
 *   gradient block: the calls that would write gradients refuse it.
 * - Parameter gradients accumulate (+=) until gkd_model_zero_grad().
 * - Token rows are right-padded: a row shorter than T is padded at its end, and causal attention keeps
 *   padding from touching earlier positions. Every token, padding included, must be a valid id.
 * - Buffers returned by the model (hidden states, params, grads, device logits) are device memory of its
 *   backend (host memory on the CPU), owned by the model.
 * - The model owns one KV cache for the sampler (gkd_model_kv_cache), kept between calls and grown when a
 *   call needs more rows or positions, so repeated generation allocates nothing once warm.
 * - An inference model may store its matrices in a reduced-precision weight format (bf16, q8_0:
 *   core/tensor/weights.h, gkd_model_set_weight_format). Its fp32 parameter block is then freed:
 *   gkd_model_params() and gkd_model_output_weight() return NULL, and callers project hidden states with
 *   gkd_model_project, which works for every format. */
#ifndef GKD_MODEL_H
#define GKD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor/backend.h"
#include "core/tensor/weights.h"
#include "core/base/error.h"

/* Rotary position scaling, as transformers' rope_type names it. The inverse frequency of pair i of a head is
 * f_i = rope_theta^(-2i/head_dim), then:
 * - GKD_ROPE_DEFAULT: f_i as is (the scaling fields are ignored);
 * - GKD_ROPE_LINEAR: f_i / rope_factor (position interpolation);
 * - GKD_ROPE_LLAMA3: Llama 3.1's. With wavelength w = 2 pi / f_i and L = rope_original_max_seq_len: f_i when
 *   w < L / rope_high_freq_factor, f_i / rope_factor when w > L / rope_low_freq_factor, and between them
 *   (1 - s) f_i / rope_factor + s f_i with s = (L / w - rope_low_freq_factor) / (rope_high_freq_factor -
 *   rope_low_freq_factor).
 * Neither rescales the attention (transformers' attention_factor is 1 for both). */
typedef enum {
    GKD_ROPE_DEFAULT = 0,
    GKD_ROPE_LINEAR = 1,
    GKD_ROPE_LLAMA3 = 2,
} gkd_rope_type;

/* Upper bounds of gkd_model_config_check (docs/real-models.md): far above any Llama-family model, low enough
 * that every size the model computes from them fits its type. */
#define GKD_MODEL_MAX_VOCAB (1 << 22)          /* vocab_size */
#define GKD_MODEL_MAX_DIM (1 << 16)            /* dim */
#define GKD_MODEL_MAX_HIDDEN (1 << 20)         /* hidden_dim */
#define GKD_MODEL_MAX_LAYERS (1 << 12)         /* n_layers */
#define GKD_MODEL_MAX_SEQ_LEN (1 << 21)        /* max_seq_len, rope_original_max_seq_len */
#define GKD_MODEL_MAX_PARAMS (1ULL << 40)      /* parameters (floats) of the whole model */
#define GKD_MODEL_MAX_ROPE_TABLE (1ULL << 32)  /* max_seq_len x head_dim: the rotary tables' floats */
#define GKD_MODEL_MAX_ACTIVATIONS (1ULL << 40) /* floats of one activation buffer of a forward (B, T) */

typedef struct {
    int vocab_size, dim, n_layers, n_heads, n_kv_heads, hidden_dim, max_seq_len;
    float rope_theta, norm_eps;
    int tied_embeddings; /* 1: the output projection is model.embed_tokens.weight; no lm_head.weight */
    int rope_type;       /* gkd_rope_type; 0 (GKD_ROPE_DEFAULT) in a zero-initialised config */
    float rope_factor;   /* linear and llama3: > 0 */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3: 0 < low < high */
    int rope_original_max_seq_len;                     /* llama3: original_max_position_embeddings, >= 1 */
} gkd_model_config;

typedef struct {
    const char *name; /* Hugging Face name, e.g. "model.layers.3.mlp.up_proj.weight" */
    int ndim;
    int64_t shape[2];
    size_t offset; /* in floats, into gkd_model_params() and gkd_model_grads() */
    size_t numel;
    int is_norm; /* RMSNorm weight: initialised to 1, no weight decay */
} gkd_tensor_info;

/* How gkd_model_ce_loss averages: over all masked tokens of the batch, or per sequence first (the mean
 * over sequences with at least one masked token of each one's mean). */
typedef enum {
    GKD_NORM_TOKEN = 0,
    GKD_NORM_SEQUENCE = 1,
} gkd_loss_norm;

typedef struct gkd_model gkd_model;
typedef struct gkd_kv_cache gkd_kv_cache;

/* GKD_OK, or GKD_ERR_ARG with a message naming the first bad field: a size out of its range (the
 * GKD_MODEL_MAX_* bounds above), a parameter count over GKD_MODEL_MAX_PARAMS (counted without overflow),
 * inconsistent heads, a non-finite or non-positive float, bad rope scaling fields. */
gkd_status gkd_model_config_check(const gkd_model_config *cfg);
/* 1 when a and b describe the same model (the scaling fields compared only when a scaling is set). */
int gkd_model_config_equal(const gkd_model_config *a, const gkd_model_config *b);
/* The inverse frequency of rotary pair i (0 <= i < head_dim / 2) of a checked configuration, in double
 * precision (gkd_rope_type above). */
double gkd_model_rope_inv_freq(const gkd_model_config *cfg, int head_dim, int i);

/* Flags of gkd_model_create_ex. */
typedef enum {
    GKD_MODEL_TRAINABLE = 0, /* parameters and gradients: what gkd_model_create makes */
    /* Parameters only, no gradient block: gkd_model_grads() and gkd_model_output_weight_grad() return NULL,
     * gkd_model_zero_grad() does nothing, and gkd_model_forward, gkd_model_backward and gkd_model_ce_loss
     * with a dhidden refuse with GKD_ERR_ARG. The inference forward, the cross-entropy's value, the KV-cache
     * paths and sampling work as on any model, with the same results bit for bit. */
    GKD_MODEL_INFERENCE = 1,
} gkd_model_flags;

/* Allocates the parameter and gradient blocks (zeroed; see gkd_model_init_weights) on backend `be`.
 * Activations are allocated on first use and grown when a bigger batch arrives. The caller owns *out
 * and frees it with gkd_model_free. */
gkd_status gkd_model_create(const gkd_model_config *cfg, const gkd_backend *be, gkd_model **out);
/* As gkd_model_create, with `flags` a combination of gkd_model_flags (GKD_ERR_ARG for an unknown bit). */
gkd_status gkd_model_create_ex(const gkd_model_config *cfg, const gkd_backend *be, unsigned flags,
                               gkd_model **out);
/* Frees the model with everything it owns (activations, its KV cache, its workspace); accepts NULL. */
void gkd_model_free(gkd_model *m);
/* 1 for a model made with GKD_MODEL_INFERENCE. */
int gkd_model_is_inference(const gkd_model *m);

/* Backend memory held by a model, in bytes: what its own allocations hold now (they grow with the largest
 * batch seen, never shrink). */
typedef struct {
    size_t params;      /* the parameter block; with packed weights, the packed matrices and the fp32 norms */
    size_t grads;       /* the gradient block: 0 for an inference model */
    size_t activations; /* training and inference activations, cross-entropy scratch, rotary tables */
    size_t kv_cache;    /* the model's own KV cache (gkd_model_kv_cache) and the sampler's workspace */
    size_t total;
} gkd_model_memory;
void gkd_model_memory_usage(const gkd_model *m, gkd_model_memory *out);

/* Deterministic init from (seed, GKD_RNG_STREAM_INIT): element i of the parameter block takes the normal
 * drawn from words 2i, 2i+1 of that stream, times 0.02, and times 1/sqrt(2 n_layers) more for the
 * projections that write into the residual stream (o_proj, down_proj); norm weights are 1. */
void gkd_model_init_weights(gkd_model *m, uint64_t seed);

size_t gkd_model_num_params(const gkd_model *m);
/* The fp32 parameter block: NULL once the model's weights are packed (gkd_model_set_weight_format), when the
 * tensors' offsets describe the layout the model was loaded in, not memory it holds. gkd_model_init_weights
 * does nothing on such a model. */
float *gkd_model_params(gkd_model *m);
float *gkd_model_grads(gkd_model *m); /* NULL for an inference model */
void gkd_model_zero_grad(gkd_model *m);
int gkd_model_num_tensors(const gkd_model *m);
/* Tensor i in block order, or NULL when i is out of range. */
const gkd_tensor_info *gkd_model_tensor(const gkd_model *m, int i);
/* Index of the tensor with Hugging Face name `name`, or -1. */
int gkd_model_tensor_find(const gkd_model *m, const char *name);
const gkd_model_config *gkd_model_get_config(const gkd_model *m);
const gkd_backend *gkd_model_backend(const gkd_model *m);

/* Training forward over tokens (B,T), host memory. Keeps the activations the backward needs, and sets
 * *hidden to the final-norm output (B,T,C), valid until the next gkd_model_forward. */
gkd_status gkd_model_forward(gkd_model *m, const int *tokens, int B, int T, const float **hidden);
/* Backward of the last gkd_model_forward from dhidden: (B,T,C) device; parameter grads +=. */
gkd_status gkd_model_backward(gkd_model *m, const float *dhidden);

/* The output projection (V,C): lm_head.weight, or model.embed_tokens.weight when tied (NULL when the
 * weights are packed: use gkd_model_project); and its gradient (NULL for an inference model). */
const float *gkd_model_output_weight(const gkd_model *m);
float *gkd_model_output_weight_grad(gkd_model *m);
/* logits: (N,V) device = hidden: (N,C) device times the output projection transposed, in the model's weight
 * format (for fp32 weights the backend's matmul, as every other caller of gkd_model_output_weight does).
 * GKD_ERR_NOMEM when the packed products' scratch cannot grow. */
gkd_status gkd_model_project(gkd_model *m, const float *hidden, int N, float *logits);

/* Stores the matrices of an inference model in format f (core/tensor/weights.h), once: the fp32 matrices
 * are packed and the fp32 parameter block freed (gkd_model_memory_usage reports what is held after). Load
 * or initialise the weights first. Every linear, the embedding lookup and the output projection then read
 * the packed matrices; norms, rotary tables, attention and the KV cache stay fp32. GKD_OK and nothing done
 * when f is the current format. GKD_ERR_ARG naming the format: a trainable model; a backend without packed
 * weights (CUDA: its inference models keep fp32); a second change (the fp32 values are gone); q8_0 with a
 * dimension that is not a multiple of 32. GKD_ERR_NOMEM leaves the model as it was. */
gkd_status gkd_model_set_weight_format(gkd_model *m, gkd_weight_format f);
/* The model's weight format: GKD_WEIGHTS_FP32 unless set. */
gkd_weight_format gkd_model_weight_format(const gkd_model *m);

/* Inference forward: no activations kept for a backward, no gradients. *hidden: (B,T,C), valid until the
 * next gkd_model_forward_nograd. Does not disturb a pending gkd_model_forward/backward pair. */
gkd_status gkd_model_forward_nograd(gkd_model *m, const int *tokens, int B, int T, const float **hidden);

/* Cross-entropy of the output projection on hidden: (B,T,C) device, against targets: (B,T) host, weighted
 * by mask: (B,T) host in {0,1} (other non-negative values act as weights; targets under 0 are not read)
 * and normalised by `norm`
 * (gkd_loss_norm). Logits are formed a chunk of rows at a time, never (B*T,V) at once. Writes *loss;
 * if dhidden: (B,T,C) device is not NULL (and not hidden itself), writes dL/dhidden there and accumulates
 * dL/dW_out. A mask with no token gives loss 0 and zero gradients. */
gkd_status gkd_model_ce_loss(gkd_model *m, const float *hidden, const int *targets, const float *mask, int B,
                             int T, int norm, float *loss, float *dhidden);

/* gkd_model_ce_loss with the loss and its gradients times `scale`: a data-parallel rank's shard of a batch
 * passes its share of the batch's normaliser (e.g. its tokens / the batch's tokens), so that the ranks'
 * sums are the whole batch's loss and gradients (rl/dist.h). Scale 0 gives loss 0 and zero gradients. */
gkd_status gkd_model_ce_loss_scaled(gkd_model *m, const float *hidden, const int *targets, const float *mask, int B,
                                    int T, int norm, double scale, float *loss, float *dhidden);

/* Rows of logits gkd_model_ce_loss forms at once (memory rows x vocab_size floats); 0 restores the
 * default: the backend's loss_chunk_bytes of logits (core/tensor/backend.h; 256 MiB on CUDA), or about
 * 8 MB where it sets none (the CPU). Whatever the chunk, a call moves the targets and weights to the
 * backend in one copy each and the per-row losses back in one. */
gkd_status gkd_model_set_loss_chunk(gkd_model *m, int rows);

/* KV cache for B rows of up to max_T positions (max_T <= max_seq_len). The caller owns *out. A cache
 * serves any call of at most B rows (rows 0..B-1 are used). */
gkd_status gkd_kv_cache_create(const gkd_model *m, int B, int max_T, gkd_kv_cache **out);
void gkd_kv_cache_free(gkd_kv_cache *c);
int gkd_kv_cache_batch(const gkd_kv_cache *c);
int gkd_kv_cache_max_len(const gkd_kv_cache *c);

/* The model's own KV cache with room for at least B rows and max_T positions (max_T <= max_seq_len): made
 * on first use and re-made when a call needs more rows or positions (then with the larger of the old and
 * the new rows and positions, so alternating shapes do not reallocate; what it held is dropped). Owned by
 * the model, freed by gkd_model_free: never free it yourself. The sampler decodes through it, so it holds
 * whatever the last user wrote; each user starts from position 0. */
gkd_status gkd_model_kv_cache(gkd_model *m, int B, int max_T, gkd_kv_cache **out);
/* A device buffer of at least `bytes` owned by the model, for work done on its behalf (the CUDA sampler's
 * scratch): grown on demand (contents dropped), freed by gkd_model_free. */
gkd_status gkd_model_workspace(gkd_model *m, size_t bytes, void **out);

/* Feeds tokens (B,T) host, row b at positions pos0[b] .. pos0[b]+T-1 (pos0: (B) host), writes their keys
 * and values into the cache and returns logits (B,T,V) host. Attention sees the row's cached positions
 * < pos0[b] plus the new ones, causally; B must not exceed the cache's batch. Right-padded prompts are fed
 * with pos0 = 0, after which each row continues at its own length, overwriting the padding's entries. */
gkd_status gkd_model_forward_cached(gkd_model *m, gkd_kv_cache *c, const int *tokens, const int *pos0, int B,
                                    int T, float *logits);
/* As gkd_model_forward_cached, but returns only the logits of position at[b] (0 <= at[b] < T) of each
 * row: logits (B,V) host. Saves the output projection on every other position (prefill). */
gkd_status gkd_model_forward_cached_at(gkd_model *m, gkd_kv_cache *c, const int *tokens, const int *pos0,
                                       int B, int T, const int *at, float *logits);
/* As gkd_model_forward_cached_at, but leaves the logits on the device: *logits points at (B,V) device
 * memory in the cache (host memory on the CPU), valid until the cache's next forward. Nothing is copied
 * to the host, so a device sampler can draw from them there. */
gkd_status gkd_model_forward_cached_at_device(gkd_model *m, gkd_kv_cache *c, const int *tokens,
                                              const int *pos0, int B, int T, const int *at,
                                              const float **logits);

/* Logits of one sequence: tokens (T) host, 1 <= T <= max_seq_len; writes logits (T,V) host, row t the
 * logits of the token after tokens[0..t]. Runs through the model's own KV cache (gkd_model_kv_cache), so it
 * works on an inference model too. GKD_ERR_ARG naming the position when a logit is not finite. */
gkd_status gkd_model_logits(gkd_model *m, const int *tokens, int T, float *logits);
/* Per-token log-probabilities of one sequence: tokens (T) host, 2 <= T <= max_seq_len; writes out (T-1) host,
 * out[i-1] = log p(tokens[i] | tokens[0..i-1]) for 1 <= i < T (tokens[0] is context only). Logits are formed
 * a chunk of positions at a time through the model's KV cache, never (T,V) at once; log-softmax in double.
 * GKD_ERR_ARG naming the position when a logit is not finite. */
gkd_status gkd_model_logprobs(gkd_model *m, const int *tokens, int T, double *out);

/* FLOPs of the matrix products of one forward over B rows of T tokens, the output projection on every
 * position included: 2 x (weights multiplied) x tokens + 4 B n_heads T^2 head_dim per layer for QK^T and
 * AV (the full T x T products, as computed); with_backward: x3 for forward + backward. */
double gkd_model_flops(const gkd_model *m, int B, int T, int with_backward);

#endif
