#!/usr/bin/env bash
# ctest-labels: cpu
# Data-parallel training (docs/data-parallel.md): `mpirun -np 2 gkd run` with global batch B trains what one
# process does with batch B: the same loss curve (relative difference <= 1e-5 at every step) and the same
# final weights (allclose, rtol = atol = 1e-5; tests/data_parallel/compare.lua says why not a relative test
# alone), for SFT, supervised KD, token normalisation, on-policy GKD (lambda 1, and lambda 0.5 with the coin
# falling both ways), ImitKD's per-row coins (the ranks then hold different numbers of samples) and GKD + RL
# with REINFORCE (rewards gathered over ranks for the baselines; the KL to the initial student). Rank 0
# alone writes the store and checkpoints; a finished run is skipped on every rank; an interrupted one continues
# from rank 0's checkpoint and ends as if never stopped; a failure on any rank ends the job; mpirun -np 1 is a
# plain run; a batch that the ranks do not divide
# is refused naming `batch`. Skipped (77) without mpirun; a gkd built without MPI must refuse mpirun -np 2.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
# In the sanitizer build: OpenMPI's own allocations outlive MPI_Finalize; tests/lsan-openmpi.supp says which
# are not reported. They are matched by the OpenMPI libraries on their allocation stacks, which the fast
# unwinder cuts at the first frame (OpenMPI is built without frame pointers), hence the slow unwinder, and
# the components stay loaded so that their frames keep their names. gkd's own leaks are still reported.
export OMPI_MCA_mca_base_component_disable_dlclose=1
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$src/tests/lsan-openmpi.supp:print_suppressions=0"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
command -v mpirun >/dev/null || { echo "SKIPPED: no mpirun (install openmpi-bin)"; exit 77; }
here="$src/tests/data_parallel"
mpi=(mpirun --allow-run-as-root --oversubscribe)

"$bin" run -e 'print(gkd.dist.compiled())' >compiled.txt 2>&1
if [ "$(cat compiled.txt)" = "none" ]; then
  timeout 120 "${mpi[@]}" -np 2 "$bin" run "$here/train.lua" sft two.db >refuse.txt 2>&1; rc=$?
  check "a gkd without MPI refuses mpirun -np 2 (rc $rc)" test "$rc" -ne 0
  check "and says why" grep -q "built without MPI" refuse.txt
  check "and wrote no run" test ! -e two.db.checkpoints
  echo "SKIPPED: gkd built without MPI (its refusal checked: $fails failed)"
  [ "$fails" -eq 0 ] && exit 77 || exit 1
fi

runs=(sft supervised_kd token gkd gkd_half imitkd reinforce reinforce_ma)
for run in "${runs[@]}"; do
  "$bin" run "$here/train.lua" "$run" one.db >>one.txt 2>&1 || { echo "FAILED: one process, $run" >&2; fails=$((fails + 1)); }
  timeout 300 "${mpi[@]}" -np 2 "$bin" run "$here/train.lua" "$run" two.db >>two.txt 2>&1 \
    || { echo "FAILED: mpirun -np 2, $run" >&2; cat two.txt >&2; fails=$((fails + 1)); }
  "$bin" run "$here/compare.lua" "$run" one.db two.db >>compare.txt 2>&1; rc=$?
  check "$run: 2 ranks = 1 process ($(tail -1 compare.txt))" test "$rc" -eq 0
done
cat compare.txt

