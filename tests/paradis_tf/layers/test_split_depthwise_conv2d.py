import numpy as np
import pytest
import keras

from paradis_tf.layers import SplitDepthwiseConv2D
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,4x0.25,0.5+0.3+0.2,1x0.5"


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("switch", ["1x1.0", "2x0.5", "4x0.25", "0.5+0.3+0.2"])
@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "valid"), (2, "same")])
def test_full_width_switches_equal_stock_depthwise(switch, strides, padding, rng):
    x = rng.normal(size=(2, 9, 9, 8)).astype("float32")
    layer = SplitDepthwiseConv2D(3, SWITCHES, strides=strides, padding=padding)
    layer.build(x.shape)
    layer.bias.assign(rng.normal(size=(8,)).astype("float32"))
    stock = keras.layers.DepthwiseConv2D(3, strides=strides, padding=padding)
    stock.build(x.shape)
    stock.set_weights(layer.get_weights())
    assert np.abs(_np(layer(x, switch=switch)) - _np(stock(x))).max() <= 1e-5


def test_narrow_switch_zeroes_inactive_channels(rng):
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    layer = SplitDepthwiseConv2D(3, SWITCHES, padding="same", bias_initializer="ones")
    full = _np(layer(x, switch="1x1.0"))
    half = _np(layer(x, switch="1x0.5"))
    np.testing.assert_allclose(half[..., :4], full[..., :4], atol=1e-6)
    assert np.all(half[..., 4:] == 0.0)


def test_depthwise_is_local():
    layer = SplitDepthwiseConv2D(3, SWITCHES, strides=2, padding="same")
    layer.build((None, 8, 8, 10))
    cost = layer.switch_cost("0.5+0.3+0.2", (1, 8, 8, 10))
    assert cost.bytes_sent == (0, 0, 0) and cost.dense_bytes_sent == (0, 0, 0)
    # 10 channels -> 5/3/2; 4x4 output positions, 3x3 window.
    assert cost.params == (9 * 5 + 5, 9 * 3 + 3, 9 * 2 + 2)
    assert cost.flops == (2 * 16 * 9 * 5, 2 * 16 * 9 * 3, 2 * 16 * 9 * 2)


def test_harness_round_trips_and_fits(tmp_path):
    switches = "1x1.0,2x0.5,1x0.5"
    run_layer_test(lambda: SplitDepthwiseConv2D((3, 1), switches, padding="same"), (6, 6, 4), switches, tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair of ints, received"):
        SplitDepthwiseConv2D((3, 3, 3), SWITCHES)
    with pytest.raises(ValueError, match="padding must be 'same' or 'valid', received 'full'"):
        SplitDepthwiseConv2D(3, SWITCHES, padding="full")
    layer = SplitDepthwiseConv2D(3, "1x1.0,4x0.25")
    with pytest.raises(ValueError, match="2 channels is too narrow for switch '4x0.25'"):
        layer(np.zeros((1, 4, 4, 2), "float32"), switch=0)
