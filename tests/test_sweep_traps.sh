#!/usr/bin/env bash
# ctest-labels: cpu
# The sweep traps of issue 14 that gave wrong or misleading results with no error:
# 1. points that fail their config checks are stored as failed runs, counted as failed, and the sweep
#    exits non-zero (it printed "0 failed, 6 not finished" and exited 0); gkd run on a sweep file is
#    an error that names gkd sweep (it did nothing and exited 0).
# 2. a stored run is reused only when its config hash is the run's: changing steps and running the
#    sweep (or gkd.run{resume = true}) again is an error naming the run and the keys (it reported the old
#    results as "already finished"), unless --reuse-stale / reuse = "any".
# 3. a setting that has no effect is an error (lambda with a reward: a sweep over lambda gave identical
#    runs; beta with a divergence that has none; teacher settings without a teacher) or, when it only
#    changes what is logged or is inert at the value used, a warning stored with the run.
# 4. gkd resume RUN from another directory runs the script where the run started, so its relative paths
#    (data, checkpoints) still resolve (it failed: they resolved against the current directory).
. "$(dirname "$0")/lib.sh"

# status_of DB: "name status" per run, by name
status_of() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, r in ipairs(s:query("SELECT name, status, error FROM runs ORDER BY name")) do
      print(r.name, r.status, (r.error or ""):match("^[^\n]*"))
    end' "$1" 2>&1
}

# warnings DB NAME: the run's stored warnings, one a line
warnings() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, r in ipairs(s:query("SELECT w.value FROM runs r, json_each(r.warnings) w WHERE r.name = ?", arg[2])) do
      print(r.value)
    end' "$1" "$2" 2>&1
}

# --- 1. failures that looked like success
cat >nofit.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 20})
local tok = gkd.tokenizer.train{task = task, vocab = 260}
return {
  name = "bad", grid = {lambda = {0, 1}, beta = {0.1, 0.5, 0.9}}, quiet = true,
  workers = tonumber(arg[1]) or 1,
  run = function(p) -- no teacher: every point fails gkd.run's checks
    return {task = task, student = gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64},
      steps = 1, batch = 2, max_new_tokens = 4, max_prompt = 40, eval = false, checkpoint = false}
  end,
}
LUA
for workers in 1 2; do
  "$bin" sweep nofit.lua --db fail$workers.db -- $workers >out.txt 2>err.txt; rc=$?
  check "$workers worker(s): a sweep whose points all fail exits 1 (got $rc)" test "$rc" -eq 1
  check "$workers worker(s): the summary counts 6 failed" grep -q "6 runs: 0 finished, 6 failed, 0 not finished" out.txt
  check "$workers worker(s): the exit message says so" grep -q "6 runs failed" err.txt
  status_of fail$workers.db >runs.txt
  check "$workers worker(s): 6 failed runs stored" test "$(grep -c '	failed	' runs.txt)" -eq 6
  check "$workers worker(s): with the config error" \
    test "$(grep -c "needs a 'teacher'" runs.txt)" -eq 6
done
"$bin" sweep nofit.lua --db fail1.db >out.txt 2>err.txt; rc=$?
check "the same sweep again still exits 1 (got $rc)" test "$rc" -eq 1
check "and says the failed runs are kept" grep -q "6 failed (retry_failed" err.txt

"$bin" run nofit.lua --db run.db >out.txt 2>err.txt; rc=$?
check "gkd run on a sweep file exits 2 (got $rc)" test "$rc" -eq 2
check "and names gkd sweep" grep -q "run it with: gkd sweep nofit.lua" err.txt
sed 's/grid =/grids =/' nofit.lua >grids.lua
"$bin" run grids.lua --db run.db >out.txt 2>err.txt; rc=$?
check "gkd run on a sweep file with a misspelt 'grids' exits 2 (got $rc)" test "$rc" -eq 2
"$bin" sweep grids.lua --db run.db >out.txt 2>err.txt; rc=$?
check "gkd sweep suggests 'grid' for 'grids' (exit $rc)" grep -q "unknown key 'grids' (did you mean 'grid'?)" err.txt

