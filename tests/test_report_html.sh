#!/usr/bin/env bash
# The HTML report in a real browser: headless Chromium loads the page that tests/test_report.c writes
# for its synthetic sweep (and the page of `$GKD_BIN report --html` on the same store, when that binary
# exists), must log nothing to the console, and the DOM it builds must hold the expected SVG series:
# one learning curve per run, 3 x 2 heatmap cells, one scatter point per run. It also takes a
# screenshot, so the page is laid out and painted. Exits 77 (skipped) without Chromium or without the
# test_report binary (run from the build directory, as CTest does).
# ctest-labels: cpu
set -u

browser=""
for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [ -z "$browser" ]; then echo "SKIPPED: no chromium (apt-get install chromium)"; exit 77; fi
writer=./test_report
if [ ! -x "$writer" ]; then echo "SKIPPED: $writer not built (run from the build directory)"; exit 77; fi

tmp=$(mktemp -d /tmp/gkd-test-report-html-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

"$writer" --write-html "$tmp" || { echo "FAIL: $writer --write-html" >&2; exit 1; }

# Lines of the <svg> whose start tag holds $2, in the DOM file $1.
svg_section() { sed -n "/<svg[^>]*$2/,/<\/svg>/p" "$1"; }

check_page() { # page label
    local page=$1 label=$2 dom=$tmp/$2.dom log=$tmp/$2.log
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start
    if ! timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$tmp/profile-$label" --enable-logging=stderr --v=0 \
        --dump-dom "file://$page" >"$dom" 2>"$log"; then
        fail "$label: chromium failed"; tail -5 "$log" >&2; return
    fi
    if grep -q ':CONSOLE' "$log"; then fail "$label: console messages:"; grep ':CONSOLE' "$log" >&2; fi
    if grep -qi '<script' "$dom"; then fail "$label: the page holds a script"; fi

    local runs cells loss
    runs=$(grep -c '^series ' "$tmp/expected.txt")
    cells=$(sed -n 's/^cells //p' "$tmp/expected.txt")
    loss=$(svg_section "$dom" 'data-plot="curves" data-metric="loss"')
    [ "$(grep -c '<path class="series"' <<<"$loss")" = "$runs" ] || fail "$label: loss curves: not $runs series"
    while read -r _ name; do
        [ "$(grep -cF "data-series=\"$name\"" <<<"$loss")" = 1 ] || fail "$label: no loss curve for run '$name'"
    done < <(grep '^series ' "$tmp/expected.txt")
    [ "$(svg_section "$dom" 'data-plot="heatmap"' | grep -c '<rect class="cell"')" = "$cells" ] ||
        fail "$label: heatmap: not $cells cells"
    [ "$(svg_section "$dom" 'data-plot="scatter"' | grep -c '<circle class="point"')" = "$runs" ] ||
        fail "$label: scatter: not $runs points"

    if ! timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$tmp/profile-$label" --window-size=1000,3000 \
        --screenshot="$tmp/$label.png" "file://$page" >/dev/null 2>&1; then
        fail "$label: screenshot failed"
    elif [ "$(stat -c %s "$tmp/$label.png" 2>/dev/null || echo 0)" -lt 20000 ]; then
        fail "$label: the screenshot is (nearly) blank"
    fi
}

check_page "$tmp/report.html" library

if [ -n "${GKD_BIN:-}" ] && [ -x "${GKD_BIN}" ]; then
    if "$GKD_BIN" report --db "$tmp/runs.db" --sweep grid --heatmap rougeL --html "$tmp/cli.html" >/dev/null; then
        check_page "$tmp/cli.html" cli
    else
        fail "gkd report --html failed"
    fi
else
    echo "note: GKD_BIN '${GKD_BIN:-}' is not built; checked the library's page only"
fi

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)" >&2; exit 1; fi
echo "ok: the report renders in $browser with the expected series"
