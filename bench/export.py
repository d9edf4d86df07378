"""Exported per-device programs: latency, bytes on the wire and file sizes.

Two models, each with switches 1x1.0, 2x0.5, 4x0.25 and learned-style sparse
gates at budget 0.2 (random gate logits, seed 0, then ``finalize_gates``: no
training is needed to measure cost):

* ``resnet20``: CIFAR-style ResNet-20 on 28x28x1 inputs (62 MFLOPs unsplit:
  the regime where a fixed per-stage call cost dominates);
* ``mobilenet_v1``: MobileNetV1 width 1.0, 1000 classes, on 160x160x3
  inputs (581 MFLOPs unsplit, 9x ResNet-20's: the regime where compute
  dominates, as on a phone).

Each switch is exported twice, float32 and full int8 (calibrated on
Fashion-MNIST training images; for MobileNet resized to 160x160 and repeated
to 3 channels, as stand-ins for photos), and run with the ReferenceExecutor
(ai_edge_litert, one thread per interpreter). A device's latency is the time
of its own stages in one inference (the trace's seconds summed per device),
median over runs (200 per configuration by default: the timing is a small
part of the run, the int8 export the largest); its compute is the time of the interpreter's ``Invoke``
alone inside those same calls (no input resizing, tensor allocation, copies
or Python), so latency minus compute is the per-stage call overhead. All
switches and precisions of a model are run in interleaved rounds so machine
noise hits them alike. The unsplit model (1x1.0) of the same precision is the
baseline.

Writes docs/results/export.json, export.md and export.png.

    python bench/export.py [--model resnet20 mobilenet_v1] [--runs N] [--calibration 200] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SWITCHES = ("1x1.0", "2x0.5", "4x0.25")
UNSPLIT = "1x1.0"
PRECISIONS = ("float32", "int8")
BUDGET = 0.2
WARMUP = 5
MOBILENET_SIDE = 160

# Per model: how it is built, its input and its default number of timed runs.
MODELS = {
    "resnet20": {"label": "CifarResNet depth 20", "input_shape": (28, 28, 1), "runs": 200},
    "mobilenet_v1": {"label": "MobileNetV1", "input_shape": (MOBILENET_SIDE, MOBILENET_SIDE, 3), "runs": 200},
}


def build_model(name: str, width: float):
    import numpy as np
    import keras
    from paradis_tf.models import CifarResNet, MobileNetV1

    keras.utils.set_random_seed(0)
    if name == "resnet20":
        model = CifarResNet(depth=20, width=width, num_classes=10, input_shape=MODELS[name]["input_shape"],
                            switches=",".join(SWITCHES))
    elif name == "mobilenet_v1":
        model = MobileNetV1(width=width, num_classes=1000, input_shape=MODELS[name]["input_shape"],
                            switches=",".join(SWITCHES))
    else:
        raise ValueError(f"Unknown model {name!r}; known: {sorted(MODELS)}.")
    # Sparse gates at the budget without training: random logits, then the
    # budget-exact binary selection that finalize_gates keeps.
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "gate_logits" in w.path:
            w.assign(rng.normal(size=w.shape).astype("float32"))
    model.finalize_gates(budget=BUDGET)
    return model


def model_inputs(name: str, images):
    """Fashion-MNIST uint8 (N, 28, 28, 1) -> the model's float32 inputs in [0, 1].

    MobileNet gets the images resized (bilinear) to 160x160 and repeated to 3
    channels: stand-ins for photos, which only int8 calibration (accuracy),
    not latency, depends on.
    """
    import numpy as np

    x = images.astype("float32") / 255.0
    if name == "mobilenet_v1":
        import tensorflow as tf

        x = tf.image.resize(x, (MOBILENET_SIDE, MOBILENET_SIDE), method="bilinear").numpy()
        x = np.clip(np.repeat(x, 3, axis=-1), 0.0, 1.0).astype("float32")
    return x


def export_bundles(model, calibration, folder: str) -> dict:
    """{precision: bundle folder}, both precisions of every switch."""
    from paradis_export import export_bundle

    bundles = {}
    for precision in PRECISIONS:
        t0 = time.time()
        out = os.path.join(folder, precision)
        export_bundle(model, ",".join(SWITCHES), out, int8=precision == "int8",
                      calibration=calibration if precision == "int8" else None, progress=None)
        print(f"  exported {precision} bundle ({', '.join(SWITCHES)}) in {time.time() - t0:.1f} s", flush=True)
        bundles[precision] = out
    return bundles


class _InvokeTimer:
    """Stands in for an interpreter's pybind wrapper inside its signature
    runners: forwards every call, and records how long each ``Invoke`` took,
    so one ordinary executor run yields both the stage's call time and its
    compute alone."""

    def __init__(self, wrapper, log: list):
        self._wrapper = wrapper
        self._log = log
        # Bound methods as instance attributes: the runner's other calls cost
        # the same attribute lookup as on the real wrapper.
        for attr in ("ResizeInputTensor", "AllocateTensors", "SetTensor", "GetTensor"):
            setattr(self, attr, getattr(wrapper, attr))

    def Invoke(self, *args):
        start = time.perf_counter()
        out = self._wrapper.Invoke(*args)
        self._log.append(time.perf_counter() - start)
        return out

    def __getattr__(self, attr):
        return getattr(self._wrapper, attr)


def _instrument(executor) -> list:
    """Routes every signature runner's Invoke of ``executor`` through one
    timer; returns the log it appends to (one entry per stage run)."""
    log = []
    timers = {}
    for runners in executor._runners:
        for runner in runners.values():
            wrapper = runner._interpreter_wrapper
            if id(wrapper) not in timers:
                timers[id(wrapper)] = _InvokeTimer(wrapper, log)
            runner._interpreter_wrapper = timers[id(wrapper)]
    return log


def measure_latency(bundles: dict, images, runs: int, threads: int) -> tuple:
    """Per (switch, precision): per-device median call ms and Invoke ms, the
    per-stage samples (call seconds, Invoke seconds, device count), and the executors."""
    from paradis_export import ReferenceExecutor

    keys = [(s, p) for p in PRECISIONS for s in SWITCHES]
    executors = {(s, p): ReferenceExecutor(bundles[p], s, num_threads=threads) for s, p in keys}
    logs = {k: _instrument(ex) for k, ex in executors.items()}
    samples = {k: [[] for _ in ex.graph["devices"]] for k, ex in executors.items()}
    compute = {k: [[] for _ in ex.graph["devices"]] for k, ex in executors.items()}
    stage_calls = {k: {} for k in keys}  # (device, stage) -> [(call s, invoke s), ...]
    n = len(images)
    for r in range(WARMUP + runs):
        # Rotate the order each round: no configuration always runs first
        # (cold caches) or last.
        shift = r % len(keys)
        for k in keys[shift:] + keys[:shift]:
            logs[k].clear()
            _, trace = executors[k].run(images[r % n : r % n + 1])
            if len(logs[k]) != len(trace):
                raise RuntimeError(f"{k}: {len(logs[k])} Invoke calls timed for {len(trace)} stages run.")
            if r < WARMUP:
                continue
            per_device = [0.0] * len(samples[k])
            per_device_invoke = [0.0] * len(samples[k])
            for entry, invoke in zip(trace, logs[k]):
                per_device[entry["device"]] += entry["seconds"]
                per_device_invoke[entry["device"]] += invoke
                stage_calls[k].setdefault((entry["device"], entry["stage"]), []).append((entry["seconds"], invoke))
            for d in range(len(per_device)):
                samples[k][d].append(per_device[d])
                compute[k][d].append(per_device_invoke[d])
    medians = {k: [1e3 * statistics.median(v) for v in per_dev] for k, per_dev in samples.items()}
    compute_medians = {k: [1e3 * statistics.median(v) for v in per_dev] for k, per_dev in compute.items()}
    return medians, compute_medians, stage_calls, executors


def stage_overhead(stage_calls: dict, executors: dict, precision: str) -> dict:
    """Per-stage fixed cost of the split switches of one precision.

    ``call_minus_invoke_us``: median over every stage call of (call time -
    Invoke time): resizing, allocation, copies in and out, Python.
    ``cheapest_call_us`` / ``cheapest_invoke_us``: median call and Invoke time
    of the 10% of stages with the fewest FLOPs (for ResNet-20 a stage with
    tiny compute: the fixed cost of one stage).
    """
    per_stage = []  # (flops, median call s, median invoke s, calls)
    for (s, p), stages in stage_calls.items():
        if p != precision or s == UNSPLIT:
            continue
        flops = {(d, st["name"]): st["flops"] for d, dev in enumerate(executors[(s, p)].graph["devices"])
                 for st in dev["stages"]}
        for key, calls in stages.items():
            per_stage.append((flops[key], statistics.median(c for c, _ in calls),
                              statistics.median(i for _, i in calls), calls))
    if not per_stage:
        return {"precision": precision, "call_minus_invoke_us": None, "cheapest_call_us": None,
                "cheapest_invoke_us": None, "cheapest_mflops": None, "stages": 0, "stage_calls": 0}
    over = [1e6 * (c - i) for *_, calls in per_stage for c, i in calls]
    cheap = sorted(per_stage, key=lambda r: r[0])[: max(1, len(per_stage) // 10)]
    return {"precision": precision, "call_minus_invoke_us": round(statistics.median(over), 2),
            "cheapest_call_us": round(1e6 * statistics.median(r[1] for r in cheap), 2),
            "cheapest_invoke_us": round(1e6 * statistics.median(r[2] for r in cheap), 2),
            "cheapest_mflops": round(statistics.median(r[0] for r in cheap) / 1e6, 3),
            "stages": len(per_stage), "stage_calls": len(over)}


def tables(model_name: str, medians: dict, compute_medians: dict, executors: dict) -> dict:
    latency, wire, files = [], [], []
    for p in PRECISIONS:
        base_ms = medians[(UNSPLIT, p)][0]
        base_compute = compute_medians[(UNSPLIT, p)][0]
        base_dev = executors[(UNSPLIT, p)].graph["devices"][0]
        for s in SWITCHES:
            g = executors[(s, p)].graph
            for d, dev in enumerate(g["devices"]):
                # Stages that read a tensor another device made: each waits on the network.
                waits = sum(any(g["tensors"][t]["device"] not in (None, d) for t in st["inputs"])
                            for st in dev["stages"])
                ms = medians[(s, p)][d]
                cms = compute_medians[(s, p)][d]
                latency.append({"model": model_name, "switch": s, "precision": p, "device": d,
                                "latency_ms": round(ms, 4),
                                "latency_ratio_vs_unsplit": round(ms / base_ms, 4),
                                "compute_ms": round(cms, 4),
                                "compute_ratio_vs_unsplit": round(cms / base_compute, 4),
                                "flops_ratio_vs_unsplit": round(dev["flops"] / base_dev["flops"], 4),
                                "stages": len(dev["stages"]), "stages_waiting_remote": waits})
                files.append({"model": model_name, "switch": s, "precision": p, "device": d,
                              "file_bytes": dev["file_bytes"],
                              "file_ratio_vs_unsplit": round(dev["file_bytes"] / base_dev["file_bytes"], 4),
                              "params": dev["params"], "flops": dev["flops"]})
    for s in SWITCHES:
        f32 = executors[(s, "float32")].graph["totals"]["bytes_per_inference"]
        i8 = executors[(s, "int8")].graph["totals"]["bytes_per_inference"]
        wire.append({"model": model_name, "switch": s, "float32_bytes": f32, "int8_bytes": i8,
                     "int8_over_float32": round(i8 / f32, 4) if f32 else None})
    return {"latency": latency, "wire": wire, "files": files}


def break_even(result: dict, overhead: dict) -> list:
    """Per model, split switch and precision, on the slowest device: how much
    unsplit compute (ms) splitting needs before that device beats the unsplit
    model on one CPU, from latency ~ stages * overhead + compute_ratio * C.

    overhead: the measured per-stage call cost (call - Invoke) of that
    precision. ``C* = stages * overhead / (1 - compute_ratio)``."""
    rows = []
    for p in PRECISIONS:
        o = overhead[p]["call_minus_invoke_us"]
        for s in SWITCHES[1:]:
            devs = [r for r in result["latency"] if r["switch"] == s and r["precision"] == p]
            if not devs or o is None:
                continue
            worst = max(devs, key=lambda r: r["latency_ms"])
            cr = worst["compute_ratio_vs_unsplit"]
            rows.append({"switch": s, "precision": p, "device": worst["device"], "stages": worst["stages"],
                         "compute_ratio_vs_unsplit": cr, "flops_ratio_vs_unsplit": worst["flops_ratio_vs_unsplit"],
                         "break_even_unsplit_compute_ms":
                             round(worst["stages"] * o / 1e3 / (1 - cr), 3) if cr < 1 else None})
    return rows


def run_model(name: str, args, x_train, x_test) -> dict:
    t_model = time.time()
    spec = MODELS[name]
    runs = args.runs if args.runs is not None else (5 if args.quick else spec["runs"])
    calibration = model_inputs(name, x_train[: args.calibration])
    images = model_inputs(name, x_test[:64])  # timed inputs: never seen by calibration
    model = build_model(name, args.width)
    print(f"[{name}] built {spec['label']} width {args.width:g} on {'x'.join(map(str, spec['input_shape']))}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="paradis-bench-export-") as folder:
        bundles = export_bundles(model, calibration, folder)
        t0 = time.time()
        medians, compute_medians, stage_calls, executors = measure_latency(bundles, images, runs, args.threads)
        print(f"  timed {len(executors)} configurations x {runs} runs in {time.time() - t0:.1f} s", flush=True)
        result = tables(name, medians, compute_medians, executors)
        overhead = {p: stage_overhead(stage_calls, executors, p) for p in PRECISIONS}
        del executors
    del model
    import keras

    keras.backend.clear_session()
    unsplit_ratio = medians[(UNSPLIT, "int8")][0] / medians[(UNSPLIT, "float32")][0]
    setting = {
        "model": f"{spec['label']} width {args.width:g}",
        "input_shape": [1, *spec["input_shape"]],
        "budget": BUDGET,
        "runs": runs,
        "calibration": args.calibration,
        "calibration_data": ("Fashion-MNIST training images" if name == "resnet20" else
                             f"Fashion-MNIST training images resized to {MOBILENET_SIDE}x{MOBILENET_SIDE} "
                             "and repeated to 3 channels (stand-ins for photos)"),
        "threads": args.threads,
        "warmup": WARMUP,
        "switches": list(SWITCHES),
    }
    return {"setting": setting, **result,
            "stage_overhead": [{"model": name, **overhead[p]} for p in PRECISIONS],
            "break_even": [{"model": name, **r} for r in break_even(result, overhead)],
            "unsplit_int8_over_float32_latency": round(unsplit_ratio, 4),
            "seconds": round(time.time() - t_model, 1)}


def _fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _fmt_break_even(x) -> str:
    return "never (compute ratio >= 1)" if x is None else f"{x:.2f}"


def _joined(result: dict) -> list:
    lat = {(r["switch"], r["precision"], r["device"]): r for r in result["latency"]}
    return [(f, lat[(f["switch"], f["precision"], f["device"])]) for f in result["files"]]


def _shape(res: dict) -> str:
    return "x".join(map(str, res["setting"]["input_shape"][1:]))


def render_text(name: str, res: dict) -> str:
    head = (f"{'switch':<7} {'prec':<7} {'dev':>3} {'stages':>6} {'remote':>6} {'ms':>8} {'ms/unspl':>8} "
            f"{'compute':>8} {'cmp/unspl':>9} {'flops/unspl':>11} {'file KiB':>9} {'file/unspl':>10} "
            f"{'params':>10} {'MFLOPs':>8}")
    text = [f"== {name}: {res['setting']['model']} on {_shape(res)}, {res['setting']['runs']} runs ==",
            head, "-" * len(head)]
    for f, s in _joined(res):
        text.append(f"{f['switch']:<7} {f['precision']:<7} {f['device']:>3} {s['stages']:>6} "
                    f"{s['stages_waiting_remote']:>6} {s['latency_ms']:>8.3f} {s['latency_ratio_vs_unsplit']:>8.3f} "
                    f"{s['compute_ms']:>8.3f} {s['compute_ratio_vs_unsplit']:>9.3f} "
                    f"{s['flops_ratio_vs_unsplit']:>11.3f} "
                    f"{f['file_bytes'] / 1024:>9.1f} {f['file_ratio_vs_unsplit']:>10.3f} {f['params']:>10,} "
                    f"{f['flops'] / 1e6:>8.2f}")
    text += ["", f"unsplit int8 / float32 latency: {res['unsplit_int8_over_float32_latency']:.3f}"]
    for o in res["stage_overhead"]:
        text.append(f"per-stage cost {o['precision']:<7}: call - Invoke median {o['call_minus_invoke_us']} us; "
                    f"cheapest 10% of stages ({o['cheapest_mflops']} MFLOPs): call {o['cheapest_call_us']} us, "
                    f"Invoke {o['cheapest_invoke_us']} us")
    for b in res["break_even"]:
        be = b["break_even_unsplit_compute_ms"]
        text.append(f"break-even {b['switch']:<6} {b['precision']:<7}: "
                    f"{'never (compute ratio >= 1)' if be is None else f'unsplit compute >= {be:.3f} ms'} "
                    f"(slowest device {b['device']}, "
                    f"{b['stages']} stages, compute ratio {b['compute_ratio_vs_unsplit']:.3f})")
    text += ["", f"{'switch':<7} {'float32 B/inf':>13} {'int8 B/inf':>11} {'int8/float32':>12}"]
    for w in res["wire"]:
        text.append(f"{w['switch']:<7} {w['float32_bytes']:>13,} {w['int8_bytes']:>11,} "
                    f"{_fmt_ratio(w['int8_over_float32']):>12}")
    return "\n".join(text)


def _summary(res: dict) -> dict:
    """Numbers the reading quotes: per precision, the unsplit latency and the
    slowest device (by latency) of each split switch."""
    out = {}
    for p in PRECISIONS:
        rows = [r for r in res["latency"] if r["precision"] == p]
        unsplit = next(r for r in rows if r["switch"] == UNSPLIT)
        out[p] = {"unsplit_ms": unsplit["latency_ms"], "unsplit_compute_ms": unsplit["compute_ms"],
                  **{s: max((r for r in rows if r["switch"] == s), key=lambda r: r["latency_ms"])
                     for s in SWITCHES[1:]}}
    return out


def render_model_md(name: str, res: dict) -> list:
    st = res["setting"]
    md = [f"## {name}: {st['model']} on {_shape(res)}", "",
          f"Calibration: {st['calibration']} {st['calibration_data']}. Median over {st['runs']} inferences after "
          f"{st['warmup']} warm-up runs. This model's part of the run took {res['seconds']} s (export included).", "",
          "`latency` is the device's stage calls as the ReferenceExecutor makes them; `compute` is the "
          "interpreter's `Invoke` alone inside those calls; `FLOPs / unsplit` is what the partition promises; "
          "`remote` counts the stages that read a tensor from another device (each waits on the network on a "
          "real deployment).", "",
          "| switch | precision | device | stages | remote | latency ms | latency / unsplit | compute ms "
          "| compute / unsplit | FLOPs / unsplit | file bytes | file / unsplit | params | FLOPs |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f, s in _joined(res):
        md.append(f"| {f['switch']} | {f['precision']} | {f['device']} | {s['stages']} | {s['stages_waiting_remote']} "
                  f"| {s['latency_ms']:.3f} | {s['latency_ratio_vs_unsplit']:.3f} | {s['compute_ms']:.3f} | "
                  f"{s['compute_ratio_vs_unsplit']:.3f} | {s['flops_ratio_vs_unsplit']:.3f} | {f['file_bytes']:,} | "
                  f"{f['file_ratio_vs_unsplit']:.3f} | {f['params']:,} | {f['flops']:,} |")
    md += ["", f"Unsplit model, int8 / float32 latency: **{res['unsplit_int8_over_float32_latency']:.3f}**.", "",
           "Per-stage cost (every stage of the split switches): the median of call - `Invoke` over all calls; "
           "and the median call and `Invoke` time of the 10% of stages with the fewest FLOPs.", "",
           "| precision | call - Invoke us | cheapest 10%: MFLOPs | call us | Invoke us | stages | stage calls |",
           "|---|---|---|---|---|---|---|"]
    for o in res["stage_overhead"]:
        md.append(f"| {o['precision']} | {o['call_minus_invoke_us']} | {o['cheapest_mflops']} | "
                  f"{o['cheapest_call_us']} | {o['cheapest_invoke_us']} | {o['stages']} | {o['stage_calls']:,} |")
    md += ["", "Break-even on one CPU, slowest device of each split switch: with latency ~ stages x (call - Invoke) "
           "+ compute ratio x C, that device beats the unsplit model once the unsplit compute C exceeds "
           "stages x (call - Invoke) / (1 - compute ratio). This assumes the compute ratio stays as measured "
           "when the model grows, which it roughly does only for the same architecture.", "",
           "| switch | precision | device | stages | compute / unsplit | FLOPs / unsplit "
           "| break-even unsplit compute ms |",
           "|---|---|---|---|---|---|---|"]
    for b in res["break_even"]:
        md.append(f"| {b['switch']} | {b['precision']} | {b['device']} | {b['stages']} | "
                  f"{b['compute_ratio_vs_unsplit']:.3f} | {b['flops_ratio_vs_unsplit']:.3f} | "
                  f"{_fmt_break_even(b['break_even_unsplit_compute_ms'])} |")
    md += ["", "Bytes on the wire per inference (all tensors sent between devices, `totals.bytes_per_inference` "
           "of the fusion graph):", "", "| switch | float32 bytes | int8 bytes | int8 / float32 |", "|---|---|---|---|"]
    for w in res["wire"]:
        md.append(f"| {w['switch']} | {w['float32_bytes']:,} | {w['int8_bytes']:,} | "
                  f"{_fmt_ratio(w['int8_over_float32'])} |")
    return md + [""]


def render_reading(models: dict) -> list:
    """The interpretation, with every number taken from this run."""
    md = ["## Reading", ""]
    gaps = {}  # model -> precision -> compute ratio / FLOPs ratio of the slowest 4x0.25 device
    for name, res in models.items():
        s = _summary(res)
        o = {r["precision"]: r for r in res["stage_overhead"]}
        split = [r["latency_ratio_vs_unsplit"] for r in res["latency"] if r["switch"] != UNSPLIT]
        span = f"{min(split):.2f}-{max(split):.2f}x the unsplit latency"
        if min(split) >= 0.8:
            regime = f"**overhead-bound**: no split device saves more than a fifth of the unsplit time ({span})"
        elif max(split) <= 0.75:
            regime = f"**compute-bound**: every split device runs in a fraction of the unsplit time ({span})"
        else:
            regime = f"**in between**: some split devices save time, others do not ({span})"
        parts = []
        for p in PRECISIONS:
            q = s[p]
            sw = "; ".join(
                f"{k} slowest device {q[k]['latency_ms']:.2f} ms = **{q[k]['latency_ratio_vs_unsplit']:.2f}x** "
                f"(compute {q[k]['compute_ratio_vs_unsplit']:.2f}x, FLOPs {q[k]['flops_ratio_vs_unsplit']:.2f}x, "
                f"{q[k]['stages']} stages)" for k in SWITCHES[1:])
            parts.append(f"{p}: unsplit {q['unsplit_ms']:.2f} ms ({q['unsplit_compute_ms']:.2f} ms in `Invoke`); {sw}")
        shares = {p: 1 - s[p]["4x0.25"]["compute_ms"] / s[p]["4x0.25"]["latency_ms"] for p in PRECISIONS}
        gaps[name] = {p: s[p]["4x0.25"]["compute_ratio_vs_unsplit"] / s[p]["4x0.25"]["flops_ratio_vs_unsplit"]
                      for p in PRECISIONS}
        md.append(
            f"- **{name}** ({res['setting']['model']}, {_shape(res)}) is {regime}. " + ". ".join(parts) + ". "
            f"Stage calls cost {o['float32']['call_minus_invoke_us']:.0f} us (float32) / "
            f"{o['int8']['call_minus_invoke_us']:.0f} us (int8) outside `Invoke` (median); its cheapest stages "
            f"({o['float32']['cheapest_mflops']} MFLOPs) take {o['float32']['cheapest_call_us']:.0f} us / "
            f"{o['int8']['cheapest_call_us']:.0f} us per call, {o['float32']['cheapest_invoke_us']:.0f} / "
            f"{o['int8']['cheapest_invoke_us']:.0f} us of it in `Invoke`. On the slowest "
            f"4x0.25 device that overhead is {100 * shares['float32']:.0f}% (float32) and "
            f"{100 * shares['int8']:.0f}% (int8) of the latency, and its compute is "
            f"{gaps[name]['float32']:.1f}x / {gaps[name]['int8']:.1f}x its FLOP share.")
    int8_worse = all(g["int8"] > g["float32"] for g in gaps.values())
    both = len(models) > 1
    md += [
        "- FLOPs versus compute: a device with a quarter of the FLOPs does not run in a quarter of the time. Each "
        "stage is its own subgraph whose `Invoke` has a fixed cost (the cheapest stages' `Invoke` column), and "
        "convolutions with a half or a quarter of the channels most likely run at a lower FLOP rate than the "
        "full ones (not measured separately), so the compute ratio sits well above the FLOPs ratio"
        + (f", most for {max(gaps, key=lambda n: gaps[n]['float32'])}" if both else "")
        + ("; int8 devices lose more of their FLOP savings than float32 ones in this run (not broken down "
           "further here)." if int8_worse else "."),
        "- Compute versus latency: the rest is the per-stage call cost of the Python signature runner (input "
        "resize, tensor allocation, copies in and out, Python), paid once per stage and larger for larger "
        "tensors" + (" (hence higher for MobileNet at 160x160 than for ResNet-20 at 28x28)" if both else "")
        + ". A native runtime that "
        "keeps its tensors allocated pays less of it, but not none.",
        "- When splitting pays off on one CPU: a device's latency is about stages x per-stage cost + compute "
        "ratio x unsplit compute, so a split with S stages per device wins once the unsplit compute exceeds "
        "S x per-stage cost / (1 - compute ratio) (the break-even tables). "
        + " ".join(_verdict(name, res) for name, res in models.items()),
        "- Limits of this measurement: all devices run in one process, one after the other, on one machine with "
        f"{os.cpu_count()} cores, so these are per-device costs, not an end-to-end split latency. On real phones "
        "each device has its own CPU and they run at once, so the end-to-end latency is at least the slowest "
        "device's, plus the network: every stage in the `remote` column waits for a tensor from another device, "
        "so the split stays ahead of running alone only while a network round costs less than (unsplit latency "
        "- slowest device latency) / its remote stages"
        + _round_budget(models) + ", and before the bytes in the wire tables are paid for; phone-to-phone "
        "Wi-Fi round trips are commonly a millisecond or more (not measured here).",
        "- MobileNet's inputs are Fashion-MNIST images resized to 160x160 and repeated to 3 channels, stand-ins "
        "because no RGB photo set ships with the project; calibration data changes the int8 model's accuracy "
        "(its quantization scales), not its latency. The gates are untrained (random logits at budget 0.2), "
        "which changes accuracy but not cost. Absolute times on this shared 2-core machine drift between runs "
        "of the script by up to tens of percent; a latency ratio within a few percent of 1 can land on either "
        "side of 1 on another run, ratios well away from 1 do not flip (all configurations of a model are "
        "timed in the same interleaved rounds).",
        "",
    ]
    return md


def _verdict(name: str, res: dict) -> str:
    """Where a model's unsplit compute sits against its break-even points."""
    s = _summary(res)
    finite = {(b["switch"], b["precision"]): b["break_even_unsplit_compute_ms"] for b in res["break_even"]}
    parts = []
    for p in PRECISIONS:
        c = s[p]["unsplit_compute_ms"]
        for sw in SWITCHES[1:]:
            be = finite.get((sw, p))
            if be is None:
                parts.append(f"{sw} {p}: never (its device's compute alone is not below the unsplit model's)")
            else:
                parts.append(f"{sw} {p}: break-even {be:.2f} ms, so {'above' if c > be else 'below'} it "
                             f"({c / be:.1f}x)")
    ratios = [r["latency_ratio_vs_unsplit"] for r in res["latency"] if r["switch"] != UNSPLIT]
    faster = sum(x < 0.95 for x in ratios)
    even = sum(0.95 <= x <= 1.05 for x in ratios)
    return (f"**{name}** ({_shape(res)}): unsplit compute {s['float32']['unsplit_compute_ms']:.2f} ms (float32) / "
            f"{s['int8']['unsplit_compute_ms']:.2f} ms (int8); " + "; ".join(parts)
            + f". Of its {len(ratios)} split devices {faster} are more than 5% faster than the unsplit model, "
            f"{even} within 5% of it and {len(ratios) - faster - even} more than 5% slower.")


