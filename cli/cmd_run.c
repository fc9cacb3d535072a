/* gkd run / sweep / resume: experiment scripts in Lua (bindings/gkd_lua.h, docs/lua-api.md).
 * Rules: a script that does not compile exits 2 with "file:line: message"; a runtime error prints the
 * message and its traceback and exits 1. Options given to the command reach the prelude through
 * gkd.options (db, device, workers, resume, reuse, script, cwd, args, sandbox, worker_flags, exe; for gkd sweep
 * also point and slurm: docs/cluster.md). SIGINT/SIGTERM ask
 * running trainings to stop at the next step (checkpoint saved, run marked interrupted; a callback still
 * running a second later is interrupted) and the command then exits GKD_LUA_EXIT_INTERRUPTED (3); a
 * second signal a second or more after the first kills. Scripts are trusted code unless --sandbox
 * (docs/trust.md); the limit flags (--memory-limit, --instruction-limit, --callback-instructions,
 * --callback-seconds) work with or without it, and a sweep passes them, with --sandbox, to its workers;
 * a run records them, and gkd resume applies them again; it also runs the script in the directory the run
 * was started in (recorded with it), so that the script's relative paths mean what they meant. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "bindings/gkd_lua.h"
#include "cli/cli.h"
#include "core/base/json.h"
#include "core/store/store.h"

/* The sandbox and limit flags as given (-1: not given; the sandbox's defaults then apply). */
typedef struct {
    int sandbox;
    long long memory_mib, instructions, callback_instructions;
    double callback_seconds;
} limit_flags;

/* Defaults under --sandbox (docs/trust.md); without it there is no limit unless a flag sets one. */
enum { SANDBOX_MEMORY_MIB = 1024 };
#define SANDBOX_INSTRUCTIONS 1000000000LL
#define SANDBOX_CALLBACK_INSTRUCTIONS 100000000LL

static const char *const LIMIT_OPTIONS[] = {"memory-limit", "instruction-limit", "callback-instructions",
                                            "callback-seconds", NULL};

static void limit_flags_init(limit_flags *f) {
    f->sandbox = 0;
    f->memory_mib = f->instructions = f->callback_instructions = -1;
    f->callback_seconds = -1;
}

/* Reads --NAME VALUE into f: 1 when NAME is a limit option, 0 when it is not, -1 (message printed) when
 * its value is bad. */
static int limit_option(limit_flags *f, const char *command, const char *name, const char *value) {
    int k = 0;
    while (LIMIT_OPTIONS[k] && strcmp(LIMIT_OPTIONS[k], name) != 0) k++;
    if (!LIMIT_OPTIONS[k]) return 0;
    if (!value) {
        gkd_cli_error(command, "option --%s needs a value", name);
        return -1;
    }
    char *end;
    errno = 0;
    if (k == 3) {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !(v >= 0) || isinf(v)) {
            gkd_cli_error(command, "--%s must be a number of seconds >= 0 (0: no limit), got '%s'", name, value);
            return -1;
        }
        f->callback_seconds = v;
        return 1;
    }
    long long v = strtoll(value, &end, 10);
    long long max = k == 0 ? (long long)(SIZE_MAX >> 21) : LLONG_MAX;
    if (errno || end == value || *end || v < 0 || v > max) {
        gkd_cli_error(command, "--%s must be an integer in [0, %lld] (0: no limit), got '%s'", name, max, value);
        return -1;
    }
    if (k == 0) f->memory_mib = v;
    else if (k == 1) f->instructions = v;
    else f->callback_instructions = v;
    return 1;
}

