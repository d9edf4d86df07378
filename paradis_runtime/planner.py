"""The planner: which switch of a bundle answers fastest over a given link.

Three steps, each usable alone:

* ``profile_bundle`` times every stage of every switch on this machine (one
  LiteRT interpreter per device file, one thread, random inputs of the
  graph's shapes) and ``write_profile`` / ``read_profile`` keep the result;
* ``predict_latency`` replays one inference of a fusion graph as the peer
  runtime runs it: each device runs its stages in order on one core, a stage
  starts when the device is free and its inputs are there, and every frame
  crosses a directed link modelled exactly as ``export/FRAME_FORMAT.md`` §9
  emulates it (a FIFO queue paying ``8 * bytes / bandwidth``, then a latency
  that overlaps with later frames);
* ``plan`` ranks a bundle's switches by predicted latency, and
  ``attach_measurements`` sets measured latencies (``paradis run --report``)
  beside the predictions.

``exchange_cost_s`` is the cost of one frame on an idle link, for a cost
model on the training side. The cost model is described in
``docs/runtime_planner.md``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from paradis_runtime.frames import DTYPE_CODES, HEADER_LEN
from paradis_runtime.fusion_graph import FusionGraphError, read_graph, read_json, sha256_file, write_json
from paradis_runtime.link import Link
from paradis_runtime.manifest import read_manifest
from paradis_runtime.schedule import Plan, fuse

__all__ = [
    "PROFILE_SCHEMA", "PROFILE_VERSION", "ProfileError", "LinkModel", "exchange_cost_s", "tensor_bytes",
    "profile_bundle", "profile_from_traces", "write_profile", "read_profile", "check_profile", "stage_seconds",
    "predict_latency",
    "plan", "read_measurements", "attach_measurements",
]

PROFILE_SCHEMA = "paradis-profile"
PROFILE_VERSION = 1
_STATISTICS = ("median_s", "p90_s")


class ProfileError(ValueError):
    """A profile that does not describe the bundle at hand; names the file, the
    switch or field, and what to do."""


# ----------------------------------------------------------------------------
# Link model (FRAME_FORMAT.md §9)


def _number(value, name: str, wanted: str, accept) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or not accept(value):
        raise ValueError(f"{name} must be {wanted}, received {value!r}.")
    return float(value)


@dataclass(frozen=True)
class LinkModel:
    """One directed link between two devices, as FRAME_FORMAT.md §9 emulates it.

    Args:
        mbps: bandwidth in megabits per second (10^6 bit/s); ``None``, 0 or
            inf for an unlimited link (the §9 convention: 0 = unlimited).
        latency_ms: one-way latency added to every frame; overlaps between
            frames, unlike the bandwidth delay.
        per_frame_overhead_s: what a real peer adds per frame on top of the
            emulation (system calls, copies, OS sleep overshoot); 0 by default.
    """

    mbps: Optional[float] = None
    latency_ms: float = 0.0
    per_frame_overhead_s: float = 0.0

    def __post_init__(self):
        if self.mbps is not None:
            mbps = _number(self.mbps, "mbps", "> 0, or 0 / None / inf for an unlimited link", lambda v: v >= 0)
            # One spelling for "unlimited", so equality and printing agree.
            object.__setattr__(self, "mbps", None if mbps == 0 or math.isinf(mbps) else mbps)
        object.__setattr__(self, "latency_ms", _number(self.latency_ms, "latency_ms", "a finite number >= 0",
                                                       lambda v: 0 <= v < math.inf))
        object.__setattr__(self, "per_frame_overhead_s", _number(
            self.per_frame_overhead_s, "per_frame_overhead_s", "a finite number >= 0", lambda v: 0 <= v < math.inf))

    def transfer_s(self, wire_bytes: int) -> float:
        """Seconds the link is busy with ``wire_bytes`` (header included): the
        emulation's own formula (``paradis_runtime.link.Link``, 0 = unlimited)."""
        return Link(self.mbps or 0.0).transfer_s(wire_bytes)

    @property
    def delay_s(self) -> float:
        """What every frame waits after its transfer; frames wait it in parallel."""
        return self.latency_ms / 1e3 + self.per_frame_overhead_s


