-- Prepares one shape of the TRL comparison (tools/bench_trl.py): the weights as Hugging Face directories
-- written by gkd, and the data as fixed token rows that both sides read.
--
--   gkd run tools/bench_trl_prep.lua SHAPE OUT_DIR DEBDESC_JSONL_XZ [GGUF] [ROWS]
--
-- SHAPE "a": a byte-level BPE tokenizer of 1024 tokens trained on debdesc texts, a 4-layer teacher and a
--            2-layer student, width 128, 4 heads, random weights (seeds 1 and 2).
-- SHAPE "b": the SmolLM2-135M-Instruct GGUF (dequantised to float32 at load) as the teacher, and a student
--            of 4 of its 30 layers (gkd.model.from_layers, n = 4: layers spread evenly, embeddings copied).
-- Rows: "Package: NAME\nDescription: DOCUMENT" encoded with the shape's tokenizer; the first 64 tokens are
-- the prompt, the next 31 the target, then EOS: 64 + 32 tokens, none cut, no padding. A row is kept only
-- when its prompt and target text decode and re-encode to the same ids, so gkd's task (which encodes
-- the two texts) and the Python side (which reads the ids) train on identical tokens; this is checked
-- below with task:tokens.
-- Writes OUT_DIR/teacher/, OUT_DIR/student/ (config.json, model.safetensors in float32, tokenizer.json),
-- OUT_DIR/data.jsonl ({prompt, target} texts, gkd's task) and OUT_DIR/rows.json ({prompts, completions,
-- eos, pad}: 0-based ids, the completion with its EOS).
local gkd = require "gkd"
local shape, out, data_path, gguf = arg[1], arg[2], arg[3], arg[4]
local n_rows = tonumber(arg[5] or "256")
assert(shape == "a" or shape == "b", "usage: bench_trl_prep.lua a|b OUT_DIR DEBDESC [GGUF] [ROWS]")
assert(out and data_path, "usage: bench_trl_prep.lua a|b OUT_DIR DEBDESC [GGUF] [ROWS]")
local PROMPT, TARGET = 64, 31 -- the target's 32nd token is EOS

assert(gkd.sys.mkdir(out))
local source = assert(gkd.task.jsonl{ path = data_path, prompt = "Package: {package}\nDescription: {document}",
                                      target = "summary", max_examples = 4000 })

local teacher, student, tok
if shape == "a" then
  local texts = {}
  for i = 1, 3000 do texts[#texts + 1] = source[i].prompt end
  tok = gkd.tokenizer.train{ texts = texts, vocab = 1024 }
  teacher = gkd.model.new{ layers = 4, dim = 128, heads = 4, tokenizer = tok, max_seq_len = 128, seed = 1 }
  student = gkd.model.new{ layers = 2, dim = 128, heads = 4, tokenizer = tok, max_seq_len = 128, seed = 2 }
else
  assert(gguf, "shape b needs the SmolLM2 GGUF path")
  teacher = assert(gkd.model.load(gguf))
  tok = teacher.tokenizer
  student = gkd.model.from_layers(teacher, { n = 4 })
end
print("teacher: " .. tostring(teacher))
print("student: " .. tostring(student))
assert(teacher:save(out .. "/teacher"))
assert(student:save(out .. "/student"))

local function slice(t, i, j)
  local s = {}
  for k = i, j do s[#s + 1] = t[k] end
  return s
end
local function same(x, y)
  if #x ~= #y then return false end
  for k = 1, #x do if x[k] ~= y[k] then return false end end
  return true
end

local eos = assert(tok.eos, "the tokenizer has no EOS")
local prompts, completions, lines = {}, {}, {}
for i = 1, #source do
  if #prompts >= n_rows then break end
  local ids = tok:encode(source[i].prompt)
  if #ids >= PROMPT + TARGET then
    local p, t = slice(ids, 1, PROMPT), slice(ids, PROMPT + 1, PROMPT + TARGET)
    local ptext, ttext = tok:decode(p), tok:decode(t)
    if same(tok:encode(ptext), p) and same(tok:encode(ttext), t) then
      prompts[#prompts + 1] = p
      t[#t + 1] = eos
      completions[#completions + 1] = t
      lines[#lines + 1] = gkd.json.encode{ prompt = ptext, target = ttext }
    end
  end
end
assert(#prompts == n_rows, string.format("only %d usable rows", #prompts))
local f = assert(io.open(out .. "/data.jsonl", "w"))
f:write(table.concat(lines, "\n"), "\n")
f:close()

-- gkd's rows for the task must be exactly the ids the Python side reads.
local task = assert(gkd.task.jsonl{ path = out .. "/data.jsonl", prompt = "{prompt}", target = "target" })
for i = 1, #task do
  local ids, plen = task:tokens(i, tok)
  assert(plen == PROMPT and #ids == PROMPT + TARGET + 1, string.format("row %d: %d + %d tokens", i, plen, #ids - plen))
  assert(same(slice(ids, 1, PROMPT), prompts[i]) and same(slice(ids, PROMPT + 1, #ids), completions[i]),
         "row " .. i .. " differs")
end
f = assert(io.open(out .. "/rows.json", "w"))
f:write(gkd.json.encode{ prompts = prompts, completions = completions, eos = eos, pad = tok.pad or eos,
                         vocab = tok.vocab }, "\n")
f:close()
print(string.format("%d rows of %d + %d tokens, eos %d, vocab %d -> %s", #prompts, PROMPT, TARGET + 1, eos,
                    tok.vocab, out))
