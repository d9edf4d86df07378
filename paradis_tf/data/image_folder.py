"""image_folder: users' own images, one sub-folder per class."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from paradis_tf.data._pipeline import make_pipeline

__all__ = ["image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


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
):
    """A ``tf.data.Dataset`` of ``(image, label)`` from ``path/<class>/<image>``.

    Classes are the sub-folders in sorted order; images are decoded, resized
    to ``image_size`` (bilinear) and scaled to [0, 1].

    Args:
        path: root folder.
        image_size: ``(height, width)``.
        color_mode: ``"rgb"`` (3 channels) or ``"grayscale"`` (1).
        batch_size, shuffle, augment, seed, drop_remainder: as ``fashion_mnist``.
        return_class_names: also return the tuple of class names.
        limit: keep a random (``seed``) subset of at most ``limit`` images.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no class folder or no image, an unreadable image, or a bad
            argument.
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
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ValueError(
            f"image_folder: {path!r} has no sub-folder; put each class's images in its own "
            "folder (path/cat/1.png, path/dog/2.png, ...)."
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        for fname in sorted(os.listdir(os.path.join(path, name))):
            if fname.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(path, name, fname))
                labels.append(label)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive int or None, received {limit!r}.")
        keep = np.sort(np.random.default_rng(seed).permutation(len(files))[:limit])
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    if not files:
        raise ValueError(
            f"image_folder: no image ({', '.join(IMAGE_EXTENSIONS)}) under {path!r} in classes {classes}."
        )
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
