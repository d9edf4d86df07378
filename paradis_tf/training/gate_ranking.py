"""GateRanking: what a budget cut ranks the gates by, and when it may change them.

While a switch trains under a byte budget, ``SplitModel`` keeps open the
top-ranked remote gates whose bytes fit the annealed budget (the cut). The
default ranks by the current gate logits, cuts again at every step while the
budget anneals, and keeps the set cut when the budget reaches its target for
the rest of training (``freeze_after_anneal=True``): with the budget reached
early (a tenth of the steps, as ``paradis train`` schedules it), the weights
then train long against one fixed structure. In ``bench/accuracy_comm.py``
that beat cutting at every step over a budget annealed for half the run (the
default before) by 1.9 pt of top-1 in the narrow regime (5 paired seeds,
95 % interval +0.6 to +3.2 pt; docs/results/accuracy_comm.md lists every
ranking tried and its interval):

* ``score="ema"``: rank by a moving average of the logits, so one noisy
  step cannot swap gates;
* ``score="weight_norm"``: rank by the L2 norm of the kernel entries each
  gate carries (relative to the layer's mean), no logits at all; prune-only,
  as in gradual magnitude pruning: a gate the cut has shut stays shut (its
  entries no longer train, so their norm would be stale);
* ``recut_every=K``: the open set changes only every K steps, so the weights
  train against a fixed structure in between;
* ``hysteresis=m``: an open gate keeps ``m`` (in score units) over a shut
  one: a shut gate replaces an open one only when it beats it by ``m``;
* ``freeze_after_anneal=False``: the cut is made again at every step (or
  every ``recut_every``) after the budget reached its target, so the open
  set may keep changing;
* ``penalty="count"``: the expected-traffic penalty counts gates alike
  instead of weighting each by its bytes.
"""

from __future__ import annotations

import dataclasses

import keras

__all__ = ["GateRanking", "GATE_SCORES", "GATE_PENALTIES"]

GATE_SCORES = ("logits", "ema", "weight_norm")
GATE_PENALTIES = ("bytes", "count")


@keras.saving.register_keras_serializable(package="paradis_tf")
@dataclasses.dataclass(frozen=True)
class GateRanking:
    """How the budget cut ranks remote gates while training (see module).

    Args:
        score: ``"logits"``, ``"ema"`` or ``"weight_norm"``.
        recut_every: steps between cuts, >= 1 (1: every step).
        hysteresis: score bonus of the gates open now, >= 0.
        freeze_after_anneal: keep the open set once the budget schedule ends
            (default True).
        ema_decay: decay of the logits' moving average (``score="ema"``), in (0, 1).
        penalty: ``"bytes"`` (each gate weighted by what it sends) or ``"count"``.
    """

    score: str = "logits"
    recut_every: int = 1
    hysteresis: float = 0.0
    freeze_after_anneal: bool = True
    ema_decay: float = 0.99
    penalty: str = "bytes"

    def __post_init__(self):
        if self.score not in GATE_SCORES:
            raise ValueError(f"GateRanking.score must be one of {list(GATE_SCORES)}, received {self.score!r}.")
        if isinstance(self.recut_every, bool) or not isinstance(self.recut_every, int) or self.recut_every < 1:
            raise ValueError(f"GateRanking.recut_every must be an int >= 1, received {self.recut_every!r}.")
        if isinstance(self.hysteresis, bool) or not isinstance(self.hysteresis, (int, float)) or self.hysteresis < 0:
            raise ValueError(f"GateRanking.hysteresis must be a number >= 0, received {self.hysteresis!r}.")
        if not isinstance(self.freeze_after_anneal, bool):
            raise ValueError(
                f"GateRanking.freeze_after_anneal must be True or False, received {self.freeze_after_anneal!r}."
            )
        decay = self.ema_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise ValueError(f"GateRanking.ema_decay must be in (0, 1), received {self.ema_decay!r}.")
        if self.penalty not in GATE_PENALTIES:
            raise ValueError(
                f"GateRanking.penalty must be one of {list(GATE_PENALTIES)}, received {self.penalty!r}."
            )
        object.__setattr__(self, "hysteresis", float(self.hysteresis))
        object.__setattr__(self, "ema_decay", float(self.ema_decay))

    @property
    def holds_state(self) -> bool:
        """Whether the cut's decision is held between steps (anything but
        logits cut at every step with no hysteresis and no freeze)."""
        return (self.score != "logits" or self.recut_every > 1 or self.hysteresis > 0
                or self.freeze_after_anneal)

    @property
    def learns_logits(self) -> bool:
        """Whether the ranking reads the gate logits (else they are not trained
        and the expected-traffic penalty is not applied)."""
        return self.score != "weight_norm"

    @classmethod
    def coerce(cls, value) -> "GateRanking":
        if value is None:
            return cls()
        if isinstance(value, GateRanking):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"gate_ranking must be a GateRanking, its config dict or None, received {value!r}.")

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "GateRanking":
        return cls(**config)
