/* Model checkpoints (see checkpoint.h). */
#include "core/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/safetensors.h"

void gkd_model_config_to_json(const gkd_model_config *c, gkd_buf *out) {
    gkd_buf_printf(out,
                   "{\"vocab_size\":%d,\"dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
                   "\"hidden_dim\":%d,\"max_seq_len\":%d,\"rope_theta\":",
                   c->vocab_size, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->hidden_dim, c->max_seq_len);
    gkd_buf_json_number(out, c->rope_theta);
    gkd_buf_puts(out, ",\"norm_eps\":");
    gkd_buf_json_number(out, c->norm_eps);
    gkd_buf_printf(out, ",\"tied_embeddings\":%s}", c->tied_embeddings ? "true" : "false");
}

/* Reads an integer field; `alt` is the Hugging Face name tried when `key` is absent (may be NULL). */
static gkd_status get_int(const gkd_json *o, const char *key, const char *alt, const char *where, int *out) {
    const gkd_json *v = gkd_json_get(o, key);
    if (!v && alt) v = gkd_json_get(o, alt);
    if (!v) return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" is missing", where, alt ? alt : key);
    if (v->type != GKD_JSON_NUMBER || v->number != (double)(int)v->number)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" must be an integer", where, key);
    *out = (int)v->number;
    return GKD_OK;
}

static gkd_status get_float(const gkd_json *o, const char *key, const char *alt, const char *where, double fallback,
                            float *out) {
    const gkd_json *v = gkd_json_get(o, key);
    if (!v && alt) v = gkd_json_get(o, alt);
    if (!v) {
        *out = (float)fallback;
        return GKD_OK;
    }
    if (v->type != GKD_JSON_NUMBER) return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" must be a number", where, key);
    *out = (float)v->number;
    return GKD_OK;
}

/* Accepts gkd's field names and Hugging Face LlamaConfig's. */
gkd_status gkd_model_config_from_json(const char *json, const char *where, gkd_model_config *cfg) {
    gkd_json *o = NULL;
    gkd_status st = gkd_json_parse(json, strlen(json), where, &o);
    if (st != GKD_OK) return st;
    memset(cfg, 0, sizeof *cfg);
    if (o->type != GKD_JSON_OBJECT) st = gkd_error_set(GKD_ERR_FORMAT, "%s: configuration is not an object", where);
    if (st == GKD_OK) st = get_int(o, "vocab_size", NULL, where, &cfg->vocab_size);
    if (st == GKD_OK) st = get_int(o, "dim", "hidden_size", where, &cfg->dim);
    if (st == GKD_OK) st = get_int(o, "n_layers", "num_hidden_layers", where, &cfg->n_layers);
    if (st == GKD_OK) st = get_int(o, "n_heads", "num_attention_heads", where, &cfg->n_heads);
    if (st == GKD_OK) {
        if (gkd_json_get(o, "n_kv_heads") || gkd_json_get(o, "num_key_value_heads"))
            st = get_int(o, "n_kv_heads", "num_key_value_heads", where, &cfg->n_kv_heads);
        else
            cfg->n_kv_heads = cfg->n_heads;
    }
    if (st == GKD_OK) st = get_int(o, "hidden_dim", "intermediate_size", where, &cfg->hidden_dim);
    if (st == GKD_OK) st = get_int(o, "max_seq_len", "max_position_embeddings", where, &cfg->max_seq_len);
    if (st == GKD_OK) st = get_float(o, "rope_theta", NULL, where, 10000.0, &cfg->rope_theta);
    if (st == GKD_OK) st = get_float(o, "norm_eps", "rms_norm_eps", where, 1e-5, &cfg->norm_eps);
    if (st == GKD_OK) {
        const gkd_json *t = gkd_json_get(o, "tied_embeddings");
        if (!t) t = gkd_json_get(o, "tie_word_embeddings");
        cfg->tied_embeddings = t && t->type == GKD_JSON_BOOL ? t->boolean : 0;
    }
    gkd_json_free(o);
    if (st == GKD_OK && gkd_model_config_check(cfg) != GKD_OK) st = gkd_error_prefix(GKD_ERR_FORMAT, "%s", where);
    return st;
}

/* Copies the parameter block to host memory (it may live on a device). Caller frees. */
static float *params_to_host(gkd_model *m) {
    size_t n = gkd_model_num_params(m);
    float *host = malloc(n * sizeof *host);
    if (host) gkd_model_backend(m)->copy_out(host, gkd_model_params(m), n * sizeof *host);
    return host;
}

gkd_status gkd_checkpoint_save_model(gkd_model *m, const char *path, const char *const *meta_keys,
                                     const char *const *meta_values, int n_meta) {
    int n = gkd_model_num_tensors(m);
    float *host = params_to_host(m);
    gkd_st_tensor *tensors = calloc((size_t)n, sizeof *tensors);
    const char **keys = calloc((size_t)n_meta + 2, sizeof *keys);
    const char **values = calloc((size_t)n_meta + 2, sizeof *values);
    gkd_buf config = {0};
    gkd_status st = GKD_OK;
    if (!host || !tensors || !keys || !values) st = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
    if (st == GKD_OK) {
        for (int i = 0; i < n; i++) {
            const gkd_tensor_info *info = gkd_model_tensor(m, i);
            tensors[i] = (gkd_st_tensor){info->name, GKD_ST_F32, info->ndim, info->shape, host + info->offset};
        }
        gkd_model_config_to_json(gkd_model_get_config(m), &config);
        keys[0] = "format";
        values[0] = "pt";
        keys[1] = "gkd_config";
        values[1] = config.data;
        for (int i = 0; i < n_meta; i++) {
            keys[i + 2] = meta_keys[i];
            values[i + 2] = meta_values[i];
        }
        st = gkd_safetensors_write(path, tensors, n, keys, values, n_meta + 2);
    }
    gkd_buf_free(&config);
    free(keys);
    free(values);
    free(tensors);
    free(host);
    return st;
}

