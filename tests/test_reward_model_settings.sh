#!/usr/bin/env bash
# ctest-labels: cpu
# A reward model's settings (model.safetensors metadata "gkd_reward_model") are range-checked before they
# are converted to integers: max_source_tokens = 1e300, -5 or 2^40, or a seed of 1e30, is refused naming
# the setting (before, the double was cast to int/uint64_t: undefined behaviour, then a nonsense model).
# Rewrites the metadata with Python's safetensors package; skips without it.
set -uo pipefail
bin="${GKD_BIN:-}"
src="${GKD_SOURCE_DIR:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
python3 -c "import safetensors.numpy, numpy" 2>/dev/null || { echo "SKIPPED: no python safetensors/numpy"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export OMP_NUM_THREADS=1
"$bin" reward-model train --data "$src/tests/fixtures/debdesc-sample.jsonl" --out rm.d --steps 2 --vocab 300 \
  --dim 16 --heads 2 --hidden 32 --source-tokens 16 --summary-tokens 8 --batch 4 --quiet >/dev/null 2>&1 ||
  { echo "FAIL: train"; exit 1; }
fails=0
for case in "max_source_tokens 1e300" "max_source_tokens -5" "max_summary_tokens 1099511627776" \
            "max_summary_tokens 2.5" "seed 1e30" "seed -1"; do
  set -- $case
  rm -rf bad.d && cp -r rm.d bad.d
  python3 - "$1" "$2" <<'PY' || { echo "FAIL: rewrite"; exit 1; }
import json, sys
from safetensors.numpy import load_file, save_file
from safetensors import safe_open
path = "bad.d/model.safetensors"
with safe_open(path, "np") as f:
    meta = f.metadata()
tensors = load_file(path)
settings = json.loads(meta["gkd_reward_model"])
settings[sys.argv[1]] = json.loads(sys.argv[2])
meta["gkd_reward_model"] = json.dumps(settings)
save_file(tensors, path, metadata=meta)
PY
  out=$("$bin" reward-model score --model bad.d --source "a b c" --summary "a" 2>&1); rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && grep -q "\"$1\"" <<<"$out"; then
    echo "ok   $1 = $2 refused: $out"
  else
    echo "FAIL $1 = $2: exit $rc: $out"; fails=$((fails + 1))
  fi
done
out=$("$bin" reward-model score --model rm.d --source "a b c" --summary "a" 2>&1) || { echo "FAIL: the untouched model: $out"; fails=$((fails + 1)); }
exit $((fails > 0))
