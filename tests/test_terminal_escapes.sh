#!/usr/bin/env bash
# ctest-labels: cpu
# Stored and generated text printed to a terminal carries no control characters: a run name, a metric name
# and a config key holding escape sequences (set the window title, clear the screen, colour), a bell and a
# line break are shown escaped (\x1b, \x07, \x0a) by `gkd runs` and `gkd report`, with their table rows
# intact; `gkd sample` shows the text it prints the same way, keeping line breaks. The CSV (data for
# programs) keeps the names as stored.
set -u
GKD=${GKD_BIN:?}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
export OMP_NUM_THREADS=1
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; shift; printf '%s\n' "$@" | cat -A | head -20; fail=1; }
# no_controls NAME FILE: FILE holds no byte below 0x20 but newline, and no DEL
no_controls() {
  if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "$2"; then bad "$1: raw control characters" "$(cat "$2")"
  else ok "$1: no raw control characters"; fi
}

cat >hostile.lua <<'LUA'
local s = assert(gkd.store.open('runs.db'))
local a = s:run_begin('evil\27]0;pwned\7\27[31mred\nfake row', {config = '{"lr\\u001b[2J": 1, "beta": 0.5}'})
s:metric(a, 1, 'loss', 1.5)
s:metric(a, 1, 'kl\27[8m', 0.25)
s:run_finish(a, 'finished')
local b = s:run_begin('plain', {config = '{"lr\\u001b[2J": 2, "beta": 0.5}'})
s:metric(b, 1, 'loss', 2.5)
s:metric(b, 1, 'kl\27[8m', 0.75)
s:run_finish(b, 'finished')
s:close()
LUA
"$GKD" run hostile.lua || { echo "FAIL: could not write the store"; exit 1; }

"$GKD" runs runs.db >runs.txt 2>&1; rc=$?
[ $rc -eq 0 ] || bad "gkd runs exit $rc" "$(cat runs.txt)"
no_controls "gkd runs" runs.txt
if grep -qF 'evil\x1b]0;pwned\x07\x1b[31mred\x0afake row' runs.txt && [ "$(wc -l <runs.txt)" -eq 4 ]; then
  ok "gkd runs: the name shown escaped, one line per run"
else bad "gkd runs: escaped name or rows" "$(cat runs.txt)"; fi

"$GKD" report runs.db --metric loss,"$(printf 'kl\033[8m')" >report.txt 2>&1; rc=$?
[ $rc -eq 0 ] || bad "gkd report exit $rc" "$(cat report.txt)"
no_controls "gkd report" report.txt
if grep -qF 'evil\x1b]0;pwned\x07\x1b[31mred\x0afake row' report.txt && grep -qF 'kl\x1b[8m' report.txt &&
   grep -qF 'lr\x1b[2J' report.txt; then
  ok "gkd report: run name, metric name and setting shown escaped"
else bad "gkd report: escaped texts" "$(cat report.txt)"; fi

"$GKD" report runs.db --csv - >report.csv 2>&1
if grep -qF $'evil\e]0;pwned\a\e[31mred' report.csv; then ok "the CSV keeps the name as stored"
else bad "CSV name" "$(cat report.csv)"; fi

# gkd sample: the text it prints (here the prompt, echoed) with an escape sequence and a line break
printf '{"document": "alpha beta gamma", "summary": "alpha"}\n' >ok.jsonl
"$GKD" train-tokenizer --data ok.jsonl --vocab 300 --out tok.json >/dev/null || { echo "FAIL: tokenizer"; exit 1; }
"$GKD" run -e "gkd.model.new{layers=1, dim=16, heads=2, kv_heads=1, hidden=32, tokenizer=gkd.tokenizer.load('tok.json'), max_seq_len=32, seed=1}:save('m.safetensors')" ||
  { echo "FAIL: could not write a checkpoint"; exit 1; }
"$GKD" sample --model m.safetensors --tokenizer tok.json --max-new-tokens 3 --prompt $'\e]0;pwned\a\e[2Jalpha\nbeta' >sample.txt 2>&1
rc=$?
[ $rc -eq 0 ] || bad "gkd sample exit $rc" "$(cat sample.txt)"
no_controls "gkd sample" sample.txt
if grep -qF '\x1b]0;pwned\x07\x1b[2Jalpha' sample.txt && grep -q '^beta' sample.txt; then
  ok "gkd sample: escapes shown escaped, the line break kept"
else bad "gkd sample output" "$(cat sample.txt)"; fi

# gkd resume names the stored script path it runs again, and the error that follows (the script does not
# exist) names it too: both escaped.
"$GKD" run -e "local s = assert(gkd.store.open('resume.db')); local r = s:run_begin('stopped', {config = '{\"script\": {\"path\": \"evil\\\\u001b[2J.lua\", \"args\": []}}'}); s:run_finish(r, 'failed'); s:close()" ||
  { echo "FAIL: could not write the resume store"; exit 1; }
"$GKD" resume stopped --db resume.db >resume.txt 2>&1
no_controls "gkd resume" resume.txt
if grep -qF 'evil\x1b[2J.lua' resume.txt; then ok "gkd resume: the stored path shown escaped"
else bad "gkd resume: escaped path" "$(cat resume.txt)"; fi
exit $fail
