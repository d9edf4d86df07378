"""Distributed latency across real peer processes, over emulated links.

One phone-scale model (ResNet-50 or MobileNetV1 at 224x224x3, 1000 classes;
``--model``),
exported in float32 and int8, in six variants that differ only in which
channels cross the network (gates made binary without training: random
logits, then ``finalize_gates``; latency does not depend on trained weights):

* ``single``       the unsplit model on one device (1x1.0): no network;
* ``dense_tp``     2x0.5, every gate open (dense tensor parallelism);
* ``independent``  2x0.5, every gate shut (two branches, fused at the end);
* ``disco_0.2`` / ``disco_0.1``  2x0.5 at byte budgets 0.2 / 0.1;
* ``disco_link``   2x0.5 with a link budget (``Link(mbps=200, latency_ms=2)``:
  bytes / bandwidth plus latency per exchange point, few exchange points).

Each configuration runs as it would on two phones: ``paradis run``'s
Coordinator (device 0) in this process pinned to core 0, ``paradis peer``
(device 1) in its own process pinned to core 1, one LiteRT thread each, over
loopback TCP with the link emulated in each sender (FRAME_FORMAT.md section
9) for the profiles ``lan`` (1000 Mbps, 0.2 ms), ``wifi`` (200, 2), ``slow``
(50, 5) and ``weak`` (10, 10). Latency: median over sequential inferences
(one in flight). Also measured here, side by side:

* the runtime's cost per exchange against a raw TCP send of the same bytes
  (ping-pong between two processes, both pinned);
* the planner's prediction (``paradis plan``: the stage profile measured
  here plus the link model) against each measured latency;
* a 1,000-request soak over 2 peers: resident memory growth after warm-up.

Writes docs/results/latency.json, latency.md and latency.png.

    python bench/latency.py [--model resnet50|mobilenet_v1|resnet20] [--runs N] [--max-seconds S] [--quick]
                            [--export-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

VARIANTS = ("single", "dense_tp", "independent", "disco_0.2", "disco_0.1", "disco_link")
LINKS = {"lan": (1000.0, 0.2), "wifi": (200.0, 2.0), "slow": (50.0, 5.0), "weak": (10.0, 10.0)}
PRECISIONS = ("float32", "int8")
LINK_BUDGET = (200.0, 2.0)  # disco_link's budget: the wifi profile
KEY = "latency-bench-session-key-" + "0" * 16
MODELS = {
    "resnet50": {"label": "ResNet-50, 224x224x3, 1000 classes", "input_shape": (224, 224, 3), "classes": 1000},
    "mobilenet_v1": {"label": "MobileNetV1 width 1.0, 224x224x3, 1000 classes", "input_shape": (224, 224, 3),
                     "classes": 1000},
    "resnet20": {"label": "CIFAR ResNet-20 width 1.0, 28x28x1 (quick check)", "input_shape": (28, 28, 1),
                 "classes": 10},
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- models and bundles --------------------------------------------------------------------------------

def build_model(name: str, variant: str):
    import numpy as np
    import keras
    from paradis_tf.models import CifarResNet, MobileNetV1, ResNet

    keras.utils.set_random_seed(0)
    spec = MODELS[name]
    switch = "1x1.0" if variant == "single" else "2x0.5"
    gates = {"dense_tp": "open", "independent": "shut"}.get(variant, "learned")
    kw = dict(num_classes=spec["classes"], input_shape=spec["input_shape"], switches=switch, gates=gates)
    if name == "resnet50":
        model = ResNet(depth=50, width=1.0, **kw)
    elif name == "mobilenet_v1":
        model = MobileNetV1(width=1.0, **kw)
    else:
        model = CifarResNet(depth=20, width=1.0, **kw)
    if variant.startswith("disco_"):
        rng = np.random.default_rng(0)
        for w in model.weights:
            if "gate_logits" in w.path:
                w.assign(rng.normal(size=w.shape).astype("float32"))
        if variant == "disco_link":
            from paradis_tf.training import Link

            model.finalize_gates(budget=Link(mbps=LINK_BUDGET[0], latency_ms=LINK_BUDGET[1]))
        else:
            model.finalize_gates(budget=float(variant.split("_")[1]))
    return model, switch


def calibration_images(name: str, n: int = 32):
    """Fashion-MNIST test images as stand-in photos (int8 ranges only):
    resized to the model's side and repeated to its channels."""
    import numpy as np
    from paradis_tf.data import load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    x = images[:n].astype("float32") / 255.0
    h, w, c = MODELS[name]["input_shape"]
    if (h, w) != (28, 28):
        import tensorflow as tf

        x = tf.image.resize(x, (h, w), method="bilinear").numpy()
    return np.clip(np.repeat(x, c, axis=-1), 0.0, 1.0).astype("float32")


