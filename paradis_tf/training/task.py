"""Task: what a SplitModel's output means and how every switch learns it.

A model family declares its task once (classification, super-resolution,
segmentation, detection); ``SplitModel.compile`` takes the label loss, the
students' distillation and the per-switch metric from it, and the exporter
writes its ``output_kind`` into the fusion graph, so a runtime knows what the
fused output is without being told again.

    Task.classification()   # logits; cross-entropy; soft-label distillation; accuracy
    Task("sr", "image", keras.losses.MeanAbsoluteError(), distillation="mse", metric=PSNR())
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["Task", "DISTILLATIONS"]

# How a student switch learns from the widest switch's detached output.
#   softmax: soft cross-entropy over the last axis (per pixel for dense logits);
#   mse:     mean squared error to the teacher's output (regression heads);
#   none:    labels only.
DISTILLATIONS = ("softmax", "mse", "none")


@keras.saving.register_keras_serializable(package="paradis_tf")
class Task:
    """An immutable task description.

    Args:
        name: the task's name ("classification", "sr", "segmentation",
            "detection", or a user's own).
        output_kind: what the fused output is, as written to the fusion
            graph's output ``kind`` ("logits", "image", "segmentation_logits",
            "centernet", ...).
        loss: the label loss, a ``keras.losses.Loss`` (used when ``compile``
            gets no ``loss``).
        distillation: one of ``DISTILLATIONS``.
        metric: a ``keras.metrics.Metric`` cloned per switch and logged as
            ``{switch}_{metric.name}``, or None.
    """

    def __init__(self, name: str, output_kind: str, loss, distillation: str = "softmax", metric=None):
        for arg, value in (("name", name), ("output_kind", output_kind)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"Task: {arg} must be a non-empty str, received {value!r}.")
        if not isinstance(loss, keras.losses.Loss):
            raise ValueError(
                f"Task '{name}': loss must be a keras.losses.Loss instance "
                f"(e.g. keras.losses.MeanAbsoluteError()), received {loss!r}."
            )
        if distillation not in DISTILLATIONS:
            raise ValueError(f"Task '{name}': distillation must be one of {DISTILLATIONS}, received {distillation!r}.")
        if metric is not None and not isinstance(metric, keras.metrics.Metric):
            raise ValueError(
                f"Task '{name}': metric must be a keras.metrics.Metric instance or None, received {metric!r}."
            )
        self._name, self._output_kind, self._loss = name, output_kind, loss
        self._distillation, self._metric = distillation, metric

    @classmethod
    def classification(cls) -> "Task":
        """Logits; sparse cross-entropy; soft-label distillation; top-1 accuracy."""
        return cls(
            "classification", "logits", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            distillation="softmax", metric=keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        )

    name = property(lambda self: self._name)
    output_kind = property(lambda self: self._output_kind)
    loss = property(lambda self: self._loss)
    distillation = property(lambda self: self._distillation)

    @property
    def metric_name(self):
        """The per-switch metric's name (``{switch}_{metric_name}`` in logs), or None."""
        return None if self._metric is None else self._metric.name

    def make_metric(self, switch_name: str):
        """A fresh copy of the metric for one switch, named ``{switch}_{metric.name}``."""
        if self._metric is None:
            return None
        config = dict(self._metric.get_config(), name=f"{switch_name}_{self._metric.name}")
        return type(self._metric).from_config(config)

    def distillation_loss(self, teacher, student):
        """Distillation of ``student`` towards the detached ``teacher`` per
        example (``(B,)``) or per pixel (``(B, H, W)`` / ``(B, H, W, C)``; the
        model averages all but the batch axis); None for ``"none"``."""
        if self._distillation == "none":
            return None
        teacher = ops.stop_gradient(ops.cast(teacher, "float32"))
        student = ops.cast(student, "float32")
        if self._distillation == "softmax":
            # -sum softmax(teacher) * log_softmax(student) over classes: (B, ..., C) -> (B, ...).
            return -ops.sum(ops.softmax(teacher, axis=-1) * ops.log_softmax(student, axis=-1), axis=-1)
        return ops.square(student - teacher)  # (B, ..., C)

    def get_config(self) -> dict:
        return {
            "name": self._name,
            "output_kind": self._output_kind,
            "loss": keras.losses.serialize(self._loss),
            "distillation": self._distillation,
            "metric": None if self._metric is None else keras.metrics.serialize(self._metric),
        }

    @classmethod
    def from_config(cls, config: dict) -> "Task":
        config = dict(config)
        config["loss"] = keras.losses.deserialize(config["loss"])
        if config.get("metric") is not None:
            config["metric"] = keras.metrics.deserialize(config["metric"])
        return cls(**config)

    @classmethod
    def coerce(cls, value) -> "Task":
        """None (classification), a Task, or its config dict."""
        if value is None:
            return cls.classification()
        if isinstance(value, Task):
            return value
        if isinstance(value, dict):
            return cls.from_config(value)
        raise ValueError(f"task must be a Task, its config dict or None (classification), received {value!r}.")

    def __eq__(self, other):
        return isinstance(other, Task) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((self._name, self._output_kind, self._distillation))

    def __repr__(self):
        return (f"Task({self._name!r}, output_kind={self._output_kind!r}, loss={type(self._loss).__name__}, "
                f"distillation={self._distillation!r}, metric={self.metric_name!r})")
