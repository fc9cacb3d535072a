/* The `gkd` Lua module's entry (luaopen_gkd) and the embedding helpers of gkd_lua.h: states, protected
 * calls with tracebacks, script running with lua.c's `arg`, limits on Lua code (memory, instructions, time),
 * stop signals, the sandbox.
 * Rules: the module is the C submodules plus the prelude (the .lua files of scripts-lua/, embedded in the binary),
 * each prelude file a chunk called with the module table as its argument, in the order of
 * gkd_lua_prelude_files. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bindings/gkd_lua.h"
#include "bindings/lua_internal.h"
#include "rl/dist.h"

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

/* ---- the guard: memory, instruction and time limits, stop signals ----
 * A state made here allocates through guard_alloc, whose ud is the state's guard; so the guard of any
 * thread is lua_getallocf's ud, and it is freed with the state's last byte (lua_close needs no helper).
 * guard_hook runs every `period` VM instructions on every thread (threads inherit it from the main one);
 * it counts instructions against the script's limit, or against the callback's while a run's callback
 * runs, and interrupts a callback still running GKD_LUA_STOP_GRACE seconds after a stop signal. Once a
 * limit is passed it raises at every instruction until the limit is reset, so a pcall inside the script
 * cannot swallow it. Finalizers (__gc) run without hooks, so a sandbox refuses them. */

typedef struct {
    size_t used, limit; /* bytes */
    int limit_hit;
    int *freed; /* set to 1 when the allocator frees the guard */
    int sandbox;
    int64_t script_limit, script_used;
    gkd_lua_callback_limit callback_default;
    int in_callback;
    gkd_lua_callback_limit cb;
    int64_t cb_used;
    double cb_started;
    int period;      /* the count the hooks were last set with */
    int tripped;     /* a limit was passed: raise `message` at every instruction */
    int interrupted; /* a stop signal interrupted a callback */
    char message[200];
} guard;

enum { HOOK_PERIOD = 1000 };

static void *guard_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    guard *g = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        g->used -= old;
        if (ptr && g->used == 0) { /* the main block, freed last by lua_close */
            if (g->freed) *g->freed = 1;
            free(g);
        }
        return NULL;
    }
    if (g->limit > 0 && nsize > old && g->used - old + nsize > g->limit) {
        g->limit_hit = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p) g->used = g->used - old + nsize;
    return p;
}

static guard *guard_of(lua_State *L) {
    void *ud = NULL;
    return lua_getallocf(L, &ud) == guard_alloc ? ud : NULL;
}

static volatile sig_atomic_t stop_requested, stop_signal;
static volatile double stop_time; /* written before stop_requested is set */

static void trip(lua_State *L, guard *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->message, sizeof g->message, fmt, ap);
    va_end(ap);
    g->tripped = 1;
    g->period = 1;
    lua_sethook(L, lua_gethook(L), lua_gethookmask(L), 1);
    luaL_error(L, "%s", g->message);
}

static void guard_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    guard *g = guard_of(L);
    if (!g) return;
    if (g->tripped) {
        luaL_error(L, "%s", g->message);
        return;
    }
    if (g->in_callback) {
        g->cb_used += g->period;
        if (g->cb.instructions > 0 && g->cb_used >= g->cb.instructions)
            trip(L, g, "instruction limit exceeded: more than %lld Lua instructions in one call (callback_limit.instructions)",
                 (long long)g->cb.instructions);
        if (g->cb.seconds > 0 || stop_requested) {
            double t = gkd_lua_now();
            if (g->cb.seconds > 0 && t - g->cb_started > g->cb.seconds)
                trip(L, g, "time limit exceeded: more than %g s in one call (callback_limit.seconds)", g->cb.seconds);
            if (stop_requested && t - stop_time >= GKD_LUA_STOP_GRACE) {
                g->interrupted = 1;
                trip(L, g, "interrupted by %s: still running %g s after the signal", gkd_lua_stop_signal(),
                     GKD_LUA_STOP_GRACE);
            }
        }
    } else if (g->script_limit > 0) {
        g->script_used += g->period;
        if (g->script_used >= g->script_limit)
            trip(L, g, "instruction limit exceeded: the script ran more than %lld Lua instructions",
                 (long long)g->script_limit);
    }
}