static gkd_lua_limits limits_of(const limit_flags *f) {
    gkd_lua_limits l;
    memset(&l, 0, sizeof l);
    l.sandbox = f->sandbox;
    long long mib = f->memory_mib >= 0 ? f->memory_mib : f->sandbox ? SANDBOX_MEMORY_MIB : 0;
    l.memory = (size_t)mib << 20;
    l.instructions = f->instructions >= 0 ? f->instructions : f->sandbox ? SANDBOX_INSTRUCTIONS : 0;
    l.callback.instructions =
        f->callback_instructions >= 0 ? f->callback_instructions : f->sandbox ? SANDBOX_CALLBACK_INSTRUCTIONS : 0;
    l.callback.seconds = f->callback_seconds >= 0 ? f->callback_seconds : 0;
    return l;
}

/* gkd.options.worker_flags: the flags as given, for sweep workers and for gkd resume. */
static void push_worker_flags(lua_State *L, const limit_flags *f) {
    lua_newtable(L);
    int n = 0;
    char buf[64];
    if (f->sandbox) lua_pushstring(L, "--sandbox"), lua_rawseti(L, -2, ++n);
    long long ints[] = {f->memory_mib, f->instructions, f->callback_instructions};
    for (int k = 0; k < 3; k++)
        if (ints[k] >= 0) {
            lua_pushfstring(L, "--%s", LIMIT_OPTIONS[k]), lua_rawseti(L, -2, ++n);
            snprintf(buf, sizeof buf, "%lld", ints[k]);
            lua_pushstring(L, buf), lua_rawseti(L, -2, ++n);
        }
    if (f->callback_seconds >= 0) {
        lua_pushfstring(L, "--%s", LIMIT_OPTIONS[3]), lua_rawseti(L, -2, ++n);
        snprintf(buf, sizeof buf, "%.17g", f->callback_seconds);
        lua_pushstring(L, buf), lua_rawseti(L, -2, ++n);
    }
}

/* The limit options of a command parsed by gkd_cli_parse; 0, or 2 after a message. */
static int limit_flags_from_args(limit_flags *f, gkd_cli_args *a, const char *command) {
    if (gkd_cli_flag(a, "sandbox")) f->sandbox = 1;
    for (int k = 0; LIMIT_OPTIONS[k]; k++) {
        const char *v = gkd_cli_str(a, LIMIT_OPTIONS[k], NULL);
        if (v && limit_option(f, command, LIMIT_OPTIONS[k], v) < 0) return 2;
    }
    return 0;
}

/* gkd sweep --slurm's sbatch options: the command-line name and gkd.options.slurm's key. */
static const char *const SLURM_RESOURCES[][2] = {{"partition", "partition"},         {"time", "time"},
                                                 {"gpus-per-task", "gpus_per_task"}, {"cpus-per-task", "cpus_per_task"},
                                                 {"mem", "mem"},                     {"account", "account"}};
enum { N_SLURM_RESOURCES = sizeof SLURM_RESOURCES / sizeof SLURM_RESOURCES[0] };

typedef struct {
    const char *db;
    const char *device; /* gkd.options.device: the default device of new and loaded models */
    long long workers; /* 0: the script's choice */
    int resume;
    int quiet;
    int retry_failed;
    int reuse_stale; /* gkd.options.reuse = "any": reuse stored runs whose configuration differs */
    const char *worker_point; /* a sweep worker: the one point to run */
    long long worker_steps;
    long long point; /* gkd sweep --point I (a Slurm array task): the point of index I; -1: none */
    int slurm, slurm_dry_run, slurm_advance;
    long long slurm_max_parallel; /* 0: no limit */
    const char *slurm_resources[6]; /* in SLURM_RESOURCES' order; NULL: not given */
    const char *script; /* NULL with -e */
    const char *code;
    int argc;
    char **argv;
    limit_flags limits;
} run_options;

