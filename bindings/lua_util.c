/* Helpers shared by the binding files: error returns, option tables, key checking with suggestions,
 * and JSON encoding of Lua values (configs recorded in the run store). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bindings/lua_internal.h"

double gkd_lua_seconds_in_lua;

double gkd_lua_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int gkd_lua_fail(lua_State *L) {
    luaL_pushfail(L);
    lua_pushstring(L, gkd_error_message());
    return 2;
}

int gkd_lua_raise(lua_State *L, const char *what) {
    return luaL_error(L, "%s: %s", what, gkd_error_message());
}

char *gkd_lua_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int gkd_lua_edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return (int)(na > nb ? na : nb);
    int row[64];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

const char *gkd_lua_closest(const char *name, const char *const *valid) {
    const char *best = NULL;
    int best_d = 1 << 30;
    for (int i = 0; valid[i]; i++) {
        if (strcasecmp(name, valid[i]) == 0) return valid[i]; /* a case slip first */
        int d = gkd_lua_edit_distance(name, valid[i]);
        if (d < best_d) {
            best_d = d;
            best = valid[i];
        }
    }
    int len = (int)strlen(name);
    return best && best_d <= (len + 1) / 2 ? best : NULL;
}

/* Names people bring from Hugging Face TRL (GKDConfig, GRPOConfig, TrainingArguments, generalized_jsd_loss)
 * and what gkd calls them: looked up before the edit-distance guess, which sends seq_kd to 'seed' and
 * max_steps to 'on_step'. An entry applies only where its gkd key is valid, so a hint never names a key
 * the table being checked does not take (docs/trl.md has the whole mapping). */
typedef struct {
    const char *foreign, *key, *hint;
} foreign_name;

#define LR_SCHEDULE "give 'lr' a schedule: lr = gkd.schedule.warmup_cosine(peak, min, warmup_steps, steps)"
static const foreign_name foreign_names[] = {
    {"lmbda", "lambda", "did you mean 'lambda'? TRL's lmbda is gkd's lambda"},
    {"seq_kd", "method",
     "TRL's seq_kd = True is gkd's method = \"seqkd\" (cross-entropy on the teacher's outputs); to keep the "
     "divergence on them, as TRL does, give fixed = \"teacher\" instead"},
    {"max_steps", "steps", "did you mean 'steps'? TRL's max_steps is gkd's steps"},
    {"num_train_epochs", "steps", "gkd counts optimizer steps: steps = epochs x rows / (batch x grad_accum)"},
    {"learning_rate", "lr", "did you mean 'lr'? TRL's learning_rate is gkd's lr (a number or a schedule)"},
    {"lr_scheduler_type", "lr", LR_SCHEDULE},
    {"warmup_steps", "lr", LR_SCHEDULE},
    {"warmup_ratio", "lr", LR_SCHEDULE},
    {"num_generations", "group_size",
     "did you mean 'group_size'? TRL's num_generations (samples per prompt) is gkd's group_size (GKD + RL, "
     "with a reward)"},
    {"num_ppo_epochs", "epochs", "did you mean 'epochs'? TRL's num_ppo_epochs is gkd's epochs (with method = \"ppo\")"},
    {"num_iterations", "epochs", "did you mean 'epochs'? TRL GRPO's num_iterations is gkd's epochs (with method = \"grpo\")"},
    {"num_mini_batches", "minibatches", "did you mean 'minibatches'? TRL's num_mini_batches is gkd's minibatches"},
    {"cliprange", "clip_eps", "did you mean 'clip_eps'? TRL PPO's cliprange is gkd's clip_eps"},
    {"epsilon", "clip_eps", "did you mean 'clip_eps'? TRL GRPO's epsilon (the ratio's clip) is gkd's clip_eps"},
    {"cliprange_value", "value_clip", "did you mean 'value_clip'? TRL's cliprange_value is gkd's value_clip"},
    {"lam", "gae_lambda", "did you mean 'gae_lambda'? TRL PPO's lam (GAE's lambda) is gkd's gae_lambda"},
    {"per_device_train_batch_size", "batch", "did you mean 'batch'? TRL's per_device_train_batch_size is gkd's batch"},
    {"gradient_accumulation_steps", "grad_accum",
     "did you mean 'grad_accum'? TRL's gradient_accumulation_steps is gkd's grad_accum"},
    {"max_grad_norm", "clip", "did you mean 'clip'? TRL's max_grad_norm is gkd's clip"},
    {"max_completion_length", "max_new_tokens",
     "did you mean 'max_new_tokens'? TRL's max_completion_length is gkd's max_new_tokens"},
    {"max_length", "max_prompt", "gkd limits the prompt and the output apart: max_prompt and max_target"},
    {"eval_steps", "eval", "evaluation every N steps is eval = {every = N}"},
    {"save_steps", "checkpoint", "a checkpoint every N steps is checkpoint = {every = N}"},
    {"save_total_limit", "checkpoint", "keeping the last N checkpoints is checkpoint = {keep = N}"},
    {"output_dir", "checkpoint", "checkpoints go to checkpoint = {dir = DIR}; metrics to the run store, db"},
    {"teacher_model_name_or_path", "teacher", "the teacher is teacher = gkd.model.load(PATH)"},
    {"model", "student", "the model being trained is the student: student = a gkd.Model"},
    {"train_dataset", "task", "the training data is the task: task = gkd.task.jsonl{...}"},
    {"eval_dataset", "held_out", "held-out data is held_out = a gkd.Task (or a fraction of the task)"},
    {"temperature", "teacher_temperature",
     "the divergence's temperature is teacher_temperature, which divides the teacher's logits only; TRL's "
     "generalized_jsd_loss(temperature = tau) divides both sides' logits; the student's sampling temperature "
     "is gkd.run's temperature (docs/trl.md)"},
};

