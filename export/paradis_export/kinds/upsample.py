"""upsample: an Upsample2D, per channel, so it never communicates.

On a channel-partitioned tensor ``(1, H, W, C)`` (the FPN merge's nearest
x2) device k resizes its own channels, ``(1, H, W, C_k) -> (1, rH, rW,
C_k)``, in the export order of its input (linked like any per-channel op).
On partial outputs ``(1, H, W, D, C)`` (the segmentation head's bilinear x4)
device k resizes its own slot ``(1, H, W, C) -> (1, rH, rW, C)``: resizing
is linear, so it commutes with the fusion's sum.

The TFLite ops are RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR with
``half_pixel_centers=True, align_corners=False``: the sampling of
``keras.ops.image.resize`` (``tf.image.resize``) that Upsample2D computes
with (output pixel ``o`` reads input coordinate ``(o + 0.5) / r - 0.5``,
clamped at the borders; nearest: pixel ``o // r``).
"""

from __future__ import annotations

import keras

from paradis_export._graph import Op, _unsupported
from paradis_export.kinds._registry import OpKind, register
from paradis_export.partitioner import DeviceOp
from paradis_tf.layers.upsampling import Upsample2D


class _Resize(keras.layers.Layer):
    """(B, H, W, C) -> (B, rH, rW, C) by an integer factor per axis.

    The TensorFlow ops with their flags written out, rather than
    ``tf.image.resize``, so that the TFLite op's ``half_pixel_centers`` and
    ``align_corners`` are pinned here, not by a default. Stage models only
    run where export runs, on the TensorFlow backend."""

    def __init__(self, size, interpolation, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)
        self.interpolation = interpolation

    def call(self, x):
        import tensorflow as tf

        shape = (int(x.shape[1]) * self.size[0], int(x.shape[2]) * self.size[1])
        resize = tf.raw_ops.ResizeBilinear if self.interpolation == "bilinear" else tf.raw_ops.ResizeNearestNeighbor
        return resize(images=x, size=shape, align_corners=False, half_pixel_centers=True)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, h * self.size[0], w * self.size[1], c)


class Upsample(OpKind):
    kind = "upsample"
    layer_types = (Upsample2D,)
    device_kinds = ("resize",)
    partial_inputs = True

    def trace(self, layer, sw, ins, output, graph) -> list:
        if ins[0] in graph.replicated:
            raise _unsupported(layer, "a computation on the replicated input before the first split layer (every "
                                      "device would resize the whole image): resize the images before the model")
        if ins[0] in graph.partials:
            graph.partials[output] = graph.partials[ins[0]]  # the same slots, resized
        return [Op("upsample", layer.name, ins, output,
                   {"size": tuple(layer.size), "interpolation": layer.interpolation})]

    def links(self, op) -> list:
        # Per channel: a partitioned input and its output share one channel
        # order (partial-output slots are whole and not partitioned at all).
        return [(op.inputs[0], op.output)]

    def device_ops(self, op, k, ctx) -> list:
        if not ctx.graph.holds(op.inputs[0], k):
            return []  # a zero slot resizes to zeros
        # Device k's channels or slot (1, H, W, c) -> (1, rH, rW, c).
        return [DeviceOp("resize", op.name, [ctx.local(op.inputs[0], k)], ctx.local(op.output, k), dict(op.params))]

    def stage_layer(self, device_op):
        p = device_op.params
        return _Resize(p["size"], p["interpolation"], name=device_op.name)


register(Upsample())
