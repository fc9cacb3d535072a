-- The `arith` task of the paper reproduction: addition of two 4-digit numbers, digits written least
-- significant first, with the carry of every column shown, then the answer (DESIGN.md section 8):
--   prompt "a: 7 1 0 1 b: 9 0 1 1 ="   target " 6c1 2c0 1c0 2c0 Answer: 6 2 1 2"
-- (a final carry adds one answer digit). Each output token follows from the prompt and the last carry,
-- so a teacher can correct a student after the student's own mistakes: the paper's mechanism.
-- Problems are drawn by a fixed generator; each lands in train / validation / test by a hash of its key
-- "a+b" (lib.split_of), so the splits never change. Written as JSONL {key, prompt, target}.
local gkd = require "gkd"
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/lib.lua")

local M = {}

M.DIGITS = 4

local function digits_lsb(x, n)
  local d = {}
  for i = 1, n do d[i] = x % 10; x = x // 10 end
  return d
end

-- One problem: prompt and target of a + b.
function M.problem(a, b, n)
  n = n or M.DIGITS
  local da, db = digits_lsb(a, n), digits_lsb(b, n)
  local cols, answer, carry = {}, {}, 0
  for i = 1, n do
    local s = da[i] + db[i] + carry
    carry = s // 10
    cols[i] = string.format("%dc%d", s % 10, carry)
    answer[i] = tostring(s % 10)
  end
  if carry > 0 then answer[n + 1] = tostring(carry) end
  local prompt = "a: " .. table.concat(da, " ") .. " b: " .. table.concat(db, " ") .. " ="
  local target = " " .. table.concat(cols, " ") .. " Answer: " .. table.concat(answer, " ")
  return prompt, target
end

-- Draws `n` distinct problems with the generator of `seed` and writes DIR/{train,validation,test}.jsonl.
-- Returns the counts per split. Deterministic: the same (n, seed) writes the same files, and a larger n
-- keeps every problem of a smaller one in the same split.
function M.generate(dir, n, seed)
  lib.mkdir(dir)
  local rand = lib.lcg(seed or 20261202)
  local top = math.tointeger(10 ^ M.DIGITS)
  local seen, rows = {}, { train = {}, validation = {}, test = {} }
  local drawn = 0
  while drawn < n do
    local a, b = rand(top), rand(top)
    local key = a .. "+" .. b
    if not seen[key] then
      seen[key] = true
      drawn = drawn + 1
      local prompt, target = M.problem(a, b)
      local split = rows[lib.split_of(key)]
      split[#split + 1] = { key = key, prompt = prompt, target = target }
    end
  end
  local counts = {}
  for name, list in pairs(rows) do
    lib.write_jsonl(dir .. "/" .. name .. ".jsonl", list)
    counts[name] = #list
  end
  return counts
end

-- Writes the splits of `n` problems into DIR once: a STAMP file records what is there, and the files are
-- written again only when it differs (a sweep worker, `worker` true, never writes: the parent has). Also
-- DIR/counts.jsonl, the size of each split.
function M.ensure(dir, n, worker)
  local stamp = string.format("problems=%d digits=%d", n, M.DIGITS)
  local f = io.open(dir .. "/STAMP")
  local have = f and f:read("a")
  if f then f:close() end
  if have == stamp then return end
  assert(not worker, "arith: the data in " .. dir .. " is missing or stale in a sweep worker")
  local c = M.generate(dir, n)
  lib.write_jsonl(dir .. "/counts.jsonl", { c })
  local g = assert(io.open(dir .. "/STAMP", "w"))
  g:write(stamp)
  assert(g:close())
end

function M.task(dir, split, max_examples)
  return assert(gkd.task.jsonl{ path = dir .. "/" .. split .. ".jsonl", prompt = "{prompt}", target = "target",
    max_examples = max_examples or 0 })
end

-- Parsing an output: the column tokens ("6c1") and the answer digits; nil parts when malformed.
local function parse(text)
  local head, ans = text:match("^(.-)Answer:(.*)$")
  local cols = {}
  for d, c in (head or text):gmatch("(%d)c(%d)") do cols[#cols + 1] = d .. c end
  local digits
  if ans then
    digits = {}
    for tok in ans:gmatch("%S+") do digits[#digits + 1] = tok end
  end
  return cols, digits
end

-- Metrics over a greedy output (Lua metrics of gkd.run's eval: function(output, example) -> number).
-- exact: the whole answer (every digit, no extra ones) equals the reference's; the paper's score.
-- digit_acc: the share of the reference's answer digits that the output has at the same position.
-- full: the whole output, carries included, equals the reference (spaces trimmed).
-- malformed: no "Answer:", or a column or answer token that is not what the format allows (degenerate).
-- len_ratio: the output's length in characters over the reference's.
M.metrics = {
  exact = function(out, ex)
    local _, d = parse(out)
    local _, r = parse(ex.target)
    if not d or #d ~= #r then return 0 end
    for i = 1, #r do if d[i] ~= r[i] then return 0 end end
    return 1
  end,
  digit_acc = function(out, ex)
    local _, d = parse(out)
    local _, r = parse(ex.target)
    d = d or {}
    local ok = 0
    for i = 1, #r do if d[i] == r[i] then ok = ok + 1 end end
    return ok / math.max(#r, #d)
  end,
  full = function(out, ex)
    return (out:match("^%s*(.-)%s*$") == ex.target:match("^%s*(.-)%s*$")) and 1 or 0
  end,
  malformed = function(out, _)
    local head, ans = out:match("^(.-)Answer:(.*)$")
    if not head then return 1 end
    for tok in head:gmatch("%S+") do if not tok:match("^%dc%d$") then return 1 end end
    local n = 0
    for tok in ans:gmatch("%S+") do
      n = n + 1
      if not tok:match("^%d$") then return 1 end
    end
    return n == 0 and 1 or 0
  end,
  len_ratio = function(out, ex)
    return #out / math.max(1, #ex.target)
  end,
  -- The rarest column: 9 + 9 with a carry in (digit 9, carry 1; about 0.5 % of columns). has_99c: the
  -- problem has one; miss_99c: the output's token at such a column is not "9c1" (the error the
  -- mode-seeking divergences keep, see docs/paper-results-arith.md).
  has_99c = function(_, ex)
    return #M.columns_99c(ex.prompt) > 0 and 1 or 0
  end,
  miss_99c = function(out, ex)
    local cols = parse(out)
    for _, i in ipairs(M.columns_99c(ex.prompt)) do
      if cols[i] ~= "91" then return 1 end
    end
    return 0
  end,
}

-- The columns (1-based, least significant first) of a prompt where 9 + 9 meets a carry of 1.
function M.columns_99c(prompt)
  local a, b = prompt:match("^a:([%d ]+)b:([%d ]+)=")
  local da, db = {}, {}
  for d in (a or ""):gmatch("%d") do da[#da + 1] = tonumber(d) end
  for d in (b or ""):gmatch("%d") do db[#db + 1] = tonumber(d) end
  local out, carry = {}, 0
  for i = 1, #da do
    local s = da[i] + (db[i] or 0) + carry
    if da[i] == 9 and db[i] == 9 and carry == 1 then out[#out + 1] = i end
    carry = s // 10
  end
  return out
end

return M
