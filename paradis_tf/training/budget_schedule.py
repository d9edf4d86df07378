"""BudgetSchedule: how a traffic budget is annealed from 1.0 to its target."""

from __future__ import annotations

import numbers

import keras
from keras import ops

__all__ = ["BudgetSchedule"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class BudgetSchedule:
    """Polynomial annealing of a switch's traffic budget (like a pruning schedule).

    ``budget(step) = target + (1 - target) * (1 - p) ** power`` with
    ``p = clip((step - begin_step) / (end_step - begin_step), 0, 1)``: dense
    tensor parallelism (1.0) at ``begin_step``, the target from ``end_step``
    on; ``power > 1`` cuts most traffic early, while the network still adapts
    easily.

    Args:
        begin_step: training step (batches) where annealing starts, >= 0.
        end_step: step where the target is reached, > begin_step.
        power: polynomial power, >= 1 (1 is linear).
    """

    def __init__(self, begin_step: int = 0, end_step: int = 1000, power: float = 3.0):
        for name, value in (("begin_step", begin_step), ("end_step", end_step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, received {value!r}.")
        if end_step <= begin_step:
            raise ValueError(
                f"end_step must be greater than begin_step, received begin_step={begin_step}, "
                f"end_step={end_step}."
            )
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or not 1.0 <= power < float("inf"):
            raise ValueError(f"power must be a finite number >= 1, received {power!r}.")
        self.begin_step = begin_step
        self.end_step = end_step
        self.power = float(power)

    def progress(self, step):
        """Annealing progress in [0, 1] at ``step`` (a tensor or a number)."""
        step = ops.cast(step, "float32")
        p = (step - self.begin_step) / float(self.end_step - self.begin_step)
        return ops.clip(p, 0.0, 1.0)

    def __call__(self, step, target):
        """The budget at ``step`` for a switch whose final budget is ``target``."""
        remaining = (1.0 - self.progress(step)) ** self.power
        return target + (1.0 - target) * remaining

    def get_config(self) -> dict:
        return {"begin_step": self.begin_step, "end_step": self.end_step, "power": self.power}

    @classmethod
    def from_config(cls, config: dict) -> "BudgetSchedule":
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, BudgetSchedule) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"BudgetSchedule(begin_step={self.begin_step}, end_step={self.end_step}, power={self.power})"
