#!/usr/bin/env bash
# ctest-labels: cpu slow
# gkd sweep --slurm on a real one-node Slurm (slurmctld + slurmd + a private munged on localhost, started
# here from a generated slurm.conf with private ports; docs/cluster.md, DESIGN.md section 7):
# 1. a 4-point sweep submitted as a job array, then `gkd merge`, gives runs.db the same runs as the same
#    sweep run locally: every metric, eval and sample equal (exactly: CPU training with one thread is
#    deterministic), and merging again changes nothing.
# 2. one array task killed with SIGKILL while training: `gkd sweep --resume --slurm` submits only that
#    point, which continues from its checkpoint; the other runs keep their rows (ids, times), and the
#    merged store has no missing and no duplicated rows (each run's row counts equal its siblings').
# 3. SIGTERM to a task (what Slurm sends before a time limit, and scancel) stops its run with a
#    checkpoint ('interrupted'); `scontrol requeue` runs the task again and the run continues from there.
# 4. data-parallel training launched by `srun --mpi=pmix -n 2` equals one process (docs/data-parallel.md).
# Skips (77) where Slurm or munge is missing, without root, or when the daemons do not come up.
. "$(dirname "$0")/lib.sh"
for t in slurmctld slurmd munged sbatch squeue scontrol scancel sinfo; do
  command -v "$t" >/dev/null || { echo "SKIPPED: no $t (install-deps.sh installs slurm-wlm and munge)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: a one-node Slurm here runs slurmd as root (SlurmUser=root)"; exit 77; }

