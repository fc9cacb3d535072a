# Issue 17's size limits hold on this checkout (tools/check-layout.py: no source file outside tests/ over
# 1,000 lines, no C or Lua function over 150 lines), and the checker itself can fail: on a scratch
# repository holding one function of 151 lines and one file of 1,001 lines it must report both.
# ctest-labels: cpu
set -uo pipefail
src="${GKD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
command -v git > /dev/null && command -v python3 > /dev/null || { echo "SKIPPED: needs git and python3"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fails=0

if ! python3 "$src/tools/check-layout.py" "$src"; then
  echo "FAILED: the checkout breaks a size limit (above)"
  fails=$((fails + 1))
fi

git -C "$tmp" init -q
{ echo "static int long_one(void) {"; for i in $(seq 149); do echo "    f($i);"; done; echo "}"; } > "$tmp/long.c"
{ echo "local function long_one()"; for i in $(seq 149); do echo "  f($i)"; done; echo "end"; } > "$tmp/long.lua"
for i in $(seq 1001); do echo "x = $i"; done > "$tmp/big.lua"
{ echo "int short_one(void)"; echo "{"; for i in $(seq 147); do echo "    f($i);"; done; echo "}"; } > "$tmp/short.c"
git -C "$tmp" add -A
python3 "$src/tools/check-layout.py" "$tmp" > "$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ "$rc" -eq 1 ] || { echo "FAILED: the checker exited $rc on a tree that breaks the limits"; fails=$((fails + 1)); }
for want in "long.c:1: function of 151 lines" "long.lua:1: function of 151 lines" "big.lua: 1001 lines"; do
  grep -qF "$want" "$tmp/out" || { echo "FAILED: the checker did not report '$want'"; fails=$((fails + 1)); }
done
grep -q "short.c" "$tmp/out" && { echo "FAILED: a function of 150 lines was reported"; fails=$((fails + 1)); }
[ "$fails" -eq 0 ]
