-- A lambda x beta sweep (user story: a sweep): how much on-policy data (lambda) and which JSD(beta)
-- work best, over 2 seeds, with worker processes. Resumable: run it again after a crash or Ctrl-C and
-- only the missing runs are trained.
--
--   gkd sweep experiments/sweep-lambda-beta.lua --workers 2
--   gkd report runs.db                      # tables of the results
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local setup = dofile(here .. "/common.lua")
local teacher = setup.teacher()   -- trained by the first process, loaded from its checkpoint by workers
local steps = math.floor(100 * setup.scale)

return {
  name = "lambda-beta",
  grid = { lambda = { 0, 0.5, 1 }, beta = { 0.1, 0.5, 0.9 } },
  seeds = { 1, 2 },
  workers = 2,
  run = function(p)   -- p = {lambda = ..., beta = ..., seed = ..., name = ...}
    return {
      task = setup.task, teacher = teacher, student = setup.student(p.seed),
      divergence = gkd.jsd(p.beta), lambda = p.lambda, seed = p.seed,
      steps = steps, batch = 16, max_new_tokens = 32,
      lr = gkd.schedule.warmup_cosine(5e-4, 5e-5, 10, steps),
      eval = { examples = 32, metrics = { "rougeL", "factual" } },
      quiet = true,
    }
  end,
  summary = { "loss", "eval.rougeL", "eval.factual", "eval.own_forward_kl" },
}
