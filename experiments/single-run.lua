-- One distillation run (user story: a single run). A small teacher is trained on the built-in Debian
-- package-description sample (once; later runs load it), then a smaller student is distilled from it
-- on-policy (lambda = 1: the student learns on its own samples) with the generalized JSD(0.9), the
-- paper's choice for summarisation. Everything lands in runs.db.
--
--   gkd run experiments/single-run.lua            # default size
--   GKD_SCALE=0.2 gkd run experiments/single-run.lua   # a quick look
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local setup = dofile(here .. "/common.lua")
local teacher = setup.teacher()
local steps = math.floor(200 * setup.scale)

local result = gkd.run{
  name = "single-run/on-policy-jsd0.9",
  task = setup.task, teacher = teacher, student = setup.student(1),
  method = "gkd",                                -- on-policy: lambda = 1
  divergence = gkd.jsd(0.9),
  temperature = 1.0,                             -- the student's sampling temperature
  lr = gkd.schedule.warmup_cosine(5e-4, 5e-5, 10, steps),
  steps = steps, batch = 16, max_new_tokens = 32, seed = 1,
  eval = { every = math.max(1, steps // 4), examples = 32,
           metrics = { "rougeL", "factual", "distinct2" } },
  checkpoint = { every = math.max(1, steps // 4) },
}

print(string.format("student after %d steps: loss %.4f, held-out ROUGE-L %.3f, factual %.3f, distinct-2 %.3f",
  result.step, result.loss, result.eval.rougeL, result.eval.factual, result.eval.distinct2))
print(string.format("divergence on its own samples: forward KL %.4f (run %d in runs.db)",
  result.eval.own_forward_kl, result.run_id))
