"""Super-resolution data from the photos that ship inside scikit-image's wheel.

Nothing is downloaded: the photos are the PNG/JPEG files in the installed
``skimage/data`` folder (``pip install 'paradis-tf[tasks]'``), read directly
with Pillow. ``skimage.data``'s functions are never called (some of them fetch
files over the network); only files that the wheel itself holds are listed.

The split is fixed (``TRAIN_PHOTOS``, ``EVAL_PHOTOS``): the evaluation photos
are never sampled for training patches. Grayscale photos are kept and
replicated to three equal channels (their Y channel is their gray level up to
the BT.601 offset), so every array is RGB float32 in [0, 1].

Bicubic: ``bicubic_resize`` is Pillow's ``BICUBIC`` filter (Keys' kernel,
a = -0.5) applied to float32 channels (Pillow's ``"F"`` mode, no rounding to
uint8), then clipped to [0, 1]. When shrinking, Pillow widens the kernel by the
scale factor (antialiasing), as MATLAB's ``imresize`` does, the convention of
the super-resolution literature. The same function makes the low-resolution
inputs (downscale) and the bicubic baseline (upscale).
"""

from __future__ import annotations

import importlib.util
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "PHOTOS",
    "TRAIN_PHOTOS",
    "EVAL_PHOTOS",
    "bicubic_resize",
    "load_photo",
    "sr_eval_images",
    "sr_patches",
]

# name -> file in skimage/data. Natural photos only: no synthetic charts
# (color, phantom, chessboard, logo), documents (page, text), a binary
# silhouette (horse), a motion-blurred photo (clock_motion), or the right view of
# the motorcycle stereo pair (a near copy of the left one, which trains).
PHOTOS = {
    "astronaut": "astronaut.png",  # 512 x 512 RGB
    "brick": "brick.png",  # 512 x 512 gray
    "camera": "camera.png",  # 512 x 512 gray
    "chelsea": "chelsea.png",  # 300 x 451 RGB
    "coffee": "coffee.png",  # 400 x 600 RGB
    "coins": "coins.png",  # 303 x 384 gray
    "grass": "grass.png",  # 512 x 512 gray
    "gravel": "gravel.png",  # 512 x 512 gray
    "hubble_deep_field": "hubble_deep_field.jpg",  # 872 x 1000 RGB
    "ihc": "ihc.png",  # 512 x 512 RGB
    "moon": "moon.png",  # 512 x 512 gray
    "motorcycle_left": "motorcycle_left.png",  # 500 x 741 RGB
    "retina": "retina.jpg",  # 1411 x 1411 RGB
    "rocket": "rocket.jpg",  # 427 x 640 RGB
}
# Held out: two colour photos (a face-and-fur close-up, an outdoor scene) and
# one gray one, so evaluation covers both kinds.
EVAL_PHOTOS = ("camera", "chelsea", "rocket")
TRAIN_PHOTOS = tuple(name for name in sorted(PHOTOS) if name not in EVAL_PHOTOS)
_SPLITS = {"train": TRAIN_PHOTOS, "eval": EVAL_PHOTOS}


