#!/usr/bin/env bash
# ctest-labels: cpu
# Progress in logs: with stderr not a terminal (a Slurm log, `> file`), gkd.run prints a progress line every
# GKD_PROGRESS_SECONDS seconds (0: every step) with step, loss, tokens/s and ETA, not only the final line
# (before: the final line only); a large interval leaves the final line only, and a malformed value warns
# and does not fail the run.
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

GKD_PROGRESS_SECONDS=soon "$bin" run run.lua 2>bad.log >/dev/null
check "a malformed GKD_PROGRESS_SECONDS does not fail the run" [ $? -eq 0 ]
check "it is reported" grep -q "GKD_PROGRESS_SECONDS must be a number" bad.log
[ "$fails" -eq 0 ] || { cat every.log hour.log bad.log; exit 1; }
echo "ok   progress lines in a log file"
