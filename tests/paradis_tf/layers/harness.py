"""Layer test harness: config round trip, .keras round trip, one fit step."""

import numpy as np
import keras

from paradis_tf import SwitchSet


def switch_model(make_layer, input_shape, switches, head=None):
    """A functional model with one output per switch, all sharing ``layer``."""
    layer = make_layer()
    inputs = keras.Input(input_shape)
    outputs = []
    for name in SwitchSet(switches).names:
        y = layer(inputs, switch=name)
        if head is not None:
            y = head(y, name)
        outputs.append(y)
    return keras.Model(inputs, outputs), layer


def run_layer_test(make_layer, input_shape, switches, tmp_path, head=None, batch=4):
    """Round-trips config and .keras file, and trains one step with fit.

    Returns the model so a test can check more.
    """
    model, layer = switch_model(make_layer, input_shape, switches, head)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch,) + tuple(input_shape)).astype("float32")

    # get_config / from_config: same config, and same outputs once weights are copied.
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.build((None,) + tuple(input_shape))
    clone.set_weights(layer.get_weights())
    for name in SwitchSet(switches).names:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(clone(x, switch=name)),
            keras.ops.convert_to_numpy(layer(x, switch=name)),
            atol=1e-6,
        )

    # One fit step on every switch's output: runs, loss finite, weights move.
    preds = model.predict(x, verbose=0)
    targets = [rng.normal(size=p.shape).astype("float32") for p in preds]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=["mse"] * len(preds))
    before = [w.copy() for w in layer.get_weights()]
    history = model.fit(x, targets, epochs=1, batch_size=batch, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = layer.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "fit changed no weight"

    # .keras save/load: identical outputs, inference and training-mode config.
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    return model
