"""The budget cut: which learned gates of a switch are open at a step.

A switch's traffic is a list of ``TrafficTerm`` (one per split layer that
receives remote channels in it). Under a traffic-ratio budget the free
learned gates are ranked (by their scaled logits, or by a ``GateRanking``'s
scores) and opened from the top while their bytes fit ``budget * dense``:
``cut_threshold`` finds that cut, ``held_cut`` holds it between cuts for a
ranking that keeps its decision, ``decide`` sets such a decision at once
(``finalize_gates`` then pins it). Under a ``Link`` budget, ``link_cut``
sets one threshold per layer (the price cut of ``link_budget.py``). The
learned gates are read and written through ``SplitLinearLayer.gate_variables``;
a layer whose gates are fixed in the switch (``open``/``shut``) still counts:
its dense bytes, and its open gates as bytes the budget pays first.
"""

from __future__ import annotations

import functools

import numpy as np
from keras import ops

from paradis_tf.training.gate_ranking import GateRanking

__all__ = ["TrafficTerm", "cut_threshold", "decide", "held_cut", "link_cut", "ranking_scores", "set_threshold"]


class TrafficTerm:
    """One split layer's share of a switch's traffic (static; not tracked by Keras).

    Attributes:
        layer: the SplitLinearLayer.
        index: the switch's index in the layer's SwitchSet.
        positions: elements per channel of the layer's input (H * W, or tokens).
        remote: (Cin, D) numpy, 1 where device k reads channel c from another device.
        dense: bytes per element of the dense tensor-parallel exchange, ``positions * remote.sum()``.
    """

    def __init__(self, layer, index, positions, remote):
        self.layer = layer
        self.index = index
        self.positions = positions
        self.remote = remote  # (Cin, D) numpy
        self.dense = float(positions * remote.sum())

    @property
    def learned(self) -> bool:
        return self.layer.has_learned_gates(self.index)

    @functools.cached_property
    def gates(self):
        """The layer's ``GateVariables`` for this switch (learned terms only; built once: the
        variables are the layer's own, fixed once it is built)."""
        return self.layer.gate_variables(self.index)


def cut_threshold(terms, budget, scores=None):
    """The budget-exact cut of one switch: its gate threshold.

    ``terms``: every traffic term of the switch (learned or not). Free
    learned gates are taken in order of falling logit (or of ``scores``:
    one (Cin, D) tensor per learned term) while their bytes fit in
    ``budget * dense - fixed`` (fixed: gates pinned open and open gates of
    non-learned layers); the threshold is the last logit
    taken, so ``logit >= threshold`` opens exactly those gates (a tie that
    would overflow the budget is left out whole). Differentiable nowhere,
    cheap (one sort of the switch's remote gates). Returns a float32
    scalar: +inf when nothing fits.
    """
    dense = sum(t.dense for t in terms)
    fixed = 0.0
    given = None if scores is None else iter(scores)
    scores, costs = [], []
    for t in terms:
        if not t.learned:
            fixed += t.positions * float((t.remote * t.layer.gate_values(t.index)).sum())
            continue
        gates = t.gates
        score = gates.scaled_logits() if given is None else next(given)
        logits = ops.reshape(score, (-1,))  # (Cin*D,)
        pins = ops.reshape(gates.pins, (-1,))
        remote = ops.cast(np.reshape(t.remote, (-1,)), "float32")
        free = ops.logical_and(ops.greater(remote, 0.0), ops.less(pins, 0.0))
        fixed = fixed + t.positions * ops.sum(remote * ops.cast(ops.equal(pins, 1.0), "float32"))
        # Gates that are not free sort last and cost nothing.
        scores.append(ops.where(free, ops.cast(logits, "float32"), -np.inf))
        costs.append(ops.where(free, float(t.positions), 0.0))
    scores = ops.concatenate(scores)  # (N,) every learned gate of the switch
    costs = ops.concatenate(costs)  # (N,) its bytes per element on the wire
    allowance = ops.cast(budget, "float32") * dense - fixed
    order = ops.flip(ops.argsort(scores))  # falling logit
    ranked = ops.take(scores, order)
    taken = ops.logical_and(
        ops.less_equal(ops.cumsum(ops.take(costs, order)), allowance + 1e-6),
        ops.isfinite(ranked),
    )
    threshold = ops.min(ops.where(taken, ranked, np.inf))
    # A tie at the threshold opens the whole tie group: if its bytes do not
    # fit, cut above it instead.
    over = ops.sum(ops.where(ops.greater_equal(scores, threshold), costs, 0.0)) > allowance + 1e-6
    above = ops.min(ops.where(ops.greater(scores, threshold), scores, np.inf))
    return ops.where(over, above, threshold)


def set_threshold(terms, threshold) -> None:
    """Every learned term's gates open at ``logit >= threshold``."""
    for t in terms:
        if t.learned:
            t.gates.threshold.assign(threshold)


