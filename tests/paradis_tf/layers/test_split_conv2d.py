import numpy as np
import pytest
import keras

from paradis_tf import Switch
from paradis_tf.layers import SplitConv2D
from tests.paradis_tf.layers import reference
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,4x0.25,0.5+0.3+0.2,1x0.5"
MULTI = ["2x0.5", "4x0.25", "0.5+0.3+0.2"]


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _layer(filters=10, kernel_size=3, gates="learned", **kw):
    return SplitConv2D(filters, kernel_size, SWITCHES, gates=gates, **kw)


def _built(layer, x):
    layer.build(x.shape)
    # Nonzero bias so masking of inactive channels is visible.
    if layer.bias is not None:
        layer.bias.assign(np.linspace(-1, 1, layer.filters).astype("float32"))
    return layer


@pytest.mark.parametrize("switch", MULTI)
@pytest.mark.parametrize("strides", [1, 2, (3, 2)])
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel_size", [3, 1])  # 1: a strided 1x1 runs as a slice and a stride-1 conv
def test_open_gates_equal_stock_conv2d(switch, strides, padding, kernel_size, rng):
    x = rng.normal(size=(2, 9, 10, 12)).astype("float32")  # odd and even sizes
    split = _built(_layer(gates="open", kernel_size=kernel_size, strides=strides, padding=padding), x)
    stock = keras.layers.Conv2D(10, kernel_size, strides=strides, padding=padding)
    stock.build(x.shape)
    stock.set_weights(split.get_weights())
    diff = np.abs(_np(split(x, switch=switch)) - _np(stock(x))).max()
    assert diff <= 1e-5


@pytest.mark.parametrize("switch", MULTI)
@pytest.mark.parametrize("strides, padding, dilation", [(1, "same", 1), (2, "valid", 1), (1, "same", 2)])
def test_shut_gates_equal_numpy_per_device_reference(switch, strides, padding, dilation, rng):
    x = rng.normal(size=(2, 10, 10, 12)).astype("float32")
    layer = _built(_layer(gates="shut", strides=strides, padding=padding, dilation_rate=dilation), x)
    kernel, bias = layer.get_weights()
    sw = Switch.parse(switch)
    expected = reference.split_linear(
        x.astype(np.float64), kernel, bias, sw.partition(12), sw.partition(10),
        np.zeros((12, sw.num_devices)),
        lambda a, k: reference.conv2d(a, k, (strides,) * 2, padding, (dilation,) * 2),
    )
    np.testing.assert_allclose(_np(layer(x, switch=switch)), expected, atol=1e-4)


@pytest.mark.parametrize("switch", MULTI)
@pytest.mark.parametrize("training", [False, True])
def test_random_binary_gates_equal_numpy_reference(switch, training, rng):
    x = rng.normal(size=(2, 8, 8, 12)).astype("float32")
    layer = _built(_layer(strides=2, padding="same"), x)
    sw = Switch.parse(switch)
    gates = (rng.random((12, sw.num_devices)) < 0.4).astype("float32")
    # Half the gates through pins, half through logits: both paths are exercised.
    pins = np.where(rng.random(gates.shape) < 0.5, gates, -1.0)
    layer._gate_logits[layer.switch_index(switch)].assign(np.where(gates > 0, 2.0, -2.0))
    layer.pin_gates(switch, pins)
    got = _np(layer(x, switch=switch, training=training))
    kernel, bias = layer.get_weights()[:2]
    expected = reference.split_linear(
        x.astype(np.float64), kernel, bias, sw.partition(12), sw.partition(10), gates,
        lambda a, k: reference.conv2d(a, k, (2, 2), "same"),
    )
    np.testing.assert_allclose(got, expected, atol=1e-4)
    expected_gates = gates.copy()
    for k, r in enumerate(sw.partition(12)):
        expected_gates[r.start : r.stop, k] = 1.0  # a device always reads its own channels
    np.testing.assert_array_equal(layer.gate_values(switch), expected_gates)


def test_numpy_reference_itself_matches_keras_conv2d(rng):
    # Guards the reference: otherwise a wrong reference could bless a wrong layer.
    x = rng.normal(size=(2, 9, 8, 3)).astype("float32")
    for strides, padding, dilation in [(1, "same", 1), (2, "same", 1), (2, "valid", 1), (1, "valid", 2)]:
        conv = keras.layers.Conv2D(4, 3, strides=strides, padding=padding, dilation_rate=dilation)
        y = _np(conv(x))
        k, b = conv.get_weights()
        np.testing.assert_allclose(
            reference.conv2d(x, k, (strides,) * 2, padding, (dilation,) * 2) + b, y, atol=1e-5
        )


