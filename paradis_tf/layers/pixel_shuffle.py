"""PixelShuffle: depth to space, per device, on plain or partial-output tensors."""

from __future__ import annotations

import keras
from keras import ops

from paradis_tf.layers._base import _positive_int
from paradis_tf.layers._relayout import Relayout

__all__ = ["PixelShuffle"]


@keras.saving.register_keras_serializable(package="paradis_tf")
class PixelShuffle(Relayout):
    """Rearranges ``scale**2`` channel groups into a ``scale`` x ``scale`` block.

    The channel order is that of ``tf.nn.depth_to_space`` and TFLite's
    ``DEPTH_TO_SPACE`` (so export can use that op)::

        out[b, h*r + i, w*r + j, c] = in[b, h, w, (i*r + j) * C_out + c]

    It is linear and works per device, so it commutes with the sum of
    ``PartialSumFusion``: on partial outputs ``(B, H, W, D, C)`` every device
    shuffles its own partial image before device 0 sums them (super-resolution:
    ``(B, H, W, D, 3r^2) -> (B, rH, rW, D, 3)``). On a plain ``(B, H, W, C)``
    tensor it mixes all channels of a pixel, so use it there only on a tensor
    that one device holds whole (never on a channel-partitioned one).

    Args:
        scale: the upscaling factor r (a positive int).
        switches: the SwitchSet the model serves.

    Call arguments:
        inputs: ``(B, H, W, C)`` or partial outputs ``(B, H, W, D, C)``, C a
            multiple of ``scale**2``;
        switch: index or name (required; D must be its device count).

    Output: ``(B, rH, rW, C / r^2)`` or ``(B, rH, rW, D, C / r^2)``.
    """

    def __init__(self, scale, switches, **kwargs):
        super().__init__(switches, **kwargs)
        self.scale = _positive_int(scale, "scale")

    def _check(self, input_shape: tuple, switch) -> int:
        """Validates ``input_shape``; returns the output channels."""
        self._check_layout(input_shape, switch)
        owner = f"PixelShuffle '{self.name}'"
        channels = input_shape[-1]
        r2 = self.scale * self.scale
        if channels is None or channels % r2:
            raise ValueError(
                f"{owner}: the channel axis must be a known multiple of scale**2 = {r2} "
                f"(scale={self.scale}), received {channels} channels (input shape {input_shape}): "
                f"give the layer before it {r2} * output channels filters."
            )
        return channels // r2

    def compute_output_shape(self, input_shape, switch=None):
        input_shape = tuple(input_shape)
        out = self._check(input_shape, switch)
        r = self.scale
        h, w = (None if s is None else s * r for s in input_shape[1:3])
        return (input_shape[0], h, w) + tuple(input_shape[3:-1]) + (out,)

    def call(self, inputs, switch=None, training=None):
        out = self._check(tuple(inputs.shape), switch)
        r = self.scale
        shape = ops.shape(inputs)
        h, w = shape[1], shape[2]
        if len(inputs.shape) == 4:
            # (B, H, W, r*r*Co) -> (B, H, W, r, r, Co): channel (i*r + j)*Co + c.
            x = ops.reshape(inputs, (-1, h, w, r, r, out))
            x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # -> (B, H, r, W, r, Co)
            return ops.reshape(x, (-1, h * r, w * r, out))  # -> (B, rH, rW, Co)
        d = shape[3]
        # (B, H, W, D, r*r*Co) -> (B, H, W, D, r, r, Co): each device's own channels.
        x = ops.reshape(inputs, (-1, h, w, d, r, r, out))
        x = ops.transpose(x, (0, 1, 4, 2, 5, 3, 6))  # -> (B, H, r, W, r, D, Co)
        return ops.reshape(x, (-1, h * r, w * r, d, out))  # -> (B, rH, rW, D, Co)

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config

