#!/usr/bin/env bash
# ctest-labels: cpu
# Seconds-scale runs of experiments/paper/debdesc.lua and ddtp-de.lua (GKD_SMOKE=1: tiny models, a few steps,
# 2 seeds) on the test fixtures (compressed with xz into a GKD_DATA_DIR): the splits are written and disjoint,
# every method's runs and their final runs are finished, the debdesc alpha curve runs, the reports name every
# method, a run killed mid-way (SIGTERM) is finished by running the script again without a duplicate, and a
# third run trains nothing and reproduces the report.
set -uo pipefail
bin="${GKD_BIN:-}"
src="${GKD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
command -v xz >/dev/null || { echo "SKIPPED: no xz"; exit 77; }
tmp="$(mktemp -d)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
cd "$tmp"
fails=0
check() {
  local what="$1"; shift
  if "$@"; then :; else echo "FAILED: $what" >&2; fails=$((fails + 1)); fi
}
mkdir data
xz -c "$src/tests/fixtures/debdesc-sample.jsonl" >data/debdesc.jsonl.xz
xz -c "$src/tests/fixtures/ddtp-en-de-sample.jsonl" >data/ddtp-en-de.jsonl.xz
export GKD_SMOKE=1 GKD_DATA_DIR="$tmp/data" OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

