#!/usr/bin/env bash
# ctest-labels: cpu
# A run killed with SIGKILL at a random moment (no chance to save or mark itself) and continued with
# `gkd resume RUN` ends with a final checkpoint bit-identical to that of an uninterrupted run with the same
# seed, and its metrics have exactly one row per step and metric: no gap, no duplicate. Checkpoint rotation
# (keep = 2 by default) leaves 2 folders, the killed process's older ones included.
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

cat >run.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 40})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 2, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
gkd.run{name = "killed", task = task, teacher = model(7), student = model(1), steps = 600,
  batch = 4, max_new_tokens = 8, max_prompt = 64, lambda = 0.5, divergence = gkd.jsd(0.9),
  eval = {every = 50, examples = 4}, checkpoint = {every = 7}, quiet = true}
LUA

mkdir straight killed
(cd straight && "$bin" run ../run.lua 2>err.txt) || { echo "FAIL: the uninterrupted run"; cat straight/err.txt; exit 1; }

cd killed
"$bin" run ../run.lua 2>err.txt &
pid=$!
# Wait for a first checkpoint, then a random further delay, then SIGKILL.
for _ in $(seq 1 400); do
  [ -n "$(ls checkpoints/killed 2>/dev/null | grep -v tmp)" ] && break
  sleep 0.05
done
# (600 steps: with the float32 divergence rows 200 steps could end inside the delay, 2026-12-03)
sleep "0.$((RANDOM % 40 + 10))"
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
"$bin" run -e '
  local s = assert(gkd.store.open("runs.db"))
  local r = s:run_find("killed")
  print("killed at step " .. tostring(r.last_step) .. ", status " .. r.status)' | tee state.txt
check "the run was killed before its end: $(cat state.txt)" grep -qv "step 600," state.txt
"$bin" resume killed 2>resume.txt
rc=$?
check "gkd resume exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat resume.txt
cd ..
check "the final checkpoints (weights) are bit-identical" cmp straight/checkpoints/killed/step-00000600/model.safetensors killed/checkpoints/killed/step-00000600/model.safetensors
"$bin" run -e '
  local s = assert(gkd.store.open("killed/runs.db"))
  local r = s:run_find("killed")
  local rows = s:query("SELECT name, COUNT(*) AS n, COUNT(DISTINCT step) AS d, MIN(step) AS lo, MAX(step) AS hi FROM metrics WHERE run_id = ? GROUP BY name", r.id)
  local bad = 0
  for _, row in ipairs(rows) do
    if row.n ~= 600 or row.d ~= 600 or row.lo ~= 1 or row.hi ~= 600 then
      print("metric " .. row.name .. ": " .. row.n .. " rows, " .. row.d .. " steps, " .. row.lo .. ".." .. row.hi)
      bad = bad + 1
    end
  end
  print(#rows .. " metrics checked, status " .. r.status)
  os.exit((bad == 0 and #rows > 5 and r.status == "finished") and 0 or 1)' >metrics.txt
check "one row per step 1..600 for every metric: $(tail -1 metrics.txt)" test $? -eq 0
left="$(ls killed/checkpoints/killed | tr '\n' ' ')"
check "rotation left the last 2 checkpoints only ($left)" test "$left" = "step-00000595 step-00000600 "
check "the final optimizer states are bit-identical" cmp straight/checkpoints/killed/step-00000600/state.safetensors killed/checkpoints/killed/step-00000600/state.safetensors
[ "$fails" -eq 0 ]
