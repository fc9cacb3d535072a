#!/usr/bin/env bash
# ctest-labels: cpu
# A real 2 x 3 x 3-seed sweep (lambda {0, 1} x beta {0.1, 0.5, 0.9} x seeds {1, 2, 3}, tiny models, two
# steps), reported with no options: 6 settings of 3 runs each with mean +- std, labelled by lambda and
# beta once each (the stored config also holds resolved.lambda, resolved.beta, the divergence's text and
# a per-seed student.init_seed). `--ignore` takes nested keys. The tidy CSV has the hyperparameters as
# columns, and the pandas recipe of docs/reports.md, run on it, gives each setting's mean over its
# seeds of held-out values only (forward_kl is also a training metric; skipped without pandas).
# `--html FILE` prints one line saying where, no tables. `gkd runs` shows a run that has not started as
# 0/N steps.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1

cat >sweep.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 20})
local tok = gkd.tokenizer.train{task = task, vocab = 260}
local tiny = {layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 64}
local function seeded(seed) local m = gkd.util.copy(tiny); m.seed = seed; return gkd.model.new(m) end
local teacher = seeded(3)
local grid = {lambda = {0, 1}, beta = {0.1, 0.5, 0.9}}
return {name = "g", grid = grid, seeds = {1, 2, 3}, workers = 1, quiet = true, run = function(p)
  return {task = task, teacher = teacher, student = seeded(p.seed),
    divergence = gkd.jsd(p.beta), lambda = p.lambda, steps = 2, batch = 2, max_new_tokens = 4,
    max_prompt = 40, eval = {examples = 2, metrics = {"rougeL"}}, checkpoint = false}
end}
LUA
"$bin" sweep sweep.lua --db runs.db >sweep.out 2>sweep.err
check "the sweep ran (rc $?)" grep -q "18 finished" sweep.out

# the Settings table: the lines between its title and the next blank line, header and rule dropped
settings() { sed -n '/^Settings/,/^$/p' "$1" | sed '1,3d;/^$/d'; }

"$bin" report runs.db >report.txt 2>report.err; rc=$?
check "gkd report exits 0 (got $rc)" test "$rc" -eq 0
settings report.txt >settings.txt
check "6 settings" test "$(wc -l <settings.txt)" -eq 6
check "3 runs each" test "$(awk '$4 == 3' settings.txt | wc -l)" -eq 6
check "mean +- std in every row" test "$(grep -c ' +- ' settings.txt)" -eq 6
for l in 0 1; do for b in 0.1 0.5 0.9; do
  check "setting beta=$b lambda=$l, labelled once each" grep -q "^g  *beta=$b lambda=$l  " settings.txt
done; done
check "no resolved.* or duplicate in the labels" test "$(grep -c 'resolved\.\|divergence=\|init_seed' report.txt)" -eq 0

# --ignore takes nested keys: pooling over beta (its copies: beta, resolved.beta, the divergence's text)
"$bin" report runs.db --ignore 'beta,resolved.beta,divergence' >pooled.txt 2>&1
settings pooled.txt >pooled_settings.txt
check "--ignore with a dotted key: 2 settings of 9 runs" test "$(awk '$3 == 9' pooled_settings.txt | wc -l)" -eq 2
"$bin" report runs.db --ignore '*.beta,divergence' >star.txt 2>&1
check "--ignore '*.beta' ignores beta at any depth" cmp -s <(settings star.txt) pooled_settings.txt

"$bin" report runs.db --ignore 'lamda' >typo.txt 2>&1; rc=$?
check "--ignore with a key no config has exits 2 (got $rc)" test "$rc" -eq 2
check "and names the key" grep -q "ignore key 'lamda': no selected run's config has it" typo.txt

# the tidy CSV: hyperparameter columns beta and lambda
"$bin" report runs.db --csv runs.csv >csv.out 2>&1
check "CSV header" test "$(head -1 runs.csv)" = "run_id,run,sweep,setting,seed,beta,lambda,split,step,metric,value"
check "--csv FILE prints one line saying where" test "$(cat csv.out)" = "gkd report: wrote runs.csv ($(($(wc -l <runs.csv) - 1)) rows)"
if python3 -c 'import pandas' 2>/dev/null; then
  # the recipe exactly as docs/reports.md has it, then its table checked against the store
  sed -n '/^```python$/,/^```$/p' "$src/docs/reports.md" | sed '1d;$d' >recipe.py
  check "the docs hold the recipe" test -s recipe.py
  cat >>recipe.py <<'PY'
import json, sqlite3, statistics, sys
db = sqlite3.connect("runs.db")
want = {}
for cfg, fwd, rouge in db.execute(
        "SELECT r.config, (SELECT value FROM evals e WHERE e.run_id = r.id AND e.split = 'held_out' AND "
        "e.metric = 'forward_kl' ORDER BY step DESC LIMIT 1), (SELECT value FROM evals e WHERE "
        "e.run_id = r.id AND e.split = 'held_out' AND e.metric = 'rougeL' ORDER BY step DESC LIMIT 1) "
        "FROM runs r WHERE r.status = 'finished'"):
    c = json.loads(cfg)
    want.setdefault((c["lambda"], c["beta"]), []).append((fwd, rouge))
bad = len(table) != 6
for key, vals in want.items():
    for i, metric in enumerate(["forward_kl", "rougeL"]):
        xs = [v[i] for v in vals]
        got = table.loc[key]
        if got[("count", metric)] != 3 or abs(got[("mean", metric)] - statistics.mean(xs)) > 1e-12 * max(1, abs(statistics.mean(xs))):
            print("setting", key, metric, "recipe", got[("mean", metric)], got[("count", metric)], "store", xs)
            bad = True
sys.exit(1 if bad else 0)
PY
  python3 recipe.py >recipe.out 2>&1; rc=$?
  check "the pandas recipe groups held-out values by setting ($(tail -3 recipe.out))" test "$rc" -eq 0
else
  echo "pandas is not installed: the recipe is not run"
fi

# --html FILE: the file, and one line on stdout saying where (the tables are not printed)
"$bin" report runs.db --html report.html >html.out 2>html.err
check "--html writes the file" test -s report.html
check "--html prints one line saying where" test "$(cat html.out)" = "gkd report: wrote report.html (18 runs, 6 settings)"
check "--html prints nothing else" test ! -s html.err

# a run that has not started: 0/N steps, not -1/N
"$bin" run -e 'local s = assert(gkd.store.open("runs.db"))
  s:run_begin("fresh", {config = "{\"steps\": 3}"}); s:close()'
"$bin" runs runs.db >runs.txt 2>&1
check "a fresh run shows 0/3 steps" grep -q '^ *19  fresh .* 0/3 ' runs.txt
check "no negative step count" test "$(grep -c -- '-1/' runs.txt)" -eq 0
[ "$fails" -eq 0 ] || { cat report.txt runs.txt >&2; exit 1; }
echo "ok"
