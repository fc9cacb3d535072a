-- gkd prelude, part 2: gkd.run, one training run recorded in the run store.
-- The configuration is checked here (unknown keys, types, ranges) before anything starts; gkd._resolve
-- (C) turns it into the trainer's settings, which are recorded with the run; gkd._train (C) trains.
-- Resume rule (gkd.run{resume = true}, and every run of a sweep or of `gkd resume`): a run of the same
-- name (and sweep) that finished is skipped (its final weights are loaded into the student); one that
-- stopped or failed continues from its last checkpoint, or starts again in the same row; only a run of
-- the same config hash is reused (a failed one of another configuration is left for a new row).
-- Settings that have no effect are refused, or, when they only change what is logged, stored warnings.
-- Data parallelism (mpirun / srun, docs/data-parallel.md): rank 0 alone opens the store, decides whether
-- the run resumes or is skipped and tells the other ranks (gkd.dist.broadcast); they train their shards
-- quietly and write nothing.
local gkd = ...
local util = gkd.util

-- Options the command line sets (gkd run / sweep / resume): db, workers, resume, reuse, script, cwd, args, quiet,
-- sandbox, worker_flags (the limit and sandbox flags a sweep passes on to its workers, and a resume reuses).
gkd.options = gkd.options or {}

local SCHED = { "number", "gkd.Schedule", "function" }

local EVAL_SCHEMA = {
  every = { type = "integer", min = 0 },
  examples = { type = "integer", min = 0 },
  temperature = { type = "number", min = 0 },
  metrics = { type = "table" },
}

local CHECKPOINT_SCHEMA = {
  every = { type = "integer", min = 0 },
  dir = { type = "string" },
  keep = { type = "integer", min = 0 },
}

gkd.RUN_SCHEMA = {
  name = { type = "string" },
  db = { type = "string" },
  sweep = { type = "string" },
  task = { type = "gkd.Task" },
  held_out = { type = { "gkd.Task", "number" }, min = 0, max = 0.9 },
  tokenizer = { type = "gkd.Tokenizer" },
  teacher = { type = "gkd.Model" },
  student = { type = "gkd.Model" },
  method = { type = "string", values = { "sft", "supervised_kd", "seqkd", "imitkd", "gkd", "on_policy",
    "reinforce", "ppo", "grpo" } },
  divergence = { type = { "gkd.Divergence", "string" } },
  divergence_precision = { type = "string", values = { "float32", "exact" } },
  teacher_precision = { type = "string", values = { "fp32", "bf16", "q8_0", "q8_0_a8" } },
  reference_precision = { type = "string", values = { "fp32", "bf16", "q8_0", "q8_0_a8" } },
  lambda = { type = SCHED },
  beta = { type = SCHED },
  teacher_temperature = { type = SCHED },
  temperature = { type = SCHED },
  lr = { type = SCHED },
  per_sample = { type = "boolean" },
  fixed = { type = "string", values = { "ground_truth", "teacher" } },
  norm = { type = "string", values = { "sequence", "token" } },
  max_new_tokens = { type = "integer", min = 1 },
  max_prompt = { type = "integer", min = 1 },
  max_target = { type = "integer", min = 1 },
  top_k = { type = "integer", min = 0 },
  top_p = { type = "number", min = 0, max = 1 },
  steps = { type = "integer", min = 0 },
  batch = { type = "integer", min = 1 },
  grad_accum = { type = "integer", min = 1 },
  weight_decay = { type = "number", min = 0 },
  clip = { type = "number", min = 0 },
  adam_betas = { type = "table" },
  loss_chunk = { type = "integer", min = 1 },
  seed = { type = "integer", min = 0 },
  eval = { type = { "table", "boolean" }, fields = EVAL_SCHEMA },
  checkpoint = { type = { "table", "boolean" }, fields = CHECKPOINT_SCHEMA },
  on_step = { type = "function" },
  on_eval = { type = "function" },
  callback_limit = { type = "table", fields = {
    instructions = { type = "integer", min = 0 }, seconds = { type = "number", min = 0 },
  } },
  reward = { type = { "function", "string", "table" } },
  alpha = { type = SCHED },
  group_size = { type = "integer", min = 1 },
  baseline = { type = "string", values = { "none", "moving_average", "group" } },
  baseline_decay = { type = "number", min = 0, max = 0.999999 },
  normalize_advantages = { type = "boolean" },
  score_function = { type = "boolean" },
  kl_coef = { type = SCHED },
  -- PPO and GRPO (docs/rlhf.md)
  epochs = { type = SCHED },
  minibatches = { type = "integer", min = 1 },
  clip_eps = { type = SCHED },
  kl_estimator = { type = "string", values = { "k1", "k2", "k3" } },
  kl_in = { type = "string", values = { "reward", "loss" } },
  target_kl = { type = SCHED },
  teacher_reward = { type = SCHED },
  value_head = { type = "boolean" },
  gamma = { type = "number", min = 0, max = 1 },
  gae_lambda = { type = "number", min = 0, max = 1 },
  vf_coef = { type = SCHED },
  value_clip = { type = "number", min = 0 },
  whiten_advantages = { type = "boolean" },
  whiten_rewards = { type = "boolean" },
  loss_type = { type = "string", values = { "grpo", "bnpo", "dr_grpo" } },
  dr_grpo_length = { type = "integer", min = 1 },
  scale_rewards = { type = "boolean" },
  resume = { type = "boolean" },
  reuse = { type = "string", values = { "same", "any" } },
  quiet = { type = "boolean" },
}

