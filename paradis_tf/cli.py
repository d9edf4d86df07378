"""The ``paradis`` command.

    paradis train --model resnet20 --dataset fashion-mnist \\
        --switches 1x1.0,2x0.5,4x0.25 --budget 0.2 --epochs 12 --out runs/r20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

__all__ = ["main"]


def _int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``, with a message naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, received {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a traffic ratio in (0, 1], received {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a traffic ratio in (0, 1], received {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from paradis_tf.models.presets import PRESETS

    parser = argparse.ArgumentParser(prog="paradis", description="paradis-tf: split models across devices.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train every switch of a model in one run")
    t.add_argument("--model", required=True, choices=sorted(PRESETS))
    t.add_argument("--dataset", default="fashion-mnist",
                   help="'fashion-mnist' (Debian package) or 'folder:TRAIN_DIR[,TEST_DIR]'")
    t.add_argument("--switches", default="1x1.0,2x0.5,4x0.25", help="comma-separated switches")
    t.add_argument("--budget", type=_budget, default=None,
                   help="target traffic ratio of every multi-device switch (learned gates); none: no penalty")
    t.add_argument("--gates", choices=("learned", "open", "shut"), default="learned")
    t.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--anneal-epochs", type=_positive_int, default=None,
                   help="epochs over which budgets anneal from 1.0 (default: half the epochs)")
    t.add_argument("--finetune-epochs", type=_non_negative_int, default=1,
                   help="epochs of fine-tuning with gates made binary and frozen")
    t.add_argument("--batch-size", type=_positive_int, default=128)
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    t.add_argument("--distillation-weight", type=float, default=1.0)
    t.add_argument("--comm-weight", type=float, default=4.0)
    t.add_argument("--limit", type=_positive_int, default=None, help="use only the first N training images")
    t.add_argument("--test-limit", type=_positive_int, default=None, help="use only the first N test images")
    t.add_argument("--image-size", type=_positive_int, default=32, help="folder datasets: images are resized to this")
    t.add_argument("--recalibrate-batches", type=_positive_int, default=50)
    t.add_argument("--augment", action="store_true", help="random flips and translations")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output folder (model, checkpoints, logs, summary.json)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    return parser


def _datasets(args):
    from paradis_tf.data import fashion_mnist, image_folder

    if args.dataset == "fashion-mnist":
        train = fashion_mnist("train", args.batch_size, augment=args.augment, limit=args.limit, seed=args.seed)
        test = fashion_mnist("test", args.batch_size, limit=args.test_limit)
        return train, test, (28, 28, 1), 10
    if args.dataset.startswith("folder:"):
        paths = args.dataset[len("folder:"):].split(",")
        size = (args.image_size, args.image_size)
        train, classes = image_folder(paths[0], size, batch_size=args.batch_size, augment=args.augment,
                                      seed=args.seed, return_class_names=True, limit=args.limit)
        test = image_folder(paths[-1], size, batch_size=args.batch_size, shuffle=False, limit=args.test_limit)
        if len(paths) == 1:
            print("warning: no TEST_DIR given; accuracy is measured on the training folder", file=sys.stderr)
        return train, test, size + (3,), len(classes)
    raise SystemExit(f"paradis train: --dataset must be 'fashion-mnist' or 'folder:PATH', received {args.dataset!r}")


def _table(rows) -> str:
    header = (f"{'switch':<14} {'top1':>7} {'traffic':>8} {'max params/dev':>15} {'params ratio':>13} "
              f"{'max MFLOPs/dev':>15} {'FLOPs ratio':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        traffic = "-" if r["comm_ratio"] is None else f"{r['comm_ratio']:.3f}"
        lines.append(
            f"{r['switch']:<14} {100 * r['top1']:>6.2f}% {traffic:>8} {r['params_per_device']:>15,} "
            f"{r['params_per_device_ratio']:>13.3f} {r['flops_per_device'] / 1e6:>15.2f} "
            f"{r['flops_per_device_ratio']:>12.3f}"
        )
    return "\n".join(lines)


def train(args) -> dict:
    import keras

    from paradis_tf.accounting import device_summary
    from paradis_tf.models import build_model
    from paradis_tf.switches import SwitchSet
    from paradis_tf.training import BudgetSchedule

    try:
        switches = SwitchSet(args.switches)
    except ValueError as e:
        raise SystemExit(f"paradis train: --switches: {e}")
    keras.utils.set_random_seed(args.seed)
    train_ds, test_ds, input_shape, num_classes = _datasets(args)
    steps_per_epoch = int(train_ds.cardinality())
    model = build_model(args.model, width=args.width, num_classes=num_classes, input_shape=input_shape,
                        switches=switches, gates=args.gates)
    budget = args.budget if args.budget is not None and model.learned_switches() else None
    if args.budget is not None and budget is None:
        print(f"warning: --budget ignored: gates are '{args.gates}', nothing is learned", file=sys.stderr)
    anneal = args.anneal_epochs or max(1, args.epochs // 2)
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        budget=budget,
        budget_schedule=BudgetSchedule(0, max(1, anneal * steps_per_epoch)),
        distillation_weight=args.distillation_weight,
        comm_weight=args.comm_weight,
    )
    os.makedirs(args.out, exist_ok=True)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup", "train")),
        keras.callbacks.ModelCheckpoint(os.path.join(args.out, "checkpoint.keras")),
        keras.callbacks.TensorBoard(os.path.join(args.out, "logs")),
    ]
    print(f"training {model.name} ({model.count_params():,} weights) on {args.dataset}: switches "
          f"{','.join(switches.names)}, gates {args.gates}, budget {budget}, {args.epochs} epochs of "
          f"{steps_per_epoch} steps")
    model.fit(train_ds, epochs=args.epochs, validation_data=test_ds, callbacks=callbacks,
              verbose=args.verbose, shuffle=False)
    if model.learned_switches():
        ratios = model.finalize_gates()
        print("gates made binary and frozen: traffic " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
        if args.finetune_epochs:
            model.fit(train_ds, epochs=args.finetune_epochs, verbose=args.verbose, shuffle=False, callbacks=[
                keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup", "finetune"))])
    model.recalibrate_batch_norm(train_ds, num_batches=args.recalibrate_batches, verbose=0)
    model.save(os.path.join(args.out, "model.keras"))

    results = model.evaluate(test_ds, verbose=0, return_dict=True)
    summary = device_summary(model, input_shape, print_fn=None)
    rows = []
    for name in switches.names:
        devices = summary["switches"][name]["devices"]
        worst_p = max(devices, key=lambda d: d["params"])
        worst_f = max(devices, key=lambda d: d["flops"])
        rows.append({
            "switch": name,
            "top1": float(results[f"{name}_accuracy"]),
            "comm_ratio": summary["switches"][name]["comm_ratio"],
            "params_per_device": worst_p["params"],
            "params_per_device_ratio": worst_p["params_ratio"],
            "flops_per_device": worst_f["flops"],
            "flops_per_device_ratio": worst_f["flops_ratio"],
        })
    print(_table(rows))
    report = {"model": model.name, "dataset": args.dataset, "switches": list(switches.names),
              "budget": budget, "epochs": args.epochs, "results": rows, "devices": summary}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'model.keras')} and summary.json")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            train(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"paradis {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
