#!/usr/bin/env bash
# The main job on a fresh Debian machine: installs what is missing, builds gkd, and runs a quick GKD
# experiment on the built-in data (gkd quickstart: teacher, then a supervised-KD and an on-policy student).
set -euo pipefail
cd "$(dirname "$0")"
./install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/gkd quickstart "$@"