-- Ranges of schedule settings, checked on built-in schedules before training (functions are checked
-- at each use by the trainer).
local SCHED_RANGES = {
  lambda = { 0, 1 }, beta = { 0, 1 }, alpha = { 0, 1 },
  teacher_temperature = { 1e-6, 1e6 }, temperature = { 0, 1e6 }, lr = { 0, 10 },
  kl_coef = { 0, 1e6 }, epochs = { 1, 1000 }, clip_eps = { 0, 10 }, target_kl = { 0, 1e6 },
  teacher_reward = { 0, 1e6 }, vf_coef = { 0, 1e6 },
}

-- Which RL settings apply to which method: a setting given to a run it cannot change is refused.
local PPO_KEYS = { "epochs", "minibatches", "clip_eps", "kl_estimator", "kl_in", "target_kl", "teacher_reward" }
local VALUE_KEYS = { "gamma", "gae_lambda", "vf_coef", "value_clip", "whiten_advantages", "whiten_rewards" }
local GRPO_KEYS = { "loss_type", "dr_grpo_length", "scale_rewards" }
local REINFORCE_KEYS = { "baseline", "baseline_decay", "normalize_advantages", "score_function" }

local function check_rl_method(cfg)
  local method = cfg.method
  local function refuse(k, why) error(string.format("gkd.run: '%s' %s", k, why), 5) end -- the script's line
  if (method == "ppo" or method == "grpo" or method == "reinforce") and cfg.reward == nil then
    error(string.format("gkd.run: method '%s' needs a 'reward'", method), 4)
  end
  local pg = method == "ppo" or method == "grpo"
  for _, k in ipairs(PPO_KEYS) do
    if cfg[k] ~= nil and not pg then refuse(k, "applies to method 'ppo' or 'grpo' only") end
  end
  for _, k in ipairs(GRPO_KEYS) do
    if cfg[k] ~= nil and method ~= "grpo" then refuse(k, "applies to method 'grpo' only") end
  end
  if cfg.dr_grpo_length ~= nil and cfg.loss_type ~= "dr_grpo" then
    refuse("dr_grpo_length", "applies to loss_type = 'dr_grpo' only")
  end
  local critic = method == "ppo" and cfg.value_head ~= false
  if cfg.value_head ~= nil and method ~= "ppo" then refuse("value_head", "applies to method 'ppo' only") end
  for _, k in ipairs(VALUE_KEYS) do
    if cfg[k] ~= nil and not critic then refuse(k, "applies to method 'ppo' with its value head only") end
  end
  for _, k in ipairs(REINFORCE_KEYS) do
    if cfg[k] ~= nil and (method == "grpo" or critic) then
      refuse(k, string.format("has no effect with method '%s'%s (it sets REINFORCE's and critic-free PPO's "
        .. "advantages)", method, critic and " and a value head" or ""))
    end
  end
