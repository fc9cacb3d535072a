#!/usr/bin/env bash
# ctest-labels: cpu
# `gkd export --tensorboard DIR` read back by the tensorboard package (tests/export_tensorboard_check.py):
# a store with one real tiny run and a synthetic sweep (a NaN metric, evals, samples with markdown and
# line breaks, a failed run sharing a name, one equal but for case, a name with '..' and spaces, values
# of mixed types, numbers beyond float's range), exported whole, again into the same folder, by --sweep
# and by --run; every scalar, hparam, text and checksum must match the store.
# Then the refusals: an unknown sweep or run, a missing or non-SQLite --db, a folder that cannot be
# created or written, no --tensorboard. Skipped (77) without the tensorboard Python package.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
python3 -c 'import tensorboard' 2>/dev/null ||
  { echo "SKIPPED: no tensorboard Python package (python3 -m pip install tensorboard)"; exit 77; }
checker="$src/tests/export_tensorboard_check.py"

cat >tiny.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 40})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed) return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 96, seed = seed} end
return gkd.run{
  name = "tiny/run 1", db = "runs.db", task = task, teacher = model(7), student = model(1),
  divergence = gkd.jsd(0.5), steps = 3, batch = 2, max_new_tokens = 4, max_prompt = 64, quiet = true,
  eval = {examples = 2, metrics = {"rougeL"}, every = 2},
}
LUA
"$bin" run tiny.lua >tiny.out 2>&1
check "a tiny gkd run (output: $(tail -3 tiny.out))" test $? -eq 0

"$bin" run -e '
local s = assert(gkd.store.open("runs.db"))
local sweep = s:sweep("grid")
for i, lambda in ipairs({0, 0.5}) do
  local config = string.format(
    [[{"lambda":%s,"divergence":{"name":"jsd","beta":0.25,"skew":null},"on_policy":%s,"eval":{"metrics":["rougeL","bleu"]},"seed":%d,"lr":"cosine(0.001)","empty":{}}]],
    lambda, lambda > 0 and "true" or "false", i)
  local id = s:run_begin("grid/lambda=" .. lambda, {sweep_id = sweep, config = config, seed = i})
  for step = 1, 5 do s:metric(id, step, "loss", 1 / step + lambda + 1e-9) end
  s:metric(id, 3, "grad_norm", 0 / 0)
  s:metric(id, 4, "grad_norm", 2.5)
  s:eval(id, 0, "held_out", "rougeL", 0.1 * i)
  s:eval(id, 5, "held_out", "rougeL", 0.123456789 * i)
  s:eval(id, 5, "validation", "bleu", 3.25)
  s:sample{run_id = id, step = 5, split = "held_out", prompt = "what is *1|2*?", output = "line 1\nline 2 <b>"}
  s:sample{run_id = id, step = 5, split = "held_out", prompt = "second", output = ""}
  s:sample{run_id = id, step = 2, prompt = "on-policy", output = "y"}
  s:run_finish(id, "finished")
end
local dup = s:run_begin("grid/lambda=0", {config = [[{"lambda":"high","seed":9}]], seed = 9})
s:metric(dup, 1, "loss", 7)
s:run_finish(dup, "failed", "boom")
local odd = s:run_begin("../up  and: away", {config = [[{"lambda":1}]]})
s:eval(odd, 2, "held_out", "rougeL", 0.5)
local upper = s:run_begin("Grid/LAMBDA=0.5", {config = [[{"lambda":0.5,"seed":3,"on_policy":"yes"}]]})
s:metric(upper, 1, "loss", 1e-40)
s:metric(upper, 2, "loss", -1e300)
s:metric(upper, 3, "loss", 1 / 0)
s:run_finish(upper, "interrupted")
assert(s:close())' >store.out 2>&1
check "building the synthetic store (output: $(tail -3 store.out))" test $? -eq 0

export_ok() { # what DIR [options]: export must exit 0
  local what=$1 dir=$2; shift 2
  "$bin" export --tensorboard "$dir" --db runs.db "$@" >"$dir.out" 2>&1
  check "$what: export exits 0 (output: $(tail -3 "$dir.out"))" test $? -eq 0
}
export_ok "all runs" tb
check "all runs read back" python3 "$checker" runs.db tb all
check "folder of '../up  and: away' stays inside" test -d "tb/_./up__and__away"
check "the failed run sharing a name gets -ID" test -d "tb/grid/lambda=0-4"
check "a name equal but for case gets -ID" test -d "tb/Grid/LAMBDA=0.5-6"
check "the summary line counts 6 runs" grep -q "wrote 6 runs to tb" tb.out
export_ok "again into the same folder" tb
check "re-export replaces the files" python3 "$checker" runs.db tb all
export_ok "--sweep grid" tb-sweep --sweep grid
check "--sweep read back" python3 "$checker" runs.db tb-sweep sweep grid
export_ok "--run grid/lambda=0" tb-run --run grid/lambda=0
check "--run read back" python3 "$checker" runs.db tb-run run grid/lambda=0

refused() { # what want_rc pattern [args]: export must fail with that exit status and message
  local what=$1 want=$2 pattern=$3; shift 3
  "$bin" export "$@" >refused.out 2>&1
  local rc=$?
  check "$what: exit $want (got $rc)" test "$rc" -eq "$want"
  check "$what: says '$pattern' (said: $(head -2 refused.out))" grep -qF -- "$pattern" refused.out
}
refused "unknown sweep" 2 "run store 'runs.db': no sweep named 'nosuch'" --tensorboard x --db runs.db --sweep nosuch
refused "unknown run" 2 "no run named 'nosuch'" --tensorboard x --db runs.db --run nosuch
refused "missing --db" 1 "cannot open run store 'missing.db'" --tensorboard x --db missing.db
echo "not a database" >junk.db
refused "non-SQLite --db" 1 "'junk.db' is not a SQLite database" --tensorboard x --db junk.db
touch afile
refused "folder under a file" 1 "cannot create folder 'afile'" --tensorboard afile/tb --db runs.db
refused "no --tensorboard" 2 "--tensorboard DIR" --db runs.db
refused "unknown option" 2 "--bogus" --tensorboard x --db runs.db --bogus 1
check "nothing written for refused exports" test ! -e x
if [ "$(id -u)" -ne 0 ]; then
  mkdir locked && chmod 555 locked
  refused "read-only folder" 1 "cannot create folder 'locked/" --tensorboard locked --db runs.db
  chmod 755 locked
fi
"$bin" export --help >help.out 2>&1
check "--help exits 0 with the usage" grep -q "^usage: gkd export --tensorboard DIR" help.out

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed" >&2; exit 1; }
echo "ok: TensorBoard export read back by tensorboard"
