/* gkd._resolve and gkd._train: the C half of gkd.run (scripts-lua/run.lua holds the other half: checks,
 * the run's row in the store, resume). A gkd.run table becomes a gkd_train_config (rl/trainer.h); Lua
 * functions given as schedules, evaluation metrics and callbacks are called from the trainer through
 * protected calls with a traceback; every metric goes to the run store as it is produced.
 * Rules:
 * - Everything _train allocates belongs to one userdata (a "train state") created first, whose __gc
 *   frees it, so a Lua error at any point leaks nothing.
 * - The trainer's callbacks never raise: a Lua error inside them becomes the trainer's failure
 *   (GKD_ERR_CALLBACK, message "schedule 'lambda': <error and traceback>"), and _train raises it after the
 *   trainer has returned.
 * - The per-call context (the train state) is reachable from the registry while _train runs
 *   (REGISTRY_KEY) and cleared after; while it is set, _train and _resolve refuse (runs do not nest: a
 *   second run would replace the first's context under the same key).
 * - While the trainer runs, the models, tokenizer and tasks it reads are kept by the state and pinned
 *   (their close refuses); every exit of the training loop unpins them, and so does the state's __gc.
 * - Every call into Lua is bracketed by gkd_lua_callback_begin/end: the run's callback_limit (and the
 *   command line's) bounds it, and a stop signal interrupts it after a grace period; the run then stops
 *   as interrupted and continues from its last checkpoint.
 * - The run loop is rl/'s (gkd_trainer_run_hooked): this file only passes it hooks (the script's
 *   callbacks, the stop signal, the store's checkpoint records, the progress line); the checkpoint
 *   folders and their rotation are rl/checkpoints.h's.
 * - Lua time is measured around every call into Lua (gkd_lua_seconds_in_lua; result.lua_seconds). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/gkd_lua.h"
#include "bindings/lua_train.h"

/* ---- state lifetime ---- */

static void pin(train_state *s, int delta) {
    if (s->student) s->student->pins += delta;
    if (s->teacher) s->teacher->pins += delta;
    if (s->tok) s->tok->pins += delta;
    if (s->task) s->task->pins += delta;
    if (s->held) s->held->pins += delta;
    s->pinned = delta > 0;
}

static int state_gc(lua_State *L) {
    train_state *s = luaL_checkudata(L, 1, TRAIN_STATE);
    if (s->pinned) pin(s, -1);
    gkd_trainer_free(s->trainer);
    s->trainer = NULL;
    gkd_reward_free(s->reward);
    s->reward = NULL;
    gkd_token_dataset_free(&s->train_tok);
    gkd_token_dataset_free(&s->held_tok);
    gkd_dataset_free(&s->train_copy);
    gkd_dataset_free(&s->held_copy);
    for (int i = 0; i < s->n_metrics; i++) {
        gkd_lua_train_free_corpus(&s->metrics[i]);
        free(s->metrics[i].hyps);
        free(s->metrics[i].refs);
        s->metrics[i].hyps = s->metrics[i].refs = NULL;
        s->metrics[i].cap = 0;
    }
    free(s->checkpoint_dir);
    s->checkpoint_dir = NULL;
    s->n_metrics = 0;
    /* Lua references are kept by the state's uservalue table, collected with it. */
    return 0;
}

/* The state's uservalue 1 is a table that keeps every Lua value it refers to (functions, tables, the
 * gkd.run config); refs index it. */
int gkd_lua_train_keep(lua_State *L, int state_idx, int value_idx) {
    value_idx = lua_absindex(L, value_idx);
    lua_getiuservalue(L, state_idx, 1);
    lua_pushvalue(L, value_idx);
    int ref = luaL_ref(L, -2);
    lua_pop(L, 1);
    return ref;
}

void gkd_lua_train_push_kept(lua_State *L, train_state *s, int ref) {
    lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
    lua_getiuservalue(L, -1, 1);
    lua_rawgeti(L, -1, ref);
    lua_replace(L, -3);
    lua_pop(L, 1);
    (void)s;
}

/* ---- metrics seen by Lua ---- */

static void slot_set(metric_slot *slots, int *n, const char *name, double value) {
    for (int i = 0; i < *n; i++)
        if (slots[i].name == name || strcmp(slots[i].name, name) == 0) {
            slots[i].value = value;
            return;
        }
    if (*n < MAX_METRICS) {
        slots[*n].name = name;
        slots[*n].value = value;
        (*n)++;
    }
}

/* Pushes the metrics table (fields: the last training metrics; eval: the last evaluation; eval_step),
 * brought up to date. Runs inside a protected call. */
static void push_metrics(lua_State *L, train_state *s) {
    gkd_lua_train_push_kept(L, s, s->metrics_ref);
    for (int i = 0; i < s->n_train; i++) {
        lua_pushnumber(L, s->train_slots[i].value);
        lua_setfield(L, -2, s->train_slots[i].name);
    }
    if (s->eval_dirty) {
        lua_createtable(L, 0, s->n_eval);
        for (int i = 0; i < s->n_eval; i++) {
            lua_pushnumber(L, s->eval_slots[i].value);
            lua_setfield(L, -2, s->eval_slots[i].name);
        }
        lua_setfield(L, -2, "eval");
        lua_pushinteger(L, s->eval_step);
        lua_setfield(L, -2, "eval_step");
        s->eval_dirty = 0;
    }
}

/* ---- calls into Lua from the trainer ---- */

static int call_schedule(lua_State *L) {
    lua_schedule *cb = lua_touserdata(L, 1);
    lua_Integer step = lua_tointeger(L, 2);
    gkd_lua_train_push_kept(L, cb->s, cb->ref);
    lua_pushinteger(L, step);
    push_metrics(L, cb->s);
    lua_call(L, 2, 1); /* inside gkd_lua_pcall: errors reach its traceback handler */
    if (lua_type(L, -1) != LUA_TNUMBER)
        return luaL_error(L, "schedule '%s' returned %s at step %I (a number expected)", cb->name, luaL_typename(L, -1),
                          step);
    return 1;
}

