#!/usr/bin/env bash
# ctest-labels: cpu
# Integer options are range-checked before they are narrowed to int or used to allocate: a 64-bit value
# such as 2^32 + 1 or 2^40 must be refused with a message naming the option and a non-zero exit, never
# read as its low 32 bits (1 layer, 1 token, 0 tokens) and never crash (exit status >= 128).
set -u
GKD=${GKD_BIN:?}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
expect() { # expect NAME PATTERN -- command...
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
  echo "ok   $name (exit $rc): $(head -1 <<<"$out" | head -c 200)"
}

printf '{"document": "alpha beta gamma delta", "summary": "alpha beta"}\n' >"$dir/ok.jsonl"
"$GKD" train-tokenizer --data "$dir/ok.jsonl" --vocab 300 --out "$dir/tok.json" >/dev/null || { echo "FAIL: tokenizer"; exit 1; }
"$GKD" run -e "local gkd = require 'gkd'; gkd.model.new{layers=1, dim=16, heads=2, kv_heads=1, hidden=32, vocab=300, max_seq_len=32, seed=1}:save('$dir/m.safetensors')" >/dev/null ||
  { echo "FAIL: model"; exit 1; }
sample=("$GKD" sample --model "$dir/m.safetensors" --tokenizer "$dir/tok.json" --prompt "alpha")

expect "cli max-new-tokens 2^32+1" "max-new-tokens.*4294967297.*out of range" -- "${sample[@]}" --max-new-tokens 4294967297
expect "cli max-new-tokens negative" "max-new-tokens.*-3.*out of range" -- "${sample[@]}" --max-new-tokens -3
expect "cli top-k 2^40" "top-k.*out of range" -- "${sample[@]}" --top-k 1099511627776
expect "cli n huge" "\-\-n" -- "${sample[@]}" --n 4294967297
expect "cli n negative" "\-\-n" -- "${sample[@]}" --n -1
expect "lua layers 2^32+1" "layers.*4294967297.*out of range" -- "$GKD" run -e \
  "require('gkd').model.new{layers=2^32+1 // 1, dim=16, heads=2, kv_heads=1, hidden=32, vocab=300, max_seq_len=32}"
expect "lua max_new_tokens 2^40" "max_new_tokens.*1099511627776.*out of range" -- "$GKD" run -e \
  "local gkd = require 'gkd'; local m = gkd.model.load('$dir/m.safetensors', {tokenizer = gkd.tokenizer.load('$dir/tok.json')}); m:sample({'alpha'}, {max_new_tokens = 1 << 40})"
expect "lua steps negative" "steps.*(out of range|>= 0)" -- "$GKD" run -e \
  "local gkd = require 'gkd'; gkd.run{steps = -1}"
# The in-range values still work.
out=$("${sample[@]}" --max-new-tokens 3 --temperature 0 2>&1) || { echo "FAIL in-range sample: $out"; fail=1; }
exit $fail
