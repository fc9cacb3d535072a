#!/usr/bin/env bash
# The learned reward model's acceptance run (issue 5, criterion 4): builds gkd, trains the reward model on
# the full debdesc set and checks that it tells consistent from corrupted summaries of held-out packages
# with >= 85% accuracy (tests/test_reward_model_debdesc.c; the method is in docs/reward-model.md).
# Usage: experiments/reward-model.sh [build-dir]      (default: build-rm in the source tree)
# Data: ../shared/data/debdesc.jsonl.xz beside the source tree, or $GKD_DEBDESC. CPU only.
# Writes <build-dir>/reward-model.log (the run's output) and <build-dir>/reward_model_debdesc.d/ (the model).
set -euo pipefail
# One thread unless told otherwise: the model is small (dim 64), its matrix products too small for threads to
# pay, and on a shared machine OpenMP's barriers make two threads slower than one.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(mkdir -p "${1:-$root/build-rm}" && cd "${1:-$root/build-rm}" && pwd)
cmake -B "$build" -S "$root" > /dev/null
cmake --build "$build" -j2 --target test_reward_model_debdesc > /dev/null
cd "$build"
{ echo "# $(date -u +%FT%TZ), $(uname -m), $(nproc --all) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS"; ./test_reward_model_debdesc 2>&1; } | tee reward-model.log
