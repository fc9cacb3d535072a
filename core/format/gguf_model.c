/* Llama models and tokenizers from GGUF (see gguf_model.h).
 * Rules: the file's tensors are matched to gkd's Hugging Face names through one table; every tensor is
 * checked (name, shape) before any is read, so a refused file costs no dequantisation; weights go to the
 * backend one tensor at a time through a host scratch of the largest tensor. */
#include "core/format/gguf_model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor names: GGUF's (llama.cpp's) and Hugging Face's, for the per-layer ones after "blk.N." and
 * "model.layers.N.". qk: the weight llama.cpp permuted for its interleaved rotary layout ('q' or 'k'). */
typedef struct {
    const char *gguf, *hf;
    char qk;
} name_pair;

static const name_pair global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight", 0},
    {"output_norm.weight", "model.norm.weight", 0},
    {"output.weight", "lm_head.weight", 0},
};

static const name_pair layer_names[] = {
    {"attn_norm.weight", "input_layernorm.weight", 0},
    {"attn_q.weight", "self_attn.q_proj.weight", 'q'},
    {"attn_k.weight", "self_attn.k_proj.weight", 'k'},
    {"attn_v.weight", "self_attn.v_proj.weight", 0},
    {"attn_output.weight", "self_attn.o_proj.weight", 0},
    {"ffn_norm.weight", "post_attention_layernorm.weight", 0},
    {"ffn_gate.weight", "mlp.gate_proj.weight", 0},
    {"ffn_up.weight", "mlp.up_proj.weight", 0},
    {"ffn_down.weight", "mlp.down_proj.weight", 0},
};

enum { NAME_CAP = 128, N_LAYER_NAMES = sizeof layer_names / sizeof *layer_names };

/* Translates a tensor name from one naming to the other (to_hf: GGUF -> Hugging Face). Returns 1 and
 * writes out (and *qk) when the name is one gkd knows, else 0. */
static int translate(const char *name, int to_hf, char *out, size_t cap, char *qk) {
    for (size_t i = 0; i < sizeof global_names / sizeof *global_names; i++) {
        const name_pair *p = &global_names[i];
        if (strcmp(name, to_hf ? p->gguf : p->hf) == 0) {
            snprintf(out, cap, "%s", to_hf ? p->hf : p->gguf);
            *qk = p->qk;
            return 1;
        }
    }
    const char *from_prefix = to_hf ? "blk." : "model.layers.";
    size_t plen = strlen(from_prefix);
    if (strncmp(name, from_prefix, plen) != 0) return 0;
    const char *p = name + plen;
    char *end;
    long layer = strtol(p, &end, 10);
    if (end == p || *end != '.' || layer < 0 || layer > INT_MAX || (p[0] == '0' && end - p > 1)) return 0;
    for (size_t i = 0; i < N_LAYER_NAMES; i++) {
        const name_pair *q = &layer_names[i];
        if (strcmp(end + 1, to_hf ? q->gguf : q->hf) == 0) {
            snprintf(out, cap, "%s%ld.%s", to_hf ? "model.layers." : "blk.", layer, to_hf ? q->hf : q->gguf);
            *qk = q->qk;
            return 1;
        }
    }
    return 0;
}

int gkd_gguf_file_is_gguf(const char *path) {
    if (!path) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4];
    int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return ok;
}

/* ---------------------------------------------------------------------------------------------------
 * Configuration. */

/* An integer key "<arch>.<suffix>" in [1, INT_MAX]. Absent: *out = fallback, or an error when fallback < 0.
 */
static gkd_status arch_int(const gkd_gguf *g, const char *arch, const char *suffix, int fallback, int *out) {
    char key[NAME_CAP];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    gkd_status st = gkd_gguf_get_i64(g, key, &v);
    if (st == GKD_ERR_NOT_FOUND && fallback >= 0) {
        *out = fallback;
        return GKD_OK;
    }
    if (st == GKD_ERR_NOT_FOUND)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' is missing (needed for the model configuration)",
                             gkd_gguf_path(g), key);
    if (st != GKD_OK) return st;
    if (v < 1 || v > INT_MAX)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' = %lld is out of range", gkd_gguf_path(g), key,
                             (long long)v);
    *out = (int)v;
    return GKD_OK;
}

