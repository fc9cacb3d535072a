/* gkd.tokenizer: byte-level BPE (core/text/tokenizer.h) as gkd.Tokenizer userdata. */
#include <stdlib.h>
#include <string.h>

#include "bindings/lua_internal.h"

static int tok_gc(lua_State *L) {
    gkd_lua_tokenizer *t = luaL_checkudata(L, 1, GKD_LUA_TOKENIZER);
    gkd_lua_refuse_pinned(L, t->pins, GKD_LUA_TOKENIZER, "tokenizer");
    gkd_tokenizer_free(t->tok);
    free(t->path);
    t->tok = NULL;
    t->path = NULL;
    return 0;
}

static gkd_lua_tokenizer *new_tok(lua_State *L) {
    return gkd_lua_new_handle(L, sizeof(gkd_lua_tokenizer), 0, GKD_LUA_TOKENIZER);
}

static const char *const train_keys[] = {"texts", "task", "vocab", "specials", NULL};

/* gkd.tokenizer.train{texts = {...} | task = gkd.Task, vocab = 512, specials = {"<|endoftext|>", "<|pad|>"}} */
static int l_train(lua_State *L) {
    const char *fname = "gkd.tokenizer.train";
    luaL_checktype(L, 1, LUA_TTABLE);
    gkd_lua_check_keys(L, 1, fname, train_keys);
    lua_Integer vocab = gkd_lua_opt_int(L, 1, fname, "vocab", 512);
    if (vocab < 258 || vocab > 1000000) return luaL_error(L, "%s: option 'vocab' must be in [258, 1e6], got %I", fname, vocab);
    lua_getfield(L, 1, "texts");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, 1, "task");
        if (lua_isnil(L, -1)) return luaL_error(L, "%s: give 'texts' (a list of strings) or 'task'", fname);
        int task = lua_gettop(L);
        gkd_lua_task_texts(L, task);
        lua_remove(L, task);
    } else if (!lua_istable(L, -1)) {
        return luaL_error(L, "%s: option 'texts' must be a table of strings, got %s", fname, luaL_typename(L, -1));
    }
    int texts_idx = lua_gettop(L);
    lua_Integer n = luaL_len(L, texts_idx);
    if (n < 1) return luaL_error(L, "%s: no texts to train on", fname);
    const char **texts = lua_newuserdatauv(L, sizeof(char *) * (size_t)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, texts_idx, i);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "%s: texts[%I] is not a string", fname, i);
        texts[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the string stays referenced by the texts table */
    }
    const char *default_specials[] = {"<|endoftext|>", "<|pad|>"};
    const char **specials = default_specials;
    int n_specials = 2;
    lua_getfield(L, 1, "specials");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        int sidx = lua_gettop(L);
        n_specials = (int)luaL_len(L, sidx);
        specials = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n_specials + 1), 0);
        for (int i = 1; i <= n_specials; i++) {
            lua_rawgeti(L, sidx, i);
            if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "%s: specials[%d] is not a string", fname, i);
            specials[i - 1] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
    }
    gkd_lua_tokenizer *t = new_tok(L);
    if (gkd_tokenizer_train(texts, (int)n, (int)vocab, specials, n_specials, &t->tok) != GKD_OK)
        return gkd_lua_raise(L, fname);
    return 1;
}

static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    gkd_lua_tokenizer *t = new_tok(L);
    if (gkd_tokenizer_load(path, &t->tok) != GKD_OK) return gkd_lua_fail(L);
    t->path = gkd_lua_strdup(path);
    return 1;
}

