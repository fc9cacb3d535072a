# The layers of docs/architecture.md are enforced by the build: each library compiles with the include
# folders of the layers it links and no others, so an include that runs upward is not found. This test
# compiles a one-line probe `#include "<header>"` with the exact flags CMake gives a source of each layer
# (build/compile_commands.json) for one header of every layer: it must compile exactly when the header's
# layer is the probe's own or one below it. A layer that gained an upward path (a new PUBLIC link, the
# source root back on the include path) fails here, as does one that lost a link it needs.
# ctest-labels: cpu
set -uo pipefail
build="${GKD_BUILD_DIR:-$PWD}"
cc_json="$build/compile_commands.json"
[ -f "$cc_json" ] || { echo "SKIPPED: no $cc_json (configure with CMAKE_EXPORT_COMPILE_COMMANDS)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# layer: source folder, one public header, the layers below it (transitively)
declare -A dir=([base]=core/base [tensor]=core/tensor [text]=core/text [format]=core/format
                [store]=core/store [report]=core/report [reward]=reward [rl]=rl)
declare -A header=([base]=core/base/error.h [tensor]=core/tensor/model.h [text]=core/text/tokenizer.h
                   [format]=core/format/checkpoint.h [store]=core/store/store.h [report]=core/report/report.h
                   [reward]=reward/reward.h [rl]=rl/trainer.h [bindings]=bindings/gkd_lua.h [cli]=cli/cli.h)
declare -A below=([base]="" [tensor]="base" [text]="base" [format]="tensor text base" [store]="base"
                  [report]="store base" [reward]="format tensor text base" [rl]="reward format tensor text base store")

# The compile command of the first C source of a folder, as one shell-quoted line, with the source and
# output replaced by placeholders.
command_for() {
  python3 - "$cc_json" "$1" <<'PY'
import json, shlex, sys, os
entries = json.load(open(sys.argv[1]))
folder = os.sep + sys.argv[2] + os.sep
for e in entries:
    if folder in e["file"] and e["file"].endswith(".c"):
        args = e.get("arguments") or shlex.split(e["command"])
        out = []
        skip = False
        for a in args:
            if skip:
                skip = False
                continue
            if a in ("-o", "-c"):
                skip = a == "-o"
                continue
            if a == e["file"]:
                continue
            out.append(a)
        print(shlex.join(out))
        break
PY
}

fails=0 checked=0
for layer in "${!dir[@]}"; do
  cmd="$(command_for "${dir[$layer]}")"
  [ -n "$cmd" ] || { echo "FAILED: no compile command for a source in ${dir[$layer]}"; fails=$((fails + 1)); continue; }
  for other in "${!header[@]}"; do
    expect=fail
    [ "$other" = "$layer" ] && expect=ok
    for b in ${below[$layer]}; do [ "$b" = "$other" ] && expect=ok; done
    printf '#include "%s"\n' "${header[$other]}" > "$tmp/probe.c"
    if eval "$cmd -fsyntax-only $tmp/probe.c" > "$tmp/log" 2>&1; then got=ok; else got=fail; fi
    checked=$((checked + 1))
    if [ "$got" != "$expect" ]; then
      echo "FAILED: layer $layer including ${header[$other]} ($other): expected $expect, got $got"
      head -5 "$tmp/log"
      fails=$((fails + 1))
    fi
  done
done
echo "$checked probes, $fails unexpected"
[ "$fails" -eq 0 ]
