"""Multi-switch training: SplitModel (train step, budgets, distillation,
finalization, batch-norm recalibration) and its schedule."""

from paradis_tf.training.budget_schedule import BudgetSchedule
from paradis_tf.training.split_model import SplitModel

__all__ = ["BudgetSchedule", "SplitModel"]
