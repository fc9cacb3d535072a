/* gkd.task: datasets (core/text/data.h) as gkd.Task userdata. The prelude wraps summarize/translate to default
 * their path to the built-in sample (gkd.data_path).
 * Rules: the `template` and `terminator` options become the dataset's format (gkd_text_format), applied at
 * tokenisation; the example texts stay bare. */
#include <stdlib.h>
#include <string.h>

#include "bindings/lua_internal.h"

static void task_release(gkd_lua_task *t) {
    gkd_dataset_free(&t->ds);
    free(t->kind);
    free(t->path);
    free(t->prompt);
    free(t->target);
    free(t->source);
    t->kind = t->path = t->prompt = t->target = t->source = NULL;
}

static int task_gc(lua_State *L) {
    gkd_lua_task *t = luaL_checkudata(L, 1, GKD_LUA_TASK);
    gkd_lua_refuse_pinned(L, t->pins, GKD_LUA_TASK, "task");
    task_release(t);
    return 0;
}

static gkd_lua_task *new_task(lua_State *L) {
    return gkd_lua_new_handle(L, sizeof(gkd_lua_task), 0, GKD_LUA_TASK);
}

static int set_strings(lua_State *L, gkd_lua_task *t, const char *kind, const char *path, const char *prompt,
                       const char *target, const char *source) {
    t->kind = gkd_lua_strdup(kind);
    t->path = gkd_lua_strdup(path);
    t->prompt = gkd_lua_strdup(prompt);
    t->target = gkd_lua_strdup(target);
    t->source = gkd_lua_strdup(source);
    if (!t->kind || (path && !t->path) || (prompt && !t->prompt) || (target && !t->target) || (source && !t->source))
        return luaL_error(L, "out of memory");
    return 0;
}

static const char *const jsonl_keys[] = {"path",         "prompt",   "target",     "source",
                                         "max_examples", "template", "terminator", NULL};

/* The built-in chat templates: {name, prompt around "{prompt}", default terminator}. */
static const char *const builtin_templates[][3] = {
    {"chatml", "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>"},
};
static const char *const template_keys[] = {"prompt", "target_prefix", NULL};

/* Reads options `template` (a built-in name or {prompt = "...{prompt}...", target_prefix = " "}) and
 * `terminator` from the options table at 1 into t->ds.fmt. */
static void read_format(lua_State *L, gkd_lua_task *t, const char *fname) {
    const char *wrap = NULL, *target_prefix = NULL, *terminator = NULL;
    int top = lua_gettop(L);
    lua_getfield(L, 1, "template");
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *name = lua_tostring(L, -1);
        size_t i = 0, n = sizeof builtin_templates / sizeof *builtin_templates;
        while (i < n && strcmp(name, builtin_templates[i][0]) != 0) i++;
        if (i == n) luaL_error(L, "%s: option 'template': unknown template '%s' (built in: chatml)", fname, name);
        wrap = builtin_templates[i][1];
        terminator = builtin_templates[i][2];
    } else if (lua_istable(L, -1)) {
        int tt = lua_gettop(L);
        gkd_lua_check_keys(L, tt, fname, template_keys);
        wrap = gkd_lua_opt_string(L, tt, fname, "prompt", NULL);
        target_prefix = gkd_lua_opt_string(L, tt, fname, "target_prefix", NULL);
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "%s: option 'template' must be a template name (\"chatml\") or a table", fname);
    }
    terminator = gkd_lua_opt_string(L, 1, fname, "terminator", terminator);
    const char *at = wrap ? strstr(wrap, "{prompt}") : NULL;
    if (wrap && (!at || strstr(at + 1, "{prompt}")))
        luaL_error(L, "%s: option 'template': its prompt must hold \"{prompt}\" exactly once", fname);
    gkd_text_format *f = &t->ds.fmt;
    if (wrap) {
        if (at > wrap && (f->prompt_prefix = malloc((size_t)(at - wrap) + 1)))
            memcpy(f->prompt_prefix, wrap, (size_t)(at - wrap)), f->prompt_prefix[at - wrap] = '\0';
        f->prompt_suffix = at[8] ? gkd_lua_strdup(at + 8) : NULL;
        if ((at > wrap && !f->prompt_prefix) || (at[8] && !f->prompt_suffix)) luaL_error(L, "out of memory");
    }
    if (target_prefix && target_prefix[0] && !(f->target_prefix = gkd_lua_strdup(target_prefix)))
        luaL_error(L, "out of memory");
    if (terminator && terminator[0] && !(f->terminator = gkd_lua_strdup(terminator))) luaL_error(L, "out of memory");
    lua_settop(L, top);
}

