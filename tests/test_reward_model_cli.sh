#!/usr/bin/env bash
# ctest-labels: cpu
# `gkd reward-model` trains a learned factual-consistency reward model from a JSONL file, evaluates and
# queries it; the model it writes drives a GKD + RL run through gkd.run{reward = "model:DIR"}. Checks:
# training is deterministic (same seed: the same bytes), eval and score report numbers in range, bad input
# is refused with exit 2 and a message naming what is wrong, and the run records a reward per step from
# the model (in (0, 1)), different from the built-in factual reward's on the same samples; the Lua handle
# gkd.reward.model scores as the CLI does and, inside a Lua reward, as reward = "model:DIR" does.
set -uo pipefail
bin="${GKD_BIN:-}"
src="${GKD_SOURCE_DIR:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
data="$src/tests/fixtures/debdesc-sample.jsonl"
[ -r "$data" ] || { echo "SKIPPED: no $data"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=1
fails=0
check() {
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what" >&2; fails=$((fails + 1)); fi
}
small=(--steps 200 --vocab 500 --dim 32 --heads 4 --hidden 64 --source-tokens 32 --summary-tokens 16
       --report-every 100 --batch 32)

"$bin" reward-model train --data "$data" --out rm.d "${small[@]}" --seed 3 >train1.txt 2>&1
check "train: exit 0" test $? -eq 0
check "train: writes model.safetensors and tokenizer.json" test -s rm.d/model.safetensors -a -s rm.d/tokenizer.json
check "train: reports the held-out accuracy" grep -qE '^held-out accuracy [01]\.[0-9]{4}' train1.txt
"$bin" reward-model train --data "$data" --out rm2.d "${small[@]}" --seed 3 --quiet >train2.txt 2>&1
check "train: the same seed gives the same model, byte for byte" cmp -s rm.d/model.safetensors rm2.d/model.safetensors
"$bin" reward-model train --data "$data" --out rm3.d "${small[@]}" --seed 4 --quiet >/dev/null 2>&1
check "train: another seed gives another model" bash -c 'test -s rm3.d/model.safetensors && ! cmp -s rm.d/model.safetensors rm3.d/model.safetensors'

"$bin" reward-model eval --model rm.d --data "$data" >eval.txt 2>&1
check "eval: exit 0 and an accuracy in [0, 1] ($(cat eval.txt))" grep -qE '^accuracy (0\.[0-9]{4}|1\.0000), loss' eval.txt
p=$("$bin" reward-model score --model rm.d --source "libxml parses XML documents" --summary "XML parsing library")
check "score: a probability in (0, 1) (got $p)" python3 -c "import sys; p = float('$p'); sys.exit(0 if 0 < p < 1 else 1)"

"$bin" reward-model train --out x.d >err1.txt 2>&1; rc=$?
check "train without --data: exit 2 and a message (got $rc)" bash -c "test $rc -eq 2 && grep -q -- '--data' err1.txt"
printf '{"document": "a b c", "summary": "a b"}\n{"document": broken\n' >bad.jsonl
"$bin" reward-model train --data bad.jsonl --out x.d >err2.txt 2>&1; rc=$?
check "train on broken JSONL: exit 2 naming file and line 2 (got $rc)" bash -c "test $rc -eq 2 && grep -q 'bad.jsonl' err2.txt && grep -q '2' err2.txt"
check "train on broken JSONL: no model written" test ! -e x.d
"$bin" reward-model train --data "$data" --out x.d --held-out 1.5 >err3.txt 2>&1; rc=$?
check "train --held-out 1.5: exit 2 naming the option (got $rc)" bash -c "test $rc -eq 2 && grep -q -- '--held-out' err3.txt"
"$bin" reward-model score --model missing.d --source a --summary b >err4.txt 2>&1; rc=$?
check "score with a missing model: exit 2 naming it (got $rc)" bash -c "test $rc -eq 2 && grep -q 'missing.d' err4.txt"
head -c 100 rm.d/model.safetensors >trunc.bin && mkdir -p trunc.d && mv trunc.bin trunc.d/model.safetensors &&
  cp rm.d/tokenizer.json trunc.d/
"$bin" reward-model eval --model trunc.d --data "$data" >err5.txt 2>&1; rc=$?
check "eval with a truncated model: exit 2 naming the file (got $rc)" bash -c "test $rc -eq 2 && grep -q 'trunc.d' err5.txt"

# A GKD + RL run with the learned reward, and the same run with the factual reward: the rewards come from
# the model (other values than the factual ones on the same seed's first step: the samples are identical).
# The same model from Lua (gkd.reward.model): the handle scores what the CLI scores, bit for bit, one pair
# or a batch; describes itself; a missing model gives nil and a message naming it; a closed one refuses.
cat >handle.lua <<'LUA'
local rm = assert(gkd.reward.model(arg[1]))
local d = rm:describe()
assert(d.kind == "factual" and d.path == arg[1] and d.dim == 32 and d.heads == 4, "describe")
local one = rm:score("libxml parses XML documents", "XML parsing library")
local two = rm:score({"libxml parses XML documents", "a b c"}, {"XML parsing library", "a b"})
assert(#two == 2 and math.abs(two[1] - one) < 1e-5 and two[2] > 0 and two[2] < 1, "batch")
assert(#rm:score({}, {}) == 0, "an empty batch")
assert(not pcall(rm.score, rm, {"a"}, {"b", "c"}), "lists of different lengths are refused")
local none, err = gkd.reward.model("missing.d")
assert(none == nil and tostring(err):find("missing.d", 1, true), tostring(err))
print(string.format("%.6f", one))
rm:close()
assert(not pcall(rm.score, rm, "a", "b"), "a closed model refuses")
LUA
hp=$("$bin" run handle.lua rm.d 2>&1)
check "gkd.reward.model: the handle scores as the CLI does ($hp vs $p)" test "$hp" = "$p"

cat >rl.lua <<'LUA'
local reward = arg[1]
if reward == "handle" then -- the learned model inside a Lua reward function
  local rm = assert(gkd.reward.model("rm.d"))
  reward = function(s) return rm:score(s.source, s.output) end
end
local task = assert(gkd.task.summarize{path = os.getenv("DATA"), max_examples = 40})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 160, seed = seed}
end
gkd.run{name = "rm-" .. arg[2], task = task, teacher = model(7), student = model(1), steps = 3, batch = 4,
  group_size = 2, alpha = 0.5, reward = reward, max_new_tokens = 6, max_prompt = 128,
  eval = {examples = 2}, quiet = true}
LUA
DATA="$data" "$bin" run rl.lua model:rm.d learned >run1.txt 2>&1
check "gkd.run with reward = model:rm.d: exit 0" test $? -eq 0
DATA="$data" "$bin" run rl.lua factual factual >run2.txt 2>&1
check "gkd.run with reward = factual: exit 0" test $? -eq 0
DATA="$data" "$bin" run rl.lua handle handle >run4.txt 2>&1
check "gkd.run with a Lua reward calling the handle: exit 0" test $? -eq 0
"$bin" run -e '
  local s = assert(gkd.store.open("runs.db"))
  local function rewards(name)
    local r = assert(s:run_find(name))
    assert(r.status == "finished", name .. " is " .. tostring(r.status))
    local out = {}
    for _, row in ipairs(s:query("SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step",
                                 r.id, "reward")) do out[#out + 1] = row.value end
    return out
  end
  local learned, factual = rewards("rm-learned"), rewards("rm-factual")
  print(table.concat(learned, " "), "|", table.concat(factual, " "))
  assert(#learned == 3 and #factual == 3, "one reward per step")
  for _, v in ipairs(learned) do assert(v > 0 and v < 1, "learned reward " .. v .. " outside (0, 1)") end
  assert(learned[1] ~= factual[1], "the learned reward equals the factual one")
  local handle = rewards("rm-handle")
  assert(math.abs(handle[1] - learned[1]) < 1e-5, "step 1: the handle gives " .. handle[1] .. ", model: " .. learned[1])' >rewards.txt 2>&1
rc=$?
check "the learned reward is recorded per step, in (0, 1), and is not the factual reward ($(tr '\n' ' ' <rewards.txt))" test $rc -eq 0
DATA="$data" "$bin" run rl.lua model:nowhere.d missing >run3.txt 2>&1; rc=$?
check "gkd.run with reward = model:nowhere.d: fails naming the directory (exit $rc)" bash -c "test $rc -ne 0 && grep -q 'nowhere.d' run3.txt"

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
