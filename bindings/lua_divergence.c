/* gkd.divergence and gkd.divergence_value: the token-level divergences of rl/divergence.h as
 * gkd.Divergence values, and their value and gradient on plain Lua tables (for users and tests). The
 * shorthands gkd.jsd, gkd.fkl, ... are in the prelude. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bindings/lua_internal.h"
#include "rl/divergence.h"

typedef struct {
    gkd_divergence d;
} lua_divergence;

static const char *const conventions[] = {"paper", "trl", "scaled", NULL};
static const char *const div_keys[] = {"beta", "skew", "convention", "teacher_temperature", "top_k", NULL};

/* gkd.divergence(name [, {beta, skew, convention, teacher_temperature, top_k}]) */
static int l_divergence(lua_State *L) {
    const char *fname = "gkd.divergence";
    const char *name = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        gkd_lua_check_keys(L, 2, fname, div_keys);
    } else {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    lua_divergence *u = lua_newuserdatauv(L, sizeof *u, 0);
    luaL_setmetatable(L, GKD_LUA_DIVERGENCE);
    if (gkd_divergence_parse(name, &u->d) != GKD_OK) return gkd_lua_raise(L, fname);
    u->d.beta = gkd_lua_opt_number(L, 2, fname, "beta", u->d.beta);
    u->d.skew = gkd_lua_opt_number(L, 2, fname, "skew", u->d.skew);
    u->d.teacher_temperature = gkd_lua_opt_number(L, 2, fname, "teacher_temperature", u->d.teacher_temperature);
    u->d.top_k = gkd_lua_opt_size(L, 2, fname, "top_k", u->d.top_k);
    const char *conv = gkd_lua_opt_string(L, 2, fname, "convention", NULL);
    if (conv) {
        int i = 0;
        while (conventions[i] && strcmp(conventions[i], conv) != 0) i++;
        if (!conventions[i]) return luaL_error(L, "%s: convention must be paper, trl or scaled, got '%s'", fname, conv);
        if (u->d.kind != GKD_DIV_JSD) return luaL_error(L, "%s: 'convention' applies to jsd only", fname);
        u->d.convention = (gkd_jsd_convention)i;
    }
    if (gkd_divergence_check(&u->d) != GKD_OK) return gkd_lua_raise(L, fname);
    return 1;
}

const gkd_divergence *gkd_lua_check_divergence(lua_State *L, int idx) {
    return &((lua_divergence *)luaL_checkudata(L, idx, GKD_LUA_DIVERGENCE))->d;
}

