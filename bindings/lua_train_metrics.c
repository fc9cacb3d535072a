/* The run's reward and evaluation text metrics for gkd._train (see lua_train.h): cfg.reward read into a
 * gkd_reward (a Lua function, a built-in or a weighted sum of built-ins), cfg.eval.metrics into text
 * metrics the trainer calls at each evaluation (built-ins, corpus metrics, Lua functions).
 * Rules: a corpus metric (BLEU, distinct-n) collects the evaluation's outputs and reports 0 per output;
 * the metric sink replaces its mean with the corpus value. The first metric also records up to
 * samples_per_eval of the evaluation's outputs in the store. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/lua_train.h"
#include "reward/registry.h"
#include "reward/reward_model.h"
#include "reward/reward.h"

void gkd_lua_train_free_corpus(text_metric *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->hyps[i]);
        if (m->refs) free(m->refs[i]);
    }
    m->n = 0;
}

/* ---- a Lua reward ---- */

typedef struct {
    train_state *s;
    const gkd_reward_sample *samples;
    int n;
    double *scores;
} lua_reward_call;

/* Calls the reward function once per sample, inside one protected call for the batch. */
static int call_reward(lua_State *L) {
    lua_reward_call *c = lua_touserdata(L, 1);
    for (int i = 0; i < c->n; i++) {
        const gkd_reward_sample *x = &c->samples[i];
        gkd_lua_callback_restart(L); /* the limit is per sample */
        gkd_lua_train_push_kept(L, c->s, c->s->reward_ref);
        lua_createtable(L, 0, 4);
        lua_pushstring(L, x->source ? x->source : ""), lua_setfield(L, -2, "source");
        lua_pushstring(L, x->prompt ? x->prompt : ""), lua_setfield(L, -2, "prompt");
        lua_pushstring(L, x->output ? x->output : ""), lua_setfield(L, -2, "output");
        lua_pushstring(L, x->reference ? x->reference : ""), lua_setfield(L, -2, "reference");
        lua_call(L, 1, 1); /* inside gkd_lua_pcall: errors reach its traceback handler */
        if (lua_type(L, -1) != LUA_TNUMBER)
            return luaL_error(L, "returned %s for sample %d (a number expected)", luaL_typename(L, -1), i + 1);
        c->scores[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pushnumber(L, 0);
    return 1;
}

static gkd_status lua_reward_score(gkd_reward *r, const gkd_reward_sample *samples, int n, double *scores) {
    train_state *s = r->ctx;
    lua_reward_call c = {s, samples, n, scores};
    double ignored;
    /* gkd_reward_score prefixes the reward's name ("reward 'reward'") to what fails here. */
    return gkd_lua_train_call(s, call_reward, &c, 0, "Lua function", &ignored) ? GKD_OK : GKD_ERR_CALLBACK;
}

/* The reward at cfg.reward: a Lua function(sample), a built-in name, or {name = weight, ...} of
 * built-ins summed. NULL when absent. */
void gkd_lua_train_read_reward(lua_State *L, int cfg, int state_idx, train_state *s) {
    int t = lua_getfield(L, cfg, "reward");
    gkd_status st = GKD_OK;
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (t == LUA_TFUNCTION) {
        s->reward_ref = gkd_lua_train_keep(L, state_idx, -1);
        snprintf(s->reward_name, sizeof s->reward_name, "reward");
        st = gkd_reward_custom("'reward'", lua_reward_score, s, NULL, &s->reward);
    } else if (t == LUA_TSTRING) {
        const char *name = lua_tostring(L, -1);
        snprintf(s->reward_name, sizeof s->reward_name, "%s", name);
        if (strncmp(name, "model:", 6) == 0) {
            /* A learned reward model saved by gkd_reward_model_save (reward/reward_model.h): P(consistent), or
             * a preference model's reward z. */
            gkd_reward_model *rm = NULL;
            st = gkd_reward_model_load(name + 6, gkd_backend_cpu(), &rm);
            if (st == GKD_OK) st = gkd_reward_model_as_reward(rm, 1, &s->reward);
            else gkd_reward_model_free(rm);
        } else {
            st = gkd_reward_builtin(name, &s->reward);
        }
    } else if (t == LUA_TTABLE) {
        int idx = lua_gettop(L);
        gkd_reward *parts[16];
        double weights[16];
        int n = 0;
        lua_pushnil(L);
        while (st == GKD_OK && lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TNUMBER || n == 16) {
                for (int i = 0; i < n; i++) gkd_reward_free(parts[i]);
                luaL_error(L, "gkd.run: reward as a table is {name = weight, ...} of built-in rewards (at most 16)");
            }
            weights[n] = lua_tonumber(L, -1);
            st = gkd_reward_builtin(lua_tostring(L, -2), &parts[n]);
            if (st == GKD_OK) n++;
            lua_pop(L, 1);
        }
        if (st == GKD_OK) st = gkd_reward_sum(parts, weights, n, -INFINITY, INFINITY, &s->reward);
        else
            for (int i = 0; i < n; i++) gkd_reward_free(parts[i]);
        snprintf(s->reward_name, sizeof s->reward_name, "sum");
    } else {
        luaL_error(L, "gkd.run: 'reward' must be a function, a built-in reward name or {name = weight}");
    }
    lua_pop(L, 1);
    if (st != GKD_OK) gkd_lua_raise(L, "gkd.run: reward");
}

/* ---- evaluation text metrics ---- */

static int push_corpus(text_metric *m, const char *hyp, const char *ref) {
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        char **h = realloc(m->hyps, (size_t)cap * sizeof *h);
        if (!h) return 0;
        m->hyps = h;
        char **r = realloc(m->refs, (size_t)cap * sizeof *r);
        if (!r) return 0;
        m->refs = r;
        m->cap = cap;
    }
    m->hyps[m->n] = gkd_lua_strdup(hyp);
    m->refs[m->n] = gkd_lua_strdup(ref);
    if (!m->hyps[m->n] || !m->refs[m->n]) {
        free(m->hyps[m->n]);
        free(m->refs[m->n]);
        return 0;
    }
    m->n++;
    return 1;
}