static gkd_status arch_float(const gkd_gguf *g, const char *arch, const char *suffix, double fallback,
                             float *out) {
    char key[NAME_CAP];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    gkd_status st = gkd_gguf_get_f32(g, key, out);
    if (st == GKD_ERR_NOT_FOUND && fallback > 0) {
        *out = (float)fallback;
        return GKD_OK;
    }
    if (st == GKD_ERR_NOT_FOUND)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' is missing (needed for the model configuration)",
                             gkd_gguf_path(g), key);
    return st;
}

/* Refuses a key that, when present, must equal `want` for gkd's model to compute what llama.cpp does. */
static gkd_status arch_expect(const gkd_gguf *g, const char *arch, const char *suffix, int want,
                              const char *why) {
    char key[NAME_CAP];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    gkd_status st = gkd_gguf_get_i64(g, key, &v);
    if (st == GKD_ERR_NOT_FOUND) return GKD_OK;
    if (st != GKD_OK) return st;
    if (v != want)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' = %lld is not supported (gkd needs %d: %s)",
                             gkd_gguf_path(g), key, (long long)v, want, why);
    return GKD_OK;
}

/* <arch>.rope.scaling.type: absent, "none" or linear with factor 1 leave the rope unscaled; "linear" with
 * .rope.scaling.factor is gkd's GKD_ROPE_LINEAR; anything else (yarn, ...) is refused. Llama 3.1's llama3
 * scaling reaches GGUF as a rope_freqs.weight tensor instead (read_rope_freqs). */
static gkd_status read_rope_scaling(const gkd_gguf *g, const char *arch, gkd_model_config *cfg) {
    char key[NAME_CAP];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *type;
    gkd_status st = gkd_gguf_get_string(g, key, &type);
    if (st == GKD_ERR_NOT_FOUND) return GKD_OK;
    if (st != GKD_OK) return st;
    if (strcmp(type, "none") == 0) return GKD_OK;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    float factor;
    st = gkd_gguf_get_f32(g, key, &factor);
    if (st != GKD_OK && st != GKD_ERR_NOT_FOUND) return st;
    int has_factor = st == GKD_OK;
    if (has_factor && factor == 1.0f) return GKD_OK;
    if (strcmp(type, "linear") != 0)
        return gkd_error_set(
            GKD_ERR_FORMAT,
            "%s: rotary scaling '%s' is not supported (gkd computes linear scaling only from GGUF)",
            gkd_gguf_path(g), type);
    if (!has_factor)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' is missing (needed for linear rotary scaling)",
                             gkd_gguf_path(g), key);
    cfg->rope_type = GKD_ROPE_LINEAR;
    cfg->rope_factor = factor;
    return GKD_OK;
}

/* Llama 3.1's rope scaling as llama.cpp's converter stores it: rope_freqs.weight, head_dim/2 divisors d_i of
 * the inverse frequencies f_i = theta^(-2i/head_dim) (llama.cpp rotates by pos f_i / d_i), computed from
 * transformers' llama3 parameters, which the file does not keep. They are recovered here: the factor is the
 * largest divisor (the low-frequency band); in the band between, 1/d_i = (1 - s_i)/factor + s_i with
 * s_i = (L/w_i - low)/(high - low), linear in 1/w_i (w_i = 2 pi / f_i), so two of its points give
 * L/(high - low) and low/(high - low); only those ratios matter, and low = 1 (Llama 3.1's) fixes them. The
 * recovered parameters must give back every stored divisor to 1e-5, or the file is refused: gkd then keeps
 * the llama3 scaling (GKD_ROPE_LLAMA3), which checkpoints and Hugging Face exports carry. All divisors 1 is
 * the unscaled rope. */