# --- 2. stale runs reused
cat >ok.lua <<'LUA'
local steps = tonumber(arg[1]) or 2
local task = assert(gkd.task.summarize{max_examples = 20})
local tok = gkd.tokenizer.train{task = task, vocab = 260}
local teacher = gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64, seed = 3}
return {
  name = "ok", grid = {lambda = {0, 1}}, seeds = {1, 2}, quiet = true, workers = tonumber(arg[2]) or 1,
  run = function(p)
    return {task = task, teacher = teacher, steps = steps, batch = 2, max_new_tokens = 4, max_prompt = 40,
      student = gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64, seed = p.seed},
      eval = false, checkpoint = false}
  end,
}
LUA
# rows DB: the number of runs, and of runs with a config hash
rows() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    local r = s:query("SELECT count(*) AS n, count(config_hash) AS h FROM runs")[1]
    print(r.n .. " " .. r.h)' "$1" 2>&1
}
"$bin" sweep ok.lua --db stale.db -- 2 >out.txt 2>err.txt; rc=$?
check "a 2-step sweep exits 0 (got $rc)" test "$rc" -eq 0
check "its 4 runs are stored with their config hash" test "$(rows stale.db)" = "4 4"
"$bin" sweep ok.lua --db stale.db -- 2 2 >out.txt 2>err.txt; rc=$?
check "the same sweep again (2 workers) exits 0 (got $rc)" test "$rc" -eq 0
check "and reuses its 4 runs" grep -q "4 runs, 0 to run, 4 already finished" err.txt
# A row as an older gkd left it: no config hash, and a resolved setting it did not report. Still the same
# configuration: reused.
if command -v sqlite3 >/dev/null; then
  sqlite3 stale.db "UPDATE runs SET config_hash = NULL, config = json_remove(config, '$.resolved.eval_examples')
    WHERE name = 'ok/lambda=0,seed=1'"
  "$bin" sweep ok.lua --db stale.db -- 2 >out.txt 2>err.txt; rc=$?
  check "a run stored without a hash and a resolved key is reused (exit $rc)" \
    grep -q "4 runs, 0 to run, 4 already finished" err.txt
fi
"$bin" sweep ok.lua --db stale.db -- 3 >out.txt 2>err.txt; rc=$?
check "with steps 3 instead of 2 the sweep exits 1 (got $rc)" test "$rc" -eq 1
check "naming a run and the setting that differs" \
  grep -q "run 'ok/lambda=0,seed=1' in the store was made with another configuration (.*steps: 2 -> 3" err.txt
check "and how many runs differ" grep -q "4 of the sweep's 4 stored runs differ" err.txt
check "and it ran nothing" test "$(rows stale.db | cut -d' ' -f1)" = 4
"$bin" sweep ok.lua --db stale.db --reuse-stale -- 3 >out.txt 2>err.txt; rc=$?
check "--reuse-stale reuses them anyway (exit $rc)" grep -q "4 runs, 0 to run, 4 already finished" err.txt
cat >single.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 20})
local tok = gkd.tokenizer.train{task = task, vocab = 260}
local function m(seed) return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64, seed = seed} end
gkd.run{name = "one", task = task, teacher = m(3), student = m(1), steps = tonumber(arg[1]), batch = 2,
  max_new_tokens = 4, max_prompt = 40, eval = false, checkpoint = false, resume = true, quiet = true,
  reuse = arg[2]}
LUA
"$bin" run --db single.db single.lua 2 >out.txt 2>err.txt
"$bin" run --db single.db single.lua 3 >out.txt 2>err.txt; rc=$?
check "gkd.run{resume = true} with other steps exits 1 (got $rc)" test "$rc" -eq 1
check "naming the run and the setting" grep -q "run 'one' in the store was made with another configuration (.*steps: 2 -> 3" err.txt
"$bin" run --db single.db single.lua 3 any >out.txt 2>err.txt; rc=$?
check "reuse = 'any' reuses it (exit $rc)" test "$rc" -eq 0
check "saying that its configuration differs" grep -q "reusing it although its configuration differs" err.txt
check "still one run" test "$(rows single.db)" = "1 1"
check "with a warning saying it was reused" grep -q 'reused (reuse = "any") by a configuration that differs: .*steps: 2 -> 3' <(warnings single.db one)

# --- 3. settings that are silently ignored
cat >ignored.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 20})
local tok = gkd.tokenizer.train{task = task, vocab = 260}
local function m(seed) return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64, seed = seed} end
local case = arg[1]
local cfg = {name = case, task = task, teacher = m(3), student = m(1), steps = 1, batch = 2, max_new_tokens = 4,
  max_prompt = 40, eval = false, checkpoint = false, quiet = true}
