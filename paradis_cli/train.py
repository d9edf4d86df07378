"""``paradis train``: every switch of a model in one run, for any task.

    paradis train --model resnet20 --dataset fashion-mnist \\
        --switches 1x1.0,2x0.5,4x0.25 --budget 0.2 --epochs 12 --out runs/r20
    paradis train --model wdsr_x2 --task sr --switches 1x1.0,2x0.5 --out runs/sr

The recipe (``_fit``) is one for every task; what differs per task (data,
model arguments, test metrics) lives in ``paradis_cli/_tasks.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from paradis_cli import _interrupt as interrupt
from paradis_cli._common import (UsageError, non_negative_float, non_negative_int, positive_float, positive_int,
                                 printed_warnings, traffic_ratio)

__all__ = ["HELP", "add_arguments", "run"]


HELP = "train every switch of a model in one run"
# Without --anneal-epochs: the fraction of the training steps (before the
# fine-tune) over which budgets anneal from 1.0 to their target.
ANNEAL_FRACTION = 0.1


def add_arguments(t) -> None:
    from paradis_tf.models.presets import PRESETS

    from paradis_cli._tasks import TASKS

    t.add_argument("--model", required=True, choices=sorted(PRESETS))
    t.add_argument("--task", choices=TASKS, default=None,
                   help="what the model learns (default: the preset's task); refused if the preset is of "
                        "another task")
    t.add_argument("--dataset", default=None,
                   help="classification: 'fashion-mnist' (Debian package, default) or 'folder:TRAIN_DIR[,TEST_DIR]' "
                        "(one sub-folder per class; TEST_DIR is labelled by TRAIN_DIR's classes); sr: 'photos' "
                        "(scikit-image's photos, some held out for the test); segmentation and detection: "
                        "'fashion-scenes' (Fashion-MNIST items on a canvas)")
    t.add_argument("--switches", default="1x1.0,2x0.5,4x0.25", help="comma-separated switches")
    t.add_argument("--budget", type=traffic_ratio, default=None,
                   help="target traffic ratio of every multi-device switch (learned gates); none: no penalty")
    t.add_argument("--link-mbps", type=positive_float, default=None,
                   help="a link budget instead of --budget: its bandwidth (with --link-latency-ms); every exchange "
                        "point costs its latency plus bytes/bandwidth, so traffic gathers in few layers")
    t.add_argument("--link-latency-ms", type=non_negative_float, default=None,
                   help="a link budget: the one-way latency per exchange (with --link-mbps)")
    t.add_argument("--gates", choices=("learned", "open", "shut"), default="learned")
    t.add_argument("--width", type=positive_float, default=1.0,
                   help="channel width multiplier (sr: of WDSR's body channels)")
    t.add_argument("--epochs", type=positive_int, default=10)
    t.add_argument("--anneal-epochs", type=positive_int, default=None,
                   help="epochs over which budgets anneal from 1.0 (default: a tenth of the training steps; "
                        "the gates chosen then are kept)")
    t.add_argument("--finetune-epochs", type=non_negative_int, default=1,
                   help="epochs of fine-tuning with gates made binary and frozen")
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help="default: 128 (classification), 16 (sr), 32 (segmentation, detection)")
    t.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    t.add_argument("--distillation-weight", type=non_negative_float, default=1.0)
    t.add_argument("--comm-weight", type=non_negative_float, default=4.0)
    t.add_argument("--sandwich", type=non_negative_int, default=None, metavar="N",
                   help="each step trains only the widest switch, the narrowest and N of the others (the sandwich "
                        "rule: a step costs N + 2 switches, not all); default: every switch in every step")
    t.add_argument("--limit", type=positive_int, default=None,
                   help="training examples: fashion-mnist the first N (default all), folders a random subset drawn "
                        "with --seed (default all); sr N patches (default 1000); scenes N scenes (default 2000)")
    t.add_argument("--test-limit", type=positive_int, default=None,
                   help="test examples: fashion-mnist the first N, folders a random subset (default all); sr N "
                        "validation patches of the held-out photos (default 64; the test metrics use the whole "
                        "photos); scenes N test scenes (default 500)")
    t.add_argument("--image-size", type=positive_int, default=None,
                   help="folder datasets: images are resized to this (default 32); sr: the side of a "
                        "high-resolution patch, a multiple of the scale (default the preset's); scenes: the "
                        "canvas side, a multiple of 8 (default the preset's, 64)")
    t.add_argument("--recalibrate-batches", type=positive_int, default=50,
                   help="batches per switch when batch norm is recalibrated (before each validation, after training)")
    t.add_argument("--augment", action="store_true",
                   help="classification: random flips and translations; sr: random flips and 90-degree rotations")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output folder (model, checkpoints, logs, summary.json)")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)


def _table(rows, metrics) -> str:
    """Per switch: the task's metrics, traffic, and the busiest device's params and FLOPs."""
    cells = [(header, max(7, len(header))) for _, header, _ in metrics]
    header = (f"{'switch':<14} " + " ".join(f"{h:>{w}}" for h, w in cells) + f" {'traffic':>8} "
              f"{'max params/dev':>15} {'params ratio':>13} {'max MFLOPs/dev':>15} {'FLOPs ratio':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        traffic = "-" if r["comm_ratio"] is None else f"{r['comm_ratio']:.3f}"
        values = " ".join(f"{fmt(r[key]):>{w}}" for (key, _, fmt), (_, w) in zip(metrics, cells))
        lines.append(
            f"{r['switch']:<14} {values} {traffic:>8} {r['params_per_device']:>15,} "
            f"{r['params_per_device_ratio']:>13.3f} {r['flops_per_device'] / 1e6:>15.2f} "
            f"{r['flops_per_device_ratio']:>12.3f}"
        )
    lines.append("params: the busiest device's weights with batch norm unfolded (scale, offset, moving mean "
                 "and variance per channel); an export folds batch norm into the convolutions, so "
                 "'paradis inspect' counts fewer")
    return "\n".join(lines)


def _task(args):
    """The task of the run: --task, checked against the preset's, with --dataset resolved for it."""
    from paradis_cli._tasks import get_task, preset, presets_of

    own = preset(args.model).task
    if args.task is not None and args.task != own:
        raise UsageError(f"--task {args.task} does not fit --model {args.model}, whose task is {own}: leave --task out "
                         f"or pick a {args.task} model: {', '.join(presets_of(args.task)) or '(none yet)'}.")
    task = get_task(own)
    args.dataset = task.dataset(args.dataset)
    return task


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
    task = _task(args)
    _check_resume(args)
    created = not os.path.exists(args.out)
    try:
        report = _train(args, switches, task)
        interrupt.check()  # a Ctrl-C swallowed after the last batch (evaluation, saving)
        return report
    except BaseException:
        # Leave nothing behind unless there is something to resume from.
        backup = os.path.join(args.out, "backup")
        states = [f for _, _, files in os.walk(backup) for f in files if f != _RESUME_CONFIG]
        if created and os.path.isdir(args.out) and not states:
            shutil.rmtree(args.out, ignore_errors=True)
        raise


