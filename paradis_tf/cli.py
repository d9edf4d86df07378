"""The ``paradis`` command.

    paradis train --model resnet20 --dataset fashion-mnist \\
        --switches 1x1.0,2x0.5,4x0.25 --budget 0.2 --epochs 12 --out runs/r20
    paradis export --checkpoint runs/r20/model.keras --switches 2x0.5,1x1.0 \\
        [--int8 --calibration 500] --out runs/r20/bundle
    paradis inspect runs/r20/bundle
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
    t.add_argument("--recalibrate-batches", type=_positive_int, default=50,
                   help="batches per switch when batch norm is recalibrated (before each validation, after training)")
    t.add_argument("--augment", action="store_true", help="random flips and translations")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output folder (model, checkpoints, logs, summary.json)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)

    e = sub.add_parser("export", help="write one TFLite file per device and the fusion graph, per switch")
    e.add_argument("--checkpoint", required=True, help="a .keras file saved by 'paradis train' (model.keras)")
    e.add_argument("--switches", required=True, help="comma-separated switches of the checkpoint, e.g. 2x0.5,1x1.0")
    e.add_argument("--int8", action="store_true", help="full-integer quantization (int8 on the wire too)")
    e.add_argument("--calibration", type=_positive_int, default=500,
                   help="int8: real training images used to calibrate (default 500)")
    e.add_argument("--dataset", default="fashion-mnist",
                   help="int8 calibration images: 'fashion-mnist' or 'folder:TRAIN_DIR'")
    e.add_argument("--out", required=True, help="bundle folder to create")
    e.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")

    i = sub.add_parser("inspect", help="print a bundle (or one fusion graph) as tables")
    i.add_argument("path", help="bundle folder, switch folder or fusion_graph.json")
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
    from paradis_tf.training import BudgetSchedule, RecalibratedValidation

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
    report = {"model": model.name, "dataset": args.dataset, "switches": list(switches.names),
              "budget": budget, "epochs": args.epochs, "results": rows, "devices": summary}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'model.keras')} and summary.json")
    return report


def _calibration_images(args, count: int, input_shape):
    import numpy as np

    if args.dataset == "fashion-mnist":
        from paradis_tf.data import load_fashion_mnist

        images, _ = load_fashion_mnist("train")
        images = images[:count].astype("float32") / 255.0
    elif args.dataset.startswith("folder:"):
        from paradis_tf.data import image_folder

        ds = image_folder(args.dataset[len("folder:"):].split(",")[0], tuple(input_shape[:2]), batch_size=64,
                          shuffle=False, limit=count)
        images = np.concatenate([np.asarray(x) for x, _ in ds], axis=0)
    else:
        raise ValueError(f"--dataset must be 'fashion-mnist' or 'folder:PATH', received {args.dataset!r}.")
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise ValueError(f"--dataset gives images of shape {tuple(images.shape[1:])}, the checkpoint takes "
                         f"{tuple(input_shape)}: calibrate with the data it was trained on.")
    return images


def export(args) -> dict:
    import keras

    import paradis_tf.models  # noqa: F401  (registers the model classes for loading)
    from paradis_export import export_bundle

    if not os.path.isfile(args.checkpoint):
        raise FileNotFoundError(f"--checkpoint {args.checkpoint} does not exist (expected a .keras file).")
    model = keras.saving.load_model(args.checkpoint, compile=False)
    input_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    calibration = _calibration_images(args, args.calibration, input_shape) if args.int8 else None
    manifest = export_bundle(model, args.switches, args.out, int8=args.int8, calibration=calibration,
                             overwrite=args.overwrite, progress=print)
    print(f"wrote {args.out}")
    print(_inspect_text(args.out, per_stage=False))
    return manifest


def _inspect_text(path, per_stage: bool = True) -> str:
    from pathlib import Path

    from paradis_export import read_graph, read_manifest

    path = Path(path)
    if (path / "manifest.json").is_file():
        manifest = read_manifest(path)
        graphs = [(e["name"], read_graph(path / e["graph"])) for e in manifest["switches"]]
        lines = [f"bundle {path}: model {manifest['model']}, {manifest['precision']}, fallback order "
                 f"{' -> '.join(manifest['fallback'])}"]
    else:
        from paradis_export.executor import resolve_graph

        file = resolve_graph(path)
        graph = read_graph(file)
        graphs = [(graph["switch"], graph)]
        lines = [f"fusion graph {file}"]
    for name, g in graphs:
        t = g["totals"]
        lines += ["", f"switch {name}: {len(g['devices'])} device(s), {g['precision']}, "
                      f"{t['bytes_per_inference']:,} B on the wire per inference (+ input {t['input_bytes']:,} B "
                      f"to each other device), fusion '{g['fusion']['op']}' on device {g['fusion']['device']}"]
        header = (f"{'device':>6} {'width':>6} {'file':>16} {'file size':>12} {'params':>10} {'MFLOPs':>9} "
                  f"{'stages':>6} {'sent B':>10} {'received B':>10}")
        lines += [header, "-" * len(header)]
        for d in g["devices"]:
            lines.append(f"{d['device']:>6} {d['width']:>6.3g} {d['file']:>16} {d['file_bytes']:>12,} "
                         f"{d['params']:>10,} {d['flops'] / 1e6:>9.3f} {len(d['stages']):>6} "
                         f"{d['bytes_sent']:>10,} {d['bytes_received']:>10,}")
        if per_stage and g["sends"]:
            lines += ["", f"{'from':>10} {'to':>12} {'tensor':<28} {'channels':>9} {'bytes':>8}"]
            for s in g["sends"]:
                lines.append(f"{'d%d.%s' % (s['from']['device'], s['from']['stage']):>10} "
                             f"{'d%d.%s' % (s['to']['device'], s['to']['stage']):>12} {s['tensor']:<28} "
                             f"{'%d:%d' % tuple(s['channels']):>9} {s['bytes']:>8,}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            train(args)
        elif args.command == "export":
            export(args)
        elif args.command == "inspect":
            print(_inspect_text(args.path))
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"paradis {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
