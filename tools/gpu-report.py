#!/usr/bin/env python3
"""Writes RESULTS_DIR/benchmarks-gpu.md, a ready-to-paste summary of one GPU session, from what
gpu-bundle/run-gpu-tests.sh left in RESULTS_DIR: machine.txt, steps.tsv, the test logs, the gkd bench and
bench_torch.py JSON files, and gpu-memory.csv (nvidia-smi samples). Any of them may be missing or broken
(a step timed out, no PyTorch on the machine): the summary says so and goes on.
Usage: python3 gpu-report.py RESULTS_DIR
"""
import datetime
import json
import os
import re
import sys

ISSUE3 = "L=12, C=768, 12 heads of 64, SwiGLU 2048, V=32768"


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def load_json(path):
    text = read(path)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # a section that failed leaves the rest of the object intact; keep what parses
        start = text.find("{")
        try:
            return json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            return None


def fmt(x, digits=1):
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def ratio(a, b):
    return a / b if a and b else None


def machine_info(results):
    info = {"unresolved": []}
    for line in (read(os.path.join(results, "machine.txt")) or "").splitlines():
        key, sep, value = line.partition(": ")
        if sep and key == "unresolved":
            info[key].append(value.strip())
        elif sep and key not in info:
            info[key] = value.strip()
    return info


def steps(results):
    out = []
    for line in (read(os.path.join(results, "steps.tsv")) or "").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            start = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
            end = int(parts[4]) if len(parts) > 4 and parts[4].isdigit() else 0
            out.append({"name": parts[0], "rc": parts[1], "seconds": parts[2], "start": start, "end": end})
    return out


def log_path(results, name):
    return os.path.join(results, name.replace(":", "-") + ".log")


def verdict(rc):
    return {"0": "passed", "77": "SKIPPED (no device seen: a failure on a GPU machine)", "124": "TIMED OUT",
            "not-run": "not run (out of time)", "missing": "MISSING from the bundle"}.get(rc, f"FAILED (exit {rc})")


def test_section(results, all_steps):
    lines = ["## CUDA tests (the `ctest -L cuda` list)", "", "| test | result | seconds |", "|---|---|---|"]
    tests = [s for s in all_steps if s["name"].startswith("test:")]
    for s in tests:
        lines.append(f"| {s['name'][5:]} | {verdict(s['rc'])} | {s['seconds']} |")
    if not tests:
        lines.append("| (none ran) | | |")
    lines.append("")
    for s in all_steps:
        if not (s["name"].startswith("test") and s["rc"] not in ("0", "not-run")):
            continue
        log = read(log_path(results, s["name"])) or ""
        failed = [l for l in log.splitlines() if "check failed" in l or "gkd cuda:" in l or "error" in l.lower()]
        tail = (failed[:25] if failed else log.splitlines()[-25:])
        lines += [f"`{s['name']}` ({verdict(s['rc'])}), first failures:", "", "```", *tail, "```", ""]
    device_lines = set()
    for s in tests:
        for l in (read(log_path(results, s["name"])) or "").splitlines():
            if re.match(r"device \d+: ", l):
                device_lines.add(l.strip())
    if device_lines:
        lines += ["As the tests saw the device: " + "; ".join(sorted(device_lines)), ""]
    return lines


def train_rows(gkd, torch, label):
    rows = []
    g = (gkd or {}).get("train")
    if g:
        sgemm = ((gkd or {}).get("sgemm") or {}).get("gflops")
        rows.append(f"| gkd {label} | {fmt(g.get('tokens_per_s'), 0)} | {fmt(g.get('gflops', 0) / 1e3, 2)} | "
                    f"{fmt(g.get('step_s'), 3)} | {fmt(ratio(g.get('gflops'), sgemm), 3)} | n/a |")
    else:
        rows.append(f"| gkd {label} | n/a | n/a | n/a | n/a | n/a |")
    if torch and "train_tokens_per_s" in torch:
        rows.append(f"| PyTorch eager {label} | {fmt(torch['train_tokens_per_s'], 0)} | "
                    f"{fmt(torch['train_tflops'], 2)} | {fmt(torch['train_step_s'], 3)} | "
                    f"{fmt(torch.get('train_fraction_of_sgemm'), 3)} | "
                    f"{fmt(torch['train_peak_bytes'] / 2**30, 2)} GiB |")
    else:
        rows.append(f"| PyTorch eager {label} | n/a | n/a | n/a | n/a | n/a |")
    return rows