end

local function check_config(cfg)
  util.check("gkd.run", cfg, gkd.RUN_SCHEMA, 3)
  if not cfg.task then error("gkd.run: 'task' is required (e.g. gkd.task.summarize{})", 3) end
  if not cfg.student then error("gkd.run: 'student' is required (a gkd.Model)", 3) end
  local method = cfg.method or "supervised_kd"
  if not cfg.teacher and method ~= "sft" then
    error("gkd.run: method '" .. method .. "' needs a 'teacher' (only 'sft' trains without one)", 3)
  end
  for key, range in pairs(SCHED_RANGES) do
    local v = cfg[key]
    if type(v) == "number" and (v < range[1] or v > range[2]) then
      error(string.format("gkd.run: '%s' must be in [%g, %g], got %g", key, range[1], range[2], v), 3)
    elseif util.kind_of(v) == "gkd.Schedule" then
      local ok, msg = pcall(v.check, v, key, range[1], range[2])
      if not ok then error("gkd.run: " .. tostring(msg), 3) end
    end
  end
  if cfg.reward ~= nil and not gkd._features.rl then
    error("gkd.run: 'reward' (GKD + RL) is not supported by this build's trainer", 3)
  end
  if cfg.reward == nil then
    for _, k in ipairs({ "alpha", "group_size", "baseline", "baseline_decay", "normalize_advantages", "score_function",
                         "kl_coef" }) do
      if cfg[k] ~= nil then error("gkd.run: '" .. k .. "' applies to GKD + RL runs only: give 'reward' too", 3) end
    end
  end
  check_rl_method(cfg)
  if type(cfg.eval) == "table" and cfg.eval.metrics then
    local n = 0
    for k, m in pairs(cfg.eval.metrics) do
      n = n + 1
      if type(k) == "number" then
        if type(m) ~= "string" then error("gkd.run: eval.metrics[" .. k .. "] must be a metric name", 3) end
        if not gkd.METRICS[m] then error(util.unknown_key("gkd.run: eval.metrics", m, gkd.METRICS), 3) end
      elseif type(m) ~= "function" then
        error("gkd.run: eval.metrics." .. tostring(k) .. " must be a function(output, example)", 3)
      end
    end
  end
  if cfg.student and cfg.teacher and cfg.student.vocab ~= cfg.teacher.vocab then
    error(string.format("gkd.run: teacher and student vocabularies differ (teacher %d, student %d)",
      cfg.teacher.vocab, cfg.student.vocab), 3)
  end
  local tok = cfg.tokenizer or cfg.student.tokenizer
  if not tok then
    error("gkd.run: no tokenizer: give 'tokenizer' or create the student with gkd.model.new{tokenizer = ...}", 3)
  end
  -- A sampled id must have a token (else the run fails after generating), and a token an embedding row.
  if tok.vocab ~= cfg.student.vocab then
    error(string.format("gkd.run: the student's vocabulary (%d) differs from the tokenizer's (%d): %s "
      .. "(give a tokenizer of the model's vocabulary)", cfg.student.vocab, tok.vocab,
      cfg.student.vocab > tok.vocab and "the ids it samples past the tokenizer's would have no token"
        or "token ids past the model's would have no embedding"), 3)
  end
end

-- The parameter ("beta" or "skew") of a divergence name, or nil when it has none (forward_kl, tv, ...):
-- a divergence's text shows it first, "jsd(beta=0.5)".
local function divergence_param(name)
  local ok, d = pcall(gkd.divergence, name)
  local p = ok and tostring(d):match("^[%w_]+%((%a+)=")
  return (p == "beta" or p == "skew") and p or nil
end

