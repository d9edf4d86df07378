"""PartialSumFusion: sums the devices' partial outputs on the fusing device."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_tf.layers._base import SwitchedLayer
from paradis_tf.layers._cost import LayerCost

__all__ = ["PartialSumFusion"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class PartialSumFusion(SwitchedLayer):
    """Fuses per-device partial outputs ``(..., D, C)`` into ``(..., C)`` by sum.

    Follows a split layer built with ``partial_outputs=True`` (logits, the
    residual of super-resolution). Device 0 (the one that feeds the input)
    fuses: every other device sends it its partial output once. This traffic
    is fixed by the architecture and is reported apart from gated traffic.

    Call arguments:
        inputs: ``(B, ..., D, C)`` with D the switch's device count;
        switch: index or name (required).
    """

    def call(self, inputs, switch=None, training=None):
        self._check_devices(tuple(inputs.shape), self.switch_index(switch))
        return ops.sum(inputs, axis=-2)  # (B, ..., D, C) -> (B, ..., C)

    def compute_output_shape(self, input_shape, switch=None):
        """``(B, ..., D, C)`` -> ``(B, ..., C)``; with ``switch``, D is checked."""
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(
                f"PartialSumFusion '{self.name}': expects inputs (B, ..., D, C), received "
                f"input shape {input_shape}: feed it the output of a split layer built "
                "with partial_outputs=True."
            )
        if switch is not None:
            self._check_devices(input_shape, self.switch_index(switch))
        return input_shape[:-2] + input_shape[-1:]

    def _check_devices(self, input_shape: tuple, index: int) -> None:
        d = self.switches[index].num_devices
        if input_shape[-2] is not None and input_shape[-2] != d:
            raise ValueError(
                f"PartialSumFusion '{self.name}': switch '{self.switches[index]}' has {d} "
                f"devices but the input's device axis (-2) has {input_shape[-2]}: feed it "
                "the output of a split layer built with partial_outputs=True, same switch."
            )

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        d = self.switches[self.switch_index(switch)].num_devices
        partial = int(np.prod([int(s) for s in input_shape[1:-2]], dtype=np.int64))
        partial *= int(input_shape[-1]) * bytes_per_element
        sent = tuple(0 if k == 0 else partial for k in range(d))
        received = tuple((d - 1) * partial if k == 0 else 0 for k in range(d))
        zeros = (0,) * d
        return LayerCost(zeros, zeros, zeros, zeros, zeros, sent, received)

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        return 0, 0
