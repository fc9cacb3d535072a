#!/usr/bin/env bash
# ctest-labels: cpu
# gkd merge (core/store/store_merge.c): per-point run stores, as Slurm array tasks write them
# (gkd sweep --point I --db points/I.db), gathered into one.
# 1. every row a run owns comes across; merging again leaves every row of the target as it was (ids too).
# 2. a point merged while it runs is updated in place (same id) when merged after it finished.
# 3. a run stopped by SIGTERM and continued (its rows after the checkpoint truncated and written again) is
#    brought up to date: the target's rows equal the point store's, and its earlier samples keep their ids.
# 4. a file that is not a gkd store (garbage, a foreign SQLite database) is an error naming it, with a
#    non-zero exit, and the target is unchanged; an empty file (a task that has not started) is skipped.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cat >sweep.lua <<'LUA'
local steps = tonumber(arg[1]) or 6
local task = assert(gkd.task.summarize{max_examples = 24})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local teacher = model(7)
return {
  name = "mg", grid = {beta = {0.1, 0.9}}, seeds = {1}, quiet = true,
  run = function(p)
    return {
      task = task, teacher = teacher, student = model(p.seed), divergence = gkd.jsd(p.beta), lambda = 1,
      steps = steps, batch = 2, max_new_tokens = 4, max_prompt = 64,
      eval = {every = 3, examples = 2, metrics = {"rougeL"}}, checkpoint = {every = 5},
    }
  end,
}
LUA

# rows_of DB NAME: the run's rows without ids (sample ids in a second file when given)
rows_of() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    local r = s:query("SELECT id, status, uuid, config, error FROM runs WHERE name = ?", arg[2])[1]
    print(r.status, r.uuid, r.config, r.error)
    for _, m in ipairs(s:query("SELECT name, step, quote(value) AS v FROM metrics WHERE run_id = ? ORDER BY name, step", r.id)) do print("m", m.name, m.step, m.v) end
    for _, e in ipairs(s:query("SELECT split, metric, step, quote(value) AS v FROM evals WHERE run_id = ? ORDER BY 1, 2, 3", r.id)) do print("e", e.split, e.metric, e.step, e.v) end
    for _, x in ipairs(s:query("SELECT step, split, prompt, output, quote(reward) AS rw, n_tokens, hex(student_logprobs) AS a, hex(teacher_logprobs) AS b FROM samples WHERE run_id = ? ORDER BY id", r.id)) do
      print("s", x.step, x.split, x.prompt, x.output, x.rw, x.n_tokens, x.a, x.b)
    end
    for _, c in ipairs(s:query("SELECT step, path, hash, created_at FROM checkpoints WHERE run_id = ? ORDER BY step", r.id)) do print("c", c.step, c.path, c.hash, c.created_at) end' "$1" "$2"
}
# one DB SQL [ARGS]: the first column of the first row
one() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    local r = s:query(arg[2], table.unpack(arg, 3))[1]
    local _, v = next(r or {})
    print(v)' "$@"
}
state_of() { # DB: "status checkpoints" of its only run, "none" before there is one
  "$bin" run -e '
    local s = gkd.store.open(arg[1], {readonly = true})
    local r = s and s:query("SELECT status, (SELECT count(*) FROM checkpoints c WHERE c.run_id = runs.id) AS n FROM runs")[1]
    print(r and (r.status .. " " .. r.n) or "none")' "$1" 2>/dev/null || echo none
}

