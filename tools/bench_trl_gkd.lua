-- gkd's side of the TRL comparison (tools/bench_trl.py): GKD steps on the weights and rows that
-- tools/bench_trl_prep.lua wrote, set up as docs/trl.md maps TRL's GKDTrainer, timed step by step.
--
--   gkd run tools/bench_trl_gkd.lua DIR LAMBDA STEPS DB [TEACHER_WEIGHTS]
--
-- TEACHER_WEIGHTS: the teacher's weight format, "fp32" (default), "bf16", "q8_0" or "q8_0_a8"
-- (docs/inference-precision.md); the student trains in fp32 either way.
--
-- Prints one line "BENCH_JSON {...}" with the wall time of every step (from one on_step call to the next,
-- so the batch assembly, the metrics written to the run store and the callback are inside), the trainer's
-- own phase times and the mean output length.
local gkd = require "gkd"
local dir, lambda, steps, db = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
assert(dir and lambda and steps and db, "usage: bench_trl_gkd.lua DIR LAMBDA STEPS DB")

local teacher_weights = arg[5] or "fp32"
local teacher = assert(gkd.model.load(dir .. "/teacher", { inference = true, weights = teacher_weights }))
local student = assert(gkd.model.load(dir .. "/student"))
local task = assert(gkd.task.jsonl{ path = dir .. "/data.jsonl", prompt = "{prompt}", target = "target" })

local times, phases, lengths = {}, {}, {}
local last = gkd.sys.clock()
gkd.run{
  name = string.format("bench-trl-lambda%g", lambda), db = db,
  task = task, held_out = 0, teacher = teacher, student = student, teacher_precision = teacher_weights,
  lambda = lambda,                      -- TRL lmbda: 1 every batch sampled, 0 every batch the fixed rows
  divergence = "jsd_trl", beta = 0.5,   -- TRL's generalized_jsd_loss, beta 0.5
  norm = "token",                       -- TRL divides the summed loss by the number of output tokens
  temperature = 1,                      -- TRL temperature (sampling), top_k 0, top_p 1
  max_new_tokens = 32, max_prompt = 64, max_target = 32,
  batch = 8, steps = steps, seed = 1,
  lr = 1e-5, clip = 1.0, adam_betas = { 0.9, 0.999 }, weight_decay = 0, -- TRL: constant lr, max_grad_norm 1
  eval = false, checkpoint = false, quiet = true,
  on_step = function(m)
    local now = gkd.sys.clock()
    times[#times + 1] = now - last
    phases[#phases + 1] = { generate = m.time_generate, teacher = m.time_teacher, student = m.time_student,
                            optimizer = m.time_optimizer }
    lengths[#lengths + 1] = m.output_length
    last = gkd.sys.clock()
  end,
}
print("BENCH_JSON " .. gkd.json.encode{ step_s = times, phases = phases, output_length = lengths })
