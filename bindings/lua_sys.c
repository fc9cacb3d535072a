/* gkd.sys: the process primitives the sweep runner in the prelude stands on (fork, wait, kill, liveness of
 * a recorded process) and a few file-system helpers. POSIX only.
 * Rules: a forked child must leave through gkd.sys.exit (which skips the parent's atexit handlers and
 * Lua's own shutdown: the child shares the parent's open files and must not close them). */
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

static int l_fork(lua_State *L) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "fork: %s", strerror(errno));
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

/* alive(pid) -> whether a process with that id exists on this machine */
static int l_alive(lua_State *L) {
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    lua_pushboolean(L, pid > 0 && (kill(pid, 0) == 0 || errno == EPERM));
    return 1;
}

static int l_hostname(lua_State *L) {
    char buf[256];
    if (gethostname(buf, sizeof buf) != 0) buf[0] = '\0';
    buf[sizeof buf - 1] = '\0';
    lua_pushstring(L, buf);
    return 1;
}

static int l_exit(lua_State *L) {
    int code = (int)luaL_optinteger(L, 1, 0);
    fflush(NULL);
    _exit(code);
    return 0;
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

static int l_exists(lua_State *L) {
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}

void gkd_lua_open_sys(lua_State *L) {
    static const luaL_Reg fns[] = {{"fork", l_fork},         {"wait", l_wait},     {"kill", l_kill},
                                   {"pid", l_pid},           {"alive", l_alive},   {"hostname", l_hostname},
                                   {"exit", l_exit},         {"clock", l_clock},   {"sleep", l_sleep},
                                   {"isatty", l_isatty},     {"mkdir", l_mkdir},   {"exists", l_exists},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
}
