"""``paradis export``: one TFLite file per device and the fusion graph, per switch.

    paradis export --checkpoint runs/r20/model.keras --switches 2x0.5,1x1.0 \\
        [--int8 --calibration 500 [--browser]] --out runs/r20/bundle
"""

from __future__ import annotations

import os

from paradis_cli._common import UsageError, positive_int, printed_warnings

__all__ = ["HELP", "add_arguments", "run"]

_DEFAULT_DATASET = "fashion-mnist"


HELP = "write one TFLite file per device and the fusion graph, per switch"


def add_arguments(e) -> None:
    e.add_argument("--checkpoint", required=True, help="a .keras file saved by 'paradis train' (model.keras)")
    e.add_argument("--switches", required=True, help="comma-separated switches of the checkpoint, e.g. 2x0.5,1x1.0")
    e.add_argument("--int8", action="store_true", help="full-integer quantization (int8 on the wire too)")
    e.add_argument("--calibration", type=positive_int, default=500,
                   help="int8: real training images used to calibrate (default 500)")
    e.add_argument("--dataset", default=None,
                   help=f"int8 calibration images: '{_DEFAULT_DATASET}' (default) or 'folder:TRAIN_DIR', "
                        "the data the checkpoint was trained on")
    e.add_argument("--browser", action="store_true",
                   help="int8: also write device files with uint8 stage inputs and outputs for the web peer "
                        "(LiteRT.js refuses int8 ones; float32 files run in browsers as they are)")
    e.add_argument("--out", required=True, help="bundle folder to create")
    e.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")


def _calibration_images(args, count: int, input_shape):
    import numpy as np

    dataset = args.dataset or _DEFAULT_DATASET
    given = f"--dataset {dataset!r}" if args.dataset else f"the default calibration data ('{_DEFAULT_DATASET}')"
    if dataset == "fashion-mnist":
        from paradis_tf.data import load_fashion_mnist

        images, _ = load_fashion_mnist("train")
        images = images[:count].astype("float32") / 255.0
    elif dataset.startswith("folder:"):
        from paradis_tf.data import image_folder

        folder = dataset[len("folder:"):].split(",")[0]
        if not os.path.isdir(folder):
            raise UsageError(f"--dataset {dataset!r}: {folder!r} is not a folder.")
        with printed_warnings():
            ds = image_folder(folder, tuple(input_shape[:2]), batch_size=64, shuffle=False, limit=count,
                              color_mode="grayscale" if input_shape[-1] == 1 else "rgb")
        images = np.concatenate([np.asarray(x) for x, _ in ds], axis=0)
    else:
        raise UsageError(f"--dataset must be 'fashion-mnist' or 'folder:TRAIN_DIR', received {dataset!r}.")
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise UsageError(
            f"--int8 calibrates on {given}, whose images have shape {tuple(images.shape[1:])}; the checkpoint "
            f"takes {tuple(input_shape)}: pass the data it was trained on, e.g. --dataset folder:TRAIN_DIR.")
    return images


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
    from paradis_export.bundle import switch_names

    # Checked here too (export_bundle checks again) so that the user learns it
    # before the model loads, in terms of the flag.
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"--out {args.out} exists; choose a new folder or pass --overwrite to replace it.")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} exists and is not a folder.")
    model = _load(args.checkpoint)
    try:
        names = switch_names(model, args.switches)
    except ValueError as e:
        raise UsageError(f"--{e}") from None
    input_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    calibration = _calibration_images(args, args.calibration, input_shape) if args.int8 else None
    if args.browser and not args.int8:
        print("--browser: float32 device files run in browsers as they are; nothing extra to write")
    manifest = export_bundle(model, names, args.out, int8=args.int8, calibration=calibration,
                             overwrite=args.overwrite, progress=print, browser=args.browser)
    print(f"wrote {args.out}")
    from paradis_cli.inspect import inspect_text

    print(inspect_text(args.out, per_stage=False))
    return manifest
