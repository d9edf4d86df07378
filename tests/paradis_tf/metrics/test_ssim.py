import numpy as np
import pytest

from paradis_tf.metrics import ssim


def test_constant_images_by_hand():
    # No variance anywhere: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) * (C2 / C2).
    c1 = 0.01**2
    a = np.full((11, 11), 0.5)
    b = np.full((11, 11), 0.25)
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1), abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0)


def test_one_window_by_hand():
    # An 11 x 11 image has exactly one window: the Gaussian-weighted statistics
    # of the whole image, written out here. b doubles a's contrast around 0.5.
    a = np.where(np.add.outer(np.arange(11), np.arange(11)) % 2 == 0, 0.6, 0.4)  # checkerboard
    b = 0.5 + 2 * (a - 0.5)
    d = np.arange(-5, 6)
    w = np.outer(np.exp(-(d**2) / 4.5), np.exp(-(d**2) / 4.5))  # 2 sigma^2 = 4.5
    w /= w.sum()
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    var_a = (w * a * a).sum() - mu_a**2
    var_b = (w * b * b).sum() - mu_b**2
    cov = (w * a * b).sum() - mu_a * mu_b
    assert var_b == pytest.approx(4 * var_a) and cov == pytest.approx(2 * var_a)
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert 0.75 < expected < 0.85  # (4 var + C2) / (5 var + C2) with var ~ 0.01


def test_matches_skimage_on_the_y_channel():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((2, 24, 20, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    y = lambda x: (16 + x @ np.array([65.481, 128.553, 24.966])) / 255  # noqa: E731
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    per_image = [metrics.structural_similarity(y(x)[3:-3, 3:-3], y(z)[3:-3, 3:-3], **kwargs) for x, z in zip(a, b)]
    expected = np.mean(per_image)
    assert ssim(a, b, shave=3) == pytest.approx(expected, abs=1e-10)
    # Several channels without Y: skimage's per-channel mean.
    expected = metrics.structural_similarity(a[0], b[0], channel_axis=-1, **kwargs)
    assert ssim(a[0], b[0], y_channel=False) == pytest.approx(expected, abs=1e-10)


def test_too_small_after_shave():
    with pytest.raises(ValueError, match="at least 11 x 11 pixels after the shave, received 10 x 10"):
        ssim(np.zeros((12, 12, 3)), np.zeros((12, 12, 3)), shave=1)
