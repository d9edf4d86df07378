"""Fashion-MNIST scenes: a few clothing items on one canvas, for segmentation and detection.

Each scene places 2-4 (``items``) Fashion-MNIST images, each scaled to a random
square side in ``item_size``, at random positions of a black ``canvas`` x
``canvas`` image. Later items are painted over earlier ones; placement is
redrawn until every item keeps at least ``1 - max_overlap`` of its own
foreground visible, so no item is hidden and every box is meaningful.

Conventions (the models, losses and metrics rely on them):

* An item's *foreground* is its scaled pixels strictly above ``threshold``
  (uint8). Inside an item's foreground the canvas holds that item's pixels;
  elsewhere in the item's square the fainter of its sub-threshold pixels
  never cover what is already there (per-pixel max), so the image agrees with
  the mask: a pixel's mask class is the item whose foreground is visible there.
* ``masks``: ``(N, S, S)`` int32, ``0`` = background, ``label + 1`` (1..10) =
  the Fashion-MNIST class of the visible item (``CLASS_NAMES[mask - 1]``).
* ``boxes``: ``(N, max_items, 5)`` int32 rows ``[x0, y0, x1, y1, label]``: the
  tight box of the item's *visible* foreground in pixels, half-open
  (``x0 <= x < x1``, so width is ``x1 - x0``), and ``label`` the Fashion-MNIST
  class 0..9 (detection classes have no background; the mask id is
  ``label + 1``). Scenes with fewer items are padded with rows of ``-1``;
  rows are in paint order (bottom first).
* ``images``: ``(N, S, S, 1)`` uint8 (scale to [0, 1] as the Fashion-MNIST
  pipeline does, ``/ 255``).

Deterministic: the same arguments (and the same Fashion-MNIST files) give
byte-identical arrays; ``split="test"`` draws its items from the test split only.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from paradis_tf.data.fashion_mnist import load_fashion_mnist

__all__ = ["Scenes", "fashion_scenes", "NUM_CLASSES"]

# Detection classes (Fashion-MNIST labels); segmentation has NUM_CLASSES + 1 (background 0).
NUM_CLASSES = 10
_MIN_ITEM_SIZE = 8  # below this a Fashion-MNIST item is a few blurry pixels
_MIN_FOREGROUND = 16  # an item with fewer foreground pixels is redrawn (almost blank source)
_TRIES_PER_ITEM = 100
_TRIES_PER_SCENE = 20


class Scenes(NamedTuple):
    """``images`` (N, S, S, 1) uint8, ``masks`` (N, S, S) int32, ``boxes`` (N, max_items, 5) int32."""

    images: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray


def _as_range(name: str, value, lowest: int) -> Tuple[int, int]:
    """``n`` or ``(lo, hi)`` -> ``(lo, hi)`` inclusive ints with ``lowest <= lo <= hi``."""
    pair = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        lo, hi = pair
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi))
    except (TypeError, ValueError):
        ok = False
    if not ok or lo > hi:
        raise ValueError(f"{name} must be an int or a (min, max) pair of ints with min <= max, received {value!r}.")
    if lo < lowest:
        raise ValueError(f"{name} must be at least {lowest}, received {value!r}.")
    return int(lo), int(hi)


def _resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """(28, 28) uint8 -> (size, size) uint8, bilinear with half-pixel centres.

    NumPy only (the scenes need no image library). Not antialiased: the
    smallest scale (8/28) still samples every output pixel from its 2x2
    neighbourhood, which is enough for a toy task.
    """
    h, w = image.shape
    # Output pixel i's centre (i + 0.5) maps to input coordinate (i + 0.5) * h / size - 0.5.
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0)[:, None]  # (size, 1)
    fx = (xs - x0)[None, :]  # (1, size)
    img = image.astype(np.float64)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx  # (size, size)
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx  # (size, size)
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


def _place_scene(rng, sources, labels, canvas, n_items, sizes, max_overlap, threshold):
    """One scene, or None when the items could not be placed within the overlap limit."""
    image = np.zeros((canvas, canvas), np.uint8)
    owner = np.full((canvas, canvas), -1, np.int32)  # index of the visible item per pixel
    fg_area = []  # own foreground pixel count of each placed item
    item_labels = []
    for k in range(n_items):
        for _ in range(_TRIES_PER_ITEM):
            index = int(rng.integers(len(sources)))
            size = int(rng.integers(sizes[0], sizes[1] + 1))
            y = int(rng.integers(canvas - size + 1))
            x = int(rng.integers(canvas - size + 1))
            patch = _resize_bilinear(sources[index], size)  # (size, size) uint8
            fg = patch > threshold  # (size, size) bool
            if fg.sum() < _MIN_FOREGROUND:
                continue
            # Visible pixels each earlier item would keep once this one is painted on top.
            window = owner[y:y + size, x:x + size]  # (size, size) view
            covered = np.bincount(window[fg & (window >= 0)], minlength=k)
            visible = np.bincount(owner[owner >= 0], minlength=k) - covered
            if k and np.any(visible < (1.0 - max_overlap) * np.asarray(fg_area)):
                continue
            view = image[y:y + size, x:x + size]
            # Foreground overwrites (paint order); faint sub-threshold pixels never cover.
            view[...] = np.where(fg, patch, np.maximum(view, patch))
            window[fg] = k
            fg_area.append(int(fg.sum()))
            item_labels.append(int(labels[index]))
            break
        else:
            return None
    return image, owner, item_labels


def fashion_scenes(
    count: int,
    split: str = "train",
    canvas: int = 64,
    items: Union[int, Sequence[int]] = (2, 4),
    item_size: Union[int, Sequence[int]] = (20, 36),
    max_overlap: float = 0.3,
    threshold: int = 32,
    seed: int = 0,
    path: Optional[str] = None,
) -> Scenes:
    """``count`` seeded Fashion-MNIST scenes with per-pixel class masks and boxes.

    Args:
        count: number of scenes.
        split: ``"train"`` or ``"test"``: the Fashion-MNIST split the items come from.
        canvas: side ``S`` of the square canvas in pixels (e.g. 64 or 96).
        items: items per scene, an int or an inclusive ``(min, max)``; min >= 1.
        item_size: side of an item's square in pixels, an int or inclusive
            ``(min, max)``; the Fashion-MNIST 28 x 28 image is resized to it.
        max_overlap: largest fraction of an item's foreground that later items
            may cover, in [0, 1) (0: foregrounds never overlap).
        threshold: uint8 level above which an item's pixel is foreground.
        seed: the scenes are a pure function of the arguments and ``seed``.
        path: Fashion-MNIST folder (as ``load_fashion_mnist``).

    Returns:
        ``Scenes(images, masks, boxes)``; see the module docstring for the conventions.

    Raises:
        ValueError: an argument is out of range, or the items do not fit the
            canvas within ``max_overlap`` (the message says what to change).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive int, received {count!r}.")
    if isinstance(canvas, bool) or not isinstance(canvas, (int, np.integer)) or canvas < _MIN_ITEM_SIZE:
        raise ValueError(f"canvas must be an int of at least {_MIN_ITEM_SIZE} pixels, received {canvas!r}.")
    n_items = _as_range("items", items, 1)
    sizes = _as_range("item_size", item_size, _MIN_ITEM_SIZE)
    if sizes[1] > canvas:
        raise ValueError(
            f"canvas {canvas} is too small for items of up to {sizes[1]} pixels (item_size="
            f"{item_size!r}): use a canvas of at least {sizes[1]} or smaller items."
        )
    if not isinstance(max_overlap, (int, float)) or isinstance(max_overlap, bool) or not 0 <= max_overlap < 1:
        raise ValueError(f"max_overlap must be a number in [0, 1), received {max_overlap!r}.")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or not 0 <= threshold < 255:
        raise ValueError(f"threshold must be an int in [0, 254], received {threshold!r}.")

    sources, labels = load_fashion_mnist(split, path)
    sources = sources[..., 0]  # (M, 28, 28) uint8
    rng = np.random.default_rng(seed)
    images = np.zeros((count, canvas, canvas, 1), np.uint8)
    masks = np.zeros((count, canvas, canvas), np.int32)
    boxes = np.full((count, n_items[1], 5), -1, np.int32)
    for i in range(count):
        k = int(rng.integers(n_items[0], n_items[1] + 1))
        for _ in range(_TRIES_PER_SCENE):
            scene = _place_scene(rng, sources, labels, canvas, k, sizes, max_overlap, threshold)
            if scene is not None:
                break
        else:
            raise ValueError(
                f"could not place {k} items of {sizes[0]}-{sizes[1]} pixels on a {canvas} x {canvas} canvas "
                f"with max_overlap={max_overlap!r}: use fewer or smaller items (items, item_size), a larger "
                f"canvas, or a larger max_overlap."
            )
        image, owner, item_labels = scene
        images[i, :, :, 0] = image
        for j, label in enumerate(item_labels):
            rows = np.flatnonzero((owner == j).any(axis=1))
            cols = np.flatnonzero((owner == j).any(axis=0))
            # Half-open [x0, x1) x [y0, y1) tight box of the visible foreground.
            boxes[i, j] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1, label)
            masks[i][owner == j] = label + 1
    return Scenes(images, masks, boxes)
