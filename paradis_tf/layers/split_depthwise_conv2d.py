"""SplitDepthwiseConv2D: a depthwise convolution, local on every device."""

from __future__ import annotations

import keras
from keras import ops

from paradis_tf.layers._base import SwitchedLayer
from paradis_tf.layers._conv_utils import conv_geometry, conv_output_shape, output_positions
from paradis_tf.layers._cost import LayerCost

__all__ = ["SplitDepthwiseConv2D"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class SplitDepthwiseConv2D(SwitchedLayer):
    """``keras.layers.DepthwiseConv2D`` (depth multiplier 1) over a switch.

    Each output channel reads only its own input channel, so with aligned
    partitions every device computes its slice alone: it never communicates.
    Inactive channels of narrower switches are zeroed.

    Args:
        kernel_size, strides, padding, dilation_rate, use_bias, activation,
        depthwise_initializer, bias_initializer, depthwise_regularizer,
        bias_regularizer: as ``keras.layers.DepthwiseConv2D``.
        switches: the SwitchSet the model serves.

    Call arguments:
        inputs: ``(B, H, W, C)``; switch: index or name (required).
    """

    def __init__(
        self,
        kernel_size,
        switches,
        strides=1,
        padding="valid",
        dilation_rate=1,
        use_bias=True,
        activation=None,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(switches, **kwargs)
        self.kernel_size, self.strides, self.padding, self.dilation_rate = conv_geometry(
            kernel_size, strides, padding, dilation_rate, "DepthwiseConv2D"
        )
        self.use_bias = bool(use_bias)
        self.activation = None if activation is None else keras.activations.get(activation)
        self.depthwise_initializer = keras.initializers.get(depthwise_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.depthwise_regularizer = keras.regularizers.get(depthwise_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"SplitDepthwiseConv2D '{self.name}': the channel axis of the input must be "
                f"known, received input shape {tuple(input_shape)}."
            )
        self.channels = int(channels)
        self._ranges = [self.channel_ranges(self.channels, i) for i in range(len(self.switches))]
        self._active = [self.active_mask(self.channels, i) for i in range(len(self.switches))]
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=self.kernel_size + (self.channels, 1),
            initializer=self.depthwise_initializer,
            regularizer=self.depthwise_regularizer,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(self.channels,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
            if self.use_bias
            else None
        )

    def call(self, inputs, switch=None, training=None):
        index = self.switch_index(switch)
        outputs = ops.depthwise_conv(
            inputs,
            self.depthwise_kernel,
            strides=self.strides,
            padding=self.padding,
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        if self.bias is not None:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        active = self._active[index]
        if active is not None:
            outputs = outputs * ops.cast(active, outputs.dtype)  # (B, H, W, C) * (C,)
        return outputs

    def compute_output_shape(self, input_shape, switch=None):
        """``(B, H, W, C)`` -> ``(B, H', W', C)`` as ``DepthwiseConv2D``, whatever the switch."""
        self._check_switch(switch)  # an unknown switch is an error here too
        input_shape = tuple(input_shape)
        channels = input_shape[-1] if input_shape else None
        return conv_output_shape(
            input_shape, channels, self.kernel_size, self.strides, self.padding,
            self.dilation_rate, f"SplitDepthwiseConv2D '{self.name}'",
        )

    def _output_positions(self, input_shape) -> int:
        return output_positions(input_shape, self.kernel_size, self.strides, self.padding, self.dilation_rate)

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        index = self.switch_index(switch)
        window = self.kernel_size[0] * self.kernel_size[1]
        positions = self._output_positions(input_shape)
        n = [len(r) for r in self._ranges[index]]
        params = [window * c + (c if self.use_bias else 0) for c in n]
        flops = [2 * positions * window * c for c in n]
        return LayerCost.local(params, flops)

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        window = self.kernel_size[0] * self.kernel_size[1]
        c = self.channels
        return window * c + (c if self.use_bias else 0), 2 * self._output_positions(input_shape) * window * c

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "dilation_rate": self.dilation_rate,
                "use_bias": self.use_bias,
                "activation": keras.activations.serialize(self.activation)
                if self.activation is not None
                else None,
                "depthwise_initializer": keras.initializers.serialize(self.depthwise_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "depthwise_regularizer": keras.regularizers.serialize(self.depthwise_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
