"""image_folder: users' own images, one sub-folder per class."""

from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence

import numpy as np

from paradis_tf.data._pipeline import make_pipeline

__all__ = ["image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _class_files(path: str) -> dict:
    """{sub-folder name: sorted image paths} of every sub-folder of ``path``."""
    out = {}
    for name in sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))):
        folder = os.path.join(path, name)
        out[name] = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                     if f.lower().endswith(IMAGE_EXTENSIONS)]
    return out


def image_folder(
    path: str,
    image_size: Sequence[int] = (32, 32),
    color_mode: str = "rgb",
    batch_size: int = 64,
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    return_class_names: bool = False,
    limit: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
):
    """A ``tf.data.Dataset`` of ``(image, label)`` from ``path/<class>/<image>``.

    Classes are the sub-folders that hold images, in sorted order (a
    sub-folder without images is not a class: it is skipped with a warning);
    images are decoded, resized to ``image_size`` (bilinear) and scaled to
    [0, 1].

    Args:
        path: root folder.
        image_size: ``(height, width)``.
        color_mode: ``"rgb"`` (3 channels) or ``"grayscale"`` (1).
        batch_size, shuffle, augment, seed, drop_remainder: as ``fashion_mnist``.
        return_class_names: also return the tuple of class names.
        limit: keep a random (``seed``) subset of at most ``limit`` images.
        class_names: label by these names instead of this folder's own
            sub-folders (a test split labelled as its training split was:
            pass the training split's class names). A sub-folder with images
            that is not among them is an error; a class without images here
            is reported with a warning.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no class folder or no image, a class ``class_names`` does
            not know, an unreadable image, or a bad argument.
    """
    import tensorflow as tf

    if not os.path.isdir(path):
        raise FileNotFoundError(f"image_folder: path {path!r} is not a folder.")
    if color_mode not in ("rgb", "grayscale"):
        raise ValueError(f"color_mode must be 'rgb' or 'grayscale', received {color_mode!r}.")
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(s, int) and s > 0 for s in image_size)
    ):
        raise ValueError(f"image_size must be (height, width) of positive ints, received {image_size!r}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, received {limit!r}.")
    if class_names is not None:
        if isinstance(class_names, str) or not class_names or len(set(class_names)) != len(class_names):
            raise ValueError(
                f"class_names must be a non-empty sequence of distinct names, received {class_names!r}."
            )
        class_names = tuple(class_names)
    found = _class_files(path)
    if not found:
        raise ValueError(
            f"image_folder: {path!r} has no sub-folder; put each class's images in its own "
            "folder (path/cat/1.png, path/dog/2.png, ...)."
        )
    empty = [name for name, files in found.items() if not files]
    if class_names is None:
        if empty:
            warnings.warn(
                f"image_folder: sub-folder(s) {empty} of {path!r} hold no image "
                f"({', '.join(IMAGE_EXTENSIONS)}); they are not classes.", stacklevel=2)
        classes = tuple(name for name, files in found.items() if files)
    else:
        unknown = [name for name, files in found.items() if files and name not in class_names]
        if unknown:
            raise ValueError(
                f"image_folder: {path!r} holds images of class(es) {unknown} that class_names does not "
                f"know (it has {list(class_names)}): a model trained on those classes cannot predict "
                "them. Remove those sub-folders or train with them."
            )
        missing = [name for name in class_names if not found.get(name)]
        if missing:
            warnings.warn(
                f"image_folder: {path!r} has no image of class(es) {missing}; it is labelled with the "
                f"{len(class_names)} classes given and holds the other {len(class_names) - len(missing)}.",
                stacklevel=2)
        classes = class_names
    files, labels = [], []
    for label, name in enumerate(classes):
        for fname in found.get(name, []):
            files.append(fname)
            labels.append(label)
    if not files:
        raise ValueError(
            f"image_folder: no image ({', '.join(IMAGE_EXTENSIONS)}) under {path!r} in sub-folders {list(found)}."
        )
    if limit is not None:
        keep = np.sort(np.random.default_rng(seed).permutation(len(files))[:limit])
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    channels = 3 if color_mode == "rgb" else 1
    images = np.empty((len(files),) + tuple(image_size) + (channels,), dtype=np.uint8)
    for i, fname in enumerate(files):
        try:
            img = tf.io.decode_image(tf.io.read_file(fname), channels=channels, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            raise ValueError(f"image_folder: cannot decode {fname}: {e.message}") from None
        img = tf.image.resize(img, image_size, method="bilinear")
        images[i] = np.clip(np.round(img.numpy()), 0, 255).astype(np.uint8)
    ds = make_pipeline(
        images, np.asarray(labels, np.int64), batch_size=batch_size, shuffle=shuffle,
        augment=augment, seed=seed, drop_remainder=drop_remainder,
    )
    return (ds, tuple(classes)) if return_class_names else ds
