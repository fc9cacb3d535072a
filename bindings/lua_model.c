/* gkd.model: transformers (core/tensor/model.h) as gkd.Model userdata; checkpoints (core/format/checkpoint.h) and
 * sampling (core/tensor/sample.h). A model may carry a tokenizer (its uservalue 1), used to turn text prompts
 * into ids and samples back into text. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bindings/lua_internal.h"
#include "core/tensor/backend_select.h"
#include "core/format/checkpoint.h"
#include "core/format/gguf_model.h"
#include "core/tensor/model_derive.h"
#include "core/tensor/sample.h"

static int model_gc(lua_State *L) {
    gkd_lua_model *m = luaL_checkudata(L, 1, GKD_LUA_MODEL);
    gkd_lua_refuse_pinned(L, m->pins, GKD_LUA_MODEL, "model");
    gkd_model_free(m->m);
    free(m->path);
    m->m = NULL;
    m->path = NULL;
    return 0;
}

static gkd_lua_model *new_model(lua_State *L) {
    return gkd_lua_new_handle(L, sizeof(gkd_lua_model), 1, GKD_LUA_MODEL);
}

/* The device a model goes to: the option's value, else gkd.options.device (`gkd run --device`), else "cpu".
 * "cpu", "cuda", "auto" or "sim" (core/tensor/backend_select.h); raises naming the function when it is unavailable. */
static const gkd_backend *device_backend(lua_State *L, const char *fname, int opts, const char *key) {
    int top = lua_gettop(L);
    const char *device = NULL;
    if (opts && lua_istable(L, opts)) {
        if (lua_getfield(L, opts, key) == LUA_TSTRING) device = lua_tostring(L, -1);
        else if (!lua_isnil(L, -1)) return luaL_error(L, "%s: option '%s' must be a string", fname, key), NULL;
    }
    if (!device) {
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        if (lua_getfield(L, -1, "gkd") == LUA_TTABLE && lua_getfield(L, -1, "options") == LUA_TTABLE &&
            lua_getfield(L, -1, "device") == LUA_TSTRING)
            device = lua_tostring(L, -1);
    }
    const gkd_backend *be = gkd_backend_by_name(device ? device : "cpu");
    if (!be) return luaL_error(L, "%s: %s", fname, gkd_error_message()), NULL;
    lua_settop(L, top);
    return be;
}

static const char *const new_keys[] = {"layers",       "dim",         "heads",     "kv_heads", "hidden",
                                       "vocab",        "max_seq_len", "tied",      "seed",     "rope_theta",
                                       "rope_scaling", "norm_eps",    "tokenizer", "device",   NULL};

/* opts.rope_scaling = {type = "linear" | "llama3", factor =, low_freq_factor = 1, high_freq_factor = 4,
 * original_max_position_embeddings = max_seq_len} (transformers' names; core/tensor/model.h gkd_rope_type). */
static void read_rope_scaling(lua_State *L, int opts, const char *fname, gkd_model_config *c) {
    static const char *const keys[] = {
        "type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings", NULL};
    if (lua_getfield(L, opts, "rope_scaling") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "%s: option 'rope_scaling' must be a table", fname);
    int t = lua_gettop(L);
    gkd_lua_check_keys(L, t, fname, keys);
    const char *type = lua_getfield(L, t, "type") == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(type, "linear") == 0)
        c->rope_type = GKD_ROPE_LINEAR;
    else if (strcmp(type, "llama3") == 0)
        c->rope_type = GKD_ROPE_LLAMA3;
    else
        luaL_error(L, "%s: rope_scaling.type must be \"linear\" or \"llama3\"", fname);
    lua_pop(L, 1);
    c->rope_factor = (float)gkd_lua_opt_number(L, t, fname, "factor", 0.0);
    if (c->rope_type == GKD_ROPE_LLAMA3) {
        c->rope_low_freq_factor = (float)gkd_lua_opt_number(L, t, fname, "low_freq_factor", 1.0);
        c->rope_high_freq_factor = (float)gkd_lua_opt_number(L, t, fname, "high_freq_factor", 4.0);
        c->rope_original_max_seq_len =
            gkd_lua_opt_size(L, t, fname, "original_max_position_embeddings", c->max_seq_len);
    }
    lua_pop(L, 1);
}

