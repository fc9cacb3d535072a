-- GKD + RL with the factual-consistency reward (issue 5's experiment): does the reward do its job?
-- The paper's objective (section 3.2): maximise (1 - alpha) E[r(y)] - alpha E[D(teacher || student)(y)]
-- on the student's own samples. Two runs from the same supervised warm start, for the same number of
-- steps and the same seed:
--   alpha = 0.5: half reward (factual consistency of the summary against its document), half distillation;
--   alpha = 1:   pure distillation on the student's own samples (the reward has weight 0).
-- Reported: the held-out factual score and ROUGE-L of each student's greedy summaries.
--
--   gkd run experiments/rl-factual.lua            # default size
--   GKD_SCALE=0.2 gkd run experiments/rl-factual.lua   # a quick look
--   GKD_ALPHAS=0,0.25,0.75,0.9 gkd run experiments/rl-factual.lua   # other values of alpha
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local setup = dofile(here .. "/common.lua")
local teacher = setup.teacher()
local steps = math.floor(150 * setup.scale)
local seed = tonumber(os.getenv("GKD_SEED") or "1")

-- The students' common start: SFT on the references until the student writes summaries of its own (a
-- student that only emits end-of-text gets no reward signal at all), saved once and loaded by both runs.
-- The student: 2 layers of the teacher's width (dim 128), half its depth.
local warm_path = "rl-factual-warm-seed" .. seed .. ".safetensors"
local warm = setup.model(2, 128, seed)
local warm_steps = math.max(1, math.floor(300 * setup.scale))
gkd.run{
  name = "rl-factual/warm-start-seed" .. seed, method = "sft", task = setup.task, student = warm,
  steps = warm_steps, batch = 16, seed = seed, lr = gkd.schedule.warmup_cosine(1e-3, 1e-4, 20, warm_steps),
  max_new_tokens = 32, eval = { examples = 32, metrics = { "factual", "rougeL" } },
}
assert(warm:save(warm_path))

local alphas = {}
for a in (os.getenv("GKD_ALPHAS") or "0.5,1"):gmatch("[^,]+") do alphas[#alphas + 1] = assert(tonumber(a), a) end
local results = {}
for _, alpha in ipairs(alphas) do
  local student = assert(gkd.model.load(warm_path, { tokenizer = setup.tokenizer }))
  local r = gkd.run{
    name = string.format("rl-factual/alpha%g-seed%d", alpha, seed),
    task = setup.task, teacher = teacher, student = student,
    reward = "factual",          -- reward/factual.c: content-word and entity precision against the document
    alpha = alpha,
    divergence = gkd.rkl(),
    group_size = 4,              -- 4 samples per prompt, leave-one-out baseline
    -- The reward alone drives the policy gradient and the divergence is differentiated on the samples
    -- (the GKD convention, score_function = false); the reward's advantages are normalised per batch and
    -- then weighted by 1 - alpha, so that a reward of a few hundredths still moves the policy against
    -- the divergence's gradient while alpha keeps its meaning.
    score_function = false, normalize_advantages = true,
    steps = steps, batch = 16, max_new_tokens = 32, seed = seed,
    lr = gkd.schedule.warmup_cosine(5e-4, 5e-5, math.max(1, steps // 20), steps),
    eval = { every = math.max(1, steps // 3), metrics = { "factual", "rougeL" } },
  }
  results[#results + 1] = { alpha = alpha, factual = r.eval.factual, rougeL = r.eval.rougeL,
                            own_rkl = r.eval.own_reverse_kl, reward = r.reward }
end

print(string.format("\n%-8s %10s %10s %16s %14s", "alpha", "factual", "ROUGE-L", "own reverse KL", "train reward"))
for _, x in ipairs(results) do
  print(string.format("%-8g %10.4f %10.4f %16.4f %14.4f", x.alpha, x.factual, x.rougeL, x.own_rkl, x.reward))
end
