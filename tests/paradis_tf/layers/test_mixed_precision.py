import numpy as np
import keras

from paradis_tf import SwitchSet
from paradis_tf.layers import PartialSumFusion, SplitConv2D, SplitDense, SwitchableBatchNormalization


def _model(switches):
    inputs = keras.Input((8, 8, 4))
    conv = SplitConv2D(8, 3, switches, padding="same")
    bn = SwitchableBatchNormalization(switches)
    head = SplitDense(3, switches, partial_outputs=True)
    fusion = PartialSumFusion(switches)
    outputs = []
    for name in SwitchSet(switches).names:
        x = keras.layers.GlobalAveragePooling2D()(bn(conv(inputs, switch=name), switch=name))
        outputs.append(fusion(head(x, switch=name), switch=name))
    return keras.Model(inputs, outputs)


def test_mixed_bfloat16_trains_and_matches_float32(rng):
    switches = "1x1.0,2x0.5"
    x = rng.normal(size=(4, 8, 8, 4)).astype("float32")
    reference = _model(switches)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = _model(switches)
        mixed.set_weights(reference.get_weights())
        for a, b in zip(reference.predict(x, verbose=0), mixed.predict(x, verbose=0)):
            assert b.dtype == np.dtype("float32") or str(b.dtype) == "bfloat16"
            np.testing.assert_allclose(np.asarray(b, "float32"), a, atol=0.1)
        # Gate logits and statistics stay float32 variables; a fit step runs.
        conv = mixed.layers[1]
        assert conv._gate_logits[1].dtype == "float32"
        mixed.compile(optimizer="sgd", loss=["mse", "mse"])
        loss = mixed.fit(x, [np.zeros((4, 3), "float32")] * 2, verbose=0).history["loss"][0]
        assert np.isfinite(loss)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_bfloat16_opens_the_gates_the_budget_cut_chose():
    # A budget cut's threshold sits between logits that differ in the third
    # decimal; compared in bfloat16 (8 bits) many equal it and open too.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = SplitDense(32, SwitchSet("1x1.0,2x0.5"))
        layer.build((None, 32))
        remote = layer.remote_mask("2x0.5")  # (32, 2)
        threshold = float(np.median(layer.gate_logits("2x0.5")[remote > 0]))
        layer.gate_variables("2x0.5").threshold.assign(threshold)
        chosen = layer.gate_values("2x0.5") * remote
        assert chosen.sum() == remote.sum() / 2
        # The kernel entries the forward pass uses: input channel c reaches
        # device k's outputs (16 each) only when its gate is open.
        y = np.asarray(layer(np.eye(32, dtype="float32"), switch="2x0.5"), "float32")
        used = np.abs(y - np.asarray(layer.bias, "float32")) > 0  # (Cin, Cout)
        forward = np.stack([used[:, :16].any(1), used[:, 16:].any(1)], 1) * remote
        np.testing.assert_array_equal(forward, chosen)
    finally:
        keras.mixed_precision.set_global_policy("float32")
