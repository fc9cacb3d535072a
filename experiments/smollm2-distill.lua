-- Distilling a real teacher: SmolLM2-135M-Instruct (a Llama-architecture GGUF, its own 49,152-token
-- byte-level BPE) into a small student with the same tokenizer, on Debian package descriptions
-- (debdesc.jsonl.xz: write the one-line summary of a long description).
-- Optionally first the teacher is fine-tuned on the task (GKD_TEACHER_STEPS = N > 0 SFT steps, saved once
-- as smollm2-teacher-ftN.safetensors and reused); GKD_TEACHER_STEPS = 0 (the default) keeps the generic
-- teacher, the control of docs/results.md.
-- Three runs from one SFT warm start of the student, the same steps and seed:
--   supervised KD: forward KL to the teacher on the reference summaries (lambda 0);
--   on-policy GKD: JSD(0.9) on the student's own samples (lambda 1), the paper's best setting;
--   mixed GKD:     JSD(0.9), lambda 0.5.
-- Reported: held-out ROUGE-L and factual consistency of greedy summaries, and the student's divergence to
-- the teacher on its own samples. The teacher's own score (greedy, the same formatted prompts) is printed
-- for reference.
-- The task format (fixed after session 2's collapse, see experiments/smollm2-probe.lua and docs/results.md):
-- the instruct model's chat template (user turn: an instruction, "Package: NAME", "Description: DOC"; the
-- summary as the assistant turn, ended by <|im_end|>, the model's EOS), prompts cut to max_prompt with the
-- template kept. GKD_FORMAT=raw gives session 2's format instead (no template, no leading space, EOS only).
--
--   tools/fetch-smollm2.sh                         # once: models/SmolLM2-135M-Instruct.Q4_1.gguf
--   gkd run experiments/smollm2-distill.lua        # default size (CPU: about an hour on 2 cores)
--   GKD_SCALE=0.1 gkd run experiments/smollm2-distill.lua   # a quick look
-- Environment: GKD_TEACHER (the .gguf), GKD_DEBDESC (the data), GKD_SCALE, GKD_SEED, GKD_DEVICE,
-- GKD_TEACHER_STEPS, GKD_FORMAT.
local gkd = require "gkd"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local root = here .. "/.."
local scale = tonumber(os.getenv("GKD_SCALE") or "1")
local seed = tonumber(os.getenv("GKD_SEED") or "1")
local device = os.getenv("GKD_DEVICE") or "cpu"
local teacher_path = os.getenv("GKD_TEACHER") or (root .. "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
local data_path = os.getenv("GKD_DEBDESC") or dofile(here .. "/paper/text.lua").find_data("debdesc.jsonl.xz")
local raw = os.getenv("GKD_FORMAT") == "raw"
local teacher_steps = tonumber(os.getenv("GKD_TEACHER_STEPS") or "0")
local tag = (raw and "raw" or "chat") .. (teacher_steps > 0 and ("-ft" .. teacher_steps) or "")

local teacher = assert(gkd.model.load(teacher_path, { device = device, inference = true }))
local tok = teacher.tokenizer
print("teacher: " .. tostring(teacher))

local task = assert(gkd.task.summarize(raw and {
  path = data_path, max_examples = math.max(200, math.floor(6000 * scale)),
  prompt = "Long description: {document}\nPackage: {package}\nDescription:",
} or {
  path = data_path, max_examples = math.max(200, math.floor(6000 * scale)),
  prompt = "Write the one-line summary of this Debian package description.\nPackage: {package}\nDescription: {document}",
  template = "chatml",
}))
local max_seq = 128 -- prompts cut to 104 tokens (template kept): the teacher's forward over the prompt dominates a step
local max_new = 24

-- The teacher fine-tuned on the task (GKD_TEACHER_STEPS > 0): SFT from the GGUF's weights, saved once.
if teacher_steps > 0 then
  local ft_path = string.format("smollm2-teacher-ft%d-%s.safetensors", teacher_steps, raw and "raw" or "chat")
  local ft = io.open(ft_path) and assert(gkd.model.load(ft_path, { tokenizer = tok, device = device, inference = true }))
  if not ft then
    local trainee = assert(gkd.model.load(teacher_path, { device = device, inference = false }))
    gkd.run{
      name = string.format("smollm2/teacher-ft%d-%s", teacher_steps, raw and "raw" or "chat"), method = "sft",
      task = task, student = trainee, steps = teacher_steps, batch = 8, seed = seed, max_new_tokens = 24,
      max_prompt = 104, max_target = 24, loss_chunk = 64,
      lr = gkd.schedule.warmup_cosine(5e-5, 5e-6, math.max(1, teacher_steps // 20), teacher_steps),
      eval = { examples = 32, metrics = { "rougeL", "factual" } },
      -- Resumable (about 21 s a step on 2 cores): run the script again after a kill.
      resume = true, checkpoint = { every = 10 },
    }
    assert(trainee:save(ft_path))
    trainee:close()
    ft = assert(gkd.model.load(ft_path, { tokenizer = tok, device = device, inference = true }))
  end
  teacher:close()
  teacher = ft
  print("teacher fine-tuned: " .. ft_path)
end

-- The student. GKD_STUDENT_LAYERS = N (default 4): N of the teacher's 30 layers, spread evenly, with its
-- embeddings and final norm (gkd.model.from_layers; ~42M parameters for N = 4, most of them the tied
-- 49,152 x 576 embedding). GKD_STUDENT_LAYERS = 0: a 4-layer model of width 192 from random weights (10.7M).
local student_layers = tonumber(os.getenv("GKD_STUDENT_LAYERS") or "4")
local function new_student()
  if student_layers > 0 then
    return gkd.model.from_layers(teacher, { n = student_layers, device = device, inference = false })
  end
  return gkd.model.new{ layers = 4, dim = 192, heads = 4, tokenizer = tok, max_seq_len = max_seq, seed = seed,
                        device = device }
end
local common = {
  task = task, batch = 8, seed = seed, max_new_tokens = max_new, max_prompt = max_seq - max_new,
  max_target = max_new, loss_chunk = 64, quiet = os.getenv("GKD_QUIET") ~= nil,
  eval = { examples = math.max(16, math.floor(64 * scale)), metrics = { "rougeL", "factual" } },
  resume = true, -- a finished run is skipped (its last checkpoint loaded), a stopped one continues
}
local function with(t)
  local out = {}
  for k, v in pairs(common) do out[k] = v end
  for k, v in pairs(t) do out[k] = v end
  return out
end

-- The student's start: cross-entropy on the reference summaries, saved once, loaded by every run.
local warm_steps = math.max(2, math.floor(400 * scale))
local warm_path = string.format("smollm2-warm-%s-L%d-seed%d.safetensors", raw and "raw" or "chat", student_layers, seed)
local warm = new_student()
-- A student cut from the teacher starts pretrained: a small learning rate; one from scratch needs more.
local warm_lr = student_layers > 0 and 1e-4 or 1e-3
gkd.run(with{
  name = string.format("smollm2/%s/L%d/warm-start-seed%d", tag, student_layers, seed), method = "sft", student = warm, steps = warm_steps,
  lr = gkd.schedule.warmup_cosine(warm_lr, warm_lr / 10, math.max(1, warm_steps // 20), warm_steps),
})
assert(warm:save(warm_path))

-- The teacher's own greedy summaries of the held-out prompts gkd.run evaluates on (its split: 0.1, seed 1),
-- formatted exactly as the students' rows (task:tokens); the examples whose prompt is longer than max_prompt
-- are left out here (gkd.run cuts them), and their count is printed.
local function teacher_reference(n)
  local _, held = task:split(0.1, 1)
  local prompts, refs, sources = {}, {}, {}
  for i = 1, #held do
    if #prompts >= n then break end
    local ids, plen = held:tokens(i, tok)
    if plen <= max_seq - max_new then
      local ex = held[i]
      prompts[#prompts + 1] = { table.unpack(ids, 1, plen) }
      refs[#prompts], sources[#prompts] = ex.target, ex.source
    end
  end
  local outs = teacher:sample(prompts, { temperature = 0, max_new_tokens = max_new })
  local rouge, factual = 0, 0
  for i, ys in ipairs(outs) do
    local cut = {}
    for _, y in ipairs(ys) do if y == tok.eos then break end cut[#cut + 1] = y end
    local out = tok:decode(cut)
    if raw then out = out:match("^[^\n]*") end -- session 2's format has no terminator: its first line
    rouge = rouge + gkd.reward.rougeL(out, refs[i])
    factual = factual + gkd.reward.factual(sources[i], out)
  end
  print(string.format("teacher reference: %d held-out prompts that fit in %d tokens", #prompts, max_seq - max_new))
  return { rougeL = rouge / #outs, factual = factual / #outs }
end
local teacher_eval = { eval = teacher_reference(common.eval.examples) }

local steps = math.max(2, math.floor(200 * scale))
local kd_lr = student_layers > 0 and 5e-5 or 3e-4
local lr = gkd.schedule.warmup_cosine(kd_lr, kd_lr / 10, math.max(1, steps // 20), steps)
local runs = {
  { label = "supervised KD (FKL, lambda 0)", method = "supervised_kd", divergence = gkd.fkl() },
  { label = "on-policy GKD (JSD 0.9, lambda 1)", method = "gkd", divergence = gkd.jsd(0.9) },
  { label = "mixed GKD (JSD 0.9, lambda 0.5)", method = "gkd", divergence = gkd.jsd(0.9), lambda = 0.5 },
}
-- GKD_WITH_RL=1 adds GKD + RL: the on-policy JSD(0.9) with the factual-consistency reward at alpha 0.5
-- (4 samples per prompt), to see whether a task reward keeps the student off the degenerate text the
-- teacher alone lets it drift to (docs/results.md).
if os.getenv("GKD_WITH_RL") == "1" then
  runs[#runs + 1] = { label = "GKD + RL (JSD 0.9, factual, alpha 0.5)", method = "gkd", divergence = gkd.jsd(0.9),
                      reward = "factual", alpha = 0.5 }
end
local results = {}
for i, r in ipairs(runs) do
  local student = assert(gkd.model.load(warm_path, { tokenizer = tok, device = device }))
  local out = gkd.run(with{
    name = string.format("smollm2/%s/L%d/%d-%s-seed%d", tag, student_layers, i, r.method, seed), method = r.method,
    teacher = teacher,
    student = student, divergence = r.divergence, lambda = r.lambda, steps = steps, lr = lr,
    reward = r.reward, alpha = r.alpha, group_size = r.reward and 4 or nil,
    checkpoint = { every = math.max(1, steps // 4) },
  })
  results[#results + 1] = { label = r.label, eval = out.eval, seconds = out.seconds }
end

local function row(label, e, seconds)
  print(string.format("%-36s %8.4f %8.4f %12.4f %8s", label, e.rougeL or 0 / 0, e.factual or 0 / 0,
                      e.own_reverse_kl or 0 / 0, seconds and string.format("%.0f s", seconds) or ""))
end
print(string.format("\n%-36s %8s %8s %12s %8s", "held-out, greedy", "ROUGE-L", "factual", "own rev. KL", "time"))
row("teacher (SmolLM2-135M-Instruct)", teacher_eval.eval or {}, nil)
for _, x in ipairs(results) do row(x.label, x.eval, x.seconds) end
