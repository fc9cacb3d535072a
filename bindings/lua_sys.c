/* gkd.sys: the process primitives the sweep runner in the prelude stands on (fork, wait, kill, liveness of
 * a recorded process) and a few file-system helpers. POSIX only.
 * Rules: workers are new programs (spawn = fork + exec), never bare forks of a process that may hold
 * thread pools and open databases. A spawned child is registered until it is waited for, so that a stop
 * signal (SIGINT/SIGTERM) is forwarded to it (bindings/lua_gkd.c); signals are blocked from the fork to
 * the registration, so none falls between. A sandboxed script has no spawn, wait, kill, setenv, mkdir or
 * sleep (docs/trust.md). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bindings/gkd_lua.h"
#include "bindings/lua_internal.h"

/* spawn(argv [, program]) -> pid: runs `program` (default: this same program, /proc/self/exe; else
 * argv[1] through PATH) with the arguments argv[1..n] (argv[1] is the name it sees as argv[0]) in a child
 * process of the same process group. A fresh program rather than a bare fork: the parent may have
 * started OpenMP or BLAS thread pools, which a forked child cannot use. */
static int l_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 1 && n < 256, 1, "1 to 255 arguments expected");
    char **args = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "spawn: argument %I is not a string", i);
        args[i - 1] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1); /* referenced by the argument table */
    }
    args[n] = NULL;
    const char *program = luaL_optstring(L, 2, "/proc/self/exe");
    fflush(NULL);
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &old);
    pid_t pid = fork();
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        execv(program, args);
        execvp(args[0], args);
        _exit(127);
    }
    int fork_errno = errno;
    if (pid > 0) gkd_lua_child_add(pid);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "fork: %s", strerror(fork_errno));
        return 2;
    }
    lua_pushinteger(L, pid);
    return 1;
}

/* wait([pid]) -> pid, "exit"|"signal", code: waits for a child (any when pid is omitted); nil, message
 * when there is none. */
static int l_wait(lua_State *L) {
    pid_t want = (pid_t)luaL_optinteger(L, 1, -1);
    int status;
    pid_t pid;
    do {
        pid = waitpid(want, &status, 0);
    } while (pid < 0 && errno == EINTR);
    if (pid < 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "wait: %s", strerror(errno));
        return 2;
    }
    gkd_lua_child_remove(pid);
    lua_pushinteger(L, pid);
    if (WIFEXITED(status)) {
        lua_pushliteral(L, "exit");
        lua_pushinteger(L, WEXITSTATUS(status));
    } else {
        lua_pushliteral(L, "signal");
        lua_pushinteger(L, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    return 3;
}

static int l_kill(lua_State *L) {
    static const char *const names[] = {"TERM", "KILL", "INT", NULL};
    static const int sigs[] = {SIGTERM, SIGKILL, SIGINT};
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int sig = sigs[luaL_checkoption(L, 2, "TERM", names)];
    luaL_argcheck(L, pid > 0, 1, "pid must be > 0");
    lua_pushboolean(L, kill(pid, sig) == 0);
    return 1;
}

static int l_pid(lua_State *L) {
    lua_pushinteger(L, getpid());
    return 1;
}

/* 1 when /proc says the process is a zombie (dead, not yet reaped: a killed worker whose parent died
 * too stays so until init reaps it). */
static int is_zombie(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *close = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    return close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X');
}

/* alive(pid) -> whether a live process with that id exists on this machine */
static int l_alive(lua_State *L) {
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    lua_pushboolean(L, pid > 0 && (kill(pid, 0) == 0 || errno == EPERM) && !is_zombie(pid));
    return 1;
}

static int l_hostname(lua_State *L) {
    char buf[256];
    if (gethostname(buf, sizeof buf) != 0) buf[0] = '\0';
    buf[sizeof buf - 1] = '\0';
    lua_pushstring(L, buf);
    return 1;
}

static int l_clock(lua_State *L) {
    lua_pushnumber(L, gkd_lua_now());
    return 1;
}

static int l_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    if (s > 0) {
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 2)));
    return 1;
}

/* mkdir(path): creates the directory and its parents; true | nil, message */
static int l_mkdir(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    size_t n = strlen(path);
    char *p = gkd_lua_hold(L, malloc(n + 1));
    if (!p) return luaL_error(L, "out of memory");
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            luaL_pushfail(L);
            lua_pushfstring(L, "%s: cannot create directory: %s", p, strerror(errno));
            return 2;
        }
        p[i] = c;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* setenv(name, value): for the programs spawned after it (thread counts of workers). */
static int l_setenv(lua_State *L) {
    const char *name = luaL_checkstring(L, 1), *value = luaL_checkstring(L, 2);
    lua_pushboolean(L, setenv(name, value, 1) == 0);
    return 1;
}

static int l_cpus(lua_State *L) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    lua_pushinteger(L, n > 0 ? n : 1);
    return 1;
}

static int l_exists(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}

void gkd_lua_open_sys(lua_State *L) {
    static const luaL_Reg fns[] = {{"spawn", l_spawn},         {"wait", l_wait},     {"kill", l_kill},
                                   {"pid", l_pid},           {"alive", l_alive},   {"hostname", l_hostname},
                                   {"clock", l_clock},   {"sleep", l_sleep},
                                   {"isatty", l_isatty},     {"mkdir", l_mkdir},   {"exists", l_exists},
                                   {"setenv", l_setenv},     {"cpus", l_cpus},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
}
