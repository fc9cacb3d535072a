-- Shared parts of the paper reproductions (experiments/paper/*.lua): deterministic data with fixed
-- splits, whole-output metrics, scale knobs, and store queries for the report.
-- Rules: nothing here depends on the time, the machine or math.random; a split is a function of the
-- example's key only, so adding examples never moves an old one to another split.
local gkd = require "gkd"

local M = {}

-- Scale knobs (environment): GKD_SMOKE=1 (a seconds-scale run for the test suite), GKD_SCALE (steps x
-- this, default 1), GKD_PAPER_OUT (the results folder).
M.smoke = os.getenv("GKD_SMOKE") == "1"
M.scale = tonumber(os.getenv("GKD_SCALE") or "") or 1

-- 32-bit FNV-1a of a string: the split hash (stable across Lua versions and machines).
function M.fnv1a(s)
  local h = 2166136261
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = (h * 16777619) & 0xffffffff
  end
  return h
end

-- The split of a key: 80 % train, 10 % validation, 10 % test.
function M.split_of(key)
  local b = M.fnv1a(key) % 100
  if b < 80 then return "train" elseif b < 90 then return "validation" else return "test" end
end

-- A small deterministic generator (64-bit LCG, Knuth's MMIX constants; the high bits are used).
function M.lcg(seed)
  local state = seed
  return function(n) -- an integer in [0, n)
    state = state * 6364136223846793005 + 1442695040888963407
    return ((state >> 33) & 0x7fffffff) % n
  end
end

-- Writes a list of flat string tables as JSONL.
function M.write_jsonl(path, rows)
  local f = assert(io.open(path .. ".tmp", "w"))
  for _, r in ipairs(rows) do f:write(gkd.json.encode(r), "\n") end
  assert(f:close())
  assert(os.rename(path .. ".tmp", path))
end

function M.mkdir(path) assert(gkd.sys.mkdir(path)) end

-- Mean and sample standard deviation of a list (nil when empty; std 0 for one value).
function M.mean_std(xs)
  if #xs == 0 then return nil end
  return gkd.util.mean_std(xs)
end

-- Area under an evaluation curve {{step, value}, ...} by the trapezoid rule, divided by the step range:
-- the mean value over training (1 = perfect from the first step).
function M.auc(curve)
  if #curve < 2 then return curve[1] and curve[1][2] or nil end
  local a = 0
  for i = 2, #curve do
    a = a + (curve[i][1] - curve[i - 1][1]) * (curve[i][2] + curve[i - 1][2]) / 2
  end
  return a / (curve[#curve][1] - curve[1][1])
end

-- The evaluation curve of one metric of one run: {{step, value}, ...} by step.
function M.curve(store, run_id, metric, split)
  local rows = assert(store:query([[SELECT step, value FROM evals WHERE run_id = ? AND metric = ? AND split = ?
    ORDER BY step]], run_id, metric, split or "held_out"))
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = { r.step, r.value } end
  return out
end

-- The final evaluation of a run: {[metric] = value} at its last evaluated step.
function M.final_eval(store, run_id)
  local rows = assert(store:query([[SELECT metric, value FROM evals e WHERE run_id = ?
    AND step = (SELECT max(step) FROM evals WHERE run_id = ?)]], run_id, run_id))
  local out = {}
  for _, r in ipairs(rows) do out[r.metric] = r.value end
  return out
end

-- The newest finished run of a name: {id, status, ...} or nil.
function M.finished_run(store, name)
  local rows = assert(store:query([[SELECT id, status, started_at, finished_at, host FROM runs WHERE name = ?
    ORDER BY id DESC LIMIT 1]], name))
  local r = rows[1]
  if r and r.status == "finished" then return r end
  return nil
end

-- The methods of the comparison: a fresh table (scripts add their lambda 0.5 variant to it) and their order.
function M.variants()
  return {
    ["sft"] = { method = "sft" },
    ["supervised_kd"] = { method = "supervised_kd", divergence = gkd.fkl() },
    ["seqkd"] = { method = "seqkd" },
    ["imitkd"] = { method = "imitkd", divergence = gkd.fkl() },
    ["gkd-fkl"] = { method = "gkd", divergence = gkd.fkl() },
    ["gkd-rkl"] = { method = "gkd", divergence = gkd.rkl() },
    ["gkd-jsd0.1"] = { method = "gkd", divergence = gkd.jsd(0.1) },
    ["gkd-jsd0.5"] = { method = "gkd", divergence = gkd.jsd(0.5) },
    ["gkd-jsd0.9"] = { method = "gkd", divergence = gkd.jsd(0.9) },
  }
end
M.ORDER = { "sft", "supervised_kd", "seqkd", "imitkd", "gkd-fkl", "gkd-rkl", "gkd-jsd0.1", "gkd-jsd0.5", "gkd-jsd0.9" }

-- The last checkpoint of every finished run of the named sweeps: {{name =, path =}, ...} in run order.
function M.finished_checkpoints(db, sweeps)
  local store <close> = assert(gkd.store.open(db, { readonly = true }))
  local marks = {}
  for i = 1, #sweeps do marks[i] = "?" end
  local rows = assert(store:query(string.format([[SELECT r.name, r.id FROM runs r JOIN sweeps s ON s.id = r.sweep_id
    WHERE s.name IN (%s) AND r.status = 'finished' ORDER BY r.id]], table.concat(marks, ", ")), table.unpack(sweeps)))
  local out = {}
  for _, r in ipairs(rows) do
    local step, path = store:checkpoint_latest(r.id)
    if step then out[#out + 1] = { name = r.name, path = path } end
  end
  return out
end

-- Appends a machine note to OUT/machine.txt for the report: what ran where, and how loaded the machine was
-- (other work slows runs).
function M.note(out, what)
  local cpu = io.open("/proc/cpuinfo")
  local model_name = cpu and cpu:read("a"):match("model name%s*:%s*([^\n]+)") or "?"
  if cpu then cpu:close() end
  local la = io.open("/proc/loadavg")
  local load = la and la:read("l") or "?"
  if la then la:close() end
  local f = assert(io.open(out .. "/machine.txt", "a"))
  f:write(string.format("%s %s: host %s, %d cores (%s), load average %s, OMP_NUM_THREADS=%s, smoke=%s scale=%g\n",
    os.date("!%Y-%m-%dT%H:%M:%SZ"), what, gkd.sys.hostname(), gkd.sys.cpus(), model_name, load,
    os.getenv("OMP_NUM_THREADS") or "unset", tostring(M.smoke), M.scale))
  f:close()
end

-- The stem of a Debian package name (the name without -dev, -doc, -dbg, ... and a trailing version): the key
-- that keeps the variants of one package, whose descriptions are near copies, in one split.
local STEM_SUFFIXES = { "-dev", "-doc", "-dbg", "-dbgsym", "-prof", "-common", "-data", "-bin", "-utils", "-tools",
  "-examples", "-plugin", "-perl", "-java", "-udeb" }
function M.package_stem(pkg)
  local s = pkg
  local changed = true
  while changed do
    changed = false
    for _, suf in ipairs(STEM_SUFFIXES) do
      if #s > #suf and s:sub(-#suf) == suf then s = s:sub(1, -#suf - 1); changed = true end
    end
    local t = s:gsub("[%d%.%-]+$", "")
    if t ~= s and #t > 0 then s = t; changed = true end
  end
  return s
end

return M