/* Loads the gkd module and sets gkd.options from o, before the script runs. */
static int set_options(lua_State *L, const run_options *o) {
    lua_getglobal(L, "require");
    lua_pushstring(L, "gkd");
    if (gkd_lua_pcall(L, 1, 1) != LUA_OK) return 0;
    lua_getfield(L, -1, "options");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "options");
    }
    if (o->db) lua_pushstring(L, o->db), lua_setfield(L, -2, "db");
    if (o->device) lua_pushstring(L, o->device), lua_setfield(L, -2, "device");
    if (o->workers > 0) lua_pushinteger(L, o->workers), lua_setfield(L, -2, "workers");
    if (o->resume) lua_pushboolean(L, 1), lua_setfield(L, -2, "resume");
    if (o->quiet) lua_pushboolean(L, 1), lua_setfield(L, -2, "quiet");
    if (o->retry_failed) lua_pushboolean(L, 1), lua_setfield(L, -2, "retry_failed");
    if (o->reuse_stale) lua_pushliteral(L, "any"), lua_setfield(L, -2, "reuse");
    if (o->worker_point) lua_pushstring(L, o->worker_point), lua_setfield(L, -2, "worker_point");
    if (o->worker_steps > 0) lua_pushinteger(L, o->worker_steps), lua_setfield(L, -2, "worker_steps");
    if (o->point >= 0 && o->script) lua_pushinteger(L, o->point), lua_setfield(L, -2, "point");
    if (o->slurm) {
        lua_createtable(L, 0, 9);
        for (int k = 0; k < N_SLURM_RESOURCES; k++)
            if (o->slurm_resources[k]) lua_pushstring(L, o->slurm_resources[k]), lua_setfield(L, -2, SLURM_RESOURCES[k][1]);
        if (o->slurm_max_parallel > 0) lua_pushinteger(L, o->slurm_max_parallel), lua_setfield(L, -2, "max_parallel");
        if (o->slurm_dry_run) lua_pushboolean(L, 1), lua_setfield(L, -2, "dry_run");
        if (o->slurm_advance) lua_pushboolean(L, 1), lua_setfield(L, -2, "advance");
        lua_setfield(L, -2, "slurm");
    }
    {
        /* sbatch scripts name this binary by its path: array tasks run it on other nodes */
        char exe[PATH_MAX];
        if (realpath("/proc/self/exe", exe)) lua_pushstring(L, exe), lua_setfield(L, -2, "exe");
    }
    if (o->limits.sandbox) lua_pushboolean(L, 1), lua_setfield(L, -2, "sandbox");
    push_worker_flags(L, &o->limits);
    lua_setfield(L, -2, "worker_flags");
    if (o->script) {
        char resolved[PATH_MAX];
        lua_pushstring(L, realpath(o->script, resolved) ? resolved : o->script);
        lua_setfield(L, -2, "script");
        /* The script's relative paths (data, checkpoints, the store) are relative to it: gkd resume goes
         * back here. */
        if (getcwd(resolved, sizeof resolved)) lua_pushstring(L, resolved), lua_setfield(L, -2, "cwd");
        lua_createtable(L, o->argc, 0);
        for (int i = 0; i < o->argc; i++) lua_pushstring(L, o->argv[i]), lua_rawseti(L, -2, i + 1);
        lua_setfield(L, -2, "args");
    }
    lua_pop(L, 2);
    return 1;
}

/* Runs the script; a returned sweep table that no gkd.sweep call consumed is run as a sweep by gkd sweep
 * (and by gkd resume of a sweep's run), and refused by gkd run. */
