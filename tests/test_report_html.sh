#!/usr/bin/env bash
# The HTML report in a real browser: headless Chromium loads the page that tests/test_report.c writes
# for its synthetic sweep (and the page of `$GKD_BIN report --html` on the same store, when that binary
# exists), must log nothing to the console, and the DOM it builds must hold the expected SVG series:
# one learning curve per run, 3 x 2 heatmap cells, one scatter point per run; each curves legend holds
# every setting's full name once the script ran. A copy of the page with a probe script appended then
# uses the page's script as a reader would: it hovers over the first plot (a tooltip row and a marker
# per setting), clicks a legend entry (that setting's paths hide), ticks the log scale and moves the
# smoothing slider (the lines are redrawn). The screenshot's first plot must be painted: enough
# non-white pixels, and each legend colour present, while a margin of the same screenshot stays blank
# (so the pixel check can fail). The page of tests/test_report_plots.c (two sweeps, a teacher, fifteen
# settings, long run names) gets the same probe, and every full legend name must be in its DOM. Exits 77
# (skipped) without Chromium, python3 or the test_report binary (run from the build directory, as CTest
# does).
# ctest-labels: cpu
set -u

browser=""
for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
if [ -z "$browser" ]; then echo "SKIPPED: no chromium (apt-get install chromium)"; exit 77; fi
if ! command -v python3 >/dev/null 2>&1; then echo "SKIPPED: no python3 (the screenshot check)"; exit 77; fi
writer=./test_report
if [ ! -x "$writer" ]; then echo "SKIPPED: $writer not built (run from the build directory)"; exit 77; fi
src=${GKD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}

