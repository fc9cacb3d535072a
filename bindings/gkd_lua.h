/* Embedding gkd's Lua: a state with the standard libraries and the `gkd` module, protected calls with a
 * traceback, limits on runaway scripts and callbacks, an optional sandbox, stop signals, and the
 * measurement of Lua's share of a step.
 * Rules: every call into Lua goes through gkd_lua_pcall (or lua_pcall with gkd_lua_traceback as the
 * message handler); the `gkd` module is C primitives (luaopen_gkd) plus the Lua prelude in scripts-lua/,
 * which is compiled into the binary (BUILD/generated/prelude_data.c, made by scripts-lua/embed.sh) so an
 * installed gkd needs no files beside it; GKD_PRELUDE_DIR in the environment loads the prelude from that
 * folder instead (for working on it without rebuilding). Scripts are trusted code with the user's rights
 * unless the state is sandboxed (docs/trust.md). docs/lua-api.md documents the module. */
#ifndef GKD_BINDINGS_LUA_H
#define GKD_BINDINGS_LUA_H

#include <stdint.h>

#include <lua.h>

#include "core/base/error.h"

/* The `gkd` module: C functions, then the prelude run over them. Raises if the prelude fails to load. */
int luaopen_gkd(lua_State *L);

/* Limits on each call into Lua that a run makes for a callback (a schedule function, the reward for one
 * sample, a Lua metric, on_step, on_eval); 0 means none. */
typedef struct {
    int64_t instructions; /* Lua VM instructions per call */
    double seconds;       /* wall-clock seconds per call, checked between instructions */
} gkd_lua_callback_limit;

/* What a state allows; all zero is a trusted state with no limits (the default). */
typedef struct {
    int sandbox;          /* scripts run in a restricted environment (docs/trust.md) */
    size_t memory;        /* bytes of Lua heap (C allocations of models and data are not counted) */
    int64_t instructions; /* Lua VM instructions of the script's own code (callbacks of runs excluded) */
    gkd_lua_callback_limit callback; /* every run's callbacks: the tighter of this and gkd.run's callback_limit */
} gkd_lua_limits;

/* A new state with the standard libraries open and `gkd` in package.preload (loaded by require "gkd";
 * gkd_lua_run_script also sets the global `gkd`). NULL when out of memory. Close with lua_close. */
lua_State *gkd_lua_state_new(void);
/* The same with limits (NULL: none). In a sandboxed state gkd_lua_run_script runs scripts in the
 * restricted environment; the limits hold for the state's life. */
lua_State *gkd_lua_state_new_limited(const gkd_lua_limits *limits);
/* 1 when an allocation failed because of the state's memory limit. */
int gkd_lua_memory_limit_hit(lua_State *L);

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
 * limit exceeded" (and again at every instruction until the limit is set anew, so a pcall cannot swallow
 * it). Instructions of run callbacks are not counted (they have their own limit). 0 removes the limit. */
void gkd_lua_set_instruction_limit(lua_State *L, int64_t count);

/* SIGINT / SIGTERM handlers: the first signal asks running trainings to stop at the next step boundary
 * (they save a checkpoint and mark the run interrupted) and is forwarded to the children started with
 * gkd.sys.spawn (sweep workers); a run callback still running GKD_LUA_STOP_GRACE seconds after it is
 * interrupted with an error. Signals within GKD_LUA_STOP_GRACE seconds of the first are taken as
 * duplicates (Slurm signals every process of a job, and a sweep parent forwards it too); a later one
 * restores the default action, so it ends the process at once. */
void gkd_lua_install_signal_handlers(void);
/* 1 once a stop was requested. */
int gkd_lua_stop_requested(void);
/* The signal that asked to stop ("SIGINT", "SIGTERM"), or NULL. */
const char *gkd_lua_stop_signal(void);
#define GKD_LUA_STOP_GRACE 1.0
/* The exit status of a command whose script was stopped by SIGINT/SIGTERM (its runs are resumable). */
#define GKD_LUA_EXIT_INTERRUPTED 3

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
 * nothing to disk (an in-memory run store); the first step (allocations) is included. GKD_ERR_CALLBACK with
 * the Lua message on failure. */
gkd_status gkd_lua_bench_overhead(int steps, gkd_lua_overhead *out);

#endif
