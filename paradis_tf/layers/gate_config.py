"""GateConfig: how the communication gates of a split layer behave per switch."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Mapping, Union

import keras

from paradis_tf.switches import Switch, SwitchSet

__all__ = ["GateConfig", "GATE_MODES", "GATE_RELAXATIONS"]

# learned: trainable logits (relaxed while training, binary at inference) = DISCO.
# open: every remote channel is received = dense tensor parallelism.
# shut: nothing is received = independent per-device branches (ParaDiS).
GATE_MODES = ("learned", "open", "shut")
# straight_through: forward pass binary (as at inference), gradient of the
#   sigmoid; training and deployment compute the same function.
# sigmoid: forward pass uses sigmoid(logit / temperature) itself.
GATE_RELAXATIONS = ("straight_through", "sigmoid")


def _check_mode(mode: object, what: str) -> str:
    if mode not in GATE_MODES:
        raise ValueError(f"{what} must be one of {list(GATE_MODES)}, received {mode!r}.")
    return mode  # type: ignore[return-value]


@keras.saving.register_keras_serializable(package="paradis_tf")
@dataclasses.dataclass(frozen=True)
class GateConfig:
    """Communication gates of a split layer: one gate per (input channel, device).

    Args:
        mode: gate mode of every switch not named in ``per_switch``:
            ``"learned"``, ``"open"`` or ``"shut"``.
        per_switch: ``(switch name, mode)`` pairs overriding ``mode``; a dict
            is accepted too.
        init_logit: initial logit of learned gates (each drawn within +-0.01
            of it, to break ties); a gate is open when its logit is >= its
            threshold (0, or the budget cut a SplitModel sets while training),
            so a positive value starts them open (dense tensor parallelism,
            from which a budget is annealed).
        relaxation: ``"straight_through"`` or ``"sigmoid"`` (see module).
        temperature: sigmoid temperature of the relaxation, > 0.
        logit_scale: the trainable variable holds ``logit / logit_scale``, so
            an optimizer moves gate logits ``logit_scale`` times faster than
            weights (Adam): the ranking of the gates, which decides what a
            budget keeps, follows the loss within tens of steps. > 0.
    """

    mode: str = "learned"
    per_switch: tuple = ()
    init_logit: float = 0.5
    relaxation: str = "straight_through"
    temperature: float = 1.0
    logit_scale: float = 10.0

    def __post_init__(self):
        _check_mode(self.mode, "GateConfig.mode")
        pairs = self.per_switch
        if isinstance(pairs, Mapping):
            pairs = tuple(pairs.items())
        normalized = []
        for item in pairs:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(
                    "GateConfig.per_switch must hold (switch name, mode) pairs, "
                    f"received {item!r}."
                )
            name, mode = item
            normalized.append(
                (Switch.parse(name).name, _check_mode(mode, f"GateConfig.per_switch[{name!r}]"))
            )
        object.__setattr__(self, "per_switch", tuple(sorted(normalized)))
        if self.relaxation not in GATE_RELAXATIONS:
            raise ValueError(
                f"GateConfig.relaxation must be one of {list(GATE_RELAXATIONS)}, "
                f"received {self.relaxation!r}."
            )
        for name, positive in (("temperature", True), ("logit_scale", True), ("init_logit", False)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                    or (positive and not value > 0)):
                raise ValueError(f"GateConfig.{name} must be a finite number{' > 0' if positive else ''}, "
                                 f"received {value!r}.")
            object.__setattr__(self, name, float(value))

    @classmethod
    def coerce(cls, value: Union["GateConfig", str, Mapping, None]) -> "GateConfig":
        """Accepts a GateConfig, a mode string, a config dict or {switch: mode}."""
        if value is None:
            return cls()
        if isinstance(value, GateConfig):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, Mapping):
            fields = {f.name for f in dataclasses.fields(cls)}
            if set(value) <= fields:
                return cls(**value)
            return cls(per_switch=dict(value))
        raise ValueError(
            "gates must be a mode string ('learned', 'open', 'shut'), a dict "
            f"{{switch name: mode}} or a GateConfig, received {value!r}."
        )

    def check_switches(self, switches: SwitchSet, owner: str) -> None:
        for name, _ in self.per_switch:
            if name not in switches:
                raise ValueError(
                    f"{owner}: gates name switch '{name}', which is not among the "
                    f"layer's switches {list(switches.names)}."
                )

    def mode_for(self, switch: Switch) -> str:
        for name, mode in self.per_switch:
            if name == switch.name:
                return mode
        return self.mode

    def get_config(self) -> dict:
        return {
            "mode": self.mode,
            "per_switch": [list(p) for p in self.per_switch],
            "init_logit": self.init_logit,
            "relaxation": self.relaxation,
            "temperature": self.temperature,
            "logit_scale": self.logit_scale,
        }

    @classmethod
    def from_config(cls, config: Mapping) -> "GateConfig":
        return cls(**config)