def _round_budget(models: dict) -> str:
    """' (here: ...)': the per-round network latency at which each model's
    slowest 4x0.25 float32 device stops beating the unsplit model."""
    items = []
    for name, res in models.items():
        q = _summary(res)["float32"]["4x0.25"]
        saved = _summary(res)["float32"]["unsplit_ms"] - q["latency_ms"]
        if q["stages_waiting_remote"] and saved > 0.05 * _summary(res)["float32"]["unsplit_ms"]:
            items.append(f"{name} 4x0.25 float32: {saved:.2f} ms / {q['stages_waiting_remote']} = "
                         f"{1e3 * saved / q['stages_waiting_remote']:.0f} us per round")
        elif saved > 0:
            items.append(f"{name} 4x0.25 float32: saves {saved:.2f} ms, under 5%, so nothing is left to spend "
                         "on the network")
        else:
            items.append(f"{name} 4x0.25 float32: already {-saved:.2f} ms slower than the unsplit model "
                         "before any network")
    return f" (here: {'; '.join(items)})" if items else ""


def _describe(name: str, res: dict) -> str:
    return f"{name} ({res['setting']['model']} on {'x'.join(map(str, res['setting']['input_shape'][1:]))})"


def render_md(models: dict, command: str, total_seconds: float) -> str:
    md = [
        "# Exported per-device programs: latency, wire bytes, file sizes", "",
        f"Models: {', '.join(_describe(n, r) for n, r in models.items())}; "
        f"switches {', '.join(SWITCHES)} with sparse gates at budget {BUDGET} (random gate logits, seed 0, then "
        "`finalize_gates`: untrained, which changes accuracy but not cost). Each switch is exported as a float32 "
        "and a full-int8 bundle and run with the ReferenceExecutor on ai_edge_litert, one thread per interpreter, "
        "all devices in one process. A device's latency is the time of its own stages in one inference "
        "(signature-runner calls, Python overhead included; no network), median over the timed inferences, with "
        "all switches and precisions of a model interleaved in rotating rounds; its compute is the time of the "
        "interpreter's `Invoke` alone inside those same calls. Each stage is one signature call, so a device pays "
        "a fixed cost per stage (the `stages` column) on top of its FLOPs. Ratios compare with the unsplit model "
        f"(1x1.0) of the same precision. Machine: {platform.machine()}, {os.cpu_count()} cores. Rerun with "
        f"`.venv/bin/python bench/export.py` (`--quick` for a smoke test, `--model resnet20` for one model); "
        f"this run: `{command}`, {total_seconds:.0f} s in all.", "",
        "![latency, compute and FLOPs of the slowest device per switch, relative to unsplit](export.png)", "",
    ]
    md += render_reading(models)
    for name, res in models.items():
        md += render_model_md(name, res)
    return "\n".join(md)


