"""GateRanking: the budget cut's other rankings, each checked for what it promises."""

import numpy as np
import pytest
import keras

from paradis_tf.layers import SplitConv2D, SplitDense
from paradis_tf.training import BudgetSchedule, GateRanking
from tests.paradis_tf.training.helpers import tiny_resnet, toy_data

SWITCH = "2x0.5"


def test_the_default_freezes_the_cut_and_the_config_round_trips():
    default = GateRanking()
    assert default.freeze_after_anneal and default.holds_state and default.learns_logits
    assert not GateRanking(freeze_after_anneal=False).holds_state  # a cut at every step, nothing held
    ranking = GateRanking(score="ema", recut_every=5, hysteresis=0.5, freeze_after_anneal=True, ema_decay=0.9,
                          penalty="count")
    assert ranking.holds_state and GateRanking.from_config(ranking.get_config()) == ranking
    assert not GateRanking(score="weight_norm").learns_logits


@pytest.mark.parametrize("kwargs, match", [
    ({"score": "taylor"}, "score must be one of .* received 'taylor'"),
    ({"recut_every": 0}, "recut_every must be an int >= 1, received 0"),
    ({"hysteresis": -1}, "hysteresis must be a number >= 0, received -1"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \(0, 1\), received 1.0"),
    ({"penalty": "flops"}, "penalty must be one of .* received 'flops'"),
    ({"freeze_after_anneal": 1}, "freeze_after_anneal must be True or False, received 1"),
])
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GateRanking(**kwargs)


def _states(model):
    """The held decisions of the remote gates, one flat array per layer."""
    return [keras.ops.convert_to_numpy(t.layer._gate_states[t.index])[t.remote > 0].copy()
            for t in model._plan.traffic[SWITCH]]


def _train(ranking, steps=12, end=8, budget=0.3):
    """Steps one at a time; returns the gate states after each step and the model."""
    x, y = toy_data(32 * steps)
    model = tiny_resnet("1x1.0," + SWITCH)
    model.compile(optimizer=keras.optimizers.Adam(0.05), budget=budget, budget_schedule=BudgetSchedule(0, end),
                  gate_ranking=ranking)
    history, ratios = [], []
    for i in range(steps):
        model.train_on_batch(x[32 * i : 32 * (i + 1)], y[32 * i : 32 * (i + 1)])
        history.append(_states(model))
        ratios.append(model.traffic_ratio(SWITCH))
    return model, history, ratios


def _changed(a, b):
    return any(not np.array_equal(p, q) for p, q in zip(a, b))


def test_recut_every_k_changes_the_open_set_only_on_multiples_of_k():
    model, history, ratios = _train(GateRanking(recut_every=4))
    # The cut runs in the forward pass of step s (0-based) when s % 4 == 0.
    changes = [s for s in range(1, len(history)) if _changed(history[s - 1], history[s])]
    assert changes and all(s % 4 == 0 for s in changes), changes
    # Budget-exact at every cut; between cuts it keeps the last cut's set
    # (at or below the budget that cut saw).
    assert all(r <= 1.0 + 1e-6 for r in ratios) and ratios[-1] <= 0.3 + 1e-6


def test_freeze_after_anneal_keeps_the_set_chosen_at_the_end_of_the_schedule():
    model, history, _ = _train(GateRanking(freeze_after_anneal=True), steps=14, end=6)
    for s in range(7, len(history)):
        assert not _changed(history[s - 1], history[s]), f"the set changed at step {s}, after the anneal"
    assert _changed(history[0], history[5])  # it did move while annealing


def test_a_frozen_set_meets_the_budget_after_a_short_anneal_and_a_recut_period():
    # The set frozen is the one cut where the budget reaches its target (step
    # `end`), not the step before, whose budget was far larger when the
    # anneal lasts one step (1.0) or the recut period skips `end`.
    for ranking, end in ((GateRanking(freeze_after_anneal=True), 1),
                         (GateRanking(freeze_after_anneal=True, recut_every=4), 6)):
        model, _, ratios = _train(ranking, steps=10, end=end)
        assert ratios[-1] <= 0.3 + 1e-6, (ranking, ratios)
        assert model.finalize_gates()[SWITCH] <= 0.3 + 1e-6


def test_a_large_hysteresis_never_swaps_an_open_gate_for_a_shut_one():
    # 100 is far above the logits' spread here (a few units), and small
    # enough for float32 to keep their order. A step may shut gates (the
    # budget shrinks) or open some (bytes left over), never both.
    model, history, _ = _train(GateRanking(hysteresis=100.0))
    for s in range(1, len(history)):
        shut = any(np.any((b == 1) & (a == 0)) for b, a in zip(history[s - 1], history[s]))
        opened = any(np.any((b == 0) & (a == 1)) for b, a in zip(history[s - 1], history[s]))
        assert not (shut and opened), f"step {s} swapped gates"
    # Without it the ranking does swap (the reason for the option).
    _, plain, _ = _train(GateRanking(recut_every=1, freeze_after_anneal=False, score="ema", ema_decay=0.01))
    assert any(any(np.any((b == 1) & (a == 0)) for b, a in zip(plain[s - 1], plain[s]))
               and any(np.any((b == 0) & (a == 1)) for b, a in zip(plain[s - 1], plain[s]))
               for s in range(1, len(plain)))


def test_weight_norm_keeps_the_heaviest_gates_and_never_reopens():
    model, history, ratios = _train(GateRanking(score="weight_norm"))
    for s in range(1, len(history)):
        for before, after in zip(history[s - 1], history[s]):
            assert not np.any((before == 0) & (after == 1))
    assert ratios[-1] <= 0.3 + 1e-6
    # Finalizing pins exactly the held set.
    held = _states(model)
    model.finalize_gates()
    for t, state in zip(model._plan.traffic[SWITCH], held):
        np.testing.assert_array_equal(t.layer.gate_values(t.index)[t.remote > 0], state)


def test_the_first_weight_norm_cut_opens_the_top_relative_norms():
    model = tiny_resnet("1x1.0," + SWITCH)
    model.compile(optimizer="adam", budget=0.5, budget_schedule=BudgetSchedule(0, 1),
                  gate_ranking=GateRanking(score="weight_norm"))
    model.finalize_gates()
    terms = model._plan.traffic[SWITCH]
    entries = []
    for n, t in enumerate(terms):
        norms = keras.ops.convert_to_numpy(t.layer.gate_weight_norms(t.index))
        rel = norms / (norms * t.remote).sum() * t.remote.sum()
        entries += [(rel[c, k], t.positions, n, c, k) for c, k in zip(*np.nonzero(t.remote))]
    entries.sort(key=lambda e: -e[0])
    dense, used, expected = sum(t.dense for t in terms), 0, set()
    for _, cost, n, c, k in entries:
        if used + cost > 0.5 * dense + 1e-6:
            break
        used += cost
        expected.add((n, int(c), int(k)))
    opened = {(n, int(c), int(k)) for n, t in enumerate(terms)
              for c, k in zip(*np.nonzero(t.remote * t.layer.gate_values(t.index)))}
    assert opened == expected


def test_ema_moves_towards_the_logits_only_while_training():
    x, y = toy_data(64)
    model = tiny_resnet("1x1.0," + SWITCH)
    model.compile(optimizer=keras.optimizers.Adam(0.05), budget=0.3, budget_schedule=BudgetSchedule(0, 4),
                  gate_ranking=GateRanking(score="ema", ema_decay=0.5))
    t = model._plan.traffic[SWITCH][0]
    model.train_on_batch(x[:32], y[:32])
    ema = keras.ops.convert_to_numpy(t.layer._gate_emas[t.index]).copy()
    logits = t.layer.gate_logits(t.index)
    model.train_on_batch(x[32:], y[32:])
    # One step: ema' = 0.5 ema + 0.5 logits (the logits of the forward pass).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(t.layer._gate_emas[t.index]), 0.5 * ema + 0.5 * logits,
                               rtol=1e-5, atol=1e-6)
    frozen = keras.ops.convert_to_numpy(t.layer._gate_emas[t.index]).copy()
    model.predict(x, verbose=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(t.layer._gate_emas[t.index]), frozen)