typedef struct {
    text_metric *m;
    const char *output;
    const gkd_example *example;
} lua_metric_call;

static int call_metric(lua_State *L) {
    lua_metric_call *c = lua_touserdata(L, 1);
    gkd_lua_train_push_kept(L, c->m->s, c->m->ref);
    lua_pushstring(L, c->output);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, c->example->source ? c->example->source : ""), lua_setfield(L, -2, "source");
    lua_pushstring(L, c->example->prompt ? c->example->prompt : ""), lua_setfield(L, -2, "prompt");
    lua_pushstring(L, c->example->target ? c->example->target : ""), lua_setfield(L, -2, "target");
    lua_call(L, 2, 1);
    if (lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L, "metric '%s' returned %s (a number expected)", c->m->name, luaL_typename(L, -1));
    return 1;
}

static void record_sample(train_state *s, const char *output, const gkd_example *ex) {
    if (s->samples_recorded >= s->samples_per_eval || !s->sink.store) return;
    gkd_store_sample_row row;
    memset(&row, 0, sizeof row);
    row.run_id = s->sink.run_id;
    row.step = gkd_trainer_current_step(s->trainer);
    row.split = "held_out";
    row.prompt = ex->prompt;
    row.output = output;
    row.reward = NAN;
    if (gkd_store_sample(s->sink.store, &row) == GKD_OK) s->samples_recorded++;
}

double gkd_lua_train_text_metric(void *ctx, const char *output, const gkd_example *ex, int *failed) {
    text_metric *m = ctx;
    train_state *s = m->s;
    if (m->records) record_sample(s, output, ex);
    if (!m->def) {
        lua_metric_call c = {m, output, ex};
        char what[96];
        snprintf(what, sizeof what, "metric '%s'", m->name);
        double v = NAN;
        if (gkd_lua_train_call(s, call_metric, &c, 0, what, &v)) return v;
    } else if (m->def->corpus) {
        if (push_corpus(m, output, ex->target ? ex->target : "")) return 0.0; /* the corpus value replaces the mean at emit time */
        gkd_error_set(GKD_ERR_NOMEM, "out of memory (metric %s)", m->name);
    } else {
        gkd_reward_sample x = {ex->source, ex->prompt, output, ex->target};
        double v;
        if (m->def->eval(m->def, &x, &v) == GKD_OK) return v;
    }
    *failed = 1;
    return NAN;
}

double gkd_lua_train_corpus_value(text_metric *m) {
    double v = NAN;
    if (m->def->corpus_value(m->def, (const char *const *)m->hyps, (const char *const *)m->refs, m->n, &v) != GKD_OK)
        v = NAN;
    gkd_lua_train_free_corpus(m);
    return v;
}

text_metric *gkd_lua_train_add_metric(lua_State *L, train_state *s, const char *name, const gkd_metric *def) {
    if (s->n_metrics == GKD_MAX_TEXT_METRICS)
        luaL_error(L, "gkd.run: at most %d evaluation text metrics", GKD_MAX_TEXT_METRICS);
    text_metric *m = &s->metrics[s->n_metrics++];
    memset(m, 0, sizeof *m);
    m->s = s;
    m->def = def;
    snprintf(m->name, sizeof m->name, "%s", name);
    return m;
}

/* The eval.metrics list: names, and name = function(output, example) entries. */
void gkd_lua_train_read_metrics(lua_State *L, int cfg, int state_idx, train_state *s) {
    lua_getfield(L, cfg, "eval");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_getfield(L, -1, "metrics");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        return;
    }
    int list = lua_gettop(L);
    lua_Integer n = luaL_len(L, list);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        const char *name = luaL_checkstring(L, -1);
        const gkd_metric *def = gkd_metric_find(name, GKD_METRIC_USE_EVAL);
        if (!def) {
            const char *names[32];
            gkd_metric_names(GKD_METRIC_USE_EVAL, names, 32);
            const char *near = gkd_lua_closest(name, names);
            luaL_error(L, "gkd.run: unknown eval metric '%s'%s%s%s", name, near ? " (did you mean '" : "",
                       near ? near : "", near ? "'?)" : "");
        }
        if (def->eval || def->corpus_value) gkd_lua_train_add_metric(L, s, name, def); /* the trainer records the rest */
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    while (lua_next(L, list)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            if (!lua_isfunction(L, -1))
                luaL_error(L, "gkd.run: eval.metrics.%s must be a function(output, example)", lua_tostring(L, -2));
            text_metric *m = gkd_lua_train_add_metric(L, s, lua_tostring(L, -2), NULL);
            m->ref = gkd_lua_train_keep(L, state_idx, -1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}

