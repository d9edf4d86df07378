"""Link budgets: a traffic budget in time (bandwidth + latency per exchange point)."""

import json
import math

import numpy as np
import pytest
import keras

from paradis_tf.models import CifarResNet
from paradis_tf.training import BudgetSchedule, Link, LinkCost, LinkRatio
from paradis_tf.training.link_budget import FRAME_HEADER_BYTES
from tests.paradis_tf.training.helpers import tiny_resnet, toy_data

NAME = "2x0.5"


def resnet20(switches="1x1.0,2x0.5", seed=0):
    """ResNet-20 (16-32-64 channels) on 28x28 with random gate logits, as
    bench/export.py builds it: no training needed to make a cut."""
    model = CifarResNet(depth=20, width=1.0, num_classes=10, input_shape=(28, 28, 1), switches=switches)
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "gate_logits" in v.path:
            v.assign(rng.normal(size=v.shape).astype("float32"))
    return model


def reference(model, name, link):
    """Per device, computed plainly from the deployed gates: exchange points,
    layers used, received bytes and modelled seconds."""
    d = model.switches[name].num_devices
    points, nbytes, seconds, layers = np.zeros(d, int), np.zeros(d, int), np.zeros(d), set()
    for t in model._plan.traffic[name]:
        received = t.remote * t.layer.gate_values(t.index)  # (Cin, D)
        for k in range(d):
            n = int(received[:, k].sum())
            if n:
                b = n * t.positions * link.bytes_per_element
                points[k] += 1
                nbytes[k] += b
                seconds[k] += link.latency_ms / 1e3 + 8 * (FRAME_HEADER_BYTES + b) / (link.mbps * 1e6)
                layers.add(t.layer.name)
    return points, nbytes, seconds, layers


def dense_seconds(model, name, link):
    d = model.switches[name].num_devices
    out = np.zeros(d)
    for t in model._plan.traffic[name]:
        for k in range(d):
            n = int(t.remote[:, k].sum())
            if n:
                out[k] += link.latency_ms / 1e3 + 8 * (FRAME_HEADER_BYTES + n * t.positions * 4) / (link.mbps * 1e6)
    return out


# -- the Link ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mbps": 0, "latency_ms": 2}, r"Link.mbps must be a finite number > 0, received 0\."),
        ({"mbps": -5.0, "latency_ms": 2}, r"Link.mbps must be a finite number > 0, received -5.0\."),
        ({"mbps": float("inf"), "latency_ms": 2}, r"Link.mbps must be a finite number > 0, received inf\."),
        ({"mbps": float("nan"), "latency_ms": 2}, r"Link.mbps must be a finite number > 0, received nan\."),
        ({"mbps": "200", "latency_ms": 2}, r"Link.mbps must be a finite number > 0, received '200'\."),
        ({"mbps": True, "latency_ms": 2}, r"Link.mbps must be a finite number > 0, received True\."),
        ({"mbps": 200, "latency_ms": -1}, r"Link.latency_ms must be a finite number >= 0, received -1\."),
        ({"mbps": 200, "latency_ms": float("nan")}, r"Link.latency_ms must be a finite number >= 0, received nan\."),
        ({"mbps": 200, "latency_ms": None}, r"Link.latency_ms must be a finite number >= 0, received None\."),
        ({"mbps": 200, "latency_ms": 2, "target_ms": 0}, r"Link.target_ms must be None or a finite number > 0, "
                                                         r"received 0\."),
        ({"mbps": 200, "latency_ms": 2, "target_ms": float("inf")}, r"Link.target_ms .* received inf\."),
        ({"mbps": 200, "latency_ms": 2, "bytes_per_element": 0}, r"Link.bytes_per_element must be a positive int "
                                                                 r".* received 0\."),
        ({"mbps": 200, "latency_ms": 2, "bytes_per_element": 2.5}, r"Link.bytes_per_element .* received 2.5\."),
    ],
)
def test_link_validation_names_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Link(**kwargs)