/* For states not made here (no guard): the plain budget. */
static void count_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "instruction limit exceeded");
}

void gkd_lua_set_instruction_limit(lua_State *L, int64_t count) {
    guard *g = guard_of(L);
    if (!g) {
        if (count <= 0) lua_sethook(L, NULL, 0, 0);
        else lua_sethook(L, count_hook, LUA_MASKCOUNT, count > 0x7fffffff ? 0x7fffffff : (int)count);
        return;
    }
    g->script_limit = count > 0 ? count : 0;
    g->script_used = 0;
    g->tripped = 0;
    g->period = count > 0 && count < HOOK_PERIOD ? (int)count : HOOK_PERIOD;
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, g->period);
}

void gkd_lua_callback_begin(lua_State *L, const gkd_lua_callback_limit *lim, gkd_lua_hook_state *saved) {
    saved->hook = lua_gethook(L);
    saved->mask = lua_gethookmask(L);
    saved->count = lua_gethookcount(L);
    guard *g = guard_of(L);
    if (!g) return;
    g->in_callback = 1;
    g->cb = lim ? *lim : (gkd_lua_callback_limit){0, 0};
    g->tripped = 0;
    gkd_lua_callback_restart(L);
}

void gkd_lua_callback_restart(lua_State *L) {
    guard *g = guard_of(L);
    if (!g || !g->in_callback) return;
    g->cb_used = 0;
    g->cb_started = gkd_lua_now();
    g->period = g->cb.instructions > 0 && g->cb.instructions < HOOK_PERIOD ? (int)g->cb.instructions : HOOK_PERIOD;
    lua_sethook(L, guard_hook, LUA_MASKCOUNT, g->period);
}

void gkd_lua_callback_end(lua_State *L, const gkd_lua_hook_state *saved) {
    guard *g = guard_of(L);
    if (g) {
        g->in_callback = 0;
        g->tripped = 0;
        g->period = saved->hook == guard_hook ? saved->count : HOOK_PERIOD;
        if (g->script_limit > 0 && g->script_used >= g->script_limit) g->tripped = 1; /* still over */
    }
    lua_sethook(L, saved->hook, saved->mask, saved->count);
}

int gkd_lua_callback_interrupted(lua_State *L) {
    guard *g = guard_of(L);
    return g && g->interrupted;
}

gkd_lua_callback_limit gkd_lua_callback_default(lua_State *L) {
    guard *g = guard_of(L);
    return g ? g->callback_default : (gkd_lua_callback_limit){0, 0};
}

int gkd_lua_is_sandboxed(lua_State *L) {
    guard *g = guard_of(L);
    return g && g->sandbox;
}

int gkd_lua_memory_limit_hit(lua_State *L) {
    guard *g = guard_of(L);
    return g && g->limit_hit;
}

int gkd_lua_path_allowed(const char *path) {
    if (!path || !*path || path[0] == '/') return 0;
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return 0;
        p += n;
        while (*p == '/') p++;
    }
    return 1;
}

/* ---- stop signals ---- */

enum { MAX_CHILDREN = 1024 };
static volatile sig_atomic_t children[MAX_CHILDREN]; /* pids; 0: free */

void gkd_lua_child_add(long pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == 0) {
            children[i] = (sig_atomic_t)pid;
            return;
        }
}

void gkd_lua_child_remove(long pid) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == (sig_atomic_t)pid) children[i] = 0;
}

static void forward(int sig) {
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] > 0) kill((pid_t)children[i], sig);
}

