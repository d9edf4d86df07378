"""SplitConv2D: a 2D convolution whose channels are spread over devices."""

from __future__ import annotations

import keras
from keras import ops

from paradis_tf.layers._base import SplitLinearLayer, _positive_int
from paradis_tf.layers._conv_utils import conv_geometry, conv_output_shape, output_positions

__all__ = ["SplitConv2D"]


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

    Output: ``(B, H', W', filters)`` as ``Conv2D``; ``(B, H', W', D, filters)``
    with ``partial_outputs=True`` (see ``compute_output_shape``).
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
        self.kernel_size, self.strides, self.padding, self.dilation_rate = conv_geometry(
            kernel_size, strides, padding, dilation_rate, "Conv2D"
        )

    @property
    def _out_channels(self) -> int:
        return self.filters

    @property
    def _kernel_window(self) -> tuple:
        return self.kernel_size

    def _linear(self, x, kernel):
        if self.kernel_size == (1, 1) and self.strides != (1, 1):
            # A 1x1 kernel with stride s reads pixel (s*i, s*j) only, with no
            # padding in either mode: (B, H, W, Cin) -> (B, ceil(H/s), ceil(W/s), Cin)
            # then a stride-1 1x1 conv computes the same numbers. TensorFlow
            # 2.21's oneDNN filter gradient of a strided 1x1 conv corrupts the
            # heap at few input channels (docs/onednn_odd_batch.md); the
            # stride-1 one does not. Export builds its own graph from the kernel.
            sh, sw = self.strides
            return ops.conv(x[:, ::sh, ::sw, :], kernel, strides=1, padding="valid", data_format="channels_last")
        return ops.conv(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )

    def _output_positions(self, input_shape) -> int:
        return output_positions(input_shape, self.kernel_size, self.strides, self.padding, self.dilation_rate)

    def _leading_output_shape(self, input_shape) -> tuple:
        shape = conv_output_shape(
            input_shape, self.filters, self.kernel_size, self.strides, self.padding,
            self.dilation_rate, f"SplitConv2D '{self.name}'",
        )
        return shape[:-1]  # (B, H', W')

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
