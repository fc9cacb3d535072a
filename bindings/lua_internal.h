/* Shared helpers of the binding files: userdata types, option tables, key checking, error returns.
 * Rules: misuse (a wrong type, an unknown key, a value out of range) raises with luaL_error/luaL_argerror;
 * an environmental failure (a missing file, a malformed dataset, a database error) returns nil, message.
 * Userdata are created before the resource they hold, so an error never leaks it; __gc is safe twice.
 * A handle a run is using (gkd._train) is pinned (pins > 0): its close refuses with an error instead of
 * freeing what the trainer still reads; the run keeps a reference to it, so __gc cannot run meanwhile. */
#ifndef GKD_BINDINGS_INTERNAL_H
#define GKD_BINDINGS_INTERNAL_H

#include <lauxlib.h>
#include <lua.h>

#include "bindings/gkd_lua.h"
#include "core/text/data.h"
#include "core/base/error.h"
#include "core/base/json.h"
#include "core/tensor/model.h"
#include "core/store/store.h"
#include "core/text/tokenizer.h"
#include "rl/divergence.h"
#include "rl/schedule.h"

#define GKD_LUA_TASK "gkd.Task"
#define GKD_LUA_TOKENIZER "gkd.Tokenizer"
#define GKD_LUA_MODEL "gkd.Model"
#define GKD_LUA_SCHEDULE "gkd.Schedule"
#define GKD_LUA_DIVERGENCE "gkd.Divergence"
#define GKD_LUA_STORE "gkd.Store"

typedef struct {
    gkd_dataset ds;
    char *kind; /* "summarize", "translate", "arithmetic", "jsonl" */
    char *path; /* NULL for arithmetic */
    char *prompt, *target, *source;
    uint64_t seed;
    int pins; /* runs using it */
} gkd_lua_task;

typedef struct {
    gkd_tokenizer *tok;
    char *path; /* where it was loaded from or saved to, or NULL */
    int pins;   /* runs using it */
} gkd_lua_tokenizer;

/* A model's uservalue 1 holds its tokenizer (a gkd.Tokenizer) or nil. */
typedef struct {
    gkd_model *m;
    char *path; /* checkpoint it was loaded from, or NULL */
    uint64_t seed;
    int pins; /* runs using it: close refuses while > 0 */
} gkd_lua_model;

typedef struct {
    gkd_schedule s;
} gkd_lua_schedule;

typedef struct {
    gkd_store *store;
    char *path;
} gkd_lua_store;

/* A new zeroed handle of `size` bytes with `nuv` user values and the metatable `tname`, on the stack. */
void *gkd_lua_new_handle(lua_State *L, size_t size, int nuv, const char *tname);
/* Raises "<tname>: cannot close a <what> that a running gkd.run uses ..." when pins > 0 (see the rules
 * above). */
void gkd_lua_refuse_pinned(lua_State *L, int pins, const char *tname, const char *what);

/* Returns nil, "<gkd_error_message()>" (2 results) for an environmental failure. */
int gkd_lua_fail(lua_State *L);
/* Raises the last gkd error, prefixed with `what` (misuse). */
int gkd_lua_raise(lua_State *L, const char *what);

/* Raises "<fname>: unknown key 'k' (did you mean 'x'?)" when the table at idx has a string key outside
 * valid (NULL-terminated); non-string keys are errors too. */
void gkd_lua_check_keys(lua_State *L, int idx, const char *fname, const char *const *valid);
/* What gkd calls `name`, a key from Hugging Face TRL ("lmbda": "did you mean 'lambda'? ..."), when that
 * key is in valid; else NULL. Checked before gkd_lua_closest. */
const char *gkd_lua_foreign_hint(const char *name, const char *const *valid);
/* gkd._foreign_hint(name, valid) -> the hint or nothing; valid is a schema (names as keys) or a list. The
 * prelude's util.unknown_key asks it first. */
int gkd_lua_foreign_hint_l(lua_State *L);
/* The valid name closest to `name` by edit distance, or NULL when none is close (distance > 1/2 length). */
const char *gkd_lua_closest(const char *name, const char *const *valid);
int gkd_lua_edit_distance(const char *a, const char *b);

/* Option readers for the table at idx: the fallback when the key is absent (nil); a value of the wrong
 * type raises "<fname>: option 'key' must be a <type>, got <type>". */
lua_Integer gkd_lua_opt_int(lua_State *L, int idx, const char *fname, const char *key, lua_Integer fallback);
/* An integer option in [0, INT_MAX] (sizes, counts, steps); anything else raises, naming the key. */
int gkd_lua_opt_size(lua_State *L, int idx, const char *fname, const char *key, int fallback);
double gkd_lua_opt_number(lua_State *L, int idx, const char *fname, const char *key, double fallback);
const char *gkd_lua_opt_string(lua_State *L, int idx, const char *fname, const char *key, const char *fallback);
int gkd_lua_opt_bool(lua_State *L, int idx, const char *fname, const char *key, int fallback);
/* Raises "<fname>: option 'key' must be in [lo, hi], got v". */
void gkd_lua_check_range(lua_State *L, const char *fname, const char *key, double v, double lo, double hi);