def test_link_config_round_trip_and_planner_cost():
    link = Link(mbps=200, latency_ms=2, target_ms=7.5, bytes_per_element=1)
    assert link == Link.from_config(json.loads(json.dumps(link.get_config())))
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(link)) == link
    assert Link(200, 0) == Link(200.0, 0.0) and hash(Link(200, 0)) == hash(Link(200.0, 0.0))
    # The training side states the runtime planner's cost of one exchange.
    from paradis_runtime.planner import exchange_cost_s

    for nbytes in (0, 1000, 25088):
        assert link.exchange_cost_seconds(nbytes) == pytest.approx(exchange_cost_s(nbytes, 200, 2), rel=1e-12)


# -- finalize_gates ---------------------------------------------------------------
def test_link_uses_fewer_exchange_points_than_a_byte_budget_of_equal_bytes():
    model = resnet20()
    link = Link(mbps=200, latency_ms=2)
    result = model.finalize_gates(budget=link)[NAME]
    assert isinstance(result, LinkRatio) and isinstance(result.cost, LinkCost)
    link_points, link_bytes, link_seconds, _ = reference(model, NAME, link)
    assert result.exchange_points == link_points.sum() and result.cost.bytes == link_bytes.sum()
    np.testing.assert_allclose(np.array(result.cost.device_ms) / 1e3, link_seconds, rtol=1e-9)
    assert result == pytest.approx(model.traffic_ratio(NAME))

    # The byte budget at the same bytes spreads them over nearly every layer.
    ratios = model.finalize_gates(budget=float(result))
    assert type(ratios[NAME]) is float
    byte_points, byte_bytes, byte_seconds, _ = reference(model, NAME, link)
    one_channel_per_layer = sum(t.positions * 4 for t in model._plan.traffic[NAME])
    assert link_bytes.sum() - one_channel_per_layer <= byte_bytes.sum() <= link_bytes.sum()
    assert link_points.sum() >= 2 and 2 * link_points.sum() < byte_points.sum(), (link_points, byte_points)
    # ... which pays more latency: that cut does not fit the link's time.
    assert byte_seconds.max() > max(result.cost.target_ms) / 1e3
    assert model.link_cost(NAME, link).exchange_points == byte_points.sum()


@pytest.mark.parametrize(
    "switches, name, link",
    [
        ("1x1.0,2x0.5", "2x0.5", Link(200, 2)),
        ("1x1.0,2x0.5", "2x0.5", Link(50, 5)),
        ("1x1.0,2x0.5", "2x0.5", Link(200, 2, target_ms=4.3)),
        ("1x1.0,2x0.5", "2x0.5", Link(1000, 0.0)),
        ("1x1.0,0.5+0.3+0.2", "0.5+0.3+0.2", Link(100, 1)),
        ("1x1.0,4x0.25", "4x0.25", Link(200, 2, bytes_per_element=1)),
    ],
)
def test_finalized_time_fits_the_target_and_leaves_no_usable_time(switches, name, link):
    model = resnet20(switches)
    result = model.finalize_gates(budget={name: link})[name]
    points, _, seconds, _ = reference(model, name, link)
    if link.target_ms is None:
        targets = np.array(result.cost.target_ms) / 1e3
        if link.bytes_per_element == 4:  # dense_seconds counts float32 elements
            np.testing.assert_allclose(targets, 0.2 * dense_seconds(model, name, link), rtol=1e-9)
    else:
        targets = np.full(len(points), link.target_ms / 1e3)
        np.testing.assert_allclose(np.array(result.cost.target_ms) / 1e3, targets, rtol=1e-12)
    assert np.all(seconds <= targets * (1 + 1e-9)), (seconds, targets)
    assert result.cost.fits() and points.min() >= 1
    # Maximal: no closed exchange point would fit with even one channel, and
    # no further channel of an open one fits (the time left is smaller).
    f = link.latency_ms / 1e3 + 8 * FRAME_HEADER_BYTES / (link.mbps * 1e6)
    for k, slack in enumerate(targets - seconds):
        for t in model._plan.traffic[name]:
            remote = t.remote[:, k] > 0
            if not remote.any():
                continue
            b = 8 * t.positions * link.bytes_per_element / (link.mbps * 1e6)
            received = remote & (t.layer.gate_values(t.index)[:, k] > 0.5)
            if received.any() and (remote & ~received).any():
                assert b > slack, (t.layer.name, k, b, slack)
            elif not received.any():
                assert f + b > slack, (t.layer.name, k, f + b, slack)


