import numpy as np
import pytest

from paradis_tf.metrics import psnr, rgb_to_y


def test_gray_2x2_by_hand():
    a = np.array([[0.0, 0.5], [1.0, 0.25]])
    b = a.copy()
    b[0, 1] += 0.1  # one pixel off by 0.1: MSE = 0.01 / 4 = 0.0025 -> 10 log10(400)
    assert psnr(a, b) == pytest.approx(10 * np.log10(400.0), abs=1e-9)
    assert psnr(a, a) == np.inf


def test_rgb_compares_bt601_luma():
    # Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255; the weights sum to 219.
    assert rgb_to_y([1.0, 0.0, 0.0]) == pytest.approx((16 + 65.481) / 255)
    assert rgb_to_y([1.0, 1.0, 1.0]) == pytest.approx(235 / 255)
    a = np.full((4, 4, 3), 0.5)
    b = a + 0.1  # every channel +0.1: Y moves by 0.1 * 219 / 255
    assert psnr(a, b) == pytest.approx(-20 * np.log10(0.1 * 219 / 255), abs=1e-9)
    # Errors that cancel in Y are invisible there, not in RGB: R + 0.1, G - 0.1 * 65.481 / 128.553.
    c = a.copy()
    c[..., 0] += 0.1
    c[..., 1] -= 0.1 * 65.481 / 128.553
    assert psnr(a, c) == np.inf
    assert psnr(a, c, y_channel=False) < 30


def test_shave_drops_the_border():
    a = np.zeros((6, 6, 1))
    b = a.copy()
    b[0, :, 0] = 1.0  # only the top row differs
    assert psnr(a, b, shave=1) == np.inf
    assert psnr(a, b) == pytest.approx(10 * np.log10(36 / 6))  # MSE = 6 / 36
    with pytest.raises(ValueError, match="shave 3 leaves nothing of a 6 x 6 image"):
        psnr(a, b, shave=3)


def test_batch_is_the_mean_of_per_image_psnr_and_max_value_scales():
    a = np.zeros((2, 3, 3, 1))
    b = a.copy()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1] += 0.01  # MSE 0.0001 -> 40 dB (pooled MSE would give 22.97 dB)
    assert psnr(a, b) == pytest.approx(30.0)
    assert psnr(a * 255, b * 255, max_value=255) == pytest.approx(30.0)


def test_matches_skimage_on_the_y_channel():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.random((16, 12, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    y = lambda x: (16 + x @ np.array([65.481, 128.553, 24.966])) / 255  # noqa: E731
    expected = metrics.peak_signal_noise_ratio(y(a)[2:-2, 2:-2], y(b)[2:-2, 2:-2], data_range=1.0)
    assert psnr(a, b, shave=2) == pytest.approx(expected, abs=1e-9)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"same shape, received \(2, 2\) and \(2, 3\)"):
        psnr(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="max_value must be positive.*received 0"):
        psnr(np.zeros((2, 2)), np.zeros((2, 2)), max_value=0)
    with pytest.raises(ValueError, match="shave must be a non-negative int.*received -1"):
        psnr(np.zeros((2, 2)), np.zeros((2, 2)), shave=-1)
    with pytest.raises(ValueError, match=r"received shape \(2,\)"):
        psnr(np.zeros(2), np.zeros(2))