# 1. two points, each in its own store, merged twice
mkdir points
for i in 0 1; do "$bin" sweep sweep.lua --point $i --db points/$i.db >/dev/null 2>err$i.txt; check "point $i runs alone (--point)" [ $? -eq 0 ]; done
check "--point writes one run per store" [ "$(one points/0.db 'SELECT count(*) FROM runs')" -eq 1 ]
"$bin" sweep sweep.lua --point 2 --db points/x.db >/dev/null 2>errx.txt
check "--point out of range is an error" grep -q "has points 0 to 1" errx.txt
"$bin" merge points --db runs.db >m1.txt 2>&1
check "gkd merge exits 0 ($(cat m1.txt))" [ $? -eq 0 ]
check "gkd merge reports 2 runs added" grep -q "2 files merged (2 runs added, 0 updated)" m1.txt
for n in "mg/beta=0.1,seed=1" "mg/beta=0.9,seed=1"; do
  i=0; [ "$n" = "mg/beta=0.9,seed=1" ] && i=1
  rows_of points/$i.db "$n" >src.txt
  rows_of runs.db "$n" >dst.txt
  check "$n: every row came across (metrics, evals, samples, checkpoints, uuid, config)" cmp -s src.txt dst.txt
done
check "samples came across" [ "$(one runs.db 'SELECT count(*) FROM samples')" -gt 0 ]
check "one sweep row" [ "$(one runs.db 'SELECT count(*) FROM sweeps')" -eq 1 ]
check "the runs belong to it" [ "$(one runs.db 'SELECT count(*) FROM runs WHERE sweep_id = (SELECT id FROM sweeps WHERE name = ?)' mg)" -eq 2 ]
store_dump runs.db >w1.txt
"$bin" merge points --db runs.db >m2.txt 2>&1
store_dump runs.db >w2.txt
check "merging again exits 0" grep -q "0 runs added, 2 updated" m2.txt
check "merging again changes no row and no id" cmp -s w1.txt w2.txt

# 2. a point merged while it runs, then after it finished
"$bin" sweep sweep.lua --point 0 --db live.db -- 300 >/dev/null 2>live_err.txt &
live=$!
for _ in $(seq 1 600); do case "$(state_of live.db)" in running\ [1-9]*) break ;; esac; sleep 0.05; done
"$bin" merge live.db --db during.db >m3.txt 2>&1
check "merging a running point exits 0 ($(cat m3.txt))" [ $? -eq 0 ]
id_during=$(one during.db 'SELECT id FROM runs')
status_during=$(one during.db 'SELECT status FROM runs')
rows_during=$(one during.db 'SELECT count(*) FROM metrics')
wait "$live"
"$bin" merge live.db --db during.db >m4.txt 2>&1
check "merged while running: 'running' ($status_during)" [ "$status_during" = running ]
check "merged after: one run, same id, finished" \
  [ "$(one during.db 'SELECT count(*) FROM runs')" -eq 1 -a "$(one during.db 'SELECT id FROM runs')" = "$id_during" \
    -a "$(one during.db 'SELECT status FROM runs')" = finished ]
check "merged after: all its rows ($rows_during while running)" \
  [ "$(one during.db 'SELECT count(*) FROM metrics')" -eq "$(one live.db 'SELECT count(*) FROM metrics')" \
    -a "$rows_during" -lt "$(one live.db 'SELECT count(*) FROM metrics')" ]

# 3. stopped by SIGTERM after a checkpoint, merged, continued, merged again
"$bin" sweep sweep.lua --point 1 --db stop.db -- 300 >/dev/null 2>stop_err.txt &
pid=$!
for _ in $(seq 1 600); do case "$(state_of stop.db)" in running\ [2-9]*) break ;; esac; sleep 0.05; done
kill -TERM "$pid"
wait "$pid"
check "SIGTERM stops the point with status 3 (interrupted)" [ $? -eq 3 ]
"$bin" merge stop.db --db cont.db >/dev/null 2>&1
ck=$(one cont.db 'SELECT max(step) FROM checkpoints')
# A copy of the point store changed as a resumed run changes it: rows past its first checkpoint
# truncated (before they are written again), and a value rewritten; merged, the target follows it.
cp stop.db trunc.db
first=$(one trunc.db 'SELECT min(step) FROM checkpoints')
early=$(one cont.db 'SELECT group_concat(id) FROM samples WHERE step <= ?' "$first")
"$bin" run -e '
  local s = assert(gkd.store.open(arg[1]))
  local id = s:query("SELECT id FROM runs")[1].id
  assert(s:truncate_after(id, tonumber(arg[2])))
  assert(s:metric(id, 1, "loss", 42.5))' trunc.db "$first"
