#!/usr/bin/env bash
# ctest-labels: cpu
# docs/trl.md's examples run, so they cannot rot: every ```lua block is extracted and run with `gkd run
# BLOCK.lua 2` (arg[1] = 2 steps) on the built-in data; and every TRL name the page marks (*) gets gkd's
# name for it from gkd.run's key check, not a spelling guess.
. "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1 GKD_PROGRESS_SECONDS=3600
doc="$src/docs/trl.md"
awk -v dir="$tmp" '/^```lua$/ {n++; f = sprintf("%s/block%d.lua", dir, n); on = 1; next}
                   /^```$/ {on = 0; next} on {print > f}' "$doc"
blocks=$(ls block*.lua 2>/dev/null | wc -l)
check "docs/trl.md has Lua examples (found $blocks)" [ "$blocks" -ge 3 ]
for b in block*.lua; do
  mkdir -p "run-$b" && (cd "run-$b" && "$bin" run "../$b" 2 >out.txt 2>&1)
  rc=$?
  check "$b runs (exit $rc)" [ $rc -eq 0 ]
  [ $rc -eq 0 ] || { cat "$b" "run-$b/out.txt"; }
done

names=$(grep -oE '`[a-z_]+` \(\*\)' "$doc" | grep -oE '[a-z_]+' | sort -u)
check "docs/trl.md marks TRL names (*) (found $(echo $names | wc -w))" [ "$(echo $names | wc -w)" -ge 15 ]
cat >names.lua <<'LUA'
local t = gkd.task.arithmetic{n = 10}
local m = gkd.model.new{layers = 1, dim = 16, tokenizer = gkd.tokenizer.train{task = t, vocab = 280}, max_seq_len = 64}
for _, k in ipairs(arg) do
  local cfg = {name = "x", db = ":memory:", task = t, student = m, teacher = m, steps = 1}
  cfg[k] = 1
  print(select(2, pcall(gkd.run, cfg)))
end
LUA
"$bin" run names.lua $names >names.txt 2>&1
for n in $names; do
  line=$(grep -F "unknown key '$n'" names.txt)
  check "$n (*): a hint from the TRL table, not a spelling guess: $line" \
    bash -c "grep -q \"unknown key '$n' (\" <<<\"\$1\" && ! grep -qE \"\\(did you mean '[a-z_]+'\\?\\)\\$\" <<<\"\$1\"" _ "$line"
done
[ "$fails" -eq 0 ] || exit 1
echo "ok   docs/trl.md's examples run and its TRL names get hints"
