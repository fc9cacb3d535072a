#!/usr/bin/env bash
# ctest-labels: cpu
# Bad input through the gkd program: a truncated or corrupt safetensors checkpoint, a tensor of the wrong
# shape or dtype, a tokenizer file that is not JSON, and a JSONL file with a broken line each give an error
# naming the file and the offset, tensor or line, a non-zero exit status, and no crash (a crash would be
# exit status >= 128).
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
    echo "FAIL $name: exit status $rc"; echo "$out"; fail=1; return
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: message does not match /$pattern/:"; echo "$out"; fail=1; return
  fi
  echo "ok   $name (exit $rc): $(head -c 200 <<<"$out" | head -1)"
}

# A real checkpoint and tokenizer to corrupt: train a tokenizer, and write a tiny model with the Lua-free
# path (gkd quickstart would take too long), via python if present, else skip the checkpoint parts.
printf '{"document": "alpha beta gamma", "summary": "alpha"}\n{"document": "delta", "summary": "epsilon"}\n' >"$dir/ok.jsonl"
"$GKD" train-tokenizer --data "$dir/ok.jsonl" --vocab 300 --out "$dir/tok.json" >/dev/null || { echo "FAIL: tokenizer"; exit 1; }

printf '{"document": "a", "summary": "b"}\n{"document": "a", "summ\n' >"$dir/broken.jsonl"
expect "jsonl broken line" "broken.jsonl:2" -- "$GKD" train-tokenizer --data "$dir/broken.jsonl" --out "$dir/t2.json"
printf '{"document": "a", "summary": "b"}\n{"document": 3, "summary": "b"}\n' >"$dir/badfield.jsonl"
expect "jsonl wrong field type" "badfield.jsonl:2.*document" -- "$GKD" train-tokenizer --data "$dir/badfield.jsonl" --out "$dir/t3.json"
echo 'not json' >"$dir/badtok.json"
expect "tokenizer not json" "badtok.json" -- "$GKD" sample --model "$dir/none.safetensors" --tokenizer "$dir/badtok.json"

# Checkpoints: made by gkd itself (the Lua layer), then damaged.
if "$GKD" run -e "local gkd = require 'gkd'; gkd.model.new{layers=1, dim=16, heads=2, kv_heads=1, hidden=32, vocab=300, max_seq_len=32, seed=1}:save('$dir/m.safetensors')" >/dev/null 2>&1 &&
   [ -s "$dir/m.safetensors" ]; then
  size=$(stat -c %s "$dir/m.safetensors")
  head -c $((size / 2)) "$dir/m.safetensors" >"$dir/trunc.safetensors"
  expect "truncated checkpoint" "trunc.safetensors" -- "$GKD" sample --model "$dir/trunc.safetensors" --tokenizer "$dir/tok.json"
  head -c 4 "$dir/m.safetensors" >"$dir/tiny.safetensors"
  expect "checkpoint shorter than its header" "tiny.safetensors" -- "$GKD" sample --model "$dir/tiny.safetensors" --tokenizer "$dir/tok.json"
  python3 - "$dir" <<'PY' || true
import json, struct, sys
d = sys.argv[1]
raw = open(f"{d}/m.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = json.loads(header["__metadata__"]["gkd_config"])
# wrong shape: claim a larger model dimension in the stored configuration
meta["hidden_dim"] = 48
header["__metadata__"]["gkd_config"] = json.dumps(meta)
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(f"{d}/shape.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
# wrong dtype: the embedding declared as I32 (same byte size)
header = json.loads(raw[8:8 + n])
header["model.embed_tokens.weight"]["dtype"] = "I32"
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(f"{d}/dtype.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])
PY
  if [ -s "$dir/shape.safetensors" ]; then
    expect "tensor of the wrong shape" "shape.safetensors.*(gate_proj|up_proj|down_proj)" -- "$GKD" sample --model "$dir/shape.safetensors" --tokenizer "$dir/tok.json"
    expect "tensor of the wrong dtype" "dtype.safetensors.*embed_tokens.*I32" -- "$GKD" sample --model "$dir/dtype.safetensors" --tokenizer "$dir/tok.json"
  else
    echo "note: python3 absent, wrong shape/dtype files not made"
  fi
else
  echo "note: gkd run could not write a checkpoint; checkpoint parts not run"
  fail=1
fi
exit $fail