check "both ranks ran every run" test "$(grep -c 'of 2: .* finished' two.txt)" -eq $((2 * ${#runs[@]}))
"$bin" run -e '
  local s = assert(gkd.store.open("two.db", {readonly = true}))
  local runs = s:query("SELECT id, config FROM runs")
  local ok = #runs == 8
  for _, r in ipairs(runs) do
    local c = gkd.json.decode(r.config)
    ok = ok and c.data_parallel and c.data_parallel.ranks == 2
    ok = ok and #s:query("SELECT step FROM metrics WHERE run_id = ? AND name = ?", r.id, "loss") == 6
    ok = ok and #s:query("SELECT DISTINCT step FROM evals WHERE run_id = ?", r.id) == 1
  end
  os.exit(ok and 0 or 1)'
check "rank 0 alone wrote the store: one row per run (ranks = 2 in its config), one loss per step, one evaluation" \
  test $? -eq 0
check "one checkpoint folder per run" test "$(ls -d two.db.checkpoints/*/step-* | wc -l)" -eq ${#runs[@]}
"$bin" run -e '
  local s = assert(gkd.store.open("one.db", {readonly = true}))
  local id = s:run_find("gkd_half").id
  local seen = {}
  for _, r in ipairs(s:query("SELECT value FROM metrics WHERE run_id = ? AND name = ?", id, "on_policy_fraction")) do
    seen[r.value] = true
  end
  os.exit((seen[0] and seen[1]) and 0 or 1)'
check "lambda 0.5: the coin fell both ways within the run" test $? -eq 0

timeout 120 "${mpi[@]}" -np 2 "$bin" run --resume "$here/train.lua" sft two.db >again.txt 2>&1; rc=$?
check "a finished run given again with --resume exits 0 (rc $rc)" test "$rc" -eq 0
check "and is skipped on both ranks" test "$(grep -c 'sft skipped' again.txt)" -eq 2

# Interrupted (SIGTERM to the ranks, as scancel and mpirun's own abort send it; the ranks agree on the step to
# stop at), then continued with --resume: rank 0 names the checkpoint, every rank loads it, and the run ends
# as an uninterrupted 2-rank run does (bit for bit: the same sums in the same order). Not SIGINT to mpirun:
# OpenMPI 4.1's mpirun turns it into SIGTERM and SIGKILL one second later (odls_base_sigkill_timeout), and here
# it sometimes killed the ranks before they could checkpoint and sometimes never signalled them
# (docs/data-parallel.md).
timeout 300 "${mpi[@]}" -np 2 "$bin" run "$here/train.lua" long straight.db >/dev/null 2>&1
# Paced (25 ms a step, 10 s in all) so that it cannot end before the signal reaches the ranks; the signal
# goes once the first checkpoint exists (up to 120 s under load).
GKD_TEST_STEP_PAUSE=0.025 timeout 300 "${mpi[@]}" -x GKD_TEST_STEP_PAUSE -np 2 "$bin" run "$here/train.lua" long \
  stop.db >stop1.txt 2>&1 &
pid=$!
for _ in $(seq 1 2400); do
  [ -n "$(ls stop.db.checkpoints/long 2>/dev/null | grep -v tmp)" ] && break
  sleep 0.05
done
check "a first checkpoint within 120 s" test -n "$(ls stop.db.checkpoints/long 2>/dev/null | grep -v tmp)"
ranks="$(pgrep -P "$(pgrep -P "$pid" mpirun)" gkd | tr '\n' ' ')"
check "found the two ranks ($ranks)" test "$(echo $ranks | wc -w)" -eq 2
kill -TERM $ranks
wait "$pid"; rc=$?
check "the interrupted 2-rank run exits non-zero (rc $rc)" test "$rc" -ne 0
"$bin" run -e '
  local s = assert(gkd.store.open("stop.db", {readonly = true}))
  local r = s:run_find("long")
  local step = s:checkpoint_latest(r.id)
  io.write("status ", tostring(r.status), ", checkpoint ", tostring(step), ", last step ", tostring(r.last_step))
  os.exit((r.status == "interrupted" and step == r.last_step and r.last_step < 400) and 0 or 1)' >stop.state 2>&1
rc=$?
# (on failure, the state and the run's output say which part differed)
[ "$rc" -eq 0 ] || { echo "stop.state: $(cat stop.state)"; tail -5 stop1.txt; } >&2
check "rank 0 marked it interrupted with a checkpoint at its last step ($(cat stop.state))" test "$rc" -eq 0
timeout 300 "${mpi[@]}" -np 2 "$bin" run --resume "$here/train.lua" long stop.db >stop2.txt 2>&1; rc=$?
check "continued with --resume (rc $rc)" test "$rc" -eq 0
check "from the checkpoint" grep -q "long: continuing from step" stop2.txt
"$bin" run "$here/compare.lua" long straight.db stop.db >stop.cmp 2>&1; rc=$?
grep -q "loss_rel 0 weights_allclose_ratio 0 " stop.cmp || rc=1
check "and ends exactly like the uninterrupted run ($(cat stop.cmp))" test "$rc" -eq 0

# A rank that fails ends the whole job (MPI_Abort), instead of leaving the others waiting in an all-reduce
# and itself in MPI_Finalize: timeout's 124 would mean a hang.
for r in 0 1; do
  timeout 120 "${mpi[@]}" -np 2 "$bin" run "$here/train.lua" fail$r fail.db >fail$r.txt 2>&1; rc=$?
  check "a failure on rank $r ends the job with an error (rc $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
  check "saying where it failed" grep -q "gkd (rank $r of 2): .*failing on rank $r" fail$r.txt
done
"$bin" run -e 'os.exit(gkd.store.open("fail.db"):run_find("fail0").status == "failed" and 0 or 1)'
check "rank 0's failure is recorded in the store" test $? -eq 0

timeout 120 "${mpi[@]}" -np 1 "$bin" run "$here/train.lua" gkd_half np1.db >np1.txt 2>&1
check "mpirun -np 1 is a plain run" grep -q "rank 0 of 1" np1.txt
"$bin" run "$here/compare.lua" gkd_half one.db np1.db >/dev/null 2>&1
check "and trains what one process does" test $? -eq 0

timeout 120 "${mpi[@]}" -np 2 "$bin" run "$here/train.lua" sft uneven.db 5 >uneven.txt 2>&1; rc=$?
check "batch 5 on 2 ranks is refused (rc $rc)" test "$rc" -ne 0
check "naming batch and the ranks" grep -q "batch (5) must be a multiple of the number of ranks (2)" uneven.txt

"$bin" run -e 'local r, n, b = gkd.dist.init(); io.write(r, " ", n, " ", b)' >plain.txt 2>plain.err
check "a plain run is rank 0 of 1 without MPI ($(cat plain.txt))" test "$(cat plain.txt)" = "0 1 none"
check "and prints nothing from MPI" test ! -s plain.err

# A sweep is refused under mpirun: every rank would run all of it (before: it ran, twice over, into one store)
cat >sweep.lua <<'LUA'
return {name = "dp", grid = {lr = {1e-3}}, base = {method = "sft"}}
LUA
timeout 120 "${mpi[@]}" -np 2 "$bin" sweep sweep.lua --db sweep.db >sweep.txt 2>&1; rc=$?
check "gkd sweep under mpirun -np 2 is refused (rc $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "saying why" grep -q "started as one of several ranks" sweep.txt
check "before it wrote a store" test ! -e sweep.db

echo "data_parallel: $fails failed"
[ "$fails" -eq 0 ]
