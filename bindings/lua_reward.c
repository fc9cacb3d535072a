/* gkd.reward: the text metrics and rewards of reward/metrics.h on Lua strings, gkd.reward.metrics, the
 * registry of reward/registry.h as a Lua table, and gkd.reward.model(dir), a learned reward model
 * (reward/reward_model.h) as gkd.RewardModel userdata. Argument order follows the Lua API
 * (docs/lua-api.md): hypothesis first, except factual(source, output) and model scores (source, output) as
 * the design sketch writes them. */
#include <stdlib.h>
#include <string.h>

#include "bindings/lua_internal.h"
#include "core/tensor/backend.h"
#include "reward/metrics.h"
#include "reward/registry.h"
#include "reward/reward_model.h"

#define GKD_LUA_REWARD_MODEL "gkd.RewardModel"

typedef struct {
    gkd_reward_model *rm;
    char *path;
} lua_reward_model;

static void push_prf(lua_State *L, const gkd_prf *p) {
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, p->precision), lua_setfield(L, -2, "precision");
    lua_pushnumber(L, p->recall), lua_setfield(L, -2, "recall");
    lua_pushnumber(L, p->f), lua_setfield(L, -2, "f");
}

/* rouge(hyp, ref [, stem]) -> {rouge1 = f, rouge2 = f, rougeL = f, detail = {rouge1 = {precision, recall, f}, ...}} */
static int l_rouge(lua_State *L) {
    const char *hyp = luaL_checkstring(L, 1), *ref = luaL_checkstring(L, 2);
    int stem = lua_toboolean(L, 3);
    gkd_rouge_scores s;
    if (gkd_rouge_all(hyp, ref, stem, &s) != GKD_OK) return gkd_lua_raise(L, "gkd.reward.rouge");
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, s.rouge1.f), lua_setfield(L, -2, "rouge1");
    lua_pushnumber(L, s.rouge2.f), lua_setfield(L, -2, "rouge2");
    lua_pushnumber(L, s.rougeL.f), lua_setfield(L, -2, "rougeL");
    lua_createtable(L, 0, 3);
    push_prf(L, &s.rouge1), lua_setfield(L, -2, "rouge1");
    push_prf(L, &s.rouge2), lua_setfield(L, -2, "rouge2");
    push_prf(L, &s.rougeL), lua_setfield(L, -2, "rougeL");
    lua_setfield(L, -2, "detail");
    return 1;
}

static int l_rougeL(lua_State *L) {
    const char *hyp = luaL_checkstring(L, 1), *ref = luaL_checkstring(L, 2);
    gkd_prf p;
    if (gkd_rouge_l(hyp, ref, lua_toboolean(L, 3), &p) != GKD_OK) return gkd_lua_raise(L, "gkd.reward.rougeL");
    lua_pushnumber(L, p.f);
    return 1;
}

static int l_bleu(lua_State *L) {
    const char *hyp = luaL_checkstring(L, 1), *ref = luaL_checkstring(L, 2);
    gkd_bleu_result r;
    if (gkd_bleu_sentence(hyp, ref, NULL, &r) != GKD_OK) return gkd_lua_raise(L, "gkd.reward.bleu");
    lua_pushnumber(L, r.score);
    return 1;
}

/* Reads two equally long string lists at idx and idx + 1 into one userdata array (pushed): the first list's
 * strings, then the second's. The strings stay referenced by the argument tables; the names are the
 * lists' in the message for lists of different lengths. */
static int check_pairs_at(lua_State *L, int idx, const char ***first, const char ***second, const char *fname,
                          const char *first_name, const char *second_name) {
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_checktype(L, idx + 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, idx);
    if (luaL_len(L, idx + 1) != n)
        luaL_error(L, "%s: %I %s but %I %s", fname, n, first_name, luaL_len(L, idx + 1), second_name);
    if (n > (1 << 24)) luaL_error(L, "%s: %I pairs in one call (at most 2^24)", fname, n);
    const char **a = lua_newuserdatauv(L, sizeof(char *) * (size_t)(2 * n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        lua_rawgeti(L, idx + 1, i);
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: item %I is not a pair of strings", fname, i);
        a[i - 1] = lua_tostring(L, -2);
        a[n + i - 1] = lua_tostring(L, -1);
        lua_pop(L, 2);
    }
    *first = a;
    *second = a + n;
    return (int)n;
}

/* Hypotheses at 1, references at 2. */
static int check_pairs(lua_State *L, const char ***hyps, const char ***refs, const char *fname) {
    return check_pairs_at(L, 1, hyps, refs, fname, "hypotheses", "references");
}

static int l_corpus_bleu(lua_State *L) {
    const char **hyps, **refs;
    int n = check_pairs(L, &hyps, &refs, "gkd.reward.corpus_bleu");
    gkd_bleu_result r;
    if (gkd_bleu_corpus(hyps, refs, n, NULL, &r) != GKD_OK) return gkd_lua_raise(L, "gkd.reward.corpus_bleu");
    lua_pushnumber(L, r.score);
    return 1;
}

static int l_corpus_rouge(lua_State *L) {
    const char **hyps, **refs;
    int n = check_pairs(L, &hyps, &refs, "gkd.reward.corpus_rouge");
    gkd_rouge_scores s;
    if (gkd_rouge_corpus_mean(hyps, refs, n, lua_toboolean(L, 3), &s) != GKD_OK)
        return gkd_lua_raise(L, "gkd.reward.corpus_rouge");
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, s.rouge1.f), lua_setfield(L, -2, "rouge1");
    lua_pushnumber(L, s.rouge2.f), lua_setfield(L, -2, "rouge2");
    lua_pushnumber(L, s.rougeL.f), lua_setfield(L, -2, "rougeL");
    return 1;
}