/* Runs fn (a C function taking 2 light arguments) in a protected call under the run's callback limit;
 * on failure records "<what>: <message with traceback>" as the last error. Nothing here allocates
 * outside the protected call, so a Lua memory error cannot escape into the trainer. */
int gkd_lua_train_call(train_state *s, lua_CFunction fn, void *a, lua_Integer b, const char *what, double *out) {
    lua_State *L = s->L;
    double t0 = gkd_lua_now();
    gkd_lua_hook_state hook;
    gkd_lua_callback_begin(L, &s->limit, &hook);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, a);
    lua_pushinteger(L, b);
    int status = gkd_lua_pcall(L, 2, 1);
    gkd_lua_callback_end(L, &hook);
    int ok = status == LUA_OK;
    if (ok)
        *out = lua_tonumber(L, -1);
    else
        gkd_error_set(GKD_ERR_CALLBACK, "%s: %s", what, lua_tostring(L, -1));
    lua_pop(L, 1);
    double dt = gkd_lua_now() - t0;
    s->lua_seconds += dt;
    gkd_lua_seconds_in_lua += dt;
    return ok;
}

/* on_step(metrics with .step) and on_eval(eval metrics), argument 1 the state. */
static int call_on_step(lua_State *L) {
    train_state *s = lua_touserdata(L, 1);
    lua_Integer step = lua_tointeger(L, 2);
    gkd_lua_train_push_kept(L, s, s->on_step_ref);
    push_metrics(L, s);
    lua_pushinteger(L, step);
    lua_setfield(L, -2, "step");
    lua_call(L, 1, 0);
    lua_pushnumber(L, 0);
    return 1;
}

static int call_on_eval(lua_State *L) {
    train_state *s = lua_touserdata(L, 1);
    gkd_lua_train_push_kept(L, s, s->on_eval_ref);
    push_metrics(L, s);
    lua_getfield(L, -1, "eval");
    lua_remove(L, -2);
    lua_call(L, 1, 0);
    lua_pushnumber(L, 0);
    return 1;
}

static double schedule_fn(void *ctx, int64_t step, int *failed) {
    lua_schedule *cb = ctx;
    char what[96];
    snprintf(what, sizeof what, "schedule '%s'", cb->name);
    double v = NAN;
    if (!gkd_lua_train_call(cb->s, call_schedule, cb, step, what, &v)) *failed = 1;
    return v;
}

/* ---- the metric sink ---- */

/* Keeps each value for the callbacks and the result (a corpus metric's value replaced by its corpus
 * value), then writes it to the store. */
static int metric_sink(void *ctx, const char *split, int64_t step, const char *name, double value) {
    train_state *s = ctx;
    if (strcmp(split, "train") == 0) {
        slot_set(s->train_slots, &s->n_train, name, value);
    } else {
        for (int i = 0; i < s->n_metrics; i++)
            if (s->metrics[i].def && s->metrics[i].def->corpus && strcmp(s->metrics[i].name, name) == 0)
                value = gkd_lua_train_corpus_value(&s->metrics[i]);
        slot_set(s->eval_slots, &s->n_eval, name, value);
        s->eval_step = step;
        s->eval_dirty = 1;
    }
    return gkd_store_metric_sink(&s->sink, split, step, name, value);
}

/* ---- building the configuration ---- */

