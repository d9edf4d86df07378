import numpy as np
import pytest
import keras

from paradis_tf.layers.first_device_conv2d import FirstDeviceConv2D
from tests.paradis_tf.layers import reference
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("weight_norm", [False, True])
@pytest.mark.parametrize("switch, devices", [("1x1.0", 1), ("2x0.5", 2), ("0.5+0.3+0.2", 3)])
def test_device_zero_holds_the_full_convolution(weight_norm, switch, devices, rng):
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    layer = FirstDeviceConv2D(12, 5, SWITCHES, weight_norm=weight_norm, bias_initializer="ones")
    layer.build(x.shape)
    kernel = _np(layer.kernel_direction).astype(np.float64)
    if weight_norm:
        g = rng.uniform(0.5, 2.0, size=(12,)).astype("float32")
        layer.kernel_gain.assign(g)
        kernel = kernel * g / np.sqrt((kernel**2).sum(axis=(0, 1, 2)))
    got = _np(layer(x, switch=switch))
    assert got.shape == (2, 6, 6, devices, 12)
    np.testing.assert_allclose(got[..., 0, :], reference.conv2d(x.astype(np.float64), kernel, padding="same") + 1.0,
                               atol=1e-4)
    assert not got[..., 1:, :].any()
    np.testing.assert_allclose(_np(layer.kernel), kernel, rtol=1e-5, atol=1e-6)


def test_cost_is_device_zeros_and_nothing_is_sent():
    layer = FirstDeviceConv2D(12, 5, SWITCHES, use_bias=False)
    layer.build((None, 8, 8, 3))
    cost = layer.switch_cost("0.5+0.3+0.2", (1, 8, 8, 3))
    assert cost.params == (5 * 5 * 3 * 12, 0, 0)
    assert cost.flops == (2 * 64 * 5 * 5 * 3 * 12, 0, 0)
    assert cost.bytes_sent == cost.bytes_received == (0, 0, 0)


def test_harness_config_save_load_and_fit(tmp_path):
    run_layer_test(lambda: FirstDeviceConv2D(4, 3, SWITCHES, weight_norm=True), (5, 5, 3), SWITCHES, tmp_path)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="filters must be a positive int, received 0"):
        FirstDeviceConv2D(0, 3, SWITCHES)
    with pytest.raises(ValueError, match="padding must be 'same' or 'valid', received 'full'"):
        FirstDeviceConv2D(4, 3, SWITCHES, padding="full")
    layer = FirstDeviceConv2D(4, 5, SWITCHES, padding="valid")
    with pytest.raises(ValueError, match="smaller than the window"):
        layer(np.zeros((1, 3, 3, 3), "float32"), switch="1x1.0")
