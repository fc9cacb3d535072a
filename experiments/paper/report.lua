-- The results section of the paper reproductions, generated from the run store (nothing else is read
-- but the store and the machine notes arith.lua leaves beside it), so running it again reproduces it.
--
--   ./build/gkd run experiments/paper/report.lua [DB [OUT.md]]
--     defaults: out/paper-arith/runs.db -> docs/paper-results-arith.md
--
-- As a module (dofile): report.arith{db =, out =} -> the markdown (also written to `out`).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local lib = dofile(here .. "/lib.lua")

local M = {}

local ORDER = lib.ORDER
local LABEL = {
  ["sft"] = "SFT (continued)", ["supervised_kd"] = "supervised KD (lambda 0, forward KL)",
  ["seqkd"] = "SeqKD (CE on teacher's greedy outputs)", ["imitkd"] = "ImitKD (lambda 0 -> 1 per row, forward KL)",
  ["gkd-fkl"] = "on-policy GKD, forward KL", ["gkd-rkl"] = "on-policy GKD, reverse KL",
  ["gkd-jsd0.1"] = "on-policy GKD, JSD(0.1)", ["gkd-jsd0.5"] = "on-policy GKD, JSD(0.5)",
  ["gkd-jsd0.9"] = "on-policy GKD, JSD(0.9)",
}

local function fmt(mean, std, digits)
  if mean == nil then return "-" end
  local f = "%." .. (digits or 3) .. "f"
  if std == nil then return string.format(f, mean) end
  return string.format(f .. " ± " .. f, mean, std)
end

local function ms(xs, digits)
  local m, s = lib.mean_std(xs)
  return fmt(m, s, digits), m, s
end

-- The first evaluated step at which a curve reaches `level` (nil when it never does).
local function first_reach(curve, level)
  for _, p in ipairs(curve) do if p[2] >= level then return p[1] end end
  return nil
end

-- The value of a curve at a step (the last evaluation at or before it).
local function at(curve, step)
  local v
  for _, p in ipairs(curve) do if p[1] <= step then v = p[2] end end
  return v
end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The end of every page: the machine notes the experiment left beside its store, then the page written.
local function machine_notes(w, db, intro)
  local notes = read_file((db:match("^(.*)/[^/]*$") or ".") .. "/machine.txt")
  if notes then
    w("")
    if intro then w("%s", intro); w("") end
    w("```")
    for line in notes:gmatch("[^\n]+") do w("%s", line) end
    w("```")
  end
  w("")
end

local function finish(out, path)
  local md = table.concat(out, "\n")
  if path then
    local f = assert(io.open(path, "w"))
    f:write(md)
    f:close()
  end
  return md
end

