/* gkd.store: the run store (core/store/store.h) as gkd.Store userdata, for gkd.run, sweeps and user queries.
 * Rules: a store is never used across fork(): children open their own (the prelude does). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/lua_internal.h"

static int store_gc(lua_State *L) {
    gkd_lua_store *s = luaL_checkudata(L, 1, GKD_LUA_STORE);
    gkd_status st = gkd_store_close(s->store);
    int had = s->store != NULL;
    s->store = NULL;
    free(s->path);
    s->path = NULL;
    if (had && st != GKD_OK) return gkd_lua_fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* gkd.store.open(path [, {readonly = bool}]) -> store | nil, message */
static int l_open(lua_State *L) {
    static const char *const keys[] = {"readonly", NULL};
    const char *path = luaL_checkstring(L, 1);
    int readonly = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        gkd_lua_check_keys(L, 2, "gkd.store.open", keys);
        readonly = gkd_lua_opt_bool(L, 2, "gkd.store.open", "readonly", 0);
    }
    gkd_lua_store *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, GKD_LUA_STORE);
    gkd_status st = readonly ? gkd_store_open_readonly(path, &s->store) : gkd_store_open(path, &s->store);
    if (st != GKD_OK) return gkd_lua_fail(L);
    s->path = gkd_lua_strdup(path);
    return 1;
}

static int ok_or_fail(lua_State *L, gkd_status st) {
    if (st != GKD_OK) return gkd_lua_fail(L);
    lua_pushboolean(L, 1);
    return 1;
}

static gkd_run_status check_status(lua_State *L, int arg) {
    static const char *const names[] = {"running", "finished", "failed", "interrupted", NULL};
    return (gkd_run_status)luaL_checkoption(L, arg, NULL, names);
}

/* s:sweep(name [, config_json]) -> id: finds the sweep or creates it. */
static int store_sweep(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    const char *name = luaL_checkstring(L, 2);
    const char *config = luaL_optstring(L, 3, NULL);
    int64_t id;
    gkd_status st = gkd_store_sweep_find(s->store, name, &id);
    if (st == GKD_ERR_NOT_FOUND) st = gkd_store_sweep_create(s->store, name, config, &id);
    if (st != GKD_OK) return gkd_lua_fail(L);
    lua_pushinteger(L, id);
    return 1;
}

static int store_sweep_find(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    int64_t id;
    gkd_status st = gkd_store_sweep_find(s->store, luaL_checkstring(L, 2), &id);
    if (st == GKD_ERR_NOT_FOUND) {
        luaL_pushfail(L);
        return 1;
    }
    if (st != GKD_OK) return gkd_lua_fail(L);
    lua_pushinteger(L, id);
    return 1;
}

/* s:run_begin(name, {sweep_id = 0, config = "{}", seed = 0, config_hash = nil}) -> id */
static int store_run_begin(lua_State *L) {
    static const char *const keys[] = {"sweep_id", "config", "seed", "config_hash", NULL};
    const char *fname = "store:run_begin";
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    const char *name = luaL_checkstring(L, 2);
    if (lua_isnoneornil(L, 3)) lua_settop(L, 2), lua_newtable(L);
    luaL_checktype(L, 3, LUA_TTABLE);
    gkd_lua_check_keys(L, 3, fname, keys);
    lua_Integer sweep = gkd_lua_opt_int(L, 3, fname, "sweep_id", 0);
    const char *config = gkd_lua_opt_string(L, 3, fname, "config", NULL);
    lua_Integer seed = gkd_lua_opt_int(L, 3, fname, "seed", 0);
    if (seed < 0) return luaL_error(L, "%s: seed must be >= 0", fname);
    const char *hash = gkd_lua_opt_string(L, 3, fname, "config_hash", NULL);
    int64_t id;
    if (gkd_store_run_begin(s->store, name, sweep, config, (uint64_t)seed, &id) != GKD_OK) return gkd_lua_fail(L);
    if (hash && gkd_store_run_set_config_hash(s->store, id, hash) != GKD_OK) return gkd_lua_fail(L);
    lua_pushinteger(L, id);
    return 1;
}

/* s:run_set_config_hash(run_id, hash) -> true | nil, message */
static int store_run_set_config_hash(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    return ok_or_fail(L, gkd_store_run_set_config_hash(s->store, luaL_checkinteger(L, 2), luaL_optstring(L, 3, NULL)));
}

/* s:run_warning(run_id, message) -> true | nil, message */
static int store_run_warning(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    return ok_or_fail(L, gkd_store_run_warning(s->store, luaL_checkinteger(L, 2), luaL_checkstring(L, 3)));
}