static gkd_status read_rope_freqs(const gkd_gguf *g, const char *arch, gkd_model_config *cfg) {
    const char *path = gkd_gguf_path(g), *name = "rope_freqs.weight";
    const gkd_gguf_tensor_info *t = gkd_gguf_find_tensor(g, name);
    if (!t) return GKD_OK;
    const int hd = cfg->dim / cfg->n_heads, n = hd / 2;
    if (t->n_dims != 1 || t->dims[0] != (uint64_t)n)
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: tensor '%s' must hold head_dim / 2 = %d divisors (one dimension)", path,
                             name, n);
    if (cfg->rope_type != GKD_ROPE_DEFAULT)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s' and %s.rope.scaling.type both scale the rope",
                             path, name, arch);
    float *d = malloc((size_t)n * sizeof *d);
    if (!d) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory reading '%s'", path, name);
    gkd_status st = gkd_gguf_read_f32(g, name, d, (uint64_t)n);
    double factor = 0.0;
    int all_one = 1;
    for (int i = 0; st == GKD_OK && i < n; i++) {
        if (!(isfinite(d[i]) && d[i] > 0.0f))
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: '%s'[%d] = %g is not a positive divisor", path, name, i,
                               d[i]);
        factor = d[i] > factor ? d[i] : factor;
        all_one &= d[i] == 1.0f;
    }
    if (st != GKD_OK || all_one) {
        free(d);
        return st;
    }
    /* the transition band: divisors strictly between 1 and the factor; its first and last points */
    const double tol = 1e-5;
    int first = -1, last = -1;
    for (int i = 0; i < n; i++) {
        if (fabs(d[i] - 1.0) <= tol || fabs(d[i] - factor) <= tol * factor) continue;
        if (first < 0) first = i;
        last = i;
    }
    if (first < 0 || last == first) {
        free(d);
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: '%s' has %s divisor between 1 and %g: Llama 3's rope parameters cannot be "
                             "recovered from it (gkd reads only that scaling from rope_freqs)",
                             path, name, first < 0 ? "no" : "only one", factor);
    }
    gkd_model_config plain = *cfg;
    plain.rope_type = GKD_ROPE_DEFAULT;
    double x[2], y[2];
    int at[2] = {first, last};
    for (int k = 0; k < 2; k++) {
        double f = gkd_model_rope_inv_freq(&plain, hd, at[k]);
        x[k] = f / (2.0 * M_PI); /* 1 / w */
        y[k] = (1.0 / d[at[k]] - 1.0 / factor) / (1.0 - 1.0 / factor); /* s */
    }
    /* s = a/w + b, with a = L/(high-low) and b = -low/(high-low) */
    double a = (y[1] - y[0]) / (x[1] - x[0]), b = y[0] - a * x[0];
    gkd_model_config c = *cfg;
    c.rope_type = GKD_ROPE_LLAMA3;
    c.rope_factor = (float)factor;
    const double L = a > 0.0 && b < 0.0 ? -a / b : 0.0; /* low = 1 */
    int ok = L >= 0.5 && L <= GKD_MODEL_MAX_SEQ_LEN; /* checked before it is rounded to an int */
    if (ok) {
        c.rope_low_freq_factor = 1.0f;
        c.rope_high_freq_factor = (float)(1.0 + L / a);
        c.rope_original_max_seq_len = (int)lround(L);
    }
    for (int i = 0; ok && i < n; i++) {
        double want = gkd_model_rope_inv_freq(&plain, hd, i) / d[i], got = gkd_model_rope_inv_freq(&c, hd, i);
        ok = fabs(got - want) <= tol * want;
    }
    free(d);
    if (!ok)
        return gkd_error_set(
            GKD_ERR_FORMAT,
            "%s: the divisors of '%s' are not Llama 3's rope scaling for any parameters (gkd reads "
            "only that scaling from rope_freqs)",
            path, name);
    *cfg = c;
    return GKD_OK;
}

