"""``paradis demo``: the main job end to end on built-in data (what ``make demo`` runs).

    paradis demo [--out runs/demo] [--fresh] [--count 1000]

Every step is a ``paradis`` command a user could type, echoed (``$ paradis
...``) and run as a child process with its output streamed: train a small
DISCO model on Fashion-MNIST (switches 1x1.0,2x0.5, a traffic budget), export
float32 and int8 bundles, serve device 1 of each with ``paradis peer`` on
loopback, run test images through them with ``paradis run`` (and the
single-device switch for comparison), then print one table and draw two
pictures under --out. A second run reuses the checkpoint and the bundles when
they exist and match (--fresh starts over). Peers are stopped at the end
whatever happens: every child runs in its own process group, and Ctrl-C,
SIGTERM or SIGHUP of the demo stops those groups before it exits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from paradis_cli._common import CommandFailed, UsageError, non_negative_int, positive_int, traffic_ratio

__all__ = ["HELP", "add_arguments", "run"]

HELP = "train, export, serve and run a small DISCO model on Fashion-MNIST end to end, then print one table"

SWITCHES = ("1x1.0", "2x0.5")
PRECISIONS = ("float32", "int8")
# The CIFAR ResNets the demo may train (presets of paradis_tf.models) and their
# width: resnet20 has ~72k weights, a few minutes of training on 2 cores.
MODELS = {"resnet8": "ResNet-8", "resnet20": "ResNet-20", "resnet32": "ResNet-32"}
WIDTH = 0.5
LR = 5e-3  # Adam; higher than `paradis train`'s 1e-3 default because the demo trains only a few epochs
# Validation after each epoch, on the first test images: enough to follow the
# training, cheap on 2 cores (the table's top-1 comes from --count images through the bundles).
VALIDATION_IMAGES = 2000
FASHION_MNIST_TRAIN, FASHION_MNIST_TEST = 60000, 10000
STAMP = "demo.json"
# How long a child has to leave after SIGINT before its process group is killed.
STOP_GRACE_S = 10.0


def add_arguments(p) -> None:
    p.add_argument("--out", default="runs/demo",
                   help="folder for the checkpoint (train/), the bundles (bundle-float32/, bundle-int8/), the "
                        "peers' logs, the reports and traces, and the two pictures (default runs/demo)")
    p.add_argument("--fresh", action="store_true",
                   help="train and export again even when --out holds a matching checkpoint and bundles (removes "
                        "what an earlier demo wrote there: train/, bundle-*/, logs/, reports/, traces/, pictures)")
    p.add_argument("--count", type=positive_int, default=1000,
                   help="Fashion-MNIST test images run through each bundle and switch (default 1000, at most "
                        f"{FASHION_MNIST_TEST:,})")
    p.add_argument("--train-images", type=positive_int, default=20000,
                   help=f"training images, the first N of Fashion-MNIST's {FASHION_MNIST_TRAIN:,} (default 20000)")
    p.add_argument("--epochs", type=positive_int, default=4,
                   help="training epochs; the budget is reached after a tenth of the steps (default 4)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=1,
                   help="epochs of fine-tuning once the gates are binary and frozen (default 1)")
    p.add_argument("--budget", type=traffic_ratio, default=0.2,
                   help="traffic budget of switch 2x0.5: the share of dense tensor-parallel traffic it may keep "
                        "(default 0.2)")
    p.add_argument("--calibration", type=positive_int, default=200,
                   help="training images that calibrate the int8 export (default 200)")
    p.add_argument("--model", choices=sorted(MODELS), default="resnet20",
                   help="the CIFAR ResNet to train, at width 0.5 (default resnet20; resnet8 is a third of its "
                        "layers, for a quicker run)")


# -- child processes ----------------------------------------------------------

class Interrupted(Exception):
    """The demo received SIGINT, SIGTERM or SIGHUP; its children are being stopped."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Children:
    """The demo's child processes, each the leader of its own process group.

    While active, SIGINT, SIGTERM and SIGHUP only set a flag (no exception can
    land between starting a child and recording it); every wait polls the flag
    and raises ``Interrupted``. On exit every group still alive gets SIGINT
    (the verbs leave cleanly on it: a peer says SHUTTING_DOWN, an export
    removes its staging folder), then SIGKILL after ``STOP_GRACE_S``.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, env: dict):
        self.env = env
        self.procs: list = []
        self.received: Optional[int] = None
        self._previous: dict = {}
        self._preexec = _die_with_parent_hook()

    def __enter__(self) -> "Children":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # A second Ctrl-C must not cut the clean-up short and leave a peer behind.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            for sig, handler in self._previous.items():
                # None: a handler installed outside Python; the default is the closest we can restore.
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if exc_type is None and self.received is not None:
            # A signal during work done in this process (the table, the pictures).
            raise Interrupted(self.received)

    def _on_signal(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

    def start(self, argv: list, log: Optional[Path] = None) -> subprocess.Popen:
        self.check()
        out = open(log, "w") if log is not None else None
        try:
            # A session of its own: Ctrl-C in the terminal reaches the demo only,
            # which stops each child's whole group (a child's own children too).
            proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=self._preexec)
        finally:
            if out is not None:
                out.close()
        self.procs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen) -> int:
        while True:
            self.check()
            try:
                code = proc.wait(0.1)
            except subprocess.TimeoutExpired:
                continue
            self._forget(proc)
            return code

    def sleep(self, seconds: float) -> None:
        self.check()
        time.sleep(seconds)
        self.check()

    def stop(self, proc: subprocess.Popen) -> None:
        """SIGINT to ``proc``'s group, SIGKILL after the grace period; reaps it."""
        self._stop([proc])

    def stop_all(self) -> None:
        self._stop(self.procs)

    def _stop(self, procs: list) -> None:
        procs = list(procs)
        for p in procs:
            if p.poll() is None:
                _signal_group(p.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                p.wait()
            self._forget(p)

    def _forget(self, proc: subprocess.Popen) -> None:
        """After ``proc`` is reaped: kills what is left of its group (a
        grandchild outliving it) and stops tracking it. Done at once, while
        the group id cannot yet belong to anyone else."""
        _signal_group(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)


def _die_with_parent_hook():
    """A ``preexec_fn`` (Linux): the child gets SIGTERM when the demo dies,
    even by SIGKILL, which no handler of the demo can see; None elsewhere.
    The C library is loaded here, in the parent, so the child only calls."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return lambda: libc.prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _paradis(*args) -> list:
    """The command line a user types, as a list: ``paradis VERB ...``."""
    return ["paradis", *[str(a) for a in args]]


def _echo(command: list, suffix: str = "") -> None:
    command = [str(c) for c in command]
    print(f"\n$ {shlex.join(command)}{suffix}", flush=True)


def _step(children: Children, command: list) -> None:
    """Echoes ``command`` and runs it (this Python's ``paradis``), output streamed."""
    command = [str(c) for c in command]
    _echo(command)
    proc = children.start([sys.executable, "-m", "paradis_cli", *command[1:]])
    code = children.wait(proc)
    if code != 0:
        raise CommandFailed(f"step `{shlex.join(command)}` exited with status {code} (its output is above); fix "
                            "what it says and run `paradis demo` again: finished steps are reused.")


# -- what an earlier run left -------------------------------------------------

def _read_stamp(out: Path) -> dict:
    try:
        stamp = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(out: Path, stamp: dict) -> None:
    tmp = out / (STAMP + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1) + "\n")
    os.replace(tmp, out / STAMP)


def _bundle_matches(folder: Path, precision: str) -> Optional[str]:
    """None when ``folder`` is a readable bundle of SWITCHES in ``precision``
    with every file's sha256 as its graph says; else why not."""
    from paradis_runtime import read_graph, read_manifest

    try:
        manifest = read_manifest(folder)
        names = [e["name"] for e in manifest["switches"]]
        if sorted(names) != sorted(SWITCHES):
            return f"it holds switches {names}, not {list(SWITCHES)}"
        if manifest["precision"] != precision:
            return f"it is {manifest['precision']}, not {precision}"
        for e in manifest["switches"]:
            read_graph(folder / e["graph"], check_files=True)
    except (OSError, ValueError) as e:  # FusionGraphError is a ValueError
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def _checkpoint_digest(path: Path) -> str:
    from paradis_runtime.fusion_graph import sha256_file  # lazily: `paradis --help` imports every verb

    return sha256_file(path)


# -- the steps ----------------------------------------------------------------

def _train(children: Children, args, out: Path, stamp: dict) -> dict:
    folder = out / "train"
    settings = {"model": args.model, "width": WIDTH, "switches": ",".join(SWITCHES), "budget": args.budget,
                "epochs": args.epochs, "finetune_epochs": args.finetune_epochs, "train_images": args.train_images,
                "validation_images": VALIDATION_IMAGES, "lr": LR}
    previous = stamp.get("train", {})
    checkpoint, summary = folder / "model.keras", folder / "summary.json"
    if folder.exists() and previous.get("settings") != settings:
        was = previous.get("settings")
        diff = (", ".join(f"{k} {was.get(k)!r} -> {v!r}" for k, v in settings.items() if was.get(k) != v)
                if was else "no record of how it was trained")
        raise UsageError(f"--out {args.out}: {folder} holds a model trained with other settings ({diff}); pass "
                         "--fresh to train again, or choose another --out.")
    if (previous.get("done") and checkpoint.is_file() and summary.is_file()
            and previous.get("checkpoint_sha256") == _checkpoint_digest(checkpoint)):
        print(f"\nreusing {checkpoint}: trained by an earlier `paradis demo` with the same settings "
              "(--fresh trains again)", flush=True)
        return previous
    stamp["train"] = {"settings": settings, "done": False}
    _write_stamp(out, stamp)
    # An interrupted earlier run of this same command resumes from train/backup/.
    _step(children, _paradis(
        "train", "--model", args.model, "--width", WIDTH, "--dataset", "fashion-mnist",
        "--switches", ",".join(SWITCHES), "--budget", args.budget, "--epochs", args.epochs,
        "--finetune-epochs", args.finetune_epochs, "--limit", args.train_images,
        "--test-limit", VALIDATION_IMAGES, "--lr", LR, "--out", folder))
    stamp["train"] = {"settings": settings, "done": True, "checkpoint_sha256": _checkpoint_digest(checkpoint)}
    _write_stamp(out, stamp)
    return stamp["train"]


def _export(children: Children, args, out: Path, stamp: dict, precision: str) -> Path:
    folder = out / f"bundle-{precision}"
    checkpoint = out / "train" / "model.keras"
    settings = {"switches": ",".join(SWITCHES), "precision": precision,
                "checkpoint_sha256": stamp["train"]["checkpoint_sha256"]}
    if precision == "int8":
        settings["calibration"] = args.calibration
    previous = stamp.setdefault("bundles", {}).get(precision)
    if folder.exists() and previous == settings:
        why = _bundle_matches(folder, precision)
        if why is None:
            print(f"\nreusing {folder}: exported by an earlier `paradis demo` from this checkpoint "
                  "(--fresh exports again)", flush=True)
            return folder
        print(f"\n{folder} cannot be reused ({why}): exporting again", flush=True)
    command = _paradis("export", "--checkpoint", checkpoint, "--switches", ",".join(SWITCHES), "--out", folder)
    if precision == "int8":
        command += ["--int8", "--calibration", str(args.calibration)]
    if folder.exists():
        # Derived from an older checkpoint or damaged: this demo's own folder, replaced.
        command.append("--overwrite")
    stamp["bundles"].pop(precision, None)
    _write_stamp(out, stamp)
    _step(children, command)
    stamp["bundles"][precision] = settings
    _write_stamp(out, stamp)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_peer(children: Children, bundle: Path, precision: str, key: Path, out: Path):
    """``paradis peer`` for device 1 of ``bundle`` in the background; returns
    (its address, its process) once it says it is ready."""
    log = out / "logs" / f"peer1-{precision}.log"
    trace = out / "traces" / f"peer1-{precision}.jsonl"
    trace.unlink(missing_ok=True)  # the peer appends; this run's requests only
    for _ in range(3):
        # A free port can be taken between this check and the peer's bind: then another.
        address = f"127.0.0.1:{_free_port()}"
        command = _paradis("peer", "--bundle", bundle, "--device", 1, "--peers", address,
                           "--session-key-file", key, "--trace", trace)
        _echo(command, f" > {log} 2>&1 &")
        proc = children.start([sys.executable, "-m", "paradis_cli", *map(str, command[1:])], log=log)
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            text = log.read_text()
            if "device 1 ready on" in text:
                print(f"  device 1 ({precision}) ready on {address}: pid {proc.pid}, log {log}", flush=True)
                return address, proc
            if proc.poll() is not None:
                break
            children.sleep(0.05)
        else:
            children.stop(proc)
            raise CommandFailed(f"`paradis peer` for {bundle} was not ready within 60 s; its log {log} ends:\n"
                                f"{log.read_text()[-2000:]}")
        children.stop(proc)
        if "in use" not in log.read_text():
            break
    raise CommandFailed(f"`paradis peer` for {bundle} exited with status {proc.returncode}; its log {log} ends:\n"
                        f"{log.read_text()[-2000:]}")


def _run(children: Children, args, out: Path, bundle: Path, precision: str, switch: str, key: Path,
         peer: Optional[str]) -> dict:
    report = out / "reports" / f"run-{precision}-{switch}.json"
    trace = out / "traces" / f"run-{precision}-{switch}.jsonl"
    report.unlink(missing_ok=True)
    trace.unlink(missing_ok=True)
    command = _paradis("run", "--bundle", bundle, "--switch", switch)
    if peer:
        command += ["--peers", peer]
    command += ["--session-key-file", key, "--dataset", "fashion-mnist", "--count", args.count,
                "--report", report, "--trace", trace]
    _step(children, command)
    rows = json.loads(report.read_text())
    if [r["switch"] for r in rows] != [switch]:
        raise CommandFailed(f"`paradis run --switch {switch}` on {bundle} answered on switches "
                            f"{[r['switch'] for r in rows]} (a peer left?); see its output above.")
    return rows[0]


# -- the table and the pictures -------------------------------------------------

def _rows(out: Path, runs: dict) -> list:
    """One row per (switch, precision): measured top-1 and latency from the
    runs' reports, traffic ratio from training's summary.json, per-device
    FLOPs, parameters and file sizes from the bundle's fusion graphs."""
    from paradis_runtime import read_graph, read_manifest

    summary = json.loads((out / "train" / "summary.json").read_text())
    ratio = {r["switch"]: r["comm_ratio"] for r in summary["results"]}
    rows = []
    for precision in PRECISIONS:
        bundle = out / f"bundle-{precision}"
        graphs = {e["name"]: read_graph(bundle / e["graph"], check_files=False)
                  for e in read_manifest(bundle)["switches"]}
        single = runs[(precision, SWITCHES[0])]["median_ms"]
        for switch in SWITCHES:
            g, r = graphs[switch], runs[(precision, switch)]
            devices = g["devices"]
            rows.append({
                "switch": switch, "precision": precision, "devices": len(devices),
                "top1": r["accuracy"], "count": r["count"],
                "traffic_ratio": ratio.get(switch) if len(devices) > 1 else None,
                "wire_bytes": g["totals"]["bytes_per_inference"] + g["totals"]["input_bytes"] * (len(devices) - 1),
                "flops": [d["flops"] for d in devices], "params": [d["params"] for d in devices],
                "file_bytes": [d["file_bytes"] for d in devices],
                "median_ms": r["median_ms"], "p90_ms": r["p90_ms"], "single_ms": single,
            })
    return rows


def _table(rows: list, count: int) -> str:
    def per_device(values, fmt):
        return " / ".join(fmt(v) for v in values)

    cells = [(r["switch"], r["precision"], str(r["devices"]), f"{100 * r['top1']:.2f}%",
              "-" if r["traffic_ratio"] is None else f"{r['traffic_ratio']:.3f}",
              f"{r['wire_bytes'] / 1024:.1f}",
              per_device(r["flops"], lambda v: f"{v / 1e6:.2f}"), per_device(r["params"], lambda v: f"{v:,}"),
              per_device(r["file_bytes"], lambda v: f"{v / 1024:.0f}"),
              f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['single_ms'] / r['median_ms']:.2f}x")
             for r in rows]
    header = ("switch", "precision", "devices", "top-1", "traffic", "wire KiB", "MFLOPs/device", "params/device",
              "file KiB/device", "latency ms", "p90 ms", "vs 1x1.0")
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    line = lambda values: "  ".join(v.ljust(w) if i < 2 else v.rjust(w)  # noqa: E731
                                    for i, (v, w) in enumerate(zip(values, widths)))
    lines = [line(header), "-" * len(line(header))] + [line(c) for c in cells]
    lines += [
        f"top-1: {count:,} Fashion-MNIST test images through the exported files (`paradis run`); traffic: bytes "
        "between devices over dense tensor parallelism's (every device receiving every channel), from training",
        "wire KiB: what crosses the network per inference (input copy, exchanged channels, partial logits); "
        "per-device columns list device 0 / device 1; params: weights in each file, batch norm folded",
        "latency: median (and 90th percentile) per inference, one at a time, device 0 in `paradis run` and device 1 "
        "in `paradis peer`, on loopback on this machine; vs 1x1.0: the one-device latency over this one "
        "(above 1x: the split is faster)",
    ]
    return "\n".join(lines)


def _plot_accuracy(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    # Float32 and int8 often score the same: a filled and a hollow marker (a
    # dashed and a dotted line) stay visible on top of each other.
    style = {"float32": dict(color="tab:blue", marker="o", line="--", size=50, face="tab:blue"),
             "int8": dict(color="tab:orange", marker="s", line=":", size=110, face="none")}
    for r in rows:
        s = style[r["precision"]]
        if r["traffic_ratio"] is None:
            # One device: no traffic to place it at; its accuracy is the reference line.
            ax.axhline(100 * r["top1"], color=s["color"], linestyle=s["line"], linewidth=1.2,
                       label=f"{r['switch']} {r['precision']} (one device, no traffic)")
        else:
            ax.scatter([r["traffic_ratio"]], [100 * r["top1"]], marker=s["marker"], s=s["size"],
                       facecolors=s["face"], edgecolors=s["color"], linewidths=1.5, zorder=3,
                       label=f"{r['switch']} {r['precision']}: {100 * r['top1']:.1f}%")
    ax.set_xlim(0, 1.05)
    # A few points of margin: a range of a fraction of a point would make noise look like a gap.
    top1 = [100 * r["top1"] for r in rows]
    ax.set_ylim(max(0.0, min(top1) - 3), min(100.0, max(top1) + 2))
    ax.set_xlabel("traffic ratio (bytes between devices / dense tensor parallelism)")
    ax.set_ylabel(f"top-1 % ({rows[0]['count']:,} test images)")
    ax.set_title("Fashion-MNIST ResNet-20 (width 0.5): accuracy against traffic")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _records(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _timeline(out: Path, precision: str, switch: str) -> dict:
    """The bars of one inference (device 0's median one) of ``switch``:
    {device: [(kind, start_ms, end_ms), ...]} on device 0's clock, and the
    request it shows. Compute bars are the stages' measured times; a trace
    holds each device's total send time per request, not each frame's, so
    it is split evenly among the frames the graph has the device send; the
    rest of every gap between stages is waiting (for a frame, or the runtime)."""
    from paradis_runtime import read_graph, read_manifest

    bundle = out / f"bundle-{precision}"
    entry = next(e for e in read_manifest(bundle)["switches"] if e["name"] == switch)
    graph = read_graph(bundle / entry["graph"], check_files=False)
    mine = [r for r in _records(out / "traces" / f"run-{precision}-{switch}.jsonl") if r["switch"] == switch]
    others = {(r["device"], r["request_id"]): r for r in _records(out / "traces" / f"peer1-{precision}.jsonl")
              if r["switch"] == switch}
    complete = [r for r in mine if all((d["device"], r["request_id"]) in others for d in graph["devices"][1:])]
    if not complete:
        raise CommandFailed(f"no request of `paradis run` on {bundle} ({switch}) appears in every device's trace "
                            f"(under {out / 'traces'}); run the demo again.")
    complete.sort(key=lambda r: r["total_s"])
    r0 = complete[len(complete) // 2]
    records = {0: r0, **{d["device"]: others[(d["device"], r0["request_id"])] for d in graph["devices"][1:]}}
    frames: dict = {}
    for s in graph["sends"]:
        key = (s["from"]["device"], s["from"]["stage"])
        frames[key] = frames.get(key, 0) + 1
    input_name = graph["input"]["tensor"]
    input_frames = sum(1 for d in graph["devices"][1:] if any(input_name in st["inputs"] for st in d["stages"]))
    bars = {}
    for device, r in records.items():
        shift = (r["wall_start"] - r0["wall_start"]) * 1e3
        stages = [(name, a * 1e3 + shift, b * 1e3 + shift) for name, a, b in r["stages"]]
        sent = [input_frames if device == graph["input"]["device"] else 0] + \
               [frames.get((device, name), 0) for name, _, _ in stages]
        per_frame = r["wire_s"] * 1e3 / sum(sent) if sum(sent) else 0.0
        edges = [shift] + [t for _, a, b in stages for t in (a, b)] + [shift + r["total_s"] * 1e3]
        out_bars = [("compute", a, b) for _, a, b in stages]
        for k in range(len(sent)):  # the gap before stage k (k = len(stages): after the last)
            start, end = edges[2 * k], edges[2 * k + 1]
            send_end = min(end, start + sent[k] * per_frame)
            if send_end > start:
                out_bars.append(("send", start, send_end))
            if end > send_end:
                out_bars.append(("wait", send_end, end))
        bars[device] = sorted(out_bars, key=lambda b: b[1])
    return {"bars": bars, "request_id": r0["request_id"], "total_ms": r0["total_s"] * 1e3, "of": len(complete)}


def _plot_timeline(out: Path, precision: str, switch: str, path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    t = _timeline(out, precision, switch)
    colors = {"compute": "tab:blue", "send": "tab:orange", "wait": "lightgray"}
    labels = {"compute": "compute (its stages)",
              "send": "send (the request's send time, split evenly among its frames)",
              "wait": "wait (for a frame, or for the runtime)"}
    devices = sorted(t["bars"])
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.9 * len(devices)))
    for row, device in enumerate(devices):
        for kind, a, b in t["bars"][device]:
            ax.barh(row, b - a, left=a, height=0.6, color=colors[kind], edgecolor="none")
    ax.set_yticks(range(len(devices)))
    ax.set_yticklabels([f"device {d}" + (" (input, fusion)" if d == 0 else "") for d in devices])
    ax.invert_yaxis()
    ax.set_xlabel("ms since device 0 started the request")
    ax.set_title(f"one inference, switch {switch} {precision} (request {t['request_id']}, {t['total_ms']:.2f} ms on "
                 f"device 0: the median of {t['of']})", fontsize=10)
    ax.legend(handles=[Patch(color=c, label=labels[k]) for k, c in colors.items()], loc="upper center",
              bbox_to_anchor=(0.5, -0.35 if len(devices) < 3 else -0.2), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return t


# -- the verb -------------------------------------------------------------------

def _check_arguments(args) -> Path:
    if args.count > FASHION_MNIST_TEST:
        raise UsageError(f"--count: Fashion-MNIST has {FASHION_MNIST_TEST:,} test images, received {args.count}; "
                         f"pass at most {FASHION_MNIST_TEST}.")
    if args.train_images > FASHION_MNIST_TRAIN:
        raise UsageError(f"--train-images: Fashion-MNIST has {FASHION_MNIST_TRAIN:,} training images, received "
                         f"{args.train_images}; pass at most {FASHION_MNIST_TRAIN}.")
    if args.calibration > args.train_images:
        raise UsageError(f"--calibration {args.calibration}: int8 calibrates on training images, and "
                         f"--train-images is {args.train_images}; pass at most that many.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder; choose a folder.")
    # Checked before minutes of training, not when the pictures are due.
    if importlib.util.find_spec("matplotlib") is None:
        raise CommandFailed("paradis demo draws its pictures with matplotlib, which is not installed: "
                            "pip install 'paradis-tf[bench]' (make demo installs it).")
    return out


def _forget(out: Path) -> None:
    """--fresh: removes what earlier demos wrote under ``out`` (only the demo's own names)."""
    names = ["train", "bundle-float32", "bundle-int8", "logs", "reports", "traces", STAMP,
             "accuracy_vs_traffic.png", "timeline.png", "table.txt", "results.json"]
    removed = [n for n in names if (out / n).exists()]
    for n in removed:
        path = out / n
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if removed:
        print(f"--fresh: removed {', '.join(str(out / n) for n in removed)}", flush=True)


def run(args) -> dict:
    out = _check_arguments(args)
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Training and export need TensorFlow's Keras backend; peers and runs do not care.
    env["KERAS_BACKEND"] = "tensorflow"
    try:
        with Children(env) as children:
            result = _demo(children, args, out)
    except Interrupted as e:
        print(f"paradis demo: {e} received; every process it started has been stopped", file=sys.stderr,
              flush=True)
        if e.signum == signal.SIGINT:
            raise KeyboardInterrupt from None  # `paradis` exits 130
        raise SystemExit(128 + e.signum) from None
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    print(f"\nparadis demo: done in {minutes} min {seconds} s", flush=True)
    return result


def _demo(children: Children, args, out: Path) -> dict:
    if args.fresh:
        _forget(out)
    for sub in ("logs", "reports", "traces"):
        (out / sub).mkdir(exist_ok=True)
    stamp = _read_stamp(out)
    print(f"paradis demo: {MODELS[args.model]} (width {WIDTH}) on Fashion-MNIST, switches {','.join(SWITCHES)}, "
          f"traffic budget {args.budget} for 2x0.5; everything goes to {out}", flush=True)
    _train(children, args, out, stamp)
    bundles = {p: _export(children, args, out, stamp, p) for p in PRECISIONS}
    key = out / "session.key"
    if not key.is_file():
        # What `python -c 'import secrets; print(secrets.token_hex(32))' > KEY` writes; only this user reads it.
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        print(f"\nwrote a session key to {key} (every device of a deployment holds the same one)", flush=True)
    peers = {p: _start_peer(children, bundles[p], p, key, out) for p in PRECISIONS}
    runs = {}
    for precision in PRECISIONS:
        for switch in reversed(SWITCHES):  # across the peer first, then one device alone
            address = peers[precision][0] if switch != SWITCHES[0] else None
            runs[(precision, switch)] = _run(children, args, out, bundles[precision], precision, switch, key,
                                             address)
    for precision in PRECISIONS:
        print(f"\nstopping device 1 ({precision}): SIGINT to pid {peers[precision][1].pid}", flush=True)
        children.stop(peers[precision][1])
    rows = _rows(out, runs)
    table = _table(rows, args.count)
    print("\n" + table, flush=True)
    (out / "table.txt").write_text(table + "\n")
    accuracy_png, timeline_png = out / "accuracy_vs_traffic.png", out / "timeline.png"
    _plot_accuracy(rows, accuracy_png)
    timeline = _plot_timeline(out, "float32", SWITCHES[1], timeline_png)
    result = {"rows": rows, "timeline": {"precision": "float32", "switch": SWITCHES[1],
                                         "request_id": timeline["request_id"], "bars": timeline["bars"]}}
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {accuracy_png} (top-1 against traffic ratio), {timeline_png} (one inference per device: "
          f"compute, send, wait), {out / 'table.txt'} and {out / 'results.json'}", flush=True)
    return result
