"""Cost of turning TensorFlow's oneDNN kernels off (TF_ENABLE_ONEDNN_OPTS=0).

TensorFlow 2.21's oneDNN filter gradient of a 1x1 stride-2 convolution
corrupts the heap on an odd batch (docs/onednn_odd_batch.md); setting
TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow is imported avoids it. This
measures what that costs on the project's real training: resnet20 on
Fashion-MNIST-shaped input (28x28x1, 10 classes), switches 1x1.0,2x0.5,
learned gates, compiled as ``paradis train`` compiles it (Adam 1e-3,
budget 0.2), at an even batch (128, where both settings are safe).

The variable is read when TensorFlow is imported, so each configuration runs
in its own child process; children alternate A (oneDNN on), B (oneDNN off),
A, B, ... so that machine noise hits both alike. A child traces and warms
up, then times ``--windows`` windows of ``--steps`` ``train_on_batch`` steps
and of ``predict_on_batch`` calls (batch 128) and reports each median.

Writes docs/results/onednn.json and docs/results/onednn.md.

    python bench/onednn.py [--rounds 3] [--batch 128] [--steps 5] [--windows 5]
        [--configs onednn,no_onednn[,onednn_avx2,xla]]

``--configs`` adds two other ways around the bug (not the default: each
setting adds about two and a half minutes at 3 rounds): oneDNN with its ISA capped at AVX2,
and XLA (``jit_compile=True``), which does not call TensorFlow's oneDNN
kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

ROOT, RESULTS = C.ROOT, C.RESULTS
# name -> (environment of the child, jit_compile, description). The first is
# the baseline (A) every ratio divides by; --configs picks which run.
CONFIGS = {
    "onednn": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, False, "oneDNN on (TensorFlow's default)"),
    "no_onednn": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False, "TF_ENABLE_ONEDNN_OPTS=0"),
    "onednn_avx2": ({"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}, False,
                    "oneDNN on, its ISA capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2)"),
    "xla": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, True, "oneDNN on, model compiled with jit_compile=True (XLA)"),
}
DEFAULT_CONFIGS = "onednn,no_onednn"
MODEL = dict(name="resnet20", input_shape=(28, 28, 1), num_classes=10, switches="1x1.0,2x0.5",
             gates="learned", width=1.0)


def _measure(args) -> dict:
    """Runs in a child process with TF_ENABLE_ONEDNN_OPTS set by the parent."""
    import numpy as np
    import keras
    from paradis_tf.models import build_model

    t_start = time.perf_counter()
    keras.utils.set_random_seed(0)
    spec = dict(MODEL)
    model = build_model(spec.pop("name"), **spec)
    # As ``paradis train`` compiles it (its BudgetSchedule and loss weights
    # change values, not the work of a step).
    model.compile(optimizer=keras.optimizers.Adam(1e-3), budget=0.2, jit_compile=CONFIGS[args.config][1])
    rng = np.random.default_rng(0)
    x = rng.random((args.batch,) + MODEL["input_shape"], dtype="float32")
    y = rng.integers(0, MODEL["num_classes"], args.batch)
    C.warm_up(model, x, y, steps=args.warmup)
    for _ in range(args.warmup):
        model.predict_on_batch(x)
    setup_s = time.perf_counter() - t_start

    train, predict = [], []
    for _ in range(args.windows):
        train.append(C.seconds_per_step(model, x, y, args.steps))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            model.predict_on_batch(x)
        predict.append((time.perf_counter() - t0) / args.steps)

    import tensorflow as tf

    return {
        "config": args.config,
        "env": {k: os.environ.get(k) for k in CONFIGS[args.config][0]},
        "jit_compile": bool(model.jit_compile),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "train_step_ms": 1e3 * statistics.median(train),
        "train_step_ms_windows": [round(1e3 * t, 2) for t in train],
        "predict_ms": 1e3 * statistics.median(predict),
        "predict_ms_windows": [round(1e3 * t, 2) for t in predict],
        "setup_s": round(setup_s, 1),
    }


def _child(config, args) -> dict:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", **CONFIGS[config][0])
    if "ONEDNN_MAX_CPU_ISA" not in CONFIGS[config][0]:
        env.pop("ONEDNN_MAX_CPU_ISA", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", f"--config={config}"] + [
        f"--{k}={getattr(args, k)}" for k in ("batch", "steps", "windows", "warmup")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"onednn.py: the {config} child failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="A,B pairs of child processes")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per child")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (tracing) per child")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help=f"comma-separated, first = baseline; of {','.join(CONFIGS)}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="onednn", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args)))
        return
    if args.batch % 2:
        raise SystemExit("onednn.py: --batch must be even (an odd batch can crash the oneDNN run)")

    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or len(configs) < 2 or len(set(configs)) != len(configs):
        raise SystemExit(f"onednn.py: --configs: two or more distinct of {list(CONFIGS)}, received {args.configs!r}")
    base = configs[0]

    t0 = time.time()
    runs = {c: [] for c in configs}
    for r in range(args.rounds):
        for config in configs:  # A, B, A, B, ...
            row = _child(config, args)
            runs[config].append(row)
            print(f"[round {r + 1}/{args.rounds}] {config:<12} train {row['train_step_ms']:8.1f} ms/step  "
                  f"predict {row['predict_ms']:7.1f} ms/batch  (setup {row['setup_s']} s)", flush=True)

    metrics = {}
    for key in ("train_step_ms", "predict_ms"):
        metrics[key] = {}
        for config in configs:
            values = [row[key] for row in runs[config]]
            m = _spread(values)
            # Noise: spread of one configuration's child medians relative to their median.
            m["relative_spread"] = (m["max"] - m["min"]) / m["median"]
            if config != base:
                # Per round: this config's child over the baseline child of the same round.
                ratios = [rb[key] / ra[key] for ra, rb in zip(runs[base], runs[config])]
                m["ratio"] = _spread(ratios)
                m["ratios"] = [round(x, 3) for x in ratios]
            metrics[key][config] = m

    header = (f"{'config':<12} {'train ms':>9} {'ratio':>6} {'min':>6} {'max':>6} "
              f"{'predict ms':>11} {'ratio':>6} {'min':>6} {'max':>6}")
    lines = [header, "-" * len(header)]
    for config in configs:
        cells = []
        for key in ("train_step_ms", "predict_ms"):
            m = metrics[key][config]
            q = m.get("ratio", {"median": 1.0, "min": 1.0, "max": 1.0})
            cells.append(f"{m['median']:>{9 if key == 'train_step_ms' else 11}.1f} "
                         f"{q['median']:>6.3f} {q['min']:>6.3f} {q['max']:>6.3f}")
        lines.append(f"{config:<12} " + " ".join(cells))
    print("\n".join(lines))
    print(f"ratios: config / {base}, per round")

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    first = runs[base][0]
    result = {
        "benchmark": "onednn",
        "description": ("train_on_batch step and predict_on_batch time of resnet20 (switches 1x1.0,2x0.5, learned "
                        "gates, budget 0.2) with TensorFlow's oneDNN kernels on (default) and off "
                        "(TF_ENABLE_ONEDNN_OPTS=0); medians over interleaved child processes"),
        "setting": {"model": MODEL, "batch": args.batch, "rounds": args.rounds, "steps": args.steps,
                    "windows": args.windows, "warmup": args.warmup, "configs": configs, "baseline": base,
                    "tensorflow": first["tensorflow"], "keras": first["keras"]},
        "configs": {c: CONFIGS[c][2] for c in configs},
    }
    if base == "onednn" and "no_onednn" in configs:
        tr, pr = metrics["train_step_ms"], metrics["predict_ms"]
        result.update({
            "train_step_ms_onednn": tr["onednn"]["median"],
            "train_step_ms_no_onednn": tr["no_onednn"]["median"],
            "ratio_no_onednn_over_onednn": tr["no_onednn"]["ratio"]["median"],
            "ratio_no_onednn_over_onednn_min": tr["no_onednn"]["ratio"]["min"],
            "ratio_no_onednn_over_onednn_max": tr["no_onednn"]["ratio"]["max"],
            "predict_ms_onednn": pr["onednn"]["median"],
            "predict_ms_no_onednn": pr["no_onednn"]["median"],
            "predict_ratio_no_onednn_over_onednn": pr["no_onednn"]["ratio"]["median"],
            "predict_ratio_no_onednn_over_onednn_min": pr["no_onednn"]["ratio"]["min"],
            "predict_ratio_no_onednn_over_onednn_max": pr["no_onednn"]["ratio"]["max"],
        })
    result.update({
        "metrics": metrics,
        "runs": runs,
        "machine": machine,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "seconds": round(time.time() - t0, 1),
        "command": "python bench/onednn.py " + " ".join(sys.argv[1:]),
    })
    C.write_json("onednn.json", result)

    def cell(m):
        return f"{m['median']:.1f} ({m['min']:.1f}-{m['max']:.1f})"

    def ratio(m):
        q = m.get("ratio")
        return "1 (baseline)" if q is None else f"{q['median']:.3f} ({q['min']:.3f}-{q['max']:.3f})"

    rows = "".join(
        f"| `{c}`: {CONFIGS[c][2]} | {cell(metrics['train_step_ms'][c])} | {ratio(metrics['train_step_ms'][c])} | "
        f"{cell(metrics['predict_ms'][c])} | {ratio(metrics['predict_ms'][c])} |\n" for c in configs)
    text = (
        "# oneDNN off: cost on resnet20 training\n\n"
        f"resnet20 (switches 1x1.0,2x0.5, learned gates, width 1.0, compiled as `paradis train`: Adam 1e-3, "
        f"budget 0.2) on random 28x28x1 input, batch {args.batch}, TensorFlow {first['tensorflow']} on CPU. "
        "Why oneDNN might be turned off: docs/onednn_odd_batch.md. "
        f"{args.rounds} rounds of one child process per setting, run in turn ({', '.join(configs)}, then again); "
        f"each child warms up {args.warmup} steps, then takes the median of {args.windows} windows of "
        f"{args.steps} steps. Cells: median (min-max) over children; ratio = setting / `{base}` of the same "
        f"round (median, min-max over rounds). Machine: {machine}, shared (load average at the end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average'] or [])}).\n\n"
        "| setting | train_on_batch ms/step | ratio | predict_on_batch ms/batch | ratio |\n"
        "|---|---|---|---|---|\n" + rows
        + f"\nCommand: `{result['command']}`\n"
    )
    C.write_text("onednn.md", text)
    print(f"wrote {os.path.relpath(RESULTS, ROOT)}/onednn.json and onednn.md ({result['seconds']} s)")


if __name__ == "__main__":
    main()
