import numpy as np
import pytest
import keras

from paradis_tf import Switch
from paradis_tf.layers import PartialSumFusion, SplitDense
from tests.paradis_tf.layers import reference
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,4x0.25,0.5+0.3+0.2,1x0.5"
MULTI = ["2x0.5", "4x0.25", "0.5+0.3+0.2"]


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _built(layer, shape):
    layer.build(shape)
    if layer.bias is not None:
        layer.bias.assign(np.linspace(-1, 1, layer.units).astype("float32"))
    return layer


@pytest.mark.parametrize("switch", MULTI)
@pytest.mark.parametrize("shape", [(3, 12), (3, 5, 12)])
def test_open_gates_equal_stock_dense(switch, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    split = _built(SplitDense(10, SWITCHES, gates="open"), x.shape)
    stock = keras.layers.Dense(10)
    stock.build(x.shape)
    stock.set_weights(split.get_weights())
    assert np.abs(_np(split(x, switch=switch)) - _np(stock(x))).max() <= 1e-5


@pytest.mark.parametrize("switch", MULTI)
@pytest.mark.parametrize("mode", ["shut", "random"])
@pytest.mark.parametrize("shape", [(3, 12), (3, 5, 12)])
def test_gated_dense_equals_numpy_reference(switch, mode, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = _built(SplitDense(10, SWITCHES, gates="shut" if mode == "shut" else "learned"), x.shape)
    sw = Switch.parse(switch)
    gates = np.zeros((12, sw.num_devices))
    if mode == "random":
        gates = (rng.random(gates.shape) < 0.5).astype("float32")
        layer.pin_gates(switch, gates)
    kernel, bias = layer.get_weights()[:2]
    expected = reference.split_linear(
        x.astype(np.float64), kernel, bias, sw.partition(12), sw.partition(10), gates, lambda a, k: a @ k
    )
    np.testing.assert_allclose(_np(layer(x, switch=switch)), expected, atol=1e-5)


@pytest.mark.parametrize("switch", MULTI + ["1x0.5"])
@pytest.mark.parametrize("shape", [(3, 12), (3, 5, 12)])
def test_partial_outputs_are_per_device_and_sum_to_dense(switch, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = _built(SplitDense(7, SWITCHES, partial_outputs=True), x.shape)
    kernel, bias = layer.get_weights()
    sw = Switch.parse(switch)
    partials = _np(layer(x, switch=switch))
    assert partials.shape == shape[:-1] + (sw.num_devices, 7)
    for k, r in enumerate(sw.partition(12)):
        # Device k: its own input channels only; device 0 adds the bias.
        expected = x[..., r.start : r.stop] @ kernel[r.start : r.stop] + (bias if k == 0 else 0.0)
        np.testing.assert_allclose(partials[..., k, :], expected, atol=1e-5)
    fused = _np(PartialSumFusion(SWITCHES)(partials, switch=switch))
    active = sw.active_channels(12)
    np.testing.assert_allclose(fused, x[..., :active] @ kernel[:active] + bias, atol=1e-5)


def test_dense_accounting_on_tokens():
    # (B, T=5, Cin=12) -> 10 units, switch 2x0.5, gates open: every device
    # receives the other's 6 channels for each of the 5 tokens.
    layer = SplitDense(10, SWITCHES, gates="open")
    layer.build((None, 5, 12))
    cost = layer.switch_cost("2x0.5", (1, 5, 12), bytes_per_element=1)
    assert cost.bytes_sent == (30, 30) and cost.bytes_received == (30, 30)
    assert cost.params == (12 * 5 + 5, 12 * 5 + 5)
    assert cost.flops == (2 * 5 * 12 * 5, 2 * 5 * 12 * 5)
    assert layer.unsplit_cost((1, 5, 12)) == (12 * 10 + 10, 2 * 5 * 12 * 10)


def test_harness_round_trips_and_fits(tmp_path):
    switches = "1x1.0,2x0.5,4x0.25"
    run_layer_test(lambda: SplitDense(6, switches, activation="tanh"), (5, 8), switches, tmp_path)


def test_harness_partial_outputs_with_fusion(tmp_path):
    fusion = PartialSumFusion("1x1.0,2x0.5")
    run_layer_test(
        lambda: SplitDense(4, "1x1.0,2x0.5", partial_outputs=True),
        (6,),
        "1x1.0,2x0.5",
        tmp_path,
        head=lambda y, name: fusion(y, switch=name),
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="units must be a positive int, received -3"):
        SplitDense(-3, SWITCHES)
    with pytest.raises(ValueError, match="replicated_input=True and partial_outputs=True"):
        SplitDense(3, SWITCHES, replicated_input=True, partial_outputs=True)
    layer = SplitDense(8, "1x1.0,4x0.25")
    with pytest.raises(ValueError, match="3 channels is too narrow for switch '4x0.25'"):
        layer(np.zeros((2, 3), "float32"), switch="4x0.25")


def test_gates_of_a_layer_not_built_yet_name_the_fix():
    layer = SplitDense(4, SWITCHES, name="head")
    for read in (lambda: layer.gate_values("2x0.5"), lambda: layer.pin_gates("2x0.5", np.zeros((3, 2))),
                 lambda: layer.remote_mask("2x0.5")):
        with pytest.raises(ValueError, match=r"SplitDense 'head' is not built yet: call it on an input"):
            read()
