"""Checks a `gkd export --tensorboard DIR` folder against the run store it came from, reading the files
with the tensorboard package (the reader TensorBoard itself uses) and the store with Python's sqlite3.
Used by tests/test_export_tensorboard.sh:

    python3 export_tensorboard_check.py DB DIR all|sweep NAME|run NAME

Everything expected is derived here from the store independently of gkd's C code: the run folders
(docs/reports.md, "TensorBoard"), every scalar's steps and float32 values, the hparams of each run from
its config, the experiment summary, the text of the samples, the TFRecord checksums of every record,
and what the hparams plugin serves to the HPARAMS tab. Prints one line per failure and exits 1 when there is any."""
import glob
import json
import math
import os
import sqlite3
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

failures = []


def fail(msg):
    failures.append(msg)
    print("FAILED: " + msg, file=sys.stderr)


FLT_MAX = 3.4028234663852886e38


def f32(x):
    """The float32 TensorBoard holds for a stored double: beyond float's range, an infinity."""
    if abs(x) > FLT_MAX:
        return math.copysign(math.inf, x)
    return struct.unpack("<f", struct.pack("<f", x))[0]


def unix(t):
    return None if t is None else sqlite3.connect(":memory:").execute(
        "SELECT (julianday(?) - 2440587.5) * 86400.0", (t,)).fetchone()[0]


def safe_dir(name):
    parts = []
    for part in name.encode().split(b"/"):
        if not part:
            continue
        out = ""
        for i, c in enumerate(part[:120]):
            ok = chr(c).isascii() and (chr(c).isalnum() or chr(c) in "._,=+-") and not (i == 0 and c == ord("."))
            out += chr(c) if ok else "_"
        parts.append(out)
    return "/".join(parts) or "run"


def flatten(v, key=""):
    if v is None:
        return {}
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            out.update(flatten(x, key + "." + k if key else k))
        return out
    return {key: v}


def records(path):
    """The TFRecord payloads of a file, checking both masked CRC32Cs of each record."""
    data = open(path, "rb").read()
    at, out = 0, []
    while at < len(data):
        head = data[at:at + 8]
        (n,) = struct.unpack("<Q", head)
        (crc_len,) = struct.unpack("<I", data[at + 8:at + 12])
        payload = data[at + 12:at + 12 + n]
        (crc_data,) = struct.unpack("<I", data[at + 12 + n:at + 16 + n])
        if crc_len != masked_crc32c(head):
            fail(f"{path}: record at byte {at}: length checksum {crc_len:#x} is wrong")
        if crc_data != masked_crc32c(payload):
            fail(f"{path}: record at byte {at}: data checksum {crc_data:#x} is wrong")
        out.append(payload)
        at += 16 + n
    return out


def check_file_framing(folder):
    files = [f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))]
    events = [f for f in files if "tfevents" in f]
    if len(events) != 1 or len(files) != 1:
        fail(f"{folder}: expected exactly one event file, found {files}")
        return
    recs = records(os.path.join(folder, events[0]))
    first = event_pb2.Event.FromString(recs[0]) if recs else None
    if not first or first.file_version != "brain.Event:2":
        fail(f"{folder}: the first event is not file_version brain.Event:2")


