"""LayerCost: what one layer costs each device in one switch (accounting)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """Per-device cost of one layer in one switch, for one sample.

    All tuples have one entry per device of the switch. ``bytes_*`` count the
    traffic the gates control; ``fusion_bytes_*`` the fixed traffic of the
    final fusion of partial outputs, which no gate can remove. FLOPs are
    2 x multiply-accumulates; bias additions and batch norm (folded into the
    preceding kernel at export) are not counted.
    """

    params: tuple
    flops: tuple
    bytes_sent: tuple
    bytes_received: tuple
    dense_bytes_sent: tuple
    fusion_bytes_sent: tuple
    fusion_bytes_received: tuple

    @classmethod
    def local(cls, params, flops) -> "LayerCost":
        """A layer that never communicates."""
        zeros = (0,) * len(params)
        return cls(tuple(params), tuple(flops), zeros, zeros, zeros, zeros, zeros)