def test_narrow_switch_is_the_sliced_convolution(rng):
    x = rng.normal(size=(2, 8, 8, 12)).astype("float32")
    layer = _built(_layer(padding="same"), x)
    kernel, bias = layer.get_weights()[:2]
    y = _np(layer(x, switch="1x0.5"))
    expected = reference.conv2d(x[..., :6], kernel[:, :, :6, :5], (1, 1), "same") + bias[:5]
    np.testing.assert_allclose(y[..., :5], expected, atol=1e-4)
    assert np.all(y[..., 5:] == 0.0), "inactive channels must be exactly zero"


def test_replicated_input_reads_all_channels_and_sends_nothing(rng):
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    layer = _built(SplitConv2D(8, 3, SWITCHES, padding="same", replicated_input=True, gates="shut"), x)
    stock = keras.layers.Conv2D(8, 3, padding="same")
    stock.build(x.shape)
    stock.set_weights(layer.get_weights())
    np.testing.assert_allclose(_np(layer(x, switch="4x0.25")), _np(stock(x)), atol=1e-5)
    cost = layer.switch_cost("4x0.25", (1, 8, 8, 3))
    assert cost.bytes_sent == (0,) * 4 and cost.dense_bytes_sent == (0,) * 4
    assert layer._gate_logits == {}, "a replicated input has nothing to gate"


def test_learned_gates_get_gradients_and_straight_through_forward(rng):
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    layer = _built(SplitConv2D(8, 3, "2x0.5", padding="same"), x)
    logits = layer._gate_logits[0]
    logits.assign(rng.normal(size=(8, 2)).astype("float32"))
    # Forward in training equals inference (binary gates), so deployment is exact.
    np.testing.assert_allclose(
        _np(layer(x, switch=0, training=True)), _np(layer(x, switch=0, training=False)), atol=1e-6
    )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.ops.sum(layer(x, switch=0, training=True) ** 2)
        grad = tape.gradient(loss, logits.value)
    else:
        import jax

        grad = jax.grad(lambda v: _loss_stateless(layer, x, v))(logits.value)
    grad = _np(grad)
    remote = np.ones((8, 2)) - np.kron(np.eye(2), np.ones((4, 1)))
    assert np.abs(grad[remote > 0]).min() > 0, "every remote gate must receive gradient"
    assert np.all(grad[remote == 0] == 0), "local entries are not gates"


def _loss_stateless(layer, x, logits_value):
    values = [logits_value if v is layer._gate_logits[0] else v.value for v in layer.trainable_variables]
    y, _ = layer.stateless_call(values, [v.value for v in layer.non_trainable_variables], x, switch=0, training=True)
    return keras.ops.sum(y**2)


def test_sigmoid_relaxation_is_soft_in_training(rng):
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    layer = _built(SplitConv2D(8, 1, "2x0.5", gates={"mode": "learned", "relaxation": "sigmoid", "init_logit": 0.5}), x)
    soft = _np(layer(x, switch=0, training=True))
    hard = _np(layer(x, switch=0, training=False))
    assert np.abs(soft - hard).max() > 1e-3
    mask = _np(layer.kernel_mask(0, training=True))
    logits = layer.gate_logits(0)  # (8, 2), each within 0.01 of init_logit (ties broken)
    assert np.abs(logits - 0.5).max() <= 0.01 + 1e-6 and np.unique(logits).size > 1
    sig = 1 / (1 + np.exp(-logits[:4, 1:2]))  # (4, 1): device 0's channels into device 1
    np.testing.assert_allclose(mask[:4, 4:], np.broadcast_to(sig, (4, 4)), rtol=1e-5)
    np.testing.assert_allclose(mask[:4, :4], 1.0)


def test_pinned_gates_override_logits(rng):
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    layer = _built(SplitConv2D(8, 1, "1x1.0,2x0.5", gates="learned"), x)
    layer.pin_gates("2x0.5", np.zeros((8, 2)))  # all shut, logits still open
    shut = SplitConv2D(8, 1, "1x1.0,2x0.5", gates="shut")
    shut.build(x.shape)
    shut.set_weights(layer.get_weights()[:2])
    np.testing.assert_allclose(_np(layer(x, switch="2x0.5")), _np(shut(x, switch="2x0.5")), atol=1e-6)
    assert layer.switch_cost("2x0.5", (1, 6, 6, 8)).bytes_sent == (0, 0)
    with pytest.raises(ValueError, match=r"pins must be an array of shape \(8, 2\).*received shape \(8, 3\)"):
        layer.pin_gates("2x0.5", np.zeros((8, 3)))
    with pytest.raises(ValueError, match="'1x1.0' has no learned gates"):
        layer.pin_gates("1x1.0", np.zeros((8, 1)))


