#!/usr/bin/env bash
# ctest-labels: cpu
# The prelude compiled into the binary (bindings/prelude_data.c) is the one in scripts-lua/: regenerating
# it with scripts-lua/embed.sh changes nothing. When this fails, run scripts-lua/embed.sh and rebuild.
set -euo pipefail
src="${GKD_SOURCE_DIR:?GKD_SOURCE_DIR is not set}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bash "$src/scripts-lua/embed.sh" "$tmp/prelude_data.c"
if ! diff -u "$src/bindings/prelude_data.c" "$tmp/prelude_data.c" >"$tmp/diff"; then
  head -40 "$tmp/diff"
  echo "bindings/prelude_data.c is stale: run scripts-lua/embed.sh" >&2
  exit 1
fi
# Every prelude file is embedded, and nothing else is.
for f in "$src"/scripts-lua/*.lua; do
  grep -q "\"$(basename "$f")\"" "$src/bindings/prelude_data.c" || { echo "$(basename "$f") is not embedded (add it to embed.sh)" >&2; exit 1; }
done
echo "1 passed, 0 failed"
