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
