/* Model checkpoints (see checkpoint.h). */
#include "core/format/checkpoint.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/format/safetensors.h"

/* Appends the rope scaling object ({"rope_type": ..., "factor": ...}, the keys transformers gives it in
 * rope_scaling and rope_parameters); nothing for the default rope. */
static void rope_scaling_to_json(const gkd_model_config *c, gkd_buf *out) {
    if (c->rope_type == GKD_ROPE_DEFAULT) return;
    gkd_buf_printf(
        out, "{\"rope_type\":\"%s\",\"factor\":", c->rope_type == GKD_ROPE_LINEAR ? "linear" : "llama3");
    gkd_buf_json_number(out, c->rope_factor);
    if (c->rope_type == GKD_ROPE_LLAMA3) {
        gkd_buf_puts(out, ",\"low_freq_factor\":");
        gkd_buf_json_number(out, c->rope_low_freq_factor);
        gkd_buf_puts(out, ",\"high_freq_factor\":");
        gkd_buf_json_number(out, c->rope_high_freq_factor);
        gkd_buf_printf(out, ",\"original_max_position_embeddings\":%d", c->rope_original_max_seq_len);
    }
    gkd_buf_puts(out, "}");
}

void gkd_model_config_to_json(const gkd_model_config *c, gkd_buf *out) {
    gkd_buf_printf(out,
                   "{\"vocab_size\":%d,\"dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
                   "\"hidden_dim\":%d,\"max_seq_len\":%d,\"rope_theta\":",
                   c->vocab_size, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->hidden_dim,
                   c->max_seq_len);
    gkd_buf_json_number(out, c->rope_theta);
    gkd_buf_puts(out, ",\"norm_eps\":");
    gkd_buf_json_number(out, c->norm_eps);
    gkd_buf_printf(out, ",\"tied_embeddings\":%s", c->tied_embeddings ? "true" : "false");
    if (c->rope_type != GKD_ROPE_DEFAULT) {
        gkd_buf_puts(out, ",\"rope_scaling\":");
        rope_scaling_to_json(c, out);
    }
    gkd_buf_puts(out, "}");
}

/* o[key] unless absent or JSON null (transformers writes null for "not set"). */
static const gkd_json *member(const gkd_json *o, const char *key) {
    const gkd_json *v = gkd_json_get(o, key);
    return v && v->type != GKD_JSON_NULL ? v : NULL;
}

/* Reads an integer field; `alt` is the Hugging Face name tried when `key` is absent (may be NULL). */
static gkd_status get_int(const gkd_json *o, const char *key, const char *alt, const char *where, int *out) {
    const char *name = key;
    const gkd_json *v = member(o, key);
    if (!v && alt) v = member(o, name = alt);
    if (!v) return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" is missing", where, alt ? alt : key);
    int64_t x;
    if (!gkd_json_integer(v, INT_MIN, INT_MAX, &x))
        return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" must be an integer in [%d, %d]", where, name,
                             INT_MIN, INT_MAX);
    *out = (int)x;
    return GKD_OK;
}

/* A number field (key, else alt); absent: `fallback`. */
static gkd_status get_number(const gkd_json *o, const char *key, const char *alt, const char *where,
                             double fallback, double *out) {
    const char *name = key;
    const gkd_json *v = member(o, key);
    if (!v && alt) v = member(o, name = alt);
    if (!v) {
        *out = fallback;
        return GKD_OK;
    }
    if (v->type != GKD_JSON_NUMBER)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" must be a number", where, name);
    *out = v->number;
    return GKD_OK;
}

/* ---------- what a config.json may ask for ----------
 * A Hugging Face config.json describes more models than gkd computes. Every key that changes the function
 * the model computes is checked here and refused by name when gkd would compute something else: loading
 * such a model "approximately" gives outputs that look plausible and are wrong. */

static gkd_status refuse(const char *where, const char *key, const char *what) {
    return gkd_error_set(GKD_ERR_FORMAT,
                         "%s: %s is not supported: %s (refusing to load the model approximately)", where, key,
                         what);
}

/* A boolean field that must be false (or absent): attention_bias, mlp_bias, use_sliding_window. */
static gkd_status expect_false(const gkd_json *o, const char *key, const char *where, const char *what) {
    const gkd_json *v = member(o, key);
    if (!v) return GKD_OK;
    if (v->type == GKD_JSON_BOOL && !v->boolean) return GKD_OK;
    if (v->type == GKD_JSON_BOOL) return refuse(where, key, what);
    return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" must be true or false", where, key);
}

