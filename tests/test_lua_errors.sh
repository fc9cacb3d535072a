#!/usr/bin/env bash
# ctest-labels: cpu
# gkd run's exit codes and messages: a syntax error reports file:line: message and exits 2; a runtime
# error reports its traceback and exits 1. In a sweep, a runtime error inside a Lua schedule or a Lua
# reward marks that run failed with the traceback, and the other runs finish.
set -uo pipefail
bin="${GKD_BIN:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=1
fails=0
pass=0
check() { # check "what" command...
  local what="$1"; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAILED: $what" >&2; fails=$((fails + 1)); fi
}

printf 'local x = 1\nlocal y = = 2\n' >syntax.lua
"$bin" run syntax.lua 2>err.txt; rc=$?
check "syntax error exits 2 (got $rc)" test "$rc" -eq 2
check "syntax error names file:line" grep -q "syntax.lua:2: unexpected symbol near '='" err.txt

printf 'local function inner()\n  error("kaboom")\nend\ninner()\n' >runtime.lua
"$bin" run runtime.lua 2>err.txt; rc=$?
check "runtime error exits 1 (got $rc)" test "$rc" -eq 1
check "runtime error message" grep -q "runtime.lua:2: kaboom" err.txt
check "runtime error traceback" grep -q "stack traceback" err.txt
check "traceback names the caller" grep -q "runtime.lua:4: in main chunk" err.txt

"$bin" run -e 'x = ' 2>err.txt; rc=$?
check "-e syntax error exits 2" test "$rc" -eq 2
"$bin" run -e 'assert(arg[1] == "a" and arg[2] == "b" and select("#", ...) == 2)' a b; rc=$?
check "-e passes arguments" test "$rc" -eq 0
"$bin" run missing.lua 2>err.txt; rc=$?
check "a missing script exits 2" test "$rc" -eq 2

cat >sweep.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local teacher = model(7)
gkd.sweep{
  name = "errors", grid = {case = {0, 0.5, 1}}, seeds = {1}, workers = 2, quiet = true,
  run = function(p)
    local cfg = {task = task, teacher = teacher, student = model(p.seed), steps = 3, batch = 2,
                 max_new_tokens = 4, max_prompt = 64, eval = {every = 1, examples = 2, metrics = {"rougeL"}}}
    if p.case == 0.5 then
      cfg.divergence, cfg.beta = "jsd", function(step) if step == 1 then error("schedule went wrong") end return 0.5 end
    elseif p.case == 1 then
      cfg.group_size, cfg.alpha = 2, 0.5
      cfg.reward = function(sample)
        local t = nil
        return t.score -- a bug in a Lua reward
      end
    end
    return cfg
  end,
}
LUA
"$bin" sweep sweep.lua --db runs.db >out.txt 2>err.txt; rc=$?
check "a sweep with failed runs exits 1 (got $rc)" test "$rc" -eq 1
check "schedule error reported with its message" grep -q "schedule 'beta'.*schedule went wrong" err.txt
check "reward error reported" grep -q "reward 'reward'.*attempt to index a nil value" err.txt
check "errors come with a traceback" grep -q "stack traceback" err.txt
"$bin" run -e '
  local s = assert(gkd.store.open("runs.db"))
  local function st(name) return s:run_find("errors/" .. name) end
  local ok = st("case=0,seed=1").status == "finished"
    and st("case=0.5,seed=1").status == "failed" and st("case=1,seed=1").status == "failed"
  local e1 = s:query("SELECT error FROM runs WHERE name = ?", "errors/case=0.5,seed=1")[1].error
  local e2 = s:query("SELECT error FROM runs WHERE name = ?", "errors/case=1,seed=1")[1].error
  ok = ok and e1:find("schedule went wrong", 1, true) and e1:find("stack traceback", 1, true)
  ok = ok and e2:find("attempt to index a nil value", 1, true) and e2:find("stack traceback", 1, true)
  ok = ok and st("case=0.5,seed=1").last_step == 1 and st("case=1,seed=1").last_step == -1
  os.exit(ok and 0 or 1)'
check "failed runs recorded with their tracebacks, the other run finished" test $? -eq 0
check "summary printed" grep -q "1 finished, 2 failed" out.txt

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