def exchange_cost_s(nbytes: int, mbps: Optional[float], latency_ms: float, header_bytes: int = HEADER_LEN) -> float:
    """Seconds for one frame of ``nbytes`` payload on an idle link: its
    transfer (the 64-byte header included) plus the one-way latency.

    The cost of one exchange in isolation; back-to-back frames on the same
    link queue behind each other (``predict_latency`` models that).
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral) or nbytes < 0:
        raise ValueError(f"nbytes must be an int >= 0, received {nbytes!r}.")
    link = LinkModel(mbps, latency_ms)
    return link.transfer_s(int(nbytes) + header_bytes) + link.delay_s


def tensor_bytes(graph: dict, tensor: str) -> int:
    """Payload bytes of ``tensor`` on the wire: its shape times its dtype's size."""
    spec = graph["tensors"][tensor]
    if spec["dtype"] not in DTYPE_CODES:
        raise ValueError(f"tensors.{tensor}.dtype is {spec['dtype']!r}; the wire carries {sorted(DTYPE_CODES)}.")
    return int(np.prod(spec["shape"])) * DTYPE_CODES[spec["dtype"]][1]


# ----------------------------------------------------------------------------
# Event simulation of one inference


@dataclass(frozen=True)
class _Event:
    """A moment of the simulated inference and the segment that led to it:
    ``seconds`` of ``kind`` on ``where``, started by ``before``. Following
    ``before`` from the fused output back to t=0 walks the critical path."""

    time: float
    seconds: float
    kind: str  # "compute", "transfer" (bandwidth, queueing included) or "latency"
    where: str  # "device 1" or "link 0->1"
    before: Optional["_Event"]


_START = _Event(0.0, 0.0, "start", "", None)


def _latest(events: Sequence[_Event]) -> _Event:
    # Ties go to the first one (the device's own previous stage): either is exact.
    return max(events, key=lambda e: e.time)


def _check_stage_seconds(graph: dict, stage_seconds) -> None:
    devices = graph["devices"]
    if not isinstance(stage_seconds, (list, tuple)) or len(stage_seconds) != len(devices):
        got = len(stage_seconds) if isinstance(stage_seconds, (list, tuple)) else type(stage_seconds).__name__
        raise ValueError(f"stage_seconds must hold one dict per device ({len(devices)}), received {got}.")
    for d, dev in enumerate(devices):
        for stage in dev["stages"]:
            seconds = stage_seconds[d].get(stage["name"]) if isinstance(stage_seconds[d], dict) else None
            if seconds is None:
                raise ValueError(f"stage_seconds[{d}] has no time for stage {stage['name']!r} of device {d}.")
            _number(seconds, f"stage_seconds[{d}][{stage['name']!r}]", "a finite number >= 0",
                    lambda v: 0 <= v < math.inf)