/* A schedule-valued setting at cfg[key] (absent: leave *out). Lua functions are kept by the state. */
static void read_schedule(lua_State *L, int cfg, int state_idx, train_state *s, const char *key, gkd_schedule *out) {
    lua_getfield(L, cfg, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    if (lua_isfunction(L, -1)) {
        if (!s) {
            /* _resolve: a function is described, not called */
            *out = gkd_schedule_constant(NAN);
            out->kind = GKD_SCHEDULE_CALLBACK;
        } else {
            lua_schedule *cb = &s->schedules[s->n_schedules++];
            cb->s = s;
            cb->ref = gkd_lua_train_keep(L, state_idx, -1);
            cb->name = key;
            memset(out, 0, sizeof *out);
            out->kind = GKD_SCHEDULE_CALLBACK;
            out->fn = schedule_fn;
            out->ctx = cb;
        }
    } else {
        *out = gkd_lua_to_schedule(L, -1, key);
    }
    lua_pop(L, 1);
}

static int field_is(lua_State *L, int cfg, const char *key, int type) {
    int t = lua_getfield(L, cfg, key);
    lua_pop(L, 1);
    return t == type;
}

/* The PPO / GRPO settings (docs/rlhf.md); scripts-lua/run.lua has checked their types and methods. */
static void read_ppo_settings(lua_State *L, int cfg, int state_idx, train_state *s, gkd_train_config *c) {
    const char *f = "gkd.run";
    read_schedule(L, cfg, state_idx, s, "epochs", &c->epochs);
    read_schedule(L, cfg, state_idx, s, "clip_eps", &c->clip_eps);
    read_schedule(L, cfg, state_idx, s, "target_kl", &c->target_kl);
    read_schedule(L, cfg, state_idx, s, "vf_coef", &c->vf_coef);
    read_schedule(L, cfg, state_idx, s, "teacher_reward", &c->teacher_reward);
    c->minibatches = gkd_lua_opt_size(L, cfg, f, "minibatches", c->minibatches);
    const char *k = gkd_lua_opt_string(L, cfg, f, "kl_estimator", NULL);
    if (k) c->kl_estimator = k[1] == '1' ? GKD_KL_K1 : k[1] == '2' ? GKD_KL_K2 : GKD_KL_K3;
    const char *in = gkd_lua_opt_string(L, cfg, f, "kl_in", NULL);
    if (in) c->kl_in_loss = strcmp(in, "loss") == 0;
    c->value_head = gkd_lua_opt_bool(L, cfg, f, "value_head", c->value_head);
    c->gamma = gkd_lua_opt_number(L, cfg, f, "gamma", c->gamma);
    c->gae_lambda = gkd_lua_opt_number(L, cfg, f, "gae_lambda", c->gae_lambda);
    c->value_clip = gkd_lua_opt_number(L, cfg, f, "value_clip", c->value_clip);
    c->whiten_advantages = gkd_lua_opt_bool(L, cfg, f, "whiten_advantages", c->whiten_advantages);
    c->whiten_rewards = gkd_lua_opt_bool(L, cfg, f, "whiten_rewards", c->whiten_rewards);
    const char *lt = gkd_lua_opt_string(L, cfg, f, "loss_type", NULL);
    if (lt)
        c->loss_agg = strcmp(lt, "bnpo") == 0      ? GKD_RL_AGG_TOKEN_MEAN
                      : strcmp(lt, "dr_grpo") == 0 ? GKD_RL_AGG_CONSTANT
                                                   : GKD_RL_AGG_SEQUENCE_MEAN;
    c->agg_constant = gkd_lua_opt_size(L, cfg, f, "dr_grpo_length", 0);
    c->scale_rewards = gkd_lua_opt_bool(L, cfg, f, "scale_rewards", c->scale_rewards);
}

/* Fills c from the gkd.run table at cfg. s may be NULL (resolve only: functions are not kept). */
static void build_config(lua_State *L, int cfg, int state_idx, train_state *s, gkd_train_config *c) {
    const char *f = "gkd.run";
    gkd_train_config_default(c);
    c->steps = gkd_lua_opt_size(L, cfg, f, "steps", 100);
    int warm = c->steps / 10 < 10 ? c->steps / 10 : 10;
    c->lr = gkd_schedule_warmup_cosine(3e-4, 3e-5, warm, c->steps);
    const char *method = gkd_lua_opt_string(L, cfg, f, "method", "supervised_kd");
    if (gkd_train_config_preset(c, method) != GKD_OK) gkd_lua_raise(L, f);
    lua_getfield(L, cfg, "divergence");
    if (lua_type(L, -1) == LUA_TSTRING) {
        if (gkd_divergence_parse(lua_tostring(L, -1), &c->divergence) != GKD_OK) gkd_lua_raise(L, "gkd.run: divergence");
    } else if (!lua_isnil(L, -1)) {
        c->divergence = *gkd_lua_check_divergence(L, -1);
    }
    lua_pop(L, 1);
    /* beta and the teacher temperature default to the divergence's own. */
    c->beta = gkd_schedule_constant(gkd_divergence_param(&c->divergence));
    c->teacher_temperature = gkd_schedule_constant(c->divergence.teacher_temperature);
    const char *dp = gkd_lua_opt_string(L, cfg, f, "divergence_precision", NULL);
    if (dp) c->divergence_precision = strcmp(dp, "exact") == 0 ? GKD_DIV_EXACT : GKD_DIV_FLOAT32;
    const char *tp = gkd_lua_opt_string(L, cfg, f, "teacher_precision", "fp32");
    const char *rp = gkd_lua_opt_string(L, cfg, f, "reference_precision", "fp32");
    if (gkd_weight_format_parse(tp, "gkd.run: teacher_precision", &c->teacher_weights) != GKD_OK ||
        gkd_weight_format_parse(rp, "gkd.run: reference_precision", &c->reference_weights) != GKD_OK)
        luaL_error(L, "%s", gkd_error_message());
    read_schedule(L, cfg, state_idx, s, "lambda", &c->lambda);
    read_schedule(L, cfg, state_idx, s, "beta", &c->beta);
    read_schedule(L, cfg, state_idx, s, "teacher_temperature", &c->teacher_temperature);
    read_schedule(L, cfg, state_idx, s, "temperature", &c->sample_temperature);
    read_schedule(L, cfg, state_idx, s, "lr", &c->lr);
    c->per_sample_coin = gkd_lua_opt_bool(L, cfg, f, "per_sample", c->per_sample_coin);
    const char *fixed = gkd_lua_opt_string(L, cfg, f, "fixed", NULL);
    if (fixed) c->fixed = strcmp(fixed, "teacher") == 0 ? GKD_FIXED_TEACHER : GKD_FIXED_GROUND_TRUTH;
    const char *norm = gkd_lua_opt_string(L, cfg, f, "norm", NULL);
    if (norm) c->norm = strcmp(norm, "token") == 0 ? GKD_NORM_TOKEN : GKD_NORM_SEQUENCE;
    c->max_new_tokens = gkd_lua_opt_size(L, cfg, f, "max_new_tokens", c->max_new_tokens);
    c->top_k = gkd_lua_opt_size(L, cfg, f, "top_k", c->top_k);
    c->top_p = (float)gkd_lua_opt_number(L, cfg, f, "top_p", c->top_p);
    c->batch_size = gkd_lua_opt_size(L, cfg, f, "batch", c->batch_size);
    c->grad_accum = gkd_lua_opt_size(L, cfg, f, "grad_accum", c->grad_accum);
    c->weight_decay = (float)gkd_lua_opt_number(L, cfg, f, "weight_decay", c->weight_decay);
    c->grad_clip = (float)gkd_lua_opt_number(L, cfg, f, "clip", c->grad_clip);
    c->loss_chunk = gkd_lua_opt_size(L, cfg, f, "loss_chunk", c->loss_chunk);
    lua_Integer seed = gkd_lua_opt_int(L, cfg, f, "seed", (lua_Integer)c->seed);
    if (seed < 0) luaL_error(L, "gkd.run: 'seed' must be >= 0");
    c->seed = (uint64_t)seed;
    lua_getfield(L, cfg, "adam_betas");
    if (!lua_isnil(L, -1)) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1)) luaL_error(L, "gkd.run: 'adam_betas' must be {beta1, beta2}");
        c->beta1 = (float)lua_tonumber(L, -2);
        c->beta2 = (float)lua_tonumber(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    /* GKD + RL */
    read_schedule(L, cfg, state_idx, s, "alpha", &c->alpha);
    c->group_size = gkd_lua_opt_size(L, cfg, f, "group_size", c->group_size);
    const char *baseline = gkd_lua_opt_string(L, cfg, f, "baseline", NULL);
    if (baseline)
        c->baseline = strcmp(baseline, "none") == 0             ? GKD_BASELINE_NONE
                      : strcmp(baseline, "moving_average") == 0 ? GKD_BASELINE_MOVING_AVERAGE
                                                                : GKD_BASELINE_GROUP;
    c->baseline_decay = gkd_lua_opt_number(L, cfg, f, "baseline_decay", c->baseline_decay);
    c->normalize_advantages = gkd_lua_opt_bool(L, cfg, f, "normalize_advantages", c->normalize_advantages);
    c->divergence_score_function = gkd_lua_opt_bool(L, cfg, f, "score_function", c->divergence_score_function);
    read_schedule(L, cfg, state_idx, s, "kl_coef", &c->kl_coef);
    read_ppo_settings(L, cfg, state_idx, s, c);
    /* evaluation */
    c->eval_examples = 16;
    lua_getfield(L, cfg, "eval");
    if (lua_istable(L, -1)) {
        int e = lua_gettop(L);
        c->eval_every = gkd_lua_opt_size(L, e, "gkd.run: eval", "every", 0);
        c->eval_examples = gkd_lua_opt_size(L, e, "gkd.run: eval", "examples", c->eval_examples);
        c->eval_temperature = (float)gkd_lua_opt_number(L, e, "gkd.run: eval", "temperature", 0.0);
    }
    lua_pop(L, 1);
}

