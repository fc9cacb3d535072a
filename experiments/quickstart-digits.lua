-- Per-digit accuracy of the quickstart's students: for each column digit 0-9 of the references, the share of
-- the first 500 test problems' columns with that digit that a model's greedy output gets right (at the same
-- column). Shows which tokens a student never learned (docs/results.md, "The main job": reverse KL's
-- zero-forcing).
--
--   ./build/gkd run experiments/quickstart-digits.lua [OUT=quickstart-out] [RUN...]
-- RUN: a method run's name, e.g. quickstart/method=on-policy-gkd,seed=2 (default: both methods, seeds 1-3).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local D = dofile(here .. "/paper/arith_data.lua")
D.DIGITS = 3
local OUT = arg[1] or "quickstart-out"
local names = { table.unpack(arg, 2) }
if #names == 0 then
  for _, m in ipairs({ "supervised-kd", "on-policy-gkd" }) do
    for s = 1, 3 do names[#names + 1] = string.format("quickstart/method=%s,seed=%d", m, s) end
  end
end
local train = D.task(OUT .. "/data", "train")
local tok = gkd.tokenizer.train{ task = train, vocab = 300 }
local rows = {}
for line in io.lines(OUT .. "/data/test.jsonl") do
  rows[#rows + 1] = gkd.json.decode(line)
  if #rows == 500 then break end
end
local prompts = {}
for i, r in ipairs(rows) do prompts[i] = r.prompt end

local function columns(text)
  local c = {}
  for d in text:gmatch("(%d)c%d") do c[#c + 1] = d end
  return c
end
local function new_model() return gkd.model.new{ layers = 2, dim = 48, heads = 4, tokenizer = tok, max_seq_len = 40, seed = 1 } end

local function report(label, m)
  local outs = m:sample(prompts, { temperature = 0, max_new_tokens = 20, tokenizer = tok })
  local want, got = {}, {}
  for i, r in ipairs(rows) do
    local rc, oc = columns(r.target), columns(outs[i])
    for j = 1, #rc do
      want[rc[j]] = (want[rc[j]] or 0) + 1
      if oc[j] == rc[j] then got[rc[j]] = (got[rc[j]] or 0) + 1 end
    end
  end
  local cells = {}
  for d = 0, 9 do
    local k = tostring(d)
    cells[#cells + 1] = string.format("%s:%.2f", k, (got[k] or 0) / math.max(1, want[k] or 0))
  end
  print(string.format("%-28s %s", label, table.concat(cells, " ")))
end

print("greedy accuracy per reference column digit (first 500 test problems)")
local warm = new_model()
assert(warm:load_weights(OUT .. "/warm-start.safetensors"))
report("warm start", warm)
for _, name in ipairs(names) do
  local m = new_model()
  local path = string.format("%s/checkpoints/%s", OUT, name)
  assert(m:load_weights(path .. "/step-00000500/model.safetensors")) -- the quickstart's 500 steps
  report(name, m)
  m:close()
end
