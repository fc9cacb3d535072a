-- gkd run compare.lua RUN DB_A DB_B: compares run RUN of two run stores (tests/test_data_parallel.sh): its
-- loss curve (relative difference at most 1e-5 at every step) and its last checkpoint's tensors, read from
-- model.safetensors here in Lua. Weights pass numpy's allclose(rtol = atol = 1e-5), |a - b| <= 1e-5 (1 + |b|):
-- a relative test alone fails on weights near 0, where AdamW turns rounding noise of a near-zero gradient
-- (sums taken in another order on two ranks) into an update of up to lr, whatever the gradient's size.
-- Exits 0 when both pass.
local method, a, b = arg[1], arg[2], arg[3]
local function losses(db)
  local s = assert(gkd.store.open(db, {readonly = true}))
  local run = assert(s:run_find(method), "no run " .. method .. " in " .. db)
  local rows = s:query("SELECT step, value FROM metrics WHERE run_id = ? AND name = 'loss' ORDER BY step", run.id)
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.value end
  local step, path = s:checkpoint_latest(run.id)
  return out, path, #s:query("SELECT id FROM runs")
end
local function tensors(path)
  local f = assert(io.open(path .. "/model.safetensors", "rb"))
  local data = f:read("a"); f:close()
  local n = string.unpack("<I8", data)
  local header = gkd.json.decode(data:sub(9, 8 + n))
  local out = {}
  for name, t in pairs(header) do
    if name ~= "__metadata__" then
      local v, at = {}, 9 + n + t.data_offsets[1]
      for i = 1, (t.data_offsets[2] - t.data_offsets[1]) // 4 do v[i] = string.unpack("<f", data, at + 4 * (i - 1)) end
      out[name] = v
    end
  end
  return out
end
local function rel(x, y) return math.abs(x - y) / math.max(math.abs(x), math.abs(y), 1e-6) end
local la, pa, ra = losses(a)
local lb, pb, rb = losses(b)
assert(#la == #lb and #la > 0, string.format("loss curves of %d and %d steps", #la, #lb))
local dl = 0
for i = 1, #la do dl = math.max(dl, rel(la[i], lb[i])) end
local ta, tb = tensors(pa), tensors(pb)
-- numpy's allclose(rtol = atol = 1e-5): |a - b| <= 1e-5 (1 + |b|), as a ratio (<= 1 passes)
local dw, count = 0, 0
for name, v in pairs(ta) do
  local w = assert(tb[name], name)
  for i = 1, #v do dw = math.max(dw, math.abs(v[i] - w[i]) / (1e-5 * (1 + math.abs(w[i])))); count = count + 1 end
end
print(string.format("%s steps %d loss_rel %.3g weights_allclose_ratio %.3g (%d values) runs %d %d", method, #la, dl, dw, count, ra, rb))
os.exit((dl <= 1e-5 and dw <= 1) and 0 or 1)
