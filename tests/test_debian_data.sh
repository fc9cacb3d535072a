#!/usr/bin/env bash
# ctest-labels: cpu
# tools/debian-data/build.py, offline, on the hand-written Translation-en/-de of tests/fixtures/debian-data:
# the exact rows of debdesc and ddtp-en-de (paragraphs split at " ." lines, also " . " with a trailing space;
# a duplicate long description kept once, for the first package; an empty one left out; a preformatted first
# line sorted first; a German translation with another number of paragraphs gives its short pair only; a
# tab continuation line; an untranslatable md5 ignored), byte-identical outputs from a second run and from
# compressed inputs, and malformed input refused with FILE:LINE and no output written.
set -u
src="${GKD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
build="$src/tools/debian-data/build.py"
fixtures="$src/tests/fixtures/debian-data"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAILED: $*" >&2; fails=$((fails + 1)); }
unxz() { python3 -c 'import lzma, sys; sys.stdout.buffer.write(lzma.open(sys.argv[1]).read())' "$1"; }

nbsp=$(printf '\302\240')
cat >"$tmp/want-debdesc" <<EOF
{"package": "gamma", "summary": "draws a logo", "document": "G A M M A ----------- Gamma prints its logo in ASCII art."}
{"package": "alpha", "summary": "tool for testing", "document": "Alpha checks things quickly. It works on every${nbsp}file."}
{"package": "beta", "summary": "library for beta data", "document": "Beta reads beta data. It also writes it. This package contains the shared library."}
{"package": "epsilon", "summary": "editor for epsilon files", "document": "Epsilon edits files. It has undo."}
{"package": "zeta", "summary": "zeta client", "document": "Zeta talks to servers. Written in C."}
EOF
cat >"$tmp/want-ddtp-en-de" <<EOF
{"kind": "para", "en": "Alpha checks things quickly. It works on every${nbsp}file.", "de": "Alpha prüft Dinge schnell. Es funktioniert mit jeder Datei."}
{"kind": "para", "en": "Beta reads beta data.", "de": "Beta liest Beta-Daten."}
{"kind": "para", "en": "It also writes it.", "de": "Es schreibt sie auch."}
{"kind": "para", "en": "This package contains the shared library.", "de": "Dieses Paket enthält die gemeinsame Bibliothek."}
{"kind": "para", "en": "Written in C.", "de": "Geschrieben in C."}
{"kind": "para", "en": "Zeta talks to servers.", "de": "Zeta spricht mit Servern."}
{"kind": "short", "en": "editor for epsilon files", "de": "Editor für Epsilon-Dateien"}
{"kind": "short", "en": "library for beta data", "de": "Bibliothek für Beta-Daten"}
{"kind": "short", "en": "library for beta data (documentation)", "de": "Bibliothek für Beta-Daten (Dokumentation)"}
{"kind": "short", "en": "tool for testing", "de": "Werkzeug zum Testen"}
{"kind": "short", "en": "transitional package", "de": "Übergangspaket"}
{"kind": "short", "en": "zeta client", "de": "Zeta-Client"}
EOF

if python3 "$build" --from "$fixtures" --langs de --out "$tmp/a" >"$tmp/a.log" 2>&1; then
  for name in debdesc ddtp-en-de; do
    unxz "$tmp/a/$name.jsonl.xz" >"$tmp/got-$name" || fail "$name.jsonl.xz is not xz"
    diff -u "$tmp/want-$name" "$tmp/got-$name" >&2 || fail "$name rows differ from the expected ones"
  done
  grep -q "debdesc.jsonl.xz	5 lines" "$tmp/a.log" || fail "line count not printed: $(cat "$tmp/a.log")"
else
  fail "build on the fixture exits non-zero: $(cat "$tmp/a.log")"
fi

# Same input, same bytes: a second run, and the same files compressed as the mirror serves them.
mkdir "$tmp/packed"
python3 - "$fixtures" "$tmp/packed" <<'PY'
import bz2, lzma, sys
src, dst = sys.argv[1], sys.argv[2]
open(f"{dst}/Translation-en.xz", "wb").write(lzma.compress(open(f"{src}/Translation-en", "rb").read()))
open(f"{dst}/Translation-de.bz2", "wb").write(bz2.compress(open(f"{src}/Translation-de", "rb").read()))
PY
python3 "$build" --from "$fixtures" --langs de --out "$tmp/b" >/dev/null 2>&1 || fail "second build exits non-zero"
python3 "$build" --from "$tmp/packed" --langs de --out "$tmp/c" >/dev/null 2>&1 || fail "build from .xz/.bz2 exits non-zero"
for name in debdesc ddtp-en-de; do
  cmp -s "$tmp/a/$name.jsonl.xz" "$tmp/b/$name.jsonl.xz" || fail "$name: a second run gives other bytes"
  cmp -s "$tmp/a/$name.jsonl.xz" "$tmp/c/$name.jsonl.xz" || fail "$name: compressed inputs give other bytes"
done

# Malformed input: refused, naming the file and line, exit status 1, nothing written.
refused() { # what, expected message, lines of Translation-de (Translation-en is the fixture's)
  local what="$1" want="$2" dir="$tmp/bad-$1"; shift 2
  mkdir -p "$dir"
  cp "$fixtures/Translation-en" "$dir/"
  printf '%b\n' "$@" >"$dir/Translation-de"
  python3 "$build" --from "$dir" --langs de --out "$dir/out" >"$dir/log" 2>&1
  local rc=$?
  [ "$rc" -eq 1 ] || fail "$what: exit status $rc, want 1"
  grep -qF "$want" "$dir/log" || fail "$what: message lacks '$want': $(cat "$dir/log")"
  [ -z "$(ls -A "$dir/out" 2>/dev/null)" ] || fail "$what: output written"
}
refused no-colon "Translation-de:3: expected 'Field: value'" \
  "Package: a" "Description-md5: 1" "Description-de kurz" " lang"
refused not-utf8 "Translation-de:3: not UTF-8" \
  "Package: a" "Description-md5: 1" "Description-de: k\\0351rz"
refused no-md5 "Translation-de:5: record has no Description-md5 field" \
  "Package: a" "Description-md5: 1" "Description-de: kurz" "" "Package: b" "Description-de: kurz"
refused stray-continuation "Translation-de:1: continuation line outside a field" " lang"
refused repeated "Translation-de:3: field Package repeated" "Package: a" "Description-md5: 1" "Package: b"
rm -f "$tmp/bad-no-colon/Translation-de"
python3 "$build" --from "$tmp/bad-no-colon" --langs de --out "$tmp/none" >"$tmp/none.log" 2>&1
[ $? -eq 1 ] && grep -q "no Translation-de file" "$tmp/none.log" || fail "a missing Translation-de is not refused: $(cat "$tmp/none.log")"

[ "$fails" -eq 0 ] || { echo "$fails failed" >&2; exit 1; }
echo "all passed"
