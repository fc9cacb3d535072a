-- Diagnostics of a final model that the evaluation of gkd.run does not give (issue 11, "what to build" 5):
--   * the reverse KL to the teacher by output position, on the student's own samples at temperature 1:
--     at position k, E over samples of log q(y_k | y_<k) - log p(y_k | y_<k) (q the student, p the teacher),
--     the one-sample estimate of KL(q || p) at that position (unbiased: the tokens are drawn from q itself);
--     averaged over buckets of positions 1, 2-3, 4-7, 8-15, 16+;
--   * self-BLEU of the greedy outputs (diversity across prompts: 100 = every output the same as the others):
--     each output scored with BLEU-4 against all the other outputs as references, then averaged (Zhu et al.
--     2018, "Texygen"); clipped n-gram counts over the references, brevity penalty from the reference length
--     closest to the output's, and zero counts smoothed to 0.1 (NLTK's method1, as Texygen uses); words split on
--     white space. tests/test_self_bleu.sh checks it against NLTK.
-- Prompts: the first `n` examples of the task whose formatted prompt leaves room for max_new tokens (gkd.run
-- cuts longer prompts; here they are left out, and the count kept is returned).
local M = {}

M.BUCKETS = { { 1, 1 }, { 2, 3 }, { 4, 7 }, { 8, 15 }, { 16, math.huge } }

function M.bucket_name(b)
  if b[2] == math.huge then return string.format("pos%d+", b[1]) end
  if b[1] == b[2] then return string.format("pos%d", b[1]) end
  return string.format("pos%d-%d", b[1], b[2])
end

local function words(s)
  local out = {}
  for w in s:gmatch("%S+") do out[#out + 1] = w end
  return out
end

local function ngram_counts(ws, n)
  local c = {}
  for i = 1, #ws - n + 1 do
    local g = table.concat(ws, " ", i, i + n - 1)
    c[g] = (c[g] or 0) + 1
  end
  return c
end

-- BLEU-4 of hypothesis words `h` against reference word lists `refs` (method1 smoothing, epsilon 0.1).
function M.bleu_multi(h, refs)
  if #h == 0 then return 0 end
  local logsum = 0
  for n = 1, 4 do
    local hc = ngram_counts(h, n)
    local maxref = {}
    for _, r in ipairs(refs) do
      for g, c in pairs(ngram_counts(r, n)) do
        if hc[g] and c > (maxref[g] or 0) then maxref[g] = c end
      end
    end
    local match, total = 0, math.max(0, #h - n + 1)
    for g, c in pairs(hc) do match = match + math.min(c, maxref[g] or 0) end
    if total == 0 then return 0 end
    local p = match > 0 and match / total or 0.1 / total
    logsum = logsum + math.log(p) / 4
  end
  -- Brevity penalty: the reference length closest to the hypothesis length (the shorter one on a tie).
  local best
  for _, r in ipairs(refs) do
    local d = math.abs(#r - #h)
    if not best or d < math.abs(best - #h) or (d == math.abs(best - #h) and #r < best) then best = #r end
  end
  local bp = (#h > best) and 1 or math.exp(1 - best / #h)
  return bp * math.exp(logsum)
end

-- Self-BLEU (0-100) of a list of texts.
function M.self_bleu(texts)
  local ws = {}
  for i, t in ipairs(texts) do ws[i] = words(t) end
  if #ws < 2 then return nil end
  local s = 0
  for i = 1, #ws do
    local refs = {}
    for j = 1, #ws do if j ~= i then refs[#refs + 1] = ws[j] end end
    s = s + M.bleu_multi(ws[i], refs)
  end
  return 100 * s / #ws
end

-- Runs the diagnostics of `student` against `teacher` on `task`. opts: n (prompts), max_new, seed.
-- Returns {kept = prompts used, self_bleu =, rkl = {[bucket name] = mean}, counts = {[bucket name] = tokens},
-- prompts, samples (id lists)}.
function M.run(student, teacher, task, tokenizer, opts)
  local prompts = {}
  local limit = student.max_seq_len - opts.max_new
  for i = 1, #task do
    if #prompts >= opts.n then break end
    local ids, plen = task:tokens(i, tokenizer)
    if plen <= limit then prompts[#prompts + 1] = { table.unpack(ids, 1, plen) } end
  end
  local out = { kept = #prompts, rkl = {}, counts = {}, prompts = prompts }
  if #prompts == 0 then return out end
  local samples, details = student:sample(prompts, { temperature = 1, max_new_tokens = opts.max_new, seed = opts.seed or 1 })
  out.samples = samples
  local sums, counts = {}, {}
  for i, ys in ipairs(samples) do
    if #ys > 0 then
      local full = { table.unpack(prompts[i]) }
      for _, y in ipairs(ys) do full[#full + 1] = y end
      local lp_t = teacher:logprobs(full)
      local plen = #prompts[i]
      for k = 1, #ys do
        for b, range in ipairs(M.BUCKETS) do
          if k >= range[1] and k <= range[2] then
            sums[b] = (sums[b] or 0) + details[i].logprobs[k] - lp_t[plen + k - 1]
            counts[b] = (counts[b] or 0) + 1
          end
        end
      end
    end
  end
  for b, range in ipairs(M.BUCKETS) do
    if counts[b] then
      out.rkl[M.bucket_name(range)] = sums[b] / counts[b]
      out.counts[M.bucket_name(range)] = counts[b]
    end
  end
  local greedy = student:sample(prompts, { temperature = 0, max_new_tokens = opts.max_new })
  local texts = {}
  for i, ys in ipairs(greedy) do
    local cut = {}
    for _, y in ipairs(ys) do
      if y == tokenizer.eos then break end
      cut[#cut + 1] = y
    end
    texts[i] = (tokenizer:decode(cut):match("^[^\n]*")) -- up to the terminator
  end
  out.self_bleu = M.self_bleu(texts)
  return out
end

return M