/* ---- _resolve ---- */

static void push_schedule_desc(lua_State *L, const gkd_schedule *sc, int cfg, const char *key) {
    int t = lua_getfield(L, cfg, key);
    if (t == LUA_TFUNCTION) {
        lua_pop(L, 1);
        lua_pushliteral(L, "<lua function>");
        return;
    }
    lua_pop(L, 1);
    if (sc->kind == GKD_SCHEDULE_CONSTANT) {
        lua_pushnumber(L, sc->start);
        return;
    }
    gkd_lua_schedule *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = *sc;
    luaL_setmetatable(L, GKD_LUA_SCHEDULE);
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
}

/* Raises when a run is in progress in this state: gkd.run called from one of its callbacks. */
static void refuse_nested(lua_State *L) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY) != LUA_TNIL) {
        train_state *cur = lua_touserdata(L, -1);
        luaL_error(L,
                   "gkd.run: run '%s' is in progress and this gkd.run was called from one of its callbacks; runs "
                   "cannot nest (start the next run after gkd.run returns)",
                   cur ? cur->name : "?");
    }
    lua_pop(L, 1);
}

/* The PPO / GRPO settings of c into the table on top of the stack (gkd._resolve). */
static void resolve_ppo(lua_State *L, const gkd_train_config *c) {
    int grpo = c->rl_method == GKD_RL_GRPO;
    push_schedule_desc(L, &c->epochs, 1, "epochs"), lua_setfield(L, -2, "epochs");
    lua_pushinteger(L, c->minibatches), lua_setfield(L, -2, "minibatches");
    push_schedule_desc(L, &c->clip_eps, 1, "clip_eps"), lua_setfield(L, -2, "clip_eps");
    push_schedule_desc(L, &c->target_kl, 1, "target_kl"), lua_setfield(L, -2, "target_kl");
    push_schedule_desc(L, &c->teacher_reward, 1, "teacher_reward"), lua_setfield(L, -2, "teacher_reward");
    static const char *const est[] = {"k1", "k1", "k2", "k3"};
    lua_pushstring(L, c->kl_estimator ? est[c->kl_estimator] : grpo ? "k3" : "k1");
    lua_setfield(L, -2, "kl_estimator");
    lua_pushstring(L, (c->kl_in_loss >= 0 ? c->kl_in_loss : grpo) ? "loss" : "reward"), lua_setfield(L, -2, "kl_in");
    if (grpo) {
        static const char *const agg[] = {"grpo", "bnpo", "dr_grpo"};
        lua_pushstring(L, agg[c->loss_agg]), lua_setfield(L, -2, "loss_type");
        lua_pushboolean(L, c->scale_rewards), lua_setfield(L, -2, "scale_rewards");
        return;
    }
    lua_pushboolean(L, c->value_head), lua_setfield(L, -2, "value_head");
    if (!c->value_head) return;
    lua_pushnumber(L, c->gamma), lua_setfield(L, -2, "gamma");
    lua_pushnumber(L, c->gae_lambda), lua_setfield(L, -2, "gae_lambda");
    push_schedule_desc(L, &c->vf_coef, 1, "vf_coef"), lua_setfield(L, -2, "vf_coef");
    lua_pushnumber(L, c->value_clip), lua_setfield(L, -2, "value_clip");
    lua_pushboolean(L, c->whiten_advantages), lua_setfield(L, -2, "whiten_advantages");
    lua_pushboolean(L, c->whiten_rewards), lua_setfield(L, -2, "whiten_rewards");
}