/* A string field that must equal `want` when present: model_type, hidden_act. */
static gkd_status expect_string(const gkd_json *o, const char *key, const char *want, const char *where,
                                const char *what) {
    const gkd_json *v = member(o, key);
    if (!v) return GKD_OK;
    if (v->type != GKD_JSON_STRING)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: field \"%s\" must be a string", where, key);
    if (strcmp(v->string, want) == 0) return GKD_OK;
    char detail[256];
    snprintf(detail, sizeof detail, "\"%.80s\" (%s)", v->string, what);
    return refuse(where, key, detail);
}

static gkd_status check_architecture(const gkd_json *o, const char *where, const gkd_model_config *cfg) {
    gkd_status st;
    if ((st = expect_string(o, "model_type", "llama", where, "gkd reads \"llama\" models only")) ||
        (st = expect_string(o, "hidden_act", "silu", where, "gkd's MLP is SwiGLU with silu")) ||
        (st = expect_false(o, "attention_bias", where, "gkd's attention projections have no biases")) ||
        (st = expect_false(o, "mlp_bias", where, "gkd's MLP projections have no biases")) ||
        (st = expect_false(o, "use_sliding_window", where, "gkd's attention sees every earlier position")))
        return st;
    const gkd_json *sw = member(o, "sliding_window"), *use = member(o, "use_sliding_window");
    if (sw && !(use && use->type == GKD_JSON_BOOL && !use->boolean))
        return refuse(where, "sliding_window", "gkd's attention sees every earlier position");
    const gkd_json *hd = member(o, "head_dim");
    int64_t head_dim;
    if (hd && (!gkd_json_integer(hd, 1, INT_MAX, &head_dim) || cfg->n_heads <= 0 || cfg->dim % cfg->n_heads ||
               head_dim != cfg->dim / cfg->n_heads)) {
        char detail[160];
        snprintf(detail, sizeof detail, "%g differs from hidden_size / num_attention_heads = %d / %d",
                 hd->type == GKD_JSON_NUMBER ? hd->number : NAN, cfg->dim, cfg->n_heads);
        return refuse(where, "head_dim", detail);
    }
    return GKD_OK;
}

/* ---------- rotary settings ----------
 * transformers 4 writes rope_theta at the top level and the scaling in rope_scaling (type in "rope_type",
 * or in the older "type"); transformers 5 writes both inside rope_parameters. Either is read; when both
 * say something they must agree. */

typedef struct {
    int present; /* the object said anything about scaling */
    int type;    /* gkd_rope_type */
    double factor, low, high;
    int original; /* original_max_position_embeddings; 0: not given */
} rope_scaling;

/* Reads a scaling object (rope_scaling, or rope_parameters without its rope_theta), named `name` in errors.
 */
