#!/usr/bin/env python3
"""Batch-1 sampling speed of SmolLM2-135M-Instruct: gkd against Hugging Face transformers' generate and
llama.cpp (llama-cpp-python), issue 12 part 4. Run by hand, not in CI.

    tools/fetch-smollm2.sh && python3 tools/bench_generate.py          # threads 1 and 2, 3 reps
    python3 tools/bench_generate.py --threads 1 --reps 2 --engines gkd,llama
    python3 tools/bench_generate.py --gkd-args "--weights bf16"       # extra options for `gkd sample`

Engines (each rep runs them in this order, each in a fresh process, so all see the same machine load):
- gkd: `gkd sample --model GGUF` as a process, with --gkd-args appended. The process loads the model each
  time (the Q4_1 GGUF dequantised to float32), so it runs twice: with --max-new-tokens N and with 1; the
  difference is N - 1 decode steps (the load and the prompt cancel out).
- gkd-lua: the same model in one gkd process (tools/bench_generate_gkd.lua, model:sample), warmed up; it
  does not see --gkd-args.
- hf: transformers' LlamaForCausalLM.generate in float32 on the Hugging Face directory gkd exported from the
  same GGUF (`model:save(dir)`: the dequantised weights), sdpa attention, KV cache, torch.set_num_threads.
- llama: llama-cpp-python's Llama.generate on the same GGUF file (Q4_1 weights as stored: llama.cpp
  multiplies the quantised blocks, it does not dequantise to float32), n_threads = n_threads_batch = N.
Every engine samples at temperature 1 from the full distribution (no top-k, top-p, min-p, repetition
penalty) with batch 1 and the same prompt (text, encoded by each engine's own tokenizer; the counts are
reported). Every engine ignores EOS and runs to N tokens: hf and llama by their options, gkd with
`gkd sample --ignore-eos` (since 2026-12-04; before, gkd stopped at EOS and its rates used the counts read
from its output, which they still do).

Reported per engine and thread count (medians over reps, with the lowest and highest):
- decode_tok_s = (tokens(N) - tokens(1)) / (time(N) - time(1)): the rate of the decode steps alone, the
  same definition for every engine (this is the headline figure);
- whole_tok_s = tokens(N) / time(N): prompt included (for gkd: the whole process, load included).
Ratios: gkd / hf and gkd / llama of decode_tok_s (gkd's CLI figure; gkd-lua's beside it).

Versions used for docs/benchmarks.md (2026-12-03): torch 2.15.0 (PyPI), transformers 5.24.0, llama-cpp-python
0.3.36 (built from the PyPI sdist: `CMAKE_ARGS="-DGGML_NATIVE=ON" pip install llama-cpp-python==0.3.36`,
about 20 minutes on 2 busy cores); printed by the tool.

Internal modes: --worker hf|llama MODEL THREADS N SEED PROMPT.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

from bench_common import bench_json, finish, summary, thread_env  # noqa: E402 (tools/ is the script dir)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = ("Package: vim\nDescription: Vim is an almost compatible version of the UNIX editor Vi. Many new "
          "features have been added: multi level undo, syntax highlighting, command line history,")




def run(cmd, env, log):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    with open(log, "a") as f:
        f.write("$ " + " ".join(shlex.quote(c) for c in cmd) + f"\n({wall:.3f} s)\n" + p.stdout + p.stderr + "\n")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p.stdout, wall


# ---- workers (one model load, a warm-up, then 1 and N new tokens) --------------------------------------

def hf_worker(model_dir, threads, n, seed, prompt):
    import torch
    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # always N new tokens
    model.generation_config.bos_token_id = None
    ids = torch.tensor([tok.encode(prompt)])
    mask = torch.ones_like(ids)

    def gen(k, s):
        torch.manual_seed(s)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, max_new_tokens=k, min_new_tokens=0, pad_token_id=0, use_cache=True)
        return {"new_tokens": out.shape[1] - ids.shape[1], "seconds": time.perf_counter() - t0}

    gen(8, seed)
    runs = [gen(1, seed + 1), gen(n, seed + 1)]
    print("BENCH_JSON " + json.dumps({"prompt_tokens": ids.shape[1], "runs": runs,
                                      "threads": torch.get_num_threads()}))


def llama_worker(gguf, threads, n, seed, prompt):
    from llama_cpp import Llama
    llm = Llama(model_path=gguf, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads, seed=seed,
                verbose=False)
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)

    def gen(k, s):
        llm.reset()
        llm.set_seed(s)
        t0 = time.perf_counter()
        got = 0
        for _ in llm.generate(ids, temp=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0,
                              reset=True):
            got += 1
            if got == k:
                break
        return {"new_tokens": got, "seconds": time.perf_counter() - t0}

    gen(8, seed)
    runs = [gen(1, seed + 1), gen(n, seed + 1)]
    print("BENCH_JSON " + json.dumps({"prompt_tokens": len(ids), "runs": runs}))


# ---- orchestration -------------------------------------------------------------------------------------

def rates(pairs):
    """pairs: [(one, full)] with {new_tokens, seconds} -> decode and whole rates per pair."""
    out = []
    for one, full in pairs:
        dt = full["seconds"] - one["seconds"]
        dk = full["new_tokens"] - one["new_tokens"]
        out.append({"decode_tok_s": dk / dt if dt > 0 and dk > 0 else float("nan"),
                    "whole_tok_s": full["new_tokens"] / full["seconds"], "new_tokens": full["new_tokens"]})
    return out



def versions(gkd):
    v = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "llama_cpp"):
        try:
            v[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            v[name] = f"not importable: {e}"
    v["gkd_commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()
    return v


def export_hf(a):
    if os.path.exists(os.path.join(a.hf_dir, "model.safetensors")):
        return
    code = "local m = assert(gkd.model.load(arg[1], {inference = true})); assert(m:save(arg[2]))"
    subprocess.run([a.gkd, "run", "-e", code, a.gguf, a.hf_dir], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--engines", default="gkd,gkd-lua,hf,llama")
    p.add_argument("--gkd-args", default="", help="extra options for `gkd sample`, e.g. \"--weights bf16\"")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gkd", default=os.path.join(ROOT, "build", "gkd"))
    p.add_argument("--gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--hf-dir", default=os.path.join(ROOT, "out", "bench-generate", "smollm2-hf"),
                   help="the Hugging Face directory gkd exports from --gguf (made when missing)")
    p.add_argument("--out", default=os.path.join(ROOT, "out", "bench-generate"))
    p.add_argument("--json-out")
    p.add_argument("--worker", nargs=6, metavar=("KIND", "MODEL", "THREADS", "N", "SEED", "PROMPT"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        kind, model, threads, n, seed, prompt = a.worker
        (hf_worker if kind == "hf" else llama_worker)(model, int(threads), int(n), int(seed), prompt)
        return
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(a.out, "bench_generate.log")
    engines = a.engines.split(",")
    if "hf" in engines:
        export_hf(a)
    n = a.new_tokens
    result = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "versions": versions(a.gkd),
              "prompt": a.prompt, "new_tokens": n, "gkd_args": a.gkd_args,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_before": os.getloadavg(), "configs": []}
    for threads in [int(t) for t in a.threads.split(",")]:
        env = thread_env(threads)
        per = {e: [] for e in engines}
        prompt_tokens, loads = {}, []
        for rep in range(a.reps):
            seed = a.seed + 100 * rep
            for e in engines:
                loads.append(os.getloadavg()[0])
                if e == "gkd":
                    pair = []
                    for k in (1, n):
                        cmd = [a.gkd, "sample", "--model", a.gguf, "--prompt", a.prompt, "--temperature", "1",
                               "--max-new-tokens", str(k), "--seed", str(seed + 1), "--ignore-eos"] + \
                            shlex.split(a.gkd_args)
                        out, wall = run(cmd, env, log)
                        m = re.search(r"^\[1\] \((\d+) tokens", out, re.M)
                        if not m:
                            raise RuntimeError("no token count in gkd sample's output:\n" + out[-2000:])
                        pair.append({"new_tokens": int(m.group(1)), "seconds": wall})
                elif e == "gkd-lua":
                    out, _ = run([a.gkd, "run", "--quiet", os.path.join(ROOT, "tools", "bench_generate_gkd.lua"),
                                  a.gguf, a.prompt, str(n), "1", str(seed)], env, log)
                    r = bench_json(out)
                    pair, prompt_tokens[e] = r["runs"], r["prompt_tokens"]
                else:
                    model = a.hf_dir if e == "hf" else a.gguf
                    out, _ = run([sys.executable, os.path.abspath(__file__), "--worker", e, model, str(threads),
                                  str(n), str(seed), a.prompt], env, log)
                    r = bench_json(out)
                    pair, prompt_tokens[e] = r["runs"], r["prompt_tokens"]
                rr = rates([(pair[0], pair[1])])[0]
                per[e].append(rr)
                print(f"threads {threads} rep {rep} {e}: decode {rr['decode_tok_s']:.1f} tok/s, whole "
                      f"{rr['whole_tok_s']:.1f} tok/s, {rr['new_tokens']} tokens (load {loads[-1]:.2f})",
                      file=sys.stderr)
        cfg = {"threads": threads, "reps": a.reps, "prompt_tokens": prompt_tokens, "load1": loads, "engines": {}}
        for e in engines:
            cfg["engines"][e] = {"decode_tok_s": summary([r["decode_tok_s"] for r in per[e]]),
                                 "whole_tok_s": summary([r["whole_tok_s"] for r in per[e]]),
                                 "new_tokens": [r["new_tokens"] for r in per[e]]}
        med = {e: cfg["engines"][e]["decode_tok_s"]["median"] for e in engines}
        for g in ("gkd", "gkd-lua"):
            for other in ("hf", "llama"):
                if g in med and other in med:
                    cfg[f"{g}_over_{other}"] = med[g] / med[other]
        result["configs"].append(cfg)
        print(f"== threads {threads}: " + ", ".join(f"{e} {v:.1f}" for e, v in med.items()) + " tok/s (decode)",
              file=sys.stderr)
    finish(result, a.json_out)


if __name__ == "__main__":
    main()
