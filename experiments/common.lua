-- Shared set-up of the example experiments: the built-in Debian package-description sample as a
-- summarisation task, a tokenizer trained on it, and a small teacher trained on the references (SFT).
-- The teacher is a run like any other, looked up by name first (resume = true): trained once, then
-- loaded from its checkpoint by every later script and by every sweep worker.
-- Usage from an experiment: local setup = dofile(gkd_experiments .. "/common.lua") (see the scripts).
local gkd = require "gkd"

local M = {}

-- Sizes: small enough for a laptop CPU. Scale with the environment variable GKD_SCALE (default 1).
M.scale = tonumber(os.getenv("GKD_SCALE") or "1")

M.task = assert(gkd.task.summarize{path = gkd.data_path("debdesc-sample")})
M.tokenizer = gkd.tokenizer.train{task = M.task, vocab = 512}

function M.model(layers, dim, seed)
  return gkd.model.new{layers = layers, dim = dim, heads = 4, tokenizer = M.tokenizer, max_seq_len = 192, seed = seed}
end

-- The teacher: 4 layers, dim 128, trained with cross-entropy on the references.
function M.teacher()
  local teacher = M.model(4, 128, 1000)
  gkd.run{
    name = "debdesc-teacher", method = "sft", task = M.task, student = teacher,
    steps = math.floor(300 * M.scale), batch = 16, lr = gkd.schedule.warmup_cosine(1e-3, 1e-4, 20, math.floor(300 * M.scale)),
    max_new_tokens = 32, eval = {examples = 32, metrics = {"rougeL"}}, resume = true,
  }
  return teacher
end

-- A student: 2 layers, dim 64.
function M.student(seed)
  return M.model(2, 64, seed or 1)
end

return M