-- Settings given that cannot change this run: an error when they would change nothing at all, a warning
-- (returned, stored with the run) when they change only what is logged or are inert at the values used.
local function ineffective_settings(cfg, resolved)
  local function refuse(key, why) error(string.format("gkd.run: '%s' has no effect %s; remove it", key, why), 4) end
  if cfg.reward ~= nil then
    for _, k in ipairs({ "lambda", "per_sample", "fixed" }) do
      if cfg[k] ~= nil then
        refuse(k, "with 'reward': GKD + RL trains on the student's own samples only (alpha weighs the divergence)")
      end
    end
  end
  if not cfg.teacher then
    for _, k in ipairs({ "divergence", "beta", "teacher_temperature", "divergence_precision", "teacher_precision" }) do
      if cfg[k] ~= nil then refuse(k, "without a 'teacher'") end
    end
  end
  if cfg.beta ~= nil and resolved.divergence and not divergence_param(resolved.divergence) then
    refuse("beta", string.format("with the divergence %s, which has no beta or skew", resolved.divergence))
  end
  local warnings = {}
  if resolved.cross_entropy and cfg.teacher then
    for _, k in ipairs({ "divergence", "beta", "teacher_temperature" }) do
      if cfg[k] ~= nil then
        warnings[#warnings + 1] = string.format("'%s' has no effect on training: method '%s' trains on "
          .. "cross-entropy; it changes only the logged divergences", k, resolved.method)
      end
    end
  end
  local lambda = resolved.lambda
  if cfg.reward == nil and (lambda == 0 or lambda == 1) and cfg.per_sample ~= nil then
    warnings[#warnings + 1] = string.format("'per_sample' has no effect with lambda = %g: every row is %s",
      lambda, lambda == 0 and "fixed data" or "the student's own sample")
  end
  if cfg.reward == nil and lambda == 0 and cfg.temperature ~= nil then
    warnings[#warnings + 1] = "'temperature' has no effect with lambda = 0: no row is sampled from the student"
  end
  -- Greedy decoding (evaluation at temperature 0, SeqKD's teacher outputs) takes the top token whatever
  -- the truncation.
  local eval_temperature = type(cfg.eval) == "table" and cfg.eval.temperature or 0
  for _, k in ipairs({ "top_k", "top_p" }) do
    if cfg.reward == nil and lambda == 0 and eval_temperature == 0 and cfg[k] ~= nil then
      warnings[#warnings + 1] = string.format("'%s' has no effect with lambda = 0: every sample is greedy", k)
    end
  end
  if cfg.reward == nil and lambda == 1 and cfg.fixed ~= nil then
    warnings[#warnings + 1] = "'fixed' has no effect with lambda = 1: no row comes from the fixed data"
  end
  return warnings
end

-- Evaluation metrics by name: text metrics of the student's samples on held-out examples, from the
-- registry (reward/registry.h, gkd.reward.metrics). The trainer's own (ce_loss, forward_kl, reverse_kl,
-- jsd_0.5, own_*) are always recorded.
gkd.METRICS = {}
for name, m in pairs(gkd.reward.metrics) do
  if m.eval then gkd.METRICS[name] = true end
end

-- A JSON-able description of a configuration: handles and functions become descriptions.
local function describe(v, depth)
  depth = depth or 0
  local k = util.kind_of(v)
  if k == "function" then return "<lua function>" end
  if type(v) == "userdata" then
    if v.describe then return v:describe() end
    return tostring(v)
  end
  if type(v) == "table" and depth < 8 then
    local out = {}
    for key, x in pairs(v) do out[key] = describe(x, depth + 1) end
    return out
  end
  return v
end
gkd.util.describe = describe

-- What decides a run's results: its recorded configuration without the keys that say only where it is
-- written, how it is shown or how it is resumed (docs/schema.md, "The config hash").
local IDENTITY_SKIP = { name = true, sweep = true, db = true, resume = true, reuse = true, quiet = true,
  script = true, checkpoint = true, callback_limit = true, on_step = true, on_eval = true, warnings = true }

local function identity_of(record)
  local id = {}
  for k, v in pairs(record) do
    if not IDENTITY_SKIP[k] then id[k] = v end
  end
  return id
end

local function hash_of(identity)
  local json = gkd.json.encode(identity)
  return "fnv1a64:" .. util.fnv1a64(json), gkd.json.decode(json)
end

-- The config hash of a gkd.run configuration and its identity (as JSON decodes it). halving: set by a
-- sweep's successive halving, whose rungs train fewer steps of the same run: {steps = the run's own
-- steps setting (nil: the default)}.
function util.run_identity(cfg, halving)
  if halving then
    cfg = util.copy(cfg)
    cfg.steps = halving.steps
  end
  local id = identity_of(describe(cfg))
  id.resolved = gkd._resolve(cfg)
  return hash_of(id)
end

-- "key: old -> new" for each setting that differs between two identities (nested keys dotted).
local function flatten(t, prefix, out)
  for k, v in pairs(t) do
    local key = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
    if type(v) == "table" and next(v) ~= nil then flatten(v, key, out) else out[key] = gkd.json.encode(v) end
  end
  return out
end

-- A resolved setting on one side only is one that the other gkd did not report (a newer gkd resolves
-- more); what the user set is compared whole.
local function identity_diff(old, new)
  local a, b = flatten(old, nil, {}), flatten(new, nil, {})
  local keys = {}
  for _, side in ipairs({ a, b }) do
    for k in pairs(side) do
      local one_sided = a[k] == nil or b[k] == nil
      if a[k] ~= b[k] and not (one_sided and k:match("^resolved%.")) then keys[k] = true end
    end
  end
  local out = {}
  for _, k in ipairs(util.keys(keys)) do
    out[#out + 1] = string.format("%s: %s -> %s", k, a[k] or "(none)", b[k] or "(none)")
  end
  return out
end

-- The settings in which the stored run differs from `identity`, or nil when its config hash is `hash`
-- or nothing but resolved settings one side lacks differs (a row without a hash, from before schema
-- version 3, is compared by the hash of its stored config).
function util.stale_settings(store, run_id, hash, identity)
  local row = store:query("SELECT config, config_hash FROM runs WHERE id = ?", run_id)[1]
  if not row then return nil end
  local ok, stored = pcall(gkd.json.decode, row.config or "{}")
  local old_hash, old_identity = hash_of(identity_of(ok and type(stored) == "table" and stored or {}))
  if (row.config_hash or old_hash) == hash then return nil end
  local diff = identity_diff(old_identity, identity)
  return #diff > 0 and diff or nil
end

-- The error for a stored run whose configuration differs from the one asked for.
function util.stale_message(what, name, diff)
  local shown = {}
  for i = 1, math.min(#diff, 8) do shown[i] = diff[i] end
  if #diff > 8 then shown[#shown + 1] = string.format("and %d more", #diff - 8) end
  return string.format("%s: run '%s' in the store was made with another configuration (%s); its results "
    .. "are not this configuration's. Give the run (or the sweep) a new name, or reuse it anyway with "
    .. "reuse = \"any\" (gkd sweep/run/resume --reuse-stale)", what, name, table.concat(shown, "; "))
end

local function final_metrics_from_store(store, run_id)
  local out = { eval = {} }
  local rows = store:query([[SELECT m.name, m.value, m.step FROM metrics m
    WHERE m.run_id = ? AND m.step = (SELECT max(step) FROM metrics WHERE run_id = ? AND name = m.name)]], run_id, run_id)
  for _, r in ipairs(rows or {}) do out[r.name] = r.value; out.step = r.step end
  rows = store:query([[SELECT e.metric, e.value FROM evals e
    WHERE e.run_id = ? AND e.step = (SELECT max(step) FROM evals WHERE run_id = ? AND metric = e.metric)]], run_id, run_id)
  for _, r in ipairs(rows or {}) do out.eval[r.metric] = r.value end
  return out
end
gkd.util.final_metrics_from_store = final_metrics_from_store

-- A run left 'running' by a process that still exists on this host (or on another host: unknown, so
-- taken as alive).
local function running_elsewhere(store, run_id)
  local rows = store:query("SELECT host, pid FROM runs WHERE id = ?", run_id)
  local r = rows and rows[1]
  if not r or not r.pid then return false end
  if r.host ~= gkd.sys.hostname() then return true, r.host, r.pid end
  if r.pid == gkd.sys.pid() then return false end
  return gkd.sys.alive(r.pid), r.host, r.pid
end
gkd.util.running_elsewhere = running_elsewhere

local function default_name(cfg)
  local parts = { cfg.method or "supervised_kd" }
  if cfg.divergence then parts[#parts + 1] = tostring(cfg.divergence) end
  if type(cfg.lambda) == "number" then parts[#parts + 1] = "lambda=" .. util.format_value(cfg.lambda) end
  return table.concat(parts, "-")
end

-- The teacher's mean probability of the last token (EOS) of up to n training rows. Tiny means the
-- references end where the teacher would not stop (no chat template, no terminator): every method that
-- copies the teacher then learns never to stop. Rows longer than the teacher's context are skipped.
local EOS_WARN_BELOW = 1e-3
function gkd.util.teacher_eos_probability(teacher, task, tok, n)
  local eos = tok.eos
  if not eos then return nil end
  local sum, count = 0, 0
  for i = 1, math.min(n or 16, #task) do
    local ids = task:tokens(i, tok)
    if #ids >= 2 and #ids <= teacher.max_seq_len and ids[#ids] == eos then
      local lp = teacher:logprobs(ids)
      sum, count = sum + math.exp(lp[#lp]), count + 1
    end
  end
  if count == 0 then return nil end
  return sum / count, count
end

local function eos_warning(cfg)
  if not cfg.teacher or (cfg.method or "supervised_kd") == "sft" then return nil end
  local p, count = gkd.util.teacher_eos_probability(cfg.teacher, cfg.task, cfg.tokenizer or cfg.student.tokenizer, 16)
  if not p or p >= EOS_WARN_BELOW then return nil end
  return string.format("the teacher's mean probability of EOS at the end of %d training references is %.3g "
    .. "(< %g): it would not stop where the references do, and students that copy it learn never to stop; "
    .. "give the task its chat template and terminator (template = \"chatml\", terminator = \"<|im_end|>\" "
    .. "for an instruct teacher, or terminator = \"\\n\")", count, p, EOS_WARN_BELOW)
end

-- A rank other than 0 of a data-parallel run: rank 0's plan (skip, or train from resume_dir), no store.
local function run_follower(cfg, name)
  local plan = gkd.json.decode(gkd.dist.broadcast())
  if plan.skip then
    if plan.weights then assert(cfg.student:load_weights(plan.weights)) end
    return { name = name, skipped = true }
  end
  local result, status = gkd._train(cfg, { name = name, resume_dir = plan.resume_dir, quiet = true })
  -- Interrupted: rank 0 records it in the store and then fails the script, which ends every rank (an error
  -- here could end the job before rank 0 has written).
  result.name, result.interrupted = name, status == "interrupted" or nil
  return result
end

-- halving: given by gkd.sweep's successive halving only (util.run_identity).
function gkd.run(cfg, halving)
  check_config(cfg)
  local rank, ranks, comm = gkd.dist.init()
  local resolved = gkd._resolve(cfg)
  local warnings = ineffective_settings(cfg, resolved)
  local hash, identity = util.run_identity(cfg, halving)
  local reuse = gkd.options.reuse or cfg.reuse or "same"
  local name = cfg.name or default_name(cfg)
  local db = cfg.db or gkd.options.db or "runs.db"
  local resume = cfg.resume
  if resume == nil then resume = gkd.options.resume or false end
  if rank ~= 0 then return run_follower(cfg, name) end
  -- rank 0 of several: what the other ranks do, decided from the store (a no-op in one process)
  local function tell_ranks(plan) if ranks > 1 then gkd.dist.broadcast(gkd.json.encode(plan)) end end
  local record = describe(cfg)
  record.db, record.resume, record.on_step, record.on_eval = nil, nil, nil, nil
  record.name = name
  record.resolved = resolved
  if ranks > 1 then record.data_parallel = { ranks = ranks, backend = comm } end
  if gkd.options.script then
    record.script = { path = gkd.options.script, args = gkd.options.args, device = gkd.options.device,
      flags = gkd.options.worker_flags, cwd = gkd.options.cwd }
  end

  local store <close> = assert(gkd.store.open(db))
  local sweep_id = cfg.sweep and assert(store:sweep(cfg.sweep)) or 0
  local run_id, resume_dir, resumed_from
  if resume then
    local info = store:run_find(name, sweep_id)
    local stale = info and util.stale_settings(store, info.id, hash, identity)
    if stale and reuse == "any" then
      local note = "reused (reuse = \"any\") by a configuration that differs: " .. table.concat(stale, "; ")
      io.stderr:write(string.format("%s: reusing it although its configuration differs (reuse = \"any\"): %s\n",
        name, table.concat(stale, "; ")))
      assert(store:run_warning(info.id, note))
    elseif stale and info.status == "failed" then
      info = nil -- a failed run of another configuration: this one starts in a new row
    elseif stale then
      error(util.stale_message("gkd.run", name, stale), 2)
    end
    if info then
      local step, path = store:checkpoint_latest(info.id)
      if info.status == "finished" and info.last_step >= resolved.steps then
        local weights = step and gkd.sys.exists(path .. "/model.safetensors") and path .. "/model.safetensors" or nil
        if weights then assert(cfg.student:load_weights(weights)) end
        tell_ranks({ skip = true, weights = weights })
        local out = final_metrics_from_store(store, info.id)
        out.run_id, out.name, out.skipped = info.id, name, true
        return out
      end
      local busy, host, pid = running_elsewhere(store, info.id)
      if info.status == "running" and busy then
        error(string.format("gkd.run: run '%s' is running in process %s on %s", name, tostring(pid), tostring(host)), 2)
      end
      run_id = info.id
      if step and gkd.sys.exists(path .. "/state.safetensors") then
        resume_dir, resumed_from = path, step
        io.stderr:write(string.format("%s: continuing from step %d (%s)\n", name, step, path))
      else
        resumed_from = -1
      end
      assert(store:run_resume(run_id))
      assert(store:truncate_after(run_id, resumed_from))
    end
  end
  warnings[#warnings + 1] = eos_warning(cfg)
  for _, w in ipairs(warnings) do io.stderr:write(name .. ": warning: " .. w .. "\n") end
  if #warnings > 0 then record.warnings = warnings end
  if not run_id then
    run_id = assert(store:run_begin(name, { sweep_id = sweep_id, config = gkd.json.encode(record), seed = resolved.seed,
      config_hash = hash }))
  end
  for _, w in ipairs(warnings) do assert(store:run_warning(run_id, w)) end
  local quiet = cfg.quiet
  if quiet == nil then quiet = gkd.options.quiet or false end
  tell_ranks({ resume_dir = resume_dir })
  local ok, result, status = pcall(gkd._train, cfg, {
    store = store, run_id = run_id, name = name, resume_dir = resume_dir, quiet = quiet,
  })
  if not ok then
    local msg = tostring(result)
    store:run_finish(run_id, "failed", msg)
    error(msg, 0)
  end
  if status == "interrupted" then
    local where
    if result.checkpoint_step then
      where = string.format("checkpoint saved at step %d", result.checkpoint_step)
    else
      local last = store:checkpoint_latest(run_id)
      where = "stopped inside a callback; "
        .. (last and string.format("it continues from its checkpoint at step %d", last) or "it starts again (no checkpoint)")
    end
    local msg = string.format("interrupted by %s (%s)", result.interrupted_by or "a signal", where)
    store:run_finish(run_id, "interrupted", msg .. "; continue with gkd resume")
    error(string.format("run '%s' %s; continue with: gkd resume '%s'", name, msg, name), 0)
  end
  assert(store:run_finish(run_id, "finished"))
  if result.step == nil then -- resumed at its last step: nothing ran, the store has the numbers
    local stored = final_metrics_from_store(store, run_id)
    for k, v in pairs(stored) do if result[k] == nil then result[k] = v end end
  end
  result.run_id, result.name = run_id, name
  if resumed_from then result.resumed_from = resumed_from end
  return result
end