/* Async-signal-safe: flags, clock_gettime, kill, signal, raise. */
static void on_signal(int sig) {
    int saved_errno = errno;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (!stop_requested) {
        stop_time = t;
        stop_signal = sig;
        stop_requested = 1;
        forward(sig);
    } else if (t - stop_time >= GKD_LUA_STOP_GRACE) {
        forward(sig);
        signal(sig, SIG_DFL);
        raise(sig);
    }
    errno = saved_errno;
}

void gkd_lua_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int gkd_lua_stop_requested(void) {
    return stop_requested != 0;
}

const char *gkd_lua_stop_signal(void) {
    if (!stop_requested) return NULL;
    return stop_signal == SIGINT ? "SIGINT" : stop_signal == SIGTERM ? "SIGTERM" : "a signal";
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
    /* Each opener pushes its submodule's table. */
    static const struct {
        const char *name;
        void (*open)(lua_State *L);
    } submodules[] = {{"task", gkd_lua_open_task},     {"tokenizer", gkd_lua_open_tokenizer},
                      {"model", gkd_lua_open_model},   {"schedule", gkd_lua_open_schedule},
                      {"reward", gkd_lua_open_reward}, {"store", gkd_lua_open_store},
                      {"sys", gkd_lua_open_sys},       {"json", gkd_lua_open_json}};
    for (size_t k = 0; k < sizeof submodules / sizeof *submodules; k++) {
        submodules[k].open(L);
        lua_setfield(L, M, submodules[k].name);
    }
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

/* ---- states ---- */

static int panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "gkd: unprotected error in Lua: %s\n", msg ? msg : "(an error object that is not a string)");
    return 0; /* Lua aborts */
}

static int open_libs(lua_State *L) {
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_gkd);
    lua_setfield(L, -2, "gkd");
    return 0;
}

lua_State *gkd_lua_state_new_limited(const gkd_lua_limits *limits) {
    guard *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    int freed = 0;
    g->freed = &freed;
    if (limits) {
        g->limit = limits->memory;
        g->sandbox = limits->sandbox;
        g->callback_default = limits->callback;
    }
    lua_State *L = lua_newstate(guard_alloc, g);
    if (!L) {
        if (!freed) free(g);
        return NULL;
    }
    g->freed = NULL;
    lua_atpanic(L, panic);
    lua_pushcfunction(L, open_libs);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        lua_close(L);
        return NULL;
    }
    /* The hook is on from the start, so that threads created later inherit it. */
    gkd_lua_set_instruction_limit(L, limits ? limits->instructions : 0);
    return L;
}

lua_State *gkd_lua_state_new(void) {
    return gkd_lua_state_new_limited(NULL);
}

/* ---- the sandbox (docs/trust.md) ----
 * The script runs with its own _ENV: the safe parts of the base library, copies of string, table, math,
 * utf8 and coroutine, os.time/clock/date/difftime, a text-only load, a require that knows only "gkd",
 * and a copy of the gkd module without the process primitives. The prelude keeps the real globals and
 * module (its functions are closures over them), so what the script changes in its copies cannot reach
 * the prelude. gkd writes files only below the current directory (or at the command line's --db); the
 * shared metatables are hidden behind __metatable; finalizers (__gc) are refused, as hooks do not run in
 * them. Names that were removed raise "<name> is not available in --sandbox" rather than read as nil. */

static const char *const REFUSED_GLOBALS[] = {"dofile", "loadfile", "debug", "package", NULL};
static const char *const REFUSED_OS[] = {"execute", "exit", "getenv", "remove", "rename", "tmpname", "setlocale", NULL};
static const char *const REFUSED_IO[] = {"open",   "close", "read",  "write", "lines",  "input",  "output",
                                         "popen",  "tmpfile", "type", "stdin", "stdout", "stderr", NULL};
static const char *const REFUSED_SYS[] = {"spawn", "wait", "kill", "setenv", "mkdir", "sleep", NULL};
static const char *const SAFE_BASE[] = {"assert", "error",    "ipairs",   "next",   "pairs",  "pcall",
                                        "print",  "rawequal", "rawget",   "rawlen", "rawset", "select",
                                        "tonumber", "tostring", "type",   "xpcall", "getmetatable", "_VERSION", NULL};
