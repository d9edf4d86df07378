"""``paradis train``: every switch of a model in one run.

    paradis train --model resnet20 --dataset fashion-mnist \\
        --switches 1x1.0,2x0.5,4x0.25 --budget 0.2 --epochs 12 --out runs/r20
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from paradis_cli._common import (UsageError, non_negative_float, non_negative_int, positive_float, positive_int,
                                 printed_warnings, traffic_ratio)

__all__ = ["HELP", "add_arguments", "run"]


HELP = "train every switch of a model in one run"


def add_arguments(t) -> None:
    from paradis_tf.models.presets import PRESETS

    t.add_argument("--model", required=True, choices=sorted(PRESETS))
    t.add_argument("--dataset", default="fashion-mnist",
                   help="'fashion-mnist' (Debian package) or 'folder:TRAIN_DIR[,TEST_DIR]' (one sub-folder per "
                        "class; TEST_DIR is labelled by TRAIN_DIR's classes)")
    t.add_argument("--switches", default="1x1.0,2x0.5,4x0.25", help="comma-separated switches")
    t.add_argument("--budget", type=traffic_ratio, default=None,
                   help="target traffic ratio of every multi-device switch (learned gates); none: no penalty")
    t.add_argument("--link-mbps", type=positive_float, default=None,
                   help="a link budget instead of --budget: its bandwidth (with --link-latency-ms); every exchange "
                        "point costs its latency plus bytes/bandwidth, so traffic gathers in few layers")
    t.add_argument("--link-latency-ms", type=non_negative_float, default=None,
                   help="a link budget: the one-way latency per exchange (with --link-mbps)")
    t.add_argument("--gates", choices=("learned", "open", "shut"), default="learned")
    t.add_argument("--width", type=positive_float, default=1.0, help="channel width multiplier")
    t.add_argument("--epochs", type=positive_int, default=10)
    t.add_argument("--anneal-epochs", type=positive_int, default=None,
                   help="epochs over which budgets anneal from 1.0 (default: half the epochs)")
    t.add_argument("--finetune-epochs", type=non_negative_int, default=1,
                   help="epochs of fine-tuning with gates made binary and frozen")
    t.add_argument("--batch-size", type=positive_int, default=128)
    t.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    t.add_argument("--distillation-weight", type=non_negative_float, default=1.0)
    t.add_argument("--comm-weight", type=non_negative_float, default=4.0)
    t.add_argument("--limit", type=positive_int, default=None,
                   help="use only N training images (fashion-mnist: the first N; folders: a random subset "
                        "drawn with --seed)")
    t.add_argument("--test-limit", type=positive_int, default=None,
                   help="use only N test images (fashion-mnist: the first N; folders: a random subset)")
    t.add_argument("--image-size", type=positive_int, default=32, help="folder datasets: images are resized to this")
    t.add_argument("--recalibrate-batches", type=positive_int, default=50,
                   help="batches per switch when batch norm is recalibrated (before each validation, after training)")
    t.add_argument("--augment", action="store_true", help="random flips and translations")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output folder (model, checkpoints, logs, summary.json)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)


def _datasets(args):
    """(train, test, input_shape, class names); the test split is labelled by
    the training split's classes."""
    from paradis_tf.data import CLASS_NAMES, fashion_mnist, image_folder

    if args.dataset == "fashion-mnist":
        train = fashion_mnist("train", args.batch_size, augment=args.augment, limit=args.limit, seed=args.seed)
        test = fashion_mnist("test", args.batch_size, limit=args.test_limit)
        return train, test, (28, 28, 1), CLASS_NAMES
    if args.dataset.startswith("folder:"):
        paths = args.dataset[len("folder:"):].split(",")
        if len(paths) > 2 or not all(paths):
            raise UsageError(f"--dataset must be 'folder:TRAIN_DIR' or 'folder:TRAIN_DIR,TEST_DIR', "
                             f"received {args.dataset!r}.")
        for p in paths:
            if not os.path.isdir(p):
                raise UsageError(f"--dataset {args.dataset!r}: {p!r} is not a folder.")
        size = (args.image_size, args.image_size)
        train, classes = image_folder(paths[0], size, batch_size=args.batch_size, augment=args.augment,
                                      seed=args.seed, return_class_names=True, limit=args.limit)
        if len(classes) < 2:
            raise ValueError(
                f"--dataset: training folder {paths[0]!r} has only one class sub-folder with images "
                f"({classes[0]!r}); a classifier needs at least two: put each class's images in its own "
                "sub-folder (TRAIN_DIR/cat/1.png, TRAIN_DIR/dog/2.png, ...).")
        test = image_folder(paths[-1], size, batch_size=args.batch_size, shuffle=False, limit=args.test_limit,
                            class_names=classes)
        if len(paths) == 1:
            print("warning: no TEST_DIR given; accuracy is measured on the training folder", file=sys.stderr)
        return train, test, size + (3,), classes
    raise UsageError(f"--dataset must be 'fashion-mnist' or 'folder:TRAIN_DIR[,TEST_DIR]', "
                     f"received {args.dataset!r}.")


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
    lines.append("params: the busiest device's weights with batch norm unfolded (scale, offset, moving mean "
                 "and variance per channel); an export folds batch norm into the convolutions, so "
                 "'paradis inspect' counts fewer")
    return "\n".join(lines)