def predict_latency(graph: dict, stage_seconds: list, mbps: Optional[float], latency_ms: float,
                    per_frame_overhead_s: float = 0.0, fusion_s: float = 0.0) -> dict:
    """Predicted latency of one inference of ``graph`` over a link.

    Args:
        graph: a fusion graph (as ``read_graph`` returns it).
        stage_seconds: per device, ``{stage name: seconds}``.
        mbps, latency_ms, per_frame_overhead_s: every directed link between
            two devices (see ``LinkModel``); ``mbps`` None/0/inf = unlimited.
        fusion_s: seconds the fusion op takes on the fusion device.

    Returns:
        ``latency_s`` (input captured at t=0 to fused output),
        ``exchanges`` (frames sent), ``bytes`` (on the wire, headers
        included), ``per_device``: ``[{device, compute_s, wait_s, finish_s,
        frames_sent, bytes_sent}]`` with ``compute_s + wait_s == finish_s``,
        ``critical_path``: ``[{kind, where, seconds}]`` largest first, which
        sums to ``latency_s``, ``critical_frames``: how many frames lie on
        it, and ``bottleneck``: its largest entry, in words.
    """
    link = LinkModel(mbps, latency_ms, per_frame_overhead_s)
    fusion_s = _number(fusion_s, "fusion_s", "a finite number >= 0", lambda v: 0 <= v < math.inf)
    _check_stage_seconds(graph, stage_seconds)
    devices = graph["devices"]
    n = len(devices)

    # Frames a device sends when a stage ends: one per distinct (tensor,
    # to.device) of the graph's sends (FRAME_FORMAT.md §4), in the order the
    # peer writes them: the stage's outputs in order, each to its devices in
    # ascending order.
    destinations: dict = {}  # (from device, tensor) -> {to devices}
    for s in graph["sends"]:
        src, dst = s["from"]["device"], s["to"]["device"]
        if src != dst:
            destinations.setdefault((src, s["tensor"]), set()).add(dst)

    available: dict = {}  # (tensor, device) -> _Event when it exists there
    link_last: dict = {}  # (from, to) -> _Event: the end of the link's last transfer
    frames_sent = [0] * n
    bytes_sent = [0] * n

    def send(src: int, dst: int, tensor: str, queued: _Event) -> None:
        wire = HEADER_LEN + tensor_bytes(graph, tensor)
        previous = link_last.get((src, dst))
        start = queued if previous is None or queued.time >= previous.time else previous
        seconds = link.transfer_s(wire)
        where = f"link {src}->{dst}"
        done = _Event(start.time + seconds, seconds, "transfer", where, start)
        link_last[(src, dst)] = done
        available[(tensor, dst)] = _Event(done.time + link.delay_s, link.delay_s, "latency", where, done)
        frames_sent[src] += 1
        bytes_sent[src] += wire

    # The input device holds the input at t=0 and sends it, before any stage
    # output, to every other device with a stage that reads it.
    source, x = graph["input"]["device"], graph["input"]["tensor"]
    available[(x, source)] = _START
    for d, dev in enumerate(devices):
        if d != source and any(x in s["inputs"] for s in dev["stages"]):
            send(source, d, x, _START)

    free = [_START] * n  # when each device finished its last stage
    compute = [0.0] * n
    nxt = [0] * n
    remaining = sum(len(dev["stages"]) for dev in devices)
    while remaining:
        progressed = False
        for d, dev in enumerate(devices):
            while nxt[d] < len(dev["stages"]):
                stage = dev["stages"][nxt[d]]
                inputs = [available.get((t, d)) for t in stage["inputs"]]
                if any(e is None for e in inputs):
                    break
                seconds = float(stage_seconds[d][stage["name"]])
                start = _latest([free[d], *inputs])
                free[d] = finish = _Event(start.time + seconds, seconds, "compute", f"device {d}", start)
                compute[d] += seconds
                for t in stage["outputs"]:
                    available[(t, d)] = finish
                for t in stage["outputs"]:
                    for dst in sorted(destinations.get((d, t), ())):
                        send(d, dst, t, finish)
                nxt[d] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            waiting = [f"device {d} stage {dev['stages'][nxt[d]]['name']!r} waits for "
                       f"{[t for t in dev['stages'][nxt[d]]['inputs'] if (t, d) not in available]}"
                       for d, dev in enumerate(devices) if nxt[d] < len(dev["stages"])]
            raise ValueError(f"The fusion graph cannot progress (a tensor that no send brings, or a cycle): "
                             f"{'; '.join(waiting)}.")

    f = graph["fusion"]["device"]
    partials = [available.get((t, f)) for t in graph["fusion"]["inputs"]]
    if any(e is None for e in partials):
        missing = [t for t, e in zip(graph["fusion"]["inputs"], partials) if e is None]
        raise ValueError(f"The fusion on device {f} needs {missing}, which no stage or send brings there.")
    start = _latest([free[f], *partials])
    free[f] = end = _Event(start.time + fusion_s, fusion_s, "compute", f"device {f}", start)
    compute[f] += fusion_s

    path: dict = {}
    critical_frames = 0
    e = end
    while e.before is not None:
        critical_frames += e.kind == "latency"  # one per frame on the path, even on a free link
        if e.seconds > 0:  # a free fusion or an unlimited link is no part of any delay
            path[(e.kind, e.where)] = path.get((e.kind, e.where), 0.0) + e.seconds
        e = e.before
    critical = sorted(({"kind": k, "where": w, "seconds": s} for (k, w), s in path.items()),
                      key=lambda r: -r["seconds"])
    if end.time > 0 and critical:
        top = critical[0]
        bottleneck = f"{top['where']} {top['kind']} {100 * top['seconds'] / end.time:.0f}%"
    else:
        bottleneck = "none (no time spent)"
    # A device that finishes before the fusion does not delay it; its finish is
    # its own last stage (the fusion device's includes the fusion).
    return {
        "latency_s": end.time,
        "exchanges": sum(frames_sent),
        "bytes": sum(bytes_sent),
        "per_device": [{"device": d, "compute_s": compute[d], "wait_s": free[d].time - compute[d],
                        "finish_s": free[d].time, "frames_sent": frames_sent[d], "bytes_sent": bytes_sent[d]}
                       for d in range(n)],
        "critical_path": critical,
        "critical_frames": critical_frames,
        "bottleneck": bottleneck,
    }


