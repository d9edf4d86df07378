"""SplitDense: a dense layer whose channels are spread over devices."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_tf.layers._base import SplitLinearLayer, _positive_int

__all__ = ["SplitDense"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class SplitDense(SplitLinearLayer):
    """``keras.layers.Dense`` over the devices of a switch.

    Works on the last axis of any input: ``(B, Cin)`` or tokens ``(B, T, Cin)``
    (each token's channels are split the same way).

    Args:
        units: full-width output channels.
        switches, gates, replicated_input, partial_outputs, use_bias, activation,
        initializers, regularizers: see ``SplitLinearLayer``.

    Call arguments:
        inputs: ``(B, ..., Cin)``.
        switch: index or name of the switch to compute (required).
        training: relaxes learned gates when True.

    Output: ``(B, ..., units)``; ``(B, ..., D, units)`` with
    ``partial_outputs=True`` (see ``compute_output_shape``).
    """

    def __init__(self, units, switches, **kwargs):
        super().__init__(switches, **kwargs)
        self.units = _positive_int(units, "units")

    @property
    def _out_channels(self) -> int:
        return self.units

    @property
    def _kernel_window(self) -> tuple:
        return ()

    def _linear(self, x, kernel):
        return ops.matmul(x, kernel)  # (B, ..., Cin) @ (Cin, Cout) -> (B, ..., Cout)

    def _output_positions(self, input_shape) -> int:
        return int(np.prod([int(s) for s in input_shape[1:-1]], dtype=np.int64))

    def _leading_output_shape(self, input_shape) -> tuple:
        if len(input_shape) < 2:
            raise ValueError(
                f"SplitDense '{self.name}': expects inputs (B, ..., Cin), received input "
                f"shape {tuple(input_shape)}."
            )
        return tuple(input_shape[:-1])  # (B, ...)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config
