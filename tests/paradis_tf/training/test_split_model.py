import os
import subprocess
import sys

import numpy as np
import pytest
import keras

from paradis_tf import device_summary
from paradis_tf.training import BudgetSchedule, SplitModel
from tests.paradis_tf.training.helpers import tiny_resnet, toy_data


def _one_channel_per_layer(model, name):
    """Tolerance of finalize_gates: one channel's bytes in each gated layer."""
    terms = model._plan.traffic[name]
    return sum(t.positions for t in terms) / sum(t.dense for t in terms)


def test_two_switches_train_toward_budget_and_finalize_exactly():
    x, y = toy_data(256)
    model = tiny_resnet("1x1.0,2x0.5")
    model.compile(optimizer=keras.optimizers.Adam(0.01), budget=0.3,
                  budget_schedule=BudgetSchedule(0, 24), comm_weight=4.0)
    assert model.traffic_ratio("2x0.5") == 1.0  # gates start open: dense TP
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0).history
    for key in ("loss", "1x1.0_loss", "1x1.0_accuracy", "2x0.5_loss", "2x0.5_accuracy",
                "2x0.5_comm", "2x0.5_budget"):
        assert key in history, f"{key} missing from History: {sorted(history)}"
    assert history["1x1.0_loss"][-1] < history["1x1.0_loss"][0]
    assert history["2x0.5_loss"][-1] < history["2x0.5_loss"][0]
    # The budget annealed to its target and the gates in use followed it at
    # every step: budget-exact (within one channel per layer), never above.
    assert history["2x0.5_budget"][0] > 0.5 and history["2x0.5_budget"][-1] == pytest.approx(0.3)
    assert history["2x0.5_comm"][-1] < 0.6 < history["2x0.5_comm"][0]
    tolerance = _one_channel_per_layer(model, "2x0.5")
    for budget, comm in zip(history["2x0.5_budget"], history["2x0.5_comm"]):
        assert budget - tolerance <= comm <= budget + 1e-6, (budget, comm)
    assert int(keras.ops.convert_to_numpy(model.budget_step.value)) == 48

    before = history["2x0.5_comm"][-1]
    ratios = model.finalize_gates()
    summary = device_summary(model, (12, 12, 1), print_fn=None)
    measured = summary["switches"]["2x0.5"]["comm_ratio"]
    assert ratios["2x0.5"] == pytest.approx(measured)
    assert 0.3 - tolerance <= measured <= 0.3
    # Training already used the budget's cut: finalizing keeps it (the last
    # epoch's mean can differ only where the ranking moved within the epoch).
    assert measured == pytest.approx(before, abs=tolerance)
    # Frozen: a fine-tune step leaves the traffic where finalize put it.
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert model.traffic_ratio("2x0.5") == pytest.approx(measured)


def _greedy_reference(model, name, budget):
    """The budget cut computed plainly: (term, c, k) of the gates to open."""
    terms = model._plan.traffic[name]
    dense = sum(t.dense for t in terms)
    entries = [(float(t.layer.gate_logits(t.index)[c, k]), t.positions, n, c, k)
               for n, t in enumerate(terms) for c, k in zip(*np.nonzero(t.remote))]
    entries.sort(key=lambda e: -e[0])
    used, opened = 0.0, set()
    for _, cost, n, c, k in entries:
        if used + cost > budget * dense + 1e-6:
            break
        used += cost
        opened.add((n, int(c), int(k)))
    return opened


@pytest.mark.parametrize("budget", [0.05, 0.3, 0.7])
def test_budget_cut_opens_the_top_gates_that_fit(budget):
    # Three devices of different widths: layers differ in positions (bytes per
    # channel), so the cut must weigh every gate by its bytes.
    rng = np.random.default_rng(3)
    model = tiny_resnet("1x1.0,0.5+0.3+0.2")
    name = "0.5+0.3+0.2"
    for t in model._plan.traffic[name]:
        var = t.layer._gate_logits[t.index]
        var.assign(rng.normal(size=var.shape).astype("float32"))
    expected = _greedy_reference(model, name, budget)
    model.finalize_gates(budget={name: budget})
    opened = {(n, int(c), int(k)) for n, t in enumerate(model._plan.traffic[name])
              for c, k in zip(*np.nonzero(t.remote * t.layer.gate_values(t.index)))}
    assert opened == expected
    assert budget - _one_channel_per_layer(model, name) <= model.traffic_ratio(name) <= budget