# ----------------------------------------------------------------------------
# Profiling


def _cpu_name() -> str:
    # platform.processor() is often empty or just "x86_64" on Linux; the model
    # name is what tells two machines apart.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.uname().machine or "unknown"


def _random_feed(graph: dict, tensor: str, rng: np.random.Generator) -> np.ndarray:
    spec = graph["tensors"][tensor]
    shape = tuple(spec["shape"])
    if spec["dtype"] == "int8":
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    return rng.random(shape, dtype=np.float32)


def _summary(samples: Sequence[float]) -> dict:
    return {"median_s": float(np.median(samples)), "p90_s": float(np.percentile(samples, 90))}


def _profile_switch(name: str, graph_path: Path, repeats: int, warmup: int, num_threads: int,
                    progress: Optional[Callable[[str], None]]) -> dict:
    from ai_edge_litert.interpreter import Interpreter  # lazily: reading a profile needs no LiteRT

    graph = read_graph(graph_path)  # checks every device file against its sha256
    devices = []
    for d, dev in enumerate(graph["devices"]):
        if progress is not None:
            progress(f"profiling {name}: device {d}, {len(dev['stages'])} stage(s), {warmup} + {repeats} runs")
        file = graph_path.parent / dev["file"]
        try:
            interpreter = Interpreter(model_path=str(file), num_threads=num_threads)
        except (ValueError, RuntimeError) as e:
            raise FusionGraphError(f"{graph_path}: device {d}'s file {file} cannot be loaded by LiteRT "
                                   f"({str(e).strip().splitlines()[0]}); export the bundle again.") from None
        keys = interpreter.get_signature_list()
        rng = np.random.default_rng(d)  # deterministic feeds: two profiles time the same work
        chain = []
        for j, stage in enumerate(dev["stages"]):
            if stage["signature"] not in keys:
                raise FusionGraphError(f"{graph_path}: field 'devices[{d}].stages[{j}].signature': {dev['file']} "
                                       f"has no signature {stage['signature']!r} (it has {sorted(keys)}).")
            feeds = {t: _random_feed(graph, t, rng) for t in stage["inputs"]}
            chain.append((stage["name"], interpreter.get_signature_runner(stage["signature"]), feeds))
        # The whole chain per run, as a peer runs it, rather than one stage
        # many times over: caches then hold what they would in a real inference.
        samples = {stage_name: [] for stage_name, _, _ in chain}
        for r in range(warmup + repeats):
            for stage_name, runner, feeds in chain:
                start = time.perf_counter()
                runner(**feeds)
                seconds = time.perf_counter() - start
                if r >= warmup:
                    samples[stage_name].append(seconds)
        devices.append({"stages": {k: _summary(v) for k, v in samples.items()}})

    fusion = graph["fusion"]
    rng = np.random.default_rng(len(devices))
    partials = [_random_feed(graph, t, rng) for t in fusion["inputs"]]
    quant = {t: None if graph["tensors"][t]["quantization"] is None else
             (graph["tensors"][t]["quantization"]["scale"], graph["tensors"][t]["quantization"]["zero_point"])
             for t in fusion["inputs"]}
    plan_ = Plan(input_name=graph["input"]["tensor"], stages=[], fusion=fusion, quantization=quant)
    samples = []
    for r in range(warmup + repeats):
        start = time.perf_counter()
        fuse(plan_, partials)
        if r >= warmup:
            samples.append(time.perf_counter() - start)
    return {"graph_sha256": sha256_file(graph_path), "devices": devices, "fusion": _summary(samples)}


def _read_trace_lines(path: Path) -> list:
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the trace ({e.strerror or e}); pass the file `paradis peer "
                           "--trace` or `paradis run --trace` wrote.") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            raise ProfileError(f"{path}: line {i + 1} is not JSON; a trace holds one JSON object per line "
                               "(`paradis peer --trace`).") from None
        if not isinstance(r, dict) or not {"switch", "device", "stages", "total_s"} <= set(r):
            raise ProfileError(f"{path}: line {i + 1} is not a request record (it needs 'switch', 'device', "
                               "'stages' and 'total_s'); pass the file `paradis peer --trace` wrote.")
        records.append(r)
    return records


