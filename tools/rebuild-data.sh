#!/bin/sh
# Rebuilds the Debian-derived data sets (debdesc, ddtp-en-de, ddtp-en-it; docs/data.md) from deb.debian.org
# into OUT_DIR (default data/ at the repository root, git-ignored): 13 MB downloaded, 12 MB written, about
# 80 s on 2 cores.
# Usage: tools/rebuild-data.sh [OUT_DIR]       Needs python3. Other mirrors, suites or offline input:
#        python3 tools/debian-data/build.py --help
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$root/data"}
command -v python3 >/dev/null || { echo "rebuild-data.sh: needs python3" >&2; exit 1; }
python3 "$root/tools/debian-data/build.py" --out "$out"
ls -l "$out/debdesc.jsonl.xz" "$out/ddtp-en-de.jsonl.xz" "$out/ddtp-en-it.jsonl.xz"
echo "For gkd.data_path and the experiments: export GKD_DATA_DIR=$(cd "$out" && pwd)"