def load(folder):
    ea = EventAccumulator(folder, size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def hparams_data(ea, tag):
    meta = ea.SummaryMetadata(tag)
    if meta.plugin_data.plugin_name != "hparams":
        fail(f"{tag}: plugin is {meta.plugin_data.plugin_name!r}, not hparams")
    return plugin_data_pb2.HParamsPluginData.FromString(meta.plugin_data.content)


def value_of(pb_value):
    kind = pb_value.WhichOneof("kind")
    return getattr(pb_value, kind) if kind else None


def check_run(db, run, folder, tags_seen):
    rid, name, status, config, started, finished = run
    ea = load(folder)
    where = f"run {name!r} ({folder})"
    tags = ea.Tags()

    expected = {}
    for step, metric, value in db.execute("SELECT step, name, value FROM metrics WHERE run_id = ?", (rid,)):
        expected.setdefault("train/" + metric, []).append((step, value))
    for step, split, metric, value in db.execute(
            "SELECT step, split, metric, value FROM evals WHERE run_id = ?", (rid,)):
        expected.setdefault(split + "/" + metric, []).append((step, value))
    if sorted(tags["scalars"]) != sorted(expected):
        fail(f"{where}: scalar tags {sorted(tags['scalars'])} != store's {sorted(expected)}")
    tags_seen.update(expected)
    wall = unix(started)
    for tag, rows in expected.items():
        if tag not in tags["scalars"]:
            continue
        rows.sort()
        got = ea.Scalars(tag)
        if [e.step for e in got] != [s for s, _ in rows]:
            fail(f"{where}: {tag}: steps {[e.step for e in got]} != {[s for s, _ in rows]}")
            continue
        for e, (step, v) in zip(got, rows):
            want = float("nan") if v is None else f32(v)
            if not (e.value == want or (math.isnan(want) and math.isnan(e.value))):
                fail(f"{where}: {tag} step {step}: {e.value!r} != float32 of the store's {v!r}")
            if abs(e.wall_time - wall) > 1e-3:
                fail(f"{where}: {tag} step {step}: wall_time {e.wall_time} is not the run's start {wall}")

    start = hparams_data(ea, "_hparams_/session_start_info").session_start_info
    got = {k: value_of(v) for k, v in start.hparams.items()}
    want = flatten(json.loads(config))
    if set(got) != set(want):
        fail(f"{where}: hparam keys differ: only exported {sorted(set(got) - set(want))}, "
             f"only in config {sorted(set(want) - set(got))}")
    for k in set(got) & set(want):
        w = want[k]
        g = json.loads(got[k]) if isinstance(w, list) else got[k]
        if g != w or type(g) is not type(float(w) if type(w) is int else w):
            fail(f"{where}: hparam {k}: exported {got[k]!r}, config has {w!r}")
    if abs(start.start_time_secs - wall) > 1e-3:
        fail(f"{where}: session start_time_secs {start.start_time_secs} != {wall}")
    end = hparams_data(ea, "_hparams_/session_end_info").session_end_info
    want_status = {"finished": 1, "failed": 2, "running": 3}.get(status, 0)
    if end.status != want_status:
        fail(f"{where}: session status {end.status} for a run in status {status!r} (want {want_status})")
    if finished and abs(end.end_time_secs - unix(finished)) > 1e-3:
        fail(f"{where}: end_time_secs {end.end_time_secs} != {unix(finished)}")

    samples = {}
    for step, split, prompt, output in db.execute(
            "SELECT step, split, prompt, output FROM samples WHERE run_id = ? ORDER BY id", (rid,)):
        samples.setdefault("samples/" + split, {}).setdefault(step, []).append([prompt, output])
    text_tags = sorted(t for t in tags["tensors"] if not t.startswith("_hparams_/"))
    if text_tags != sorted(samples):
        fail(f"{where}: text tags {text_tags} != {sorted(samples)}")
    for tag, by_step in samples.items():
        if tag not in text_tags:
            continue
        events = ea.Tensors(tag)
        if [e.step for e in events] != sorted(by_step):
            fail(f"{where}: {tag}: steps {[e.step for e in events]} != {sorted(by_step)}")
        for e in events:
            if ea.SummaryMetadata(tag).plugin_data.plugin_name != "text":
                fail(f"{where}: {tag}: not a text-plugin summary")
            arr = tensor_util.make_ndarray(e.tensor_proto)
            got_rows = [[c.decode() for c in row] for row in arr.tolist()]
            if got_rows != by_step.get(e.step):
                fail(f"{where}: {tag} step {e.step}: text {got_rows!r} != store's {by_step.get(e.step)!r}")


def check_hparams_tab(db, out, runs, folders):
    """What TensorBoard's HPARAMS tab receives: the hparams plugin's own /session_groups handler, over
    the folder as TensorBoard loads it, must list every run with the last value of each of its scalars."""
    try:
        import werkzeug.test
        import werkzeug.wrappers
        from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
        from tensorboard.plugins import base_plugin
        from tensorboard.plugins.hparams import hparams_plugin
    except ImportError as e:
        print(f"note: the HPARAMS plugin check is skipped: {e}")
        return
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(out)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, out)
    plugin = hparams_plugin.HParamsPlugin(base_plugin.TBContext(logdir=out, multiplexer=mux, data_provider=provider))
    request = {"experimentName": "", "colParams": [], "startIndex": 0, "sliceSize": 100000,
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}
    client = werkzeug.test.Client(plugin.get_plugin_apps()["/session_groups"], werkzeug.wrappers.Response)
    resp = client.post("/session_groups", data=json.dumps(request), content_type="application/json")
    if resp.status_code != 200:
        fail(f"HPARAMS: /session_groups answered {resp.status_code}: {resp.data[:300]!r}")
        return
    sessions = {s["name"]: s for g in json.loads(resp.data)["sessionGroups"] for s in g["sessions"]}
    if sorted(sessions) != sorted(folders):
        fail(f"HPARAMS: sessions {sorted(sessions)} != run folders {sorted(folders)}")
    for run, folder in zip(runs, folders):
        if folder not in sessions:
            continue
        last = {}
        for tag, value in db.execute(
                "SELECT 'train/' || name, value FROM metrics m WHERE run_id = ?1 AND step = "
                "(SELECT max(step) FROM metrics WHERE run_id = ?1 AND name = m.name) UNION ALL "
                "SELECT split || '/' || metric, value FROM evals e WHERE run_id = ?1 AND step = "
                "(SELECT max(step) FROM evals WHERE run_id = ?1 AND split = e.split AND metric = e.metric)",
                (run[0],)):
            last[tag] = float("nan") if value is None else f32(value)
        got = {m["name"]["tag"]: m["value"] for m in sessions[folder].get("metricValues", [])}
        if sorted(got) != sorted(last):
            fail(f"HPARAMS: session {folder}: metrics {sorted(got)} != {sorted(last)}")
        for tag in set(got) & set(last):
            g, w = float(got[tag]), last[tag]
            if not (g == w or (math.isnan(g) and math.isnan(w))):
                fail(f"HPARAMS: session {folder}: {tag} = {g!r}, the store's last value is {w!r}")