def _overhead_to_match(graph: dict, stage_times: list, mbps, latency_ms: float, measured: float) -> float:
    """The per-frame overhead at which the link model predicts ``measured``.

    The predicted latency is the longest path, each path's time growing
    linearly with its frame count, so it is nondecreasing in the overhead;
    the overhead also moves the critical path (at zero overhead the longest
    path may carry no frame at all). Bisection on [0, measured] finds the
    crossing whatever path ends up critical; 0 when the stage times alone
    already explain the measurement, or when no path carries a frame.
    """
    def latency(o):
        return predict_latency(graph, stage_times, mbps, latency_ms, o)["latency_s"]

    if latency(0.0) >= measured or latency(measured) <= latency(0.0):
        return 0.0
    lo, hi = 0.0, measured
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if latency(mid) < measured:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def profile_from_traces(bundle_dir, traces: Sequence, skip: int = 2) -> dict:
    """A profile measured in the running system rather than stage by stage.

    ``traces``: the JSON-lines files ``paradis peer --trace`` and ``paradis
    run --trace`` wrote while the bundle ran across its devices (one file
    per process, any switches). Each stage keeps the median and 90th
    percentile of its time inside those runs (after the first ``skip``
    requests of each device and switch), where it pays what isolated
    profiling does not see: caches shared with the network stack, cores
    that idle between exchanges. Each switch also gets the runtime's
    ``per_frame_overhead_s``: the part of the input device's median latency
    that the link model (the link the trace records) and these stage times
    leave unexplained, spread over the frames on the critical path; the
    planner adds it to every frame. Traces taken on an unemulated loopback
    then predict any emulated or real link.

    Raises ProfileError when a switch of the bundle lacks a device's records
    or a record names a stage the graph does not have.
    """
    skip = _check_count(skip, "skip", 0)
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    if isinstance(traces, (str, Path)) or not traces:
        raise ValueError(f"traces must be a non-empty list of trace files, received {traces!r}.")
    by_key: dict = {}  # (switch, device) -> [record]
    for path in traces:
        for r in _read_trace_lines(Path(path)):
            by_key.setdefault((r["switch"], r["device"]), []).append(r)
    switches = {}
    for e in manifest["switches"]:
        name, path = e["name"], bundle_dir / e["graph"]
        graph = read_graph(path, check_files=False)
        if not any(k[0] == name for k in by_key):
            continue  # not run: the profile covers the switches the traces ran
        devices, stage_times = [], []
        digest = sha256_file(path)
        for d, dev in enumerate(graph["devices"]):
            records = by_key.get((name, d), [])[skip:]
            if not records:
                raise ProfileError(f"switch {name!r}: no trace records of device {d} (after skipping {skip}); "
                                   f"pass the trace of every device's process (`--trace` on `paradis peer` and "
                                   "`paradis run`) and run more requests.")
            # Another export of the same switch (int8 against float32, other
            # weights) has the same stage names: only the graph's digest tells.
            # (Traces written before the digest was recorded lack it.)
            other = sorted({r["graph_sha256"] for r in records} - {digest, None}) if any(
                "graph_sha256" in r for r in records) else []
            if other:
                raise ProfileError(f"switch {name!r}: the trace of device {d} was recorded running another export "
                                   f"(graph sha256 {other[0][:12]}..., {path} has {digest[:12]}...): profile with "
                                   "the traces of a run of this bundle.")
            samples = {s["name"]: [] for s in dev["stages"]}
            for r in records:
                for stage, start, end in r["stages"]:
                    if stage not in samples:
                        raise ProfileError(f"switch {name!r}: the trace of device {d} names stage {stage!r}, "
                                           f"which {path} does not have: the trace belongs to another export.")
                    samples[stage].append(end - start)
            missing = [k for k, v in samples.items() if not v]
            if missing:
                raise ProfileError(f"switch {name!r}: device {d}'s trace never ran stage(s) {missing}.")
            devices.append({"stages": {k: _summary(v) for k, v in samples.items()}})
            stage_times.append({k: float(np.median(v)) for k, v in samples.items()})
        # Each device emulates the links it sends on (FRAME_FORMAT.md section
        # 9): traces whose devices emulated different links describe no one
        # link, and the overhead fitted to them would be wrong.
        links = {d: sorted({(r.get("link_mbps") or 0.0, r.get("link_latency_ms") or 0.0)
                            for r in by_key[(name, d)][skip:]}) for d in range(len(graph["devices"]))}
        if len({tuple(v) for v in links.values()}) > 1 or any(len(v) > 1 for v in links.values()):
            shown = "; ".join(f"device {d}: " + ", ".join(_link_text(*x) for x in v) for d, v in links.items())
            raise ProfileError(f"switch {name!r}: the traces' devices emulated different links ({shown}); "
                               "emulation runs in each sender, so give every process the same --link-mbps and "
                               "--link-latency-ms (or none) and trace again.")
        source = graph["input"]["device"]
        head = by_key[(name, source)][skip:]
        measured = float(np.median([r["total_s"] for r in head]))
        mbps = head[-1].get("link_mbps") or None
        latency_ms = head[-1].get("link_latency_ms") or 0.0
        overhead = _overhead_to_match(graph, stage_times, mbps, latency_ms, measured)
        switches[name] = {"graph_sha256": sha256_file(path), "devices": devices,
                          "per_frame_overhead_s": overhead, "measured_ms": 1e3 * measured,
                          "requests": len(head), "link_mbps": mbps, "link_latency_ms": latency_ms}
    if not switches:
        ran = sorted({k[0] for k in by_key})
        raise ProfileError(f"the traces ran switch(es) {ran}, none of which {bundle_dir} holds "
                           f"({[e['name'] for e in manifest['switches']]}).")
    return {
        "schema": PROFILE_SCHEMA,
        "version": PROFILE_VERSION,
        "source": "traces",
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "system": platform.platform()},
        "num_threads": 1,
        "repeats": min(s["requests"] for s in switches.values()),
        "warmup": skip,
        "bundle": str(bundle_dir),
        "switches": switches,
    }


