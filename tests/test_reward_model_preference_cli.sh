#!/usr/bin/env bash
# ctest-labels: cpu
# `gkd reward-model train --pairs` trains a preference (Bradley-Terry) reward model on the committed
# fixture pairs and reports the held-out pairwise accuracy; eval --pairs reports the same number; bad
# pair files are refused with exit 2 naming the file and line; the model drives gkd.run through
# reward = "model:DIR", and the run records its rewards (raw Bradley-Terry rewards, not probabilities).
. "$(dirname "$0")/lib.sh"
fx="$src/tests/fixtures"
export OMP_NUM_THREADS=1
opts=(--steps 300 --batch 16 --lr 1e-3 --dim 32 --heads 4 --hidden 64 --vocab 600 --source-tokens 48
      --summary-tokens 16 --quiet)

"$bin" reward-model train --pairs "$fx/preference-train.jsonl" --held-out "$fx/preference-heldout.jsonl" \
  --out pm.d "${opts[@]}" >train.txt 2>&1
check "train --pairs: exit 0, writes the model" test $? -eq 0 -a -s pm.d/model.safetensors
acc=$(sed -n 's/^held-out pairwise accuracy \([01]\.[0-9]*\),.*/\1/p' train.txt)
check "train --pairs: held-out pairwise accuracy ${acc:-none} >= 0.56 (chance 0.5)" \
  python3 -c "import sys; sys.exit(0 if float('${acc:-0}') >= 0.56 else 1)"
"$bin" reward-model eval --model pm.d --pairs "$fx/preference-heldout.jsonl" >eval.txt 2>&1
check "eval --pairs: the same accuracy ($(cat eval.txt))" grep -q "^pairwise accuracy $acc, " eval.txt

printf '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "rejected": "b"}\n' >nochosen.jsonl
"$bin" reward-model train --pairs nochosen.jsonl --out x.d "${opts[@]}" >err1.txt 2>&1; rc=$?
check "a pair without \"chosen\": exit 2 naming nochosen.jsonl:2 (got $rc: $(cat err1.txt))" \
  bash -c "test $rc -eq 2 && grep -q 'nochosen.jsonl:2' err1.txt && grep -q chosen err1.txt"
printf '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": broken\n' >broken.jsonl
"$bin" reward-model eval --model pm.d --pairs broken.jsonl >err2.txt 2>&1; rc=$?
check "malformed JSON: exit 2 naming broken.jsonl:2 (got $rc: $(cat err2.txt))" \
  bash -c "test $rc -eq 2 && grep -q 'broken.jsonl:2' err2.txt"
check "no model written on bad input" test ! -e x.d

cat >rl.lua <<'LUA'
local task = assert(gkd.task.summarize{path = os.getenv("DATA"), max_examples = 40})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local net = function(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 160, seed = seed}
end
gkd.run{name = "pref", task = task, teacher = net(7), student = net(1), steps = 2, batch = 4, group_size = 2,
  alpha = 0.5, reward = "model:" .. arg[1], max_new_tokens = 6, max_prompt = 128, quiet = true}
local store = assert(gkd.store.open("runs.db"))
local r = assert(store:run_find("pref"))
assert(r.status == "finished", tostring(r.status))
local rows = store:query("SELECT value FROM metrics WHERE run_id = ? AND name = 'reward'", r.id)
assert(#rows == 2, "want a reward per step, got " .. #rows)
for _, row in ipairs(rows) do assert(row.value == row.value, "reward is NaN") end
LUA
DATA="$fx/debdesc-sample.jsonl" "$bin" run rl.lua pm.d >run.txt 2>&1; rc=$?
check "gkd.run with reward = model:pm.d (a preference model): exit 0, a reward recorded per step (got $rc: $(tail -3 run.txt))" test $rc -eq 0

# --init: a preference model started from the committed debdesc SFT student (a gkd model and its
# tokenizer.json next to it); a shape option with it is refused; so is an untied base.
warm="$fx/../../experiments/paper/results/debdesc/warm-start.safetensors"
"$bin" reward-model train --pairs "$fx/preference-train.jsonl" --out init.d --steps 5 --batch 8 \
  --source-tokens 32 --summary-tokens 12 --init "$warm" >init.txt 2>&1; rc=$?
check "train --pairs --init MODEL: exit 0 (got $rc: $(tail -2 init.txt))" test $rc -eq 0
check "... the model has the base's shape (dim 96, vocab 2048 + 5 new specials)" grep -q "vocab 2053, dim 96" init.txt
"$bin" reward-model eval --model init.d --pairs "$fx/preference-heldout.jsonl" >initeval.txt 2>&1; rc=$?
check "the started model loads and evaluates (got $rc: $(cat initeval.txt))" test $rc -eq 0
"$bin" reward-model train --pairs "$fx/preference-train.jsonl" --out y.d --init "$warm" --dim 16 >e1.txt 2>&1; rc=$?
check "--dim with --init: exit 2 naming it (got $rc: $(cat e1.txt))" bash -c "test $rc -eq 2 && grep -q -- '--dim has no effect with --init' e1.txt"
"$bin" reward-model train --pairs "$fx/preference-train.jsonl" --out y.d --init "$fx/hf/gqa-untied" \
  --init-tokenizer "$fx/tiny-llama.tokenizer.json" >e2.txt 2>&1; rc=$?
check "an untied base: exit 2 naming lm_head.weight (got $rc: $(cat e2.txt))" bash -c "test $rc -eq 2 && grep -q lm_head.weight e2.txt"
check "no model written on refusal" test ! -e y.d

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