static gkd_status read_scaling(const gkd_json *s, const char *name, const char *where, rope_scaling *out) {
    memset(out, 0, sizeof *out);
    if (s->type != GKD_JSON_OBJECT)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: \"%s\" must be an object", where, name);
    char key[128];
    const gkd_json *t = member(s, "rope_type");
    const char *type_key = "rope_type";
    if (!t) t = member(s, type_key = "type");
    if (t && t->type != GKD_JSON_STRING)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: \"%s.%s\" must be a string", where, name, type_key);
    const char *type = t ? t->string : "default";
    static const char *const linear_keys[] = {"factor", NULL};
    static const char *const llama3_keys[] = {"factor", "low_freq_factor", "high_freq_factor",
                                              "original_max_position_embeddings", NULL};
    static const char *const no_keys[] = {NULL};
    const char *const *allowed;
    if (strcmp(type, "default") == 0) {
        allowed = no_keys;
    } else if (strcmp(type, "linear") == 0) {
        out->type = GKD_ROPE_LINEAR;
        allowed = linear_keys;
    } else if (strcmp(type, "llama3") == 0) {
        out->type = GKD_ROPE_LLAMA3;
        allowed = llama3_keys;
    } else {
        snprintf(key, sizeof key, "%s.%s = \"%.40s\"", name, type_key, type);
        return refuse(where, key, "gkd computes the default, linear and llama3 rotary embeddings only");
    }
    out->present = 1;
    /* Every other key changes what is computed (attention_factor, beta_fast, mscale, ...) or is one gkd does
     * not know: refused by name. rope_theta is read by the caller. */
    for (size_t i = 0; i < s->len; i++) {
        const char *k = s->keys[i];
        int known = strcmp(k, "rope_type") == 0 || strcmp(k, "type") == 0 || strcmp(k, "rope_theta") == 0;
        for (const char *const *a = allowed; !known && *a; a++) known = strcmp(k, *a) == 0;
        if (strcmp(k, "partial_rotary_factor") == 0 && s->items[i]->type == GKD_JSON_NUMBER &&
            s->items[i]->number == 1.0)
            known = 1;
        if (!known && s->items[i]->type != GKD_JSON_NULL) {
            snprintf(key, sizeof key, "%s.%s", name, k);
            return refuse(where, key, "gkd's rotary embedding has no such setting");
        }
    }
    if (out->type == GKD_ROPE_DEFAULT) return GKD_OK;
    const gkd_json *f = member(s, "factor");
    if (!f || f->type != GKD_JSON_NUMBER)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: \"%s.factor\" (a number) is needed for %s rope scaling",
                             where, name, type);
    out->factor = f->number;
    if (out->type == GKD_ROPE_LINEAR) return GKD_OK;
    const char *need[] = {"low_freq_factor", "high_freq_factor"};
    double *dst[] = {&out->low, &out->high};
    for (int i = 0; i < 2; i++) {
        const gkd_json *v = member(s, need[i]);
        if (!v || v->type != GKD_JSON_NUMBER)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: \"%s.%s\" (a number) is needed for llama3 rope scaling",
                                 where, name, need[i]);
        *dst[i] = v->number;
    }
    const gkd_json *orig = member(s, "original_max_position_embeddings");
    int64_t n;
    if (orig && !gkd_json_integer(orig, 1, INT_MAX, &n))
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: \"%s.original_max_position_embeddings\" must be a positive integer", where,
                             name);
    out->original = orig ? (int)n : 0;
    return GKD_OK;
}

static int same_scaling(const rope_scaling *a, const rope_scaling *b) {
    return a->type == b->type && a->factor == b->factor && a->low == b->low && a->high == b->high &&
           a->original == b->original;
}

static gkd_status read_rope(const gkd_json *o, const char *where, gkd_model_config *cfg) {
    const gkd_json *params = member(o, "rope_parameters"), *old = member(o, "rope_scaling");
    double theta = 0.0;
    gkd_status st = get_number(o, "rope_theta", NULL, where, 10000.0, &theta);
    if (st) return st;
    rope_scaling from_params = {0}, from_old = {0};
    if (params && (st = read_scaling(params, "rope_parameters", where, &from_params))) return st;
    if (old && (st = read_scaling(old, "rope_scaling", where, &from_old))) return st;
    if (params) {
        double p_theta = 0.0;
        if ((st = get_number(params, "rope_theta", NULL, where, theta, &p_theta))) return st;
        if (member(o, "rope_theta") && p_theta != theta)
            return gkd_error_set(
                GKD_ERR_FORMAT,
                "%s: rope_theta = %g and rope_parameters.rope_theta = %g differ (which one the "
                "model was trained with is unknown)",
                where, theta, p_theta);
        theta = p_theta;
    }
    if (from_params.type != GKD_ROPE_DEFAULT && from_old.type != GKD_ROPE_DEFAULT &&
        !same_scaling(&from_params, &from_old))
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: rope_scaling and rope_parameters describe different rope scalings", where);
    const rope_scaling *s = from_params.type != GKD_ROPE_DEFAULT ? &from_params : &from_old;
    double partial = 1.0;
    if ((st = get_number(o, "partial_rotary_factor", NULL, where, 1.0, &partial))) return st;
    if (partial != 1.0) return refuse(where, "partial_rotary_factor", "gkd rotates whole heads");
    cfg->rope_theta = (float)theta;
    cfg->rope_type = s->type;
    if (s->type == GKD_ROPE_DEFAULT) return GKD_OK;
    cfg->rope_factor = (float)s->factor;
    cfg->rope_low_freq_factor = (float)s->low;
    cfg->rope_high_freq_factor = (float)s->high;
    if (s->type == GKD_ROPE_LLAMA3) {
        /* transformers 5: a top-level original_max_position_embeddings wins, else max_position_embeddings. */
        int top = 0;
        if (member(o, "original_max_position_embeddings") &&
            (st = get_int(o, "original_max_position_embeddings", NULL, where, &top)))
            return st;
        if (top && s->original && top != s->original)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: original_max_position_embeddings = %d and the rope scaling's %d differ",
                                 where, top, s->original);
        cfg->rope_original_max_seq_len = top ? top : s->original ? s->original : cfg->max_seq_len;
    }
    return GKD_OK;
}