def _link_text(mbps: float, latency_ms: float) -> str:
    return "no emulation" if not mbps and not latency_ms else f"{mbps:g} Mbps, {latency_ms:g} ms"


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, received {value!r}.")
    return int(value)


def profile_bundle(bundle_dir, repeats: int = 20, warmup: int = 3, num_threads: int = 1,
                   progress: Optional[Callable[[str], None]] = None) -> dict:
    """Times every stage of every switch of the bundle in ``bundle_dir`` on this machine.

    Each device file gets its own LiteRT interpreter with ``num_threads``
    threads (1: the planner models one core per device). Each device's stages
    run in order on deterministic random inputs of the graph's shapes and
    dtypes, ``warmup`` times untimed and then ``repeats`` times timed; a stage
    keeps the median and 90th percentile of its times. The fusion (a NumPy
    sum of the partials) is timed too.

    Returns the profile (``{"schema": "paradis-profile", "version": 1,
    "machine", "num_threads", "repeats", "warmup", "bundle", "switches":
    {name: {"graph_sha256", "devices": [{"stages": {stage: {"median_s",
    "p90_s"}}}], "fusion": {...}}}}``). ``progress`` gets one line per device.
    """
    repeats = _check_count(repeats, "repeats", 1)
    warmup = _check_count(warmup, "warmup", 0)
    num_threads = _check_count(num_threads, "num_threads", 1)
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    switches = {e["name"]: _profile_switch(e["name"], bundle_dir / e["graph"], repeats, warmup, num_threads, progress)
                for e in manifest["switches"]}
    try:
        import ai_edge_litert

        litert = getattr(ai_edge_litert, "__version__", "unknown")
    except ImportError:  # pragma: no cover - _profile_switch imported it already
        litert = "unknown"
    return {
        "schema": PROFILE_SCHEMA,
        "version": PROFILE_VERSION,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "system": platform.platform(),
                    "litert": litert},
        "num_threads": num_threads,
        "repeats": repeats,
        "warmup": warmup,
        "bundle": str(bundle_dir),
        "switches": switches,
    }


def write_profile(profile: dict, path) -> None:
    """Checks the profile's layout, then writes it as indented JSON."""
    _check_layout(profile, str(path))
    write_json(profile, path)


