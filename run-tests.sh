#!/usr/bin/env bash
# Builds gkd and runs the whole test suite: a Release build, then (unless GKD_SKIP_SANITIZE=1) a clang
# AddressSanitizer + UndefinedBehaviorSanitizer build (with float-cast-overflow, local-bounds and
# implicit-conversion, which gcc's -fsanitize=undefined lacks) running the same tests, then (unless
# GKD_SKIP_FUZZ=1) a short run of each libFuzzer harness of tests/fuzz (GKD_FUZZ_SECONDS each, default 30;
# docs/fuzzing.md). Tests labelled cuda skip themselves where no GPU is present. Exits non-zero on any
# failure.
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
  cmake -S . -B build-clang-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGKD_SANITIZE=ON \
    -DGKD_CUDA=OFF >/dev/null
  cmake --build build-clang-asan -j"$jobs"
  # The sanitizer pass skips `slow` tests (training runs) that would take many times longer under ASan.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-clang-asan --output-on-failure -j"$jobs" -LE slow
fi
if [ "${GKD_SKIP_FUZZ:-0}" != 1 ]; then
  # Each harness starts from its committed seed corpus; what it adds goes to build-fuzz/corpus-TARGET and
  # is dropped next time, so every run starts alike. A crash, a leak or an input running over 10 s fails
  # the suite and leaves the input in build-fuzz/artifacts/ (replay: build-fuzz/fuzz_TARGET FILE).
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGKD_FUZZ=ON \
    -DGKD_CUDA=OFF >/dev/null
  cmake --build build-fuzz -j"$jobs" --target gkd_fuzz
  rm -rf build-fuzz/corpus-* build-fuzz/artifacts
  mkdir -p build-fuzz/artifacts
  fuzz_one() {
    mkdir -p "build-fuzz/corpus-$1"
    if OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "build-fuzz/fuzz_$1" -max_total_time="${GKD_FUZZ_SECONDS:-30}" \
      -timeout=10 -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$1-" "build-fuzz/corpus-$1" \
      "tests/fuzz/corpus/$1" >"build-fuzz/fuzz-$1.log" 2>&1; then
      echo "fuzz_$1: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/fuzz-$1.log" | grep -o '[0-9]*$') executions, no finding"
    else
      tail -n 40 "build-fuzz/fuzz-$1.log"
      echo "fuzz_$1: FAILED (input in build-fuzz/artifacts/, log build-fuzz/fuzz-$1.log)"
      return 1
    fi
  }
  export -f fuzz_one
  ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||' | xargs -P "$jobs" -I{} bash -c 'fuzz_one {}'
fi
