#!/usr/bin/env bash
# ctest-labels: cpu
# The Lua layer and the command line on the simulated-device backend (core/tensor/backend_sim.h), whose buffers the
# host cannot dereference: the same script under `gkd run --device sim` and `--device cpu` (GKD with JSD,
# per-row lambda 0.5, RL with a Lua reward, alpha and a KL penalty, evaluation with text metrics,
# checkpoints, model:sample, model:save, gkd.model.load, model:load_weights, gkd.model.from_layers) prints
# the same samples and records the same metrics, evaluations, samples and checkpoint files, byte for byte;
# so does a tiny `gkd quickstart --device sim`. A crash or a difference is host code touching a device
# buffer.
set -uo pipefail
bin="${GKD_BIN:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
command -v sqlite3 >/dev/null || { echo "SKIPPED: no sqlite3 command"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=2
fails=0
check() {
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what" >&2; fails=$((fails + 1)); fi
}

cat >sim.lua <<'LUA'
local device = arg[1]
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed, layers)
  return gkd.model.new{layers = layers, dim = 32, heads = 4, kv_heads = 2, tokenizer = tok, max_seq_len = 96,
                       seed = seed}
end
local teacher, student = model(7, 2), model(1, 1)
assert(student.device == device, "the student is on " .. student.device)
local common = {task = task, teacher = teacher, steps = 3, batch = 4, max_new_tokens = 4, max_prompt = 64,
                loss_chunk = 5, quiet = true,
                eval = {every = 2, examples = 4, temperature = 1,
                        metrics = {"rougeL", "factual", "length", "distinct2", chars = function(o) return #o end}}}
local function run(extra)
  local cfg = {}
  for k, v in pairs(common) do cfg[k] = v end
  for k, v in pairs(extra) do cfg[k] = v end
  return gkd.run(cfg)
end
run{name = "gkd-jsd", student = student, method = "gkd", divergence = gkd.divergence("jsd", {beta = 0.9}),
    checkpoint = {dir = "ckpt/gkd"}}
run{name = "mixed", student = model(2, 1), lambda = 0.5, per_sample = true, checkpoint = false}
run{name = "rl", student = model(3, 1), alpha = 0.5, group_size = 2, kl_coef = 0.1,
    reward = function(s) return #s.output / 10 end, checkpoint = {dir = "ckpt/rl"}}
local _, det = student:sample({"Describe the package: foo", "bar"},
                              {temperature = 1, top_p = 0.9, max_new_tokens = 6, seed = 3})
for i, d in ipairs(det) do
  local lp = {}
  for j, v in ipairs(d.logprobs) do lp[j] = string.format("%.9g", v) end
  print("sample", i, table.concat(d.ids, ","), table.concat(lp, ","))
end
assert(student:save("ckpt/student.safetensors"))
local again = assert(gkd.model.load("ckpt/student.safetensors", {tokenizer = tok}))
assert(again.device == device)
local fresh = model(5, 1)
assert(fresh:load_weights("ckpt/student.safetensors"))
local small = gkd.model.from_layers(teacher, {n = 1, inference = true})
for _, m in ipairs{again, fresh, small} do
  local text = m:sample("Describe the package: bar", {temperature = 0, max_new_tokens = 8})
  print("greedy", text)
end
local v = gkd.divergence_value("jsd", {1, 2, 3}, {3, 2, 1})
print("divergence", string.format("%.9g", v))
LUA

# Everything but the timings, which differ between any two runs.
dump() {
  sqlite3 "$1" "SELECT r.name, m.step, m.name, printf('%.17g', m.value) FROM metrics m JOIN runs r ON r.id = m.run_id
                WHERE m.name NOT LIKE 'time_%' AND m.name != 'tokens_per_s' ORDER BY 1, 2, 3;
                SELECT r.name, e.step, e.split, e.metric, printf('%.17g', e.value) FROM evals e
                JOIN runs r ON r.id = e.run_id ORDER BY 1, 2, 3, 4;
                SELECT r.name, s.step, s.split, s.prompt, s.output FROM samples s JOIN runs r ON r.id = s.run_id
                ORDER BY 1, 2, 3, 4, 5;
                SELECT name, status FROM runs ORDER BY 1;"
}

for d in cpu sim; do
  mkdir "$d"
  (cd "$d" && "$bin" run --db runs.db --device "$d" ../sim.lua "$d" >out.txt 2>err.txt)
  check "gkd run --device $d succeeds" test $? -eq 0
  dump "$d/runs.db" >"$d/db.txt"
done
check "the runs finished" test "$(grep -c '|finished$' sim/db.txt)" -eq 3
check "RL metrics were recorded" grep -q '^rl|3|kl_reference|' sim/db.txt
check "text metrics were recorded" grep -q '|held_out|chars|' sim/db.txt
check "samples were printed" test "$(grep -c '^sample' sim/out.txt)" -eq 2
check "same samples, log-probabilities and greedy outputs" cmp cpu/out.txt sim/out.txt
check "same metrics, evaluations and stored samples" cmp cpu/db.txt sim/db.txt
n_ckpt=$(cd cpu && find ckpt -type f | wc -l)
check "checkpoints were written ($n_ckpt files)" test "$n_ckpt" -ge 5
same_ckpt=1
for f in $(cd cpu && find ckpt -type f); do cmp -s "cpu/$f" "sim/$f" || { echo "differs: $f" >&2; same_ckpt=0; }; done
check "the same checkpoint files" test "$same_ckpt" -eq 1

# quickstart at its smallest (--smoke: tiny models and steps; one seed)
for d in cpu sim; do
  "$bin" quickstart --device "$d" --db "qs-$d.db" --out "qs-$d" --smoke --seeds 1 >"qs-$d.txt" 2>&1
  check "gkd quickstart --device $d succeeds" test $? -eq 0
  dump "qs-$d.db" >"qs-$d.dump"
done
check "quickstart: the same metrics" cmp qs-cpu.dump qs-sim.dump
check "quickstart: the same teacher" cmp qs-cpu/teacher.safetensors qs-sim/teacher.safetensors

if [ "$fails" -ne 0 ]; then
  for d in cpu sim; do echo "--- $d stderr"; tail -20 "$d/err.txt"; done
  diff cpu/db.txt sim/db.txt | head -20
fi
[ "$fails" -eq 0 ]
