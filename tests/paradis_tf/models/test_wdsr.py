import numpy as np
import pytest
import keras

from paradis_tf import device_summary
from paradis_tf.models.wdsr import PSNR, WDSR, BicubicSkipInitializer

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"


def _tiny(scale=2, gates="learned", switches=SWITCHES, **kw):
    return WDSR(scale=scale, num_blocks=1, filters=8, expansion=2, input_shape=(6, 5, 3), switches=switches,
                gates=gates, **kw)


@pytest.mark.parametrize("scale", [2, 3])
def test_open_gates_every_switch_equals_the_unsplit_model(scale, rng):
    model = _tiny(scale, gates="open")
    x = rng.random((2, 6, 5, 3)).astype("float32")
    out = model.predict(x, verbose=0)
    assert set(out) == set(SWITCHES.split(","))
    for name, value in out.items():
        assert value.shape == (2, 6 * scale, 5 * scale, 3)
        # All gates open is dense tensor parallelism: the unsplit model exactly.
        np.testing.assert_allclose(value, out["1x1.0"], atol=2e-5)
    assert model.hr_shape == (6 * scale, 5 * scale, 3)
    assert model.task.name == "sr" and model.task.output_kind == "image"


def test_shut_gates_are_independent_branches_with_the_same_weights(rng):
    opened, shut = _tiny(gates="open"), _tiny(gates="shut")
    shut.set_weights(opened.get_weights())
    x = rng.random((2, 6, 5, 3)).astype("float32")
    a, b = opened.predict(x, verbose=0), shut.predict(x, verbose=0)
    np.testing.assert_allclose(b["1x1.0"], a["1x1.0"], atol=1e-6)  # one device: nothing to gate
    for name in ("2x0.5", "0.5+0.3+0.2"):
        assert np.isfinite(b[name]).all()
        assert np.abs(b[name] - a[name]).max() > 1e-3
    summary = device_summary(shut, (6, 5, 3), print_fn=None)
    assert summary["switches"]["2x0.5"]["bytes"] == 0
    # Device 0 also computes the skip branch (5x5 conv, 3 -> 12 channels + bias).
    d0, d1 = summary["switches"]["2x0.5"]["devices"]
    assert d0["params"] - d1["params"] >= 5 * 5 * 3 * 12


def test_one_fit_step_with_the_task_loss_and_metric(rng):
    model = _tiny()
    x = rng.random((4, 6, 5, 3)).astype("float32")
    y = rng.random((4, 12, 10, 3)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), budget=0.5)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    for key in ("loss", "1x1.0_loss", "1x1.0_psnr", "2x0.5_psnr", "0.5+0.3+0.2_psnr", "2x0.5_comm"):
        assert key in history and np.isfinite(history[key][0]), (key, sorted(history))
    # The logged loss is L1 and the metric RGB PSNR of the clipped output.
    logs = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    for name in ("1x1.0", "2x0.5"):
        np.testing.assert_allclose(logs[f"{name}_loss"], np.abs(pred[name] - y).mean(), rtol=1e-4)
        mse = ((np.clip(pred[name], 0, 1) - y) ** 2).reshape(4, -1).mean(axis=1)
        np.testing.assert_allclose(logs[f"{name}_psnr"], np.mean(10 * np.log10(1 / mse)), rtol=1e-4)


@pytest.mark.parametrize("scale", [2, 3])
def test_skip_starts_as_bicubic_upsampling(scale):
    # Zero the body's output (tail gain 0): the model is its skip branch, a
    # bicubic upsampling, which reproduces a linear ramp exactly away from the
    # zero-padded border: HR pixel Y samples LR coordinate (Y + 0.5) / r - 0.5.
    model = WDSR(scale=scale, num_blocks=1, filters=8, input_shape=(10, 9, 3), switches="1x1.0,2x0.5")
    model.get_layer("tail").kernel_gain.assign(np.zeros((3 * scale * scale,), "float32"))
    rows, cols = np.meshgrid(np.arange(10), np.arange(9), indexing="ij")
    lr = np.stack([0.02 * rows + 0.01 * cols, 0.03 * cols, 0.5 + 0 * rows], -1)[None].astype("float32")
    out = model.predict(lr, verbose=0)
    hr_rows, hr_cols = np.meshgrid((np.arange(10 * scale) + 0.5) / scale - 0.5,
                                   (np.arange(9 * scale) + 0.5) / scale - 0.5, indexing="ij")
    expected = np.stack([0.02 * hr_rows + 0.01 * hr_cols, 0.03 * hr_cols, 0.5 + 0 * hr_rows], -1)
    inner = (slice(2 * scale, -2 * scale),) * 2  # two LR pixels in from the border
    for name in ("1x1.0", "2x0.5"):
        np.testing.assert_allclose(out[name][0][inner], expected[inner], atol=1e-5)
    with pytest.raises(ValueError,
                       match=r"needs a kernel \(>=5, >=5, C, C \* 4\), received shape \(3, 3, 3, 12\)"):
        BicubicSkipInitializer(2)((3, 3, 3, 12))


def test_psnr_hand_computed():
    metric = PSNR()
    truth = np.zeros((2, 2, 2, 3), "float32")
    truth[1] = 1.0
    pred = np.full((2, 2, 2, 3), 0.1, "float32")  # image 0: MSE 0.01 -> 20 dB
    pred[1] = 1.5  # image 1: clipped to 1 -> exact -> MSE floored at 1e-10 -> 100 dB
    metric.update_state(truth, pred)
    assert float(metric.result()) == pytest.approx(60.0, rel=1e-5)
    clone = PSNR.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()


def test_config_round_trip_and_save_load(tmp_path, rng):
    model = _tiny(scale=3, switches="1x1.0,2x0.5")
    config = model.get_config()
    assert WDSR.from_config(config).get_config() == config
    assert config["scale"] == 3 and config["switches"] == ["1x1.0", "2x0.5"]
    x = rng.random((2, 6, 5, 3)).astype("float32")
    model.save(tmp_path / "wdsr.keras")
    loaded = keras.models.load_model(tmp_path / "wdsr.keras")
    assert isinstance(loaded, WDSR) and loaded.task == model.task
    for name, value in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(loaded.predict(x, verbose=0)[name], value)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"scale must be one of \(2, 3\), received 4"):
        WDSR(scale=4)
    with pytest.raises(ValueError, match=r"input_shape must be \(height, width, 3\).*received \(8, 8, 1\)"):
        WDSR(input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="low_rank must be a fraction in \\(0, 1\\], received 1.5"):
        WDSR(low_rank=1.5)
    with pytest.raises(ValueError, match="num_blocks must be a positive int, received 0"):
        WDSR(num_blocks=0)
    with pytest.raises(ValueError, match="high-resolution height 101 is not a positive multiple of the scale 2"):
        WDSR.lr_shape((101, 100, 3), 2)
    with pytest.raises(ValueError, match="high-resolution width 100 is not a positive multiple of the scale 3"):
        WDSR.lr_shape((99, 100, 3), 3)
    assert WDSR.lr_shape((96, 48, 3), 3) == (32, 16, 3)
    with pytest.raises(ValueError, match="too narrow"):
        WDSR(filters=2, num_blocks=1, input_shape=(4, 4, 3), switches="1x1.0,0.5+0.3+0.2")
