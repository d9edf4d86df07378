import numpy as np
import pytest
import keras

from paradis_tf.layers import SwitchableBatchNormalization
from tests.paradis_tf.layers.harness import run_layer_test

SWITCHES = "1x1.0,2x0.5,1x0.5"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_training_updates_only_that_switch(rng):
    x = (rng.normal(size=(16, 4, 4, 6)) * 3 + 2).astype("float32")
    bn = SwitchableBatchNormalization(SWITCHES, momentum=0.5)
    y = _np(bn(x, switch="2x0.5", training=True))
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    # Training normalizes with batch statistics (gamma 1, beta 0).
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), atol=1e-4)
    np.testing.assert_allclose(_np(bn.moving_means[1]), 0.5 * mean, atol=1e-5)
    np.testing.assert_allclose(_np(bn.moving_variances[1]), 0.5 + 0.5 * var, atol=1e-4)
    for i in (0, 2):  # the other switches keep their own, untouched statistics
        np.testing.assert_array_equal(_np(bn.moving_means[i]), np.zeros(6))
        np.testing.assert_array_equal(_np(bn.moving_variances[i]), np.ones(6))


def test_inference_uses_the_switchs_own_statistics_and_affine(rng):
    x = rng.normal(size=(4, 3, 3, 6)).astype("float32")
    bn = SwitchableBatchNormalization(SWITCHES)
    bn.build(x.shape)
    params = {}
    for i in range(3):
        p = [rng.normal(size=6).astype("float32") for _ in range(3)] + [rng.random(6).astype("float32") + 0.5]
        for var, value in zip((bn.gammas[i], bn.betas[i], bn.moving_means[i], bn.moving_variances[i]), p):
            var.assign(value)
        params[i] = p
    for i, name in enumerate(("1x1.0", "2x0.5", "1x0.5")):
        g, b, m, v = params[i]
        expected = g * (x - m) / np.sqrt(v + 1e-3) + b
        if name == "1x0.5":
            expected[..., 3:] = 0.0  # inactive channels are zero
        np.testing.assert_allclose(_np(bn(x, switch=name)), expected, atol=1e-5)


def test_batch_norm_is_local():
    bn = SwitchableBatchNormalization(SWITCHES)
    bn.build((None, 10))
    cost = bn.switch_cost("2x0.5", (1, 10))
    assert cost.params == (20, 20) and cost.flops == (0, 0) and cost.bytes_sent == (0, 0)
    assert bn.unsplit_cost((1, 10)) == (40, 0)


def test_statistics_survive_save_and_load(tmp_path, rng):
    model = run_layer_test(lambda: SwitchableBatchNormalization(SWITCHES), (3, 3, 4), SWITCHES, tmp_path)
    bn = model.layers[1]
    # fit ran in training mode: every switch's moving statistics moved.
    for i in range(3):
        assert not np.allclose(_np(bn.moving_means[i]), 0.0)
    loaded = keras.models.load_model(tmp_path / "model.keras")
    for i in range(3):
        np.testing.assert_array_equal(_np(loaded.layers[1].moving_variances[i]), _np(bn.moving_variances[i]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\), received 1.5"):
        SwitchableBatchNormalization(SWITCHES, momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be > 0, received 0"):
        SwitchableBatchNormalization(SWITCHES, epsilon=0)
    bn = SwitchableBatchNormalization("1x1.0,2x0.5")
    with pytest.raises(ValueError, match="Unknown switch '1x0.5'"):
        bn(np.zeros((2, 4), "float32"), switch="1x0.5")