/* tok:encode(text [, special]) -> {ids}; special = true matches added tokens such as <|endoftext|>. */
static int tok_encode(lua_State *L) {
    gkd_lua_tokenizer *t = gkd_lua_check_tokenizer(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int special = lua_toboolean(L, 3);
    int *ids = NULL, n = 0;
    gkd_status st = special ? gkd_tokenizer_encode_special(t->tok, s, len, &ids, &n)
                            : gkd_tokenizer_encode(t->tok, s, len, &ids, &n);
    if (st != GKD_OK) return gkd_lua_raise(L, "tokenizer:encode");
    gkd_lua_hold(L, ids);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* Reads a table of ids at idx into a userdata buffer (pushed); returns its length. */
int gkd_lua_check_ids(lua_State *L, int idx, int **out) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    int *ids = lua_newuserdatauv(L, sizeof(int) * (size_t)(n > 0 ? n : 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 0 || v > 0x7fffffff) luaL_error(L, "ids[%I] is not a token id", i);
        ids[i - 1] = (int)v;
        lua_pop(L, 1);
    }
    *out = ids;
    return (int)n;
}

static int tok_decode(lua_State *L) {
    gkd_lua_tokenizer *t = gkd_lua_check_tokenizer(L, 1);
    int *ids;
    int n = gkd_lua_check_ids(L, 2, &ids);
    char *text = NULL;
    size_t len = 0;
    if (gkd_tokenizer_decode(t->tok, ids, n, &text, &len) != GKD_OK) return gkd_lua_raise(L, "tokenizer:decode");
    gkd_lua_hold(L, text);
    lua_pushlstring(L, text, len);
    return 1;
}

static int tok_save(lua_State *L) {
    gkd_lua_tokenizer *t = gkd_lua_check_tokenizer(L, 1);
    const char *path = luaL_checkstring(L, 2);
    if (gkd_tokenizer_save(t->tok, path) != GKD_OK) return gkd_lua_fail(L);
    char *copy = gkd_lua_strdup(path);
    if (copy) {
        free(t->path);
        t->path = copy;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int tok_id(lua_State *L) {
    gkd_lua_tokenizer *t = gkd_lua_check_tokenizer(L, 1);
    int id = gkd_tokenizer_token_id(t->tok, luaL_checkstring(L, 2));
    if (id < 0) luaL_pushfail(L);
    else lua_pushinteger(L, id);
    return 1;
}

static int tok_describe(lua_State *L) {
    gkd_lua_tokenizer *t = gkd_lua_check_tokenizer(L, 1);
    lua_newtable(L);
    lua_pushinteger(L, gkd_tokenizer_vocab_size(t->tok));
    lua_setfield(L, -2, "vocab");
    if (t->path) lua_pushstring(L, t->path), lua_setfield(L, -2, "path");
    return 1;
}

static int tok_index(lua_State *L) {
    gkd_lua_tokenizer *t = luaL_checkudata(L, 1, GKD_LUA_TOKENIZER);
    const char *k = luaL_checkstring(L, 2);
    if (!t->tok) {
        luaL_getmetatable(L, GKD_LUA_TOKENIZER);
        lua_getfield(L, -1, "methods");
        lua_getfield(L, -1, k);
        return 1;
    }
    static const char *const roles[] = {"eos", "bos", "pad"};
    if (strcmp(k, "vocab") == 0) {
        lua_pushinteger(L, gkd_tokenizer_vocab_size(t->tok));
        return 1;
    }
    for (int r = 0; r < GKD_TOKEN_ROLE_COUNT; r++)
        if (strcmp(k, roles[r]) == 0) {
            int id = gkd_tokenizer_role_id(t->tok, (gkd_token_role)r);
            if (id < 0) lua_pushnil(L);
            else lua_pushinteger(L, id);
            return 1;
        }
    if (strcmp(k, "path") == 0) {
        lua_pushstring(L, t->path);
        return 1;
    }
    luaL_getmetatable(L, GKD_LUA_TOKENIZER);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int tok_tostring(lua_State *L) {
    gkd_lua_tokenizer *t = luaL_checkudata(L, 1, GKD_LUA_TOKENIZER);
    if (!t->tok)
        lua_pushstring(L, "gkd.Tokenizer (closed)");
    else
        lua_pushfstring(L, "gkd.Tokenizer(vocab %d)", gkd_tokenizer_vocab_size(t->tok));
    return 1;
}

void gkd_lua_open_tokenizer(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", tok_gc},       {"__close", tok_gc}, {"__tostring", tok_tostring},
                                    {"__index", tok_index}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"encode", tok_encode},     {"decode", tok_decode}, {"save", tok_save},
                                       {"id", tok_id},             {"describe", tok_describe},
                                       {"close", tok_gc},          {NULL, NULL}};
    luaL_newmetatable(L, GKD_LUA_TOKENIZER);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"train", l_train}, {"load", l_load}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
