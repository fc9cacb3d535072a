#!/usr/bin/env bash
# ctest-labels: cpu
# Scripts that never stop, and stopping runs (issue 13). Every trigger is deterministic: callbacks loop or
# send the signal to their own process at a known step.
# - A reward that loops forever is stopped by callback_limit.instructions (or --callback-instructions, or
#   callback_limit.seconds) with an error naming the reward; the run is failed, its earlier steps kept.
# - SIGTERM in mid-run: the run stops after the step, saves a checkpoint, is marked interrupted, the
#   command exits 3; gkd resume finishes it with one row per step.
# - A reward stuck in `while true do end` when SIGTERM comes is interrupted (after the 1 s grace): exit 3,
#   run interrupted and resumable from its last checkpoint.
# - A sweep whose worker hangs in its reward stops when the parent alone gets SIGTERM (forwarded).
# - Checkpoint rotation after a kill and a resume leaves `keep` folders (an earlier process's included).
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
# state RUN [DB]: "<status> <last_step> <loss rows> <distinct loss steps> <latest checkpoint step>"
state() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[2], {readonly = true}))
    local r = s:run_find(arg[1])
    if not r then print("missing") return end
    local q = s:query("SELECT COUNT(*) AS n, COUNT(DISTINCT step) AS d FROM metrics WHERE run_id = ? AND name = ?", r.id, "loss")[1]
    print(table.concat({r.status, r.last_step, q.n, q.d, tostring(s:checkpoint_latest(r.id))}, " "))' "$1" "${2:-runs.db}" 2>&1
}

cat >common.lua <<'LUA'
task = assert(gkd.task.summarize{max_examples = 30})
tok = gkd.tokenizer.train{task = task, vocab = 300}
function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
function config(name, extra)
  local cfg = {name = name, task = task, teacher = model(7), student = model(1), steps = 12, batch = 4,
    group_size = 2, alpha = 0.5, reward = "length", max_new_tokens = 4, max_prompt = 64,
    eval = {examples = 2}, checkpoint = {every = 2}, quiet = true}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end
-- a file that exists once the first process got there (so `gkd resume` does not do it again)
function once(path)
  local f = io.open(path, "r")
  if f then f:close() return false end
  f = assert(io.open(path, "w")); f:close()
  return true
end
LUA

# 1. a reward looping forever, stopped by an instruction limit (from the script, then from the command line)
cat >loop.lua <<'LUA'
dofile("common.lua")
local calls = 0
local function spin(sample)
  calls = calls + 1
  if calls > 8 then while true do end end -- steps 1-2 (4 samples each) go through
  return 0.5
end
local limit = arg[1] == "script" and {instructions = 1000000} or arg[1] == "seconds" and {seconds = 0.5} or nil
gkd.run(config("loop-" .. arg[1], {reward = spin, callback_limit = limit}))
LUA
for how in script cli seconds; do
  flags=()
  [ "$how" = cli ] && flags=(--callback-instructions 1000000)
  timeout 120 "$bin" run "${flags[@]}" loop.lua "$how" 2>err-loop-$how.txt; rc=$?
  check "loop ($how): the run stops with exit 1 (got $rc)" test "$rc" -eq 1
  check "loop ($how): the message names the reward" grep -q "reward 'reward'" err-loop-$how.txt
  if [ "$how" = seconds ]; then
    check "loop ($how): and the time limit" grep -q "time limit exceeded: more than 0.5 s in one call (callback_limit.seconds)" err-loop-$how.txt
  else
    check "loop ($how): and the instruction limit" grep -q "instruction limit exceeded: more than 1000000 Lua instructions" err-loop-$how.txt
  fi
  st="$(state loop-$how)"
  check "loop ($how): failed, steps 1-2 kept ($st)" test "$(echo $st | cut -d' ' -f1,3)" = "failed 2"
done

# 2. SIGTERM between two steps: checkpoint, interrupted, exit 3; resume finishes
cat >term.lua <<'LUA'
dofile("common.lua")
gkd.run(config("term", {on_step = function(m)
  if m.step == 5 then gkd.sys.kill(gkd.sys.pid(), "TERM") end
end}))
LUA
timeout 120 "$bin" run term.lua 2>err-term.txt; rc=$?
check "SIGTERM: exit 3 (got $rc)" test "$rc" -eq 3
check "SIGTERM: says how to continue" grep -q "interrupted by SIGTERM (checkpoint saved at step 5); continue with: gkd resume 'term'" err-term.txt
st="$(state term)"
check "SIGTERM: interrupted at step 5 with its checkpoint ($st)" test "$st" = "interrupted 5 5 5 5"
timeout 120 "$bin" resume term 2>err-term-resume.txt; rc=$?
check "SIGTERM: gkd resume exits 0 (got $rc)" test "$rc" -eq 0
check "SIGTERM: it continued from step 5" grep -q "term: continuing from step 5" err-term-resume.txt
st="$(state term)"
check "SIGTERM: finished, one loss per step ($st)" test "$st" = "finished 12 12 12 12"