/* gkd._resolve(cfg) -> the trainer settings the run will use (defaults and the method's preset applied). */
static int l_resolve(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    refuse_nested(L);
    gkd_train_config c;
    build_config(L, 1, 0, NULL, &c);
    lua_newtable(L);
    lua_pushstring(L, c.method), lua_setfield(L, -2, "method");
    lua_pushboolean(L, c.use_ce), lua_setfield(L, -2, "cross_entropy");
    if (!c.use_ce) lua_pushstring(L, gkd_divergence_name(&c.divergence)), lua_setfield(L, -2, "divergence");
    if (!c.use_ce || c.reward)
        lua_pushstring(L, c.divergence_precision == GKD_DIV_EXACT ? "exact" : "float32"),
            lua_setfield(L, -2, "divergence_precision");
    if (c.teacher_weights != GKD_WEIGHTS_FP32)
        lua_pushstring(L, gkd_weight_format_name(c.teacher_weights)), lua_setfield(L, -2, "teacher_precision");
    if (c.reference_weights != GKD_WEIGHTS_FP32)
        lua_pushstring(L, gkd_weight_format_name(c.reference_weights)), lua_setfield(L, -2, "reference_precision");
    push_schedule_desc(L, &c.lambda, 1, "lambda"), lua_setfield(L, -2, "lambda");
    push_schedule_desc(L, &c.beta, 1, "beta"), lua_setfield(L, -2, "beta");
    push_schedule_desc(L, &c.teacher_temperature, 1, "teacher_temperature"), lua_setfield(L, -2, "teacher_temperature");
    push_schedule_desc(L, &c.sample_temperature, 1, "temperature"), lua_setfield(L, -2, "temperature");
    push_schedule_desc(L, &c.lr, 1, "lr"), lua_setfield(L, -2, "lr");
    lua_pushboolean(L, c.per_sample_coin), lua_setfield(L, -2, "per_sample");
    lua_pushstring(L, c.fixed == GKD_FIXED_TEACHER ? "teacher" : "ground_truth"), lua_setfield(L, -2, "fixed");
    lua_pushstring(L, c.norm == GKD_NORM_TOKEN ? "token" : "sequence"), lua_setfield(L, -2, "norm");
    lua_pushinteger(L, c.max_new_tokens), lua_setfield(L, -2, "max_new_tokens");
    lua_pushinteger(L, c.top_k), lua_setfield(L, -2, "top_k");
    lua_pushnumber(L, c.top_p), lua_setfield(L, -2, "top_p");
    lua_pushinteger(L, c.steps), lua_setfield(L, -2, "steps");
    lua_pushinteger(L, c.batch_size), lua_setfield(L, -2, "batch");
    lua_pushinteger(L, c.grad_accum), lua_setfield(L, -2, "grad_accum");
    lua_pushnumber(L, c.weight_decay), lua_setfield(L, -2, "weight_decay");
    lua_pushnumber(L, c.grad_clip), lua_setfield(L, -2, "clip");
    lua_createtable(L, 2, 0);
    lua_pushnumber(L, c.beta1), lua_rawseti(L, -2, 1);
    lua_pushnumber(L, c.beta2), lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "adam_betas");
    lua_pushinteger(L, c.loss_chunk), lua_setfield(L, -2, "loss_chunk");
    lua_pushinteger(L, (lua_Integer)c.seed), lua_setfield(L, -2, "seed");
    lua_pushinteger(L, c.eval_every), lua_setfield(L, -2, "eval_every");
    int rt = lua_getfield(L, 1, "reward");
    lua_pop(L, 1);
    if (rt != LUA_TNIL) {
        push_schedule_desc(L, &c.alpha, 1, "alpha"), lua_setfield(L, -2, "alpha");
        lua_pushinteger(L, c.group_size), lua_setfield(L, -2, "group_size");
        static const char *const baselines[] = {"none", "moving_average", "group"};
        lua_pushstring(L, baselines[c.baseline]), lua_setfield(L, -2, "baseline");
        lua_pushnumber(L, c.baseline_decay), lua_setfield(L, -2, "baseline_decay");
        lua_pushboolean(L, c.normalize_advantages), lua_setfield(L, -2, "normalize_advantages");
        lua_pushboolean(L, c.divergence_score_function), lua_setfield(L, -2, "score_function");
        push_schedule_desc(L, &c.kl_coef, 1, "kl_coef"), lua_setfield(L, -2, "kl_coef");
        if (c.rl_method != GKD_RL_REINFORCE) resolve_ppo(L, &c);
    }
    lua_pushinteger(L, c.eval_examples), lua_setfield(L, -2, "eval_examples");
    return 1;
}

/* ---- _train ---- */

/* The progress line (bindings/progress.h) with the run's name before it and, after it, the setting worth
 * watching, the learning rate and the latest evaluation. */
static void print_progress(train_state *s, int64_t step, double now) {
    double loss = NAN, lambda = NAN, lr = NAN, reward = NAN, alpha = NAN, tokens_per_s = NAN;
    for (int i = 0; i < s->n_train; i++) {
        const char *name = s->train_slots[i].name;
        double v = s->train_slots[i].value;
        if (strcmp(name, "alpha") == 0) alpha = v;
        if (strcmp(name, "reward") == 0) reward = v;
        if (strcmp(name, "loss") == 0) loss = v;
        if (strcmp(name, "lambda") == 0) lambda = v;
        if (strcmp(name, "lr") == 0) lr = v;
        if (strcmp(name, "tokens_per_s") == 0) tokens_per_s = v;
    }
    char tail[512];
    /* GKD + RL trains on the student's samples only: alpha, not lambda, is the setting worth showing. */
    int n = snprintf(tail, sizeof tail, "  %s %.2f  lr %.2e", s->reward ? "alpha" : "lambda",
                     s->reward ? alpha : lambda, lr);
    if (s->reward) n += snprintf(tail + n, sizeof tail - (size_t)n, "  reward %.4f", reward);
    /* the held-out cross-entropy and the text metrics; the divergences are in the store */
    static const char *const hidden[] = {"forward_kl", "reverse_kl", "jsd_0.5", "own_forward_kl", "own_reverse_kl",
                                         "own_jsd_0.5", "own_length", NULL};
    for (int i = 0; i < s->n_eval && n < (int)sizeof tail - 40; i++) {
        int skip = 0;
        for (int h = 0; hidden[h] && !skip; h++) skip = strcmp(hidden[h], s->eval_slots[i].name) == 0;
        if (!skip) n += snprintf(tail + n, sizeof tail - (size_t)n, " | %s %.4g", s->eval_slots[i].name, s->eval_slots[i].value);
    }
    gkd_progress_print(&s->progress, step, now, s->ctx_name, loss, tokens_per_s, tail);
}

static const char *const train_ctx_keys[] = {"store", "run_id", "name", "resume_dir", "quiet", NULL};
static const char *const callback_limit_keys[] = {"instructions", "seconds", NULL};

/* The tighter of two limits, 0 meaning none. */
static double tighter(double a, double b) {
    return a > 0 && b > 0 ? (a < b ? a : b) : a > 0 ? a : b;
}

