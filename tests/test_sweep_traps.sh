#!/usr/bin/env bash
# ctest-labels: cpu
# The sweep traps of issue 14 that gave wrong or misleading results with no error:
# 1. points that fail their config checks are stored as failed runs, counted as failed, and the sweep
#    exits non-zero (it printed "0 failed, 6 not finished" and exited 0); gkd run on a sweep file is
#    an error that names gkd sweep (it did nothing and exited 0).
. "$(dirname "$0")/lib.sh"

# status_of DB: "name status" per run, by name
status_of() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, r in ipairs(s:query("SELECT name, status, error FROM runs ORDER BY name")) do
      print(r.name, r.status, (r.error or ""):match("^[^\n]*"))
    end' "$1" 2>&1
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

echo "$fails failed"
[ "$fails" -eq 0 ]
