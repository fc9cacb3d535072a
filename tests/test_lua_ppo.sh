#!/usr/bin/env bash
# ctest-labels: cpu
# PPO and GRPO from Lua (issue 16, docs/lua-api.md "PPO and GRPO"):
# - method = "ppo" / "grpo" / "reinforce" run with a reward, store their metrics (clip_fraction, approx_kl,
#   ratio, entropy, updates; value_loss and explained_variance with PPO's value head), and gkd._resolve
#   shows the settings the trainer uses (method defaults: PPO k1 KL in the reward, GRPO k3 in the loss);
# - clip_eps, kl_coef, epochs, target_kl, vf_coef and teacher_reward take schedules: a schedule of epochs
#   1 -> 3 gives 1, then 2, then 3 updates per step (the logged `updates`), and a fractional epochs
#   schedule value stops the run naming it;
# - a sweep over clip_eps x group_size runs one run per point with the values recorded;
# - misplaced settings are refused by name (a GRPO key on PPO, a value-head key without it, REINFORCE's
#   baseline with GRPO, a PPO method without a reward); a PPO run killed after a checkpoint and resumed
#   with `gkd resume` ends bit-identical, value head included.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1

cat >common.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
return function(extra)
  local cfg = {task = task, teacher = model(7), student = model(1), steps = 3, batch = 4, group_size = 2,
    alpha = 0.5, reward = "length", max_new_tokens = 8, max_prompt = 64, temperature = 0.7,
    eval = {examples = 2}, quiet = true}
  for k, v in pairs(extra) do cfg[k] = v end
  return cfg
end
LUA

cat >methods.lua <<'LUA'
local make = dofile("common.lua")
local r = gkd._resolve(make{method = "ppo"})
print("ppo resolve", r.kl_estimator, r.kl_in, r.epochs, r.clip_eps, tostring(r.value_head), r.gae_lambda)
r = gkd._resolve(make{method = "grpo", loss_type = "dr_grpo"})
print("grpo resolve", r.kl_estimator, r.kl_in, r.loss_type, tostring(r.scale_rewards))
gkd.run(make{name = "ppo", method = "ppo", epochs = 2, minibatches = 2, kl_coef = 0.05, teacher_reward = 0.1})
gkd.run(make{name = "ppo-cf", method = "ppo", value_head = false, baseline = "group"})
gkd.run(make{name = "grpo", method = "grpo", kl_coef = gkd.schedule.linear(0, 0.1, 3), scale_rewards = false})
gkd.run(make{name = "reinforce", method = "reinforce"})
gkd.run(make{name = "sched", method = "ppo", epochs = gkd.schedule.piecewise{{0, 1}, {1, 2}, {2, 3}},
  clip_eps = gkd.schedule.linear(0.3, 0.1, 3), target_kl = 0, vf_coef = gkd.schedule.constant(0.2)})
