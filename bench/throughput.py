"""Training throughput (images/s) of a multi-switch model, per backend.

CIFAR-style ResNet-20 on 28x28x1 inputs with switches 1x1.0,2x0.5,4x0.25
(learned gates, budget 0.2): every step trains all three switches, as ``fit``
does. Then five switches (1x1.0,1x0.7,1x0.5,2x0.5,4x0.25) trained all in
every step against the same five under the sandwich rule
(``Sandwich(middle=1)``: the widest, the narrowest and one of the other
three per step), timed over whole rounds of its windows. Each backend runs in
its own process; on a GPU machine run it with ``--backends jax`` (keras + jax only). The single-switch unsplit model is
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
    from paradis_tf.training import BudgetSchedule, Sandwich

    backend, device = C.backend_and_device()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, args.batch_size)
    out = {"backend": backend, "device": device}
    five = "1x1.0,1x0.7,1x0.5,2x0.5,4x0.25"
    for label, switches, sandwich in (("unsplit", "1x1.0", None), ("three_switches", "1x1.0,2x0.5,4x0.25", None),
                                      ("five_switches", five, None),
                                      ("five_switches_sandwich", five, Sandwich(middle=1))):
        keras.utils.set_random_seed(0)
        model = CifarResNet(depth=20, width=args.width, num_classes=10, input_shape=(28, 28, 1), switches=switches)
        budget = 0.2 if "," in switches else None
        model.compile(optimizer="adam", budget=budget, budget_schedule=BudgetSchedule(0, 100), sandwich=sandwich,
                      jit_compile=True if backend == "tensorflow" else "auto")
        # Whole rounds of the sandwich's windows (each window traced in the warm-up).
        windows = len(sandwich.windows(model.switches.names)) if sandwich is not None else 1
        C.warm_up(model, x, y, steps=max(3, windows))
        steps = -(-args.steps // windows) * windows
        seconds = C.seconds_per_step(model, x, y, steps)
        out[label] = {"step_ms": 1e3 * seconds, "images_per_s": args.batch_size / seconds}
    out["slowdown_three_switches"] = out["three_switches"]["step_ms"] / out["unsplit"]["step_ms"]
    out["sandwich_step_time_ratio"] = out["five_switches_sandwich"]["step_ms"] / out["five_switches"]["step_ms"]
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
        "| backend | device | unsplit img/s | 3 switches img/s | 3 switches / unsplit step time | 5 switches img/s "
        "| 5 switches, sandwich img/s | sandwich / all-5 step time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['device']} | {r['unsplit']['images_per_s']:.0f} | "
                     f"{r['three_switches']['images_per_s']:.0f} | {r['slowdown_three_switches']:.2f} | "
                     f"{r['five_switches']['images_per_s']:.0f} | {r['five_switches_sandwich']['images_per_s']:.0f} | "
                     f"{r['sandwich_step_time_ratio']:.2f} |")
    lines += ["", "3 switches = 1x1.0, 2x0.5, 4x0.25 trained together (learned gates, budget 0.2); every "
              "image passes through all three. 5 switches = 1x1.0, 1x0.7, 1x0.5, 2x0.5, 4x0.25, every switch in "
              "every step, or by the sandwich rule (`Sandwich(middle=1)`: 1x1.0, 1x0.5 and one of the other three "
              "per step; timed over whole rounds). Command: `python bench/throughput.py "
              + " ".join(sys.argv[1:]) + "`", ""]
    print("\n".join(lines))
    backends = {f"{r['backend']}-{r['device']}": r for r in rows}
    C.write_json("throughput.json", {"setting": vars(args), "backends": backends})
    C.write_text("throughput.md", "\n".join(lines))


if __name__ == "__main__":
    main()