gkd_status gkd_gguf_model_config(const gkd_gguf *g, gkd_model_config *cfg) {
    if (!g || !cfg) return gkd_error_set(GKD_ERR_ARG, "gguf model config: NULL argument");
    const char *path = gkd_gguf_path(g), *arch;
    gkd_status st = gkd_gguf_get_string(g, "general.architecture", &arch);
    if (st == GKD_ERR_NOT_FOUND)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key 'general.architecture' is missing", path);
    if (st != GKD_OK) return st;
    if (strcmp(arch, "llama") != 0)
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: general.architecture is '%s'; gkd reads 'llama' models only", path, arch);
    memset(cfg, 0, sizeof *cfg);
    if ((st = arch_int(g, arch, "context_length", -1, &cfg->max_seq_len)) != GKD_OK ||
        (st = arch_int(g, arch, "embedding_length", -1, &cfg->dim)) != GKD_OK ||
        (st = arch_int(g, arch, "block_count", -1, &cfg->n_layers)) != GKD_OK ||
        (st = arch_int(g, arch, "feed_forward_length", -1, &cfg->hidden_dim)) != GKD_OK ||
        (st = arch_int(g, arch, "attention.head_count", -1, &cfg->n_heads)) != GKD_OK ||
        (st = arch_int(g, arch, "attention.head_count_kv", cfg->n_heads, &cfg->n_kv_heads)) != GKD_OK ||
        (st = arch_float(g, arch, "rope.freq_base", 10000.0, &cfg->rope_theta)) != GKD_OK ||
        (st = arch_float(g, arch, "attention.layer_norm_rms_epsilon", 0, &cfg->norm_eps)) != GKD_OK)
        return st;
    if (cfg->dim % cfg->n_heads != 0)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: embedding_length %d is not a multiple of head_count %d",
                             path, cfg->dim, cfg->n_heads);
    int head_dim = cfg->dim / cfg->n_heads;
    if ((st = arch_expect(g, arch, "attention.key_length", head_dim, "embedding_length / head_count")) !=
            GKD_OK ||
        (st = arch_expect(g, arch, "attention.value_length", head_dim, "embedding_length / head_count")) !=
            GKD_OK ||
        (st = arch_expect(g, arch, "rope.dimension_count", head_dim, "rotary embedding on whole heads")) !=
            GKD_OK ||
        (st = arch_expect(g, arch, "expert_count", 0, "dense feed-forward layers")) != GKD_OK ||
        (st = read_rope_scaling(g, arch, cfg)) != GKD_OK || (st = read_rope_freqs(g, arch, cfg)) != GKD_OK)
        return st;

    /* Vocabulary size: the token list is what ids index; the embedding must agree (checked at load). */
    uint64_t n_tokens;
    if (gkd_gguf_get_array_len(g, "tokenizer.ggml.tokens", &n_tokens, NULL) == GKD_OK) {
        if (n_tokens < 1 || n_tokens > INT_MAX)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries", path,
                                 (unsigned long long)n_tokens);
        cfg->vocab_size = (int)n_tokens;
    } else if ((st = arch_int(g, arch, "vocab_size", 0, &cfg->vocab_size)) != GKD_OK) {
        return st;
    }
    if (cfg->vocab_size == 0) {
        const gkd_gguf_tensor_info *embd = gkd_gguf_find_tensor(g, "token_embd.weight");
        if (!embd || embd->n_dims != 2 || embd->dims[1] > INT_MAX)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: no vocabulary size (no tokenizer.ggml.tokens, %s.vocab_size "
                                 "or 2-D token_embd.weight)",
                                 path, arch);
        cfg->vocab_size = (int)embd->dims[1];
    }
    cfg->tied_embeddings = gkd_gguf_find_tensor(g, "output.weight") == NULL;
    if (gkd_model_config_check(cfg) != GKD_OK) return gkd_error_prefix(GKD_ERR_FORMAT, "%s", path);
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Weights. */