/* Rows of logits: a flat list (one row) or a list of rows. Pushes a float buffer; sets N, V. */
static float *read_rows(lua_State *L, int idx, int *N, int *V, int *single, const char *what) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_rawgeti(L, idx, 1);
    int nested = lua_istable(L, -1);
    lua_pop(L, 1);
    lua_Integer n = nested ? luaL_len(L, idx) : 1;
    lua_Integer v = 0;
    if (nested) {
        lua_rawgeti(L, idx, 1);
        v = luaL_len(L, -1);
        lua_pop(L, 1);
    } else {
        v = luaL_len(L, idx);
    }
    if (n < 1 || v < 1) luaL_error(L, "gkd.divergence_value: %s logits are empty", what);
    float *x = lua_newuserdatauv(L, sizeof(float) * (size_t)(n * v), 0);
    for (lua_Integer r = 0; r < n; r++) {
        if (nested) {
            lua_rawgeti(L, idx, r + 1);
            if (!lua_istable(L, -1) || luaL_len(L, -1) != v)
                luaL_error(L, "gkd.divergence_value: %s row %I must have %I logits", what, r + 1, v);
        } else {
            lua_pushvalue(L, idx);
        }
        for (lua_Integer j = 0; j < v; j++) {
            lua_rawgeti(L, -1, j + 1);
            if (lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "gkd.divergence_value: %s logit [%I][%I] is not a number", what, r + 1, j + 1);
            x[r * v + j] = (float)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    *N = (int)n;
    *V = (int)v;
    *single = !nested;
    return x;
}

/* gkd.divergence_value(d, teacher_logits, student_logits) -> value, grad (d/d student logits). One row
 * (flat lists) gives a number and a list; rows give lists. d: a gkd.Divergence or a name. */
static int l_divergence_value(lua_State *L) {
    gkd_divergence d;
    if (lua_type(L, 1) == LUA_TSTRING) {
        if (gkd_divergence_parse(lua_tostring(L, 1), &d) != GKD_OK) return gkd_lua_raise(L, "gkd.divergence_value");
    } else {
        d = *gkd_lua_check_divergence(L, 1);
    }
    int Nt, Vt, Ns, Vs, st1, st2;
    float *t = read_rows(L, 2, &Nt, &Vt, &st1, "teacher");
    float *s = read_rows(L, 3, &Ns, &Vs, &st2, "student");
    if (Nt != Ns || Vt != Vs) return luaL_error(L, "gkd.divergence_value: teacher is %dx%d, student %dx%d", Nt, Vt, Ns, Vs);
    double *value = lua_newuserdatauv(L, sizeof(double) * (size_t)Nt, 0);
    float *grad = lua_newuserdatauv(L, sizeof(float) * (size_t)Nt * (size_t)Vt, 0);
    if (gkd_divergence_rows(&d, t, s, Nt, Vt, value, grad, NULL) != GKD_OK) return gkd_lua_raise(L, "gkd.divergence_value");
    if (st1) {
        lua_pushnumber(L, value[0]);
        lua_createtable(L, Vt, 0);
        for (int j = 0; j < Vt; j++) lua_pushnumber(L, grad[j]), lua_rawseti(L, -2, j + 1);
        return 2;
    }
    lua_createtable(L, Nt, 0);
    for (int r = 0; r < Nt; r++) lua_pushnumber(L, value[r]), lua_rawseti(L, -2, r + 1);
    lua_createtable(L, Nt, 0);
    for (int r = 0; r < Nt; r++) {
        lua_createtable(L, Vt, 0);
        for (int j = 0; j < Vt; j++) lua_pushnumber(L, grad[(size_t)r * Vt + j]), lua_rawseti(L, -2, j + 1);
        lua_rawseti(L, -2, r + 1);
    }
    return 2;
}

static void describe_into(const gkd_divergence *d, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "%s(", gkd_divergence_name(d));
    const char *sep = "";
    const char *param = gkd_divergence_param_name(d);
    if (param) n += snprintf(buf + n, cap - (size_t)n, "%s=%.6g", param, gkd_divergence_param(d)), sep = ", ";
    if (d->teacher_temperature != 1.0)
        n += snprintf(buf + n, cap - (size_t)n, "%steacher_temperature=%.6g", sep, d->teacher_temperature), sep = ", ";
    if (d->top_k > 0) n += snprintf(buf + n, cap - (size_t)n, "%stop_k=%d", sep, d->top_k);
    snprintf(buf + n, cap - (size_t)n, ")");
}

static int div_tostring(lua_State *L) {
    char buf[256];
    describe_into(gkd_lua_check_divergence(L, 1), buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

static int div_index(lua_State *L) {
    const gkd_divergence *d = gkd_lua_check_divergence(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "name") == 0) return lua_pushstring(L, gkd_divergence_name(d)), 1;
    if (strcmp(k, "beta") == 0) return lua_pushnumber(L, d->beta), 1;
    if (strcmp(k, "skew") == 0) return lua_pushnumber(L, d->skew), 1;
    if (strcmp(k, "teacher_temperature") == 0) return lua_pushnumber(L, d->teacher_temperature), 1;
    if (strcmp(k, "top_k") == 0) return lua_pushinteger(L, d->top_k), 1;
    if (strcmp(k, "convention") == 0) return lua_pushstring(L, conventions[d->convention]), 1;
    luaL_getmetatable(L, GKD_LUA_DIVERGENCE);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int div_value_method(lua_State *L) {
    return l_divergence_value(L);
}

static int div_gc(lua_State *L) {
    (void)gkd_lua_check_divergence(L, 1); /* plain settings: nothing to release */
    return 0;
}

void gkd_lua_add_divergence(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", div_gc},       {"__close", div_gc}, {"__tostring", div_tostring},
                                    {"__index", div_index}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"value", div_value_method}, {NULL, NULL}};
    luaL_newmetatable(L, GKD_LUA_DIVERGENCE);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"divergence", l_divergence}, {"divergence_value", l_divergence_value}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