"$bin" merge trunc.db --db cont.db >/dev/null 2>&1
rows_of trunc.db "mg/beta=0.9,seed=1" >src.txt
rows_of cont.db "mg/beta=0.9,seed=1" >dst.txt
check "rows a truncation removed are removed by the merge, a rewritten value is updated" cmp -s src.txt dst.txt
check "(the truncation removed samples: $(one stop.db 'SELECT count(*) FROM samples WHERE step > ?' "$first") of them)" \
  [ "$(one stop.db 'SELECT count(*) FROM samples WHERE step > ?' "$first")" -gt 0 ]
check "(the rewritten value)" [ "$(one cont.db "SELECT value FROM metrics WHERE step = 1 AND name = 'loss'")" = 42.5 ]
"$bin" sweep sweep.lua --point 1 --db stop.db -- 300 >/dev/null 2>cont_err.txt
check "the point continues from its checkpoint" grep -q "continuing from step $ck" cont_err.txt
"$bin" merge stop.db --db cont.db >m5.txt 2>&1
check "merging the continued run updates it (1 updated)" grep -q "0 runs added, 1 updated" m5.txt
rows_of stop.db "mg/beta=0.9,seed=1" >src.txt
rows_of cont.db "mg/beta=0.9,seed=1" >dst.txt
check "the continued run's rows equal its store's (truncated rows replaced, none duplicated)" cmp -s src.txt dst.txt
check "its samples the changes did not touch keep their ids ($early)" \
  [ -n "$early" -a "$(one cont.db 'SELECT group_concat(id) FROM samples WHERE step <= ?' "$first")" = "$early" ]

# 4. files that are not run stores
store_dump runs.db >before.txt
printf 'SQLite format 3\000 but not really a database, just text that goes on and on\n%.0s' $(seq 1 50) >points/bad.db
"$bin" merge points --db runs.db >m6.txt 2>&1
rc=$?
check "a malformed file: non-zero exit (got $rc)" [ $rc -ne 0 ]
check "a malformed file: the message names it ($(grep bad m6.txt))" grep -q "points/bad.db" m6.txt
check "a malformed file: the good ones are still merged" grep -q "0 runs added, 2 updated" m6.txt
store_dump runs.db >after.txt
check "a malformed file: runs.db unchanged" cmp -s before.txt after.txt
rm points/bad.db
if command -v python3 >/dev/null && python3 -c 'import sqlite3' 2>/dev/null; then
  python3 -c 'import sqlite3; c = sqlite3.connect("foreign.db"); c.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)"); c.execute("INSERT INTO runs (name) VALUES (\"x\")"); c.commit()'
  "$bin" merge foreign.db --db runs.db >m7.txt 2>&1
  rc=$?
  check "a foreign SQLite database: non-zero exit and its name ($(cat m7.txt))" [ $rc -ne 0 ] && grep -q "foreign.db" m7.txt
  check "a foreign SQLite database: it says why" grep -q "not a gkd run store" m7.txt
  store_dump runs.db >after.txt
  check "a foreign SQLite database: runs.db unchanged" cmp -s before.txt after.txt
fi
: >points/2.db
"$bin" merge points --db runs.db >m8.txt 2>&1
check "an empty file (a task not started) is skipped, exit 0 ($(cat m8.txt))" [ $? -eq 0 ]
check "an empty file: says to merge again later" grep -q "skipped points/2.db.*merge again later" m8.txt
"$bin" merge nowhere --db runs.db >m9.txt 2>&1
check "a missing folder is a usage error (2)" [ $? -eq 2 ]

[ "$fails" -eq 0 ] || exit 1
echo "ok   gkd merge: all rows, idempotent, live and continued points updated in place, bad files refused"