static const char *const SAFE_OS[] = {"time", "clock", "date", "difftime", NULL};
static const char *const COPIED_LIBS[] = {"string", "table", "math", "utf8", "coroutine", NULL};

static int refused(lua_State *L) {
    return luaL_error(L, "%s is not available in --sandbox (see docs/trust.md)", lua_tostring(L, lua_upvalueindex(1)));
}

/* __index(t, k): raises for the names in upvalue 2 (a set), prefixed with upvalue 1; nil otherwise. */
static int refusing_index(lua_State *L) {
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) == LUA_TNIL) return 0;
    return luaL_error(L, "%s%s is not available in --sandbox (see docs/trust.md)", lua_tostring(L, lua_upvalueindex(1)),
                      lua_tostring(L, 2));
}

/* Gives the table at idx a metatable whose __index refuses `names` (which are removed from it). */
static void refuse_names(lua_State *L, int idx, const char *prefix, const char *const *names) {
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, prefix);
    lua_newtable(L);
    for (int i = 0; names[i]; i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, names[i]);
        lua_pushnil(L);
        lua_setfield(L, idx, names[i]);
    }
    lua_pushcclosure(L, refusing_index, 2);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, idx);
}

/* require(name): the sandbox's gkd (upvalue 1) for "gkd"; nothing else can be loaded. */
static int sandbox_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    if (strcmp(name, "gkd") != 0)
        return luaL_error(L, "require '%s': modules cannot be loaded in --sandbox (only 'gkd'; see docs/trust.md)", name);
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* load(chunk [, chunkname [, mode [, env]]]): text chunks only; env defaults to the sandbox's (upvalue 1). */
static int sandbox_load(lua_State *L) {
    int nargs = lua_gettop(L);
    const char *mode = luaL_optstring(L, 3, "t");
    if (strchr(mode, 'b')) return luaL_error(L, "load: binary chunks are refused in --sandbox (see docs/trust.md)");
    size_t len;
    const char *text;
    if (lua_type(L, 1) == LUA_TFUNCTION) { /* a reader function: collect its pieces */
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (;;) {
            lua_pushvalue(L, 1);
            lua_call(L, 0, 1);
            if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) == 0)) {
                lua_pop(L, 1);
                break;
            }
            if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "load: reader function must return a string");
            luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
        text = lua_tolstring(L, -1, &len);
    } else {
        text = luaL_checklstring(L, 1, &len);
    }
    const char *name = luaL_optstring(L, 2, lua_type(L, 1) == LUA_TSTRING ? text : "=(load)");
    if (luaL_loadbufferx(L, text, len, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (nargs >= 4) lua_pushvalue(L, 4);
    else lua_pushvalue(L, lua_upvalueindex(1));
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    return 1;
}

/* setmetatable(t, mt): the real one (upvalue 1), refusing __gc. */
static int sandbox_setmetatable(lua_State *L) {
    if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "__gc") != LUA_TNIL)
        return luaL_error(L, "setmetatable: __gc metamethods are not available in --sandbox (see docs/trust.md)");
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

static int sandbox_collectgarbage(lua_State *L) {
    static const char *const opts[] = {"collect", "count", "step", "isrunning", NULL};
    luaL_checkoption(L, 1, "collect", opts);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* gkd.store.open(path [, opts]): the real one (upvalue 1); a store opened for writing must be the
 * command line's --db (upvalue 2, or nil) or below the current directory. */
static int sandbox_store_open(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    int readonly = 0;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_getfield(L, 2, "readonly");
        readonly = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    const char *cli_db = lua_tostring(L, lua_upvalueindex(2));
    if (!readonly && !(cli_db && strcmp(path, cli_db) == 0) && !gkd_lua_path_allowed(path))
        return luaL_error(L,
                          "gkd.store.open: '%s' is outside the current directory: in --sandbox gkd writes only below it "
                          "(or to the command line's --db)",
                          path);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_createtable(L, 0, 1); /* a fresh options table: what was checked is what the real open reads */
    lua_pushboolean(L, readonly);
    lua_setfield(L, -2, "readonly");
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L);
}