char *gkd_lua_strdup(const char *s);

/* Checkers that raise "<type> expected". */
gkd_lua_task *gkd_lua_check_task(lua_State *L, int idx);
gkd_lua_tokenizer *gkd_lua_check_tokenizer(lua_State *L, int idx);
gkd_lua_model *gkd_lua_check_model(lua_State *L, int idx);
gkd_lua_store *gkd_lua_check_store(lua_State *L, int idx);
const gkd_divergence *gkd_lua_check_divergence(lua_State *L, int idx);
/* The schedule a setting's value stands for: a number (constant) or a gkd.Schedule. Lua functions are
 * handled by the trainer binding. Raises naming `key` otherwise. */
gkd_schedule gkd_lua_to_schedule(lua_State *L, int idx, const char *key);

/* Push the submodule tables (each also registers its metatables). */
void gkd_lua_open_task(lua_State *L);
void gkd_lua_open_tokenizer(lua_State *L);
void gkd_lua_open_model(lua_State *L);
void gkd_lua_open_schedule(lua_State *L);
void gkd_lua_open_reward(lua_State *L);
void gkd_lua_open_store(lua_State *L);
void gkd_lua_open_sys(lua_State *L);
void gkd_lua_open_json(lua_State *L);
/* Add their functions to the module table at the top of the stack. */
void gkd_lua_add_divergence(lua_State *L);
void gkd_lua_add_train(lua_State *L);

/* JSON of the Lua value at idx (tables with keys 1..n become arrays, others objects with sorted keys;
 * userdata and functions become their tostring). Appends to b. */
void gkd_lua_json_encode(lua_State *L, int idx, gkd_buf *b);
/* A gkd_buf inside a new userdata on the stack, freed by its __gc (so a Lua error never leaks it). */
gkd_buf *gkd_lua_newbuf(lua_State *L);
/* Pushes a userdata whose __gc frees p (malloc'd), so raising after it never leaks p; returns p. */
void *gkd_lua_hold(lua_State *L, void *p);
/* The integer list at idx as ids in a userdata buffer pushed on the stack; returns the count. */
int gkd_lua_check_ids(lua_State *L, int idx, int **out);
/* The texts of a task's examples (prompts and targets) as a list, pushed. */
int gkd_lua_task_texts(lua_State *L, int idx);

/* The embedded prelude sources (BUILD/generated/prelude_data.c, written by scripts-lua/embed.sh). */
typedef struct {
    const char *name; /* module name, e.g. "gkd.prelude" */
    const char *file; /* file name in scripts-lua/ */
    const char *source;
} gkd_lua_prelude_file;
extern const gkd_lua_prelude_file gkd_lua_prelude_files[];
extern const int gkd_lua_prelude_count;

/* ---- limits and stop signals around calls into Lua (bindings/lua_gkd.c) ---- */

/* A thread's debug hook, saved around a callback. */
typedef struct {
    lua_Hook hook;
    int mask, count;
} gkd_lua_hook_state;

/* Bracket one call into Lua that a run makes: begin applies lim (NULL: none) to the call and starts its
 * count and clock; restart starts them again inside the same call (the reward's next sample); end
 * restores the thread's hook. Calls do not nest (runs do not nest). Within the call the hook raises when
 * a limit is passed, or when a stop signal came more than GKD_LUA_STOP_GRACE seconds ago. */
void gkd_lua_callback_begin(lua_State *L, const gkd_lua_callback_limit *lim, gkd_lua_hook_state *saved);
void gkd_lua_callback_restart(lua_State *L);
void gkd_lua_callback_end(lua_State *L, const gkd_lua_hook_state *saved);
/* 1 once a stop signal interrupted a callback of this state. */
int gkd_lua_callback_interrupted(lua_State *L);
/* The callback limits of the state (the command line's), zero when none or not a gkd state. */
gkd_lua_callback_limit gkd_lua_callback_default(lua_State *L);
/* 1 for a sandboxed state. */
int gkd_lua_is_sandboxed(lua_State *L);
/* Whether a sandboxed script may have gkd write at `path`: a relative path with no ".." component. */
int gkd_lua_path_allowed(const char *path);
/* Children started by gkd.sys.spawn, to which a stop signal is forwarded. */
void gkd_lua_child_add(long pid);
void gkd_lua_child_remove(long pid);

/* Accumulated seconds spent in Lua called from the trainer (for gkd_lua_bench_overhead). */
extern double gkd_lua_seconds_in_lua;
double gkd_lua_now(void);

#endif