def bundle_for(name: str, variant: str, precision: str) -> tuple:
    """(bundle folder, switch), exported once and cached under bench/.runs/latency."""
    folder = os.path.join(C.RUNS, "latency", name, variant, precision)
    switch = "1x1.0" if variant == "single" else "2x0.5"
    if os.path.exists(os.path.join(folder, "manifest.json")):
        return folder, switch
    from paradis_export import export_bundle

    t0 = time.time()
    model, switch = build_model(name, variant)
    export_bundle(model, switch, folder, int8=precision == "int8",
                  calibration=calibration_images(name) if precision == "int8" else None, progress=None,
                  overwrite=True)
    print(f"  exported {name} {variant} {precision} in {time.time() - t0:.0f} s", flush=True)
    return folder, switch


# -- peers -----------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pin(core: int):
    cores = os.sched_getaffinity(0)
    return lambda: os.sched_setaffinity(0, {core}) if core in cores or not cores else None


class _Peer:
    """``paradis peer`` for device 1, pinned to core 1, with the link emulated."""

    def __init__(self, bundle, link, trace=None, core=1):
        self.port = _free_port()
        os.makedirs(os.path.join(C.RUNS, "latency"), exist_ok=True)
        self.log = open(os.path.join(C.RUNS, "latency", "peer.log"), "w")
        args = [sys.executable, "-m", "paradis_cli", "peer", "--bundle", bundle, "--device", "1", "--peers",
                f"127.0.0.1:{self.port}", "--session-key-file", _key_file(), "--link-mbps", str(link[0]),
                "--link-latency-ms", str(link[1]), "--peer-deadline", "60", "--request-deadline", "120"]
        if trace:
            args += ["--trace", trace]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_pin(core), env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.time() + 120
        while "ready on" not in open(self.log.name).read():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"peer did not start:\n{open(self.log.name).read()[-2000:]}")
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _key_file() -> str:
    path = os.path.join(C.RUNS, "latency", "session.key")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(KEY)
    return path


