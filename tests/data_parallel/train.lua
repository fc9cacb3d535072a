-- gkd run train.lua RUN DB [BATCH]: one small run for tests/test_data_parallel.sh, the same whether one
-- process or mpirun's ranks run it. RUN picks the method: sft, supervised_kd, gkd (on-policy, lambda 1),
-- gkd_half (lambda 0.5: the coin falls both ways within its steps), token (token normalisation), imitkd
-- (one coin per row: ranks hold different numbers of on-policy rows), reinforce (GKD + RL, ROUGE-1 reward, a
-- prompt's four samples split over the ranks, KL to the initial student), reinforce_ma (moving-average baseline,
-- normalised advantages, token normalisation), long (400 steps of supervised KD, checkpoints every 20: to be
-- interrupted and resumed), fail0 and fail1 (an on_step callback fails on rank 0, or 1, at step 3). References
-- are cut at 24 tokens and
-- samples at 8, so rows differ in length and the two normalisations differ.
local run, db, batch = arg[1], arg[2], tonumber(arg[3] or 4)
local task = assert(gkd.task.summarize{max_examples = 40})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 2, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local cfg = {name = run, task = task, student = model(1), steps = 6, batch = batch, max_new_tokens = 8, max_target = 24,
  max_prompt = 64, db = db, eval = {examples = 4}, checkpoint = {dir = db .. ".checkpoints/" .. run},
  quiet = true, lr = 1e-3}
if run == "gkd_half" then cfg.method, cfg.lambda = "gkd", 0.5
elseif run == "token" then cfg.method, cfg.norm = "supervised_kd", "token"
elseif run == "reinforce" then
  cfg.method, cfg.reward, cfg.group_size, cfg.kl_coef = "reinforce", "rouge1", 4, 0.1
elseif run == "reinforce_ma" then
  cfg.method, cfg.reward, cfg.group_size, cfg.baseline = "reinforce", "length", 2, "moving_average"
  cfg.normalize_advantages, cfg.norm = true, "token"
elseif run == "long" then cfg.method, cfg.steps, cfg.checkpoint.every = "supervised_kd", 400, 20
  -- GKD_TEST_STEP_PAUSE=S: S seconds of sleep after each step (results unchanged), so that the run outlasts
  -- the delay between the test's SIGINT and the ranks seeing it: unpaced, 400 steps take about 2 s, and
  -- under load the run could end before the signal arrived (the test's flake, sessions 9 and 10)
  local pause = tonumber(os.getenv("GKD_TEST_STEP_PAUSE") or "")
  if pause then cfg.on_step = function() gkd.sys.sleep(pause) end end
elseif run == "fail0" or run == "fail1" then -- a callback that fails on one rank at step 3
  cfg.method, cfg.steps = "supervised_kd", 50
  cfg.on_step = function(m)
    if m.step == 3 and gkd.dist.rank() == tonumber(run:sub(5)) then error("failing on rank " .. gkd.dist.rank()) end
  end
else cfg.method = run end
if cfg.method ~= "sft" then cfg.teacher = model(7) end
local r = gkd.run(cfg)
io.write(string.format("rank %d of %d: %s %s at step %s\n", gkd.dist.rank(), gkd.dist.size(), run,
  r.skipped and "skipped" or "finished", tostring(r.step)))
