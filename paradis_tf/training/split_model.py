"""SplitModel: one functional model, one output per switch, one set of weights.

``fit`` trains every switch in each step (ParaDiS; with a ``Sandwich``, the
widest, the narrowest and a few of the others per step): the widest switch (the
teacher) on the labels; every other switch on the labels plus the teacher's
detached predictions (in-place distillation); and, for each switch with a
traffic budget, a penalty that drives its expected traffic ratio (bytes over
dense tensor-parallel bytes, gates weighted by their sigmoid) down to a budget
annealed from 1.0 to the target (DISCO). The gates in use meet the current
budget exactly at every step (the top gate logits that fit, one cut per
switch), so what training learns is which channels are worth their bytes.
A budget may also be a ``Link`` (bandwidth and latency): it charges time,
latency included, for every exchange point a device uses, so the gates
gather traffic in few layers (see ``link_budget.py``). After training,
``finalize_gates`` pins that cut, and ``recalibrate_batch_norm`` recomputes
every switch's batch-norm statistics.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import warnings
from typing import Mapping, Optional, Union

import numpy as np
import keras
from keras import ops

from paradis_tf.graph_walk import layer_calls
from paradis_tf.layers._base import SplitLinearLayer
from paradis_tf.layers.switchable_batch_normalization import SwitchableBatchNormalization
from paradis_tf.switches import SwitchSet
from paradis_tf.training._jax_window_step import window_train_step
from paradis_tf.training._odd_batch import even_batch, needs_even_batches
from paradis_tf.training import budget_cut
from paradis_tf.training.budget_cut import TrafficTerm
from paradis_tf.training.budget_schedule import BudgetSchedule
from paradis_tf.training.gate_ranking import GateRanking
from paradis_tf.training.link_budget import Link, LinkCost, LinkRatio, LinkTerm, SwitchLink
from paradis_tf.training.sandwich import Sandwich
from paradis_tf.training.task import Task

__all__ = ["SplitModel"]


def _scale_for_distribution(value):
    """Divides by the replica count under tf.distribute (as Keras losses do):
    gradients are summed over replicas."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * (1.0 / replicas)
    return value


def _weighted_mean(values, sample_weight):
    values = ops.reshape(values, (ops.shape(values)[0], -1))
    values = ops.mean(values, axis=-1)  # (B,)
    if sample_weight is None:
        return ops.mean(values)
    w = ops.cast(ops.reshape(sample_weight, (-1,)), values.dtype)
    return ops.sum(values * w) / ops.maximum(ops.sum(w), 1e-12)


def _batch_weight(outputs, sample_weight):
    """What one batch's mean counts for in an epoch's mean: its size, or the
    sum of its sample weights."""
    if sample_weight is None:
        return ops.cast(ops.shape(outputs)[0], "float32")
    return ops.sum(ops.cast(sample_weight, "float32"))


def _atomic_write(filepath, overwrite, write):
    """Calls ``write(tmp)`` with a temporary path beside ``filepath`` (same
    file system, same extension), then renames it over ``filepath``."""
    filepath = os.fspath(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath} exists and overwrite=False.")
    folder, base = os.path.split(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    # Keep the full extension (".keras", ".weights.h5"): Keras checks it.
    stem, dot, ext = base.partition(".")
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}{dot}{ext}")
    try:
        write(tmp)
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _Plan:
    """Static, per-switch bookkeeping held outside Keras' attribute tracking."""

    def __init__(self, traffic, outputs):
        self.traffic = traffic  # {switch name: [TrafficTerm]}
        self.outputs = outputs  # {switch name: KerasTensor}
        self.switch_models = {}
        self.links = {}  # {(switch name, Link): SwitchLink}
        self.active = None  # names of the switches this trace runs (a Sandwich window), None: all
        self.unreached = {}  # {window: indices of the trainable variables its loss does not reach} (JAX)


