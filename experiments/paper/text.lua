-- The paper's comparison on a text task (debdesc.lua, ddtp-de.lua): the parts they share. A task file
-- gives its data preparation, prompt format, metrics and sizes; this file runs the same steps as arith.lua:
-- the teacher on the full train split, one SFT warm start of a smaller student, every method x seeds from
-- it, lambda 0.5 with the best on-policy divergence, optionally the GKD + RL alpha curve, and the final
-- numbers of every model on the final split (test unless GKD_PAPER_FINAL says otherwise).
-- Every part is a run in OUT/runs.db found by name first, so running the script again after a kill skips
-- what finished and continues what stopped from its last checkpoint.
local gkd = require "gkd"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local lib = dofile(here .. "/lib.lua")

local M = {}

-- The data file `file` (e.g. "debdesc.jsonl.xz"): $GKD_DATA_DIR, then data/ at the repository root
-- (tools/rebuild-data.sh writes it), then the shared copies beside the checkout (../shared/data).
function M.find_data(file)
  local tried = {}
  local dirs = { os.getenv("GKD_DATA_DIR"), here .. "/../../data", here .. "/../../../shared/data" }
  for i = 1, 3 do
    if dirs[i] then
      local p = dirs[i] .. "/" .. file
      if gkd.sys.exists(p) then return p end
      tried[#tried + 1] = p
    end
  end
  error(string.format("no %s (tried %s): run tools/rebuild-data.sh, or set GKD_DATA_DIR", file,
    table.concat(tried, ", ")), 0)
end

-- Calls fn(row, line) for each line of an xz-compressed (or plain) JSONL file; errors name file:line.
function M.each_jsonl(path, fn)
  local xz = path:match("%.xz$")
  local h
  if xz then
    h = assert(io.popen("xz -dc -- '" .. path:gsub("'", "'\\''") .. "'"))
  else
    h = assert(io.open(path))
  end
  local n = 0
  for line in h:lines() do
    n = n + 1
    local row, err = gkd.json.decode(line)
    if type(row) ~= "table" then error(string.format("%s:%d: %s", path, n, err or "not a JSON object"), 0) end
    fn(row, n)
  end
  local ok, _, code = h:close()
  if xz and not ok then error(string.format("%s: xz -dc failed (exit %s)", path, tostring(code)), 0) end
  return n
end

-- Writes rows (each with a `key`) to DIR/{train,validation,test}.jsonl by lib.split_of(key). Returns the
-- counts. A stamp file records what was written so that a rerun with other settings rewrites it.
function M.write_splits(dir, rows, stamp)
  lib.mkdir(dir)
  local f = io.open(dir .. "/STAMP")
  local have = f and f:read("a")
  if f then f:close() end
  local split = { train = {}, validation = {}, test = {} }
  for _, r in ipairs(rows) do
    local s = split[lib.split_of(r.key)]
    s[#s + 1] = r
  end
  if have ~= stamp then
    for name, list in pairs(split) do lib.write_jsonl(dir .. "/" .. name .. ".jsonl", list) end
    local g = assert(io.open(dir .. "/STAMP", "w")); g:write(stamp); g:close()
  end
  return { train = #split.train, validation = #split.validation, test = #split.test }
end

-- Degenerate outputs: empty, or a word 3-gram repeated (the run-on loops of a collapsed student).
function M.degenerate(out, _)
  local words = {}
  for w in out:gmatch("%S+") do words[#words + 1] = w end
  if #words == 0 then return 1 end
  local seen = {}
  for i = 1, #words - 2 do
    local g = words[i] .. " " .. words[i + 1] .. " " .. words[i + 2]
    if seen[g] then return 1 end
    seen[g] = true
  end
  return 0
end

-- Output length over reference length, in words.
function M.len_ratio(out, ex)
  local a, b = 0, 0
  for _ in out:gmatch("%S+") do a = a + 1 end
  for _ in ex.target:gmatch("%S+") do b = b + 1 end
  return a / math.max(1, b)
end

local function note(out, what, worker)
  if not worker then lib.note(out, what) end
end

M.VARIANTS = lib.variants()
M.ORDER = lib.ORDER

local function seeds_from(env, default)
  local v = os.getenv(env)
  if not v then return default end
  local out = {}
  for s in v:gmatch("%d+") do out[#out + 1] = tonumber(s) end
  return out
end

-- 1. The settings, the data and the tokenizer (the parent writes them; workers read them): the context of the
-- steps below.
local function prepare(spec)
  local S = spec.S
  local OUT = os.getenv("GKD_PAPER_OUT") or spec.out
  local DB = gkd.options.db or (OUT .. "/runs.db")
  gkd.options.db = DB
  local FINAL = os.getenv("GKD_PAPER_FINAL") or "test"
  local worker = gkd.options.worker_point ~= nil
  local name = spec.name
  lib.mkdir(OUT)
  note(OUT, "start", worker)
  S.steps = math.max(2, math.floor(S.steps * lib.scale))
  S.seeds = seeds_from("GKD_SEEDS", S.seeds)
  S.workers = tonumber(os.getenv("GKD_WORKERS") or "") or S.workers

  local data_dir = OUT .. "/data"
  if not worker then
    -- The split sizes, for the report (which reads only the run store and the files beside it).
    local counts = spec.prepare(data_dir)
    local f = assert(io.open(OUT .. "/counts.json", "w"))
    f:write(gkd.json.encode(counts), "\n")
    f:close()
  end
  local train = spec.task(data_dir, "train")
  local distill_train = S.distill_examples and spec.task(data_dir, "train", S.distill_examples) or train
  local validation = spec.task(data_dir, "validation", S.eval_examples)
  local final_split = spec.task(data_dir, FINAL, S.final_examples)
  -- Saved models (report.lua save, committed in experiments/paper/results/TASK): the teacher, the warm start and
  -- their tokenizer, loaded instead of trained (set GKD_PAPER_RETRAIN=1 to train them again; never in smoke
  -- runs, which use GKD_PAPER_SAVED to point at a folder of their own).
  local saved_dir = os.getenv("GKD_PAPER_SAVED") or (not lib.smoke and (here .. "/results/" .. name)) or nil
  local saved = saved_dir and os.getenv("GKD_PAPER_RETRAIN") ~= "1" and gkd.sys.exists(saved_dir .. "/teacher.safetensors")
    and gkd.sys.exists(saved_dir .. "/warm-start.safetensors") and gkd.sys.exists(saved_dir .. "/tokenizer.json")
  local tok_path = OUT .. "/tokenizer.json"
  local tok
  if saved then
    tok = assert(gkd.tokenizer.load(saved_dir .. "/tokenizer.json"))
    if not worker then assert(tok:save(tok_path)) end
  elseif gkd.sys.exists(tok_path) then
    tok = assert(gkd.tokenizer.load(tok_path))
  else
    assert(not worker, name .. ": tokenizer missing in a worker")
    tok = gkd.tokenizer.train{ task = train, vocab = S.vocab }
    assert(tok:save(tok_path))
  end
  return { spec = spec, S = S, OUT = OUT, DB = DB, FINAL = FINAL, worker = worker, name = name, data_dir = data_dir,
    train = train, distill_train = distill_train, validation = validation, final_split = final_split,
    saved = saved, saved_dir = saved_dir, tok = tok }
end

local function model(c, shape, seed)
  return gkd.model.new{ layers = shape.layers, dim = shape.dim, heads = 4, tokenizer = c.tok, max_seq_len = c.S.seq,
    seed = seed }
end

local function ckpt(c, n) return c.OUT .. "/checkpoints/" .. n end

-- The final numbers of a model: a zero-step run "<run>/final" on the final split (with the teacher, so
-- that the divergences on the references and on the student's own outputs are measured).
local function final_eval(c, run_name, student, teacher)
  local r = gkd.run{
    name = run_name .. "/final", method = teacher and "supervised_kd" or "sft", task = c.distill_train,
    held_out = c.final_split, student = student, teacher = teacher, steps = 0, batch = 32,
    max_new_tokens = c.S.max_new, eval = { examples = c.S.final_examples, metrics = c.spec.metrics },
    checkpoint = false, resume = true, quiet = true,
  }
  return r.eval
end

local function sft(c, run_name, student, steps, lr, task, batch)
  return gkd.run{
    name = run_name, method = "sft", task = task, held_out = c.validation, student = student,
    steps = steps, batch = batch, lr = gkd.schedule.warmup_cosine(lr, lr / 10, math.max(1, steps // 20), steps),
    max_new_tokens = c.S.max_new, eval = { every = math.max(1, steps // 5), examples = c.S.eval_examples,
      metrics = c.spec.metrics },
    checkpoint = { dir = ckpt(c, run_name), every = math.max(1, steps // 10) }, resume = true, quiet = c.worker or nil,
  }
end

local function show(c, what, m, e)
  local parts = {}
  for _, k in ipairs(c.spec.show or { c.spec.primary }) do
    parts[#parts + 1] = string.format("%s %.4f", k, e[k] or 0 / 0)
  end
  print(string.format("%s (%s): %s %s", what, tostring(m), c.FINAL, table.concat(parts, ", ")))
end

-- 2. The teacher, on the whole train split. Returns it and the name of its last run; nothing when a stop was
-- requested.
local function teacher_stage(c)
  local S, name = c.S, c.name
  local teacher = model(c, S.teacher, 1000)
  local teacher_name = name .. "/teacher"
  if c.saved then
    assert(teacher:load_weights(c.saved_dir .. "/teacher.safetensors"))
    if S.teacher2_steps then teacher_name = name .. "/teacher-2" end
    if not c.worker then print("teacher: loaded from " .. c.saved_dir .. "/teacher.safetensors") end
  else
    sft(c, name .. "/teacher", teacher, S.teacher_steps, S.teacher_lr, c.train, S.teacher_batch)
  end
  -- Its continuation (a second run from the first one's weights): measured on 2026-12-02, a 2000-step teacher
  -- was still climbing fast and no better than a 4x smaller student after 3000 steps, so the teacher trains on.
  if S.teacher2_steps and not c.saved then
    teacher_name = name .. "/teacher-2"
    sft(c, teacher_name, teacher, S.teacher2_steps, S.teacher2_lr, c.train, S.teacher_batch)
    if gkd.stop_requested() then return end
  end
  if not c.worker then show(c, "teacher", teacher, final_eval(c, teacher_name, teacher, nil)) end
  return teacher, teacher_name
end

-- 3. The warm start of the student: SFT on the references, saved once; every method and seed starts
-- from it (seeds change the data order, the lambda coins and the sampling, not the start).
local function warm_start(c)
  local S = c.S
  local warm = model(c, S.student, 1)
  if c.saved then
    assert(warm:load_weights(c.saved_dir .. "/warm-start.safetensors"))
  else
    sft(c, c.name .. "/warm-start", warm, S.warm_steps, S.warm_lr, c.distill_train, S.warm_batch or S.batch)
  end
  if not c.worker then show(c, "SFT warm start", warm, final_eval(c, c.name .. "/warm-start", warm, c.teacher)) end
  return warm
end

-- The run of a method, p = {variant, seed, name}: the same steps x batch from the warm start.
local function method_run(c, p)
  local S = c.S
  local v = M.VARIANTS[p.variant]
  local cfg = {
    task = c.distill_train, held_out = c.validation, teacher = c.teacher,
    student = gkd.model.from_layers(c.warm, { n = c.warm.layers }), seed = p.seed,
    steps = S.steps, batch = S.batch, max_new_tokens = S.max_new,
    lr = gkd.schedule.warmup_cosine(S.lr, S.lr / 10, math.max(1, S.steps // 20), S.steps),
    eval = { every = S.eval_every, examples = S.eval_examples, metrics = c.spec.metrics },
    checkpoint = { dir = ckpt(c, p.name), every = math.max(1, S.steps // 4) }, quiet = true,
  }
  for k, x in pairs(v) do cfg[k] = x end
  return cfg
end

-- The on-policy divergence that scored best on validation (mean area under the curve over the seeds).
local function best_on_policy(c)
  local best, best_auc
  local store <close> = assert(gkd.store.open(c.DB, { readonly = true }))
  for _, v in ipairs(M.ORDER) do
    if v:match("^gkd%-") then
      local aucs = {}
      for _, seed in ipairs(c.S.seeds) do
        local r = lib.finished_run(store, c.name .. "/variant=" .. v .. ",seed=" .. seed)
        if r then aucs[#aucs + 1] = lib.auc(lib.curve(store, r.id, c.spec.primary)) end
      end
      local m = lib.mean_std(aucs)
      if m and (not best_auc or m > best_auc) then best, best_auc = v, m end
    end
  end
  return best
end

-- 4. The methods, then lambda 0.5 with the best on-policy divergence. Returns false when a stop was requested.
local function method_sweeps(c)
  local S, name = c.S, c.name
  local function point(p) return method_run(c, p) end
  local summary = { "eval." .. c.spec.primary, "eval.own_forward_kl" }
  gkd.sweep{ name = name, grid = { variant = M.ORDER }, seeds = S.seeds, workers = S.workers, run = point,
    summary = summary }
  -- After SIGINT/SIGTERM the sweep returns with its runs interrupted: start nothing new.
  if gkd.stop_requested() then return false end
  local best = best_on_policy(c)
  if best then
    M.VARIANTS["mix0.5-" .. best:sub(5)] = { method = "gkd", lambda = 0.5, divergence = M.VARIANTS[best].divergence }
    gkd.sweep{ name = name .. "-mix", grid = { variant = { "mix0.5-" .. best:sub(5) } }, seeds = S.seeds,
      workers = S.workers, run = point, summary = summary }
    if gkd.stop_requested() then return false end
  end
  return true
end

-- 5. GKD + RL: the reward with weight 1 - alpha and the divergence with weight alpha, on-policy.
local function alpha_sweep(c)
  local A, S = c.spec.alpha, c.S
  if not A then return end
  gkd.sweep{
    name = c.name .. "-alpha", grid = { alpha = A.alphas }, seeds = S.seeds, workers = S.workers,
    summary = { "eval." .. c.spec.primary, "eval." .. A.reward },
    run = function(p)
      local cfg = method_run(c, { variant = "gkd-rkl", seed = p.seed, name = p.name })
      cfg.reward, cfg.alpha, cfg.divergence = A.reward, p.alpha, A.divergence
      cfg.group_size, cfg.normalize_advantages = A.group_size, true
      cfg.method = nil
      return cfg
    end,
  }
end

-- 6. Final numbers of every finished model. Returns the models ({name, path} of their last checkpoints).
local function final_numbers(c)
  local todo = lib.finished_checkpoints(c.DB, { c.name, c.name .. "-mix", c.name .. "-alpha" })
  for _, t in ipairs(todo) do
    local m = model(c, c.S.student, 1)
    assert(m:load_weights(t.path .. "/model.safetensors"))
    final_eval(c, t.name, m, c.teacher)
    m:close()
  end
  return todo
end

-- 7. Diagnostics (diagnostics.lua) of every final model, stored with its "/final" run (split "diagnostic"):
-- the reverse KL to the teacher by output position on its own samples, and self-BLEU.
local function diagnose(c, todo)
  local S, teacher = c.S, c.teacher
  local D = dofile(here .. "/diagnostics.lua")
  local models = { { name = c.teacher_name, m = teacher }, { name = c.name .. "/warm-start", m = c.warm } }
  for _, t in ipairs(todo) do models[#models + 1] = { name = t.name, path = t.path } end
  local wstore = assert(gkd.store.open(c.DB))
  for _, x in ipairs(models) do
    if gkd.stop_requested() then break end
    local fr = lib.finished_run(wstore, x.name .. "/final")
    local have = fr and wstore:query([[SELECT count(*) AS n FROM evals WHERE run_id = ? AND split = 'diagnostic']],
      fr.id)[1].n > 0
    if fr and not have then
      local m = x.m
      if not m then
        m = model(c, S.student, 1)
        assert(m:load_weights(x.path .. "/model.safetensors"))
      end
      local r = D.run(m, teacher, c.final_split, c.tok, { n = S.diag_examples or 100, max_new = S.max_new, seed = 1 })
      for k, v in pairs(r.rkl) do wstore:eval(fr.id, 0, "diagnostic", "rkl_" .. k, v) end
      if r.self_bleu then wstore:eval(fr.id, 0, "diagnostic", "self_bleu", r.self_bleu) end
      wstore:eval(fr.id, 0, "diagnostic", "diag_prompts", r.kept)
      if not x.m then m:close() end
    end
  end
  wstore:close()
end

-- Runs the whole comparison. spec:
--   name: the task ("debdesc"); out: the results folder; prepare(data_dir) -> counts (writes the splits);
--   task(data_dir, split, max_examples) -> gkd task; metrics: eval metrics (built-in names and Lua
--   functions); primary: the metric that picks the best divergence; S: sizes {teacher = {layers, dim},
--   student, vocab, seq, max_new, teacher_steps, teacher_batch, warm_steps, steps, batch, lr, eval_every,
--   eval_examples, final_examples, seeds, workers}; alpha = {reward =, alphas =, divergence =} for the
--   GKD + RL curve (optional).
function M.comparison(spec)
  local c = prepare(spec)
  c.teacher, c.teacher_name = teacher_stage(c)
  if not c.teacher then return end
  c.warm = warm_start(c)
  if not method_sweeps(c) then return end
  alpha_sweep(c)
  if c.worker or gkd.stop_requested() then return end
  diagnose(c, final_numbers(c))
  note(c.OUT, "end", c.worker)
  return { db = c.DB, out = c.OUT, data_dir = c.data_dir, final = c.FINAL }
end

return M
