/* The `gkd` Lua module's entry (luaopen_gkd) and the embedding helpers of gkd_lua.h: states, protected
 * calls with tracebacks, script running with lua.c's `arg`, the instruction budget, stop signals.
 * Rules: the module is the C submodules plus the prelude (the .lua files of scripts-lua/, embedded in the binary),
 * each prelude file a chunk called with the module table as its argument, in the order of
 * gkd_lua_prelude_files. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bindings/gkd_lua.h"
#include "bindings/lua_internal.h"

#ifndef GKD_PRELUDE_DIR
#define GKD_PRELUDE_DIR "scripts-lua"
#endif

/* ---- traceback and protected calls ---- */

int gkd_lua_traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int gkd_lua_pcall(lua_State *L, int nargs, int nresults) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, gkd_lua_traceback);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    return status;
}

/* ---- instruction budget ---- */

static void count_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "instruction limit exceeded");
}

void gkd_lua_set_instruction_limit(lua_State *L, int64_t count) {
    if (count <= 0) {
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    lua_sethook(L, count_hook, LUA_MASKCOUNT, count > 0x7fffffff ? 0x7fffffff : (int)count);
}

/* ---- stop signals ---- */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    if (stop_requested) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_requested = 1;
}

void gkd_lua_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int gkd_lua_stop_requested(void) {
    return stop_requested != 0;
}

/* ---- the module ---- */

static int l_source_dir(lua_State *L) {
    /* The repository the binary was built from (data fixtures live there); GKD_PRELUDE_DIR is its
     * scripts-lua folder. */
    const char *dir = GKD_PRELUDE_DIR;
    const char *slash = strrchr(dir, '/');
    if (slash)
        lua_pushlstring(L, dir, (size_t)(slash - dir));
    else
        lua_pushstring(L, ".");
    return 1;
}

static int l_version(lua_State *L) {
    lua_pushstring(L, GKD_VERSION);
    return 1;
}

static int l_stop_requested(lua_State *L) {
    lua_pushboolean(L, gkd_lua_stop_requested());
    return 1;
}

/* Loads prelude file i: from $GKD_PRELUDE_DIR when set, else the embedded copy. */
static int load_prelude_file(lua_State *L, int i) {
    const gkd_lua_prelude_file *f = &gkd_lua_prelude_files[i];
    const char *dir = getenv("GKD_PRELUDE_DIR");
    if (dir && *dir) {
        lua_pushfstring(L, "%s/%s", dir, f->file);
        int st = luaL_loadfile(L, lua_tostring(L, -1));
        lua_remove(L, -2);
        return st;
    }
    char chunkname[256];
    snprintf(chunkname, sizeof chunkname, "@scripts-lua/%s", f->file);
    return luaL_loadbuffer(L, f->source, strlen(f->source), chunkname);
}

int luaopen_gkd(lua_State *L) {
    static const luaL_Reg fns[] = {{"_source_dir", l_source_dir},
                                   {"version", l_version},
                                   {"stop_requested", l_stop_requested},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    int M = lua_gettop(L);
    gkd_lua_open_task(L);
    lua_setfield(L, M, "task");
    gkd_lua_open_tokenizer(L);
    lua_setfield(L, M, "tokenizer");
    gkd_lua_open_model(L);
    lua_setfield(L, M, "model");
    gkd_lua_open_schedule(L);
    lua_setfield(L, M, "schedule");
    gkd_lua_open_reward(L);
    lua_setfield(L, M, "reward");
    gkd_lua_open_store(L);
    lua_setfield(L, M, "store");
    gkd_lua_open_sys(L);
    lua_setfield(L, M, "sys");
    gkd_lua_open_json(L);
    lua_setfield(L, M, "json");
    lua_settop(L, M);
    gkd_lua_add_divergence(L);
    gkd_lua_add_train(L);
    lua_settop(L, M);
    /* The module is visible to the prelude through package.loaded, so `require "gkd"` inside it
     * returns the table under construction. */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, M);
    lua_setfield(L, -2, "gkd");
    lua_pop(L, 1);
    for (int i = 0; i < gkd_lua_prelude_count; i++) {
        if (load_prelude_file(L, i) != LUA_OK) return lua_error(L);
        lua_pushvalue(L, M);
        if (gkd_lua_pcall(L, 1, 0) != LUA_OK) return lua_error(L);
    }
    lua_settop(L, M);
    return 1;
}

lua_State *gkd_lua_state_new(void) {
    lua_State *L = luaL_newstate();
    if (!L) return NULL;
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_gkd);
    lua_setfield(L, -2, "gkd");
    lua_pop(L, 1);
    return L;
}

int gkd_lua_run_script(lua_State *L, const char *path, const char *code, const char *chunkname, int argc,
                       char **argv, int nresults, char **error) {
    *error = NULL;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "gkd");
    if (gkd_lua_pcall(L, 1, 1) != LUA_OK) {
        *error = gkd_lua_strdup(lua_tostring(L, -1));
        lua_settop(L, top);
        return 1;
    }
    lua_setglobal(L, "gkd");
    int st = path ? luaL_loadfile(L, path) : luaL_loadbuffer(L, code, strlen(code), chunkname ? chunkname : "=(command line)");
    if (st != LUA_OK) {
        *error = gkd_lua_strdup(lua_tostring(L, -1));
        lua_settop(L, top);
        return 2;
    }
    lua_createtable(L, argc, 1);
    lua_pushstring(L, path ? path : "-e");
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    luaL_checkstack(L, argc + 4, "too many arguments");
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    if (gkd_lua_pcall(L, argc, nresults) != LUA_OK) {
        *error = gkd_lua_strdup(lua_tostring(L, -1));
        lua_settop(L, top);
        return 1;
    }
    return 0;
}
