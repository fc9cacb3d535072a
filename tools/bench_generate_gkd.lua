-- gkd's in-process sampling timer for tools/bench_generate.py: loads MODEL once, samples one prompt at
-- batch 1 (temperature 1, no top-k or top-p) once to warm up, then times model:sample for 1 and for N new
-- tokens, REPS times each, alternately.
--
--   gkd run tools/bench_generate_gkd.lua MODEL PROMPT N REPS SEED
--
-- The prompt is encoded with special tokens matched, as `gkd sample` does with a GGUF model. Prints
-- "BENCH_JSON {prompt_tokens, runs = {{new_tokens, seconds}, ...}}".
local gkd = require "gkd"
local path, prompt, n, reps, seed = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5] or "1")
assert(path and prompt and n and reps, "usage: bench_generate_gkd.lua MODEL PROMPT N REPS SEED")
local model = assert(gkd.model.load(path, { inference = true }))
local ids = model.tokenizer:encode(prompt, true)

local function sample(k, s)
  local t0 = gkd.sys.clock()
  local out = model:sample({ ids }, { temperature = 1, max_new_tokens = k, seed = s })
  return { new_tokens = #out[1], seconds = gkd.sys.clock() - t0 }
end

sample(8, seed)
local runs = {}
for r = 1, reps do
  runs[#runs + 1] = sample(1, seed + r)
  runs[#runs + 1] = sample(n, seed + r)
end
print("BENCH_JSON " .. gkd.json.encode{ prompt_tokens = #ids, runs = runs })
