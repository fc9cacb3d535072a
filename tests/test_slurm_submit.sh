#!/usr/bin/env bash
# ctest-labels: cpu
# gkd sweep --slurm without a cluster: sbatch and squeue are stand-ins on PATH that record what they are
# given, and the array tasks and the halving controller are run by hand (as Slurm would run them).
# 1. --dry-run writes the job array (resources as #SBATCH lines; sandbox and limit flags and the script's
#    arguments on each task's command line) and submits nothing; the Slurm options need --slurm.
# 2. submitting again (or --resume) submits only the points not finished, not failed (unless
#    --retry-failed) and not queued or running in squeue; a failed point is stored as failed.
# 3. successive halving: the controller keeps the same settings as the local sweep (one rule), submits the
#    next rung, and the merged runs equal the local sweep's; a controller whose rung did not finish stops
#    with a message instead of going on.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir fake
cat >fake/sbatch <<EOF
#!/bin/bash
echo "\$*" >>"$tmp/sbatch.log"
n=\$(cat "$tmp/next_job" 2>/dev/null || echo 100)
echo \$((n + 1)) >"$tmp/next_job"
echo "\$n"
EOF
cat >fake/squeue <<EOF
#!/bin/bash
cat "$tmp/squeue.out" 2>/dev/null
EOF
chmod +x fake/sbatch fake/squeue
export PATH="$tmp/fake:$PATH"

cat >sweep.lua <<'LUA'
local steps = tonumber(arg[1]) or 4
local task = assert(gkd.task.summarize{max_examples = 24})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local teacher = model(7)
local spec = {
  name = arg[2] or "sb", grid = {lr = {1e-4, 1e-3, 1e-2}}, seeds = {1}, quiet = true,
  run = function(p)
    if os.getenv("FAIL_POINT") == tostring(p.lr) then error("this point fails on purpose") end
    return {
      task = task, teacher = teacher, student = model(p.seed), lr = p.lr, lambda = 0,
      steps = steps, batch = 2, max_new_tokens = 4, max_prompt = 64, checkpoint = {every = 2},
    }
  end,
}
if arg[3] == "halving" then spec.halving = {metric = "loss", eta = 3, min_steps = 2} end
return spec
LUA
task() { SLURM_ARRAY_TASK_ID=$2 bash "$1/rung-${3:-1}.sbatch" >/dev/null 2>&1; }
# runs_of DB: name, status, steps and the final training loss of every run, by name
runs_of() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, r in ipairs(s:query([[SELECT name, status, (SELECT max(step) FROM metrics WHERE run_id = runs.id) AS steps,
        (SELECT quote(value) FROM metrics WHERE run_id = runs.id AND name = ? ORDER BY step DESC LIMIT 1) AS loss
        FROM runs ORDER BY name]], "loss")) do print(r.name, r.status, r.steps, r.loss) end' "$1"
}

# 1. options and --dry-run
"$bin" sweep sweep.lua --partition gpu --db runs.db >o.txt 2>e.txt
check "--partition without --slurm is a usage error" [ $? -eq 2 ]
check "... that says --slurm" grep -q "go with --slurm" e.txt
"$bin" sweep sweep.lua --slurm --dry-run --partition gpu --time 0:30:00 --gpus-per-task 1 --cpus-per-task 2 --mem 4G \
  --account proj --max-parallel 2 --sandbox --memory-limit 512 --db runs.db -- 4 sb >dry.txt 2>dry_err.txt
check "--dry-run exits 0 ($(tail -n 2 dry_err.txt))" [ $? -eq 0 ]
check "--dry-run submits nothing" [ ! -e sbatch.log ]
check "--dry-run shows the sbatch command" grep -q "dry run, not submitted: sbatch --parsable --array=0-2%2 " dry.txt
for line in "--partition=gpu" "--time=0:30:00" "--gpus-per-task=1" "--cpus-per-task=2" "--mem=4G" "--account=proj" \
  "--requeue" "--signal=B:TERM@60" "--output=$tmp/sb.slurm/logs/%A_%a.out" "--chdir=$tmp"; do
  check "the array script says #SBATCH $line" grep -qx -- "#SBATCH $line" sb.slurm/rung-1.sbatch
done
check "each task gets the sandbox and limit flags and the script's arguments" \
  grep -q -- "--point \"\$i\" --db '$tmp/sb.slurm/points/'\"\$i\".db '--sandbox' '--memory-limit' '512' '--quiet' '--' '4' 'sb'" sb.slurm/rung-1.sbatch
check "points.tsv names the points by index" grep -qx "2	sb/lr=0.01,seed=1" sb.slurm/points.tsv

# 2. submit; tasks 0 and 1 run (1 fails), task 2 still queued: only what is left is submitted again
"$bin" sweep sweep.lua --slurm --db runs.db -- 4 sb >s1.txt 2>s1_err.txt
check "the job id is printed ($(cat s1.txt))" grep -q "submitted Slurm job 100: sweep 'sb', rung 1, 3 array tasks (points 0-2)" s1.txt
check "sbatch got the whole array" grep -q -- "--array=0-2 $tmp/sb.slurm/rung-1.sbatch" <(tr -d "'" <sbatch.log)
task sb.slurm 0
FAIL_POINT=0.001 task sb.slurm 1
check "the failed point is stored as failed in its own store" \
  grep -q "failed" <(runs_of sb.slurm/points/1.db)
echo "100 2" >squeue.out
"$bin" sweep sweep.lua --slurm --resume --db runs.db -- 4 sb >s2.txt 2>s2_err.txt
check "nothing to submit: 1 finished, 1 failed, 1 in the queue ($(cat s2_err.txt))" \
  grep -q "3 runs, 0 to submit, 1 finished, 1 queued or running in Slurm, 1 failed" s2_err.txt