static int store_run_finish(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    gkd_run_status status = check_status(L, 3);
    luaL_argcheck(L, status != GKD_RUN_STATUS_RUNNING, 3, "a finished run cannot be 'running'");
    return ok_or_fail(L, gkd_store_run_finish(s->store, id, status, luaL_optstring(L, 4, NULL)));
}

static int store_run_resume(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    return ok_or_fail(L, gkd_store_run_resume(s->store, luaL_checkinteger(L, 2)));
}

/* s:run_find(name [, sweep_id]) -> {id, sweep_id, seed, status, last_step} | nil */
static int store_run_find(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    gkd_store_run_info info;
    gkd_status st = gkd_store_run_find(s->store, luaL_checkstring(L, 2), luaL_optinteger(L, 3, 0), &info);
    if (st == GKD_ERR_NOT_FOUND) {
        luaL_pushfail(L);
        return 1;
    }
    if (st != GKD_OK) return gkd_lua_fail(L);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, info.id), lua_setfield(L, -2, "id");
    lua_pushinteger(L, info.sweep_id), lua_setfield(L, -2, "sweep_id");
    lua_pushinteger(L, (lua_Integer)info.seed), lua_setfield(L, -2, "seed");
    lua_pushstring(L, gkd_run_status_name(info.status)), lua_setfield(L, -2, "status");
    lua_pushinteger(L, info.last_step), lua_setfield(L, -2, "last_step");
    return 1;
}

static int store_metric(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    return ok_or_fail(L, gkd_store_metric(s->store, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3),
                                          luaL_checkstring(L, 4), luaL_checknumber(L, 5)));
}

static int store_eval(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    return ok_or_fail(L, gkd_store_eval(s->store, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3),
                                        luaL_checkstring(L, 4), luaL_checkstring(L, 5), luaL_checknumber(L, 6)));
}

static int store_flush(lua_State *L) {
    return ok_or_fail(L, gkd_store_flush(gkd_lua_check_store(L, 1)->store));
}

/* s:sample{run_id, step, split = "train", prompt, output, reward = nil} */
static int store_sample(lua_State *L) {
    static const char *const keys[] = {"run_id", "step", "split", "prompt", "output", "reward", NULL};
    const char *fname = "store:sample";
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    gkd_lua_check_keys(L, 2, fname, keys);
    gkd_store_sample_row row;
    memset(&row, 0, sizeof row);
    row.run_id = gkd_lua_opt_int(L, 2, fname, "run_id", 0);
    row.step = gkd_lua_opt_int(L, 2, fname, "step", 0);
    row.split = gkd_lua_opt_string(L, 2, fname, "split", "train");
    row.prompt = gkd_lua_opt_string(L, 2, fname, "prompt", "");
    row.output = gkd_lua_opt_string(L, 2, fname, "output", "");
    lua_getfield(L, 2, "reward");
    row.reward = lua_isnil(L, -1) ? (double)NAN : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return ok_or_fail(L, gkd_store_sample(s->store, &row));
}

static int store_checkpoint(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    return ok_or_fail(L, gkd_store_checkpoint(s->store, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3),
                                              luaL_checkstring(L, 4), luaL_optstring(L, 5, NULL)));
}

/* s:checkpoint_latest(run_id) -> step, path | nil */
static int store_checkpoint_latest(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    int64_t step;
    char *path = NULL;
    gkd_status st = gkd_store_checkpoint_latest(s->store, luaL_checkinteger(L, 2), &step, &path);
    if (st == GKD_ERR_NOT_FOUND) {
        luaL_pushfail(L);
        return 1;
    }
    if (st != GKD_OK) return gkd_lua_fail(L);
    gkd_lua_hold(L, path);
    lua_pushinteger(L, step);
    lua_pushstring(L, path);
    return 2;
}

static int store_truncate_after(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    return ok_or_fail(L, gkd_store_truncate_after(s->store, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3)));
}

/* Rows are collected into the Lua list at the top of the stack. Lua errors cannot happen here except
 * for memory, which the store's statement wrapper survives (it finalizes at close). */
typedef struct {
    lua_State *L;
    int list;
    lua_Integer n;
} query_ctx;