/* Loads a JSONL task from the options table at 1 with the given defaults. */
static int load_jsonl(lua_State *L, const char *fname, const char *kind, const char *def_source, const char *def_target,
                      const char *def_prompt) {
    luaL_checktype(L, 1, LUA_TTABLE);
    gkd_lua_check_keys(L, 1, fname, jsonl_keys);
    const char *path = gkd_lua_opt_string(L, 1, fname, "path", NULL);
    if (!path) return luaL_error(L, "%s: option 'path' is required", fname);
    const char *source = gkd_lua_opt_string(L, 1, fname, "source", def_source);
    const char *target = gkd_lua_opt_string(L, 1, fname, "target", def_target);
    if (!target) return luaL_error(L, "%s: option 'target' (the output field) is required", fname);
    const char *prompt = gkd_lua_opt_string(L, 1, fname, "prompt", NULL);
    lua_Integer max_examples = gkd_lua_opt_int(L, 1, fname, "max_examples", 0);
    if (max_examples < 0) return luaL_error(L, "%s: option 'max_examples' must be >= 0", fname);
    if (!prompt) {
        if (def_prompt) {
            prompt = lua_pushfstring(L, def_prompt, source);
        } else if (source) {
            prompt = lua_pushfstring(L, "{%s}\n", source);
        } else {
            return luaL_error(L, "%s: give 'prompt' (a template with {field} placeholders) or 'source'", fname);
        }
    }
    gkd_lua_task *t = new_task(L);
    set_strings(L, t, kind, path, prompt, target, source);
    gkd_task_spec spec = {prompt, target, source, (int)max_examples};
    if (gkd_dataset_load_jsonl(path, &spec, &t->ds) != GKD_OK) return gkd_lua_fail(L);
    read_format(L, t, fname);
    return 1;
}

static int l_summarize(lua_State *L) {
    return load_jsonl(L, "gkd.task.summarize", "summarize", "document", "summary", "Summarize: {%s}\nSummary:");
}

static const char *language_name(const char *code) {
    static const char *const names[][2] = {{"en", "English"}, {"de", "German"}, {"it", "Italian"},
                                           {"fr", "French"},  {"es", "Spanish"}, {"pt", "Portuguese"}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(code, names[i][0]) == 0) return names[i][1];
    return code;
}

static int l_translate(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *fname = "gkd.task.translate";
    gkd_lua_check_keys(L, 1, fname, jsonl_keys);
    const char *source = gkd_lua_opt_string(L, 1, fname, "source", "en");
    const char *target = gkd_lua_opt_string(L, 1, fname, "target", "de");
    const char *prompt = lua_pushfstring(L, "Translate %s to %s: {%%s}\n%s:", language_name(source),
                                         language_name(target), language_name(target));
    /* the %%s survives one format: load_jsonl fills in the source field */
    return load_jsonl(L, fname, "translate", source, target, prompt);
}

static const char *const arithmetic_keys[] = {"n", "seed", "template", "terminator", NULL};

