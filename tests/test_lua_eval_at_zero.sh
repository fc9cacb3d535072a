#!/usr/bin/env bash
# ctest-labels: cpu
# gkd.run with steps = 0 evaluates the student once, at step 0 (a warm start's or a baseline's score), and
# records it: before, the evaluation was silently skipped (the loop's "last step" never came) and the
# result had no eval table.
set -u
GKD=${GKD_BIN:?}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
export OMP_NUM_THREADS=1
out=$("$GKD" run -e '
local t = gkd.task.summarize{max_examples = 40}
local tok = gkd.tokenizer.train{task = t, vocab = 300}
local m = gkd.model.new{layers = 1, dim = 32, tokenizer = tok, max_seq_len = 96}
local r = gkd.run{name = "zero", db = "runs.db", method = "sft", task = t, student = m, steps = 0, max_new_tokens = 8,
                  max_prompt = 64, eval = {examples = 4, metrics = {"rougeL"}}, checkpoint = false, quiet = true}
assert(r.eval and r.eval.ce_loss, "no evaluation in the result")
local s = assert(gkd.store.open("runs.db"))
local rows = assert(s:query("SELECT COUNT(*) AS n FROM evals WHERE step = 0 AND metric IN (?, ?)", "ce_loss", "rougeL"))
print("ce_loss", r.eval.ce_loss, "stored", rows[1].n)
' 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ]; then echo "FAIL: exit $rc"; exit 1; fi
if grep -qE '^ce_loss	[0-9.]+	stored	2$' <<<"$out"; then echo "ok   steps = 0 evaluated and stored"; exit 0; fi
echo "FAIL: expected the step-0 ce_loss and rougeL in the store"; exit 1
