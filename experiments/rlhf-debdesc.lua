-- RLHF on debdesc (issue 16, acceptance 3): a Bradley-Terry preference model trained on pairs from the debdesc
-- train split is the reward of RL (plus the GKD divergence term, weight alpha) from the committed SFT warm start;
-- does the RL student's greedy summary beat the warm start's, by the reward model and by an independent judge?
--
--   ./build/gkd run experiments/rlhf-debdesc.lua              # everything; resumable: run it again after a kill
--   GKD_SMOKE=1 ./build/gkd run experiments/rlhf-debdesc.lua  # under a minute: tiny reward models, steps and data
--   GKD_RL_METHOD=ppo GKD_RLHF_ALPHA=0.9 GKD_RL_KL_COEF=0.1 ./build/gkd run experiments/rlhf-debdesc.lua   # PPO
--
-- Steps (each skipped when its result is on disk or in OUT/runs.db):
--   1. Data: the debdesc splits of experiments/paper/debdesc.lua (a hash of the package's stem: 80/10/10), with
--      source = the package description, which is the prompt the preference pairs are made with.
--   2. Two preference models (`gkd reward-model train --pairs`), on pairs that tests/fixtures/make_preference_pairs.py
--      makes from two disjoint halves of the train split (by a hash of the stem), with different seeds:
--      judge a is the reward; judge b only judges, so a gain that exploits judge a alone shows as a gap.
--      Both report their pairwise accuracy on pairs made from the validation split.
--   3. RL from the warm start (experiments/paper/results/debdesc), one run per seed, with reward = "model:<judge a>".
--   4. Greedy summaries of the first N test prompts by the warm start, by each RL student, and the references;
--      each scored by both judges. Preferred-summary rate = share of prompts where the judge scores the RL
--      summary above the warm start's (a tie counts one half). Also ROUGE-L against the references and length.
--
-- Knobs (environment): GKD_SMOKE=1, GKD_SEEDS (1,2,3), GKD_RLHF_OUT (out/rlhf-debdesc, gitignored),
--   GKD_RL_METHOD (unset: REINFORCE; "ppo", "grpo", "reinforce": gkd.run's method key),
--   GKD_RLHF_STEPS, _BATCH, _GROUP, _ALPHA (an alpha other than 0.5 goes into the run names: reinforce-alpha0.9),
--   _LR, _MAX_NEW, _EVAL_N (test prompts judged), _RM_STEPS,
--   and the PPO/GRPO settings in RL_SETTINGS below (passed to gkd.run only with GKD_RL_METHOD = ppo or grpo).
local gkd = require "gkd"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local lib = dofile(here .. "/paper/lib.lua")
local text = dofile(here .. "/paper/text.lua")

local function env_number(name, default)
  local v = os.getenv(name)
  if not v or v == "" then return default end
  return assert(tonumber(v), name .. " must be a number, got '" .. v .. "'")
end

local S = lib.smoke and {
  max_examples = 600, rm_steps = 20, rm_batch = 16, rm_model = { "--dim", "32", "--heads", "4", "--hidden", "64",
    "--vocab", "600", "--source-tokens", "48", "--summary-tokens", "16" },
  steps = 2, batch = 4, group_size = 2, max_new = 8, eval_n = 8, val_eval = 4,
} or {
  max_examples = 0, rm_steps = 2000, rm_batch = 32, rm_model = { "--dim", "64", "--heads", "4", "--hidden", "172",
    "--vocab", "4000", "--source-tokens", "64", "--summary-tokens", "24" },
  steps = 800, batch = 32, group_size = 4, max_new = 24, eval_n = 200, val_eval = 32,
}
S.steps = math.floor(env_number("GKD_RLHF_STEPS", S.steps))
S.batch = math.floor(env_number("GKD_RLHF_BATCH", S.batch))
S.group_size = math.floor(env_number("GKD_RLHF_GROUP", S.group_size))
S.max_new = math.floor(env_number("GKD_RLHF_MAX_NEW", S.max_new))
S.eval_n = math.floor(env_number("GKD_RLHF_EVAL_N", S.eval_n))
S.rm_steps = math.floor(env_number("GKD_RLHF_RM_STEPS", S.rm_steps))
S.alpha = env_number("GKD_RLHF_ALPHA", 0.5)
S.lr = env_number("GKD_RLHF_LR", 1e-4)
S.seeds = {}
for s in (os.getenv("GKD_SEEDS") or "1,2,3"):gmatch("%d+") do S.seeds[#S.seeds + 1] = tonumber(s) end

-- The RL method: unset runs today's trainer (a reward with no method is REINFORCE); otherwise gkd.run's
-- planned `method` key with the PPO/GRPO settings below, each overridable by its environment variable.
local METHOD = os.getenv("GKD_RL_METHOD")
if METHOD == "" then METHOD = nil end
local METHOD_LABEL = METHOD or "reinforce"
S.label = METHOD_LABEL .. (S.alpha ~= 0.5 and string.format("-alpha%g", S.alpha) or "")
-- {gkd.run key, environment variable, PPO default, GRPO default}; TRL's defaults where it has one, except the
-- epochs and mini-batches, kept small for a one-core budget.
local RL_SETTINGS = {
  { "epochs", "GKD_RL_EPOCHS", 2, 1 },
  { "minibatches", "GKD_RL_MINIBATCHES", 2, 1 },
  { "clip_eps", "GKD_RL_CLIP_EPS", 0.2, 0.2 },
  { "kl_coef", "GKD_RL_KL_COEF", 0.05, 0.04 },
  { "kl_estimator", "GKD_RL_KL_ESTIMATOR", "k1", "k3" },
  { "kl_in", "GKD_RL_KL_IN", "reward", "loss" },
  { "value_head", "GKD_RL_VALUE_HEAD", true, nil },
  { "gamma", "GKD_RL_GAMMA", 1.0, nil },
  { "gae_lambda", "GKD_RL_GAE_LAMBDA", 0.95, nil },
  { "vf_coef", "GKD_RL_VF_COEF", 0.1, nil },
  { "target_kl", "GKD_RL_TARGET_KL", nil, nil },
  { "teacher_reward", "GKD_RL_TEACHER_REWARD", nil, nil },
}

local function rl_settings()
  if METHOD ~= "ppo" and METHOD ~= "grpo" then return {} end
  local out = {}
  for _, s in ipairs(RL_SETTINGS) do
    local key, var = s[1], s[2]
    local v = os.getenv(var)
    if v and v ~= "" then
      if v == "true" or v == "false" then out[key] = v == "true"
      else out[key] = tonumber(v) or v end
    elseif METHOD == "ppo" then
      out[key] = s[3]
    else
      out[key] = s[4]
    end
  end
  return out
end

local OUT = os.getenv("GKD_RLHF_OUT") or (lib.smoke and "out/rlhf-debdesc-smoke" or "out/rlhf-debdesc")
local SAVED = here .. "/paper/results/debdesc"
lib.mkdir(OUT .. "/outputs")
lib.mkdir(OUT .. "/scores")
lib.note(OUT, "start")
local t_start = gkd.sys.clock()

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- This gkd binary, for its reward-model subcommands (scoring with a reward model has no Lua binding).
local GKD_BIN = (function()
  local h = assert(io.popen("readlink /proc/" .. gkd.sys.pid() .. "/exe"))
  local p = h:read("l")
  h:close()
  return assert(p, "cannot find the gkd binary")
end)()

-- Runs a shell command, returning its standard output; raises with the output when it fails.
local function run_cmd(cmd)
  local h = assert(io.popen(cmd .. " 2>&1"))
  local out = h:read("a")
  local ok, _, code = h:close()
  if not ok then error(string.format("command failed (exit %s): %s\n%s", tostring(code), cmd, out), 0) end
  return out
end

local function read_jsonl(path)
  local rows = {}
  text.each_jsonl(path, function(r) rows[#rows + 1] = r end)
  return rows
end

-- 1. Data. The stem of a package name, the split key of experiments/paper/debdesc.lua (lib.package_stem).
local stem = lib.package_stem

local DATA = OUT .. "/data"
local STAMP = string.format("rlhf-debdesc max_examples=%d", S.max_examples)
local function prepare_data()
  local f = io.open(DATA .. "/STAMP")
  local have = f and f:read("a")
  if f then f:close() end
  if have == STAMP then return end
  local rows = {}
  text.each_jsonl(text.find_data("debdesc.jsonl.xz"), function(r)
    if S.max_examples == 0 or #rows < S.max_examples then
      rows[#rows + 1] = { key = stem(r.package), package = r.package, summary = r.summary, document = r.document }
    end
  end)
  text.write_splits(DATA, rows, STAMP)
end
prepare_data()

local function task(split, max_examples)
  return assert(gkd.task.jsonl{
    path = DATA .. "/" .. split .. ".jsonl", prompt = "Package: {package}\nDescription: {document}",
    target = "summary", source = "document", max_examples = max_examples or 0,
    template = { prompt = "{prompt}\nSummary:", target_prefix = " " }, terminator = "\n",
  })
end

-- 2. The judges. Pairs: the train split in two halves by a hash of the stem (so the variants of a package, whose
-- descriptions are near copies, stay in one half), one half per judge, each with its own pair and training seed.
local JUDGES = {
  { name = "a", half = 0, pair_seed = 11, train_seed = 1 },
  { name = "b", half = 1, pair_seed = 12, train_seed = 2 },
}
local function make_pairs()
  local held = OUT .. "/pairs-validation.jsonl"
  if gkd.sys.exists(held) and gkd.sys.exists(OUT .. "/pairs-b.jsonl") then return held end
  local halves = { [0] = {}, [1] = {} }
  for _, r in ipairs(read_jsonl(DATA .. "/train.jsonl")) do
    local h = halves[lib.fnv1a("judge:" .. r.key) % 2]
    h[#h + 1] = r
  end
  local maker = here .. "/../tests/fixtures/make_preference_pairs.py"
  for _, j in ipairs(JUDGES) do
    local src = OUT .. "/train-half-" .. j.name .. ".jsonl"
    lib.write_jsonl(src, halves[j.half])
    run_cmd(string.format("python3 %s %s %s --seed %d --tie-every 20", sh_quote(maker), sh_quote(src),
      sh_quote(OUT .. "/pairs-" .. j.name .. ".jsonl.tmp"), j.pair_seed))
    assert(os.rename(OUT .. "/pairs-" .. j.name .. ".jsonl.tmp", OUT .. "/pairs-" .. j.name .. ".jsonl"))
  end
  run_cmd(string.format("python3 %s %s %s --seed 2", sh_quote(maker), sh_quote(DATA .. "/validation.jsonl"),
    sh_quote(held .. ".tmp")))
  assert(os.rename(held .. ".tmp", held))
  return held
end
local HELD_PAIRS = make_pairs()

local function count_lines(path)
  local n = 0
  for _ in io.lines(path) do n = n + 1 end
  return n
end

-- The held-out pairs of one kind (corrupted, truncated, other), for the per-kind accuracies.
local function pairs_of_kind(kind)
  local path = OUT .. "/pairs-validation-" .. kind .. ".jsonl"
  if not gkd.sys.exists(path) then
    local rows = {}
    for _, r in ipairs(read_jsonl(HELD_PAIRS)) do
      if r.kind == kind then rows[#rows + 1] = r end
    end
    lib.write_jsonl(path, rows)
  end
  return path
end

local function pairwise_accuracy(model_dir, pairs_path)
  local out = run_cmd(string.format("%s reward-model eval --model %s --pairs %s", sh_quote(GKD_BIN),
    sh_quote(model_dir), sh_quote(pairs_path)))
  return tonumber((assert(out:match("pairwise accuracy ([%d%.]+)"), out)))
end

local function train_judge(j)
  j.dir = OUT .. "/rm-" .. j.name
  j.pairs = count_lines(OUT .. "/pairs-" .. j.name .. ".jsonl")
  if not gkd.sys.exists(j.dir .. "/model.safetensors") then
    local args = { sh_quote(GKD_BIN), "reward-model", "train", "--pairs", sh_quote(OUT .. "/pairs-" .. j.name .. ".jsonl"),
      "--held-out", sh_quote(HELD_PAIRS), "--out", sh_quote(j.dir), "--steps", S.rm_steps, "--batch", S.rm_batch,
      "--lr", "1e-3", "--seed", j.train_seed, "--report-every", math.max(1, S.rm_steps // 4) }
    for _, a in ipairs(S.rm_model) do args[#args + 1] = a end
    local t0 = gkd.sys.clock()
    local log = run_cmd(table.concat(args, " "))
    local f = assert(io.open(j.dir .. ".log", "w"))
    f:write(log, string.format("wall %.0f s\n", gkd.sys.clock() - t0))
    f:close()
  end
  local log = io.open(j.dir .. ".log")
  local text_log = log and log:read("a") or ""
  if log then log:close() end
  j.train_seconds = tonumber(text_log:match("wall (%d+) s"))
  j.accuracy = pairwise_accuracy(j.dir, HELD_PAIRS)
  j.by_kind = {}
  for _, kind in ipairs({ "corrupted", "truncated", "other" }) do
    j.by_kind[kind] = pairwise_accuracy(j.dir, pairs_of_kind(kind))
  end
end
for _, j in ipairs(JUDGES) do train_judge(j) end
local held_pairs_n = count_lines(HELD_PAIRS)

-- 3. Models and tasks.
local tok = assert(gkd.tokenizer.load(SAVED .. "/tokenizer.json"))
local function model(layers, dim, weights)
  local m = gkd.model.new{ layers = layers, dim = dim, heads = 4, tokenizer = tok, max_seq_len = 128, seed = 1 }
  assert(m:load_weights(weights))
  return m
end
local teacher = model(4, 128, SAVED .. "/teacher.safetensors")
local warm = model(2, 96, SAVED .. "/warm-start.safetensors")
local train = task("train")
local validation = task("validation", S.val_eval)
local test = task("test", S.eval_n)

-- Greedy summaries of the first eval_n test prompts, through gkd.run's own evaluation (a zero-step run), so
-- that prompts are formatted and cut exactly as in training. Saved to path as JSONL {source, target, output}.
local function greedy_outputs(student, path)
  if gkd.sys.exists(path) then return read_jsonl(path) end
  local rows = {}
  gkd.run{
    name = "greedy", db = ":memory:", method = "sft", task = test, held_out = test, student = student, steps = 0,
    batch = 32, max_new_tokens = S.max_new, checkpoint = false, resume = false, quiet = true,
    eval = { examples = S.eval_n, metrics = { capture = function(out, ex)
      rows[#rows + 1] = { source = ex.source, target = ex.target, output = out }
      return 0
    end } },
  }
  assert(#rows == S.eval_n, string.format("%d greedy outputs, %d expected", #rows, S.eval_n))
  lib.write_jsonl(path, rows)
  return rows
end

-- Scores of texts by a judge: one `gkd reward-model score` per text, run from one shell script; cached.
local function judge_scores(j, label, rows, field)
  local path = string.format("%s/scores/%s-%s.txt", OUT, j.name, label)
  if not gkd.sys.exists(path) then
    local script = path .. ".sh"
    local f = assert(io.open(script, "w"))
    f:write("set -e\n")
    for _, r in ipairs(rows) do
      f:write(string.format("%s reward-model score --model %s --source %s --summary %s\n", sh_quote(GKD_BIN),
        sh_quote(j.dir), sh_quote(r.source), sh_quote(r[field])))
    end
    f:close()
    local out = run_cmd("sh " .. sh_quote(script))
    local g = assert(io.open(path .. ".tmp", "w"))
    g:write(out)
    g:close()
    assert(os.rename(path .. ".tmp", path))
    os.remove(script)
  end
  local scores = {}
  for line in io.lines(path) do scores[#scores + 1] = assert(tonumber(line), path .. ": " .. line) end
  assert(#scores == #rows, path .. ": wrong number of scores")
  return scores
end

local function mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / math.max(1, #xs)
end

-- The share of prompts where `mine` scores above `base` (ties one half).
local function preferred_rate(mine, base)
  local wins = 0
  for i = 1, #mine do
    wins = wins + (mine[i] > base[i] and 1 or mine[i] == base[i] and 0.5 or 0)
  end
  return wins / #mine
end

-- Text numbers of a set of outputs: ROUGE-L F against the references, words, the share identical to the warm
-- start's, and the share degenerate (empty, or a word 3-gram repeated: the loops a reward-hacking policy writes).
local function text_numbers(rows, base_rows)
  local rl, len, same, degenerate = {}, {}, 0, 0
  for i, r in ipairs(rows) do
    assert(r.source == base_rows[i].source, "outputs of different prompts")
    rl[#rl + 1] = gkd.reward.rougeL(r.output, r.target)
    len[#len + 1] = gkd.reward.words(r.output)
    if r.output == base_rows[i].output then same = same + 1 end
    degenerate = degenerate + text.degenerate(r.output)
  end
  return { rougeL = mean(rl), length = mean(len), same = same / #rows, degenerate = degenerate / #rows }
end

local sft_rows = greedy_outputs(warm, OUT .. "/outputs/sft.jsonl")
local sft = text_numbers(sft_rows, sft_rows)
local ref_rows = {}
for i, r in ipairs(sft_rows) do ref_rows[i] = { source = r.source, target = r.target, output = r.target } end
local ref = text_numbers(ref_rows, sft_rows)
for _, j in ipairs(JUDGES) do
  sft["score_" .. j.name] = judge_scores(j, "sft", sft_rows, "output")
  ref["score_" .. j.name] = judge_scores(j, "reference", ref_rows, "output")
  ref["rate_" .. j.name] = preferred_rate(ref["score_" .. j.name], sft["score_" .. j.name])
end

-- 4. RL from the warm start, one run per seed.
local function rl_run(seed)
  local name = string.format("rlhf-debdesc/%s/seed=%d", S.label, seed)
  local cfg = {
    name = name, db = OUT .. "/runs.db", task = train, held_out = validation, teacher = teacher,
    student = gkd.model.from_layers(warm, { n = warm.layers }), seed = seed,
    reward = "model:" .. JUDGES[1].dir, alpha = S.alpha, divergence = gkd.rkl(),
    group_size = S.group_size,
    steps = S.steps, batch = S.batch, max_new_tokens = S.max_new,
    lr = gkd.schedule.warmup_cosine(S.lr, S.lr / 10, math.max(1, S.steps // 20), S.steps),
    eval = { every = math.max(1, S.steps // 4), examples = S.val_eval, metrics = { "rougeL" } },
    checkpoint = { dir = OUT .. "/checkpoints/" .. name, every = math.max(1, S.steps // 4) }, resume = true,
  }
  if METHOD then cfg.method = METHOD end
  -- REINFORCE's advantage settings; PPO with its value head (GAE, whitened) and GRPO take none
  if not METHOD or METHOD == "reinforce" or (METHOD == "ppo" and os.getenv("GKD_RL_VALUE_HEAD") == "false") then
    cfg.normalize_advantages, cfg.score_function = true, false
  end
  for k, v in pairs(rl_settings()) do cfg[k] = v end
  local r = gkd.run(cfg)
  local rows = greedy_outputs(cfg.student, string.format("%s/outputs/%s-seed%d.jsonl", OUT, S.label, seed))
  local store <close> = assert(gkd.store.open(OUT .. "/runs.db", { readonly = true }))
  local rewards = {}
  for _, row in ipairs(assert(store:query([[SELECT value FROM metrics WHERE run_id = ? AND name = 'reward'
      ORDER BY step]], r.run_id))) do rewards[#rewards + 1] = row.value end
  local tail = math.max(1, #rewards // 10)
  local function reward_mean(lo, hi) return mean(table.move(rewards, lo + 1, hi, 1, {})) end
  local timing = assert(store:query([[SELECT (julianday(finished_at) - julianday(started_at)) * 86400 AS s
    FROM runs WHERE id = ?]], r.run_id))[1]
  local x = text_numbers(rows, sft_rows)
  x.seed, x.run_id = seed, r.run_id
  x.reward, x.reward_first, x.reward_last = reward_mean(0, #rewards), reward_mean(0, tail),
    reward_mean(#rewards - tail, #rewards)
  x.seconds = timing.s -- from the store, so a rerun that skips the finished run prints the same
  for _, j in ipairs(JUDGES) do
    x["score_" .. j.name] = judge_scores(j, string.format("%s-seed%d", S.label, seed), rows, "output")
    x["rate_" .. j.name] = preferred_rate(x["score_" .. j.name], sft["score_" .. j.name])
    x["vsref_" .. j.name] = preferred_rate(x["score_" .. j.name], ref["score_" .. j.name])
  end
  cfg.student:close()
  return x
end

local results = {}
for _, seed in ipairs(S.seeds) do
  results[#results + 1] = rl_run(seed)
  if gkd.stop_requested() then break end
end

-- The table.
local function fmt(x, digits) return x and string.format("%." .. (digits or 3) .. "f", x) or "-" end
local function ms(list, key, digits)
  local xs = {}
  for _, x in ipairs(list) do xs[#xs + 1] = x[key] end
  local m, s = lib.mean_std(xs)
  if not m then return "-" end
  return fmt(m, digits) .. " ± " .. fmt(s, digits)
end
local lines = {}
local function out(s) lines[#lines + 1] = s; print(s) end
out("")
out(string.format("judges (Bradley-Terry, %d RM steps): held-out pairwise accuracy on %d validation pairs", S.rm_steps,
  held_pairs_n))
for _, j in ipairs(JUDGES) do
  out(string.format("  judge %s: %d train pairs (half %d, pair seed %d, train seed %d): %.4f (corrupted %.4f, truncated %.4f, other %.4f)%s",
    j.name, j.pairs, j.half, j.pair_seed, j.train_seed, j.accuracy, j.by_kind.corrupted, j.by_kind.truncated,
    j.by_kind.other, j.train_seconds and string.format(", %d s", j.train_seconds) or ""))
end
out(string.format("RL: %s (%s), %d steps x batch %d (group %d), alpha %g (reverse KL), lr %g, %d new tokens; judged on %d test prompts",
  S.label, METHOD_LABEL, S.steps, S.batch, S.group_size, S.alpha, S.lr, S.max_new, S.eval_n))
out("")
out("| model | seed | preferred rate (judge a) | preferred rate (judge b) | ROUGE-L | words | degenerate | same as SFT | beats the reference (a / b) | mean train reward (first 10% -> last 10%) | run s |")
out("|---|---|---|---|---|---|---|---|---|---|---|")
out(string.format("| SFT warm start | - | 0.5 (judge a mean score %s) | 0.5 (judge b mean score %s) | %s | %s | %s | 1 | %s / %s | - | - |",
  fmt(mean(sft.score_a)), fmt(mean(sft.score_b)), fmt(sft.rougeL, 4), fmt(sft.length, 2), fmt(sft.degenerate),
  fmt(1 - ref.rate_a), fmt(1 - ref.rate_b)))
out(string.format("| reference summaries | - | %s | %s | 1 | %s | %s | %s | - | - | - |", fmt(ref.rate_a), fmt(ref.rate_b),
  fmt(ref.length, 2), fmt(ref.degenerate), fmt(ref.same)))
for _, x in ipairs(results) do
  out(string.format("| %s | %d | %s | %s | %s | %s | %s | %s | %s / %s | %s (%s -> %s) | %.0f |", S.label, x.seed,
    fmt(x.rate_a), fmt(x.rate_b), fmt(x.rougeL, 4), fmt(x.length, 2), fmt(x.degenerate), fmt(x.same), fmt(x.vsref_a),
    fmt(x.vsref_b), fmt(x.reward), fmt(x.reward_first), fmt(x.reward_last), x.seconds or 0 / 0))
end
if #results > 1 then
  out(string.format("| %s, mean ± std | %d seeds | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s |", S.label, #results,
    ms(results, "rate_a"), ms(results, "rate_b"), ms(results, "rougeL", 4), ms(results, "length", 2),
    ms(results, "degenerate"), ms(results, "same"), ms(results, "vsref_a"), ms(results, "vsref_b"), ms(results, "reward"),
    ms(results, "seconds", 0)))
end
out(string.format("(one seed's preferred rate has a binomial standard error of at most %.3f on %d prompts; total wall %.0f s)",
  0.5 / math.sqrt(S.eval_n), S.eval_n, gkd.sys.clock() - t_start))

local f = assert(io.open(string.format("%s/results-%s.md", OUT, S.label), "w"))
f:write(table.concat(lines, "\n"), "\n")
f:close()
local slim = {}
for i, x in ipairs(results) do
  slim[i] = { seed = x.seed, rate_a = x.rate_a, rate_b = x.rate_b, rougeL = x.rougeL, length = x.length, same = x.same,
    degenerate = x.degenerate, vsref_a = x.vsref_a, vsref_b = x.vsref_b,
    reward = x.reward, reward_first = x.reward_first, reward_last = x.reward_last, seconds = x.seconds }
end
local g = assert(io.open(string.format("%s/results-%s.json", OUT, S.label), "w"))
g:write(gkd.json.encode{ method = METHOD_LABEL, label = S.label, settings = S, rl_settings = rl_settings(), runs = slim,
  sft = { rougeL = sft.rougeL, length = sft.length, score_a = mean(sft.score_a), score_b = mean(sft.score_b) },
  reference = { rate_a = ref.rate_a, rate_b = ref.rate_b, length = ref.length },
  judges = { { name = "a", accuracy = JUDGES[1].accuracy, by_kind = JUDGES[1].by_kind, pairs = JUDGES[1].pairs },
    { name = "b", accuracy = JUDGES[2].accuracy, by_kind = JUDGES[2].by_kind, pairs = JUDGES[2].pairs } } }, "\n")
g:close()
lib.note(OUT, "end")
