#!/usr/bin/env bash
# ctest-labels: cpu
# Help everywhere: every command of `gkd help` answers --help and -h with its usage on stdout and exit 0,
# before it runs (before: `gkd runs -h` opened a database called "-h", `gkd sample --help` and others failed
# with "unknown option", and `gkd run --help` did not name --resume). The usage names every option the
# command's source reads (cli/cmd_*.c), so a new option cannot be left out of its help. `gkd run` passes
# --help after the script to the script.
. "$(dirname "$0")/lib.sh"
commands=$("$bin" help | awk '/^commands:/ {on = 1; next} on && /^$/ {exit} on {print $1}')
check "gkd help lists commands" [ -n "$commands" ]
declare -A help_of
for c in $commands; do
  for h in --help -h; do
    out=$("$bin" "$c" $h 2>err.txt)
    rc=$?
    check "gkd $c $h exits 0 (got $rc: $(head -c 200 err.txt))" [ $rc -eq 0 ]
    check "gkd $c $h prints 'usage: gkd $c' on stdout" grep -q "^usage: gkd $c" <<<"$out"
  done
  help_of[$c]=$("$bin" "$c" --help 2>/dev/null)
  check "gkd help $c prints the same usage" [ "$("$bin" help "$c")" = "${help_of[$c]}" ]
done
check "no database named -h was created" [ ! -e ./-h ]
check "gkd run --help names --resume" grep -q -- "--resume" <<<"${help_of[run]}"
check "help after gkd run's options" bash -c "'$bin' run --db x.db --quiet --help | grep -q '^usage: gkd run'"
check "gkd reward-model train --help" bash -c "'$bin' reward-model train --help | grep -q '^usage: gkd reward-model'"

# Every option a command's source file reads appears in the help of one of the commands it implements.
# Internal options (set by gkd.sweep for its workers) are exempt.
internal="help worker-point worker-steps"
n_opts=0
for f in "$src"/cli/cmd_*.c; do
  cmds=""
  for c in $commands; do grep -q "^int gkd_cmd_${c//-/_}(" "$f" && cmds="$cmds $c"; done
  [ -n "$cmds" ] || continue
  helps=""
  for c in $cmds; do helps="$helps${help_of[$c]}"$'\n'; done
  opts=$( { grep -ohE 'gkd_cli_(str|int|size|double|flag)\([a&]+, "[a-z0-9-]+"' "$f" | grep -oE '"[a-z0-9-]+"'
            grep -ohE 'collect_list\(&a, "[a-z0-9-]+"' "$f" | grep -oE '"[a-z0-9-]+"'
            grep -ohE 'strn?cmp\(argv\[i\], "--[a-z0-9-]+' "$f" | grep -oE '"--[a-z0-9-]+' | sed 's/^"--/"/'
            sed -n '/OPTIONS\[\] = {/,/NULL}/p' "$f" | grep -oE '"[a-z0-9-]+"'
          } | tr -d '"' | sort -u)
  for o in $opts; do
    case " $internal " in *" $o "*) continue ;; esac
    n_opts=$((n_opts + 1)); check "$(basename "$f") reads --$o: the help of$cmds names it" grep -qE -- "--$o([^a-z0-9-]|\$)" <<<"$helps"
  done
done
check "the scan found the options (got $n_opts)" [ "$n_opts" -ge 70 ]

# After the script, --help is the script's.
echo 'print("script got", arg[1])' >s.lua
check "gkd run SCRIPT --help runs the script" bash -c "'$bin' run s.lua --help | grep -q 'script got	--help'"
[ "$fails" -eq 0 ] || exit 1
echo "ok   --help and -h on every command"
