#!/usr/bin/env bash
# Session 5: the SmolLM2 runs at GKD_SCALE=0.3: the generic teacher (chat template) as the control, then the
# teacher fine-tuned 60 steps first. Resumable: run again after a kill.
set -u
mkdir -p "$(dirname "$0")/../out/smollm2" && cd "$(dirname "$0")/../out/smollm2"
B=../../build/gkd
S=../../experiments/smollm2-distill.lua
( time GKD_SCALE=0.3 GKD_TEACHER_STEPS=0 GKD_QUIET=1 $B run --db runs.db $S ) > control.log 2>&1
( time GKD_SCALE=0.3 GKD_TEACHER_STEPS=60 GKD_QUIET=1 $B run --db runs.db $S ) > finetuned.log 2>&1
