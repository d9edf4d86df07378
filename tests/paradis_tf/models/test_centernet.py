import numpy as np
import pytest
import keras

from paradis_tf.models.centernet import CenterNet, CenterNetLoss

SWITCHES = "1x1.0,2x0.5,0.5+0.3+0.2"
C = 3  # classes in the tiny tests


def _tiny(gates="learned", switches=SWITCHES):
    return CenterNet(num_classes=C, input_shape=(16, 16, 1), width=0.25, switches=switches, gates=gates)


def _target(rng, batch=2, h=4, w=4):
    """Packed targets (B, h, w, C + 5): one object per image, heat 1 at its center."""
    y = np.zeros((batch, h, w, C + 5), "float32")
    y[..., :C] = rng.random((batch, h, w, C)).astype("float32") * 0.5  # Gaussian tails
    for b in range(batch):
        i, j, c = rng.integers(0, h), rng.integers(0, w), rng.integers(0, C)
        y[b, i, j, c] = 1.0
        y[b, i, j, C : C + 2] = rng.uniform(1, 3, 2)  # size (w, h) in cells
        y[b, i, j, C + 2 : C + 4] = rng.random(2)  # offset
        y[b, i, j, C + 4] = 1.0
    return y


def _numpy_loss(y, p, alpha=2.0, beta=4.0):
    """CenterNet's loss written out per example (float64)."""
    y, p = y.astype(np.float64), p.astype(np.float64)
    heat, size, offset, mask = y[..., :C], y[..., C : C + 2], y[..., C + 2 : C + 4], y[..., C + 4 :]
    prob = 1 / (1 + np.exp(-p[..., :C]))
    pos = heat >= 1.0
    out = []
    for b in range(y.shape[0]):
        n = max(mask[b].sum(), 1.0)
        focal = -(np.log(prob[b][pos[b]]) * (1 - prob[b][pos[b]]) ** alpha).sum()
        focal -= (np.log(1 - prob[b][~pos[b]]) * prob[b][~pos[b]] ** alpha * (1 - heat[b][~pos[b]]) ** beta).sum()
        l1_size = (np.abs(p[b, ..., C : C + 2] - size[b]) * mask[b]).sum() / (2 * n)
        l1_off = (np.abs(p[b, ..., C + 2 :] - offset[b]) * mask[b]).sum() / (2 * n)
        out.append(focal / n + 0.1 * l1_size + l1_off)
    return np.array(out)


def test_loss_hand_computed_single_cell():
    # One cell, one class, one object: logit 0 -> p = 0.5 at the peak:
    # focal = -log(0.5) * 0.5^2; size |2 - 1| + |0 - 1| = 2, offset |0.5 - 0.25| + 0 = 0.25, each / (2 * 1).
    y = np.array([[[[1.0, 1.0, 1.0, 0.25, 0.0, 1.0]]]], "float32")  # (1, 1, 1, 1 + 5)
    p = np.array([[[[0.0, 2.0, 0.0, 0.5, 0.0]]]], "float32")
    loss = CenterNetLoss(1)
    expected = np.log(2) * 0.25 + 0.1 * 2 / 2 + 1.0 * 0.25 / 2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss.call(y, p)), [expected], rtol=1e-5)


def test_loss_matches_numpy_reference(rng):
    y = _target(rng, batch=3)
    y[2, ..., C + 4] = 0.0  # an image without objects: normalized by 1, not 0
    y[2, ..., :C] = np.minimum(y[2, ..., :C], 0.5)
    p = rng.normal(size=(3, 4, 4, C + 4)).astype("float32")
    got = keras.ops.convert_to_numpy(CenterNetLoss(C).call(y, p))
    np.testing.assert_allclose(got, _numpy_loss(y, p), rtol=1e-4)


def test_loss_refuses_a_target_of_the_wrong_layout():
    with pytest.raises(ValueError,
                       match=r"y_true must have num_classes \+ 5 = 8 channels .* received shape \(1, 4, 4, 7\)"):
        CenterNetLoss(C).call(np.zeros((1, 4, 4, 7), "float32"), np.zeros((1, 4, 4, 7), "float32"))
    with pytest.raises(ValueError, match=r"y_pred must have num_classes \+ 4 = 7 channels"):
        CenterNetLoss(C).call(np.zeros((1, 4, 4, 8), "float32"), np.zeros((1, 4, 4, 8), "float32"))
    config = CenterNetLoss(C, size_weight=0.2).get_config()
    assert CenterNetLoss.from_config(config).get_config() == config


def test_open_gates_every_switch_equals_the_unsplit_model_and_shut_ones_differ(rng):
    opened, shut = _tiny(gates="open"), _tiny(gates="shut")
    shut.set_weights(opened.get_weights())
    x = rng.random((2, 16, 16, 1)).astype("float32")
    a, b = opened.predict(x, verbose=0), shut.predict(x, verbose=0)
    for name in SWITCHES.split(","):
        assert a[name].shape == (2, 4, 4, C + 4)  # stride 4: heatmap, size, offset
        np.testing.assert_allclose(a[name], a["1x1.0"], atol=2e-5)
    np.testing.assert_allclose(b["1x1.0"], a["1x1.0"], atol=1e-6)
    for name in ("2x0.5", "0.5+0.3+0.2"):
        assert np.isfinite(b[name]).all() and np.abs(b[name] - a[name]).max() > 1e-4
    bias = keras.ops.convert_to_numpy(opened.get_layer("head_outputs").bias)
    np.testing.assert_allclose(bias, [-2.19] * C + [0.0] * 4)  # heatmap prior 0.1, added once
    assert opened.task.output_kind == "centernet" and opened.task.distillation == "mse"


def test_one_fit_step_with_the_centernet_loss(rng):
    model = _tiny(switches="1x1.0,0.5+0.3+0.2")
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y = _target(rng, batch=4)
    # TensorFlow traces the train, test and predict functions in ~30 s each
    # on two shared cores; eagerly they take a second. The traced forward
    # runs in the other tests' predict calls, a traced fit in test_wdsr.py.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), budget=0.5,
                  run_eagerly=keras.backend.backend() == "tensorflow")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    for key in ("loss", "1x1.0_loss", "0.5+0.3+0.2_loss", "0.5+0.3+0.2_comm"):
        assert key in history and np.isfinite(history[key][0]), (key, sorted(history))
    logs = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    for name in ("1x1.0", "0.5+0.3+0.2"):
        np.testing.assert_allclose(logs[f"{name}_loss"], _numpy_loss(y, pred[name]).mean(), rtol=1e-4)


def test_config_round_trip_and_save_load(tmp_path, rng):
    model = _tiny(switches="1x1.0,2x0.5")
    config = model.get_config()
    assert CenterNet.from_config(config).get_config() == config
    x = rng.random((2, 16, 16, 1)).astype("float32")
    model.save(tmp_path / "cn.keras")
    loaded = keras.models.load_model(tmp_path / "cn.keras")
    assert isinstance(loaded, CenterNet) and loaded.task == model.task
    for name, value in model.predict(x, verbose=0).items():
        np.testing.assert_array_equal(loaded.predict(x, verbose=0)[name], value)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="image height 36 is not divisible by 8"):
        CenterNet(input_shape=(36, 64, 1))
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, received 0"):
        CenterNet(num_classes=0)
    with pytest.raises(ValueError, match="width must be a positive number, received -1"):
        CenterNet(width=-1)
