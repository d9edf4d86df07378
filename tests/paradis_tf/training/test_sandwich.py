"""The sandwich rule: which switches a training step runs."""

import keras
import numpy as np
import pytest
from keras import ops

from paradis_tf.layers.switchable_batch_normalization import SwitchableBatchNormalization
from paradis_tf.switches import SwitchSet
from paradis_tf.training import Sandwich
from tests.paradis_tf.training.helpers import tiny_resnet, toy_data

# SwitchSet order: widest first (total width, then fewest devices), so the narrowest is 1x0.5.
NAMES = SwitchSet("1x1.0,1x0.7,1x0.5,2x0.5,4x0.25").names


def test_windows_keep_the_widest_and_the_narrowest_and_slide_over_the_middle():
    assert NAMES == ("1x1.0", "2x0.5", "4x0.25", "1x0.7", "1x0.5")
    assert Sandwich(middle=1).windows(NAMES) == (
        ("1x1.0", "2x0.5", "1x0.5"), ("1x1.0", "4x0.25", "1x0.5"), ("1x1.0", "1x0.7", "1x0.5"))
    # Windows wrap around and keep the SwitchSet order.
    assert Sandwich(middle=2).windows(NAMES)[-1] == ("1x1.0", "2x0.5", "1x0.7", "1x0.5")
    assert Sandwich(middle=0).windows(NAMES) == (("1x1.0", "1x0.5"),)
    # Nothing to sample: one window of every switch (the default training).
    assert Sandwich(middle=3).windows(NAMES) == (NAMES,)
    assert Sandwich(middle=0).windows(NAMES[:2]) == (NAMES[:2],)


def test_the_schedule_runs_every_window_once_per_round():
    order = Sandwich(middle=1, seed=3).schedule(4)
    rounds = [[next(order) for _ in range(4)] for _ in range(5)]
    assert all(sorted(r) == [0, 1, 2, 3] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # shuffled, not a fixed cycle
    again = Sandwich(middle=1, seed=3).schedule(4)
    assert [next(again) for _ in range(20)] == sum(rounds, [])


@pytest.mark.parametrize("kwargs, match", [
    ({"middle": -1}, r"Sandwich.middle must be an int >= 0, received -1"),
    ({"middle": 1.5}, r"Sandwich.middle must be an int >= 0, received 1.5"),
    ({"seed": True}, r"Sandwich.seed must be an int >= 0, received True"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sandwich(**kwargs)


def test_an_optimizer_that_accumulates_gradients_is_refused():
    model = tiny_resnet("1x1.0,2x0.5,0.5+0.3+0.2,4x0.25", gates="shut")
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=2\): each step runs another window"):
        model.compile(optimizer=keras.optimizers.Adam(gradient_accumulation_steps=2), sandwich=Sandwich(middle=1))
    model.compile(optimizer=keras.optimizers.Adam(gradient_accumulation_steps=2))  # without a sandwich: fine


def test_config_round_trips_and_compile_saves_it(tmp_path):
    s = Sandwich(middle=2, seed=7)
    assert Sandwich.from_config(s.get_config()) == s
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s)) == s
    model = tiny_resnet("1x1.0,2x0.5,0.5+0.3+0.2,4x0.25", gates="shut")
    model.compile(optimizer="adam", sandwich=s)
    assert model.get_compile_config()["sandwich"] == {"middle": 2, "seed": 7}
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras")._sandwich == s
    with pytest.raises(ValueError, match="sandwich must be a Sandwich"):
        model.compile(optimizer="adam", sandwich=2)


def _moving_means(model):
    bn = next(layer for layer in model._flatten_layers() if isinstance(layer, SwitchableBatchNormalization))
    return [ops.convert_to_numpy(v).copy() for v in bn.moving_means]  # one per switch


def _windowed(optimizer, jit_compile):
    """Toy data and a 4-switch model compiled with Sandwich(middle=1): the
    windows and the indices of the first two the schedule runs."""
    x, y = toy_data(32)
    model = tiny_resnet("1x1.0,2x0.5,0.5+0.3+0.2,4x0.25", gates="shut")
    names = model.switches.names
    sandwich = Sandwich(middle=1, seed=5)
    windows = sandwich.windows(names)
    first, second = (lambda o: (next(o), next(o)))(sandwich.schedule(len(windows)))
    model.compile(optimizer=optimizer, sandwich=sandwich, jit_compile=jit_compile)
    return x, y, model, names, windows, first, second


# jit_compile "auto" is XLA on JAX: each window must keep its own trace there
# (JAX caches traces by function).
@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_a_step_runs_and_updates_only_its_window(jit_compile):
    x, y, model, names, windows, first, second = _windowed("adam", jit_compile)
    before = _moving_means(model)
    logs = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    after = _moving_means(model)
    ran = {n for n, b, a in zip(names, before, after) if np.any(a != b)}
    assert ran == set(windows[first]) and len(ran) == 3
    assert {k[: -len("_loss")] for k, v in logs.items() if k.endswith("_loss") and v[0] > 0} == ran
    # The next step runs the other window: the middle switch left out now trains.
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    later = _moving_means(model)
    assert {n for n, a, b in zip(names, after, later) if np.any(a != b)} == set(windows[second])
    assert set(windows[first]) | set(windows[second]) == set(names)


def _affines(model):
    """{switch index: every SwitchableBatchNormalization's gamma and beta of that switch}."""
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, SwitchableBatchNormalization)]
    return {i: [ops.convert_to_numpy(v).copy() for layer in layers for v in (layer.gammas[i], layer.betas[i])]
            for i in range(len(layers[0].gammas))}


# On JAX a left-out switch's weights get a zero gradient, which Adam's
# moments still turn into a step; TensorFlow gives them none.
@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_a_switch_left_out_of_a_step_keeps_its_weights_under_adam(jit_compile):
    x, y, model, names, windows, first, second = _windowed(keras.optimizers.Adam(0.01), jit_compile)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # the first window: its middle switch gets moments
    before = _affines(model)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # the second window leaves that switch out
    after = _affines(model)
    moved = {names[i] for i in before if any(np.any(a != b) for a, b in zip(before[i], after[i]))}
    assert moved == set(windows[second])
    (left_out,) = set(windows[first]) - set(windows[second])
    assert left_out not in moved


def test_without_a_middle_to_sample_every_switch_runs_in_one_function():
    x, y = toy_data(16)
    model = tiny_resnet("1x1.0,2x0.5", gates="shut")
    model.compile(optimizer="adam", sandwich=Sandwich(middle=0), jit_compile=False)
    before = _moving_means(model)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert all(np.any(a != b) for a, b in zip(before, _moving_means(model)))
