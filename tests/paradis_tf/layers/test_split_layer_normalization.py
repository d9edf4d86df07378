import numpy as np
import pytest
import keras

from paradis_tf import Switch
from paradis_tf.layers.split_layer_normalization import SplitLayerNormalization
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2,1x0.5"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _layer(shape, rng, **kwargs):
    layer = SplitLayerNormalization(SWITCHES, **kwargs)
    layer.build(shape)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def test_layer_harness(tmp_path):
    run_layer_test(lambda: SplitLayerNormalization(SWITCHES), (3, 2, 10), SWITCHES, tmp_path)


@pytest.mark.parametrize("switch", SWITCHES.split(","))
@pytest.mark.parametrize("shape", [(3, 10), (2, 3, 4, 10)])
def test_equals_layer_normalization_of_the_switch(switch, shape, rng):
    x = (rng.normal(size=shape) * 3 + 5).astype("float32")
    split = _layer(shape, rng)
    gamma, beta = split.get_weights()
    n = Switch.parse(switch).active_channels(10)
    stock = keras.layers.LayerNormalization(epsilon=1e-3)
    stock.build(shape[:-1] + (n,))
    stock.set_weights([gamma[:n], beta[:n]])  # the narrow sub-network's LayerNormalization
    out = _np(split(x, switch=switch))
    np.testing.assert_allclose(out[..., :n], _np(stock(x[..., :n])), atol=1e-5)
    assert not out[..., n:].any()  # inactive channels exactly 0


def test_per_device_statistics_combine_exactly(rng):
    # What the devices exchange: (mean_k, M2_k) of their own channels, two
    # numbers per token; combined by hand, they give the layer's output.
    x = rng.normal(size=(4, 10)).astype("float64") + 7.0
    layer = _layer((4, 10), rng, epsilon=1e-3)
    gamma, beta = layer.get_weights()
    ranges = Switch.parse("0.5+0.3+0.2").partition(10)
    stats = [(len(r), x[:, r].mean(axis=1), ((x[:, r] - x[:, r].mean(axis=1, keepdims=True)) ** 2).sum(axis=1))
             for r in ranges]
    n = sum(s[0] for s in stats)
    mean = sum(nk * mk for nk, mk, _ in stats) / n
    var = sum(m2 + nk * (mk - mean) ** 2 for nk, mk, m2 in stats) / n
    expected = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-3) * gamma + beta
    np.testing.assert_allclose(_np(layer(x.astype("float32"), switch="0.5+0.3+0.2")), expected, atol=1e-5)


def test_statistics_traffic_per_token():
    layer = SplitLayerNormalization(SWITCHES)
    layer.build((None, 5, 8))
    # 0.5+0.3+0.2 on 8 channels: 4/2/2. Per token every device sends 2 numbers
    # to each of the 2 others: 2 * 2 * 5 tokens = 20 elements; 1 B each here.
    cost = layer.switch_cost("0.5+0.3+0.2", (1, 5, 8), bytes_per_element=1)
    assert cost.fusion_bytes_sent == (20, 20, 20) and cost.fusion_bytes_received == (20, 20, 20)
    assert cost.bytes_sent == (0, 0, 0) and cost.dense_bytes_sent == (0, 0, 0)  # not gated
    assert cost.params == (8, 4, 4)
    one = layer.switch_cost("1x0.5", (1, 5, 8))
    assert one.fusion_bytes_sent == (0,) and one.params == (8,)
    assert layer.unsplit_cost((1, 5, 8)) == (16, 0)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="epsilon must be a number > 0, received 0"):
        SplitLayerNormalization(SWITCHES, epsilon=0)
    layer = SplitLayerNormalization("1x1.0,4x0.25")
    with pytest.raises(ValueError, match="3 channels is too narrow for switch '4x0.25'"):
        layer.build((None, 3))