def test_per_switch_budgets_and_finalize_without_budget():
    x, y = toy_data(64)
    model = tiny_resnet("1x1.0,2x0.5,4x0.25")
    model.compile(optimizer="adam", budget={"4x0.25": 0.5})
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    result = model.finalize_gates()
    assert set(result) == {"2x0.5", "4x0.25"}
    assert 0.5 - _one_channel_per_layer(model, "4x0.25") <= result["4x0.25"] <= 0.5
    # No budget: gates keep the sign of their logits (here still all open).
    assert result["2x0.5"] == model.traffic_ratio("2x0.5")


def test_open_gates_are_exactly_the_unsplit_model():
    x, y = toy_data(64)
    model = tiny_resnet("1x1.0,2x0.5,0.5+0.3+0.2", gates="open")
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    # Give the split switches the unsplit switch's batch-norm parameters: the
    # networks are then identical, so outputs must match.
    from paradis_tf.layers import SwitchableBatchNormalization

    for layer in model._flatten_layers():
        if isinstance(layer, SwitchableBatchNormalization):
            for i in (1, 2):
                for group in (layer.gammas, layer.betas, layer.moving_means, layer.moving_variances):
                    group[i].assign(keras.ops.convert_to_numpy(group[0].value))  # a copy, not the buffer
    out = model.predict(x, verbose=0)
    np.testing.assert_allclose(out["2x0.5"], out["1x1.0"], atol=1e-5)
    np.testing.assert_allclose(out["0.5+0.3+0.2"], out["1x1.0"], atol=1e-5)
    assert model.traffic_ratio("2x0.5") == 1.0


def test_shut_gates_send_nothing_before_the_fusion():
    model = tiny_resnet("1x1.0,2x0.5,4x0.25", gates="shut")
    summary = device_summary(model, (12, 12, 1), print_fn=None)
    for name in ("2x0.5", "4x0.25"):
        s = summary["switches"][name]
        assert s["bytes"] == 0 and s["comm_ratio"] == 0.0
        assert s["fusion_bytes"] == (s["num_devices"] - 1) * 4 * 4  # 4 logits, float32
        assert all(d["params_ratio"] <= 0.6 for d in s["devices"])


def test_backup_and_restore_resumes_step_and_schedule(tmp_path):
    x, y = toy_data(128)
    schedule = BudgetSchedule(0, 12)

    def make():
        keras.utils.set_random_seed(7)
        model = tiny_resnet()
        model.compile(optimizer="adam", budget=0.25, budget_schedule=schedule)
        return model

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    backup = str(tmp_path / "backup")
    first = make()
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(x, y, batch_size=32, epochs=4, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), Interrupt()])
    resumed = make()
    seen = []
    epochs = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))
    steps = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: seen.append(int(keras.ops.convert_to_numpy(resumed.budget_step)))
        if len(seen) == 1 else None)
    resumed.fit(x, y, batch_size=32, epochs=4, verbose=0,
                callbacks=[keras.callbacks.BackupAndRestore(backup), epochs, steps])
    # Epochs 0-1 ran before the interruption (4 steps each); training resumed
    # at epoch 2 with the schedule at step 8, and ends where an uninterrupted
    # run ends.
    assert seen[:2] == [2, 8]
    assert int(keras.ops.convert_to_numpy(resumed.budget_step)) == 16
    assert resumed.current_budget("2x0.5") == pytest.approx(0.25)