def _rss_kib(pid="self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- measurements ------------------------------------------------------------------------------------------

TRACES = [os.path.join(C.RUNS, "latency", f"trace{d}.jsonl") for d in (0, 1)]  # device 0 (here), device 1


def measure(bundle: str, switch: str, link, image, runs: int, max_seconds: float, warmup: int = 2) -> dict:
    """Sequential inferences through a Coordinator (this process, core 0)
    and, for a split switch, a peer process (core 1); both trace every
    request into TRACES."""
    from paradis_runtime import Link, PeerConfig, connect

    config = PeerConfig(key=KEY, link=Link(*link), peer_deadline=60.0, request_deadline=120.0)
    for path in TRACES:
        if os.path.exists(path):
            os.remove(path)
    trace = TRACES[1]
    peer = _Peer(bundle, link, trace) if switch != "1x1.0" else None
    try:
        with connect(bundle, [f"127.0.0.1:{peer.port}"] if peer else [], config=config, switches=[switch],
                     timeout=60, trace=TRACES[0]) as session:
            for _ in range(warmup):
                session.run(image)
            results, start = [], time.time()
            while len(results) < runs and (len(results) < 3 or time.time() - start < max_seconds):
                results.append(session.run(image))
    finally:
        if peer:
            peer.stop()
    row = {"median_ms": statistics.median(r.latency_s for r in results) * 1e3,
           "p90_ms": sorted(r.latency_s for r in results)[int(0.9 * (len(results) - 1))] * 1e3,
           "runs": len(results),
           "device0_compute_ms": statistics.median(r.compute_s for r in results) * 1e3,
           "device0_wire_ms": statistics.median(r.wire_s for r in results) * 1e3,
           "device0_wait_ms": statistics.median(r.wait_s for r in results) * 1e3}
    if peer and os.path.exists(trace):
        with open(trace) as f:
            records = [json.loads(line) for line in f][warmup:]
        if records:
            row["device1_compute_ms"] = statistics.median(r["compute_s"] for r in records) * 1e3
            row["device1_wire_ms"] = statistics.median(r["wire_s"] for r in records) * 1e3
    return row


def plan_ms(bundle: str, switch: str, link, profile) -> float:
    """``paradis plan``'s prediction for ``switch`` over ``link`` (the
    profile's per-frame overhead included, if it has one)."""
    from paradis_runtime.planner import plan

    return next(r for r in plan(bundle, profile, link[0], link[1]) if r["switch"] == switch)["predicted_ms"]


def trace_profile(bundle: str, switch: str, image, runs: int, max_seconds: float) -> tuple:
    """The planner's profile from a run across the same two pinned processes
    on unemulated loopback (``paradis profile --from-trace``): stage times as
    they run in the system, and the runtime's per-frame overhead. Returns
    (profile, the loopback row)."""
    from paradis_runtime.planner import profile_from_traces

    row = measure(bundle, switch, (0.0, 0.0), image, runs, max_seconds)
    return profile_from_traces(bundle, TRACES, skip=2), row


def profile_pinned(bundle: str, repeats: int) -> dict:
    """The planner's stage profile, measured on core 0 (where device 0 runs)."""
    from paradis_runtime.planner import profile_bundle

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        return profile_bundle(bundle, repeats=repeats, warmup=2)
    finally:
        os.sched_setaffinity(0, before)


_ECHO = r"""
import socket, sys
n_in, n_out = int(sys.argv[1]), int(sys.argv[2])
srv = socket.create_server(("127.0.0.1", 0)); print(srv.getsockname()[1], flush=True)
c, _ = srv.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = bytearray(n_in); view = memoryview(buf); reply = bytes(n_out)
while True:
    got = 0
    while got < n_in:
        k = c.recv_into(view[got:], n_in - got)
        if not k: sys.exit(0)
        got += k
    c.sendall(reply)
"""


def exchange_overhead(bundle: str, rounds: int = 300) -> dict:
    """One exchange through the runtime (a TENSOR frame each way between two
    peer processes: built, written, read, checked against the graph and
    handed over on the reader thread, which is where the runtime computes
    when no stage is running) against a raw TCP ping-pong of the same byte
    counts, both pinned to cores 0 and 1. Uses the largest piece each way of
    the bundle's 2x0.5 graph."""
    import numpy as np
    from paradis_runtime import Link, PeerConfig, Peer
    from paradis_runtime._program import DeviceProgram

    graph_path = os.path.join(bundle, "2x0.5", "fusion_graph.json")
    p0 = DeviceProgram(graph_path, 0, load=False)
    out_name = max((n for n, ds in p0.send_to.items() if 1 in ds and n != p0.input_name),
                   key=lambda n: p0.specs[n].payload_len)
    back_name = max((p0.names[i] for i in p0.expected[1]), key=lambda n: p0.specs[n].payload_len)
    n_out, n_back = 64 + p0.specs[out_name].payload_len, 64 + p0.specs[back_name].payload_len

    # Raw: bytes out, bytes back, to an echo process on core 1.
    echo = subprocess.Popen([sys.executable, "-c", _ECHO, str(n_out), str(n_back)], stdout=subprocess.PIPE,
                            text=True, preexec_fn=_pin(1))
    port = int(echo.stdout.readline())
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload, buf = bytes(n_out), bytearray(n_back)

    def raw_round() -> float:
        t0 = time.perf_counter()
        s.sendall(payload)
        view, got = memoryview(buf), 0
        while got < n_back:
            got += s.recv_into(view[got:], n_back - got)
        return time.perf_counter() - t0

    # Runtime: device 1 (a `paradis peer`-style echo process, also on core 1)
    # answers each TENSOR with a TENSOR.
    port = _free_port()
    script = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
              f"import latency; latency._echo_peer({graph_path!r}, {port}, {back_name!r})")
    peer = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            preexec_fn=_pin(1))
    peer.stdout.readline()
    import threading

    got = threading.Event()
    arrived = []
    node = Peer([p0], PeerConfig(key=KEY, link=Link()), {1: ("127.0.0.1", port)})

    def on_frame(conn, h, body):
        # Stamped on the reader thread, where the runtime hands a checked frame
        # to compute: the benchmark's own wake-up of its main thread is not counted.
        arrived.append(time.perf_counter())
        got.set()

    node._frame = on_frame  # the echo: one TENSOR back per TENSOR out
    node.start()
    while not node.connected(p0, 1):
        time.sleep(0.01)
    frame_array = np.zeros(p0.specs[out_name].shape, "float32" if p0.specs[out_name].dtype == "float32" else "int8")

    def runtime_round(i: int) -> float:
        got.clear()
        t0 = time.perf_counter()
        node.send_to(p0, 1, p0.frame(out_name, i + 1, frame_array))
        got.wait(10)
        return arrived[-1] - t0

    # Interleaved, one round of each in turn: on a shared, noisy machine both
    # then see the same conditions (run one after the other, the raw median
    # alone moved by 60 % between runs here).
    raw, ours = [], []
    for i in range(rounds + 20):
        r, o = raw_round(), runtime_round(i)
        if i >= 20:
            raw.append(r)
            ours.append(o)
    s.close()
    echo.wait(10)
    node.stop(graceful=True)
    peer.terminate()
    peer.wait(10)
    raw_ms, ours_ms = statistics.median(raw) * 1e3, statistics.median(ours) * 1e3
    return {"bytes_out": n_out, "bytes_back": n_back, "raw_tcp_round_trip_ms": raw_ms,
            "runtime_round_trip_ms": ours_ms, "ratio": ours_ms / raw_ms, "rounds": rounds}


