"""budget_cut on hand-set logits: the cut opens the top gates that fit the
budget, a tie is taken whole or not at all, pins count as fixed bytes, and
``decide`` holds a ranking's top set."""

import numpy as np
from keras import ops

from paradis_tf.layers import SplitConv2D
from paradis_tf.training import GateRanking
from paradis_tf.training.budget_cut import TrafficTerm, cut_threshold, decide, set_threshold


def _terms(logits_a, logits_b):
    """Two 1x1 convs of 2x0.5 on 4 channels: positions 16 (4x4) and 4 (2x2)."""
    terms = []
    for name, hw, logits in (("a", 4, logits_a), ("b", 2, logits_b)):
        layer = SplitConv2D(4, 1, "1x1.0,2x0.5", name=name)
        layer.build((None, hw, hw, 4))
        gates = layer.gate_variables("2x0.5")
        gates.logits.assign(np.asarray(logits, "float32") / gates.logit_scale)
        terms.append(TrafficTerm(layer, 1, hw * hw, layer.remote_mask("2x0.5")))
    return terms


def _fixed_open():
    """A third 1x1 conv whose gates are open in 2x0.5 (not learned): 4 remote
    entries at 4 positions, 16 B the budget pays before any learned gate."""
    layer = SplitConv2D(4, 1, "1x1.0,2x0.5", gates="open", name="c")
    layer.build((None, 2, 2, 4))
    return TrafficTerm(layer, 1, 4, layer.remote_mask("2x0.5"))


def _open_bytes(terms):
    return sum(t.positions * float((t.remote * t.layer.gate_values(t.index)).sum()) for t in terms)


# Remote entries of a (4, 2) gate matrix: channels 0-1 to device 1, 2-3 to device 0.
A = [[0, 9], [0, 5], [1, 0], [7, 0]]  # remote logits 9, 5, 1, 7 at 16 B per element each
B = [[0, 8], [0, 6], [4, 0], [2, 0]]  # remote logits 8, 6, 4, 2 at 4 each


def test_the_cut_opens_the_top_logits_that_fit():
    terms = _terms(A, B)
    dense = sum(t.dense for t in terms)  # 4 * 16 + 4 * 4 = 80
    assert dense == 80
    # 0.5 * 80 = 40: 9 (16), 8 (4), 7 (16) -> 36; then 6 (4) -> 40 fits; 5 (16) does not.
    threshold = float(ops.convert_to_numpy(cut_threshold(terms, 0.5)))
    assert threshold == 6.0
    set_threshold(terms, threshold)
    assert _open_bytes(terms) == 40
    # 0.25 * 80 = 20: 9 (16) and 8 (4).
    assert float(ops.convert_to_numpy(cut_threshold(terms, 0.25))) == 8.0
    # The cut is a prefix of the ranking: under 16 B nothing opens, not even
    # B's 4 B gates below the top one.
    assert np.isinf(float(ops.convert_to_numpy(cut_threshold(terms, 0.1))))


def test_a_fixed_layer_counts_its_dense_bytes_and_its_open_gates_first():
    terms = _terms(A, B) + [_fixed_open()]
    assert sum(t.dense for t in terms) == 96
    # 0.5 * 96 - 16 = 32: 9 (16) and 8 (4) fit; 7 (16) would make 36.
    assert float(ops.convert_to_numpy(cut_threshold(terms, 0.5))) == 8.0
    decide(terms, 0.5, GateRanking(score="logits", recut_every=10))
    assert _open_bytes(terms) == 36  # 20 learned + 16 fixed <= 48


def test_a_tie_that_overflows_is_left_out_whole_and_pins_are_fixed_bytes():
    terms = _terms([[0, 3], [0, 3], [3, 0], [3, 0]], B)  # four gates of 16 B tied at 3
    # 0.5 * 80 = 40: 8 + 6 + 4 (12 B) fit; the tie at 3 would add 64: cut above it.
    assert float(ops.convert_to_numpy(cut_threshold(terms, 0.5))) == 4.0
    # 0.975 * 80 = 78: the whole tie fits (12 + 64 = 76), 2 (4 B) does not.
    assert float(ops.convert_to_numpy(cut_threshold(terms, 0.975))) == 3.0
    # A gate pinned open is paid first: 40 - 16 leaves 24 for the free gates.
    pins = np.full((4, 2), -1.0, "float32")
    pins[0, 1] = 1.0
    terms[0].layer.pin_gates(1, pins)
    assert float(ops.convert_to_numpy(cut_threshold(terms, 0.5))) == 4.0
    assert float(ops.convert_to_numpy(cut_threshold(terms, 0.3))) == 6.0  # 24 - 16: 8 and 6 fit (8 B)


def test_decide_holds_the_top_of_a_rankings_scores():
    terms = _terms(A, B)
    decide(terms, 0.5, GateRanking(score="logits", recut_every=10))
    held = [ops.convert_to_numpy(t.gates.state) for t in terms]
    np.testing.assert_array_equal(held[0], [[0, 1], [0, 0], [0, 0], [1, 0]])  # 9 and 7
    np.testing.assert_array_equal(held[1], [[0, 1], [0, 1], [0, 0], [0, 0]])  # 8 and 6
    assert _open_bytes(terms) == 40  # the held states are what the layers use
