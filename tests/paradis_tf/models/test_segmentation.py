import numpy as np
import pytest
import keras

from paradis_tf.models.segmentation import SplitSegmenter

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"


def _tiny(gates="learned", switches=SWITCHES, **kw):
    return SplitSegmenter(num_classes=5, input_shape=(16, 16, 1), width=0.25, switches=switches, gates=gates, **kw)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_open_gates_every_switch_equals_the_unsplit_model_and_shut_ones_differ(rng):
    opened, shut = _tiny(gates="open"), _tiny(gates="shut")
    shut.set_weights(opened.get_weights())
    x = rng.random((2, 16, 16, 1)).astype("float32")
    a, b = opened.predict(x, verbose=0), shut.predict(x, verbose=0)
    for name in SWITCHES.split(","):
        assert a[name].shape == (2, 16, 16, 5)  # logits at the input resolution
        np.testing.assert_allclose(a[name], a["1x1.0"], atol=2e-5)
    np.testing.assert_allclose(b["1x1.0"], a["1x1.0"], atol=1e-6)
    for name in ("2x0.5", "0.5+0.3+0.2"):
        assert np.isfinite(b[name]).all() and np.abs(b[name] - a[name]).max() > 1e-4
    assert opened.task.name == "segmentation" and opened.task.output_kind == "segmentation_logits"


def test_one_fit_step_with_per_pixel_loss_and_mean_iou(rng):
    model = _tiny(switches="1x1.0,0.5+0.3+0.2")
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y = rng.integers(0, 5, (4, 16, 16))
    # TensorFlow traces the train, test and predict functions in ~30 s each
    # on two shared cores; eagerly they take a second. The traced forward
    # runs in the other tests' predict calls, a traced fit in test_wdsr.py.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), budget=0.5,
                  run_eagerly=keras.backend.backend() == "tensorflow")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    for key in ("loss", "1x1.0_loss", "1x1.0_miou", "0.5+0.3+0.2_miou", "0.5+0.3+0.2_comm"):
        assert key in history and np.isfinite(history[key][0]), (key, sorted(history))
    logs = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    for name in ("1x1.0", "0.5+0.3+0.2"):
        # Per-pixel cross-entropy from logits, averaged over pixels and images.
        ce = -np.take_along_axis(_log_softmax(pred[name].astype(np.float64)), y[..., None], axis=-1).mean()
        np.testing.assert_allclose(logs[f"{name}_loss"], ce, rtol=1e-4)
        # Mean IoU of the argmax over the classes present in labels or predictions.
        label = pred[name].argmax(-1)
        ious = [((label == c) & (y == c)).sum() / ((label == c) | (y == c)).sum()
                for c in range(5) if ((label == c) | (y == c)).any()]
        np.testing.assert_allclose(logs[f"{name}_miou"], np.mean(ious), rtol=1e-4)


def test_config_round_trip_and_save_load(tmp_path, rng):
    model = _tiny(switches="1x1.0,2x0.5", blocks_per_stage=1)
    config = model.get_config()
    assert SplitSegmenter.from_config(config).get_config() == config
    x = rng.random((2, 16, 16, 1)).astype("float32")
    model.save(tmp_path / "seg.keras")
    loaded = keras.models.load_model(tmp_path / "seg.keras")
    assert isinstance(loaded, SplitSegmenter) and loaded.task == model.task
    for name, value in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(loaded.predict(x, verbose=0)[name], value)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"image height 60 is not divisible by 8.*\(e.g. 56\)"):
        SplitSegmenter(input_shape=(60, 64, 1))
    with pytest.raises(ValueError, match="image width 20 is not divisible by 8"):
        SplitSegmenter(input_shape=(64, 20, 1))
    with pytest.raises(ValueError, match="num_classes must be an int >= 2, received 1"):
        SplitSegmenter(num_classes=1)
    with pytest.raises(ValueError, match="blocks_per_stage must be a positive int, received 0"):
        SplitSegmenter(blocks_per_stage=0)
    with pytest.raises(ValueError, match=r"input_shape must be \(height, width, channels\)"):
        SplitSegmenter(input_shape=(64, 64))
