#!/usr/bin/env bash
# Installs what gkd needs on Debian 12 (as root, or with sudo available): the compiler, CMake, Lua 5.4,
# SQLite, OpenBLAS, OpenMP, SLEEF (vector exp/log for the float32 divergence rows) and oneDNN (bf16 products of
# inference models with reduced-precision weights) from Debian's packages; clang with its sanitizer and libFuzzer runtimes and
# its OpenMP (the sanitizer and fuzz builds of run-tests.sh, docs/fuzzing.md); Slurm with munge and OpenMPI
# (multi-machine sweeps and data-parallel training, docs/cluster.md: the tests start a one-node Slurm and
# run mpirun -np 2); and (best effort) the
# Python packages the tests use as independent references. Safe to run again: it installs only what is
# missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config liblua5.4-dev libsqlite3-dev libopenblas-dev python3 python3-pip xz-utils
      clang libclang-rt-14-dev libomp-14-dev libsleef-dev libdnnl-dev slurm-wlm munge openmpi-bin libopenmpi-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Reference libraries for the tests' fixtures checks; tests that need them skip with a message if absent.
py_missing=$(python3 - <<'PY'
import importlib.util
mods = {"numpy": "numpy", "safetensors": "safetensors", "tokenizers": "tokenizers",
        "rouge_score": "rouge-score", "sacrebleu": "sacrebleu", "gguf": "gguf",
        "tensorboard": "tensorboard"}
print(" ".join(pkg for mod, pkg in mods.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$py_missing" ]; then
  python3 -m pip install -q $py_missing 2>/dev/null ||
    python3 -m pip install -q --break-system-packages $py_missing 2>/dev/null ||
    echo "note: could not pip-install $py_missing; the tests that compare against them will be skipped"
fi
