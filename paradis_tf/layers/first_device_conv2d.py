"""FirstDeviceConv2D: a convolution of the replicated input, on device 0, as a partial output."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from paradis_tf.layers._base import SwitchedLayer, _positive_int
from paradis_tf.layers._conv_utils import conv_geometry, conv_output_shape, output_positions
from paradis_tf.layers._cost import LayerCost
from paradis_tf.layers.weight_norm_split_conv2d import weight_normalized

__all__ = ["FirstDeviceConv2D"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class FirstDeviceConv2D(SwitchedLayer):
    """A full ``Conv2D`` of the replicated input, computed by device 0 alone.

    Its output is in the partial-output layout ``(B, H', W', D, Cout)``: the
    convolution in device 0's slot, zeros in every other device's, so adding
    it to a split layer's partial outputs before ``PartialSumFusion`` adds it
    exactly once to the fused sum. Device 0 holds the input (it feeds the
    image), so the branch costs no traffic; its FLOPs are device 0's. This is
    the skip branch of WDSR (a conv of the low-resolution image to
    ``3 r^2`` channels): a split layer with a replicated input would instead
    partition its outputs, and lose the inactive ones in a narrow switch.

    Every switch computes the same full-width convolution (one kernel).

    Args:
        filters, kernel_size, strides, padding, dilation_rate: as
            ``keras.layers.Conv2D``.
        switches: the SwitchSet the model serves.
        use_bias, kernel_initializer, bias_initializer: as ``Conv2D``.
        weight_norm: compute with ``g * v / ||v||`` (see
            ``WeightNormSplitConv2D``); ``kernel`` then returns that
            effective kernel.

    Call arguments:
        inputs: ``(B, H, W, Cin)``, the replicated input; switch: index or name
        (required: it sets D).

    Output: ``(B, H', W', D, filters)``.
    """

    def __init__(self, filters, kernel_size, switches, strides=1, padding="same", dilation_rate=1,
                 use_bias=True, weight_norm=False, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(switches, **kwargs)
        self.filters = _positive_int(filters, "filters")
        self.kernel_size, self.strides, self.padding, self.dilation_rate = conv_geometry(
            kernel_size, strides, padding, dilation_rate, "Conv2D"
        )
        self.use_bias = bool(use_bias)
        self.weight_norm = bool(weight_norm)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        cin = input_shape[-1]
        if cin is None:
            raise ValueError(
                f"FirstDeviceConv2D '{self.name}': the channel axis of the input must be known, "
                f"received input shape {tuple(input_shape)}."
            )
        self.in_channels = int(cin)
        self.kernel_direction = self.add_weight(
            name="kernel", shape=self.kernel_size + (self.in_channels, self.filters),
            initializer=self.kernel_initializer,
        )
        self.kernel_gain = None
        if self.weight_norm:
            v = ops.convert_to_tensor(self.kernel_direction)
            norm = ops.sqrt(ops.sum(ops.square(v), axis=(0, 1, 2)))  # (Cout,): g = ||v|| at init
            self.kernel_gain = self.add_weight(name="kernel_g", shape=(self.filters,), initializer="ones")
            self.kernel_gain.assign(norm)
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
            if self.use_bias else None
        )

    @property
    def kernel(self):
        """The kernel the layer computes with, ``(kh, kw, Cin, Cout)`` (effective
        ``g * v / ||v||`` with ``weight_norm``): what an exporter reads."""
        if self.kernel_gain is None:
            return self.kernel_direction
        return weight_normalized(self.kernel_direction, self.kernel_gain)

    def compute_output_shape(self, input_shape, switch=None):
        """``(B, H, W, Cin)`` -> ``(B, H', W', D, filters)`` (D: the switch's, or
        the one every switch shares, else None)."""
        shape = conv_output_shape(
            tuple(input_shape), self.filters, self.kernel_size, self.strides, self.padding,
            self.dilation_rate, f"FirstDeviceConv2D '{self.name}'",
        )
        return shape[:-1] + (self.output_devices(switch), self.filters)

    def call(self, inputs, switch=None, training=None):
        d = self.switches[self.switch_index(switch)].num_devices
        self.compute_output_shape(tuple(inputs.shape), switch)  # the geometry's errors, eager too
        y = ops.conv(
            inputs, self.kernel, strides=self.strides, padding=self.padding,
            data_format="channels_last", dilation_rate=self.dilation_rate,
        )  # (B, H', W', Cout)
        if self.bias is not None:
            y = y + self.bias
        # Device 0's slot holds y, the others zeros: (B, H', W', 1, Cout) * (D, 1)
        # -> (B, H', W', D, Cout).
        first = np.zeros((d, 1), dtype="float32")
        first[0, 0] = 1.0
        return ops.expand_dims(y, axis=-2) * ops.cast(first, y.dtype)

    def switch_cost(self, switch, input_shape, bytes_per_element: int = 4) -> LayerCost:
        d = self.switches[self.switch_index(switch)].num_devices
        params, flops = self.unsplit_cost(input_shape)
        return LayerCost.local([params] + [0] * (d - 1), [flops] + [0] * (d - 1))

    def unsplit_cost(self, input_shape) -> tuple[int, int]:
        window = self.kernel_size[0] * self.kernel_size[1]
        positions = output_positions(input_shape, self.kernel_size, self.strides, self.padding, self.dilation_rate)
        params = window * self.in_channels * self.filters + (self.filters if self.use_bias else 0)
        return int(params), int(2 * positions * window * self.in_channels * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "use_bias": self.use_bias,
            "weight_norm": self.weight_norm,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config
