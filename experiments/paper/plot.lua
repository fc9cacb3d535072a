-- The SVG plots of the paper-results pages (report.lua): a line plot with error bars, written next to its
-- page, and the beta and lambda effects of a comparison.
-- Rules: an SVG is built from the arguments alone, so that `report.lua all` regenerates the committed plots byte
-- for byte (tests/test_paper_results_reproduce.sh).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local lib = dofile(here .. "/lib.lua")

local M = {}

-- A small SVG line plot with error bars (no dependencies; the pages link it). o = {title, xlabel, ylabel,
-- series = {{label, points = {{x, y, e, tag}, ...}, dashed}}, xticks = {{x, label}, ...}}; points sorted by x.
local COLORS = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e" }
function M.svg_plot(o)
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
function M.plot_file(md_path, name, svg, alt)
  if not md_path or not svg then return nil end
  local path = md_path:gsub("%.md$", "") .. "-" .. name .. ".svg"
  local f = assert(io.open(path, "w"))
  f:write(svg)
  f:close()
  return string.format("![%s](%s)", alt, path:match("[^/]+$"))
end

-- The beta and lambda effects of a comparison: the primary metric of on-policy GKD against beta (forward KL at
-- beta 0 and reverse KL at 1, the limits of JSD(beta)), and of the lambda 0 / 0.5 / 1 points.
function M.effects_svg(stats, metric, task)
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
  return M.svg_plot{ title = string.format("%s: %s by beta (solid) and lambda (dashed)", task, metric),
    xlabel = "beta of JSD(beta) (0: forward KL, 1: reverse KL) | lambda", ylabel = metric, series = series,
    xticks = { { 0, "0" }, { 0.1, "0.1" }, { 0.5, "0.5" }, { 0.9, "0.9" }, { 1, "1" } } }
end

return M