-- A small SVG line plot with error bars (no dependencies; the pages link it). o = {title, xlabel, ylabel,
-- series = {{label, points = {{x, y, e, tag}, ...}, dashed}}, xticks = {{x, label}, ...}}; points sorted by x.
local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e" }
local function svg_plot(o)
  local W, H, L, R, T, B = 560, 360, 70, 170, 40, 50
  local xs, ys = {}, {}
  for _, s in ipairs(o.series) do
    for _, p in ipairs(s.points) do
      xs[#xs + 1] = p[1]
      ys[#ys + 1] = p[2] - (p[3] or 0)
      ys[#ys + 1] = p[2] + (p[3] or 0)
    end
  end
  if #xs == 0 then return nil end
  local x0, x1 = math.min(table.unpack(xs)), math.max(table.unpack(xs))
  local y0, y1 = math.min(table.unpack(ys)), math.max(table.unpack(ys))
  if x1 == x0 then x0, x1 = x0 - 1, x1 + 1 end
  local pad = (y1 - y0) * 0.08
  if pad == 0 then pad = math.abs(y0) * 0.05 + 1e-3 end
  y0, y1 = y0 - pad, y1 + pad
  local function X(x) return L + (x - x0) / (x1 - x0) * (W - L - R) end
  local function Y(y) return H - B - (y - y0) / (y1 - y0) * (H - T - B) end
  local out = {}
  local function add(...) out[#out + 1] = string.format(...) end
  add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">', W, H)
  add('<rect width="100%%" height="100%%" fill="white"/>')
  add('<text x="%d" y="20" font-size="14">%s</text>', L, o.title)
  add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>', L, H - B, W - R, H - B)
  add('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>', L, T, L, H - B)
  for i = 0, 4 do
    local y = y0 + (y1 - y0) * i / 4
    add('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>', L, Y(y), W - R, Y(y))
    add('<text x="%d" y="%.1f" text-anchor="end">%.3f</text>', L - 6, Y(y) + 4, y)
  end
  for _, t in ipairs(o.xticks or {}) do
    add('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', X(t[1]), H - B + 16, t[2])
  end
  add('<text x="%.1f" y="%d" text-anchor="middle">%s</text>', (L + W - R) / 2, H - 10, o.xlabel)
  add('<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>', (T + H - B) / 2,
    (T + H - B) / 2, o.ylabel)
  for i, s in ipairs(o.series) do
    local c = COLORS[(i - 1) % #COLORS + 1]
    local pts = {}
    for _, p in ipairs(s.points) do pts[#pts + 1] = string.format("%.1f,%.1f", X(p[1]), Y(p[2])) end
    if #pts > 1 then
      add('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>', table.concat(pts, " "), c,
        s.dashed and ' stroke-dasharray="5,4"' or "")
    end
    for _, p in ipairs(s.points) do
      if p[3] and p[3] > 0 then
        add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>', X(p[1]), Y(p[2] - p[3]), X(p[1]), Y(p[2] + p[3]), c)
      end
      add('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s: %.4f ± %.4f</title></circle>', X(p[1]), Y(p[2]), c,
        p[4] or s.label, p[2], p[3] or 0)
      if p[4] then add('<text x="%.1f" y="%.1f" font-size="10">%s</text>', X(p[1]) + 6, Y(p[2]) - 6, p[4]) end
    end
    add('<rect x="%d" y="%d" width="12" height="3" fill="%s"/>', W - R + 12, T + 18 * (i - 1) + 4, c)
    add('<text x="%d" y="%d">%s</text>', W - R + 30, T + 18 * (i - 1) + 10, s.label)
  end
  add("</svg>")
  return table.concat(out, "\n") .. "\n"
end

-- Writes an SVG next to the page `md_path` (PAGE-NAME.svg) and returns the Markdown that shows it.
local function plot_file(md_path, name, svg, alt)
  if not md_path or not svg then return nil end
  local path = md_path:gsub("%.md$", "") .. "-" .. name .. ".svg"
  local f = assert(io.open(path, "w"))
  f:write(svg)
  f:close()
  return string.format("![%s](%s)", alt, path:match("[^/]+$"))
end

-- The beta and lambda effects of a comparison: the primary metric of on-policy GKD against beta (forward KL at
-- beta 0 and reverse KL at 1, the limits of JSD(beta)), and of the lambda 0 / 0.5 / 1 points.
local function effects_svg(stats, metric, task)
  local function pt(v, x, tag)
    local xs = stats[v]
    if not xs or #xs == 0 then return nil end
    local m, sd = lib.mean_std(xs)
    return { x, m, sd, tag }
  end
  local beta = {}
  for _, e in ipairs({ { "gkd-fkl", 0, "FKL" }, { "gkd-jsd0.1", 0.1 }, { "gkd-jsd0.5", 0.5 }, { "gkd-jsd0.9", 0.9 },
    { "gkd-rkl", 1, "RKL" } }) do
    beta[#beta + 1] = pt(e[1], e[2], e[3])
  end
  local series = { { label = "on-policy GKD", points = beta } }
  local lam = { pt("supervised_kd", 0, "supervised KD (FKL)") }
  for v in pairs(stats) do
    local d = v:match("^mix0%.5%-(.+)$")
    if d then
      lam[#lam + 1] = pt(v, 0.5, "lambda 0.5, " .. d)
      lam[#lam + 1] = pt("gkd-" .. d, 1, "lambda 1, " .. d)
    end
  end
  if #lam > 1 then series[#series + 1] = { label = "lambda (x = lambda)", points = lam, dashed = true } end
  return svg_plot{ title = string.format("%s: %s by beta (solid) and lambda (dashed)", task, metric),
    xlabel = "beta of JSD(beta) (0: forward KL, 1: reverse KL) | lambda", ylabel = metric, series = series,
    xticks = { { 0, "0" }, { 0.1, "0.1" }, { 0.5, "0.5" }, { 0.9, "0.9" }, { 1, "1" } } }
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

function M.arith(opts)
  local db = opts.db or "out/paper-arith/runs.db"
  local store <close> = assert(gkd.store.open(db, { readonly = true }))
  local q, final_of, config_of = accessors(store)
  local teacher, warm = final_of("arith/teacher"), final_of("arith/warm-start-2")
  local tcfg, wcfg, w2cfg = config_of("arith/teacher"), config_of("arith/warm-start"), config_of("arith/warm-start-2")

  -- Every variant of the two sweeps, with its seeds.
  local variants, seen = {}, {}
  local rows = q([[SELECT r.id, r.name, r.seed, r.config,
      (julianday(r.finished_at) - julianday(r.started_at)) * 86400 AS seconds
    FROM runs r JOIN sweeps s ON s.id = r.sweep_id
    WHERE s.name IN ('arith', 'arith-mix') AND r.status = 'finished' ORDER BY r.id]])
  local steps_cfg, batch_cfg, dcfg
  for _, r in ipairs(rows) do
    local v = r.name:match("variant=([^,]+)")
    if v then
      if not seen[v] then seen[v] = { runs = {} }; variants[#variants + 1] = v end
      seen[v].runs[#seen[v].runs + 1] = r
      if not steps_cfg then
        local c = gkd.json.decode(r.config)
        steps_cfg, batch_cfg = c.resolved and c.resolved.steps or c.steps, c.batch
        dcfg = c
      end
    end
  end
  local order = {}
  for _, v in ipairs(ORDER) do if seen[v] then order[#order + 1] = v end end
  for _, v in ipairs(variants) do if not LABEL[v] then order[#order + 1] = v end end

  local out = {}
  local function w(...) out[#out + 1] = string.format(...) end
  w("# Paper results: `arith` (4-digit addition with carries)")
  w("")
  w("Generated by `./build/gkd run experiments/paper/report.lua` from `%s`; do not edit by hand.", db)
  w("The experiment: `./build/gkd run experiments/paper/arith.lua` (what it does is written at its top).")
  w("")
  local counts = read_file((opts.data_dir or (db:match("^(.*)/[^/]*$") or ".") .. "/data") .. "/counts.jsonl")
  if counts then
    local c = gkd.json.decode(counts:match("[^\n]+"))
    w("Data: %d train / %d validation / %d test problems (split by a hash of \"a+b\"); prompt `a: 7 1 0 1 b: 9 0 1 1 =`, "
      .. "target ` 6c1 2c0 1c0 2c0 Answer: 6 2 1 2`.", c.train, c.validation, c.test)
  end
  local function params(cfg) return cfg and cfg.student and cfg.student.params end
  local function shape(cfg)
    local s = cfg and cfg.student
    return s and string.format("%d layers, dim %d, %d parameters", s.layers, s.dim, s.params) or "?"
  end
  w("Teacher: %s, SFT %s steps x batch 32 on the train split. Student: %s (%.1fx fewer), one SFT warm start "
    .. "of %s + %s steps (cosine, then constant learning rate) shared by every method and seed.", shape(tcfg),
    tcfg and tostring(tcfg.steps) or "?", shape(wcfg), (params(tcfg) or 0) / math.max(1, params(wcfg) or 1),
    wcfg and tostring(wcfg.steps) or "?", w2cfg and tostring(w2cfg.steps) or "?")
  local final_n = teacher and teacher.exact and (q([[SELECT config FROM runs WHERE name = 'arith/teacher/final']])[1])
  local fcfg = final_n and gkd.json.decode(final_n.config)
  w("Each method: %s steps x batch %s from the warm start (the same token budget), seeds = data order, lambda coins "
    .. "and sampling; %s. Final numbers: greedy decoding on the first %s examples of the %s split; "
    .. "curves: validation (%s examples) every %s steps.",
    tostring(steps_cfg or "?"), tostring(batch_cfg or "?"),
    dcfg and dcfg.lr or "?", fcfg and fcfg.eval and tostring(fcfg.eval.examples) or "?",
    fcfg and fcfg.held_out and fcfg.held_out.path and fcfg.held_out.path:match("([^/]+)%.jsonl$") or "final",
    dcfg and dcfg.eval and tostring(dcfg.eval.examples) or "?", dcfg and dcfg.eval and tostring(dcfg.eval.every) or "?")
  local state = {}
  for _, sw in ipairs(q("SELECT id, name, config FROM sweeps WHERE name LIKE 'arith%' ORDER BY id")) do
    local c = gkd.json.decode(sw.config) or {}
    local n = q([[SELECT count(*) AS n FROM runs WHERE sweep_id = ? AND status = 'finished']], sw.id)[1].n
    local f = q([[SELECT count(*) AS n FROM runs r WHERE r.status = 'finished' AND r.name LIKE '%/final' AND EXISTS
      (SELECT 1 FROM runs s WHERE s.sweep_id = ? AND s.name || '/final' = r.name)]], sw.id)[1].n
    -- The sweep row keeps the grid it was first started with; runs added later (more seeds) count too.
    local total = q([[SELECT count(*) AS n FROM runs WHERE sweep_id = ?]], sw.id)[1].n
    local planned = math.max(tonumber(c.points) or 0, total)
    state[#state + 1] = string.format("`%s` %d of %d runs finished (%d with final-split numbers)", sw.name, n,
      planned, f)
  end
  w("State of the store: %s.", #state > 0 and table.concat(state, "; ") or "no sweep yet")
  w("")

  w("## Reference points (final split)")
  w("")
  w("| model | exact match | digit accuracy | whole output | malformed |")
  w("|---|---|---|---|---|")
  for _, p in ipairs({ { "teacher", teacher }, { "SFT student (the warm start)", warm } }) do
    local e = p[2] or {}
    w("| %s | %s | %s | %s | %s |", p[1], fmt(e.exact), fmt(e.digit_acc), fmt(e.full), fmt(e.malformed))
  end
  w("")

  local T, W0 = teacher and teacher.exact, warm and warm.exact
  local stats = {}
  w("## Methods (mean ± sample std over seeds)")
  w("")
  w("Exact match of the whole answer on the final split; gap closed = (method - SFT student) / (teacher - SFT "
    .. "student), the paper's measure; validation exact match at 1/4, 1/2 and all of the budget, and its area under "
    .. "the curve (mean over training, step 0 = the warm start's validation score); the first evaluated step at which "
    .. "validation exact match reaches 0.9 (learning speed).")
  w("")
  w("| method | seeds | exact match | gap closed | digit acc. | val @1/4 | val @1/2 | val @end | val AUC | steps to 0.9 | s/run |")
  w("|---|---|---|---|---|---|---|---|---|---|---|")
  local warm_val
  do
    local r = lib.finished_run(store, "arith/warm-start-2")
    if r then
      local c = lib.curve(store, r.id, "exact")
      warm_val = c[#c] and c[#c][2]
    end
  end
  for _, v in ipairs(order) do
    local s = { exact = {}, gap = {}, digit = {}, q1 = {}, q2 = {}, q4 = {}, auc = {}, secs = {}, reach = {}, never = 0, malformed = {},
      len = {}, tent = {}, miss = {}, fkl = {}, own_fkl = {}, own_rkl = {}, rkl = {}, own_len = {} }
    for _, r in ipairs(seen[v].runs) do
      local c = lib.curve(store, r.id, "exact")
      if warm_val then table.insert(c, 1, { 0, warm_val }) end
      local last = c[#c] and c[#c][1] or 0
      s.q1[#s.q1 + 1] = at(c, last / 4)
      s.q2[#s.q2 + 1] = at(c, last / 2)
      s.q4[#s.q4 + 1] = at(c, last)
      s.auc[#s.auc + 1] = lib.auc(c)
      local reach = first_reach(c, 0.9)
      if reach then s.reach[#s.reach + 1] = reach else s.never = s.never + 1 end
      s.secs[#s.secs + 1] = r.seconds
      local te = q("SELECT avg(value) AS v FROM metrics WHERE run_id = ? AND name = 'teacher_entropy'", r.id)[1]
      if te and te.v then s.tent[#s.tent + 1] = te.v end
      local e = final_of(r.name)
      if e then
        s.exact[#s.exact + 1] = e.exact
        if T and W0 and T > W0 then s.gap[#s.gap + 1] = (e.exact - W0) / (T - W0) end
        s.digit[#s.digit + 1] = e.digit_acc
        s.malformed[#s.malformed + 1] = e.malformed
        s.len[#s.len + 1] = e.len_ratio
        if e.miss_99c and e.has_99c and e.has_99c > 0 then s.miss[#s.miss + 1] = e.miss_99c / e.has_99c end
        s.fkl[#s.fkl + 1] = e.forward_kl
        s.rkl[#s.rkl + 1] = e.reverse_kl
        s.own_fkl[#s.own_fkl + 1] = e.own_forward_kl
        s.own_rkl[#s.own_rkl + 1] = e.own_reverse_kl
        s.own_len[#s.own_len + 1] = e.own_length
      end
    end
    stats[v] = s
    local reach = ms(s.reach, 0)
    if s.never > 0 then reach = reach .. string.format(" (%d never)", s.never) end
    w("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |", LABEL[v] or v, #seen[v].runs, ms(s.exact), ms(s.gap, 2),
      ms(s.digit), ms(s.q1), ms(s.q2), ms(s.q4), ms(s.auc), reach, ms(s.secs, 0))
  end
  w("")
  -- The teacher checks of issue 11: exact match >= 0.9, and the teacher beats the SFT student by more than 3x the
  -- SFT student's seed std (the student trained on with SFT over the seeds).
  local sft_m, sft_s = lib.mean_std(stats["sft"] and stats["sft"].exact or {})
  if T and W0 and sft_m and #stats["sft"].exact > 1 then
    local gap = T - W0
    w("Teacher check: exact match %.3f (%s 0.9); teacher - SFT student (the warm start every method starts from) = "
      .. "%.3f; 3 x the seed std of the SFT student trained on (SFT continued, %d seeds, %.3f) = %.3f: %s.%s", T,
      T >= 0.9 and ">=" or "BELOW", gap, #stats["sft"].exact, sft_m, 3 * sft_s,
      (T >= 0.9 and gap > 3 * sft_s) and "passes" or "FAILS",
      sft_m >= T - 3 * sft_s and " SFT continued for the methods' budget reaches the teacher: every method's final "
        .. "number saturates, and the comparison shows only learning speed." or "")
    w("")
  end
  local exact_by = {}
  for v, st in pairs(stats) do exact_by[v] = st.exact end
  local img = plot_file(opts.out, "effects", effects_svg(exact_by, "exact match", "arith"), "beta and lambda effects")
  if img then
    w("The beta and lambda effects on final exact match (mean ± std over seeds; hover a point for its value):")
    w("")
    w("%s", img)
    w("")
  end

  w("## Diagnostics of the final models (final split)")
  w("")
  w("Forward and reverse KL(teacher || student) per token, on the references (teacher-forced) and on the student's "
    .. "own greedy outputs (the exposure-bias gap is own - ref); output length in characters over the reference's; "
    .. "malformed = no `Answer:` or a token outside the format (degenerate outputs); own length in tokens; teacher "
    .. "entropy = the teacher's mean entropy per token (nats) on the training batches, averaged over the run's steps; "
    .. "9+9+1 missed = the share of the problems with a column 9 + 9 + carry 1 (the rarest column, ~1.5 %% of "
    .. "problems) whose output gets that column wrong.")
  w("")
  w("| method | fwd KL ref | fwd KL own | rev KL ref | rev KL own | length ratio | own length | malformed | teacher entropy | 9+9+1 missed |")
  w("|---|---|---|---|---|---|---|---|---|---|")
  if warm then
    w("| SFT student (the warm start) | %s | %s | %s | %s | %s | %s | %s | - | %s |", fmt(warm.forward_kl), fmt(warm.own_forward_kl),
      fmt(warm.reverse_kl), fmt(warm.own_reverse_kl), fmt(warm.len_ratio), fmt(warm.own_length, nil, 1), fmt(warm.malformed),
      (warm.miss_99c and warm.has_99c and warm.has_99c > 0) and fmt(warm.miss_99c / warm.has_99c) or "-")
  end
  for _, v in ipairs(order) do
    local s = stats[v]
    w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", LABEL[v] or v, ms(s.fkl), ms(s.own_fkl), ms(s.rkl), ms(s.own_rkl),
      ms(s.len), ms(s.own_len, 1), ms(s.malformed), ms(s.tent, 4), ms(s.miss))
  end
  w("")

  -- The question the paper answers: does on-policy beat supervised KD beyond the seed spread?
  w("## On-policy GKD against supervised KD")
  w("")
  local base = stats["supervised_kd"]
  local wins = {}
  if base then
    w("A difference counts as beyond the seed spread when it exceeds the sum of the two sample standard deviations "
      .. "(and every seed of one lies above every seed of the other is noted).")
    w("")
    w("| method | Δ exact match vs supervised KD | beyond spread? | Δ val AUC | beyond spread? | Δ steps to 0.9 | beyond spread? |")
    w("|---|---|---|---|---|---|---|")
    local function cmp(a, b, digits, lower_better)
      local ma, sa = lib.mean_std(a)
      local mb, sb = lib.mean_std(b)
      if not ma or not mb then return "-", "-" end
      local d = ma - mb
      local beyond = math.abs(d) > sa + sb
      local minA, maxA, minB, maxB = math.huge, -math.huge, math.huge, -math.huge
      for _, x in ipairs(a) do minA, maxA = math.min(minA, x), math.max(maxA, x) end
      for _, x in ipairs(b) do minB, maxB = math.min(minB, x), math.max(maxB, x) end
      local sep = (minA > maxB and "every seed above") or (maxA < minB and "every seed below") or "overlap"
      return string.format("%+." .. (digits or 3) .. "f", d), string.format("%s (%s)", beyond and (((d < 0) == (lower_better == true)) and "yes, better" or "yes, worse") or "no", sep)
    end
    for _, v in ipairs(order) do
      if v ~= "supervised_kd" and v ~= "sft" then
        local d1, b1 = cmp(stats[v].exact, base.exact)
        local d2, b2 = cmp(stats[v].auc, base.auc)
        local d3, b3 = cmp(stats[v].reach, base.reach, 0, true)
        w("| %s | %s | %s | %s | %s | %s | %s |", LABEL[v] or v, d1, b1, d2, b2, d3, b3)
        if v:match("^gkd%-") or v:match("^mix") then
          for _, b in ipairs({ { b1, "final exact match" }, { b2, "validation AUC" }, { b3, "steps to 0.9 (fewer is better)" } }) do
            if b[1]:match("^yes, better") then wins[#wins + 1] = (LABEL[v] or v) .. " on " .. b[2] end
          end
        end
      end
    end
    w("")
    -- Generated reading: the verdict, then the measurements that explain it.
    w("### Reading (generated from the numbers above)")
    w("")
    if #wins > 0 then
      w("- On-policy beats supervised KD beyond the seed spread: %s.", table.concat(wins, "; "))
    else
      w("- **No on-policy variant beats supervised KD beyond the seed spread** on final exact match, validation AUC "
        .. "or steps to 0.9.")
    end
    local sft = stats["sft"]
    if sft then
      local vs = {}
      for _, v in ipairs(order) do
        if v:match("^gkd%-") or v:match("^mix") then
          local ma, sa = lib.mean_std(stats[v].reach)
          local mb, sb = lib.mean_std(sft.reach)
          local ca, cs = lib.mean_std(stats[v].auc)
          local da, ds = lib.mean_std(sft.auc)
          if ma and mb and mb - ma > sa + sb then vs[#vs + 1] = (LABEL[v] or v) .. " (steps to 0.9)" end
          if ca and da and ca - da > cs + ds then vs[#vs + 1] = (LABEL[v] or v) .. " (AUC)" end
        end
      end
      local slowest = true
      local kd_mean = lib.mean_std(base.reach)
      for _, v in ipairs({ "sft", "seqkd", "imitkd" }) do
        local m = stats[v] and lib.mean_std(stats[v].reach)
        if m and kd_mean and m > kd_mean then slowest = false end
      end
      w("- Against plain SFT (continued), %s.%s",
        #vs > 0 and ("beyond the seed spread: " .. table.concat(vs, "; ")) or "no on-policy variant is faster beyond the seed spread",
        slowest and string.format(" Supervised KD is the slowest of the off-policy methods here (steps to 0.9: %s vs SFT %s), "
          .. "so wins over supervised KD alone are not wins of on-policy data.", ms(base.reach, 0), ms(sft.reach, 0)) or "")
      w("- Caveats: 3 seeds; validation every %s steps on %s examples (steps to 0.9 moves in steps of the evaluation "
        .. "interval); \"beyond the spread\" = difference > sum of the two sample standard deviations, a loose test.",
        dcfg and dcfg.eval and tostring(dcfg.eval.every) or "?", dcfg and dcfg.eval and tostring(dcfg.eval.examples) or "?")
    end
    local stuck = {}
    for _, v in ipairs(order) do
      local m = lib.mean_std(stats[v].miss)
      if m and m > 0.5 then stuck[#stuck + 1] = string.format("%s (%.2f)", LABEL[v] or v, m) end
    end
    if #stuck > 0 then
      w("- The final-split errors that remain are one kind: the column 9 + 9 + carry 1, written as `8c1` instead of "
        .. "`9c1`. The methods that keep missing it on more than half of the problems that have one: %s. Reverse "
        .. "KL's gradient with respect to the student's logit of token v is q(v) (log q(v)/p(v) - KL(q||p)): it vanishes "
        .. "at a token the student gives almost no probability, so a mode-seeking divergence on the student's own "
        .. "samples cannot teach a token the student never produces; forward KL's gradient q(v) - p(v) can (and SFT's "
        .. "cross-entropy is the same). JSD(beta) moves from the first behaviour to the second as beta goes to 0.",
        table.concat(stuck, ", "))
    end
    local sat = 0
    for _, v in ipairs(order) do
      local m = lib.mean_std(stats[v].q4)
      if m and m >= 0.98 then sat = sat + 1 end
    end
    w("- %d of %d methods end at validation exact match >= 0.98: at this budget the final numbers saturate (as "
      .. "DESIGN.md section 8 predicts), so the learning speed (AUC, steps to 0.9) is the comparison.", sat, #order)
    local te_kd, te_on = lib.mean_std(base.tent), stats["gkd-fkl"] and lib.mean_std(stats["gkd-fkl"].tent)
    if te_kd then
      w("- The teacher is almost one-hot: its mean entropy is %.4f nats/token on the references (supervised KD's "
        .. "batches)%s. Its soft targets carry almost nothing beyond its argmax, which is the reference token, so "
        .. "supervised KD is close to SFT.", te_kd, te_on and string.format(" and %.4f on the student's own samples "
        .. "(on-policy forward KL's batches)", te_on) or "")
    end
    if stats["seqkd"] and stats["sft"] then
      local same = #stats["seqkd"].auc == #stats["sft"].auc
      for i = 1, #stats["sft"].auc do same = same and stats["seqkd"].auc[i] == stats["sft"].auc[i] end
      w("- SeqKD %s SFT seed by seed: the teacher's greedy outputs are the references (its exact match is %s), so "
        .. "cross-entropy on them is SFT on the same data in the same order.", same and "reproduces" or "differs from",
        fmt(T))
    end
    if warm and warm.own_forward_kl and warm.forward_kl then
      w("- The warm start shows little exposure bias: forward KL to the teacher is %.3f on its own greedy outputs "
        .. "and %.3f on the references, and %.1f %% of its outputs are malformed. Its mistakes are wrong digits "
        .. "inside well-formed outputs, whose prefixes look like the references, so training on its own samples "
        .. "(on-policy) sees nearly the same prefixes as training on the references: the paper's mechanism, "
        .. "correcting the student where its own outputs leave the data, has little to correct here.",
        warm.own_forward_kl, warm.forward_kl, 100 * (warm.malformed or 0))
    end
    w("")
  end

  -- The optional comparison from before the breakthrough (arith.lua with GKD_ARITH_EARLY=1).
  local early = q([[SELECT r.id, r.name, r.seed FROM runs r JOIN sweeps s ON s.id = r.sweep_id
    WHERE s.name = 'arith-early' AND r.status = 'finished' ORDER BY r.id]])
  if #early > 0 then
    local by, eorder = {}, {}
    for _, r in ipairs(early) do
      local v = r.name:match("variant=([^,]+)")
      if not by[v] then by[v] = {}; eorder[#eorder + 1] = v end
      by[v][#by[v] + 1] = r
    end
    for _, v in ipairs(eorder) do table.sort(by[v], function(a, b) return a.seed < b.seed end) end
    local ecfg = gkd.json.decode(q("SELECT config FROM runs WHERE id = ?", early[1].id)[1].config)
    local w0 = final_of("arith/warm-start")
    w("## From before the breakthrough (GKD_ARITH_EARLY=1)")
    w("")
    w("The same student after the first warm-start run only (%s steps; final-split exact match %s, digit accuracy %s), "
      .. "then %s steps x batch %s per method at a constant learning rate %s, validation every %s steps. This student "
      .. "sits on a plateau (exact match 0) that SFT leaves suddenly; the question is which method leaves it first.",
      wcfg and tostring(wcfg.steps) or "?", fmt(w0 and w0.exact), fmt(w0 and w0.digit_acc), tostring(ecfg.steps),
      tostring(ecfg.batch), tostring(ecfg.lr), tostring(ecfg.eval and ecfg.eval.every))
    w("")
    w("| method | seeds | steps to 0.5 | steps to 0.9 | val AUC | val @end | final exact match |")
    w("|---|---|---|---|---|---|---|")
    for _, v in ipairs(eorder) do
      local r5, r9, never5, never9, aucs, ends, ex = {}, {}, 0, 0, {}, {}, {}
      for _, r in ipairs(by[v]) do
        local c = lib.curve(store, r.id, "exact")
        local a, b = first_reach(c, 0.5), first_reach(c, 0.9)
        if a then r5[#r5 + 1] = a else never5 = never5 + 1 end
        if b then r9[#r9 + 1] = b else never9 = never9 + 1 end
        aucs[#aucs + 1] = lib.auc(c)
        ends[#ends + 1] = c[#c] and c[#c][2]
        local e = final_of(r.name)
        if e then ex[#ex + 1] = e.exact end
      end
      local function reach(xs, never)
        local t = ms(xs, 0)
        if never > 0 then t = t .. string.format(" (%d never)", never) end
        return t
      end
      w("| %s | %d | %s | %s | %s | %s | %s |", LABEL[v] or v, #by[v], reach(r5, never5), reach(r9, never9), ms(aucs),
        ms(ends), ms(ex))
    end
    w("")
    w("Per seed, the first step at which validation exact match reaches 0.5:")
    w("")
    w("| method | %s |", table.concat((function()
      local t = {}
      for i, r in ipairs(by[eorder[1]]) do t[i] = "seed " .. r.seed end
      return t
    end)(), " | "))
    w("|---|%s", string.rep("---|", #by[eorder[1]]))
    for _, v in ipairs(eorder) do
      local cells = {}
      for _, r in ipairs(by[v]) do
        local reach = first_reach(lib.curve(store, r.id, "exact"), 0.5)
        cells[#cells + 1] = reach and tostring(reach) or "never"
      end
      w("| %s | %s |", LABEL[v] or v, table.concat(cells, " | "))
    end
    w("")
  end

  -- Wall time and machine.
  local t = q([[SELECT min(started_at) AS a, max(finished_at) AS b,
    (julianday(max(finished_at)) - julianday(min(started_at))) * 86400 AS span,
    sum((julianday(finished_at) - julianday(started_at)) * 86400) AS busy, count(*) AS n,
    group_concat(DISTINCT host) AS hosts FROM runs WHERE status = 'finished']])[1]
  w("## Time and machine")
  w("")
  if t and t.n and t.n > 0 then
    w("%d finished runs between %s and %s (%.0f s from the first start to the last finish; %.0f s of run time "
      .. "summed over runs, two worker processes for the method sweeps). Hosts: %s.", t.n, t.a, t.b, t.span or 0,
      t.busy or 0, t.hosts or "?")
  end
  machine_notes(w, db, "Machine notes written by arith.lua at each start and end (load average = other work on the machine):")
  return finish(out, opts.out)
end

-- The section of a text task (debdesc, ddtp-de; experiments/paper/text.lua): opts = {task =, db =, out =}.
local TEXT_METRICS = {
  debdesc = { primary = "rougeL", show = { "rouge1", "rouge2", "rougeL", "factual" } },
  ["ddtp-de"] = { primary = "bleu", show = { "bleu", "rougeL" } },
}
function M.text(opts)
  local task = opts.task
  local db = opts.db or ("out/paper-" .. task .. "/runs.db")
  local TM = TEXT_METRICS[task]
  local store <close> = assert(gkd.store.open(db, { readonly = true }))
  local q, final_of, config_of = accessors(store)
  local function run_mean(run_id, metric)
    local r = q("SELECT avg(value) AS v FROM metrics WHERE run_id = ? AND name = ?", run_id, metric)[1]
    return r and r.v
  end
  -- The teacher is "<task>/teacher", or its continuation "<task>/teacher-2" where there is one.
  local tname = lib.finished_run(store, task .. "/teacher-2/final") and (task .. "/teacher-2") or (task .. "/teacher")
  local teacher, warm = final_of(tname), final_of(task .. "/warm-start")
  local tcfg, wcfg = config_of(task .. "/teacher"), config_of(task .. "/warm-start")
  local t2cfg = config_of(task .. "/teacher-2")
  local out = {}
  local function w(...) out[#out + 1] = string.format(...) end
  w("# Paper results: `%s`", task)
  w("")
  w("Generated by `./build/gkd run experiments/paper/report.lua %s` from `%s`; do not edit by hand.", task, db)
  w("The experiment: `./build/gkd run experiments/paper/%s.lua` (what it does is written at its top).", task)
  w("")
  local function shape(cfg)
    local s = cfg and cfg.student
    return s and string.format("%d layers, dim %d, %d parameters", s.layers, s.dim, s.params) or "?"
  end
  local function params(cfg) return cfg and cfg.student and cfg.student.params or 0 end
  local counts = {}
  local cj = read_file((db:match("^(.*)/[^/]*$") or ".") .. "/counts.json")
  local c = cj and gkd.json.decode(cj) or {}
  for _, sp in ipairs({ "train", "validation", "test" }) do
    counts[#counts + 1] = string.format("%s %s", tostring(c[sp] or "?"), sp)
  end
  w("Data: %s examples. Teacher: %s, SFT %s steps x batch %s on the whole train split. Student: %s (%.1fx fewer), "
    .. "one SFT warm start of %s steps shared by every method and seed.", table.concat(counts, " / "), shape(tcfg),
    tostring(tcfg and tcfg.steps or "?") .. (t2cfg and (" + " .. tostring(t2cfg.steps)) or ""), tostring(tcfg and tcfg.batch or "?"), shape(wcfg),
    params(tcfg) / math.max(1, params(wcfg)), tostring(wcfg and wcfg.steps or "?"))

  -- Runs of the method sweeps by variant, and of the alpha sweep by alpha.
  local by, order = {}, {}
  local alpha_by, alpha_order = {}, {}
  local rows = q([[SELECT r.id, r.name, r.seed, r.config, s.name AS sweep,
      (julianday(r.finished_at) - julianday(r.started_at)) * 86400 AS seconds
    FROM runs r JOIN sweeps s ON s.id = r.sweep_id
    WHERE s.name IN (?, ?, ?) AND r.status = 'finished' ORDER BY r.id]], task, task .. "-mix", task .. "-alpha")
  local dcfg
  for _, r in ipairs(rows) do
    local v = r.name:match("variant=([^,]+)")
    local a = r.name:match("alpha=([^,]+)")
    r.final = final_of(r.name)
    if v then
      if not by[v] then by[v] = {}; order[#order + 1] = v end
      table.insert(by[v], r)
      dcfg = dcfg or gkd.json.decode(r.config)
    elseif a then
      if not alpha_by[a] then alpha_by[a] = {}; alpha_order[#alpha_order + 1] = a end
      table.insert(alpha_by[a], r)
    end
  end
  local sorted = {}
  for _, v in ipairs(ORDER) do if by[v] then sorted[#sorted + 1] = v end end
  for _, v in ipairs(order) do if not LABEL[v] then sorted[#sorted + 1] = v end end
  if dcfg then
    w("Each method: %s steps x batch %s from the warm start (the same token budget); seeds = data order, lambda "
      .. "coins and sampling. Final numbers: greedy decoding on the first %s examples of the final split (%s).",
      tostring(dcfg.steps), tostring(dcfg.batch),
      tostring(teacher and (config_of(tname .. "/final") or {}).eval and config_of(tname .. "/final").eval.examples or "?"),
      "test unless GKD_PAPER_FINAL said otherwise")
  end
  w("")
  w("## Reference points (final split)")
  w("")
  w("| model | %s |", table.concat(TM.show, " | "))
  w("|---|%s", string.rep("---|", #TM.show))
  for _, ref in ipairs({ { "teacher", teacher }, { "SFT student (the warm start)", warm } }) do
    local cells = {}
    for _, k in ipairs(TM.show) do cells[#cells + 1] = fmt(ref[2] and ref[2][k], nil, 4) end
    w("| %s | %s |", ref[1], table.concat(cells, " | "))
  end
  w("")
  local P = TM.primary
  w("## Methods (mean ± sample std over seeds, final split)")
  w("")
  w("Gap closed = (method - SFT student) / (teacher - SFT student) on %s, the paper's measure; val AUC = mean "
    .. "validation %s over training.", P, P)
  w("")
  w("| method | seeds | %s | gap closed | val AUC | s/run |", table.concat(TM.show, " | "))
  w("|---|---|%s---|---|---|", string.rep("---|", #TM.show))
  local stats = {}
  for _, v in ipairs(sorted) do
    local cells = {}
    local col = {}
    for _, k in ipairs(TM.show) do
      local xs = {}
      for _, r in ipairs(by[v]) do if r.final and r.final[k] then xs[#xs + 1] = r.final[k] end end
      col[k] = xs
      cells[#cells + 1] = ms(xs, 4)
    end
    local gaps, aucs, secs = {}, {}, {}
    for _, r in ipairs(by[v]) do
      if r.final and teacher and warm and teacher[P] ~= warm[P] then
        gaps[#gaps + 1] = (r.final[P] - warm[P]) / (teacher[P] - warm[P])
      end
      aucs[#aucs + 1] = lib.auc(lib.curve(store, r.id, P))
      secs[#secs + 1] = r.seconds
    end
    stats[v] = col[P]
    w("| %s | %d | %s | %s | %s | %s |", LABEL[v] or v, #by[v], table.concat(cells, " | "), ms(gaps, 2), ms(aucs, 4),
      ms(secs, 0))
  end
  w("")
  -- The teacher check of issue 11: the teacher beats the SFT student by more than 3x the SFT student's seed std
  -- (the student trained on with SFT over the seeds: the spread of an SFT student on this budget).
  local sft_m, sft_s = lib.mean_std(stats["sft"] or {})
  if teacher and warm and sft_m and #stats["sft"] > 1 then
    local gap = teacher[P] - warm[P]
    w("Teacher check: teacher - SFT student (the warm start every method starts from) = %.4f on %s; 3 x the seed "
      .. "std of the SFT student trained on (SFT continued, %d seeds, %.4f) = %.4f: %s.", gap, P, #stats["sft"], sft_m,
      3 * sft_s, gap > 3 * sft_s and "passes" or "FAILS")
    w("")
  end
  w("## Diagnostics of the final models (final split)")
  w("")
  w("KL(teacher || student) per token, forward and reverse, on the references (teacher-forced) and on the "
    .. "student's own greedy outputs (exposure-bias gap = own - ref); entropy ratio = the student's mean "
    .. "entropy per token over the teacher's on the training batches; distinct-2 over the outputs; length "
    .. "in words over the reference's; degenerate = empty or a repeated word 3-gram.")
  w("")
  w("| method | fwd KL ref | fwd KL own | rev KL ref | rev KL own | entropy ratio | distinct-2 | length ratio | degenerate |")
  w("|---|---|---|---|---|---|---|---|---|")
  local function diag_row(label, runs)
    local keys = { "forward_kl", "own_forward_kl", "reverse_kl", "own_reverse_kl" }
    local cells = {}
    for _, k in ipairs(keys) do
      local xs = {}
      for _, r in ipairs(runs) do if r.final and r.final[k] then xs[#xs + 1] = r.final[k] end end
      cells[#cells + 1] = ms(xs, 3)
    end
    local er = {}
    for _, r in ipairs(runs) do
      if r.id then
        local se, te = run_mean(r.id, "student_entropy"), run_mean(r.id, "teacher_entropy")
        if se and te and te > 0 then er[#er + 1] = se / te end
      end
    end
    cells[#cells + 1] = ms(er, 2)
    for _, k in ipairs({ "distinct2", "len_ratio", "degenerate" }) do
      local xs = {}
      for _, r in ipairs(runs) do if r.final and r.final[k] then xs[#xs + 1] = r.final[k] end end
      cells[#cells + 1] = ms(xs, 3)
    end
    w("| %s | %s |", label, table.concat(cells, " | "))
  end
  if warm then diag_row("SFT student (the warm start)", { { final = warm } }) end
  for _, v in ipairs(sorted) do diag_row(LABEL[v] or v, by[v]) end
  w("")
  w("Reverse KL(student || teacher) by output position, on the student's own samples at temperature 1 (the "
    .. "one-sample estimate log q - log p of the drawn tokens, averaged; experiments/paper/diagnostics.lua), and "
    .. "self-BLEU of the greedy outputs (0-100; higher = the outputs are more alike across prompts).")
  w("")
  local D = dofile(here .. "/diagnostics.lua")
  local pos = {}
  for _, b in ipairs(D.BUCKETS) do pos[#pos + 1] = D.bucket_name(b) end
  w("| model | %s | self-BLEU |", table.concat(pos, " | "))
  w("|---|%s---|", string.rep("---|", #pos))
  local function pos_row(label, runs)
    local cells = {}
    for _, k in ipairs(pos) do
      local xs = {}
      for _, r in ipairs(runs) do if r.final and r.final["rkl_" .. k] then xs[#xs + 1] = r.final["rkl_" .. k] end end
      cells[#cells + 1] = ms(xs, 3)
    end
    local sb = {}
    for _, r in ipairs(runs) do if r.final and r.final.self_bleu then sb[#sb + 1] = r.final.self_bleu end end
    cells[#cells + 1] = ms(sb, 1)
    w("| %s | %s |", label, table.concat(cells, " | "))
  end
  if teacher then pos_row("teacher", { { final = teacher } }) end
  if warm then pos_row("SFT student (the warm start)", { { final = warm } }) end
  for _, v in ipairs(sorted) do pos_row(LABEL[v] or v, by[v]) end
  w("")
  w("## On-policy GKD against supervised KD")
  w("")
  w("Final %s; a difference counts as beyond the seed spread when it exceeds the sum of the two sample "
    .. "standard deviations.", P)
  w("")
  w("| method | Δ vs supervised KD | beyond spread? | Δ vs SeqKD | beyond spread? |")
  w("|---|---|---|---|---|")
  local function cmp(a, b)
    if not a or not b or #a == 0 or #b == 0 then return "-", "-" end
    local ma, sa = lib.mean_std(a)
    local mb, sb = lib.mean_std(b)
    local d = ma - mb
    local verdict = math.abs(d) > sa + sb and (d > 0 and "yes, better" or "yes, worse") or "no (overlap)"
    return string.format("%+.4f", d), verdict
  end
  for _, v in ipairs(sorted) do
    if v ~= "supervised_kd" then
      local d1, v1 = cmp(stats[v], stats["supervised_kd"])
      local d2, v2 = cmp(stats[v], stats["seqkd"])
      w("| %s | %s | %s | %s | %s |", LABEL[v] or v, d1, v1, d2, v2)
    end
  end
  w("")
  local img = plot_file(opts.out, "effects", effects_svg(stats, P, opts.task), "beta and lambda effects")
  if img then
    w("The beta and lambda effects (mean ± std over seeds; hover a point for its value):")
    w("")
    w("%s", img)
    w("")
  end
  if #alpha_order > 0 then
    w("## GKD + RL: the alpha curve")
    w("")
    w("Reward %s with weight 1 - alpha (normalised advantages, leave-one-out baseline), reverse KL to the teacher "
      .. "with weight alpha, on-policy; final split, mean ± std over seeds.", "factual")
    w("")
    w("| alpha | seeds | %s |", table.concat(TM.show, " | "))
    w("|---|---|%s", string.rep("---|", #TM.show))
    table.sort(alpha_order, function(a, b) return tonumber(a) < tonumber(b) end)
    for _, a in ipairs(alpha_order) do
      local cells = {}
      for _, k in ipairs(TM.show) do
        local xs = {}
        for _, r in ipairs(alpha_by[a]) do if r.final and r.final[k] then xs[#xs + 1] = r.final[k] end end
        cells[#cells + 1] = ms(xs, 4)
      end
      w("| %s | %d | %s |", a, #alpha_by[a], table.concat(cells, " | "))
    end
    w("")
    -- The trade-off: the primary metric against the reward's metric, one point per alpha.
    local pts = {}
    for _, a in ipairs(alpha_order) do
      local fx, fy = {}, {}
      for _, r in ipairs(alpha_by[a]) do
        if r.final and r.final.factual and r.final[P] then fx[#fx + 1], fy[#fy + 1] = r.final.factual, r.final[P] end
      end
      local mx = lib.mean_std(fx)
      local my, sy = lib.mean_std(fy)
      if mx then pts[#pts + 1] = { mx, my, sy, "alpha " .. a } end
    end
    table.sort(pts, function(a, b) return a[1] < b[1] end)
    local img2 = plot_file(opts.out, "alpha", svg_plot{ title = opts.task .. ": GKD + RL, the alpha trade-off",
      xlabel = "factual consistency (the reward)", ylabel = P, series = { { label = "GKD + RL", points = pts } } },
      "the alpha curve")
    if img2 then
      w("%s", img2)
      w("")
    end
  end
  local t = q([[SELECT min(started_at) AS a, max(finished_at) AS b,
    (julianday(max(finished_at)) - julianday(min(started_at))) * 86400 AS span,
    sum((julianday(finished_at) - julianday(started_at)) * 86400) AS busy, count(*) AS n,
    group_concat(DISTINCT host) AS hosts FROM runs WHERE status = 'finished']])[1]
  w("## Time and machine")
  w("")
  if t and t.n and t.n > 0 then
    w("%d finished runs between %s and %s (%.0f s from the first start to the last finish; %.0f s of run time "
      .. "summed over runs). Hosts: %s.", t.n, t.a, t.b, t.span or 0, t.busy or 0, t.hosts or "?")
  end
  machine_notes(w, db, "Machine notes written by the experiment at each start and end (load average = other work on the machine):")
  return finish(out, opts.out)
end

-- The summary block of docs/results.md: one row per task whose store exists.
function M.summary(dirs, pages)
  local out = {}
  local function w(...) out[#out + 1] = string.format(...) end
  w("| task | metric | teacher | SFT student | supervised KD | best on-policy GKD | Δ vs supervised KD | beyond the seed spread? |")
  w("|---|---|---|---|---|---|---|---|")
  for _, task in ipairs({ "arith", "debdesc", "ddtp-de" }) do
    local db = dirs[task] and (dirs[task] .. "/runs.db")
    if db and gkd.sys.exists(db) then
      local store <close> = assert(gkd.store.open(db, { readonly = true }))
      local P = task == "arith" and "exact" or TEXT_METRICS[task].primary
      local function finals(pattern)
        local rows = assert(store:query([[SELECT r.name FROM runs r JOIN sweeps s ON s.id = r.sweep_id
          WHERE s.name IN (?, ?) AND r.status = 'finished' AND r.name LIKE ? ORDER BY r.id]], task, task .. "-mix", pattern))
        local xs = {}
        for _, r in ipairs(rows) do
          local f = lib.finished_run(store, r.name .. "/final")
          local e = f and lib.final_eval(store, f.id)
          if e and e[P] then xs[#xs + 1] = e[P] end
        end
        return xs
      end
      local function one(name)
        local f = lib.finished_run(store, name .. "/final")
        local e = f and lib.final_eval(store, f.id)
        return e and e[P]
      end
      local warm_name = task == "arith" and "arith/warm-start-2" or (task .. "/warm-start")
      local skd = finals(task .. "/variant=supervised_kd,%")
      local best, best_xs, best_m
      for _, v in ipairs({ "gkd-fkl", "gkd-rkl", "gkd-jsd0.1", "gkd-jsd0.5", "gkd-jsd0.9" }) do
        local xs = finals(task .. "/variant=" .. v .. ",%")
        local m = lib.mean_std(xs)
        if m and (not best_m or m > best_m) then best, best_xs, best_m = v, xs, m end
      end
      local verdict, delta = "-", "-"
      if best and #skd > 0 then
        local ma, sa = lib.mean_std(best_xs)
        local mb, sb = lib.mean_std(skd)
        delta = string.format("%+.4f", ma - mb)
        verdict = math.abs(ma - mb) > sa + sb and (ma > mb and "yes, better" or "yes, worse") or "no"
      end
      local teacher_score = one(task .. "/teacher-2") or one(task .. "/teacher")
      w("| %s | %s | %s | %s | %s | %s | %s | %s |", task, P, fmt(teacher_score, nil, 4),
        fmt(one(warm_name), nil, 4), ms(skd, 4), best and (LABEL[best] .. ": " .. ms(best_xs, 4)) or "-", delta, verdict)
    end
  end
  -- Each task's methods table, as its page has it (pages[task]: the page's Markdown), so that docs/results.md
  -- holds every table; the page has the diagnostics, curves and plots.
  for _, task in ipairs({ "arith", "debdesc", "ddtp-de" }) do
    local page = pages and pages[task]
    local a = page and page:find("\n## Methods[^\n]*\n")
    if a then
      local b = page:find("\n## ", a + 1) or #page
      local body = page:sub(a + 1, b - 1):gsub("^## Methods", string.format("#### %s: methods", task))
      body = body:gsub("\n!%[[^\n]*", ""):gsub("\nThe beta and lambda effects[^\n]*\n", "\n")
      w("")
      w("%s", body:gsub("%s+$", ""))
      w("")
      w("(all of it: [paper-results-%s.md](paper-results-%s.md))", task, task)
    end
  end
  return table.concat(out, "\n")
end

-- Where a task's committed results live: experiments/paper/results/TASK (runs.db, machine.txt, counts).
local RESULTS = os.getenv("GKD_PAPER_RESULTS") or (here .. "/results")

-- Copies a finished experiment's store (compacted, without checkpoints) and notes into RESULTS/TASK.
function M.save(task, from)
  local dir = RESULTS .. "/" .. task
  assert(gkd.sys.mkdir(dir))
  local db = from .. "/runs.db"
  assert(gkd.sys.exists(db), "no store " .. db)
  -- Closing the last connection folds the write-ahead log into the file; then the file is copied whole.
  assert(gkd.store.open(db)):close()
  assert(not gkd.sys.exists(db .. "-wal"), db .. " is still open elsewhere (its write-ahead log remains)")
  local bytes = assert(read_file(db))
  local g = assert(io.open(dir .. "/runs.db.tmp", "wb"))
  g:write(bytes)
  assert(g:close())
  -- Slimmed to what this report reads (tools/slim-paper-store.sh), so the committed copy stays under 1 MB.
  local pid = assert(gkd.sys.spawn({ "bash", here .. "/../../tools/slim-paper-store.sh", dir .. "/runs.db.tmp" },
    "/bin/bash"))
  local _, how, code = gkd.sys.wait(pid)
  assert(how == "exit" and code == 0, "tools/slim-paper-store.sh failed on " .. dir .. "/runs.db.tmp")
  assert(os.rename(dir .. "/runs.db.tmp", dir .. "/runs.db"))
  -- The text tasks' teacher and warm start (their last checkpoints) and tokenizer: text.lua loads them from
  -- here instead of training them again.
  if task ~= "arith" then
    local st <close> = assert(gkd.store.open(db, { readonly = true }))
    for _, m in ipairs({ { task .. "/teacher-2", "teacher" }, { task .. "/warm-start", "warm-start" } }) do
      local r = lib.finished_run(st, m[1])
      local step, path
      if r then step, path = st:checkpoint_latest(r.id) end
      if step then
        local bytes = assert(read_file(path .. "/model.safetensors"))
        local g = assert(io.open(dir .. "/" .. m[2] .. ".safetensors", "wb"))
        g:write(bytes)
        assert(g:close())
      end
    end
    local t = read_file(from .. "/tokenizer.json")
    if t then
      local g = assert(io.open(dir .. "/tokenizer.json", "w"))
      g:write(t)
      g:close()
    end
  end
  for _, f in ipairs({ "machine.txt", "counts.json", "data/counts.jsonl" }) do
    local text = read_file(from .. "/" .. f)
    if text then
      local g = assert(io.open(dir .. "/" .. f:gsub("^data/", ""), "w"))
      g:write(text)
      g:close()
    end
  end
  return dir
end

if arg and arg[0] and arg[0]:match("report%.lua$") then
  -- report.lua [arith|debdesc|ddtp-de] [DB [OUT.md]]; a first argument that is not a task name is the arith DB.
  -- report.lua save TASK [FROM]: copies out/paper-TASK (or FROM) into experiments/paper/results/TASK.
  -- report.lua all: docs/paper-results-TASK.md for every task in experiments/paper/results, and the summary
  -- block of docs/results.md (between its "paper-summary" markers), from the committed stores.
  if arg[1] == "save" then
    local task = assert(arg[2], "report.lua save TASK [FROM]")
    print("saved to " .. M.save(task, arg[3] or ("out/paper-" .. task)))
  elseif arg[1] == "all" then
    local dirs, pages = {}, {}
    for _, task in ipairs({ "arith", "debdesc", "ddtp-de" }) do
      local dir = RESULTS .. "/" .. task
      if gkd.sys.exists(dir .. "/runs.db") then
        dirs[task] = dir
        local out = "docs/paper-results-" .. task .. ".md"
        if task == "arith" then pages[task] = M.arith{ db = dir .. "/runs.db", out = out, data_dir = dir }
        else pages[task] = M.text{ task = task, db = dir .. "/runs.db", out = out } end
        print("wrote " .. out)
      end
    end
    local path = "docs/results.md"
    local text = assert(read_file(path))
    local a, b = text:find("<!%-%- paper%-summary:begin[^\n]*%-%->\n")
    local c = text:find("<!%-%- paper%-summary:end %-%->", b or 1)
    assert(a and c, path .. ": no <!-- paper-summary:begin --> / <!-- paper-summary:end --> markers")
    text = text:sub(1, b) .. M.summary(dirs, pages) .. "\n" .. text:sub(c)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    print("wrote the summary in " .. path)
  else
    local task = (arg[1] == "arith" or TEXT_METRICS[arg[1] or ""]) and arg[1] or nil
    local a1, a2 = arg[1], arg[2]
    if task then a1, a2 = arg[2], arg[3] end
    task = task or "arith"
    local db = a1 or ("out/paper-" .. task .. "/runs.db")
    local out = a2 or ("docs/paper-results-" .. task .. ".md")
    if task == "arith" then M.arith{ db = db, out = out } else M.text{ task = task, db = db, out = out } end
    print("wrote " .. out)
  end
end

return M
