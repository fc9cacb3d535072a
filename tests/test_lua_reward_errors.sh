#!/usr/bin/env bash
# ctest-labels: cpu
# A Lua reward that raises an error, returns NaN or returns a non-number stops the run with a message
# naming the reward (and, for an error, the Lua traceback); the run is marked failed and the metrics of
# the steps already done stay in the database.
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

cat >reward.lua <<'LUA'
local mode = arg[1]
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local calls = 0
local function my_reward(sample)
  calls = calls + 1
  if calls <= 8 then return 0.5 end -- the first two steps (batch 4) go through
  if mode == "error" then error("the reward model broke") end
  if mode == "nan" then return 0 / 0 end
  return "high"
end
gkd.run{name = "reward-" .. mode, task = task, teacher = model(7), student = model(1), steps = 5, batch = 4,
  group_size = 2, alpha = 0.5, reward = my_reward, max_new_tokens = 4, max_prompt = 64,
  eval = {examples = 2}, quiet = true}
LUA

for mode in error nan string; do
  "$bin" run reward.lua "$mode" 2>err-$mode.txt; rc=$?
  check "$mode: the run stops with exit 1 (got $rc)" test "$rc" -eq 1
  check "$mode: the message names the reward" grep -q "reward 'reward'" err-$mode.txt
  "$bin" run -e '
    local s = assert(gkd.store.open("runs.db"))
    local r = s:run_find("reward-'"$mode"'")
    local n = #s:query("SELECT step FROM metrics WHERE run_id = ? AND name = ?", r.id, "loss")
    print(r.status, n)
    os.exit((r.status == "failed" and n == 2) and 0 or 1)' >state-$mode.txt
  check "$mode: marked failed, steps 1-2 kept ($(cat state-$mode.txt))" test $? -eq 0
done
check "error: the Lua traceback is shown" grep -q "stack traceback" err-error.txt
check "error: its message" grep -q "the reward model broke" err-error.txt
check "nan: says NaN" grep -qi "nan" err-nan.txt
check "string: says what it got" grep -qiE "string|number expected|not a number" err-string.txt
[ "$fails" -eq 0 ] || { for m in error nan string; do echo "--- $m"; cat err-$m.txt; done; }
[ "$fails" -eq 0 ]