static int run_script(const char *command, const run_options *o, int is_sweep) {
    gkd_lua_limits limits = limits_of(&o->limits);
    lua_State *L = gkd_lua_state_new_limited(&limits);
    if (!L) {
        gkd_cli_error(command, "out of memory");
        return 1;
    }
    gkd_lua_install_signal_handlers();
    if (!set_options(L, o)) {
        gkd_cli_error(command, "%s", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    char *error = NULL;
    int top = lua_gettop(L);
    int rc = gkd_lua_run_script(L, o->script, o->code, "=(command line)", o->argc, o->argv, 1, &error);
    int returned_sweep = 0, swept = 0;
    if (rc == 0 && lua_istable(L, -1)) { /* a returned table with a grid or a random search is a sweep */
        static const char *const sweep_keys[] = {"grid", "grids", "random"};
        for (int k = 0; k < 3; k++) {
            lua_getfield(L, -1, sweep_keys[k]);
            returned_sweep |= !lua_isnil(L, -1);
            lua_pop(L, 1);
        }
    }
    if (rc == 0) { /* whether the script called gkd.sweep itself */
        lua_getglobal(L, "gkd");
        lua_getfield(L, -1, "options");
        lua_getfield(L, -1, "sweeps_run");
        swept = !lua_isnil(L, -1);
        lua_pop(L, 3);
    }
    if (rc == 0 && !swept && returned_sweep && !is_sweep) {
        /* Running it here would miss gkd sweep's options (--workers, --retry-failed); and a misspelt key
         * ("grids") used to make gkd run do nothing and exit 0. */
        gkd_cli_error(command, "%s returned a sweep table (grid or random); run it with: gkd sweep %s",
                      o->script ? o->script : "the code", o->script ? o->script : "SCRIPT.lua");
        rc = 2;
    } else if (rc == 0 && !swept && is_sweep && lua_istable(L, -1)) {
        lua_getglobal(L, "gkd");
        lua_getfield(L, -1, "sweep");
        lua_pushvalue(L, top + 1);
        if (gkd_lua_pcall(L, 1, 0) != LUA_OK) {
            error = strdup(lua_tostring(L, -1));
            rc = 1;
        }
    } else if (rc == 0 && !swept && is_sweep) {
        gkd_cli_error(command, "%s neither called gkd.sweep nor returned a sweep table", o->script ? o->script : "the code");
        rc = 2;
    }
    if (rc == 0) { /* a sweep that went on past failed runs still reports them in its exit status */
        lua_getglobal(L, "gkd");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "options");
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "sweep_failures");
                lua_Integer failed = lua_tointeger(L, -1);
                if (failed > 0) {
                    gkd_cli_error(command, "%lld run%s failed (their errors are in the run store)", (long long)failed,
                                  failed == 1 ? "" : "s");
                    rc = 1;
                }
            }
        }
    }
    if (rc != 0 && error) {
        /* Errors quote file names and stored or generated text: control characters escaped, lines kept. */
        gkd_buf shown = {0};
        gkd_buf_put_printable(&shown, error, strlen(error), 1);
        gkd_cli_error(command, "%s", shown.data ? shown.data : error);
        gkd_buf_free(&shown);
    }
    if (rc != 0 && gkd_lua_memory_limit_hit(L))
        gkd_cli_error(command, "the script needed more than its Lua memory limit of %zu MiB (--memory-limit)",
                      limits.memory >> 20);
    if (rc != 2 && gkd_lua_stop_requested()) {
        gkd_cli_error(command, "stopped by %s; what was interrupted is resumable (gkd resume RUN, or the same gkd sweep "
                               "command)",
                      gkd_lua_stop_signal());
        rc = GKD_LUA_EXIT_INTERRUPTED;
    }
    free(error);
    lua_close(L);
    return rc;
}