static int l_new(lua_State *L) {
    const char *fname = "gkd.model.new";
    luaL_checktype(L, 1, LUA_TTABLE);
    gkd_lua_check_keys(L, 1, fname, new_keys);
    lua_getfield(L, 1, "tokenizer");
    gkd_lua_tokenizer *tok = NULL;
    if (!lua_isnil(L, -1)) tok = gkd_lua_check_tokenizer(L, -1);
    int tok_idx = lua_gettop(L);
    gkd_model_config c;
    memset(&c, 0, sizeof c);
    c.n_layers = gkd_lua_opt_size(L, 1, fname, "layers", 2);
    c.dim = gkd_lua_opt_size(L, 1, fname, "dim", 64);
    c.n_heads = gkd_lua_opt_size(L, 1, fname, "heads", 4);
    c.n_kv_heads = gkd_lua_opt_size(L, 1, fname, "kv_heads", c.n_heads);
    int def_hidden = ((8 * c.dim / 3 + 15) / 16) * 16;
    c.hidden_dim = gkd_lua_opt_size(L, 1, fname, "hidden", def_hidden);
    c.vocab_size = gkd_lua_opt_size(L, 1, fname, "vocab", tok ? gkd_tokenizer_vocab_size(tok->tok) : 0);
    if (c.vocab_size == 0) return luaL_error(L, "%s: give 'vocab' or 'tokenizer'", fname);
    if (tok && c.vocab_size < gkd_tokenizer_vocab_size(tok->tok))
        return luaL_error(L, "%s: vocab %d is smaller than the tokenizer's %d", fname, c.vocab_size,
                          gkd_tokenizer_vocab_size(tok->tok));
    c.max_seq_len = gkd_lua_opt_size(L, 1, fname, "max_seq_len", 256);
    c.tied_embeddings = gkd_lua_opt_bool(L, 1, fname, "tied", 1);
    c.rope_theta = (float)gkd_lua_opt_number(L, 1, fname, "rope_theta", 10000.0);
    read_rope_scaling(L, 1, fname, &c);
    c.norm_eps = (float)gkd_lua_opt_number(L, 1, fname, "norm_eps", 1e-5);
    lua_Integer seed = gkd_lua_opt_int(L, 1, fname, "seed", 1);
    if (seed < 0) return luaL_error(L, "%s: option 'seed' must be >= 0", fname);
    const gkd_backend *be = device_backend(L, fname, 1, "device");
    if (gkd_model_config_check(&c) != GKD_OK) return gkd_lua_raise(L, fname);
    gkd_lua_model *m = new_model(L);
    if (gkd_model_create(&c, be, &m->m) != GKD_OK) return gkd_lua_fail(L);
    gkd_model_init_weights(m->m, (uint64_t)seed);
    m->seed = (uint64_t)seed;
    if (tok) {
        lua_pushvalue(L, tok_idx);
        lua_setiuservalue(L, -2, 1);
    }
    return 1;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* gkd.model.load(path [, {tokenizer = tok, device = "cpu", inference = false, weights = "fp32"}]) -> model | nil,
 * message. inference = true: parameters only, no gradient block (a teacher): it cannot be trained. weights =
 * "bf16", "q8_0" or "q8_0_a8" (inference models only, CPU only) stores the matrices in that format (core/tensor/weights.h). */
static int l_load(lua_State *L) {
    static const char *const keys[] = {"tokenizer", "device", "inference", "weights", NULL};
    const char *fname = "gkd.model.load";
    const char *path = luaL_checkstring(L, 1);
    int has_opts = !lua_isnoneornil(L, 2);
    if (has_opts) {
        luaL_checktype(L, 2, LUA_TTABLE);
        gkd_lua_check_keys(L, 2, fname, keys);
    }
    const gkd_backend *be = device_backend(L, fname, has_opts ? 2 : 0, "device");
    unsigned flags = has_opts && gkd_lua_opt_bool(L, 2, fname, "inference", 0) ? GKD_MODEL_INFERENCE : 0;
    gkd_weight_format wf = GKD_WEIGHTS_FP32;
    if (has_opts &&
        gkd_weight_format_parse(gkd_lua_opt_string(L, 2, fname, "weights", "fp32"), "gkd.model.load: weights", &wf))
        return luaL_error(L, "%s", gkd_error_message());
    if (wf != GKD_WEIGHTS_FP32 && !(flags & GKD_MODEL_INFERENCE))
        return luaL_error(L, "gkd.model.load: weights = \"%s\" needs inference = true (a trainable model keeps fp32 "
                          "weights)", gkd_weight_format_name(wf));
    int tok_idx = 0;
    if (has_opts) {
        lua_getfield(L, 2, "tokenizer");
        if (!lua_isnil(L, -1)) {
            gkd_lua_check_tokenizer(L, -1);
            tok_idx = lua_gettop(L);
        }
    }
    gkd_lua_model *m = new_model(L);
    int mi = lua_gettop(L);
    if (gkd_gguf_file_is_gguf(path)) {
        /* A GGUF file (llama.cpp's format, e.g. SmolLM2) carries its tokenizer. */
        gkd_lua_tokenizer *t = lua_newuserdatauv(L, sizeof *t, 0);
        memset(t, 0, sizeof *t);
        luaL_setmetatable(L, GKD_LUA_TOKENIZER);
        if (gkd_gguf_model_load_ex(path, be, flags, &m->m, tok_idx ? NULL : &t->tok) != GKD_OK)
            return gkd_lua_fail(L);
        if (gkd_model_set_weight_format(m->m, wf) != GKD_OK) return gkd_lua_raise(L, fname);
        m->path = gkd_lua_strdup(path);
        if (!tok_idx) {
            t->path = gkd_lua_strdup(path);
            lua_setiuservalue(L, mi, 1);
        } else {
            lua_pop(L, 1);
            lua_pushvalue(L, tok_idx);
            lua_setiuservalue(L, mi, 1);
        }
        lua_settop(L, mi);
        return 1;
    }
    if (gkd_checkpoint_load_model_ex(path, be, flags, &m->m) != GKD_OK) return gkd_lua_fail(L);
    if (gkd_model_set_weight_format(m->m, wf) != GKD_OK) return gkd_lua_raise(L, fname);
    m->path = gkd_lua_strdup(path);
    if (tok_idx) {
        lua_pushvalue(L, tok_idx);
        lua_setiuservalue(L, mi, 1);
    } else if (is_dir(path)) {
        /* A Hugging Face directory brings its tokenizer along when it has one. */
        lua_pushfstring(L, "%s/tokenizer.json", path);
        struct stat st;
        if (stat(lua_tostring(L, -1), &st) == 0) {
            gkd_lua_tokenizer *t = lua_newuserdatauv(L, sizeof *t, 0);
            memset(t, 0, sizeof *t);
            luaL_setmetatable(L, GKD_LUA_TOKENIZER);
            if (gkd_tokenizer_load(lua_tostring(L, -2), &t->tok) != GKD_OK) return gkd_lua_fail(L);
            t->path = gkd_lua_strdup(lua_tostring(L, -2));
            lua_setiuservalue(L, mi, 1);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, mi);
    return 1;
}

/* gkd.model.from_layers(source, {layers = {i, ...} | n = N, device =, inference = false, tokenizer =}) -> model:
 * a model made of some of source's layers (1-based), every weight copied (core/tensor/model_derive.h); n = N
 * spreads N layers evenly, first and last included. The source's tokenizer travels along. */
static int l_from_layers(lua_State *L) {
    static const char *const keys[] = {"layers", "n", "device", "inference", "tokenizer", NULL};
    const char *fname = "gkd.model.from_layers";
    gkd_lua_model *src = gkd_lua_check_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    gkd_lua_check_keys(L, 2, fname, keys);
    int n_src = gkd_model_get_config(src->m)->n_layers;
    int *layers = lua_newuserdatauv(L, (size_t)n_src * 4 * sizeof(int) + sizeof(int), 0); /* freed by the GC */
    int n = 0;
    if (lua_getfield(L, 2, "layers") == LUA_TTABLE) {
        lua_Integer len = luaL_len(L, -1);
        if (len < 1 || len > 4 * (lua_Integer)n_src)
            return luaL_error(L, "%s: 'layers' must list 1 to %d layer numbers", fname, 4 * n_src);
        for (lua_Integer i = 1; i <= len; i++) {
            int isint = 0;
            lua_geti(L, -1, i);
            lua_Integer x = lua_tointegerx(L, -1, &isint);
            if (!isint || x < 1 || x > n_src)
                return luaL_error(L, "%s: layers[%I] is not a layer of the source (1..%d)", fname, i, n_src);
            layers[n++] = (int)x - 1;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "n") != LUA_TNIL) return luaL_error(L, "%s: give 'layers' or 'n', not both", fname);
        lua_pop(L, 1);
    } else {
        if (!lua_isnil(L, -1)) return luaL_error(L, "%s: 'layers' must be a list of layer numbers", fname);
        lua_pop(L, 1);
        lua_Integer want = gkd_lua_opt_int(L, 2, fname, "n", 0);
        if (want < 1 || want > n_src)
            return luaL_error(L, "%s: give 'layers' = {...} or 'n' in [1, %d]", fname, n_src);
        if (gkd_model_spread_layers(n_src, (int)want, layers) != GKD_OK) return gkd_lua_raise(L, fname);
        n = (int)want;
    }
    unsigned flags = gkd_lua_opt_bool(L, 2, fname, "inference", 0) ? GKD_MODEL_INFERENCE : 0;
    const gkd_backend *be = device_backend(L, fname, 2, "device");
    lua_getfield(L, 2, "tokenizer");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getiuservalue(L, 1, 1);
    } else {
        gkd_lua_check_tokenizer(L, -1);
    }
    int tok_idx = lua_gettop(L);
    gkd_lua_model *m = new_model(L);
    if (gkd_model_from_layers(src->m, layers, n, be, flags, &m->m) != GKD_OK) return gkd_lua_raise(L, fname);
    if (!lua_isnil(L, tok_idx)) {
        lua_pushvalue(L, tok_idx);
        lua_setiuservalue(L, -2, 1);
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* m:save(path): a .safetensors file, or else a Hugging Face directory (config.json + model.safetensors,
 * plus tokenizer.json when the model carries a tokenizer). true | nil, message. */
static int model_save(lua_State *L) {
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    const char *path = luaL_checkstring(L, 2);
    gkd_status st;
    if (ends_with(path, ".safetensors")) {
        st = gkd_checkpoint_save_model(m->m, path, NULL, NULL, 0);
    } else {
        st = gkd_checkpoint_save_hf_dir(m->m, path);
        if (st == GKD_OK && lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) {
            gkd_lua_tokenizer *t = gkd_lua_check_tokenizer(L, -1);
            const char *tp = lua_pushfstring(L, "%s/tokenizer.json", path);
            st = gkd_tokenizer_save(t->tok, tp);
        }
    }
    if (st != GKD_OK) return gkd_lua_fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* m:load_weights(path): loads a checkpoint's tensors (same configuration) into the model. */
static int model_load_weights(lua_State *L) {
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    if (gkd_checkpoint_load_into(m->m, luaL_checkstring(L, 2)) != GKD_OK) return gkd_lua_fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

static void push_config(lua_State *L, const gkd_model_config *c) {
    lua_createtable(L, 0, 10);
    lua_pushinteger(L, c->n_layers), lua_setfield(L, -2, "layers");
    lua_pushinteger(L, c->dim), lua_setfield(L, -2, "dim");
    lua_pushinteger(L, c->n_heads), lua_setfield(L, -2, "heads");
    lua_pushinteger(L, c->n_kv_heads), lua_setfield(L, -2, "kv_heads");
    lua_pushinteger(L, c->hidden_dim), lua_setfield(L, -2, "hidden");
    lua_pushinteger(L, c->vocab_size), lua_setfield(L, -2, "vocab");
    lua_pushinteger(L, c->max_seq_len), lua_setfield(L, -2, "max_seq_len");
    lua_pushboolean(L, c->tied_embeddings), lua_setfield(L, -2, "tied");
    lua_pushnumber(L, c->rope_theta), lua_setfield(L, -2, "rope_theta");
    lua_pushnumber(L, c->norm_eps), lua_setfield(L, -2, "norm_eps");
    if (c->rope_type != GKD_ROPE_DEFAULT) {
        lua_createtable(L, 0, 5);
        lua_pushstring(L, c->rope_type == GKD_ROPE_LINEAR ? "linear" : "llama3"), lua_setfield(L, -2, "type");
        lua_pushnumber(L, c->rope_factor), lua_setfield(L, -2, "factor");
        if (c->rope_type == GKD_ROPE_LLAMA3) {
            lua_pushnumber(L, c->rope_low_freq_factor), lua_setfield(L, -2, "low_freq_factor");
            lua_pushnumber(L, c->rope_high_freq_factor), lua_setfield(L, -2, "high_freq_factor");
            lua_pushinteger(L, c->rope_original_max_seq_len);
            lua_setfield(L, -2, "original_max_position_embeddings");
        }
        lua_setfield(L, -2, "rope_scaling");
    }
}

static int model_config(lua_State *L) {
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    push_config(L, gkd_model_get_config(m->m));
    return 1;
}

static int model_describe(lua_State *L) {
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    push_config(L, gkd_model_get_config(m->m));
    lua_pushinteger(L, (lua_Integer)gkd_model_num_params(m->m));
    lua_setfield(L, -2, "params");
    if (m->path) {
        lua_pushstring(L, m->path);
        lua_setfield(L, -2, "path");
    } else {
        lua_pushinteger(L, (lua_Integer)m->seed);
        lua_setfield(L, -2, "init_seed");
    }
    return 1;
}

/* The prompts argument as rows of ids: a string, a list of strings, one id list, or a list of id lists.
 * Pushes a userdata holding the ids; sets *text when the prompts were text. */
typedef struct {
    int B, P;
    int *ids;  /* (B,P) */
    int *lens; /* (B) */
} prompt_rows;

static gkd_lua_tokenizer *model_tokenizer(lua_State *L, int model_idx, int opts_idx) {
    gkd_lua_tokenizer *t = NULL;
    if (opts_idx) {
        lua_getfield(L, opts_idx, "tokenizer");
        if (!lua_isnil(L, -1)) t = gkd_lua_check_tokenizer(L, -1);
        lua_pop(L, 1); /* referenced by the options table */
    }
    if (!t) {
        if (lua_getiuservalue(L, model_idx, 1) == LUA_TUSERDATA) t = gkd_lua_check_tokenizer(L, -1);
        lua_pop(L, 1); /* referenced by the model */
    }
    return t;
}

static void read_prompts(lua_State *L, int idx, gkd_lua_tokenizer *tok, prompt_rows *r, int *text, int *single) {
    /* Normalise to a list at a fresh stack slot. */
    *single = 0;
    *text = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, idx);
        lua_rawseti(L, -2, 1);
        *single = 1;
    } else {
        luaL_checktype(L, idx, LUA_TTABLE);
        lua_rawgeti(L, idx, 1);
        int t = lua_type(L, -1);
        lua_pop(L, 1);
        if (t == LUA_TNUMBER) {
            lua_createtable(L, 1, 0);
            lua_pushvalue(L, idx);
            lua_rawseti(L, -2, 1);
            *single = 1;
        } else {
            lua_pushvalue(L, idx);
        }
    }
    int list = lua_gettop(L);
    lua_Integer B = luaL_len(L, list);
    if (B < 1) luaL_error(L, "model:sample: no prompts");
    /* Encode each row into a table of ids first. */
    lua_createtable(L, (int)B, 0);
    int rows = lua_gettop(L);
    int P = 1;
    for (lua_Integer b = 1; b <= B; b++) {
        lua_rawgeti(L, list, b);
        if (lua_type(L, -1) == LUA_TSTRING) {
            if (!tok) luaL_error(L, "model:sample: text prompts need a tokenizer (the model's, or opts.tokenizer)");
            *text = 1;
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            int *ids = NULL, n = 0;
            if (gkd_tokenizer_encode(tok->tok, s, len, &ids, &n) != GKD_OK) gkd_lua_raise(L, "model:sample");
            gkd_lua_hold(L, ids);
            lua_createtable(L, n, 0);
            for (int i = 0; i < n; i++) lua_pushinteger(L, ids[i]), lua_rawseti(L, -2, i + 1);
            lua_remove(L, -2);
        } else if (lua_istable(L, -1)) {
            lua_pushvalue(L, -1); /* both paths leave: the original, then its ids */
        } else {
            luaL_error(L, "model:sample: prompt %I is a %s (a string or a list of ids expected)", b,
                       luaL_typename(L, -1));
        }
        lua_Integer n = luaL_len(L, -1);
        if (n < 1) luaL_error(L, "model:sample: prompt %I is empty", b);
        if (n > P) P = (int)n;
        lua_rawseti(L, rows, b);
        lua_pop(L, 1);
    }
    r->B = (int)B;
    r->P = P;
    r->ids = lua_newuserdatauv(L, sizeof(int) * (size_t)B * (size_t)P + sizeof(int) * (size_t)B, 0);
    r->lens = r->ids + (size_t)B * P;
    for (int b = 0; b < r->B; b++) {
        lua_rawgeti(L, rows, b + 1);
        int n = (int)luaL_len(L, -1);
        for (int i = 0; i < P; i++) {
            int v = 0;
            if (i < n) {
                lua_rawgeti(L, -1, i + 1);
                int isint;
                lua_Integer x = lua_tointegerx(L, -1, &isint);
                if (!isint || x < 0 || x > 0x7fffffff) luaL_error(L, "model:sample: prompt %d, id %d is not a token id", b + 1, i + 1);
                v = (int)x;
                lua_pop(L, 1);
            }
            r->ids[(size_t)b * P + i] = v;
        }
        r->lens[b] = n;
        lua_pop(L, 1);
    }
}

static const char *const sample_keys[] = {"temperature", "top_k", "top_p", "max_new_tokens", "seed", "tokenizer", NULL};

/* The options table of a method called as m:f(x [, opts]): 3 when one is given (its keys checked against
 * `keys`), 0 when none is. */
static int options_at_3(lua_State *L, const char *fname, const char *const keys[]) {
    if (lua_isnoneornil(L, 3)) return 0;
    luaL_checktype(L, 3, LUA_TTABLE);
    gkd_lua_check_keys(L, 3, fname, keys);
    return 3;
}

/* m:sample(prompts [, opts]) -> outputs, details */
static int model_sample(lua_State *L) {
    const char *fname = "model:sample";
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    int opts = options_at_3(L, fname, sample_keys);
    if (!opts) {
        lua_settop(L, 2);
        lua_newtable(L);
        opts = 3;
    }
    gkd_lua_tokenizer *tok = model_tokenizer(L, 1, opts);
    gkd_sample_config sc = {0}; /* fields it does not set (row_stride) keep their defaults */
    sc.temperature = (float)gkd_lua_opt_number(L, opts, fname, "temperature", 1.0);
    sc.top_k = gkd_lua_opt_size(L, opts, fname, "top_k", 0);
    sc.top_p = (float)gkd_lua_opt_number(L, opts, fname, "top_p", 1.0);
    sc.max_new_tokens = gkd_lua_opt_size(L, opts, fname, "max_new_tokens", 32);
    lua_Integer seed = gkd_lua_opt_int(L, opts, fname, "seed", 1);
    sc.eos_id = tok ? gkd_tokenizer_role_id(tok->tok, GKD_TOKEN_ROLE_EOS) : -1;
    const gkd_model_config *mc = gkd_model_get_config(m->m);
    if (gkd_sample_config_check(&sc, mc->vocab_size) != GKD_OK) return gkd_lua_raise(L, fname);
    prompt_rows r;
    int text, single;
    read_prompts(L, 2, tok, &r, &text, &single);
    for (int i = 0; i < r.B * r.P; i++)
        if (r.ids[i] >= mc->vocab_size) return luaL_error(L, "%s: token id %d is outside the vocabulary", fname, r.ids[i]);
    if (r.P + sc.max_new_tokens - 1 > mc->max_seq_len)
        return luaL_error(L, "%s: prompt (%d tokens) + max_new_tokens (%d) exceed max_seq_len %d", fname, r.P,
                          sc.max_new_tokens, mc->max_seq_len);
    size_t N = (size_t)r.B * (size_t)sc.max_new_tokens;
    int *out = lua_newuserdatauv(L, N * sizeof(int) + (size_t)r.B * sizeof(int) + N * sizeof(float), 0);
    int *out_lens = out + N;
    float *logprobs = (float *)(out_lens + r.B);
    gkd_rng rng;
    gkd_rng_init(&rng, (uint64_t)seed, GKD_RNG_STREAM_SAMPLE);
    if (gkd_sample_generate(m->m, r.ids, r.lens, r.B, r.P, &sc, &rng, out, out_lens, logprobs) != GKD_OK)
        return gkd_lua_raise(L, fname);
    lua_createtable(L, r.B, 0);
    int outputs = lua_gettop(L);
    lua_createtable(L, r.B, 0);
    int details = lua_gettop(L);
    for (int b = 0; b < r.B; b++) {
        const int *ids = out + (size_t)b * sc.max_new_tokens;
        int n = out_lens[b];
        lua_createtable(L, 0, 3);
        lua_createtable(L, n, 0);
        for (int i = 0; i < n; i++) lua_pushinteger(L, ids[i]), lua_rawseti(L, -2, i + 1);
        lua_setfield(L, -2, "ids");
        lua_createtable(L, n, 0);
        for (int i = 0; i < n; i++)
            lua_pushnumber(L, logprobs[(size_t)b * sc.max_new_tokens + i]), lua_rawseti(L, -2, i + 1);
        lua_setfield(L, -2, "logprobs");
        int text_n = n;
        if (text_n > 0 && ids[text_n - 1] == sc.eos_id) text_n--;
        if (tok) {
            char *s = NULL;
            size_t len = 0;
            if (gkd_tokenizer_decode(tok->tok, ids, text_n, &s, &len) != GKD_OK) return gkd_lua_raise(L, fname);
            gkd_lua_hold(L, s);
            lua_pushlstring(L, s, len);
            lua_remove(L, -2);
            lua_setfield(L, -2, "text");
        }
        if (text) {
            lua_getfield(L, -1, "text");
        } else {
            lua_getfield(L, -1, "ids");
        }
        lua_rawseti(L, outputs, b + 1);
        lua_rawseti(L, details, b + 1);
    }
    if (single) {
        lua_rawgeti(L, outputs, 1);
        lua_rawgeti(L, details, 1);
        return 2;
    }
    lua_pushvalue(L, outputs);
    lua_pushvalue(L, details);
    return 2;
}

static const char *const score_keys[] = {"tokenizer", NULL};

/* The sequence of m:logprobs / m:logits: a list of token ids (0-based, as tokenizer:encode gives them and
 * m:sample takes them) or a text, encoded with the model's tokenizer or opts.tokenizer (special tokens are
 * not matched, as in m:sample). Raises on an id outside the vocabulary, a sequence shorter than `min_len`
 * or longer than max_seq_len. The ids live in a userdata left on the stack. */
static int score_ids(lua_State *L, const char *fname, int min_len, int **ids) {
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    int opts = options_at_3(L, fname, score_keys);
    int n;
    if (lua_type(L, 2) == LUA_TSTRING) {
        gkd_lua_tokenizer *tok = model_tokenizer(L, 1, opts);
        if (!tok) luaL_error(L, "%s: a text needs a tokenizer (the model's, or opts.tokenizer)", fname);
        size_t len;
        const char *text = lua_tolstring(L, 2, &len);
        if (gkd_tokenizer_encode(tok->tok, text, len, ids, &n) != GKD_OK) gkd_lua_raise(L, fname);
        gkd_lua_hold(L, *ids);
    } else {
        luaL_argexpected(L, lua_istable(L, 2), 2, "list of token ids or string");
        n = gkd_lua_check_ids(L, 2, ids);
    }
    const gkd_model_config *c = gkd_model_get_config(m->m);
    if (n < min_len || n > c->max_seq_len)
        luaL_error(L, "%s: the sequence has %d tokens; it must have %d to max_seq_len = %d", fname, n,
                   min_len, c->max_seq_len);
    for (int i = 0; i < n; i++)
        if ((*ids)[i] >= c->vocab_size)
            luaL_error(L, "%s: token %d (id %d) is outside the vocabulary (%d tokens)", fname, i + 1,
                       (*ids)[i], c->vocab_size);
    return n;
}

/* m:logprobs(tokens [, {tokenizer =}]) -> lp, total: lp[i] = log p(tokens[i+1] | tokens[1..i]) for
 * i = 1 .. n-1 (the first token is context only), total their sum (core/tensor/model.h gkd_model_logprobs). */
static int model_logprobs(lua_State *L) {
    const char *fname = "model:logprobs";
    int *ids;
    int n = score_ids(L, fname, 2, &ids);
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    double *lp = lua_newuserdatauv(L, (size_t)n * sizeof *lp, 0);
    if (gkd_model_logprobs(m->m, ids, n, lp) != GKD_OK) return gkd_lua_raise(L, fname);
    lua_createtable(L, n - 1, 0);
    double total = 0.0;
    for (int i = 0; i < n - 1; i++) {
        total += lp[i];
        lua_pushnumber(L, lp[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushnumber(L, total);
    return 2;
}

/* m:logits(tokens [, {tokenizer =}]) -> rows: rows[i] = the V logits of the token after tokens[1..i]
 * (rows[i][v + 1] for token id v). */
static int model_logits(lua_State *L) {
    const char *fname = "model:logits";
    int *ids;
    int n = score_ids(L, fname, 1, &ids);
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    const int V = gkd_model_get_config(m->m)->vocab_size;
    float *logits = lua_newuserdatauv(L, (size_t)n * V * sizeof *logits, 0);
    if (gkd_model_logits(m->m, ids, n, logits) != GKD_OK) return gkd_lua_raise(L, fname);
    lua_createtable(L, n, 0);
    for (int t = 0; t < n; t++) {
        lua_createtable(L, V, 0);
        for (int v = 0; v < V; v++) {
            lua_pushnumber(L, logits[(size_t)t * V + v]);
            lua_rawseti(L, -2, v + 1);
        }
        lua_rawseti(L, -2, t + 1);
    }
    return 1;
}

static int model_index(lua_State *L) {
    gkd_lua_model *m = luaL_checkudata(L, 1, GKD_LUA_MODEL);
    const char *k = luaL_checkstring(L, 2);
    if (!m->m) { /* a closed model still has its methods (close again is harmless) */
        luaL_getmetatable(L, GKD_LUA_MODEL);
        lua_getfield(L, -1, "methods");
        lua_getfield(L, -1, k);
        return 1;
    }
    const gkd_model_config *c = gkd_model_get_config(m->m);
    if (strcmp(k, "vocab") == 0) return lua_pushinteger(L, c->vocab_size), 1;
    if (strcmp(k, "params") == 0) return lua_pushinteger(L, (lua_Integer)gkd_model_num_params(m->m)), 1;
    if (strcmp(k, "dim") == 0) return lua_pushinteger(L, c->dim), 1;
    if (strcmp(k, "layers") == 0) return lua_pushinteger(L, c->n_layers), 1;
    if (strcmp(k, "max_seq_len") == 0) return lua_pushinteger(L, c->max_seq_len), 1;
    if (strcmp(k, "path") == 0) return lua_pushstring(L, m->path), 1;
    if (strcmp(k, "inference") == 0) return lua_pushboolean(L, gkd_model_is_inference(m->m)), 1;
    if (strcmp(k, "weights") == 0) return lua_pushstring(L, gkd_weight_format_name(gkd_model_weight_format(m->m))), 1;
    if (strcmp(k, "device") == 0) return lua_pushstring(L, gkd_model_backend(m->m)->name), 1;
    if (strcmp(k, "tokenizer") == 0) {
        lua_getiuservalue(L, 1, 1);
        return 1;
    }
    luaL_getmetatable(L, GKD_LUA_MODEL);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

/* Only the tokenizer may be set: m.tokenizer = tok (or nil). */
static int model_newindex(lua_State *L) {
    gkd_lua_model *m = gkd_lua_check_model(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "tokenizer") != 0) return luaL_error(L, "gkd.Model: field '%s' is read-only", k);
    if (!lua_isnil(L, 3)) {
        gkd_lua_tokenizer *t = gkd_lua_check_tokenizer(L, 3);
        if (gkd_tokenizer_vocab_size(t->tok) > gkd_model_get_config(m->m)->vocab_size)
            return luaL_error(L, "gkd.Model: the tokenizer's vocabulary (%d) is larger than the model's (%d)",
                              gkd_tokenizer_vocab_size(t->tok), gkd_model_get_config(m->m)->vocab_size);
    }
    lua_settop(L, 3);
    lua_setiuservalue(L, 1, 1);
    return 0;
}

static int model_tostring(lua_State *L) {
    gkd_lua_model *m = luaL_checkudata(L, 1, GKD_LUA_MODEL);
    if (!m->m) {
        lua_pushstring(L, "gkd.Model (closed)");
        return 1;
    }
    const gkd_model_config *c = gkd_model_get_config(m->m);
    lua_pushfstring(L, "gkd.Model(%d layers, dim %d, %d heads, vocab %d, %I params)", c->n_layers, c->dim, c->n_heads,
                    c->vocab_size, (lua_Integer)gkd_model_num_params(m->m));
    return 1;
}

void gkd_lua_open_model(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", model_gc},         {"__close", model_gc},
                                    {"__tostring", model_tostring}, {"__index", model_index},
                                    {"__newindex", model_newindex}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"save", model_save},
                                       {"sample", model_sample},
                                       {"logprobs", model_logprobs},
                                       {"logits", model_logits},
                                       {"config", model_config},
                                       {"describe", model_describe},
                                       {"load_weights", model_load_weights},
                                       {"close", model_gc},
                                       {NULL, NULL}};
    luaL_newmetatable(L, GKD_LUA_MODEL);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"new", l_new}, {"load", l_load}, {"from_layers", l_from_layers}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
