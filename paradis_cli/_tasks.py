"""What ``paradis train`` and ``paradis export`` do per task: data, model
arguments, test metrics and int8 calibration images.

The training recipe itself is one (``paradis_cli/train.py``); a task only
says which data it trains on and how a trained model is scored:

    task            --dataset                      test metric per switch (summary.json key)
    classification  fashion-mnist, folder:...      top1 (accuracy on the test split)
    sr              photos (scikit-image's wheel)  psnr, ssim (Y channel, held-out photos), bicubic baseline once
    segmentation    fashion-scenes                 miou (mean IoU, background included)
    detection       fashion-scenes                 map50 (decode_centernet on the sigmoid heatmap, VOC mAP@0.5)

A preset's task is its model's (``build_model(name).task.name``): a model
family has one task, so only the first preset of each family is built to
learn it.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from typing import NamedTuple, Optional

import numpy as np

from paradis_cli._common import UsageError

__all__ = ["TASKS", "TaskRun", "Preset", "preset", "presets_of", "get_task", "calibration_images"]

# Detection: CenterNet's evaluation keeps the 100 best peaks of an image; the
# score floor only drops peaks that cannot matter to mAP.
_DETECTIONS_PER_IMAGE = 100
_SCORE_FLOOR = 0.01


class Preset(NamedTuple):
    """What the CLI needs to know of a preset, read off a model built with its defaults."""

    name: str
    task: str
    input_shape: tuple  # (H, W, C) of the preset's defaults
    output_shape: tuple  # (..., C_out) of one switch's output, batch axis dropped
    parameters: frozenset  # the family's constructor arguments


@functools.lru_cache(maxsize=None)
def preset(name: str) -> Preset:
    """``name``'s task and default shapes (builds the preset once per process)."""
    import keras

    from paradis_tf.models.presets import PRESETS, build_model

    model = build_model(name)
    output = keras.tree.flatten(model.outputs)[0]
    info = Preset(name, model.task.name, tuple(int(s) for s in model.inputs[0].shape[1:]),
                  tuple(int(s) for s in output.shape[1:]),
                  frozenset(inspect.signature(PRESETS[name][0].__init__).parameters))
    del model
    keras.backend.clear_session(free_memory=True)
    return info


def presets_of(task: str) -> list:
    """The presets whose model has ``task`` (one build per model family)."""
    from paradis_tf.models.presets import PRESETS

    family_task = {}
    for name, (cls, _) in PRESETS.items():
        if cls not in family_task:
            family_task[cls] = preset(name).task
    return sorted(name for name, (cls, _) in PRESETS.items() if family_task[cls] == task)


class TaskRun(NamedTuple):
    """One task's data for a run of the recipe.

    ``train`` and ``validation`` are ``tf.data`` pipelines of ``(x, y)``
    batches (``validation`` feeds ``fit``'s ``val_`` logs and checkpoints);
    ``test`` is whatever the task's ``evaluate`` scores on.
    """

    train: object
    validation: object
    test: object
    input_shape: tuple  # one model input (H, W, C)
    model_kwargs: dict  # build_model arguments the data decides (input_shape, num_classes)
    classes: Optional[list]
    description: str


