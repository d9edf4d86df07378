"""``paradis export``: one TFLite file per device and the fusion graph, per switch.

    paradis export --checkpoint runs/r20/model.keras --switches 2x0.5,1x1.0 \\
        [--int8 --calibration 500 [--browser]] --out runs/r20/bundle
"""

from __future__ import annotations

import os
import sys

from paradis_cli._common import UsageError, positive_int, printed_warnings

__all__ = ["HELP", "add_arguments", "run"]

HELP = "write one TFLite file per device and the fusion graph, per switch"
CALIBRATION_DEFAULT = 500


def add_arguments(e) -> None:
    e.add_argument("--checkpoint", required=True, help="a .keras file saved by 'paradis train' (model.keras)")
    e.add_argument("--switches", required=True, help="comma-separated switches of the checkpoint, e.g. 2x0.5,1x1.0")
    e.add_argument("--int8", action="store_true",
                   help="full-integer quantization (int8 on the wire too); not for models with attention or layer "
                        "norm (the ViT), which export in float32")
    e.add_argument("--calibration", type=positive_int, default=CALIBRATION_DEFAULT,
                   help="int8: real training images used to calibrate (default 500)")
    e.add_argument("--dataset", default=None,
                   help="int8 calibration images, the data the checkpoint was trained on (default: its task's): "
                        "classification 'fashion-mnist' or 'folder:TRAIN_DIR', sr 'photos', segmentation and "
                        "detection 'fashion-scenes'")
    e.add_argument("--browser", action="store_true",
                   help="int8: also write device files with uint8 stage inputs and outputs for the web peer "
                        "(LiteRT.js refuses int8 ones; float32 files run in browsers as they are)")
    e.add_argument("--out", required=True, help="bundle folder to create")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an existing bundle folder (one that holds manifest.json, or an empty one; any "
                        "other folder is refused)")


def _load(checkpoint: str):
    import keras

    import paradis_tf.models  # noqa: F401  (registers the model classes for loading)

    if not os.path.isfile(checkpoint):
        raise UsageError(f"--checkpoint {checkpoint} does not exist (expected a .keras file saved by "
                         "'paradis train').")
    try:
        return keras.saving.load_model(checkpoint, compile=False)
    except Exception as e:  # Keras says "File not found" for a file that exists but is no zip.
        raise ValueError(
            f"--checkpoint {checkpoint} exists but cannot be read as a Keras model ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); it may be truncated or not a .keras file: "
            "use model.keras written by 'paradis train'.") from None


def run(args) -> dict:
    from paradis_export import export_bundle
    from paradis_export.bundle import check_out, switch_names

    # Checked here too (export_bundle checks again) so that the user learns it
    # before the model loads, in terms of the flag.
    try:
        check_out(args.out, args.overwrite, argument="--out")
    except (FileExistsError, ValueError) as e:
        raise UsageError(str(e)) from None
    model = _load(args.checkpoint)
    try:
        names = switch_names(model, args.switches)
    except ValueError as e:
        raise UsageError(f"--{e}") from None
    calibration = None
    if args.int8:
        from paradis_cli._tasks import calibration_images
        from paradis_export.exporter import int8_problem

        for name in names:  # before the calibration images load
            problem = int8_problem(model, name)
            if problem:
                raise UsageError(f"--int8: {problem}; leave out --int8 to export this model in float32.")

        with printed_warnings():
            calibration = calibration_images(model, args.dataset, args.calibration)
    if args.browser and not args.int8:
        print("--browser: float32 device files run in browsers as they are; nothing extra to write")
    if not args.int8 and args.calibration != CALIBRATION_DEFAULT:
        print(f"warning: --calibration {args.calibration} is for --int8; a float32 export calibrates nothing",
              file=sys.stderr)
    try:
        with printed_warnings():
            manifest = export_bundle(model, names, args.out, int8=args.int8, calibration=calibration,
                                     overwrite=args.overwrite, progress=print, browser=args.browser)
    except ValueError as e:
        # The exporter names the first layer it has no per-device rule for
        # (paradis_export/_graph.py): that is about the checkpoint the user
        # chose, not a failure of the work.
        if not str(e).startswith("Cannot export layer"):
            raise
        raise UsageError(f"--checkpoint {args.checkpoint} ({model.name}, task {model.task.name}) cannot be exported "
                         f"yet: {e}") from None
    print(f"wrote {args.out}")
    from paradis_cli.inspect import inspect_text

    print(inspect_text(args.out, per_stage=False))
    return manifest
