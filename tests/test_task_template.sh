#!/usr/bin/env bash
# ctest-labels: cpu
# Task options `template` and `terminator` (issue 11, item 6) and gkd.run's warning when the teacher gives EOS
# a tiny probability at the end of the references:
# - a task's rows (task:tokens, the rows gkd.run trains on) are the tokenizer's encodings of the template
#   parts (added tokens matched), the prompt, target_prefix + target, the terminator and EOS, with no
#   second EOS when the terminator is EOS; without the options they are prompt + target + EOS as before;
# - unknown template names and keys, and a template without {prompt}, are errors naming the option;
# - the format survives task:split and gkd.run's own held-out split (the held-out rows are formatted);
# - the teacher's EOS probability is the mean of exp(logprob) of the final EOS of the rows; below 1e-3,
#   gkd.run prints a warning naming it and records it under "warnings" in the run's config; above, nothing.
set -uo pipefail
bin="${GKD_BIN:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=1

cat >case.lua <<'LUA'
local fails = 0
local function check(what, cond)
  print((cond and "ok   " or "FAIL ") .. what)
  if not cond then fails = fails + 1 end
end
local function cat(...)
  local out = {}
  for _, list in ipairs({...}) do for _, v in ipairs(list) do out[#out + 1] = v end end
  return out
end
local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local plain = gkd.task.arithmetic{n = 40}
local tok = gkd.tokenizer.train{task = plain, vocab = 320,
  specials = {"<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"}}
local eos, im_end = tok.eos, tok:encode("<|im_end|>", true)
check("<|im_end|> is one added token, not EOS", #im_end == 1 and im_end[1] ~= eos)

-- no options: unchanged rows
local ex = plain[1]
local ids, P = plain:tokens(1, tok)
check("plain row = prompt + target + EOS", same(ids, cat(tok:encode(ex.prompt), tok:encode(ex.target), {eos}))
  and P == #tok:encode(ex.prompt))

-- chatml: template around the prompt, <|im_end|> then EOS after the target
local chat = gkd.task.arithmetic{n = 40, template = "chatml"}
ex = chat[1]
check("example texts stay bare", ex.prompt == plain[1].prompt and ex.target == plain[1].target)
ids, P = chat:tokens(1, tok)
local want_prompt = cat(tok:encode("<|im_start|>user\n", true), tok:encode(ex.prompt),
  tok:encode("<|im_end|>\n<|im_start|>assistant\n", true))
check("chatml row = template(prompt) + target + <|im_end|> + EOS",
  same(ids, cat(want_prompt, tok:encode(ex.target), im_end, {eos})) and P == #want_prompt)

-- a table template with a target prefix, and a terminator that is EOS: no second EOS
local jt = assert(gkd.task.summarize{max_examples = 6, template = {prompt = "Q: {prompt} A:", target_prefix = " "},
  terminator = "<|endoftext|>"})
ex = jt[2]
ids, P = jt:tokens(2, tok)
want_prompt = cat(tok:encode("Q: ", true), tok:encode(ex.prompt), tok:encode(" A:", true))
check("table template + EOS terminator: one EOS, target encoded with its prefix",
  same(ids, cat(want_prompt, tok:encode(" " .. ex.target), {eos})) and P == #want_prompt)
check("terminator alone (\\n): target + \\n + EOS", (function()
  local t = gkd.task.arithmetic{n = 3, terminator = "\n"}
  local r = t:tokens(1, tok)
  return same(r, cat(tok:encode(t[1].prompt), tok:encode(t[1].target), tok:encode("\n"), {eos}))
end)())
local d = jt:describe()
check("describe() records template and terminator",
  d.template and d.template.prompt == "Q: {prompt} A:" and d.template.target_prefix == " " and d.terminator == "<|endoftext|>")
local a, b = chat:split(0.25, 1)
check("split keeps the format", same(a:tokens(1, tok), cat(tok:encode("<|im_start|>user\n", true),
  tok:encode(a[1].prompt), tok:encode("<|im_end|>\n<|im_start|>assistant\n", true), tok:encode(a[1].target), im_end, {eos}))
  and b:describe().terminator == "<|im_end|>")

for _, case in ipairs({
  {{n = 2, template = "llama9"}, "template"}, {{n = 2, template = {prompt = "no placeholder"}}, "{prompt}"},
  {{n = 2, template = {prompt = "{prompt}", suffix = "x"}}, "suffix"}, {{n = 2, template = 3}, "template"},
}) do
  local ok, err = pcall(gkd.task.arithmetic, case[1])
  check("refused: " .. tostring(err), not ok and tostring(err):find(case[2], 1, true) ~= nil)
end

-- the teacher's EOS probability: the mean of exp(logprob) of the final EOS
local function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 128, seed = seed}
end
local teacher, student = model(7), model(1)
local p, n = gkd.util.teacher_eos_probability(teacher, chat, tok, 4)
local sum = 0
for i = 1, 4 do local lp = teacher:logprobs((chat:tokens(i, tok))) sum = sum + math.exp(lp[#lp]) end
check(string.format("EOS probability %.4g over %d rows = the logprobs' mean %.4g", p, n, sum / 4),
  n == 4 and math.abs(p - sum / 4) < 1e-9)

-- the warning: a teacher that never ends (probability forced tiny), and one that does
local real = gkd.util.teacher_eos_probability
local function run(name, prob)
  gkd.util.teacher_eos_probability = function() return prob, 16 end
  local r = gkd.run{name = name, db = "runs.db", task = chat, teacher = teacher, student = student, steps = 1,
    batch = 2, max_new_tokens = 4, max_prompt = 96, eval = {examples = 2}, checkpoint = false, quiet = true}
  gkd.util.teacher_eos_probability = real
  local store <close> = assert(gkd.store.open("runs.db"))
  local rows = store:query("SELECT config FROM runs WHERE id = ?", r.run_id)
  return gkd.json.decode(rows[1].config)
end
local cfg = run("never-ends", 6e-6)
check("warning recorded in the run config", cfg.warnings and cfg.warnings[1]:find("6e-06", 1, true)
  and cfg.warnings[1]:find("terminator", 1, true) ~= nil)
check("format recorded with the task", cfg.task.template ~= nil and cfg.task.terminator == "<|im_end|>")
cfg = run("ends", 0.5)
check("no warning when the teacher ends", cfg.warnings == nil)

-- a numeric held_out keeps the format: the run's own split evaluates exactly as the same split passed as a
-- task (task:split(frac, 1), the seed gkd.run uses); held_out = 0 trains on everything.
local function held(name, held_out)
  gkd.util.teacher_eos_probability = function() return 0.5, 16 end
  local r = gkd.run{name = name, db = "runs.db", task = chat, held_out = held_out, teacher = teacher,
    student = student, steps = 1, lr = 0, batch = 2, max_new_tokens = 4, max_prompt = 96, eval = {examples = 2},
    checkpoint = false, quiet = true}
  gkd.util.teacher_eos_probability = real
  return r
end
local _, chat_held = chat:split(0.2, 1)
local a, b = held("held-frac", 0.2), held("held-task", chat_held)
check("numeric held_out keeps the template (ce " .. tostring(a.eval.ce_loss) .. " vs " .. tostring(b.eval.ce_loss) .. ")",
  a.eval.ce_loss == b.eval.ce_loss)
check("held_out = 0 trains", held("held-none", 0).step == 1)
os.exit(fails == 0 and 0 or 1)
LUA
timeout 120 "$bin" run case.lua >out.txt 2>err.txt; rc=$?
cat out.txt
fails=0
[ "$rc" -eq 0 ] || { echo "FAIL case.lua exit $rc" >&2; cat err.txt >&2; fails=1; }
if grep -q "never-ends: warning: the teacher's mean probability of EOS .* is 6e-06" err.txt; then
  echo "ok   warning printed for never-ends"
else echo "FAIL no warning printed" >&2; cat err.txt >&2; fails=1; fi
if grep -q "^ends: warning" err.txt; then echo "FAIL warning printed for ends" >&2; fails=1; else echo "ok   none for ends"; fi
exit $fails