/* Accepts gkd's field names and Hugging Face LlamaConfig's. */
gkd_status gkd_model_config_from_json(const char *json, const char *where, gkd_model_config *cfg) {
    gkd_json *o = NULL;
    gkd_status st = gkd_json_parse(json, strlen(json), where, &o);
    if (st != GKD_OK) return st;
    memset(cfg, 0, sizeof *cfg);
    double norm_eps = 0;
    if (o->type != GKD_JSON_OBJECT)
        st = gkd_error_set(GKD_ERR_FORMAT, "%s: configuration is not an object", where);
    if (st == GKD_OK) st = get_int(o, "vocab_size", NULL, where, &cfg->vocab_size);
    if (st == GKD_OK) st = get_int(o, "dim", "hidden_size", where, &cfg->dim);
    if (st == GKD_OK) st = get_int(o, "n_layers", "num_hidden_layers", where, &cfg->n_layers);
    if (st == GKD_OK) st = get_int(o, "n_heads", "num_attention_heads", where, &cfg->n_heads);
    if (st == GKD_OK) {
        if (member(o, "n_kv_heads") || member(o, "num_key_value_heads"))
            st = get_int(o, "n_kv_heads", "num_key_value_heads", where, &cfg->n_kv_heads);
        else
            cfg->n_kv_heads = cfg->n_heads;
    }
    if (st == GKD_OK) st = get_int(o, "hidden_dim", "intermediate_size", where, &cfg->hidden_dim);
    if (st == GKD_OK) st = get_int(o, "max_seq_len", "max_position_embeddings", where, &cfg->max_seq_len);
    if (st == GKD_OK) st = get_number(o, "norm_eps", "rms_norm_eps", where, 1e-5, &norm_eps);
    cfg->norm_eps = (float)norm_eps;
    if (st == GKD_OK) {
        const gkd_json *t = gkd_json_get(o, "tied_embeddings");
        if (!t) t = gkd_json_get(o, "tie_word_embeddings");
        cfg->tied_embeddings = t && t->type == GKD_JSON_BOOL ? t->boolean : 0;
    }
    if (st == GKD_OK) st = check_architecture(o, where, cfg);
    if (st == GKD_OK) st = read_rope(o, where, cfg);
    if (st == GKD_OK && gkd_model_config_check(cfg) != GKD_OK)
        st = gkd_error_prefix(GKD_ERR_FORMAT, "%s", where);
    gkd_json_free(o);
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
    if (!gkd_model_params(m))
        return gkd_error_set(
            GKD_ERR_ARG,
            "%s: the model's weights are packed (%s) and its fp32 values are gone: only a model "
            "with fp32 weights can be saved",
            path, gkd_weight_format_name(gkd_model_weight_format(m)));
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
            tensors[i] =
                (gkd_st_tensor){info->name, GKD_ST_F32, info->ndim, info->shape, host + info->offset};
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
    gkd_buf_printf(
        &b,
        "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
        "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
        "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
        "  \"max_position_embeddings\": %d,\n  \"hidden_act\": \"silu\",\n  \"rms_norm_eps\": ",
        c->vocab_size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->max_seq_len);
    gkd_buf_json_number(&b, c->norm_eps);
    gkd_buf_puts(&b, ",\n  \"rope_theta\": ");
    gkd_buf_json_number(&b, c->rope_theta);
    /* rope_theta and rope_scaling at the top level: transformers 4 reads only these, transformers 5 reads
     * them too (into its rope_parameters). */
    if (c->rope_type != GKD_ROPE_DEFAULT) {
        gkd_buf_puts(&b, ",\n  \"rope_scaling\": ");
        rope_scaling_to_json(c, &b);
    }
    gkd_buf_printf(&b,
                   ",\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"head_dim\": %d,\n"
                   "  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"float32\"\n}\n",
                   c->dim / c->n_heads, c->tied_embeddings ? "true" : "false");
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
    if (is_dir(path))
        snprintf(out, cap, "%s/model.safetensors", path);
    else
        snprintf(out, cap, "%s", path);
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
            /* Hugging Face directories leave tie_word_embeddings out when it is the default (false for
             * Llama), but a file without lm_head.weight is tied whatever config.json says. */
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
    if (!json)
        st = gkd_error_set(GKD_ERR_FORMAT,
                           "%s: no \"gkd_config\" metadata (not a gkd checkpoint; "
                           "for a Hugging Face model pass its directory)",
                           path);
    else
        st = gkd_model_config_from_json(json, path, cfg);
    gkd_safetensors_close(sf);
    return st;
}