# What an interrupted run was started with (backup/config.json): a resume with
# other flags would load weights of other shapes, or silently mix two recipes.
_RESUME_CONFIG = "config.json"
_NOT_RECIPE = ("out", "verbose", "command")


def _recipe(args) -> dict:
    return {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_RECIPE}


def _check_resume(args) -> None:
    """Refuses to resume an interrupted run in --out with other flags."""
    path = os.path.join(args.out, "backup", _RESUME_CONFIG)
    if not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = None
    now = _recipe(args)
    if isinstance(saved, dict) and saved == now:
        return
    if isinstance(saved, dict):
        differ = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} there, {now.get(k)!r} now"
                           for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k))
    else:
        differ = f"{path} is unreadable"
    raise UsageError(f"--out {args.out} holds an interrupted run of another configuration ({differ}); run the same "
                     f"command to resume it, or start over with a new --out (or delete "
                     f"{os.path.join(args.out, 'backup')}).")


def _fit(model, data, args):
    """The recipe, the same for every task: every switch trained at once under
    the annealed budget, gates made binary and frozen, a fine-tune, batch norm
    recalibrated per switch (a no-op for models without it); returns the budget used."""
    import keras

    from paradis_tf.training import BudgetSchedule, RecalibratedValidation, Sandwich

    steps_per_epoch = int(data.train.cardinality())
    asked = args.budget
    if args.link_mbps is not None:
        from paradis_tf.training import Link

        asked = Link(mbps=args.link_mbps, latency_ms=args.link_latency_ms)
    budget = asked if asked is not None and model.learned_switches() else None
    if asked is not None and budget is None:
        why = (f"gates are '{args.gates}'" if args.gates != "learned"
               else f"no switch of {args.switches} has devices that exchange (a 1-device switch sends nothing)")
        print(f"warning: the budget is ignored: {why}, so no gate is learned", file=sys.stderr)
    # The budget reached early and the cut kept from then on (GateRanking's
    # default): the weights train long against one structure, which beat a
    # cut remade at every step over half the run (docs/results/accuracy_comm.md).
    anneal_steps = (args.anneal_epochs * steps_per_epoch if args.anneal_epochs
                    else round(ANNEAL_FRACTION * args.epochs * steps_per_epoch))
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        budget=budget,
        budget_schedule=BudgetSchedule(0, max(1, anneal_steps)),
        distillation_weight=args.distillation_weight,
        comm_weight=args.comm_weight,
        sandwich=None if args.sandwich is None else Sandwich(middle=args.sandwich, seed=args.seed),
    )
    # A Ctrl-C that TensorFlow swallowed (it landed in C++, tracing the step)
    # stops training at the next batch instead of never.
    def stop(*_, **__):
        interrupt.check()

    stop_on_interrupt = keras.callbacks.LambdaCallback(
        on_train_batch_begin=stop, on_train_batch_end=stop, on_test_batch_end=stop, on_epoch_end=stop)
    os.makedirs(os.path.join(args.out, "backup"), exist_ok=True)
    with open(os.path.join(args.out, "backup", _RESUME_CONFIG), "w") as f:
        json.dump(_recipe(args), f, indent=1)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup", "train")),
        keras.callbacks.ModelCheckpoint(os.path.join(args.out, "checkpoint.keras")),
        keras.callbacks.TensorBoard(os.path.join(args.out, "logs")),
        # val_ metrics as the model would score if training stopped here:
        # batch norm recalibrated for the gates in use, then restored. Task
        # agnostic (it only runs the switches forward on training inputs).
        RecalibratedValidation(data.train, num_batches=args.recalibrate_batches),
        stop_on_interrupt,
    ]
    print(f"training {model.name} ({model.count_params():,} weights, task {model.task.name}) on "
          f"{data.description}: switches {','.join(model.switches.names)}, gates {args.gates}, budget {budget}, "
          f"{args.epochs} epochs of {steps_per_epoch} steps")
    model.fit(data.train, epochs=args.epochs, validation_data=data.validation, callbacks=callbacks,
              verbose=args.verbose, shuffle=False)
    if model.learned_switches():
        ratios = model.finalize_gates()
        print("gates made binary and frozen: traffic " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
        if args.finetune_epochs:
            model.fit(data.train, epochs=args.finetune_epochs, verbose=args.verbose, shuffle=False, callbacks=[
                keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup", "finetune")), stop_on_interrupt])
    model.recalibrate_batch_norm(data.train, num_batches=args.recalibrate_batches, verbose=0)
    # Trained to the end (BackupAndRestore removed its states): nothing to resume.
    shutil.rmtree(os.path.join(args.out, "backup"), ignore_errors=True)
    return budget


def _train(args, switches, task) -> dict:
    import keras

    from paradis_tf.accounting import device_summary
    from paradis_tf.models import build_model

    from paradis_cli._tasks import preset

    info = preset(args.model)
    keras.utils.set_random_seed(args.seed)
    with printed_warnings():
        data = task.prepare(args, info)
    try:
        model = build_model(args.model, switches=switches, gates=args.gates, **data.model_kwargs)
    except ValueError as e:
        given = ", ".join(f"{k}={v!r}" for k, v in data.model_kwargs.items())
        hint = ""
        if args.dataset.startswith("folder:") and args.image_size is None:
            hint = (f" Folder images are resized to 32x32 unless --image-size says otherwise: try --image-size "
                    f"{info.input_shape[0]} (the preset's side).")
        raise UsageError(f"--model {args.model} cannot be built for these flags (--switches {args.switches}, "
                         f"--width, --image-size; {given}): {e}{hint}") from None
    budget = _fit(model, data, args)
    model.save(os.path.join(args.out, "model.keras"))

    with printed_warnings():
        scores, extra = task.evaluate(model, data, args)
    summary = device_summary(model, data.input_shape, print_fn=None)
    rows = []
    for name in switches.names:
        devices = summary["switches"][name]["devices"]
        worst_p = max(devices, key=lambda d: d["params"])
        worst_f = max(devices, key=lambda d: d["flops"])
        rows.append({
            "switch": name,
            **scores[name],
            "comm_ratio": summary["switches"][name]["comm_ratio"],
            "params_per_device": worst_p["params"],
            "params_per_device_ratio": worst_p["params_ratio"],
            "flops_per_device": worst_f["flops"],
            "flops_per_device_ratio": worst_f["flops_ratio"],
        })
    print(_table(rows, task.metrics))
    bicubic = extra.get("evaluation", {}).get("bicubic")
    if bicubic is not None:
        ev = extra["evaluation"]
        print(f"{task.metrics[0][1]} and SSIM: Y channel, {ev['shave']} border pixels shaved, mean over the "
              f"held-out photos {', '.join(ev['photos'])}; bicubic upscaling scores PSNR {bicubic['psnr']:.2f} dB, "
              f"SSIM {bicubic['ssim']:.4f}")
    report = {"model": model.name, "task": task.name, "dataset": args.dataset, "classes": data.classes,
              "switches": list(switches.names),
              "budget": budget.get_config() if hasattr(budget, "get_config") else budget, "epochs": args.epochs,
              "results": rows, **extra, "devices": summary}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {os.path.join(args.out, 'model.keras')} and summary.json")
    return report