/* The entry for `name`, or NULL. */
static const foreign_name *find_foreign(const char *name) {
    for (size_t i = 0; i < sizeof foreign_names / sizeof *foreign_names; i++)
        if (strcmp(name, foreign_names[i].foreign) == 0) return &foreign_names[i];
    return NULL;
}

const char *gkd_lua_foreign_hint(const char *name, const char *const *valid) {
    const foreign_name *f = find_foreign(name);
    for (int i = 0; f && valid[i]; i++)
        if (strcmp(valid[i], f->key) == 0) return f->hint;
    return NULL;
}

int gkd_lua_foreign_hint_l(lua_State *L) {
    const foreign_name *f = find_foreign(luaL_checkstring(L, 1));
    luaL_checktype(L, 2, LUA_TTABLE);
    int valid = lua_getfield(L, 2, f ? f->key : "") != LUA_TNIL; /* a schema: keys are the names */
    lua_pop(L, 1);
    for (lua_Integer i = 1; f && !valid && lua_rawgeti(L, 2, i) != LUA_TNIL; i++) { /* a list of names */
        valid = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), f->key) == 0;
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    if (!f || !valid) return 0;
    lua_pushstring(L, f->hint);
    return 1;
}

void gkd_lua_check_keys(lua_State *L, int idx, const char *fname, const char *const *valid) {
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "%s: option keys must be strings, got a %s key", fname, luaL_typename(L, -1));
            return;
        }
        const char *k = lua_tostring(L, -1);
        int ok = 0;
        for (int i = 0; valid[i] && !ok; i++) ok = strcmp(k, valid[i]) == 0;
        if (!ok) {
            const char *hint = gkd_lua_foreign_hint(k, valid);
            if (hint) {
                luaL_error(L, "%s: unknown key '%s' (%s)", fname, k, hint);
                return;
            }
            const char *near = gkd_lua_closest(k, valid);
            if (near)
                luaL_error(L, "%s: unknown key '%s' (did you mean '%s'?)", fname, k, near);
            else
                luaL_error(L, "%s: unknown key '%s'", fname, k);
            return;
        }
    }
}

static void type_error(lua_State *L, const char *fname, const char *key, const char *want) {
    luaL_error(L, "%s: option '%s' must be %s, got %s", fname, key, want, luaL_typename(L, -1));
}

lua_Integer gkd_lua_opt_int(lua_State *L, int idx, const char *fname, const char *key, lua_Integer fallback) {
    lua_getfield(L, idx, key);
    lua_Integer v = fallback;
    if (!lua_isnil(L, -1)) {
        int isint = 0;
        v = lua_tointegerx(L, -1, &isint);
        if (!isint || lua_type(L, -1) != LUA_TNUMBER) type_error(L, fname, key, "an integer");
    }
    lua_pop(L, 1);
    return v;
}

int gkd_lua_opt_size(lua_State *L, int idx, const char *fname, const char *key, int fallback) {
    lua_Integer v = gkd_lua_opt_int(L, idx, fname, key, fallback);
    /* Checked before the value is narrowed, so 2^32 + 1 is refused rather than read as 1. */
    if (v < 0 || v > INT_MAX)
        luaL_error(L, "%s: option '%s' = %I is out of range [0, %d]", fname, key, (LUAI_UACINT)v, INT_MAX);
    return (int)v;
}

double gkd_lua_opt_number(lua_State *L, int idx, const char *fname, const char *key, double fallback) {
    lua_getfield(L, idx, key);
    double v = fallback;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER) type_error(L, fname, key, "a number");
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