def test_count_weighting_is_the_fraction_of_open_remote_gates():
    model = tiny_resnet("1x1.0,0.5+0.3+0.2")
    name = "0.5+0.3+0.2"
    rng = np.random.default_rng(0)
    for t in model._plan.traffic[name]:
        var = t.layer._gate_logits[t.index]
        var.assign(rng.normal(size=var.shape).astype("float32"))
    model.finalize_gates(budget={name: 0.4})
    terms = model._plan.traffic[name]
    opened = sum(float((t.remote * t.layer.gate_values(t.index)).sum()) for t in terms)
    total = sum(float(t.remote.sum()) for t in terms)
    count = float(keras.ops.convert_to_numpy(model._traffic_ratio(name, count=True)))
    assert count == pytest.approx(opened / total)
    assert count != pytest.approx(model.traffic_ratio(name))  # layers differ in bytes per channel


@pytest.mark.parametrize("make, window", [
    (lambda: SplitConv2D(6, 3, "2x0.5"), 3),
    (lambda: SplitDense(6, "2x0.5"), 0),
])
def test_gate_weight_norms_match_numpy(make, window):
    layer = make()
    layer.build((None, 5, 5, 4) if window else (None, 4))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    squares = (kernel ** 2).reshape(-1, 4, 6).sum(0)  # (Cin, Cout)
    expected = np.stack([np.sqrt(squares[:, :3].sum(1)), np.sqrt(squares[:, 3:].sum(1))], axis=1)  # (Cin, D)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.gate_weight_norms("2x0.5")), expected, rtol=1e-5)


def test_the_ranking_is_part_of_the_compile_config():
    model = tiny_resnet("1x1.0," + SWITCH)
    ranking = GateRanking(recut_every=7)
    model.compile(optimizer="adam", budget=0.3, gate_ranking=ranking)
    assert model.get_compile_config()["gate_ranking"] == ranking.get_config()
