#!/usr/bin/env python3
"""gkd against Hugging Face TRL's GKDTrainer, step for step (issue 12, part 4). Run by hand, not in CI.

    python3 tools/bench_trl.py                      # shapes a and b, lambda 1 and 0, 1 and 2 threads, 3 reps
    python3 tools/bench_trl.py --shapes a --threads 1 --reps 2 --steps 8 --warmup 2   # a short look

What is compared: the wall time of one GKD training step, median over the timed steps of a run (the first
--warmup steps of each run are left out), then the median over --reps runs of each side. The runs alternate
gkd, TRL, gkd, TRL ... for each configuration (shape x threads x lambda), each in a fresh process, so both
sides see the same machine load. Prints one JSON object: per configuration the medians, the spread (lowest
and highest run median), the ratio TRL / gkd (> 1: gkd is faster), the mean output lengths, gkd's own
phase times, and the load average around each run.

The same work on both sides:
- Weights: Hugging Face directories (config.json, float32 model.safetensors, tokenizer.json) written by gkd
  (tools/bench_trl_prep.lua), loaded by both. Shape a: teacher 4 layers, student 2 layers, width 128, 4
  heads, V = 1024 (a BPE tokenizer gkd trains on debdesc texts), random weights. Shape b: the
  SmolLM2-135M-Instruct GGUF (Q4_1, dequantised to float32 by gkd; 30 layers, width 576, V = 49,152) as the
  teacher, and a student of 4 of its layers (gkd.model.from_layers, n = 4).
- Data: debdesc (shared/data) rows "Package: NAME\\nDescription: DOCUMENT" cut to a 64-token prompt and a
  32-token completion (31 tokens + EOS), the same ids on both sides (gkd checks its own tokenisation against
  them), batch 8, no padding.
- lambda 1: every step samples 32 new tokens per row from the student at temperature 1 (no top-k, no
  top-p), then the loss on the sampled completions. lambda 0: no sampling, the loss on the dataset's
  completions (TRL's GKDTrainer with seq_kd off; gkd's fixed = "ground_truth").
- Loss: generalized JSD, beta 0.5, TRL's convention (gkd divergence "jsd_trl"), averaged over the output
  tokens (gkd norm = "token"), teacher and student at temperature 1.
- Optimizer: AdamW, betas (0.9, 0.999), weight decay 0, constant learning rate 1e-5, gradient clipping at
  norm 1. float32 everywhere: TRL with bf16 = False, fp16 = False, gradient checkpointing off, on the CPU.
- Threads: OMP_NUM_THREADS = MKL_NUM_THREADS = OPENBLAS_NUM_THREADS = N for both, and torch.set_num_threads(N).
- Timing: TRL: time.perf_counter() from on_step_begin to on_step_end (a TrainerCallback; the batch is
  already collated at on_step_begin); the time between consecutive on_step_end calls is reported as well.
  gkd: the time between consecutive on_step callbacks of gkd.run (tools/bench_trl_gkd.lua), which also holds
  the batch assembly, the metrics written to the run store (SQLite) and the callback itself.

Where the two do different work (known, not corrected):
- TRL computes the student's and teacher's logits at every position of the 96-token rows (B x 96 x V each,
  then masked to the 32 completion positions); gkd forms logits only at the output positions, in chunks
  (its design: docs/benchmarks.md, issue 4). Both train the same loss.
- gkd's divergence rows are float32 SIMD kernels (divergence_precision = "float32", gkd's default) that
  agree with its double-precision reference within 1e-5; TRL's are PyTorch float32 ops.
- HF generate stops a row at EOS but keeps the batch going until every row stopped or 32 tokens; gkd's
  sampler does likewise. Sampled EOS tokens (rare) shorten the loss's token count on either side; the mean
  output lengths are reported so that a difference shows.
- TRL's step draws a random number for the lambda coin (random.random() <= lmbda) and gkd draws from its
  own stream; at lambda 0 and 1 both are deterministic in effect.
- gkd writes ~20 metrics per step to its SQLite store; TRL logs nothing in between (logging_steps is larger
  than the run).

Not compared: quality of the trained students (a few steps), memory, GPU.

Versions used for docs/benchmarks.md (2026-12-03): Python 3.11.7, torch 2.15.0 (PyPI's default wheel,
+cu132, run on the CPU), transformers 5.24.0, trl 1.16.0, accelerate 1.16.0, datasets 5.2.0, tokenizers
0.23.3: `pip install torch==2.15.0 transformers==5.24.0 accelerate==1.16.0 datasets==5.2.0 trl==1.16.0`.
The tool prints the versions it ran with.

Internal modes (run by the tool itself): --worker trl DIR LAMBDA STEPS THREADS.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench_common import bench_json, finish, summary, thread_env  # noqa: E402 (tools/ is the script dir)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = {  # steps per run and warm-up steps left out, per shape
    "a": {"steps": 13, "warmup": 3},
    "b": {"steps": 5, "warmup": 2},
}




def run(cmd, env, log):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n" + p.stdout + p.stderr + "\n")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return bench_json(p.stdout), time.perf_counter() - t0


def load1():
    return os.getloadavg()[0]


# ---- TRL worker ----------------------------------------------------------------------------------------

def trl_worker(d, lmbda, steps, threads):
    import tempfile

    import torch
    torch.set_num_threads(threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    rows = json.load(open(os.path.join(d, "rows.json")))
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "student", "tokenizer.json"))
    tok.eos_token = tok.convert_ids_to_tokens(rows["eos"])
    tok.pad_token = tok.convert_ids_to_tokens(rows["pad"])
    student = AutoModelForCausalLM.from_pretrained(os.path.join(d, "student"), dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(os.path.join(d, "teacher"), dtype=torch.float32)
    for m in (student, teacher):  # stop at the tokenizer's EOS, as gkd's sampler does
        m.generation_config.eos_token_id = rows["eos"]
        m.generation_config.pad_token_id = rows["pad"]
        m.generation_config.bos_token_id = None

    data = Dataset.from_dict({"prompt_ids": rows["prompts"], "completion_ids": rows["completions"]})

    def collate(batch):
        p = torch.tensor([b["prompt_ids"] for b in batch])
        c = torch.tensor([b["completion_ids"] for b in batch])
        ids = torch.cat([p, c], dim=1)
        labels = ids.clone()
        labels[:, :p.shape[1]] = -100
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
                "prompts": p, "prompt_attention_mask": torch.ones_like(p)}

    class Timer(TrainerCallback):
        def __init__(self):
            self.step_s, self.end_to_end_s, self.t0, self.last_end = [], [], None, None

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.step_s.append(now - self.t0)
            if self.last_end is not None:
                self.end_to_end_s.append(now - self.last_end)
            self.last_end = now

    lengths = []
    original = GKDTrainer.generate_on_policy_outputs

    def counted(model, inputs, generation_config):
        ids, mask, labels = original(model, inputs, generation_config)
        lengths.append(float((labels != -100).sum()) / labels.shape[0])
        return ids, mask, labels

    GKDTrainer.generate_on_policy_outputs = staticmethod(counted)

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GKDConfig(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=8, gradient_accumulation_steps=1,
            learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0, optim="adamw_torch",
            bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
            lmbda=lmbda, beta=0.5, temperature=1.0, max_new_tokens=32, seq_kd=False, disable_dropout=True,
            logging_steps=10 ** 6, save_strategy="no", eval_strategy="no", report_to="none",
            dataloader_num_workers=0, seed=1, remove_unused_columns=False)
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=cfg, train_dataset=data,
                             processing_class=tok, data_collator=collate, callbacks=[timer])
        trainer.train()
    print("BENCH_JSON " + json.dumps({"step_s": timer.step_s, "end_to_end_s": timer.end_to_end_s,
                                      "output_length": lengths, "threads": torch.get_num_threads()}))


# ---- orchestration -------------------------------------------------------------------------------------

def versions(gkd):
    v = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "trl", "accelerate", "datasets", "tokenizers"):
        try:
            v[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            v[name] = f"not importable: {e}"
    try:
        v["gkd"] = subprocess.run([gkd, "--version"], capture_output=True, text=True).stdout.strip()
        v["gkd_commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True).stdout.strip()
    except OSError:
        pass
    return v


def prepare(a, shape):
    d = os.path.join(a.out, shape)
    if os.path.exists(os.path.join(d, "rows.json")) and not a.reprepare:
        return d
    cmd = [a.gkd, "run", os.path.join(ROOT, "tools", "bench_trl_prep.lua"), shape, d, a.data]
    if shape == "b":
        cmd.append(a.gguf)
    print("preparing shape " + shape + ": " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, env=thread_env(2))
    return d


def timed(steps, warmup):
    s = steps[warmup:]
    if not s:
        raise RuntimeError(f"no timed steps: {len(steps)} steps, warm-up {warmup}")
    return statistics.median(s)



def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="a,b")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--lambdas", default="1,0")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, help="steps per run (default: 13 at shape a, 5 at b)")
    p.add_argument("--warmup", type=int, help="first steps of each run left out (default: 3 at a, 2 at b)")
    p.add_argument("--gkd", default=os.path.join(ROOT, "build", "gkd"))
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "debdesc.jsonl.xz"))
    p.add_argument("--gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--out", default=os.path.join(ROOT, "out", "bench-trl"))
    p.add_argument("--reprepare", action="store_true", help="write the weights and rows again")
    p.add_argument("--json-out", help="also write the JSON here")
    p.add_argument("--gkd-teacher-weights", default="fp32", choices=("fp32", "bf16", "q8_0"),
                   help="gkd's teacher weight format (docs/inference-precision.md; TRL's stays float32)")
    p.add_argument("--worker", nargs=5, metavar=("KIND", "DIR", "LAMBDA", "STEPS", "THREADS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        kind, d, lmbda, steps, threads = a.worker
        assert kind == "trl"
        trl_worker(d, float(lmbda), int(steps), int(threads))
        return
    if not os.path.exists(a.data):
        a.data = "/work/shared/data/debdesc.jsonl.xz"
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "bench_trl.log")
    shapes = a.shapes.split(",")
    dirs = {s: prepare(a, s) for s in shapes}
    result = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "versions": versions(a.gkd),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": os.getloadavg(),
              "gkd_teacher_weights": a.gkd_teacher_weights, "configs": []}
    for shape in shapes:
        steps = a.steps or DEFAULTS[shape]["steps"]
        warmup = a.warmup if a.warmup is not None else DEFAULTS[shape]["warmup"]
        for threads in [int(t) for t in a.threads.split(",")]:
            env = thread_env(threads)
            for lmbda in [float(x) for x in a.lambdas.split(",")]:
                runs = {"gkd": [], "trl": []}
                for rep in range(a.reps):
                    for side in ("gkd", "trl"):
                        if side == "gkd":
                            db = os.path.join(a.out, f"runs-{shape}-{threads}-{rep}.db")
                            for suffix in ("", "-wal", "-shm"):
                                if os.path.exists(db + suffix):
                                    os.remove(db + suffix)
                            cmd = [a.gkd, "run", "--quiet", os.path.join(ROOT, "tools", "bench_trl_gkd.lua"),
                                   dirs[shape], f"{lmbda:g}", str(steps), db, a.gkd_teacher_weights]
                        else:
                            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "trl", dirs[shape],
                                   f"{lmbda:g}", str(steps), str(threads)]
                        l0 = load1()
                        r, wall = run(cmd, env, log)
                        r.update({"median_step_s": timed(r["step_s"], warmup), "load1_before": l0,
                                  "load1_after": load1(), "process_s": wall})
                        runs[side].append(r)
                        print(f"shape {shape} threads {threads} lambda {lmbda:g} rep {rep} {side}: "
                              f"{r['median_step_s']:.4f} s/step (load {l0:.2f})", file=sys.stderr)
                g = summary([r["median_step_s"] for r in runs["gkd"]])
                t = summary([r["median_step_s"] for r in runs["trl"]])
                t_e2e = summary([statistics.median(r["end_to_end_s"][max(0, warmup - 1):]) for r in runs["trl"]])
                phases = {k: statistics.median(ph[k] for r in runs["gkd"] for ph in r["phases"][warmup:])
                          for k in ("generate", "teacher", "student", "optimizer")}
                result["configs"].append({
                    "shape": shape, "threads": threads, "lambda": lmbda, "steps": steps, "warmup": warmup,
                    "reps": a.reps, "gkd_step_s": g, "trl_step_s": t, "trl_end_to_end_step_s": t_e2e,
                    "ratio_trl_over_gkd": t["median"] / g["median"],
                    "gkd_phase_s": phases,
                    "gkd_output_length": statistics.mean(x for r in runs["gkd"] for x in r["output_length"]),
                    "trl_output_length": (statistics.mean(x for r in runs["trl"] for x in r["output_length"])
                                          if any(r["output_length"] for r in runs["trl"]) else None),
                    "load1": [r["load1_before"] for side in ("gkd", "trl") for r in runs[side]],
                })
                c = result["configs"][-1]
                print(f"== shape {shape} threads {threads} lambda {lmbda:g}: gkd {g['median']:.4f} s, "
                      f"TRL {t['median']:.4f} s, TRL/gkd {c['ratio_trl_over_gkd']:.2f}", file=sys.stderr)
    finish(result, a.json_out)


if __name__ == "__main__":
    main()
