-- Why on-policy GKD collapsed with the generic SmolLM2-135M-Instruct teacher (docs/results.md): measures, on
-- debdesc examples, what the teacher does with the task as experiments/smollm2-distill.lua set it up
-- (session 2) and as it should be set up. No training; the teacher only scores and generates.
--
--   tools/fetch-smollm2.sh && ./build/gkd run experiments/smollm2-probe.lua [N]   # N examples (default 60)
--
-- Three formats of the same examples (the first N of debdesc.jsonl.xz whose prompt is short enough):
--   as shipped: "Long description: DOC\nPackage: NAME\nDescription:" + target with no leading space + EOS;
--   space + "\n": the same prompt, the target after a space, then the terminator "\n", then EOS;
--   chatml: the instruct model's chat template (gkd.task template = "chatml"; the terminator <|im_end|> is its
--     EOS), the user turn "Write the one-line summary of this Debian package description.\nPackage: NAME\n
--     Description: DOC".
-- For each: the teacher's loss per target token (the summary's own tokens), the probability it gives the stop
-- (EOS, "\n" or <|im_end|>) right after the reference summary, and the share of its greedy outputs (24 new
-- tokens) that stop. Also the share of prompts that session 2's max_prompt = 104 tokens cut, and with them
-- the "Package:" line that came after the description.
local gkd = require "gkd"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local text = dofile(here .. "/paper/text.lua")
local N = tonumber(arg and arg[1] or "") or 60
local MAX_PROMPT = 104 -- session 2's setting (max_seq_len 128 - 24 new tokens)

local teacher_path = os.getenv("GKD_TEACHER") or (here .. "/../models/SmolLM2-135M-Instruct.Q4_1.gguf")
local teacher = assert(gkd.model.load(teacher_path, { inference = true }))
local tok = teacher.tokenizer

-- The data: the first 4 N rows, written once to a JSONL file.
local dir = os.getenv("GKD_PROBE_OUT") or "out/smollm2-probe"
assert(gkd.sys.mkdir(dir))
local rows = {}
text.each_jsonl(text.find_data("debdesc.jsonl.xz"), function(r)
  if #rows < 4 * N then rows[#rows + 1] = { package = r.package, summary = r.summary, document = r.document } end
end)
local f = assert(io.open(dir .. "/data.jsonl", "w"))
for _, r in ipairs(rows) do f:write(gkd.json.encode(r), "\n") end
f:close()

local FORMATS = {
  { name = "as shipped", prompt = "Long description: {document}\nPackage: {package}\nDescription:", stop = tok.eos },
  { name = "space + \"\\n\"", prompt = "Long description: {document}\nPackage: {package}\nDescription:",
    template = { prompt = "{prompt}", target_prefix = " " }, terminator = "\n", stop = tok:encode("\n")[1] },
  { name = "chatml", prompt = "Write the one-line summary of this Debian package description.\nPackage: {package}\nDescription: {document}",
    template = "chatml", stop = tok.eos },
}

-- The examples whose prompt (in every format) fits in 256 tokens, so that all formats score the same ones.
local tasks = {}
for i, fm in ipairs(FORMATS) do
  tasks[i] = assert(gkd.task.jsonl{ path = dir .. "/data.jsonl", prompt = fm.prompt, target = "summary",
    source = "document", template = fm.template, terminator = fm.terminator })
end
local chosen = {}
for j = 1, #tasks[1] do
  if #chosen >= N then break end
  local ok = true
  for i = 1, #FORMATS do
    local ids, plen = tasks[i]:tokens(j, tok)
    if #ids > 256 then ok = false end
  end
  if ok then chosen[#chosen + 1] = j end
end

print(string.format("teacher: %s; %d examples (the first of debdesc whose rows fit in 256 tokens)", tostring(teacher), #chosen))
print(string.format("%-16s %14s %16s %14s %14s", "format", "loss/token", "P(stop) at end", "greedy stops", "prompt > 104"))
local results = {}
for i, fm in ipairs(FORMATS) do
  local nll, ntok, pstop, cut, stops = 0, 0, 0, 0, 0
  local prompts = {}
  for _, j in ipairs(chosen) do
    local ids, plen = tasks[i]:tokens(j, tok)
    if plen > MAX_PROMPT then cut = cut + 1 end
    local lp = teacher:logprobs(ids)
    -- The row: prompt, the summary's tokens, then the stop token(s): EOS; "\n" + EOS; <|im_end|> (= EOS).
    local n_end = (fm.terminator and 2) or 1
    local first_end = #ids - n_end + 1 -- index of the first end token in ids
    for k = plen + 1, first_end - 1 do nll = nll - lp[k - 1]; ntok = ntok + 1 end
    assert(ids[first_end] == fm.stop, fm.name .. ": the row does not end as expected")
    pstop = pstop + math.exp(lp[first_end - 1])
    prompts[#prompts + 1] = { table.unpack(ids, 1, plen) }
  end
  local outs = teacher:sample(prompts, { temperature = 0, max_new_tokens = 24 })
  for _, ys in ipairs(outs) do
    local stopped = false
    for _, y in ipairs(ys) do if y == tok.eos then stopped = true; break end end
    -- With the "\n" terminator, any newline in the text ends the summary (eval cuts there too).
    if fm.terminator == "\n" and tok:decode(ys):find("\n") then stopped = true end
    if stopped then stops = stops + 1 end
  end
  local r = { name = fm.name, loss = nll / ntok, pstop = pstop / #chosen, stops = stops / #chosen, cut = cut / #chosen }
  results[#results + 1] = r
  print(string.format("%-16s %14.3f %16.2e %14.2f %14.2f", r.name, r.loss, r.pstop, r.stops, r.cut))
end
local g = assert(io.open(dir .. "/results.json", "w"))
g:write(gkd.json.encode{ examples = #chosen, teacher = teacher_path, formats = results }, "\n")
g:close()