def _check_layout(doc, where: str) -> None:
    def fail(field: str, msg: str):
        raise ProfileError(f"{where}: field '{field}' {msg}; write a new one with `paradis profile --bundle DIR "
                           "--out FILE`.")

    if not isinstance(doc, dict) or doc.get("schema") != PROFILE_SCHEMA:
        fail("schema", f"must be {PROFILE_SCHEMA!r}, received "
                       f"{doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r}")
    if doc.get("version") != PROFILE_VERSION:
        fail("version", f"is {doc.get('version')!r}; this runtime reads version {PROFILE_VERSION}")
    switches = doc.get("switches")
    if not isinstance(switches, dict) or not switches:
        fail("switches", "must be a non-empty object")
    for name, entry in switches.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("graph_sha256"), str):
            fail(f"switches.{name}", "needs a 'graph_sha256' string")
        devices = entry.get("devices")
        if not isinstance(devices, list) or not devices:
            fail(f"switches.{name}.devices", "must be a non-empty list")
        for d, dev in enumerate(devices):
            stages = dev.get("stages") if isinstance(dev, dict) else None
            if not isinstance(stages, dict) or not stages:
                fail(f"switches.{name}.devices[{d}].stages", "must be a non-empty object")
            for stage, stats in stages.items():
                _check_stats(stats, f"switches.{name}.devices[{d}].stages.{stage}", fail)
        if "fusion" in entry:
            _check_stats(entry["fusion"], f"switches.{name}.fusion", fail)
        overhead = entry.get("per_frame_overhead_s", 0.0)
        if isinstance(overhead, bool) or not isinstance(overhead, (int, float)) or not 0 <= overhead < math.inf:
            fail(f"switches.{name}.per_frame_overhead_s", f"must be a number of seconds >= 0, received {overhead!r}")


def _check_stats(stats, field: str, fail) -> None:
    for key in _STATISTICS:
        value = stats.get(key) if isinstance(stats, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            fail(f"{field}.{key}", f"must be a number of seconds >= 0, received {value!r}")


def read_profile(path) -> dict:
    """Reads a profile written by ``write_profile`` and checks its layout."""
    path = Path(path)
    try:
        doc = read_json(path, "no such profile file; write one with `paradis profile --bundle DIR --out FILE`.")
    except FusionGraphError as e:
        raise ProfileError(str(e)) from None
    _check_layout(doc, str(path))
    return doc


def check_profile(profile: dict, bundle_dir, where: str = "profile") -> dict:
    """Every switch of the bundle, as ``{name: graph}``, after checking that
    ``profile`` timed exactly these fusion graphs (same sha256, same stages).
    A profile from traces (``profile_from_traces``) covers the switches that
    ran; the others are left out.

    Raises ProfileError naming the switch when the profile lacks it or timed
    another graph (another bundle, or a re-export).
    """
    _check_layout(profile, where)
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    again = f"run `paradis profile --bundle {bundle_dir}` again"
    graphs = {}
    for e in manifest["switches"]:
        name, path = e["name"], bundle_dir / e["graph"]
        entry = profile["switches"].get(name)
        if entry is None and profile.get("source") == "traces":
            continue
        if entry is None:
            raise ProfileError(f"{where}: has no switch {name!r}, which the bundle {bundle_dir} holds (it holds "
                               f"{sorted(profile['switches'])}): {again}.")
        digest = sha256_file(path)
        if entry["graph_sha256"] != digest:
            raise ProfileError(
                f"{where}: switch {name!r} was profiled on a fusion graph with sha256 {entry['graph_sha256'][:16]}..., "
                f"but {path} has sha256 {digest[:16]}...: the profile belongs to another bundle or an older "
                f"export; {again}.")
        graph = read_graph(path, check_files=False)
        stages = [sorted(s["name"] for s in dev["stages"]) for dev in graph["devices"]]
        if [sorted(dev["stages"]) for dev in entry["devices"]] != stages:
            raise ProfileError(f"{where}: switch {name!r} lists other devices or stages than {path}; {again}.")
        graphs[name] = graph
    return graphs


def stage_seconds(profile: dict, switch: str, statistic: str = "median_s") -> list:
    """Per device, ``{stage: seconds}`` of one switch of a profile."""
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}, received {statistic!r}.")
    return [{stage: stats[statistic] for stage, stats in dev["stages"].items()}
            for dev in profile["switches"][switch]["devices"]]


# ----------------------------------------------------------------------------
# Plan


