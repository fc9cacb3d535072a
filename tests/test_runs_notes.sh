#!/usr/bin/env bash
# ctest-labels: cpu
# `gkd runs` shows what is stored with a run beyond its numbers (docs/reports.md): a "warnings" column with
# the count, and below the table each failed run's message and each warning, one line each, control
# characters escaped; a finished or interrupted run's leftover error text is not shown as a failure.
# (Before: the warnings a run stored, such as a setting that had no effect, could only be read with SQL.)
. "$(dirname "$0")/lib.sh"

"$bin" run -e '
  local s = assert(gkd.store.open("runs.db"))
  local a = assert(s:run_begin("quiet-run", {seed = 1}))
  assert(s:run_finish(a, "finished"))
  local b = assert(s:run_begin("warned", {seed = 2}))
  assert(s:run_warning(b, "beta has no effect on training: method sft"))
  assert(s:run_warning(b, "second\27[31m warning"))
  assert(s:run_finish(b, "finished"))
  local c = assert(s:run_begin("broken", {seed = 3}))
  assert(s:run_finish(c, "failed", "the teacher could not be loaded"))
  s:close()' 2>setup.err
check "the store was written ($(cat setup.err))" test ! -s setup.err

"$bin" runs --db runs.db >runs.out 2>runs.err; rc=$?
check "gkd runs exits 0 (rc $rc: $(cat runs.err))" test "$rc" -eq 0
check "a warnings column" grep -q "duration  warnings$" runs.out
check "the warned run counts 2" grep -Eq "^ *2  warned .* 2$" runs.out
check "the others 0" test "$(grep -Ec "^ *[13]  (quiet-run|broken) .* 0$" runs.out)" -eq 2
check "each warning on its own line" grep -qx "run 2 (warned) warning: beta has no effect on training: method sft" runs.out
check "with control characters escaped" grep -q "^run 2 (warned) warning: second\\\\x1b\[31m warning$" runs.out
check "no raw escape reaches the terminal" test "$(grep -c $'\x1b' runs.out)" -eq 0
check "the failed run's message" grep -qx "run 3 (broken) failed: the teacher could not be loaded" runs.out
check "nothing for the quiet run" test "$(grep -c "quiet-run)" runs.out)" -eq 0

"$bin" runs --db runs.db --status finished >fin.out 2>&1
check "--status keeps only the matching runs' notes" test "$(grep -c "^run 3" fin.out)" -eq 0
[ "$fails" -eq 0 ] || { cat runs.out; exit 1; }
echo "ok   gkd runs: warnings column, failures and warnings listed"
