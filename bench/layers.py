"""Step time of split residual blocks against the same blocks in stock Keras.

A stack of residual blocks (conv3x3-BN-ReLU-conv3x3-BN + identity, ReLU) is
built twice with identical shapes: from paradis_tf split layers (switch
2x0.5, learned gates, training mode: relaxed gates, per-switch batch norm) and
from keras.layers.Conv2D/BatchNormalization. Both train with the same
optimizer and loss; rounds of steps alternate between the two so machine
noise hits both alike. Each backend runs in its own process.

Writes docs/results/layers.json and docs/results/layers.md. Target:
step_time_ratio (split / stock, median over rounds) <= 1.3.

    python bench/layers.py [--backends tensorflow,jax] [--rounds 9] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

ROOT, RESULTS = C.ROOT, C.RESULTS
TARGET = 1.3


def _build(kind: str, args):
    import keras
    from paradis_tf import layers as L

    switch = "2x0.5"
    inputs = keras.Input((args.size, args.size, args.channels))
    x = inputs
    for b in range(args.blocks):
        shortcut = x
        for j in range(2):
            if kind == "split":
                x = L.SplitConv2D(args.channels, 3, switch, padding="same", use_bias=False)(x, switch=switch)
                x = L.SwitchableBatchNormalization(switch)(x, switch=switch)
            else:
                x = keras.layers.Conv2D(args.channels, 3, padding="same", use_bias=False)(x)
                x = keras.layers.BatchNormalization()(x)
            if j == 0:
                x = keras.layers.ReLU()(x)
        x = keras.layers.ReLU()(keras.layers.Add()([x, shortcut]))
    model = keras.Model(inputs, x, name=kind)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    return model


def _measure(args) -> dict:
    """Runs in a child process with KERAS_BACKEND set."""
    import numpy as np
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.size, args.size, args.channels)).astype("float32")
    y = rng.normal(size=x.shape).astype("float32")
    models = {kind: _build(kind, args) for kind in ("stock", "split")}
    for model in models.values():
        C.warm_up(model, x, y)
    times = {kind: [] for kind in models}
    for r in range(args.rounds):
        order = ("stock", "split") if r % 2 == 0 else ("split", "stock")
        for kind in order:
            times[kind].append(C.seconds_per_step(models[kind], x, y, args.steps))
    ratios = [s / t for s, t in zip(times["split"], times["stock"])]
    return {
        "backend": keras.backend.backend(),
        "stock_step_ms": 1e3 * statistics.median(times["stock"]),
        "split_step_ms": 1e3 * statistics.median(times["split"]),
        "step_time_ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10)
    keys = ("blocks", "channels", "size", "batch", "rounds", "steps")
    args, rows = C.per_backend_main(parser, __file__, _measure, keys)
    if rows is None:
        return
    setting = {k: getattr(args, k) for k in keys}

    header = f"{'backend':<11} {'stock ms':>9} {'split ms':>9} {'ratio':>6} {'min':>6} {'max':>6}  target <= {TARGET}"
    lines = [header, "-" * len(header)]
    for r in rows:
        met = "met" if r["step_time_ratio"] <= TARGET else "NOT met"
        lines.append(
            f"{r['backend']:<11} {r['stock_step_ms']:>9.2f} {r['split_step_ms']:>9.2f} "
            f"{r['step_time_ratio']:>6.3f} {r['ratio_min']:>6.3f} {r['ratio_max']:>6.3f}  {met}"
        )
    print("\n".join(lines))

    result = {
        "benchmark": "layers",
        "description": "forward+backward+update step time, split residual blocks (2x0.5, learned gates) "
                       "/ stock Keras blocks",
        "setting": setting,
        "target": {"step_time_ratio": TARGET},
        "step_time_ratio": rows[0]["step_time_ratio"],
        "backends": {r["backend"]: r for r in rows},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": "python bench/layers.py " + " ".join(sys.argv[1:]),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "layers.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(RESULTS, "layers.md"), "w") as f:
        f.write("# Split layers: training step time against stock Keras\n\n")
        f.write(
            f"{args.blocks} residual blocks, {args.channels} channels, {args.size}x{args.size} input, "
            f"batch {args.batch}; split model: switch 2x0.5, learned gates, training mode. "
            f"Median over {args.rounds} interleaved rounds of {args.steps} steps; ratio = split / stock "
            f"(min and max over rounds). Machine: {result['machine']}.\n\n"
        )
        f.write("| backend | stock ms/step | split ms/step | step_time_ratio | min | max | target |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(
                f"| {r['backend']} | {r['stock_step_ms']:.2f} | {r['split_step_ms']:.2f} | "
                f"{r['step_time_ratio']:.3f} | {r['ratio_min']:.3f} | {r['ratio_max']:.3f} | <= {TARGET} |\n"
            )
        f.write(f"\nCommand: `{result['command']}`\n")
    print(f"wrote {os.path.relpath(RESULTS, ROOT)}/layers.json and layers.md")


if __name__ == "__main__":
    main()