def test_high_latency_concentrates_traffic_in_fewer_layers():
    model = resnet20()
    low = model.finalize_gates(budget=Link(mbps=200, latency_ms=0.05))[NAME]
    low_points, low_bytes, _, low_layers = reference(model, NAME, Link(200, 0.05))
    high = model.finalize_gates(budget=Link(mbps=200, latency_ms=5))[NAME]
    high_points, high_bytes, _, high_layers = reference(model, NAME, Link(200, 5))
    assert low.cost.fits() and high.cost.fits()
    assert len(high_layers) < len(low_layers) and high_points.sum() < low_points.sum(), (
        sorted(high_layers), sorted(low_layers))
    # Fewer, fuller exchange points: more bytes per point.
    assert high_bytes.sum() / high_points.sum() > low_bytes.sum() / low_points.sum()


# -- training -----------------------------------------------------------------------
def _gradients(fn, variables):
    """d fn() / d variables on the active backend."""
    if keras.backend.backend() == "jax":
        import jax

        def of(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn()

        return [np.asarray(g) for g in jax.grad(of)([v.value for v in variables])]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = fn()
    return [keras.ops.convert_to_numpy(g) for g in tape.gradient(out, variables)]


@pytest.mark.parametrize("link", [Link(200, 2), Link(1e6, 5)], ids=["bytes_and_latency", "latency_only"])
def test_penalty_is_differentiable_and_a_step_reduces_the_modelled_cost(link):
    # Link(1e6, 5): bytes cost next to nothing, so what moves the logits is
    # the soft "exchange point used" indicator of the latency.
    keras.utils.set_random_seed(1)
    model = tiny_resnet()
    model.compile(optimizer="adam", budget=link, budget_schedule=BudgetSchedule(0, 10))
    model.budget_step.assign(10)  # the budget at its target: the penalty is active
    switch_link = model._switch_link(NAME, link)
    terms = model._plan.traffic[NAME]
    logits = [t.layer._gate_logits[t.index] for t in terms if t.layer.has_learned_gates(t.index)]
    budget = switch_link.budget_seconds(model._budget_schedule, 10)

    def expected():
        return switch_link.seconds([t.layer.gate_probabilities(t.index) for t in terms], soft=True)

    def penalty():
        return switch_link.penalty(expected(), budget)

    before_time = keras.ops.convert_to_numpy(expected()).max()
    before = float(keras.ops.convert_to_numpy(penalty()))
    assert before > 0
    grads = _gradients(penalty, logits)
    assert all(np.isfinite(g).all() for g in grads) and all(np.abs(g).sum() > 0 for g in grads)
    for v, g in zip(logits, grads):
        v.assign(v - 0.05 * g / max(np.abs(g).max(), 1e-12))  # a normalized gradient step
    after = float(keras.ops.convert_to_numpy(penalty()))
    after_time = keras.ops.convert_to_numpy(expected()).max()
    assert after < before and after_time < before_time - 0.05 * link.latency_ms / 1e3, (before_time, after_time)


def test_fit_follows_the_annealed_time_budget_and_the_penalty_lowers_expected_time():
    x, y = toy_data(128)
    link = Link(mbps=200, latency_ms=2)

    def train(comm_weight):
        keras.utils.set_random_seed(3)
        model = tiny_resnet()
        model.compile(optimizer=keras.optimizers.Adam(0.03), budget=link, budget_schedule=BudgetSchedule(0, 8),
                      comm_weight=comm_weight)
        history = model.fit(x, y, batch_size=32, epochs=3, verbose=0).history
        return model, history

    model, history = train(4.0)
    for key in ("2x0.5_budget_ms", "2x0.5_time_ms", "2x0.5_comm"):
        assert key in history, sorted(history)
    target = model.link_cost(NAME).target_ms
    assert history["2x0.5_budget_ms"][0] > history["2x0.5_budget_ms"][-1] == pytest.approx(max(target), rel=1e-5)
    assert model.current_budget(NAME) == pytest.approx(max(target), rel=1e-5)
    # Each step's cut fits that step's budget, so every epoch's mean does.
    for budget, time in zip(history["2x0.5_budget_ms"], history["2x0.5_time_ms"]):
        assert time <= budget * (1 + 1e-5)
    assert history["2x0.5_time_ms"][-1] < 0.5 * history["2x0.5_time_ms"][0]
    assert model.link_cost(NAME).fits(rtol=1e-5)

    def expected_ms(m):
        switch_link = m._switch_link(NAME, link)
        terms = m._plan.traffic[NAME]
        return 1e3 * keras.ops.convert_to_numpy(switch_link.seconds([t.layer.gate_probabilities(t.index)
                                                                     for t in terms], soft=True)).max()

    unpenalized, _ = train(0.0)
    assert expected_ms(model) < 0.5 * expected_ms(unpenalized), (expected_ms(model), expected_ms(unpenalized))

    result = model.finalize_gates()[NAME]
    assert isinstance(result, LinkRatio) and result.cost.fits()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # frozen: the fine-tune keeps the cut
    assert model.link_cost(NAME) == result.cost


def test_link_and_byte_budgets_per_switch():
    x, y = toy_data(64)
    model = tiny_resnet("1x1.0,2x0.5,4x0.25")
    model.compile(optimizer="adam", budget={"2x0.5": 0.3, "4x0.25": Link(100, 1, target_ms=1.5)},
                  budget_schedule=BudgetSchedule(0, 2))
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert {"2x0.5_budget", "4x0.25_budget_ms", "4x0.25_time_ms"} <= set(history)
    assert "2x0.5_time_ms" not in history
    result = model.finalize_gates()
    assert type(result["2x0.5"]) is float and result["2x0.5"] <= 0.3
    assert isinstance(result["4x0.25"], LinkRatio) and result["4x0.25"].cost.fits()
    assert result["4x0.25"].cost.target_ms == (1.5,) * 4


def test_compile_config_and_saved_model_keep_the_link(tmp_path):
    x, y = toy_data(64)
    link = Link(mbps=80, latency_ms=3, target_ms=6.0, bytes_per_element=1)
    model = tiny_resnet()
    model.compile(optimizer="adam", budget=link, budget_schedule=BudgetSchedule(0, 4))
    config = json.loads(json.dumps(model.get_compile_config()))  # what a .keras file stores
    other = tiny_resnet()
    other.compile_from_config(config)
    assert other._budgets == {NAME: link} and other._budget_schedule == BudgetSchedule(0, 4)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded._budgets == {NAME: link}
    assert loaded.current_budget(NAME) == pytest.approx(model.current_budget(NAME))
    loaded.fit(x, y, batch_size=32, epochs=1, verbose=0)


def test_bad_link_budgets():
    model = tiny_resnet()
    with pytest.raises(ValueError, match=r"budget for switch '2x0.5' must be a traffic ratio in \(0, 1\] or a Link, "
                                         r"received 'fast'"):
        model.compile(optimizer="adam", budget="fast")
    with pytest.raises(ValueError, match="budget for switch '2x0.5'"):
        model.compile(optimizer="adam", budget={NAME: {"class_name": "NoSuchBudget", "config": {}}})
    with pytest.raises(ValueError, match="budget for switch '2x0.5' must be .* received"):
        model.compile(optimizer="adam", budget={NAME: keras.saving.serialize_keras_object(BudgetSchedule())})
    with pytest.raises(ValueError, match=r"budget for switch '2x0.5': Link.latency_ms must be a finite number >= 0, "
                                         r"received -1\."):
        model.compile(optimizer="adam", budget={NAME: {"mbps": 100, "latency_ms": -1}})
    model.compile(optimizer="adam", budget={NAME: {"mbps": 100, "latency_ms": 1}})  # Link.get_config() form
    assert model._budgets == {NAME: Link(100, 1)}
    model.compile(optimizer="adam", budget=0.5)
    with pytest.raises(ValueError, match="link_cost: switch '2x0.5' has no compiled Link budget"):
        model.link_cost(NAME)
    with pytest.raises(ValueError, match="link must be a Link, received 0.2"):
        model.link_cost(NAME, 0.2)
    with pytest.raises(ValueError, match="link_cost: switch '1x1.0' does not communicate"):
        model.link_cost("1x1.0", Link(200, 2))
    assert math.isfinite(model.link_cost(NAME, Link(200, 2)).time_ms)
