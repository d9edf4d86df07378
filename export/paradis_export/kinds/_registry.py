"""The registry of op kinds and the interface each one implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["OpKind", "SliceContext", "register", "get", "for_layer", "for_device_kind"]


@dataclass
class SliceContext:
    """What the partitioner knows when a kind slices its op for a device.

    ``ranges[t]``: each device's channel range of logical tensor ``t``;
    ``perm(t, k)``: device k's channels of ``t`` in export order;
    ``local(t, k)``: the name of device k's part of ``t``; ``shapes``: device
    tensor -> shape (a kind adds the tensors it creates); ``pieces_in[(op
    name, k)]``: what device k receives for an op, ``[(piece, info)]``;
    ``pieces_out[device tensor]``: ``{piece: (start, stop)}`` slices sent;
    ``sends``: (piece, receiver) -> Send; ``make_send(piece, source, sender,
    receiver, channels)`` builds one; ``piece_name(t, sender, receivers, a,
    b)`` names a piece (one piece per run of channels, however many devices
    receive it).
    """

    graph: object
    num_devices: int
    ranges: dict
    perm: Callable
    local: Callable
    shapes: dict
    pieces_in: dict
    pieces_out: dict
    sends: dict
    make_send: Callable
    receive: str
    piece_name: Callable


class OpKind:
    """One logical op kind. Subclasses set the class attributes and
    override what their kind does; the defaults are "nothing"."""

    kind: str = ""  # the logical Op's kind
    layer_types: tuple = ()  # the Keras layer classes traced into this kind
    device_kinds: tuple = ()  # the DeviceOp kinds its slicing produces
    int8: bool = True  # whether an int8 export of it is supported
    # Whether it may read partial-output tensors (1, ..., D, C), computing on
    # each device's own slot (``LogicalGraph.partials``); the trace refuses
    # them to the other kinds.
    partial_inputs: bool = False

    def trace(self, layer, sw, ins: list, output: str, graph) -> list:
        """The logical ops (``_graph.Op``) of one call of ``layer``."""
        raise NotImplementedError

    def links(self, op) -> list:
        """Pairs of logical tensors whose channels must share one order."""
        return []

    def add_sends(self, op, ctx: SliceContext) -> None:
        """Sends the op needs besides the gated channels of conv inputs."""

    def device_ops(self, op, k: int, ctx: SliceContext) -> list:
        """Device k's ops (``partitioner.DeviceOp``) for ``op``, sliced weights."""
        raise NotImplementedError

    def stage_layer(self, device_op):
        """A Keras layer computing ``device_op`` in a stage model."""
        raise NotImplementedError

    def flops(self, device_op, shapes: dict) -> int:
        return 0


_KINDS: dict = {}
_DEVICE_KINDS: dict = {}


def register(kind: OpKind) -> OpKind:
    """Adds ``kind``; its logical and device kinds must be new."""
    if not kind.kind or kind.kind in _KINDS:
        raise ValueError(f"op kind {kind.kind!r} is empty or registered twice.")
    for name in kind.device_kinds:
        if name in _DEVICE_KINDS:
            raise ValueError(f"device op kind {name!r} of {kind.kind!r} is already {_DEVICE_KINDS[name].kind!r}'s.")
        _DEVICE_KINDS[name] = kind
    _KINDS[kind.kind] = kind
    return kind


def get(kind: str) -> Optional[OpKind]:
    """The registered kind of a logical op, or None (a built-in rule)."""
    return _KINDS.get(kind)


def for_layer(layer) -> Optional[OpKind]:
    for kind in _KINDS.values():
        if isinstance(layer, kind.layer_types):
            return kind
    return None


def for_device_kind(name: str) -> Optional[OpKind]:
    return _DEVICE_KINDS.get(name)