@keras.saving.register_keras_serializable(package="paradis_tf")
class SplitModel(keras.Model):
    """A functional model with one output per switch, all sharing split layers.

    Build it like a functional model whose outputs are a dict keyed by switch
    name (subclasses such as ``CifarResNet`` build their graph in
    ``__init__``). Calling it returns every switch's output; ``switch_model``
    gives a plain Keras model of one switch, sharing the weights.

    Args:
        inputs: the ``keras.Input``.
        outputs: ``{switch name: output tensor}``, one entry per switch.
        switches: the SwitchSet (or its written form).
        task: a ``Task`` (what the output is; the label loss, distillation and
            per-switch metric compile uses); None is ``Task.classification()``.
    """

    def __init__(self, inputs, outputs, switches, task=None, **kwargs):
        switches = SwitchSet(switches)
        task = Task.coerce(task)
        if not isinstance(outputs, Mapping):
            raise ValueError(
                "outputs must be a dict {switch name: output tensor}, received "
                f"{type(outputs).__name__}."
            )
        by_name = {}
        for key, tensor in outputs.items():
            by_name[switches[key].name] = tensor
        missing = [n for n in switches.names if n not in by_name]
        if missing:
            raise ValueError(f"outputs has no entry for switches {missing}; give one per switch.")
        ordered = {n: by_name[n] for n in switches.names}
        super().__init__(inputs=inputs, outputs=ordered, **kwargs)
        self._switch_set = switches
        self._task = task
        # Counts training steps for the budget schedule; saved with the weights,
        # so BackupAndRestore resumes the schedule where it stopped.
        self.budget_step = keras.Variable(
            0, dtype="int32", trainable=False, name="budget_step", aggregation="only_first_replica"
        )
        self._plan = _Plan(self._collect_traffic(ordered), ordered)
        self._trackers = {}
        for name in switches.names:
            self._trackers[name] = {"loss": keras.metrics.Mean(name=f"{name}_loss")}
            if task.metric_name is not None:
                self._trackers[name]["metric"] = task.make_metric(name)
            if self._plan.traffic[name]:
                self._trackers[name]["comm"] = keras.metrics.Mean(name=f"{name}_comm")
        # A flat list attribute: Keras tracks these as the model's metrics.
        self._switch_metrics = [m for t in self._trackers.values() for m in t.values()]
        self._budgets = {}
        self._budget_trackers = {}
        self._time_trackers = {}

    # -- structure ------------------------------------------------------------
    @property
    def task(self) -> Task:
        """What the output is and how every switch learns it (see ``Task``)."""
        return self._task

    @property
    def switches(self) -> SwitchSet:
        return self._switch_set

    def _collect_traffic(self, ordered) -> dict:
        """Each switch's traffic terms, from a walk of its output's graph.

        Every split layer an output depends on must run that output's switch:
        a layer called by index (``switch=1``) runs its own set's switch 1,
        which need not be this model's switch 1, and the output (its gates and
        traffic too) would be another switch's.
        """
        shape = self.inputs[0].shape[1:]
        if any(s is None for s in shape):
            raise ValueError(
                f"SplitModel needs a fully known input shape to weigh traffic, received {tuple(shape)}."
            )
        traffic = {n: [] for n in self._switch_set.names}
        for name, tensor in ordered.items():
            for layer, switch, in_shape in layer_calls(keras.Model(self.inputs[0], tensor), shape):
                if not hasattr(layer, "switches"):
                    continue  # not a switched layer
                if switch is None:  # no switch= argument: the layer says whether it takes one
                    if isinstance(layer, SplitLinearLayer):
                        layer.switch_index(switch)
                    continue
                try:
                    runs = layer.switches[switch].name
                except ValueError as e:
                    raise ValueError(f"layer '{layer.name}' feeds the output of switch '{name}' but is called "
                                     f"with switch={switch!r}: {e}") from None
                if runs != name:
                    raise ValueError(
                        f"layer '{layer.name}' feeds the output of switch '{name}' but is called with "
                        f"switch={switch!r}, which is its switch '{runs}' (its switches: "
                        f"{', '.join(layer.switches.names)}); call the layers of each output with that "
                        f"output's switch, by name (switch='{name}')."
                    )
                if not isinstance(layer, SplitLinearLayer):
                    continue
                remote = layer.remote_mask(switch)
                if remote.any():
                    positions = int(np.prod(in_shape[1:-1]))
                    traffic[name].append(TrafficTerm(layer, layer.switch_index(switch), positions, remote))
        return traffic

    def switch_model(self, switch) -> keras.Model:
        """A plain Keras model of one switch (shares this model's weights).

        Its learned gates are as this model last set them: the budget cut of
        the last call (training step, evaluate, predict) or the pins of
        ``finalize_gates``.
        """
        name = self._switch_set[switch].name
        if name not in self._plan.switch_models:
            # Keras names cannot hold '/' (3x1/3); '+' is kept out for readability.
            safe = name.replace("+", "_").replace("/", "_")
            self._plan.switch_models[name] = keras.Model(
                self.inputs[0], self._plan.outputs[name], name=f"{self.name}_{safe}"
            )
        return self._plan.switch_models[name]

    def learned_switches(self) -> tuple:
        """Names of the switches with at least one learned gate."""
        return tuple(
            n for n, terms in self._plan.traffic.items()
            if any(t.learned for t in terms)
        )

    def unfinalized_switches(self) -> tuple:
        """Names of the learned switches whose remote gates are not all
        pinned: ``finalize_gates`` has not run (a checkpoint saved during
        training), so their gates are the cut of the moment, not a decision."""
        out = []
        for name in self.learned_switches():
            for t in self._plan.traffic[name]:
                if not t.learned:
                    continue
                pins = ops.convert_to_numpy(t.layer.gate_variables(t.index).pins)  # (Cin, D)
                if np.any((t.remote > 0) & (pins < 0)):
                    out.append(name)
                    break
        return tuple(out)

    # -- traffic --------------------------------------------------------------
    def _traffic_ratio(self, name, training=False, expected=False, count=False):
        """Sent / dense bytes of switch ``name``; ``count`` weighs every remote
        gate alike (a gate count, not bytes)."""
        terms = self._plan.traffic[name]
        dense = sum(float(t.remote.sum()) if count else t.dense for t in terms)
        sent = 0.0
        for t in terms:
            # (Cin, D): open-probabilities for a penalty, else the gates in use.
            gate = t.layer.gate_probabilities(t.index) if expected else t.layer.gate_matrix(t.index, training)
            weight = 1.0 if count else t.positions
            sent = sent + weight * ops.sum(ops.multiply(ops.cast(t.remote, "float32"), ops.cast(gate, "float32")))
        return sent / dense

    def _select_gates(self, name, budget, scores=None):
        """The budget-exact threshold of switch ``name`` (budget_cut.cut_threshold)."""
        return budget_cut.cut_threshold(self._plan.traffic[name], budget, scores)

    def _learned_terms(self, name) -> list:
        return [t for t in self._plan.traffic[name] if t.learned]

    def traffic_ratio(self, switch) -> Optional[float]:
        """Gated bytes / dense tensor-parallel bytes of a switch as deployed
        (binary gates); None for a switch without communication."""
        name = self._switch_set[switch].name
        if not self._plan.traffic[name]:
            return None
        return float(ops.convert_to_numpy(self._traffic_ratio(name)))

    def _switch_link(self, name, link: Link) -> SwitchLink:
        """The static exchange points of switch ``name`` on ``link`` (cached)."""
        key = (name, link)
        if key not in self._plan.links:
            terms = []
            for t in self._plan.traffic[name]:
                if t.learned:
                    terms.append(LinkTerm(t.positions, t.remote, temperature=t.layer.gates.temperature))
                else:
                    terms.append(LinkTerm(t.positions, t.remote, fixed_gate=t.layer.gate_values(t.index)))
            self._plan.links[key] = SwitchLink(link, terms, self._switch_set[name].num_devices)
        return self._plan.links[key]

    def link_cost(self, switch, link: Optional[Link] = None) -> LinkCost:
        """The modelled communication of a switch's gates as deployed
        (binary: the last cut or the pins) on a link: per device its time,
        target, exchange points and bytes received.

        Args:
            switch: index, name or Switch.
            link: a ``Link``; default the switch's compiled Link budget.
        """
        name = self._switch_set[switch].name
        if link is None:
            link = self._budgets.get(name)
            if not isinstance(link, Link):
                raise ValueError(
                    f"link_cost: switch '{name}' has no compiled Link budget (its budget: {link!r}); pass link=."
                )
        if not isinstance(link, Link):
            raise ValueError(f"link must be a Link, received {link!r}.")
        if not self._plan.traffic[name]:
            raise ValueError(f"link_cost: switch '{name}' does not communicate (one device, or no split layer).")
        terms = self._plan.traffic[name]
        return self._switch_link(name, link).cost([t.layer.gate_values(t.index) for t in terms])

    # -- compile --------------------------------------------------------------
    def compile(
        self,
        optimizer="adam",
        loss=None,
        budget: Union[None, float, Link, Mapping[str, Union[float, Link]]] = None,
        budget_schedule: Optional[BudgetSchedule] = None,
        distillation_weight: float = 1.0,
        comm_weight: float = 4.0,
        gate_ranking: Optional[GateRanking] = None,
        sandwich: Optional[Sandwich] = None,
        metrics=None,
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: as ``keras.Model.compile``.
            loss: per-switch task loss on the labels, a ``keras.losses.Loss``
                (default: the task's, e.g. sparse categorical cross-entropy
                from logits for classification).
            budget: target traffic ratio in (0, 1] for every switch with learned
                gates, or a ``Link`` (a time per device on a link, latency
                of every exchange point included), or ``{switch: ratio or
                Link}``; None trains without a penalty.
            budget_schedule: a ``BudgetSchedule`` (default: reach the target at
                step 1000). A Link budget anneals each device's time from
                its dense tensor-parallel time to its target.
            distillation_weight: weight of the students' distillation loss
                (the task's: soft cross-entropy to the teacher's detached
                predictions for logits, squared error for regression heads).
            comm_weight: weight of the penalty ``relu(expected - budget)`` on
                the expected traffic ratio (each remote gate weighted by the
                sigmoid of its logit). For a Link: on each device's expected
                time over its budget, in units of its dense time, averaged
                over devices (see ``link_budget.py``).
            gate_ranking: what the byte-budget cut ranks gates by and when it
                may change them (``GateRanking``; default: the logits, cut
                at every step until the budget reaches its target, that set
                kept from then on; reach it early, e.g. after a tenth of the
                steps). Link budgets always rank by logits.
            sandwich: which switches each step runs (``Sandwich``: the
                widest, the narrowest and ``middle`` others, so a step
                costs a few switches, not all); None runs every switch in
                every step.
        """
        if metrics:
            raise ValueError(
                "SplitModel logs per-switch loss, the task's metric and traffic itself; "
                f"metrics= is not supported, received {metrics!r}."
            )
        asked = loss
        if loss is None:
            loss = self._task.loss
        elif isinstance(loss, str):
            loss = keras.losses.get(loss)
        if not isinstance(loss, keras.losses.Loss):
            # A name such as "mse" resolves to a function, which gives no
            # per-example values to weigh: the Loss class does.
            raise ValueError(
                f"loss must be a keras.losses.Loss instance (e.g. keras.losses.MeanSquaredError()), or None for "
                f"the task's loss; received {asked!r}."
            )
        for name, value in (("distillation_weight", distillation_weight), ("comm_weight", comm_weight)):
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, received {value!r}.")
        if budget_schedule is None:
            budget_schedule = BudgetSchedule()
        elif isinstance(budget_schedule, Mapping):
            budget_schedule = BudgetSchedule.from_config(budget_schedule)
        elif not isinstance(budget_schedule, BudgetSchedule):
            raise ValueError(f"budget_schedule must be a BudgetSchedule, received {budget_schedule!r}.")
        self._budgets = self._resolve_budgets(budget)
        self._task_loss = loss
        self._budget_schedule = budget_schedule
        self._distillation_weight = float(distillation_weight)
        self._comm_weight = float(comm_weight)
        self._gate_ranking = GateRanking.coerce(gate_ranking)
        sandwich = Sandwich.coerce(sandwich)
        optimizer = keras.optimizers.get(optimizer)
        if sandwich is not None and getattr(optimizer, "gradient_accumulation_steps", None):
            # Each accumulated step would run another window: at the update step
            # a left-out switch's sum is dropped (TensorFlow) or carried into the
            # next cycle (JAX), so neither averages what the steps computed.
            raise ValueError(
                f"sandwich={sandwich!r} cannot train with an optimizer that accumulates gradients "
                f"(gradient_accumulation_steps={optimizer.gradient_accumulation_steps}): each step runs "
                "another window of switches. Use a larger batch instead, or no sandwich."
            )
        self._sandwich = sandwich
        # A Link budget logs milliseconds: the slowest device's annealed budget
        # and modelled time (its byte ratio is still the _comm metric).
        self._budget_trackers = {
            name: keras.metrics.Mean(name=f"{name}_budget_ms" if isinstance(b, Link) else f"{name}_budget")
            for name, b in self._budgets.items()
        }
        self._time_trackers = {
            name: keras.metrics.Mean(name=f"{name}_time_ms") for name, b in self._budgets.items() if isinstance(b, Link)
        }
        self._compile_args = {
            "loss": keras.losses.serialize(loss),
            "budget": {
                name: keras.saving.serialize_keras_object(b) if isinstance(b, Link) else b
                for name, b in self._budgets.items()
            } if self._budgets else None,
            "budget_schedule": budget_schedule.get_config(),
            "distillation_weight": self._distillation_weight,
            "comm_weight": self._comm_weight,
            "gate_ranking": self._gate_ranking.get_config(),
            "sandwich": None if self._sandwich is None else self._sandwich.get_config(),
        }
        super().compile(optimizer=optimizer, loss=None, **kwargs)
        self.train_function = None  # a new sandwich (or none) needs new train functions

    def make_train_function(self, force=False):
        """The backend's train function; with a ``Sandwich``, one per window of
        switches (each traced the first time it runs, with only those
        switches in its graph) and a dispatcher that runs them in the
        sandwich's order."""
        if self.train_function is not None and not force:
            return self.train_function
        sandwich = getattr(self, "_sandwich", None)
        windows = sandwich.windows(self._switch_set.names) if sandwich is not None else ()
        if len(windows) <= 1:
            super().make_train_function(force=True)
            return self.train_function
        plan = self._plan
        plan.unreached.clear()  # new functions, perhaps new trainable variables: read the windows again
        functions = []
        for n in range(len(windows)):
            # A distinct step function per window: JAX's jit caches a trace by
            # its function, and two bound methods of one object compare equal,
            # so every window would run the first window's trace.
            def window_step(*args, _window=n, **kwargs):
                return type(self).train_step(self, *args, **kwargs)

            self.train_step = window_step  # the instance attribute shadows the method while Keras builds
            try:
                super().make_train_function(force=True)
            finally:
                del self.train_step
            functions.append(self.train_function)
        order = sandwich.schedule(len(windows))

        def train_function(*args, **kwargs):
            n = next(order)
            # Read while the window's function traces (call, compute_loss),
            # so each trace holds only its window's switches.
            plan.active = windows[n]
            try:
                with warnings.catch_warnings():
                    # Expected: the switch-private weights (batch-norm scales) of
                    # the switches a window leaves out get no gradient.
                    warnings.filterwarnings("ignore", message="Gradients do not exist for variables")
                    return functions[n](*args, **kwargs)
            finally:
                plan.active = None

        self.train_function = train_function
        return train_function

    def _resolve_budgets(self, budget) -> dict:
        if budget is None:
            return {}
        learned = self.learned_switches()
        if isinstance(budget, Mapping):
            items = {}
            for key, value in budget.items():
                try:
                    name = self._switch_set[key].name
                except ValueError as e:
                    raise ValueError(f"budget: {e}") from None
                if name not in learned:
                    raise ValueError(
                        f"budget names switch '{name}', which has no learned gates (modes open/shut "
                        f"or a single device): a budget would change nothing. Switches with learned "
                        f"gates: {list(learned)}."
                    )
                items[name] = value
        else:
            if not learned:
                raise ValueError(
                    f"budget={budget!r} but no switch of {list(self._switch_set.names)} has learned gates."
                )
            items = {name: budget for name in learned}
        return {name: self._budget_value(name, value) for name, value in items.items()}

    @staticmethod
    def _budget_value(name, value) -> Union[float, Link]:
        if isinstance(value, Link):
            return value
        if isinstance(value, Mapping) and value and set(value) <= {f.name for f in dataclasses.fields(Link)}:
            try:
                return Link.from_config(value)  # Link.get_config(), e.g. from JSON
            except (TypeError, ValueError) as e:
                raise ValueError(f"budget for switch '{name}': {e}") from None
        if isinstance(value, Mapping):
            # A Link as a compile config saves it (keras.saving.serialize_keras_object).
            try:
                link = keras.saving.deserialize_keras_object(dict(value))
            except (TypeError, ValueError) as e:
                raise ValueError(f"budget for switch '{name}': {e}") from None
            if not isinstance(link, Link):
                raise ValueError(
                    f"budget for switch '{name}' must be a traffic ratio in (0, 1] or a Link, received {value!r}."
                )
            return link
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1:
            raise ValueError(
                f"budget for switch '{name}' must be a traffic ratio in (0, 1] or a Link, received {value!r}."
            )
        return float(value)

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {"optimizer": keras.optimizers.serialize(self.optimizer), **self._compile_args}

    def compile_from_config(self, config):
        config = dict(config)
        optimizer = keras.optimizers.deserialize(config.pop("optimizer"))
        loss = keras.losses.deserialize(config.pop("loss"))
        self.compile(optimizer=optimizer, loss=loss, **config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # -- the training objective ----------------------------------------------
    def train_step(self, *args, **kwargs):
        if needs_even_batches():
            # TensorFlow's oneDNN kernels crash the process on an odd training
            # batch (see training/_odd_batch.py): train on an even one.
            # TensorFlow's train_step(data); JAX's is not guarded (no crash).
            args = (even_batch(args[0]),) + args[1:]
        if self._plan.active is not None and keras.backend.backend() == "jax":
            # A Sandwich window on JAX: the switches it leaves out get no
            # optimizer step (their zero gradients would still move Adam).
            return window_train_step(self, super().train_step, self._plan.unreached, *args, **kwargs)
        return super().train_step(*args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        self._apply_budget_cut(training=bool(training))
        active = self._plan.active
        if active is None or not training:
            return super().call(inputs, training=training, mask=mask)
        # A Sandwich window: only its switches' sub-graphs (each switch's
        # path from the input is its own; they share weights, not tensors).
        return {name: self.switch_model(name)(inputs, training=training) for name in active}

    def _apply_budget_cut(self, training=False):
        # Budgeted switches open the top gates that fit the current annealed
        # budget: set their thresholds from the logits as they are now (after
        # the last optimizer step); another GateRanking holds its decision
        # between cuts (_held_cut).
        if self._budgets and getattr(self, "_budget_schedule", None) is not None:
            ranking = getattr(self, "_gate_ranking", GateRanking())
            for name, target in self._budgets.items():
                if isinstance(target, Link):
                    self._apply_link_cut(name, target)
                    continue
                budget = self._budget_schedule(self.budget_step, target)
                if ranking.holds_state:
                    self._held_cut(name, budget, ranking, training)
                else:
                    budget_cut.set_threshold(self._plan.traffic[name], self._select_gates(name, budget))

    def _held_cut(self, name, budget, ranking, training):
        """The cut of a GateRanking that holds its decision (budget_cut.held_cut)."""
        budget_cut.held_cut(self._plan.traffic[name], budget, ranking, training, self.budget_step,
                            self._budget_schedule)

    def _apply_link_cut(self, name, link):
        # The price cut of link_budget.py at the annealed time budget of each device.
        switch_link = self._switch_link(name, link)
        budget = switch_link.budget_seconds(self._budget_schedule, self.budget_step)  # (D,)
        budget_cut.link_cut(self._learned_terms(name), switch_link, budget)

    def current_budget(self, switch) -> float:
        """The annealed budget of a switch at the current training step: a
        traffic ratio, or for a Link the slowest device's time in ms."""
        name = self._switch_set[switch].name
        if name not in self._budgets:
            raise ValueError(f"switch '{name}' has no budget; budgets: {self._budgets}.")
        step = ops.convert_to_numpy(self.budget_step)
        target = self._budgets[name]
        if isinstance(target, Link):
            seconds = self._switch_link(name, target).budget_seconds(self._budget_schedule, step)
            return float(np.max(ops.convert_to_numpy(seconds))) * 1e3
        return float(ops.convert_to_numpy(self._budget_schedule(step, target)))

    def _distillation(self, teacher, student, sample_weight):
        per_example = self._task.distillation_loss(teacher, student)  # (B,) or None
        return None if per_example is None else _weighted_mean(per_example, sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        names = self._switch_set.names
        teacher = y_pred[names[0]]  # the widest switch runs in every step, a Sandwich's too
        total = 0.0
        for name in (n for n in names if n in y_pred):
            logits = y_pred[name]
            task = _weighted_mean(self._task_loss.call(y, ops.cast(logits, "float32")), sample_weight)
            # Weighted by the batch's weight, so an epoch's figure is the mean
            # over examples (a short last batch counts for what it holds).
            self._trackers[name]["loss"].update_state(task, sample_weight=_batch_weight(logits, sample_weight))
            total = total + task
            if name != names[0] and self._distillation_weight > 0:
                distill = self._distillation(teacher, logits, sample_weight)
                if distill is not None:
                    total = total + self._distillation_weight * distill
        step = self.budget_step
        for name in names:
            if not self._plan.traffic[name]:
                continue
            deployed = self._traffic_ratio(name, training=False)
            self._trackers[name]["comm"].update_state(deployed)
            if isinstance(self._budgets.get(name), Link):
                total = total + self._comm_weight * self._link_penalty(name, self._budgets[name], step)
            elif name in self._budgets:
                budget = self._budget_schedule(step, self._budgets[name])
                self._budget_trackers[name].update_state(budget)
                # The penalty pulls the expected traffic (sigmoid of the
                # logits, weighted by bytes) to the budget: it ranks costly
                # gates lower. The gates in use meet the budget exactly (call).
                ranking = self._gate_ranking
                if ranking.learns_logits:
                    expected = self._traffic_ratio(name, expected=True, count=ranking.penalty == "count")
                    total = total + self._comm_weight * ops.relu(expected - budget)
        for extra in self.losses:  # regularizers
            total = total + ops.cast(ops.sum(extra), "float32")
        if training:
            self.budget_step.assign_add(1)
        return _scale_for_distribution(total)

    def _link_penalty(self, name, link, step):
        """The Link penalty of switch ``name`` (logs its budget and time)."""
        switch_link = self._switch_link(name, link)
        terms = self._plan.traffic[name]
        budget = switch_link.budget_seconds(self._budget_schedule, step)  # (D,)
        self._budget_trackers[name].update_state(ops.max(budget) * 1e3)
        deployed = switch_link.seconds([t.layer.gate_matrix(t.index) for t in terms])  # (D,)
        self._time_trackers[name].update_state(ops.max(deployed) * 1e3)
        # Expected time: sigmoid open-probabilities and a soft "point used"
        # (softmax-weighted mean of a point's probabilities), differentiable.
        expected = switch_link.seconds([t.layer.gate_probabilities(t.index) for t in terms], soft=True)  # (D,)
        return switch_link.penalty(expected, budget)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for name in self._switch_set.names:
            if "metric" in self._trackers[name] and name in y_pred:
                self._trackers[name]["metric"].update_state(y, y_pred[name], sample_weight)
        return self.get_metrics_result()

    # -- after training -------------------------------------------------------
    def finalize_gates(
        self, budget: Union[None, float, Link, Mapping[str, Union[float, Link]]] = None
    ) -> dict:
        """Makes every learned gate binary and freezes it (pins).

        For a switch with a budget, the remote gates with the highest logits
        are kept open while their bytes fit in the budget (the same cut the
        training steps use, so after a run that reached its budget nothing
        changes; the ratio lands within one channel per layer below the
        budget). With a ``GateRanking`` that holds its decision, the set the
        last training cut chose is pinned (or, given a new ``budget`` or when
        training stopped before the budget reached its target, the top of
        that ranking's scores at the budget). For a Link budget, the gates are chosen per exchange point
        (layer, receiving device) so that each device's modelled time fits
        its target, preferring few full exchange points to many thin ones
        (the price cut of ``link_budget.py``, then the time left spent on
        the next channels of open points, then on new points). Earlier pins
        are decided anew. Other learned switches keep their gates as they
        are.

        Args:
            budget: as in ``compile``; default the compiled budgets.

        Returns:
            ``{switch name: traffic ratio after finalization}``; for a Link
            budget the ratio is a ``LinkRatio``, a float that also carries
            ``time_ms`` (slowest device), ``target_ms``,
            ``exchange_points`` and the full ``cost`` (a ``LinkCost``).
        """
        budgets = self._resolve_budgets(budget) if budget is not None else dict(self._budgets)
        result = {}
        for name in self.learned_switches():
            terms = self._learned_terms(name)
            link = budgets[name] if isinstance(budgets.get(name), Link) else None
            if name in budgets:
                for t in terms:
                    t.layer.pin_gates(t.index, np.full(t.remote.shape, -1.0, "float32"))
            if link is not None:
                chosen = self._switch_link(name, link).finalize([t.layer.gate_logits(t.index) for t in terms])
                for t, gate in zip(terms, chosen):
                    t.layer.pin_gates(t.index, np.where(t.remote > 0, gate, -1.0))  # (Cin, D)
            elif name in budgets:
                ranking = getattr(self, "_gate_ranking", GateRanking())
                if not ranking.holds_state:
                    threshold = ops.convert_to_numpy(self._select_gates(name, budgets[name]))
                    budget_cut.set_threshold(terms, threshold)
                elif (budget is not None or any(float(ops.min(t.gates.state)) < 0 for t in terms)
                      # The cut at end_step (made in the step that leaves budget_step
                      # at end_step + 1) is the first at the target: before it, the
                      # held set is over budget.
                      or getattr(self, "_budget_schedule", None) is None
                      or int(ops.convert_to_numpy(self.budget_step)) <= self._budget_schedule.end_step):
                    # A new budget, no decision yet, or training stopped before the
                    # budget reached its target: cut by the ranking's scores.
                    budget_cut.decide(self._plan.traffic[name], budgets[name], ranking)
                # else: the decision the training steps held is what gets pinned.
            for t in terms:
                # (Cin, D): remote gates pinned to their current value; the
                # rest (local, inactive) left free, as pin_gates ignores them.
                t.layer.pin_gates(t.index, np.where(t.remote > 0, t.layer.gate_values(t.index), -1.0))
            ratio = self.traffic_ratio(name)
            result[name] = ratio if link is None else LinkRatio(ratio, self.link_cost(name, link))
        return result

    def recalibrate_batch_norm(self, dataset, num_batches: Optional[int] = None, verbose: int = 1) -> None:
        """Recomputes every switch's batch-norm moving statistics.

        Each switch's statistics are reset, then set to the average of the
        batch statistics over ``num_batches`` batches of ``dataset`` (all of it
        when None), as slimmable networks do after changing a switch's
        channels. Run it after ``finalize_gates`` (and its fine-tune).

        Args:
            dataset: yields ``x`` or ``(x, y, ...)`` batches, and can be
                iterated once per switch: a ``tf.data.Dataset``, a list of
                batches, a ``keras.utils.PyDataset``. Not an array (it would
                iterate image by image) nor a generator (the first switch
                would use it up).
            num_batches: batches per switch, or None for the whole dataset.
            verbose: 1 prints one line per switch.

        Raises:
            ValueError: for an array, a one-shot iterator, or a dataset that
                yields no batch; the statistics are then as they were.
        """
        if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                        or num_batches < 1):
            raise ValueError(f"num_batches must be a positive int or None, received {num_batches!r}.")
        if hasattr(dataset, "shape") and hasattr(dataset, "dtype"):
            raise ValueError(f"dataset: an array of shape {tuple(dataset.shape)} would be iterated image by image "
                             "(each image taken as a batch); pass batches, e.g. "
                             "tf.data.Dataset.from_tensor_slices(x).batch(64), or a list of (64, ...) arrays.")
        try:
            one_shot = iter(dataset) is dataset
        except TypeError:
            raise ValueError(f"dataset: {type(dataset).__name__} is not iterable; pass a tf.data.Dataset of "
                             "batches or a list of batches.") from None
        if one_shot:
            raise ValueError(f"dataset: a {type(dataset).__name__} can be iterated once, and every switch reads "
                             "it; pass a tf.data.Dataset, a list of batches or a keras.utils.PyDataset.")
        bns = [layer for layer in self._flatten_layers() if isinstance(layer, SwitchableBatchNormalization)]
        if not bns:
            return
        # The statistics are those of the gates a call would use now (the
        # switch models below do not set the budget cut themselves).
        self._apply_budget_cut()
        saved = [bn.momentum for bn in bns]
        # Restored if any switch fails (no batch, a bad one): never half done.
        statistics = [(v, ops.convert_to_numpy(v)) for bn in bns for v in (*bn.moving_means, *bn.moving_variances)]
        done = False
        try:
            for index, name in enumerate(self._switch_set.names):
                for bn in bns:
                    shape = tuple(bn.moving_means[index].shape)
                    bn.moving_means[index].assign(np.zeros(shape, "float32"))
                    bn.moving_variances[index].assign(np.ones(shape, "float32"))
                model = self.switch_model(name)
                seen = 0
                for batch in dataset:
                    x = batch[0] if isinstance(batch, (tuple, list)) else batch
                    # Cumulative average: moving = moving * t/(t+1) + batch/(t+1).
                    for bn in bns:
                        bn.momentum = seen / (seen + 1.0)
                    model(x, training=True)
                    seen += 1
                    if num_batches is not None and seen >= num_batches:
                        break
                if seen == 0:
                    raise ValueError("recalibrate_batch_norm: the dataset yielded no batch.")
                if verbose:
                    print(f"recalibrated batch norm of switch {name} on {seen} batches")
            done = True
        finally:
            for bn, m in zip(bns, saved):
                bn.momentum = m
            if not done:
                for variable, value in statistics:
                    variable.assign(value)

    # -- saving: atomic ---------------------------------------------------------
    def save(self, filepath, overwrite=True, **kwargs):
        """``keras.Model.save``, atomic: written beside ``filepath``, then renamed,
        so an interrupted save (ModelCheckpoint, a killed job) never leaves a
        truncated file in place."""
        _atomic_write(filepath, overwrite, lambda tmp: super(SplitModel, self).save(tmp, **kwargs))

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """``keras.Model.save_weights``, atomic (used by BackupAndRestore)."""
        _atomic_write(filepath, overwrite, lambda tmp: super(SplitModel, self).save_weights(tmp, **kwargs))

    # -- serialization --------------------------------------------------------
    def get_config(self):
        # Subclasses (model families) return their constructor arguments, as
        # keras-hub backbones do. A bare SplitModel saves its graph through a
        # plain functional model over the same layers.
        config = {"name": self.name, "trainable": self.trainable}
        if type(self) is SplitModel:
            graph = keras.Model(self.inputs[0], self._plan.outputs, name=self.name)
            config["switches"] = self._switch_set.get_config()
            config["graph"] = graph.get_config()
            config["task"] = self._task.get_config()
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if cls is SplitModel:
            switches = SwitchSet(config.pop("switches"))
            plain = keras.Model.from_config(config.pop("graph"), custom_objects=custom_objects)
            outputs = getattr(plain, "_outputs_struct", None)  # {switch name: tensor}
            if not isinstance(outputs, Mapping):
                raise ValueError(
                    "A saved SplitModel must have a dict of outputs keyed by switch name; "
                    f"the saved graph holds {type(outputs).__name__}."
                )
            return cls(plain.inputs[0], outputs, switches, **config)
        return cls(**config)