def plan(bundle_dir, profile: dict, mbps: Optional[float], latency_ms: float,
         per_frame_overhead_s: Optional[float] = None) -> list:
    """The bundle's switches ranked by predicted latency over the given link.

    ``per_frame_overhead_s``: what the runtime adds per frame; None takes each
    switch's from the profile (``profile_from_traces`` measures it; 0 in a
    profile of isolated stages).

    Returns one dict per switch, fastest first: ``switch``, ``devices``,
    ``bytes_per_inference`` (every frame on the wire, input copies and
    headers included), ``exchanges`` (frames), ``predicted_ms``,
    ``compute_ms`` (the busiest device's compute), ``bottleneck`` and
    ``per_device`` (from ``predict_latency``).
    """
    link = LinkModel(mbps, latency_ms, per_frame_overhead_s or 0.0)  # the link's errors before any work
    graphs = check_profile(profile, bundle_dir)
    rows = []
    for name, graph in graphs.items():
        # Profiles without a fusion time (hand-written ones) count it as free: it is a few microseconds.
        fusion = profile["switches"][name].get("fusion", {}).get("median_s", 0.0)
        overhead = (profile["switches"][name].get("per_frame_overhead_s", 0.0) if per_frame_overhead_s is None
                    else link.per_frame_overhead_s)
        p = predict_latency(graph, stage_seconds(profile, name), link.mbps, link.latency_ms, overhead,
                            fusion_s=fusion)
        rows.append({
            "switch": name,
            "devices": len(graph["devices"]),
            "bytes_per_inference": p["bytes"],
            "exchanges": p["exchanges"],
            "predicted_ms": 1e3 * p["latency_s"],
            "compute_ms": 1e3 * max(d["compute_s"] for d in p["per_device"]),
            "frame_overhead_ms": 1e3 * overhead,
            "bottleneck": p["bottleneck"],
            "per_device": p["per_device"],
        })
    # sorted() is stable: equal predictions keep the manifest's order.
    return sorted(rows, key=lambda r: r["predicted_ms"])


def read_measurements(path) -> list:
    """Measured latencies: a JSON list of ``{"switch", "link_mbps",
    "link_latency_ms", "median_ms"}`` (what ``paradis run --report`` writes).
    ``link_mbps`` 0 or null means an unlimited link."""
    path = Path(path)
    doc = read_json(path, "no such measurements file.")
    if not isinstance(doc, list):
        raise ValueError(f"{path}: must hold a JSON list of measurements, received {type(doc).__name__}.")
    out = []
    for i, m in enumerate(doc):
        if not isinstance(m, dict) or not isinstance(m.get("switch"), str):
            raise ValueError(f"{path}: entry [{i}] needs a 'switch' name, received {m!r}.")
        try:
            link = LinkModel(m.get("link_mbps"), m.get("link_latency_ms"))
            median = _number(m.get("median_ms"), "median_ms", "a number of milliseconds > 0",
                             lambda v: 0 < v < math.inf)
        except ValueError as e:
            raise ValueError(f"{path}: entry [{i}] ({m['switch']}): {e}") from None
        out.append({"switch": m["switch"], "link_mbps": link.mbps, "link_latency_ms": link.latency_ms,
                    "median_ms": median})
    return out


def _same_link(a: LinkModel, b: LinkModel) -> bool:
    # Parameters come back from JSON, so compare with a tolerance for printing round trips.
    same_bw = (a.mbps is None and b.mbps is None) or (
        a.mbps is not None and b.mbps is not None and math.isclose(a.mbps, b.mbps, rel_tol=1e-9))
    return same_bw and math.isclose(a.latency_ms, b.latency_ms, rel_tol=1e-9, abs_tol=1e-9)


def attach_measurements(rows: list, measurements: list, mbps: Optional[float], latency_ms: float) -> list:
    """New rows with ``measured_ms`` and ``error_pct`` (prediction against
    measurement, in % of the measurement; None where nothing matches).
    A measurement matches a row on switch and link; of several, the last wins
    (the newest of a report that grows by appending)."""
    link = LinkModel(mbps, latency_ms)
    out = []
    for row in rows:
        measured = None
        for m in measurements:
            if m["switch"] == row["switch"] and _same_link(link, LinkModel(m["link_mbps"], m["link_latency_ms"])):
                measured = m["median_ms"]
        error = None if measured is None else 100.0 * (row["predicted_ms"] - measured) / measured
        out.append({**row, "measured_ms": measured, "error_pct": error})
    return out
