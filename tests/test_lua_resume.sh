#!/usr/bin/env bash
# ctest-labels: cpu
# Stopping and resuming a run from Lua: SIGINT stops `gkd run` at the next step with a checkpoint and the
# run marked interrupted (exit status 3, GKD_LUA_EXIT_INTERRUPTED); `gkd resume RUN` runs the script again and the run continues in its own row
# from that checkpoint, ending with exactly the numbers of a run that was never stopped.
set -uo pipefail
bin="${GKD_BIN:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=1
fails=0
pass=0
check() {
  local what="$1"; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAILED: $what" >&2; fails=$((fails + 1)); fi
}

cat >long.lua <<'LUA'
local steps = tonumber(arg[1])
local task = assert(gkd.task.summarize{max_examples = 40})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 2, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local r = gkd.run{name = "long", task = task, teacher = model(7), student = model(1), steps = steps,
  batch = 4, max_new_tokens = 8, max_prompt = 64, lambda = 0.5, divergence = gkd.jsd(0.5),
  eval = {examples = 4}, checkpoint = {every = 10}, quiet = true}
local f = assert(io.open("final.txt", "w"))
f:write(string.format("%.17g %.17g %d\n", r.loss, r.eval.ce_loss, r.step))
f:close()
LUA

mkdir straight stopped
(cd straight && "$bin" run ../long.lua 300 2>err.txt); rc=$?
check "the uninterrupted run finishes" test "$rc" -eq 0

cd stopped
"$bin" run ../long.lua 300 2>err.txt &
pid=$!
for _ in $(seq 1 200); do
  [ -d checkpoints/long ] && [ -n "$(ls checkpoints/long 2>/dev/null | grep -v tmp)" ] && break
  sleep 0.05
done
kill -INT "$pid"
wait "$pid"; rc=$?
check "an interrupted run exits 3 (got $rc)" test "$rc" -eq 3
check "it says how to continue" grep -q "continue with: gkd resume 'long'" err.txt
"$bin" run -e '
  local s = assert(gkd.store.open("runs.db"))
  local r = s:run_find("long")
  local step = s:checkpoint_latest(r.id)
  print(r.status, r.last_step, step)
  os.exit((r.status == "interrupted" and step == r.last_step and r.last_step < 300) and 0 or 1)' >state.txt
check "marked interrupted with a checkpoint at its last step: $(cat state.txt)" test $? -eq 0
"$bin" resume long 2>resume.txt; rc=$?
check "gkd resume exits 0 (got $rc)" test "$rc" -eq 0
check "it continued from the checkpoint" grep -q "long: continuing from step" resume.txt
"$bin" run -e '
  local s = assert(gkd.store.open("runs.db"))
  local ok = #s:query("SELECT id FROM runs") == 1 and s:run_find("long").status == "finished"
  ok = ok and #s:query("SELECT step FROM metrics WHERE name = ?", "loss") == 300
  os.exit(ok and 0 or 1)'
check "one row, finished, one loss per step" test $? -eq 0
cd ..
check "resumed run ends exactly like the uninterrupted one ($(cat stopped/final.txt) vs $(cat straight/final.txt))" \
  cmp -s straight/final.txt stopped/final.txt
"$bin" resume long --db stopped/runs.db >again.txt 2>&1
check "resuming a finished run does nothing" grep -q "already finished" again.txt

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
