# Shared start of the shell tests (source it: `. "$(dirname "$0")/lib.sh"`): strict mode, $bin (the gkd
# binary from GKD_BIN; the test skips with 77 without one), $src (the source tree), a scratch folder $tmp
# removed on exit and made the working directory, and check WHAT CMD... which counts failures in $fails.
set -uo pipefail
bin="${GKD_BIN:-}"
src="${GKD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fails=0
check() {
  local what="$1"; shift
  if "$@"; then :; else echo "FAILED: $what" >&2; fails=$((fails + 1)); fi
}
# store_dump DB: every column of every row of every table of a run store, one line each, sorted (two
# stores, or one before and after, compare with cmp).
store_dump() {
  "$bin" run -e '
    local s = assert(gkd.store.open(arg[1], {readonly = true}))
    for _, t in ipairs({"sweeps", "runs", "metrics", "evals", "samples", "checkpoints"}) do
      local cols = {}
      for _, c in ipairs(s:query("SELECT name FROM pragma_table_info(?) ORDER BY cid", t)) do
        cols[#cols + 1] = "quote(" .. c.name .. ")"
      end
      local rows = s:query("SELECT " .. table.concat(cols, " || \"|\" || ") .. " AS row FROM " .. t .. " ORDER BY 1")
      for _, r in ipairs(rows) do print(t, r.row) end
    end' "$1"
}
