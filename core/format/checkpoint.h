/* Model checkpoints in Hugging Face's layout: a safetensors file of the model's tensors under their
 * Hugging Face names, with the model configuration in its metadata ("gkd_config", JSON) and, when saving to
 * a directory, a config.json that transformers' LlamaForCausalLM reads. Loading accepts either a gkd
 * safetensors file or a Hugging Face model directory (config.json + model.safetensors).
 * Rules: a load checks every tensor's name, shape and dtype against the configuration before the model is
 * returned, refuses a file holding a tensor the model has no place for (a bias, ...) and a non-finite weight
 * (a diverged checkpoint); errors name the file and the tensor or field.
 * - config.json is read as transformers reads it, and refused, naming the key, where gkd would compute
 * another function: model_type other than "llama", hidden_act other than "silu", attention_bias or mlp_bias
 * true, sliding_window (unless use_sliding_window is false), head_dim other than hidden_size /
 *   num_attention_heads, partial_rotary_factor other than 1, rope scaling other than linear and llama3 (in
 *   rope_scaling, transformers 4's key, or rope_parameters, transformers 5's), an unknown key of the rope
 *   scaling, and a top-level rope_theta that contradicts rope_parameters.rope_theta. */
#ifndef GKD_CHECKPOINT_H
#define GKD_CHECKPOINT_H

#include "core/base/json.h"
#include "core/tensor/model.h"

/* Writes m's parameters to `path` (a .safetensors file); extra metadata pairs are added (may be 0). */
gkd_status gkd_checkpoint_save_model(gkd_model *m, const char *path, const char *const *meta_keys,
                                     const char *const *meta_values, int n_meta);
/* Writes dir/model.safetensors and dir/config.json (Hugging Face LlamaConfig fields, rope_theta and
 * rope_scaling at the top level, which transformers 4 and 5 both read); creates dir. */
gkd_status gkd_checkpoint_save_hf_dir(gkd_model *m, const char *dir);
/* Reads the configuration of a checkpoint (a gkd .safetensors file or a Hugging Face directory). */
gkd_status gkd_checkpoint_read_config(const char *path, gkd_model_config *cfg);
/* Creates a model on backend `be` from a checkpoint; the caller owns *out. */
gkd_status gkd_checkpoint_load_model(const char *path, const gkd_backend *be, gkd_model **out);
/* As gkd_checkpoint_load_model, the model made with gkd_model_create_ex's `flags` (GKD_MODEL_INFERENCE for
 * a teacher: no gradient block). */
gkd_status gkd_checkpoint_load_model_ex(const char *path, const gkd_backend *be, unsigned flags,
                                        gkd_model **out);
/* Loads a checkpoint's tensors into an existing model whose configuration must match. */
gkd_status gkd_checkpoint_load_into(gkd_model *m, const char *path);

/* Configuration <-> JSON (gkd's own field names, the ones gkd_model_config uses, and a rope scaling as
 * transformers' object: "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
 * "high_freq_factor": 4, "original_max_position_embeddings": 8192}). from_json also reads Hugging Face
 * LlamaConfig's names, with the refusals listed above. */
void gkd_model_config_to_json(const gkd_model_config *cfg, gkd_buf *out);
gkd_status gkd_model_config_from_json(const char *json, const char *where, gkd_model_config *cfg);

#endif
