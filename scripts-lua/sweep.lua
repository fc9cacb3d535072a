-- gkd prelude, part 3: gkd.sweep, many runs from a grid or a random search, in worker processes,
-- resumable, with a summary over seeds and optional successive halving.
-- Rules: a point's run name is a function of its settings ("sweep/lambda=0.5,beta=0.9,seed=1"), so a
-- sweep started again finds its runs in the store: finished ones are skipped, stopped ones continue from
-- their last checkpoint (gkd.run's resume rule), failed ones are kept unless retry_failed = true. A
-- stored run is reused only when its config hash is the point's (else the sweep stops before running
-- anything, unless reuse = "any"), and a point that fails before its run is stored is stored as failed.
-- Workers are child processes running the same script (`gkd sweep SCRIPT --worker-point NAME`), one
-- run each, handed out by the parent; each opens the store itself and gets the parent's sandbox and
-- limit flags. A script file is needed for that; code given with -e runs its points one by one in the
-- calling process. A stop signal reaches the workers too (gkd.sys.spawn's children get it forwarded):
-- the parent starts no more, waits for them to stop at their next step, and the sweep is resumable. A
-- worker whose run was interrupted exits with status 3 (GKD_LUA_EXIT_INTERRUPTED).
-- On Slurm (--slurm) the points are array tasks instead (`gkd sweep SCRIPT --point I`), each with its own
-- store, merged into the sweep's (see "Slurm job arrays" below and docs/cluster.md); successive halving
-- keeps its survivors by one rule, halving_survivors, locally and in the Slurm controller.
local gkd = ...
local util = gkd.util

local SWEEP_SCHEMA = {
  name = { type = "string" },
  grid = { type = "table" },
  random = { type = "table" },
  trials = { type = "integer", min = 1 },
  seeds = { type = "table" },
  run = { type = "function" },
  base = { type = "table" },
  workers = { type = "integer", min = 1 },
  db = { type = "string" },
  retry_failed = { type = "boolean" },
  reuse = { type = "string", values = { "same", "any" } },
  summary = { type = "table" },
  halving = { type = "table", fields = {
    metric = { type = "string" }, mode = { type = "string", values = { "min", "max" } },
    eta = { type = "integer", min = 2 }, min_steps = { type = "integer", min = 1 },
  } },
  seed = { type = "integer", min = 0 },
  quiet = { type = "boolean" },
}

-- Axis order in names: the usual knobs first, then the others alphabetically, the seed last.
local ORDER = { "method", "divergence", "lambda", "beta", "alpha", "temperature", "teacher_temperature", "lr",
  "batch", "steps" }
local RANK = {}
for i, k in ipairs(ORDER) do RANK[k] = i end

local function axis_sort(keys)
  table.sort(keys, function(a, b)
    local ra, rb = RANK[a] or 1000, RANK[b] or 1000
    if ra ~= rb then return ra < rb end
    return a < b
  end)
  return keys
end

local function label(settings, axes)
  local parts = {}
  for _, k in ipairs(axes) do parts[#parts + 1] = k .. "=" .. util.format_value(settings[k]) end
  return table.concat(parts, ",")
end

-- Deterministic uniforms for random search (splitmix64 over integers), independent of math.random.
local function uniform_stream(seed)
  local state = seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
  return function()
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return ((z >> 11) & 0x1FFFFFFFFFFFFF) / 9007199254740992.0
  end
end

-- The points of a sweep: {settings = {...}, name = "sweep/...", group = "..." (without the seed)}.
function gkd.sweep_points(spec)
  local seeds = spec.seeds or { 1 }
  local points = {}
  if spec.grid then
    local axes = axis_sort(util.keys(spec.grid))
    for _, k in ipairs(axes) do
      local vals = spec.grid[k]
      if type(vals) ~= "table" or #vals == 0 then
        error(string.format("gkd.sweep: grid.%s must be a non-empty list of values", k), 3)
      end
    end
    local combos = { {} }
    for _, k in ipairs(axes) do
      local next_combos = {}
      for _, c in ipairs(combos) do
        for _, v in ipairs(spec.grid[k]) do
          local n = util.copy(c)
          n[k] = v
          next_combos[#next_combos + 1] = n
        end
      end
      combos = next_combos
    end
    for _, c in ipairs(combos) do
      local group = label(c, axes)
      for _, seed in ipairs(seeds) do
        local s = util.copy(c)
        s.seed = seed
        local lbl = group == "" and ("seed=" .. seed) or (group .. ",seed=" .. seed)
        points[#points + 1] = { settings = s, group = group, name = spec.name .. "/" .. lbl }
      end
    end
  elseif spec.random then
    local trials = spec.trials or error("gkd.sweep: 'random' needs 'trials'", 3)
    local axes = axis_sort(util.keys(spec.random))
    local u = uniform_stream(spec.seed or 1)
    for t = 1, trials do
      local c = {}
      for _, k in ipairs(axes) do
        local r = spec.random[k]
        if type(r) ~= "table" then error("gkd.sweep: random." .. k .. " must be {lo, hi} or {values = {...}}", 3) end
        if r.values then
          c[k] = r.values[1 + math.floor(u() * #r.values) % #r.values]
        else
          local lo, hi = r[1], r[2]
          if type(lo) ~= "number" or type(hi) ~= "number" or hi < lo then
            error("gkd.sweep: random." .. k .. " must be {lo, hi} with lo <= hi", 3)
          end
          local x = u()
          if r.log then
            if lo <= 0 then error("gkd.sweep: random." .. k .. " with log = true needs lo > 0", 3) end
            c[k] = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
          elseif r.integer then
            c[k] = math.tointeger(lo + math.floor(x * (hi - lo + 1)))
          else
            c[k] = lo + x * (hi - lo)
          end
        end
      end
      local group = "trial=" .. t .. (#axes > 0 and ("," .. label(c, axes)) or "")
      for _, seed in ipairs(seeds) do
        local s = util.copy(c)
        s.seed = seed
        points[#points + 1] = { settings = s, group = group, name = spec.name .. "/" .. group .. ",seed=" .. seed }
      end
    end
  else
    error("gkd.sweep: give 'grid' (lists of values) or 'random' (ranges) with 'trials'", 3)
  end
  return points
end

-- The gkd.run configuration of one point, and its own steps setting when `steps` replaced it.
local function point_config(spec, p, db, steps)
  local settings = util.copy(p.settings)
  settings.name = p.name
  local cfg
  if spec.run then
    cfg = spec.run(settings)
    if type(cfg) ~= "table" then error("gkd.sweep: run(settings) must return a gkd.run configuration table", 2) end
    cfg = util.copy(cfg)
  else
    cfg = util.copy(spec.base or error("gkd.sweep: give 'run' (a function returning a config) or 'base'", 2))
  end
  -- Settings the function did not place are applied when gkd.run knows them.
  for k, v in pairs(p.settings) do
    if cfg[k] == nil and gkd.RUN_SCHEMA[k] then cfg[k] = v end
  end
  cfg.name, cfg.sweep, cfg.db, cfg.resume = p.name, spec.name, db, true
  local own_steps = cfg.steps
  if steps then cfg.steps = steps end
  if spec.quiet ~= nil and cfg.quiet == nil then cfg.quiet = spec.quiet end
  if spec.reuse ~= nil and cfg.reuse == nil then cfg.reuse = spec.reuse end
  return cfg, steps and { steps = own_steps }
end

local function run_point(spec, p, db, steps)
  return gkd.run(point_config(spec, p, db, steps))
end

local function say(fmt, ...)
  io.stderr:write(string.format(fmt, ...), "\n")
  io.stderr:flush()
end

-- A point that failed is stored as a failed run, also when it failed before gkd.run stored it (a
-- configuration check, an error in the sweep's run function): otherwise it would read as "not
-- finished" and the sweep as a success. A run that gkd.run already ended (failed, interrupted) is left
-- as it is; one it left 'running' is ended as failed. A stop signal is not a failure.
local function record_failure(spec, p, db, err)
  if gkd.stop_requested() then return end
  local store <close> = assert(gkd.store.open(db))
  local sweep_id = assert(store:sweep(spec.name))
  local info = store:run_find(p.name, sweep_id)
  if info and info.status ~= "running" then return end
  local id = info and info.id
  if not id then
    local record = { name = p.name, sweep = spec.name, settings = util.describe(p.settings) }
    id = assert(store:run_begin(p.name, { sweep_id = sweep_id, config = gkd.json.encode(record),
      seed = math.tointeger(p.settings.seed) or 0 }))
  end
  assert(store:run_finish(id, "failed", tostring(err)))
end

-- The flags every process of the sweep gets, as the local workers do: device, sandbox and limits, reuse.
local function inherited_flags(argv)
  if gkd.options.device then argv[#argv + 1] = "--device"; argv[#argv + 1] = gkd.options.device end
  for _, f in ipairs(gkd.options.worker_flags or {}) do argv[#argv + 1] = f end
  if gkd.options.reuse == "any" then argv[#argv + 1] = "--reuse-stale" end
  return argv
end

-- The script's own arguments after "--", so that ones like "--out DIR" reach the script, not gkd sweep.
local function with_script_args(argv)
  if gkd.options.args and #gkd.options.args > 0 then argv[#argv + 1] = "--" end
  for _, a in ipairs(gkd.options.args or {}) do argv[#argv + 1] = a end
  return argv
end

-- Runs the points, `workers` at a time, returning {[name] = "ok" | error message}.
local function execute(spec, points, db, workers, steps_of)
  local outcome = {}
  local total = #points
  local done = 0
  if workers > 1 and not gkd.options.script then
    say("gkd.sweep: workers need a script file (gkd run/sweep SCRIPT.lua); running the points one by one here")
    workers = 1
  end
  if workers <= 1 then
    for _, p in ipairs(points) do
      if gkd.stop_requested() then break end
      local ok, err = xpcall(run_point, debug.traceback, spec, p, db, steps_of and steps_of[p.name])
      if not ok then record_failure(spec, p, db, err) end
      done = done + 1
      outcome[p.name] = ok and "ok" or tostring(err)
      say("[%d/%d] %s %s", done, total, p.name, ok and "finished" or ("failed: " .. tostring(err)))
    end
    return outcome
  end
  -- Workers share the cores: each gets its part unless the user fixed the thread count.
  if not os.getenv("OMP_NUM_THREADS") then
    local threads = tostring(math.max(1, gkd.sys.cpus() // workers))
    gkd.sys.setenv("OMP_NUM_THREADS", threads)
    gkd.sys.setenv("OPENBLAS_NUM_THREADS", "1")
  end
  local active, n_active, i = {}, 0, 1
  while i <= total or n_active > 0 do
    while i <= total and n_active < workers and not gkd.stop_requested() do
      local p = points[i]
      i = i + 1
      local argv = inherited_flags({ "gkd", "sweep", gkd.options.script, "--worker-point", p.name, "--db", db })
      local steps = steps_of and steps_of[p.name]
      if steps then argv[#argv + 1] = "--worker-steps"; argv[#argv + 1] = tostring(steps) end
      argv[#argv + 1] = "--quiet" -- progress lines of parallel workers would garble each other
      with_script_args(argv)
      local pid, err = gkd.sys.spawn(argv, gkd.options.exe)
      if not pid then error("gkd.sweep: " .. err, 2) end
      active[pid] = p
      n_active = n_active + 1
    end
    if n_active == 0 then break end
    local pid, how, code = gkd.sys.wait()
    if not pid then break end
    local p = active[pid]
    if p then
      active[pid] = nil
      n_active = n_active - 1
      done = done + 1
      local ok = how == "exit" and code == 0
      outcome[p.name] = ok and "ok" or (how == "signal" and ("killed by signal " .. code))
        or (code == 3 and "interrupted") or "failed"
      say("[%d/%d] %s %s", done, total, p.name, ok and "finished" or outcome[p.name])
      if not ok and outcome[p.name] ~= "interrupted" then
        record_failure(spec, p, db, how == "signal" and outcome[p.name]
          or string.format("the worker process exited with status %d", code))
      end
    end
  end
  return outcome
end

-- Looks up a metric in a final-metrics table: "loss" or "eval.rougeL".
local function metric_of(m, key)
  if not m then return nil end
  local sub = key:match("^eval%.(.+)$")
  if sub then return m.eval and m.eval[sub] end
  return m[key]
end

local function summarize(spec, points, results)
  local keys = spec.summary
  if not keys then
    keys = { "loss" }
    local seen = {}
    for _, p in ipairs(points) do
      local m = results[p.name] and results[p.name].metrics
      if m and m.eval then
        for k in pairs(m.eval) do
          if not seen[k] then seen[k] = true end
        end
      end
    end
    -- the held-out cross-entropy, the divergence on the student's own samples, and the text metrics
    local internal = { forward_kl = true, reverse_kl = true, ["jsd_0.5"] = true, own_reverse_kl = true,
      ["own_jsd_0.5"] = true, own_length = true }
    for _, k in ipairs(util.keys(seen)) do
      if not internal[k] then keys[#keys + 1] = "eval." .. k end
    end
  end
  local groups, order = {}, {}
  for _, p in ipairs(points) do
    local g = groups[p.group]
    if not g then
      g = { group = p.group, runs = 0, values = {} }
      groups[p.group] = g
      order[#order + 1] = g
    end
    local r = results[p.name]
    if r and r.status == "finished" then
      g.runs = g.runs + 1
      for _, k in ipairs(keys) do
        local v = metric_of(r.metrics, k)
        if type(v) == "number" then
          g.values[k] = g.values[k] or {}
          table.insert(g.values[k], v)
        end
      end
    end
  end
  local rows = {}
  for _, g in ipairs(order) do
    local row = { setting = g.group, runs = g.runs }
    for _, k in ipairs(keys) do
      local mean, std = util.mean_std(g.values[k] or {})
      row[k] = { mean = mean, std = std, n = #(g.values[k] or {}) }
    end
    rows[#rows + 1] = row
  end
  return rows, keys
end

local function print_summary(name, rows, keys, counts)
  local out = {}
  out[#out + 1] = string.format("sweep '%s': %d runs: %d finished, %d failed, %d not finished", name,
    counts.total, counts.finished, counts.failed, counts.total - counts.finished - counts.failed)
  local w = 7
  for _, r in ipairs(rows) do w = math.max(w, #r.setting) end
  local header = { string.format("%-" .. w .. "s %4s", "setting", "runs") }
  for _, k in ipairs(keys) do header[#header + 1] = string.format("%22s", k) end
  out[#out + 1] = table.concat(header, " ")
  for _, r in ipairs(rows) do
    local line = { string.format("%-" .. w .. "s %4d", r.setting, r.runs) }
    for _, k in ipairs(keys) do
      local c = r[k]
      if c.n == 0 then
        line[#line + 1] = string.format("%22s", "-")
      else
        line[#line + 1] = string.format("%22s", string.format("%.4g +- %.2g", c.mean, c.std))
      end
    end
    out[#out + 1] = table.concat(line, " ")
  end
  io.stdout:write(table.concat(out, "\n"), "\n")
  io.stdout:flush()
end

-- The state of every point in the store: {[name] = {status, metrics, id}}.
local function collect(store, sweep_id, points)
  local results = {}
  for _, p in ipairs(points) do
    local info = store:run_find(p.name, sweep_id)
    if info then
      local r = { id = info.id, status = info.status, last_step = info.last_step }
      if info.status == "finished" then r.metrics = util.final_metrics_from_store(store, info.id) end
      results[p.name] = r
    end
  end
  return results
end

-- Refuses to reuse stored runs (finished, or stopped and to be continued) whose configuration is not
-- the point's any more, before anything runs; gkd.run checks again for the run it is given.
local function check_stale(spec, store, sweep_id, points, db, steps_of)
  local stale, first = 0, nil
  for _, p in ipairs(points) do
    local info = store:run_find(p.name, sweep_id)
    if info and info.status ~= "failed" then
      -- A point whose configuration cannot be built fails when it runs, with its own message.
      local ok, hash, identity = pcall(function()
        local cfg, halving = point_config(spec, p, db, steps_of and steps_of[p.name])
        return util.run_identity(cfg, halving)
      end)
      local diff = ok and util.stale_settings(store, info.id, hash, identity)
      if diff then
        stale = stale + 1
        first = first or { name = p.name, diff = diff }
      end
    end
  end
  if stale > 0 then
    error(util.stale_message("gkd.sweep", first.name, first.diff)
      .. string.format(" [%d of the sweep's %d stored runs differ]", stale, #points), 0)
  end
end

-- check_stale, closing the store before its error is raised.
local function refuse_stale(spec, store, sweep_id, points, db, steps_of)
  local ok, err = pcall(check_stale, spec, store, sweep_id, points, db, steps_of)
  if not ok then
    store:close()
    error(err, 0)
  end
end

-- Points still to run: not finished (with at least `steps` steps when given), not failed (unless
-- retry_failed), not running in a live process.
local function pending(store, sweep_id, points, retry_failed, steps_of)
  local todo, busy, failed = {}, 0, 0
  for _, p in ipairs(points) do
    local info = store:run_find(p.name, sweep_id)
    local need = steps_of and steps_of[p.name]
    if not info then
      todo[#todo + 1] = p
    elseif info.status == "finished" and (not need or info.last_step >= need) then
      -- done
    elseif info.status == "failed" and not retry_failed then
      failed = failed + 1
    elseif info.status == "running" and util.running_elsewhere(store, info.id) then
      busy = busy + 1
    else
      todo[#todo + 1] = p
    end
  end
  return todo, busy, failed
end

-- Successive halving's survivor rule, the one place it is written (the local rungs and the Slurm
-- controller both call it): the settings (groups of seeds) are ranked by the mean of the halving metric
-- over their stored runs, unscored ones last, ties by name; the best ceil(n / eta) are kept, with all
-- their seeds.
local function halving_survivors(spec, survivors, results, rung)
  local h = spec.halving
  local key, mode = h.metric or "loss", h.mode or "min"
  local by_group, groups = {}, {}
  for _, p in ipairs(survivors) do
    local v = metric_of(results[p.name] and results[p.name].metrics, key)
    local g = by_group[p.group]
    if not g then g = { name = p.group, values = {}, points = {} }; by_group[p.group] = g; groups[#groups + 1] = g end
    g.points[#g.points + 1] = p
    if type(v) == "number" then g.values[#g.values + 1] = v end
  end
  for _, g in ipairs(groups) do
    g.score = #g.values > 0 and (util.mean_std(g.values)) or nil
  end
  table.sort(groups, function(a, b)
    if a.score == nil then return false end
    if b.score == nil then return true end
    if a.score ~= b.score then
      if mode == "max" then return a.score > b.score end
      return a.score < b.score
    end
    return a.name < b.name
  end)
  local keep = math.max(1, math.ceil(#groups / (h.eta or 3)))
  local kept = {}
  for gi = 1, keep do
    for _, p in ipairs(groups[gi].points) do kept[#kept + 1] = p end
  end
  say("sweep '%s': rung %d kept %d of %d settings by %s (%s)", spec.name, rung, keep, #groups, key, mode)
  return kept
end

-- The steps of each rung of successive halving: min_steps, times eta, ..., up to the configured steps;
-- { false } (one pass at the configured steps) without halving.
local function halving_rungs(spec, full_steps)
  if not spec.halving then return { false } end
  local h = spec.halving
  local eta, s = h.eta or 3, h.min_steps or math.max(1, full_steps // 9)
  local rungs = {}
  while s < full_steps do rungs[#rungs + 1] = s; s = s * eta end
  rungs[#rungs + 1] = full_steps
  return rungs
end

-- ---- Slurm job arrays (gkd sweep --slurm, docs/cluster.md) ----
-- Rules: everything a Slurm sweep keeps lives in one folder beside the run store, <db dir>/<sweep>.slurm:
-- points.tsv (array index -> point name), points/I.db (array task I's own run store: SQLite must not be
-- shared over NFS, so each task writes only its file), rung-R.sbatch and rung-R.points (the array script
-- and the points of each rung), controller-R.sbatch, jobs.tsv (what was submitted) and logs/. The run
-- store (--db) is only written where gkd sweep --slurm and gkd merge are run, by merging the point files;
-- a halving controller, which runs on a compute node, keeps its own merged copy, <sweep>.controller.db
-- beside it (one controller runs at a time), so no SQLite file is written from two machines. What
-- runs next is decided from the merged store (the same rules as the local sweep) and from squeue (points
-- whose task is still queued or running are left alone), so submitting again, --resume, and the
-- controller of a halving rung are one code path.

-- Seconds before its time limit that Slurm sends SIGTERM, so a run stops with a checkpoint (#SBATCH --signal).
local SLURM_SIGNAL_LEAD = 60
local SLURM_RESOURCES = { { "partition", "partition" }, { "time", "time" }, { "gpus_per_task", "gpus-per-task" },
  { "cpus_per_task", "cpus-per-task" }, { "mem", "mem" }, { "account", "account" } }

local function shell_quote(v)
  return "'" .. (tostring(v):gsub("'", "'\\''")) .. "'"
end

local function abs_path(path)
  if path:sub(1, 1) == "/" then return path end
  return (gkd.options.cwd or ".") .. "/" .. path
end

local function write_file(path, text)
  local f, err = io.open(path, "w")
  if not f then error("gkd.sweep: " .. err, 0) end
  f:write(text)
  f:close()
end

local function read_lines(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  return lines
end

-- Runs a shell command line: its exit status and its output (stderr included, for the message).
local function capture(cmd)
  local f = io.popen(cmd .. " 2>&1", "r")
  if not f then return 127, "cannot run: " .. cmd end
  local out = f:read("a") or ""
  local ok, _, code = f:close()
  return ok and 0 or (code or 1), out
end

-- "0-3,5,7-8": sorted indices as an --array list.
local function index_ranges(idx)
  local parts, i = {}, 1
  while i <= #idx do
    local j = i
    while j < #idx and idx[j + 1] == idx[j] + 1 do j = j + 1 end
    parts[#parts + 1] = i == j and tostring(idx[i]) or (idx[i] .. "-" .. idx[j])
    i = j + 1
  end
  return table.concat(parts, ",")
end

local function shell_words(argv)
  local q = {}
  for i, a in ipairs(argv) do q[i] = shell_quote(a) end
  return table.concat(q, " ")
end

local function sbatch_header(ctx, lines, job_name, output, with_resources)
  lines[#lines + 1] = "#SBATCH --job-name=" .. job_name
  lines[#lines + 1] = "#SBATCH --output=" .. output
  lines[#lines + 1] = "#SBATCH --chdir=" .. ctx.cwd
  for _, r in ipairs(SLURM_RESOURCES) do
    local v = ctx.slurm[r[1]]
    if v and (with_resources or r[1] == "partition" or r[1] == "account" or r[1] == "time") then
      lines[#lines + 1] = "#SBATCH --" .. r[2] .. "=" .. v
    end
  end
end

-- The array script of one rung: task I runs point I into points/I.db, with the exec'd gkd as the batch
-- shell itself, so that --signal=B:TERM reaches the training (a clean stop with a checkpoint) and a
-- requeued task continues from that checkpoint.
local function array_script(ctx, rung, steps)
  local lines = { "#!/bin/bash",
    string.format("# Written by gkd sweep --slurm: sweep '%s', rung %d of %d%s. Array task I runs point I",
      ctx.name, rung, ctx.rungs, steps and string.format(" (%d steps)", steps) or ""),
    "# (points.tsv) into its own run store points/I.db; gkd merge gathers them (docs/cluster.md)." }
  sbatch_header(ctx, lines, ctx.job_name, ctx.dir .. "/logs/%A_%a.out", true)
  lines[#lines + 1] = "#SBATCH --requeue"
  lines[#lines + 1] = "#SBATCH --open-mode=append"
  lines[#lines + 1] = "#SBATCH --signal=B:TERM@" .. SLURM_SIGNAL_LEAD
  lines[#lines + 1] = "set -u"
  lines[#lines + 1] = ': "${OMP_NUM_THREADS:=${SLURM_CPUS_PER_TASK:-1}}" "${OPENBLAS_NUM_THREADS:=1}"'
  lines[#lines + 1] = "export OMP_NUM_THREADS OPENBLAS_NUM_THREADS"
  lines[#lines + 1] = 'i="$SLURM_ARRAY_TASK_ID"'
  local argv = inherited_flags({})
  if steps then argv[#argv + 1] = "--worker-steps"; argv[#argv + 1] = tostring(steps) end
  argv[#argv + 1] = "--quiet"
  with_script_args(argv)
  lines[#lines + 1] = string.format('exec %s sweep %s --point "$i" --db %s"$i".db %s', shell_quote(ctx.exe),
    shell_quote(ctx.script), shell_quote(ctx.dir .. "/points/"), shell_words(argv))
  return table.concat(lines, "\n") .. "\n"
end

-- The controller after a halving rung: merges, keeps the survivors and submits the next rung.
local function controller_script(ctx, rung)
  local lines = { "#!/bin/bash",
    string.format("# Written by gkd sweep --slurm: sweep '%s', after rung %d: merges the point stores, keeps", ctx.name, rung),
    "# the rung's best settings (successive halving) and submits the next rung (docs/cluster.md)." }
  sbatch_header(ctx, lines, ctx.job_name .. "-next", ctx.dir .. "/logs/controller-%j.out", false)
  local argv = { "--slurm", "--advance", "--db", ctx.controller_db }
  for _, r in ipairs(SLURM_RESOURCES) do
    if ctx.slurm[r[1]] then argv[#argv + 1] = "--" .. r[2]; argv[#argv + 1] = tostring(ctx.slurm[r[1]]) end
  end
  if ctx.slurm.max_parallel then argv[#argv + 1] = "--max-parallel"; argv[#argv + 1] = tostring(ctx.slurm.max_parallel) end
  if gkd.options.retry_failed then argv[#argv + 1] = "--retry-failed" end
  inherited_flags(argv)
  with_script_args(argv)
  lines[#lines + 1] = string.format("exec %s sweep %s %s", shell_quote(ctx.exe), shell_quote(ctx.script), shell_words(argv))
  return table.concat(lines, "\n") .. "\n"
end

-- Submits one script; the job id. A dry run only says what it would run.
local function sbatch(ctx, args, script)
  local cmd = "sbatch --parsable " .. args .. " " .. shell_quote(script)
  if ctx.slurm.dry_run then
    print("dry run, not submitted: " .. cmd)
    return nil
  end
  local code, out = capture(cmd)
  local job
  for line in out:gmatch("[^\n]+") do job = line:match("^(%d+)") or job end
  if code ~= 0 or not job then
    error(string.format("gkd.sweep: %s failed (exit status %s): %s", cmd, tostring(code), out), 0)
  end
  return job
end

local function slurm_submit(ctx, rung, steps, todo)
  local idx = {}
  for _, p in ipairs(todo) do idx[#idx + 1] = ctx.index_of[p.name] end
  table.sort(idx)
  local script = ctx.dir .. "/rung-" .. rung .. ".sbatch"
  write_file(script, array_script(ctx, rung, steps))
  local array = index_ranges(idx) .. (ctx.slurm.max_parallel and ("%" .. ctx.slurm.max_parallel) or "")
  local job = sbatch(ctx, "--array=" .. array, script)
  local log = {}
  if job then
    print(string.format("submitted Slurm job %s: sweep '%s', rung %d, %d array task%s (points %s)", job, ctx.name,
      rung, #idx, #idx == 1 and "" or "s", index_ranges(idx)))
    log[#log + 1] = string.format("%d\tarray\t%s\t%s\n", rung, job, index_ranges(idx))
  end
  if rung < ctx.rungs then
    local ctl = ctx.dir .. "/controller-" .. rung .. ".sbatch"
    write_file(ctl, controller_script(ctx, rung))
    local next_job = sbatch(ctx, "--dependency=afterany:" .. (job or "ARRAY_JOB_ID"), ctl)
    if next_job then
      print(string.format("submitted Slurm job %s: the controller of rung %d (after job %s)", next_job, rung, job))
      log[#log + 1] = string.format("%d\tcontroller\t%s\t-\n", rung, next_job)
    end
  end
  if #log > 0 then
    local f = assert(io.open(ctx.dir .. "/jobs.tsv", "a"))
    f:write(table.concat(log))
    f:close()
  end
end

-- Array indices whose task of one of this sweep's jobs is still queued or running: {[index] = job}.
local function slurm_busy(ctx)
  local ours = {}
  for _, l in ipairs(read_lines(ctx.dir .. "/jobs.tsv") or {}) do
    local job = l:match("^%d+\tarray\t(%d+)")
    if job then ours[job] = true end
  end
  local busy = {}
  if next(ours) == nil or ctx.slurm.dry_run then return busy end
  local code, out = capture("squeue -h -r -o '%F %K' -n " .. shell_quote(ctx.job_name))
  if code ~= 0 then
    -- Submitting a point whose task still runs would give its store two writers: without squeue, every
    -- point the store says is running counts as running.
    say("gkd.sweep: warning: squeue failed (%s), so every point stored as running is taken as still running: %s",
      tostring(code), out:gsub("%s+$", ""))
    ctx.squeue_failed = true
    return busy
  end
  for line in out:gmatch("[^\n]+") do
    local job, task = line:match("^%s*(%d+)%s+(%d+)")
    if job and ours[job] then busy[tonumber(task)] = job end
  end
  return busy
end

-- Merges every point store there is into the run store; a file that cannot be merged now (busy, half
-- written, not a store) is named and left for a later merge.
local function slurm_merge(ctx, db)
  local store <close> = assert(gkd.store.open(db))
  local merged, waiting = 0, 0
  for i = 0, #ctx.points - 1 do
    local path = ctx.dir .. "/points/" .. i .. ".db"
    if gkd.sys.exists(path) then
      local r, err = store:merge(path)
      if not r then
        say("gkd.sweep: warning: %s (left for a later merge)", err)
      elseif r.skipped then
        waiting = waiting + 1
      else
        merged = merged + 1
      end
    end
  end
  if merged + waiting > 0 then
    say("sweep '%s': merged %d point stores into %s%s", ctx.name, merged, db,
      waiting > 0 and string.format(" (%d not started yet)", waiting) or "")
  end
end

-- Points still to submit: not finished (with the rung's steps), not failed (unless retry_failed), not
-- queued or running in Slurm. A point whose task died (left 'running') is submitted again, unless squeue
-- could not say.
local function slurm_pending(ctx, store, sweep_id, pts, retry_failed, steps_of, busy)
  local todo, n_busy, failed = {}, 0, 0
  for _, p in ipairs(pts) do
    local info = store:run_find(p.name, sweep_id)
    local need = steps_of and steps_of[p.name]
    if busy[ctx.index_of[p.name]] or (ctx.squeue_failed and info and info.status == "running") then
      n_busy = n_busy + 1
    elseif not info then
      todo[#todo + 1] = p
    elseif info.status == "finished" and (not need or info.last_step >= need) then
      -- done
    elseif info.status == "failed" and not retry_failed then
      failed = failed + 1
    else
      todo[#todo + 1] = p
    end
  end
  return todo, n_busy, failed
end

-- gkd sweep --slurm: submits what is left of the current rung, or, when the rung is complete, picks the
-- next rung's points (halving) and submits them. True when the whole sweep is complete.
local function slurm_sweep(spec, points, db, sweep_id, rung_steps, retry_failed, reuse)
  if not gkd.options.script then
    error("gkd.sweep: --slurm needs a script file (gkd sweep SCRIPT.lua --slurm): array tasks run it again", 0)
  end
  local ctx = { name = spec.name, points = points, slurm = gkd.options.slurm, rungs = #rung_steps,
    cwd = gkd.options.cwd or ".", db = abs_path(db), script = gkd.options.script, exe = gkd.options.exe or "gkd",
    job_name = "gkd-" .. spec.name:gsub("[^%w%._%-]", "_"), index_of = {} }
  local base = (ctx.db:match("^(.*)/[^/]*$") or ".") .. "/" .. spec.name:gsub("[^%w%._%-]", "_")
  ctx.dir, ctx.controller_db = base .. ".slurm", base .. ".controller.db"
  for _, sub in ipairs({ "/points", "/logs" }) do assert(gkd.sys.mkdir(ctx.dir .. sub)) end
  local names = {}
  for i, p in ipairs(points) do
    ctx.index_of[p.name] = i - 1
    names[i] = (i - 1) .. "\t" .. p.name
  end
  write_file(ctx.dir .. "/points.tsv", table.concat(names, "\n") .. "\n")
  slurm_merge(ctx, db)

  local rung, survivors = 1, points
  for r = #rung_steps, 1, -1 do
    local lines = read_lines(ctx.dir .. "/rung-" .. r .. ".points")
    if lines then
      rung, survivors = r, {}
      for _, l in ipairs(lines) do survivors[#survivors + 1] = points[(tonumber(l) or -1) + 1] end
      break
    end
  end
  local busy = slurm_busy(ctx)
  local advanced = false
  while true do
    local steps = rung_steps[rung]
    local steps_of
    if steps then
      steps_of = {}
      for _, p in ipairs(survivors) do steps_of[p.name] = steps end
    end
    local idx = {}
    for _, p in ipairs(survivors) do idx[#idx + 1] = ctx.index_of[p.name] end
    write_file(ctx.dir .. "/rung-" .. rung .. ".points", table.concat(idx, "\n") .. "\n")
    local store = assert(gkd.store.open(db))
    if reuse ~= "any" then refuse_stale(spec, store, sweep_id, survivors, db, steps_of) end
    local todo, n_busy, failed = slurm_pending(ctx, store, sweep_id, survivors, retry_failed, steps_of, busy)
    store:close()
    say("sweep '%s'%s: %d runs, %d to submit, %d finished%s%s", spec.name,
      steps and string.format(" (rung %d of %d, %d steps)", rung, #rung_steps, steps) or "", #survivors, #todo,
      #survivors - #todo - n_busy - failed,
      n_busy > 0 and string.format(", %d queued or running in Slurm", n_busy) or "",
      failed > 0 and string.format(", %d failed (--retry-failed to run them again)", failed) or "")
    -- the controller leaves the rung it waited for to --resume when some of it did not finish; a rung
    -- it has just chosen is submitted
    if #todo > 0 and ctx.slurm.advance and not advanced then
      error(string.format("gkd.sweep: %d point%s of rung %d did not finish (a failed task, a time limit or a kill); "
        .. "gkd sweep %s --resume --slurm submits them again", #todo, #todo == 1 and "" or "s", rung,
        gkd.options.script), 0)
    end
    if #todo > 0 then
      slurm_submit(ctx, rung, steps, todo)
      return false
    end
    if n_busy > 0 or rung == #rung_steps then return n_busy == 0 end
    store = assert(gkd.store.open(db))
    local results = collect(store, sweep_id, survivors)
    store:close()
    survivors = halving_survivors(spec, survivors, results, rung)
    rung, advanced = rung + 1, true
  end
end

-- An array task's point store is its own: a run left 'running' there belongs to an earlier task of the
-- same index that died (killed, node lost; Slurm runs one task per index at a time). It is marked
-- interrupted, so that this task continues it from its checkpoint.
local function release_orphan(spec, p, db)
  local store <close> = assert(gkd.store.open(db))
  local info = store:run_find(p.name, assert(store:sweep(spec.name)))
  if info and info.status == "running" then
    assert(store:run_finish(info.id, "interrupted", "its Slurm task ended without finishing it (killed, or its node was lost)"))
  end
end

function gkd.sweep(spec)
  util.check("gkd.sweep", spec, SWEEP_SCHEMA, 2)
  -- Under mpirun/srun every rank would run the whole sweep and write the sweep's rows side by side.
  if gkd.dist.launched() ~= 1 and select(2, gkd.dist.init()) > 1 then
    error("gkd.sweep: started as one of several ranks (mpirun/srun); a sweep spreads its points with --workers "
      .. "or --slurm (docs/cluster.md), and a data-parallel run is one gkd.run (docs/data-parallel.md)", 2)
  end
  gkd.options.sweeps_run = (gkd.options.sweeps_run or 0) + 1
  local retry_failed = spec.retry_failed
  if retry_failed == nil then retry_failed = gkd.options.retry_failed end
  local reuse = gkd.options.reuse or spec.reuse or "same"
  if not spec.name then error("gkd.sweep: 'name' is required", 2) end
  if not spec.run and not spec.base then error("gkd.sweep: give 'run' (function(settings) -> config) or 'base'", 2) end
  local points = gkd.sweep_points(spec)
  local db = gkd.options.db or spec.db or "runs.db"
  if gkd.options.point then
    -- A Slurm array task (or a user): the point of that index, in its own store, then leave.
    local p = points[gkd.options.point + 1]
    if not p then
      error(string.format("gkd.sweep: --point %d: sweep '%s' has points 0 to %d", gkd.options.point, spec.name,
        #points - 1), 0)
    end
    release_orphan(spec, p, db)
    gkd.options.worker_point = p.name
  end
  if gkd.options.worker_point then
    -- A worker process: run the one point handed out by the parent, then leave.
    for _, p in ipairs(points) do
      if p.name == gkd.options.worker_point then
        local ok, err = xpcall(run_point, debug.traceback, spec, p, db, gkd.options.worker_steps)
        if not ok then
          say("%s: %s", p.name, tostring(err))
          record_failure(spec, p, db, err)
        end
        io.stdout:flush()
        os.exit(ok and 0 or (gkd.stop_requested() and 3 or 1), true)
      end
    end
    return { name = spec.name, runs = {}, summary = {}, counts = { total = 0, finished = 0, failed = 0 } }
  end
  local workers = gkd.options.workers or spec.workers or 1
  local store = assert(gkd.store.open(db))
  local sweep_id = assert(store:sweep(spec.name, gkd.json.encode(util.describe({
    grid = spec.grid, random = spec.random, trials = spec.trials, seeds = spec.seeds or { 1 },
    workers = workers, halving = spec.halving, points = #points,
  }))))
  local full_steps
  if spec.halving then
    local probe = point_config(spec, points[1], db)
    full_steps = probe.steps or 100
  end
  store:close()

  local survivors = points
  local rung_steps = halving_rungs(spec, full_steps)
  if gkd.options.slurm then
    if not slurm_sweep(spec, points, db, sweep_id, rung_steps, retry_failed, reuse) then
      return { name = spec.name, sweep_id = sweep_id, submitted = true, runs = {}, summary = {},
        counts = { total = #points, finished = 0, failed = 0 } }
    end
  end
  for rung, steps in ipairs(gkd.options.slurm and {} or rung_steps) do
    local steps_of
    if spec.halving then
      steps_of = {}
      for _, p in ipairs(survivors) do steps_of[p.name] = steps end
    end
    store = assert(gkd.store.open(db))
    if reuse ~= "any" then refuse_stale(spec, store, sweep_id, survivors, db, steps_of) end
    local todo, busy, failed = pending(store, sweep_id, survivors, retry_failed, steps_of)
    store:close()
    local skipped = #survivors - #todo - busy - failed
    say("sweep '%s'%s: %d runs, %d to run, %d already finished%s%s, %d worker%s", spec.name,
      steps and string.format(" (rung %d, %d steps)", rung, steps) or "", #survivors, #todo, skipped,
      busy > 0 and string.format(", %d running elsewhere", busy) or "",
      failed > 0 and string.format(", %d failed (retry_failed = true to run them again)", failed) or "",
      workers, workers == 1 and "" or "s")
    execute(spec, todo, db, workers, steps_of)
    if gkd.stop_requested() then break end
    if spec.halving and rung < #rung_steps then
      store = assert(gkd.store.open(db))
      local results = collect(store, sweep_id, survivors)
      store:close()
      survivors = halving_survivors(spec, survivors, results, rung)
    end
  end

  store = assert(gkd.store.open(db))
  local results = collect(store, sweep_id, points)
  store:close()
  local counts = { total = #points, finished = 0, failed = 0 }
  for _, p in ipairs(points) do
    local r = results[p.name]
    if r and r.status == "finished" then counts.finished = counts.finished + 1 end
    if r and r.status == "failed" then counts.failed = counts.failed + 1 end
  end
  if counts.failed > 0 then gkd.options.sweep_failures = (gkd.options.sweep_failures or 0) + counts.failed end
  local rows, keys = summarize(spec, points, results)
  print_summary(spec.name, rows, keys, counts)
  local runs = {}
  for _, p in ipairs(points) do
    local r = results[p.name] or { status = "missing" }
    runs[#runs + 1] = { name = p.name, settings = p.settings, status = r.status, metrics = r.metrics, id = r.id }
  end
  return { name = spec.name, sweep_id = sweep_id, runs = runs, summary = rows, counts = counts }
end