def test_save_load_keeps_compile_config_and_state(tmp_path):
    x, y = toy_data(64)
    model = tiny_resnet()
    model.compile(optimizer=keras.optimizers.Adam(0.003), budget=0.4, budget_schedule=BudgetSchedule(2, 30, 2.0),
                  distillation_weight=0.5, comm_weight=3.0)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary file left behind"
    loaded = keras.models.load_model(path)
    assert type(loaded).__name__ == "CifarResNet" and loaded.compiled
    assert loaded._budgets == {"2x0.5": 0.4} and loaded._budget_schedule == BudgetSchedule(2, 30, 2.0)
    assert loaded._comm_weight == 3.0 and loaded._distillation_weight == 0.5
    assert int(keras.ops.convert_to_numpy(loaded.budget_step)) == 2
    a, b = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)  # training continues


def test_switch_model_shares_weights():
    x, _ = toy_data(8)
    model = tiny_resnet("1x1.0,2x0.5")
    plain = model.switch_model("2x0.5")
    assert isinstance(plain, keras.Model) and not isinstance(plain, SplitModel)
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0)["2x0.5"], atol=1e-6)
    assert {id(v) for v in plain.weights} <= {id(v) for v in model.weights}
    assert model.switch_model("0.5+0.5") is plain


def test_recalibrate_batch_norm_sets_average_batch_statistics():
    x, y = toy_data(64)
    model = tiny_resnet("1x1.0,2x0.5")
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    model.recalibrate_batch_norm(batches, verbose=0)
    conv, bn = model.get_layer("stem_conv"), model.get_layer("stem_bn")
    for i, name in enumerate(("1x1.0", "2x0.5")):
        means = [keras.ops.convert_to_numpy(conv(b, switch=name)).mean(axis=(0, 1, 2)) for b, _ in batches]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_means[i]), np.mean(means, axis=0), atol=1e-5)
    assert bn.momentum == 0.99  # restored


