#!/usr/bin/env bash
# Builds gkd and runs the whole test suite: a Release build, then (unless GKD_SKIP_SANITIZE=1) an
# AddressSanitizer + UndefinedBehaviorSanitizer build running the same tests. Tests labelled cuda skip
# themselves where no GPU is present. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"
./install-deps.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" -LE slow
ctest --test-dir build --output-on-failure -L slow
if [ "${GKD_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGKD_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  # The sanitizer pass skips `slow` tests (training runs) that would take many times longer under ASan.
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
fi