/* factual(source, output [, package]) -> score, parts */
static int l_factual(lua_State *L) {
    const char *source = luaL_checkstring(L, 1), *output = luaL_checkstring(L, 2);
    const char *package = luaL_optstring(L, 3, NULL);
    gkd_factual_parts p;
    if (gkd_factual_score(output, source, package, &p) != GKD_OK) return gkd_lua_raise(L, "gkd.reward.factual");
    lua_pushnumber(L, p.score);
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, p.content_precision), lua_setfield(L, -2, "content_precision");
    lua_pushnumber(L, p.entity_precision), lua_setfield(L, -2, "entity_precision");
    lua_pushinteger(L, p.n_content), lua_setfield(L, -2, "content_words");
    lua_pushinteger(L, p.n_content_supported), lua_setfield(L, -2, "content_supported");
    lua_pushinteger(L, p.n_entities), lua_setfield(L, -2, "entities");
    lua_pushinteger(L, p.n_entities_supported), lua_setfield(L, -2, "entities_supported");
    return 2;
}

static int l_exact_match(lua_State *L) {
    lua_pushnumber(L, gkd_exact_match_number(luaL_checkstring(L, 1), luaL_checkstring(L, 2)));
    return 1;
}

static int l_number(lua_State *L) {
    double v;
    if (gkd_number_last(luaL_checkstring(L, 1), &v))
        lua_pushnumber(L, v);
    else
        luaL_pushfail(L);
    return 1;
}

static int l_words(lua_State *L) {
    lua_pushinteger(L, gkd_word_count(luaL_checkstring(L, 1)));
    return 1;
}

static int l_length_penalty(lua_State *L) {
    lua_Integer len = luaL_checkinteger(L, 1), lo = luaL_checkinteger(L, 2), hi = luaL_checkinteger(L, 3);
    double scale = luaL_optnumber(L, 4, 1.0);
    double pen;
    if (gkd_length_penalty((int)len, (int)lo, (int)hi, scale, &pen) != GKD_OK)
        return gkd_lua_raise(L, "gkd.reward.length_penalty");
    lua_pushnumber(L, pen);
    return 1;
}

/* distinct(outputs, n) -> distinct-n over the list */
static int l_distinct(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer order = luaL_optinteger(L, 2, 2);
    luaL_argcheck(L, order >= 1, 2, "order must be >= 1");
    lua_Integer n = luaL_len(L, 1);
    const char **outs = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "gkd.reward.distinct: item %I is not a string", i);
        outs[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    double d;
    if (gkd_distinct_n(outs, (int)n, (int)order, &d) != GKD_OK) return gkd_lua_raise(L, "gkd.reward.distinct");
    lua_pushnumber(L, d);
    return 1;
}

static lua_reward_model *check_rm(lua_State *L, int idx) {
    lua_reward_model *h = luaL_checkudata(L, idx, GKD_LUA_REWARD_MODEL);
    if (!h->rm) luaL_error(L, "gkd.RewardModel: the model is closed");
    return h;
}

static int rm_gc(lua_State *L) {
    lua_reward_model *h = luaL_checkudata(L, 1, GKD_LUA_REWARD_MODEL);
    gkd_reward_model_free(h->rm);
    free(h->path);
    h->rm = NULL;
    h->path = NULL;
    return 0;
}

/* gkd.reward.model(dir) -> gkd.RewardModel, or nil and the error (a missing or malformed model): what
 * `gkd reward-model train --out DIR` or gkd_reward_model_save wrote. Runs on the CPU. */
static int l_model(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    lua_reward_model *h = gkd_lua_new_handle(L, sizeof *h, 0, GKD_LUA_REWARD_MODEL);
    if (gkd_reward_model_load(dir, gkd_backend_cpu(), &h->rm) != GKD_OK) return gkd_lua_fail(L);
    h->path = gkd_lua_strdup(dir);
    return 1;
}