if case == "rl-lambda" then cfg.reward = "length"; cfg.group_size = 2; cfg.lambda = 0.5
elseif case == "fkl-beta" then cfg.divergence = "forward_kl"; cfg.beta = 0.3
elseif case == "no-teacher" then cfg.method = "sft"; cfg.teacher = nil; cfg.teacher_temperature = 2
elseif case == "sft-beta" then cfg.method = "sft"; cfg.beta = 0.3
elseif case == "lambda0-temperature" then cfg.lambda = 0; cfg.temperature = 0.7; cfg.top_k = 5
elseif case == "lambda1-fixed" then cfg.lambda = 1; cfg.fixed = "teacher" end
gkd.run(cfg)
LUA
refused() {
  "$bin" run --db ignored.db ignored.lua "$1" >out.txt 2>err.txt; local rc=$?
  check "$1: refused (exit $rc)" test "$rc" -eq 1
  check "$1: naming the setting and why" grep -q "$2" err.txt
}
refused rl-lambda "gkd.run: 'lambda' has no effect with 'reward'"
refused fkl-beta "gkd.run: 'beta' has no effect with the divergence forward_kl"
refused no-teacher "gkd.run: 'teacher_temperature' has no effect without a 'teacher'"
for c in sft-beta lambda0-temperature lambda1-fixed; do
  "$bin" run --db ignored.db ignored.lua $c >out.txt 2>err.txt; rc=$?
  check "$c: runs with a warning (exit $rc)" test "$rc" -eq 0
  check "$c: the warning is printed" grep -q "$c: warning: '" err.txt
done
check "sft-beta: the warning is stored with the run" \
  grep -q "'beta' has no effect on training: method 'sft' trains on cross-entropy" <(warnings ignored.db sft-beta)
check "lambda0-temperature: the warning is stored with the run" \
  grep -q "'temperature' has no effect with lambda = 0" <(warnings ignored.db lambda0-temperature)
check "lambda0-temperature: and one for top_k" \
  grep -q "'top_k' has no effect with lambda = 0: every sample is greedy" <(warnings ignored.db lambda0-temperature)
check "lambda1-fixed: the warning is stored with the run" \
  grep -q "'fixed' has no effect with lambda = 1" <(warnings ignored.db lambda1-fixed)
# A sweep over lambda with a reward: every point is refused, stored failed, and the sweep exits 1.
cat >rl-sweep.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 20})
local tok = gkd.tokenizer.train{task = task, vocab = 260}
local function m(seed) return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64, seed = seed} end
return {name = "rl", grid = {lambda = {0, 0.5, 1}}, quiet = true,
  run = function(p) return {task = task, teacher = m(3), student = m(p.seed), reward = "length", group_size = 2,
    steps = 1, batch = 2, max_new_tokens = 4, max_prompt = 40, eval = false, checkpoint = false} end}
LUA
"$bin" sweep rl-sweep.lua --db rl.db >out.txt 2>err.txt; rc=$?
check "a sweep over lambda with a reward exits 1 (got $rc)" test "$rc" -eq 1
check "its 3 points are failed runs saying why" \
  test "$(status_of rl.db | grep -c "failed	gkd.run: 'lambda' has no effect with 'reward'")" -eq 3

# --- 4. resume from another directory
mkdir -p start elsewhere
cp "$src/tests/fixtures/debdesc-sample.jsonl" start/data.jsonl
cat >start/crash.lua <<'LUA'
local task = assert(gkd.task.summarize{path = "data.jsonl", max_examples = 20})
local tok = gkd.tokenizer.train{task = task, vocab = 260}
local function m(seed) return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64, seed = seed} end
gkd.run{name = "crash", task = task, teacher = m(3), student = m(1), steps = 4, batch = 2, max_new_tokens = 4,
  max_prompt = 40, eval = false, checkpoint = {every = 2}, quiet = true,
  on_step = function(s) if s.step == 3 and os.getenv("CRASH") then error("crash at step 3") end end}
LUA
(cd start && CRASH=1 "$bin" run crash.lua >out.txt 2>err.txt); rc=$?
check "the run crashes at step 3 (exit $rc)" test "$rc" -eq 1
(cd elsewhere && "$bin" resume crash --db ../start/runs.db >out.txt 2>err.txt); rc=$?
check "gkd resume from another directory exits 0 (got $rc; $(head -c 300 elsewhere/err.txt))" test "$rc" -eq 0
check "it continued from the checkpoint in the run's directory" grep -q "crash: continuing from step 2" elsewhere/err.txt
check "the run is finished" grep -q "^crash	finished" <(status_of start/runs.db)
check "nothing was written where gkd resume was called" test -z "$(ls elsewhere | grep -v '^out.txt$\|^err.txt$')"

echo "$fails failed"
[ "$fails" -eq 0 ]