/* Pushes a deep copy of the table at idx; `seen` (a table index) maps originals to copies. */
static void copy_table(lua_State *L, int idx, int seen) {
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 8, "sandbox: module too deep");
    lua_pushvalue(L, idx);
    if (lua_rawget(L, seen) != LUA_TNIL) return;
    lua_pop(L, 1);
    lua_newtable(L);
    int dst = lua_gettop(L);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, dst);
    lua_rawset(L, seen);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            copy_table(L, -1, seen);
            lua_replace(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, dst);
    }
}

/* Replaces methods[name] of the metatable `tname` with a refusal naming `shown`. */
static void refuse_method(lua_State *L, const char *tname, const char *name, const char *shown) {
    luaL_getmetatable(L, tname);
    if (lua_getfield(L, -1, "methods") == LUA_TTABLE) {
        lua_pushstring(L, shown);
        lua_pushcclosure(L, refused, 1);
        lua_setfield(L, -2, name);
    }
    lua_pop(L, 2);
}

/* Hides the metatables of gkd's handles (registry["gkd.X"]) and of strings behind __metatable, so the
 * sandbox cannot change what the prelude and the other handles use. util.kind_of still reads __name. */
static void protect_metatables(lua_State *L) {
    lua_pushnil(L);
    while (lua_next(L, LUA_REGISTRYINDEX)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE && strncmp(lua_tostring(L, -2), "gkd.", 4) == 0) {
            lua_createtable(L, 0, 1);
            lua_pushvalue(L, -3);
            lua_setfield(L, -2, "__name");
            lua_setfield(L, -2, "__metatable");
        }
        lua_pop(L, 1);
    }
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Pushes the sandbox's environment, building it the first time (gkd must be loaded). */
static void push_sandbox_env(lua_State *L) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, "gkd.sandbox.env") == LUA_TTABLE) return;
    lua_pop(L, 1);
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "gkd");
    int real_gkd = lua_gettop(L);
    lua_pushglobaltable(L);
    int G = lua_gettop(L);

    /* the real gkd.store.open checks paths too: the prelude opens the db a script names */
    lua_getfield(L, real_gkd, "store");
    lua_getfield(L, -1, "open");
    lua_getfield(L, real_gkd, "options");
    lua_getfield(L, -1, "db");
    lua_remove(L, -2);
    lua_pushcclosure(L, sandbox_store_open, 2);
    lua_setfield(L, -2, "open");
    lua_pop(L, 1);
    refuse_method(L, GKD_LUA_MODEL, "save", "model:save");
    refuse_method(L, GKD_LUA_TOKENIZER, "save", "tokenizer:save");
    protect_metatables(L);

    lua_newtable(L);
    int seen = lua_gettop(L);
    copy_table(L, real_gkd, seen);
    int box_gkd = lua_gettop(L);
    lua_getfield(L, box_gkd, "sys");
    refuse_names(L, -1, "gkd.sys.", REFUSED_SYS);
    lua_pop(L, 1);

    lua_newtable(L);
    int env = lua_gettop(L);
    for (int i = 0; SAFE_BASE[i]; i++) {
        lua_getfield(L, G, SAFE_BASE[i]);
        lua_setfield(L, env, SAFE_BASE[i]);
    }
    for (int i = 0; COPIED_LIBS[i]; i++) {
        lua_getfield(L, G, COPIED_LIBS[i]);
        copy_table(L, -1, seen);
        lua_setfield(L, env, COPIED_LIBS[i]);
        lua_pop(L, 1);
    }
    lua_newtable(L);
    lua_getfield(L, G, "os");
    for (int i = 0; SAFE_OS[i]; i++) {
        lua_getfield(L, -1, SAFE_OS[i]);
        lua_setfield(L, -3, SAFE_OS[i]);
    }
    lua_pop(L, 1);
    refuse_names(L, -1, "os.", REFUSED_OS);
    lua_setfield(L, env, "os");
    lua_newtable(L);
    refuse_names(L, -1, "io.", REFUSED_IO);
    lua_setfield(L, env, "io");
    lua_pushvalue(L, box_gkd);
    lua_pushcclosure(L, sandbox_require, 1);
    lua_setfield(L, env, "require");
    lua_pushvalue(L, env);
    lua_pushcclosure(L, sandbox_load, 1);
    lua_setfield(L, env, "load");
    lua_getfield(L, G, "setmetatable");
    lua_pushcclosure(L, sandbox_setmetatable, 1);
    lua_setfield(L, env, "setmetatable");
    lua_getfield(L, G, "collectgarbage");
    lua_pushcclosure(L, sandbox_collectgarbage, 1);
    lua_setfield(L, env, "collectgarbage");
    lua_pushvalue(L, box_gkd);
    lua_setfield(L, env, "gkd");
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    refuse_names(L, env, "", REFUSED_GLOBALS);

    lua_pushvalue(L, env);
    lua_setfield(L, LUA_REGISTRYINDEX, "gkd.sandbox.env");
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
}

