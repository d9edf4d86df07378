"""Switches: how one full-width network is spread over devices.

A switch is a tuple of device widths ``(w_1, ..., w_D)``, each in (0, 1], summing
to at most 1. For a layer with ``C`` full-width channels, device ``k`` owns the
contiguous slice ``[round(C * sum(w_<k)), round(C * sum(w_<=k)))``; channels past
the last slice are inactive in that switch. Contiguous slices over one full-width
kernel are what lets every switch share the same parameters (slimmable networks).

Widths are held as exact fractions of their decimal spelling, and ``round`` means
round half up, so ``"0.5+0.3+0.2"`` partitions 10 channels as 5/3/2 on every
platform (no float drift, no banker's rounding).
"""

from __future__ import annotations

import math
import numbers
import re
from fractions import Fraction
from typing import Iterable, Iterator, Sequence, Union

__all__ = ["Switch", "SwitchSet", "SwitchLike"]

_NUMBER = r"[0-9]*\.?[0-9]+(?:/[0-9]+)?"
_EQUAL_RE = re.compile(rf"^\s*(\d+)\s*[xX]\s*({_NUMBER})\s*$")
_NUMBER_RE = re.compile(rf"^\s*({_NUMBER})\s*$")


def _to_fraction(value: object, what: str) -> Fraction:
    """Exact fraction of a width given as float, int, str or Fraction."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number in (0, 1], received {value!r}.")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers too
        return Fraction(int(value))
    if isinstance(value, numbers.Real):  # float, numpy floats
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a number in (0, 1], received {value!r}.")
        # repr(0.3) == "0.3": the decimal the user meant, not the binary float;
        # a numpy float32 prints its own shortest decimal (str(float32(0.3)) == "0.3").
        return Fraction(repr(float(value)) if isinstance(value, float) else str(value))
    if isinstance(value, str) and _NUMBER_RE.match(value):
        try:
            return Fraction(value.strip())
        except ZeroDivisionError:
            pass
    raise ValueError(f"{what} must be a number in (0, 1], received {value!r}.")


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _format_width(w: Fraction) -> str:
    """Decimal where it is exact ("0.25"), else the fraction ("1/3")."""
    d = w.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    return repr(float(w)) if d == 1 else f"{w.numerator}/{w.denominator}"


class Switch:
    """One device configuration: the width of each device.

    Args:
        widths: one width per device, each in (0, 1], summing to at most 1.
            Floats, ints, decimal strings or ``Fraction`` are accepted.

    ``Switch.parse("2x0.5")`` and ``Switch.parse("0.5+0.3+0.2")`` read the
    written form; ``str(switch)`` writes it back (``"1x1.0"``, ``"2x0.5"``,
    ``"0.5+0.3+0.2"``). Switches are immutable and hashable.
    """

    __slots__ = ("_widths", "_name")

    def __init__(self, widths: Iterable[object]):
        if isinstance(widths, (str, bytes)):
            raise ValueError(
                f"widths must be a sequence of numbers, received the string {widths!r}; "
                "use Switch.parse() for the written form."
            )
        try:
            raw = list(widths)
        except TypeError:
            raise ValueError(
                f"widths must be a sequence of numbers, received {widths!r}."
            ) from None
        if not raw:
            raise ValueError("widths must name at least one device, received [].")
        fracs = tuple(_to_fraction(w, f"widths[{i}]") for i, w in enumerate(raw))
        for i, w in enumerate(fracs):
            if not 0 < w <= 1:
                raise ValueError(
                    f"widths[{i}] must be in (0, 1], received {raw[i]!r}: "
                    "every device owns a positive share of the channels."
                )
        total = sum(fracs)
        if total > 1:
            raise ValueError(
                f"widths must sum to at most 1, received {[_format_width(w) for w in fracs]} "
                f"(sum {float(total):g}): the devices share one full-width network."
            )
        object.__setattr__(self, "_widths", fracs)
        if len(set(fracs)) == 1:
            name = f"{len(fracs)}x{_format_width(fracs[0])}"
        else:
            name = "+".join(_format_width(w) for w in fracs)
        object.__setattr__(self, "_name", name)

    def __setattr__(self, key, value):
        raise AttributeError("Switch is immutable.")

    @classmethod
    def parse(cls, text: "SwitchLike") -> "Switch":
        """Reads ``"NxW"`` (N devices of width W) or ``"w1+w2+..."``."""
        if isinstance(text, Switch):
            return text
        if not isinstance(text, str):
            if isinstance(text, (list, tuple)):
                return cls(text)
            raise ValueError(
                f"A switch must be written like '2x0.5' or '0.5+0.3+0.2', received {text!r}."
            )
        m = _EQUAL_RE.match(text)
        if m:
            count = int(m.group(1))
            if count < 1:
                raise ValueError(
                    f"A switch needs at least one device, received {text!r}."
                )
            return cls([m.group(2)] * count)
        parts = text.split("+")
        if all(_NUMBER_RE.match(p) for p in parts):
            return cls([p.strip() for p in parts])
        raise ValueError(
            f"Cannot parse switch {text!r}: write 'NxW' (e.g. '2x0.5', N devices of "
            "width W; W may be a fraction such as '3x1/3') or widths joined by '+' "
            "(e.g. '0.5+0.3+0.2')."
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def widths(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self._widths)

    @property
    def num_devices(self) -> int:
        return len(self._widths)

    @property
    def total_width(self) -> float:
        return float(sum(self._widths))

    @property
    def is_full_width(self) -> bool:
        """True when every channel is active (widths sum to exactly 1)."""
        return sum(self._widths) == 1

    def boundaries(self, channels: int) -> tuple[int, ...]:
        """``D + 1`` channel offsets: device k owns ``[b[k], b[k + 1])``."""
        bounds = [0]
        cumulative = Fraction(0)
        for w in self._widths:
            cumulative += w
            bounds.append(_round_half_up(channels * cumulative))
        return tuple(bounds)

    def partition(self, channels: int, group: int = 1) -> tuple[range, ...]:
        """Each device's contiguous channel range for a layer of ``channels``.

        Args:
            channels: the layer's full-width channels.
            group: channels that must stay on one device (the head size of
                attention): the ``channels // group`` groups are partitioned
                like channels, then each range is scaled back to channels, so
                every boundary falls between two groups.

        Raises:
            ValueError: when a device would own no channel (the layer is too
                narrow for this switch), or ``channels`` is not a multiple of
                ``group``.
        """
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(
                f"channels must be a positive int, received {channels!r}."
            )
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            raise ValueError(f"group must be a positive int, received {group!r}.")
        if group > 1:
            if channels % group:
                raise ValueError(
                    f"channels ({channels}) must be a multiple of group ({group}): a group "
                    "(an attention head) is never cut between devices."
                )
            groups = channels // group
            if any(b1 <= b0 for b0, b1 in zip(self.boundaries(groups), self.boundaries(groups)[1:])):
                raise ValueError(
                    f"{groups} groups of {group} channels (e.g. attention heads) cannot be shared by "
                    f"switch '{self.name}': every device needs at least one whole group, so use at "
                    f"least {self.min_channels()} groups or fewer devices."
                )
            return tuple(range(r.start * group, r.stop * group) for r in self.partition(groups))
        b = self.boundaries(channels)
        ranges = tuple(range(b[k], b[k + 1]) for k in range(self.num_devices))
        for k, r in enumerate(ranges):
            if len(r) == 0:
                raise ValueError(
                    f"A layer with {channels} channels is too narrow for switch "
                    f"'{self.name}': device {k} (width {_format_width(self._widths[k])}) "
                    f"would own no channel. Widen the layer to at least "
                    f"{self.min_channels()} channels or use fewer devices."
                )
        return ranges

    def active_channels(self, channels: int, group: int = 1) -> int:
        """How many of ``channels`` are used by this switch (whole groups of
        ``group`` channels when given, as ``partition``)."""
        if group > 1:
            return self.boundaries(channels // group)[-1] * group
        return self.boundaries(channels)[-1]

    def min_channels(self) -> int:
        """Smallest layer width for which every device owns a channel."""
        c = self.num_devices
        while True:
            b = self.boundaries(c)
            if all(b[k + 1] > b[k] for k in range(self.num_devices)):
                return c
            c += 1

    def __repr__(self) -> str:
        return f"Switch('{self._name}')"

    def __str__(self) -> str:
        return self._name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Switch) and self._widths == other._widths

    def __hash__(self) -> int:
        return hash(("Switch", self._widths))

    def __reduce__(self):
        return (Switch.parse, (self._name,))


SwitchLike = Union[Switch, str, Sequence[float]]


class SwitchSet:
    """The ordered switches one set of weights serves.

    Switches are ordered widest first (largest total width, then fewest
    devices; ties keep the order given). The first switch is the teacher in
    training and must use every channel (total width 1): otherwise some of the
    full-width kernel would never be trained.

    Args:
        switches: switches or their written forms, or one comma-separated string
            such as ``"1x1.0,2x0.5,4x0.25"``.
    """

    __slots__ = ("_switches", "_index")

    def __init__(self, switches: Union[str, Iterable[SwitchLike], "SwitchSet"]):
        if isinstance(switches, SwitchSet):
            items = list(switches)
        elif isinstance(switches, str):
            entries = switches.split(",")
            for i, entry in enumerate(entries):
                if not entry.strip() and switches.strip():
                    # "1x1.0," or "1x1.0,,2x0.5": a typo, not a wish for fewer switches.
                    raise ValueError(
                        f"switches {switches!r} has an empty entry at position {i}; write the "
                        "switches separated by single commas, e.g. '1x1.0,2x0.5'."
                    )
            items = [Switch.parse(s) for s in entries if s.strip()]
        else:
            try:
                items = [Switch.parse(s) for s in switches]
            except TypeError:
                raise ValueError(
                    f"switches must be a list of switches or a comma-separated string, "
                    f"received {switches!r}."
                ) from None
        if not items:
            raise ValueError(f"A SwitchSet needs at least one switch, received {switches!r}.")
        seen = set()
        for s in items:
            if s in seen:
                raise ValueError(
                    f"Switch '{s}' appears twice in {[str(x) for x in items]}; list each once."
                )
            seen.add(s)
        order = sorted(
            range(len(items)),
            key=lambda i: (-sum(items[i]._widths), items[i].num_devices, i),
        )
        ordered = tuple(items[i] for i in order)
        if not ordered[0].is_full_width:
            n = ordered[0].num_devices
            example = "'1x1.0'" + (f" or '{n}x{_format_width(Fraction(1, n))}'" if n > 1 else "")
            raise ValueError(
                f"A SwitchSet needs a widest switch of total width 1 (the teacher, which "
                f"trains every channel), received {[str(x) for x in items]}; add e.g. {example}."
            )
        object.__setattr__(self, "_switches", ordered)
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(ordered)})

    def __setattr__(self, key, value):
        raise AttributeError("SwitchSet is immutable.")

    @classmethod
    def parse(cls, text: str) -> "SwitchSet":
        return cls(text)

    @property
    def teacher(self) -> Switch:
        """The widest switch: trained on the labels, distilled into the others."""
        return self._switches[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._switches)

    @property
    def max_devices(self) -> int:
        return max(s.num_devices for s in self._switches)

    def index(self, switch: Union[int, SwitchLike]) -> int:
        """Position of a switch given by index, name or ``Switch``.

        Raises:
            ValueError: for an index out of range or a switch not in the set.
        """
        if isinstance(switch, bool):
            raise ValueError(f"switch must be an index or a name, received {switch!r}.")
        if isinstance(switch, int):
            if -len(self) <= switch < len(self):
                return switch % len(self)
            raise ValueError(
                f"switch index {switch} is out of range for the {len(self)} switches "
                f"{list(self.names)}."
            )
        if switch is None:
            raise ValueError(
                f"switch must be given explicitly (an index or one of {list(self.names)}), "
                "received None."
            )
        try:
            parsed = Switch.parse(switch)
        except ValueError as e:
            raise ValueError(f"Unknown switch {switch!r}: {e}") from None
        if parsed not in self._index:
            raise ValueError(
                f"Unknown switch {switch!r}: this model serves {list(self.names)}."
            )
        return self._index[parsed]

    def __getitem__(self, key: Union[int, SwitchLike]) -> Switch:
        return self._switches[self.index(key)]

    def __contains__(self, switch: object) -> bool:
        try:
            self.index(switch)  # type: ignore[arg-type]
            return True
        except ValueError:
            return False

    def __iter__(self) -> Iterator[Switch]:
        return iter(self._switches)

    def __len__(self) -> int:
        return len(self._switches)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SwitchSet) and self._switches == other._switches

    def __hash__(self) -> int:
        return hash(("SwitchSet", self._switches))

    def __repr__(self) -> str:
        return f"SwitchSet('{','.join(self.names)}')"

    def __str__(self) -> str:
        return ",".join(self.names)

    def __reduce__(self):
        return (SwitchSet, (str(self),))

    def get_config(self) -> list[str]:
        """Serializable form: the switch names, widest first."""
        return list(self.names)

    @classmethod
    def from_config(cls, config: Sequence[str]) -> "SwitchSet":
        return cls(config)
