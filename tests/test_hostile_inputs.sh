#!/usr/bin/env bash
# ctest-labels: cpu
# Inputs from a diverged run or a careless file, through the gkd program: each gives a clear error naming
# the fault and a non-zero exit without a crash (exit >= 128), or works.
# - A checkpoint whose weights are NaN, or ~1e14 so that activations overflow: `gkd sample --top-k 5` read
#   before its order array (or drew garbage) and exited 0. Now refused, naming the non-finite values (by
#   the sampler, which names the row and position, or by a load-time check of the weights).
# - A JSONL line whose prompt is empty: accepted, then the run failed at its final evaluation. Refused at
#   load, naming file and line.
# - A JSONL value holding \u0000: the text was cut there. Refused, naming file, line and field.
# - A byte order mark at the start of a JSONL file or a tokenizer.json: "invalid number". Skipped.
# - store:query, documented read-only, ran ATTACH and PRAGMA writable_schema. Refused.
set -u
GKD=${GKD_BIN:?}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
export OMP_NUM_THREADS=1
fail=0
expect_fail() { # expect_fail NAME PATTERN -- command...
  local name=$1 pattern=$2
  shift 3
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then
    echo "FAIL $name: exit status $rc"; echo "$out" | head -5; fail=1; return
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: message does not match /$pattern/:"; echo "$out" | head -5; fail=1; return
  fi
  echo "ok   $name (exit $rc): $(head -1 <<<"$out" | head -c 220)"
}
expect_ok() { # expect_ok NAME -- command...
  local name=$1
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne 0 ]; then echo "FAIL $name: exit status $rc"; echo "$out" | head -5; fail=1; return; fi
  echo "ok   $name"
}

printf '{"document": "alpha beta gamma", "summary": "alpha"}\n{"document": "delta", "summary": "epsilon"}\n' >ok.jsonl
"$GKD" train-tokenizer --data ok.jsonl --vocab 300 --out tok.json >/dev/null || { echo "FAIL: tokenizer"; exit 1; }
"$GKD" run -e "gkd.model.new{layers=1, dim=16, heads=2, kv_heads=1, hidden=32, max_seq_len=32, seed=1,
                             tokenizer=gkd.tokenizer.load('tok.json')}:save('m.safetensors')" ||
  { echo "FAIL: could not write a checkpoint"; exit 1; }

# Diverged weights: every float of the checkpoint's data set to NaN, or to 1e14.
if command -v python3 >/dev/null; then
  python3 - <<'PY'
import struct
raw = open("m.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
body = len(raw) - 8 - n
for name, value in (("nan", float("nan")), ("huge", 1e14)):
    open(f"{name}.safetensors", "wb").write(raw[:8 + n] + struct.pack("<f", value) * (body // 4))
PY
  for w in nan huge; do
    expect_fail "weights $w, top-k 5" "non-finite|[Nn]a[Nn]|infinit" -- \
      "$GKD" sample --model $w.safetensors --tokenizer tok.json --top-k 5 --prompt alpha --max-new-tokens 4
    expect_fail "weights $w, top-p 0.9" "non-finite|[Nn]a[Nn]|infinit" -- \
      "$GKD" sample --model $w.safetensors --tokenizer tok.json --top-p 0.9 --prompt alpha --max-new-tokens 4
    expect_fail "weights $w, greedy" "non-finite|[Nn]a[Nn]|infinit" -- \
      "$GKD" sample --model $w.safetensors --tokenizer tok.json --temperature 0 --prompt alpha --max-new-tokens 4
  done
else
  echo "note: python3 absent, diverged checkpoints not made (test_sample covers the sampler)"
fi

# Datasets.
printf '{"q": "two?", "a": "2"}\n{"q": "", "a": "none"}\n{"q": "three?", "a": "3"}\n' >empty.jsonl
expect_fail "an empty prompt, refused at load" "empty.jsonl:2: the prompt is empty" -- \
  "$GKD" run -e "assert(gkd.task.jsonl{path = 'empty.jsonl', prompt = '{q}', target = 'a'})"
printf '{"document": "a", "summary": "b"}\n{"document": "cut\\u0000here", "summary": "b"}\n' >nul.jsonl
expect_fail "\\u0000 in a JSONL value" 'nul.jsonl:2: field "document" holds \\u0000' -- \
  "$GKD" train-tokenizer --data nul.jsonl --vocab 300 --out t2.json
printf '\xef\xbb\xbf{"document": "alpha beta", "summary": "alpha"}\n{"document": "gamma", "summary": "delta"}\n' >bom.jsonl
expect_ok "a byte order mark at the start of a JSONL file" -- \
  "$GKD" train-tokenizer --data bom.jsonl --vocab 300 --out t3.json
{ printf '\xef\xbb\xbf'; cat tok.json; } >bomtok.json
expect_ok "a byte order mark at the start of tokenizer.json" -- \
  "$GKD" sample --model m.safetensors --tokenizer bomtok.json --prompt alpha --max-new-tokens 2
# store:query, documented read-only: ATTACH (which created the file it named), PRAGMA writable_schema and
# INSERT are refused by name; SELECT works.
"$GKD" run -e "local s = assert(gkd.store.open('runs.db')); s:run_begin('r', {}); s:close()" ||
  { echo "FAIL: could not write a store"; exit 1; }
for q in "ATTACH 'attached.db' AS a|ATTACH" "PRAGMA writable_schema = 1|writable_schema" \
         "INSERT INTO sweeps (name, created_at) VALUES ('x', 'y')|would write"; do
  expect_fail "store:query ${q%%|*}" "${q##*|}" -- \
    "$GKD" run -e "local s = assert(gkd.store.open('runs.db')); assert(s:query(arg[1]))" "${q%%|*}"
done
[ ! -e attached.db ] || { echo "FAIL ATTACH created attached.db"; fail=1; }
expect_ok "store:query SELECT" -- \
  "$GKD" run -e "local s = assert(gkd.store.open('runs.db')); assert(assert(s:query('SELECT name FROM runs'))[1].name == 'r')"
# gkd resume hands the stored script arguments to the script: one holding \u0000 (it would arrive cut short)
# and more than the 64 it passes (the rest were dropped) are refused, naming the run.
printf 'print(select("#", ...))\n' >args.lua
"$GKD" run -e "local s = assert(gkd.store.open('resume.db'))
local r = s:run_begin('nul-arg', {config = '{\"script\": {\"path\": \"args.lua\", \"args\": [\"a\\\\u0000b\"]}}'})
s:run_finish(r, 'failed')
local many = {}
for i = 1, 70 do many[i] = '\"x\"' end
r = s:run_begin('many-args', {config = '{\"script\": {\"path\": \"args.lua\", \"args\": [' .. table.concat(many, ',') .. ']}}'})
s:run_finish(r, 'failed')
s:close()" || { echo "FAIL: could not write the resume store"; exit 1; }
expect_fail "gkd resume: a stored argument holding NUL" "nul-arg.*argument 1.*NUL" -- "$GKD" resume nul-arg --db resume.db
expect_fail "gkd resume: more than 64 stored arguments" "many-args.*70 arguments" -- "$GKD" resume many-args --db resume.db
exit $fail
