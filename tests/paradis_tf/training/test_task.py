"""Task: validation, config round trip, and what SplitModel takes from it."""

import numpy as np
import pytest
import keras

from paradis_tf.layers import PartialSumFusion, SplitConv2D
from paradis_tf.training import SplitModel, Task
from tests.paradis_tf.training.helpers import tiny_resnet, toy_data

MAE = keras.losses.MeanAbsoluteError()


def test_classification_is_the_default_and_round_trips():
    task = Task.classification()
    assert (task.name, task.output_kind, task.distillation, task.metric_name) == (
        "classification", "logits", "softmax", "accuracy")
    assert Task.from_config(task.get_config()) == task
    assert tiny_resnet().task == task


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "", "output_kind": "x", "loss": MAE}, "name must be a non-empty str, received ''"),
    ({"name": "t", "output_kind": 3, "loss": MAE}, "output_kind must be a non-empty str, received 3"),
    ({"name": "t", "output_kind": "x", "loss": "mse"}, "loss must be a keras.losses.Loss instance .* received 'mse'"),
    ({"name": "t", "output_kind": "x", "loss": MAE, "distillation": "kl"}, "received 'kl'"),
    ({"name": "t", "output_kind": "x", "loss": MAE, "metric": "psnr"}, "metric must be a keras.metrics.Metric"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Task(**kwargs)


def test_distillation_matches_numpy():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(3, 4, 5)).astype("float32")
    student = rng.normal(size=(3, 4, 5)).astype("float32")
    p = np.exp(teacher) / np.exp(teacher).sum(-1, keepdims=True)
    log_q = student - np.log(np.exp(student).sum(-1, keepdims=True))
    soft = keras.ops.convert_to_numpy(Task.classification().distillation_loss(teacher, student))
    np.testing.assert_allclose(soft, -(p * log_q).sum(-1), rtol=1e-5)
    mse = Task("sr", "image", MAE, distillation="mse").distillation_loss(teacher, student)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mse), (student - teacher) ** 2, rtol=1e-6)
    assert Task("sr", "image", MAE, distillation="none").distillation_loss(teacher, student) is None


def _dense_model(task):
    """A per-pixel regression over two switches: SplitConv2D partial outputs, summed."""
    switches = "1x1.0,2x0.5"
    conv = SplitConv2D(4, 3, switches, padding="same", replicated_input=True, name="c1")
    head = SplitConv2D(3, 3, switches, padding="same", partial_outputs=True, name="head")
    fuse = PartialSumFusion(switches, name="fuse")
    inputs = keras.Input((8, 8, 3))
    outputs = {s: fuse(head(keras.layers.ReLU()(conv(inputs, switch=s)), switch=s), switch=s)
               for s in ("1x1.0", "2x0.5")}
    return SplitModel(inputs, outputs, switches, task=task)


def test_a_regression_task_trains_with_its_loss_distillation_and_metric(tmp_path):
    task = Task("sr", "image", keras.losses.MeanAbsoluteError(), distillation="mse",
                metric=keras.metrics.MeanSquaredError(name="mse"))
    model = _dense_model(task)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 3)).astype("float32")
    history = model.fit(x, x[..., ::-1], batch_size=8, epochs=3, verbose=0).history
    assert {"1x1.0_loss", "1x1.0_mse", "2x0.5_mse"} <= set(history) and "1x1.0_accuracy" not in history
    assert history["1x1.0_loss"][-1] < history["1x1.0_loss"][0]
    # The bare SplitModel saves its task with its graph.
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.task == task
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["2x0.5"], model.predict(x, verbose=0)["2x0.5"], atol=1e-6)


def test_distillation_none_leaves_only_the_label_loss():
    x, y = toy_data(32)
    task = Task("classification", "logits", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                distillation="none")
    model = tiny_resnet()
    model._task = task  # the same graph, another task
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    # With no distillation and no budget the total is the per-switch losses' sum.
    assert logs["loss"] == pytest.approx(logs["1x1.0_loss"] + logs["2x0.5_loss"], rel=1e-5)
