#!/usr/bin/env bash
# ctest-labels: cpu
# Progress in logs: with stderr not a terminal (a Slurm log, `> file`), gkd.run prints a progress line every
# GKD_PROGRESS_SECONDS seconds (0: every step) with step, loss, tokens/s and ETA, not only the final line
# (before: the final line only); lines come at least that many seconds apart; a large interval leaves the
# final line only, and a malformed value warns and does not fail the run.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
cat >run.lua <<'LUA'
local t = gkd.task.arithmetic{n = 40}
local tok = gkd.tokenizer.train{task = t, vocab = 280}
local m = gkd.model.new{layers = 1, dim = 16, tokenizer = tok, max_seq_len = 32}
gkd.run{name = "log", db = ":memory:", method = "sft", task = t, student = m, steps = 6, batch = 2,
        max_new_tokens = 4, eval = false, checkpoint = false}
LUA
GKD_PROGRESS_SECONDS=0 "$bin" run run.lua 2>every.log >/dev/null
check "the run exits 0" [ $? -eq 0 ]
n=$(grep -cE '^log step [1-6]/6  loss [0-9.e+-]+  [0-9.kM]+ tok/s  elapsed [0-9.hms]+  ETA [0-9.hms]+' every.log)
check "a progress line per step in the log (got $n of 6)" [ "$n" -eq 6 ]
check "lines in step order" diff <(grep -oE '^log step [0-9]+' every.log) <(printf 'log step %d\n' 1 2 3 4 5 6)
check "no terminal control codes in a log" bash -c "! grep -q \$'\\r\\|\\033' every.log"

GKD_PROGRESS_SECONDS=3600 "$bin" run run.lua 2>hour.log >/dev/null
n=$(grep -c '^log step' hour.log)
check "an interval longer than the run: the final line only (got $n)" [ "$n" -eq 1 ]
check "the final line is step 6/6" grep -q '^log step 6/6 ' hour.log

# Every N seconds: each step spends 0.1 s of CPU in on_step, lines are due every 0.35 s. At least 3 lines
# come (1.2 s of CPU), and consecutive lines (the last, always shown, aside) are at least 0.35 s apart by
# their own elapsed field (shown to 0.1 s: two roundings shrink 0.35 to no less than 0.3, and awk's
# subtraction of 0.1-grid values can fall just under that, hence 0.25).
cat >slow.lua <<'LUA'
local t = gkd.task.arithmetic{n = 40}
local m = gkd.model.new{layers = 1, dim = 16, tokenizer = gkd.tokenizer.train{task = t, vocab = 280}, max_seq_len = 32}
gkd.run{name = "slow", db = ":memory:", method = "sft", task = t, student = m, steps = 12, batch = 2,
        max_new_tokens = 4, eval = false, checkpoint = false,
        on_step = function() local stop = os.clock() + 0.1 while os.clock() < stop do end end}
LUA
GKD_PROGRESS_SECONDS=0.35 "$bin" run slow.lua 2>slow.log >/dev/null
grep '^slow step' slow.log | grep -v 'step 12/12' | grep -oE 'elapsed [0-9.]+s' | grep -oE '[0-9.]+' >gaps.txt
n=$(grep -c '^slow step' slow.log)
check "lines every 0.35 s: at least 3 (got $n)" [ "$n" -ge 3 ]
check "lines at least the interval apart" awk 'NR > 1 && $1 - prev < 0.25 {bad = 1} {prev = $1} END {exit bad}' gaps.txt

GKD_PROGRESS_SECONDS=soon "$bin" run run.lua 2>bad.log >/dev/null
check "a malformed GKD_PROGRESS_SECONDS does not fail the run" [ $? -eq 0 ]
check "it is reported" grep -q "GKD_PROGRESS_SECONDS must be a number" bad.log
[ "$fails" -eq 0 ] || { cat every.log hour.log slow.log bad.log; exit 1; }
echo "ok   progress lines in a log file"