/* Older transformers saved each layer's rotary buffer (model.layers.N.self_attn.rotary_emb.inv_freq). gkd
 * computes the frequencies from the configuration, so such a buffer has a place only when it holds those
 * values; one that differs (a scaling gkd does not know) is refused. */
static int is_rope_buffer(const char *name) {
    int layer, end = 0;
    return sscanf(name, "model.layers.%d.self_attn.rotary_emb.inv_freq%n", &layer, &end) == 1 && end > 0 &&
           name[end] == '\0';
}

static gkd_status check_rope_buffer(const gkd_safetensors *sf, const gkd_model *m, const char *name,
                                    const char *wpath) {
    const gkd_model_config *c = gkd_model_get_config(m);
    const int head_dim = c->dim / c->n_heads, half = head_dim / 2;
    int64_t shape[1] = {half};
    float *got = malloc((size_t)half * sizeof *got);
    if (!got) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", wpath);
    gkd_status st = gkd_safetensors_read_f32(sf, name, got, 1, shape);
    for (int i = 0; st == GKD_OK && i < half; i++) {
        double want = gkd_model_rope_inv_freq(c, head_dim, i);
        /* transformers computed the buffer in float32 (pow then reciprocal): a few ulps from the double. */
        if (!(fabs(got[i] - want) <= 1e-5 * want))
            st = gkd_error_set(GKD_ERR_FORMAT,
                               "%s: tensor '%s' element %d is %.9g, but the configuration's rotary frequency "
                               "is %.9g (a rope scaling gkd does not know; refusing to load)",
                               wpath, name, i, got[i], want);
    }
    free(got);
    return st;
}

/* Every tensor of the file must be one of m's: a tensor gkd has no place for (a bias, a scaling table) is a
 * model gkd would compute without it. */
static gkd_status check_no_extra_tensors(const gkd_safetensors *sf, const gkd_model *m, const char *wpath) {
    for (int i = 0; i < gkd_safetensors_count(sf); i++) {
        const char *name = gkd_safetensors_info(sf, i)->name;
        if (gkd_model_tensor_find(m, name) >= 0) continue;
        if (is_rope_buffer(name)) {
            gkd_status st = check_rope_buffer(sf, m, name, wpath);
            if (st != GKD_OK) return st;
            continue;
        }
        if (strcmp(name, "lm_head.weight") == 0)
            return gkd_error_set(
                GKD_ERR_FORMAT,
                "%s: tensor 'lm_head.weight' is present but the configuration ties the output "
                "projection to the embeddings (tie_word_embeddings)",
                wpath);
        return gkd_error_set(
            GKD_ERR_FORMAT,
            "%s: tensor '%s' has no place in gkd's Llama model (unsupported; refusing to load the "
            "model without it)",
            wpath, name);
    }
    return GKD_OK;
}

/* A diverged checkpoint (NaN or Inf weights) is refused: every output of such a model is garbage, and the
 * sampler cannot draw from non-finite logits. */
static gkd_status check_finite(const float *x, size_t n, const char *tensor, const char *wpath) {
    for (size_t j = 0; j < n; j++)
        if (!isfinite(x[j]))
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: tensor '%s' holds %g at element %zu (a diverged checkpoint?)", wpath,
                                 tensor, x[j], j);
    return GKD_OK;
}

gkd_status gkd_checkpoint_load_into(gkd_model *m, const char *path) {
    if (!gkd_model_params(m))
        return gkd_error_set(GKD_ERR_ARG,
                             "%s: the model's weights are packed (%s): load into a model with fp32 weights",
                             path, gkd_weight_format_name(gkd_model_weight_format(m)));
    char wpath[4096];
    weights_path(path, wpath, sizeof wpath);
    gkd_safetensors *sf = NULL;
    gkd_status st = gkd_safetensors_open(wpath, &sf);
    if (st != GKD_OK) return st;
    size_t total = gkd_model_num_params(m);
    float *host = NULL;
    if ((st = check_no_extra_tensors(sf, m, wpath)) == GKD_OK && !(host = malloc(total * sizeof *host)))
        st = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", wpath);
    for (int i = 0; st == GKD_OK && i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *info = gkd_model_tensor(m, i);
        st = gkd_safetensors_read_f32(sf, info->name, host + info->offset, info->ndim, info->shape);
        if (st == GKD_OK) st = check_finite(host + info->offset, info->numel, info->name, wpath);
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