static int sandbox_env_protected(lua_State *L) {
    push_sandbox_env(L);
    return 1;
}

/* A script that failed on one rank of a data-parallel job (rl/dist.h): says so and ends the whole job, since
 * the other ranks may be waiting for this one in a collective and would never return. Nothing in a single
 * process. */
static void end_job_if_parallel(const char *error) {
    gkd_dist *d = gkd_dist_started();
    if (!d || d->size < 2) return;
    fprintf(stderr, "gkd (rank %d of %d): %s\nending every rank of the job\n", d->rank, d->size,
            error ? error : "the script failed");
    fflush(stderr);
    gkd_dist_abort(d, 1);
}

static int run_script(lua_State *L, const char *path, const char *code, const char *chunkname, int argc,
                      char **argv, int nresults, char **error);

int gkd_lua_run_script(lua_State *L, const char *path, const char *code, const char *chunkname, int argc,
                       char **argv, int nresults, char **error) {
    int rc = run_script(L, path, code, chunkname, argc, argv, nresults, error);
    if (rc != 0) end_job_if_parallel(*error);
    return rc;
}

static int run_script(lua_State *L, const char *path, const char *code, const char *chunkname, int argc,
                      char **argv, int nresults, char **error) {
    *error = NULL;
    int top = lua_gettop(L);
    int sandbox = gkd_lua_is_sandboxed(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "gkd");
    if (gkd_lua_pcall(L, 1, 1) != LUA_OK) {
        *error = gkd_lua_strdup(lua_tostring(L, -1));
        lua_settop(L, top);
        return 1;
    }
    lua_setglobal(L, "gkd");
    const char *mode = sandbox ? "t" : NULL; /* binary chunks can break the VM's memory safety */
    int st = path ? luaL_loadfilex(L, path, mode)
                  : luaL_loadbufferx(L, code, strlen(code), chunkname ? chunkname : "=(command line)", mode);
    if (st != LUA_OK) {
        *error = gkd_lua_strdup(lua_tostring(L, -1));
        lua_settop(L, top);
        return 2;
    }
    int chunk = lua_gettop(L);
    lua_createtable(L, argc, 1);
    lua_pushstring(L, path ? path : "-e");
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (sandbox) {
        lua_pushcfunction(L, gkd_lua_traceback);
        lua_pushcfunction(L, sandbox_env_protected);
        if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
            *error = gkd_lua_strdup(lua_tostring(L, -1));
            lua_settop(L, top);
            return 1;
        }
        lua_remove(L, -2);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "arg");
        lua_setupvalue(L, chunk, 1); /* the chunk's _ENV */
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
