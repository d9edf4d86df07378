"""ssim: structural similarity (Wang et al. 2004), on the Y channel by default."""

from __future__ import annotations

import numpy as np

from paradis_tf.metrics._image import prepare_pair

__all__ = ["ssim"]

_SIGMA = 1.5
_RADIUS = 5  # 11 x 11 window, as Wang et al.'s reference code
_K1, _K2 = 0.01, 0.03


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (N, H, W, C) over H and W -> (N, H - 2r, W - 2r, C)."""
    r = len(w) // 2
    h, wd = x.shape[1] - 2 * r, x.shape[2] - 2 * r
    rows = sum(w[k] * x[:, k:k + h] for k in range(len(w)))  # (N, H - 2r, W, C)
    return sum(w[k] * rows[:, :, k:k + wd] for k in range(len(w)))  # (N, H - 2r, W - 2r, C)


def ssim(a, b, max_value: float = 1.0, shave: int = 0, y_channel: bool = True) -> float:
    """Mean SSIM with an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03.

    Local statistics are Gaussian-weighted means, variances and covariance
    (no sample correction), computed only where the whole window fits (the
    reference code's 'valid' filtering; equal to
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)``).

    Args:
        a, b, max_value, shave, y_channel: as ``psnr``; after the shave the
            images must be at least 11 x 11.

    Returns:
        The mean over the batch of each image's SSIM (channels averaged when
        several are compared).
    """
    a, b = prepare_pair(a, b, max_value, shave, y_channel)  # (N, H', W', C') in [0, 1]
    if min(a.shape[1:3]) < 2 * _RADIUS + 1:
        raise ValueError(
            f"ssim needs images of at least {2 * _RADIUS + 1} x {2 * _RADIUS + 1} pixels after the shave, "
            f"received {a.shape[1]} x {a.shape[2]}."
        )
    d = np.arange(-_RADIUS, _RADIUS + 1, dtype=np.float64)
    w = np.exp(-(d**2) / (2 * _SIGMA**2))
    w /= w.sum()  # (11,) sums to 1: the 2-D window is its outer product
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a**2
    var_b = _filter_valid(b * b, w) - mu_b**2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    c1, c2 = _K1**2, _K2**2  # data range is 1 after prepare_pair
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(np.mean(s.mean(axis=(1, 2, 3))))