const char *gkd_lua_opt_string(lua_State *L, int idx, const char *fname, const char *key, const char *fallback) {
    lua_getfield(L, idx, key);
    const char *v = fallback;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) type_error(L, fname, key, "a string");
        v = lua_tostring(L, -1); /* kept alive by the options table */
    }
    lua_pop(L, 1);
    return v;
}

int gkd_lua_opt_bool(lua_State *L, int idx, const char *fname, const char *key, int fallback) {
    lua_getfield(L, idx, key);
    int v = fallback;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN) type_error(L, fname, key, "a boolean");
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

void gkd_lua_check_range(lua_State *L, const char *fname, const char *key, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi)) luaL_error(L, "%s: option '%s' must be in [%g, %g], got %g", fname, key, lo, hi, v);
}

gkd_lua_task *gkd_lua_check_task(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, GKD_LUA_TASK);
}
gkd_lua_tokenizer *gkd_lua_check_tokenizer(lua_State *L, int idx) {
    gkd_lua_tokenizer *t = luaL_checkudata(L, idx, GKD_LUA_TOKENIZER);
    if (!t->tok) luaL_argerror(L, idx, "tokenizer is closed");
    return t;
}
gkd_lua_model *gkd_lua_check_model(lua_State *L, int idx) {
    gkd_lua_model *m = luaL_checkudata(L, idx, GKD_LUA_MODEL);
    if (!m->m) luaL_argerror(L, idx, "model is closed");
    return m;
}
gkd_lua_store *gkd_lua_check_store(lua_State *L, int idx) {
    gkd_lua_store *s = luaL_checkudata(L, idx, GKD_LUA_STORE);
    if (!s->store) luaL_argerror(L, idx, "store is closed");
    return s;
}

gkd_schedule gkd_lua_to_schedule(lua_State *L, int idx, const char *key) {
    if (lua_type(L, idx) == LUA_TNUMBER) return gkd_schedule_constant(lua_tonumber(L, idx));
    gkd_lua_schedule *s = luaL_testudata(L, idx, GKD_LUA_SCHEDULE);
    if (!s) luaL_error(L, "%s: a number, a gkd.Schedule or a function expected, got %s", key, luaL_typename(L, idx));
    return s->s;
}

/* ---- JSON ---- */

static int is_array(lua_State *L, int idx, lua_Integer *n) {
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max) max = k;
        count++;
    }
    *n = count;
    return count > 0 && max == count;
}

typedef struct {
    const char *name;
    lua_Integer index;
} sorted_key;

static int key_cmp(const void *a, const void *b) {
    return strcmp(((const sorted_key *)a)->name, ((const sorted_key *)b)->name);
}

static void encode(lua_State *L, int idx, gkd_buf *b, int depth) {
    idx = lua_absindex(L, idx);
    if (depth > 32) luaL_error(L, "json: nesting too deep (a cycle?)");
    switch (lua_type(L, idx)) {
    case LUA_TNIL: gkd_buf_puts(b, "null"); return;
    case LUA_TBOOLEAN: gkd_buf_puts(b, lua_toboolean(L, idx) ? "true" : "false"); return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            gkd_buf_printf(b, "%lld", (long long)lua_tointeger(L, idx));
        else
            gkd_buf_json_number(b, lua_tonumber(L, idx));
        return;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        gkd_buf_json_string(b, s, n);
        return;
    }
    case LUA_TTABLE: break;
    default: {
        size_t n;
        const char *s = luaL_tolstring(L, idx, &n);
        gkd_buf_json_string(b, s, n);
        lua_pop(L, 1);
        return;
    }
    }
    if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
        lua_pop(L, 1);
        size_t n;
        const char *s = luaL_tolstring(L, idx, &n);
        gkd_buf_json_string(b, s, n);
        lua_pop(L, 1);
        return;
    }
    lua_Integer n;
    if (is_array(L, idx, &n)) {
        gkd_buf_puts(b, "[");
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1) gkd_buf_puts(b, ",");
            lua_rawgeti(L, idx, i);
            encode(L, -1, b, depth + 1);
            lua_pop(L, 1);
        }
        gkd_buf_puts(b, "]");
        return;
    }
    /* Objects with sorted keys, so a config's JSON is a function of its content. Keys and values are
     * copied into two arrays (number keys become their text) whose order is then sorted. */
    lua_newtable(L);
    int keys = lua_gettop(L);
    lua_newtable(L);
    int vals = lua_gettop(L);
    lua_Integer nk = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
            lua_pop(L, 1);
            continue;
        }
        lua_rawseti(L, vals, ++nk);
        lua_pushvalue(L, -1);
        lua_pushstring(L, lua_tostring(L, -1));
        lua_rawseti(L, keys, nk);
        lua_pop(L, 1);
    }
    sorted_key *order = lua_newuserdatauv(L, sizeof(sorted_key) * (size_t)(nk > 0 ? nk : 1), 0);
    for (lua_Integer i = 1; i <= nk; i++) {
        lua_rawgeti(L, keys, i);
        order[i - 1].name = lua_tostring(L, -1);
        order[i - 1].index = i;
        lua_pop(L, 1);
    }
    qsort(order, (size_t)nk, sizeof *order, key_cmp);
    gkd_buf_puts(b, "{");
    for (lua_Integer i = 0; i < nk; i++) {
        if (i > 0) gkd_buf_puts(b, ",");
        gkd_buf_json_string(b, order[i].name, strlen(order[i].name));
        gkd_buf_puts(b, ":");
        lua_rawgeti(L, vals, order[i].index);
        encode(L, -1, b, depth + 1);
        lua_pop(L, 1);
    }
    gkd_buf_puts(b, "}");
    lua_pop(L, 3);
}

