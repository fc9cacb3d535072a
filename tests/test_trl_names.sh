#!/usr/bin/env bash
# ctest-labels: cpu
# Did-you-mean for TRL names: config keys people bring from Hugging Face TRL get gkd's name for them, not the
# nearest spelling (before: seq_kd -> 'seed', max_steps -> 'on_step', num_generations and learning_rate
# -> nothing). In gkd.run, in a sweep's grid, and in gkd.divergence's options (where TRL's loss
# temperature is teacher_temperature, with the difference explained); a hint never names a key the table
# does not take, and ordinary typos keep the edit-distance guess.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
cat >names.lua <<'LUA'
local t = gkd.task.arithmetic{n = 20}
local m = gkd.model.new{layers = 1, dim = 16, tokenizer = gkd.tokenizer.train{task = t, vocab = 280}, max_seq_len = 64}
local function run_error(key)
  local cfg = {name = "x", db = ":memory:", task = t, student = m, teacher = m, steps = 1, quiet = true}
  cfg[key] = 1
  local ok, err = pcall(gkd.run, cfg)
  return ok and "no error" or tostring(err)
end
for _, k in ipairs(arg) do print(k .. " => " .. run_error(k)) end
local _, err = pcall(gkd.jsd, 0.5, {temperature = 2})
print("divergence temperature => " .. tostring(err))
_, err = pcall(gkd.sweep, {name = "s", db = ":memory:", grid = {lmbda = {0, 1}}, quiet = true,
  run = function(p) return gkd.run{name = "r", task = t, student = m, teacher = m, steps = 1, lmbda = p.lmbda} end})
print("sweep grid => " .. tostring(err))
LUA
"$bin" run names.lua lmbda seq_kd max_steps learning_rate num_generations per_device_train_batch_size \
  gradient_accumulation_steps num_train_epochs max_grad_norm warmup_ratio lamda num_ppo_epochs cliprange \
  num_mini_batches lam >out.txt 2>&1
cat out.txt
has() { grep -qF -- "$1" out.txt; }
check "lmbda -> lambda" has "unknown key 'lmbda' (did you mean 'lambda'?"
check "seq_kd -> method = \"seqkd\" or fixed = \"teacher\"" has "unknown key 'seq_kd' (TRL's seq_kd = True is gkd's method = \"seqkd\" (cross-entropy on the teacher's outputs); to keep the divergence on them, as TRL does, give fixed = \"teacher\" instead)"
check "max_steps -> steps" has "unknown key 'max_steps' (did you mean 'steps'?"
check "learning_rate -> lr" has "unknown key 'learning_rate' (did you mean 'lr'?"
check "num_generations -> group_size (samples per prompt)" has "unknown key 'num_generations' (did you mean 'group_size'? TRL's num_generations (samples per prompt)"
check "per_device_train_batch_size -> batch" has "unknown key 'per_device_train_batch_size' (did you mean 'batch'?"
check "gradient_accumulation_steps -> grad_accum" has "unknown key 'gradient_accumulation_steps' (did you mean 'grad_accum'?"
check "num_train_epochs -> steps" has "unknown key 'num_train_epochs' (gkd counts optimizer steps"
check "max_grad_norm -> clip" has "unknown key 'max_grad_norm' (did you mean 'clip'?"
check "warmup_ratio -> an lr schedule" has "unknown key 'warmup_ratio' (give 'lr' a schedule"
check "a typo keeps its guess" has "unknown key 'lamda' (did you mean 'lambda'?)"
check "num_ppo_epochs -> epochs" has "unknown key 'num_ppo_epochs' (did you mean 'epochs'?"
check "cliprange -> clip_eps" has "unknown key 'cliprange' (did you mean 'clip_eps'?"
check "num_mini_batches -> minibatches" has "unknown key 'num_mini_batches' (did you mean 'minibatches'?"
check "lam -> gae_lambda" has "unknown key 'lam' (did you mean 'gae_lambda'?"
check "no suggestion of 'seed' or 'on_step'" bash -c "! grep -qE \"did you mean '(seed|on_step)'\" out.txt"
check "temperature in a divergence -> teacher_temperature, the difference explained" \
  has "unknown key 'temperature' (the divergence's temperature is teacher_temperature, which divides the teacher's logits only; TRL's generalized_jsd_loss(temperature = tau) divides both sides' logits; the student's sampling temperature is gkd.run's temperature"
n=$(grep -c "unknown key 'lmbda' (did you mean 'lambda'?" out.txt)
check "a sweep's grid gets the hint too (lines: $n)" [ "$n" -ge 2 ]
# gkd.run takes temperature (the student's sampling temperature, as TRL's GKDConfig.temperature): no hint
"$bin" run names.lua temperature >temp.txt 2>&1
check "gkd.run's own temperature is no unknown key" bash -c "grep -q '^temperature => ' temp.txt && ! grep -q \"^temperature => .*unknown key\" temp.txt"
[ "$fails" -eq 0 ] || exit 1
echo "ok   TRL names get gkd's names"