cat >q.lua <<'LUA'
local store = assert(gkd.store.open(arg[1], {readonly = true}))
local task = arg[2]
local function count(sql, ...) return store:query(sql, ...)[1].n end
local bad = 0
local function expect(what, ok) if not ok then print("FAILED: " .. what); bad = bad + 1 end end
local variants = {"sft", "supervised_kd", "seqkd", "imitkd", "gkd-fkl", "gkd-rkl", "gkd-jsd0.1", "gkd-jsd0.5", "gkd-jsd0.9"}
local names = {}
for _, v in ipairs(variants) do
  for _, seed in ipairs({1, 2}) do names[#names + 1] = task .. "/variant=" .. v .. ",seed=" .. seed end
end
if task == "debdesc" then
  for _, a in ipairs({"0", "1"}) do
    for _, seed in ipairs({1, 2}) do names[#names + 1] = "debdesc-alpha/alpha=" .. a .. ",seed=" .. seed end
  end
end
for _, n in ipairs({task .. "/teacher-2", task .. "/warm-start"}) do names[#names + 1] = n end
expect(task .. "/teacher (the first teacher run) finished",
  count("SELECT count(*) AS n FROM runs WHERE name = ? AND status = 'finished'", task .. "/teacher") == 1)
for _, name in ipairs(names) do
  expect(name .. " finished once", count("SELECT count(*) AS n FROM runs WHERE name = ? AND status = 'finished'", name) == 1)
  expect(name .. "/final finished once", count("SELECT count(*) AS n FROM runs WHERE name = ? AND status = 'finished'", name .. "/final") == 1)
end
local metric = task == "debdesc" and "rougeL" or "bleu"
expect("final runs hold " .. metric, count([[SELECT count(*) AS n FROM evals e JOIN runs r ON r.id = e.run_id
  WHERE r.name LIKE '%/final' AND e.metric = ?]], metric) >= #names)
-- (A student whose samples are all empty has no reverse KL by position; self-BLEU is always there.)
expect("diagnostics (self-BLEU on >= 2 prompts) of every final model", count([[SELECT count(*) AS n FROM runs r
  WHERE r.name LIKE '%/final' AND r.status = 'finished'
  AND EXISTS (SELECT 1 FROM evals e WHERE e.run_id = r.id AND e.split = 'diagnostic' AND e.metric = 'self_bleu')
  AND EXISTS (SELECT 1 FROM evals e WHERE e.run_id = r.id AND e.split = 'diagnostic' AND e.metric = 'diag_prompts'
    AND e.value >= 2)]])
  == count("SELECT count(*) AS n FROM runs WHERE name LIKE '%/final'"))
expect("reverse KL by position of the teacher", count([[SELECT count(*) AS n FROM evals e JOIN runs r ON r.id = e.run_id
  WHERE r.name = ? AND e.split = 'diagnostic' AND e.metric = 'rkl_pos1']], task .. "/teacher-2/final") == 1)
expect("lambda 0.5 runs", count("SELECT count(*) AS n FROM runs WHERE name LIKE ? AND name NOT LIKE '%/final' AND status = 'finished'", task .. "-mix/variant=mix0.5-%") == 2)
print(count("SELECT count(*) AS n FROM runs"))
os.exit(bad == 0 and 0 or 1)
LUA

for task in debdesc ddtp-de; do
  export GKD_PAPER_OUT="$tmp/out-$task"
  # First run: killed with SIGTERM once the sweep has started (a clean stop, exit 3), then run again.
  "$bin" run "$src/experiments/paper/$task.lua" >"$task-run1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    n="$(sqlite3 "$GKD_PAPER_OUT/runs.db" "SELECT count(*) FROM runs WHERE sweep_id IS NOT NULL AND status = 'finished'" 2>/dev/null || echo 0)"
    [ "${n:-0}" -ge 3 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  check "$task: the run killed mid-sweep stops cleanly with exit 3 (rc $rc; log: $(tail -3 "$task-run1.log"))" test "$rc" -eq 3
  "$bin" run "$src/experiments/paper/$task.lua" >"$task-run2.log" 2>&1
  check "$task: the second run exits 0 (log: $(tail -5 "$task-run2.log"))" test $? -eq 0
  check "$task: report written" test -s "$GKD_PAPER_OUT/report.md"
  out="$("$bin" run q.lua "$GKD_PAPER_OUT/runs.db" "$task")"
  check "$task: store holds every run once ($out)" test $? -eq 0
  runs1="$(echo "$out" | tail -1)"
  for s in train validation test; do check "$task: split $s written" test -s "$GKD_PAPER_OUT/data/$s.jsonl"; done
  # A key (debdesc: the package's stem) may hold several rows, all in one split.
  dups="$(for s in train validation test; do sed 's/.*"key":"\([^"]*\)".*/\1/' "$GKD_PAPER_OUT/data/$s.jsonl" | sort -u; done | sort | uniq -d | wc -l)"
  check "$task: splits disjoint ($dups shared keys)" test "$dups" -eq 0
  for m in "SFT (continued)" "supervised KD" "SeqKD" "ImitKD" "forward KL" "reverse KL" "JSD(0.1)" "JSD(0.5)" "JSD(0.9)" "mix0.5-" "teacher" "gap closed" "exposure-bias gap" "self-BLEU"; do
    check "$task: report mentions '$m'" grep -qF "$m" "$GKD_PAPER_OUT/report.md"
  done
  cp "$GKD_PAPER_OUT/report.md" "$task-report1.md"
  "$bin" run "$src/experiments/paper/$task.lua" >"$task-run3.log" 2>&1
  check "$task: third run exits 0" test $? -eq 0
  out3="$("$bin" run q.lua "$GKD_PAPER_OUT/runs.db" "$task")"
  check "$task: third run trains nothing (runs: $runs1 then $(echo "$out3" | tail -1))" test "$(echo "$out3" | tail -1)" = "$runs1"
  "$bin" run "$src/experiments/paper/report.lua" "$task" "$GKD_PAPER_OUT/runs.db" again.md >/dev/null 2>&1
  check "$task: report.lua writes the report" test -s again.md
  check "$task: report reproduced" diff <(sed '/^## Time and machine/,$d; /^!\[/d' "$task-report1.md") <(sed '/^## Time and machine/,$d; /^!\[/d' again.md)
done
# Saved models: report.lua save copies the teacher and the warm start; a fresh run loads them (GKD_PAPER_SAVED)
# instead of training, and its teacher scores exactly as the trained one did.
GKD_PAPER_RESULTS="$tmp/results" "$bin" run "$src/experiments/paper/report.lua" save debdesc "$tmp/out-debdesc" >save.log 2>&1
check "report.lua save (log: $(tail -3 save.log))" test -s "$tmp/results/debdesc/teacher.safetensors" -a -s "$tmp/results/debdesc/warm-start.safetensors" -a -s "$tmp/results/debdesc/tokenizer.json"
GKD_PAPER_OUT="$tmp/out-saved" GKD_PAPER_SAVED="$tmp/results/debdesc" GKD_SEEDS=1 "$bin" run "$src/experiments/paper/debdesc.lua" >saved.log 2>&1
check "run from saved models exits 0 (log: $(tail -3 saved.log))" test $? -eq 0
q1="SELECT e.metric || '=' || e.value FROM evals e JOIN runs r ON r.id = e.run_id WHERE r.name = 'debdesc/teacher-2/final' AND e.split = 'held_out' ORDER BY e.metric"
check "saved teacher scores as the trained one" test "$(sqlite3 "$tmp/out-saved/runs.db" "$q1")" = "$(sqlite3 "$tmp/out-debdesc/runs.db" "$q1")" -a -n "$(sqlite3 "$tmp/out-debdesc/runs.db" "$q1")"
check "nothing trained for the saved models" test "$(sqlite3 "$tmp/out-saved/runs.db" "SELECT count(*) FROM runs WHERE name IN ('debdesc/teacher', 'debdesc/teacher-2', 'debdesc/warm-start')")" = 0
# report.lua all: the pages and the summary block of docs/results.md from the saved stores (here in $tmp).
mkdir -p docs
printf 'before\n<!-- paper-summary:begin (generated) -->\nstale\n<!-- paper-summary:end -->\nafter\n' >docs/results.md
GKD_PAPER_RESULTS="$tmp/results" "$bin" run "$src/experiments/paper/report.lua" all >all.log 2>&1
check "report.lua all exits 0 (log: $(tail -3 all.log))" test $? -eq 0
check "report.lua all writes the debdesc page" test -s docs/paper-results-debdesc.md
check "summary block replaced" test "$(grep -c stale docs/results.md)" = 0 -a "$(grep -c '^| debdesc | rougeL |' docs/results.md)" = 1
check "text around the block kept" test "$(head -1 docs/results.md)" = before -a "$(tail -1 docs/results.md)" = after
check "debdesc: alpha curve in the report" grep -qF "alpha curve" "$tmp/out-debdesc/report.md"

if [ "$fails" -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "paper text smoke: ok"