static int collect_row(const gkd_store_row *row, void *p) {
    query_ctx *q = p;
    lua_State *L = q->L;
    int nc = gkd_store_row_columns(row);
    lua_createtable(L, 0, nc);
    for (int c = 0; c < nc; c++) {
        if (gkd_store_row_is_null(row, c)) continue;
        /* A column's value in its natural Lua type: text that reads whole as an integer or a number
         * becomes one (the store has no column holding numeric-looking names). */
        const char *text = gkd_store_row_text(row, c);
        char *end = NULL;
        long long i = text && *text ? strtoll(text, &end, 10) : 0;
        if (text && *text && *end == '\0') {
            lua_pushinteger(L, (lua_Integer)i);
        } else {
            if (text && *text) strtod(text, &end);
            if (text && *text && *end == '\0')
                lua_pushnumber(L, gkd_store_row_double(row, c)); /* the stored double, not its 15-digit text */
            else
                lua_pushstring(L, text ? text : "");
        }
        lua_setfield(L, -2, gkd_store_row_name(row, c));
    }
    lua_rawseti(L, q->list, ++q->n);
    return 0;
}

/* s:query(sql, ...) -> list of rows (tables keyed by column name; NULL columns are absent). Parameters
 * are bound as text (SQLite's affinity rules compare them with numeric columns as numbers); nil binds
 * NULL. At most 8. Reads only: gkd_store_query refuses writes, ATTACH, setting pragmas and transactions
 * (nil, message). */
static int store_query(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    int np = lua_gettop(L) - 2;
    luaL_argcheck(L, np <= 8, 11, "at most 8 parameters");
    const char *p[8] = {0};
    char types[9] = {0};
    for (int i = 0; i < np; i++) {
        int a = 3 + i;
        types[i] = 's';
        if (lua_isnil(L, a)) continue;
        if (lua_isinteger(L, a)) {
            lua_pushfstring(L, "%I", lua_tointeger(L, a));
        } else if (lua_type(L, a) == LUA_TNUMBER) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.17g", lua_tonumber(L, a));
            lua_pushstring(L, buf);
        } else {
            luaL_checkstring(L, a);
            lua_pushvalue(L, a);
        }
        lua_replace(L, a);
        p[i] = lua_tostring(L, a);
    }
    lua_newtable(L);
    query_ctx q = {L, lua_gettop(L), 0};
    gkd_status st = gkd_store_query(s->store, collect_row, &q, sql, types, p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                                    p[7]);
    if (st != GKD_OK) return gkd_lua_fail(L);
    return 1;
}

static int store_tostring(lua_State *L) {
    gkd_lua_store *s = luaL_checkudata(L, 1, GKD_LUA_STORE);
    if (!s->store)
        lua_pushstring(L, "gkd.Store (closed)");
    else
        lua_pushfstring(L, "gkd.Store(%s)", s->path ? s->path : "?");
    return 1;
}

static int store_index(lua_State *L) {
    gkd_lua_store *s = luaL_checkudata(L, 1, GKD_LUA_STORE);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "path") == 0) return lua_pushstring(L, s->path), 1;
    luaL_getmetatable(L, GKD_LUA_STORE);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int store_gc_meta(lua_State *L) {
    store_gc(L);
    return 0;
}

/* s:merge(path) -> {runs_added, runs_updated, rows_read, skipped} | nil, message: the runs of another store
 * (a Slurm task's own file) into this one (gkd_store_merge). */
static int store_merge(lua_State *L) {
    gkd_lua_store *s = gkd_lua_check_store(L, 1);
    gkd_store_merge_stats stats;
    if (gkd_store_merge(s->store, luaL_checkstring(L, 2), &stats) != GKD_OK) return gkd_lua_fail(L);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, stats.runs_added);
    lua_setfield(L, -2, "runs_added");
    lua_pushinteger(L, stats.runs_updated);
    lua_setfield(L, -2, "runs_updated");
    lua_pushinteger(L, stats.rows_read);
    lua_setfield(L, -2, "rows_read");
    lua_pushboolean(L, stats.skipped);
    lua_setfield(L, -2, "skipped");
    return 1;
}

void gkd_lua_open_store(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", store_gc_meta},      {"__close", store_gc_meta},
                                    {"__tostring", store_tostring}, {"__index", store_index}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"close", store_gc},
                                       {"sweep", store_sweep},
                                       {"sweep_find", store_sweep_find},
                                       {"run_begin", store_run_begin},
                                       {"run_finish", store_run_finish},
                                       {"run_resume", store_run_resume},
                                       {"run_find", store_run_find},
                                       {"run_set_config_hash", store_run_set_config_hash},
                                       {"run_warning", store_run_warning},
                                       {"metric", store_metric},
                                       {"eval", store_eval},
                                       {"flush", store_flush},
                                       {"sample", store_sample},
                                       {"checkpoint", store_checkpoint},
                                       {"checkpoint_latest", store_checkpoint_latest},
                                       {"truncate_after", store_truncate_after},
                                       {"query", store_query},
                                       {"merge", store_merge},
                                       {NULL, NULL}};
    luaL_newmetatable(L, GKD_LUA_STORE);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"open", l_open}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
