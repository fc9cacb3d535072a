-- A lambda x beta sweep (user story: a sweep): how much on-policy data (lambda) and which JSD(beta)
-- work best, over 3 seeds, with worker processes. Resumable: run it again after a crash or Ctrl-C and
-- only the missing runs are trained.
--
--   gkd sweep experiments/sweep-lambda-beta.lua --workers 2
--   gkd report runs.db                      # tables of the results
--
-- Every student starts from a short supervised warm start of its seed (as in `gkd quickstart`: from
-- random weights, on-policy training sees only the student's noise and collapses). The warm starts and the
-- teacher are runs like any other, trained by the first process and skipped (loaded from their final
-- checkpoints) by every worker; a sweep point copies its seed's warm start (from_layers with every layer).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local setup = dofile(here .. "/common.lua")
local teacher = setup.teacher()
local steps = math.max(2, math.floor(150 * setup.scale))
local warm_steps = math.max(1, math.floor(50 * setup.scale))
local seeds = { 1, 2, 3 }

local warm = {}
for _, seed in ipairs(seeds) do
  local w = setup.student(seed)
  gkd.run{
    name = "lambda-beta/warm-start-seed" .. seed, method = "sft", task = setup.task, student = w, seed = seed,
    steps = warm_steps, batch = 16, lr = 2e-3, max_new_tokens = 32, eval = false, resume = true, quiet = true,
  }
  warm[seed] = w
end

return {
  name = "lambda-beta",
  grid = { lambda = { 0, 0.5, 1 }, beta = { 0.1, 0.5, 0.9 } },
  seeds = seeds,
  workers = 2,
  run = function(p)   -- p = {lambda = ..., beta = ..., seed = ..., name = ...}
    local w = warm[p.seed]
    return {
      task = setup.task, teacher = teacher, student = gkd.model.from_layers(w, { n = w.layers }),
      divergence = gkd.jsd(p.beta), lambda = p.lambda, seed = p.seed,
      steps = steps, batch = 16, max_new_tokens = 32,
      lr = gkd.schedule.warmup_cosine(2e-3, 2e-4, math.max(1, steps // 20), steps),
      eval = { examples = 52, metrics = { "rougeL", "factual" } },
      quiet = true,
    }
  end,
  summary = { "loss", "eval.rougeL", "eval.factual", "eval.own_forward_kl" },
}