static int l_arithmetic(lua_State *L) {
    const char *fname = "gkd.task.arithmetic";
    if (lua_isnoneornil(L, 1)) lua_newtable(L), lua_replace(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    gkd_lua_check_keys(L, 1, fname, arithmetic_keys);
    lua_Integer n = gkd_lua_opt_int(L, 1, fname, "n", 1000);
    lua_Integer seed = gkd_lua_opt_int(L, 1, fname, "seed", 1);
    if (n < 1 || n > 10000000) return luaL_error(L, "%s: option 'n' must be in [1, 1e7], got %I", fname, n);
    if (seed < 0) return luaL_error(L, "%s: option 'seed' must be >= 0", fname);
    gkd_lua_task *t = new_task(L);
    set_strings(L, t, "arithmetic", NULL, NULL, NULL, NULL);
    t->seed = (uint64_t)seed;
    if (gkd_dataset_arithmetic((uint64_t)seed, (int)n, &t->ds) != GKD_OK) return gkd_lua_raise(L, fname);
    read_format(L, t, fname);
    return 1;
}

static int l_jsonl(lua_State *L) {
    return load_jsonl(L, "gkd.task.jsonl", "jsonl", NULL, NULL, NULL);
}

static void push_example(lua_State *L, const gkd_example *e) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e->source ? e->source : "");
    lua_setfield(L, -2, "source");
    lua_pushstring(L, e->prompt ? e->prompt : "");
    lua_setfield(L, -2, "prompt");
    lua_pushstring(L, e->target ? e->target : "");
    lua_setfield(L, -2, "target");
}

static gkd_lua_task *check_open_task(lua_State *L, int idx) {
    gkd_lua_task *t = gkd_lua_check_task(L, idx);
    if (!t->kind) luaL_argerror(L, idx, "task is closed");
    return t;
}

static int task_get(lua_State *L) {
    gkd_lua_task *t = check_open_task(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && i <= t->ds.n, 2, "example index out of range");
    push_example(L, &t->ds.items[i - 1]);
    return 1;
}

static int task_len(lua_State *L) {
    gkd_lua_task *t = check_open_task(L, 1);
    lua_pushinteger(L, t->ds.n);
    return 1;
}

static int copy_example(gkd_example *dst, const gkd_example *src) {
    dst->source = gkd_lua_strdup(src->source);
    dst->prompt = gkd_lua_strdup(src->prompt);
    dst->target = gkd_lua_strdup(src->target);
    dst->cue_len = src->cue_len;
    return (!src->source || dst->source) && (!src->prompt || dst->prompt) && (!src->target || dst->target);
}

/* task:split(held_out_fraction, seed) -> train, held_out: copies, so the task stays usable. */
static int task_split(lua_State *L) {
    gkd_lua_task *t = check_open_task(L, 1);
    double frac = luaL_checknumber(L, 2);
    lua_Integer seed = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, frac >= 0 && frac < 1, 2, "held-out fraction must be in [0, 1)");
    gkd_lua_task *a = new_task(L);
    gkd_lua_task *b = new_task(L);
    set_strings(L, a, t->kind, t->path, t->prompt, t->target, t->source);
    set_strings(L, b, t->kind, t->path, t->prompt, t->target, t->source);
    gkd_dataset copy = {calloc((size_t)(t->ds.n > 0 ? t->ds.n : 1), sizeof(gkd_example)), 0, {0}};
    if (!copy.items || gkd_text_format_copy(&copy.fmt, &t->ds.fmt) != GKD_OK) {
        free(copy.items);
        return luaL_error(L, "out of memory");
    }
    for (int i = 0; i < t->ds.n; i++) {
        copy.n = i + 1;
        if (!copy_example(&copy.items[i], &t->ds.items[i])) {
            gkd_dataset_free(&copy);
            return luaL_error(L, "out of memory");
        }
    }
    gkd_status st = gkd_dataset_split(&copy, frac, (uint64_t)seed, &a->ds, &b->ds);
    gkd_dataset_free(&copy);
    if (st != GKD_OK) return gkd_lua_raise(L, "task:split");
    return 2;
}

