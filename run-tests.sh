#!/usr/bin/env bash
# Builds gkd and runs the whole test suite: a Release build, then (unless GKD_SKIP_SANITIZE=1) an
# AddressSanitizer + UndefinedBehaviorSanitizer build running the same tests. Tests labelled cuda skip
# themselves where no GPU is present. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")"
./install-deps.sh
# Headless Chromium renders the HTML report in its test (which skips itself without it); best effort.
if ! command -v chromium >/dev/null 2>&1 && [ "${GKD_NO_CHROMIUM:-0}" != 1 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1; }; } ||
    echo "note: chromium could not be installed; the HTML rendering test will be skipped"
fi
export OMP_WAIT_POLICY=passive
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs" -LE slow
# `experiment` tests (the learned reward model on the full data set, minutes) run from experiments/.
ctest --test-dir build --output-on-failure -L slow -LE experiment
if [ "${GKD_SKIP_SANITIZE:-0}" != 1 ]; then
  # CUDA code is compiled (and its tests skipped without a GPU) by the first build already.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGKD_SANITIZE=ON -DGKD_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  # The sanitizer pass skips `slow` tests (training runs) that would take many times longer under ASan.
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
fi