/* Options come before the script; everything after it is the script's (lua.c's convention). */
int gkd_cmd_run(int argc, char **argv) {
    run_options o;
    memset(&o, 0, sizeof o);
    o.point = -1;
    limit_flags_init(&o.limits);
    int i = 2;
    for (; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            const char *name = argv[i] + 2, *eq = strchr(name, '=');
            char opt[64];
            size_t n = eq ? (size_t)(eq - name) : strlen(name);
            snprintf(opt, sizeof opt, "%.*s", (int)(n < sizeof opt ? n : sizeof opt - 1), name);
            const char *value = eq ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
            int r = limit_option(&o.limits, "run", opt, value);
            if (r < 0) return 2;
            if (r > 0) {
                if (!eq) i++;
                continue;
            }
        }
        if (strcmp(argv[i], "--sandbox") == 0) {
            o.limits.sandbox = 1;
        } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            o.db = argv[++i];
        } else if (strncmp(argv[i], "--db=", 5) == 0) {
            o.db = argv[i] + 5;
        } else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
            o.device = argv[++i];
        } else if (strncmp(argv[i], "--device=", 9) == 0) {
            o.device = argv[i] + 9;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            o.quiet = 1;
        } else if (strcmp(argv[i], "--resume") == 0) {
            o.resume = 1;
        } else if (strcmp(argv[i], "--reuse-stale") == 0) {
            o.reuse_stale = 1;
        } else if (strcmp(argv[i], "-e") == 0) {
            if (i + 1 >= argc) {
                gkd_cli_error("run", "-e needs the code to run");
                return 2;
            }
            o.code = argv[++i];
            i++;
            break;
        } else if (strncmp(argv[i], "--", 2) == 0 && argv[i][2]) {
            gkd_cli_error("run", "unknown option %s", argv[i]);
            gkd_cli_usage(stderr, "run");
            return 2;
        } else {
            o.script = argv[i++];
            break;
        }
    }
    if (!o.script && !o.code) {
        gkd_cli_usage(stderr, "run");
        return 2;
    }
    o.argc = argc - i;
    o.argv = argv + i;
    return run_script("run", &o, 0);
}

int gkd_cmd_sweep(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "sweep", argc, argv, 2, "quiet,retry-failed,reuse-stale,sandbox,slurm,dry-run,advance,resume") !=
        0)
        return 2;
    if (a.n_positional < 1) {
        gkd_cli_usage(stderr, "sweep");
        return 2;
    }
    run_options o;
    memset(&o, 0, sizeof o);
    o.point = -1;
    limit_flags_init(&o.limits);
    if (limit_flags_from_args(&o.limits, &a, "sweep") != 0) return 2;
    int bad = 0;
    o.db = gkd_cli_str(&a, "db", NULL);
    o.device = gkd_cli_str(&a, "device", NULL);
    o.workers = gkd_cli_int(&a, "workers", 0, &bad);
    o.quiet = gkd_cli_flag(&a, "quiet");
    o.retry_failed = gkd_cli_flag(&a, "retry-failed");
    o.reuse_stale = gkd_cli_flag(&a, "reuse-stale");
    o.worker_point = gkd_cli_str(&a, "worker-point", NULL); /* internal: set by gkd.sweep for its workers */
    o.worker_steps = gkd_cli_int(&a, "worker-steps", 0, &bad);
    o.point = gkd_cli_int(&a, "point", -1, &bad);
    o.slurm = gkd_cli_flag(&a, "slurm");
    o.slurm_dry_run = gkd_cli_flag(&a, "dry-run");
    o.slurm_advance = gkd_cli_flag(&a, "advance"); /* set by the controller job of a halving rung */
    o.slurm_max_parallel = gkd_cli_int(&a, "max-parallel", 0, &bad);
    for (int k = 0; k < N_SLURM_RESOURCES; k++) o.slurm_resources[k] = gkd_cli_str(&a, SLURM_RESOURCES[k][0], NULL);
    gkd_cli_flag(&a, "resume"); /* a sweep always resumes: finished points are skipped, stopped ones continue */
    o.resume = 1;
    if (bad) return 2;
    if (gkd_cli_str(&a, "point", NULL) && o.point < 0) { /* -1 would read as "not given": the whole sweep */
        gkd_cli_error("sweep", "--point must be an index >= 0, got %lld", o.point);
        return 2;
    }
    int slurm_only = o.slurm_dry_run || o.slurm_advance || o.slurm_max_parallel;
    for (int k = 0; k < N_SLURM_RESOURCES; k++) slurm_only |= o.slurm_resources[k] != NULL;
    if (slurm_only && !o.slurm) {
        gkd_cli_error("sweep", "--partition, --time, --gpus-per-task, --cpus-per-task, --mem, --account, --max-parallel, "
                               "--dry-run and --advance go with --slurm");
        return 2;
    }
    if (o.slurm && (o.point >= 0 || o.worker_point)) {
        gkd_cli_error("sweep", "--slurm submits the sweep; --point runs one of its points (what each array task does)");
        return 2;
    }
    if (o.slurm_max_parallel < 0 || o.slurm_max_parallel > 1000000) {
        gkd_cli_error("sweep", "--max-parallel must be in [1, 1000000]");
        return 2;
    }
    if (o.workers < 0 || o.workers > 1024) {
        gkd_cli_error("sweep", "--workers must be in [1, 1024]");
        return 2;
    }
    int rc = gkd_cli_check_unused(&a);
    if (rc) return rc;
    o.script = a.positional[0];
    o.argc = a.n_positional - 1;
    o.argv = (char **)(a.positional + 1);
    return run_script("sweep", &o, 1);
}

