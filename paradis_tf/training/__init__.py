"""Multi-switch training: SplitModel (train step, budgets, distillation,
finalization, batch-norm recalibration), its schedule, the budget cut
(budget_cut: which gates a step opens) and the gate ranking it uses, the
sandwich rule (which switches a step runs), a validation callback that
recalibrates batch norm first, the Link budget (a traffic budget in time on a
link, latency included), and the Task (what the output is: loss,
distillation, metric)."""

from paradis_tf.training.budget_schedule import BudgetSchedule
from paradis_tf.training.gate_ranking import GateRanking
from paradis_tf.training.link_budget import Link, LinkCost, LinkRatio
from paradis_tf.training.recalibrated_validation import RecalibratedValidation
from paradis_tf.training.sandwich import Sandwich
from paradis_tf.training.split_model import SplitModel
from paradis_tf.training.task import Task

__all__ = [
    "BudgetSchedule", "GateRanking", "Link", "LinkCost", "LinkRatio", "RecalibratedValidation", "Sandwich",
    "SplitModel", "Task",
]
