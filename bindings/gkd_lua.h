/* Embedding gkd's Lua: a state with the standard libraries and the `gkd` module, protected calls with a
 * traceback, an instruction budget for runaway scripts, and the measurement of Lua's share of a step.
 * Rules: every call into Lua goes through gkd_lua_pcall (or lua_pcall with gkd_lua_traceback as the
 * message handler); the `gkd` module is C primitives (luaopen_gkd) plus the Lua prelude in scripts-lua/,
 * which is compiled into the binary (bindings/prelude_data.c, made by scripts-lua/embed.sh) so an
 * installed gkd needs no files beside it; GKD_PRELUDE_DIR in the environment loads the prelude from that
 * folder instead (for working on it without rebuilding). docs/lua-api.md documents the module. */
#ifndef GKD_BINDINGS_LUA_H
#define GKD_BINDINGS_LUA_H

#include <stdint.h>

#include <lua.h>

#include "core/error.h"

/* The `gkd` module: C functions, then the prelude run over them. Raises if the prelude fails to load. */
int luaopen_gkd(lua_State *L);

/* A new state with the standard libraries open and `gkd` in package.preload (loaded by require "gkd";
 * gkd_lua_run_script also sets the global `gkd`). NULL when out of memory. Close with lua_close. */
lua_State *gkd_lua_state_new(void);

/* The message handler: turns the error object into a string and appends a traceback (as lua.c does). */
int gkd_lua_traceback(lua_State *L);

/* lua_pcall with gkd_lua_traceback as the message handler. On failure the error message with its
 * traceback is on the stack, as lua_pcall leaves it. */
int gkd_lua_pcall(lua_State *L, int nargs, int nresults);

/* Loads a script file (or `code` when path is NULL; `chunkname` names it) and runs it with `arg` set as
 * lua.c sets it: arg[0] the script, arg[1..n] the arguments, which are also passed as the chunk's `...`.
 * Returns 0 on success; 2 for a syntax error or an unreadable file (the message, "file:line: message",
 * is written to *error, caller frees); 1 for a runtime error (message with traceback in *error).
 * nresults results of the chunk are left on the stack on success (LUA_MULTRET allowed). */
int gkd_lua_run_script(lua_State *L, const char *path, const char *code, const char *chunkname, int argc,
                       char **argv, int nresults, char **error);

/* Bounds a script: after `count` VM instructions from now the running Lua code raises "instruction
 * limit exceeded". 0 removes the limit. */
void gkd_lua_set_instruction_limit(lua_State *L, int64_t count);

/* SIGINT / SIGTERM handlers that ask running trainings to stop at the next step boundary (they save a
 * checkpoint and mark the run interrupted); a second signal restores the default action. */
void gkd_lua_install_signal_handlers(void);
/* 1 once a stop was requested. */
int gkd_lua_stop_requested(void);

/* Time spent in Lua during training (schedules, callbacks, Lua metrics and rewards) against the whole
 * step. */
typedef struct {
    int steps;                     /* steps measured */
    double lua_seconds_per_step;   /* in Lua functions called by the trainer */
    double total_seconds_per_step; /* wall time of a whole training step */
    double fraction;               /* lua / total */
} gkd_lua_overhead;

/* Runs `steps` (>= 1) GKD + RL training steps of a tiny model (dim 32, 2 layers, vocab 300, batch 8 =
 * 2 prompts x 4 samples, 16 new tokens) on the built-in sample data, every schedule a Lua function, the
 * reward a Lua function called on every sample, and a Lua on_step callback, in a fresh state, writing
 * nothing to disk (an in-memory run store); the first step (allocations) is included. GKD_ERR_SCRIPT with
 * the Lua message on failure. */
gkd_status gkd_lua_bench_overhead(int steps, gkd_lua_overhead *out);

#endif
