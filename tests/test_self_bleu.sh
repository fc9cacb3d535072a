#!/usr/bin/env bash
# ctest-labels: cpu
# Self-BLEU of experiments/paper/diagnostics.lua against NLTK's (tests/fixtures/self-bleu.json, made by
# tests/fixtures/make_self_bleu_fixture.py), and the per-position reverse KL of a model against itself (0).
. "$(dirname "$0")/lib.sh"
cat >"$tmp/t.lua" <<'LUA'
local src = arg[1]
local D = dofile(src .. "/experiments/paper/diagnostics.lua")
local f = assert(io.open(src .. "/tests/fixtures/self-bleu.json"))
local cases = gkd.json.decode(f:read("a"))
f:close()
local bad = 0
for i, c in ipairs(cases) do
  local got = D.self_bleu(c.texts)
  if math.abs(got - c.self_bleu) > 1e-9 then
    print(string.format("FAILED: set %d: self-BLEU %.12f, NLTK %.12f", i, got, c.self_bleu))
    bad = bad + 1
  end
end
-- A model against itself: every position's estimate is exactly 0.
local task = gkd.task.summarize{ path = src .. "/tests/fixtures/debdesc-sample.jsonl", max_examples = 20 }
local tok = gkd.tokenizer.train{ task = task, vocab = 300 }
local m = gkd.model.new{ layers = 1, dim = 16, heads = 4, tokenizer = tok, max_seq_len = 512, seed = 1 }
local r = D.run(m, m, task, tok, { n = 5, max_new = 8, seed = 1 })
if r.kept ~= 5 then print("FAILED: kept " .. r.kept); bad = bad + 1 end
local n = 0
for name, v in pairs(r.rkl) do
  n = n + 1
  if math.abs(v) > 1e-5 then print("FAILED: " .. name .. " " .. v); bad = bad + 1 end
end
if n == 0 then print("FAILED: no positions"); bad = bad + 1 end
-- Another model as teacher: the per-position estimates, summed, equal log q - log p of the sampled tokens as
-- both models score the whole sequences (model:logprobs), which checks the alignment of the positions.
local t = gkd.model.new{ layers = 1, dim = 16, heads = 4, tokenizer = tok, max_seq_len = 512, seed = 2 }
local r2 = D.run(m, t, task, tok, { n = 5, max_new = 8, seed = 1 })
local s = 0
for name, v in pairs(r2.rkl) do s = s + v * r2.counts[name] end
local want = 0
for i, ys in ipairs(r2.samples) do
  local full = { table.unpack(r2.prompts[i]) }
  for _, y in ipairs(ys) do full[#full + 1] = y end
  local lq, lp = m:logprobs(full), t:logprobs(full)
  for k = #r2.prompts[i], #full - 1 do want = want + lq[k] - lp[k] end
end
if math.abs(s - want) > 1e-6 * math.max(1, math.abs(want)) or want == 0 then
  print(string.format("FAILED: summed estimates %.9f, from logprobs %.9f", s, want)); bad = bad + 1
end
os.exit(bad == 0 and 0 or 1)
LUA
"$bin" run "$tmp/t.lua" "$src" || { echo "self-BLEU / diagnostics: FAILED"; exit 1; }
echo "self-BLEU / diagnostics: ok"