/* cfg.callback_limit = {instructions = n, seconds = s}, combined with the state's default. */
static void read_callback_limit(lua_State *L, int cfg, train_state *s) {
    gkd_lua_callback_limit lim = gkd_lua_callback_default(L);
    lua_getfield(L, cfg, "callback_limit");
    if (!lua_isnil(L, -1)) {
        const char *f = "gkd.run: callback_limit";
        luaL_checktype(L, -1, LUA_TTABLE);
        int t = lua_gettop(L);
        gkd_lua_check_keys(L, t, f, callback_limit_keys);
        lua_Integer n = gkd_lua_opt_int(L, t, f, "instructions", 0);
        double sec = gkd_lua_opt_number(L, t, f, "seconds", 0);
        if (n < 0) luaL_error(L, "%s: 'instructions' must be >= 0 (0: no limit), got %I", f, (LUAI_UACINT)n);
        if (!(sec >= 0) || isinf(sec)) luaL_error(L, "%s: 'seconds' must be a finite number >= 0 (0: no limit), got %f", f, sec);
        lim.instructions = (int64_t)tighter((double)lim.instructions, (double)n);
        lim.seconds = tighter(lim.seconds, sec);
    }
    lua_pop(L, 1);
    s->limit = lim;
}

/* ---- the run loop's hooks (rl/trainer.h gkd_run_hooks) ---- */

static int hook_should_stop(void *ctx) {
    (void)ctx;
    return gkd_lua_stop_requested();
}

static gkd_status hook_on_step(void *ctx, int64_t step) {
    train_state *s = ctx;
    double ignored;
    if (s->on_step_ref != LUA_NOREF && !gkd_lua_train_call(s, call_on_step, s, step, "on_step", &ignored))
        return GKD_ERR_CALLBACK;
    return GKD_OK;
}

/* The evaluation's metrics reached the store through the metric sink; the script's on_eval follows. */
static gkd_status hook_on_eval(void *ctx, int64_t step) {
    train_state *s = ctx;
    double ignored;
    s->samples_recorded = 0; /* the next evaluation records samples of its own */
    if (s->on_eval_ref != LUA_NOREF && !gkd_lua_train_call(s, call_on_eval, s, step, "on_eval", &ignored))
        return GKD_ERR_CALLBACK;
    return GKD_OK;
}

/* The metrics up to the checkpoint reach the disk before the checkpoint is recorded, so a run resumed
 * from it has every row before it. */
static gkd_status hook_on_checkpoint(void *ctx, int64_t step, const char *path) {
    train_state *s = ctx;
    if (!s->sink.store) return GKD_OK;
    gkd_status st = gkd_store_flush(s->sink.store);
    return st == GKD_OK ? gkd_store_checkpoint(s->sink.store, s->sink.run_id, step, path, NULL) : st;
}

static void hook_on_step_end(void *ctx, int64_t step, int last) {
    train_state *s = ctx;
    double now = gkd_lua_now();
    if (s->quiet) return;
    /* step counts the steps done; the progress line counts the step just done from 0. due() is asked
     * first: it notes the first step reported, from which the rate counts. */
    if (gkd_progress_due(&s->progress, step - 1, now) || last) print_progress(s, step - 1, now);
}

/* Models, tokenizer, data: kept by the state, since a callback may drop them from the cfg table (or from
 * the student, for its tokenizer) while the trainer reads them. */
static void read_handles(lua_State *L, int si, train_state *s) {
    lua_getfield(L, 1, "student");
    s->student = gkd_lua_check_model(L, -1);
    gkd_lua_train_keep(L, si, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "teacher");
    s->teacher = lua_isnil(L, -1) ? NULL : gkd_lua_check_model(L, -1);
    gkd_lua_train_keep(L, si, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "tokenizer");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, 1, "student");
        lua_getiuservalue(L, -1, 1); /* the student's own tokenizer */
        lua_remove(L, -2);
    }
    s->tok = gkd_lua_check_tokenizer(L, -1);
    gkd_lua_train_keep(L, si, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "task");
    s->task = gkd_lua_check_task(L, -1);
    gkd_lua_train_keep(L, si, -1);
    lua_pop(L, 1);
    /* A sampled id must have a token, and every token an embedding row. */
    int model_vocab = gkd_model_get_config(s->student->m)->vocab_size, tok_vocab = gkd_tokenizer_vocab_size(s->tok->tok);
    if (model_vocab != tok_vocab)
        luaL_error(L,
                   "gkd.run: the student's vocabulary (%d) differs from the tokenizer's (%d): %s "
                   "(give a tokenizer of the model's vocabulary)",
                   model_vocab, tok_vocab,
                   model_vocab > tok_vocab ? "the ids it samples past the tokenizer's would have no token"
                                           : "token ids past the model's would have no embedding");
}

/* The training and held-out text: cfg.held_out as a task, or a split of the task (cfg.held_out the
 * fraction held out, 0.1 by default); none held out when cfg.eval is false. */
static void read_held_out(lua_State *L, int si, train_state *s) {
    const gkd_lua_task *task = s->task;
    int eval_on = !field_is(L, 1, "eval", LUA_TBOOLEAN);
    lua_getfield(L, 1, "eval");
    if (lua_isboolean(L, -1)) eval_on = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "held_out");
    if (luaL_testudata(L, -1, GKD_LUA_TASK)) {
        gkd_lua_task *held = gkd_lua_check_task(L, -1);
        gkd_lua_train_keep(L, si, -1);
        s->held = held;
        s->train_text = &task->ds;
        s->held_text = &held->ds;
    } else {
        double frac = lua_isnil(L, -1) ? 0.1 : luaL_checknumber(L, -1);
        /* The copy keeps the task's text format (template, terminator): the split hands it to both parts. */
        gkd_dataset copy = {calloc((size_t)(task->ds.n > 0 ? task->ds.n : 1), sizeof(gkd_example)), 0, {0}};
        if (!copy.items || gkd_text_format_copy(&copy.fmt, &task->ds.fmt) != GKD_OK) {
            gkd_dataset_free(&copy);
            luaL_error(L, "out of memory");
        }
        for (int i = 0; i < task->ds.n; i++) {
            gkd_example *d = &copy.items[i];
            const gkd_example *e = &task->ds.items[i];
            copy.n = i + 1;
            d->source = gkd_lua_strdup(e->source);
            d->prompt = gkd_lua_strdup(e->prompt);
            d->target = gkd_lua_strdup(e->target);
            d->cue_len = e->cue_len;
        }
        /* One split for every seed, so the runs of a sweep evaluate on the same examples. */
        gkd_status st = frac > 0 ? gkd_dataset_split(&copy, frac, 1, &s->train_copy, &s->held_copy) : GKD_OK;
        if (frac <= 0) {
            s->train_copy = copy; /* moved: the items and the format now belong to train_copy */
            copy.items = NULL;
            copy.n = 0;
            copy.fmt = (gkd_text_format){0};
        }
        gkd_dataset_free(&copy);
        if (st != GKD_OK) gkd_lua_raise(L, "gkd.run: held_out");
        s->train_text = &s->train_copy;
        s->held_text = frac > 0 ? &s->held_copy : NULL;
    }
    lua_pop(L, 1);
    if (!eval_on) s->held_text = NULL;
}

