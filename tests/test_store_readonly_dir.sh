#!/usr/bin/env bash
# ctest-labels: cpu
# A run store in a folder nobody may write (an archive, a shared results folder): its WAL mode needs a -shm
# file beside it even to read, which SQLite cannot create there, so `gkd runs`, `gkd report` and a read-only
# store:query used to fail with "unable to open database file". They now read the file without WAL; a
# read-write open says the folder is read-only; and a store whose -wal still holds commits is refused,
# naming the -wal, rather than read without them (no data loss: once the folder is writable again they
# are all there). Nothing is created in the folder.
# The folder is made read-only with chattr +i (root ignores directory permissions), or with chmod when
# not root; where neither can be done the test is skipped (exit 77).
set -u
GKD=${GKD_BIN:?}
dir=$(mktemp -d)
locked=()
cleanup() {
  for d in "${locked[@]}"; do chattr -i "$d" 2>/dev/null; chmod 755 "$d" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
export OMP_NUM_THREADS=1
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; shift; printf '%s\n' "$@"; fail=1; }

# A clean store (closed: no -wal, no -shm left), and a copy of a store taken while it was open, whose
# -wal holds the last commits.
mkdir "$dir/ro" "$dir/walro"
"$GKD" run -e "
local s = assert(gkd.store.open('$dir/ro/runs.db'))
local id = s:run_begin('archived', {})
s:metric(id, 1, 'loss', 0.25)
s:run_finish(id, 'finished')
s:close()
local w = assert(gkd.store.open('$dir/live.db'))
local id2 = w:run_begin('in-wal', {})
w:metric(id2, 1, 'loss', 0.5)
w:run_finish(id2, 'finished')
assert(os.execute('cp $dir/live.db $dir/walro/runs.db && cp $dir/live.db-wal $dir/walro/runs.db-wal'))
w:close()" || { echo "FAIL: could not make the stores"; exit 1; }
[ -s "$dir/walro/runs.db-wal" ] || { echo "FAIL: the copied -wal is empty"; exit 1; }
[ ! -e "$dir/ro/runs.db-shm" ] || { echo "FAIL: the clean store left a -shm"; exit 1; }

lock() {
  if [ "$(id -u)" -eq 0 ]; then
    chattr +i "$1" 2>/dev/null || return 1
  else
    chmod 555 "$1" || return 1
  fi
  locked+=("$1")
  ! touch "$1/probe" 2>/dev/null
}
if ! lock "$dir/ro" || ! lock "$dir/walro"; then
  echo "SKIPPED: cannot make a folder read-only here (root without chattr +i support)"
  exit 77
fi

out=$("$GKD" runs "$dir/ro/runs.db" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "archived" <<<"$out"; then ok "gkd runs reads a store in a read-only folder"
else bad "gkd runs in a read-only folder (exit $rc)" "$out"; fi

out=$("$GKD" report "$dir/ro/runs.db" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "archived" <<<"$out" && grep -q "0.25" <<<"$out"; then ok "gkd report reads it"
else bad "gkd report in a read-only folder (exit $rc)" "$out"; fi

out=$("$GKD" run -e "
local s = assert(gkd.store.open('$dir/ro/runs.db', {readonly = true}))
local rows = assert(s:query('SELECT r.name, m.value FROM runs r JOIN metrics m ON m.run_id = r.id'))
print(rows[1].name, rows[1].value)" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "archived.*0.25" <<<"$out"; then ok "store:query on a read-only open reads it"
else bad "store:query in a read-only folder (exit $rc)" "$out"; fi

out=$("$GKD" run -e "assert(gkd.store.open('$dir/ro/runs.db'))" 2>&1); rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "read-only" <<<"$out"; then ok "a read-write open says the folder is read-only"
else bad "read-write open in a read-only folder (exit $rc)" "$out"; fi

listing=$(ls -A "$dir/ro")
if [ "$listing" = "runs.db" ]; then ok "nothing was created in the folder"
else bad "files appeared in the read-only folder" "$listing"; fi

out=$("$GKD" runs "$dir/walro/runs.db" 2>&1); rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "runs.db-wal' holds commits" <<<"$out"; then
  ok "a store whose -wal holds commits is refused, naming the -wal"
else bad "store with a -wal in a read-only folder (exit $rc)" "$out"; fi

for d in "${locked[@]}"; do chattr -i "$d" 2>/dev/null; chmod 755 "$d"; done
locked=()
out=$("$GKD" runs "$dir/walro/runs.db" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "in-wal" <<<"$out"; then ok "once writable, the commits in the -wal are all there"
else bad "the -wal store once writable (exit $rc)" "$out"; fi
exit $fail
