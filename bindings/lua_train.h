/* The train state shared by the two halves of gkd._train: bindings/lua_train.c (the state, its calls
 * into Lua, the run) and bindings/lua_train_metrics.c (the run's reward and evaluation text metrics).
 * Private to those files (and bindings/lua_train_dist.c, gkd.dist). Rules: see lua_train.c's. */
#ifndef GKD_LUA_TRAIN_H
#define GKD_LUA_TRAIN_H

#include "bindings/lua_internal.h"
#include "bindings/progress.h"
#include "core/store/store.h"
#include "reward/registry.h"
#include "rl/trainer.h"

#define TRAIN_STATE "gkd.TrainState"
#define REGISTRY_KEY "gkd.train.current"

enum { MAX_METRICS = 96, N_SCHEDULES = 5 };

typedef struct train_state train_state;

/* A Lua function standing for a schedule. */
typedef struct {
    train_state *s;
    int ref;
    const char *name;
} lua_schedule;

typedef struct {
    train_state *s;
    const gkd_metric *def; /* the registry's entry (reward/registry.h); NULL: a Lua metric */
    int ref;               /* a Lua metric's function */
    char name[64];
    /* corpus metrics: the outputs (and references) of the evaluation in progress */
    char **hyps, **refs;
    int n, cap;
    int records;    /* this metric also records the evaluation's samples */
} text_metric;

typedef struct {
    const char *name; /* static strings of the trainer or of text_metric.name */
    double value;
} metric_slot;

struct train_state {
    lua_State *L;
    gkd_train_config cfg;
    gkd_trainer *trainer;
    gkd_dataset train_copy, held_copy; /* owned when the task was split here */
    const gkd_dataset *train_text, *held_text;
    gkd_token_dataset train_tok, held_tok;
    int has_held;
    lua_schedule schedules[N_SCHEDULES];
    int n_schedules;
    text_metric metrics[GKD_MAX_TEXT_METRICS];
    int n_metrics;
    int on_step_ref, on_eval_ref, metrics_ref;
    gkd_reward *reward; /* owned: the run's reward (a Lua function, a built-in or a weighted sum) */
    int reward_ref;     /* the Lua reward function, or LUA_NOREF */
    char reward_name[64];
    /* last values, synced into the Lua metrics table before each call into Lua */
    metric_slot train_slots[MAX_METRICS], eval_slots[MAX_METRICS];
    int n_train, n_eval;
    int64_t eval_step;
    int eval_dirty;
    gkd_store_sink sink; /* the store borrowed from the gkd.Store in ctx */
    int samples_per_eval, samples_recorded;
    double lua_seconds;
    char *checkpoint_dir;
    gkd_lua_callback_limit limit; /* of each call into Lua */
    char name[128];       /* ctx.name, for messages */
    const char *ctx_name; /* ctx.name in full (kept by ctx while _train runs) */
    int quiet;
    double t0;
    gkd_progress progress;
    /* the handles the trainer reads, pinned while it runs */
    gkd_lua_model *student, *teacher;
    gkd_lua_tokenizer *tok;
    gkd_lua_task *task, *held;
    int pinned;
};

/* Keeps the value at value_idx in the state's uservalue table; returns its ref there. */
int gkd_lua_train_keep(lua_State *L, int state_idx, int value_idx);
/* Pushes a value kept by the running state (reached through the registry). */
void gkd_lua_train_push_kept(lua_State *L, train_state *s, int ref);
/* Runs fn(a, b) in a protected call under the run's callback limit; 1 with its number in *out, or 0
 * with "<what>: <message with traceback>" as the last error. */
int gkd_lua_train_call(train_state *s, lua_CFunction fn, void *a, lua_Integer b, const char *what, double *out);

/* Reads cfg.reward into s->reward (NULL when absent); raises on a bad one. */
void gkd_lua_train_read_reward(lua_State *L, int cfg, int state_idx, train_state *s);
/* Reads cfg.eval.metrics into s->metrics; raises on an unknown name. */
void gkd_lua_train_read_metrics(lua_State *L, int cfg, int state_idx, train_state *s);
/* Appends an evaluation text metric (def: its registry entry, NULL for a Lua function) to s->metrics;
 * raises past GKD_MAX_TEXT_METRICS. */
text_metric *gkd_lua_train_add_metric(lua_State *L, train_state *s, const char *name, const gkd_metric *def);
/* A gkd_text_metric function; ctx is a text_metric of the state. */
double gkd_lua_train_text_metric(void *ctx, const char *output, const gkd_example *ex, int *failed);
/* The corpus value of a corpus metric whose per-output calls just ended; clears its outputs. */
double gkd_lua_train_corpus_value(text_metric *m);
/* Frees a corpus metric's outputs of the evaluation in progress. */
void gkd_lua_train_free_corpus(text_metric *m);
/* bindings/lua_train_dist.c: sets gkd.dist on the module table at the top of the stack. */
void gkd_lua_add_dist(lua_State *L);

#endif