# 3. a reward stuck in a loop when SIGTERM comes: interrupted after the grace period, resumable
cat >stuck.lua <<'LUA'
dofile("common.lua")
local calls = 0
gkd.run(config("stuck", {reward = function(sample)
  calls = calls + 1
  if calls == 13 and once("stuck.once") then -- step 4 (4 samples a step)
    gkd.sys.kill(gkd.sys.pid(), "TERM")
    while true do end
  end
  return 0.5
end}))
LUA
timeout 120 "$bin" run stuck.lua 2>err-stuck.txt; rc=$?
check "stuck: exit 3, not a hang (got $rc)" test "$rc" -eq 3
check "stuck: the reward was interrupted by SIGTERM" grep -q "interrupted by SIGTERM (stopped inside a callback; it continues from its checkpoint at step 2)" err-stuck.txt
st="$(state stuck)"
check "stuck: interrupted, steps 1-3 kept, checkpoint at 2 ($st)" test "$st" = "interrupted 3 3 3 2"
timeout 120 "$bin" resume stuck 2>err-stuck-resume.txt; rc=$?
check "stuck: gkd resume exits 0 (got $rc)" test "$rc" -eq 0
st="$(state stuck)"
check "stuck: finished, one loss per step ($st)" test "$st" = "finished 12 12 12 12"

# 4. a sweep whose worker hangs in its reward: SIGTERM to the parent alone stops it (the grid axis is not
# lambda, which has no effect with a reward)
cat >sweep.lua <<'LUA'
dofile("common.lua")
return {name = "hang", grid = {case = {0}}, seeds = {1}, workers = 2, quiet = true,
  run = function(p)
    local calls = 0
    return config(p.name, {reward = function(sample)
      calls = calls + 1
      if calls == 13 and once("hang.once") then while true do end end -- step 4: the parent is signalled
      return 0.5
    end})
  end}
LUA
"$bin" sweep sweep.lua 2>err-sweep.txt >out-sweep.txt &
pid=$!
for _ in $(seq 1 600); do [ -e hang.once ] && break; sleep 0.1; done
sleep 0.5
kill -TERM "$pid"
for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
  check "sweep: the parent stopped within 60 s of SIGTERM" false
  pkill -KILL -P "$pid"; kill -KILL "$pid"
fi
wait "$pid"; rc=$?
check "sweep: exit 3 (got $rc)" test "$rc" -eq 3
check "sweep: the worker's run was interrupted" grep -q "hang/case=0,seed=1 interrupted" err-sweep.txt
st="$(state 'hang/case=0,seed=1')"
check "sweep: the run is interrupted with a checkpoint at step 2 ($st)" test "$(echo $st | cut -d' ' -f1,5)" = "interrupted 2"
timeout 120 "$bin" sweep sweep.lua >out-sweep2.txt 2>err-sweep2.txt; rc=$?
check "sweep: started again, it finishes (exit $rc)" test "$rc" -eq 0
st="$(state 'hang/case=0,seed=1')"
check "sweep: finished, one loss per step ($st)" test "$st" = "finished 12 12 12 12"

# 5. checkpoint rotation across a kill and a resume: `keep` folders remain
cat >rotate.lua <<'LUA'
dofile("common.lua")
gkd.run(config("rotate", {checkpoint = {every = 2, keep = 2}, on_step = function(m)
  if m.step == 7 and once("rotate.once") then gkd.sys.kill(gkd.sys.pid(), "KILL") end
end}))
LUA
timeout 120 "$bin" run rotate.lua 2>err-rotate.txt; rc=$?
check "rotate: killed at step 7 (exit $rc)" test "$rc" -eq 137
st="$(state rotate)"
check "rotate: left running, checkpoint at step 6 ($st)" test "$(echo $st | cut -d' ' -f1,5)" = "running 6"
timeout 120 "$bin" resume rotate 2>err-rotate-resume.txt; rc=$?
check "rotate: gkd resume exits 0 (got $rc)" test "$rc" -eq 0
left="$(ls checkpoints/rotate | tr '\n' ' ')"
check "rotate: the newest 2 checkpoint folders remain ($left)" test "$left" = "step-00000010 step-00000012 "

[ "$fails" -eq 0 ] || for f in err-*.txt; do echo "--- $f"; tail -5 "$f"; done
[ "$fails" -eq 0 ]