typedef struct {
    char *config;
    char *status;
    int found;
} run_row;

static int read_run(const gkd_store_row *row, void *ctx) {
    run_row *r = ctx;
    const char *c = gkd_store_row_text(row, 0), *s = gkd_store_row_text(row, 1);
    r->config = strdup(c ? c : "{}");
    r->status = strdup(s ? s : "");
    r->found = 1;
    return 1;
}

int gkd_cmd_resume(int argc, char **argv) {
    gkd_cli_args a;
    if (gkd_cli_parse(&a, "resume", argc, argv, 2, "quiet,reuse-stale,sandbox") != 0) return 2;
    if (a.n_positional != 1) {
        gkd_cli_usage(stderr, "resume");
        return 2;
    }
    run_options o;
    memset(&o, 0, sizeof o);
    o.point = -1;
    limit_flags_init(&o.limits);
    limit_flags given; /* this command's; they override the run's own */
    limit_flags_init(&given);
    if (limit_flags_from_args(&given, &a, "resume") != 0) return 2;
    o.db = gkd_cli_str(&a, "db", "runs.db");
    o.device = gkd_cli_str(&a, "device", NULL);
    o.quiet = gkd_cli_flag(&a, "quiet");
    o.reuse_stale = gkd_cli_flag(&a, "reuse-stale");
    o.resume = 1;
    int rc = gkd_cli_check_unused(&a);
    if (rc) return rc;
    const char *name = a.positional[0];
    gkd_store *store = NULL;
    if (gkd_store_open_readonly(o.db, &store) != GKD_OK) {
        gkd_cli_error("resume", "%s", gkd_error_message());
        return 1;
    }
    run_row r = {0};
    gkd_status st = gkd_store_query(store, read_run, &r,
                                    "SELECT config, status FROM runs WHERE name = ? ORDER BY id DESC LIMIT 1", "s", name);
    gkd_store_close(store);
    if (st != GKD_OK) {
        gkd_cli_error("resume", "%s", gkd_error_message());
        return 1;
    }
    if (!r.found) {
        gkd_cli_error("resume", "no run named '%s' in %s", name, o.db);
        return 1;
    }
    if (strcmp(r.status, "finished") == 0) {
        gkd_buf shown = {0};
        gkd_buf_put_printable(&shown, name, strlen(name), 0);
        printf("run '%s' already finished\n", shown.data ? shown.data : "");
        gkd_buf_free(&shown);
        free(r.config);
        free(r.status);
        return 0;
    }
    gkd_json *cfg = NULL;
    rc = 0;
    if (gkd_json_parse(r.config, strlen(r.config), "run config", &cfg) != GKD_OK) {
        gkd_cli_error("resume", "%s", gkd_error_message());
        rc = 1;
    }
    const gkd_json *script = rc ? NULL : gkd_json_get(cfg, "script");
    const char *path = script ? gkd_json_get_string(script, "path", NULL) : NULL;
    if (!rc && !path) {
        gkd_cli_error("resume", "run '%s' was not started from a script file (gkd run -e?), so it cannot be resumed", name);
        rc = 1;
    }
    char *args[64];
    int n_args = 0;
    if (!rc) {
        const gkd_json *jargs = gkd_json_get(script, "args");
        if (jargs && jargs->type == GKD_JSON_ARRAY && jargs->len > 64) {
            gkd_cli_error("resume", "run '%s' was started with %zu arguments; gkd resume passes at most 64", name,
                          jargs->len);
            rc = 1;
        }
        for (size_t i = 0; !rc && jargs && jargs->type == GKD_JSON_ARRAY && i < jargs->len; i++)
            if (jargs->items[i]->type == GKD_JSON_STRING) {
                /* Arguments reach the script as C strings: one holding \u0000 would arrive cut short. */
                if (strlen(jargs->items[i]->string) != jargs->items[i]->len) {
                    gkd_cli_error("resume", "run '%s': stored argument %zu holds a NUL character (\\u0000)", name,
                                  i + 1);
                    rc = 1;
                    break;
                }
                args[n_args++] = jargs->items[i]->string;
            }
        o.script = path;
        if (!o.device) o.device = gkd_json_get_string(script, "device", NULL); /* the device it ran on */
        /* the flags it ran with (a sandboxed run stays sandboxed), then this command's */
        const gkd_json *flags = gkd_json_get(script, "flags");
        for (size_t i = 0; !rc && flags && flags->type == GKD_JSON_ARRAY && i < flags->len; i++) {
            const gkd_json *f = flags->items[i];
            if (f->type != GKD_JSON_STRING || strncmp(f->string, "--", 2) != 0) continue;
            if (strcmp(f->string, "--sandbox") == 0) {
                o.limits.sandbox = 1;
                continue;
            }
            const gkd_json *v = i + 1 < flags->len ? flags->items[i + 1] : NULL;
            if (limit_option(&o.limits, "resume", f->string + 2, v && v->type == GKD_JSON_STRING ? v->string : NULL) < 0)
                rc = 1;
            else
                i++;
        }
        o.limits.sandbox |= given.sandbox;
        if (given.memory_mib >= 0) o.limits.memory_mib = given.memory_mib;
        if (given.instructions >= 0) o.limits.instructions = given.instructions;
        if (given.callback_instructions >= 0) o.limits.callback_instructions = given.callback_instructions;
        if (given.callback_seconds >= 0) o.limits.callback_seconds = given.callback_seconds;
    }
    char db_path[PATH_MAX];
    const char *cwd = rc ? NULL : gkd_json_get_string(script, "cwd", NULL);
    if (cwd) { /* the store as named here, then the run's own directory (older runs did not record it) */
        if (realpath(o.db, db_path)) o.db = db_path;
        if (chdir(cwd) != 0) {
            gkd_buf shown = {0};
            gkd_buf_put_printable(&shown, cwd, strlen(cwd), 0);
            gkd_cli_error("resume", "run '%s' was started in %s, which cannot be entered: %s", name,
                          shown.data ? shown.data : "", strerror(errno));
            gkd_buf_free(&shown);
            rc = 1;
        }
    }
    if (!rc) {
        o.argc = n_args;
        o.argv = args;
        /* The path comes from the store: shown with control characters escaped, as gkd runs shows names. */
        gkd_buf shown_path = {0}, shown_name = {0};
        gkd_buf_put_printable(&shown_path, path, strlen(path), 0);
        gkd_buf_put_printable(&shown_name, name, strlen(name), 0);
        fprintf(stderr, "gkd resume: running %s again; finished runs are skipped, '%s' continues from its last checkpoint\n",
                shown_path.data ? shown_path.data : "", shown_name.data ? shown_name.data : "");
        gkd_buf_free(&shown_path);
        gkd_buf_free(&shown_name);
        rc = run_script("resume", &o, gkd_json_get(cfg, "sweep") != NULL);
    }
    gkd_json_free(cfg);
    free(r.config);
    free(r.status);
    return rc;
}
