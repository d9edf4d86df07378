"""psnr: peak signal-to-noise ratio, on the Y channel by default (super-resolution convention)."""

from __future__ import annotations

import numpy as np

from paradis_tf.metrics._image import prepare_pair

__all__ = ["psnr"]


def psnr(a, b, max_value: float = 1.0, shave: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB, ``10 log10(1 / MSE)`` on images scaled by ``max_value`` to [0, 1].

    Args:
        a, b: ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)`` images of one shape.
        max_value: the peak value (1.0 for [0, 1] floats, 255 for uint8).
        shave: pixels dropped on each border before comparing; super-resolution
            papers shave ``scale`` pixels (bicubic borders are unreliable).
        y_channel: compare the BT.601 Y channel of RGB (``C == 3``) images, as
            the super-resolution literature does; other channel counts, or
            ``False``, compare all channels.

    Returns:
        The mean over the batch of each image's PSNR (``inf`` for identical images).
    """
    a, b = prepare_pair(a, b, max_value, shave, y_channel)  # (N, H', W', C') each
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))  # (N,)
    with np.errstate(divide="ignore"):
        return float(np.mean(10.0 * np.log10(1.0 / mse)))
