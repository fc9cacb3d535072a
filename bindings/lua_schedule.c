/* gkd.schedule: the closed-form schedules of rl/schedule.h as gkd.Schedule values (callable: s(step)).
 * A Lua function(step, metrics) is also accepted wherever a schedule is; the trainer binding wraps it. */
#include <string.h>

#include "bindings/lua_internal.h"

static gkd_lua_schedule *push_schedule(lua_State *L, gkd_schedule s) {
    gkd_lua_schedule *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->s = s;
    luaL_setmetatable(L, GKD_LUA_SCHEDULE);
    return u;
}

static lua_Integer check_steps(lua_State *L, int arg, int allow_zero) {
    lua_Integer n = luaL_checkinteger(L, arg);
    luaL_argcheck(L, allow_zero ? n >= 0 : n >= 1, arg, allow_zero ? "steps must be >= 0" : "steps must be >= 1");
    return n;
}

static int l_constant(lua_State *L) {
    push_schedule(L, gkd_schedule_constant(luaL_checknumber(L, 1)));
    return 1;
}

static int l_linear(lua_State *L) {
    push_schedule(L, gkd_schedule_linear(luaL_checknumber(L, 1), luaL_checknumber(L, 2), check_steps(L, 3, 0)));
    return 1;
}

static int l_cosine(lua_State *L) {
    push_schedule(L, gkd_schedule_cosine(luaL_checknumber(L, 1), luaL_checknumber(L, 2), check_steps(L, 3, 0)));
    return 1;
}

static int l_step(lua_State *L) {
    push_schedule(L, gkd_schedule_step(luaL_checknumber(L, 1), luaL_checknumber(L, 2), check_steps(L, 3, 0)));
    return 1;
}

static int l_warmup(lua_State *L) {
    push_schedule(L, gkd_schedule_warmup(luaL_checknumber(L, 1), check_steps(L, 2, 0)));
    return 1;
}

static int l_warmup_cosine(lua_State *L) {
    double peak = luaL_checknumber(L, 1), min = luaL_checknumber(L, 2);
    lua_Integer warmup = check_steps(L, 3, 0), total = check_steps(L, 4, 0);
    push_schedule(L, gkd_schedule_warmup_cosine(peak, min, warmup, total));
    return 1;
}

/* piecewise({{step, value}, ...}) or piecewise({steps...}, {values...}) */
static int l_piecewise(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t points[GKD_SCHEDULE_MAX_POINTS];
    double values[GKD_SCHEDULE_MAX_POINTS];
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 1 && n <= GKD_SCHEDULE_MAX_POINTS, 1, "1 to 32 points expected");
    int pairs = lua_isnoneornil(L, 2);
    if (!pairs) {
        luaL_checktype(L, 2, LUA_TTABLE);
        luaL_argcheck(L, luaL_len(L, 2) == n, 2, "as many values as steps expected");
    }
    for (lua_Integer i = 1; i <= n; i++) {
        if (pairs) {
            lua_rawgeti(L, 1, i);
            if (!lua_istable(L, -1)) return luaL_error(L, "piecewise: point %I must be {step, value}", i);
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
        } else {
            lua_pushnil(L);
            lua_rawgeti(L, 1, i);
            lua_rawgeti(L, 2, i);
        }
        int isint;
        lua_Integer p = lua_tointegerx(L, -2, &isint);
        if (!isint || p < 0) return luaL_error(L, "piecewise: step of point %I must be an integer >= 0", i);
        if (lua_type(L, -1) != LUA_TNUMBER) return luaL_error(L, "piecewise: value of point %I must be a number", i);
        points[i - 1] = p;
        values[i - 1] = lua_tonumber(L, -1);
        lua_pop(L, 3);
    }
    gkd_schedule s;
    if (gkd_schedule_piecewise(points, values, (int)n, &s) != GKD_OK) return gkd_lua_raise(L, "gkd.schedule.piecewise");
    push_schedule(L, s);
    return 1;
}

static int sched_value(lua_State *L) {
    gkd_lua_schedule *u = luaL_checkudata(L, 1, GKD_LUA_SCHEDULE);
    lua_Integer step = luaL_checkinteger(L, 2);
    double v;
    if (gkd_schedule_value(&u->s, step, &v) != GKD_OK) return gkd_lua_raise(L, "schedule");
    lua_pushnumber(L, v);
    return 1;
}