def bench_section(results):
    gkd3 = load_json(os.path.join(results, "gkd-issue3.json"))
    torch3 = load_json(os.path.join(results, "torch-issue3.json"))
    gkd3t = load_json(os.path.join(results, "gkd-issue3-tf32.json"))
    torch3t = load_json(os.path.join(results, "torch-issue3-tf32.json"))
    gkd3b = load_json(os.path.join(results, "gkd-issue3-bf16.json"))
    lines = [f"## Training step at issue 3's shape ({ISSUE3}; B=16, T=1024)", "",
             "TFLOP/s as `gkd_model_flops` counts them (forward + backward, attention included), on both sides.",
             "",
             "| | tokens/s | TFLOP/s | step (s) | fraction of the measured sgemm peak | peak memory (PyTorch) |",
             "|---|---|---|---|---|---|"]
    lines += train_rows(gkd3, torch3, "fp32")
    if gkd3t or torch3t:
        lines += train_rows(gkd3t, torch3t, "TF32")
    if gkd3b:
        lines += train_rows(gkd3b, None, "bf16 products (fp32 master weights)")
    g_tps = ((gkd3 or {}).get("train") or {}).get("tokens_per_s")
    t_tps = (torch3 or {}).get("train_tokens_per_s")
    r = ratio(g_tps, t_tps)
    lines += ["", f"gkd / PyTorch training tokens/s, fp32: **{fmt(r, 2)}** (issue 3 asks >= 1)."]
    g_sgemm = ((gkd3 or {}).get("sgemm") or {})
    lines += ["", "Measured fp32 matrix-product peak (cuBLAS sgemm): gkd bench "
              f"{fmt(g_sgemm.get('gflops', 0) / 1e3 if g_sgemm else None, 2)} TFLOP/s at n={g_sgemm.get('n', 'n/a')}; "
              f"torch.mm {fmt((torch3 or {}).get('sgemm_tflops'), 2)} TFLOP/s at n={(torch3 or {}).get('sgemm_n', 'n/a')}."]
    if gkd3t or torch3t:
        lines.append(f"With TF32: gkd bench {fmt(((gkd3t or {}).get('sgemm') or {}).get('gflops', 0) / 1e3, 2)}, "
                     f"torch.mm {fmt((torch3t or {}).get('sgemm_tflops'), 2)} TFLOP/s.")
    if gkd3b:
        lines.append(f"With bf16 operands: gkd bench {fmt(((gkd3b or {}).get('sgemm') or {}).get('gflops', 0) / 1e3, 2)} "
                     "TFLOP/s (the bench's sgemm runs at the precision in effect).")

    g_gen = ((gkd3 or {}).get("generate") or {}).get("tokens_per_s")
    t_gen = (torch3 or {}).get("gen_tokens_per_s")
    lines += ["", "## Generation (B=64, 16-token prompts, 128 new tokens, temperature 1)", "",
              "| | tokens/s |", "|---|---|",
              f"| gkd (KV cache) | {fmt(g_gen, 0)} |",
              f"| {(torch3 or {}).get('generate_impl', 'transformers generate')} | {fmt(t_gen, 0)} |", "",
              f"gkd / transformers: **{fmt(ratio(g_gen, t_gen), 2)}** (issue 3 asks >= 3)."]

    small = load_json(os.path.join(results, "gkd-small.json"))
    tsmall = load_json(os.path.join(results, "torch-small.json"))
    lines += ["", "## `gkd bench` defaults (L=6 C=384 H=6 KV=2 F=1024 V=8192; B=4 T=256; generation 32 x 64)", ""]
    if small:
        tr, gen = small.get("train") or {}, small.get("generate") or {}
        lines.append(f"- gkd: training {fmt(tr.get('tokens_per_s'), 0)} tokens/s ({fmt(tr.get('gflops'), 0)} GFLOP/s), "
                     f"generation {fmt(gen.get('tokens_per_s'), 0)} tokens/s")
        if small.get("distill"):
            d = small["distill"]
            lines.append(f"- distill (chunked JSD, N={d.get('positions')}, V={d.get('vocab')}): {fmt(d.get('seconds'), 4)} s, "
                         f"workspace {fmt(d.get('workspace_fraction'), 4)} of both logits")
        if small.get("gkd_step"):
            s = small["gkd_step"]
            lines.append(f"- on-policy GKD step: {fmt(s.get('step_s'), 4)} s (generate {fmt(s.get('generate_s'), 4)}, "
                         f"teacher {fmt(s.get('teacher_forward_s'), 4)}, student {fmt(s.get('student_forward_backward_s'), 4)}, "
                         f"optimizer {fmt(s.get('optimizer_s'), 4)}), logging {fmt(100 * (s.get('logging_fraction') or 0), 2)} %")
    else:
        lines.append("- gkd: no result (see gkd-small.log)")
    if tsmall:
        lines.append(f"- PyTorch eager, same shapes: training {fmt(tsmall.get('train_tokens_per_s'), 0)} tokens/s, "
                     f"generation ({tsmall.get('generate_impl', '?')}) {fmt(tsmall.get('gen_tokens_per_s'), 0)} tokens/s")
    return lines


