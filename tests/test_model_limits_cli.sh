#!/usr/bin/env bash
# ctest-labels: cpu
# Model sizes past gkd's bounds (docs/real-models.md, "Size limits") are refused naming the field, from every
# place a configuration comes from: gkd.model.new, a Hugging Face config.json, a gkd checkpoint's metadata and
# GGUF metadata; from Lua and from `gkd sample`. The first case is the one that used to wrap the parameter
# count to 8 MiB and crash (2048 layers of dim 2^20, hidden 2146085546, vocab 1, tied). A refusal is an error
# with a message naming the field and a non-zero exit, never a crash (exit status >= 128) nor an attempt to
# allocate (the memory limit below turns one into a failure).
set -u
GKD=${GKD_BIN:?}
SRC=${GKD_SOURCE_DIR:?}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# An AddressSanitizer build reserves terabytes of shadow address space at start, which a virtual-memory limit
# forbids; there the limit is left off (ASan itself reports an allocation past its own maximum as an error).
if ! LC_ALL=C grep -qa "AddressSanitizer" "$GKD"; then ulimit -v 8000000 2>/dev/null; fi
fail=0
expect() { # expect NAME PATTERN -- command...
  local name=$1 pattern=$2
  shift 3
  local out rc
  out=$(timeout 120 "$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then
    echo "FAIL $name: exit status $rc"; echo "$out" | head -5; fail=1; return
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: message does not match /$pattern/:"; echo "$out" | head -5; fail=1; return
  fi
  echo "ok   $name (exit $rc): $(head -1 <<<"$out" | head -c 200)"
}

expect "lua new: 2048 layers of dim 2^20 (wrapped to 8 MiB)" "dim \(hidden_size.*1048576" -- "$GKD" run -e \
  "gkd.model.new{layers=2048, dim=2^20 // 1, heads=16, hidden=2146085546, vocab=1, max_seq_len=16}"
expect "lua new: parameters past 2^40" "parameter count" -- "$GKD" run -e \
  "gkd.model.new{layers=4096, dim=65536, heads=512, hidden=2^20 // 1, vocab=32, max_seq_len=16}"
expect "lua new: layers past 4096" "n_layers.*5000" -- "$GKD" run -e \
  "gkd.model.new{layers=5000, dim=16, heads=2, vocab=32}"

mkdir "$dir/hf"
cat >"$dir/hf/config.json" <<'EOF'
{"model_type": "llama", "vocab_size": 1, "hidden_size": 1048576, "num_hidden_layers": 2048,
 "num_attention_heads": 16, "intermediate_size": 2146085546, "max_position_embeddings": 16,
 "tie_word_embeddings": true}
EOF
expect "lua load: config.json" "hidden_size.*1048576" -- "$GKD" run -e \
  "assert(gkd.model.load('$dir/hf'))"
expect "cli sample: config.json" "hidden_size.*1048576" -- "$GKD" sample --model "$dir/hf" \
  --tokenizer "$SRC/tests/fixtures/tiny-llama.tokenizer.json" --prompt "a"

# A gkd checkpoint holding no tensor, whose gkd_config metadata asks for the same model.
"$GKD" run -e "
local cfg = '{\"vocab_size\":1,\"dim\":1048576,\"n_layers\":2048,\"n_heads\":16,\"n_kv_heads\":16,' ..
            '\"hidden_dim\":2146085546,\"max_seq_len\":16,\"rope_theta\":10000,\"norm_eps\":1e-5,\"tied_embeddings\":true}'
local header = '{\"__metadata__\":{\"format\":\"pt\",\"gkd_config\":' .. gkd.json.encode(cfg) .. '}}'
header = header .. string.rep(' ', (8 - #header % 8) % 8)
local f = assert(io.open('$dir/huge.safetensors', 'wb'))
f:write(string.pack('<I8', #header), header)
f:close()" || { echo "FAIL: cannot write the checkpoint"; fail=1; }
expect "lua load: checkpoint metadata" "dim \(hidden_size.*1048576" -- "$GKD" run -e \
  "assert(gkd.model.load('$dir/huge.safetensors'))"

expect "lua load: GGUF metadata" "embedding_length.*1048576" -- "$GKD" run -e \
  "local t = gkd.tokenizer.load('$SRC/tests/fixtures/tiny-llama.tokenizer.json')
   assert(gkd.model.load('$SRC/tests/fixtures/hf/huge-config.gguf', {tokenizer = t}))"

# A model within the bounds still loads.
out=$("$GKD" run -e "local m = assert(gkd.model.load('$SRC/tests/fixtures/hf/gqa-untied')); print(m.layers)" 2>&1)
[ "$out" = "2" ] || { echo "FAIL in-range load: $out"; fail=1; }
exit $fail
