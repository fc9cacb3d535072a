// ctest-labels: cpu
/* The gkd Lua module: every registered function (and every method of its handles) is documented in
 * docs/lua-api.md and called by this test; schedules match their closed forms; a Lua schedule reads the
 * step and the last evaluation; configuration errors name the key and the closest valid one; the
 * divergence gradient matches finite differences; rewards, store, JSON, tokenizer and model round
 * trips; the Lua-overhead measurement of `gkd bench --only lua` works (its 1 % target is checked there).
 * The Lua parts call check(cond, message), which counts into tests/check.h's counters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bindings/gkd_lua.h"
#include "core/base/json.h"
#include "tests/check.h"

static int l_check(lua_State *L) {
    check_count++;
    if (!lua_toboolean(L, 1)) {
        lua_Debug ar;
        int line = 0;
        if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) line = ar.currentline;
        fprintf(stderr, "lua check failed (chunk line %d): %s\n", line, luaL_optstring(L, 2, "?"));
        check_failures++;
    }
    return 0;
}

/* Runs one Lua chunk; a Lua error counts as a failed check. */
static void run_chunk(lua_State *L, const char *name, const char *code) {
    if (luaL_loadbuffer(L, code, strlen(code), name) != LUA_OK) {
        fprintf(stderr, "%s: %s\n", name, lua_tostring(L, -1));
        CHECKF(0, "chunk %s does not compile", name);
        lua_pop(L, 1);
        return;
    }
    if (gkd_lua_pcall(L, 0, 0) != LUA_OK) {
        CHECKF(0, "chunk %s raised: %s", name, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

/* Wraps every function of the module and every handle method in a counter (gkd_calls[name]). */
static const char WRAP[] =
    "gkd_calls = {}\n"
    "gkd_names = {}\n"
    "local function wrap(t, prefix, sep)\n"
    "  for k, v in pairs(t) do\n"
    "    local name = prefix .. sep .. k\n"
    "    if type(v) == 'function' then\n"
    "      gkd_names[#gkd_names + 1] = name\n"
    "      gkd_calls[name] = 0\n"
    "      t[k] = function(...) gkd_calls[name] = gkd_calls[name] + 1; return v(...) end\n"
    "    elseif type(v) == 'table' and k ~= 'options' and k ~= 'util' and k ~= '_features'\n"
    "           and k ~= 'RUN_SCHEMA' and k ~= 'METRICS' then\n"
    "      wrap(v, name, '.')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "wrap(gkd, 'gkd', '.')\n"
    "for _, h in ipairs({{'gkd.Task', 'task'}, {'gkd.Tokenizer', 'tokenizer'}, {'gkd.Model', 'model'},\n"
    "                    {'gkd.Schedule', 'schedule'}, {'gkd.Divergence', 'divergence'}, {'gkd.Store', 'store'}}) do\n"
    "  local mt = debug.getregistry()[h[1]]\n"
    "  check(mt and mt.methods, h[1] .. ' has methods')\n"
    "  wrap(mt.methods, h[2], ':')\n"
    "end\n";

static const char BASICS[] =
    "local tmp = os.getenv('GKD_TEST_TMP')\n"
    "-- tasks\n"
    "local task = assert(gkd.task.summarize{max_examples = 50})\n"
    "check(#task == 50 and task.n == 50 and task.kind == 'summarize', 'summarize loads 50 examples')\n"
    "check(task[1].prompt:match('^Summarize: ') and task[1].prompt:match('Summary:$'), 'default prompt template')\n"
    "check(task:get(2).target == task[2].target, 'task:get')\n"
    "local tr, ho = task:split(0.2, 3)\n"
    "check(#tr + #ho == 50 and #ho == 10, 'task:split sizes ' .. #tr .. ' ' .. #ho)\n"
    "check(task:describe().path:match('debdesc%-sample'), 'task:describe names the file')\n"
    "check(#task:texts() == 100, 'task:texts gives prompts and targets')\n"
    "local nilt, msg = gkd.task.summarize{path = tmp .. '/missing.jsonl'}\n"
    "check(nilt == nil and msg:match('missing'), 'a missing file returns nil, message')\n"
    "check(not pcall(gkd.task.summarize, {pth = 'x'}), 'unknown key raises')\n"
    "local ok, err = pcall(gkd.task.jsonl, {path = gkd.data_path(), target = 'summary', promt = '{document}'})\n"
    "check(not ok and err:match(\"unknown key 'promt' %(did you mean 'prompt'%?%)\"), 'jsonl key suggestion: ' .. tostring(err))\n"
    "local j = assert(gkd.task.jsonl{path = gkd.data_path('debdesc-sample'), prompt = 'Package {package}:', target = 'summary', max_examples = 3})\n"
    "check(j[1].prompt:match('^Package '), 'jsonl template')\n"
    "local f = io.open(tmp .. '/tr.jsonl', 'w'); f:write('{\"en\": \"Hello world\", \"de\": \"Hallo Welt\"}\\n'); f:close()\n"
    "local t2 = assert(gkd.task.translate{path = tmp .. '/tr.jsonl'})\n"
    "check(t2[1].prompt == 'Translate English to German: Hello world\\nGerman:' and t2[1].target == 'Hallo Welt', 'translate: ' .. t2[1].prompt)\n"
    "local ar = gkd.task.arithmetic{n = 5, seed = 2}\n"
    "check(#ar == 5 and gkd.reward.number(ar[1].target) ~= nil, 'arithmetic task has numeric answers')\n"
    "ar:close(); check(tostring(ar):match('closed'), 'task:close')\n"
    "check(tostring(task):match('gkd.Task%(summarize, 50 examples%)'), 'task __tostring')\n"
    "-- tokenizer\n"
    "local tok = gkd.tokenizer.train{task = task, vocab = 300}\n"
    "check(tok.vocab == 300 and tok.eos == 298 and tok.pad == 299, 'tokenizer vocab and specials')\n"
    "local ids = tok:encode('hello <|endoftext|> world')\n"
    "check(tok:decode(ids) == 'hello <|endoftext|> world', 'encode/decode round trip')\n"
    "local sids = tok:encode('a<|endoftext|>', true)\n"
    "check(sids[#sids] == tok.eos, 'special tokens matched with special = true')\n"
    "check(tok:id('<|pad|>') == tok.pad, 'tokenizer:id')\n"
    "check(tok:save(tmp .. '/tok.json') == true, 'tokenizer:save')\n"
    "local tok2 = assert(gkd.tokenizer.load(tmp .. '/tok.json'))\n"
    "check(table.concat(tok2:encode('some text here'), ',') == table.concat(tok:encode('some text here'), ','), 'load gives the same ids')\n"
    "check(tok2:describe().vocab == 300, 'tokenizer:describe')\n"
    "check(gkd.tokenizer.load(tmp .. '/nope.json') == nil, 'missing tokenizer: nil')\n"
    "local t3 = gkd.tokenizer.train{texts = {'abc abc abd', 'abd abc'}, vocab = 260}\n"
    "check(t3.vocab <= 260, 'train on texts')\n"
    "tok2:close(); check(tostring(tok2):match('closed'), 'tokenizer:close')\n"
    "-- models\n"
    "local m = gkd.model.new{layers = 2, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 64, seed = 3}\n"
    "check(m.vocab == 300 and m.dim == 32 and m.layers == 2 and m.params > 0, 'model fields')\n"
    "check(m.tokenizer == tok, 'model carries its tokenizer')\n"
    "check(m:config().heads == 4 and m:describe().init_seed == 3, 'model:config / describe')\n"
    "local out, det = m:sample({'Summarize: a b c\\nSummary:', 'x'}, {max_new_tokens = 6, temperature = 0})\n"
    "check(#out == 2 and type(out[1]) == 'string' and #det[1].ids <= 6 and #det[1].logprobs == #det[1].ids, 'sample text')\n"
    "local one = m:sample('Summarize: a b c\\nSummary:', {max_new_tokens = 6, temperature = 0})\n"
    "check(one == out[1], 'greedy sampling is deterministic')\n"
    "local idsout = m:sample({1, 2, 3}, {max_new_tokens = 4, temperature = 1, seed = 5})\n"
    "check(type(idsout) == 'table' and #idsout <= 4, 'sample from ids')\n"
    "local lp, total = m:logprobs({1, 2, 3})\n"
    "check(#lp == 2 and lp[1] < 0 and math.abs(lp[1] + lp[2] - total) < 1e-9, 'model:logprobs')\n"
    "local rows = m:logits('Summarize: a')\n"
    "check(#rows == #tok:encode('Summarize: a') and #rows[1] == 300, 'model:logits')\n"
    "check(m:save(tmp .. '/m.safetensors') == true, 'model:save file')\n"
    "local m2 = assert(gkd.model.load(tmp .. '/m.safetensors', {tokenizer = tok}))\n"
    "check(m2:sample('Summarize: a b c\\nSummary:', {max_new_tokens = 6, temperature = 0}) == one, 'saved model samples the same')\n"
    "check(m:save(tmp .. '/hf') == true, 'model:save hf dir')\n"
    "local m3 = assert(gkd.model.load(tmp .. '/hf'))\n"
    "check(m3.tokenizer ~= nil and m3.tokenizer.vocab == 300, 'hf dir brings its tokenizer')\n"
    "local m4 = gkd.model.new{layers = 2, dim = 32, heads = 4, vocab = 300, max_seq_len = 64, seed = 9}\n"
    "check(m4:load_weights(tmp .. '/m.safetensors') == true, 'model:load_weights')\n"
    "m4.tokenizer = tok\n"
    "check(m4:sample('Summarize: a b c\\nSummary:', {max_new_tokens = 6, temperature = 0}) == one, 'weights loaded')\n"
    "check(gkd.model.load(tmp .. '/none.safetensors') == nil, 'missing checkpoint: nil')\n"
    "local ok2, e2 = pcall(gkd.model.new, {layer = 2, vocab = 300})\n"
    "check(not ok2 and e2:match(\"did you mean 'layers'\"), 'model.new key suggestion')\n"
    "check(not pcall(gkd.model.new, {vocab = 300, dim = 30, heads = 4}), 'bad model config raises')\n"
    "check(not pcall(function() m4.dim = 3 end), 'model fields are read-only')\n"
    "check(m.device == 'cpu' and gkd.model.new{vocab = 300, device = 'auto'}.device ~= nil, 'model.device')\n"
    "local okd, ed = pcall(gkd.model.new, {vocab = 300, device = 'tpu'})\n"
    "check(not okd and ed:match('unknown backend \"tpu\"'), 'unknown device: ' .. tostring(ed))\n"
    "local same = gkd.model.from_layers(m, {layers = {1, 2}})\n"
    "check(same.layers == 2 and same.tokenizer == tok and same:sample('Summarize: a b c\\nSummary:', {max_new_tokens = 6, temperature = 0}) == one, 'from_layers: all layers sample as the source')\n"
    "local top = gkd.model.from_layers(m, {n = 1, inference = true})\n"
    "check(top.layers == 1 and top.inference and top.params < m.params, 'from_layers n = 1 (the last layer), inference')\n"
    "check(not pcall(gkd.model.from_layers, m, {layers = {3}}), 'from_layers: a layer outside the source raises')\n"
    "local ok3, e3 = pcall(m.sample, tok, 'x')\n"
    "check(not ok3 and e3:match('gkd.Model expected'), 'type errors name the handle: ' .. tostring(e3))\n"
    "m4:close(); check(tostring(m4):match('closed'), 'model:close'); m4:close()\n"
    "-- rewards\n"
    "local r = gkd.reward.rouge('the cat sat', 'the cat sat')\n"
    "check(math.abs(r.rougeL - 1) < 1e-12 and r.detail.rouge1.precision == 1, 'rouge of identical texts')\n"
    "check(math.abs(gkd.reward.rougeL('the cat', 'the cat sat on the mat') - 0.5) < 1e-12, 'rougeL = 2PR/(P+R)')\n"
    "check(gkd.reward.bleu('the cat sat on the mat', 'the cat sat on the mat') > 99.99, 'bleu identical')\n"
    "check(gkd.reward.corpus_bleu({'a b c d'}, {'a b c d'}) > 99.99, 'corpus bleu')\n"
    "check(gkd.reward.corpus_rouge({'a b', 'c'}, {'a b', 'd'}).rouge1 == 0.5, 'corpus rouge mean')\n"
    "local fs, parts = gkd.reward.factual('the cat sat on the mat', 'cat mat')\n"
    "check(fs == 1 and parts.content_words == 2, 'factual supported')\n"
    "check(gkd.reward.factual('the cat sat', 'dog') == 0, 'factual unsupported')\n"
    "check(gkd.reward.exact_match('so 1,000', '1000') == 1 and gkd.reward.exact_match('3', '4') == 0, 'exact match')\n"
    "check(gkd.reward.number('a 12 b 3.5') == 3.5 and gkd.reward.number('none') == nil, 'last number')\n"
    "check(gkd.reward.words('a b  c') == 3, 'word count')\n"
    "check(gkd.reward.length_penalty(12, 2, 10, 4) == 0.5 and gkd.reward.length_penalty(5, 2, 10) == 0, 'length penalty')\n"
    "check(gkd.reward.distinct({'a b a b'}, 2) == 2 / 3, 'distinct-2')\n"
    "local no_rm, rm_err = gkd.reward.model('no-such-rm.d')\n" /* scored for real in test_reward_model_cli.sh */
    "check(no_rm == nil and tostring(rm_err):find('no-such-rm.d', 1, true), 'reward.model names a missing dir')\n"
    "-- json\n"
    "local js = gkd.json.encode({b = {1, 2, 'x'}, a = true, c = 0.5})\n"
    "check(js == '{\"a\":true,\"b\":[1,2,\"x\"],\"c\":0.5}', 'json encode sorted: ' .. js)\n"
    "check(gkd.json.decode(js).b[3] == 'x', 'json decode')\n"
    "check(gkd.json.decode('{bad') == nil, 'bad json: nil')\n"
    "-- sys\n"
    "check(gkd.sys.pid() > 0 and gkd.sys.alive(gkd.sys.pid()) and #gkd.sys.hostname() > 0, 'sys pid/alive/hostname')\n"
    "check(gkd.sys.cpus() >= 1 and gkd.sys.clock() > 0, 'sys cpus/clock')\n"
    "check(gkd.sys.mkdir(tmp .. '/a/b/c') and gkd.sys.exists(tmp .. '/a/b/c'), 'sys mkdir/exists')\n"
    "check(gkd.sys.setenv('GKD_TEST_X', '1') and os.getenv('GKD_TEST_X') == '1', 'sys setenv')\n"
    "local t0 = gkd.sys.clock(); gkd.sys.sleep(0.01); check(gkd.sys.clock() - t0 >= 0.009, 'sys sleep')\n"
    "check(gkd.sys.isatty(99) == false, 'sys isatty')\n"
    "local pid = assert(gkd.sys.spawn({'sh', '-c', 'exit 3'}, '/bin/sh'))\n"
    "local wp, how, code = gkd.sys.wait(pid)\n"
    "check(wp == pid and how == 'exit' and code == 3, 'spawn + wait: ' .. tostring(how) .. ' ' .. tostring(code))\n"
    "local sp = assert(gkd.sys.spawn({'sleep', '30'}, '/bin/sleep'))\n"
    "check(gkd.sys.kill(sp, 'KILL'), 'sys kill')\n"
    "local _, how2, sig = gkd.sys.wait(sp)\n"
    "check(how2 == 'signal' and sig == 9, 'killed child reports the signal')\n"
    "check(not gkd.sys.alive(sp), 'a reaped child is not alive')\n"
    "check(gkd.stop_requested() == false, 'no stop requested')\n"
    "check(gkd.version():match('^%d+%.%d+'), 'version')\n"
    "check(gkd.dist.launched() == 1, 'no launcher: one process')\n"
    "local dr, dn, db = gkd.dist.init()\n"
    "check(dr == 0 and dn == 1 and db == 'none', 'one process is rank 0 of 1, no MPI')\n"
    "check(gkd.dist.rank() == 0 and gkd.dist.size() == 1 and gkd.dist.local_rank() == 0, 'dist rank, size')\n"
    "check(({none = true, mpi = true, nccl = true})[gkd.dist.compiled()], 'dist compiled')\n"
    "check(gkd.dist.broadcast('plan') == 'plan', 'a broadcast in one process returns its argument')\n"
    "check(gkd._source_dir() ~= nil, 'source dir')\n";

static const char SCHEDULES[] =
    "local function near(a, b) return math.abs(a - b) <= 1e-12 * math.max(1, math.abs(b)) end\n"
    "local S = gkd.schedule\n"
    "for step = 0, 120 do\n"
    "  local f = math.min(step / 100, 1)\n"
    "  check(near(S.constant(0.3)(step), 0.3), 'constant')\n"
    "  check(near(S.linear(0, 1, 100)(step), f), 'linear at ' .. step)\n"
    "  check(near(S.linear(2, -1, 100):value(step), 2 - 3 * f), 'linear down at ' .. step)\n"
    "  check(near(S.cosine(1, 0.1, 100)(step), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * f))), 'cosine at ' .. step)\n"
    "  check(near(S.step(1, 0.5, 30)(step), 0.5 ^ (step // 30)), 'step at ' .. step)\n"
    "  check(near(S.warmup(2, 10)(step), 2 * math.min(step / 10, 1)), 'warmup at ' .. step)\n"
    "  local wc = step < 10 and 3e-4 * (step + 1) / 10\n"
    "            or 1e-5 + (3e-4 - 1e-5) * 0.5 * (1 + math.cos(math.pi * math.min((step - 10) / 90, 1)))\n"
    "  check(near(S.warmup_cosine(3e-4, 1e-5, 10, 100)(step), wc), 'warmup_cosine at ' .. step)\n"
    "  local pw = step <= 10 and 1 or step <= 50 and 1 + (step - 10) / 40 * (0 - 1) or 0\n"
    "  check(near(S.piecewise({{10, 1}, {50, 0}})(step), pw), 'piecewise at ' .. step)\n"
    "  check(near(S.piecewise({10, 50}, {1, 0})(step), pw), 'piecewise (two lists) at ' .. step)\n"
    "end\n"
    "check(tostring(S.linear(0, 1, 100)) == 'linear(0, 1, 100)', 'schedule __tostring')\n"
    "check(S.cosine(0, 1, 5).kind == 'cosine', 'schedule kind')\n"
    "check(S.linear(0, 1, 9):check('lambda', 0, 1), 'schedule:check in range')\n"
    "check(not pcall(S.linear(0, 2, 9).check, S.linear(0, 2, 9), 'lambda', 0, 1), 'schedule:check out of range')\n"
    "check(not pcall(S.piecewise, {{5, 1}, {2, 0}}), 'piecewise points must increase')\n"
    "check(S.is_schedule(0.5) and S.is_schedule(S.constant(1)) and S.is_schedule(print) and not S.is_schedule('x'), 'is_schedule')\n"
    "check(S.at(S.linear(0, 1, 10), 5) == 0.5 and S.at(2, 7) == 2 and S.at(function(s) return s * 2 end, 4) == 8, 'schedule.at')\n";

static const char DIVERGENCES[] =
    "local d = gkd.jsd(0.9)\n"
    "check(d.name == 'jsd' and d.beta == 0.9 and tostring(d) == 'jsd(beta=0.9)', 'jsd handle: ' .. tostring(d))\n"
    "check(gkd.fkl().name == 'forward_kl' and gkd.rkl().name == 'reverse_kl' and gkd.tv().name == 'tv', 'shorthands')\n"
    "check(gkd.skew_kl(0.2).skew == 0.2 and gkd.skew_rkl(0.3).name == 'skew_reverse_kl', 'skew shorthands')\n"
    "check(gkd.divergence('jsd', {beta = 0.5, convention = 'scaled'}).convention == 'scaled', 'convention')\n"
    "check(not pcall(gkd.divergence, 'jsdd'), 'unknown divergence raises')\n"
    "check(not pcall(gkd.jsd, 1.5), 'beta out of range raises')\n"
    "local t, s = {1.0, 0.0, -1.0}, {0.0, 0.5, 0.2}\n"
    "-- forward KL by hand\n"
    "local function softmax(x) local m, z, p = math.max(table.unpack(x)), 0, {}\n"
    "  for i, v in ipairs(x) do p[i] = math.exp(v - m); z = z + p[i] end\n"
    "  for i = 1, #p do p[i] = p[i] / z end return p end\n"
    "local P, Q = softmax(t), softmax(s)\n"
    "local kl = 0 for i = 1, 3 do kl = kl + P[i] * (math.log(P[i]) - math.log(Q[i])) end\n"
    "local v, g = gkd.divergence_value(gkd.fkl(), t, s)\n"
    "check(math.abs(v - kl) < 1e-6, 'forward KL value ' .. v .. ' vs ' .. kl)\n"
    "for i = 1, 3 do check(math.abs(g[i] - (Q[i] - P[i])) < 1e-6, 'forward KL gradient = Q - P') end\n"
    "for _, div in ipairs({gkd.jsd(0.3), gkd.rkl(), gkd.skew_kl(0.1), gkd.tv()}) do\n"
    "  local v0, grad = div:value(t, s)\n"
    "  for i = 1, 3 do\n"
    "    local h = 1e-3\n"
    "    local sp, sm = {table.unpack(s)}, {table.unpack(s)}\n"
    "    sp[i] = sp[i] + h; sm[i] = sm[i] - h\n"
    "    local fd = (gkd.divergence_value(div, t, sp) - gkd.divergence_value(div, t, sm)) / (2 * h)\n"
    "    check(math.abs(fd - grad[i]) < 2e-3, tostring(div) .. ' gradient vs finite difference')\n"
    "  end\n"
    "end\n"
    "local vs, gs = gkd.divergence_value('forward_kl', {t, t}, {s, t})\n"
    "check(#vs == 2 and math.abs(vs[1] - kl) < 1e-6 and math.abs(vs[2]) < 1e-7 and #gs[2] == 3, 'rows')\n";

/* A run with a Lua schedule that records what it sees, checks of configuration errors, the store. */
static const char RUNS[] =
    "local tmp = os.getenv('GKD_TEST_TMP')\n"
    "local db = tmp .. '/runs.db'\n"
    "local task = assert(gkd.task.summarize{max_examples = 40})\n"
    "local tok = gkd.tokenizer.train{task = task, vocab = 300}\n"
    "local function model(seed) return gkd.model.new{layers = 2, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed} end\n"
    "local teacher = model(7)\n"
    "local seen, evals_seen = {}, {}\n"
    "local steps_seen, evals_called = {}, 0\n"
    "local base = {task = task, teacher = teacher, steps = 4, batch = 4, max_new_tokens = 6, max_prompt = 64, quiet = true,\n"
    "  db = db, checkpoint = {dir = tmp .. '/ck', every = 2}}\n"
    "local cfg = {}\n"
    "for k, v in pairs(base) do cfg[k] = v end\n"
    "cfg.name = 'sched'\n"
    "cfg.student = model(1)\n"
    "cfg.divergence = gkd.jsd(0.5)\n"
    "cfg.lambda = function(step, m)\n"
    "  seen[#seen + 1] = step\n"
    "  evals_seen[step] = m.eval and m.eval.ce_loss or false\n"
    "  if step >= 2 then check(m.eval_step == 2, 'eval_step seen at step ' .. step .. ': ' .. tostring(m.eval_step)) end\n"
    "  if step >= 1 then check(type(m.loss) == 'number', 'last training loss visible') end\n"
    "  return 0.5\n"
    "end\n"
    "cfg.beta = gkd.schedule.linear(0.1, 0.9, 4)\n"
    "cfg.eval = {every = 2, examples = 4, metrics = {'rougeL', 'bleu', 'distinct2', 'factual', 'length', chars = function(o, ex) return #o end}}\n"
    "cfg.on_step = function(m) steps_seen[#steps_seen + 1] = m.step end\n"
    "cfg.on_eval = function(e) evals_called = evals_called + 1; check(e.ce_loss ~= nil, 'on_eval gets the eval') end\n"
    "local r = gkd.run(cfg)\n"
    "check(table.concat(seen, ',') == '0,1,2,3', 'the schedule sees steps 0..3: ' .. table.concat(seen, ','))\n"
    "check(evals_seen[0] == false and evals_seen[1] == false, 'no evaluation seen before it happens')\n"
    "check(type(evals_seen[2]) == 'number' and evals_seen[3] == evals_seen[2], 'step 2 onwards reads the evaluation made after 2 steps')\n"
    "check(table.concat(steps_seen, ',') == '1,2,3,4' and evals_called == 2, 'on_step / on_eval calls')\n"
    "check(r.step == 4 and r.eval.rougeL and r.eval.chars and r.run_id, 'final metrics')\n"
    "check(math.abs(r.beta - (0.1 + 0.8 * 3 / 4)) < 1e-9, 'beta schedule reaches the trainer: ' .. tostring(r.beta))\n"
    "local st = assert(gkd.store.open(db))\n"
    "local info = st:run_find('sched')\n"
    "check(info and info.status == 'finished' and info.last_step == 4, 'run recorded finished')\n"
    "local rows = st:query('SELECT config FROM runs WHERE id = ?', info.id)\n"
    "local conf = gkd.json.decode(rows[1].config)\n"
    "check(conf.lambda == '<lua function>' and conf.beta == 'linear(0.1, 0.9, 4)' and conf.resolved.batch == 4, 'resolved config recorded')\n"
    "check(conf.student.layers == 2 and conf.task.kind == 'summarize', 'handles described in the config')\n"
    "check(#st:query('SELECT * FROM metrics WHERE run_id = ? AND name = ?', info.id, 'loss') == 4, 'a loss per step')\n"
    "check(#st:query('SELECT * FROM evals WHERE run_id = ? AND metric = ?', info.id, 'rougeL') == 2, 'two evaluations')\n"
    "check(#st:query('SELECT * FROM samples WHERE run_id = ?', info.id) == 8, 'eval samples recorded')\n"
    "local cstep, cpath = st:checkpoint_latest(info.id)\n"
    "check(cstep == 4 and gkd.sys.exists(cpath .. '/model.safetensors'), 'checkpoint recorded')\n"
    "st:close()\n"
    "-- resume = true: a finished run is skipped and its weights loaded\n"
    "local again = {} for k, v in pairs(cfg) do again[k] = v end\n"
    "again.student = model(1); again.resume = true\n"
    "local r2 = gkd.run(again)\n"
    "check(r2.skipped and r2.run_id == r.run_id and r2.loss == r.loss, 'finished run skipped with its metrics')\n"
    "check(again.student:sample('x y', {max_new_tokens = 4, temperature = 0}) == cfg.student:sample('x y', {max_new_tokens = 4, temperature = 0}), 'skipped run loads final weights')\n"
    "-- a failing Lua schedule fails the run, named, with a traceback\n"
    "local bad = {} for k, v in pairs(base) do bad[k] = v end\n"
    "bad.name = 'bad'; bad.student = model(2); bad.divergence = gkd.jsd(0.5)\n"
    "bad.beta = function(step) if step == 2 then error('boom at two') end return 0.5 end\n"
    "local ok, err = pcall(gkd.run, bad)\n"
    "check(not ok and err:match(\"schedule 'beta'\") and err:match('boom at two') and err:match('stack traceback'), 'schedule error: ' .. tostring(err))\n"
    "st = assert(gkd.store.open(db))\n"
    "local binfo = st:run_find('bad')\n"
    "check(binfo.status == 'failed' and binfo.last_step == 2, 'failed run recorded at its last step')\n"
    "check(st:query('SELECT error FROM runs WHERE id = ?', binfo.id)[1].error:match('boom at two'), 'error stored')\n"
    "-- a resumed failed run continues from its checkpoint in the same row (its beta changed: reuse = 'any')\n"
    "bad.beta = 0.5; bad.resume = true; bad.student = model(2); bad.reuse = 'any'\n"
    "local r3 = gkd.run(bad)\n"
    "check(r3.run_id == binfo.id and r3.resumed_from == 2 and r3.step == 4, 'resumed from step 2: ' .. tostring(r3.resumed_from))\n"
    "check(#st:query('SELECT * FROM metrics WHERE run_id = ? AND name = ?', binfo.id, 'loss') == 4, 'no duplicate rows after resume')\n"
    "-- configuration checks\n"
    "local function fails(c, pat)\n"
    "  local full = {} for k, v in pairs(base) do full[k] = v end\n"
    "  full.student = teacher\n"
    "  for k, v in pairs(c) do full[k] = v end\n"
    "  local ok2, e = pcall(gkd.run, full)\n"
    "  check(not ok2 and tostring(e):find(pat, 1, true), 'expected error ' .. pat .. ', got ' .. tostring(e))\n"
    "end\n"
    "fails({lamda = 0.5}, \"unknown key 'lamda' (did you mean 'lambda'?)\")\n"
    "fails({stesp = 3}, \"did you mean 'steps'?\")\n"
    "fails({lambda = 1.5}, \"'lambda' must be in [0, 1]\")\n"
    "fails({lambda = gkd.schedule.linear(0, 2, 10)}, 'lambda')\n"
    "fails({batch = 'x'}, \"'batch' must be integer, got string\")\n"
    "fails({batch = 0}, \"'batch' must be >= 1\")\n"
    "fails({method = 'gdk'}, \"did you mean 'gkd'?\")\n"
    "fails({eval = {evry = 2}}, \"unknown key 'evry' (did you mean 'every'?)\")\n"
    "fails({eval = {metrics = {'rougel'}}}, \"did you mean 'rougeL'?\")\n"
    "fails({task = 3}, \"'task' must be gkd.Task, got integer\")\n"
    "fails({alpha = 0.2}, \"'alpha' applies to GKD + RL runs only\")\n"
    "fails({reward = function(s) return 0 end, baseline = 'grup'}, \"did you mean 'group'?\")\n"
    "-- GKD + RL with a Lua reward: called on the student's samples every step\n"
    "local rl = {} for k, v in pairs(base) do rl[k] = v end\n"
    "local calls, fields_ok = 0, true\n"
    "rl.name = 'rl'; rl.student = model(4); rl.divergence = gkd.rkl(); rl.group_size = 2\n"
    "rl.alpha = gkd.schedule.linear(0.2, 0.8, 4)\n"
    "rl.reward = function(s)\n"
    "  calls = calls + 1\n"
    "  fields_ok = fields_ok and type(s.output) == 'string' and #s.source > 0 and #s.prompt > 0 and #s.reference > 0\n"
    "  return gkd.reward.factual(s.source, s.output) - 0.01 * #s.output\n"
    "end\n"
    "local rr = gkd.run(rl)\n"
    "check(calls == 4 * 4 and fields_ok, 'the reward sees every sample with its fields: ' .. calls)\n"
    "check(type(rr.reward) == 'number' and math.abs(rr.alpha - (0.2 + 0.6 * 3 / 4)) < 1e-9, 'reward and alpha metrics')\n"
    "local rrows = st:query('SELECT config FROM runs WHERE name = ?', 'rl')\n"
    "local rconf = gkd.json.decode(rrows[1].config)\n"
    "check(rconf.reward == '<lua function>' and rconf.resolved.group_size == 2 and rconf.resolved.alpha == 'linear(0.2, 0.8, 4)', 'RL settings recorded')\n"
    "local rl2 = {} for k, v in pairs(rl) do rl2[k] = v end\n"
    "rl2.name = 'rl-builtin'; rl2.student = model(5); rl2.reward = {factual = 1, length = 0.5}\n"
    "check(type(gkd.run(rl2).reward) == 'number', 'built-in rewards summed')\n"
    "rl2.name = 'rl-bad'; rl2.student = model(6)\n"
    "rl2.reward = function(s) if s.output ~= nil then error('reward bug') end end\n"
    "local okr, er = pcall(gkd.run, rl2)\n"
    "check(not okr and er:match(\"reward 'reward'\") and er:match('reward bug') and er:match('stack traceback'), 'reward error: ' .. tostring(er))\n"
    "check(st:run_find('rl-bad').status == 'failed', 'a failing reward fails its run')\n"
    "fails({teacher = model(1), student = gkd.model.new{layers = 1, dim = 32, heads = 4, vocab = 310}}, 'vocabularies differ')\n"
    "check(st:run_find('never') == nil, 'unknown run: nil')\n"
    "-- store primitives\n"
    "local sw = st:sweep('s1', '{}')\n"
    "check(st:sweep('s1') == sw and st:sweep_find('s1') == sw and st:sweep_find('s2') == nil, 'sweeps')\n"
    "local id = st:run_begin('manual', {sweep_id = sw, config = '{\"a\":1}', seed = 3})\n"
    "check(st:metric(id, 1, 'loss', 0.25) and st:metric(id, 2, 'loss', 0.125) and st:flush(), 'metric + flush')\n"
    "check(st:eval(id, 2, 'held_out', 'rougeL', 0.5), 'eval row')\n"
    "check(st:sample{run_id = id, step = 2, prompt = 'p', output = 'o', reward = 1}, 'sample row')\n"
    "check(st:checkpoint(id, 2, tmp .. '/x', 'sha256:00'), 'checkpoint row')\n"
    "check(st:truncate_after(id, 1) and #st:query('SELECT * FROM metrics WHERE run_id = ?', id) == 1, 'truncate_after')\n"
    "check(st:run_finish(id, 'interrupted', 'why') and st:run_find('manual', sw).status == 'interrupted', 'run_finish')\n"
    "check(st:run_resume(id) and st:run_find('manual').status == 'running', 'run_resume')\n"
    "check(st:run_set_config_hash(id, 'fnv1a64:00') and st:run_warning(id, 'w') and st:run_warning(id, 'w'), 'hash, warning')\n"
    "check(st:query('SELECT config_hash, json_array_length(warnings) AS n FROM runs WHERE id = ?', id)[1].n == 1, 'one warning')\n"
    "check(st:query('SELECT value FROM metrics WHERE run_id = ?', id)[1].value == 0.25, 'query types')\n"
    "check(st.path == db and tostring(st):match('gkd.Store'), 'store fields')\n"
    "check(not pcall(st.run_finish, st, id, 'runing'), 'bad status raises')\n"
    "check(gkd.store.open(tmp .. '/no/such/dir/x.db') == nil, 'unopenable store: nil')\n"
    "st:close(); check(tostring(st):match('closed'), 'store:close')\n"
    "local ro = assert(gkd.store.open(db, {readonly = true})); ro:close()\n";

/* A sweep run in-process (no script file: workers fall back to one by one), with a failing point. */
static const char SWEEP[] =
    "local tmp = os.getenv('GKD_TEST_TMP')\n"
    "local task = assert(gkd.task.summarize{max_examples = 30})\n"
    "local tok = gkd.tokenizer.train{task = task, vocab = 300}\n"
    "local function model(seed) return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed} end\n"
    "local teacher = model(7)\n"
    "local pts = gkd.sweep_points{name = 'g', grid = {beta = {0.1, 0.9}, lambda = {0, 1}}, seeds = {1, 2}}\n"
    "check(#pts == 8 and pts[1].name == 'g/lambda=0,beta=0.1,seed=1' and pts[8].name == 'g/lambda=1,beta=0.9,seed=2', 'grid names: ' .. pts[1].name)\n"
    "local rp = gkd.sweep_points{name = 'r', random = {lambda = {0, 1}, lr = {1e-4, 1e-2, log = true}, method = {values = {'gkd', 'supervised_kd'}}}, trials = 3}\n"
    "local rp2 = gkd.sweep_points{name = 'r', random = {lambda = {0, 1}, lr = {1e-4, 1e-2, log = true}, method = {values = {'gkd', 'supervised_kd'}}}, trials = 3}\n"
    "check(#rp == 3 and rp[3].name == rp2[3].name and rp[1].name ~= rp[2].name, 'random search is deterministic: ' .. rp[1].name)\n"
    "for _, p in ipairs(rp) do check(p.settings.lambda >= 0 and p.settings.lambda <= 1 and p.settings.lr >= 1e-4 and p.settings.lr <= 1e-2, 'random ranges') end\n"
    "local spec = {name = 'mini', grid = {lambda = {0, 1}}, seeds = {1, 2}, db = tmp .. '/sweep.db', workers = 2, quiet = true,\n"
    "  run = function(p)\n"
    "    return {task = task, teacher = teacher, student = model(p.seed), steps = 2, batch = 2, max_new_tokens = 4,\n"
    "      max_prompt = 64, eval = {examples = 2}, checkpoint = {dir = tmp .. '/ck/' .. p.name}, divergence = 'jsd',\n"
    "      beta = (p.lambda == 1 and p.seed == 2) and function() error('reward-like failure') end or 0.5}\n"
    "  end}\n"
    "local res = gkd.sweep(spec)\n"
    "check(res.counts.total == 4 and res.counts.finished == 3 and res.counts.failed == 1, 'one failure, the rest finished')\n"
    "check(#res.summary == 2 and res.summary[1].runs == 2 and res.summary[2].runs == 1, 'summary over seeds')\n"
    "check(res.summary[1].loss.n == 2 and res.summary[1].loss.std >= 0, 'mean and std')\n"
    "local res2 = gkd.sweep(spec)\n"
    "local st = assert(gkd.store.open(tmp .. '/sweep.db'))\n"
    "check(#st:query('SELECT id FROM runs') == 4, 'a second sweep adds no run')\n"
    "check(res2.counts.failed == 1, 'failed runs are kept')\n"
    "local hs = {name = 'halving', grid = {lambda = {0, 0.5, 1}}, seeds = {1}, db = tmp .. '/sweep.db', quiet = true,\n"
    "  halving = {metric = 'eval.ce_loss', mode = 'min', eta = 3, min_steps = 1},\n"
    "  run = function(p) return {task = task, teacher = teacher, student = model(p.seed), steps = 3, batch = 2,\n"
    "    max_new_tokens = 4, max_prompt = 64, eval = {examples = 2}, checkpoint = {dir = tmp .. '/ck/' .. p.name}} end}\n"
    "local hr = gkd.sweep(hs)\n"
    "local full = 0\n"
    "for _, run in ipairs(hr.runs) do if run.metrics and run.metrics.step == 3 then full = full + 1 end end\n"
    "check(full == 1, 'successive halving trains one setting to the end: ' .. full)\n"
    "check(hr.counts.finished == 3, 'every halving run finished its rung')\n"
    "local mg = assert(gkd.store.open(tmp .. '/merged.db'))\n"
    "local mr = assert(mg:merge(tmp .. '/sweep.db'))\n"
    "check(mr.runs_added == #st:query('SELECT id FROM runs') and mr.runs_updated == 0, 'store:merge copies every run')\n"
    "check(mg:merge(tmp .. '/sweep.db').runs_updated == mr.runs_added, 'merging again updates them in place')\n"
    "mg:close()\n"
    "st:close()\n";

/* Every name in gkd_names is documented: docs/lua-api.md contains it in backquotes. */
static void check_documented(lua_State *L) {
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/lua-api.md", GKD_SOURCE_DIR);
    char *doc = NULL;
    size_t len = 0;
    CHECKF(gkd_read_file(path, &doc, &len) == GKD_OK, "cannot read %s", path);
    if (!doc) return;
    lua_getglobal(L, "gkd_names");
    lua_Integer n = luaL_len(L, -1);
    CHECKF(n > 60, "only %lld functions found in the module", (long long)n);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *name = lua_tostring(L, -1);
        char needle[256];
        /* internal functions (a leading underscore) are documented as such too */
        snprintf(needle, sizeof needle, "`%s", name);
        CHECKF(strstr(doc, needle) != NULL, "%s is registered but not documented in docs/lua-api.md", name);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    free(doc);
}

/* Every function was called at least once by the chunks above. */
static void check_exercised(lua_State *L) {
    lua_getglobal(L, "gkd_names");
    lua_getglobal(L, "gkd_calls");
    lua_Integer n = luaL_len(L, -2);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        const char *name = lua_tostring(L, -1);
        lua_getfield(L, -2, name);
        lua_Integer calls = lua_tointeger(L, -1);
        CHECKF(calls > 0, "%s is never called by this test", name);
        lua_pop(L, 2);
    }
    lua_pop(L, 2);
}

int main(void) {
    char tmp[] = "/tmp/gkd-test-lua-XXXXXX";
    if (!mkdtemp(tmp)) check_skip("cannot create a temporary directory");
    setenv("GKD_TEST_TMP", tmp, 1);
    setenv("OMP_NUM_THREADS", "1", 0);
    lua_State *L = gkd_lua_state_new();
    CHECK(L != NULL);
    lua_pushcfunction(L, l_check);
    lua_setglobal(L, "check");
    lua_getglobal(L, "require");
    lua_pushstring(L, "gkd");
    CHECKF(gkd_lua_pcall(L, 1, 1) == LUA_OK, "require gkd: %s", lua_tostring(L, -1));
    lua_setglobal(L, "gkd");
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(tmp) == 0); /* default paths (checkpoints/) land in the temporary folder */
    run_chunk(L, "=wrap", WRAP);
    run_chunk(L, "=basics", BASICS);
    run_chunk(L, "=schedules", SCHEDULES);
    run_chunk(L, "=divergences", DIVERGENCES);
    run_chunk(L, "=runs", RUNS);
    run_chunk(L, "=sweep", SWEEP);
    check_documented(L);
    check_exercised(L);

    /* the instruction limit stops a runaway script */
    gkd_lua_set_instruction_limit(L, 100000);
    int rc = luaL_loadstring(L, "while true do end");
    CHECK(rc == LUA_OK);
    rc = gkd_lua_pcall(L, 0, 0);
    CHECKF(rc != LUA_OK && strstr(lua_tostring(L, -1), "instruction limit exceeded") &&
               strstr(lua_tostring(L, -1), "stack traceback"),
           "instruction limit: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    gkd_lua_set_instruction_limit(L, 0);
    lua_close(L);

    /* script running: arg table, syntax errors (2) and runtime errors (1) */
    L = gkd_lua_state_new();
    char *err = NULL;
    char *argv[] = {"one", "two"};
    rc = gkd_lua_run_script(L, NULL, "assert(arg[1] == 'one' and select('#', ...) == 2); return 7", "=t", 2, argv, 1, &err);
    CHECKF(rc == 0 && lua_tointeger(L, -1) == 7, "run_script: %d %s", rc, err ? err : "");
    free(err);
    rc = gkd_lua_run_script(L, NULL, "x = = 1", "@bad.lua", 0, NULL, 0, &err);
    CHECKF(rc == 2 && err && strncmp(err, "bad.lua:1:", 10) == 0, "syntax error: %d %s", rc, err ? err : "");
    free(err);
    rc = gkd_lua_run_script(L, NULL, "local function f() error('deep') end\nf()", "@rt.lua", 0, NULL, 0, &err);
    CHECKF(rc == 1 && err && strstr(err, "rt.lua:1: deep") && strstr(err, "stack traceback"), "runtime error: %s",
           err ? err : "");
    free(err);
    lua_close(L);

    /* criterion 5: Lua's share of a training step */
    gkd_lua_overhead o;
    gkd_status st = gkd_lua_bench_overhead(12, &o);
    CHECKF(st == GKD_OK, "bench: %s", gkd_error_message());
    fprintf(stderr, "Lua overhead: %.1f us of %.2f ms per step (%.3f %%)\n", o.lua_seconds_per_step * 1e6,
            o.total_seconds_per_step * 1e3, 100 * o.fraction);
    CHECKF(o.steps == 12 && o.lua_seconds_per_step > 0, "bench measured %d steps", o.steps);
    /* The 1 % target is a speed target, so `gkd bench --only lua` checks it (docs/benchmarks.md); a timed
     * check here failed whenever other jobs shared the cores. What the test holds to is that the
     * measurement works and that Lua's share is a share (under 1, whatever the load). */
    CHECK(o.fraction > 0.0 && o.fraction < 1.0);
    CHECK(gkd_lua_bench_overhead(0, &o) == GKD_ERR_ARG);

    CHECK(chdir(cwd) == 0);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    return check_exit();
}
