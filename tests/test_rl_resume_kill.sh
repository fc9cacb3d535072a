#!/usr/bin/env bash
# ctest-labels: cpu
# GKD + RL with the moving-average baseline, killed with SIGKILL after its first checkpoint and continued
# with `gkd resume`, ends bit-identical to an uninterrupted run: the baselines' state travels in the
# checkpoint (state.safetensors, state version 2) through the Lua run loop. Before issue 13's fix the
# baseline restarted from nothing on resume and the final weights differed. The run also samples at
# temperature 0.7 and normalises per token, the settings the fix changed.
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
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
gkd.run{name = "rl", task = task, teacher = model(7), student = model(1), steps = 300, batch = 4,
  group_size = 2, alpha = 0.5, reward = "length", max_new_tokens = 8, max_prompt = 64, temperature = 0.7,
  norm = "token", baseline = "moving_average", baseline_decay = 0.5, checkpoint = {every = 3},
  eval = {examples = 2}, quiet = true}
LUA

mkdir straight killed
(cd straight && "$bin" run ../run.lua 2>err.txt) || { echo "FAIL: the uninterrupted run"; cat straight/err.txt; exit 1; }

cd killed
"$bin" run ../run.lua 2>err.txt &
pid=$!
for _ in $(seq 1 400); do
  [ -n "$(ls checkpoints/rl 2>/dev/null | grep -v tmp)" ] && break
  sleep 0.02
done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
"$bin" run -e '
  local s = assert(gkd.store.open("runs.db"))
  local r = s:run_find("rl")
  print("killed at step " .. tostring(r.last_step) .. ", status " .. r.status)' | tee state.txt
check "the run was killed before its end: $(cat state.txt)" grep -qv "step 300," state.txt
"$bin" resume rl 2>resume.txt
rc=$?
check "gkd resume exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat resume.txt
cd ..
check "the final weights are bit-identical" cmp straight/checkpoints/rl/step-00000300/model.safetensors killed/checkpoints/rl/step-00000300/model.safetensors
check "the final optimizer and baseline states are bit-identical" cmp straight/checkpoints/rl/step-00000300/state.safetensors killed/checkpoints/rl/step-00000300/state.safetensors
[ "$fails" -eq 0 ]