void gkd_lua_json_encode(lua_State *L, int idx, gkd_buf *b) {
    encode(L, idx, b, 0);
}

static int buf_gc(lua_State *L) {
    gkd_buf_free(lua_touserdata(L, 1));
    return 0;
}

gkd_buf *gkd_lua_newbuf(lua_State *L) {
    gkd_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, "gkd.Buffer")) {
        lua_pushcfunction(L, buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

static int hold_gc(lua_State *L) {
    void **p = lua_touserdata(L, 1);
    free(*p);
    *p = NULL;
    return 0;
}

void *gkd_lua_hold(lua_State *L, void *p) {
    void **slot = lua_newuserdatauv(L, sizeof *slot, 0);
    *slot = NULL;
    if (luaL_newmetatable(L, "gkd.Held")) {
        lua_pushcfunction(L, hold_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    *slot = p;
    return p;
}

static int l_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    gkd_buf *b = gkd_lua_newbuf(L);
    encode(L, 1, b, 0);
    if (b->failed) return luaL_error(L, "json.encode: out of memory");
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    return 1;
}

static void push_json(lua_State *L, const gkd_json *v) {
    luaL_checkstack(L, 4, "json too deep");
    switch (v->type) {
    case GKD_JSON_NULL: lua_pushnil(L); break;
    case GKD_JSON_BOOL: lua_pushboolean(L, v->boolean); break;
    case GKD_JSON_NUMBER:
        if (v->number == floor(v->number) && fabs(v->number) < 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)v->number);
        else
            lua_pushnumber(L, v->number);
        break;
    case GKD_JSON_STRING: lua_pushlstring(L, v->string, v->len); break;
    case GKD_JSON_ARRAY:
        lua_createtable(L, (int)v->len, 0);
        for (size_t i = 0; i < v->len; i++) {
            push_json(L, v->items[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case GKD_JSON_OBJECT:
        lua_createtable(L, 0, (int)v->len);
        for (size_t i = 0; i < v->len; i++) {
            push_json(L, v->items[i]);
            lua_setfield(L, -2, v->keys[i]);
        }
        break;
    }
}

/* A decoded tree is held by a userdata so that a Lua error while building tables frees it. */
typedef struct {
    gkd_json *v;
} json_holder;

static int json_holder_gc(lua_State *L) {
    json_holder *h = lua_touserdata(L, 1);
    gkd_json_free(h->v);
    h->v = NULL;
    return 0;
}

static int l_json_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    json_holder *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->v = NULL;
    if (luaL_newmetatable(L, "gkd.JsonHolder")) {
        lua_pushcfunction(L, json_holder_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (gkd_json_parse(s, n, "json", &h->v) != GKD_OK) return gkd_lua_fail(L);
    push_json(L, h->v);
    gkd_json_free(h->v);
    h->v = NULL;
    return 1;
}

void gkd_lua_open_json(lua_State *L) {
    static const luaL_Reg fns[] = {{"encode", l_json_encode}, {"decode", l_json_decode}, {NULL, NULL}};
    luaL_newlib(L, fns);
}

void *gkd_lua_new_handle(lua_State *L, size_t size, int nuv, const char *tname) {
    void *p = lua_newuserdatauv(L, size, nuv);
    memset(p, 0, size);
    luaL_setmetatable(L, tname);
    return p;
}

void gkd_lua_refuse_pinned(lua_State *L, int pins, const char *tname, const char *what) {
    if (pins > 0)
        luaL_error(L, "%s: cannot close a %s that a running gkd.run uses (close it after the run)", tname, what);
}
