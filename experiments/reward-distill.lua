-- Distillation with a reward written in Lua (user story: reward + distillation), the paper's GKD + RL
-- objective (section 3.2):  maximise (1 - alpha) E[r(y)] - alpha E[D(teacher || student)(y)]
-- on the student's own samples. The reward asks a summary to be supported by its document (factual
-- consistency) and to stay short; alpha weighs the divergence against it. The same Lua function is also
-- an evaluation metric, so its value on held-out samples is recorded with every evaluation.
--
--   gkd run experiments/reward-distill.lua
--   GKD_SCALE=0.2 gkd run experiments/reward-distill.lua   # a quick look
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local setup = dofile(here .. "/common.lua")
local teacher = setup.teacher()
local steps = math.floor(200 * setup.scale)

-- r(y) in [-0.2, 1]: the share of the summary its document supports, minus a penalty past 16 words.
local function reward(sample)
  local factual = gkd.reward.factual(sample.source, sample.output)
  local words = gkd.reward.words(sample.output)
  return factual - 0.2 * gkd.reward.length_penalty(words, 1, 16, 8)
end

local result = gkd.run{
  name = "reward-distill/factual-alpha0.2",
  task = setup.task, teacher = teacher, student = setup.student(3),
  divergence = gkd.rkl(),        -- reverse KL: mode seeking, as the paper pairs with RL
  reward = reward,
  alpha = 0.2,                   -- 0.8 of the objective is the reward, 0.2 the divergence
  group_size = 4,                -- 4 samples per prompt, leave-one-out baseline
  steps = steps, batch = 16, max_new_tokens = 32, seed = 3,
  lr = gkd.schedule.warmup_cosine(3e-4, 3e-5, 10, steps),
  eval = {
    every = math.max(1, steps // 5), examples = 32,
    metrics = {
      "factual", "rougeL",
      reward = function(output, example) return reward{ source = example.source, output = output } end,
    },
  },
  on_eval = function(e)
    print(string.format("  eval: reward %.3f  factual %.3f  ROUGE-L %.3f", e.reward, e.factual, e.rougeL))
  end,
}
print(string.format("training reward %.3f, held-out reward %.3f after %d steps (run %d)",
  result.reward, result.eval.reward, result.step, result.run_id))
