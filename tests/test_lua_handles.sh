#!/usr/bin/env bash
# ctest-labels: cpu
# Handles a run is using cannot be freed under it, runs cannot nest, and a vocabulary mismatch is refused
# before anything runs (issue 13). Each case was a use-after-free, a crash or a late failure before:
# - student:close() in on_step, teacher:close() in a reward, tok:close() in a metric, task:close() in
#   on_step: the callback gets a clear error naming the handle, the run fails with it (exit 1, no crash),
#   and the handles close normally after the run;
# - dropping every other reference to the handles inside a callback (cfg.student = nil, the student's
#   tokenizer = nil, a full collection) leaves the run working;
# - gkd.run called from a reward: refused, naming the run in progress; the outer run fails cleanly;
# - a student whose vocabulary is larger than its tokenizer's: refused at configuration time naming both
#   sizes, with no row in the run store.
set -uo pipefail
bin="${GKD_BIN:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=1
fails=0
check() {
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what" >&2; fails=$((fails + 1)); fi
}

cat >case.lua <<'LUA'
local mode = arg[1]
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed, vocab)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed, vocab = vocab}
end
local teacher, student = model(7), model(1)
local cfg = {name = mode, task = task, teacher = teacher, student = student, steps = 4, batch = 4, max_new_tokens = 4,
  max_prompt = 64, eval = {examples = 2}, checkpoint = false, quiet = true, group_size = 2, alpha = 0.5, reward = "length"}
if mode == "student" then cfg.on_step = function(m) if m.step == 2 then student:close() end end end
if mode == "teacher" then cfg.reward = function(s) teacher:close() return 0 end end
if mode == "tokenizer" then cfg.eval.metrics = {mine = function(output, example) tok:close() return 0 end} end
if mode == "task" then cfg.on_step = function(m) task:close() end end
if mode == "nested" then
  cfg.reward = function(s) gkd.run{name = "inner", task = task, teacher = teacher, student = model(3), steps = 1} return 0 end
end
if mode == "drop" then
  cfg.on_step = function(m)
    if cfg.student then cfg.student.tokenizer = nil end
    cfg.student, cfg.teacher, cfg.task = nil, nil, nil
    collectgarbage() collectgarbage()
  end
  teacher, student, task, tok = nil, nil, nil, nil
end
if mode == "vocab" then cfg.teacher, cfg.student = model(7, 400), model(1, 400) end
local ok, err = pcall(gkd.run, cfg)
print(ok and "run finished" or ("run failed: " .. tostring(err)))
if mode ~= "drop" then
  -- after the run the handles close normally (twice is harmless)
  for _, h in ipairs({student, teacher, tok, task}) do h:close() h:close() end
  print("closed after the run")
end
os.exit(ok and 0 or 1)
LUA

expect() { # MODE PATTERN
  timeout 120 "$bin" run case.lua "$1" >out-$1.txt 2>&1; local rc=$?
  check "$1: the run fails cleanly with exit 1 (got $rc)" test "$rc" -eq 1
  check "$1: $2" grep -qF "$2" out-$1.txt
  check "$1: the handles close after the run" grep -q "closed after the run" out-$1.txt
}
expect student "on_step: case.lua:10: gkd.Model: cannot close a model that a running gkd.run uses"
expect teacher "reward 'reward': Lua function: case.lua:11: gkd.Model: cannot close a model that a running gkd.run uses"
expect tokenizer "metric 'mine': case.lua:12: gkd.Tokenizer: cannot close a tokenizer that a running gkd.run uses"
expect task "on_step: case.lua:13: gkd.Task: cannot close a task that a running gkd.run uses"
expect nested "run 'nested' is in progress and this gkd.run was called from one of its callbacks; runs cannot nest"
timeout 120 "$bin" run case.lua drop >out-drop.txt 2>&1; rc=$?
check "drop: the run finishes although its handles lost every other reference (exit $rc)" test "$rc" -eq 0
expect vocab "the student's vocabulary (400) differs from the tokenizer's (300)"
"$bin" run -e '
  local s = assert(gkd.store.open("runs.db", {readonly = true}))
  os.exit(s:run_find("vocab") == nil and s:run_find("inner") == nil and s:run_find("nested").status == "failed" and 0 or 1)'
check "vocab and nested: no row for the refused runs, the outer one failed" test $? -eq 0

[ "$fails" -eq 0 ] || for f in out-*.txt; do echo "--- $f"; head -5 "$f"; done
[ "$fails" -eq 0 ]
