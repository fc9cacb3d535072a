#!/usr/bin/env bash
# Slims a paper comparison's store (experiments/paper/results/TASK/runs.db) to what report.lua reads, so that
# the committed copy stays small: the stored samples go, and the per-step training metrics are replaced by
# one row per run holding the mean of the two that the report averages (teacher_entropy, student_entropy;
# the mean of that one row is the same number). Evaluations, runs, sweeps and checkpoint rows are kept.
# report.lua save calls it; tests/test_paper_results_reproduce.sh shows the pages come out byte for byte.
set -euo pipefail
db="${1:?usage: tools/slim-paper-store.sh RUNS.DB}"
command -v sqlite3 >/dev/null || { echo "slim-paper-store: needs the sqlite3 command (apt-get install sqlite3)" >&2; exit 1; }
sqlite3 "$db" "PRAGMA foreign_keys = ON;
BEGIN;
DELETE FROM samples;
CREATE TEMP TABLE kept AS SELECT run_id, name, avg(value) AS v FROM metrics
  WHERE name IN ('teacher_entropy', 'student_entropy') GROUP BY run_id, name;
DELETE FROM metrics;
INSERT INTO metrics (run_id, step, name, value) SELECT run_id, 0, name, v FROM kept;
COMMIT;
VACUUM;"
