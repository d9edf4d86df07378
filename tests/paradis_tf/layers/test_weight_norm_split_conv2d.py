import numpy as np
import pytest
import keras

from paradis_tf.layers.split_conv2d import SplitConv2D
from paradis_tf.layers.weight_norm_split_conv2d import WeightNormSplitConv2D
from tests.paradis_tf.layers import reference
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _effective(v, g):
    return v * (g / np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1, 2))))


def _built(gates, rng, **kw):
    layer = WeightNormSplitConv2D(10, 3, SWITCHES, padding="same", gates=gates, **kw)
    layer.build((None, 6, 6, 12))
    layer.kernel_gain.assign(rng.uniform(0.5, 2.0, size=(10,)).astype("float32"))
    layer.bias.assign(np.linspace(-1, 1, 10).astype("float32"))
    return layer


def test_starts_as_its_direction_and_exposes_the_effective_kernel(rng):
    layer = WeightNormSplitConv2D(10, 3, SWITCHES, gates="open")
    layer.build((None, 6, 6, 12))
    v = _np(layer.kernel_direction)
    # g = ||v|| at initialization: the effective kernel is v.
    np.testing.assert_allclose(_np(layer.kernel), v, rtol=1e-5, atol=1e-7)
    layer.kernel_gain.assign(rng.uniform(0.5, 2.0, size=(10,)).astype("float32"))
    expected = _effective(v, _np(layer.kernel_gain))
    np.testing.assert_allclose(_np(layer.kernel), expected, rtol=1e-5, atol=1e-7)
    # Each output channel's filter has length g.
    np.testing.assert_allclose(np.sqrt((_np(layer.kernel) ** 2).sum(axis=(0, 1, 2))), _np(layer.kernel_gain), rtol=1e-5)


@pytest.mark.parametrize("gates", ["open", "shut"])
@pytest.mark.parametrize("switch", ["1x1.0", "2x0.5", "0.5+0.3+0.2"])
def test_equals_split_conv2d_with_the_effective_kernel(gates, switch, rng):
    x = rng.normal(size=(2, 6, 6, 12)).astype("float32")
    layer = _built(gates, rng)
    plain = SplitConv2D(10, 3, SWITCHES, padding="same", gates=gates)
    plain.build(x.shape)
    plain.set_weights([_np(layer.kernel), _np(layer.bias)])
    np.testing.assert_allclose(_np(layer(x, switch=switch)), _np(plain(x, switch=switch)), atol=1e-5)


def test_partial_outputs_equal_numpy_per_device_sums(rng):
    x = rng.normal(size=(2, 5, 5, 12)).astype("float32")
    layer = WeightNormSplitConv2D(6, 3, SWITCHES, padding="same", partial_outputs=True)
    layer.build(x.shape)
    layer.kernel_gain.assign(rng.uniform(0.5, 2.0, size=(6,)).astype("float32"))
    got = _np(layer(x, switch="0.5+0.3+0.2"))  # (B, H, W, 3, 6)
    kernel = _effective(_np(layer.kernel_direction), _np(layer.kernel_gain))
    full = reference.conv2d(x.astype(np.float64), kernel, padding="same")
    np.testing.assert_allclose(got.sum(axis=3), full, atol=1e-4)
    # Device 1 owns input channels [6, 10) of 12 in 0.5+0.3+0.2 (6/4/2).
    np.testing.assert_allclose(got[..., 1, :], reference.conv2d(x[..., 6:10].astype(np.float64), kernel[:, :, 6:10],
                                                                  padding="same"), atol=1e-4)


def test_one_fit_step_moves_direction_and_gain(rng):
    x = rng.normal(size=(4, 5, 5, 4)).astype("float32")
    layer = WeightNormSplitConv2D(4, 3, "1x1.0,2x0.5", padding="same", gates="open")
    inputs = keras.Input((5, 5, 4))
    model = keras.Model(inputs, layer(inputs, switch="2x0.5"))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    v, g = _np(layer.kernel_direction).copy(), _np(layer.kernel_gain).copy()
    model.fit(x, rng.normal(size=(4, 5, 5, 4)).astype("float32"), batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(_np(layer.kernel_direction), v), "no gradient reached v"
    assert not np.allclose(_np(layer.kernel_gain), g), "no gradient reached g"


def test_harness_config_save_load_and_fit(tmp_path):
    model = run_layer_test(
        lambda: WeightNormSplitConv2D(6, 3, SWITCHES, padding="same", name="wn"), (5, 5, 8), SWITCHES, tmp_path
    )
    layer = model.get_layer("wn")
    assert [w.name for w in layer.trainable_weights][:2] == ["kernel", "bias"]
    assert "kernel_g" in [w.name for w in layer.trainable_weights]
