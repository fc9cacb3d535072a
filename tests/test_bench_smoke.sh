#!/usr/bin/env bash
# ctest-labels: cpu
# `gkd bench` end to end at tiny shapes: every default section runs and the output is one JSON object with
# each section's figures (what docs/benchmarks.md and tools/gpu-report.py read). A backend without packed
# weights ("sim" here, "cuda" on a GPU) records teacher_score as skipped in the default list, and refuses
# it when --only asks for it: the H200's first run (2026-12-04) exited 1 on the default list instead.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "SKIPPED: no python3"; exit 77; }
export OMP_NUM_THREADS=1

# has_keys FILE SECTION.KEY...: FILE is one JSON object with every dotted key, numbers > 0 unless 'skipped'
has_keys() {
  python3 - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
bad = []
for key in sys.argv[2:]:
    v = doc
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            bad.append(key + " missing")
            break
        v = v[part]
    else:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not v > 0:
            bad.append(f"{key} = {v}")
for b in bad:
    print("bench JSON:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

tiny=(--quick --reps 1 --layers 2 --dim 64 --heads 2 --kv-heads 1 --ffn 128 --vocab 256 --batch 2 --seq 32
  --gen-batch 2 --gen-new 4 --score-batch 1 --score-seq 8 --smol-layers 1)
"$bin" bench --json "${tiny[@]}" >cpu.json 2>cpu.err
rc=$?
check "cpu bench exits 0 (got $rc: $(tail -3 cpu.err))" [ "$rc" -eq 0 ]
check "cpu bench: every default section" has_keys cpu.json device precision distill.seconds sgemm.gflops \
  train.tokens_per_s train.step_s generate.tokens_per_s generate.batch1_smollm2.fp32.tokens_per_s \
  generate.batch1_smollm2.q8_0_a8.tokens_per_s teacher_score.fp32.tokens_per_s teacher_score.bf16.tokens_per_s \
  teacher_score.q8_0_a8.tokens_per_s teacher_score.speedup_q8_0_a8 gkd_step.step_s gkd_step.tokens_per_s lua.step_s
check "the shortened SmolLM2 shape is named as such" grep -q "SmolLM2-135M with fewer layers (L=1" cpu.json

"$bin" bench --device sim --json "${tiny[@]}" >sim.json 2>sim.err
rc=$?
check "sim bench, default teacher_score, exits 0 (got $rc: $(tail -3 sim.err))" [ "$rc" -eq 0 ]
check "sim bench: teacher_score skipped, sgemm measured" has_keys sim.json teacher_score.skipped sgemm.gflops
check "sim bench names the backend" grep -q '"device": "sim"' sim.json

"$bin" bench --device sim --json --only teacher_score "${tiny[@]}" >sim2.json 2>sim2.err
rc=$?
check "sim bench --only teacher_score refuses (got $rc)" [ "$rc" -eq 1 ]
check "the refusal says why" grep -q "no reduced-precision weights" sim2.err

[ "$fails" -eq 0 ] && echo "bench smoke: ok"
exit $((fails > 0))