def main():
    db_path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    db = sqlite3.connect(db_path)
    sql = ("SELECT r.id, r.name, r.status, r.config, r.started_at, r.finished_at FROM runs r "
           "LEFT JOIN sweeps s ON s.id = r.sweep_id ")
    if mode == "sweep":
        runs = db.execute(sql + "WHERE s.name = ? ORDER BY r.id", (sys.argv[4],)).fetchall()
    elif mode == "run":
        runs = db.execute(sql + "WHERE r.name = ? ORDER BY r.id", (sys.argv[4],)).fetchall()
    else:
        runs = db.execute(sql + "ORDER BY r.id").fetchall()
    if not runs:
        fail("the store selects no runs: the test's store is broken")

    folders = []
    for run in runs:
        base = safe_dir(run[1])
        d = base if base.lower() not in [f.lower() for f in folders] else f"{base}-{run[0]}"
        folders.append(d)
    found = sorted(os.path.relpath(os.path.dirname(p), out)
                   for p in glob.glob(os.path.join(out, "**", "*tfevents*"), recursive=True))
    if found != sorted(folders + ["."]):
        fail(f"run folders {found} != expected {sorted(folders + ['.'])}")
    if any(f.endswith(".partial") for _, _, files in os.walk(out) for f in files):
        fail("a partial file was left behind")

    tags_seen = set()
    for run, folder in zip(runs, folders):
        path = os.path.join(out, folder)
        if not os.path.isdir(path):
            fail(f"no folder {path} for run {run[1]!r}")
            continue
        check_file_framing(path)
        check_run(db, run, path, tags_seen)

    check_file_framing(out)
    exp = hparams_data(load(out), "_hparams_/experiment").experiment
    configs = [flatten(json.loads(r[3])) for r in runs]
    keys = set().union(*configs)
    infos = {h.name: h for h in exp.hparam_infos}
    if set(infos) != keys:
        fail(f"experiment hparams {sorted(infos)} != the runs' config keys {sorted(keys)}")
    for k in keys & set(infos):
        vals = [json.dumps(c[k], sort_keys=True) if k in c else None for c in configs]
        differs = len(set(vals)) > 1
        if infos[k].differs != differs:
            fail(f"experiment hparam {k}: differs {infos[k].differs}, the runs' values {vals}")
        kinds = {type(c[k]).__name__ for c in configs if k in c}
        want = {"int": 3, "float": 3, "bool": 2, "str": 1, "list": 1}
        types = {want[t] for t in kinds}
        want_type = types.pop() if len(types) == 1 else 0
        if infos[k].type != want_type:
            fail(f"experiment hparam {k}: type {infos[k].type}, values of type {kinds}")
    metric_tags = [m.name.tag for m in exp.metric_infos]
    if sorted(metric_tags) != sorted(tags_seen):
        fail(f"experiment metrics {sorted(metric_tags)} != the runs' scalar tags {sorted(tags_seen)}")
    for m in exp.metric_infos:
        if (m.dataset_type == 1) != m.name.tag.startswith("train/"):
            fail(f"experiment metric {m.name.tag}: dataset_type {m.dataset_type}")

    check_hparams_tab(db, out, runs, folders)

    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(runs)} runs in {out} match {db_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