def _pipeline(x, y, batch_size: int, shuffle: bool, seed: int):
    """Batches of NumPy ``(x, y)`` arrays, reshuffled every epoch when ``shuffle``."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _batches(x, batch_size: int):
    """``x`` in slices of ``batch_size`` along the first axis (the last one shorter)."""
    for start in range(0, len(x), batch_size):
        yield x[start:start + batch_size]


def _square_side(args, default: int, multiple: int, flag_meaning: str) -> int:
    """--image-size (or ``default``), checked to be a multiple of ``multiple``."""
    side = args.image_size or default
    if side % multiple:
        raise UsageError(f"--image-size {side} ({flag_meaning}) must be a multiple of {multiple} for --model "
                         f"{args.model}: use e.g. {max(multiple, side - side % multiple)}.")
    return side


class _Task:
    """A task's defaults; subclasses load its data and score a model."""

    name = ""
    datasets = ()  # accepted --dataset values, the first the default
    folders = False  # also 'folder:TRAIN_DIR[,TEST_DIR]'
    batch_size = 128
    limit = None  # default --limit (None: all)
    test_limit = None
    metrics = ()  # (summary key, table header, format of the value)

    def dataset(self, value: Optional[str]) -> str:
        """The --dataset to use: ``value``, or the task's default; refuses one that does not fit."""
        if value is None:
            return self.datasets[0]
        if value in self.datasets or (self.folders and value.startswith("folder:")):
            return value
        forms = [repr(d) for d in self.datasets] + (["'folder:TRAIN_DIR[,TEST_DIR]'"] if self.folders else [])
        raise UsageError(f"--dataset {value!r} does not fit task '{self.name}': use {' or '.join(forms)}.")

    def width_kwargs(self, args, info: Preset) -> dict:
        """--width as the family's constructor takes it."""
        if "width" in info.parameters:
            return {"width": args.width}
        if args.width != 1.0:
            raise UsageError(f"--width {args.width}: model {info.name} has no channel width multiplier; "
                             "leave --width at 1.")
        return {}

    def prepare(self, args, info: Preset) -> TaskRun:
        raise NotImplementedError

    def evaluate(self, model, run: TaskRun, args):
        """``({switch: {metric key: value}}, extra report entries)``."""
        raise NotImplementedError

    def calibration(self, dataset: str, count: int, input_shape: tuple, model) -> np.ndarray:
        raise NotImplementedError


class _Classification(_Task):
    name = "classification"
    datasets = ("fashion-mnist",)
    folders = True
    metrics = (("top1", "top1", lambda v: f"{100 * v:.2f}%"),)

    def prepare(self, args, info):
        from paradis_tf.data import CLASS_NAMES, fashion_mnist, image_folder

        batch = args.batch_size or self.batch_size
        if args.dataset == "fashion-mnist":
            if args.image_size is not None:
                print(f"warning: --image-size {args.image_size} is ignored: Fashion-MNIST images are 28x28 "
                      "(it resizes folder datasets)", file=sys.stderr)
            train = fashion_mnist("train", batch, augment=args.augment, limit=args.limit, seed=args.seed)
            test = fashion_mnist("test", batch, limit=args.test_limit)
            shape, classes = (28, 28, 1), list(CLASS_NAMES)
        else:
            paths = args.dataset[len("folder:"):].split(",")
            if len(paths) > 2 or not all(paths):
                raise UsageError(f"--dataset must be 'folder:TRAIN_DIR' or 'folder:TRAIN_DIR,TEST_DIR', "
                                 f"received {args.dataset!r}.")
            for p in paths:
                if not os.path.isdir(p):
                    raise UsageError(f"--dataset {args.dataset!r}: {p!r} is not a folder.")
            size = (args.image_size or 32,) * 2
            train, classes = image_folder(paths[0], size, batch_size=batch, augment=args.augment,
                                          seed=args.seed, return_class_names=True, limit=args.limit)
            if len(classes) < 2:
                raise ValueError(
                    f"--dataset: training folder {paths[0]!r} has only one class sub-folder with images "
                    f"({classes[0]!r}); a classifier needs at least two: put each class's images in its own "
                    "sub-folder (TRAIN_DIR/cat/1.png, TRAIN_DIR/dog/2.png, ...).")
            # The test split is labelled by the training split's classes.
            test = image_folder(paths[-1], size, batch_size=batch, shuffle=False, limit=args.test_limit,
                                class_names=classes)
            if len(paths) == 1:
                print("warning: no TEST_DIR given; accuracy is measured on the training folder", file=sys.stderr)
            shape, classes = size + (3,), list(classes)
        kwargs = {**self.width_kwargs(args, info), "num_classes": len(classes), "input_shape": shape}
        return TaskRun(train, test, test, shape, kwargs, classes, args.dataset)

    def evaluate(self, model, run, args):
        results = model.evaluate(run.test, verbose=0, return_dict=True)
        metric = model.task.metric_name  # "accuracy"
        return {name: {"top1": float(results[f"{name}_{metric}"])} for name in model.switches.names}, {}

    def calibration(self, dataset, count, input_shape, model):
        if dataset == "fashion-mnist":
            from paradis_tf.data import load_fashion_mnist

            images, _ = load_fashion_mnist("train")
            return images[:count].astype("float32") / 255.0
        from paradis_tf.data import image_folder

        folder = dataset[len("folder:"):].split(",")[0]
        if not os.path.isdir(folder):
            raise UsageError(f"--dataset {dataset!r}: {folder!r} is not a folder.")
        ds = image_folder(folder, tuple(input_shape[:2]), batch_size=64, shuffle=False, limit=count,
                          color_mode="grayscale" if input_shape[-1] == 1 else "rgb")
        return np.concatenate([np.asarray(x) for x, _ in ds], axis=0)