static gkd_status make_dir(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return gkd_error_set(GKD_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    return GKD_OK;
}

gkd_status gkd_checkpoint_save_hf_dir(gkd_model *m, const char *dir) {
    gkd_status st = make_dir(dir);
    if (st != GKD_OK) return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((st = gkd_checkpoint_save_model(m, path, NULL, NULL, 0)) != GKD_OK) return st;
    const gkd_model_config *c = gkd_model_get_config(m);
    gkd_buf b = {0};
    gkd_buf_printf(&b,
                   "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
                   "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
                   "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
                   "  \"max_position_embeddings\": %d,\n  \"hidden_act\": \"silu\",\n  \"rms_norm_eps\": ",
                   c->vocab_size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->max_seq_len);
    gkd_buf_json_number(&b, c->norm_eps);
    gkd_buf_puts(&b, ",\n  \"rope_theta\": ");
    gkd_buf_json_number(&b, c->rope_theta);
    gkd_buf_printf(&b, ",\n  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"float32\"\n}\n",
                   c->tied_embeddings ? "true" : "false");
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        gkd_buf_free(&b);
        return gkd_error_set(GKD_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    size_t w = fwrite(b.data, 1, b.len, f);
    int bad = fclose(f) != 0 || w != b.len;
    gkd_buf_free(&b);
    return bad ? gkd_error_set(GKD_ERR_IO, "%s: write failed", path) : GKD_OK;
}

static int is_dir(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

/* The safetensors file behind `path`: itself, or model.safetensors inside a directory. */
static void weights_path(const char *path, char *out, size_t cap) {
    if (is_dir(path)) snprintf(out, cap, "%s/model.safetensors", path);
    else snprintf(out, cap, "%s", path);
}

gkd_status gkd_checkpoint_read_config(const char *path, gkd_model_config *cfg) {
    if (is_dir(path)) {
        char cpath[4096];
        snprintf(cpath, sizeof cpath, "%s/config.json", path);
        char *text;
        size_t len;
        gkd_status st = gkd_read_file(cpath, &text, &len);
        if (st != GKD_OK) return st;
        st = gkd_model_config_from_json(text, cpath, cfg);
        free(text);
        if (st == GKD_OK) {
            /* Hugging Face directories leave tie_word_embeddings out when it is the default (false for Llama),
             * but a file without lm_head.weight is tied whatever config.json says. */
            char wpath[4096];
            weights_path(path, wpath, sizeof wpath);
            gkd_safetensors *sf = NULL;
            if (gkd_safetensors_open(wpath, &sf) == GKD_OK) {
                if (!gkd_safetensors_find(sf, "lm_head.weight")) cfg->tied_embeddings = 1;
                gkd_safetensors_close(sf);
            }
        }
        return st;
    }
    gkd_safetensors *sf = NULL;
    gkd_status st = gkd_safetensors_open(path, &sf);
    if (st != GKD_OK) return st;
    const char *json = gkd_safetensors_metadata(sf, "gkd_config");
    if (!json) st = gkd_error_set(GKD_ERR_FORMAT, "%s: no \"gkd_config\" metadata (not a gkd checkpoint; "
                                  "for a Hugging Face model pass its directory)", path);
    else st = gkd_model_config_from_json(json, path, cfg);
    gkd_safetensors_close(sf);
    return st;
}

gkd_status gkd_checkpoint_load_into(gkd_model *m, const char *path) {
    char wpath[4096];
    weights_path(path, wpath, sizeof wpath);
    gkd_safetensors *sf = NULL;
    gkd_status st = gkd_safetensors_open(wpath, &sf);
    if (st != GKD_OK) return st;
    size_t total = gkd_model_num_params(m);
    float *host = malloc(total * sizeof *host);
    if (!host) st = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", wpath);
    for (int i = 0; st == GKD_OK && i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *info = gkd_model_tensor(m, i);
        st = gkd_safetensors_read_f32(sf, info->name, host + info->offset, info->ndim, info->shape);
    }
    if (st == GKD_OK) gkd_model_backend(m)->copy_in(gkd_model_params(m), host, total * sizeof *host);
    free(host);
    gkd_safetensors_close(sf);
    return st;
}

gkd_status gkd_checkpoint_load_model(const char *path, const gkd_backend *be, gkd_model **out) {
    return gkd_checkpoint_load_model_ex(path, be, GKD_MODEL_TRAINABLE, out);
}

gkd_status gkd_checkpoint_load_model_ex(const char *path, const gkd_backend *be, unsigned flags,
                                        gkd_model **out) {
    gkd_model_config cfg;
    gkd_status st = gkd_checkpoint_read_config(path, &cfg);
    if (st != GKD_OK) return st;
    gkd_model *m = NULL;
    if ((st = gkd_model_create_ex(&cfg, be, flags, &m)) != GKD_OK) return gkd_error_prefix(st, "%s", path);
    if ((st = gkd_checkpoint_load_into(m, path)) != GKD_OK) {
        gkd_model_free(m);
        return st;
    }
    *out = m;
    return GKD_OK;
}