def test_per_switch_modes(rng):
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    layer = _built(SplitConv2D(8, 1, "1x1.0,2x0.5,4x0.25", gates={"2x0.5": "open", "4x0.25": "shut"}), x)
    assert layer.switch_cost("2x0.5", (1, 6, 6, 8)).bytes_sent == (144 * 4, 144 * 4)
    assert layer.switch_cost("4x0.25", (1, 6, 6, 8)).bytes_sent == (0,) * 4
    assert layer.gates.mode_for(Switch.parse("1x1.0")) == "learned"


def test_harness_round_trips_and_fits(tmp_path):
    def make():
        return SplitConv2D(6, 3, "1x1.0,2x0.5,0.5+0.3+0.2", strides=2, padding="same", activation="relu")

    model = run_layer_test(make, (8, 8, 6), "1x1.0,2x0.5,0.5+0.3+0.2", tmp_path)
    layer = model.layers[1]
    assert len(layer._gate_logits) == 2 and len(layer._gate_pins) == 2


def test_saved_gates_and_pins_survive_reload(tmp_path, rng):
    inputs = keras.Input((6, 6, 8))
    layer = SplitConv2D(8, 3, "1x1.0,2x0.5", padding="same")
    model = keras.Model(inputs, layer(inputs, switch="2x0.5"))
    layer._gate_logits[1].assign(rng.normal(size=(8, 2)).astype("float32"))
    layer.pin_gates("2x0.5", np.where(rng.random((8, 2)) < 0.3, 0.0, -1.0))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    np.testing.assert_array_equal(loaded.layers[1].gate_values("2x0.5"), layer.gate_values("2x0.5"))


def test_bad_arguments_raise_value_errors(rng):
    with pytest.raises(ValueError, match="filters must be a positive int, received 0"):
        SplitConv2D(0, 3, SWITCHES)
    with pytest.raises(ValueError, match=r"padding must be 'same' or 'valid', received 'causal'"):
        SplitConv2D(4, 3, SWITCHES, padding="causal")
    with pytest.raises(ValueError, match=r"gates must be one of|GateConfig.mode must be one of .*received 'sparse'"):
        SplitConv2D(4, 3, SWITCHES, gates="sparse")
    with pytest.raises(ValueError, match="gates name switch '3x1/3'"):
        SplitConv2D(4, 3, SWITCHES, gates={"3x1/3": "open"})
    with pytest.raises(ValueError, match="sum to at most 1"):
        SplitConv2D(4, 3, "1x1.0,0.7+0.7")
    with pytest.raises(ValueError, match="strides=.* and dilation_rate=.* cannot both"):
        SplitConv2D(4, 3, SWITCHES, strides=2, dilation_rate=2)
    # Fewer channels than devices: caught when the layer sees its input.
    layer = SplitConv2D(3, 1, "1x1.0,4x0.25")
    with pytest.raises(ValueError, match=r"3 channels is too narrow for switch '4x0.25'"):
        layer(np.zeros((1, 4, 4, 8), "float32"), switch=0)
    layer = SplitConv2D(8, 1, "1x1.0,4x0.25")
    with pytest.raises(ValueError, match=r"2 channels is too narrow for switch '4x0.25'"):
        layer(np.zeros((1, 4, 4, 2), "float32"), switch=0)
    layer = SplitConv2D(8, 1, "1x1.0,2x0.5")
    x = np.zeros((1, 4, 4, 8), "float32")
    with pytest.raises(ValueError, match=r"Unknown switch '4x0.25': this model serves \['1x1.0', '2x0.5'\]"):
        layer(x, switch="4x0.25")
    with pytest.raises(ValueError, match="switch must be given explicitly"):
        layer(x)
    with pytest.raises(ValueError, match="switch index 5 is out of range"):
        layer(x, switch=5)
    with pytest.raises(ValueError, match="partial_outputs=True cannot take activation='relu'"):
        SplitConv2D(4, 3, SWITCHES, partial_outputs=True, activation="relu")
