import numpy as np
import pytest
import keras

from paradis_tf.layers.partial_sum_fusion import PartialSumFusion
from paradis_tf.layers.pixel_shuffle import PixelShuffle

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def depth_to_space(x, r):
    """The documented order, one output pixel at a time:
    out[b, h*r + i, w*r + j, c] = in[b, h, w, (i*r + j) * Co + c]."""
    b, h, w, c = x.shape
    co = c // (r * r)
    out = np.zeros((b, h * r, w * r, co), x.dtype)
    for y in range(h * r):
        for z in range(w * r):
            i, j = y % r, z % r
            out[:, y, z, :] = x[:, y // r, z // r, (i * r + j) * co : (i * r + j + 1) * co]
    return out


@pytest.mark.parametrize("scale", [2, 3])
def test_plain_layout_matches_depth_to_space_formula(scale, rng):
    x = rng.normal(size=(2, 3, 4, 2 * scale * scale)).astype("float32")
    got = _np(PixelShuffle(scale, SWITCHES)(x, switch="1x1.0"))
    assert got.shape == (2, 3 * scale, 4 * scale, 2)
    np.testing.assert_array_equal(got, depth_to_space(x, scale))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.nn.depth_to_space is TensorFlow's")
def test_order_is_tensorflow_depth_to_space(rng):
    import tensorflow as tf

    x = rng.normal(size=(2, 3, 5, 27)).astype("float32")
    np.testing.assert_array_equal(
        _np(PixelShuffle(3, SWITCHES)(x, switch="2x0.5")), tf.nn.depth_to_space(x, 3).numpy()
    )


@pytest.mark.parametrize("switch, devices", [("2x0.5", 2), ("0.5+0.3+0.2", 3)])
def test_partial_layout_shuffles_each_device_and_commutes_with_the_sum(switch, devices, rng):
    x = rng.normal(size=(2, 3, 4, devices, 12)).astype("float32")  # (B, H, W, D, 3 r^2), r = 2
    layer = PixelShuffle(2, SWITCHES)
    got = _np(layer(x, switch=switch))
    assert got.shape == (2, 6, 8, devices, 3)
    for k in range(devices):
        np.testing.assert_array_equal(got[..., k, :], depth_to_space(x[..., k, :], 2))
    fused = _np(PartialSumFusion(SWITCHES)(got, switch=switch))
    np.testing.assert_allclose(fused, depth_to_space(x.sum(axis=3), 2), atol=1e-5)


def test_config_round_trip_and_saved_model(tmp_path, rng):
    layer = PixelShuffle(3, SWITCHES, name="shuffle")
    clone = PixelShuffle.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.scale == 3
    inputs = keras.Input((2, 2, 2, 9))
    model = keras.Model(inputs, layer(inputs, switch="2x0.5"))
    model.save(tmp_path / "m.keras")
    x = rng.normal(size=(1, 2, 2, 2, 9)).astype("float32")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_bad_input_names_the_value():
    layer = PixelShuffle(2, SWITCHES, name="ps")
    with pytest.raises(ValueError, match=r"multiple of scale\*\*2 = 4 \(scale=2\), received 10 channels"):
        layer(np.zeros((1, 2, 2, 10), "float32"), switch="1x1.0")
    with pytest.raises(ValueError, match="switch '0.5\\+0.3\\+0.2' has 3 devices but the input's device axis"):
        layer(np.zeros((1, 2, 2, 2, 4), "float32"), switch="0.5+0.3+0.2")
    with pytest.raises(ValueError, match=r"expects inputs \(B, H, W, C\) or partial outputs"):
        layer(np.zeros((2, 4), "float32"), switch="1x1.0")
    with pytest.raises(ValueError, match="scale must be a positive int, received 0"):
        PixelShuffle(0, SWITCHES)
    with pytest.raises(ValueError, match="4x0.25"):
        layer(np.zeros((1, 2, 2, 4), "float32"), switch="4x0.25")