tmp=$(mktemp -d /tmp/gkd-test-report-html-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

"$writer" --write-html "$tmp" || { echo "FAIL: $writer --write-html" >&2; exit 1; }

# The settings of the synthetic sweep (tests/test_report.c), as each curves legend names them.
settings=("lambda=0 beta=0.1 alpha=0" "lambda=0 beta=0.9 alpha=0" "lambda=0.5 beta=0.1 alpha=0.1"
    "lambda=0.5 beta=0.9 alpha=0.1" "lambda=1 beta=0.1 alpha=0.2" "lambda=1 beta=0.9 alpha=0.2")

# Lines of the <svg> whose start tag holds $2, in the DOM file $1.
svg_section() { sed -n "/<svg[^>]*$2/,/<\/svg>/p" "$1"; }

# The same window for the DOM and the screenshot, so the plot's box read from one locates it in the other.
chrome() { # label, then chromium's own arguments
    local label=$1
    shift
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start
    timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
        --user-data-dir="$tmp/profile-$label" --window-size=1100,1600 --force-device-scale-factor=1 "$@"
}

# The probe: runs after the page's script, writes what it saw into <pre id="probe">.
cat >"$tmp/probe.js" <<'PROBE'
(function () {
  var out = [], fig = document.querySelector('figure.curves'), svg = fig.querySelector('svg');
  var r = svg.getBoundingClientRect(), box = svg.getAttribute('data-box').split(' ').map(Number);
  var scale = r.width / svg.viewBox.baseVal.width;
  out.push('plot ' + [r.left + box[0] * scale, r.top + box[1] * scale, box[2] * scale, box[3] * scale]
    .map(Math.round).join(' '));
  out.push('colours ' + [].map.call(fig.querySelectorAll('.legend li'), function (li) {
    return li.getAttribute('data-colour'); }).join(' '));
  out.push('controls ' + fig.querySelectorAll('.controls input').length);
  svg.dispatchEvent(new MouseEvent('mousemove', { clientX: r.left + r.width * 0.5,
    clientY: r.top + r.height * 0.4, bubbles: true }));
  var tip = fig.querySelector('.tip');
  out.push('tip ' + tip.style.display + ' ' + tip.querySelectorAll('.row').length + ' ' +
    tip.querySelectorAll('.run').length + ' ' + svg.querySelectorAll('g.hover circle').length);
  [].forEach.call(tip.querySelectorAll('.row'), function (row) { out.push('tiprow ' + row.textContent); });
  var mean = svg.querySelector('path.mean'), d0 = mean.getAttribute('d');
  var li = fig.querySelector('.legend li'), g = li.getAttribute('data-group');
  li.click();
  var hidden = [].filter.call(svg.querySelectorAll('path'), function (e) {
    return e.getAttribute('data-group') === g && e.style.display === 'none'; }).length;
  out.push('toggle ' + li.classList.contains('off') + ' ' + hidden);
  li.click();
  out.push('untoggle ' + !li.classList.contains('off') + ' ' + (mean.style.display === ''));
  var log = fig.querySelector('input.log');
  log.click();
  out.push('log ' + (mean.getAttribute('d') !== d0) + ' ' +
    (svg.querySelector('g.axes').textContent.indexOf('(log scale)') >= 0));
  log.click();
  out.push('unlog ' + (mean.getAttribute('d') === d0));
  var s = fig.querySelector('input.smooth');
  s.value = '0.9';
  s.dispatchEvent(new Event('input'));
  out.push('smooth ' + (mean.getAttribute('d') !== d0));
  svg.dispatchEvent(new MouseEvent('mousemove', { clientX: r.left + r.width * 0.5,
    clientY: r.top + r.height * 0.4, bubbles: true }));
  out.push('smoothtip ' + (tip.textContent.indexOf('(unsmoothed ') >= 0) + ' ' +
    tip.querySelectorAll('.row').length);
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = out.join('\n');
  document.body.appendChild(pre);
})();
PROBE

check_page() { # page label
    local page=$1 label=$2 dom=$tmp/$2.dom log=$tmp/$2.log
    if ! chrome "$label" --enable-logging=stderr --v=0 --dump-dom "file://$page" >"$dom" 2>"$log"; then
        fail "$label: chromium failed"; tail -5 "$log" >&2; return
    fi
    if grep -q ':CONSOLE' "$log"; then fail "$label: console messages:"; grep ':CONSOLE' "$log" >&2; fi
    # self-contained: the script is inline and nothing is loaded
    if grep -Eqi '<script[^>]* src=|<link |https?://[^w]' "$dom"; then fail "$label: the page loads something"; fi

    local runs cells loss
    runs=$(grep -c '^series ' "$tmp/expected.txt")
    cells=$(sed -n 's/^cells //p' "$tmp/expected.txt")
    loss=$(svg_section "$dom" 'data-plot="curves" data-metric="loss"')
    [ "$(grep -c '<path class="series"' <<<"$loss")" = "$runs" ] || fail "$label: loss curves: not $runs series"
    while read -r _ name; do
        [ "$(grep -cF "data-series=\"$name\"" <<<"$loss")" = 1 ] || fail "$label: no loss curve for run '$name'"
    done < <(grep '^series ' "$tmp/expected.txt")
    [ "$(grep -c '<path class="mean"' <<<"$loss")" = "${#settings[@]}" ] ||
        fail "$label: loss curves: not one mean per setting"
    [ "$(svg_section "$dom" 'data-plot="heatmap"' | grep -c '<rect class="cell"')" = "$cells" ] ||
        fail "$label: heatmap: not $cells cells"
    [ "$(svg_section "$dom" 'data-plot="scatter"' | grep -c '<circle class="point"')" = "$runs" ] ||
        fail "$label: scatter: not $runs points"
    [ "$(svg_section "$dom" 'data-plot="scatter"' | grep -cE '<title>[^<]+: reward [0-9.e+-]+, rougeL [0-9.e+-]+</title>')" = "$runs" ] ||
        fail "$label: scatter: not a hover value (the point's numbers) per point"

    # plots come before the wide tables
    local first_plot first_table
    first_plot=$(grep -n '<svg' "$dom" | head -1 | cut -d: -f1)
    first_table=$(grep -n '<table' "$dom" | head -1 | cut -d: -f1)
    [ -n "$first_plot" ] && [ -n "$first_table" ] && [ "$first_plot" -lt "$first_table" ] ||
        fail "$label: the tables come before the plots"
    # every curves legend names every setting in full, and the script added each figure's controls
    local figures legends
    figures=$(grep -c '<figure class="curves"' "$dom")
    [ "$(grep -c '<div class="controls">' "$dom")" = "$figures" ] || fail "$label: the script added no controls"
    for s in "${settings[@]}"; do
        legends=$(grep -cF "<span class=\"name\">$s</span>" "$dom")
        [ "$legends" = "$figures" ] || fail "$label: legend '$s' in $legends of $figures curves figures"
    done

    check_interaction "$page" "$label" "${#settings[@]}" $((2 * ${#settings[@]}))
    for s in "${settings[@]}"; do
        grep -qF "tiprow $s: " "$tmp/$label-probe.txt" || fail "$label: hover: no value for '$s'"
    done
}

# Hover, toggle, log scale and smoothing through the probe, then the screenshot of the plot it located.
check_interaction() { # page label settings runs: the first figure's settings and the runs the tooltip lists
    local page=$1 label=$2 probed=$tmp/$2-probe.html out=$tmp/$2-probe.txt n=$3 n_runs=$4
    awk -v probe="$tmp/probe.js" '/<\/body>/ { print "<script>"; while ((getline l < probe) > 0) print l; print "</script>" }
        { print }' "$page" >"$probed"
    chrome "$label-probe" --dump-dom "file://$probed" 2>/dev/null |
        sed -n '/<pre id="probe">/,/<\/pre>/p' | sed -e 's/<[^>]*>//g' -e 's/&amp;/\&/g' >"$out"
    grep -qx "tip block $n $n_runs $n" "$out" ||
        fail "$label: hover: want a tooltip with $n settings, $n_runs runs, $n markers: $(grep '^tip ' "$out")"
    [ "$(grep -cE '^tiprow .+: [0-9.e+-]+( ± [0-9.e+-]+)? at step [0-9]+$' "$out")" = "$n" ] ||
        fail "$label: hover: not a value for each of $n settings"
    grep -qx 'toggle true 4' "$out" || fail "$label: a legend click does not hide its setting (mean, band, 2 runs)"
    grep -qx 'untoggle true true' "$out" || fail "$label: a second legend click does not show it again"
    grep -qx 'log true true' "$out" || fail "$label: the log scale does not redraw"
    grep -qx 'unlog true' "$out" || fail "$label: back from the log scale, the lines differ"
    grep -qx 'smooth true' "$out" || fail "$label: smoothing does not redraw"
    grep -qx "smoothtip true $n" "$out" ||
        fail "$label: a second hover: not the unsmoothed values, or not $n rows: $(grep '^smoothtip' "$out")"

    local plot colours
    plot=$(sed -n 's/^plot //p' "$out")
    colours=$(sed -n 's/^colours //p' "$out")
    if [ -z "$plot" ] || ! chrome "$label" --screenshot="$tmp/$label.png" "file://$page" >/dev/null 2>&1; then
        fail "$label: no plot located, or the screenshot failed"; return
    fi
    # shellcheck disable=SC2086 # plot and colours are lists of words
    python3 "$src/tests/png_region.py" "$tmp/$label.png" $plot $colours >"$tmp/$label.pixels" ||
        { fail "$label: reading the screenshot"; return; }
    awk '/^nonwhite/ { exit !($2 > 0.03) }' "$tmp/$label.pixels" ||
        fail "$label: the plot area is (nearly) blank: $(head -1 "$tmp/$label.pixels")"
    awk '/^colour/ && $3 < 50 { bad = 1; print "FAIL: '"$label"': colour " $2 " has " $3 " pixels" > "/dev/stderr" }
         END { exit bad }' "$tmp/$label.pixels" || failures=$((failures + 1))
    # the right margin, beside the plots and legends: a blank region must read as blank
    python3 "$src/tests/png_region.py" "$tmp/$label.png" 1000 300 90 300 >"$tmp/$label.margin"
    awk '/^nonwhite/ { exit !($2 < 0.001) }' "$tmp/$label.margin" ||
        fail "$label: the blank margin is not blank: $(cat "$tmp/$label.margin")"
}

check_page "$tmp/report.html" library

# tests/test_report_plots.c's page: fifteen settings over two sweeps and a teacher, long run names. Each
# legend name is in the DOM in full once the script ran; the first plot (the students' JSD loss: 14
# settings, 12 of them with two runs) hovers, toggles and is painted in every one of its 14 colours.
plots_page() {
    mkdir "$tmp/plots" && ./test_report_plots --write-html "$tmp/plots" >/dev/null || { fail "test_report_plots --write-html"; return; }
    local dom=$tmp/plots.dom
    chrome plots --enable-logging=stderr --v=0 --dump-dom "file://$tmp/plots/plots.html" >"$dom" 2>"$tmp/plots.log" ||
        { fail "plots: chromium failed"; return; }
    if grep -q ':CONSOLE' "$tmp/plots.log"; then fail "plots: console messages:"; grep ':CONSOLE' "$tmp/plots.log" >&2; fi
    while read -r name; do
        grep -qF "<span class=\"name\">$name</span>" "$dom" || fail "plots: no full legend name '$name'"
    done <"$tmp/plots/legend.txt"
    grep -q '<svg[^>]*data-metric="loss"[^>]*data-quantity="cross-entropy"' "$dom" &&
        grep -q '<svg[^>]*data-metric="loss"[^>]*data-quantity="jsd"' "$dom" ||
        fail "plots: the teacher's cross-entropy and the students' JSD do not have a plot each"
    check_interaction "$tmp/plots/plots.html" plots 14 24
}
if [ -x ./test_report_plots ]; then plots_page; else echo "note: ./test_report_plots is not built; its page is not checked"; fi

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
echo "ok: the report renders in $browser with full legends, hover values and working controls"
