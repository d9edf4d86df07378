"""Upsample2D: integer-factor nearest or bilinear upsampling, per channel and per device."""

from __future__ import annotations

import keras
from keras import ops

from paradis_tf.layers._conv_utils import pair
from paradis_tf.layers._relayout import Relayout

__all__ = ["Upsample2D"]

_INTERPOLATIONS = ("nearest", "bilinear")


@keras.saving.register_keras_serializable(package="paradis_tf")
class Upsample2D(Relayout):
    """Upsamples ``(B, H, W, C)`` or partial outputs ``(B, H, W, D, C)`` by an integer factor.

    Per channel, so it is local on a channel-partitioned tensor (never
    communicates), and linear, so on partial outputs it commutes with the sum
    of ``PartialSumFusion`` (each device upsamples its own partial map).

    The sampling is that of ``tf.image.resize`` (TensorFlow 2) and of TFLite's
    ``RESIZE_NEAREST_NEIGHBOR`` / ``RESIZE_BILINEAR`` with
    ``half_pixel_centers=True, align_corners=False``: output pixel ``o`` reads
    input coordinate ``(o + 0.5) / r - 0.5``, clamped at the borders (nearest:
    input pixel ``o // r``).

    Args:
        size: the factor r, an int or a pair (rows, columns) of positive ints.
        switches: the SwitchSet the model serves.
        interpolation: ``"bilinear"`` or ``"nearest"``.

    Call arguments:
        inputs: ``(B, H, W, C)`` or ``(B, H, W, D, C)``; switch: index or name
        (required; for 5D inputs D must be its device count).

    Output: ``(B, rH, rW, C)`` or ``(B, rH, rW, D, C)``.
    """

    def __init__(self, size, switches, interpolation="bilinear", **kwargs):
        super().__init__(switches, **kwargs)
        self.size = pair(size, "size")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"Upsample2D '{self.name}': interpolation must be one of {_INTERPOLATIONS}, "
                f"received {interpolation!r}."
            )
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape, switch=None):
        input_shape = tuple(input_shape)
        self._check_layout(input_shape, switch)
        h, w = (None if s is None else s * r for s, r in zip(input_shape[1:3], self.size))
        return (input_shape[0], h, w) + input_shape[3:]

    def call(self, inputs, switch=None, training=None):
        self._check_layout(tuple(inputs.shape), switch)
        shape = ops.shape(inputs)
        h, w = shape[1] * self.size[0], shape[2] * self.size[1]
        x = inputs
        if len(inputs.shape) == 5:
            # Devices and channels are both "channels" to an image resize:
            # (B, H, W, D, C) -> (B, H, W, D*C); undone below.
            d, c = shape[3], shape[4]
            x = ops.reshape(x, (-1, shape[1], shape[2], d * c))
        x = ops.image.resize(
            x, (h, w), interpolation=self.interpolation, antialias=False, data_format="channels_last"
        )  # (B, rH, rW, C) or (B, rH, rW, D*C)
        if len(inputs.shape) == 5:
            x = ops.reshape(x, (-1, h, w, d, c))  # -> (B, rH, rW, D, C)
        return x

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "interpolation": self.interpolation})
        return config