def run(args) -> dict:
    from paradis_tf.switches import SwitchSet

    try:
        switches = SwitchSet(args.switches)
    except ValueError as e:
        raise UsageError(f"--switches: {e}") from None
    if (args.link_mbps is None) != (args.link_latency_ms is None):
        raise UsageError(f"--link-mbps and --link-latency-ms go together, received --link-mbps {args.link_mbps} and "
                         f"--link-latency-ms {args.link_latency_ms}.")
    if args.link_mbps is not None and args.budget is not None:
        raise UsageError(f"--budget {args.budget} and a link budget (--link-mbps/--link-latency-ms) exclude each "
                         "other: give one.")
    created = not os.path.exists(args.out)
    try:
        return _train(args, switches)
    except BaseException:
        # Leave nothing behind unless there is something to resume from.
        backup = os.path.join(args.out, "backup")
        if created and os.path.isdir(args.out) and not any(files for _, _, files in os.walk(backup)):
            shutil.rmtree(args.out, ignore_errors=True)
        raise


def _train(args, switches) -> dict:
    import keras

    from paradis_tf.accounting import device_summary
    from paradis_tf.models import build_model
    from paradis_tf.training import BudgetSchedule, RecalibratedValidation

    keras.utils.set_random_seed(args.seed)
    with printed_warnings():
        train_ds, test_ds, input_shape, classes = _datasets(args)
    steps_per_epoch = int(train_ds.cardinality())
    model = build_model(args.model, width=args.width, num_classes=len(classes), input_shape=input_shape,
                        switches=switches, gates=args.gates)
    asked = args.budget
    if args.link_mbps is not None:
        from paradis_tf.training import Link

        asked = Link(mbps=args.link_mbps, latency_ms=args.link_latency_ms)
    budget = asked if asked is not None and model.learned_switches() else None
    if asked is not None and budget is None:
        print(f"warning: the budget is ignored: gates are '{args.gates}', nothing is learned", file=sys.stderr)
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
        # val_ metrics as the model would score if training stopped here:
        # batch norm recalibrated for the gates in use, then restored.
        RecalibratedValidation(train_ds, num_batches=args.recalibrate_batches),
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
    report = {"model": model.name, "dataset": args.dataset, "classes": list(classes),
              "switches": list(switches.names),
              "budget": budget.get_config() if hasattr(budget, "get_config") else budget, "epochs": args.epochs, "results": rows,
              "devices": summary}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'model.keras')} and summary.json")
    return report
