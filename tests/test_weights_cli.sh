#!/usr/bin/env bash
# ctest-labels: cpu
# Reduced-precision weights from the user's side (core/tensor/weights.h): gkd.run's teacher_precision converts
# an inference teacher, records the setting with the run, and refuses a bad value (naming the key), a trainable
# teacher and a method that needs fp32; gkd.model.load{weights =} and model.weights; gkd sample --weights (and
# --ignore-eos, which runs every row to its length, as speed comparisons need) and
# gkd score --weights / --weights-error, with their refusals.
set -uo pipefail
bin="${GKD_BIN:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=1
fails=0
pass=0
check() { # check "what" command...
  local what="$1"; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAILED: $what" >&2; fails=$((fails + 1)); fi
}

cat >setup.lua <<'LUA'
task = assert(gkd.task.summarize{max_examples = 24})
tok = gkd.tokenizer.train{task = task, vocab = 300}
local t = gkd.model.new{layers = 1, dim = 32, heads = 4, hidden = 64, tokenizer = tok, max_seq_len = 128, seed = 7}
assert(t:save("teacher"))
function student() return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 128, seed = 1} end
function config(teacher, extra)
  local cfg = {name = "w", db = "runs.db", task = task, teacher = teacher, student = student(), steps = 2, batch = 2,
               method = "gkd", max_new_tokens = 4, max_prompt = 64, quiet = true}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end
LUA

cat >ok.lua <<'LUA'
dofile("setup.lua")
local teacher = assert(gkd.model.load("teacher", {inference = true}))
assert(teacher.weights == "fp32")
gkd.run(config(teacher, {teacher_precision = "bf16"}))
assert(teacher.weights == "bf16", "the teacher was converted")
local q = assert(gkd.model.load("teacher", {inference = true, weights = "q8_0"}))
assert(q.weights == "q8_0")
print("ok")
LUA
"$bin" run ok.lua >out.txt 2>err.txt; rc=$?
check "a run with teacher_precision = bf16 succeeds (rc $rc: $(tail -3 err.txt))" test "$rc" -eq 0
check "the run recorded teacher_precision" python3 -c "
import sqlite3, sys
rows = sqlite3.connect('runs.db').execute('select config from runs').fetchall()
sys.exit(0 if rows and all('teacher_precision' in r[0] and 'bf16' in r[0] for r in rows) else 1)"

cat >bad_value.lua <<'LUA'
dofile("setup.lua")
gkd.run(config(assert(gkd.model.load("teacher", {inference = true})), {teacher_precision = "int8"}))
LUA
"$bin" run bad_value.lua 2>err.txt; rc=$?
check "an unknown teacher_precision fails" test "$rc" -ne 0
check "the error names teacher_precision" grep -q "teacher_precision" err.txt

cat >trainable.lua <<'LUA'
dofile("setup.lua")
gkd.run(config(assert(gkd.model.load("teacher")), {teacher_precision = "bf16"}))
LUA
"$bin" run trainable.lua 2>err.txt; rc=$?
check "a trainable teacher is refused" test "$rc" -ne 0
check "the refusal names teacher_precision and inference" grep -q "teacher_precision.*inference" err.txt

cat >reference.lua <<'LUA'
dofile("setup.lua")
local teacher = assert(gkd.model.load("teacher", {inference = true}))
gkd.run(config(teacher, {name = "ref", method = "reinforce", reward = "length", alpha = 0.5, group_size = 2,
                         kl_coef = 0.1, reference_precision = "bf16"}))
print("ok")
LUA
"$bin" run reference.lua >out.txt 2>err.txt; rc=$?
check "a REINFORCE run with kl_coef and reference_precision = bf16 succeeds (rc $rc: $(tail -3 err.txt))" test "$rc" -eq 0
cat >reference_bad.lua <<'LUA'
dofile("setup.lua")
gkd.run(config(assert(gkd.model.load("teacher", {inference = true})), {reference_precision = "bf16"}))
LUA
"$bin" run reference_bad.lua 2>err.txt; rc=$?
check "reference_precision without kl_coef is refused" grep -q "reference_precision = bf16 needs a reward and kl_coef" err.txt

cat >load_bad.lua <<'LUA'
dofile("setup.lua")
gkd.model.load("teacher", {weights = "bf16"})
LUA
"$bin" run load_bad.lua 2>err.txt; rc=$?
check "gkd.model.load weights without inference is refused" grep -q "needs inference = true" err.txt

"$bin" sample --model teacher --tokenizer teacher/tokenizer.json --prompt "a" --max-new-tokens 4 --weights bf16 --stats >out.txt 2>err.txt; rc=$?
check "gkd sample --weights bf16 works (rc $rc)" test "$rc" -eq 0
check "gkd sample names the reduced precision" grep -q "weights bf16" err.txt
check "gkd sample --stats prints the rate" grep -q "tokens/s" err.txt
"$bin" sample --model teacher --tokenizer teacher/tokenizer.json --prompt "a" --n 8 --max-new-tokens 40 --ignore-eos \
  --stats >out.txt 2>err.txt; rc=$?
check "gkd sample --ignore-eos: every row runs to --max-new-tokens, 8 x 40 tokens (rc $rc: $(grep tokens err.txt))" \
  grep -q "gkd sample: 320 tokens" err.txt
"$bin" sample --model teacher --tokenizer teacher/tokenizer.json --prompt "a" --weights int8 2>err.txt; rc=$?
check "gkd sample --weights int8 exits 2 (rc $rc)" test "$rc" -eq 2
check "the refusal names --weights" grep -q -- "--weights: unknown weight format 'int8'" err.txt
"$bin" sample --model teacher --tokenizer teacher/tokenizer.json --prompt "a" --weights bf16 --device sim 2>err.txt; rc=$?
check "a backend without packed weights refuses (rc $rc)" grep -q "sim backend has no reduced-precision weights" err.txt

"$bin" score --model teacher --text "a b c d e f" --weights q8_0 --json >out.json 2>err.txt; rc=$?
check "gkd score --weights q8_0 works (rc $rc: $(cat err.txt))" test "$rc" -eq 0
check "gkd score records the weights" grep -q '"weights":"q8_0"' out.json
"$bin" score --model teacher --text "a b c d e f" --weights-error bf16 >err.json 2>err.txt; rc=$?
check "gkd score --weights-error works (rc $rc)" test "$rc" -eq 0
check "the error report has the KL and the logit difference" python3 -c "
import json; d = json.load(open('err.json'))
assert d['weights'] == 'bf16' and d['kl_mean'] >= 0 and d['kl_max'] >= d['kl_mean'] and d['max_abs_logit_diff'] > 0, d"

echo "$pass checks passed, $fails failed"
[ "$fails" -eq 0 ]
