/* gkd.dist: the process group of a data-parallel run (rl/dist.h) as gkd.run's prelude sees it. gkd.run asks
 * it who writes the store (rank 0) and hands the other ranks rank 0's decisions (resume, skip) with
 * broadcast. docs/data-parallel.md and docs/lua-api.md describe it.
 * Rules: launched() reads the environment only; every other function starts the group on first use (MPI
 * only under a launcher that announced several ranks) and raises when a build without MPI was launched so;
 * broadcast is a collective: every rank calls it at the same point. */
#include <stdint.h>
#include <stdlib.h>

#include "bindings/lua_train.h"
#include "rl/dist.h"

static gkd_dist *world(lua_State *L) {
    gkd_dist *d;
    if (gkd_dist_world(&d) != GKD_OK) gkd_lua_raise(L, "gkd.dist");
    return d;
}

/* gkd.dist.launched() -> the number of ranks the launcher announced (1: none; 0: a PMIx launcher, which
 * does not say), without starting MPI */
static int l_launched(lua_State *L) {
    int found = 0;
    lua_pushinteger(L, gkd_dist_launched_size(&found));
    return 1;
}

/* gkd.dist.init() -> rank, size, backend ("none", "mpi", "nccl") */
static int l_init(lua_State *L) {
    gkd_dist *d = world(L);
    lua_pushinteger(L, d->rank);
    lua_pushinteger(L, d->size);
    lua_pushstring(L, d->iface->name);
    return 3;
}

static int l_rank(lua_State *L) {
    lua_pushinteger(L, world(L)->rank);
    return 1;
}

static int l_size(lua_State *L) {
    lua_pushinteger(L, world(L)->size);
    return 1;
}

static int l_local_rank(lua_State *L) {
    lua_pushinteger(L, world(L)->local_rank);
    return 1;
}

/* gkd.dist.compiled() -> "nccl", "mpi" or "none": what this binary can use */
static int l_compiled(lua_State *L) {
    static const char *const names[] = {"none", "mpi", "nccl"};
    lua_pushstring(L, names[gkd_dist_compiled()]);
    return 1;
}

/* gkd.dist.broadcast(s) -> rank 0's string on every rank (s is read on rank 0 only) */
static int l_broadcast(lua_State *L) {
    gkd_dist *d = world(L);
    size_t len = 0;
    const char *s = d->rank == 0 ? luaL_checklstring(L, 1, &len) : NULL;
    uint64_t n = len;
    if (gkd_dist_broadcast(d, &n, sizeof n) != GKD_OK) return gkd_lua_raise(L, "gkd.dist.broadcast");
    if (d->rank == 0) {
        /* MPI_Bcast's root buffer is only read */
        if (gkd_dist_broadcast(d, (char *)s, len) != GKD_OK) return gkd_lua_raise(L, "gkd.dist.broadcast");
        lua_pushvalue(L, 1);
        return 1;
    }
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)n);
    if (gkd_dist_broadcast(d, p, (size_t)n) != GKD_OK) return gkd_lua_raise(L, "gkd.dist.broadcast");
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

void gkd_lua_add_dist(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"launched", l_launched},     {"init", l_init},         {"rank", l_rank},           {"size", l_size},
        {"local_rank", l_local_rank}, {"compiled", l_compiled}, {"broadcast", l_broadcast}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_setfield(L, -2, "dist");
}