def _echo_peer(graph_path: str, port: int, back_name: str) -> None:
    """Device 1 of the exchange benchmark: answers every TENSOR from device 0
    with ``back_name`` for the same request (the frame checked as always)."""
    import numpy as np
    from paradis_runtime import PeerConfig, Peer
    from paradis_runtime._program import DeviceProgram

    p1 = DeviceProgram(graph_path, 1, load=False)
    spec = p1.specs[back_name]
    reply = np.zeros(spec.shape, "float32" if spec.dtype == "float32" else "int8")
    node = Peer([p1], PeerConfig(key=KEY), listen=("127.0.0.1", port))
    node._frame = lambda conn, h, body: conn.send(p1.frame(back_name, h.request_id, reply))
    node.start()
    print("ready", flush=True)
    while True:
        time.sleep(1)


def soak(bundle: str, switch: str, image, requests: int, warmup: int) -> dict:
    """``requests`` inferences over 2 peer processes; resident memory of the
    coordinator (this process) and of each peer after warm-up and at the end."""
    from paradis_runtime import PeerConfig, connect

    config = PeerConfig(key=KEY)
    ports = [_free_port(), _free_port()]
    peers_arg = ",".join(f"127.0.0.1:{p}" for p in ports)
    procs = []
    log = open(os.path.join(C.RUNS, "latency", "soak.log"), "w")
    try:
        for d in (1, 2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "paradis_cli", "peer", "--bundle", bundle, "--device", str(d), "--peers",
                 peers_arg, "--session-key-file", _key_file()], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        with connect(bundle, peers_arg, config=config, switches=[switch], timeout=120, in_flight=2) as session:
            futures = [session.submit(image) for _ in range(warmup)]
            [f.result() for f in futures]
            start = {"coordinator": _rss_kib()} | {f"peer{d}": _rss_kib(p.pid) for d, p in zip((1, 2), procs)}
            t0 = time.time()
            futures = [session.submit(image) for _ in range(requests - warmup)]
            failed = sum(1 for f in futures if f.exception() is not None)
            seconds = time.time() - t0
            end = {"coordinator": _rss_kib()} | {f"peer{d}": _rss_kib(p.pid) for d, p in zip((1, 2), procs)}
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        log.close()
    growth = {k: (end[k] - start[k]) / start[k] for k in start}
    return {"requests": requests, "warmup": warmup, "failed": failed, "seconds": seconds, "rss_kib_after_warmup": start,
            "rss_kib_end": end, "growth": growth, "max_growth": max(growth.values()), "switch": switch}


