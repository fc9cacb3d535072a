-- gkd prelude, part 1: helpers every other part uses. Data paths, default task files, configuration
-- checking (unknown keys with a suggestion, types, ranges), divergence shorthands, formatting.
-- Each prelude file is a chunk called with the `gkd` module table; it adds fields to it.
local gkd = ...

local util = {}
gkd.util = util

-- Edit distance (Levenshtein) between two short strings.
function util.distance(a, b)
  local la, lb = #a, #b
  local row = {}
  for j = 0, lb do row[j] = j end
  for i = 1, la do
    local diag = row[0]
    row[0] = i
    for j = 1, lb do
      local up = row[j]
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      row[j] = math.min(diag + cost, up + 1, row[j - 1] + 1)
      diag = up
    end
  end
  return row[lb]
end

-- The name in `valid` (a list or a set) closest to `name`, or nil when none is close.
function util.closest(name, valid)
  local best, best_d
  local lower = name:lower()
  local function try(v)
    local d = util.distance(name, v)
    if v:lower() == lower then d = 0.5 end -- a case slip first
    if not best_d or d < best_d or (d == best_d and v < best) then best, best_d = v, d end
  end
  if valid[1] then
    for _, v in ipairs(valid) do try(v) end
  else
    for v in pairs(valid) do try(v) end
  end
  if best and best_d <= math.max(1, (#name + 1) // 2) then return best end
  return nil
end

-- "what: unknown key 'lamda' (did you mean 'lambda'?)"
function util.unknown_key(what, key, valid)
  local hint = gkd._foreign_hint(key, valid) -- a name from TRL first ("lmbda": gkd's lambda)
  if hint then return string.format("%s: unknown key '%s' (%s)", what, key, hint) end
  local near = util.closest(key, valid)
  if near then
    return string.format("%s: unknown key '%s' (did you mean '%s'?)", what, key, near)
  end
  return string.format("%s: unknown key '%s'", what, key)
end

-- Type names as the checks use them.
local function kind_of(v)
  local t = type(v)
  if t == "userdata" then
    local mt = getmetatable(v)
    return (mt and mt.__name) or "userdata"
  end
  if t == "number" and math.type(v) == "integer" then return "integer" end
  return t
end
util.kind_of = kind_of

-- Checks a table against a schema: schema[key] = {type = "number"|"integer"|"string"|"boolean"|
-- "function"|"table"|"gkd.Model"|... or a list of those, min =, max =, values = {...}, fields = schema
-- (for sub-tables), check = function(v) -> ok, message}. Raises naming the first problem at `level`.
function util.check(what, t, schema, level)
  level = (level or 1) + 1
  if type(t) ~= "table" then
    error(string.format("%s: a table expected, got %s", what, kind_of(t)), level)
  end
  for k, v in pairs(t) do
    if type(k) ~= "string" then
      error(string.format("%s: keys must be names, got a %s key", what, type(k)), level)
    end
    local spec = schema[k]
    if not spec then error(util.unknown_key(what, k, schema), level) end
    local types = type(spec.type) == "table" and spec.type or { spec.type }
    local ok = false
    local kv = kind_of(v)
    for _, ty in ipairs(types) do
      if ty == kv or ty == "any" or (ty == "number" and kv == "integer") then ok = true break end
    end
    if not ok then
      error(string.format("%s: '%s' must be %s, got %s", what, k, table.concat(types, " or "), kv), level)
    end
    if type(v) == "number" then
      if spec.min and v < spec.min then
        error(string.format("%s: '%s' must be >= %s, got %s", what, k, spec.min, v), level)
      end
      if spec.max and v > spec.max then
        error(string.format("%s: '%s' must be <= %s, got %s", what, k, spec.max, v), level)
      end
    end
    if spec.values and type(v) == "string" then
      local found = false
      for _, allowed in ipairs(spec.values) do if allowed == v then found = true end end
      if not found then
        local near = util.closest(v, spec.values)
        error(string.format("%s: '%s' must be one of %s, got '%s'%s", what, k, table.concat(spec.values, ", "), v,
          near and (" (did you mean '" .. near .. "'?)") or ""), level)
      end
    end
    if spec.fields and type(v) == "table" then util.check(what .. "." .. k, v, spec.fields, level) end
    if spec.check then
      local good, msg = spec.check(v)
      if not good then error(string.format("%s: '%s' %s", what, k, msg), level) end
    end
  end
  return t
end

-- A shallow copy.
function util.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Sorted keys of a table.
function util.keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

-- A value as it appears in run names and tables: numbers in %g form, other values by tostring.
function util.format_value(v)
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.6g", v)
  end
  return tostring(v)
end

-- Mean and sample standard deviation of a list of numbers (std 0 for one value).
function util.mean_std(xs)
  local n = #xs
  if n == 0 then return 0 / 0, 0 / 0 end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  local mean = s / n
  if n == 1 then return mean, 0 end
  local ss = 0
  for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
  return mean, math.sqrt(ss / (n - 1))
end

-- FNV-1a, 64 bits, of a string, as 16 hex digits: a run's config hash (docs/schema.md). Lua's integer
-- arithmetic wraps around modulo 2^64, as the hash needs.
function util.fnv1a64(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s, 256 do
    local bytes = { s:byte(i, i + 255) }
    for j = 1, #bytes do h = (h ~ bytes[j]) * 0x100000001b3 end
  end
  return string.format("%016x", h)
end

-- Data files: `name` is "debdesc-sample" (the built-in sample, a fixture of the source tree), or a
-- data set name looked up in $GKD_DATA_DIR as NAME.jsonl.xz or NAME.jsonl. A path with a slash is
-- returned as is.
function gkd.data_path(name)
  name = name or "debdesc-sample"
  if name:find("/", 1, true) then return name end
  local dir = os.getenv("GKD_DATA_DIR")
  if dir and dir ~= "" then
    for _, suffix in ipairs({ ".jsonl", ".jsonl.xz" }) do
      local p = dir .. "/" .. name .. suffix
      if gkd.sys.exists(p) then return p end
    end
  end
  if name == "debdesc-sample" then
    return gkd._source_dir() .. "/tests/fixtures/debdesc-sample.jsonl"
  end
  error(string.format("gkd.data_path: no data set '%s' (set GKD_DATA_DIR to a folder with %s.jsonl[.xz])", name, name), 2)
end

-- summarize and translate default their path to the built-in data.
do
  local summarize, translate = gkd.task.summarize, gkd.task.translate
  gkd.task.summarize = function(opts)
    opts = util.copy(opts or {})
    opts.path = opts.path or gkd.data_path("debdesc-sample")
    return summarize(opts)
  end
  gkd.task.translate = function(opts)
    opts = util.copy(opts or {})
    if not opts.path then
      local pair = (opts.source or "en") .. "-" .. (opts.target or "de")
      opts.path = gkd.data_path("ddtp-" .. pair)
    end
    return translate(opts)
  end
end

-- Is v usable as a schedule (number, gkd.Schedule or function(step, metrics))?
function gkd.schedule.is_schedule(v)
  local k = kind_of(v)
  return k == "number" or k == "integer" or k == "gkd.Schedule" or k == "function"
end

-- The value of a schedule-like setting at `step` (functions get the metrics table, {} by default).
function gkd.schedule.at(v, step, metrics)
  local k = kind_of(v)
  if k == "number" or k == "integer" then return v end
  if k == "gkd.Schedule" then return v:value(step) end
  if k == "function" then return v(step, metrics or { eval = {} }) end
  error("gkd.schedule.at: a number, a gkd.Schedule or a function expected, got " .. k, 2)
end

-- Divergence shorthands: gkd.jsd(0.9), gkd.fkl(), gkd.rkl(), gkd.tv(), gkd.skew_kl(0.1), gkd.skew_rkl(0.1);
-- opts as gkd.divergence's (convention, teacher_temperature, top_k).
local function with_setting(name, key, value, opts)
  opts = util.copy(opts or {})
  opts[key] = value
  return gkd.divergence(name, opts)
end
function gkd.jsd(beta, opts) return with_setting("jsd", "beta", beta, opts) end
function gkd.fkl(opts) return gkd.divergence("forward_kl", opts) end
function gkd.rkl(opts) return gkd.divergence("reverse_kl", opts) end
function gkd.tv(opts) return gkd.divergence("tv", opts) end
function gkd.skew_kl(skew, opts) return with_setting("skew_kl", "skew", skew, opts) end
function gkd.skew_rkl(skew, opts) return with_setting("skew_reverse_kl", "skew", skew, opts) end