class _SuperResolution(_Task):
    name = "sr"
    datasets = ("photos",)
    batch_size = 16
    limit = 1000  # training patches
    test_limit = 64  # validation patches of the held-out photos (fit's val_ logs)
    metrics = (("psnr", "PSNR dB", lambda v: f"{v:.2f}"), ("ssim", "SSIM", lambda v: f"{v:.4f}"))

    @staticmethod
    def _scale(info: Preset) -> int:
        return info.output_shape[0] // info.input_shape[0]  # (rH, rW, 3) over (H, W, 3)

    def width_kwargs(self, args, info):
        if "filters" in info.parameters and "width" not in info.parameters:
            from paradis_tf.models.presets import PRESETS

            # WDSR's width is its body channels F.
            filters = PRESETS[info.name][1].get("filters", 32)
            return {"filters": max(1, int(round(filters * args.width)))}
        return super().width_kwargs(args, info)

    def prepare(self, args, info):
        from paradis_tf.data import sr_patches

        scale = self._scale(info)
        hr = _square_side(args, info.output_shape[0], scale, "the side of a high-resolution patch")
        lr = (hr // scale, hr // scale, 3)
        batch = args.batch_size or self.batch_size
        try:
            x, y = sr_patches(args.limit or self.limit, hr, scale, seed=args.seed, split="train",
                              augment=args.augment)
            # Validation patches come from the held-out photos, always the same ones.
            vx, vy = sr_patches(args.test_limit or self.test_limit, hr, scale, seed=0, split="eval", augment=False)
        except ValueError as e:
            if "larger than the smallest" not in str(e):
                raise
            raise UsageError(f"--image-size {hr} (the side of a high-resolution patch): {e}") from None
        train = _pipeline(x, y, batch, shuffle=True, seed=args.seed)
        validation = _pipeline(vx, vy, batch, shuffle=False, seed=0)
        kwargs = {**self.width_kwargs(args, info), "input_shape": lr}
        return TaskRun(train, validation, scale, lr, kwargs, None,
                       f"{args.dataset} ({len(x)} patches {hr}x{hr}, x{scale})")

    def evaluate(self, model, run, args):
        import keras

        from paradis_tf.data import bicubic_resize, sr_eval_images
        from paradis_tf.metrics import psnr, ssim

        scale = run.test
        names = model.switches.names
        scores = {name: {"psnr": [], "ssim": []} for name in names}
        baseline = {"psnr": [], "ssim": []}
        photos = []
        weights = model.get_weights()
        config = model.get_config()
        for lr, hr, photo in sr_eval_images(scale):
            # Whole photos differ in size and the model's input is fixed:
            # the same family at the photo's size, with the trained weights
            # (gates, pins and thresholds are weights too).
            sized = type(model).from_config({**config, "input_shape": list(lr.shape)})
            sized.set_weights(weights)
            # One eager call: tracing predict for each photo size costs more than the call.
            outputs = sized(lr[None], training=False)  # {switch: (1, rH, rW, 3)}
            for name in names:
                sr = np.clip(keras.ops.convert_to_numpy(outputs[name])[0], 0.0, 1.0)  # as a saved image would be
                scores[name]["psnr"].append(psnr(sr, hr, shave=scale))
                scores[name]["ssim"].append(ssim(sr, hr, shave=scale))
            bicubic = bicubic_resize(lr, hr.shape[:2])  # (H, W, 3)
            baseline["psnr"].append(psnr(bicubic, hr, shave=scale))
            baseline["ssim"].append(ssim(bicubic, hr, shave=scale))
            photos.append(photo)
            del sized
        mean = lambda values: float(np.mean(values))
        rows = {name: {k: mean(v) for k, v in scores[name].items()} for name in names}
        extra = {"evaluation": {"photos": photos, "channel": "Y (BT.601)", "shave": scale,
                                "bicubic": {k: mean(v) for k, v in baseline.items()}}}
        return rows, extra

    def calibration(self, dataset, count, input_shape, model):
        from paradis_tf.data import sr_patches

        import keras

        output = keras.tree.flatten(model.outputs)[0]  # (None, rH, rW, 3)
        scale = int(output.shape[1]) // input_shape[0]
        side = max(input_shape[:2])
        lr, _ = sr_patches(count, side * scale, scale, seed=0, split="train", augment=False)
        return lr[:, :input_shape[0], :input_shape[1]]  # (N, h, w, 3)


def _scenes(count: int, split: str, canvas: int, seed: int):
    """Fashion-MNIST scenes whose items keep the proportions of the 64-pixel
    canvas (sides 20 to 36 there) on any canvas."""
    from paradis_tf.data import fashion_scenes

    item_size = (max(8, round(canvas * 20 / 64)), max(8, round(canvas * 36 / 64)))
    return fashion_scenes(count, split, canvas, item_size=item_size, seed=seed)


_MIN_CANVAS = 16  # the smallest scene side the generator fills with its items


class _Scenes(_Task):
    """Segmentation and detection share the Fashion-MNIST scenes."""

    datasets = ("fashion-scenes",)
    batch_size = 32
    limit = 2000
    test_limit = 500

    def targets(self, scenes, info: Preset, canvas: int):
        raise NotImplementedError

    def prepare(self, args, info):
        # The canvas is the model's input: the preset's, or --image-size
        # (the families pool to stride 8).
        canvas = _square_side(args, info.input_shape[0], 8, "the side of a scene")
        if args.augment:
            print("warning: --augment is ignored: scenes are generated with random placements already "
                  "(it augments classification and sr)", file=sys.stderr)
        if canvas < _MIN_CANVAS:
            # Four items of 10 to 28 pixels do not fit on a smaller canvas.
            raise UsageError(f"--image-size {canvas} (the side of a scene) is too small to place the scene's "
                             f"items: use at least {_MIN_CANVAS}.")
        shape = (canvas, canvas, info.input_shape[2])
        batch = args.batch_size or self.batch_size
        train = _scenes(args.limit or self.limit, "train", canvas, seed=args.seed)
        # The test scenes do not depend on --seed: runs compare on the same ones.
        test = _scenes(args.test_limit or self.test_limit, "test", canvas, seed=0)
        x, xt = (s.images.astype("float32") / 255.0 for s in (train, test))  # (N, S, S, 1) in [0, 1]
        run = TaskRun(
            _pipeline(x, self.targets(train, info, canvas), batch, shuffle=True, seed=args.seed),
            _pipeline(xt, self.targets(test, info, canvas), batch, shuffle=False, seed=0),
            (xt, test), shape, {**self.width_kwargs(args, info), "input_shape": shape}, self.classes(),
            f"{args.dataset} ({len(x)} scenes {canvas}x{canvas})",
        )
        return run

    def calibration(self, dataset, count, input_shape, model):
        side = max(input_shape[:2])
        images = _scenes(count, "train", side, seed=0).images.astype("float32") / 255.0
        return images[:, :input_shape[0], :input_shape[1]]  # (N, H, W, 1)

    @staticmethod
    def classes():
        from paradis_tf.data import CLASS_NAMES

        return list(CLASS_NAMES)


class _Segmentation(_Scenes):
    name = "segmentation"
    metrics = (("miou", "mIoU", lambda v: f"{100 * v:.2f}%"),)

    def targets(self, scenes, info, canvas):
        return scenes.masks  # (N, S, S) ints, 0 = background

    @staticmethod
    def classes():
        return ["background"] + _Scenes.classes()

    def evaluate(self, model, run, args):
        import keras

        from paradis_tf.metrics import mean_iou

        x, scenes = run.test
        names = model.switches.names
        masks = {name: [] for name in names}
        for batch in _batches(x, args.batch_size or self.batch_size):
            outputs = model(batch, training=False)  # {switch: (B, S, S, classes) logits}
            for name in names:
                logits = keras.ops.convert_to_numpy(outputs[name])
                num_classes = logits.shape[-1]
                masks[name].append(np.argmax(logits, axis=-1))  # (B, S, S, classes) -> (B, S, S)
        return {name: {"miou": mean_iou(np.concatenate(masks[name]), scenes.masks, num_classes)}
                for name in names}, {}


class _Detection(_Scenes):
    name = "detection"
    metrics = (("map50", "mAP@0.5", lambda v: f"{100 * v:.2f}%"),)

    @staticmethod
    def _layout(info: Preset):
        """(stride, classes): CenterNet's output is (H / stride, W / stride, classes + 4)."""
        return info.input_shape[0] // info.output_shape[0], info.output_shape[-1] - 4

    def targets(self, scenes, info, canvas):
        from paradis_tf.data import centernet_targets

        stride, classes = self._layout(info)
        return centernet_targets(scenes.boxes, canvas, stride, classes).packed()  # (N, S/4, S/4, C + 5)

    def evaluate(self, model, run, args):
        import keras

        from paradis_tf.data import decode_centernet
        from paradis_tf.metrics import map50

        x, scenes = run.test
        names = model.switches.names
        detections = {name: [] for name in names}
        for batch in _batches(x, args.batch_size or self.batch_size):
            outputs = model(batch, training=False)  # {switch: (B, h, w, C + 4)}
            for name in names:
                out = keras.ops.convert_to_numpy(outputs[name]).astype(np.float32)
                classes = out.shape[-1] - 4
                stride = x.shape[1] // out.shape[1]
                heat = 1.0 / (1.0 + np.exp(-out[..., :classes]))  # sigmoid: logits -> scores (B, h, w, C)
                # (B, h, w, C + 4) -> size (.., C:C+2), offset (.., C+2:C+4)
                detections[name] += decode_centernet(heat, out[..., classes:classes + 2],
                                                     out[..., classes + 2:classes + 4], stride,
                                                     k=_DETECTIONS_PER_IMAGE, threshold=_SCORE_FLOOR)
        return {name: {"map50": map50(detections[name], scenes.boxes, classes)} for name in names}, {}


_TASKS = {t.name: t for t in (_Classification(), _SuperResolution(), _Segmentation(), _Detection())}
TASKS = tuple(_TASKS)


def get_task(name: str) -> _Task:
    """The CLI's handling of task ``name`` (one of ``TASKS``)."""
    if name not in _TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, received {name!r}; a model of task "
                         f"{name!r} has no data or metric in 'paradis train' yet.")
    return _TASKS[name]


def calibration_images(model, dataset: Optional[str], count: int) -> np.ndarray:
    """``count`` int8 calibration inputs for ``model`` from ``dataset`` (default: its task's data)."""
    task = get_task(model.task.name)
    given = f"--dataset {dataset!r}" if dataset else f"the default calibration data ('{task.datasets[0]}')"
    dataset = task.dataset(dataset)
    input_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
    images = task.calibration(dataset, count, input_shape, model)
    if tuple(images.shape[1:]) != input_shape:
        raise UsageError(
            f"--int8 calibrates on {given}, whose images have shape {tuple(images.shape[1:])}; the checkpoint "
            f"takes {input_shape}: pass the data it was trained on, e.g. --dataset folder:TRAIN_DIR.")
    return images