def parse_smi_time(text):
    for pattern in ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(text.strip(), pattern).timestamp()
        except ValueError:
            pass
    return None


def memory_section(results, all_steps):
    lines = ["## Memory", ""]
    for s in all_steps:
        for l in (read(log_path(results, s["name"])) or "").splitlines():
            if l.startswith("memory:"):
                lines.append(f"- {s['name']}: {l}")
    samples = []
    for line in (read(os.path.join(results, "gpu-memory.csv")) or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            samples.append((parse_smi_time(parts[0]), int(parts[1])))
    if samples:
        lines += ["", "Device memory in use (nvidia-smi, MiB), per step: at the start, the largest, at the end.", "",
                  "| step | start | max | end |", "|---|---|---|---|"]
        for s in all_steps:
            inside = [m for t, m in samples if t is not None and s["start"] - 1 <= t <= s["end"] + 1]
            if inside:
                lines.append(f"| {s['name']} | {inside[0]} | {max(inside)} | {inside[-1]} |")
        lines.append(f"\nBaseline before and after the run: {samples[0][1]} and {samples[-1][1]} MiB.")
    else:
        lines.append("No nvidia-smi samples.")
    return lines


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else "."
    info = machine_info(results)
    all_steps = steps(results)
    gpu = info.get("gpu", "unknown GPU")
    lines = [f"# gkd on {gpu.split(',')[0]} ({info.get('date_utc', 'date unknown')} UTC)", "",
             f"- GPU: {gpu} (name, driver, memory, max SM clock, power limit)",
             f"- host: {info.get('cpu', '?')}, {info.get('cores', '?')} cores",
             f"- {info.get('python', 'python ?')}; torch {info.get('torch', '?')}; "
             f"transformers {info.get('transformers', '?')}",
             f"- the whole run: {info.get('total_s', '?')} s", ""]
    if info["unresolved"]:
        lines += ["Unresolved libraries: " + "; ".join(info["unresolved"]), ""]
    for section in (test_section(results, all_steps), bench_section(results), memory_section(results, all_steps)):
        lines += section + [""]
    lines += ["## Steps", "", "| step | exit | seconds |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['rc']} | {s['seconds']} |" for s in all_steps]
    out = os.path.join(results, "benchmarks-gpu.md")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