local s = assert(gkd.store.open("runs.db"))
local function metric(run, name)
  local q = s:query("SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id WHERE r.name = ? AND m.name = ? "
    .. "ORDER BY m.step", run, name)
  local out = {}
  for _, row in ipairs(q) do out[#out + 1] = string.format("%g", row.value) end
  return table.concat(out, ",")
end
for _, run in ipairs({"ppo", "ppo-cf", "grpo", "reinforce"}) do
  for _, m in ipairs({"clip_fraction", "approx_kl", "ratio", "entropy", "updates", "value_loss", "explained_variance"}) do
    print(run, m, metric(run, m) ~= "" and "present" or "absent")
  end
end
print("ppo updates", metric("ppo", "updates"))
print("sched updates", metric("sched", "updates"))
LUA
"$bin" run methods.lua >methods.txt 2>methods.err; rc=$?
check "the method runs exit 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat methods.err
check "ppo defaults: k1 in the reward, 1 epoch, clip 0.2, a value head, gae_lambda 0.95" \
  grep -q "^ppo resolve	k1	reward	1.0	0.2	true	0.95$" methods.txt
check "grpo defaults: k3 in the loss" grep -q "^grpo resolve	k3	loss	dr_grpo	true$" methods.txt
for m in clip_fraction approx_kl ratio entropy updates; do
  for run in ppo ppo-cf grpo; do check "$run logs $m" grep -q "^$run	$m	present$" methods.txt; done
  check "reinforce does not log $m" grep -q "^reinforce	$m	absent$" methods.txt
done
for m in value_loss explained_variance; do
  check "ppo with its value head logs $m" grep -q "^ppo	$m	present$" methods.txt
  check "critic-free ppo does not log $m" grep -q "^ppo-cf	$m	absent$" methods.txt
  check "grpo does not log $m" grep -q "^grpo	$m	absent$" methods.txt
done
check "2 epochs x 2 mini-batches = 4 updates a step" grep -q "^ppo updates	4,4,4$" methods.txt
check "an epochs schedule 1, 2, 3 gives 1, 2, 3 updates" grep -q "^sched updates	1,2,3$" methods.txt

# A fractional epochs value from a schedule stops the run, naming it.
cat >frac.lua <<'LUA'
local make = dofile("common.lua")
gkd.run(make{name = "frac", method = "ppo", epochs = gkd.schedule.linear(1, 2, 2)})
LUA
"$bin" run frac.lua >frac.txt 2>&1; rc=$?
check "a fractional epochs schedule fails the run (rc $rc)" test "$rc" -ne 0
check "... naming epochs" grep -q "epochs gave 1.5" frac.txt

# Misplaced settings are refused by name before anything runs.
refused() { # WHAT SETTINGS NEEDLE
  printf 'local make = dofile("common.lua")\ngkd.run(make{name = "x", %s})\n' "$2" >bad.lua
  "$bin" run bad.lua >bad.txt 2>&1; local rc=$?
  check "$1: refused (rc $rc)" test "$rc" -ne 0
  check "$1: the message names it" grep -q "$3" bad.txt
}
refused "loss_type with ppo" 'method = "ppo", loss_type = "bnpo"' "'loss_type' applies to method 'grpo' only"
check "... the message points at the script's line" grep -q "bad.lua:2: gkd.run: 'loss_type'" bad.txt
refused "gamma without the value head" 'method = "ppo", value_head = false, gamma = 0.9' "'gamma' applies to method 'ppo' with its value head"
refused "whiten_rewards without the value head" 'method = "ppo", value_head = false, whiten_rewards = true' "'whiten_rewards' applies to method 'ppo' with its value head"
refused "baseline with grpo" 'method = "grpo", baseline = "none"' "'baseline' has no effect with method 'grpo'"
refused "clip_eps with reinforce" 'method = "reinforce", clip_eps = 0.1' "'clip_eps' applies to method 'ppo' or 'grpo' only"
cat >noreward.lua <<'LUA'
local cfg = dofile("common.lua"){name = "x", method = "ppo"}
cfg.reward, cfg.alpha, cfg.group_size = nil, nil, nil
gkd.run(cfg)
LUA
"$bin" run noreward.lua >bad.txt 2>&1; rc=$?
check "ppo without a reward: refused (rc $rc)" test "$rc" -ne 0
check "ppo without a reward: the message names it" grep -q "method 'ppo' needs a 'reward'" bad.txt
refused "a negative clip" 'method = "ppo", clip_eps = -1' "clip_eps"
refused "dr_grpo_length without dr_grpo" 'method = "grpo", dr_grpo_length = 8' "'dr_grpo_length' applies to loss_type = 'dr_grpo' only"

# A sweep over clip_eps x group_size.
cat >sweep.lua <<'LUA'
local make = dofile("common.lua")
return {name = "ppo-sweep", grid = {clip_eps = {0.1, 0.3}, group_size = {2, 4}}, seeds = {1}, quiet = true,
  run = function(p) return make{method = "ppo", clip_eps = p.clip_eps, group_size = p.group_size, seed = p.seed,
    steps = 2, value_head = false} end}
LUA
"$bin" sweep sweep.lua --db sweep.db >sweep.txt 2>&1; rc=$?
check "the sweep exits 0 (got $rc)" test "$rc" -eq 0
"$bin" run -e '
  local s = assert(gkd.store.open("sweep.db", {readonly = true}))
  local q = s:query("SELECT config FROM runs WHERE status = ? ORDER BY id", "finished")
  print(#q)
  for _, r in ipairs(q) do
    print(string.format("%g", tonumber(r.config:match([["clip_eps":%s*([%d.]+)]]))), r.config:match([["group_size":%s*(%d+)]]))
  end
' >sweep_runs.txt 2>&1
check "4 finished sweep runs" test "$(head -1 sweep_runs.txt)" = 4
check "each point's clip_eps and group_size recorded" test "$(tail -n +2 sweep_runs.txt | sort | tr '\n\t' ' :')" = "0.1:2 0.1:4 0.3:2 0.3:4 "

# Killed after a checkpoint, resumed: bit-identical (the value head travels in the checkpoint).
cat >resume.lua <<'LUA'
local make = dofile("common.lua")
gkd.run(make{name = "ppo-r", method = "ppo", steps = 200, epochs = 2, minibatches = 2, kl_coef = 0.05,
  checkpoint = {every = 3}})
LUA
mkdir straight killed
(cd straight && cp ../common.lua . && "$bin" run ../resume.lua 2>err.txt) || { echo "FAIL: the uninterrupted run"; cat straight/err.txt; exit 1; }
cd killed
cp ../common.lua .
"$bin" run ../resume.lua 2>err.txt &
pid=$!
for _ in $(seq 1 600); do
  [ -n "$(ls checkpoints/ppo-r 2>/dev/null | grep -v tmp)" ] && break
  sleep 0.02
done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
last=$("$bin" run -e 'local s = assert(gkd.store.open("runs.db")); print(s:run_find("ppo-r").last_step)')
check "the run was killed before its end (last step $last)" test "$last" != 200
"$bin" resume ppo-r 2>resume.txt; rc=$?
check "gkd resume exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat resume.txt
cd ..
for f in model state value_head; do
  check "$f.safetensors bit-identical after resume" \
    cmp straight/checkpoints/ppo-r/step-00000200/$f.safetensors killed/checkpoints/ppo-r/step-00000200/$f.safetensors
done
[ "$fails" -eq 0 ]
