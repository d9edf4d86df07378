"""SplitConv2D: a 2D convolution whose channels are spread over devices."""

from __future__ import annotations

import math

import keras
from keras import ops

from paradis_tf.layers._base import SplitLinearLayer, _positive_int

__all__ = ["SplitConv2D"]


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, (int,)) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{what} must be an int or a pair of ints, received {value!r}.")
    return tuple(_positive_int(v, what) for v in value)  # type: ignore[return-value]


@keras.saving.register_keras_serializable(package="paradis_tf")
class SplitConv2D(SplitLinearLayer):
    """``keras.layers.Conv2D`` (channels last) over the devices of a switch.

    With all gates open it is exactly ``Conv2D`` with the same kernel; with all
    gates shut it is a grouped convolution, one group per device; learned gates
    choose which remote channels each device receives (DISCO).

    Args:
        filters: full-width output channels.
        kernel_size, strides, padding, dilation_rate: as ``keras.layers.Conv2D``
            (``padding`` is ``"same"`` or ``"valid"``).
        switches, gates, replicated_input, partial_outputs, use_bias, activation,
        initializers, regularizers: see ``SplitLinearLayer``.

    Call arguments:
        inputs: ``(B, H, W, Cin)``.
        switch: index or name of the switch to compute (required).
        training: relaxes learned gates when True.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        switches,
        strides=1,
        padding="valid",
        dilation_rate=1,
        **kwargs,
    ):
        super().__init__(switches, **kwargs)
        self.filters = _positive_int(filters, "filters")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"strides={self.strides} and dilation_rate={self.dilation_rate} cannot both "
                "exceed 1 (as in keras.layers.Conv2D)."
            )
        padding = padding.lower() if isinstance(padding, str) else padding
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', received {padding!r}.")
        self.padding = padding

    @property
    def _out_channels(self) -> int:
        return self.filters

    @property
    def _kernel_window(self) -> tuple:
        return self.kernel_size

    def _linear(self, x, kernel):
        return ops.conv(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )

    def _spatial_out(self, size: int, axis: int) -> int:
        if self.padding == "same":
            return math.ceil(size / self.strides[axis])
        span = (self.kernel_size[axis] - 1) * self.dilation_rate[axis] + 1
        return (size - span) // self.strides[axis] + 1

    def _output_positions(self, input_shape) -> int:
        h, w = int(input_shape[-3]), int(input_shape[-2])
        return self._spatial_out(h, 0) * self._spatial_out(w, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "dilation_rate": self.dilation_rate,
            }
        )
        return config