check "... and nothing submitted" [ "$(wc -l <sbatch.log)" -eq 1 ]
check "the merged store has the failure and its message" grep -q "this point fails on purpose" <(
  "$bin" run -e 'local s = assert(gkd.store.open("runs.db", {readonly = true})); for _, r in ipairs(s:query("SELECT error FROM runs WHERE status = ?", "failed")) do print(r.error) end')
: >squeue.out
"$bin" sweep sweep.lua --slurm --resume --db runs.db -- 4 sb >s3.txt 2>s3_err.txt
check "the task that left the queue without a store is submitted again, alone" grep -q "(points 2)" s3.txt
# squeue failing: a point stored as running is not submitted again (its task may still write its store)
# set_status DB STATUS: of the store's only run
set_status() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1]))
    local id = s:query("SELECT id FROM runs")[1].id
    assert(arg[2] == "running" and s:run_resume(id) or s:run_finish(id, arg[2]))' "$1" "$2"
}
set_status sb.slurm/points/0.db running
printf '#!/bin/bash\necho "squeue: error: cannot reach the controller" >&2\nexit 1\n' >fake/squeue
"$bin" sweep sweep.lua --slurm --resume --db runs.db -- 4 sb >s3b.txt 2>s3b_err.txt
check "without squeue a point stored as running is not resubmitted ($(cat s3b_err.txt))" \
  grep -q "3 runs, 1 to submit, 0 finished, 1 queued or running in Slurm, 1 failed" s3b_err.txt
check "... and squeue's failure is reported" grep -q "squeue failed" s3b_err.txt
printf '#!/bin/bash\ncat "%s/squeue.out" 2>/dev/null\n' "$tmp" >fake/squeue
set_status sb.slurm/points/0.db finished
"$bin" sweep sweep.lua --slurm --resume --retry-failed --db runs.db -- 4 sb >s4.txt 2>s4_err.txt
check "--retry-failed submits the failed point too" grep -q "(points 1-2)" s4.txt
task sb.slurm 1
task sb.slurm 2
"$bin" sweep sweep.lua --slurm --db runs.db -- 4 sb >s5.txt 2>s5_err.txt
check "when all finished: the summary, nothing submitted" bash -c "grep -q '3 runs: 3 finished' s5.txt && ! grep -q submitted s5.txt"

# 3. successive halving: the same survivors and results as the local sweep
mkdir local && (cd local && "$bin" sweep ../sweep.lua --db local.db -- 6 hv halving >out.txt 2>err.txt)
check "the local halving sweep exits 0" [ $? -eq 0 ]
: >sbatch.log
"$bin" sweep sweep.lua --slurm --cpus-per-task 1 --db runs.db -- 6 hv halving >h1.txt 2>h1_err.txt
check "rung 1 and its controller are submitted ($(cat h1.txt))" [ "$(grep -c submitted h1.txt)" -eq 2 ]
check "the controller waits for the rung's array" grep -qE -- "--dependency=afterany:[0-9]+ .*controller-1.sbatch" sbatch.log
check "the controller keeps the sweep's options and its own store" \
  grep -q -- "'--slurm' '--advance' '--db' '$tmp/hv.controller.db' '--cpus-per-task' '1'" hv.slurm/controller-1.sbatch
task hv.slurm 0
task hv.slurm 1
bash hv.slurm/controller-1.sbatch >ctl_bad.txt 2>&1
check "a controller whose rung did not finish stops with a message" grep -q "1 point of rung 1 did not finish" ctl_bad.txt
task hv.slurm 2
: >sbatch.log
bash hv.slurm/controller-1.sbatch >ctl.txt 2>&1
check "the controller exits 0 ($(tail -n 3 ctl.txt))" [ $? -eq 0 ]
kept=$(grep -oE 'sweep .hv., rung 2, 1 array task \(points [0-9]+\)' ctl.txt | grep -oE '[0-9]+\)$' | tr -d ')')
local_kept=$(runs_of local/local.db | awk -F'\t' '$3 == 6 {print $1}')
check "the controller kept the setting the local sweep kept ($local_kept)" \
  [ -n "$kept" ] && grep -qx "$kept	$local_kept" hv.slurm/points.tsv
check "rung 2 is submitted with the rung's steps" grep -q "'--worker-steps' '6'" hv.slurm/rung-2.sbatch
task hv.slurm "$kept" 2
"$bin" sweep sweep.lua --slurm --db runs.db -- 6 hv halving >h2.txt 2>h2_err.txt
check "then the sweep is complete" grep -q "3 runs: 3 finished" h2.txt
runs_of local/local.db >local_runs.txt
runs_of runs.db | grep '^hv/' >slurm_runs.txt
check "the halving sweep's runs equal the local ones (steps, final loss)" diff local_runs.txt slurm_runs.txt

# --point out of range or negative is refused before anything runs (before: --point -1 read as "no --point"
# and ran the whole sweep locally)
"$bin" sweep sweep.lua --point -1 --db neg.db -- 4 sb >neg.txt 2>&1; rc=$?
check "--point -1 is refused (rc $rc)" [ "$rc" -eq 2 ] && grep -q "index >= 0" neg.txt
check "and ran nothing" [ ! -e neg.db ]
"$bin" sweep sweep.lua --point 3 --db far.db -- 4 sb >far.txt 2>&1; rc=$?
check "--point past the last point is refused naming the range (rc $rc)" [ "$rc" -ne 0 ] && grep -q "points 0 to 2" far.txt

[ "$fails" -eq 0 ] || exit 1
echo "ok   gkd sweep --slurm: dry run, resubmission of what is left, halving controller (stand-in sbatch)"
