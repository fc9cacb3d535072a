#!/usr/bin/env bash
# ctest-labels: cpu
# model:logprobs, model:logits and `gkd score` against logits computed outside gkd:
# - the Hugging Face fixtures of tests/fixtures/make_hf_llama_fixtures.py (transformers' logits for an
#   80-token sequence; rope_theta 5e5 in rope_parameters, llama3 and linear rope scaling): the reference
#   log-probabilities are computed here, in Lua, from those logits;
# - the GGUF fixture of make_gguf_model_fixture.py (its logits from a float64 numpy forward), scored from its
#   prompt as text (--special: the prompt holds <|im_end|>) with the file's own tokenizer, which must give
#   the fixture's ids.
# Also: ids are 0-based (the tokenizer's), the first token has no log-probability, total is the sum; bad
# input is an error naming the fault.
set -u
GKD=${GKD_BIN:?}
SRC=${GKD_SOURCE_DIR:?}
HF=$SRC/tests/fixtures/hf
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0

# The reference reader, in Lua: a fixture's tokens, logits (T, V) and log-softmax log-probs.
cat >"$dir/ref.lua" <<'EOF'
local M = {}
function M.read(json_path, logits_path, tokens, V)
  if not tokens then
    local f = assert(io.open(json_path)); local ref = gkd.json.decode(f:read('a')); f:close()
    tokens, V = ref.tokens, ref.vocab_size
  end
  local f = assert(io.open(logits_path, 'rb')); local raw = f:read('a'); f:close()
  assert(#raw == 4 * #tokens * V, logits_path .. ': size')
  local logits, lp, pos = {}, {}, 1
  for t = 1, #tokens do
    local row, mx = {}, -math.huge
    for v = 1, V do row[v], pos = string.unpack('<f', raw, pos); mx = math.max(mx, row[v]) end
    local s = 0
    for v = 1, V do s = s + math.exp(row[v] - mx) end
    logits[t] = row
    if t < #tokens then lp[t] = row[tokens[t + 1] + 1] - mx - math.log(s) end
  end
  return tokens, logits, lp
end
function M.maxdiff(a, b)
  assert(#a == #b, 'lengths ' .. #a .. ' and ' .. #b)
  local worst = 0
  for i = 1, #a do worst = math.max(worst, math.abs(a[i] - b[i])) end
  return worst
end
return M
EOF

for fx in gqa-untied gqa-tied-old-keys llama3 linear-old-keys; do
  out=$("$GKD" run -e "
    package.path = '$dir/?.lua;' .. package.path
    local R = require 'ref'
    local tokens, logits, lp = R.read('$HF/$fx/reference.json', '$HF/$fx/logits.f32')
    local m = assert(gkd.model.load('$HF/$fx', {inference = true}))
    local got, total = m:logprobs(tokens)
    assert(#got == #tokens - 1, 'one log-prob per token after the first')
    local d = R.maxdiff(got, lp)
    local sum = 0; for _, x in ipairs(lp) do sum = sum + x end
    assert(d <= 1e-4, 'logprobs differ by ' .. d)
    assert(math.abs(total - sum) <= 1e-3, 'total ' .. total .. ' vs ' .. sum)
    local rows = m:logits(tokens)
    local worst = 0
    for t = 1, #tokens do worst = math.max(worst, R.maxdiff(rows[t], logits[t])) end
    assert(worst <= 1e-4, 'logits differ by ' .. worst)
    -- a prefix scores the same positions the same way (causal)
    local head = table.move(tokens, 1, 10, 1, {})
    assert(R.maxdiff(m:logprobs(head), table.move(lp, 1, 9, 1, {})) <= 1e-4, 'prefix')
    print(string.format('%.2e %.2e', d, worst))" 2>&1) || { echo "FAIL lua $fx: $out"; fail=1; continue; }
  echo "ok   lua $fx: max diff logprobs/logits $out"

  ids=$("$GKD" run -e "local f = io.open('$HF/$fx/reference.json'); print(table.concat(gkd.json.decode(f:read('a')).tokens, ' '))")
  "$GKD" score --model "$HF/$fx" --tokens "$ids" --json >"$dir/score.json" 2>"$dir/err" ||
    { echo "FAIL cli $fx: $(cat "$dir/err")"; fail=1; continue; }
  out=$("$GKD" run -e "
    package.path = '$dir/?.lua;' .. package.path
    local R = require 'ref'
    local tokens, _, lp = R.read('$HF/$fx/reference.json', '$HF/$fx/logits.f32')
    local f = io.open('$dir/score.json'); local s = gkd.json.decode(f:read('a')); f:close()
    assert(#s.tokens == #tokens and s.scored == #tokens - 1, 'counts')
    assert(s.logprobs[1] == nil, 'the first token has no log-prob')
    local got = table.move(s.logprobs, 2, #tokens, 1, {})
    local d = R.maxdiff(got, lp)
    assert(d <= 1e-4, 'gkd score differs by ' .. d)
    local sum = 0; for _, x in ipairs(got) do sum = sum + x end
    assert(math.abs(sum - s.total) <= 1e-9 and math.abs(s.mean - s.total / s.scored) <= 1e-9, 'total, mean')
    print(string.format('%.2e', d))" 2>&1) || { echo "FAIL cli $fx: $out"; fail=1; continue; }
  echo "ok   cli $fx: max diff $out"
done

# Text through the GGUF file's own tokenizer: the fixture's prompt, its ids, its float64 logits.
out=$("$GKD" run -e "
  local f = io.open('$SRC/tests/fixtures/tiny-llama.json'); local j = gkd.json.decode(f:read('a')); f:close()
  print(j.prompt)" 2>&1)
"$GKD" score --model "$SRC/tests/fixtures/tiny-llama-f32.gguf" --text "$out" --special --json >"$dir/text.json" 2>"$dir/err" ||
  { echo "FAIL cli text: $(cat "$dir/err")"; fail=1; }
out=$("$GKD" run -e "
  package.path = '$dir/?.lua;' .. package.path
  local R = require 'ref'
  local f = io.open('$SRC/tests/fixtures/tiny-llama.json'); local j = gkd.json.decode(f:read('a')); f:close()
  f = io.open('$dir/text.json'); local s = gkd.json.decode(f:read('a')); f:close()
  assert(table.concat(s.tokens, ' ') == table.concat(j.prompt_ids, ' '), 'ids ' .. table.concat(s.tokens, ' '))
  assert(s.pieces and s.pieces[#s.pieces] == '<|im_end|>', 'pieces')
  local _, _, lp = R.read(nil, '$SRC/tests/fixtures/tiny-llama-f32.logits', j.prompt_ids, j.config.vocab_size)
  local d = R.maxdiff(table.move(s.logprobs, 2, #s.tokens, 1, {}), lp)
  assert(d <= 2e-4, 'text score differs by ' .. d)
  -- the same from Lua, text in, the model's own tokenizer: special tokens are not matched there
  local m = assert(gkd.model.load('$SRC/tests/fixtures/tiny-llama-f32.gguf'))
  local plain = m:logprobs(j.prompt)
  assert(#plain == #m.tokenizer:encode(j.prompt) - 1, 'lua text')
  assert(R.maxdiff(m:logprobs(j.prompt_ids), lp) <= 2e-4, 'lua ids')
  print(string.format('%.2e', d))" 2>&1) || { echo "FAIL text: $out"; fail=1; }
echo "ok   text via the GGUF tokenizer: max diff $out"

# Misuse: named errors, exit 2 (CLI) or a raised error (Lua).
expect() { # expect NAME PATTERN -- command...
  local name=$1 pattern=$2
  shift 3
  local o rc
  o=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ] || ! grep -qE -- "$pattern" <<<"$o"; then
    echo "FAIL $name (exit $rc): $(head -3 <<<"$o")"; fail=1; return
  fi
  echo "ok   $name: $(head -1 <<<"$o" | head -c 160)"
}
expect "cli id outside the vocabulary" "id 64.*outside" -- "$GKD" score --model "$HF/gqa-untied" --tokens "1 64"
expect "cli one token" "2 to max_seq_len" -- "$GKD" score --model "$HF/gqa-untied" --tokens "5"
expect "cli bad id" "\"-3\" is not a token id" -- "$GKD" score --model "$HF/gqa-untied" --tokens "1 -3"
expect "cli text without tokenizer" "needs a tokenizer" -- "$GKD" score --model "$HF/gqa-untied" --text "hi"
expect "cli neither" "usage" -- "$GKD" score --model "$HF/gqa-untied"
expect "cli refused model" "attention_bias" -- "$GKD" score --model "$HF/refuse-attention-bias" --tokens "1 2"
expect "lua id outside the vocabulary" "model:logprobs: token 2 \(id 64\)" -- "$GKD" run -e \
  "gkd.model.load('$HF/gqa-untied'):logprobs({1, 64})"
expect "lua too long" "129 tokens" -- "$GKD" run -e \
  "local t = {} for i = 1, 129 do t[i] = 1 end gkd.model.load('$HF/gqa-untied'):logits(t)"
exit $fail
