"""Multi-switch training: SplitModel (train step, budgets, distillation,
finalization, batch-norm recalibration), its schedule, and a validation
callback that recalibrates batch norm first, and the Link budget (a traffic
budget in time on a link, latency included)."""

from paradis_tf.training.budget_schedule import BudgetSchedule
from paradis_tf.training.link_budget import Link, LinkCost, LinkRatio
from paradis_tf.training.recalibrated_validation import RecalibratedValidation
from paradis_tf.training.split_model import SplitModel

__all__ = ["BudgetSchedule", "Link", "LinkCost", "LinkRatio", "RecalibratedValidation", "SplitModel"]
