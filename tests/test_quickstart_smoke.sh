#!/usr/bin/env bash
# ctest-labels: cpu
# `gkd quickstart --smoke` (experiments/quickstart.lua with tiny models and steps) in a temporary folder:
# it exits 0, stores the teacher, the warm start and every method x seed as finished runs, and prints the
# comparison table (teacher, warm start, both methods, the difference line). Run again, it trains nothing
# and prints the same table; with another --warm-gate it runs the methods again (a sweep of its own). A
# teacher under --teacher-gate is retrained from the next seed, and the job stops when none passes. A bad
# argument is refused with its name and a non-zero exit.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

"$bin" quickstart --db qs.db --out qs --smoke --seeds 1,2 >out1.txt 2>err1.txt
check "quickstart --smoke exits 0 (stderr: $(tail -3 err1.txt))" test $? -eq 0
for line in "^teacher " "^SFT warm start" "^supervised KD (forward KL, lambda 0) " "^on-policy GKD (reverse KL, lambda 1) " \
  "^on-policy GKD - supervised KD, sampled answers: " "^ step  supervised KD"; do
  check "the table has '$line'" grep -q "$line" out1.txt
done
n=$(sqlite3 qs.db "SELECT count(*) FROM runs WHERE status = 'finished' AND name LIKE 'quickstart-smoke/method=%,seed=_'")
check "4 method runs finished (got $n)" test "$n" -eq 4
n=$(sqlite3 qs.db "SELECT count(*) FROM runs WHERE status = 'finished' AND name IN ('quickstart-smoke/teacher', 'quickstart-smoke/warm-start')")
check "teacher and warm start finished (got $n)" test "$n" -eq 2
check "teacher and warm start saved" test -s qs/teacher.safetensors -a -s qs/warm-start.safetensors
before=$(sqlite3 qs.db "SELECT count(*) FROM metrics")

"$bin" quickstart --db qs.db --out qs --smoke --seeds 1,2 >out2.txt 2>err2.txt
check "second call exits 0" test $? -eq 0
check "second call: nothing to run" grep -q "4 runs, 0 to run, 4 already finished" err2.txt
check "second call: no new training metrics" test "$(sqlite3 qs.db "SELECT count(*) FROM metrics")" -eq "$before"
check "second call: the same table" cmp <(grep -v "^runs in" out1.txt) <(grep -v "^runs in" out2.txt)

# another warm gate is another start: its method runs are new ones, not the first call's reused
"$bin" quickstart --db qs.db --out qs --smoke --seeds 1,2 --warm-gate 0 >out4.txt 2>err4.txt
check "--warm-gate 0 exits 0" test $? -eq 0
check "--warm-gate 0: 4 runs to run" grep -q "'quickstart-smoke-gate0': 4 runs, 4 to run" err4.txt
n=$(sqlite3 qs.db "SELECT count(*) FROM runs WHERE status = 'finished' AND name LIKE 'quickstart-smoke-gate0/method=%,seed=_'")
check "--warm-gate 0: 4 method runs of its own (got $n)" test "$n" -eq 4

# a teacher under its gate is trained again from the next seed; with none over it the job stops, saying so
"$bin" quickstart --db gate.db --out gate --smoke --seeds 1 --teacher-gate 1 >out5.txt 2>err5.txt
rc=$?
check "--teacher-gate 1 (unreachable in 6 steps): non-zero exit (got $rc)" test "$rc" -ne 0
check "it retried the next seed" grep -q "the teacher of seed 1000 reached .*training the next seed" err5.txt
check "then gave up, naming the gate and the tries" grep -q "no teacher reached 1.00 validation exact match in 2 tries" err5.txt
n=$(sqlite3 gate.db "SELECT count(*) FROM runs WHERE status = 'finished' AND name IN ('quickstart-smoke/teacher', 'quickstart-smoke/teacher-2')")
check "two teachers trained (got $n)" test "$n" -eq 2
check "no method run started" test "$(sqlite3 gate.db "SELECT count(*) FROM runs WHERE name LIKE '%method=%'")" -eq 0

"$bin" quickstart --db qs.db --out qs --smoke --seeds 1,x >out3.txt 2>err3.txt
rc=$?
check "bad --seeds: non-zero exit (got $rc)" test "$rc" -ne 0
check "bad --seeds: named" grep -q -- '--seeds: "x" is not a seed' err3.txt

[ "$fails" -eq 0 ] && echo "quickstart smoke: all passed"
[ "$fails" -eq 0 ]
