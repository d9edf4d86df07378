import numpy as np
import pytest
import keras

from paradis_tf.layers.upsampling import Upsample2D

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _bilinear_axis(n, r):
    """(n*r, n) interpolation matrix, half-pixel centers, borders clamped."""
    m = np.zeros((n * r, n))
    for o in range(n * r):
        src = min(max((o + 0.5) / r - 0.5, 0.0), n - 1.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, n - 1)
        m[o, lo] += 1.0 - (src - lo)
        m[o, hi] += src - lo
    return m


def _nearest_axis(n, r):
    m = np.zeros((n * r, n))
    m[np.arange(n * r), np.arange(n * r) // r] = 1.0
    return m


def reference(x, size, interpolation):
    """(B, H, W, ...) -> (B, rH, rW, ...) by separable matrices."""
    axis = _bilinear_axis if interpolation == "bilinear" else _nearest_axis
    rows, cols = axis(x.shape[1], size[0]), axis(x.shape[2], size[1])
    return np.einsum("oh,bhw...->bow...", rows, np.einsum("pw,bhw...->bhp...", cols, x.astype(np.float64)))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [2, 4, (2, 3)])
def test_plain_layout_matches_numpy_reference(interpolation, size, rng):
    x = rng.normal(size=(2, 5, 4, 3)).astype("float32")
    pair = size if isinstance(size, tuple) else (size, size)
    got = _np(Upsample2D(size, SWITCHES, interpolation=interpolation)(x, switch="1x1.0"))
    assert got.shape == (2, 5 * pair[0], 4 * pair[1], 3)
    np.testing.assert_allclose(got, reference(x, pair, interpolation), atol=1e-5)


def test_hand_computed_bilinear_row():
    # [0, 4] upsampled x2: pixels at source 0, 0.25, 0.75, 1 (clamped ends) -> 0, 1, 3, 4.
    x = np.array([0.0, 4.0], "float32").reshape(1, 1, 2, 1)
    got = _np(Upsample2D((1, 2), SWITCHES)(x, switch="1x1.0"))
    np.testing.assert_allclose(got.reshape(-1), [0.0, 1.0, 3.0, 4.0], atol=1e-6)


@pytest.mark.parametrize("switch, devices", [("2x0.5", 2), ("0.5+0.3+0.2", 3)])
def test_partial_layout_upsamples_each_device(switch, devices, rng):
    x = rng.normal(size=(2, 3, 4, devices, 5)).astype("float32")  # (B, H, W, D, C)
    got = _np(Upsample2D(4, SWITCHES)(x, switch=switch))
    assert got.shape == (2, 12, 16, devices, 5)
    np.testing.assert_allclose(got, reference(x, (4, 4), "bilinear"), atol=1e-5)
    # Linear: upsampling the partials then summing is upsampling the sum.
    np.testing.assert_allclose(got.sum(axis=3), reference(x.sum(axis=3), (4, 4), "bilinear"), atol=1e-4)


def test_config_round_trip_and_saved_model(tmp_path, rng):
    layer = Upsample2D((2, 3), SWITCHES, interpolation="nearest", name="up")
    clone = Upsample2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    inputs = keras.Input((3, 3, 2))
    model = keras.Model(inputs, layer(inputs, switch="2x0.5"))
    model.save(tmp_path / "m.keras")
    x = rng.normal(size=(1, 3, 3, 2)).astype("float32")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="interpolation must be one of \\('nearest', 'bilinear'\\), received 'cubic'"):
        Upsample2D(2, SWITCHES, interpolation="cubic")
    with pytest.raises(ValueError, match="size must be an int or a pair of ints, received 1.5"):
        Upsample2D(1.5, SWITCHES)
    layer = Upsample2D(2, SWITCHES)
    with pytest.raises(ValueError, match="switch '2x0.5' has 2 devices but the input's device axis \\(-2\\) has 3"):
        layer(np.zeros((1, 2, 2, 3, 4), "float32"), switch="2x0.5")
    with pytest.raises(ValueError, match=r"received input shape \(1, 4\)"):
        layer(np.zeros((1, 4), "float32"), switch="1x1.0")
