"""Helpers shared by the by-hand comparison tools (tools/bench_trl.py, tools/bench_generate.py): the thread
settings both sides run under, the BENCH_JSON line gkd's Lua side prints, and the median summary."""
import json
import os
import statistics
import time


def thread_env(threads):
    """The environment for a side run on `threads` threads: every BLAS/OpenMP pool of either side set alike."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def bench_json(out):
    """The object of the first "BENCH_JSON {...}" line of a run's output."""
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError("no BENCH_JSON line in:\n" + out[-4000:])


def summary(values):
    """Median, extremes and the values themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def finish(result, json_out):
    """Stamps the end time and load on a tool's result, prints it as JSON and writes it to json_out if given."""
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if json_out:
        with open(json_out, "w") as f:
            f.write(text + "\n")