static const char *kind_name(gkd_schedule_kind k) {
    switch (k) {
    case GKD_SCHEDULE_CONSTANT: return "constant";
    case GKD_SCHEDULE_LINEAR: return "linear";
    case GKD_SCHEDULE_COSINE: return "cosine";
    case GKD_SCHEDULE_STEP: return "step";
    case GKD_SCHEDULE_PIECEWISE: return "piecewise";
    case GKD_SCHEDULE_WARMUP: return "warmup";
    case GKD_SCHEDULE_WARMUP_COSINE: return "warmup_cosine";
    case GKD_SCHEDULE_CALLBACK: return "callback";
    }
    return "?";
}

static int sched_tostring(lua_State *L) {
    const gkd_schedule *s = &((gkd_lua_schedule *)luaL_checkudata(L, 1, GKD_LUA_SCHEDULE))->s;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char tmp[128];
    switch (s->kind) {
    case GKD_SCHEDULE_CONSTANT: snprintf(tmp, sizeof tmp, "constant(%.6g)", s->start); break;
    case GKD_SCHEDULE_LINEAR:
    case GKD_SCHEDULE_COSINE:
        snprintf(tmp, sizeof tmp, "%s(%.6g, %.6g, %lld)", kind_name(s->kind), s->start, s->end, (long long)s->steps);
        break;
    case GKD_SCHEDULE_STEP:
        snprintf(tmp, sizeof tmp, "step(%.6g, %.6g, %lld)", s->start, s->factor, (long long)s->steps);
        break;
    case GKD_SCHEDULE_WARMUP: snprintf(tmp, sizeof tmp, "warmup(%.6g, %lld)", s->start, (long long)s->steps); break;
    case GKD_SCHEDULE_WARMUP_COSINE:
        snprintf(tmp, sizeof tmp, "warmup_cosine(%.6g, %.6g, %lld, %lld)", s->start, s->end, (long long)s->warmup,
                 (long long)s->steps);
        break;
    case GKD_SCHEDULE_PIECEWISE:
        luaL_addstring(&b, "piecewise(");
        for (int i = 0; i < s->n_points; i++) {
            snprintf(tmp, sizeof tmp, "%s{%lld, %.6g}", i ? ", " : "", (long long)s->points[i], s->values[i]);
            luaL_addstring(&b, tmp);
        }
        snprintf(tmp, sizeof tmp, ")");
        break;
    default: snprintf(tmp, sizeof tmp, "%s", kind_name(s->kind)); break;
    }
    luaL_addstring(&b, tmp);
    luaL_pushresult(&b);
    return 1;
}

static int sched_call(lua_State *L) {
    /* s(step): __call passes the schedule first */
    return sched_value(L);
}

static int sched_index(lua_State *L) {
    gkd_lua_schedule *u = luaL_checkudata(L, 1, GKD_LUA_SCHEDULE);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "kind") == 0) return lua_pushstring(L, kind_name(u->s.kind)), 1;
    luaL_getmetatable(L, GKD_LUA_SCHEDULE);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int sched_gc(lua_State *L) {
    (void)luaL_checkudata(L, 1, GKD_LUA_SCHEDULE); /* holds no resource */
    return 0;
}

/* s:check(name, lo, hi): raises when the schedule leaves [lo, hi] (endpoints and points). */
static int sched_check(lua_State *L) {
    gkd_lua_schedule *u = luaL_checkudata(L, 1, GKD_LUA_SCHEDULE);
    const char *name = luaL_checkstring(L, 2);
    if (gkd_schedule_check_range(&u->s, name, luaL_checknumber(L, 3), luaL_checknumber(L, 4)) != GKD_OK)
        return luaL_error(L, "%s", gkd_error_message());
    lua_pushvalue(L, 1);
    return 1;
}

void gkd_lua_open_schedule(lua_State *L) {
    static const luaL_Reg meta[] = {{"__gc", sched_gc},       {"__close", sched_gc}, {"__tostring", sched_tostring},
                                    {"__call", sched_call},   {"__index", sched_index}, {NULL, NULL}};
    static const luaL_Reg methods[] = {{"value", sched_value}, {"check", sched_check}, {NULL, NULL}};
    luaL_newmetatable(L, GKD_LUA_SCHEDULE);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"constant", l_constant},   {"linear", l_linear},
                                   {"cosine", l_cosine},       {"step", l_step},
                                   {"piecewise", l_piecewise}, {"warmup", l_warmup},
                                   {"warmup_cosine", l_warmup_cosine}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
