#!/usr/bin/env bash
# ctest-labels: cpu
# A seconds-scale run of experiments/paper/arith.lua (GKD_SMOKE=1: tiny models, a few steps, 2 seeds) in a
# temporary folder: the data splits are written and disjoint, every method's runs and their evaluation-only
# final runs are finished in the run store, the report is written with every method, and running the script
# again trains nothing (every run is found finished) and reproduces the report.
. "$(dirname "$0")/lib.sh"
export GKD_SMOKE=1 GKD_PAPER_OUT="$tmp/out" OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

"$bin" run "$src/experiments/paper/arith.lua" >run1.log 2>&1
check "first run exits 0 (log: $(tail -5 run1.log))" test $? -eq 0
check "report written" test -s out/report.md

cat >q.lua <<'LUA'
local store = assert(gkd.store.open(arg[1], {readonly = true}))
local function count(sql, ...) return store:query(sql, ...)[1].n end
local bad = 0
local function expect(what, ok) if not ok then print("FAILED: " .. what); bad = bad + 1 end end
local variants = {"sft", "supervised_kd", "seqkd", "imitkd", "gkd-fkl", "gkd-rkl", "gkd-jsd0.1", "gkd-jsd0.5", "gkd-jsd0.9"}
for _, v in ipairs(variants) do
  for _, seed in ipairs({1, 2}) do
    local name = "arith/variant=" .. v .. ",seed=" .. seed
    expect(name .. " finished", count("SELECT count(*) AS n FROM runs WHERE name = ? AND status = 'finished'", name) == 1)
    expect(name .. "/final finished", count("SELECT count(*) AS n FROM runs WHERE name = ? AND status = 'finished'", name .. "/final") == 1)
    expect(name .. "/final has exact", count([[SELECT count(*) AS n FROM evals e JOIN runs r ON r.id = e.run_id
      WHERE r.name = ? AND e.metric = 'exact']], name .. "/final") >= 1)
    expect(name .. " has a validation curve", count([[SELECT count(DISTINCT step) AS n FROM evals e JOIN runs r ON r.id = e.run_id
      WHERE r.name = ? AND e.metric = 'exact']], name) >= 2)
  end
end
expect("lambda 0.5 runs", count("SELECT count(*) AS n FROM runs WHERE name LIKE 'arith-mix/variant=mix0.5-%' AND name NOT LIKE '%/final' AND status = 'finished'") == 2)
for _, n in ipairs({"arith/teacher", "arith/teacher/final", "arith/warm-start", "arith/warm-start-2", "arith/warm-start-2/final"}) do
  expect(n .. " finished", count("SELECT count(*) AS n FROM runs WHERE name = ? AND status = 'finished'", n) == 1)
end
expect("nothing failed", count("SELECT count(*) AS n FROM runs WHERE status <> 'finished'") == 0)
print(count("SELECT count(*) AS n FROM runs"))
os.exit(bad == 0 and 0 or 1)
LUA
out="$("$bin" run q.lua out/runs.db)"
check "store holds every run ($out)" test $? -eq 0
runs1="$(echo "$out" | tail -1)"

# The splits: disjoint keys, every problem in exactly one.
for s in train validation test; do check "split $s written" test -s "out/data/$s.jsonl"; done
dups="$(cat out/data/train.jsonl out/data/validation.jsonl out/data/test.jsonl | sed 's/.*"key":"\([^"]*\)".*/\1/' | sort | uniq -d | wc -l)"
check "splits disjoint ($dups shared keys)" test "$dups" -eq 0

for m in "SFT (continued)" "supervised KD" "SeqKD" "ImitKD" "forward KL" "reverse KL" "JSD(0.1)" "JSD(0.5)" "JSD(0.9)" "mix0.5-" "teacher" "gap closed"; do
  check "report mentions '$m'" grep -qF "$m" out/report.md
done

cp out/report.md report1.md
"$bin" run "$src/experiments/paper/arith.lua" >run2.log 2>&1
check "second run exits 0" test $? -eq 0
out2="$("$bin" run q.lua out/runs.db)"
check "second run trains nothing (runs: $runs1 then $(echo "$out2" | tail -1))" test "$(echo "$out2" | tail -1)" = "$runs1"
check "second run skips every sweep point" grep -q "18 runs, 0 to run, 18 already finished" run2.log

"$bin" run "$src/experiments/paper/report.lua" "$tmp/out/runs.db" again.md >/dev/null 2>&1
check "report.lua writes the report" test -s again.md
# The machine notes grow with every start; the tables must not change.
check "report reproduced" diff <(sed '/^## Time and machine/,$d; /^!\[/d' report1.md) <(sed '/^## Time and machine/,$d; /^!\[/d' again.md)

if [ "$fails" -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "paper arith smoke: ok"
