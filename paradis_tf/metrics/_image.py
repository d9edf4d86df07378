"""Shared preparation of the image metrics: shapes, scaling, BT.601 luma, border shave."""

from __future__ import annotations

import numpy as np

__all__ = ["rgb_to_y", "prepare_pair"]


def rgb_to_y(rgb) -> np.ndarray:
    """ITU-R BT.601 luma of RGB in [0, 1]: ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``.

    ``(..., 3)`` -> ``(...)`` float64, in [16/255, 235/255] (studio swing), as
    MATLAB's ``rgb2ycbcr`` which the super-resolution papers' numbers use.
    """
    rgb = np.asarray(rgb, np.float64)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"rgb_to_y needs a last axis of 3 channels, received shape {rgb.shape}.")
    return (16.0 + rgb @ np.array([65.481, 128.553, 24.966])) / 255.0


def prepare_pair(a, b, max_value: float, shave: int, y_channel: bool):
    """``a``, ``b`` -> two float64 ``(N, H', W', C')`` arrays in [0, 1] units.

    Shapes: ``(H, W)`` (one gray image), ``(H, W, C)`` (one image) or
    ``(N, H, W, C)`` (a batch). Values are divided by ``max_value``; with
    ``y_channel`` and ``C == 3`` the BT.601 Y channel replaces RGB (``C' = 1``);
    ``shave`` pixels are dropped on every border (``H' = H - 2 * shave``).
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two images must have the same shape, received {a.shape} and {b.shape}.")
    if a.ndim not in (2, 3, 4):
        raise ValueError(f"images must be (H, W), (H, W, C) or (N, H, W, C), received shape {a.shape}.")
    if not max_value > 0:
        raise ValueError(f"max_value must be positive (1.0 for [0, 1] images, 255 for uint8), received {max_value!r}.")
    if isinstance(shave, bool) or not isinstance(shave, (int, np.integer)) or shave < 0:
        raise ValueError(f"shave must be a non-negative int (the scale, in super-resolution), received {shave!r}.")
    if a.ndim == 2:
        a, b = a[None, :, :, None], b[None, :, :, None]  # (1, H, W, 1)
    elif a.ndim == 3:
        a, b = a[None], b[None]  # (1, H, W, C)
    a, b = a / max_value, b / max_value
    if y_channel and a.shape[-1] == 3:
        a, b = rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]  # (N, H, W, 1)
    h, w = a.shape[1:3]
    if 2 * shave >= min(h, w):
        raise ValueError(f"shave {shave} leaves nothing of a {h} x {w} image: use a smaller shave.")
    # (N, H - 2 shave, W - 2 shave, C)
    return a[:, shave:h - shave, shave:w - shave], b[:, shave:h - shave, shave:w - shave]