def test_evaluate_reports_each_switch_loss_as_the_mean_over_examples():
    x, y = toy_data(100)
    model = tiny_resnet("1x1.0,2x0.5")
    model.compile(optimizer="adam")
    w = np.linspace(0.1, 2.0, 100).astype("float32")
    got = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)  # batches of 64 and 36
    weighted = model.evaluate(x, y, sample_weight=w, batch_size=64, verbose=0, return_dict=True)
    out = model.predict(x, verbose=0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    for name in ("1x1.0", "2x0.5"):
        per_example = keras.ops.convert_to_numpy(loss(y, out[name]))
        assert got[f"{name}_loss"] == pytest.approx(per_example.mean(), rel=1e-4)
        assert weighted[f"{name}_loss"] == pytest.approx(np.sum(per_example * w) / np.sum(w), rel=1e-4)


def test_an_output_computed_with_another_switch_is_refused():
    # Layers built on three switches, a model on two, layers called by index:
    # the model's second output would be the layers' 2x0.5, not 4x0.25.
    from paradis_tf import SwitchSet
    from paradis_tf import layers as L

    model_set, layer_set = SwitchSet("1x1.0,4x0.25"), SwitchSet("1x1.0,2x0.5,4x0.25")
    stem = L.SplitConv2D(8, 3, layer_set, padding="same", replicated_input=True, name="stem")
    head = L.SplitDense(4, layer_set, partial_outputs=True, name="head")
    fusion = L.PartialSumFusion(layer_set, name="fusion")
    inputs = keras.Input((12, 12, 1))

    def build(call):
        outputs = {}
        for i, name in enumerate(model_set.names):
            h = keras.layers.GlobalAveragePooling2D()(stem(inputs, switch=call(i, name)))
            outputs[name] = fusion(head(h, switch=call(i, name)), switch=call(i, name))
        return SplitModel(inputs, outputs, model_set)

    with pytest.raises(ValueError, match=r"layer 'stem' feeds the output of switch '4x0.25' but is called with "
                                         r"switch=1, which is its switch '2x0.5'.*switch='4x0.25'"):
        build(lambda i, name: i)
    model = build(lambda i, name: name)  # by name: each output runs its own switch
    out = model.predict(np.zeros((2, 12, 12, 1), "float32"), verbose=0)
    assert set(out) == {"1x1.0", "4x0.25"} and out["4x0.25"].shape == (2, 4)


def test_recalibration_refuses_arrays_and_one_shot_iterators_and_keeps_the_statistics_on_failure():
    x, y = toy_data(64)
    model = tiny_resnet("1x1.0,2x0.5")
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = model.predict(x, verbose=0)
    # An array iterates image by image: each image would be taken as a batch.
    with pytest.raises(ValueError, match=r"dataset: an array of shape \(64, 12, 12, 1\) would be iterated image by"):
        model.recalibrate_batch_norm(x, verbose=0)
    # A generator is used up by the first switch: the second would see nothing.
    with pytest.raises(ValueError, match="dataset: a generator can be iterated once"):
        model.recalibrate_batch_norm(((x[i:i + 32], y[i:i + 32]) for i in (0, 32)), verbose=0)
    # A failure in a later switch leaves every switch's statistics as they were.
    bad = [(x[:32], y[:32]), (np.zeros((32, 5, 5, 1), "float32"), y[:32])]
    with pytest.raises(Exception):
        model.recalibrate_batch_norm(bad, verbose=0)
    with pytest.raises(ValueError, match="the dataset yielded no batch"):
        model.recalibrate_batch_norm([], verbose=0)
    after = model.predict(x, verbose=0)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_bad_input():
    model = tiny_resnet("1x1.0,2x0.5,4x0.25")
    for bad in (0, 1.5, -0.2, True):
        with pytest.raises(ValueError, match=r"budget for switch '2x0.5' must be a traffic ratio in \(0, 1\]"):
            model.compile(optimizer="adam", budget=bad)
    with pytest.raises(ValueError, match=r"loss must be a keras.losses.Loss instance \(e.g. .*received 'mse'"):
        model.compile(optimizer="adam", loss="mse")  # the name, not the function it resolves to
    model.compile(optimizer="adam", budget=np.float32(0.2))  # a numpy number is a number
    assert model.current_budget("2x0.5") == pytest.approx(1.0)  # step 0 of the anneal
    with pytest.raises(ValueError, match="budget names switch '1x1.0', which has no learned gates"):
        model.compile(optimizer="adam", budget={"1x1.0": 0.5})
    with pytest.raises(ValueError, match=r"budget: .*Unknown switch '3x1/3'"):
        model.compile(optimizer="adam", budget={"3x1/3": 0.5})
    with pytest.raises(ValueError, match="metrics= is not supported"):
        model.compile(optimizer="adam", metrics=["accuracy"])
    with pytest.raises(ValueError, match="comm_weight must be a number >= 0, received -1"):
        model.compile(optimizer="adam", comm_weight=-1)
    shut = tiny_resnet("1x1.0,2x0.5", gates="shut")
    with pytest.raises(ValueError, match=r"budget=0.2 but no switch .* has learned gates"):
        shut.compile(optimizer="adam", budget=0.2)
    with pytest.raises(ValueError, match="widest switch of total width 1"):
        tiny_resnet("2x0.25,1x0.5")
    with pytest.raises(ValueError, match="end_step must be greater than begin_step"):
        BudgetSchedule(10, 10)
    with pytest.raises(ValueError, match="num_batches must be a positive int or None, received 0"):
        model.recalibrate_batch_norm([], num_batches=0)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")
def test_mirrored_strategy_step_equals_single_device():
    script = r"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, json
from paradis_tf.training import BudgetSchedule
from tests.paradis_tf.training.helpers import tiny_resnet, toy_data
x, y = toy_data(32)
def run(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = tiny_resnet(sync_batch_norm=True)
        model.compile(optimizer=keras.optimizers.SGD(0.1), budget=0.5, budget_schedule=BudgetSchedule(0, 4))
    h = model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False).history
    return h["loss"], int(model.budget_step.numpy())
one = run(tf.distribute.get_strategy())
two = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps({"one": one, "two": two, "replicas": 2}))
"""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    (loss_one, steps_one), (loss_two, steps_two) = result["one"], result["two"]
    np.testing.assert_allclose(loss_two, loss_one, rtol=1e-4)
    assert steps_one == steps_two == 2