# -- report ----------------------------------------------------------------------------------------------------

def summarize(rows: dict, exchange: dict, soak_result: dict, planner: list) -> dict:
    def lat(variant, precision, link=None):
        key = f"{variant}/{precision}" + ("" if variant == "single" else f"/{link}")
        return rows.get(key, {}).get("median_ms")

    def ratio(a, b):
        return None if a is None or b is None else a / b

    # The profile where dense tensor parallelism is most bandwidth-bound: the slowest link.
    slowest = min(LINKS, key=lambda k: LINKS[k][0])
    return {
        "disco_vs_dense_tp_speedup": ratio(lat("dense_tp", "float32", slowest), lat("disco_0.2", "float32", slowest)),
        "disco_vs_dense_tp_profile": slowest,
        "disco_vs_single_speedup_lan": ratio(lat("single", "float32"), lat("disco_0.2", "float32", "lan")),
        "disco_vs_single_speedup_lan_int8": ratio(lat("single", "int8"), lat("disco_0.2", "int8", "lan")),
        "disco_link_vs_single_speedup_wifi": ratio(lat("single", "float32"), lat("disco_link", "float32", "wifi")),
        "exchange_overhead_vs_raw_tcp": exchange["ratio"] if exchange else None,
        "planner_error": max((abs(p["error"]) for p in planner), default=None),
        "soak_rss_growth": soak_result["max_growth"] if soak_result else None,
    }


TARGETS = {
    "disco_vs_dense_tp_speedup": (">=", 4.7), "disco_vs_single_speedup_lan": (">=", 1.4),
    "disco_vs_single_speedup_lan_int8": (">=", 1.15), "disco_link_vs_single_speedup_wifi": (">", 1.0),
    "exchange_overhead_vs_raw_tcp": ("<=", 1.5), "planner_error": ("<=", 0.15), "soak_rss_growth": ("<=", 0.05),
}


def _met(key, value):
    if value is None:
        return "not measured"
    op, target = TARGETS[key]
    ok = {">=": value >= target, ">": value > target, "<=": value <= target}[op]
    return f"{'met' if ok else 'NOT met'} (target {op} {target})"


