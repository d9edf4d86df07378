"""Sandwich: which switches a training step runs (the sandwich rule).

By default ``SplitModel`` runs every switch in every step, so a step costs
the sum of all switches' forward and backward passes: a checkpoint serving
ten switches trains about ten times slower than one. The sandwich rule of
slimmable networks (Yu & Huang, "Universally slimmable networks", 2019)
runs in each step the widest switch (the teacher: trained on the labels,
distilled into the others), the narrowest (the last of the ``SwitchSet``
order: the smallest total width, the most devices), and ``middle`` of the
other switches; the widest and the narrowest bound what every switch in
between sees, so a few samples of the middle suffice.

The middle switches are drawn as windows of ``middle`` consecutive ones
(in ``SwitchSet`` order, wrapping around), in rounds: each round runs every
window once, in an order shuffled by ``seed``; so over a round every middle
switch gets exactly ``middle / (number of middle switches)`` of the steps.
Each window is one traced train function (Keras traces a step once per
window, the first time it runs), so a step computes only the switches it
trains: what saves the time, on every backend.

A switch not run in a step is left as it is: no loss, no batch-norm
statistics, no metric update, and no optimizer step for its private
weights (batch-norm scale and offset), whose moments stay as they were on
both backends (JAX: training/_jax_window_step.py). The byte-budget penalty
of every budgeted switch still applies each step (it reads only gate
logits). An optimizer that accumulates gradients over steps is refused:
each step runs another window.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np

__all__ = ["Sandwich"]


@keras.saving.register_keras_serializable(package="paradis_tf")
@dataclasses.dataclass(frozen=True)
class Sandwich:
    """Per step: the widest switch, the narrowest, and ``middle`` others.

    Args:
        middle: how many of the switches between the widest and the narrowest
            each step runs, an int >= 0 (at least their number: all of them,
            which is the default training).
        seed: the seed of the order in which each round runs the windows.
    """

    middle: int = 1
    seed: int = 0

    def __post_init__(self):
        for name in ("middle", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Sandwich.{name} must be an int >= 0, received {value!r}.")

    def windows(self, names: Sequence[str]) -> tuple:
        """The sets of switch names the steps run, each in ``names``' order.

        ``names``: the ``SwitchSet`` names, widest first, narrowest last. One
        set (all names) when there is no middle to sample.
        """
        names = tuple(names)
        inner = names[1:-1]  # the middle switches: (M,)
        if len(names) <= 2 or self.middle >= len(inner):
            return (names,)
        windows = []
        for start in range(len(inner) if self.middle else 1):
            # Window of `middle` consecutive middle switches, wrapping around.
            picked = {inner[(start + j) % len(inner)] for j in range(self.middle)}
            windows.append((names[0],) + tuple(n for n in inner if n in picked) + (names[-1],))
        return tuple(windows)

    def schedule(self, count: int):
        """An endless iterator of window indices in ``range(count)``: rounds,
        each a permutation drawn from ``seed``."""
        rng = np.random.default_rng(self.seed)
        while True:
            yield from (int(i) for i in rng.permutation(count))

    @classmethod
    def coerce(cls, value) -> "Sandwich | None":
        if value is None or isinstance(value, Sandwich):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"sandwich must be a Sandwich, its config dict or None, received {value!r}.")

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "Sandwich":
        return cls(**config)