/* Every tensor of the file must be one of m's, with m's shape in GGUF order ({in, out} for a matrix). */
static gkd_status check_tensors(const gkd_gguf *g, const gkd_model *m) {
    const char *path = gkd_gguf_path(g);
    for (int i = 0; i < gkd_gguf_tensor_count(g); i++) {
        const gkd_gguf_tensor_info *t = gkd_gguf_tensor_at(g, i);
        if (strcmp(t->name, "rope_freqs.weight") == 0) continue; /* the configuration's (read_rope_freqs) */
        char hf[NAME_CAP], qk;
        int idx = translate(t->name, 1, hf, sizeof hf, &qk) ? gkd_model_tensor_find(m, hf) : -1;
        if (idx < 0)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: tensor '%s' has no place in gkd's Llama model (unsupported; refusing "
                                 "to load the model without it)",
                                 path, t->name);
        const gkd_tensor_info *info = gkd_model_tensor(m, idx);
        uint64_t want[2] = {(uint64_t)(info->ndim == 2 ? info->shape[1] : info->shape[0]),
                            (uint64_t)info->shape[0]};
        int ok =
            t->n_dims == info->ndim && t->dims[0] == want[0] && (info->ndim == 1 || t->dims[1] == want[1]);
        if (!ok) {
            char got[96] = "", exp[64];
            for (int d = 0, n = 0; d < t->n_dims && n < (int)sizeof got; d++)
                n += snprintf(got + n, sizeof got - (size_t)n, "%s%llu", d ? ", " : "",
                              (unsigned long long)t->dims[d]);
            if (info->ndim == 2)
                snprintf(exp, sizeof exp, "%llu, %llu", (unsigned long long)want[0],
                         (unsigned long long)want[1]);
            else
                snprintf(exp, sizeof exp, "%llu", (unsigned long long)want[0]);
            return gkd_error_set(GKD_ERR_SHAPE, "%s: tensor '%s' has dims [%s], expected [%s] (for %s)", path,
                                 t->name, got, exp, info->name);
        }
    }
    for (int i = 0; i < gkd_model_num_tensors(m); i++) {
        const gkd_tensor_info *info = gkd_model_tensor(m, i);
        char name[NAME_CAP], qk;
        if (!translate(info->name, 0, name, sizeof name, &qk))
            return gkd_error_set(GKD_ERR_FORMAT, "%s: gkd's tensor %s has no GGUF name", path, info->name);
        if (!gkd_gguf_find_tensor(g, name))
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s' is missing (for %s)", path, name,
                                 info->name);
    }
    return GKD_OK;
}

