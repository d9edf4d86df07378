"""SplitLinearLayer.gate_variables: the public seam a budget cut reads and writes."""

import numpy as np
import pytest
from keras import ops

from paradis_tf.layers import GateVariables, SplitConv2D


def _layer(gates="learned"):
    layer = SplitConv2D(8, 1, "1x1.0,2x0.5", gates=gates, name="conv")
    layer.build((None, 4, 4, 8))
    return layer


def test_the_variables_are_the_ones_the_forward_pass_reads():
    layer = _layer()
    gates = layer.gate_variables("2x0.5")
    assert isinstance(gates, GateVariables)
    assert gates.logits.shape == gates.pins.shape == gates.state.shape == gates.ema.shape == (8, 2)
    assert tuple(gates.threshold.shape) == ()
    # Each field is its own variable of the layer, by name.
    names = {f: getattr(gates, f).path.rsplit("/", 1)[-1] for f in ("logits", "pins", "threshold", "state", "ema")}
    assert names == {"logits": "gate_logits_1", "pins": "gate_pins_1", "threshold": "gate_threshold_1",
                     "state": "gate_state_1", "ema": "gate_ema_1"}
    remote = layer.remote_mask("2x0.5")  # (8, 2): channels 0-3 live on device 0
    # Scaled logits 0..15 in row-major order; a threshold of 8 opens rows 4-7.
    gates.logits.assign(np.arange(16, dtype="float32").reshape(8, 2) / gates.logit_scale)
    np.testing.assert_allclose(ops.convert_to_numpy(gates.scaled_logits()), np.arange(16).reshape(8, 2), rtol=1e-6)
    gates.threshold.assign(8.0)
    g = layer.gate_values("2x0.5")
    np.testing.assert_array_equal(g * remote, (np.arange(16).reshape(8, 2) >= 8) * remote)
    # A held decision overrides the threshold; a pin overrides both.
    gates.state.assign(np.where(remote > 0, 1.0, -1.0).astype("float32"))
    np.testing.assert_array_equal(layer.gate_values("2x0.5") * remote, remote)
    layer.pin_gates("2x0.5", np.zeros((8, 2), "float32"))
    np.testing.assert_array_equal(ops.convert_to_numpy(gates.pins), np.zeros((8, 2)))
    np.testing.assert_array_equal(layer.gate_values("2x0.5") * remote, 0 * remote)


def test_a_switch_without_learned_gates_has_no_variables():
    layer = _layer(gates={"2x0.5": "shut"})
    with pytest.raises(ValueError, match=r"SplitConv2D 'conv': switch '2x0.5' has no learned gates"):
        layer.gate_variables("2x0.5")
    with pytest.raises(ValueError, match=r"switch '1x1.0' has no learned gates"):
        layer.gate_variables(0)  # one device: nothing remote to gate