def write_report(payload: dict) -> None:
    C.write_json("latency.json", payload)
    rows, s = payload["rows"], payload["summary"]
    lines = [
        "# Distributed latency over emulated links",
        "",
        f"Written by `{payload['setting']['command']}` on {payload['setting']['machine']} "
        f"({payload['setting']['date']}). {payload['setting']['model']}; 2 devices (device 0 in the bench "
        "process on core 0, device 1 a `paradis peer` process on core 1, one LiteRT thread each); loopback TCP "
        "with the link **emulated in each sender** (FRAME_FORMAT.md section 9); median of sequential inferences.",
        "",
        "## Summary against the targets",
        "",
        "| key | value | |",
        "|---|---:|---|",
    ]
    for key in TARGETS:
        v = s.get(key)
        lines.append(f"| `{key}` | {'-' if v is None else f'{v:.3f}'} | {_met(key, v)} |")
    lines += ["", f"`disco_vs_dense_tp_speedup` is measured on `{s['disco_vs_dense_tp_profile']}`, the profile "
              "where dense tensor parallelism is most bandwidth-bound.", ""]
    for precision in PRECISIONS:
        single = rows.get(f"single/{precision}", {}).get("median_ms")
        lines += [f"## {precision}: median latency (ms); single = {single and f'{single:.1f}'} ms on one device",
                  "", "| variant | bytes/inference | loopback (no emulation) | " + " | ".join(
                      f"{k} ({LINKS[k][0]:g} Mbps, {LINKS[k][1]:g} ms)" for k in LINKS) + " |",
                  "|---|---:|" + "---:|" * (len(LINKS) + 1)]
        for variant in VARIANTS[1:]:
            cells = []
            for link in ("loopback", *LINKS):
                r = rows.get(f"{variant}/{precision}/{link}")
                cells.append("-" if r is None else f"{r['median_ms']:.1f} ({single / r['median_ms']:.2f}x)"
                             if single else f"{r['median_ms']:.1f}")
            nbytes = payload["bytes"].get(f"{variant}/{precision}")
            lines.append(f"| {variant} | {nbytes or '-':,} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["(x): speedup over `single` of the same precision.", ""]
    # What bandwidth alone allows: each device sends about half the bytes on
    # its own directed link, so no overlap can beat that transfer time.
    lan_mbps = LINKS["lan"][0]
    lines += ["## What the link allows on `lan`", "",
              f"Each device sends about half of a switch's bytes on its own directed link; at {lan_mbps:g} Mbps that "
              "transfer alone takes the time below, whatever overlaps it. A 1.4x (float32) or 1.15x (int8) speedup "
              "over `single` needs the whole inference within the budget.", "",
              "| variant | precision | bytes/inference | transfer per link (ms) | budget for the target (ms) |",
              "|---|---|---:|---:|---:|"]
    for precision, target in (("float32", 1.4), ("int8", 1.15)):
        single = rows.get(f"single/{precision}", {}).get("median_ms")
        for variant in ("disco_0.2", "disco_0.1", "disco_link"):
            nbytes = payload["bytes"].get(f"{variant}/{precision}")
            if nbytes and single:
                floor = nbytes / 2 * 8 / (lan_mbps * 1e6) * 1e3
                lines.append(f"| {variant} | {precision} | {nbytes:,} | {floor:.1f} | {single / target:.1f} |")
    lines.append("")
    if payload.get("exchange"):
        e = payload["exchange"]
        lines += ["## Runtime cost per exchange against raw TCP", "",
                  f"Round trip of one frame each way ({e['bytes_out']:,} B out, {e['bytes_back']:,} B back, the "
                  f"largest pieces of `disco_0.2` float32), median of {e['rounds']} rounds of each, interleaved: "
                  f"raw TCP "
                  f"{e['raw_tcp_round_trip_ms']:.3f} ms, paradis runtime (checked frames, reader thread, "
                  f"handler) {e['runtime_round_trip_ms']:.3f} ms: **{e['ratio']:.2f}x**.", ""]
    if payload.get("planner"):
        lines += ["## Planner: predicted against measured", "",
                  "`predicted`: `paradis plan` with the profile `paradis profile --from-trace` made of one run of "
                  "the same two processes over unemulated loopback (stage times as they run in the system, and "
                  "the runtime's cost per frame), then the link model for each emulated link; `single` uses "
                  "stages timed in isolation (`paradis profile`). `isolated`: the prediction from stages timed "
                  "in isolation and no per-frame cost, for comparison. `planner_error` is the worst |error|.", "",
                  "| configuration | predicted ms | measured ms | error | isolated ms | error |",
                  "|---|---:|---:|---:|---:|---:|"]
        for p in payload["planner"]:
            iso = p.get("predicted_isolated_ms", p["predicted_ms"])
            lines.append(f"| {p['key']} | {p['predicted_ms']:.1f} | {p['measured_ms']:.1f} | {p['error']:+.1%} | "
                         f"{iso:.1f} | {p.get('error_isolated', p['error']):+.1%} |")
        lines.append("")
    if payload.get("soak"):
        so = payload["soak"]
        lines += ["## Soak", "", f"{so['requests']:,} requests over 2 peers ({so['switch']}, 2 in flight, "
                  f"{so['seconds']:.0f} s, {so['failed']} failed); resident memory growth after {so['warmup']} "
                  "warm-up requests: " + ", ".join(f"{k} {v:+.2%}" for k, v in so["growth"].items()) + ".", ""]
    C.write_text("latency.md", "\n".join(lines))


def plot(payload: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, precision in zip(axes, PRECISIONS):
        single = rows.get(f"single/{precision}", {}).get("median_ms")
        for variant in VARIANTS[1:]:
            pts = [(LINKS[k][0], rows[f"{variant}/{precision}/{k}"]["median_ms"]) for k in LINKS
                   if f"{variant}/{precision}/{k}" in rows]
            if pts:
                ax.plot(*zip(*sorted(pts)), marker="o", label=variant)
        if single:
            ax.axhline(single, color="k", linestyle="--", label="single (no network)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("emulated bandwidth (Mbps; latency rises as it falls)")
        ax.set_ylabel("median latency (ms)")
        ax.set_title(f"{payload['setting']['model_name']} {precision}, 2 devices")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(C.RESULTS, "latency.png"), dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet50")
    parser.add_argument("--runs", type=int, default=20, help="timed inferences per configuration (at most)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="stop a configuration after this long (3 inferences at least)")
    parser.add_argument("--soak", type=int, default=1000, help="requests in the soak (0 skips it)")
    parser.add_argument("--quick", action="store_true", help="resnet20, few runs: checks the script end to end")
    parser.add_argument("--out", default=None, help="write results here instead of docs/results")
    parser.add_argument("--export-only", action="store_true",
                        help="export (and cache) every bundle, measure nothing (a later run measures)")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.runs, args.max_seconds, args.soak = "resnet20", 5, 2.0, 120
    if args.out:
        C.RESULTS = args.out
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # device 0 (and this process) on core 0
    image = calibration_images(args.model, 1)
    if args.export_only:
        for precision in PRECISIONS:
            for variant in VARIANTS:
                bundle_for(args.model, variant, precision)
        return
    rows, nbytes, planner = {}, {}, []
    for precision in PRECISIONS:
        for variant in VARIANTS:
            bundle, switch = bundle_for(args.model, variant, precision)
            from paradis_runtime import read_manifest

            entry = next(e for e in read_manifest(bundle)["switches"] if e["name"] == switch)
            nbytes[f"{variant}/{precision}"] = entry["bytes_per_inference"]
            # Two profiles: stages timed in isolation (`paradis profile`), and
            # a run over unemulated loopback (`paradis profile --from-trace`),
            # which the planner's prediction for the emulated links uses.
            isolated = profile_pinned(bundle, repeats=5 if args.quick else 10)
            traced = None
            if variant != "single":
                traced, row = trace_profile(bundle, switch, image, args.runs, args.max_seconds)
                row["link"] = {"mbps": 0.0, "latency_ms": 0.0, "emulated": False}
                rows[f"{variant}/{precision}/loopback"] = row
                print(f"{variant + '/' + precision + '/loopback':>30}: {row['median_ms']:9.1f} ms (runtime "
                      f"overhead {1e3 * traced['switches'][switch]['per_frame_overhead_s']:.3f} ms per frame)",
                      flush=True)
            for link in (["lan"] if variant == "single" else LINKS):
                key = f"{variant}/{precision}" + ("" if variant == "single" else f"/{link}")
                shape = (0.0, 0.0) if variant == "single" else LINKS[link]
                rows[key] = row = measure(bundle, switch, shape, image, args.runs, args.max_seconds)
                row["link"] = {"mbps": shape[0], "latency_ms": shape[1], "emulated": variant != "single"}
                stages_only = plan_ms(bundle, switch, shape, isolated)
                predicted = stages_only if traced is None else plan_ms(bundle, switch, shape, traced)
                planner.append({"key": key, "predicted_ms": predicted, "measured_ms": row["median_ms"],
                                "error": (predicted - row["median_ms"]) / row["median_ms"],
                                "predicted_isolated_ms": stages_only,
                                "error_isolated": (stages_only - row["median_ms"]) / row["median_ms"],
                                "profile": "isolated stages" if traced is None else "loopback trace"})
                print(f"{key:>30}: {row['median_ms']:9.1f} ms (planner {predicted:9.1f}, isolated stages "
                      f"{stages_only:9.1f}) over {row['runs']} runs", flush=True)
    exchange = exchange_overhead(bundle_for(args.model, "disco_0.2", "float32")[0])
    print(f"exchange: runtime {exchange['runtime_round_trip_ms']:.3f} ms vs raw TCP "
          f"{exchange['raw_tcp_round_trip_ms']:.3f} ms: {exchange['ratio']:.2f}x", flush=True)
    soak_result = None
    if args.soak:
        soak_bundle = os.path.join(C.RUNS, "latency", "soak-resnet20")
        if not os.path.exists(os.path.join(soak_bundle, "manifest.json")):
            import keras
            from paradis_export import export_bundle
            from paradis_tf.models import CifarResNet

            keras.utils.set_random_seed(0)
            m = CifarResNet(depth=20, width=0.5, num_classes=10, input_shape=(28, 28, 1), switches="0.5+0.3+0.2")
            export_bundle(m, "0.5+0.3+0.2", soak_bundle, progress=None, overwrite=True)
        soak_result = soak(soak_bundle, "0.5+0.3+0.2", calibration_images("resnet20", 1), args.soak,
                           warmup=max(20, args.soak // 10))
        print(f"soak: max RSS growth {soak_result['max_growth']:+.2%} over {args.soak} requests", flush=True)
    payload = {
        "setting": {"command": "python bench/latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "model_name": args.model, "model": MODELS[args.model]["label"],
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
                    "links": {k: {"mbps": v[0], "latency_ms": v[1]} for k, v in LINKS.items()},
                    "link_emulation": "sender-side, FRAME_FORMAT.md section 9 (not a real network)",
                    "link_budget": {"mbps": LINK_BUDGET[0], "latency_ms": LINK_BUDGET[1]},
                    "runs": args.runs, "max_seconds": args.max_seconds, "threads_per_device": 1},
        "rows": rows, "bytes": nbytes, "exchange": exchange, "planner": planner, "soak": soak_result,
    }
    payload["summary"] = summarize(rows, exchange, soak_result, planner)
    write_report(payload)
    plot(payload)
    width = max(len(k) for k in TARGETS)
    for key in TARGETS:
        v = payload["summary"][key]
        print(f"{key:>{width}}: {'-' if v is None else f'{v:.3f}'}  {_met(key, v)}")


if __name__ == "__main__":
    main()