/* Tokenizes both splits within the models' context, and hands the evaluation metrics to the trainer. */
static void tokenize_data(lua_State *L, train_state *s) {
    gkd_train_config *c = &s->cfg;
    const gkd_model_config *sc = gkd_model_get_config(s->student->m);
    int seq = sc->max_seq_len;
    if (s->teacher && gkd_model_get_config(s->teacher->m)->max_seq_len < seq)
        seq = gkd_model_get_config(s->teacher->m)->max_seq_len;
    int max_target = gkd_lua_opt_size(L, 1, "gkd.run", "max_target", c->max_new_tokens);
    int longest = max_target > c->max_new_tokens ? max_target : c->max_new_tokens;
    int max_prompt = gkd_lua_opt_size(L, 1, "gkd.run", "max_prompt", seq + 1 - longest > 0 ? seq + 1 - longest : 0);
    if (max_prompt < 2)
        luaL_error(L, "gkd.run: max_new_tokens/max_target (%d) leave no room for a prompt in max_seq_len %d", longest,
                   seq);
    if (gkd_dataset_tokenize(s->train_text, s->tok->tok, max_prompt, max_target, &s->train_tok) != GKD_OK)
        gkd_lua_raise(L, "gkd.run: tokenizing the training data");
    if (s->held_text && s->held_text->n > 0) {
        if (gkd_dataset_tokenize(s->held_text, s->tok->tok, max_prompt, max_target, &s->held_tok) != GKD_OK)
            gkd_lua_raise(L, "gkd.run: tokenizing the held-out data");
        s->has_held = 1;
    }
    if (s->has_held && s->n_metrics == 0) gkd_lua_train_add_metric(L, s, "length", gkd_metric_find("length", GKD_METRIC_USE_EVAL));
    if (s->n_metrics > 0) s->metrics[0].records = 1;
    s->samples_per_eval = 8;
    for (int i = 0; i < s->n_metrics; i++) {
        c->text_metrics[i].name = s->metrics[i].name;
        c->text_metrics[i].fn = gkd_lua_train_text_metric;
        c->text_metrics[i].ctx = &s->metrics[i];
    }
    c->n_text_metrics = s->has_held ? s->n_metrics : 0;
}

