/* gkd_lua_bench_overhead: the share of a training step spent in Lua, measured on a real GKD + RL run of
 * the tiny test configuration where every schedule it uses is a Lua function (reading the step and the
 * metrics; lambda has no effect with a reward, and gkd.run refuses it),
 * the reward is a Lua function called on each of the step's samples, and a Lua on_step callback runs, so
 * the number covers what a script adds to each step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bindings/gkd_lua.h"
#include "bindings/lua_internal.h"

static const char BENCH_SCRIPT[] =
    "local steps = ...\n"
    "local task = assert(gkd.task.summarize{max_examples = 64})\n"
    "local tok = gkd.tokenizer.train{task = task, vocab = 300}\n"
    "local function model(seed)\n"
    "  return gkd.model.new{layers = 2, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 128, seed = seed}\n"
    "end\n"
    "local rewards = 0\n"
    "local r = gkd.run{\n"
    "  name = 'lua-overhead', db = ':memory:', task = task, teacher = model(7), student = model(1),\n"
    "  divergence = gkd.jsd(0.5), steps = steps, batch = 8, max_new_tokens = 16, max_prompt = 96,\n"
    "  beta = function(step, m) return 0.5 + 0.4 * math.sin(step) * ((m.loss or 0) > 0 and 1 or 0) end,\n"
    "  lr = function(step) return 1e-3 * math.min(1, (step + 1) / 4) end,\n"
    "  temperature = function(step) return 1.0 end,\n"
    "  teacher_temperature = function(step) return 1.0 end,\n"
    "  reward = function(s) return gkd.reward.factual(s.source, s.output) end,\n"
    "  alpha = function(step) return 0.5 end, group_size = 4,\n"
    "  on_step = function(m) rewards = rewards + m.reward end,\n"
    "  eval = false, checkpoint = false, quiet = true,\n"
    "}\n"
    "return r.seconds, r.lua_seconds, r.steps_run\n";

gkd_status gkd_lua_bench_overhead(int steps, gkd_lua_overhead *out) {
    memset(out, 0, sizeof *out);
    if (steps < 1) return gkd_error_set(GKD_ERR_ARG, "bench: steps must be >= 1, got %d", steps);
    lua_State *L = gkd_lua_state_new();
    if (!L) return gkd_error_set(GKD_ERR_NOMEM, "bench: cannot create a Lua state");
    gkd_status st = GKD_OK;
    lua_getglobal(L, "require");
    lua_pushstring(L, "gkd");
    if (gkd_lua_pcall(L, 1, 1) != LUA_OK) {
        st = gkd_error_set(GKD_ERR_CALLBACK, "bench: %s", lua_tostring(L, -1));
    } else {
        lua_setglobal(L, "gkd");
        if (luaL_loadbuffer(L, BENCH_SCRIPT, sizeof BENCH_SCRIPT - 1, "=bench") != LUA_OK) {
            st = gkd_error_set(GKD_ERR_CALLBACK, "bench: %s", lua_tostring(L, -1));
        } else {
            lua_pushinteger(L, steps);
            if (gkd_lua_pcall(L, 1, 3) != LUA_OK) {
                st = gkd_error_set(GKD_ERR_CALLBACK, "bench: %s", lua_tostring(L, -1));
            } else {
                double total = lua_tonumber(L, -3), lua = lua_tonumber(L, -2);
                int ran = (int)lua_tointeger(L, -1);
                out->steps = ran;
                out->total_seconds_per_step = ran > 0 ? total / ran : 0;
                out->lua_seconds_per_step = ran > 0 ? lua / ran : 0;
                out->fraction = total > 0 ? lua / total : 0;
            }
        }
    }
    lua_close(L);
    return st;
}