def ranking_scores(terms, ranking: GateRanking) -> list:
    """(Cin, D) score of every gate of each term, as ``ranking`` ranks them
    (``terms``: learned ones only)."""
    if ranking.score == "logits":
        return [t.gates.scaled_logits() for t in terms]
    if ranking.score == "ema":
        return [ops.convert_to_tensor(t.gates.ema) for t in terms]
    scores = []
    for t in terms:
        norms = t.layer.gate_weight_norms(t.index)  # (Cin, D)
        remote = ops.cast(t.remote, "float32")
        # Relative to the layer's mean remote norm: layers differ in fan-in.
        mean = ops.sum(norms * remote) / max(float(t.remote.sum()), 1.0)
        scores.append(ops.stop_gradient(norms / ops.maximum(mean, 1e-12)))
    return scores


def held_cut(terms, budget, ranking: GateRanking, training, step, schedule) -> None:
    """The cut of a GateRanking that holds its decision (gate states).

    ``terms``: every traffic term of the switch (learned or not); ``step``:
    the budget step (a tensor); ``schedule``: the BudgetSchedule (its
    ``end_step`` for ``freeze_after_anneal``).
    """
    learned = [t for t in terms if t.learned]
    if not learned:
        return
    if ranking.score == "ema" and training:
        for t in learned:
            gates = t.gates
            gates.ema.assign(ranking.ema_decay * ops.convert_to_tensor(gates.ema)
                             + (1.0 - ranking.ema_decay) * ops.stop_gradient(gates.scaled_logits()))
    scores = ranking_scores(learned, ranking)
    ranked, opened = [], []
    for t, score in zip(learned, scores):
        gates = t.gates
        state = ops.convert_to_tensor(gates.state)  # (Cin, D): -1 not cut yet, 0/1 held
        threshold = ops.convert_to_tensor(gates.threshold)
        open_now = ops.where(ops.less(state, 0.0),
                             ops.cast(ops.greater_equal(gates.scaled_logits(), threshold), "float32"), state)
        score = ops.cast(score, "float32")
        if ranking.score == "weight_norm":
            # Prune-only: a shut gate's entries stopped training; it stays shut.
            score = ops.where(ops.equal(state, 0.0), -np.inf, score)
        ranked.append(score + ranking.hysteresis * open_now)
        opened.append(state)
    cut = cut_threshold(terms, budget, ranked)
    step = ops.convert_to_tensor(step)
    due = ops.equal(ops.mod(step, ranking.recut_every), 0)
    if ranking.freeze_after_anneal:
        # Cuts while annealing, and once more at the step where the budget
        # reaches its target: the set frozen from then on meets the target
        # (a cut one step earlier saw a larger budget: with a short anneal,
        # or a recut period that skips end_step, far larger).
        end = schedule.end_step
        due = ops.logical_or(ops.logical_and(due, ops.less(step, end)), ops.equal(step, end))
    for t, score, state in zip(learned, ranked, opened):
        gates = t.gates
        # The first call cuts whatever the schedule says (no decision yet);
        # inference never changes a decision.
        now = ops.logical_or(ops.logical_and(due, training), ops.less(ops.min(state), 0.0))
        # (Cin, D): 1 for the remote gates the cut opens (local entries are
        # always received and carry no decision).
        decision = ops.cast(ops.greater_equal(score, cut), "float32") * ops.cast(t.remote, "float32")
        gates.state.assign(ops.where(now, decision, state))
        if ranking.learns_logits:
            # The relaxation's centre (its gradient is largest for gates near the cut).
            gates.threshold.assign(ops.where(now, ops.cast(cut, "float32"), ops.convert_to_tensor(gates.threshold)))


def decide(terms, budget, ranking: GateRanking) -> None:
    """Holds the top of ``ranking``'s scores that fits ``budget`` as every
    learned term's decision (gate states), whatever was held before.
    ``terms``: every traffic term of the switch (learned or not)."""
    learned = [t for t in terms if t.learned]
    scores = ranking_scores(learned, ranking)
    cut = cut_threshold(terms, budget, scores)
    for t, score in zip(learned, scores):
        decision = ops.cast(ops.greater_equal(score, cut), "float32") * ops.cast(t.remote, "float32")
        t.gates.state.assign(decision)


def link_cut(terms, switch_link, budget_seconds) -> None:
    """One threshold per layer (the layers hold one per switch): the price
    cut of link_budget.py at each device's time budget ``budget_seconds`` (D,).
    ``terms``: the switch's learned terms (the SwitchLink prices the others)."""
    gates = [t.gates for t in terms]
    logits = [g.scaled_logits() for g in gates]  # (Cin, D) each
    pins = [g.pins for g in gates]
    thresholds = switch_link.layer_thresholds(logits, pins, budget_seconds)  # (T,)
    for n, g in enumerate(gates):
        g.threshold.assign(thresholds[n])
