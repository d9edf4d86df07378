"""Training throughput (images/s) of a multi-switch model, per backend.

CIFAR-style ResNet-20 on 28x28x1 inputs with switches 1x1.0,2x0.5,4x0.25
(learned gates, budget 0.2): every step trains all three switches, as ``fit``
does. Each backend runs in its own process; on a GPU machine run it with
``--backends jax`` (keras + jax only). The single-switch unsplit model is
measured in the same process as the baseline, so the ratio is machine-neutral.

Writes docs/results/throughput.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402


def measure(args) -> dict:
    import numpy as np
    import keras
    from paradis_tf.models import CifarResNet
    from paradis_tf.training import BudgetSchedule

    backend, device = C.backend_and_device()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, args.batch_size)
    out = {"backend": backend, "device": device}
    for label, switches in (("unsplit", "1x1.0"), ("three_switches", "1x1.0,2x0.5,4x0.25")):
        keras.utils.set_random_seed(0)
        model = CifarResNet(depth=20, width=args.width, num_classes=10, input_shape=(28, 28, 1), switches=switches)
        budget = 0.2 if "," in switches else None
        model.compile(optimizer="adam", budget=budget, budget_schedule=BudgetSchedule(0, 100),
                      jit_compile=True if backend == "tensorflow" else "auto")
        C.warm_up(model, x, y)
        seconds = C.seconds_per_step(model, x, y, args.steps)
        out[label] = {"step_ms": 1e3 * seconds, "images_per_s": args.batch_size / seconds}
    out["slowdown_three_switches"] = out["three_switches"]["step_ms"] / out["unsplit"]["step_ms"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args, rows = C.per_backend_main(parser, __file__, measure, ("width", "batch_size", "steps"))
    if rows is None:
        return
    lines = [
        "# Training throughput, ResNet-20 (width %g) on 28x28x1, batch %d" % (args.width, args.batch_size), "",
        "| backend | device | unsplit img/s | 3 switches img/s | 3 switches / unsplit step time |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['device']} | {r['unsplit']['images_per_s']:.0f} | "
                     f"{r['three_switches']['images_per_s']:.0f} | {r['slowdown_three_switches']:.2f} |")
    lines += ["", "3 switches = 1x1.0, 2x0.5, 4x0.25 trained together (learned gates, budget 0.2); every "
              "image passes through all three. Command: `python bench/throughput.py "
              + " ".join(sys.argv[1:]) + "`", ""]
    print("\n".join(lines))
    C.write_json("throughput.json", {"setting": vars(args), "backends": {f"{r['backend']}-{r['device']}": r for r in rows}})
    C.write_text("throughput.md", "\n".join(lines))


if __name__ == "__main__":
    main()
