"""GateVariables: the state of one learned switch's gates in a split layer,
the seam a budget cut reads and writes (``SplitLinearLayer.gate_variables``)."""

from __future__ import annotations

import dataclasses

import keras

__all__ = ["GateVariables"]


# eq=False: Keras variables compare elementwise and do not hash.
@dataclasses.dataclass(frozen=True, eq=False)
class GateVariables:
    """The Keras variables behind one switch's learned gates (all ``(Cin, D)``
    but ``threshold``, a scalar). A free gate is open when its scaled logit
    is at least ``threshold``, unless ``state`` holds a decision; ``pins``
    override both.

    Attributes:
        logits: trainable; holds logit / ``logit_scale``.
        pins: -1 free, 0 pinned shut, 1 pinned open (``pin_gates``).
        threshold: the current cut on the scaled logits (0 for a layer on its
            own; a budgeted SplitModel sets it every step).
        state: a decision held between cuts (``GateRanking`` other than the
            default): 1 open, 0 shut; -1 follows the threshold.
        ema: moving average of the scaled logits (``GateRanking(score="ema")``).
        logit_scale: ``GateConfig.logit_scale`` of the layer.
    """

    logits: keras.Variable
    pins: keras.Variable
    threshold: keras.Variable
    state: keras.Variable
    ema: keras.Variable
    logit_scale: float

    def scaled_logits(self):
        """The logits the cut ranks and the forward pass thresholds (a
        tensor, differentiable in ``logits``)."""
        return self.logits * self.logit_scale