static int task_describe(lua_State *L) {
    gkd_lua_task *t = check_open_task(L, 1);
    lua_newtable(L);
    lua_pushstring(L, t->kind);
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, t->ds.n);
    lua_setfield(L, -2, "n");
    if (t->path) lua_pushstring(L, t->path), lua_setfield(L, -2, "path");
    if (t->prompt) lua_pushstring(L, t->prompt), lua_setfield(L, -2, "prompt");
    if (t->target) lua_pushstring(L, t->target), lua_setfield(L, -2, "target");
    if (t->source) lua_pushstring(L, t->source), lua_setfield(L, -2, "source");
    if (!t->path) lua_pushinteger(L, (lua_Integer)t->seed), lua_setfield(L, -2, "seed");
    const gkd_text_format *f = &t->ds.fmt;
    if (f->prompt_prefix || f->prompt_suffix || f->target_prefix) {
        lua_createtable(L, 0, 2);
        lua_pushfstring(L, "%s{prompt}%s", f->prompt_prefix ? f->prompt_prefix : "",
                        f->prompt_suffix ? f->prompt_suffix : "");
        lua_setfield(L, -2, "prompt");
        if (f->target_prefix) lua_pushstring(L, f->target_prefix), lua_setfield(L, -2, "target_prefix");
        lua_setfield(L, -2, "template");
    }
    if (f->terminator) lua_pushstring(L, f->terminator), lua_setfield(L, -2, "terminator");
    return 1;
}

/* task:tokens(i, tokenizer) -> ids, prompt_len: example i's training row as gkd.run builds it (format
 * applied, nothing cut), ids 0-based in a 1-based list; ids[prompt_len + 1] is the first target token. */
static int task_tokens(lua_State *L) {
    gkd_lua_task *t = check_open_task(L, 1);
    lua_Integer i = luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 1 && i <= t->ds.n, 2, "example index out of range");
    gkd_lua_tokenizer *tok = gkd_lua_check_tokenizer(L, 3);
    gkd_dataset one = {&t->ds.items[i - 1], 1, t->ds.fmt}; /* a view: never freed */
    gkd_token_dataset td;
    if (gkd_dataset_tokenize(&one, tok->tok, 1 << 30, 1 << 30, &td) != GKD_OK) return gkd_lua_raise(L, "task:tokens");
    const gkd_tokenized *r = &td.rows[0];
    lua_createtable(L, r->len, 0);
    for (int k = 0; k < r->len; k++) lua_pushinteger(L, r->ids[k]), lua_rawseti(L, -2, k + 1);
    lua_pushinteger(L, r->prompt_len);
    gkd_token_dataset_free(&td);
    return 2;
}

static int task_tostring(lua_State *L) {
    gkd_lua_task *t = luaL_checkudata(L, 1, GKD_LUA_TASK);
    if (!t->kind)
        lua_pushstring(L, "gkd.Task (closed)");
    else
        lua_pushfstring(L, "gkd.Task(%s, %d examples)", t->kind, t->ds.n);
    return 1;
}

static int task_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TNUMBER) return task_get(L);
    const char *k = luaL_checkstring(L, 2);
    gkd_lua_task *t = luaL_checkudata(L, 1, GKD_LUA_TASK);
    if (t->kind && strcmp(k, "n") == 0) {
        lua_pushinteger(L, t->ds.n);
        return 1;
    }
    if (t->kind && strcmp(k, "kind") == 0) {
        lua_pushstring(L, t->kind);
        return 1;
    }
    luaL_getmetatable(L, GKD_LUA_TASK);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

/* The examples' texts as a list (for training a tokenizer). */
int gkd_lua_task_texts(lua_State *L, int idx) {
    gkd_lua_task *t = check_open_task(L, idx);
    lua_createtable(L, t->ds.n * 2, 0);
    int k = 0;
    for (int i = 0; i < t->ds.n; i++) {
        lua_pushstring(L, t->ds.items[i].prompt);
        lua_rawseti(L, -2, ++k);
        lua_pushstring(L, t->ds.items[i].target);
        lua_rawseti(L, -2, ++k);
    }
    return 1;
}

static int task_texts(lua_State *L) {
    return gkd_lua_task_texts(L, 1);
}

void gkd_lua_open_task(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", task_gc},           {"__close", task_gc}, {"__len", task_len},
                                    {"__tostring", task_tostring}, {"__index", task_index}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"get", task_get},       {"split", task_split}, {"describe", task_describe},
                                       {"texts", task_texts},   {"tokens", task_tokens}, {"close", task_gc},
                                       {NULL, NULL}};
    luaL_newmetatable(L, GKD_LUA_TASK);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"summarize", l_summarize},   {"translate", l_translate}, {"arithmetic", l_arithmetic},
                                   {"jsonl", l_jsonl},           {NULL, NULL}};
    luaL_newlib(L, fns);
}
