#!/usr/bin/env bash
# ctest-labels: cpu
# docs/results.md's paper summary and docs/paper-results-TASK.md are generated from the committed stores in
# experiments/paper/results/ (issue 11: "running it again reproduces the file"): `report.lua all` run in a
# scratch copy of docs/ must write exactly the committed files (the pages and their SVG plots).
set -uo pipefail
bin="${GKD_BIN:-}"
src="${GKD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
ls "$src"/experiments/paper/results/*/runs.db >/dev/null 2>&1 || { echo "SKIPPED: no committed paper stores"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/docs"
cp "$src"/docs/results.md "$src"/docs/paper-results-*.md "$src"/docs/paper-results-*.svg "$tmp/docs/"
# the stores are opened read-write by SQLite's WAL mode: work on copies, not the source tree
cp -r "$src/experiments/paper/results" "$tmp/results"
cd "$tmp"
GKD_PAPER_RESULTS="$tmp/results" "$bin" run "$src/experiments/paper/report.lua" all >out.txt 2>&1 || {
  echo "FAILED: report.lua all: $(tail -5 out.txt)"; exit 1; }
fails=0
for f in docs/results.md docs/paper-results-*.md docs/paper-results-*.svg; do
  # the header names the store it read: here the scratch copy
  sed -i "s|$tmp/results/|experiments/paper/results/|g" "$f"
  if ! cmp -s "$f" "$src/$f"; then
    echo "FAILED: $f differs from the committed file:" >&2
    diff "$src/$f" "$f" | head -20 >&2
    fails=$((fails + 1))
  fi
done
n=$(grep -c "^wrote docs/paper-results-" out.txt)
[ "$n" -ge 1 ] || { echo "FAILED: no results page written" >&2; fails=$((fails + 1)); }
[ "$fails" -eq 0 ] && echo "paper results reproduce: $n pages and the summary identical"
[ "$fails" -eq 0 ]