stop_daemons() {
  if [ -n "${SLURM_CONF:-}" ] && [ -f "$tmp/slurmctld.pid" ]; then
    squeue -h -o %A 2>/dev/null | xargs -r scancel 2>/dev/null
  fi
  for d in slurmd slurmctld munged; do
    [ -f "$tmp/$d.pid" ] || continue
    pid=$(cat "$tmp/$d.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
}
trap 'stop_daemons; rm -rf "$tmp"' EXIT
skip() {
  echo "SKIPPED: $1"
  tail -n 5 "$tmp"/log/*.log "$tmp/munged.log" 2>/dev/null
  exit 77
}

# Two free TCP ports next to each other, drawn at random (other tests or clusters may hold some).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 20); do
  port=$((20000 + (RANDOM % 20000) * 2))
  port_free "$port" && port_free $((port + 1)) && break
done

mkdir -p state spool log
chmod 700 "$tmp"
if command -v mungekey >/dev/null; then mungekey -c -k "$tmp/munge.key" -b 1024 2>/dev/null; fi
[ -s munge.key ] || head -c 1024 /dev/urandom >munge.key
chmod 600 munge.key
munged --force --socket="$tmp/munge.sock" --key-file="$tmp/munge.key" --log-file="$tmp/munged.log" \
  --pid-file="$tmp/munged.pid" --seed-file="$tmp/munged.seed" || skip "munged did not start"
host=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)
cat >slurm.conf <<EOF
ClusterName=gkdtest$$
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=5
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$tmp/slurm.conf"
slurmctld -f "$SLURM_CONF" || skip "slurmctld did not start"
slurmd -f "$SLURM_CONF" || skip "slurmd did not start"
for _ in $(seq 1 100); do [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.2; done
[ "$(sinfo -h -o %T 2>/dev/null)" = idle ] || skip "the Slurm node did not become idle within 20 s ($(sinfo -h -o %T 2>&1))"

# One thread everywhere: gkd's CPU training is then bit-for-bit reproducible across processes.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cat >sweep.lua <<'LUA'
local steps, name, every = tonumber(arg[1]) or 6, arg[2] or "sl", tonumber(arg[3]) or 2
local task = assert(gkd.task.summarize{max_examples = 24})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 16, heads = 2, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local teacher = model(7)
return {
  name = name, grid = {beta = {0.1, 0.9}}, seeds = {1, 2}, quiet = true,
  run = function(p)
    return {
      task = task, teacher = teacher, student = model(p.seed), divergence = gkd.jsd(p.beta), lambda = 1,
      steps = steps, batch = 2, max_new_tokens = 4, max_prompt = 64,
      eval = {every = 3, examples = 2, metrics = {"rougeL"}}, checkpoint = {every = every},
    }
  end,
}
LUA

# wait_job ID: until no task of the job is queued or running (at most 120 s)
wait_job() {
  for _ in $(seq 1 600); do [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0; sleep 0.2; done
  echo "job $1 still in the queue after 120 s:" >&2; squeue >&2; return 1
}
running_with_checkpoint() { [[ $1 == running\ [1-9]* ]]; }
job_of() { grep -oE 'submitted Slurm job [0-9]+' "$1" | head -1 | grep -oE '[0-9]+$'; }

# runs_of DB: every row of every run, by run name, values to 17 digits (ids and times left out, and the
# wall-clock metrics time_* and tokens_per_s, which no two runs share)
runs_of() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, r in ipairs(s:query("SELECT id, name, status FROM runs ORDER BY name")) do
      print(r.name, r.status)
      for _, m in ipairs(s:query("SELECT name, step, value FROM metrics WHERE run_id = ? AND NOT name GLOB ? AND name <> ? ORDER BY name, step",
          r.id, "time_*", "tokens_per_s")) do
        print("m", m.name, m.step, string.format("%.17g", m.value))
      end
      for _, e in ipairs(s:query("SELECT split, metric, step, value FROM evals WHERE run_id = ? ORDER BY split, metric, step", r.id)) do
        print("e", e.split, e.metric, e.step, string.format("%.17g", e.value))
      end
      for _, x in ipairs(s:query("SELECT step, split, prompt, output, n_tokens, hex(student_logprobs) AS lp FROM samples WHERE run_id = ? ORDER BY id", r.id)) do
        print("s", x.step, x.split, x.prompt, x.output, x.n_tokens, x.lp)
      end
      for _, c in ipairs(s:query("SELECT step, path FROM checkpoints WHERE run_id = ? ORDER BY step", r.id)) do
        print("c", c.step, c.path)
      end
    end' "$1"
}
# point_state DB: "status checkpoints pid" of the run in a point store, "none" before it has one
point_state() {
  "$bin" run -e '
    local s = gkd.store.open(arg[1], {readonly = true})
    local r = s and s:query("SELECT status, pid, (SELECT count(*) FROM checkpoints c WHERE c.run_id = runs.id) AS n FROM runs")[1]
    print(r and string.format("%s %d %d", r.status, r.n, r.pid) or "none")' "$1" 2>/dev/null || echo none
}
# kept_of DB SWEEP: "id name started_at finished_at status" of the sweep's runs
kept_of() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, r in ipairs(s:query("SELECT id, name, started_at, finished_at, status FROM runs WHERE name LIKE ? ORDER BY name", arg[2] .. "/%")) do
      print(r.id, r.name, r.started_at, r.finished_at, r.status)
    end' "$1" "$2"
}
# counts_of DB: per run "metrics evals samples" row counts
counts_of() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, r in ipairs(s:query([[SELECT name, (SELECT count(*) FROM metrics WHERE run_id = runs.id) AS m,
        (SELECT count(*) FROM evals WHERE run_id = runs.id) AS e, (SELECT count(*) FROM samples WHERE run_id = runs.id) AS x,
        (SELECT count(DISTINCT step) FROM metrics WHERE run_id = runs.id) AS steps FROM runs ORDER BY name]])) do
      print(r.name, r.m, r.e, r.x, r.steps)
    end' "$1"
}

# 1. the same sweep locally (in its own folder, so its checkpoints are its own) and on Slurm
mkdir local && (cd local && "$bin" sweep ../sweep.lua --db local.db --workers 2 -- 6 sl >out.txt 2>err.txt)
check "the local sweep exits 0" [ $? -eq 0 ]
"$bin" sweep sweep.lua --slurm --max-parallel 4 --cpus-per-task 1 --time 10 --db runs.db -- 6 sl >sub1.txt 2>err1.txt
check "gkd sweep --slurm exits 0 ($(tail -n 3 err1.txt))" [ $? -eq 0 ]
job=$(job_of sub1.txt)
check "the job id is printed ($(cat sub1.txt))" [ -n "$job" ]
check "the array script runs one point per task" grep -q -- '--point "$i" --db' sl.slurm/rung-1.sbatch
check "the script's arguments reach the tasks" grep -q "'--' '6' 'sl'" sl.slurm/rung-1.sbatch
check "a stop before the time limit is a SIGTERM to gkd" grep -q -- '--signal=B:TERM@' sl.slurm/rung-1.sbatch
wait_job "$job"
for i in 0 1 2 3; do check "point $i wrote its own store" [ -s "sl.slurm/points/$i.db" ]; done
"$bin" merge sl.slurm --db runs.db >merge1.txt 2>&1
check "gkd merge exits 0 ($(tail -n 2 merge1.txt))" [ $? -eq 0 ]
runs_of local/local.db >local_runs.txt
runs_of runs.db >slurm_runs.txt
check "4 runs, all finished" [ "$(grep -c '	finished$' slurm_runs.txt)" -eq 4 ]
check "metrics were compared ($(grep -c '^m' local_runs.txt))" [ "$(grep -c '^m' local_runs.txt)" -ge 40 ]
check "runs.db holds exactly the local sweep's runs: metrics, evals, samples, checkpoints" \
  diff local_runs.txt slurm_runs.txt
store_dump runs.db >whole1.txt
"$bin" merge sl.slurm --db runs.db >/dev/null 2>&1
store_dump runs.db >whole2.txt
check "merging again changes no row of runs.db" cmp -s whole1.txt whole2.txt
"$bin" sweep sweep.lua --slurm --db runs.db -- 6 sl >sub1b.txt 2>err1b.txt
check "submitting the finished sweep again submits nothing" bash -c "! grep -q 'submitted' sub1b.txt && grep -q '4 runs, 0 to submit, 4 finished' err1b.txt"

# 2. point 1 killed (SIGKILL) while it trains, after a checkpoint; --resume --slurm runs only it again
"$bin" sweep sweep.lua --slurm --max-parallel 2 --db kill.db -- 400 kl 10 >sub2.txt 2>err2.txt
job=$(job_of sub2.txt)
check "the second sweep is submitted" [ -n "$job" ]
state=none
for _ in $(seq 1 600); do
  state=$(point_state kl.slurm/points/1.db)
  case "$state" in running\ [1-9]*) break ;; esac
  sleep 0.1
done
echo "point 1 before the kill: $state"
check "point 1 was killed while running with a checkpoint ($state)" running_with_checkpoint "$state"
kill -9 "${state##* }" 2>/dev/null
wait_job "$job"
"$bin" merge kl.slurm --db kill.db >/dev/null 2>&1
check "the killed point is left 'running' in its store" [ "$(point_state kl.slurm/points/1.db | cut -d' ' -f1)" = running ]
kept_of kill.db kl | grep -v 'beta=0.1,seed=2' >kept_before.txt
check "the other three finished" [ "$(grep -c 'finished$' kept_before.txt)" -eq 3 ]
"$bin" sweep sweep.lua --slurm --resume --db kill.db -- 400 kl 10 >sub3.txt 2>err3.txt
check "--resume --slurm exits 0 ($(tail -n 2 err3.txt))" [ $? -eq 0 ]
check "--resume --slurm submits only the killed point" grep -q "1 array task (points 1)" sub3.txt
check "--resume --slurm counts 3 finished" grep -q "4 runs, 1 to submit, 3 finished" err3.txt
job3=$(job_of sub3.txt)
wait_job "$job3"
check "the resubmitted task continued from its checkpoint" grep -q "continuing from step" "kl.slurm/logs/${job3}_1.out"
"$bin" merge kl.slurm --db kill.db >/dev/null 2>&1
kept_of kill.db kl | grep -v 'beta=0.1,seed=2' >kept_after.txt
check "the other runs were not run again (same ids and times)" cmp -s kept_before.txt kept_after.txt
check "all 4 finished, one row each" [ "$(kept_of kill.db kl | grep -c 'finished$')" -eq 4 ]
counts_of kill.db >counts.txt
check "every run has 400 steps and the same row counts (none missing or duplicated): $(tr '\n' ';' <counts.txt)" \
  [ "$(cut -f2- counts.txt | sort -u | wc -l)" -eq 1 -a "$(cut -f5 counts.txt | sort -u)" = 400 ]

# 3. SIGTERM to point 0's task, then scontrol requeue: the run stops with a checkpoint and continues
"$bin" sweep sweep.lua --slurm --max-parallel 2 --db term.db -- 400 tm 10 >sub4.txt 2>err4.txt
job=$(job_of sub4.txt)
for _ in $(seq 1 600); do
  state=$(point_state tm.slurm/points/0.db)
  case "$state" in running\ [1-9]*) break ;; esac
  sleep 0.1
done
scancel --batch --signal=TERM "${job}_0"
for _ in $(seq 1 300); do
  state=$(point_state tm.slurm/points/0.db)
  case "$state" in interrupted*) break ;; esac
  sleep 0.1
done
check "SIGTERM stopped point 0 cleanly ($state)" [ "${state%% *}" = interrupted ]
for _ in $(seq 1 100); do [ -z "$(squeue -h -j "${job}_0" 2>/dev/null)" ] && break; sleep 0.2; done
scontrol requeue "${job}_0" 2>requeue.txt
check "scontrol requeue accepts the task ($(cat requeue.txt))" [ $? -eq 0 ]
# A requeued job waits (reason BeginTime) before it may start again; now, here.
scontrol update JobId="${job}_0" StartTime=now 2>/dev/null
wait_job "$job"
check "the requeued task continued from the checkpoint" grep -q "continuing from step" "tm.slurm/logs/${job}_0.out"
check "point 0 finished" [ "$(point_state tm.slurm/points/0.db | cut -d' ' -f1)" = finished ]
"$bin" merge tm.slurm --db term.db >/dev/null 2>&1
counts_of term.db >counts_tm.txt
check "after the requeue every run has the same rows: $(tr '\n' ';' <counts_tm.txt)" \
  [ "$(cut -f2- counts_tm.txt | sort -u | wc -l)" -eq 1 -a "$(wc -l <counts_tm.txt)" -eq 4 ]

# 4. Data-parallel training under Slurm's own launcher (docs/data-parallel.md): `srun --mpi=pmix -n 2` trains
#    what one process trains with the same global batch. Debian's OpenMPI talks PMIx; srun's pmi2 cannot start it.
if [ "$("$bin" run -e 'print(gkd.dist.compiled())' 2>/dev/null)" = none ]; then
  echo "note: gkd built without MPI: the srun data-parallel check is left out"
else
  dp="$src/tests/data_parallel"
  "$bin" run "$dp/train.lua" gkd dp_one.db >dp_one.txt 2>&1
  check "one process trained the data-parallel run" [ $? -eq 0 ]
  timeout 300 srun --mpi=pmix -n 2 "$bin" run "$dp/train.lua" gkd dp_two.db >dp_two.txt 2>&1
  check "srun --mpi=pmix -n 2 trained it ($(tail -n 3 dp_two.txt | tr '\n' ' '))" [ $? -eq 0 ]
  check "as two ranks" [ "$(grep -c 'of 2: gkd finished' dp_two.txt)" -eq 2 ]
  "$bin" run "$dp/compare.lua" gkd dp_one.db dp_two.db >dp_compare.txt 2>&1
  check "srun's 2 ranks = 1 process ($(tail -n 1 dp_compare.txt))" [ $? -eq 0 ]
fi

[ "$fails" -eq 0 ] || exit 1
echo "ok   gkd sweep --slurm on a one-node Slurm: same results as locally, kill + --resume, SIGTERM + requeue;" \
  "srun -n 2 data-parallel training"
