-- The parts of report.lua's pages that the arith and the text pages share: the methods' names and order, the
-- number formats, the queries on a store, and the page's last section (time and machine).
-- Rules: a page is a function of the store and the files beside it, so that writing it again reproduces it.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local lib = dofile(here .. "/lib.lua")

local M = {}

local ORDER = lib.ORDER
M.LABEL = {
  ["sft"] = "SFT (continued)", ["supervised_kd"] = "supervised KD (lambda 0, forward KL)",
  ["seqkd"] = "SeqKD (CE on teacher's greedy outputs)", ["imitkd"] = "ImitKD (lambda 0 -> 1 per row, forward KL)",
  ["gkd-fkl"] = "on-policy GKD, forward KL", ["gkd-rkl"] = "on-policy GKD, reverse KL",
  ["gkd-jsd0.1"] = "on-policy GKD, JSD(0.1)", ["gkd-jsd0.5"] = "on-policy GKD, JSD(0.5)",
  ["gkd-jsd0.9"] = "on-policy GKD, JSD(0.9)",
}
local LABEL = M.LABEL

function M.fmt(mean, std, digits)
  if mean == nil then return "-" end
  local f = "%." .. (digits or 3) .. "f"
  if std == nil then return string.format(f, mean) end
  return string.format(f .. " ± " .. f, mean, std)
end

function M.ms(xs, digits)
  local m, s = lib.mean_std(xs)
  return M.fmt(m, s, digits), m, s
end

function M.read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The end of every page: the machine notes the experiment left beside its store, then the page written.
local function machine_notes(w, db, intro)
  local notes = M.read_file((db:match("^(.*)/[^/]*$") or ".") .. "/machine.txt")
  if notes then
    w("")
    if intro then w("%s", intro); w("") end
    w("```")
    for line in notes:gmatch("[^\n]+") do w("%s", line) end
    w("```")
  end
  w("")
end

-- Queries on a store: q(sql, ...) -> rows; final_of(name) -> the final evaluation of run "name/final";
-- config_of(name) -> the config of the newest finished run of that name.
local function accessors(store)
  local function q(sql, ...) return assert(store:query(sql, ...)) end
  local function final_of(name)
    local r = lib.finished_run(store, name .. "/final")
    return r and lib.final_eval(store, r.id)
  end
  local function config_of(name)
    local r = q("SELECT config FROM runs WHERE name = ? AND status = 'finished' ORDER BY id DESC LIMIT 1", name)[1]
    return r and gkd.json.decode(r.config)
  end
  return q, final_of, config_of
end

-- A page being written from a store: w(format, ...) appends a line to out; report.lua's sections read and add
-- the fields they share (the reference models, the runs by method, their statistics).
function M.open(store, db, opts)
  local q, final_of, config_of = accessors(store)
  local out = {}
  return { store = store, db = db, opts = opts, out = out, q = q, final_of = final_of, config_of = config_of,
    w = function(...) out[#out + 1] = string.format(...) end }
end

-- The page's Markdown, also written to `path` when given.
local function finish(out, path)
  local md = table.concat(out, "\n")
  if path then
    local f = assert(io.open(path, "w"))
    f:write(md)
    f:close()
  end
  return md
end

-- The methods in the pages' order: those of lib.ORDER that ran, then the others (a lambda mix) as they ran.
function M.method_order(found, ran)
  local order = {}
  for _, v in ipairs(ORDER) do if found[v] then order[#order + 1] = v end end
  for _, v in ipairs(ran) do if not LABEL[v] then order[#order + 1] = v end end
  return order
end

-- A model's size from its run's config, for the pages' headers.
function M.shape(cfg)
  local s = cfg and cfg.student
  return s and string.format("%d layers, dim %d, %d parameters", s.layers, s.dim, s.params) or "?"
end

function M.params(cfg) return cfg and cfg.student and cfg.student.params or 0 end

-- The last section of every page: the span and hosts of the finished runs (`spread`: how they shared the
-- machine), then the machine notes.
local function time_and_machine(pg, spread, intro)
  local w = pg.w
  local t = pg.q([[SELECT min(started_at) AS a, max(finished_at) AS b,
    (julianday(max(finished_at)) - julianday(min(started_at))) * 86400 AS span,
    sum((julianday(finished_at) - julianday(started_at)) * 86400) AS busy, count(*) AS n,
    group_concat(DISTINCT host) AS hosts FROM runs WHERE status = 'finished']])[1]
  w("## Time and machine")
  w("")
  if t and t.n and t.n > 0 then
    w("%d finished runs between %s and %s (%.0f s from the first start to the last finish; %.0f s of run time "
      .. "summed over runs%s). Hosts: %s.", t.n, t.a, t.b, t.span or 0, t.busy or 0, spread, t.hosts or "?")
  end
  machine_notes(w, pg.db, intro)
end

-- Writes the page: its sections (functions of the page) in order, then the time and machine (spread, intro: as
-- time_and_machine takes them). Returns the Markdown, also written to opts.out when given.
function M.write(pg, sections, spread, intro)
  for _, section in ipairs(sections) do section(pg) end
  time_and_machine(pg, spread, intro)
  return finish(pg.out, pg.opts.out)
end

return M
