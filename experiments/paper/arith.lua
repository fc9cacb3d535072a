-- The paper's comparison (GKD, Agarwal et al. 2024) on `arith`, a task where the teacher is good:
-- 4-digit addition, digits least significant first, carries shown (experiments/paper/arith_data.lua).
--
--   ./build/gkd run experiments/paper/arith.lua        # everything; resumable: run it again after a kill
--   GKD_SMOKE=1 ./build/gkd run experiments/paper/arith.lua   # seconds: tiny models and steps
--   ./build/gkd run experiments/paper/report.lua       # docs/paper-results-arith.md from the run store
--
-- What it does, each part a run in OUT/runs.db (OUT = $GKD_PAPER_OUT or out/paper-arith), looked up by
-- name first so that a rerun skips what finished and continues what stopped:
-- 1. Data: problems drawn by a fixed generator, split by a hash of "a+b" into train (80 %), validation
--    (10 %) and test (10 %), written to OUT/data/*.jsonl. Evaluations along the way read validation; the
--    final numbers read test (set GKD_PAPER_FINAL=validation to keep the test split closed).
-- 2. The teacher: trained from scratch with SFT on the train split, checkpointed. Gate: exact match on
--    test >= 0.9, else the script stops with an error (not checked in smoke runs).
-- 3. One SFT warm start of the student (4 times fewer parameters), saved once (runs "arith/warm-start"
--    and "arith/warm-start-2"); every method and seed starts from it. Seeds change the data order, the
--    lambda coins and the sampling, not the start.
-- 4. The methods, each from the warm start with the same steps x batch: SFT (continued), supervised KD
--    (lambda 0, forward KL), SeqKD (cross-entropy on the teacher's greedy outputs), ImitKD (lambda 0 -> 1
--    per row), on-policy GKD (lambda 1) with forward KL, reverse KL, JSD(0.1), JSD(0.5), JSD(0.9); then
--    lambda 0.5 with the on-policy divergence that learned fastest on validation (area under the
--    exact-match curve). Two worker processes (gkd.sweep) over seeds 1..3.
-- 5. The final models on the final split: a zero-step run "<run>/final" per model holds exact match,
--    digit accuracy, the degenerate-output rate, length, and the divergences to the teacher on the
--    references (teacher-forced) and on the student's own greedy outputs.
-- Knobs: GKD_SMOKE=1, GKD_SCALE (steps x this), GKD_SEEDS (e.g. "1,2"), GKD_EARLY_SEEDS (the seeds of the
-- optional early comparison, 4b; default GKD_SEEDS), GKD_WORKERS, GKD_PAPER_OUT.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local lib = dofile(here .. "/lib.lua")
local D = dofile(here .. "/arith_data.lua")

local OUT = os.getenv("GKD_PAPER_OUT") or "out/paper-arith"
local DB = gkd.options.db or (OUT .. "/runs.db")
gkd.options.db = DB -- sweep workers and gkd.run both read it
local FINAL = os.getenv("GKD_PAPER_FINAL") or "test"
local worker = gkd.options.worker_point ~= nil
lib.mkdir(OUT)

local function note(what)
  if not worker then lib.note(OUT, what) end
end
note("start")

local S = lib.smoke and {
  problems = 800, distill_examples = 200,
  teacher = { layers = 1, dim = 32 }, teacher_steps = 4, teacher_lr = 1e-3,
  student = { layers = 1, dim = 32 }, warm_steps = 3, warm_lr = 1e-3, warm2_steps = 2,
  steps = 4, batch = 4, lr = 1e-3, eval_every = 2, eval_examples = 8, final_examples = 16,
  seeds = { 1, 2 }, workers = 2, gate = nil, early_steps = 4,
} or {
  problems = 30000, distill_examples = 8000,
  teacher = { layers = 4, dim = 128 }, teacher_steps = 2000, teacher_lr = 1e-3,
  student = { layers = 4, dim = 64 }, warm_steps = 500, warm_lr = 1e-3, warm2_steps = 1200,
  steps = 400, batch = 32, lr = 1e-3, eval_every = 25, eval_examples = 192, final_examples = 1000,
  seeds = { 1, 2, 3 }, workers = 2, gate = 0.9, early_steps = 1500,
}
S.steps = math.max(2, math.floor(S.steps * lib.scale))
if os.getenv("GKD_SEEDS") then
  S.seeds = {}
  for s in os.getenv("GKD_SEEDS"):gmatch("%d+") do S.seeds[#S.seeds + 1] = tonumber(s) end
end
S.early_seeds = S.seeds
if os.getenv("GKD_EARLY_SEEDS") then
  S.early_seeds = {}
  for s in os.getenv("GKD_EARLY_SEEDS"):gmatch("%d+") do S.early_seeds[#S.early_seeds + 1] = tonumber(s) end
end
S.workers = tonumber(os.getenv("GKD_WORKERS") or "") or S.workers
local MAX_NEW = 24 -- the longest target is 19 tokens + EOS
local SEQ = 48     -- prompt 13 tokens + 24

-- 1. Data (the parent writes it; workers find it).
local data_dir = OUT .. "/data"
D.ensure(data_dir, S.problems, worker)
local train = D.task(data_dir, "train")
local distill_train = D.task(data_dir, "train", S.distill_examples)
local validation = D.task(data_dir, "validation", S.eval_examples)
local final_split = D.task(data_dir, FINAL, S.final_examples)
local tok = gkd.tokenizer.train{ task = train, vocab = 300 }
if not worker then assert(tok:save(OUT .. "/tokenizer.json")) end

local function model(shape, seed)
  return gkd.model.new{ layers = shape.layers, dim = shape.dim, heads = 4, tokenizer = tok, max_seq_len = SEQ, seed = seed }
end
local function ckpt(name) return { dir = OUT .. "/checkpoints/" .. name } end
local metrics = D.metrics

-- A run that only evaluates a trained model on the final split (every example up to final_examples).
local function final_eval(name, student, teacher)
  local r = gkd.run{
    name = name .. "/final", method = teacher and "supervised_kd" or "sft", task = distill_train,
    -- One step at learning rate 0 (no weight decay): gkd.run evaluates only after a step (a zero-step
    -- run records no evaluation), and this step leaves the weights as they are.
    held_out = final_split, student = student, teacher = teacher, steps = 1, lr = 0, weight_decay = 0, batch = 64,
    max_new_tokens = MAX_NEW, eval = { examples = S.final_examples, metrics = metrics },
    checkpoint = false, resume = true, quiet = true,
  }
  return r.eval
end

local function sft(name, student, steps, lr, task)
  return gkd.run{
    name = name, method = "sft", task = task, held_out = validation, student = student,
    steps = steps, batch = 32, lr = gkd.schedule.warmup_cosine(lr, lr / 10, math.max(1, steps // 20), steps),
    max_new_tokens = MAX_NEW, eval = { every = math.max(1, steps // 5), examples = S.eval_examples, metrics = metrics },
    checkpoint = { dir = ckpt(name).dir, every = math.max(1, steps // 5) }, resume = true, quiet = worker or nil,
  }
end

-- 2. The teacher.
local teacher = model(S.teacher, 1000)
sft("arith/teacher", teacher, S.teacher_steps, S.teacher_lr, train)
if not worker then
  local e = final_eval("arith/teacher", teacher, nil)
  print(string.format("teacher (%s): %s exact match %.3f, digit accuracy %.3f", tostring(teacher), FINAL, e.exact, e.digit_acc))
  if S.gate and e.exact < S.gate then
    error(string.format("arith: the teacher's %s exact match %.3f is under the gate %.2f: train it longer "
      .. "(delete its runs from %s and its checkpoints, or raise teacher_steps)", FINAL, e.exact, S.gate, DB), 0)
  end
end

-- 3. The warm start, in two SFT runs: 500 steps (cosine learning rate), then 1200 at a constant 1e-3.
-- Measured here: this student's exact match stays at 0 for about 1600 SFT steps, then climbs to ~0.9 within
-- 300 steps (a sudden "breakthrough", like the teacher's at 800-1200). The second run stops just after it
-- (validation exact match ~0.3), so the SFT student is clearly worse than the teacher and every method
-- starts where learning is fast: the comparison measures how fast each closes the gap.
local warm = model(S.student, 1)
sft("arith/warm-start", warm, S.warm_steps, S.warm_lr, distill_train)
gkd.run{
  name = "arith/warm-start-2", method = "sft", task = distill_train, held_out = validation, student = warm,
  steps = S.warm2_steps, batch = 32, lr = S.warm_lr, seed = 1, max_new_tokens = MAX_NEW,
  eval = { every = math.max(1, S.warm2_steps // 6), examples = S.eval_examples, metrics = metrics },
  checkpoint = { dir = ckpt("arith/warm-start-2").dir, every = math.max(1, S.warm2_steps // 6) }, resume = true,
  quiet = worker or nil,
}
if not worker then
  local e = final_eval("arith/warm-start-2", warm, teacher)
  print(string.format("SFT warm start (%s): %s exact match %.3f, digit accuracy %.3f", tostring(warm), FINAL, e.exact, e.digit_acc))
end

-- 4. The methods.
local VARIANTS = lib.variants()
local ORDER = lib.ORDER

local function point(p)
  local v = VARIANTS[p.variant]
  local cfg = {
    task = distill_train, held_out = validation, teacher = teacher,
    student = gkd.model.from_layers(warm, { n = warm.layers }), seed = p.seed,
    steps = S.steps, batch = S.batch, max_new_tokens = MAX_NEW,
    lr = gkd.schedule.warmup_cosine(S.lr, S.lr / 10, math.max(1, S.steps // 20), S.steps),
    eval = { every = S.eval_every, examples = S.eval_examples, metrics = metrics },
    checkpoint = { dir = ckpt(p.name).dir, every = math.max(1, S.steps // 4) }, quiet = true,
  }
  for k, x in pairs(v) do cfg[k] = x end
  return cfg
end

local phase1 = gkd.sweep{
  name = "arith", grid = { variant = ORDER }, seeds = S.seeds, workers = S.workers, run = point,
  summary = { "eval.exact", "eval.digit_acc", "eval.own_forward_kl" },
}

-- The on-policy divergence that learned fastest on validation: mean area under the exact-match curve.
local function best_on_policy(result)
  local store <close> = assert(gkd.store.open(DB, { readonly = true }))
  local best, best_auc
  for _, name in ipairs(ORDER) do
    if name:match("^gkd%-") then
      local aucs = {}
      for _, seed in ipairs(S.seeds) do
        local r = lib.finished_run(store, "arith/variant=" .. name .. ",seed=" .. seed)
        if r then aucs[#aucs + 1] = lib.auc(lib.curve(store, r.id, "exact")) end
      end
      local m = lib.mean_std(aucs)
      if m and (not best_auc or m > best_auc) then best, best_auc = name, m end
    end
  end
  return best, best_auc
end

local best = best_on_policy(phase1)
if best then
  VARIANTS["mix0.5-" .. best:sub(5)] = { method = "gkd", lambda = 0.5, divergence = VARIANTS[best].divergence }
  gkd.sweep{
    name = "arith-mix", grid = { variant = { "mix0.5-" .. best:sub(5) } }, seeds = S.seeds, workers = S.workers,
    run = point, summary = { "eval.exact", "eval.digit_acc", "eval.own_forward_kl" },
  }
end
-- 4b. Optional (GKD_ARITH_EARLY=1): the same methods from the first warm-start run alone, before the
-- student's breakthrough (exact match 0), at a constant learning rate: which method breaks through first.
if os.getenv("GKD_ARITH_EARLY") == "1" then
  local early = model(S.student, 1)
  do
    local store <close> = assert(gkd.store.open(DB, { readonly = true }))
    local r = assert(lib.finished_run(store, "arith/warm-start"), "arith: no finished arith/warm-start run")
    local _, path = store:checkpoint_latest(r.id)
    assert(early:load_weights(path .. "/model.safetensors"))
  end
  if not worker then
    local e = final_eval("arith/warm-start", early, teacher)
    print(string.format("first warm-start run: %s exact match %.3f, digit accuracy %.3f", FINAL, e.exact, e.digit_acc))
  end
  gkd.sweep{
    name = "arith-early", grid = { variant = { "sft", "supervised_kd", "gkd-fkl" } }, seeds = S.early_seeds,
    workers = S.workers, summary = { "eval.exact", "eval.digit_acc" },
    run = function(p)
      local cfg = point(p)
      cfg.student = gkd.model.from_layers(early, { n = early.layers })
      cfg.steps, cfg.lr = S.early_steps, S.lr
      cfg.eval.every = math.max(1, S.early_steps // 15)
      cfg.checkpoint.every = math.max(1, S.early_steps // 4)
      return cfg
    end,
  }
end
if worker then return end

-- 5. Final numbers of every finished model.
local todo = lib.finished_checkpoints(DB, { "arith", "arith-mix", "arith-early" })
for _, t in ipairs(todo) do
  local m = model(S.student, 1)
  assert(m:load_weights(t.path .. "/model.safetensors"))
  final_eval(t.name, m, teacher)
  m:close()
end

note("end")
local report = dofile(here .. "/report.lua")
local md = report.arith{ db = DB, out = OUT .. "/report.md", data_dir = data_dir }
print(md)