gkd_status gkd_gguf_model_load_into(const gkd_gguf *g, gkd_model *m) {
    if (!g || !m) return gkd_error_set(GKD_ERR_ARG, "gguf model load_into: NULL argument");
    const char *path = gkd_gguf_path(g);
    gkd_model_config file_cfg;
    gkd_status st = gkd_gguf_model_config(g, &file_cfg);
    if (st != GKD_OK) return st;
    const gkd_model_config *cfg = gkd_model_get_config(m);
    if (!gkd_model_config_equal(cfg, &file_cfg))
        return gkd_error_set(GKD_ERR_SHAPE, "%s: the model's configuration differs from the file's", path);
    if ((st = check_tensors(g, m)) != GKD_OK) return st;

    size_t max_numel = 0;
    for (int i = 0; i < gkd_model_num_tensors(m); i++)
        if (gkd_model_tensor(m, i)->numel > max_numel) max_numel = gkd_model_tensor(m, i)->numel;
    float *scratch = malloc(max_numel * sizeof *scratch);
    if (!scratch)
        return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory for a %zu-float tensor", path, max_numel);
    const gkd_backend *be = gkd_model_backend(m);
    float *params = gkd_model_params(m);
    for (int i = 0; i < gkd_model_num_tensors(m) && st == GKD_OK; i++) {
        const gkd_tensor_info *info = gkd_model_tensor(m, i);
        char name[NAME_CAP], qk;
        translate(info->name, 0, name, sizeof name, &qk);
        st = gkd_gguf_read_f32(g, name, scratch, info->numel);
        if (st == GKD_OK && qk) {
            int heads = qk == 'q' ? cfg->n_heads : cfg->n_kv_heads;
            st = gkd_gguf_unpermute_qk(scratch, (int)info->shape[0], (int)info->shape[1], heads);
            if (st != GKD_OK) st = gkd_error_prefix(st, "%s: tensor '%s'", path, name);
        }
        for (size_t j = 0; st == GKD_OK && j < info->numel; j++)
            if (!isfinite(scratch[j]))
                st = gkd_error_set(GKD_ERR_FORMAT,
                                   "%s: tensor '%s' holds %g at element %zu (a diverged model?)", path, name,
                                   scratch[j], j);
        if (st == GKD_OK) be->copy_in(params + info->offset, scratch, info->numel * sizeof *scratch);
    }
    free(scratch);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * Tokenizer. */

/* tokenizer.ggml.pre names grouped as llama.cpp groups them, for the layouts gkd has scanners for. */
static const struct {
    const char *name;
    gkd_pretokenizer layout;
    int ignore_merges;
} pre_names[] = {
    {"gpt-2", GKD_PRETOKENIZER_GPT2, 0},
    {"phi-2", GKD_PRETOKENIZER_GPT2, 0},
    {"mpt", GKD_PRETOKENIZER_GPT2, 0},
    {"olmo", GKD_PRETOKENIZER_GPT2, 0},
    {"llama3", GKD_PRETOKENIZER_LLAMA3, 1},
    {"llama-v3", GKD_PRETOKENIZER_LLAMA3, 1},
    {"llama-bpe", GKD_PRETOKENIZER_LLAMA3, 1},
    {"falcon3", GKD_PRETOKENIZER_LLAMA3, 1},
    {"qwen2", GKD_PRETOKENIZER_QWEN2, 0},
    {"deepseek-r1-qwen", GKD_PRETOKENIZER_QWEN2, 0},
    {"stablelm2", GKD_PRETOKENIZER_QWEN2, 0},
    {"megrez", GKD_PRETOKENIZER_QWEN2, 0},
    {"smollm", GKD_PRETOKENIZER_STARCODER, 0},
    {"starcoder", GKD_PRETOKENIZER_STARCODER, 0},
    {"refact", GKD_PRETOKENIZER_STARCODER, 0},
    {"command-r", GKD_PRETOKENIZER_STARCODER, 0},
    {"codeshell", GKD_PRETOKENIZER_STARCODER, 0},
    {"exaone", GKD_PRETOKENIZER_STARCODER, 0},
    {"minerva-7b", GKD_PRETOKENIZER_STARCODER, 0},
};

gkd_status gkd_gguf_pretokenizer(const char *pre, gkd_pretokenizer *layout, int *ignore_merges) {
    if (!pre || !layout || !ignore_merges)
        return gkd_error_set(GKD_ERR_ARG, "gguf pretokenizer: NULL argument");
    for (size_t i = 0; i < sizeof pre_names / sizeof *pre_names; i++) {
        if (strcmp(pre, pre_names[i].name) == 0) {
            *layout = pre_names[i].layout;
            *ignore_merges = pre_names[i].ignore_merges;
            return GKD_OK;
        }
    }
    char known[512];
    size_t n = 0;
    for (size_t i = 0; i < sizeof pre_names / sizeof *pre_names && n < sizeof known; i++)
        n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", pre_names[i].name);
    return gkd_error_set(GKD_ERR_NOT_FOUND, "tokenizer.ggml.pre '%s' is not supported (supported: %s)", pre,
                         known);
}

/* llama.cpp's token types (tokenizer.ggml.token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static gkd_status token_kinds(const gkd_gguf *g, int n, gkd_token_kind *kinds) {
    const char *path = gkd_gguf_path(g), *key = "tokenizer.ggml.token_type";
    uint64_t len;
    gkd_status st = gkd_gguf_get_array_len(g, key, &len, NULL);
    if (st == GKD_ERR_NOT_FOUND) {
        for (int i = 0; i < n; i++) kinds[i] = GKD_TOKEN_KIND_NORMAL;
        return GKD_OK;
    }
    if (st != GKD_OK) return st;
    if (len != (uint64_t)n)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s has %llu entries, tokenizer.ggml.tokens %d", path, key,
                             (unsigned long long)len, n);
    int32_t *types = malloc(((size_t)n + 1) * sizeof *types);
    if (!types) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
    st = gkd_gguf_get_array_i32(g, key, types, len);
    for (int i = 0; i < n && st == GKD_OK; i++) {
        switch (types[i]) {
        case TT_NORMAL:
        case TT_UNUSED:
            kinds[i] = GKD_TOKEN_KIND_NORMAL;
            break;
        case TT_UNKNOWN:
        case TT_CONTROL:
            kinds[i] = GKD_TOKEN_KIND_SPECIAL;
            break;
        case TT_USER_DEFINED:
            kinds[i] = GKD_TOKEN_KIND_ADDED;
            break;
        default:
            st = gkd_error_set(GKD_ERR_FORMAT,
                               "%s: %s[%d] = %d is not supported in a byte-level BPE vocabulary%s", path, key,
                               i, (int)types[i], types[i] == TT_BYTE ? " (a byte-fallback token)" : "");
        }
    }
    free(types);
    return st;
}

static gkd_status set_roles(const gkd_gguf *g, gkd_tokenizer *tok) {
    static const struct {
        const char *key;
        gkd_token_role role;
    } roles[] = {
        {"tokenizer.ggml.bos_token_id", GKD_TOKEN_ROLE_BOS},
        {"tokenizer.ggml.eos_token_id", GKD_TOKEN_ROLE_EOS},
        {"tokenizer.ggml.padding_token_id", GKD_TOKEN_ROLE_PAD},
    };
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++) {
        int64_t id;
        gkd_status st = gkd_gguf_get_i64(g, roles[i].key, &id);
        if (st == GKD_ERR_NOT_FOUND) continue;
        if (st != GKD_OK) return st;
        if (id < 0 || id >= gkd_tokenizer_vocab_size(tok))
            return gkd_error_set(GKD_ERR_FORMAT, "%s: %s = %lld is outside the vocabulary (%d tokens)",
                                 gkd_gguf_path(g), roles[i].key, (long long)id,
                                 gkd_tokenizer_vocab_size(tok));
        gkd_tokenizer_set_role(tok, roles[i].role, (int)id);
    }
    return GKD_OK;
}

/* A string array as the tokenizer wants it (size_t lengths, int count). *lens: malloc'd, caller frees. */
static gkd_status string_array(const gkd_gguf *g, const char *key, const char *const **items, size_t **lens,
                               int *n) {
    const uint64_t *lens64;
    uint64_t count;
    gkd_status st = gkd_gguf_get_string_array(g, key, items, &lens64, &count);
    if (st == GKD_ERR_NOT_FOUND)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' is missing (needed for the tokenizer)",
                             gkd_gguf_path(g), key);
    if (st != GKD_OK) return st;
    if (count > INT_MAX)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s has too many entries", gkd_gguf_path(g), key);
    *lens = malloc(((size_t)count + 1) * sizeof **lens);
    if (!*lens) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", gkd_gguf_path(g));
    for (uint64_t i = 0; i < count; i++) (*lens)[i] = (size_t)lens64[i];
    *n = (int)count;
    return GKD_OK;
}