/* cfg.checkpoint: default on, at the end only, the last 2 kept, in checkpoints/<name>. */
static void read_checkpoint(lua_State *L, train_state *s) {
    gkd_train_config *c = &s->cfg;
    lua_getfield(L, 1, "checkpoint");
    int ck_on = !(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    const char *ck_dir = NULL;
    c->checkpoint_keep = 2;
    if (lua_istable(L, -1)) {
        int ck = lua_gettop(L);
        c->checkpoint_every = gkd_lua_opt_size(L, ck, "gkd.run: checkpoint", "every", 0);
        ck_dir = gkd_lua_opt_string(L, ck, "gkd.run: checkpoint", "dir", NULL);
        c->checkpoint_keep = gkd_lua_opt_size(L, ck, "gkd.run: checkpoint", "keep", 2);
    }
    if (ck_on) {
        if (ck_dir) {
            s->checkpoint_dir = gkd_lua_strdup(ck_dir);
        } else {
            /* checkpoints/<name> with characters outside [A-Za-z0-9._=,-] replaced */
            size_t n = strlen(s->ctx_name);
            s->checkpoint_dir = malloc(n + 16);
            if (s->checkpoint_dir) {
                strcpy(s->checkpoint_dir, "checkpoints/");
                char *p = s->checkpoint_dir + strlen(s->checkpoint_dir);
                for (size_t i = 0; i < n; i++) {
                    char ch = s->ctx_name[i];
                    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                             strchr("._=,-", ch) != NULL;
                    *p++ = ch == '/' ? '/' : ok ? ch : '_';
                }
                *p = '\0';
            }
        }
        if (!s->checkpoint_dir) luaL_error(L, "out of memory");
        if (gkd_lua_is_sandboxed(L) && !gkd_lua_path_allowed(s->checkpoint_dir))
            luaL_error(L,
                       "gkd.run: checkpoint folder '%s' is outside the current directory: in --sandbox gkd writes "
                       "only below it",
                       s->checkpoint_dir);
    }
    lua_pop(L, 1);
    c->checkpoint_dir = s->checkpoint_dir;
}

/* The result: the last training metrics (with step, when steps ran), eval = the last evaluation. */
static void push_result(lua_State *L, train_state *s, const gkd_run_result *r, int64_t first_step, double elapsed) {
    lua_newtable(L);
    int steps_run = (int)(gkd_trainer_current_step(s->trainer) - first_step);
    if (steps_run > 0) {
        for (int i = 0; i < s->n_train; i++) {
            lua_pushnumber(L, s->train_slots[i].value);
            lua_setfield(L, -2, s->train_slots[i].name);
        }
        lua_pushinteger(L, gkd_trainer_current_step(s->trainer));
        lua_setfield(L, -2, "step");
    }
    lua_createtable(L, 0, s->n_eval);
    for (int i = 0; i < s->n_eval; i++) {
        lua_pushnumber(L, s->eval_slots[i].value);
        lua_setfield(L, -2, s->eval_slots[i].name);
    }
    lua_setfield(L, -2, "eval");
    lua_pushinteger(L, steps_run), lua_setfield(L, -2, "steps_run");
    lua_pushnumber(L, elapsed), lua_setfield(L, -2, "seconds");
    lua_pushnumber(L, s->lua_seconds), lua_setfield(L, -2, "lua_seconds");
    if (s->checkpoint_dir) lua_pushstring(L, s->checkpoint_dir), lua_setfield(L, -2, "checkpoint_dir");
    if (r->interrupted) {
        lua_pushstring(L, gkd_lua_stop_signal()), lua_setfield(L, -2, "interrupted_by");
        if (r->checkpoint_step >= 0) lua_pushinteger(L, r->checkpoint_step), lua_setfield(L, -2, "checkpoint_step");
    }
    lua_pushstring(L, r->interrupted ? "interrupted" : "finished");
}

/* gkd._train(cfg, ctx) -> final metrics, "finished" | "interrupted"
 * ctx: {store = gkd.Store, run_id = n, name = s, resume_dir = path|nil, quiet = bool}
 * An interrupted run's result has interrupted_by ("SIGTERM", "SIGINT") and checkpoint_step (the step it
 * continues from: the checkpoint saved as it stopped, or nil when it stopped inside a callback and
 * continues from its last earlier checkpoint). */
static int l_train(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    gkd_lua_check_keys(L, 2, "gkd._train", train_ctx_keys);
    refuse_nested(L);
    lua_settop(L, 2);
    /* The state first: everything below belongs to it. */
    train_state *s = lua_newuserdatauv(L, sizeof *s, 1);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, TRAIN_STATE);
    int si = lua_gettop(L); /* 3 */
    lua_newtable(L);
    lua_setiuservalue(L, si, 1);
    s->L = L;
    s->on_step_ref = s->on_eval_ref = LUA_NOREF;
    lua_newtable(L);
    s->metrics_ref = gkd_lua_train_keep(L, si, -1);
    lua_pop(L, 1);

    lua_getfield(L, 2, "store");
    gkd_lua_store *store = lua_isnil(L, -1) ? NULL : gkd_lua_check_store(L, -1);
    lua_pop(L, 1);
    s->sink.store = store ? store->store : NULL;
    s->sink.run_id = gkd_lua_opt_int(L, 2, "gkd._train", "run_id", 0);
    s->ctx_name = gkd_lua_opt_string(L, 2, "gkd._train", "name", "run");
    snprintf(s->name, sizeof s->name, "%s", s->ctx_name);
    const char *resume_dir = gkd_lua_opt_string(L, 2, "gkd._train", "resume_dir", NULL);
    s->quiet = gkd_lua_opt_bool(L, 2, "gkd._train", "quiet", 0);
    read_callback_limit(L, 1, s);

    s->reward_ref = LUA_NOREF;
    build_config(L, 1, si, s, &s->cfg);
    gkd_lua_train_read_metrics(L, 1, si, s);
    gkd_lua_train_read_reward(L, 1, si, s);
    gkd_train_config *c = &s->cfg;
    /* The process group (rl/dist.h): refuses here when launched as several ranks of a build without MPI. */
    if (gkd_dist_world(&c->dist) != GKD_OK) return gkd_lua_raise(L, "gkd.run");
    c->reward = s->reward;
    c->on_metric = metric_sink;
    c->metric_ctx = s;

    lua_getfield(L, 1, "on_step");
    if (lua_isfunction(L, -1)) s->on_step_ref = gkd_lua_train_keep(L, si, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "on_eval");
    if (lua_isfunction(L, -1)) s->on_eval_ref = gkd_lua_train_keep(L, si, -1);
    lua_pop(L, 1);
    read_handles(L, si, s);
    read_held_out(L, si, s);
    tokenize_data(L, s);
    read_checkpoint(L, s);

    if (gkd_trainer_create(c, s->student->m, s->teacher ? s->teacher->m : NULL, s->tok->tok, s->train_text,
                           &s->train_tok, s->has_held ? s->held_text : NULL, s->has_held ? &s->held_tok : NULL,
                           &s->trainer) != GKD_OK)
        return gkd_lua_raise(L, "gkd.run");

    /* From here on the trainer may call into Lua: publish the context and pin the handles. Nothing
     * below raises until both are undone (the callbacks run in protected calls). */
    luaL_checkstack(L, 16, "gkd.run");
    lua_pushvalue(L, si);
    lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
    pin(s, 1);
    gkd_status st = GKD_OK;
    if (resume_dir && (st = gkd_trainer_load(s->trainer, resume_dir)) != GKD_OK) {
        pin(s, -1);
        lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
        return gkd_lua_raise(L, "gkd.run: resuming");
    }
    s->t0 = gkd_lua_now();
    gkd_progress_init(&s->progress, s->cfg.steps, stderr, s->t0);
    s->progress.interval_s = gkd_progress_interval_from_env();
    int64_t first_step = gkd_trainer_current_step(s->trainer);
    const gkd_run_hooks hooks = {s, hook_should_stop, hook_on_step, hook_on_eval, hook_on_checkpoint, hook_on_step_end};
    gkd_run_result result;
    st = gkd_trainer_run_hooked(s->trainer, &hooks, &result);
    if (st == GKD_ERR_CALLBACK && gkd_lua_callback_interrupted(L)) {
        /* A callback outlived the stop signal's grace period: the step it was in is abandoned (no
         * checkpoint of a half-done step); the run continues from its last checkpoint. */
        result.interrupted = 1;
        result.checkpoint_step = -1;
        st = GKD_OK;
    }
    double elapsed = gkd_lua_now() - s->t0;
    gkd_progress_finish(&s->progress);
    pin(s, -1);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
    if (s->sink.store && st == GKD_OK) st = gkd_store_flush(s->sink.store);
    if (st != GKD_OK) {
        return luaL_error(L, "%s", gkd_error_message());
    }
    push_result(L, s, &result, first_step, elapsed);
    return 2;
}

void gkd_lua_add_train(lua_State *L) {
    luaL_newmetatable(L, TRAIN_STATE);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"_train", l_train},
                                   {"_resolve", l_resolve},
                                   {"_foreign_hint", gkd_lua_foreign_hint_l},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_newtable(L);
    lua_pushboolean(L, 1); /* GKD + RL: reward and alpha are supported */
    lua_setfield(L, -2, "rl");
    lua_setfield(L, -2, "_features");
    gkd_lua_add_dist(L);
}