/* rm:score(source, output) -> number; rm:score({sources}, {outputs}) -> {numbers}, scored as one batch.
 * A factual-consistency model gives P(consistent) in (0, 1), a preference model its Bradley-Terry reward. */
static int rm_score(lua_State *L) {
    lua_reward_model *h = check_rm(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *src = luaL_checkstring(L, 2), *out = luaL_checkstring(L, 3);
        double p;
        if (gkd_reward_model_score(h->rm, &src, &out, 1, &p) != GKD_OK) return gkd_lua_raise(L, "rm:score");
        lua_pushnumber(L, p);
        return 1;
    }
    const char **sources, **outputs;
    int n = check_pairs_at(L, 2, &sources, &outputs, "rm:score", "sources", "outputs");
    double *scores = lua_newuserdatauv(L, sizeof(double) * (size_t)(n + 1), 0);
    if (n > 0 && gkd_reward_model_score(h->rm, sources, outputs, n, scores) != GKD_OK)
        return gkd_lua_raise(L, "rm:score");
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_pushnumber(L, scores[i - 1]);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

/* rm:describe() -> {kind = "factual" | "preference", path, vocab, dim, layers, heads, hidden, source_tokens,
 * summary_tokens} */
static int rm_describe(lua_State *L) {
    lua_reward_model *h = check_rm(L, 1);
    const gkd_reward_model_config *c = gkd_reward_model_get_config(h->rm);
    lua_createtable(L, 0, 9);
    lua_pushstring(L, c->preference ? "preference" : "factual"), lua_setfield(L, -2, "kind");
    lua_pushstring(L, h->path), lua_setfield(L, -2, "path");
    lua_pushinteger(L, c->vocab_size), lua_setfield(L, -2, "vocab");
    lua_pushinteger(L, c->dim), lua_setfield(L, -2, "dim");
    lua_pushinteger(L, c->n_layers), lua_setfield(L, -2, "layers");
    lua_pushinteger(L, c->n_heads), lua_setfield(L, -2, "heads");
    lua_pushinteger(L, c->hidden_dim), lua_setfield(L, -2, "hidden");
    lua_pushinteger(L, c->max_source_tokens), lua_setfield(L, -2, "source_tokens");
    lua_pushinteger(L, c->max_summary_tokens), lua_setfield(L, -2, "summary_tokens");
    return 1;
}

static int rm_tostring(lua_State *L) {
    lua_reward_model *h = luaL_checkudata(L, 1, GKD_LUA_REWARD_MODEL);
    if (!h->rm)
        lua_pushstring(L, "gkd.RewardModel (closed)");
    else
        lua_pushfstring(L, "gkd.RewardModel(%s, %s)",
                        gkd_reward_model_get_config(h->rm)->preference ? "preference" : "factual", h->path);
    return 1;
}

static void add_reward_model(lua_State *L) {
    static const luaL_Reg meta[] = {
        {"__gc", rm_gc}, {"__close", rm_gc}, {"__tostring", rm_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"score", rm_score}, {"describe", rm_describe}, {"close", rm_gc}, {NULL, NULL}};
    luaL_newmetatable(L, GKD_LUA_REWARD_MODEL);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

/* Pushes {[name] = {corpus, higher_is_better, reward, eval}} of every registry entry: what Lua code
 * checks names against, so no Lua list of names is written by hand. */
static void push_registry(lua_State *L) {
    int n = gkd_metric_count();
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        const gkd_metric *m = gkd_metric_at(i);
        lua_createtable(L, 0, 4);
        lua_pushboolean(L, m->corpus), lua_setfield(L, -2, "corpus");
        lua_pushboolean(L, m->higher_is_better), lua_setfield(L, -2, "higher_is_better");
        lua_pushboolean(L, gkd_metric_usable(m, GKD_METRIC_USE_REWARD)), lua_setfield(L, -2, "reward");
        lua_pushboolean(L, gkd_metric_usable(m, GKD_METRIC_USE_EVAL)), lua_setfield(L, -2, "eval");
        lua_setfield(L, -2, m->name);
    }
}

void gkd_lua_open_reward(lua_State *L) {
    static const luaL_Reg fns[] = {{"rouge", l_rouge},
                                   {"rougeL", l_rougeL},
                                   {"corpus_rouge", l_corpus_rouge},
                                   {"bleu", l_bleu},
                                   {"corpus_bleu", l_corpus_bleu},
                                   {"factual", l_factual},
                                   {"exact_match", l_exact_match},
                                   {"number", l_number},
                                   {"words", l_words},
                                   {"length_penalty", l_length_penalty},
                                   {"distinct", l_distinct},
                                   {"model", l_model},
                                   {NULL, NULL}};
    add_reward_model(L);
    luaL_newlib(L, fns);
    push_registry(L);
    lua_setfield(L, -2, "metrics");
}
