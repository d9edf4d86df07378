import numpy as np
import pytest
import keras

from paradis_tf.training import BudgetSchedule, RecalibratedValidation
from tests.paradis_tf.training.helpers import tiny_resnet, toy_data


def _trained(x, y, xv, yv, callbacks):
    keras.utils.set_random_seed(11)
    model = tiny_resnet("1x1.0,2x0.5")
    model.compile(optimizer=keras.optimizers.Adam(0.01), budget=0.4, budget_schedule=BudgetSchedule(0, 8))
    history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, validation_data=(xv, yv),
                        callbacks=callbacks, verbose=0).history
    return model, history


def _state(model):
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.weights]


def test_validation_sees_recalibrated_statistics_and_training_is_unchanged():
    x, y = toy_data(128)
    xv, yv = toy_data(64, seed=1)
    calibration = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 96, 32)]
    with_cb, h_with = _trained(x, y, xv, yv, [RecalibratedValidation(calibration, num_batches=3)])
    without, h_without = _trained(x, y, xv, yv, [])
    # Training is exactly as without the callback: statistics restored after
    # each validation, so every weight and moving statistic matches.
    for a, b in zip(_state(with_cb), _state(without)):
        np.testing.assert_array_equal(a, b)
    assert h_with["loss"] == h_without["loss"]
    # The last validation is what recalibrating now and evaluating gives.
    without.recalibrate_batch_norm(calibration, num_batches=3, verbose=0)
    expected = without.evaluate(xv, yv, batch_size=32, verbose=0, return_dict=True)
    for key in ("1x1.0_accuracy", "2x0.5_accuracy", "2x0.5_loss"):
        assert h_with["val_" + key][-1] == pytest.approx(expected[key], rel=1e-5), key
    assert h_with["val_2x0.5_loss"][-1] != pytest.approx(h_without["val_2x0.5_loss"][-1], rel=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_batches must be a positive int, received 0"):
        RecalibratedValidation([], num_batches=0)
    with pytest.raises(ValueError, match="dataset must yield training batches, received None"):
        RecalibratedValidation(None)
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.compile(loss="mse")
    with pytest.raises(ValueError, match="needs a SplitModel .* received Sequential"):
        plain.evaluate(np.zeros((2, 2)), np.zeros((2, 1)), callbacks=[RecalibratedValidation([])], verbose=0)