gkd_status gkd_gguf_tokenizer(const gkd_gguf *g, gkd_tokenizer **out) {
    if (!g || !out) return gkd_error_set(GKD_ERR_ARG, "gguf tokenizer: NULL argument");
    *out = NULL;
    const char *path = gkd_gguf_path(g), *model, *pre;
    gkd_status st = gkd_gguf_get_string(g, "tokenizer.ggml.model", &model);
    if (st == GKD_ERR_NOT_FOUND)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: no tokenizer (key 'tokenizer.ggml.model' is missing)",
                             path);
    if (st != GKD_OK) return st;
    if (strcmp(model, "gpt2") != 0)
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: tokenizer.ggml.model is '%s'; gkd's tokenizer is byte-level BPE ('gpt2')%s",
                             path, model, strcmp(model, "llama") == 0 ? ", not SentencePiece" : "");
    st = gkd_gguf_get_string(g, "tokenizer.ggml.pre", &pre);
    if (st == GKD_ERR_NOT_FOUND)
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: key 'tokenizer.ggml.pre' is missing (llama.cpp would fall back to its "
                             "'default' pre-tokenizer, which gkd does not have)",
                             path);
    if (st != GKD_OK) return st;
    gkd_tokenizer_vocab v = {.tokens_field = "tokenizer.ggml.tokens",
                             .merges_field = "tokenizer.ggml.merges"};
    if ((st = gkd_gguf_pretokenizer(pre, &v.pre_tokenizer, &v.ignore_merges)) != GKD_OK)
        return gkd_error_prefix(GKD_ERR_FORMAT, "%s", path);
    size_t *token_lens = NULL, *merge_lens = NULL;
    gkd_token_kind *kinds = NULL;
    st = string_array(g, "tokenizer.ggml.tokens", &v.tokens, &token_lens, &v.n_tokens);
    if (st == GKD_OK) st = string_array(g, "tokenizer.ggml.merges", &v.merges, &merge_lens, &v.n_merges);
    if (st == GKD_OK && !(kinds = malloc(((size_t)v.n_tokens + 1) * sizeof *kinds)))
        st = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
    if (st == GKD_OK) st = token_kinds(g, v.n_tokens, kinds);
    v.token_lens = token_lens;
    v.merge_lens = merge_lens;
    v.kinds = kinds;
    gkd_tokenizer *tok = NULL;
    if (st == GKD_OK) st = gkd_tokenizer_from_vocab(&v, path, &tok);
    if (st == GKD_OK) st = set_roles(g, tok);
    free(token_lens);
    free(merge_lens);
    free(kinds);
    if (st != GKD_OK) {
        gkd_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * The one call. */

gkd_status gkd_gguf_model_load(const char *path, const gkd_backend *be, gkd_model **model,
                               gkd_tokenizer **tokenizer) {
    return gkd_gguf_model_load_ex(path, be, GKD_MODEL_TRAINABLE, model, tokenizer);
}

gkd_status gkd_gguf_model_load_ex(const char *path, const gkd_backend *be, unsigned flags, gkd_model **model,
                                  gkd_tokenizer **tokenizer) {
    if (model) *model = NULL;
    if (tokenizer) *tokenizer = NULL;
    if (!path || (model && !be)) return gkd_error_set(GKD_ERR_ARG, "gguf model load: NULL argument");
    gkd_gguf *g = NULL;
    gkd_status st = gkd_gguf_open(path, &g);
    if (st != GKD_OK) return st;
    gkd_model *m = NULL;
    gkd_tokenizer *tok = NULL;
    if (tokenizer) st = gkd_gguf_tokenizer(g, &tok);
    if (st == GKD_OK && model) {
        gkd_model_config cfg;
        st = gkd_gguf_model_config(g, &cfg);
        if (st == GKD_OK && (st = gkd_model_create_ex(&cfg, be, flags, &m)) != GKD_OK)
            st = gkd_error_prefix(st, "%s", path);
        if (st == GKD_OK) st = gkd_gguf_model_load_into(g, m);
    }
    gkd_gguf_close(g);
    if (st != GKD_OK) {
        gkd_model_free(m);
        gkd_tokenizer_free(tok);
        return st;
    }
    if (model) *model = m;
    if (tokenizer) *tokenizer = tok;
    return GKD_OK;
}