def _data_dir() -> str:
    """The installed ``skimage/data`` folder, found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "scikit-image is not installed: the super-resolution photos ship inside its wheel. "
            "Install it with pip install 'paradis-tf[tasks]' (or pip install scikit-image)."
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def load_photo(name: str) -> np.ndarray:
    """One bundled photo as ``(H, W, 3)`` float32 in [0, 1] (gray replicated to 3 channels)."""
    from PIL import Image

    if name not in PHOTOS:
        raise ValueError(f"name must be one of {sorted(PHOTOS)}, received {name!r}.")
    filename = os.path.join(_data_dir(), PHOTOS[name])
    if not os.path.isfile(filename):
        raise FileNotFoundError(
            f"photo {filename} is missing from the installed scikit-image; reinstall it "
            f"(pip install --force-reinstall scikit-image)."
        )
    with Image.open(filename) as image:
        rgb = np.asarray(image.convert("RGB"), np.float32)  # (H, W, 3), gray -> R = G = B
    return rgb / 255.0


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise ValueError(f"scale must be an int of at least 2 (e.g. 2 or 3), received {scale!r}.")
    return int(scale)


def _check_split(split: str) -> Tuple[str, ...]:
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'eval', received {split!r}.")
    return _SPLITS[split]


def bicubic_resize(images, size: Sequence[int]) -> np.ndarray:
    """Resizes ``(H, W, C)`` or ``(N, H, W, C)`` float images to ``size = (height, width)``.

    Pillow's BICUBIC per channel in float32 (antialiased when shrinking),
    clipped to [0, 1]; returns float32 with the same rank as ``images``.
    """
    from PIL import Image

    images = np.asarray(images, np.float32)
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (H, W, C) or (N, H, W, C), received shape {images.shape}.")
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be a (height, width) pair, received {size!r}.") from None
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, received {size!r}.")
    batch = images if images.ndim == 4 else images[None]  # (N, H, W, C)
    out = np.empty(batch.shape[:1] + (height, width) + batch.shape[3:], np.float32)
    for i in range(batch.shape[0]):
        for c in range(batch.shape[3]):
            # Pillow's size is (width, height); mode "F" keeps float32 (no uint8 rounding).
            channel = Image.fromarray(np.ascontiguousarray(batch[i, :, :, c]))  # float32 -> mode "F"
            out[i, :, :, c] = np.asarray(channel.resize((width, height), Image.Resampling.BICUBIC))
    np.clip(out, 0.0, 1.0, out=out)
    return out if images.ndim == 4 else out[0]


def sr_patches(
    count: int,
    hr_size: int = 96,
    scale: int = 2,
    seed: int = 0,
    split: str = "train",
    augment: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Random high-resolution patches and their bicubic low-resolution versions.

    Each patch picks a photo of ``split`` uniformly (so large photos are not
    favoured), then a uniform top-left corner; with ``augment`` it is also
    flipped and rotated by a random multiple of 90 degrees (the 8 symmetries of
    the square) before it is downscaled, so LR and HR always agree.

    Args:
        count: number of patches.
        hr_size: side of a high-resolution patch, divisible by ``scale``.
        scale: downscaling factor (2, 3, 4, ...).
        seed: the patches are a pure function of the arguments and ``seed``.
        split: ``"train"`` (``TRAIN_PHOTOS``) or ``"eval"`` (``EVAL_PHOTOS``).
        augment: random flips and 90-degree rotations.

    Returns:
        ``(lr, hr)``: float32 ``(count, hr_size / scale, hr_size / scale, 3)`` and
        ``(count, hr_size, hr_size, 3)`` in [0, 1].
    """
    scale = _check_scale(scale)
    names = _check_split(split)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive int, received {count!r}.")
    if isinstance(hr_size, bool) or not isinstance(hr_size, (int, np.integer)) or hr_size < scale:
        raise ValueError(f"hr_size must be an int of at least scale={scale}, received {hr_size!r}.")
    if hr_size % scale:
        raise ValueError(
            f"hr_size {hr_size} is not divisible by scale {scale}: use a multiple of {scale} "
            f"(e.g. {hr_size - hr_size % scale} or {hr_size - hr_size % scale + scale})."
        )
    photos = [load_photo(name) for name in names]
    smallest = min(min(p.shape[:2]) for p in photos)
    if hr_size > smallest:
        raise ValueError(f"hr_size {hr_size} is larger than the smallest {split} photo ({smallest} pixels): use at "
                         f"most {smallest - smallest % scale} (a multiple of scale {scale}).")
    rng = np.random.default_rng(seed)
    hr = np.empty((count, hr_size, hr_size, 3), np.float32)
    for i in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        y = int(rng.integers(photo.shape[0] - hr_size + 1))
        x = int(rng.integers(photo.shape[1] - hr_size + 1))
        patch = photo[y:y + hr_size, x:x + hr_size]  # (hr_size, hr_size, 3)
        if augment:
            if rng.integers(2):
                patch = patch[:, ::-1]
            patch = np.rot90(patch, int(rng.integers(4)))
        hr[i] = patch
    lr = bicubic_resize(hr, (hr_size // scale, hr_size // scale))
    return lr, hr


def sr_eval_images(
    scale: int = 2, split: str = "eval", names: Optional[Sequence[str]] = None
) -> List[Tuple[np.ndarray, np.ndarray, str]]:
    """Whole photos for evaluation: ``[(lr, hr, name), ...]``.

    ``hr`` is the photo cropped at the bottom and right to a multiple of
    ``scale`` ("modcrop"), ``(H, W, 3)``; ``lr`` its bicubic downscale
    ``(H / scale, W / scale, 3)``. Photos differ in size, hence a list.

    Args:
        scale: downscaling factor.
        split: ``"eval"`` (default, ``EVAL_PHOTOS``) or ``"train"``.
        names: these photos instead of a split's (any of ``PHOTOS``).
    """
    scale = _check_scale(scale)
    names = _check_split(split) if names is None else tuple(names)
    out = []
    for name in names:
        photo = load_photo(name)
        height, width = photo.shape[0] - photo.shape[0] % scale, photo.shape[1] - photo.shape[1] % scale
        hr = photo[:height, :width]  # (H, W, 3), both multiples of scale
        out.append((bicubic_resize(hr, (height // scale, width // scale)), hr, name))
    return out