def plot(models: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    metrics = (("latency_ratio_vs_unsplit", "latency"), ("compute_ratio_vs_unsplit", "compute (Invoke)"),
               ("flops_ratio_vs_unsplit", "FLOPs"))
    for ax, (name, res) in zip(axes[0], models.items()):
        s = _summary(res)
        labels = [f"{sw}\n{p}" for p in PRECISIONS for sw in SWITCHES[1:]]
        width = 0.26
        for i, (key, label) in enumerate(metrics):
            values = [s[p][sw][key] for p in PRECISIONS for sw in SWITCHES[1:]]
            ax.bar([j + (i - 1) * width for j in range(len(labels))], values, width, label=label)
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_ylabel("slowest device / unsplit")
        unsplit = s["float32"]["unsplit_ms"]
        ax.set_title(f"{name} ({'x'.join(map(str, res['setting']['input_shape'][1:]))}, unsplit float32 "
                     f"{unsplit:.1f} ms)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=list(MODELS),
                        help="one or more models (default: all, in the order resnet20 mobilenet_v1)")
    parser.add_argument("--width", type=float, default=None, help="width multiplier of every model (default 1.0)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed inferences per configuration, every model "
                             "(default: " + ", ".join(f"{k} {v['runs']}" for k, v in MODELS.items()) + ")")
    parser.add_argument("--calibration", type=int, default=None,
                        help="Fashion-MNIST training images for int8 calibration (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads per interpreter")
    parser.add_argument("--quick", action="store_true", help="smoke test: width 0.25, 5 runs, 20 calibration images")
    parser.add_argument("--out", default=None, help="folder for export.json, .md, .png (default docs/results)")
    args = parser.parse_args()
    defaults = {"width": 0.25, "calibration": 20} if args.quick else {"width": 1.0, "calibration": 200}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if (args.runs is not None and args.runs < 1) or args.calibration < 1 or args.threads < 1:
        raise SystemExit(f"--runs, --calibration and --threads must be >= 1, received "
                         f"{args.runs}, {args.calibration}, {args.threads}.")
    names = list(dict.fromkeys(args.model))

    from paradis_tf.data import load_fashion_mnist

    t_start = time.time()
    x, _ = load_fashion_mnist("train")
    if args.calibration > len(x):
        raise SystemExit(f"--calibration: at most {len(x)} training images, received {args.calibration}.")
    xt, _ = load_fashion_mnist("test")

    models = {}
    for name in names:
        models[name] = run_model(name, args, x, xt)
        print(render_text(name, models[name]), flush=True)
        print(flush=True)

    total = round(time.time() - t_start, 1)
    command = " ".join([".venv/bin/python bench/export.py"] + sys.argv[1:])
    payload = {
        "setting": {n: r["setting"] for n, r in models.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": command,
        **{key: [row for r in models.values() for row in r[key]]
           for key in ("latency", "wire", "files", "stage_overhead", "break_even")},
        "unsplit_int8_over_float32_latency": {n: r["unsplit_int8_over_float32_latency"] for n, r in models.items()},
        "model_seconds": {n: r["seconds"] for n, r in models.items()},
        "seconds": total,
    }
    out = args.out or C.RESULTS
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "export.json"), "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "export.md"), "w") as f:
        f.write(render_md(models, command, total))
    plot(models, os.path.join(out, "export.png"))
    print(f"wrote {os.path.join(out, 'export.json')}, export.md and export.png ({total} s in all)")


if __name__ == "__main__":
    main()
